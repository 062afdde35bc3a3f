//! Start/stop orchestration: validate → plan → backend → record.
//!
//! Policy decides ([`crate::policy`]), the backend carries out
//! ([`crate::hypervisor`]). A start always plans against the backend's
//! current runtime state, so the holder check (M5) sees every running qube;
//! the backend records the qube as running with its devices only after it
//! started. Shutdown and kill record it halted; its devices stay on the stub
//! driver (M8) and are reported in the [`StopPlan`].

use qpci_host::{HostFlavour, Inventory};

use crate::hypervisor::{Hypervisor, HypervisorError};
use crate::policy::{
    DetachPlan, DeviceKey, QubesExc, Refusal, StartDecision, StartPlan, StopPlan, plan_detach,
    plan_kill, plan_shutdown, plan_start,
};
use crate::registry::Qube;

/// A boxed error from the domain XML renderer.
pub type RenderError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why an orchestrated action failed.
#[derive(Debug, thiserror::Error)]
pub enum OrchestrateError {
    /// Policy refused it.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The domain XML could not be rendered.
    #[error("Start failed: cannot render the domain XML")]
    Render(#[source] RenderError),
    /// The backend failed to start the qube.
    #[error("Start failed")]
    Start(#[source] HypervisorError),
    /// The backend failed another action.
    #[error("the hypervisor backend failed")]
    Backend(#[source] HypervisorError),
}

impl OrchestrateError {
    /// The exception type this error is sent as.
    pub fn exc(&self) -> QubesExc {
        match self {
            Self::Refused(r) => r.exc(),
            Self::Render(_) | Self::Start(_) | Self::Backend(_) => QubesExc::QubesException,
        }
    }

    /// The text for the wire: the refusal's own text, or the error chain on
    /// one line (`Start failed: <cause>: <cause>`).
    pub fn wire_text(&self) -> String {
        if let Self::Refused(r) = self {
            return r.wire_text();
        }
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }
}

/// What a start came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartOutcome {
    /// The qube was not halted: nothing was done.
    AlreadyRunning,
    /// The qube was started with this plan.
    Started(StartPlan),
}

/// The dry run: the plan a start would carry out, against the backend's
/// current runtime state. Nothing is done.
pub fn plan<H: Hypervisor + ?Sized>(
    hv: &H,
    qube: &Qube,
    inventory: &Inventory,
    flavour: HostFlavour,
) -> Result<StartDecision, Refusal> {
    plan_start(qube, hv.runtime(), inventory, flavour)
}

/// Starts `qube`: plans (refusing what policy refuses), renders the domain
/// XML with `render_xml`, and has the backend start it and record it.
pub fn start<H: Hypervisor + ?Sized>(
    hv: &mut H,
    qube: &Qube,
    inventory: &Inventory,
    flavour: HostFlavour,
    render_xml: impl FnOnce(&StartPlan) -> Result<String, RenderError>,
) -> Result<StartOutcome, OrchestrateError> {
    let plan = match plan(hv, qube, inventory, flavour)? {
        StartDecision::AlreadyRunning => return Ok(StartOutcome::AlreadyRunning),
        StartDecision::Start(plan) => plan,
    };
    let xml = render_xml(&plan).map_err(OrchestrateError::Render)?;
    hv.start(&plan, &xml).map_err(OrchestrateError::Start)?;
    Ok(StartOutcome::Started(plan))
}

/// Shuts `qube` down; its devices stay on the stub driver.
pub fn shutdown<H: Hypervisor + ?Sized>(
    hv: &mut H,
    qube: &Qube,
    force: bool,
) -> Result<StopPlan, OrchestrateError> {
    let plan = plan_shutdown(qube, hv.runtime(), force)?;
    hv.shutdown(&qube.name).map_err(OrchestrateError::Backend)?;
    Ok(plan)
}

/// Kills `qube`; its devices stay on the stub driver.
pub fn kill<H: Hypervisor + ?Sized>(hv: &mut H, qube: &Qube) -> Result<StopPlan, OrchestrateError> {
    let plan = plan_kill(qube, hv.runtime())?;
    hv.kill(&qube.name).map_err(OrchestrateError::Backend)?;
    Ok(plan)
}

/// Detaches a device from a running `qube`; it stays on the stub driver.
pub fn detach<H: Hypervisor + ?Sized>(
    hv: &mut H,
    qube: &Qube,
    key: &DeviceKey,
) -> Result<DetachPlan, OrchestrateError> {
    let plan = plan_detach(qube, hv.runtime(), key)?;
    hv.detach(&qube.name, &plan.device.address)
        .map_err(OrchestrateError::Backend)?;
    Ok(plan)
}
