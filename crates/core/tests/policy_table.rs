//! The policy as a table: request + registry snapshot + host → exact plan
//! or exact refusal (exception type and wire text).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod policy_common;

use policy_common::*;
use qpci_core::policy::{
    self, AssignRequest, DeviceKey, RequestedMode, check_virt_mode, plan_assign, plan_attach,
    plan_detach, plan_kill, plan_shutdown, plan_start, plan_unassign,
};
use qpci_core::registry::{AssignMode, AssignmentProblem, PortSpec, Qube, QubeClass, VirtMode};
use qpci_core::runtime::RunState;
use qpci_core::runtime::RunState::{Paused, Running};
use qpci_host::HostFlavour::{self, Kvm, Xen};
use qpci_types::DeviceIdentity;

const USB: &str = "0x8086:0xa0ed::p0c0330";
const NIC: &str = "0x8086:0x1533::p020000";
const WIFI: &str = "0x8086:0x2725::p028000";
const WIFI_FN1: &str = "0x8086:0x2726::p0c8000";
const AUDIO: &str = "0x8086:0xa0c8::p040300";
const VGA: &str = "0x8086:0x9a49::p030000";
const RAM: &str = "0x8086:0xa0ef::p050000";
const SERIAL: &str = "0x8086:0xa0e3::p070002";
const I2C: &str = "0x8086:0xa0e8::p0c8000";
const ABSENT: &str = "0x8086:0x1234::p020000";
const UNKNOWN: &str = "0000:0000::?******";

enum Req {
    Assign(
        &'static str,
        &'static str,
        RequestedMode,
        &'static [(&'static str, &'static str)],
    ),
    Unassign(&'static str, &'static str),
    Attach(&'static str),
    Detach(&'static str),
    Start,
    Shutdown(bool),
    Kill,
    SetVirtMode(VirtMode),
}

type Active = &'static [(&'static str, RunState, &'static [&'static str])];

struct Row {
    id: &'static str,
    qube: Qube,
    active: Active,
    host: HostFlavour,
    req: Req,
    expect: String,
}

fn row(
    id: &'static str,
    qube: Qube,
    active: Active,
    host: HostFlavour,
    req: Req,
    expect: &str,
) -> Row {
    Row {
        id,
        qube,
        active,
        host,
        req,
        expect: expect.to_owned(),
    }
}

fn key(port: &str, identity: &str) -> DeviceKey {
    let port = if port == "*" {
        PortSpec::Any
    } else {
        PortSpec::Path(port.parse().unwrap())
    };
    DeviceKey::dom0(port, DeviceIdentity::parse_or_any(identity).unwrap())
}

fn err(r: policy::Refusal) -> String {
    format!("ERR {}: {}", r.exc().name(), r.wire_text())
}

fn run(r: &Row) -> String {
    let inv = host(r.host);
    let rt = runtime(&inv, r.active);
    let q = &r.qube;
    match &r.req {
        Req::Assign(port, id, mode, opts) => {
            let req = AssignRequest {
                key: key(port, id),
                mode: *mode,
                untrusted_options: opts
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            };
            plan_assign(q, &rt, &inv, &req).map_or_else(err, |p| assign_text(&p))
        }
        Req::Unassign(port, id) => {
            plan_unassign(q, &rt, &inv, &key(port, id)).map_or_else(err, |p| unassign_text(&p))
        }
        Req::Attach(port) => err(plan_attach(q, &rt, &key(port, "*"))),
        Req::Detach(port) => {
            plan_detach(q, &rt, &key(port, "*")).map_or_else(err, |p| detach_text(&p))
        }
        Req::Start => plan_start(q, &rt, &inv, r.host).map_or_else(err, |d| start_text(&d)),
        Req::Shutdown(force) => plan_shutdown(q, &rt, *force).map_or_else(err, |p| stop_text(&p)),
        Req::Kill => plan_kill(q, &rt).map_or_else(err, |p| stop_text(&p)),
        Req::SetVirtMode(m) => check_virt_mode(q, *m).map_or_else(err, |()| "ok".to_owned()),
    }
}

const REQ: RequestedMode = RequestedMode::Mode(AssignMode::Required);
const NONE: Active = &[];

fn work(pci: Vec<qpci_core::registry::PciAssignment>) -> Qube {
    qube("work", pci)
}

fn pvh(mut q: Qube) -> Qube {
    q.virt_mode = VirtMode::Pvh;
    q.virt_mode_explicit = true;
    q
}

fn rows_assign() -> Vec<Row> {
    let usb = || vec![asg("00_14.0", USB, &[])];
    vec![
        row(
            "assign required",
            work(vec![]),
            NONE,
            Xen,
            Req::Assign("00_14.0", USB, REQ, &[]),
            "AtStart dom0:00_14.0:0x8086:0xa0ed::p0c0330 []",
        ),
        row(
            "assign auto-attach refused",
            work(vec![]),
            NONE,
            Xen,
            Req::Assign(
                "00_14.0",
                USB,
                RequestedMode::Mode(AssignMode::AutoAttach),
                &[],
            ),
            "ERR QubesValueError: PCI devices cannot be assigned as not required.",
        ),
        row(
            "assign ask-to-attach refused",
            work(vec![]),
            NONE,
            Xen,
            Req::Assign(
                "00_14.0",
                USB,
                RequestedMode::Mode(AssignMode::AskToAttach),
                &[],
            ),
            "ERR QubesValueError: PCI devices cannot be assigned as not required.",
        ),
        row(
            "assign manual refused",
            work(vec![]),
            NONE,
            Xen,
            Req::Assign("00_14.0", USB, RequestedMode::Manual, &[]),
            "ERR QubesValueError: PCI devices cannot be assigned as not required.",
        ),
        row(
            "assign unknown option (--ro)",
            work(vec![]),
            NONE,
            Xen,
            Req::Assign("00_14.0", USB, REQ, &[("read-only", "yes")]),
            "ERR QubesValueError: unknown PCI option 'read-only': known options are no-strict-reset, permissive",
        ),
        row(
            "assign malformed option value",
            work(vec![]),
            NONE,
            Xen,
            Req::Assign("00_14.0", USB, REQ, &[("no-strict-reset", "maybe")]),
            "ERR QubesValueError: invalid value 'maybe' for PCI option no-strict-reset: expected true/false, yes/no, 1/0 or on/off",
        ),
        row(
            "assign true options stored as True",
            work(vec![]),
            NONE,
            Xen,
            Req::Assign(
                "00_14.0",
                USB,
                REQ,
                &[("no-strict-reset", "yes"), ("permissive", "ON")],
            ),
            "AtStart dom0:00_14.0:0x8086:0xa0ed::p0c0330 [no-strict-reset=True, permissive=True]",
        ),
        row(
            "assign false option stored as absent",
            work(vec![]),
            NONE,
            Xen,
            Req::Assign("00_14.0", USB, REQ, &[("permissive", "false")]),
            "AtStart dom0:00_14.0:0x8086:0xa0ed::p0c0330 []",
        ),
        row(
            "assign ISA bridge refused",
            work(vec![]),
            NONE,
            Xen,
            Req::Assign("00_1f.0", "0x8086:0xa082::p060100", REQ, &[]),
            "ERR QubesException: pci device dom0:00_1f.0:0x8086:0xa082::p060100 cannot be assigned: dom0 needs 0000:00:1f.0: ISA/LPC bridge (class 0601): holds dom0's TPM, embedded controller and keyboard",
        ),
        row(
            "assign dom0 storage refused",
            work(vec![]),
            NONE,
            Xen,
            Req::Assign(
                "00_17.0",
                "0x8086:0xa0d3::p010601",
                REQ,
                &[("no-strict-reset", "true")],
            ),
            "ERR QubesException: pci device dom0:00_17.0:0x8086:0xa0d3::p010601 cannot be assigned: dom0 needs 0000:00:17.0: controller of dom0's / (via sda)",
        ),
        row(
            "assign bridge by --port refused",
            work(vec![]),
            NONE,
            Xen,
            Req::Assign("00_1c.0", "*", REQ, &[]),
            "ERR QubesException: pci device dom0:00_1c.0:* cannot be assigned: dom0 needs 0000:00:1c.0: PCI bridge: dom0 needs it to reach the devices behind it; assign the devices, not the bridge",
        ),
        row(
            "assign host bridge by --device refused",
            work(vec![]),
            NONE,
            Xen,
            Req::Assign("*", "0x8086:0x9a14::p060000", REQ, &[]),
            "ERR QubesException: pci device dom0:*:0x8086:0x9a14::p060000 cannot be assigned: dom0 needs 0000:00:00.0: host bridge (class 0600): dom0 needs it to reach every device",
        ),
        row(
            "assign duplicate",
            work(usb()),
            NONE,
            Xen,
            Req::Assign("00_14.0", USB, REQ, &[]),
            "ERR DeviceAlreadyAssigned: 'pci device dom0:00_14.0:0x8086:0xa0ed::p0c0330 already assigned to work'",
        ),
        row(
            "assign duplicate ignores options",
            work(usb()),
            NONE,
            Xen,
            Req::Assign("00_14.0", USB, REQ, &[("permissive", "true")]),
            "ERR DeviceAlreadyAssigned: 'pci device dom0:00_14.0:0x8086:0xa0ed::p0c0330 already assigned to work'",
        ),
        row(
            "assign --port beside a pinned one is not a duplicate",
            work(usb()),
            NONE,
            Xen,
            Req::Assign("00_14.0", "*", REQ, &[]),
            "AtStart dom0:00_14.0:* [] | assignment dom0:00_14.0:* is not pinned to a device identity: it takes whatever sits at its port (now 0x8086:0xa0ed::p0c0330)",
        ),
        row(
            "assign to running qube: next start",
            work(vec![]),
            &[("work", Running, &[])],
            Xen,
            Req::Assign("00_14.0", USB, REQ, &[]),
            "NextStart dom0:00_14.0:0x8086:0xa0ed::p0c0330 []",
        ),
        row(
            "assign --device",
            work(vec![]),
            NONE,
            Xen,
            Req::Assign("*", NIC, REQ, &[]),
            "AtStart dom0:*:0x8086:0x1533::p020000 []",
        ),
        row(
            "assign *:* refused",
            work(vec![]),
            NONE,
            Xen,
            Req::Assign("*", "*", REQ, &[]),
            "ERR QubesValueError: an assignment needs a port or a device id: any port with any device ('*:*') is not allowed",
        ),
        row(
            "assign absent device with explicit id",
            work(vec![]),
            NONE,
            Xen,
            Req::Assign("00_1d.0", ABSENT, REQ, &[]),
            "AtStart dom0:00_1d.0:0x8086:0x1234::p020000 [] | pci device dom0:00_1d.0:0x8086:0x1234::p020000 is not present now: the qube will not start until it is",
        ),
        row(
            "assign other identity than present",
            work(vec![]),
            NONE,
            Xen,
            Req::Assign("00_14.0", ABSENT, REQ, &[]),
            "AtStart dom0:00_14.0:0x8086:0x1234::p020000 [] | pci device dom0:00_14.0:0x8086:0x1234::p020000 is not present now: the qube will not start until it is",
        ),
        row(
            "assign boot VGA warns",
            work(vec![]),
            NONE,
            Xen,
            Req::Assign("00_02.0", VGA, REQ, &[]),
            "AtStart dom0:00_02.0:0x8086:0x9a49::p030000 [] | pci device 00_02.0 (0000:00:02.0) is the boot VGA: dom0's console goes dark while the qube holds it",
        ),
        row(
            "assign to pvh qube warns",
            pvh(work(vec![])),
            NONE,
            Xen,
            Req::Assign("00_14.0", USB, REQ, &[]),
            "AtStart dom0:00_14.0:0x8086:0xa0ed::p0c0330 [] | work has virt_mode pvh and will not start with PCI devices: set virt_mode to hvm",
        ),
        row(
            "assign to RemoteVM",
            Qube {
                class: QubeClass::RemoteVM,
                ..work(vec![])
            },
            NONE,
            Xen,
            Req::Assign("00_14.0", USB, REQ, &[]),
            "ERR QubesException: This qube doesn't support devices",
        ),
    ]
}

fn rows_unassign_attach_detach() -> Vec<Row> {
    let usb = || vec![asg("00_14.0", USB, &[])];
    vec![
        row(
            "unassign exact",
            work(usb()),
            NONE,
            Xen,
            Req::Unassign("00_14.0", USB),
            "remove [0]; still attached []",
        ),
        row(
            "unassign not assigned",
            work(vec![]),
            NONE,
            Xen,
            Req::Unassign("00_14.0", USB),
            "ERR DeviceNotAssigned: 'pci device dom0:00_14.0:0x8086:0xa0ed::p0c0330 not assigned to work'",
        ),
        row(
            "unassign compares * literally",
            work(vec![asg("00_14.0", "*", &[])]),
            NONE,
            Xen,
            Req::Unassign("00_14.0", USB),
            "ERR DeviceNotAssigned: 'pci device dom0:00_14.0:0x8086:0xa0ed::p0c0330 not assigned to work'",
        ),
        row(
            "unassign --port",
            work(vec![asg("00_14.0", "*", &[]), asg("00_15.0", I2C, &[])]),
            NONE,
            Xen,
            Req::Unassign("00_14.0", "*"),
            "remove [0]; still attached []",
        ),
        row(
            "unassign absent device by port",
            work(vec![asg("00_15.0", I2C, &[]), asg("00_1d.0", ABSENT, &[])]),
            NONE,
            Xen,
            Req::Unassign("00_1d.0", UNKNOWN),
            "remove [1]; still attached []",
        ),
        row(
            "unassign unknown id at a present device",
            work(usb()),
            NONE,
            Xen,
            Req::Unassign("00_14.0", UNKNOWN),
            "ERR DeviceNotAssigned: 'pci device dom0:00_14.0:0000:0000::?****** not assigned to work'",
        ),
        row(
            "unassign while running: stays attached",
            work(usb()),
            &[("work", Running, &["0000:00:14.0"])],
            Xen,
            Req::Unassign("00_14.0", USB),
            "remove [0]; still attached [0000:00:14.0]",
        ),
        row(
            "attach to halted",
            work(usb()),
            NONE,
            Xen,
            Req::Attach("00_14.0"),
            "ERR QubesVMNotRunningError: VM not running, cannot attach device, do you mean `assign`?",
        ),
        row(
            "attach to running refused (M4)",
            work(vec![]),
            &[("work", Running, &[])],
            Xen,
            Req::Attach("00_14.0"),
            "ERR QubesException: PCI devices are attached only when a qube starts: run `qvm-pci assign --required work dom0:00_14.0`, then restart work",
        ),
        row(
            "detach from halted",
            work(usb()),
            NONE,
            Xen,
            Req::Detach("00_14.0"),
            "ERR DeviceNotAssigned: 'pci device 00_14.0 not attached to work'",
        ),
        row(
            "detach required device refused",
            work(usb()),
            &[("work", Running, &["0000:00:14.0"])],
            Xen,
            Req::Detach("00_14.0"),
            "ERR QubesVMNotHaltedError: Can not detach a required device from a non halted qube. You need to unassign device first.",
        ),
        row(
            "detach: --port assignment matches",
            work(vec![asg("00_14.0", "*", &[])]),
            &[("work", Running, &["0000:00:14.0"])],
            Xen,
            Req::Detach("00_14.0"),
            "ERR QubesVMNotHaltedError: Can not detach a required device from a non halted qube. You need to unassign device first.",
        ),
        row(
            "detach: --device assignment matches",
            work(vec![asg("*", NIC, &[])]),
            &[("work", Running, &["0000:00:19.0"])],
            Xen,
            Req::Detach("00_19.0"),
            "ERR QubesVMNotHaltedError: Can not detach a required device from a non halted qube. You need to unassign device first.",
        ),
        row(
            "detach attached but unassigned",
            work(vec![]),
            &[("work", Running, &["0000:00:14.0"])],
            Xen,
            Req::Detach("00_14.0"),
            "detach 0000:00:14.0 from work",
        ),
        row(
            "detach: non-required assignment does not block",
            work(vec![asg_mode("00_14.0", USB, AssignMode::AutoAttach)]),
            &[("work", Running, &["0000:00:14.0"])],
            Xen,
            Req::Detach("00_14.0"),
            "detach 0000:00:14.0 from work",
        ),
        row(
            "detach other port",
            work(usb()),
            &[("work", Running, &["0000:00:14.0"])],
            Xen,
            Req::Detach("00_15.0"),
            "ERR DeviceNotAssigned: 'pci device 00_15.0 not attached to work'",
        ),
    ]
}

fn rows_start() -> Vec<Row> {
    let usb = || vec![asg("00_14.0", USB, &[])];
    let bad_option = {
        let mut a = asg("00_14.0", USB, &[]);
        a.problems.push(AssignmentProblem::BadOption {
            name: "permissive".into(),
            value: "maybe".into(),
            why: "not a boolean".into(),
        });
        a
    };
    vec![
        row(
            "start with USB (xen)",
            work(usb()),
            NONE,
            Xen,
            Req::Start,
            "start work pciback hvm mem=400 maxmem=0 balancing=false: 0000:00:14.0 00_14.0 [] xhci_hcd: override=pciback,new_slot,unbind=xhci_hcd,probe=pciback",
        ),
        row(
            "start without PCI balances memory",
            work(vec![]),
            NONE,
            Xen,
            Req::Start,
            "start work pciback hvm mem=400 maxmem=4000 balancing=true: ",
        ),
        row(
            "start dom0",
            qube("dom0", vec![]),
            NONE,
            Xen,
            Req::Start,
            "ERR QubesVMNotHaltedError: Cannot start Dom0 fake domain!",
        ),
        row(
            "start running: no-op",
            work(usb()),
            &[("work", Running, &["0000:00:14.0"])],
            Xen,
            Req::Start,
            "already running",
        ),
        row(
            "start with unusable assignment",
            work(vec![bad_option]),
            NONE,
            Xen,
            Req::Start,
            "ERR QubesException: Cannot start work: the assignment of pci device dom0:00_14.0:0x8086:0xa0ed::p0c0330 is not usable: option permissive=maybe is not valid: not a boolean; fix or unassign it",
        ),
        row(
            "start skips non-required",
            work(vec![asg_mode("00_14.0", USB, AssignMode::AskToAttach)]),
            NONE,
            Xen,
            Req::Start,
            "start work pciback hvm mem=400 maxmem=0 balancing=false:  | assignment dom0:00_14.0:0x8086:0xa0ed::p0c0330 has mode ask-to-attach and is not attached at start (PCI takes required only)",
        ),
        row(
            "start pvh with PCI (M12)",
            pvh(work(usb())),
            NONE,
            Xen,
            Req::Start,
            "ERR QubesException: Cannot start work: pvh mode can't be set if pci devices are assigned; set virt_mode to hvm (qvm-prefs work virt_mode hvm)",
        ),
        row(
            "start pvh without PCI",
            pvh(work(vec![])),
            NONE,
            Xen,
            Req::Start,
            "start work pciback pvh mem=400 maxmem=4000 balancing=true: ",
        ),
        row(
            "start: device absent",
            work(vec![asg("00_1d.0", ABSENT, &[])]),
            NONE,
            Xen,
            Req::Start,
            "ERR QubesException: Pci device dom0:00_1d.0:0x8086:0x1234::p020000 not available: device not present",
        ),
        row(
            "start: another device at the port",
            work(vec![asg("00_14.0", ABSENT, &[])]),
            NONE,
            Xen,
            Req::Start,
            "ERR QubesException: Pci device dom0:00_14.0:0x8086:0x1234::p020000 not available: a different device is now at 00_14.0: expected 0x8086:0x1234::p020000, found 0x8086:0xa0ed::p0c0330",
        ),
        row(
            "start: --port takes what is there",
            work(vec![asg("00_14.0", "*", &[])]),
            NONE,
            Xen,
            Req::Start,
            "start work pciback hvm mem=400 maxmem=0 balancing=false: 0000:00:14.0 00_14.0 [] xhci_hcd: override=pciback,new_slot,unbind=xhci_hcd,probe=pciback | assignment dom0:00_14.0:* is not pinned to a device identity: it takes whatever sits at its port (now 0x8086:0xa0ed::p0c0330)",
        ),
        row(
            "start: --device takes every match",
            work(vec![asg("*", NIC, &[])]),
            NONE,
            Kvm,
            Req::Start,
            "start work vfio-pci hvm mem=400 maxmem=0 balancing=false: 0000:00:19.0 00_19.0 [] igb: override=vfio-pci,unbind=igb,probe=vfio-pci; 0000:00:1b.0 00_1b.0 [] igb: override=vfio-pci,unbind=igb,probe=vfio-pci",
        ),
        row(
            "start: --device with no match",
            work(vec![asg("*", ABSENT, &[])]),
            NONE,
            Xen,
            Req::Start,
            "ERR QubesException: Pci device dom0:*:0x8086:0x1234::p020000 not available: device not present",
        ),
        row(
            "start: held by a running qube (M5)",
            work(usb()),
            &[("sys-usb", Running, &["0000:00:14.0"])],
            Xen,
            Req::Start,
            "ERR QubesException: Cannot start work: pci device 00_14.0 (0000:00:14.0) is in use by sys-usb, which is running; shut sys-usb down first",
        ),
        row(
            "start: held by a paused qube (M5)",
            work(usb()),
            &[("sys-usb", Paused, &["0000:00:14.0"])],
            Xen,
            Req::Start,
            "ERR QubesException: Cannot start work: pci device 00_14.0 (0000:00:14.0) is in use by sys-usb, which is paused; kill it (qvm-kill sys-usb), or unpause it (qvm-unpause sys-usb) and shut it down first",
        ),
        row(
            "start: free after holder halted",
            work(usb()),
            &[("sys-usb", Running, &[])],
            Xen,
            Req::Start,
            "start work pciback hvm mem=400 maxmem=0 balancing=false: 0000:00:14.0 00_14.0 [] xhci_hcd: override=pciback,new_slot,unbind=xhci_hcd,probe=pciback",
        ),
        row(
            "start: critical device from the file (M10)",
            work(vec![asg(
                "00_1f.0",
                "0x8086:0xa082::p060100",
                &["no-strict-reset=1"],
            )]),
            NONE,
            Xen,
            Req::Start,
            "ERR QubesException: Cannot start work: pci device 00_1f.0 (0000:00:1f.0) is needed by dom0: ISA/LPC bridge (class 0601): holds dom0's TPM, embedded controller and keyboard; unassign it",
        ),
        row(
            "start: no reset at all (M7)",
            work(vec![asg("00_1f.3", AUDIO, &[])]),
            NONE,
            Xen,
            Req::Start,
            "ERR QubesException: Cannot start work: pci device 00_1f.3 (0000:00:1f.3) has no reset method (no function-level reset, and no bridge above it for a bus reset), so its state could leak to the next qube that uses it; assign it with -o no-strict-reset=true to accept that",
        ),
        row(
            "start: no reset with no-strict-reset",
            work(vec![asg("00_1f.3", AUDIO, &["no-strict-reset=true"])]),
            NONE,
            Xen,
            Req::Start,
            "start work pciback hvm mem=400 maxmem=0 balancing=false: 0000:00:1f.3 00_1f.3 [no-strict-reset=True] snd_hda_intel: override=pciback,new_slot,unbind=snd_hda_intel,probe=pciback | pci device 00_1f.3 (0000:00:1f.3) passes only because of no-strict-reset: it has no reset method; its state may leak to the next qube that uses it",
        ),
        row(
            "start: bus reset domain split (M6)",
            work(vec![asg("00_1c.0-00_00.0", WIFI, &[])]),
            NONE,
            Xen,
            Req::Start,
            "ERR QubesException: Cannot start work: pci device 00_1c.0-00_00.0 (0000:02:00.0) has no function-level reset; it can only be reset by a bus reset of bridge 0000:00:1c.0, which also resets 00_1c.0-00_00.1 (0000:02:00.1): assign it to work too, or assign this device with -o no-strict-reset=true",
        ),
        row(
            "start: whole bus to one qube",
            work(vec![
                asg("00_1c.0-00_00.0", WIFI, &[]),
                asg("00_1c.0-00_00.1", WIFI_FN1, &[]),
            ]),
            NONE,
            Xen,
            Req::Start,
            "start work pciback hvm mem=400 maxmem=0 balancing=false: 0000:02:00.0 00_1c.0-00_00.0 [] iwlwifi: override=pciback,new_slot,unbind=iwlwifi,probe=pciback; 0000:02:00.1 00_1c.0-00_00.1 [] -: override=pciback,new_slot,probe=pciback",
        ),
        row(
            "start: bus split with no-strict-reset",
            work(vec![asg("00_1c.0-00_00.0", WIFI, &["no-strict-reset=on"])]),
            NONE,
            Xen,
            Req::Start,
            "start work pciback hvm mem=400 maxmem=0 balancing=false: 0000:02:00.0 00_1c.0-00_00.0 [no-strict-reset=True] iwlwifi: override=pciback,new_slot,unbind=iwlwifi,probe=pciback | pci device 00_1c.0-00_00.0 (0000:02:00.0) passes only because of no-strict-reset: its bus reset (bridge 0000:00:1c.0) also resets 00_1c.0-00_00.1 (0000:02:00.1); its state may leak to the next qube that uses it",
        ),
        row(
            "start: boot VGA warns",
            work(vec![asg("00_02.0", VGA, &[])]),
            NONE,
            Xen,
            Req::Start,
            "start work pciback hvm mem=400 maxmem=0 balancing=false: 0000:00:02.0 00_02.0 [] i915: override=pciback,new_slot,unbind=i915,probe=pciback | pci device 00_02.0 (0000:00:02.0) is the boot VGA: dom0's console goes dark while the qube holds it",
        ),
        row(
            "start: already on pciback (M8 leftover)",
            work(vec![asg("00_16.0", SERIAL, &[])]),
            NONE,
            Xen,
            Req::Start,
            "start work pciback hvm mem=400 maxmem=0 balancing=false: 0000:00:16.0 00_16.0 [] pciback: new_slot",
        ),
        row(
            "start: unbound device",
            work(vec![asg("00_15.0", I2C, &[])]),
            NONE,
            Xen,
            Req::Start,
            "start work pciback hvm mem=400 maxmem=0 balancing=false: 0000:00:15.0 00_15.0 [] -: override=pciback,new_slot,probe=pciback",
        ),
        row(
            "start: pciback leftover on kvm rebinds",
            work(vec![asg("00_16.0", SERIAL, &[])]),
            NONE,
            Kvm,
            Req::Start,
            "start work vfio-pci hvm mem=400 maxmem=0 balancing=false: 0000:00:16.0 00_16.0 [] pciback: override=vfio-pci,unbind=pciback,probe=vfio-pci",
        ),
        row(
            "start: permissive on xen",
            work(vec![asg("00_15.0", I2C, &["permissive=yes"])]),
            NONE,
            Xen,
            Req::Start,
            "start work pciback hvm mem=400 maxmem=0 balancing=false: 0000:00:15.0 00_15.0 [permissive=True] -: override=pciback,new_slot,probe=pciback",
        ),
        row(
            "start: permissive on kvm refused",
            work(vec![asg("00_15.0", I2C, &["permissive=yes"])]),
            NONE,
            Kvm,
            Req::Start,
            "ERR QubesException: Cannot start work: pci device 00_15.0 (0000:00:15.0) has option permissive, which vfio-pci (KVM) cannot honour; unassign it and assign it again without -o permissive",
        ),
        row(
            "start: IOMMU group split (kvm)",
            work(usb()),
            NONE,
            Kvm,
            Req::Start,
            "ERR QubesException: Cannot start work: pci device 00_14.0 (0000:00:14.0) is in IOMMU group 5 with 00_14.2 (0000:00:14.2), which must go to the same qube: assign it to work too",
        ),
        row(
            "start: whole IOMMU group (kvm)",
            work(vec![asg("00_14.0", USB, &[]), asg("00_14.2", RAM, &[])]),
            NONE,
            Kvm,
            Req::Start,
            "start work vfio-pci hvm mem=400 maxmem=0 balancing=false: 0000:00:14.0 00_14.0 [] xhci_hcd: override=vfio-pci,unbind=xhci_hcd,probe=vfio-pci; 0000:00:14.2 00_14.2 [] -: override=vfio-pci,probe=vfio-pci",
        ),
        row(
            "start: IOMMU group bridge excepted (kvm)",
            work(vec![
                asg("00_1c.0-00_00.0", WIFI, &[]),
                asg("00_1c.0-00_00.1", WIFI_FN1, &[]),
            ]),
            NONE,
            Kvm,
            Req::Start,
            "start work vfio-pci hvm mem=400 maxmem=0 balancing=false: 0000:02:00.0 00_1c.0-00_00.0 [] iwlwifi: override=vfio-pci,unbind=iwlwifi,probe=vfio-pci; 0000:02:00.1 00_1c.0-00_00.1 [] -: override=vfio-pci,probe=vfio-pci",
        ),
        row(
            "start: IOMMU group ignored without groups (xen)",
            work(vec![asg("00_1c.0-00_00.0", WIFI, &["no-strict-reset=1"])]),
            NONE,
            Xen,
            Req::Start,
            "start work pciback hvm mem=400 maxmem=0 balancing=false: 0000:02:00.0 00_1c.0-00_00.0 [no-strict-reset=True] iwlwifi: override=pciback,new_slot,unbind=iwlwifi,probe=pciback | pci device 00_1c.0-00_00.0 (0000:02:00.0) passes only because of no-strict-reset: its bus reset (bridge 0000:00:1c.0) also resets 00_1c.0-00_00.1 (0000:02:00.1); its state may leak to the next qube that uses it",
        ),
        row(
            "start: IOMMU group not relaxed by no-strict-reset (kvm)",
            work(vec![asg("00_1c.0-00_00.0", WIFI, &["no-strict-reset=1"])]),
            NONE,
            Kvm,
            Req::Start,
            "ERR QubesException: Cannot start work: pci device 00_1c.0-00_00.0 (0000:02:00.0) is in IOMMU group 6 with 00_1c.0-00_00.1 (0000:02:00.1), which must go to the same qube: assign it to work too",
        ),
        row(
            "start: one device named twice",
            work(vec![
                asg("00_19.0", NIC, &[]),
                asg("*", NIC, &["permissive=1"]),
            ]),
            NONE,
            Xen,
            Req::Start,
            "start work pciback hvm mem=400 maxmem=0 balancing=false: 0000:00:19.0 00_19.0 [] igb: override=pciback,new_slot,unbind=igb,probe=pciback; 0000:00:1b.0 00_1b.0 [permissive=True] igb: override=pciback,new_slot,unbind=igb,probe=pciback | pci device 00_19.0 (0000:00:19.0) is named by two assignments: the first one's options are used",
        ),
    ]
}

fn rows_stop_and_props() -> Vec<Row> {
    let usb = || vec![asg("00_14.0", USB, &[])];
    vec![
        row(
            "shutdown keeps devices on stub (M8)",
            work(usb()),
            &[("work", Running, &["0000:00:14.0"])],
            Xen,
            Req::Shutdown(false),
            "Shutdown work; left on stub [0000:00:14.0]",
        ),
        row(
            "shutdown halted",
            work(usb()),
            NONE,
            Xen,
            Req::Shutdown(false),
            "ERR QubesVMNotStartedError: Domain is powered off: 'work'",
        ),
        row(
            "shutdown paused",
            work(usb()),
            &[("work", Paused, &["0000:00:14.0"])],
            Xen,
            Req::Shutdown(false),
            "ERR QubesVMNotRunningError: Domain not running (either powered off or paused): 'work'",
        ),
        row(
            "shutdown paused with force",
            work(usb()),
            &[("work", Paused, &["0000:00:14.0"])],
            Xen,
            Req::Shutdown(true),
            "Shutdown work; left on stub [0000:00:14.0]",
        ),
        row(
            "shutdown dom0",
            qube("dom0", vec![]),
            NONE,
            Xen,
            Req::Shutdown(true),
            "ERR QubesVMError: Cannot shutdown Dom0 fake domain!",
        ),
        row(
            "kill keeps devices on stub (M8)",
            work(usb()),
            &[("work", Paused, &["0000:00:14.0"])],
            Xen,
            Req::Kill,
            "Kill work; left on stub [0000:00:14.0]",
        ),
        row(
            "kill halted",
            work(usb()),
            NONE,
            Xen,
            Req::Kill,
            "ERR QubesVMNotStartedError: Domain is powered off: 'work'",
        ),
        row(
            "kill dom0",
            qube("dom0", vec![]),
            NONE,
            Xen,
            Req::Kill,
            "ERR QubesVMError: Cannot kill Dom0 fake domain!",
        ),
        row(
            "set pvh with PCI refused",
            work(usb()),
            NONE,
            Xen,
            Req::SetVirtMode(VirtMode::Pvh),
            "ERR QubesPropertyValueError: pvh mode can't be set if pci devices are assigned",
        ),
        row(
            "set pvh with a non-required assignment refused",
            work(vec![asg_mode("00_14.0", USB, AssignMode::AutoAttach)]),
            NONE,
            Xen,
            Req::SetVirtMode(VirtMode::Pvh),
            "ERR QubesPropertyValueError: pvh mode can't be set if pci devices are assigned",
        ),
        row(
            "set pvh without PCI",
            work(vec![]),
            NONE,
            Xen,
            Req::SetVirtMode(VirtMode::Pvh),
            "ok",
        ),
        row(
            "set hvm with PCI",
            work(usb()),
            NONE,
            Xen,
            Req::SetVirtMode(VirtMode::Hvm),
            "ok",
        ),
    ]
}

#[test]
fn policy_table() {
    let rows: Vec<Row> = [
        rows_assign(),
        rows_unassign_attach_detach(),
        rows_start(),
        rows_stop_and_props(),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert!(rows.len() >= 40, "{} rows", rows.len());
    let mut failures = Vec::new();
    for r in &rows {
        let got = run(r);
        if got != r.expect {
            failures.push(format!("{}\n  want: {}\n  got:  {}", r.id, r.expect, got));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows differ:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

#[test]
fn defaults_follow_pci() {
    use qpci_core::policy::{default_maxmem, default_virt_mode};
    assert_eq!(default_virt_mode(true, Some(VirtMode::Pvh)), VirtMode::Hvm);
    assert_eq!(default_virt_mode(false, Some(VirtMode::Pv)), VirtMode::Pv);
    assert_eq!(default_virt_mode(false, None), VirtMode::Pvh);
    assert_eq!(default_maxmem(true, 4000), 0);
    assert_eq!(default_maxmem(false, 4000), 4000);
}

#[test]
fn binding_steps_are_described_as_sysfs_writes() {
    let inv = host(Xen);
    let rt = runtime(&inv, NONE);
    let d = plan_start(&work(vec![asg("00_14.0", USB, &[])]), &rt, &inv, Xen).unwrap();
    let qpci_core::policy::StartDecision::Start(plan) = d else {
        panic!("not a start")
    };
    assert_eq!(
        plan.binding_steps(),
        vec![
            "write pciback to sys/bus/pci/devices/0000:00:14.0/driver_override",
            "write 0000:00:14.0 to sys/bus/pci/drivers/pciback/new_slot",
            "write 0000:00:14.0 to sys/bus/pci/drivers/xhci_hcd/unbind",
            "write 0000:00:14.0 to sys/bus/pci/drivers_probe (expect pciback)",
        ]
    );
}

#[test]
fn assign_to_running_qube_says_next_start() {
    let inv = host(Xen);
    let req = AssignRequest {
        key: key("00_14.0", USB),
        mode: REQ,
        untrusted_options: vec![],
    };
    let halted = plan_assign(&work(vec![]), &runtime(&inv, NONE), &inv, &req).unwrap();
    assert_eq!(halted.effect_note(), None);
    let running = runtime(&inv, &[("work", Running, &[])]);
    let plan = plan_assign(&work(vec![]), &running, &inv, &req).unwrap();
    assert_eq!(
        plan.effect_note().unwrap(),
        "work is running: PCI devices are attached only at start, so dom0:00_14.0:0x8086:0xa0ed::p0c0330 will be attached at its next start"
    );
}

/// KVM without an active IOMMU: vfio-pci would refuse the device at probe
/// time (and the qube's DMA would be unconfined), so start refuses first and
/// says how to turn the IOMMU on. Xen dom0 exposes no groups and is unaffected.
#[test]
fn kvm_without_iommu_refuses_start() {
    let mut inv = host(Kvm);
    inv.iommu_groups = false;
    for d in &mut inv.devices {
        d.iommu_group = None;
        d.iommu_group_peers.clear();
    }
    let rt = runtime(&inv, NONE);
    let q = work(vec![asg("00_15.0", I2C, &[])]);
    let got = plan_start(&q, &rt, &inv, Kvm).map_or_else(err, |d| start_text(&d));
    assert_eq!(
        got,
        "ERR QubesException: Cannot start work: pci device 00_15.0 (0000:00:15.0) has no IOMMU group, \
         so vfio-pci (KVM) cannot take it and the qube's DMA would reach all of dom0's memory; enable \
         the IOMMU (VT-d or AMD-Vi in the firmware setup, intel_iommu=on or amd_iommu=on on the kernel \
         command line), reboot, and check with qvm-pci doctor"
    );
    let xen = host(Xen);
    let rt = runtime(&xen, NONE);
    let got = plan_start(&q, &rt, &xen, Xen).map_or_else(err, |d| start_text(&d));
    assert!(got.starts_with("start work pciback"), "{got}");
}
