//! Loading kernel modules: the real `modprobe` (or the `--modprobe CMD`
//! seam) and a fake that "loads" a module by registering its drivers in a
//! fixture tree.

use std::ffi::OsString;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::modalias::{kernel_release, normalize_module};
use super::sysfs_io::{RealRootRefused, WriteAccess, root_is_real};
use super::tree::{link_relative, write_new_file};
use crate::HostRoot;

/// A module load failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("modprobe {module}: {message}")]
pub struct RunnerError {
    /// The module.
    pub module: String,
    /// What went wrong (exit status and stderr, or the refusal).
    pub message: String,
}

/// Loads kernel modules by name.
pub trait ModprobeRunner: Send + Sync {
    /// Loads `module` (a no-op when it is loaded or built in).
    fn modprobe(&self, module: &str) -> Result<(), RunnerError>;

    /// The command line, for dry runs.
    fn describe(&self, module: &str) -> String {
        format!("modprobe {module}")
    }
}

/// Module names are `[A-Za-z0-9_-]`; anything else (a leading `-` would be
/// an option) is refused before a command runs.
fn check_name(module: &str) -> Result<(), RunnerError> {
    let ok = !module.is_empty()
        && !module.starts_with('-')
        && module.len() <= 64
        && module
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(RunnerError {
            module: module.to_owned(),
            message: "not a module name".into(),
        })
    }
}

/// Runs a command with the module name as its last argument.
#[derive(Debug, Clone)]
pub struct CommandRunner {
    argv: Vec<OsString>,
    timeout: Duration,
}

impl CommandRunner {
    /// The system's `modprobe`; it changes the real kernel's modules, so it
    /// takes [`WriteAccess::Production`].
    pub fn system(access: WriteAccess) -> Result<Self, RealRootRefused> {
        if access != WriteAccess::Production {
            return Err(RealRootRefused(
                "/ (modprobe loads into the running kernel)".into(),
            ));
        }
        Ok(Self::custom(vec!["modprobe".into()]))
    }

    /// A replacement command (`qpcid --modprobe CMD`), split into words by
    /// the caller; the module is appended.
    pub fn custom(argv: Vec<OsString>) -> Self {
        Self {
            argv,
            timeout: Duration::from_secs(30),
        }
    }

    /// How long a load may take before it is killed (default 30 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl ModprobeRunner for CommandRunner {
    fn modprobe(&self, module: &str) -> Result<(), RunnerError> {
        check_name(module)?;
        let err = |message: String| RunnerError {
            module: module.to_owned(),
            message,
        };
        let Some((program, args)) = self.argv.split_first() else {
            return Err(err("no modprobe command configured".into()));
        };
        let mut child = Command::new(program)
            .args(args)
            .arg(module)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| err(format!("cannot run {}: {e}", program.to_string_lossy())))?;
        // Drained while it runs: a command that writes more than the pipe
        // holds (64 KiB) would otherwise block until the timeout kills it.
        let stderr = child.stderr.take().map(|mut s| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = std::io::Read::read_to_end(&mut s, &mut buf);
                buf
            })
        });
        let deadline = Instant::now() + self.timeout;
        // Short polls first: a no-op modprobe ends within a few ms, and a
        // fixed 10 ms sleep would double its cost.
        let mut pause = Duration::from_micros(500);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(err(format!("timed out after {:?}", self.timeout)));
                }
                Ok(None) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(10));
                }
                Err(e) => return Err(err(format!("waiting: {e}"))),
            }
        };
        if status.success() {
            return Ok(());
        }
        // A process it left running may hold the pipe open: the text is
        // waited for a moment, not until that one exits.
        let stderr = match stderr {
            Some(reader) => {
                let until = Instant::now() + STDERR_WAIT;
                while !reader.is_finished() && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(1));
                }
                if reader.is_finished() {
                    reader.join().unwrap_or_default()
                } else {
                    b"(stderr still open after it exited)".to_vec()
                }
            }
            None => Vec::new(),
        };
        Err(err(format!("{status}: {}", tail(&stderr))))
    }

    fn describe(&self, module: &str) -> String {
        let mut words: Vec<String> = self
            .argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        words.push(module.to_owned());
        words.join(" ")
    }
}

/// The last lines of a command's stderr, at most [`STDERR_KEPT`] bytes:
/// the reason modprobe fails is on its last line, and an error message
/// must not carry megabytes.
fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.len() <= STDERR_KEPT {
        return text.to_owned();
    }
    let mut start = text.len() - STDERR_KEPT;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

/// How much of a failed command's stderr an error keeps.
const STDERR_KEPT: usize = 2048;

/// How long, after a failed command exited, its stderr may take to close.
const STDERR_WAIT: Duration = Duration::from_secs(1);

/// A modprobe for fixture trees: records each call and "loads" a module
/// by creating its drivers' directories and `sys/module/<m>` links.
///
/// Which drivers a module registers: [`FakeModprobe::with_driver`], else
/// the fixture's `lib/modules/<release>/qpci-fake-drivers`, else a driver
/// named like the module.
pub struct FakeModprobe {
    root: HostRoot,
    drivers: Vec<(String, String)>,
    failing: Vec<(String, String)>,
    calls: Mutex<Vec<String>>,
}

impl FakeModprobe {
    /// A fake under `root`; never for the real `/`.
    pub fn new(root: HostRoot) -> Result<Self, RealRootRefused> {
        if root_is_real(&root) {
            return Err(RealRootRefused(root.dir().to_owned()));
        }
        Ok(Self {
            root,
            drivers: Vec::new(),
            failing: Vec::new(),
            calls: Mutex::new(Vec::new()),
        })
    }

    /// Module `module` registers PCI driver `driver`.
    pub fn with_driver(mut self, module: &str, driver: &str) -> Self {
        self.drivers
            .push((normalize_module(module), driver.to_owned()));
        self
    }

    /// Loading `module` fails with `message`.
    pub fn failing(mut self, module: &str, message: &str) -> Self {
        self.failing
            .push((normalize_module(module), message.to_owned()));
        self
    }

    /// The modules asked for, in order.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn drivers_of(&self, module: &str) -> Vec<String> {
        let given: Vec<String> = self
            .drivers
            .iter()
            .filter(|(m, _)| m == module)
            .map(|(_, d)| d.clone())
            .collect();
        if !given.is_empty() {
            return given;
        }
        if let Ok(release) = kernel_release(&self.root) {
            let file = self
                .root
                .join(format!("lib/modules/{release}/qpci-fake-drivers"));
            let listed: Vec<String> = fs::read_to_string(file)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.split_once(' '))
                .filter(|(m, _)| normalize_module(m) == module)
                .map(|(_, d)| d.trim().to_owned())
                .collect();
            if !listed.is_empty() {
                return listed;
            }
        }
        vec![module.to_owned()]
    }
}

impl ModprobeRunner for FakeModprobe {
    fn modprobe(&self, module: &str) -> Result<(), RunnerError> {
        check_name(module)?;
        let module = normalize_module(module);
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(module.clone());
        }
        if let Some((_, message)) = self.failing.iter().find(|(m, _)| *m == module) {
            return Err(RunnerError {
                module,
                message: message.clone(),
            });
        }
        let err = |e: std::io::Error| RunnerError {
            module: module.clone(),
            message: format!("fake load: {e}"),
        };
        let mdir = format!("sys/module/{module}");
        fs::create_dir_all(self.root.join(&mdir)).map_err(err)?;
        write_new_file(
            &self.root,
            Path::new(&format!("{mdir}/initstate")),
            "live\n",
        )
        .map_err(err)?;
        for d in self.drivers_of(&module) {
            create_driver_dir(&self.root, &d).map_err(err)?;
            link_relative(
                &self.root,
                Path::new(&format!("{mdir}/drivers/pci:{d}")),
                Path::new(&format!("sys/bus/pci/drivers/{d}")),
            )
            .map_err(err)?;
            link_relative(
                &self.root,
                Path::new(&format!("sys/bus/pci/drivers/{d}/module")),
                Path::new(&mdir),
            )
            .map_err(err)?;
        }
        Ok(())
    }
}

/// Registers driver `name` in a fixture tree: its directory with the files
/// every PCI driver has, and pciback's own (`slots` empty).
pub fn create_driver_dir(root: &HostRoot, name: &str) -> std::io::Result<()> {
    let dir = format!("sys/bus/pci/drivers/{name}");
    fs::create_dir_all(root.join(&dir))?;
    let mut files = vec!["bind", "unbind", "new_id", "remove_id", "uevent"];
    if name == "pciback" {
        files.extend([
            "new_slot",
            "remove_slot",
            "slots",
            "permissive",
            "quirks",
            "irq_handlers",
        ]);
    }
    for f in files {
        write_new_file(root, Path::new(&format!("{dir}/{f}")), "")?;
    }
    Ok(())
}
