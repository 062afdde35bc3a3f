//! The typed pieces of the registry that policy and orchestration read.

use std::fmt;
use std::str::FromStr;

use qpci_types::{AssignOptions, DeviceIdentity, PciPath, QubeName};

/// A qube's class (Qubes' `klass`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QubeClass {
    /// dom0.
    AdminVM,
    /// A qube based on a template.
    AppVM,
    /// A template.
    TemplateVM,
    /// A qube with its own root filesystem.
    StandaloneVM,
    /// A disposable.
    DispVM,
    /// A qube on another host: no devices.
    RemoteVM,
}

impl QubeClass {
    /// Every class, in Qubes' `vmclass.List` order.
    pub const ALL: [QubeClass; 6] = [
        QubeClass::AdminVM,
        QubeClass::AppVM,
        QubeClass::DispVM,
        QubeClass::RemoteVM,
        QubeClass::StandaloneVM,
        QubeClass::TemplateVM,
    ];

    /// The class name as Qubes spells it.
    pub fn name(self) -> &'static str {
        match self {
            QubeClass::AdminVM => "AdminVM",
            QubeClass::AppVM => "AppVM",
            QubeClass::TemplateVM => "TemplateVM",
            QubeClass::StandaloneVM => "StandaloneVM",
            QubeClass::DispVM => "DispVM",
            QubeClass::RemoteVM => "RemoteVM",
        }
    }

    /// `true` for classes that have a `template` property.
    pub fn is_template_based(self) -> bool {
        matches!(self, QubeClass::AppVM | QubeClass::DispVM)
    }
}

impl FromStr for QubeClass {
    type Err = String;

    fn from_str(untrusted: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.name() == untrusted)
            .ok_or_else(|| format!("unknown qube class '{}'", untrusted.escape_default()))
    }
}

impl fmt::Display for QubeClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A qube's power state (Qubes' names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum PowerState {
    /// Not running.
    #[default]
    Halted,
    /// Running.
    Running,
    /// Paused.
    Paused,
    /// Starting.
    Transient,
    /// Shutting down.
    Halting,
    /// Crashed.
    Crashed,
}

impl PowerState {
    /// The state as Qubes spells it.
    pub fn name(self) -> &'static str {
        match self {
            PowerState::Halted => "Halted",
            PowerState::Running => "Running",
            PowerState::Paused => "Paused",
            PowerState::Transient => "Transient",
            PowerState::Halting => "Halting",
            PowerState::Crashed => "Crashed",
        }
    }

    /// `true` for every state but `Halted` (Qubes' `is_running`, which
    /// counts a paused qube as holding its devices).
    pub fn is_active(self) -> bool {
        !matches!(self, PowerState::Halted | PowerState::Crashed)
    }
}

/// Virtualization mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VirtMode {
    /// Fully virtualized: the only mode that takes PCI devices.
    Hvm,
    /// Paravirtualized.
    Pv,
    /// PVH: no PCI passthrough.
    Pvh,
}

impl VirtMode {
    /// The mode as Qubes spells it.
    pub fn name(self) -> &'static str {
        match self {
            VirtMode::Hvm => "hvm",
            VirtMode::Pv => "pv",
            VirtMode::Pvh => "pvh",
        }
    }
}

impl FromStr for VirtMode {
    type Err = &'static str;

    /// Lower-cases first, as Qubes does.
    fn from_str(untrusted: &str) -> Result<Self, Self::Err> {
        match untrusted.to_ascii_lowercase().as_str() {
            "hvm" => Ok(VirtMode::Hvm),
            "pv" => Ok(VirtMode::Pv),
            "pvh" => Ok(VirtMode::Pvh),
            _ => Err("Invalid virtualization mode, supported values: hvm, pv, pvh"),
        }
    }
}

/// How an assignment attaches (Qubes' `AssignmentMode`; `manual` is never stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AssignMode {
    /// Must be present at start and is attached before the qube runs. The
    /// only mode qpci accepts for PCI.
    Required,
    /// Attach when available (refused for PCI; kept when loaded).
    AutoAttach,
    /// Ask, then attach (refused for PCI; kept when loaded).
    AskToAttach,
}

impl AssignMode {
    /// The mode as Qubes spells it.
    pub fn name(self) -> &'static str {
        match self {
            AssignMode::Required => "required",
            AssignMode::AutoAttach => "auto-attach",
            AssignMode::AskToAttach => "ask-to-attach",
        }
    }
}

impl FromStr for AssignMode {
    type Err = String;

    fn from_str(untrusted: &str) -> Result<Self, Self::Err> {
        match untrusted {
            "required" => Ok(AssignMode::Required),
            "auto-attach" => Ok(AssignMode::AutoAttach),
            "ask-to-attach" => Ok(AssignMode::AskToAttach),
            _ => Err(format!(
                "'{}' is not a valid AssignmentMode",
                untrusted.escape_default()
            )),
        }
    }
}

/// The port an assignment names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PortSpec {
    /// A PCI path (migrated from a legacy BDF at load where possible).
    Path(PciPath),
    /// `*`: any port (a `--device` assignment).
    Any,
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortSpec::Path(p) => p.fmt(f),
            PortSpec::Any => f.write_str("*"),
        }
    }
}

/// Why a loaded assignment cannot be used at start. It is kept and written
/// back as it was; listings flag it and starting its qube is refused until
/// it is fixed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssignmentProblem {
    /// An option that is unknown or has an unparsable value.
    BadOption {
        /// The option's name.
        name: String,
        /// Its value.
        value: String,
        /// Why it was refused.
        why: String,
    },
    /// The port id is neither a path nor a legacy BDF.
    BadPort(String),
    /// The identity is not a valid device id.
    BadIdentity(String),
    /// A mode other than `required`: loaded and kept, never attached.
    NotRequired(AssignMode),
}

impl fmt::Display for AssignmentProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadOption { name, value, why } => {
                write!(f, "option {name}={value} is not valid: {why}")
            }
            Self::BadPort(p) => write!(f, "port id '{p}' is not a PCI path"),
            Self::BadIdentity(i) => write!(f, "device id '{i}' is not valid"),
            Self::NotRequired(m) => write!(
                f,
                "mode {} is not attached at start (PCI takes required only)",
                m.name()
            ),
        }
    }
}

/// One PCI assignment of a qube.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciAssignment {
    /// The backend qube (always dom0 for PCI in practice).
    pub backend: QubeName,
    /// The port, or `*`.
    pub port: PortSpec,
    /// The device identity; `None` is `*` (any device at that port).
    pub identity: Option<DeviceIdentity>,
    /// The mode.
    pub mode: AssignMode,
    /// The typed options (only valid ones; see `problems`).
    pub options: AssignOptions,
    /// What makes this assignment unusable at start, if anything.
    pub problems: Vec<AssignmentProblem>,
    /// The port id as the file had it, when it was migrated or unparsable,
    /// so an unusable entry is written back unchanged.
    pub raw_port: Option<String>,
}

impl PciAssignment {
    /// A new `required` assignment with no problems.
    pub fn required(
        backend: QubeName,
        port: PortSpec,
        identity: Option<DeviceIdentity>,
        options: AssignOptions,
    ) -> Self {
        Self {
            backend,
            port,
            identity,
            mode: AssignMode::Required,
            options,
            problems: Vec::new(),
            raw_port: None,
        }
    }

    /// The identity as text: the device id, or `*`.
    pub fn identity_text(&self) -> String {
        self.identity
            .as_ref()
            .map_or_else(|| "*".to_owned(), ToString::to_string)
    }

    /// `backend:port:devid`, as Qubes names a device in messages.
    pub fn device_text(&self) -> String {
        format!("{}:{}:{}", self.backend, self.port, self.identity_text())
    }

    /// `true` when the assignment key (backend, port, identity) equals the
    /// other's, comparing `*` literally (Qubes' duplicate and unassign rule).
    pub fn same_key(&self, other: &Self) -> bool {
        self.backend == other.backend && self.port == other.port && self.identity == other.identity
    }
}

/// A qube as policy sees it: the typed facts, with properties resolved to
/// their effective values (explicit, or the default Qubes would compute).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qube {
    /// The qid.
    pub qid: u32,
    /// The name.
    pub name: QubeName,
    /// The class.
    pub class: QubeClass,
    /// Effective `virt_mode`.
    pub virt_mode: VirtMode,
    /// `virt_mode` was set explicitly (not a default).
    pub virt_mode_explicit: bool,
    /// Effective `memory` in MiB.
    pub memory: u64,
    /// Effective `maxmem` in MiB (0: no memory balancing).
    pub maxmem: u64,
    /// Effective `vcpus`.
    pub vcpus: u32,
    /// The qube's PCI assignments, in file order.
    pub pci: Vec<PciAssignment>,
}
