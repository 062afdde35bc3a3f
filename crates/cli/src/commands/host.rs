//! qpci's host subcommands: `doctor`, `groups`, `setup-defaults`,
//! `boot-hide`, `boot-unhide`, each one `qpci.host.*` call and its report
//! as text or JSON.

use std::fmt::Write as _;

use qpci_api::doctor::{
    BootHideReport, BootHideRequest, DoctorFinding, DoctorReport, DoctorRequest, GroupMember,
    GroupsReport, METHOD_BOOT_HIDE, METHOD_BOOT_UNHIDE, METHOD_DOCTOR, METHOD_GROUPS,
    METHOD_SETUP_DEFAULTS, SetupDefaultsReport, SetupDefaultsRequest,
};

use crate::backend::{Backend, BackendError};
use crate::error::CliError;
use crate::flags::{HostCmd, PortArg, Prog};

/// What a run prints, and whether it exits 1 (the doctor found problems).
#[derive(Debug, Default)]
pub struct Printed {
    /// Standard output.
    pub out: String,
    /// Exit with status 1 after printing.
    pub failed: bool,
}

/// Calls `method` with `request` (JSON) and parses its reply as `$reply`.
macro_rules! call {
    ($prog:expr, $backend:expr, $method:expr, $request:expr, $reply:ty) => {{
        let mut payload = serde_json::to_vec($request).map_err(|e| {
            CliError::runtime(&$prog.main, format!("cannot encode {}: {e}", $method))
        })?;
        if payload == b"null" {
            payload.clear();
        }
        let data = $backend
            .call_qpci($method, &payload)
            .map_err(|e| CliError::from_backend(&$prog.main, e))?;
        serde_json::from_slice::<$reply>(&data).map_err(|e| {
            CliError::from_backend(
                &$prog.main,
                BackendError::Malformed(format!(
                    "qpcid sent a malformed reply to {}: {e}",
                    $method
                )),
            )
        })?
    }};
}

/// A report as pretty JSON, one document.
macro_rules! to_json {
    ($prog:expr, $value:expr) => {
        serde_json::to_string_pretty($value)
            .map(|s| s + "\n")
            .map_err(|e| CliError::runtime(&$prog.main, e.to_string()))?
    };
}

/// Runs a host subcommand; `verbose` also prints `info` findings in a sweep.
pub fn run(
    prog: &Prog,
    backend: &mut dyn Backend,
    cmd: HostCmd,
    verbose: u8,
) -> Result<Printed, CliError> {
    match cmd {
        HostCmd::Doctor { device, vm, json } => {
            let port_id = match device.map(|d| *d).transpose()? {
                None => None,
                Some(arg) => {
                    if arg.backend != "dom0" {
                        return Err(CliError::command(format!(
                            "only dom0 exposes PCI devices, not {}",
                            arg.backend
                        )));
                    }
                    match arg.port {
                        PortArg::Path(p) => Some(p),
                        PortArg::Any => {
                            return Err(CliError::command(
                                "doctor needs a port: dom0:PORT such as dom0:00_14.0",
                            ));
                        }
                        PortArg::Impossible { text, why } => {
                            return Err(CliError::command(format!("{text}: {why}")));
                        }
                    }
                }
            };
            let single = port_id.is_some();
            let r = call!(
                prog,
                backend,
                METHOD_DOCTOR,
                &DoctorRequest { port_id, vm },
                DoctorReport
            );
            let out = if json {
                to_json!(prog, &r)
            } else {
                render_doctor(&r, single || verbose > 0)
            };
            Ok(Printed {
                out,
                failed: r.problems_found,
            })
        }
        HostCmd::Groups { json } => {
            let r = call!(prog, backend, METHOD_GROUPS, &(), GroupsReport);
            let out = if json {
                to_json!(prog, &r)
            } else {
                render_groups(&r)
            };
            Ok(Printed { out, failed: false })
        }
        HostCmd::SetupDefaults {
            dry_run,
            force,
            json,
        } => {
            let request = SetupDefaultsRequest { dry_run, force };
            let r = call!(
                prog,
                backend,
                METHOD_SETUP_DEFAULTS,
                &request,
                SetupDefaultsReport
            );
            let out = if json {
                to_json!(prog, &r)
            } else {
                render_defaults(&r)
            };
            Ok(Printed { out, failed: false })
        }
        HostCmd::BootHide {
            unhide,
            dry_run,
            json,
        } => {
            let method = if unhide {
                METHOD_BOOT_UNHIDE
            } else {
                METHOD_BOOT_HIDE
            };
            let r = call!(
                prog,
                backend,
                method,
                &BootHideRequest { dry_run },
                BootHideReport
            );
            let out = if json {
                to_json!(prog, &r)
            } else {
                render_hide(&r, unhide)
            };
            Ok(Printed { out, failed: false })
        }
    }
}

fn finding_text(out: &mut String, f: &DoctorFinding) {
    let _ = writeln!(
        out,
        "{} [{}] {}",
        f.severity.to_uppercase(),
        f.kind,
        f.message
    );
    for e in &f.evidence {
        let _ = writeln!(out, "    evidence: {} = {}", e.file, e.value);
    }
    let _ = writeln!(out, "    fix: {}", f.fix);
}

/// The doctor's report as text; `infos` shows `info` findings too.
pub fn render_doctor(r: &DoctorReport, infos: bool) -> String {
    let mut out = String::new();
    let iommu = if r.iommu { "active" } else { "not active" };
    let flavour = match r.flavour {
        qpci_api::Flavour::Xen => "Xen dom0",
        qpci_api::Flavour::Kvm => "KVM",
    };
    let _ = writeln!(out, "Host: {flavour}, IOMMU {iommu}");
    let mut counts = [0usize; 3];
    for f in &r.findings {
        let i = match f.severity.as_str() {
            "error" => 0,
            "warning" => 1,
            _ => 2,
        };
        counts[i] += 1;
        if i < 2 || infos {
            out.push('\n');
            finding_text(&mut out, f);
        }
    }
    let healthy: Vec<String> = r
        .devices
        .iter()
        .filter(|d| d.counts[0] + d.counts[1] == 0)
        .filter_map(|d| {
            let port = d.port_id.as_ref()?;
            Some(format!("dom0:{port} ({})", d.description))
        })
        .collect();
    if !healthy.is_empty() && (infos || healthy.len() <= 3) {
        out.push('\n');
        for h in &healthy {
            let _ = writeln!(out, "OK {h}: nothing keeps it from being passed through");
        }
    }
    let _ = writeln!(
        out,
        "\n{} device(s) looked at: {} error(s), {} warning(s), {} note(s){}.",
        r.devices.len(),
        counts[0],
        counts[1],
        counts[2],
        if infos || counts[2] == 0 {
            ""
        } else {
            " (-v shows the notes)"
        }
    );
    out.push_str(if r.problems_found {
        "Problems found.\n"
    } else {
        "No problems found.\n"
    });
    out
}

fn member_line(out: &mut String, m: &GroupMember) {
    let port = m
        .port_id
        .as_ref()
        .map_or_else(|| "?".to_owned(), |p| format!("dom0:{p}"));
    let mut why = Vec::new();
    if m.is_bridge {
        why.push("bridge".to_owned());
    }
    if let Some(c) = &m.critical {
        why.push(format!("dom0-critical: {c}"));
    }
    if !m.assigned_to.is_empty() {
        why.push(format!("assigned to {}", m.assigned_to.join(", ")));
    }
    let _ = writeln!(
        out,
        "  {port:<24} {:<14} {:<14} {}{}",
        m.sbdf.to_string(),
        m.driver.as_deref().unwrap_or("-"),
        m.description,
        if why.is_empty() {
            String::new()
        } else {
            format!(" [{}]", why.join("; "))
        }
    );
}

/// Devices by IOMMU group as text.
pub fn render_groups(r: &GroupsReport) -> String {
    let mut out = String::new();
    if !r.iommu_groups {
        out.push_str(match r.flavour {
            qpci_api::Flavour::Xen => {
                "No IOMMU groups: on a Xen dom0, Xen owns the IOMMU (`qvm-pci doctor` asks it).\n"
            }
            qpci_api::Flavour::Kvm => {
                "No IOMMU groups: no IOMMU is active on this host (see `qvm-pci doctor`).\n"
            }
        });
    }
    for g in &r.groups {
        let _ = writeln!(
            out,
            "IOMMU group {} ({}):",
            g.group,
            if g.assignable {
                "its endpoints can go to one qube together"
            } else {
                "not assignable: dom0 keeps a member"
            }
        );
        for m in &g.devices {
            member_line(&mut out, m);
        }
    }
    if !r.ungrouped.is_empty() {
        let _ = writeln!(out, "Without an IOMMU group:");
        for m in &r.ungrouped {
            member_line(&mut out, m);
        }
    }
    out
}

/// The setup-defaults decisions as text.
pub fn render_defaults(r: &SetupDefaultsReport) -> String {
    let mut out = String::new();
    let would = if r.dry_run { "Would " } else { "" };
    for q in &r.qubes {
        if q.action == "create" {
            let on = q
                .template
                .as_ref()
                .map(|t| format!(" on {t}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{}reate {} ({}{on}; {})",
                if r.dry_run { "Would c" } else { "C" },
                q.name,
                q.class,
                q.properties.join(" ")
            );
        }
    }
    for d in &r.decisions {
        let port = d
            .port_id
            .as_ref()
            .map_or_else(|| d.sbdf.to_string(), |p| format!("dom0:{p} ({})", d.sbdf));
        let verb = match (d.action.as_str(), r.dry_run) {
            ("assign", true) => "would assign".to_owned(),
            ("assign", false) => "assigned".to_owned(),
            (other, _) => other.to_owned(),
        };
        let _ = writeln!(
            out,
            "{verb:<16} {port} {} -> {}: {}",
            d.description, d.qube, d.reason
        );
        for w in &d.warnings {
            let _ = writeln!(out, "    warning: {w}");
        }
    }
    if r.decisions.is_empty() {
        out.push_str("No network or USB controller found.\n");
    } else if !r.changed {
        let _ = writeln!(out, "{would}change nothing: the defaults are in place.");
    }
    out
}

/// The boot-hide report as text.
pub fn render_hide(r: &BootHideReport, unhide: bool) -> String {
    let mut out = String::new();
    let mechanism = match r.mechanism.as_str() {
        "qubes" => "rd.qubes.hide_pci= on the kernel command line (Qubes' initramfs)",
        "xen" => "xen-pciback.hide= on the kernel command line",
        _ => "a driver_override udev rule per device (vfio-pci)",
    };
    if !unhide {
        let _ = writeln!(out, "Boot-time hiding through {mechanism}.");
        for d in &r.devices {
            let port = d
                .port_id
                .as_ref()
                .map(|p| format!("dom0:{p} "))
                .unwrap_or_default();
            let _ = writeln!(out, "  {port}({}) for {}", d.sbdf, d.qubes.join(", "));
        }
    }
    for f in r.files.iter().filter(|f| f.action != "unchanged") {
        let _ = writeln!(out, "{} {}:", f.action, f.path);
        if let Some(content) = &f.content {
            let block: Vec<&str> = content
                .lines()
                .skip_while(|l| f.path.ends_with("grub") && !l.starts_with("# >>> qpci"))
                .collect();
            let shown = if block.is_empty() {
                content.lines().collect()
            } else {
                block
            };
            for l in shown {
                let _ = writeln!(out, "    {l}");
            }
        }
    }
    match (&r.not_written_because, r.written) {
        (_, true) => out.push_str("Written.\n"),
        (Some(why), false) => {
            let _ = writeln!(out, "Not written: {why}.");
        }
        (None, false) => {}
    }
    if r.written || r.not_written_because.as_deref() != Some("nothing to change") {
        let _ = writeln!(out, "To make it take effect, run:");
        for a in &r.apply {
            let _ = writeln!(out, "    {a}");
        }
    }
    for n in &r.notes {
        let _ = writeln!(out, "Note: {n}");
    }
    out
}
