//! The dialog, headless (egui_kittest, found by AccessKit labels), against
//! a real qpcid on a temporary socket with the laptop fixture: moving a
//! device in and applying, the strict-reset dialog, dom0-critical devices,
//! memory balancing and virt mode with devices, refusals, live refresh,
//! and the windows shown when nothing can be loaded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, XHCI, XHCI_PEER};
use eframe::egui;
use eframe::egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use qpci_api::Client;
use qubes_vm_settings::data::Fatal;
use qubes_vm_settings::model::{BALANCING_REASON, PVH_REASON};
use qubes_vm_settings::{App, Tab};

fn harness(app: App) -> Harness<'static, App> {
    let mut h = Harness::builder()
        .with_size([1100.0, 760.0])
        // Short frames: two clicks within egui's double-click delay.
        .with_step_dt(0.05)
        .build_ui_state(|ui, app: &mut App| app.show(ui), app);
    h.run();
    h
}

fn open(d: &Daemon, qube: &str, tab: Tab) -> Harness<'static, App> {
    harness(App::new(Ok(d.client()), qube, tab))
}

/// The list row of the device at `port` (its label starts with `dom0:PORT`
/// and two spaces; badges naming it do not).
fn row<'a>(h: &'a Harness<'static, App>, port: &str) -> Option<egui_kittest::Node<'a>> {
    let head = format!("dom0:{port}  ");
    h.query_by(move |n| n.label().is_some_and(|l| l.starts_with(&head)))
}

fn click_row(h: &mut Harness<'static, App>, port: &str) {
    row(h, port)
        .unwrap_or_else(|| panic!("no row for dom0:{port}"))
        .click();
    h.run();
}

/// A node's text: AccessKit keeps a label widget's text in its value.
fn text(n: &egui_kittest::Node<'_>) -> String {
    let n = n.accesskit_node();
    n.label().or_else(|| n.value()).unwrap_or_default()
}

/// Double-clicks the row of `port`.
fn double_click_row(h: &mut Harness<'static, App>, port: &str) {
    let node = row(h, port).unwrap();
    node.click();
    node.click();
    h.run();
}

fn click(h: &mut Harness<'static, App>, label: &str) {
    h.get_by_label(label).click();
    h.run();
}

fn checkbox(h: &mut Harness<'static, App>, label: &str) {
    h.get_by_role_and_label(Role::CheckBox, label).click();
    h.run();
}

/// `true` when the row of `port` is in the selected list (the model says
/// where it is; the view draws exactly that).
fn is_selected(h: &Harness<'static, App>, port: &str) -> bool {
    h.state()
        .model()
        .unwrap()
        .selected()
        .iter()
        .any(|s| s.key.port == port)
}

#[test]
fn move_a_device_in_and_apply_assigns_it() {
    let Some(d) = Daemon::start(common::laptop()) else {
        return;
    };
    let mut h = open(&d, "work", Tab::Devices);
    assert!(
        h.query_by_label("Devices always connected to this qube (0)")
            .is_some()
    );

    // `>` with the mouse.
    click_row(&mut h, "00_14.0");
    click(&mut h, ">");
    assert!(is_selected(&h, "00_14.0"));
    // Double-click.
    double_click_row(&mut h, "00_02.0");
    assert!(is_selected(&h, "00_02.0"), "double-click moves it in");
    // Keyboard: arrow down from a highlighted device, then Enter.
    click_row(&mut h, "00_14.2");
    h.key_press(egui::Key::Enter);
    h.run();
    assert!(is_selected(&h, "00_14.2"), "Enter moves it in");
    // And `<` / Delete move one back out.
    click_row(&mut h, "00_14.2");
    h.key_press(egui::Key::Delete);
    h.run();
    assert!(!is_selected(&h, "00_14.2"), "Delete moves it out");
    assert!(
        d.assigned("work").is_empty(),
        "nothing is sent before Apply"
    );

    click(&mut h, "Apply");
    let assigned = d.assigned("work");
    assert!(
        assigned.contains("dom0+00_14.0:0x8086:0xa0ed::p0c0330 ")
            && assigned.contains("dom0+00_02.0:")
            && !assigned.contains("00_14.2"),
        "{assigned}"
    );
    assert!(assigned.contains("mode='required'"), "{assigned}");
    assert!(
        h.query_by_label_contains("Applied: add dom0:00_14.0")
            .is_some()
    );
    assert!(h.query_by_label("No pending changes").is_some());
    // Seen from another qube: "also assigned to work".
    let h2 = open(&d, "sys-usb", Tab::Devices);
    assert_eq!(h2.query_all_by_label("also assigned to work").count(), 2);
}

#[test]
fn strict_reset_is_stored_and_shown_when_reopened() {
    let Some(d) = Daemon::start(common::laptop()) else {
        return;
    };
    d.assign("work", XHCI, b"mode='required'");
    let mut h = open(&d, "work", Tab::Devices);
    click_row(&mut h, "00_14.0");
    click(&mut h, "Configure strict reset…");
    assert!(h.query_by_label("Saved now: none").is_some());
    assert!(h.query_by_label_contains("Security warning").is_none());
    checkbox(&mut h, "no-strict-reset");
    assert!(
        h.query_by_label_contains("Security warning: without a reset")
            .is_some()
    );
    click(&mut h, "Use these options");
    assert!(
        h.query_by_role_and_label(Role::Label, "no-strict-reset")
            .is_some(),
        "badge on the row"
    );
    click(&mut h, "Apply");
    let assigned = d.assigned("work");
    assert!(
        assigned.contains("_no-strict-reset='True'"),
        "one SetOptions call stored it: {assigned}"
    );
    assert!(
        h.query_by_label_contains(
            "Applied: set the options of dom0:00_14.0 to no-strict-reset=True"
        )
        .is_some()
    );

    // Reopened: the dialog shows the saved value.
    let mut h = open(&d, "work", Tab::Devices);
    click_row(&mut h, "00_14.0");
    click(&mut h, "Configure strict reset…");
    assert!(
        h.query_by_label("Saved now: no-strict-reset=True")
            .is_some(),
        "saved values shown"
    );
    // Turning it off again is one call too.
    checkbox(&mut h, "no-strict-reset");
    click(&mut h, "Use these options");
    click(&mut h, "Apply");
    assert!(!d.assigned("work").contains("no-strict-reset"));
}

#[test]
fn a_dom0_critical_device_cannot_be_moved_and_says_why() {
    let Some(d) = Daemon::start(common::laptop()) else {
        return;
    };
    let mut h = open(&d, "work", Tab::Devices);
    assert!(h.query_all_by_label("dom0-critical").next().is_some());
    click_row(&mut h, "00_00.0");
    let why = text(
        &h.query_by_label_contains("dom0 must keep dom0:00_00.0")
            .expect("the reason is shown"),
    );
    assert!(why.contains("host bridge"), "{why}");
    assert!(
        h.get_by_label(">").accesskit_node().is_disabled(),
        "> is disabled"
    );
    h.key_press(egui::Key::Enter);
    h.run();
    assert!(!is_selected(&h, "00_00.0"));
    // A double-click is refused with the reason too.
    double_click_row(&mut h, "00_00.0");
    assert!(!is_selected(&h, "00_00.0"));
    click(&mut h, "Apply");
    assert!(d.assigned("work").is_empty());
}

#[test]
fn balancing_and_pvh_are_disabled_with_devices() {
    let Some(d) = Daemon::start(common::laptop()) else {
        return;
    };
    // Without devices: balancing can be switched.
    let h = open(&d, "work", Tab::Advanced);
    assert!(
        !h.get_by_label("Include in memory balancing")
            .accesskit_node()
            .is_disabled()
    );
    assert!(h.query_by_label(BALANCING_REASON).is_none());
    drop(h);

    d.assign("work", XHCI, b"mode='required'");
    let mut h = open(&d, "work", Tab::Advanced);
    let balancing = h.get_by_label("Include in memory balancing");
    assert!(balancing.accesskit_node().is_disabled());
    assert!(
        h.query_by_label(BALANCING_REASON).is_some(),
        "the reason is shown"
    );
    assert!(h.query_by_label(PVH_REASON).is_some());
    // The virt mode list offers hvm and pv, not pvh.
    h.get_by_role_and_label(Role::ComboBox, "Virtualization mode")
        .click();
    h.run();
    assert!(h.query_by_label("hvm").is_some());
    assert!(h.query_by_label("pv").is_some());
    assert!(h.query_by_label("pvh").is_none());

    // Moving the device out in the Devices tab enables both again.
    click(&mut h, "Devices");
    click_row(&mut h, "00_14.0");
    click(&mut h, "<");
    click(&mut h, "Advanced");
    assert!(
        !h.get_by_label("Include in memory balancing")
            .accesskit_node()
            .is_disabled()
    );
    assert!(h.query_by_label(PVH_REASON).is_none());
}

#[test]
fn a_refusal_is_shown_and_the_edits_are_kept() {
    let Some(d) = Daemon::start(common::laptop()) else {
        return;
    };
    let mut h = open(&d, "work", Tab::Devices);
    click_row(&mut h, "00_14.0");
    click(&mut h, ">");
    click(&mut h, "Advanced");
    h.get_by_label("Kernel").click();
    h.run();
    h.get_by_label("Kernel").type_text("no-such-kernel");
    h.run();
    click(&mut h, "Apply");
    // The device part succeeded, the kernel was refused with qpcid's text.
    assert!(d.assigned("work").contains("00_14.0"));
    assert!(
        h.query_by_label_contains("Applied: add dom0:00_14.0")
            .is_some()
    );
    let refused = text(
        &h.query_by_label_contains("Refused: set kernel")
            .expect("the refusal is shown"),
    );
    assert!(
        refused.contains("Kernel 'no-such-kernel' not installed"),
        "{refused}"
    );
    // The edit is kept: still pending and still in the field.
    assert!(h.query_by_label("1 pending change(s)").is_some());
    assert_eq!(
        h.get_by_label("Kernel").value().as_deref(),
        Some("no-such-kernel")
    );
    assert!(d.prop("work", "kernel").starts_with("default=True"));
}

#[test]
fn the_dialog_refreshes_on_daemon_events() {
    let Some(d) = Daemon::start(common::laptop()) else {
        return;
    };
    let mut app = App::new(Ok(d.client()), "work", Tab::Devices);
    app.watch_events(|| {});
    let mut h = harness(app);
    // A pending edit survives the refresh.
    click_row(&mut h, "00_02.0");
    click(&mut h, ">");
    std::thread::sleep(Duration::from_millis(300));
    d.assign("work", XHCI, b"mode='required'");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !is_selected(&h, "00_14.0") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        h.run();
    }
    assert!(is_selected(&h, "00_14.0"), "refreshed from admin.Events");
    assert!(is_selected(&h, "00_02.0"), "the pending edit is kept");
    assert!(h.query_by_label("1 pending change(s)").is_some());
}

#[test]
fn the_running_banner_and_manual_refresh() {
    let Some(d) = Daemon::start(common::laptop()) else {
        return;
    };
    let mut h = open(&d, "work", Tab::Devices);
    assert!(h.query_by_label_contains("is running").is_none());
    d.ok("admin.vm.Start", "", "work", b"");
    click(&mut h, "Refresh");
    assert!(
        h.query_by_label("work is running: changes apply at its next start.")
            .is_some()
    );
}

#[test]
fn a_paused_holder_is_shown_as_paused() {
    let Some(d) = Daemon::start(common::laptop()) else {
        return;
    };
    d.assign("work", XHCI, b"mode='required' _no-strict-reset='True'");
    // Its IOMMU group peer goes along.
    d.assign(
        "work",
        XHCI_PEER,
        b"mode='required' _no-strict-reset='True'",
    );
    d.ok("admin.vm.Start", "", "work", b"");
    // One badge per held device (the xHCI and its group peer).
    let h = open(&d, "sys-usb", Tab::Devices);
    assert_eq!(h.query_all_by_label("held by running qube work").count(), 2);
    d.ok("admin.vm.Pause", "", "work", b"");
    let h = open(&d, "sys-usb", Tab::Devices);
    assert_eq!(h.query_all_by_label("held by paused qube work").count(), 2);
    assert_eq!(h.query_all_by_label("held by running qube work").count(), 0);
    let h = open(&d, "work", Tab::Devices);
    assert!(
        h.query_by_label("work is paused: changes apply at its next start.")
            .is_some()
    );
}

#[test]
fn clear_windows_when_nothing_can_be_loaded() {
    // No daemon at the socket.
    let dir = tempfile::tempdir().unwrap();
    let h = harness(App::new(
        Ok(Client::new(dir.path().join("none.sock"))),
        "work",
        Tab::Devices,
    ));
    assert!(h.query_by_label("qpcid is not running").is_some());
    assert!(h.query_by_label("Retry").is_some());
    // Discovery failed before any client.
    let h = harness(App::new(
        Err(Fatal::NotRunning {
            detail: "no qpcid program was found".into(),
        }),
        "work",
        Tab::Basic,
    ));
    assert!(
        h.query_by_label_contains("no qpcid program was found")
            .is_some()
    );
    // Permission denied (as the socket would say it).
    let h = harness(App::new(
        Err(Fatal::PermissionDenied {
            detail: "/run/qubesd.sock: Permission denied".into(),
        }),
        "work",
        Tab::Basic,
    ));
    assert!(h.query_by_label("Permission denied").is_some());

    let Some(d) = Daemon::start(common::laptop()) else {
        return;
    };
    let mut h = open(&d, "no-such-qube", Tab::Devices);
    assert!(h.query_by_label("No such qube").is_some());
    assert!(
        h.query_by_label_contains("There is no qube named 'no-such-qube'")
            .is_some()
    );
    click(&mut h, "Close");
    assert!(h.state().closed);
}

#[test]
fn set_options_is_validated_like_assign() {
    let Some(d) = Daemon::start(common::laptop()) else {
        return;
    };
    let c = d.client();
    let call = |arg: &str, payload: &str| {
        c.call(
            "qpci.vm.device.pci.SetOptions",
            arg,
            "work",
            payload.as_bytes(),
        )
    };
    let arg = "dom0+00_14.0+0x8086+0xa0ed++p0c0330";
    let e = call(arg, r#"{"options":{}}"#).unwrap_err().to_string();
    assert!(e.contains("not assigned to work"), "{e}");
    d.ok(
        "admin.vm.device.pci.Assign",
        arg,
        "work",
        b"mode='required'",
    );
    let e = call(arg, r#"{"options":{"read-only":"true"}}"#)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no-strict-reset") && e.contains("permissive"),
        "{e}"
    );
    let e = call(arg, r#"{"options":{"permissive":"maybe"}}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("maybe"), "{e}");
    let e = call(arg, "not json").unwrap_err().to_string();
    assert!(e.contains("JSON"), "{e}");
    assert!(!d.assigned("work").contains("_permissive"));
    let reply: qpci_api::ext::SetOptionsReport = serde_json::from_slice(
        &call(
            arg,
            r#"{"options":{"permissive":"yes","no-strict-reset":"on"}}"#,
        )
        .unwrap(),
    )
    .unwrap();
    assert!(reply.changed);
    assert_eq!(reply.device, "dom0:00_14.0:0x8086:0xa0ed::p0c0330");
    let assigned = d.assigned("work");
    assert!(
        assigned.contains("_no-strict-reset='True'") && assigned.contains("_permissive='True'"),
        "{assigned}"
    );
    let again: qpci_api::ext::SetOptionsReport = serde_json::from_slice(
        &call(
            arg,
            r#"{"options":{"permissive":"yes","no-strict-reset":"on"}}"#,
        )
        .unwrap(),
    )
    .unwrap();
    assert!(!again.changed);
}
