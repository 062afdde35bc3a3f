//! Conformance: `admin.vm.device.pci.*` and the device classes
//! (spec/admin-api.md §3.5–§3.15, §4), byte-exact, with DESIGN.md's
//! departures.

mod methods_common;

use methods_common::Fixture;

const XHCI_LINE: &[u8] = b"00_14.0:0x8086:0xa0ed::p0c0330 device_id='0x8086:0xa0ed::p0c0330' port_id='00_14.0' devclass='pci' backend_domain='dom0' vendor='Intel Corporation' product='Tiger Lake-LP USB 3.2 Gen 2x1 xHCI Host Controller' interfaces='p0c0330' _sbdf='0000:00:14.0'\n";
const WIFI_LINE: &[u8] = b"00_1c.0-00_00.0:0x8086:0x2725::p028000 device_id='0x8086:0x2725::p028000' port_id='00_1c.0-00_00.0' devclass='pci' backend_domain='dom0' vendor='Intel Corporation' product='Wi-Fi 6 AX210/AX211/AX411 160MHz' interfaces='p028000' _sbdf='0000:aa:00.0'\n";
const HOST_BRIDGE_LINE: &[u8] = b"00_00.0:0x8086:0x9a14::p060000 device_id='0x8086:0x9a14::p060000' port_id='00_00.0' devclass='pci' backend_domain='dom0' vendor='Intel Corporation' product='11th Gen Core Processor Host Bridge/DRAM Registers' interfaces='p060000' _sbdf='0000:00:00.0'\n";
const ROOT_PORT_LINE: &[u8] = b"00_1c.0:0x8086:0xa0b8::p060400 device_id='0x8086:0xa0b8::p060400' port_id='00_1c.0' devclass='pci' backend_domain='dom0' vendor='Intel Corporation' product='Tiger Lake-LP PCI Express Root Port #5' interfaces='p060400' _sbdf='0000:00:1c.0'\n";

const ASSIGN_XHCI: &[u8] = b"admin.vm.device.pci.Assign+dom0+00_14.0+0x8086+0xa0ed++p0c0330 dom0 name work\0device_id='0x8086:0xa0ed::p0c0330' port_id='00_14.0' devclass='pci' backend_domain='dom0' mode='required' frontend_domain='work'";
const ASSIGN_WIFI: &[u8] = b"admin.vm.device.pci.Assign+dom0+00_1c.0-00_00.0+0x8086+0x2725++p028000 dom0 name sys-net\0device_id='0x8086:0x2725::p028000' port_id='00_1c.0-00_00.0' devclass='pci' backend_domain='dom0' mode='required' frontend_domain='sys-net' _no-strict-reset='True' _permissive='yes'";

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn s3_5_deviceclass_list() {
    let mut fx = Fixture::new();
    fx.expect(
        b"admin.deviceclass.List+ dom0 name dom0\0",
        b"0\0pci\nblock\nusb\nmic\n",
    );
    fx.expect(
        b"admin.deviceclass.List+ dom0 name work\0",
        b"2\0ProtocolError\0\0expected destination to be AdminVM\0",
    );
}

#[test]
fn s3_7_available() {
    let mut fx = Fixture::new();
    // Sorted by `port:devid` (`-` sorts before `:`); bridges are listed too (upstream lists every
    // function libvirt knows), so the spec's two lines come with the host
    // bridge and the root port of this fixture.
    fx.expect(
        b"admin.vm.device.pci.Available+ dom0 name dom0\0",
        &cat(&[
            b"0\0",
            HOST_BRIDGE_LINE,
            XHCI_LINE,
            WIFI_LINE,
            ROOT_PORT_LINE,
        ]),
    );
    fx.expect(b"admin.vm.device.pci.Available+ dom0 name work\0", b"0\0");
    fx.expect(
        b"admin.vm.device.pci.Available+00_14.0 dom0 name dom0\0",
        &cat(&[b"0\0", XHCI_LINE]),
    );
    fx.expect(
        b"admin.vm.device.pci.Available+00_1e.0 dom0 name dom0\0",
        b"0\0",
    );
    fx.expect(
        b"admin.vm.device.pci.Available+ dom0 name dom0\0x",
        b"2\0ProtocolError\0\0unexpected payload\0",
    );
}

#[test]
fn s3_8_s3_10_assign_and_assigned() {
    let mut fx = Fixture::new();
    fx.expect(ASSIGN_XHCI, b"0\0");
    assert!(fx.changed());
    let ev = fx.events();
    assert_eq!(ev[0].subject, "work");
    assert_eq!(ev[0].name, "device-assign:pci");
    assert_eq!(ev[0].kwargs[0].1, "dom0:00_14.0:0x8086:0xa0ed::p0c0330");
    // Options are typed and echoed as `True` (DESIGN.md), `yes` included.
    fx.expect(ASSIGN_WIFI, b"0\0");
    fx.expect(
        b"admin.vm.device.pci.Assigned+ dom0 name sys-net\0",
        b"0\0dom0+00_1c.0-00_00.0:0x8086:0x2725::p028000 device_id='0x8086:0x2725::p028000' port_id='00_1c.0-00_00.0' devclass='pci' backend_domain='dom0' mode='required' frontend_domain='sys-net' _no-strict-reset='True' _permissive='True'\n",
    );
    fx.expect(b"admin.vm.device.pci.Assigned+ dom0 name dom0\0", b"0\0");
    let before = fx.snapshot();
    fx.expect(
        ASSIGN_WIFI,
        b"2\0DeviceAlreadyAssigned\0\0'pci device dom0:00_1c.0-00_00.0:0x8086:0x2725::p028000 already assigned to sys-net'\0",
    );
    assert_eq!(fx.snapshot(), before);
    // Filter by backend+port.
    fx.expect(
        b"admin.vm.device.pci.Assigned+dom0+00_14.0 dom0 name work\0",
        b"0\0dom0+00_14.0:0x8086:0xa0ed::p0c0330 device_id='0x8086:0xa0ed::p0c0330' port_id='00_14.0' devclass='pci' backend_domain='dom0' mode='required' frontend_domain='work'\n",
    );
    fx.expect(
        b"admin.vm.device.pci.Assigned+dom0+00_1f.0 dom0 name work\0",
        b"0\0",
    );
}

#[test]
fn s3_8_port_and_device_agnostic_assignments() {
    let mut fx = Fixture::new();
    // The minimal payload of the server tests: `--port`, identity `*`.
    fx.expect(
        b"admin.vm.device.pci.Assign+dom0+00_14.0+_ dom0 name work\0mode='required'",
        b"0\0",
    );
    fx.expect(
        b"admin.vm.device.pci.Assigned+ dom0 name work\0",
        b"0\0dom0+00_14.0:* device_id='*' port_id='00_14.0' devclass='pci' backend_domain='dom0' mode='required' frontend_domain='work'\n",
    );
    // `--device`: any port.
    fx.expect(
        b"admin.vm.device.pci.Assign+dom0+_+0x8086+0x2725++p028000 dom0 name sys-net\0device_id='0x8086:0x2725::p028000' port_id='*' devclass='pci' backend_domain='dom0' mode='required' frontend_domain='sys-net'",
        b"0\0",
    );
    fx.expect(
        b"admin.vm.device.pci.Assigned+ dom0 name sys-net\0",
        b"0\0dom0+*:0x8086:0x2725::p028000 device_id='0x8086:0x2725::p028000' port_id='*' devclass='pci' backend_domain='dom0' mode='required' frontend_domain='sys-net'\n",
    );
    // Removing the `--port` assignment needs `_` as the device id.
    fx.expect(
        b"admin.vm.device.pci.Unassign+dom0+00_14.0+0x8086+0xa0ed++p0c0330 dom0 name work\0",
        b"2\0DeviceNotAssigned\0\0'pci device dom0:00_14.0:0x8086:0xa0ed::p0c0330 not assigned to work'\0",
    );
    fx.expect(
        b"admin.vm.device.pci.Unassign+dom0+00_14.0+_ dom0 name work\0",
        b"0\0",
    );
    fx.expect(
        b"admin.vm.device.pci.Unassign+dom0+_+0x8086+0x2725++p028000 dom0 name sys-net\0",
        b"0\0",
    );
    fx.expect(b"admin.vm.device.pci.Assigned+ dom0 name sys-net\0", b"0\0");
}

#[test]
fn s3_10_assign_refusals() {
    let mut fx = Fixture::new();
    let before = fx.snapshot();
    let cases: &[(&[u8], &[u8])] = &[
        // Payload checks: Qubes' texts.
        (
            b"admin.vm.device.pci.Assign+dom0+00_14.0+0x8086+0xa0ed++p0c0330 dom0 name work\0port_id='00_1f.0' mode='required'",
            b"2\0ProtocolError\0\0Got device from port: 00_1f.0 when expected port: 00_14.0.\0",
        ),
        (
            b"admin.vm.device.pci.Assign+dom0+00_14.0+0x8086+0xa0ed++p0c0330 dom0 name work\0devclass='usb' mode='required'",
            b"2\0ProtocolError\0\0Got usb device when expected pci.\0",
        ),
        (
            b"admin.vm.device.pci.Assign+dom0+00_14.0+0x8086+0xa0ed++p0c0330 dom0 name work\0backend_domain='sys-net' mode='required'",
            b"2\0ProtocolError\0\0Got device exposed by sys-netwhen expected devices from dom0.\0",
        ),
        (
            b"admin.vm.device.pci.Assign+dom0+00_14.0+0x8086+0xa0ed++p0c0330 dom0 name work\0device_id='0x8086:0x2725::p028000' mode='required'",
            b"2\0ProtocolError\0\0Unrecognized device identity '0x8086:0x2725::p028000' expected '0x8086:0xa0ed::p0c0330'\0",
        ),
        (
            b"admin.vm.device.pci.Assign+dom0+00_14.0+_ dom0 name work\0mode='required' frontend_domain='nosuch'",
            b"2\0ProtocolError\0\0'nosuch'\0",
        ),
        // DESIGN.md: modes other than `required` are a QubesValueError.
        (
            b"admin.vm.device.pci.Assign+dom0+00_14.0+_ dom0 name work\0mode='auto-attach'",
            b"2\0QubesValueError\0\0PCI devices cannot be assigned as not required.\0",
        ),
        (
            b"admin.vm.device.pci.Assign+dom0+00_14.0+_ dom0 name work\0mode='manual'",
            b"2\0QubesValueError\0\0PCI devices cannot be assigned as not required.\0",
        ),
        (
            b"admin.vm.device.pci.Assign+dom0+00_14.0+_ dom0 name work\0mode='foo'",
            b"2\0QubesValueError\0\0'foo' is not a valid AssignmentMode\0",
        ),
        // Typed options.
        (
            b"admin.vm.device.pci.Assign+dom0+00_14.0+_ dom0 name work\0mode='required' _read-only='yes'",
            b"2\0QubesValueError\0\0unknown PCI option 'read-only': known options are no-strict-reset, permissive\0",
        ),
        (
            b"admin.vm.device.pci.Assign+dom0+00_14.0+_ dom0 name work\0mode='required' _permissive='maybe'",
            b"2\0QubesValueError\0\0invalid value 'maybe' for PCI option permissive: expected true/false, yes/no, 1/0 or on/off\0",
        ),
        // dom0-critical devices (DESIGN.md M10).
        (
            b"admin.vm.device.pci.Assign+dom0+00_00.0+0x8086+0x9a14++p060000 dom0 name work\0mode='required'",
            b"2\0QubesException\0\0pci device dom0:00_00.0:0x8086:0x9a14::p060000 cannot be assigned: dom0 needs 0000:00:00.0: host bridge (class 0600): dom0 needs it to reach every device\0",
        ),
        // A missing backend qube.
        (
            b"admin.vm.device.pci.Assign+nosuch+00_14.0+_ dom0 name work\0mode='required'",
            b"2\0QubesVMNotFoundError\0\0No such domain: 'nosuch'\0",
        ),
        (
            b"admin.vm.device.pci.Assign+dom0 dom0 name work\0mode='required'",
            b"2\0QubesValueError\0\0Invalid device argument 'dom0': expected BACKEND+PORT[+DEVICE_ID], such as dom0+00_14.0\0",
        ),
        (
            b"admin.vm.device.pci.Assign+dom0+00_14.0+_ dom0 name work\0",
            b"2\0ProtocolError\0\0expected payload\0",
        ),
        (
            b"admin.vm.device.pci.Assign+ dom0 name work\0mode='required'",
            b"2\0ProtocolError\0\0expected an argument\0",
        ),
    ];
    for (request, reply) in cases {
        fx.expect(request, reply);
    }
    assert_eq!(fx.snapshot(), before, "a refused request changes nothing");
}

#[test]
fn s3_10_assign_to_a_running_qube_is_stored() {
    let mut fx = Fixture::new();
    fx.ok(b"admin.vm.Start+ dom0 name work\0");
    fx.expect(ASSIGN_XHCI, b"0\0");
    // Not attached until the next start (DESIGN.md M4).
    fx.expect(b"admin.vm.device.pci.Attached+ dom0 name work\0", b"0\0");
}

#[test]
fn s3_9_attached_and_s3_13_detach() {
    let mut fx = Fixture::new();
    fx.expect(ASSIGN_XHCI, b"0\0");
    fx.expect(b"admin.vm.device.pci.Attached+ dom0 name work\0", b"0\0");
    fx.ok(b"admin.vm.Start+ dom0 name work\0");
    let attached: &[u8] = b"0\0dom0+00_14.0:0x8086:0xa0ed::p0c0330 device_id='0x8086:0xa0ed::p0c0330' port_id='00_14.0' devclass='pci' backend_domain='dom0' mode='required' frontend_domain='work'\n";
    fx.expect(b"admin.vm.device.pci.Attached+ dom0 name work\0", attached);
    fx.expect(
        b"admin.vm.device.pci.Attached+dom0+00_14.0 dom0 name work\0",
        attached,
    );
    fx.expect(b"admin.vm.device.pci.Attached+ dom0 name sys-net\0", b"0\0");
    fx.expect(b"admin.vm.device.pci.Attached+ dom0 name dom0\0", b"0\0");

    // §3.13.
    fx.expect(
        b"admin.vm.device.pci.Detach+dom0+00_14.0+0x8086+0xa0ed++p0c0330 dom0 name work\0",
        b"2\0QubesVMNotHaltedError\0\0Can not detach a required device from a non halted qube. You need to unassign device first.\0",
    );
    fx.expect(
        b"admin.vm.device.pci.Detach+dom0+00_1c.0-00_00.0+0x8086+0x2725++p028000 dom0 name work\0",
        b"2\0DeviceNotAssigned\0\0'pci device 00_1c.0-00_00.0 not attached to work'\0",
    );
    // After Unassign the device stays attached, reported as `manual`.
    fx.expect(
        b"admin.vm.device.pci.Unassign+dom0+00_14.0+0x8086+0xa0ed++p0c0330 dom0 name work\0",
        b"0\0",
    );
    fx.expect(
        b"admin.vm.device.pci.Attached+ dom0 name work\0",
        b"0\0dom0+00_14.0:0x8086:0xa0ed::p0c0330 device_id='0x8086:0xa0ed::p0c0330' port_id='00_14.0' devclass='pci' backend_domain='dom0' mode='manual' frontend_domain='work'\n",
    );
    // DESIGN.md: the detach of a device no longer assigned is carried out.
    fx.expect(
        b"admin.vm.device.pci.Detach+dom0+00_14.0+0x8086+0xa0ed++p0c0330 dom0 name work\0",
        b"0\0",
    );
    assert_eq!(fx.events()[0].name, "device-detach:pci");
    fx.expect(b"admin.vm.device.pci.Attached+ dom0 name work\0", b"0\0");
}

#[test]
fn s3_11_unassign() {
    let mut fx = Fixture::new();
    fx.expect(ASSIGN_XHCI, b"0\0");
    let unassign: &[u8] =
        b"admin.vm.device.pci.Unassign+dom0+00_14.0+0x8086+0xa0ed++p0c0330 dom0 name work\0";
    fx.expect(unassign, b"0\0");
    assert_eq!(fx.events()[0].name, "device-unassign:pci");
    fx.expect(
        unassign,
        b"2\0DeviceNotAssigned\0\0'pci device dom0:00_14.0:0x8086:0xa0ed::p0c0330 not assigned to work'\0",
    );
    // A `--port` assignment of a port with no device, removed by port.
    fx.expect(
        b"admin.vm.device.pci.Assign+dom0+00_1e.0+_ dom0 name sys-net\0mode='required'",
        b"0\0",
    );
    fx.expect(
        b"admin.vm.device.pci.Unassign+dom0+00_1e.0+_ dom0 name sys-net\0",
        b"0\0",
    );
    // DESIGN.md: Unassign by port of an absent device (what the client
    // sends for an unknown device) removes whatever is assigned there.
    fx.expect(
        b"admin.vm.device.pci.Assign+dom0+00_1e.0+0x8086+0x1234++p020000 dom0 name sys-net\0mode='required'",
        b"0\0",
    );
    fx.expect(
        b"admin.vm.device.pci.Unassign+dom0+00_1e.0+0000+0000++_______ dom0 name sys-net\0",
        b"0\0",
    );
    fx.expect(b"admin.vm.device.pci.Assigned+ dom0 name sys-net\0", b"0\0");
}

#[test]
fn s3_12_attach_is_refused() {
    let mut fx = Fixture::new();
    fx.expect(
        b"admin.vm.device.pci.Attach+dom0+00_14.0+0x8086+0xa0ed++p0c0330 dom0 name work\0",
        b"2\0QubesVMNotRunningError\0\0VM not running, cannot attach device, do you mean `assign`?\0",
    );
    fx.ok(b"admin.vm.Start+ dom0 name work\0");
    fx.expect(
        b"admin.vm.device.pci.Attach+dom0+00_14.0+0x8086+0xa0ed++p0c0330 dom0 name work\0device_id='0x8086:0xa0ed::p0c0330' mode='manual'",
        b"2\0QubesException\0\0PCI devices are attached only when a qube starts: run `qvm-pci assign --required work dom0:00_14.0`, then restart work\0",
    );
}

#[test]
fn s3_14_set_assignment() {
    let mut fx = Fixture::new();
    fx.expect(ASSIGN_XHCI, b"0\0");
    let set =
        b"admin.vm.device.pci.Set.assignment+dom0+00_14.0+0x8086+0xa0ed++p0c0330 dom0 name work\0";
    fx.expect(&cat(&[set, b"required"]), b"0\0");
    assert!(!fx.changed(), "unchanged mode: nothing happens");
    fx.expect(
        &cat(&[set, b"manual"]),
        b"2\0QubesUnrecognizedDeviceAssignmentMode\0\0Invalid assignment mode\0",
    );
    fx.expect(
        &cat(&[set, b"auto-attach"]),
        b"2\0QubesValueError\0\0PCI devices cannot be assigned as not required.\0",
    );
    fx.expect(
        b"admin.vm.device.pci.Set.assignment+dom0+00_14.0+_ dom0 name work\0required",
        b"2\0QubesValueError\0\0Device dom0:00_14.0:* not assigned to work\0",
    );
}

#[test]
fn s3_15_denied_list() {
    let mut fx = Fixture::new();
    fx.expect(b"admin.vm.device.denied.List+ dom0 name work\0", b"0\0");
    fx.expect(
        b"admin.vm.device.denied.Add+ dom0 name work\0p0c0330u03****",
        b"0\0",
    );
    assert!(fx.changed());
    fx.expect(
        b"admin.vm.device.denied.List+ dom0 name work\0",
        b"0\0p0c0330\nu03****",
    );
    fx.expect(
        b"admin.vm.property.Get+devices_denied dom0 name work\0",
        b"0\0default=False type=str p0c0330u03****",
    );
    fx.expect(
        b"admin.vm.device.denied.Add+ dom0 name work\0p0c0330",
        b"0\0",
    );
    assert!(!fx.changed(), "already denied: no save");
    fx.expect(
        b"admin.vm.device.denied.Add+ dom0 name work\0p0c0330p0c0330",
        b"2\0QubesValueError\0\0Duplicated device interfaces in payload.\0",
    );
    fx.expect(
        b"admin.vm.device.denied.Remove+ dom0 name work\0p0c0330",
        b"0\0",
    );
    fx.expect(
        b"admin.vm.device.denied.List+ dom0 name work\0",
        b"0\0u03****",
    );
    fx.expect(
        b"admin.vm.device.denied.Remove+ dom0 name work\0all",
        b"0\0",
    );
    fx.expect(b"admin.vm.device.denied.List+ dom0 name work\0", b"0\0");
}

#[test]
fn other_classes_list_empty_and_refuse_changes() {
    let mut fx = Fixture::new();
    for class in ["block", "usb", "mic"] {
        for action in ["Available", "Assigned", "Attached"] {
            fx.expect(
                format!("admin.vm.device.{class}.{action}+ dom0 name dom0\0").as_bytes(),
                b"0\0",
            );
        }
        fx.expect(
            format!("admin.vm.device.{class}.Assign+dom0+x dom0 name work\0mode='required'")
                .as_bytes(),
            format!(
                "2\0QubesException\0\0qpcid handles PCI devices only: {class} devices are not supported\0"
            )
            .as_bytes(),
        );
    }
}

#[test]
fn s1_4_unknown_methods_and_dest() {
    let mut fx = Fixture::new();
    fx.expect(
        b"admin.vm.device.foo.Available+ dom0 name dom0\0",
        b"2\0ProtocolError\0\0no such method: 'admin.vm.device.foo.Available'\0",
    );
    fx.expect(
        b"admin.vm.device.foo.Available+ dom0 name nosuch\0",
        b"2\0QubesVMNotFoundError\0\0No such domain: 'nosuch'\0",
    );
    assert!(
        fx.call(b"admin.vm.List+ dom0 name dom0").is_empty(),
        "no NUL: no reply"
    );
}
