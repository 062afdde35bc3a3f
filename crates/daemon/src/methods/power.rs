//! Power: `admin.vm.Start/Shutdown/Kill/Pause/Unpause/CurrentState`
//! (§3.2, §3.16, §5.2, §9.13), through `qpci_core::orchestrate` and the
//! policy, on whatever backend the daemon runs.

use qpci_api::Event;
use qpci_core::libvirt::{SpecExtras, render_domain, spec_from_plan};
use qpci_core::orchestrate::{self, OrchestrateError, RenderError};
use qpci_core::policy::{Refusal, StartDecision, StartPlan};
use qpci_core::registry::{PowerState, Qube, Registry};
use qpci_host::HostFlavour;
use qpci_types::QubeName;

use super::{event, qube, refused, spec};
use crate::dispatch::{Call, Ctx, Exc, Handler, MethodSpec, Outcome};

/// Deepest netvm chain started before a qube (deeper is a loop).
const MAX_NETVM_CHAIN: usize = 16;

pub(crate) fn methods() -> Vec<(MethodSpec, Handler)> {
    vec![
        (
            spec("admin.vm.Start", None, Some(false), Some(false), true).acting(),
            start,
        ),
        (
            spec("admin.vm.Shutdown", None, None, Some(false), true).acting(),
            shutdown,
        ),
        (
            spec("admin.vm.Kill", None, Some(false), Some(false), true).acting(),
            kill,
        ),
        (
            spec("admin.vm.Pause", None, Some(false), Some(false), true).acting(),
            pause,
        ),
        (
            spec("admin.vm.Unpause", None, Some(false), Some(false), true).acting(),
            unpause,
        ),
        (
            spec(
                "admin.vm.CurrentState",
                None,
                Some(false),
                Some(false),
                false,
            ),
            current_state,
        ),
    ]
}

/// A runtime change: nothing for the state file, but events to publish.
fn runtime_change(events: Vec<Event>) -> Outcome {
    Outcome {
        data: Vec::new(),
        changed: false,
        events,
    }
}

/// A feature's value is set and not empty (Python truthiness of a string).
fn feature_on(registry: &Registry, qube: &str, name: &str) -> Option<bool> {
    registry
        .feature_check_with_template(qube, name)
        .ok()
        .map(|v| !v.is_empty())
}

/// What the domain XML needs from the registry beyond the snapshot.
pub(crate) fn extras(registry: &Registry, qube: &Qube, plan: &StartPlan) -> SpecExtras {
    let name = qube.name.as_str();
    let prop = |p: &str| {
        registry
            .get_property(name, p)
            .map(|r| r.value)
            .unwrap_or_default()
    };
    let display = plan.devices.iter().any(|d| {
        d.identity
            .interfaces()
            .iter()
            .any(|i| i.pci_class().is_some_and(|c| c.base() == 0x03))
    });
    SpecExtras {
        uuid: registry.uuid_of(name).and_then(|u| u.parse().ok()),
        kernel: prop("kernel"),
        kernelopts: prop("kernelopts"),
        memory_hotplug: feature_on(registry, name, "memory-hotplug").unwrap_or(false),
        e820_host: feature_on(registry, name, "pci-e820-host").unwrap_or(true),
        dom0_s0ix: registry
            .feature("dom0", "suspend-s0ix")
            .is_ok_and(|v| !v.is_empty()),
        drop_nomodeset: display && registry.feature(name, "no-nomodeset").is_err(),
    }
}

/// The domain XML of a start of `qube` with `plan`.
pub(crate) fn render(
    registry: &Registry,
    qube: &Qube,
    plan: &StartPlan,
    flavour: HostFlavour,
) -> Result<String, RenderError> {
    let extras = extras(registry, qube, plan);
    render_domain(&spec_from_plan(qube, plan, flavour, &extras)).map_err(|e| Box::new(e) as _)
}

/// Where the hypervisor's own log is, for `Start failed` messages.
fn log_hint(flavour: HostFlavour, qube: &QubeName) -> String {
    match flavour {
        HostFlavour::Xen => "/var/log/libvirt/libxl/libxl-driver.log".to_owned(),
        HostFlavour::Kvm => format!("/var/log/libvirt/qemu/{qube}.log"),
    }
}

/// An orchestration failure on the wire: the refusal's own text, or
/// Qubes' `Start failed: <message>, see <log> for details`.
fn orchestrate_exc(e: &OrchestrateError, flavour: HostFlavour, qube: &QubeName) -> Exc {
    match e {
        OrchestrateError::Refused(r) => refused(r),
        OrchestrateError::Render(cause) => {
            Exc::new("QubesException", format!("Start failed: {cause}"))
        }
        OrchestrateError::Start(cause) => Exc::new(
            "QubesException",
            format!(
                "Start failed: {cause}, see {} for details",
                log_hint(flavour, qube)
            ),
        ),
        OrchestrateError::Backend(_) => Exc::new("QubesException", e.wire_text()),
    }
}

/// §9.13 step 2: `prohibit-start`.
pub(crate) fn check_prohibited(registry: &Registry, qube: &str) -> Result<(), Exc> {
    match registry.feature(qube, "prohibit-start") {
        Ok(v) if !v.is_empty() => Err(Exc::new(
            "QubesException",
            format!("Qube start is prohibited. Rationale: {v}"),
        )),
        _ => Ok(()),
    }
}

/// Starts `name` if halted: `prohibit-start`, the PCI checks (plan), its
/// netvm first (recursively), then the backend start with the rendered XML.
fn start_qube(
    ctx: &mut Ctx<'_>,
    name: &QubeName,
    depth: usize,
    events: &mut Vec<Event>,
) -> Result<(), Exc> {
    if name.is_dom0() {
        return Err(refused(&Refusal::StartDom0));
    }
    if ctx.hypervisor.state(name).is_active() {
        return Ok(());
    }
    check_prohibited(ctx.registry, name.as_str())?;
    let snapshot = qube(ctx, name.as_str())?;
    let inventory = ctx.host.inventory(true);
    match orchestrate::plan(&*ctx.hypervisor, &snapshot, &inventory, ctx.flavour) {
        Err(r) => return Err(refused(&r)),
        Ok(StartDecision::AlreadyRunning) => return Ok(()),
        Ok(StartDecision::Start(_)) => {}
    }
    let netvm = ctx
        .registry
        .get_property(name.as_str(), "netvm")
        .map(|r| r.value)
        .unwrap_or_default();
    if let Ok(netvm) = netvm.parse::<QubeName>()
        && !netvm.is_dom0()
        && depth < MAX_NETVM_CHAIN
        && !ctx.hypervisor.state(&netvm).is_active()
    {
        start_qube(ctx, &netvm, depth + 1, events)?;
    }
    let flavour = ctx.flavour;
    // Host writes (M8): the engine binds the devices to the stub first,
    // when qpcid writes to the host at all (--emulate-kernel); a failed
    // bind is rolled back and refuses the start.
    let inventory = if ctx.writer.writes() {
        let fresh = ctx.host.inventory(true);
        if let Ok(StartDecision::Start(plan)) =
            orchestrate::plan(&*ctx.hypervisor, &snapshot, &fresh, flavour)
        {
            events.extend(super::stub::bind_for_start(ctx, &plan)?);
        }
        fresh
    } else {
        inventory
    };
    let registry = &*ctx.registry;
    orchestrate::start(
        &mut *ctx.hypervisor,
        &snapshot,
        &inventory,
        flavour,
        |plan| render(registry, &snapshot, plan, flavour),
    )
    .map_err(|e| orchestrate_exc(&e, flavour, name))?;
    events.push(event(name.as_str(), "domain-start", &[]));
    Ok(())
}

/// `admin.vm.Start`: a qube that is not halted is a no-op (`0\0`).
fn start(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let mut events = Vec::new();
    start_qube(ctx, &call.dest, 0, &mut events)?;
    Ok(runtime_change(events))
}

/// The running qubes (other than `dest` and dom0) whose property `prop`
/// has the value `dest`, in name order.
fn running_users(ctx: &Ctx<'_>, dest: &QubeName, prop: &str) -> Vec<String> {
    ctx.registry
        .names()
        .into_iter()
        .filter(|n| !n.is_dom0() && n != dest && ctx.hypervisor.state(n).is_active())
        .filter(|n| {
            ctx.registry
                .get_property(n.as_str(), prop)
                .is_ok_and(|r| r.value == dest.as_str())
        })
        .map(|n| n.to_string())
        .collect()
}

/// §9.13 Shutdown step 2: running qubes depending on `dest`.
fn check_dependents(ctx: &Ctx<'_>, dest: &QubeName) -> Result<(), Exc> {
    let provides = ctx
        .registry
        .get_property(dest.as_str(), "provides_network")
        .is_ok_and(|r| r.value == "True");
    if provides {
        let users = running_users(ctx, dest, "netvm");
        if !users.is_empty() {
            return Err(Exc::new(
                "QubesVMInUseError",
                format!(
                    "There are other VMs connected to this VM: {}",
                    users.join(", ")
                ),
            ));
        }
    }
    let audio = running_users(ctx, dest, "audiovm");
    if !audio.is_empty() {
        return Err(Exc::new(
            "QubesVMInUseError",
            format!(
                "There are running VMs using this VM as AudioVM: {}",
                audio.join(", ")
            ),
        ));
    }
    let gui = running_users(ctx, dest, "guivm");
    if !gui.is_empty() {
        return Err(Exc::new(
            "QubesVMError",
            format!(
                "There are running VMs using this VM as GuiVM: {}",
                gui.join(", ")
            ),
        ));
    }
    Ok(())
}

/// `admin.vm.Shutdown[+force][+wait]`: the sim backend halts at once, so
/// `wait` changes nothing.
fn shutdown(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let force = match call.untrusted_arg.as_str() {
        "" | "wait" => false,
        "force" | "force+wait" | "wait+force" => true,
        _ => return Err(Exc::protocol("Argument must match: force, wait")),
    };
    let dest = &call.dest;
    if dest.is_dom0() {
        return Err(refused(&Refusal::ShutdownDom0));
    }
    if !ctx.hypervisor.state(dest).is_active() {
        return Err(refused(&Refusal::PoweredOff(dest.clone())));
    }
    if !force {
        check_dependents(ctx, dest)?;
    }
    let snapshot = qube(ctx, dest.as_str())?;
    let flavour = ctx.flavour;
    orchestrate::shutdown(&mut *ctx.hypervisor, &snapshot, force)
        .map_err(|e| orchestrate_exc(&e, flavour, dest))?;
    Ok(runtime_change(vec![event(
        dest.as_str(),
        "domain-shutdown",
        &[],
    )]))
}

/// `admin.vm.Kill`: no dependency checks.
fn kill(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let dest = &call.dest;
    if dest.is_dom0() {
        return Err(refused(&Refusal::KillDom0));
    }
    let snapshot = qube(ctx, dest.as_str())?;
    let flavour = ctx.flavour;
    orchestrate::kill(&mut *ctx.hypervisor, &snapshot)
        .map_err(|e| orchestrate_exc(&e, flavour, dest))?;
    Ok(runtime_change(vec![event(
        dest.as_str(),
        "domain-shutdown",
        &[],
    )]))
}

/// A backend failure of a pause or unpause, as Qubes reports a failed
/// hypervisor call.
fn backend_exc(e: qpci_core::hypervisor::HypervisorError) -> Exc {
    Exc::new("QubesException", OrchestrateError::Backend(e).wire_text())
}

/// `admin.vm.Pause` (§9.13): a running qube is paused and keeps its
/// devices (still on the stub, still held); a paused qube is a no-op
/// (§9.16 item 5). Qubes fires `domain-paused` once the domain is paused.
fn pause(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let dest = &call.dest;
    if dest.is_dom0() {
        return Err(Exc::new("QubesVMError", "Cannot pause Dom0 fake domain!"));
    }
    match ctx.hypervisor.state(dest) {
        PowerState::Paused => Ok(runtime_change(Vec::new())),
        PowerState::Halted | PowerState::Crashed => {
            Err(refused(&Refusal::NotRunning(dest.clone())))
        }
        _ => {
            ctx.hypervisor.pause(dest).map_err(backend_exc)?;
            Ok(runtime_change(vec![event(
                dest.as_str(),
                "domain-paused",
                &[],
            )]))
        }
    }
}

/// `admin.vm.Unpause` (§9.13): only a paused qube can be unpaused; it runs
/// again with its devices. Qubes fires `domain-unpaused`.
fn unpause(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let dest = &call.dest;
    if dest.is_dom0() || ctx.hypervisor.state(dest) != PowerState::Paused {
        return Err(Exc::new(
            "QubesVMNotPausedError",
            format!(
                "Domain is not paused: {}",
                qpci_core::registry::py_repr(dest.as_str())
            ),
        ));
    }
    ctx.hypervisor.unpause(dest).map_err(backend_exc)?;
    Ok(runtime_change(vec![event(
        dest.as_str(),
        "domain-unpaused",
        &[],
    )]))
}

/// `admin.vm.CurrentState`: `mem=<KiB> mem_static_max=<KiB> cputime=<ns>
/// power_state=<State>`, zeros for a halted qube, no trailing LF.
fn current_state(ctx: &mut Ctx<'_>, call: &Call) -> Result<Outcome, Exc> {
    let state = ctx.hypervisor.state(&call.dest);
    let (mem, max) = if !state.is_active() {
        (0, 0)
    } else {
        let q = qube(ctx, call.dest.as_str())?;
        let max = if q.maxmem > 0 { q.maxmem } else { q.memory };
        (q.memory.saturating_mul(1024), max.saturating_mul(1024))
    };
    Ok(Outcome::data(format!(
        "mem={mem} mem_static_max={max} cputime=0 power_state={}",
        state.name()
    )))
}
