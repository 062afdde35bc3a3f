//! `qvm-ls` formats and column values (spec/qvm-tools.md §4.1), with a
//! per-run cache of what the daemon was asked.

use std::collections::{BTreeMap, HashMap};

use crate::admin::{Admin, PropValue, VmEntry};
use crate::transport::ApiError;

/// The formats, in Qubes' order.
pub const FORMATS: [(&str, &[&str]); 6] = [
    (
        "simple",
        &["NAME", "STATE", "CLASS", "LABEL", "TEMPLATE", "NETVM"],
    ),
    (
        "network",
        &["NAME", "STATE", "NETVM", "IP", "IPBACK", "GATEWAY"],
    ),
    (
        "kernel",
        &["NAME", "STATE", "CLASS", "TEMPLATE", "KERNEL", "KERNELOPTS"],
    ),
    (
        "full",
        &["NAME", "STATE", "CLASS", "LABEL", "QID", "XID", "UUID"],
    ),
    (
        "prefs",
        &[
            "NAME",
            "LABEL",
            "TEMPLATE",
            "NETVM",
            "VCPUS",
            "INITIALMEM",
            "MAXMEM",
            "VIRT-MODE",
        ],
    ),
    (
        "disk",
        &[
            "NAME",
            "STATE",
            "DISK",
            "PRIV-CURR",
            "PRIV-MAX",
            "PRIV-USED",
            "ROOT-CURR",
            "ROOT-MAX",
            "ROOT-USED",
        ],
    ),
];

/// Columns sorted as numbers.
pub const NUMERIC: [&str; 13] = [
    "MEMORY",
    "DISK",
    "PRIV-CURR",
    "PRIV-MAX",
    "ROOT-CURR",
    "XID",
    "ROOT-MAX",
    "MAXMEM",
    "QREXEC-TIMEOUT",
    "SHUTDOWN-TIMEOUT",
    "VCPUS",
    "PRIV-USED",
    "ROOT-USED",
];

/// Columns computed by the client (the rest are properties).
pub const SPECIAL: [(&str, &str); 8] = [
    ("NAME", "the qube's name"),
    ("STATE", "the power state"),
    ("CLASS", "the class"),
    ("MEMORY", "memory in use, MiB (running qubes)"),
    ("FLAGS", "type, power state and U N R i D A flags"),
    ("GATEWAY", "the netvm's gateway"),
    ("IPBACK", "the gateway this qube offers to others"),
    (
        "INITIALMEM",
        "the initial memory (the memory property), MiB",
    ),
];

/// The columns of a format.
pub fn format_columns(name: &str) -> Option<Vec<String>> {
    FORMATS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, c)| c.iter().map(|s| (*s).to_owned()).collect())
}

/// What has been asked of the daemon during this run.
pub struct Cache<'a> {
    admin: Admin<'a>,
    props: HashMap<String, BTreeMap<String, PropValue>>,
    states: HashMap<String, u64>,
    tags: HashMap<String, Vec<String>>,
}

impl<'a> Cache<'a> {
    /// An empty cache over `admin`.
    pub fn new(admin: Admin<'a>) -> Self {
        Self {
            admin,
            props: HashMap::new(),
            states: HashMap::new(),
            tags: HashMap::new(),
        }
    }

    /// The daemon.
    pub fn admin(&self) -> Admin<'a> {
        self.admin
    }

    /// Every property of `vm` (GetAll, once).
    pub fn props(&mut self, vm: &str) -> Result<&BTreeMap<String, PropValue>, ApiError> {
        if !self.props.contains_key(vm) {
            let all = self.admin.property_get_all(vm)?;
            self.props.insert(vm.to_owned(), all);
        }
        Ok(self.props.get(vm).unwrap_or_else(empty_props))
    }

    /// One property's display text; `None` when unavailable or empty.
    pub fn prop(&mut self, vm: &str, name: &str) -> Result<Option<String>, ApiError> {
        Ok(self
            .props(vm)?
            .get(name)
            .filter(|v| !v.value.is_empty())
            .map(|v| v.value.clone()))
    }

    /// The tags of `vm` (once).
    pub fn tags(&mut self, vm: &str) -> Result<Vec<String>, ApiError> {
        if let Some(t) = self.tags.get(vm) {
            return Ok(t.clone());
        }
        let t = self.admin.tag_list(vm)?;
        self.tags.insert(vm.to_owned(), t.clone());
        Ok(t)
    }

    fn mem_mib(&mut self, vm: &str) -> Result<u64, ApiError> {
        if let Some(m) = self.states.get(vm) {
            return Ok(*m);
        }
        let m = self.admin.current_state(vm)?.mem_kib / 1024;
        self.states.insert(vm.to_owned(), m);
        Ok(m)
    }

    /// The cell of `column` for `vm`; `-` when unavailable.
    pub fn cell(&mut self, vm: &VmEntry, column: &str) -> Result<String, ApiError> {
        let value = match column {
            "NAME" => Some(vm.name.clone()),
            "STATE" => Some(vm.state.clone()),
            "CLASS" => Some(vm.class.clone()),
            "MEMORY" if vm.is_running() => Some(self.mem_mib(&vm.name)?.to_string()),
            "MEMORY" => None,
            "FLAGS" => Some(self.flags(vm)?),
            "GATEWAY" => match self.prop(&vm.name, "netvm")? {
                Some(netvm) => self.prop(&netvm, "gateway")?,
                None => None,
            },
            "IPBACK" => self.prop(&vm.name, "gateway")?,
            "INITIALMEM" => self.prop(&vm.name, "memory")?,
            "TAGS" => Some(self.tags(&vm.name)?.join(",")).filter(|t| !t.is_empty()),
            "DISK" | "PRIV-CURR" | "PRIV-MAX" | "PRIV-USED" | "ROOT-CURR" | "ROOT-MAX"
            | "ROOT-USED" => None,
            other => {
                let name = other.replace('-', "_").to_lowercase();
                self.prop(&vm.name, &name)?
            }
        };
        Ok(value
            .filter(|v| !v.is_empty() && v != "None")
            .unwrap_or_else(|| "-".to_owned()))
    }

    fn flags(&mut self, vm: &VmEntry) -> Result<String, ApiError> {
        let mut type_letter = match vm.class.as_str() {
            "AdminVM" => '0',
            "AppVM" => 'a',
            "TemplateVM" => 't',
            "StandaloneVM" => 's',
            "DispVM" => 'd',
            _ => '-',
        };
        if vm.class != "AdminVM" && self.prop(&vm.name, "virt_mode")?.as_deref() == Some("hvm") {
            type_letter = type_letter.to_ascii_uppercase();
        }
        let power = match vm.state.as_str() {
            "Running" => 'r',
            "Transient" => 't',
            "Paused" => 'p',
            "Suspended" => 's',
            "Halting" => 'h',
            "Dying" => 'd',
            "Crashed" => 'c',
            _ => '-',
        };
        let mut out = String::from(type_letter);
        out.push(power);
        for (prop, letter) in [
            ("updateable", 'U'),
            ("provides_network", 'N'),
            ("installed_by_rpm", 'R'),
            ("", 'i'),
            ("debug", 'D'),
            ("autostart", 'A'),
        ] {
            let on = !prop.is_empty() && self.prop(&vm.name, prop)?.as_deref() == Some("True");
            out.push(if on { letter } else { '-' });
        }
        Ok(out)
    }
}

fn empty_props<'x>() -> &'x BTreeMap<String, PropValue> {
    static EMPTY: BTreeMap<String, PropValue> = BTreeMap::new();
    &EMPTY
}

/// The sort key of a cell: a number for numeric columns (a trailing `%`
/// ignored, anything else 0).
pub fn numeric_key(cell: &str) -> f64 {
    cell.trim_end_matches('%').parse::<f64>().unwrap_or(0.0)
}
