//! What the dialog reads from qpcid: one [`Snapshot`] of a qube, its
//! properties, its assignments and every host device, and the errors that
//! make the dialog show a [`Fatal`] window instead.
//!
//! Two round trips: `qpci.List` (devices with their users, every qube's
//! state and assignments) and `admin.vm.property.GetAll` of the qube.

use std::collections::BTreeMap;

use qpci_api::ext::{Assignment, ListReport, METHOD_LIST};
use qpci_api::{CallError, Client, Device, Flavour};

/// One property as `GetAll` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prop {
    /// The value as text (empty when there is none).
    pub value: String,
    /// `true` when the qube holds no explicit value (this is the default).
    pub is_default: bool,
}

impl Prop {
    /// The value as an integer, 0 when it is empty or not a number.
    pub fn int(&self) -> u64 {
        self.value.trim().parse().unwrap_or(0)
    }
}

/// Everything the dialog shows about one qube, as qpcid reported it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The qube.
    pub qube: String,
    /// Its class, `AppVM`.
    pub class: String,
    /// Its power state, `Running`, `Halted`.
    pub state: String,
    /// Its properties by name.
    pub props: BTreeMap<String, Prop>,
    /// Its stored PCI assignments.
    pub assignments: Vec<Assignment>,
    /// Every device dom0 exposes, sorted by port id, with its users.
    pub devices: Vec<Device>,
    /// Every qube's power state by name.
    pub states: BTreeMap<String, String>,
    /// The host flavour (permissive is a Xen option).
    pub flavour: Flavour,
    /// `true` when the host exposes IOMMU groups.
    pub iommu_groups: bool,
}

impl Snapshot {
    /// `true` when the qube is not halted (changes apply at its next start).
    pub fn running(&self) -> bool {
        !self.state.is_empty() && self.state != "Halted"
    }

    /// A property, or an empty default one.
    pub fn prop(&self, name: &str) -> Prop {
        self.props.get(name).cloned().unwrap_or(Prop {
            value: String::new(),
            is_default: true,
        })
    }

    /// The device at `port`, if present.
    pub fn device_at(&self, port: &str) -> Option<&Device> {
        self.devices.iter().find(|d| d.port_id.to_string() == port)
    }
}

/// Why the dialog cannot show a qube at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fatal {
    /// Nothing answers at the socket (and none could be started).
    NotRunning {
        /// What was tried, for the user.
        detail: String,
    },
    /// The socket or the daemon refused this user.
    PermissionDenied {
        /// The OS or daemon message.
        detail: String,
    },
    /// The qube does not exist.
    NoSuchQube {
        /// The name asked for.
        qube: String,
    },
    /// Anything else (a malformed reply, an unexpected exception).
    Other {
        /// The message.
        detail: String,
    },
}

impl Fatal {
    /// The window title.
    pub fn title(&self) -> &'static str {
        match self {
            Self::NotRunning { .. } => "qpcid is not running",
            Self::PermissionDenied { .. } => "Permission denied",
            Self::NoSuchQube { .. } => "No such qube",
            Self::Other { .. } => "Cannot load the qube settings",
        }
    }

    /// The explanation.
    pub fn message(&self) -> String {
        match self {
            Self::NotRunning { detail } => format!(
                "The qube settings come from qpcid, and no qpcid answers.\n{detail}\n\nStart it (qpcid, or systemctl start qpcid) and press Retry."
            ),
            Self::PermissionDenied { detail } => format!(
                "qpcid does not let this user in.\n{detail}\n\nRun as a user of the qubes group, or as the user who owns the per-user qpcid."
            ),
            Self::NoSuchQube { qube } => format!(
                "There is no qube named '{qube}'.\n\nqvm-ls lists the qubes; qvm-create makes one."
            ),
            Self::Other { detail } => detail.clone(),
        }
    }
}

/// Classifies a failed call.
pub fn fatal_of(e: &CallError, qube: &str) -> Fatal {
    match e {
        CallError::Connect { path, source } | CallError::Io { path, source } => {
            if source.kind() == std::io::ErrorKind::PermissionDenied {
                Fatal::PermissionDenied {
                    detail: format!("{}: {source}", path.display()),
                }
            } else {
                Fatal::NotRunning {
                    detail: format!("Nothing answers at {}: {source}.", path.display()),
                }
            }
        }
        CallError::Exception(x) if x.class == "QubesVMNotFoundError" => Fatal::NoSuchQube {
            qube: qube.to_owned(),
        },
        CallError::Exception(x) if x.class.contains("PermissionDenied") => {
            Fatal::PermissionDenied {
                detail: x.message.clone(),
            }
        }
        other => Fatal::Other {
            detail: other.to_string(),
        },
    }
}

/// Parses a `GetAll` reply: `name default=B type=T value` per line, with
/// `\\` and `\n` escaped inside a line.
pub fn parse_get_all(untrusted: &[u8]) -> BTreeMap<String, Prop> {
    let text = String::from_utf8_lossy(untrusted);
    let mut out = BTreeMap::new();
    for line in text.split('\n').filter(|l| !l.is_empty()) {
        let Some((name, rest)) = line.split_once(' ') else {
            continue;
        };
        let Some((default, rest)) = rest.split_once(' ') else {
            continue;
        };
        let value = rest.split_once(' ').map_or("", |(_, v)| v);
        out.insert(
            name.to_owned(),
            Prop {
                value: qpci_api::getall::unescape(value),
                is_default: default == "default=True",
            },
        );
    }
    out
}

/// Loads a snapshot of `qube`.
pub fn load(client: &Client, qube: &str) -> Result<Snapshot, Fatal> {
    let report: ListReport = client
        .call_json(METHOD_LIST, "", "dom0", b"")
        .map_err(|e| fatal_of(&e, qube))?;
    let Some(listing) = report.qubes.iter().find(|q| q.name == qube) else {
        return Err(Fatal::NoSuchQube {
            qube: qube.to_owned(),
        });
    };
    let props = client
        .call("admin.vm.property.GetAll", "", qube, b"")
        .map_err(|e| fatal_of(&e, qube))?;
    Ok(Snapshot {
        qube: qube.to_owned(),
        class: listing.class.clone(),
        state: listing.state.clone(),
        props: parse_get_all(&props),
        assignments: listing.assignments.clone(),
        states: report
            .qubes
            .iter()
            .map(|q| (q.name.clone(), q.state.clone()))
            .collect(),
        devices: report.devices,
        flavour: report.flavour,
        iommu_groups: report.iommu_groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_all_lines() {
        let props = parse_get_all(
            b"maxmem default=True type=int 0\nkernel default=False type=str \nkernelopts default=False type=str a\\\\b\\nc\nvirt_mode default=True type=str hvm\n",
        );
        assert_eq!(props["maxmem"].int(), 0);
        assert!(props["maxmem"].is_default);
        assert_eq!(props["kernel"].value, "");
        assert!(!props["kernel"].is_default);
        assert_eq!(props["kernelopts"].value, "a\\b\nc");
        assert_eq!(props["virt_mode"].value, "hvm");
    }

    #[test]
    fn connection_errors_are_classified() {
        let e = CallError::Connect {
            path: "/x".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        assert!(matches!(fatal_of(&e, "w"), Fatal::PermissionDenied { .. }));
        let e = CallError::Connect {
            path: "/x".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert!(matches!(fatal_of(&e, "w"), Fatal::NotRunning { .. }));
    }
}
