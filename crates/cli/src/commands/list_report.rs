//! `qvm-pci list` from one `qpci.List` reply: the same table as the Qubes
//! path of [`super::list`], built without the client's N+1 requests.

use std::collections::BTreeMap;

use qpci_api::ext::ListReport;
use qpci_api::{Device, describe_pci};
use qpci_types::DeviceIdentity;

use super::list::{Listing, Row, details_of, device_row, render_rows};
use crate::error::CliError;
use crate::flags::{ListArgs, Prog};
use crate::resolve::fnmatch;

/// `k=v, k2=v2` of an option map.
fn options_text(options: &BTreeMap<String, String>) -> String {
    options
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `<label> (<what>)` or `<label> (<what>: k=v, ...)`.
fn entry(label: &str, what: &str, options: &BTreeMap<String, String>) -> String {
    if options.is_empty() {
        format!("{label} ({what})")
    } else {
        format!("{label} ({what}: {})", options_text(options))
    }
}

/// The qubes `list` scans, as `resolve::list_vms` chooses them.
fn scanned(prog: &Prog, report: &ListReport, args: &ListArgs) -> Result<Vec<String>, CliError> {
    let known: Vec<&str> = report.qubes.iter().map(|q| q.name.as_str()).collect();
    if args.all {
        return Ok(known
            .iter()
            .filter(|k| **k != "dom0" && !args.exclude.iter().any(|e| e == *k))
            .map(|k| (*k).to_owned())
            .collect());
    }
    if args.vms.is_empty() {
        return Ok(known.iter().map(|k| (*k).to_owned()).collect());
    }
    let mut out: Vec<String> = Vec::new();
    for name in &args.vms {
        let matched: Vec<&str> = if crate::vmargs::is_pattern(name) {
            known.iter().copied().filter(|k| fnmatch(name, k)).collect()
        } else if known.contains(&name.as_str()) {
            vec![name.as_str()]
        } else {
            return Err(crate::flags::usage_error(
                &prog.main,
                format!("no such domain: {}", crate::flags::quote(name)),
            ));
        };
        for m in matched {
            if !out.iter().any(|o| o == m) {
                out.push(m.to_owned());
            }
        }
    }
    Ok(out)
}

/// Builds the listing from a `qpci.List` reply.
pub fn list(
    prog: &Prog,
    mut report: ListReport,
    args: &ListArgs,
    tty: bool,
) -> Result<Listing, CliError> {
    let vms = scanned(prog, &report, args)?;
    let scans_dom0 = vms.iter().any(|v| v == "dom0");
    let mut shown: Vec<Device> = Vec::new();
    let mut rows: Vec<Row> = Vec::new();
    for d in &report.devices {
        let attached_to_scanned = d
            .used_by
            .iter()
            .any(|u| u.attached && vms.contains(&u.qube));
        if !(attached_to_scanned || (scans_dom0 && d.backend == "dom0")) {
            continue;
        }
        let used: Vec<String> = d
            .used_by
            .iter()
            .filter(|u| u.attached && u.qube != d.backend)
            .map(|u| entry(&u.qube, "attached", &u.options))
            .collect();
        rows.push(device_row(d, used.join(", "), args));
        shown.push(d.clone());
    }
    // Attachments of a device that is no longer present.
    for q in report.qubes.iter().filter(|q| vms.contains(&q.name)) {
        for a in q.attached.iter().filter(|a| !a.present) {
            let id: DeviceIdentity = a
                .device_id
                .parse()
                .unwrap_or_else(|_| DeviceIdentity::unknown());
            let mut qubes = vec![format!("{}:{}", a.backend, a.port_id)];
            if args.with_sbdf {
                qubes.push(a.sbdf.to_string());
            }
            qubes.push(describe_pci(&qpci_api::Names::default(), &id));
            qubes.push(entry(&q.name, "attached", &a.options));
            rows.push(Row {
                qubes,
                details: details_of(None),
            });
        }
    }
    if args.assignments {
        for r in &report.assignment_rows {
            let used: Vec<String> = r
                .used_by
                .iter()
                .filter(|u| u.qube != r.backend)
                .map(|u| entry(&format!("*{}", u.qube), &u.mode, &u.options))
                .collect();
            let present = report
                .devices
                .iter()
                .find(|d| d.backend == r.backend && d.port_id.to_string() == r.port_id);
            rows.push(Row {
                qubes: vec![
                    format!("{}:{}", r.backend, r.port_id),
                    r.description.clone(),
                    used.join(", "),
                ],
                details: details_of(present),
            });
        }
    } else {
        report.assignment_rows.clear();
    }
    rows.sort();
    report.devices = shown;
    let inventory = qpci_api::InventoryReport {
        devices: report.devices.clone(),
        warnings: report.warnings.clone(),
        iommu_groups: report.iommu_groups,
        flavour: report.flavour,
    };
    if args.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| CliError::runtime(&prog.main, format!("cannot encode JSON: {e}")))?;
        return Ok(Listing {
            text: text + "\n",
            report: inventory,
        });
    }
    Ok(Listing {
        text: render_rows(rows, args, tty),
        report: inventory,
    })
}
