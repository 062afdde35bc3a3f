//! The command line (DESIGN.md "Daemon"), turned into a [`Config`].

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use qpci_host::{HostFlavour, HostRoot};

use crate::paths::{Env, Layout};
use crate::server::Config;

/// `--backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// Qubes run as records; starts are computed, nothing is written to the host.
    Sim,
    /// The real hypervisor through libvirt.
    Libvirt,
}

/// `--flavour`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Flavour {
    /// Xen dom0: pciback and Qubes' Xen domain XML.
    Xen,
    /// KVM: vfio-pci.
    Kvm,
}

/// qpcid: the qpci Admin API daemon, wire-compatible with qubesd.
///
/// Runs in the foreground. Per-user mode (the default) serves
/// $XDG_RUNTIME_DIR/qpci/qubesd.sock with state in $XDG_STATE_HOME/qpci;
/// --system serves /run/qubesd.sock with state in /var/lib/qubes.
#[derive(Debug, Clone, Parser)]
#[command(name = "qpcid", version)]
pub struct Flags {
    /// The socket to serve (default: by mode).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// The state folder holding qubes.xml (default: by mode).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The folder standing for / when reading the host (sys/, proc/).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub sysfs_root: PathBuf,
    /// The pci.ids file for device names (default: the system's).
    #[arg(long, value_name = "FILE")]
    pub pci_ids: Option<PathBuf>,
    /// The hypervisor backend.
    #[arg(long, value_enum, default_value = "sim")]
    pub backend: Backend,
    /// Stub driver and domain XML flavour (default: xen on a Xen dom0, else kvm).
    #[arg(long, value_enum)]
    pub flavour: Option<Flavour>,
    /// The libvirt connection (default: xen:///system for xen, qemu:///system for kvm).
    #[arg(long, value_name = "URI")]
    pub libvirt_uri: Option<String>,
    /// System mode: /run/qubesd.sock (0660, group qubes) and /var/lib/qubes.
    #[arg(long)]
    pub system: bool,
    /// Also accept clients with this uid (repeatable).
    #[arg(long = "allow-uid", value_name = "UID")]
    pub allow_uid: Vec<u32>,
    /// Exit after this many seconds without a connection.
    #[arg(long, value_name = "SECS")]
    pub idle_exit: Option<f64>,
    /// Log level or filter (error, warn, info, debug, trace; or qpcid=debug,info).
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    pub log_level: String,
    /// Seconds a client may take to send its request.
    #[arg(long, value_name = "SECS", default_value_t = 30.0, hide = true)]
    pub request_timeout: f64,
    /// Test hook: milliseconds slept before each state save.
    #[arg(long, value_name = "MS", default_value_t = 0, hide = true)]
    pub test_save_delay_ms: u64,
    /// Test hook: serve the qpci.test.* methods.
    #[arg(long, hide = true)]
    pub test_methods: bool,
    /// Test seam: the stub engine's writes into the --sysfs-root fixture
    /// tree behave as the kernel would (driver links move on bind, unbind,
    /// probe), whatever the backend. Refused with --sysfs-root /.
    #[arg(long)]
    pub emulate_kernel: bool,
    /// Test seam: the command that loads a kernel module, the module name
    /// appended (words split at whitespace, no quoting). Default: modprobe
    /// (with --emulate-kernel: a fake loader that registers the module's
    /// drivers in the fixture tree).
    #[arg(long, value_name = "CMD")]
    pub modprobe: Option<String>,
    /// Test seam: the command the doctor runs as `xl` (`CMD info`, words
    /// split at whitespace) to ask a Xen dom0 for hvm_directio. Default: xl.
    #[arg(long, value_name = "CMD")]
    pub xl: Option<String>,
}

fn secs(what: &str, v: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(v)
        .with_context(|| format!("{what} must be a number of seconds ≥ 0, not {v}"))
}

impl Flags {
    /// Checks the flags and works out the paths.
    pub fn into_config(self) -> anyhow::Result<Config> {
        if !crate::backend::built(self.backend) {
            bail!("{}", crate::backend::NOT_BUILT);
        }
        let layout = Layout::new(
            self.system,
            self.socket,
            self.state_dir,
            &Env::from_process(),
        )
        .context("working out the daemon's paths")?;
        let host_root = HostRoot::new(&self.sysfs_root);
        if !host_root.dir().is_dir() {
            bail!("--sysfs-root {} is not a folder", self.sysfs_root.display());
        }
        let flavour = self.flavour.map(|f| match f {
            Flavour::Xen => HostFlavour::Xen,
            Flavour::Kvm => HostFlavour::Kvm,
        });
        let modprobe = match &self.modprobe {
            Some(cmd) => Some(
                crate::host_writer::split_command(cmd)
                    .context("--modprobe needs a command, e.g. --modprobe /usr/sbin/modprobe")?,
            ),
            None => None,
        };
        let xl = match &self.xl {
            Some(cmd) => Some(
                crate::host_writer::split_command(cmd)
                    .context("--xl needs a command, e.g. --xl /usr/sbin/xl")?,
            ),
            None => None,
        };
        if self.emulate_kernel && qpci_host::stub::sysfs_io::root_is_real(&host_root) {
            bail!(
                "--emulate-kernel is refused with --sysfs-root {}: it is the real host root; point --sysfs-root at a fixture tree",
                self.sysfs_root.display()
            );
        }
        Ok(Config {
            layout,
            backend: self.backend,
            libvirt_uri: self.libvirt_uri,
            host_root,
            pci_ids: self.pci_ids,
            flavour,
            allow_uids: self.allow_uid,
            idle_exit: self.idle_exit.map(|s| secs("--idle-exit", s)).transpose()?,
            request_timeout: secs("--request-timeout", self.request_timeout)?,
            save_delay: Duration::from_millis(self.test_save_delay_ms),
            test_methods: self.test_methods,
            emulate_kernel: self.emulate_kernel,
            modprobe,
            xl,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libvirt_needs_the_feature() {
        let f = Flags::try_parse_from([
            "qpcid",
            "--backend",
            "libvirt",
            "--libvirt-uri",
            "test:///default",
        ])
        .unwrap();
        let config = f.into_config();
        if cfg!(feature = "libvirt") {
            let c = config.unwrap();
            assert_eq!(c.backend, Backend::Libvirt);
            assert_eq!(c.libvirt_uri.as_deref(), Some("test:///default"));
        } else {
            assert_eq!(
                config.unwrap_err().to_string(),
                "qpcid was built without libvirt support: cargo build -p qpcid --features libvirt"
            );
        }
    }

    #[test]
    fn emulate_kernel_is_refused_on_the_real_root() {
        for root in ["/", "//", "/."] {
            let f =
                Flags::try_parse_from(["qpcid", "--emulate-kernel", "--sysfs-root", root]).unwrap();
            let e = f.into_config().unwrap_err().to_string();
            assert!(e.contains("real host root"), "{e}");
        }
        let t = tempfile::tempdir().unwrap();
        let root = t.path().to_string_lossy().into_owned();
        let f = Flags::try_parse_from([
            "qpcid",
            "--emulate-kernel",
            "--sysfs-root",
            &root,
            "--modprobe",
            "/bin/echo  -n",
        ])
        .unwrap();
        let c = f.into_config().unwrap();
        assert!(c.emulate_kernel);
        assert_eq!(c.modprobe, Some(vec!["/bin/echo".into(), "-n".into()]));
        let f = Flags::try_parse_from(["qpcid", "--modprobe", " "]).unwrap();
        assert!(f.into_config().is_err());
    }

    #[test]
    fn flags_parse() {
        let f = Flags::try_parse_from([
            "qpcid",
            "--socket",
            "/t/s",
            "--state-dir",
            "/t/st",
            "--allow-uid",
            "5",
            "--allow-uid",
            "6",
            "--idle-exit",
            "2",
            "--flavour",
            "xen",
        ])
        .unwrap();
        assert_eq!(f.allow_uid, vec![5, 6]);
        let c = f.into_config().unwrap();
        assert_eq!(c.idle_exit, Some(Duration::from_secs(2)));
        assert_eq!(c.flavour, Some(HostFlavour::Xen));
        assert_eq!(c.layout.pid_file, PathBuf::from("/t/qpcid.pid"));
        assert!(Flags::try_parse_from(["qpcid", "--backend", "qemu"]).is_err());
    }
}
