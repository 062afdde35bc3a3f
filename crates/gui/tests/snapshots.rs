//! Snapshot tests of the Devices and Advanced tabs (egui_kittest with the
//! wgpu renderer; on CI Mesa's software Vulkan, lavapipe). Baselines live
//! in tests/snapshots; `UPDATE_SNAPSHOTS=1 cargo test -p qubes-vm-settings
//! --test snapshots` rewrites them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Daemon, XHCI};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use qubes_vm_settings::{App, Tab};

/// The daemon with `work` holding the xHCI (no-strict-reset) and sys-usb
/// the Wi-Fi, so the rows show their badges.
fn daemon() -> Option<Daemon> {
    let d = Daemon::start(common::laptop())?;
    d.assign("work", XHCI, b"mode='required' _no-strict-reset='True'");
    d.assign("sys-usb", XHCI, b"mode='required'");
    Some(d)
}

fn harness(d: &Daemon, tab: Tab) -> Harness<'static, App> {
    let app = App::new(Ok(d.client()), "work", tab);
    let mut h = Harness::builder()
        .with_size([1100.0, 720.0])
        .wgpu()
        .build_ui_state(|ui, app: &mut App| app.show(ui), app);
    h.run();
    h
}

#[test]
fn devices_tab() {
    let Some(d) = daemon() else {
        return;
    };
    let mut h = harness(&d, Tab::Devices);
    h.query_by(|n| n.label().is_some_and(|l| l.starts_with("dom0:00_00.0  ")))
        .unwrap()
        .click();
    h.run();
    h.snapshot("devices_tab");
}

#[test]
fn advanced_tab() {
    let Some(d) = daemon() else {
        return;
    };
    let mut h = harness(&d, Tab::Advanced);
    h.snapshot("advanced_tab");
}
