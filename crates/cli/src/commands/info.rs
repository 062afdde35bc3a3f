//! `qvm-pci info` (spec/qvm-tools.md §2.7), plus qpci's `--details` and
//! `--json`.

use qpci_api::{Device, DeviceReport, ResetDomainKind, ResetSource};
use qpci_types::PciAddress;

use crate::error::CliError;
use crate::flags::Prog;

/// Qubes' lines: the description, `device ID: ...`, then the data items
/// (`sbdf: ...`).
pub fn qubes_lines(d: &Device) -> String {
    format!(
        "{}\ndevice ID: {}\nsbdf: {}\n",
        d.description, d.device_id, d.sbdf
    )
}

fn list(addresses: &[PciAddress]) -> String {
    if addresses.is_empty() {
        "none".to_owned()
    } else {
        addresses
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn or_none(value: Option<&str>) -> &str {
    value.unwrap_or("none")
}

fn named(name: Option<&str>, id: String) -> String {
    match name {
        Some(n) => format!("{n} ({id})"),
        None => id,
    }
}

/// qpci's extra lines: everything the inventory knows.
pub fn detail_lines(d: &Device) -> String {
    let mut lines: Vec<(&str, String)> = Vec::new();
    let hex =
        |v: Option<qpci_api::Hex16>| v.map_or_else(|| "unknown".to_owned(), |v| v.to_string());
    lines.push(("port ID", d.port_id.to_string()));
    lines.push(("vendor", named(d.names.vendor.as_deref(), hex(d.vendor_id))));
    lines.push((
        "product",
        named(d.names.product.as_deref(), hex(d.product_id)),
    ));
    if d.subsystem_vendor_id.is_some() || d.subsystem_id.is_some() {
        let ids = format!("{}:{}", hex(d.subsystem_vendor_id), hex(d.subsystem_id));
        let name = match (&d.names.subsystem_vendor, &d.names.subsystem) {
            (Some(v), Some(s)) => Some(format!("{v} {s}")),
            (Some(v), None) => Some(v.clone()),
            (None, Some(s)) => Some(s.clone()),
            (None, None) => None,
        };
        lines.push(("subsystem", named(name.as_deref(), ids)));
    }
    let class_names: Vec<&str> = [&d.names.class, &d.names.subclass, &d.names.prog_if]
        .into_iter()
        .filter_map(|n| n.as_deref())
        .collect();
    let class_id = d
        .class
        .map_or_else(|| "unknown".to_owned(), |c| c.to_string());
    let class_name = (!class_names.is_empty()).then(|| class_names.join(" / "));
    lines.push(("class", named(class_name.as_deref(), class_id)));
    if let Some(r) = d.revision {
        lines.push(("revision", r.to_string()));
    }
    lines.push(("driver", or_none(d.driver.as_deref()).to_owned()));
    lines.push((
        "driver override",
        or_none(d.driver_override.as_deref()).to_owned(),
    ));
    lines.push((
        "IOMMU group",
        match d.iommu_group {
            Some(g) => format!("{g} (other members: {})", list(&d.iommu_group_peers)),
            None => "none".to_owned(),
        },
    ));
    let source = match d.reset.source {
        ResetSource::ResetMethod => "from reset_method",
        ResetSource::ConfigSpace => "from config space",
        ResetSource::Unknown => "unknown",
    };
    let methods = if d.reset.methods.is_empty() {
        "none".to_owned()
    } else {
        d.reset.methods.join(", ")
    };
    lines.push(("reset methods", format!("{methods} ({source})")));
    lines.push((
        "reset domain",
        match d.reset_domain.kind {
            ResetDomainKind::Alone => "alone (function-level reset)".to_owned(),
            ResetDomainKind::Bus => format!(
                "secondary bus reset of bridge {}, which also resets: {}",
                d.reset_domain
                    .bridge
                    .map_or_else(|| "unknown".to_owned(), |b| b.to_string()),
                list(
                    &d.reset_domain
                        .members
                        .iter()
                        .copied()
                        .filter(|m| *m != d.sbdf)
                        .collect::<Vec<_>>()
                )
            ),
            ResetDomainKind::None => "none (no function-level reset, on a root bus)".to_owned(),
        },
    ));
    lines.push((
        "dom0-critical",
        d.critical
            .as_ref()
            .map_or_else(|| "no".to_owned(), |c| format!("{} ({})", c.reason, c.tag)),
    ));
    lines.push(("bridge", yes_no(d.is_bridge)));
    lines.push(("boot VGA", yes_no(d.boot_vga)));
    lines.push((
        "NUMA node",
        d.numa_node
            .map_or_else(|| "unknown".to_owned(), |n| n.to_string()),
    ));
    lines.push(("other functions", list(&d.siblings)));
    if let Some(pf) = d.sriov.physfn {
        lines.push(("SR-IOV physical function", pf.to_string()));
    }
    if !d.sriov.virtfns.is_empty() || d.sriov.numvfs.is_some() {
        lines.push(("SR-IOV virtual functions", list(&d.sriov.virtfns)));
    }
    for w in &d.warnings {
        lines.push(("warning", w.clone()));
    }
    lines.iter().map(|(k, v)| format!("{k}: {v}\n")).collect()
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

/// The text `info` prints for a resolved device.
pub fn render(prog: &Prog, d: Device, json: bool, details: bool) -> Result<String, CliError> {
    if json {
        let text = serde_json::to_string_pretty(&DeviceReport { device: d })
            .map_err(|e| CliError::runtime(&prog.main, format!("cannot encode JSON: {e}")))?;
        return Ok(text + "\n");
    }
    let mut text = qubes_lines(&d);
    if details {
        text.push_str(&detail_lines(&d));
    }
    Ok(text)
}
