//! The daemon under test: the fixture host, the preloaded state, and one
//! `qpcid` child at a time, started, waited for and SIGKILLed.

use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use qpci_fixture::HostTree;
use qpci_fixture::pci::PciTopology;

/// How long a restart may take before it counts as a refusal to start.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The fixed parts of a run: paths and the qpcid binary.
#[derive(Debug)]
pub struct Layout {
    /// The qpcid binary.
    pub qpcid: PathBuf,
    /// The socket the daemon serves.
    pub socket: PathBuf,
    /// The state folder (qubes.xml, sim-runtime.json).
    pub state: PathBuf,
    /// The fixture host root given as `--sysfs-root`.
    pub root: PathBuf,
    /// The current run's log (the previous run's is `qpcid.prev.log`).
    pub log: PathBuf,
}

/// The workstation fixture (two sockets, no IOMMU groups, host bridges
/// dom0 keeps, an SR-IOV NIC, a GPU + audio pair without function reset,
/// conventional PCI without reset) plus eight FLR NICs on root bus 0000:80,
/// so 32 clients have enough devices to fight over.
pub fn host_tree() -> HostTree {
    let mut t = PciTopology::workstation();
    // No IOMMU groups, as on a Xen dom0 (KVM refuses starts without an IOMMU).
    t.xen_dom0();
    t.host_bridge("0000:80:00.0").ids(0x1022, 0x1480);
    for slot in 1..=8u8 {
        t.endpoint(&format!("0000:80:{slot:02x}.0"))
            .ids(0x8086, 0x10d3)
            .subsystem(0x8086, u16::from(slot))
            .class(0x020000)
            .driver("e1000e")
            .flr();
    }
    t.build()
}

/// The extra NICs only the shared pool assigns.
pub const SHARED_ONLY: [&str; 4] = [
    "0000:80:05.0",
    "0000:80:06.0",
    "0000:80:07.0",
    "0000:80:08.0",
];

/// Name of client `c`'s preloaded qube `i`.
pub fn owned_name(c: usize, i: usize) -> String {
    format!("c{c:02}-{i:03}")
}

/// Name of shared qube `i`.
pub fn shared_name(i: usize) -> String {
    format!("sh-{i:03}")
}

/// `qubes.xml` with the eight labels, template `tpl`, `per_client` qubes
/// for each of `clients` and `shared` qubes everyone may touch.
pub fn qubes_xml(clients: usize, per_client: usize, shared: usize) -> String {
    let mut x = String::from("<?xml version='1.0' encoding='UTF-8'?>\n<qubes>\n  <labels>\n");
    let labels = [
        ("red", "0xcc0000"),
        ("orange", "0xf57900"),
        ("yellow", "0xedd400"),
        ("green", "0x73d216"),
        ("gray", "0x555555"),
        ("blue", "0x3465a4"),
        ("purple", "0x75507b"),
        ("black", "0x000000"),
    ];
    for (i, (name, color)) in labels.iter().enumerate() {
        let _ = writeln!(
            x,
            "    <label id=\"label-{}\" color=\"{color}\">{name}</label>",
            i + 1
        );
    }
    x.push_str("  </labels>\n  <pools/>\n  <properties>\n    <property name=\"default_template\">tpl</property>\n  </properties>\n  <domains>\n");
    x.push_str("    <domain id=\"domain-0\" class=\"AdminVM\">\n      <properties>\n        <property name=\"label\" ref=\"label-8\"/>\n      </properties>\n      <features/>\n      <tags/>\n    </domain>\n");
    let mut qid = 1usize;
    let mut domain = |x: &mut String, class: &str, name: &str, template: Option<&str>| {
        let _ = write!(
            x,
            "    <domain id=\"domain-{qid}\" class=\"{class}\">\n      <properties>\n        <property name=\"qid\">{qid}</property>\n        <property name=\"name\">{name}</property>\n        <property name=\"uuid\">{qid:08x}-0000-4000-8000-{qid:012x}</property>\n        <property name=\"label\" ref=\"label-1\"/>\n"
        );
        if let Some(t) = template {
            let _ = writeln!(x, "        <property name=\"template\">{t}</property>");
        }
        x.push_str("      </properties>\n      <features/>\n      <tags/>\n    </domain>\n");
        qid += 1;
    };
    domain(&mut x, "TemplateVM", "tpl", None);
    for c in 0..clients {
        for i in 0..per_client {
            domain(&mut x, "AppVM", &owned_name(c, i), Some("tpl"));
        }
    }
    for i in 0..shared {
        domain(&mut x, "AppVM", &shared_name(i), Some("tpl"));
    }
    x.push_str("  </domains>\n</qubes>\n");
    x
}

/// One running qpcid.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
}

impl Daemon {
    /// Spawns qpcid on the layout (no waiting); `save_delay_ms` is qpcid's
    /// test hook that sleeps before each save, widening the window between
    /// a batch being applied and being durable.
    pub fn spawn(l: &Layout, save_delay_ms: u64) -> Result<Self> {
        if l.log.exists() {
            let prev = l.log.with_file_name("qpcid.prev.log");
            fs::rename(&l.log, &prev).with_context(|| format!("rotate {}", l.log.display()))?;
        }
        let log =
            fs::File::create(&l.log).with_context(|| format!("create {}", l.log.display()))?;
        let child = Command::new(&l.qpcid)
            .arg("--socket")
            .arg(&l.socket)
            .arg("--state-dir")
            .arg(&l.state)
            .arg("--sysfs-root")
            .arg(&l.root)
            .args([
                "--backend",
                "sim",
                "--flavour",
                "xen",
                "--log-level",
                "warn",
            ])
            .arg("--test-save-delay-ms")
            .arg(save_delay_ms.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawn {}", l.qpcid.display()))?;
        Ok(Self { child })
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the socket answers; an exit or a timeout is an error
    /// carrying the end of the daemon's log (a refusal to start).
    pub fn wait_ready(&mut self, l: &Layout) -> Result<Duration> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().context("wait for qpcid")? {
                bail!(
                    "qpcid exited during startup ({status}); log:\n{}",
                    log_tail(&l.log)
                );
            }
            if UnixStream::connect(&l.socket).is_ok() {
                return Ok(started.elapsed());
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "qpcid did not answer on {} within {START_TIMEOUT:?}; log:\n{}",
                    l.socket.display(),
                    log_tail(&l.log)
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The peak resident set (`VmHWM`, KiB) so far; `None` once gone.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// SIGKILLs the daemon and reaps it. `true` when it was still running
    /// (it did not exit on its own before the kill).
    pub fn kill(mut self) -> Result<bool> {
        let alive = self.child.try_wait().context("wait for qpcid")?.is_none();
        // std's kill is SIGKILL on Unix: no handler runs, no save finishes.
        let _ = self.child.kill();
        self.child.wait().context("reap qpcid")?;
        Ok(alive)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last lines of a log, for error messages.
pub fn log_tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(20);
    lines.get(from..).unwrap_or_default().join("\n")
}
