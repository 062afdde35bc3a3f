//! Give-back through the engine (`Engine::give_back`): the host driver is
//! found from the device's `modalias` in the guest's real module indexes.

use anyhow::ensure;
use qpci_host::HostRoot;
use qpci_host::stub::{CommandRunner, Engine, GiveBackRequest, Guards, RealWriter, WriteAccess};
use qpci_types::PciAddress;

use super::sysfs::driver_of;

/// Gives `a` back to its host driver; returns the matched modules and the
/// number of steps.
pub fn give_back(a: PciAddress) -> anyhow::Result<String> {
    let io = RealWriter::new(HostRoot::real(), WriteAccess::Production)?;
    let runner = CommandRunner::system(WriteAccess::Production)?;
    let engine = Engine::new(HostRoot::real(), &io, &runner);
    let req = GiveBackRequest {
        address: a,
        force: false,
        dry_run: false,
    };
    let report = engine
        .give_back(&req, &Guards::default())
        .map_err(|f| anyhow::anyhow!("give-back: {f}"))?;
    let now = driver_of(&a.to_string());
    ensure!(
        now.is_some() && now == report.driver,
        "{a}: give-back reported {:?}, sysfs says {now:?}",
        report.driver
    );
    let modules: Vec<String> = report
        .modules
        .iter()
        .map(|m| format!("{}{}", m.module, if m.builtin { " (built in)" } else { "" }))
        .collect();
    let mut text = format!(
        "modules [{}], {} steps, on {}",
        modules.join(", "),
        report.steps.len(),
        report.driver.as_deref().unwrap_or("none")
    );
    if !report.warnings.is_empty() {
        text.push_str(&format!("; warnings: {}", report.warnings.join(" / ")));
    }
    Ok(text)
}
