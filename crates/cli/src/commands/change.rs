//! `attach`, `detach`, `assign` and `unassign` (spec/qvm-tools.md §2.8–2.10):
//! Qubes' client-side rules, then the request to the backend.

use qpci_types::{AssignOptions, DeviceIdentity};

use crate::backend::{AssignRequest, Backend, DeviceRef};
use crate::error::CliError;
use crate::flags::{CheckedDevice, Mode, PortArg, Prog, Scope};
use crate::resolve::{check_vm, not_exposed, resolve_device};

fn backend_err(prog: &Prog) -> impl Fn(crate::backend::BackendError) -> CliError + '_ {
    move |e| CliError::from_backend(&prog.main, e)
}

/// qpci's note after assigning to a running qube (DESIGN.md M4).
pub fn next_start_note(backend: &mut dyn Backend, vm: &str, device: &DeviceRef) -> Option<String> {
    let state = backend.qube_state(vm).ok().flatten()?;
    if matches!(state.as_str(), "Halted" | "NA") {
        return None;
    }
    let port = device
        .port
        .as_ref()
        .map_or_else(|| "*".to_owned(), ToString::to_string);
    Some(format!(
        "{vm} is running: PCI devices are attached only at start, so {}:{port} will be attached at its next start.\n",
        device.backend
    ))
}

/// Qubes' deny-list warning (§2.8 step 7), if a pattern of `denied` matches
/// the device's interface.
pub fn denied_warning(denied: &str, device: Option<&qpci_api::Device>) -> Option<String> {
    let interface = device?.device_id.to_string();
    let interface = interface.rsplit(':').next().unwrap_or_default().to_owned();
    let codes: Vec<char> = interface.chars().collect();
    let patterns: Vec<char> = denied.chars().collect();
    let hit = patterns.chunks(7).any(|p| {
        codes.chunks(7).any(|c| {
            c.len() == 7 && p.len() == 7 && p.iter().zip(c).all(|(p, c)| *p == '*' || p == c)
        })
    });
    hit.then(|| {
        "Warning: The assigned device is on the denied list.\n           Auto-attach will work, but make sure that the assignment is correct.\n"
            .to_owned()
    })
}

/// `assign` (§2.8). Returns what to print on stdout (unless `-q`).
pub fn assign(
    prog: &Prog,
    backend: &mut dyn Backend,
    vm: &str,
    device: CheckedDevice,
    options: AssignOptions,
    mode: Mode,
    scope: Scope,
) -> Result<String, CliError> {
    check_vm(prog, backend, vm)?;
    let explicit_id = matches!(&device, Ok(a) if a.devid != crate::flags::DevId::Absent);
    let mut r = resolve_device(prog, backend, device, false)?;
    if scope == Scope::PortOnly {
        r.devid = None;
    } else if r.device.is_none() && !explicit_id {
        return Err(CliError::command(not_exposed(&r.backend, &r.port_text())));
    }
    if scope == Scope::DeviceOnly {
        r.port = PortArg::Any;
    }
    if mode != Mode::Required {
        return Err(CliError::command(
            "PCI devices cannot be assigned as not required.",
        ));
    }
    let request = AssignRequest {
        device: r.to_ref()?,
        options,
    };
    backend.assign(vm, &request).map_err(backend_err(prog))?;
    let denied = backend.devices_denied(vm).map_err(backend_err(prog))?;
    let mut out = denied_warning(&denied, r.device.as_ref()).unwrap_or_default();
    out.push_str(&next_start_note(backend, vm, &request.device).unwrap_or_default());
    Ok(out)
}

/// `attach` (§2.9): refused without `-p`, else `assign --required`.
pub fn attach(
    prog: &Prog,
    backend: &mut dyn Backend,
    vm: &str,
    device: CheckedDevice,
    options: AssignOptions,
    persistent: bool,
) -> Result<String, CliError> {
    check_vm(prog, backend, vm)?;
    let r = resolve_device(prog, backend, device, false)?;
    if r.device.is_none() {
        return Err(CliError::runtime(
            &prog.main,
            not_exposed(&r.backend, &r.port_text()),
        ));
    }
    if !persistent {
        return Err(CliError::command(
            "PCI devices cannot be attached manually, did you mean `qvm-pci assign --required ...`",
        ));
    }
    let request = AssignRequest {
        device: r.to_ref()?,
        options,
    };
    backend.assign(vm, &request).map_err(backend_err(prog))?;
    Ok(next_start_note(backend, vm, &request.device).unwrap_or_default())
}

/// qpci's note after a detach: the device stays on the stub driver.
pub fn stays_on_stub(devices: &[DeviceRef]) -> String {
    devices
        .iter()
        .map(|d| {
            let port = d
                .port
                .as_ref()
                .map_or_else(|| "*".to_owned(), ToString::to_string);
            format!(
                "{0}:{port} stays bound to the PCI stub driver; it is not given back to dom0 automatically (to give it back: qvm-pci reattach {0}:{port}).\n",
                d.backend
            )
        })
        .collect()
}

/// `detach` (§2.10). Returns what to print on stdout (unless `-q`).
pub fn detach(
    prog: &Prog,
    backend: &mut dyn Backend,
    vm: &str,
    device: Option<CheckedDevice>,
) -> Result<String, CliError> {
    check_vm(prog, backend, vm)?;
    let Some(device) = device else {
        let mut done = Vec::new();
        for a in backend.attached(vm).map_err(backend_err(prog))? {
            backend.detach(vm, &a.device).map_err(backend_err(prog))?;
            done.push(a.device);
        }
        return Ok(stays_on_stub(&done));
    };
    let r = resolve_device(prog, backend, device, false)?;
    if r.port != PortArg::Any {
        if r.device.is_none() {
            return Err(CliError::command(format!("{} not found.", r.text())));
        }
        let target = r.to_ref()?;
        backend.detach(vm, &target).map_err(backend_err(prog))?;
        return Ok(stays_on_stub(&[target]));
    }
    let mine: Vec<DeviceRef> = backend
        .attached(vm)
        .map_err(backend_err(prog))?
        .into_iter()
        .map(|a| a.device)
        .filter(|d| d.backend == r.backend)
        .collect();
    if mine.is_empty() {
        let shown = DeviceRef {
            backend: r.backend.clone(),
            port: None,
            device_id: Some(r.devid.clone().unwrap_or_else(DeviceIdentity::unknown)),
        };
        return Err(CliError::command(format!("{shown} is not attached.")));
    }
    for d in &mine {
        backend.detach(vm, d).map_err(backend_err(prog))?;
    }
    Ok(stays_on_stub(&mine))
}

/// `unassign` (§2.10). Returns the hint to print when a device stays
/// attached.
pub fn unassign(
    prog: &Prog,
    backend: &mut dyn Backend,
    vm: &str,
    device: Option<CheckedDevice>,
    scope: Scope,
) -> Result<Option<String>, CliError> {
    check_vm(prog, backend, vm)?;
    let targets: Vec<DeviceRef> = match device {
        Some(device) => {
            let mut r = resolve_device(prog, backend, device, false)?;
            match scope {
                Scope::PortOnly => r.devid = None,
                Scope::DeviceOnly => r.port = PortArg::Any,
                Scope::Both => {}
            }
            vec![r.to_ref()?]
        }
        None => backend
            .assigned(vm)
            .map_err(backend_err(prog))?
            .into_iter()
            .map(|a| a.device)
            .collect(),
    };
    let mut still: Vec<String> = Vec::new();
    let mut back: Vec<String> = Vec::new();
    for t in targets {
        backend.unassign(vm, &t).map_err(backend_err(prog))?;
        let attached = backend.attached(vm).map_err(backend_err(prog))?;
        let port_match =
            |a: &DeviceRef| a.backend == t.backend && (t.port.is_none() || a.port == t.port);
        for a in attached.iter().map(|a| &a.device).filter(|a| port_match(a)) {
            let port = a
                .port
                .as_ref()
                .map_or_else(|| "*".to_owned(), ToString::to_string);
            still.push(format!("qvm-pci detach {vm} {}:{port}", a.backend));
            back.push(format!("qvm-pci reattach {}:{port}", a.backend));
        }
    }
    if still.is_empty() {
        return Ok(None);
    }
    Ok(Some(format!(
        "Unassigned. To detach you can now restart domain or run: \n \t{}\nOnce detached, the device stays bound to the PCI stub driver; it is not given back to dom0 automatically (to give it back: {}).\n",
        still.join("\n\t"),
        back.join(", ")
    )))
}
