//! Argument parsing, second stage: qube names and device arguments resolved
//! against a [`Backend`] (spec/qvm-tools.md §1.5, §2.3).

use qpci_api::Device;
use qpci_types::{DeviceIdentity, QubeName};

use crate::backend::{Backend, DeviceRef};
use crate::error::CliError;
use crate::flags::{CheckedDevice, DevId, DeviceArg, PortArg, Prog, quote};

/// Said after `no such domain` when the source has no qube registry.
const NO_REGISTRY_HINT: &str =
    "without qpcid, the qpci daemon, only dom0 is known; qubes come with the daemon";

/// Every qube name the backend knows, sorted; `dom0` alone without a registry.
pub fn known_qubes(
    prog: &Prog,
    backend: &mut dyn Backend,
) -> Result<(Vec<String>, bool), CliError> {
    let names = backend
        .qube_names()
        .map_err(|e| CliError::from_backend(&prog.main, e))?;
    Ok(match names {
        Some(mut names) => {
            names.sort();
            (names, true)
        }
        None => (vec!["dom0".to_owned()], false),
    })
}

fn no_such_domain(prog: &Prog, name: &str, registry: bool) -> CliError {
    let mut message = format!("no such domain: {}", quote(name));
    if !registry {
        message.push_str(&format!(" ({NO_REGISTRY_HINT})"));
    }
    crate::flags::usage_error(&prog.main, message)
}

/// Checks the qube argument of attach/detach/assign/unassign. Without a
/// registry any valid qube name passes (the request itself then explains
/// that the daemon is needed).
pub fn check_vm(prog: &Prog, backend: &mut dyn Backend, vm: &str) -> Result<(), CliError> {
    let (known, registry) = known_qubes(prog, backend)?;
    let ok = if registry {
        known.iter().any(|k| k == vm)
    } else {
        vm.parse::<QubeName>().is_ok()
    };
    if ok {
        Ok(())
    } else {
        Err(no_such_domain(prog, vm, registry))
    }
}

/// Shell-style matching of `*`, `?`, `[...]` and `[!...]`, as Python's
/// `fnmatch` does for qube names.
pub fn fnmatch(pattern: &str, name: &str) -> bool {
    fn class_match(class: &[char], c: char) -> bool {
        let (negate, class) = match class.split_first() {
            Some(('!', rest)) => (true, rest),
            _ => (false, class),
        };
        let mut i = 0;
        let mut hit = false;
        while i < class.len() {
            if i + 2 < class.len() && class[i + 1] == '-' {
                hit |= class[i] <= c && c <= class[i + 2];
                i += 3;
            } else {
                hit |= class[i] == c;
                i += 1;
            }
        }
        hit != negate
    }
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|k| go(&p[1..], &n[k..])),
            Some('?') => !n.is_empty() && go(&p[1..], &n[1..]),
            Some('[') => {
                let close = p.iter().skip(2).position(|c| *c == ']').map(|i| i + 2);
                match (close, n.first()) {
                    (Some(end), Some(c)) => {
                        class_match(&p[1..end], *c) && go(&p[end + 1..], &n[1..])
                    }
                    (Some(_), None) => false,
                    (None, _) => n.first() == Some(&'[') && go(&p[1..], &n[1..]),
                }
            }
            Some(c) => n.first() == Some(c) && go(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

/// The qubes `list` scans: the names given (patterns expanded, duplicates
/// dropped, order kept), `--all` (every qube but dom0, minus `--exclude`),
/// or every qube.
pub fn list_vms(
    prog: &Prog,
    backend: &mut dyn Backend,
    names: &[String],
    all: bool,
    exclude: &[String],
) -> Result<Vec<String>, CliError> {
    let (known, registry) = known_qubes(prog, backend)?;
    if all {
        return Ok(known
            .into_iter()
            .filter(|k| k != "dom0" && !exclude.contains(k))
            .collect());
    }
    if names.is_empty() {
        return Ok(known);
    }
    let mut out: Vec<String> = Vec::new();
    for name in names {
        let matched: Vec<&String> = if name.contains(['*', '?', '[', '!', ']']) {
            known.iter().filter(|k| fnmatch(name, k)).collect()
        } else {
            let found = known.iter().find(|k| *k == name);
            vec![found.ok_or_else(|| no_such_domain(prog, name, registry))?]
        };
        for m in matched {
            if !out.contains(m) {
                out.push(m.clone());
            }
        }
    }
    Ok(out)
}

/// A device argument resolved against its backend.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The backend qube.
    pub backend: String,
    /// The port.
    pub port: PortArg,
    /// The device present at the port, `None` for an unknown device.
    pub device: Option<Device>,
    /// The effective device id: the present device's, the one given, or
    /// the unknown id; `None` is `*`.
    pub devid: Option<DeviceIdentity>,
}

impl Resolved {
    /// The Admin API device reference; a port that cannot exist is a
    /// command error naming why.
    pub fn to_ref(&self) -> Result<DeviceRef, CliError> {
        let port = match &self.port {
            PortArg::Any => None,
            PortArg::Path(p) => Some(p.clone()),
            PortArg::Impossible { text, why } => {
                return Err(CliError::command(format!(
                    "port {} cannot exist: {why}",
                    quote(text)
                )));
            }
        };
        Ok(DeviceRef {
            backend: self.backend.clone(),
            port,
            device_id: self.devid.clone(),
        })
    }

    /// The port as text, `*` for any.
    pub fn port_text(&self) -> String {
        match &self.port {
            PortArg::Any => "*".to_owned(),
            PortArg::Path(p) => p.to_string(),
            PortArg::Impossible { text, .. } => text.clone(),
        }
    }

    /// `backend:port:devid` as Qubes prints a device in messages.
    pub fn text(&self) -> String {
        let id = self
            .devid
            .as_ref()
            .map_or_else(|| "*".to_owned(), ToString::to_string);
        format!("{}:{}:{id}", self.backend, self.port_text())
    }
}

/// `backend vm dom0 doesn't expose pci device '00_99.0'`.
pub fn not_exposed(backend: &str, port: &str) -> String {
    format!(
        "backend vm {backend} doesn't expose pci device {}",
        quote(port)
    )
}

/// Resolves a checked device argument (§2.3). `info` refuses a device id
/// that differs from the present device's; elsewhere it becomes an unknown
/// device at that port.
pub fn resolve_device(
    prog: &Prog,
    backend: &mut dyn Backend,
    checked: CheckedDevice,
    for_info: bool,
) -> Result<Resolved, CliError> {
    let arg: DeviceArg = checked?;
    let (known, _) = known_qubes(prog, backend)?;
    if !known.contains(&arg.backend) {
        return Err(CliError::runtime(&prog.main, "no such backend vm!"));
    }
    let report = backend
        .available(&arg.backend)
        .map_err(|e| CliError::from_backend(&prog.main, e))?;
    let present = match &arg.port {
        PortArg::Path(port) => report.devices.into_iter().find(|d| &d.port_id == port),
        PortArg::Any | PortArg::Impossible { .. } => None,
    };
    let given = match &arg.devid {
        DevId::Absent => None,
        DevId::Any => Some(None),
        DevId::Id(id) => Some(Some(id.clone())),
    };
    let (device, devid) = match (present, given) {
        (Some(d), None) => {
            let id = d.device_id.clone();
            (Some(d), Some(id))
        }
        (Some(d), Some(Some(id))) if d.device_id == id => (Some(d), Some(id)),
        (Some(_), Some(_)) if for_info => {
            return Err(CliError::runtime(
                &prog.main,
                "this option works only for explicitly given port ID and does not support device ID",
            ));
        }
        (_, Some(given)) => (None, given),
        (None, None) => (None, Some(DeviceIdentity::unknown())),
    };
    Ok(Resolved {
        backend: arg.backend,
        port: arg.port,
        device,
        devid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(fnmatch("sys-*", "sys-usb"));
        assert!(fnmatch("sys-?et", "sys-net"));
        assert!(fnmatch("[ws]*", "work"));
        assert!(!fnmatch("[!ws]*", "work"));
        assert!(fnmatch("d[a-z]m0", "dom0"));
        assert!(!fnmatch("sys-*", "dom0"));
        assert!(fnmatch("*", ""));
    }
}
