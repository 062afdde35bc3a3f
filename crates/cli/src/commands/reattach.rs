//! `reattach` (qpci's own subcommand, DESIGN.md M9): the explicit, guarded
//! give-back of a device from the stub driver to its dom0 driver, through
//! `qpci.host.Reattach`. Qubes has no such subcommand and no alias for it.

use qpci_api::ext::{ReattachReport, ReattachRequest};

use crate::backend::Backend;
use crate::error::CliError;
use crate::flags::{CheckedDevice, DevId, Prog};
use crate::resolve::{not_exposed, resolve_device};

/// What a reattach prints: `out` on stdout, `warnings` on stderr.
#[derive(Debug, Default)]
pub struct Printed {
    /// The steps and the result.
    pub out: String,
    /// `Warning: ...` lines.
    pub warnings: String,
}

/// Resolves the device, asks the daemon, and renders its report.
pub fn reattach(
    prog: &Prog,
    backend: &mut dyn Backend,
    device: CheckedDevice,
    force: bool,
    dry_run: bool,
) -> Result<Printed, CliError> {
    let explicit_id = matches!(&device, Ok(a) if matches!(a.devid, DevId::Id(_)));
    let r = resolve_device(prog, backend, device, false)?;
    let target = r.to_ref()?;
    let (Some(port), Some(present)) = (&target.port, &r.device) else {
        return Err(CliError::command(not_exposed(&r.backend, &r.port_text())));
    };
    if explicit_id && target.device_id.as_ref() != Some(&present.device_id) {
        return Err(CliError::command(format!(
            "{}:{port} is {}, not the device id given",
            r.backend, present.device_id
        )));
    }
    let request = ReattachRequest { force, dry_run };
    let report = backend
        .reattach(&r.backend, port, &request)
        .map_err(|e| CliError::from_backend(&prog.main, e))?;
    Ok(render(&report))
}

/// The report as text.
pub fn render(r: &ReattachReport) -> Printed {
    let name = match &r.port_id {
        Some(p) => format!("{}:{p}", r.backend),
        None => format!("{}:{}", r.backend, r.sbdf),
    };
    let from = r.driver_before.as_deref().unwrap_or("no driver");
    let mut out = String::new();
    let head = if r.performed {
        format!("Reattaching {name} ({}) from {from} to dom0:\n", r.sbdf)
    } else if r.compute_only && !r.dry_run {
        format!(
            "qpcid does not write to the host (sim backend without --emulate-kernel); reattaching {name} ({}) from {from} would:\n",
            r.sbdf
        )
    } else {
        format!(
            "Dry run: reattaching {name} ({}) from {from} would:\n",
            r.sbdf
        )
    };
    out.push_str(&head);
    if !r.modules.is_empty() {
        let mods: Vec<String> = r
            .modules
            .iter()
            .map(|m| {
                let mut t = format!("{} ({}", m.module, m.source);
                if m.builtin {
                    t.push_str(", built in");
                }
                if m.blacklisted {
                    t.push_str(", blacklisted");
                }
                t.push(')');
                t
            })
            .collect();
        out.push_str(&format!("  host driver module: {}\n", mods.join(", ")));
    }
    for step in &r.steps {
        out.push_str(&format!("  {step}\n"));
    }
    match (&r.driver_after, r.performed) {
        (Some(d), true) => out.push_str(&format!("{name} is back on its dom0 driver {d}.\n")),
        _ => out.push_str("Nothing was changed.\n"),
    }
    let mut warnings = String::new();
    for f in &r.forced {
        warnings.push_str(&format!("Warning: --force: {f}\n"));
    }
    for w in &r.warnings {
        warnings.push_str(&format!("Warning: {w}\n"));
    }
    Printed { out, warnings }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_steps_and_result() {
        let r = ReattachReport {
            backend: "dom0".into(),
            port_id: Some("00_14.0".parse().unwrap()),
            sbdf: "0000:00:14.0".parse().unwrap(),
            performed: true,
            driver_before: Some("vfio-pci".into()),
            driver_after: Some("xhci_hcd".into()),
            steps: vec!["write 0000:00:14.0 to sys/bus/pci/drivers_probe".into()],
            warnings: vec!["no reset method".into()],
            ..ReattachReport::default()
        };
        let p = render(&r);
        assert!(
            p.out
                .starts_with("Reattaching dom0:00_14.0 (0000:00:14.0) from vfio-pci to dom0:\n")
        );
        assert!(
            p.out
                .ends_with("dom0:00_14.0 is back on its dom0 driver xhci_hcd.\n")
        );
        assert_eq!(p.warnings, "Warning: no reset method\n");
        let dry = render(&ReattachReport {
            performed: false,
            dry_run: true,
            driver_after: None,
            ..r
        });
        assert!(dry.out.starts_with("Dry run:"), "{}", dry.out);
        assert!(dry.out.ends_with("Nothing was changed.\n"));
    }
}
