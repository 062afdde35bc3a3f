//! `qvm-pci list` (spec/qvm-tools.md §2.5), plus qpci's `--details` and
//! `--json`.

use std::collections::BTreeMap;

use qpci_api::{Device, InventoryReport};

use crate::backend::{AssignRequest, Backend, DeviceRef};
use crate::error::CliError;
use crate::flags::{ListArgs, Prog};
use crate::resolve::list_vms;
use crate::table;

/// What `list` produced: the text to print and the warnings to log.
pub struct Listing {
    /// The table or the JSON document.
    pub text: String,
    /// Scan warnings (shown with `-v`).
    pub report: InventoryReport,
}

/// One table row before rendering.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Row {
    /// The Qubes columns, compared as a tuple.
    pub qubes: Vec<String>,
    /// qpci's `--details` columns.
    pub details: Vec<String>,
}

fn same_device(r: &DeviceRef, d: &Device) -> bool {
    r.backend == d.backend
        && r.port.as_ref() == Some(&d.port_id)
        && r.device_id.as_ref() == Some(&d.device_id)
}

/// qpci's `--details` cells of a device (`-` for none).
pub fn details_of(d: Option<&Device>) -> Vec<String> {
    let dash = || "-".to_owned();
    match d {
        None => vec![dash(), dash(), dash(), dash()],
        Some(d) => vec![
            d.driver.clone().unwrap_or_else(dash),
            d.iommu_group.map_or_else(dash, |g| g.to_string()),
            d.reset_summary(),
            d.critical.as_ref().map_or_else(dash, |c| c.reason.clone()),
        ],
    }
}

/// The row of a device.
pub fn device_row(d: &Device, used_by: String, args: &ListArgs) -> Row {
    let mut qubes = vec![d.ident()];
    if args.with_sbdf {
        qubes.push(d.sbdf.to_string());
    }
    qubes.push(d.description.clone());
    qubes.push(used_by);
    Row {
        qubes,
        details: details_of(Some(d)),
    }
}

fn matches(
    a: &AssignRequest,
    backend: &str,
    port: &Option<String>,
    devid: &Option<String>,
) -> bool {
    let a_port = a.device.port.as_ref().map(ToString::to_string);
    let a_id = a.device.device_id.as_ref().map(ToString::to_string);
    a.device.backend == backend
        && (a_port.is_none() || a_port == *port)
        && (a_id.is_none() || a_id == *devid)
}

fn add(d: Device, devices: &mut Vec<Device>) {
    if !devices
        .iter()
        .any(|x| x.backend == d.backend && x.port_id == d.port_id && x.device_id == d.device_id)
    {
        devices.push(d);
    }
}

/// Runs `list`: rows for every device the scanned qubes expose or hold, and
/// with `-s` one row per distinct assignment of any qube.
pub fn list(
    prog: &Prog,
    backend: &mut dyn Backend,
    args: &ListArgs,
    tty: bool,
) -> Result<Listing, CliError> {
    let err = |e| CliError::from_backend(&prog.main, e);
    if let Some(report) = backend.list_report().map_err(err)? {
        return super::list_report::list(prog, report, args, tty);
    }
    let vms = list_vms(prog, backend, &args.vms, args.all, &args.exclude)?;
    let (all_qubes, _) = crate::resolve::known_qubes(prog, backend)?;
    let mut report = InventoryReport::default();
    let mut devices: Vec<Device> = Vec::new();
    for vm in &vms {
        let exposed = backend.available(vm).map_err(err)?;
        if vm == "dom0" {
            report.warnings = exposed.warnings.clone();
            report.iommu_groups = exposed.iommu_groups;
            report.flavour = exposed.flavour;
        }
        for d in exposed.devices {
            add(d, &mut devices);
        }
        for a in backend.attached(vm).map_err(err)? {
            let from = backend.available(&a.device.backend).map_err(err)?;
            if let Some(d) = from.devices.into_iter().find(|d| same_device(&a.device, d)) {
                add(d, &mut devices);
            }
        }
    }
    // Who holds each device: every qube but the backend, in name order.
    let mut attached: BTreeMap<String, Vec<AssignRequest>> = BTreeMap::new();
    let mut assigned: BTreeMap<String, Vec<AssignRequest>> = BTreeMap::new();
    for q in &all_qubes {
        attached.insert(q.clone(), backend.attached(q).map_err(err)?);
        if args.assignments {
            assigned.insert(q.clone(), backend.assigned(q).map_err(err)?);
        }
    }
    let mut rows: Vec<Row> = devices
        .iter()
        .map(|d| {
            let used: Vec<String> = attached
                .iter()
                .filter(|(q, _)| **q != d.backend)
                .flat_map(|(q, list)| {
                    list.iter()
                        .filter(|a| same_device(&a.device, d))
                        .map(move |a| {
                            if a.options.is_empty() {
                                format!("{q} (attached)")
                            } else {
                                format!("{q} (attached: {})", a.options)
                            }
                        })
                })
                .collect();
            device_row(d, used.join(", "), args)
        })
        .collect();
    if args.assignments {
        rows.extend(assignment_rows(&assigned, &devices));
    }
    rows.sort();
    devices.sort_by_key(|d| d.sbdf);
    report.devices = devices;
    if args.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| CliError::runtime(&prog.main, format!("cannot encode JSON: {e}")))?;
        return Ok(Listing {
            text: text + "\n",
            report,
        });
    }
    Ok(Listing {
        text: render_rows(rows, args, tty),
        report,
    })
}

/// The table text: the header on a terminal, then the sorted rows.
pub fn render_rows(rows: Vec<Row>, args: &ListArgs, tty: bool) -> String {
    let mut cells: Vec<Vec<String>> = Vec::new();
    if tty {
        let mut header = vec!["BACKEND:DEVID".to_owned()];
        if args.with_sbdf {
            header.push("SBDF".to_owned());
        }
        header.extend(["DESCRIPTION", "USED BY"].map(str::to_owned));
        if args.details {
            header.extend(["DRIVER", "IOMMU GROUP", "RESET", "CRITICAL"].map(str::to_owned));
        }
        cells.push(header);
    }
    for row in rows {
        let mut line = row.qubes;
        if args.details {
            line.extend(row.details);
        }
        cells.push(line);
    }
    table::render(&cells)
}

/// One row per distinct (backend, port, device id) assigned to any qube.
fn assignment_rows(
    assigned: &BTreeMap<String, Vec<AssignRequest>>,
    devices: &[Device],
) -> Vec<Row> {
    let mut keys: Vec<(String, Option<String>, Option<String>)> = Vec::new();
    for a in assigned.values().flatten() {
        let key = (
            a.device.backend.clone(),
            a.device.port.as_ref().map(ToString::to_string),
            a.device.device_id.as_ref().map(ToString::to_string),
        );
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys.into_iter()
        .map(|(backend, port, devid)| {
            let used: Vec<String> = assigned
                .iter()
                .filter(|(q, _)| **q != backend)
                .flat_map(|(q, list)| {
                    list.iter()
                        .filter(|a| matches(a, &backend, &port, &devid))
                        .map(move |a| match a.options.is_empty() {
                            true => format!("*{q} (required)"),
                            false => format!("*{q} (required: {})", a.options),
                        })
                })
                .collect();
            let present = devices
                .iter()
                .find(|d| d.backend == backend && Some(d.port_id.to_string()) == port);
            Row {
                qubes: vec![
                    format!("{backend}:{}", port.as_deref().unwrap_or("*")),
                    devid.clone().unwrap_or_else(|| "any device".to_owned()),
                    used.join(", "),
                ],
                details: details_of(present),
            }
        })
        .collect()
}
