//! The commands against an injected backend with qubes, attachments and
//! assignments: what the daemon will serve. Reproduces the listing example
//! of spec/qvm-tools.md §2.5 and records the requests sent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::ffi::OsString;

use qpci_api::{Device, InventoryReport};
use qpci_cli::backend::{AssignRequest, Backend, BackendError, DeviceRef};
use qpci_cli::{Io, Tool};
use qpci_types::AssignOptions;

fn device(port: &str, sbdf: &str, id: &str, description: &str) -> Device {
    serde_json::from_value(serde_json::json!({
        "backend": "dom0", "port_id": port, "sbdf": sbdf, "device_id": id, "description": description,
    }))
    .unwrap()
}

fn dref(port: Option<&str>, id: Option<&str>) -> DeviceRef {
    DeviceRef {
        backend: "dom0".into(),
        port: port.map(|p| p.parse().unwrap()),
        device_id: id.map(|i| i.parse().unwrap()),
    }
}

fn req(port: Option<&str>, id: Option<&str>, options: &[&str]) -> AssignRequest {
    AssignRequest {
        device: dref(port, id),
        options: AssignOptions::from_kv_list(options.iter().copied()).unwrap(),
    }
}

#[derive(Default)]
struct Fake {
    devices: Vec<Device>,
    attached: BTreeMap<String, Vec<AssignRequest>>,
    assigned: BTreeMap<String, Vec<AssignRequest>>,
    calls: Vec<String>,
}

impl Backend for Fake {
    fn device_classes(&mut self) -> Result<Vec<String>, BackendError> {
        Ok(vec!["usb".into(), "pci".into(), "block".into()])
    }
    fn qube_names(&mut self) -> Result<Option<Vec<String>>, BackendError> {
        Ok(Some(vec![
            "work".into(),
            "sys-usb".into(),
            "dom0".into(),
            "sys-net".into(),
        ]))
    }
    fn available(&mut self, backend: &str) -> Result<InventoryReport, BackendError> {
        let devices = if backend == "dom0" {
            self.devices.clone()
        } else {
            Vec::new()
        };
        Ok(InventoryReport {
            devices,
            ..InventoryReport::default()
        })
    }
    fn attached(&mut self, vm: &str) -> Result<Vec<AssignRequest>, BackendError> {
        Ok(self.attached.get(vm).cloned().unwrap_or_default())
    }
    fn assigned(&mut self, vm: &str) -> Result<Vec<AssignRequest>, BackendError> {
        Ok(self.assigned.get(vm).cloned().unwrap_or_default())
    }
    fn assign(&mut self, vm: &str, r: &AssignRequest) -> Result<(), BackendError> {
        self.calls
            .push(format!("assign {vm} {} [{}]", r.device, r.options));
        Ok(())
    }
    fn unassign(&mut self, vm: &str, d: &DeviceRef) -> Result<(), BackendError> {
        self.calls.push(format!("unassign {vm} {d}"));
        Ok(())
    }
    fn detach(&mut self, vm: &str, d: &DeviceRef) -> Result<(), BackendError> {
        self.calls.push(format!("detach {vm} {d}"));
        Ok(())
    }
}

const XHCI: &str = "0x8086:0xa0ed::p0c0330";
const WIFI: &str = "0x8086:0xa0f0::p028000";

fn fake() -> Fake {
    let mut f = Fake {
        devices: vec![
            device(
                "00_02.0",
                "0000:00:02.0",
                "0x8086:0x9a49::p030000",
                "Display: Intel Corporation TigerLake-LP GT2 [Iris Xe Graphics]",
            ),
            device(
                "00_14.0",
                "0000:00:14.0",
                XHCI,
                "PCI_USB: Intel Corporation Tiger Lake-LP USB 3.2 Gen 2x1 xHCI Host Controller",
            ),
            device(
                "00_14.3",
                "0000:00:14.3",
                WIFI,
                "Network: Intel Corporation Wi-Fi 6 AX201",
            ),
            device(
                "00_1c.0-00_00.0",
                "0000:aa:00.0",
                "0x10ec:0x8168::p020000",
                "Network: Realtek Semiconductor Co., Ltd. RTL8111/8168/8411 PCI Express Gigabit Ethernet Controller",
            ),
        ],
        ..Fake::default()
    };
    f.attached.insert(
        "sys-usb".into(),
        vec![req(Some("00_14.0"), Some(XHCI), &["no-strict-reset=true"])],
    );
    f.assigned.insert(
        "sys-usb".into(),
        vec![req(Some("00_14.0"), Some(XHCI), &["no-strict-reset=yes"])],
    );
    f.assigned.insert(
        "sys-net".into(),
        vec![
            req(Some("00_14.3"), Some(WIFI), &[]),
            req(Some("00_1c.0-00_00.0"), None, &["permissive=on"]),
        ],
    );
    f
}

fn run(f: &mut Fake, args: &[&str], tty: bool) -> (Result<(), qpci_cli::CliError>, String) {
    let mut argv: Vec<OsString> = vec!["qvm-pci".into()];
    argv.extend(args.iter().map(OsString::from));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut io = Io {
        out: &mut out,
        err: &mut err,
        stdout_is_tty: tty,
    };
    let result = qpci_cli::run(Tool::Pci, &argv, f, &mut io);
    (result, String::from_utf8(out).unwrap())
}

#[test]
fn spec_listing_example() {
    let mut f = fake();
    let (result, out) = run(&mut f, &["list", "-s"], false);
    result.unwrap();
    let expected = "\
dom0:00_02.0          Display: Intel Corporation TigerLake-LP GT2 [Iris Xe Graphics]                                      
dom0:00_14.0          0x8086:0xa0ed::p0c0330                                                                              *sys-usb (required: no-strict-reset=True)
dom0:00_14.0          PCI_USB: Intel Corporation Tiger Lake-LP USB 3.2 Gen 2x1 xHCI Host Controller                       sys-usb (attached: no-strict-reset=True)
dom0:00_14.3          0x8086:0xa0f0::p028000                                                                              *sys-net (required)
dom0:00_14.3          Network: Intel Corporation Wi-Fi 6 AX201                                                            
dom0:00_1c.0-00_00.0  Network: Realtek Semiconductor Co., Ltd. RTL8111/8168/8411 PCI Express Gigabit Ethernet Controller  
dom0:00_1c.0-00_00.0  any device                                                                                          *sys-net (required: permissive=True)
";
    assert_eq!(out, expected);
}

#[test]
fn spec_tty_example_with_sbdf_and_a_qube_name() {
    let mut f = fake();
    let (result, out) = run(&mut f, &["ls", "--with-sbdf", "sys-usb"], true);
    result.unwrap();
    assert_eq!(
        out,
        "BACKEND:DEVID  SBDF          DESCRIPTION                                                                    USED BY\n\
         dom0:00_14.0   0000:00:14.0  PCI_USB: Intel Corporation Tiger Lake-LP USB 3.2 Gen 2x1 xHCI Host Controller  sys-usb (attached: no-strict-reset=True)\n"
    );
    // A halted qube holds nothing: empty table.
    let (result, out) = run(&mut f, &["list", "work"], false);
    result.unwrap();
    assert_eq!(out, "");
    // Unknown names are Qubes' usage error, without the no-daemon hint.
    let (result, _) = run(&mut f, &["list", "nosuch"], false);
    assert_eq!(
        result.unwrap_err().to_string(),
        "qvm-pci: error: no such domain: 'nosuch'"
    );
}

#[test]
fn requests_sent() {
    let mut f = fake();
    run(
        &mut f,
        &[
            "assign",
            "--required",
            "-o",
            "no-strict-reset=1",
            "work",
            "dom0:00_14.0",
        ],
        false,
    )
    .0
    .unwrap();
    run(
        &mut f,
        &[
            "attach",
            "-p",
            "-o",
            "permissive=true",
            "work",
            "dom0:00_14.3",
        ],
        false,
    )
    .0
    .unwrap();
    run(
        &mut f,
        &["assign", "-r", "--port", "work", "dom0:00_15.0"],
        false,
    )
    .0
    .unwrap();
    run(
        &mut f,
        &["assign", "-r", "--device", "work", "dom0:00_14.0"],
        false,
    )
    .0
    .unwrap();
    run(
        &mut f,
        &["s", "-r", "work", "dom0:00_16.0:0x8086:0x1234::p0c0330"],
        false,
    )
    .0
    .unwrap();
    run(
        &mut f,
        &["unassign", "--port", "sys-net", "dom0:00_1c.0-00_00.0"],
        false,
    )
    .0
    .unwrap();
    run(&mut f, &["detach", "sys-usb", "dom0:*"], false)
        .0
        .unwrap();
    assert_eq!(
        f.calls,
        [
            "assign work dom0:00_14.0:0x8086:0xa0ed::p0c0330 [no-strict-reset=True]",
            "assign work dom0:00_14.3:0x8086:0xa0f0::p028000 [permissive=True]",
            "assign work dom0:00_15.0:* []",
            "assign work dom0:*:0x8086:0xa0ed::p0c0330 []",
            "assign work dom0:00_16.0:0x8086:0x1234::p0c0330 []",
            "unassign sys-net dom0:00_1c.0-00_00.0:*",
            "detach sys-usb dom0:00_14.0:0x8086:0xa0ed::p0c0330",
        ]
    );
    // Refusals send nothing.
    let before = f.calls.len();
    let (r, _) = run(&mut f, &["assign", "work", "dom0:00_14.0"], false);
    assert_eq!(
        r.unwrap_err().to_string(),
        "Error: PCI devices cannot be assigned as not required."
    );
    let (r, _) = run(&mut f, &["assign", "-r", "nosuch", "dom0:00_14.0"], false);
    assert_eq!(r.unwrap_err().exit_code(), 2);
    assert_eq!(f.calls.len(), before);
}

#[test]
fn unassign_hint_when_still_attached() {
    let mut f = fake();
    let (r, out) = run(&mut f, &["unassign", "sys-usb", "dom0:00_14.0"], false);
    r.unwrap();
    assert_eq!(
        out,
        "Unassigned. To detach you can now restart domain or run: \n \tqvm-pci detach sys-usb dom0:00_14.0\n\
         Once detached, the device stays bound to the PCI stub driver; it is not given back to dom0 automatically (to give it back: qvm-pci reattach dom0:00_14.0).\n"
    );
    let (r, out) = run(
        &mut f,
        &["-q", "unassign", "sys-usb", "dom0:00_14.0"],
        false,
    );
    r.unwrap();
    assert_eq!(out, "");
}

#[test]
fn classes_are_sorted() {
    let mut f = fake();
    let (r, out) = run(&mut f, &["--list-device-classes"], false);
    r.unwrap();
    assert_eq!(out, "block\npci\nusb\n");
}
