//! qpci's extension methods: `qpci.host.Inventory`, `qpci.List` and
//! `qpci.vm.StartPlan` (DESIGN.md "qpci extension methods"), JSON replies
//! that parse into `qpci_api::ext` types.

mod methods_common;

use methods_common::Fixture;
use qpci_api::InventoryReport;
use qpci_api::ext::{ListReport, StartPlanReport};

#[allow(clippy::expect_used)]
fn list(fx: &mut Fixture) -> ListReport {
    serde_json::from_slice(&fx.ok(b"qpci.List+ dom0 name dom0\0"))
        .expect("qpci.List is a ListReport")
}

#[test]
fn inventory_reports_devices_and_users() {
    let mut fx = Fixture::new();
    fx.ok(b"admin.vm.device.pci.Assign+dom0+00_14.0+0x8086+0xa0ed++p0c0330 dom0 name work\0mode='required' _no-strict-reset='true'");
    let report: InventoryReport =
        serde_json::from_slice(&fx.ok(b"qpci.host.Inventory+ dom0 name dom0\0")).unwrap();
    assert_eq!(report.devices.len(), 4);
    assert_eq!(report.flavour, qpci_api::Flavour::Xen);
    let xhci = report
        .devices
        .iter()
        .find(|d| d.port_id.to_string() == "00_14.0")
        .unwrap();
    assert_eq!(
        xhci.description,
        "PCI_USB: Intel Corporation Tiger Lake-LP USB 3.2 Gen 2x1 xHCI Host Controller"
    );
    assert_eq!(xhci.used_by.len(), 1);
    assert_eq!(xhci.used_by[0].qube, "work");
    assert!(!xhci.used_by[0].attached);
    assert_eq!(xhci.used_by[0].options["no-strict-reset"], "True");
    let host_bridge = report
        .devices
        .iter()
        .find(|d| d.port_id.to_string() == "00_00.0")
        .unwrap();
    assert_eq!(host_bridge.critical.as_ref().unwrap().tag, "host-bridge");
    fx.expect(
        b"qpci.host.Inventory+ dom0 name work\0",
        b"2\0ProtocolError\0\0expected destination to be AdminVM\0",
    );
}

#[test]
fn list_has_everything_qvm_pci_list_needs() {
    let mut fx = Fixture::new();
    fx.ok(b"admin.vm.device.pci.Assign+dom0+00_14.0+0x8086+0xa0ed++p0c0330 dom0 name work\0mode='required' _no-strict-reset='True'");
    fx.ok(b"admin.vm.device.pci.Assign+dom0+00_1c.0-00_00.0+_ dom0 name sys-net\0mode='required' _permissive='True'");
    fx.ok(b"admin.vm.device.pci.Assign+dom0+_+0x8086+0xa0ed++p0c0330 dom0 name sys-net\0mode='required'");
    fx.ok(b"admin.vm.property.Set+netvm dom0 name work\0");
    fx.ok(b"admin.vm.Start+ dom0 name work\0");
    let report = list(&mut fx);

    let names: Vec<&str> = report.qubes.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(names, ["dom0", "fedora-40", "sys-net", "work"]);
    let work = &report.qubes[3];
    assert_eq!(work.state, "Running");
    assert_eq!(work.attached.len(), 1);
    assert_eq!(work.attached[0].mode, "required");
    assert_eq!(work.attached[0].options["no-strict-reset"], "True");
    assert_eq!(work.attached[0].sbdf.to_string(), "0000:00:14.0");
    let sys_net = &report.qubes[2];
    assert_eq!(sys_net.assignments.len(), 2);
    assert!(!sys_net.assignments[0].pinned);
    assert_eq!(sys_net.assignments[1].port_id, "*");
    assert_eq!(
        sys_net.assignments[1]
            .resolves_to
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["00_14.0"]
    );

    // Device rows: USED BY is the attachments (Qubes), then assignments.
    let ports: Vec<String> = report
        .devices
        .iter()
        .map(|d| d.port_id.to_string())
        .collect();
    assert_eq!(ports, ["00_00.0", "00_14.0", "00_1c.0", "00_1c.0-00_00.0"]);
    let xhci = &report.devices[1];
    let used: Vec<(&str, bool)> = xhci
        .used_by
        .iter()
        .map(|u| (u.qube.as_str(), u.attached))
        .collect();
    assert_eq!(used, [("work", true), ("sys-net", false), ("work", false)]);

    // Assignment rows, as Qubes groups them.
    let rows: Vec<(String, String, String, Vec<String>)> = report
        .assignment_rows
        .iter()
        .map(|r| {
            (
                r.port_id.clone(),
                r.description.clone(),
                r.sbdf.map(|s| s.to_string()).unwrap_or_default(),
                r.used_by
                    .iter()
                    .map(|u| format!("*{} ({})", u.qube, u.mode))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (
                "*".to_owned(),
                "0x8086:0xa0ed::p0c0330".to_owned(),
                String::new(),
                vec!["*sys-net (required)".to_owned()]
            ),
            (
                "00_14.0".to_owned(),
                "0x8086:0xa0ed::p0c0330".to_owned(),
                "0000:00:14.0".to_owned(),
                vec![
                    "*sys-net (required)".to_owned(),
                    "*work (required)".to_owned()
                ]
            ),
            (
                "00_1c.0-00_00.0".to_owned(),
                "any device".to_owned(),
                "0000:aa:00.0".to_owned(),
                vec!["*sys-net (required)".to_owned()]
            ),
        ]
    );
    assert_eq!(
        report.assignment_rows[2].used_by[0].options["permissive"],
        "True"
    );
}

#[test]
fn start_plan_is_a_dry_run() {
    let mut fx = Fixture::new();
    fx.ok(b"admin.vm.device.pci.Assign+dom0+00_1c.0-00_00.0+0x8086+0x2725++p028000 dom0 name sys-net\0mode='required' _permissive='True'");
    let before = fx.snapshot();
    let plan: StartPlanReport =
        serde_json::from_slice(&fx.ok(b"qpci.vm.StartPlan+ dom0 name sys-net\0")).unwrap();
    assert!(!plan.already_running);
    assert_eq!(plan.stub_driver, "pciback");
    assert_eq!(plan.virt_mode, "hvm");
    assert_eq!(plan.maxmem, 0);
    assert!(!plan.memory_balancing);
    assert_eq!(plan.devices.len(), 1);
    let d = &plan.devices[0];
    assert_eq!(d.sbdf.to_string(), "0000:aa:00.0");
    assert_eq!(d.current_driver.as_deref(), Some("iwlwifi"));
    assert_eq!(d.options["permissive"], "True");
    assert_eq!(
        plan.binding_steps,
        [
            "write pciback to sys/bus/pci/devices/0000:aa:00.0/driver_override",
            "write 0000:aa:00.0 to sys/bus/pci/drivers/pciback/new_slot",
            "write 0000:aa:00.0 to sys/bus/pci/drivers/iwlwifi/unbind",
            "write 0000:aa:00.0 to sys/bus/pci/drivers_probe (expect pciback)",
        ]
    );
    assert!(
        plan.domain_xml.contains("writeFiltering=\"no\""),
        "{}",
        plan.domain_xml
    );
    assert!(
        plan.domain_xml
            .contains("<uuid>11111111-1111-1111-1111-111111111111</uuid>")
    );
    assert!(!fx.changed());
    assert_eq!(fx.snapshot(), before);
    fx.expect(
        b"admin.vm.List+ dom0 name sys-net\0",
        b"0\0sys-net class=AppVM state=Halted uuid=11111111-1111-1111-1111-111111111111\n",
    );

    // Refusals are the exceptions Start would send.
    fx.expect(
        b"qpci.vm.StartPlan+ dom0 name dom0\0",
        b"2\0QubesVMNotHaltedError\0\0Cannot start Dom0 fake domain!\0",
    );
    fx.ok(b"admin.vm.feature.Set+prohibit-start dom0 name sys-net\0testing");
    fx.expect(
        b"qpci.vm.StartPlan+ dom0 name sys-net\0",
        b"2\0QubesException\0\0Qube start is prohibited. Rationale: testing\0",
    );
    fx.ok(b"admin.vm.feature.Remove+prohibit-start dom0 name sys-net\0");
    fx.ok(b"admin.vm.Start+ dom0 name sys-net\0");
    let running: StartPlanReport =
        serde_json::from_slice(&fx.ok(b"qpci.vm.StartPlan+ dom0 name sys-net\0")).unwrap();
    assert!(running.already_running);
}
