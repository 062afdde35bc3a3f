//! The qube-management tools and qvm-pci against the fake qubesd: exact
//! output, error styles, exit codes and the requests sent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::fakeqd::{FakeQd, XHCI, laptop, prop};
use common::{last_line, outcome};

fn run(qd: &FakeQd, bin: &str, args: &[&str]) -> (String, String, i32) {
    outcome(&mut qd.cmd(bin, args))
}

#[test]
fn pci_list_with_assignments_is_the_spec_example() {
    let qd = FakeQd::start(laptop());
    let (out, err, code) = run(&qd, "qvm-pci", &["list", "-s"]);
    assert_eq!((err.as_str(), code), ("", 0));
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
    let reqs = qd.take_requests();
    assert_eq!(reqs[0], "qpci.List+ dom0", "one qpci.List first: {reqs:?}");
    assert!(reqs.contains(&"admin.vm.List+ dom0".to_owned()), "{reqs:?}");
}

#[test]
fn pci_list_uses_one_round_trip_when_qpci_list_exists() {
    let mut model = laptop();
    model.ext.insert(
        "qpci.List".into(),
        r#"{"devices":[{"backend":"dom0","port_id":"00_14.0","sbdf":"0000:00:14.0","device_id":"0x8086:0xa0ed::p0c0330","description":"PCI_USB: Intel Corporation xHCI","used_by":[{"qube":"sys-usb","attached":true,"mode":"required","options":{"no-strict-reset":"True"}}]}],
            "assignment_rows":[{"backend":"dom0","port_id":"00_14.0","device_id":"0x8086:0xa0ed::p0c0330","description":"0x8086:0xa0ed::p0c0330","used_by":[{"qube":"sys-usb","mode":"required","options":{}}]}],
            "qubes":[{"name":"dom0","class":"AdminVM","state":"Running"},{"name":"sys-usb","class":"AppVM","state":"Running"}]}"#
            .into(),
    );
    let qd = FakeQd::start(model);
    let (out, _, code) = run(&qd, "qvm-pci", &["list", "-s"]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "dom0:00_14.0  0x8086:0xa0ed::p0c0330           *sys-usb (required)\n\
         dom0:00_14.0  PCI_USB: Intel Corporation xHCI  sys-usb (attached: no-strict-reset=True)\n"
    );
    assert_eq!(qd.take_requests(), ["qpci.List+ dom0"]);
    let (out, _, _) = run(&qd, "qvm-pci", &["list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["devices"][0]["port_id"], "00_14.0");
    assert_eq!(v["assignment_rows"], serde_json::json!([]));
    let (out, err, code) = run(&qd, "qvm-pci", &["list", "nosuch"]);
    assert_eq!((out.as_str(), code), ("", 2));
    assert_eq!(last_line(&err), "qvm-pci: error: no such domain: 'nosuch'");
}

#[test]
fn pci_assign_requests_and_notes() {
    let qd = FakeQd::start(laptop());
    let (out, err, code) = run(&qd, "qvm-pci", &["assign", "-r", "work", "dom0:00_14.3"]);
    assert_eq!((out.as_str(), err.as_str(), code), ("", "", 0));
    assert_eq!(
        qd.take_requests(),
        [
            "admin.vm.List+ dom0",
            "qpci.host.Inventory+ dom0",
            "admin.vm.device.pci.Available+ dom0",
            "admin.vm.device.pci.Assign+dom0+00_14.3+0x8086+0xa0f0++p028000 work device_id='0x8086:0xa0f0::p028000' port_id='00_14.3' devclass='pci' backend_domain='dom0' mode='required' frontend_domain='work'",
            "admin.vm.property.Get+devices_denied work",
        ]
    );
    // Again: the server's KeyError text, quoted once more.
    let (_, err, code) = run(&qd, "qvm-pci", &["assign", "-r", "work", "dom0:00_14.3"]);
    assert_eq!(
        (err.as_str(), code),
        (
            "Error: \"'pci device dom0:00_14.3:0x8086:0xa0f0::p028000 already assigned to work'\"\n",
            1
        )
    );
    // To a running qube: M4 note; to a denied interface: Qubes' warning.
    qd.model
        .lock()
        .unwrap()
        .vms
        .get_mut("sys-usb")
        .unwrap()
        .props
        .insert("devices_denied".into(), prop(false, "str", "p02****"));
    let (out, _, code) = run(
        &qd,
        "qvm-pci",
        &[
            "attach",
            "-p",
            "-o",
            "no-strict-reset=1",
            "sys-usb",
            "dom0:00_1c.0-00_00.0",
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "sys-usb is running: PCI devices are attached only at start, so dom0:00_1c.0-00_00.0 will be attached at its next start.\n"
    );
    let (out, _, code) = run(&qd, "qvm-pci", &["assign", "-r", "sys-usb", "dom0:00_14.3"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("Warning: The assigned device is on the denied list.\n           Auto-attach will work, but make sure that the assignment is correct.\n"),
        "{out}"
    );
    let (out, _, _) = run(
        &qd,
        "qvm-pci",
        &["-q", "unassign", "sys-usb", "dom0:00_14.3"],
    );
    assert_eq!(out, "");
}

#[test]
fn pci_detach_says_the_device_stays_on_the_stub() {
    let qd = FakeQd::start(laptop());
    let (out, err, code) = run(&qd, "qvm-pci", &["detach", "sys-usb", "dom0:00_14.0"]);
    assert_eq!((err.as_str(), code), ("", 0));
    assert_eq!(
        out,
        "dom0:00_14.0 stays bound to the PCI stub driver; it is not given back to dom0 automatically (to give it back: qvm-pci reattach dom0:00_14.0).\n"
    );
    let (_, err, code) = run(&qd, "qvm-pci", &["detach", "sys-usb", "dom0:00_14.0"]);
    assert_eq!(
        (err.as_str(), code),
        (
            "Error: \"'pci device 00_14.0 not attached to sys-usb'\"\n",
            1
        )
    );
    let (out, _, _) = run(&qd, "qvm-pci", &["info", "dom0:00_14.0"]);
    assert_eq!(
        out,
        format!(
            "PCI_USB: Intel Corporation Tiger Lake-LP USB 3.2 Gen 2x1 xHCI Host Controller\ndevice ID: {XHCI}\nsbdf: 0000:00:14.0\n"
        )
    );
}

#[test]
fn prefs_list_get_set_reset() {
    let qd = FakeQd::start(laptop());
    let (out, _, code) = run(&qd, "qvm-prefs", &["work"]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "\
backup_timestamp  U
devices_denied    D  
klass             D  AppVM
label             -  red
maxmem            D  4000
memory            D  400
name              -  work
netvm             D  None
provides_network  D  False
virt_mode         D  pvh
"
    );
    let (out, _, _) = run(&qd, "qvm-prefs", &["--hide-default", "work"]);
    assert_eq!(
        out,
        "backup_timestamp  U\nlabel             -  red\nname              -  work\n"
    );
    assert_eq!(run(&qd, "qvm-prefs", &["work", "virt-mode"]).0, "pvh\n");
    assert_eq!(run(&qd, "qvm-prefs", &["work", "netvm"]).0, "");
    qd.take_requests();
    assert_eq!(run(&qd, "qvm-prefs", &["work", "memory", "800"]).2, 0);
    assert_eq!(run(&qd, "qvm-prefs", &["work", "netvm", "None"]).2, 0);
    assert_eq!(run(&qd, "qvm-prefs", &["-D", "work", "memory"]).2, 0);
    assert_eq!(
        qd.take_requests(),
        [
            "admin.vm.List+ dom0",
            "admin.vm.property.Set+memory work 800",
            "admin.vm.List+ dom0",
            "admin.vm.property.Set+netvm work",
            "admin.vm.List+ dom0",
            "admin.vm.property.Reset+memory work",
        ]
    );
    let table: &[(&[&str], i32, &str)] = &[
        (
            &["work", "nosuch"],
            2,
            "qvm-prefs: error: no such property: 'nosuch'",
        ),
        (
            &["work", "memory", "-1"],
            1,
            "qvm-prefs: error: memory must be positive",
        ),
        (
            &["work", "memory", "abc"],
            1,
            "qvm-prefs: error: Failed to parse property value as int",
        ),
        (
            &["work", "maxmem", "13"],
            1,
            "qvm-prefs: error: Failed to access 'maxmem' property",
        ),
        (
            &["work", "backup_timestamp"],
            1,
            "qvm-prefs: error: property 'backup_timestamp' of work has no value",
        ),
        (&["nosuch"], 2, "qvm-prefs: error: no such domain: 'nosuch'"),
        (
            &[],
            2,
            "qvm-prefs: error: the following arguments are required: VMNAME",
        ),
    ];
    for (args, code, last) in table {
        let (out, err, got) = run(&qd, "qvm-prefs", args);
        assert_eq!(
            (last_line(&err), got, out.as_str()),
            (*last, *code, ""),
            "{args:?}"
        );
        assert_eq!(err.starts_with("usage: "), *code == 2, "{args:?}: {err}");
    }
}

#[test]
fn ls_formats_and_filters() {
    let qd = FakeQd::start(laptop());
    let (out, _, code) = run(&qd, "qvm-ls", &[]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "\
NAME     STATE    CLASS    LABEL  TEMPLATE  NETVM
dom0     Running  AdminVM  black  -         -
sys-net  Halted   AppVM    red    -         -
sys-usb  Running  AppVM    red    -         -
work     Halted   AppVM    red    -         -
"
    );
    assert_eq!(
        run(&qd, "qvm-ls", &["--raw-list"]).0,
        "dom0\nsys-net\nsys-usb\nwork\n"
    );
    assert_eq!(
        run(
            &qd,
            "qvm-ls",
            &["--raw-data", "--running", "-O", "name, state,flags,memory"]
        )
        .0,
        "dom0|Running|0r------|400\nsys-usb|Running|ar------|400\n"
    );
    assert_eq!(
        run(
            &qd,
            "qvm-ls",
            &[
                "--halted",
                "--raw-data",
                "-O",
                "name,virt-mode,foo",
                "--sort",
                "name",
                "--reverse"
            ]
        )
        .0,
        "work|pvh|-\nsys-net|pvh|-\n"
    );
    assert_eq!(
        run(&qd, "qvm-ls", &["--raw-list", "sys-*"]).0,
        "sys-net\nsys-usb\n"
    );
    let (_, err, code) = run(&qd, "qvm-ls", &["--format", "x"]);
    assert_eq!(
        (last_line(&err), code),
        (
            "qvm-ls: error: argument --format/-o: invalid choice: 'x' (choose from 'simple', 'network', 'kernel', 'full', 'prefs', 'disk')",
            2
        )
    );
    let (_, err, code) = run(&qd, "qvm-ls", &["--features", "novalue"]);
    assert_eq!(
        (last_line(&err), code),
        ("qvm-ls: error: Invalid argument: --features novalue", 2)
    );
    let (_, err, code) = run(&qd, "qvm-ls", &["nosuch"]);
    assert_eq!(
        (last_line(&err), code),
        ("qvm-ls: error: no such domain: 'nosuch'", 2)
    );
}

#[test]
fn create_steps_and_errors() {
    let qd = FakeQd::start(laptop());
    let (out, err, code) = run(
        &qd,
        "qvm-create",
        &[
            "-l",
            "blue",
            "--prop",
            "memory=800",
            "--property",
            "virt_mode=hvm",
            "work2",
        ],
    );
    assert_eq!((out.as_str(), err.as_str(), code), ("", "", 0));
    assert_eq!(
        qd.take_requests(),
        [
            "admin.label.List+ dom0",
            "admin.vm.Create.AppVM+ dom0 name=work2 label=blue",
            "admin.vm.property.Set+memory work2 800",
            "admin.vm.property.Set+virt_mode work2 hvm",
        ]
    );
    let table: &[(&[&str], i32, &str)] = &[
        (
            &["work3"],
            2,
            "qvm-create: error: --label option is mandatory",
        ),
        (&["-l", "red"], 2, "qvm-create: error: VMNAME is mandatory"),
        (
            &["--prop", "x", "-l", "red", "a"],
            2,
            "qvm-create: error: Invalid property token: 'x'",
        ),
        (
            &["-l", "pink", "a"],
            2,
            "qvm-create: error: no such label: 'pink'; available: red, orange, yellow, green, gray, blue, purple, black",
        ),
        (
            &["-l", "red", "work"],
            1,
            "app: Error creating VM: Qube already exists: work",
        ),
        (
            &["-q", "-l", "red", "work"],
            1,
            "Error creating VM: Qube already exists: work",
        ),
        (
            &["-l", "red", "a b"],
            1,
            "app: Error creating VM: VM name contains illegal characters",
        ),
        (
            &["-C", "NoSuch", "-l", "red", "x"],
            1,
            "app: Error creating VM: no such method: 'admin.vm.Create.NoSuch'",
        ),
        (
            &["-l", "red", "--prop", "memory=-5", "w5"],
            2,
            "app: Error setting property memory (but VM created): memory must be positive",
        ),
    ];
    for (args, code, last) in table {
        let (_, err, got) = run(&qd, "qvm-create", args);
        assert_eq!((last_line(&err), got), (*last, *code), "{args:?}");
    }
    let (out, _, code) = run(&qd, "qvm-create", &["--help-classes"]);
    assert_eq!(
        (out.as_str(), code),
        ("AdminVM\nAppVM\nDispVM\nStandaloneVM\nTemplateVM\n", 0)
    );
}

#[test]
fn remove_confirms_on_stdin() {
    let qd = FakeQd::start(laptop());
    let mut cmd = qd.cmd("qvm-remove", &["work"]);
    cmd.write_stdin("n\n");
    let (out, err, code) = outcome(&mut cmd);
    assert_eq!(out, "  work\nAre you sure? [y/N] ");
    assert_eq!(
        err,
        "This will completely remove the selected VM(s)...\nRemove cancelled.\n"
    );
    assert_eq!(code, 1);
    let (_, err, code) = run(&qd, "qvm-remove", &["work"]); // stdin at end: "no"
    assert_eq!((last_line(&err), code), ("Remove cancelled.", 1));
    let mut cmd = qd.cmd("qvm-remove", &["work"]);
    cmd.write_stdin("y\n");
    assert_eq!(outcome(&mut cmd).2, 0);
    assert!(
        qd.take_requests()
            .contains(&"admin.vm.Remove+ work".to_owned())
    );
    let (_, err, code) = run(&qd, "qvm-remove", &["-f", "dom0"]);
    assert_eq!(
        (err.as_str(), code),
        ("Domain 'dom0' cannot be removed.\n", 1)
    );
    let (_, err, code) = run(&qd, "qvm-remove", &["-f", "sys-usb"]);
    assert_eq!(
        (err.as_str(), code),
        (
            "qvm-remove: error: Domain is not powered off: 'sys-usb'\n",
            1
        )
    );
    let (_, err, code) = run(&qd, "qvm-remove", &[]);
    assert_eq!(
        (last_line(&err), code),
        (
            "qvm-remove: error: one of the arguments --all VMNAME is required",
            2
        )
    );
}

#[test]
fn start_shutdown_kill() {
    let qd = FakeQd::start(laptop());
    qd.model
        .lock()
        .unwrap()
        .vms
        .get_mut("sys-net")
        .unwrap()
        .features
        .insert("prohibit-start".into(), "testing".into());
    let (out, err, code) = run(&qd, "qvm-start", &["sys-usb", "sys-net", "work"]);
    assert_eq!(out, "");
    assert_eq!(
        err,
        "Error: Starting qube failed: sys-usb: Domain is already running\n\
         Error: Starting qube failed: sys-net: Qube start is prohibited. Rationale: testing\n"
    );
    assert_eq!(code, 1);
    assert_eq!(run(&qd, "qvm-start", &["--skip-if-running", "work"]).2, 0);
    let (_, err, code) = run(&qd, "qvm-start", &["--cdrom", "x.iso", "work"]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("Error: --drive, --hddisk, --cdrom"),
        "{err}"
    );
    let (_, err, code) = run(&qd, "qvm-start", &["--dry-run", "work"]);
    assert_eq!(code, 1);
    assert!(err.contains("does not support qpci.vm.StartPlan"), "{err}");
    let (_, err, code) = run(&qd, "qvm-shutdown", &["--exclude", "work"]);
    assert_eq!(
        (last_line(&err), code),
        (
            "qvm-shutdown: error: one of the arguments --all VMNAME is required",
            2
        )
    );

    // work (running) uses sys-usb as netvm: sys-usb is in use.
    qd.model
        .lock()
        .unwrap()
        .vms
        .get_mut("work")
        .unwrap()
        .props
        .insert("netvm".into(), prop(false, "vm", "sys-usb"));
    let (_, err, code) = run(&qd, "qvm-shutdown", &["sys-usb"]);
    assert_eq!(
        err,
        "Error: Retrying shutdown of qubes that were in use for 1 time(s)\n\
         Error: Retrying shutdown of qubes that were in use: sys-usb\n\
         Error: Failed to shut down: sys-usb: There are other VMs connected to this VM: work\n"
    );
    assert_eq!(code, 1);
    let (_, err, code) = run(&qd, "qvm-shutdown", &["--force", "sys-usb", "sys-net"]);
    assert_eq!(code, 0);
    assert_eq!(
        err,
        "sys-usb: dom0:00_14.0 stays bound to the PCI stub driver; not given back to dom0 automatically (to give it back: qvm-pci reattach dom0:00_14.0)\n"
    );
    let (_, err, code) = run(&qd, "qvm-kill", &["dom0", "work", "sys-net"]);
    assert_eq!(
        (err.as_str(), code),
        (
            "Error: Failed to kill: dom0: Cannot kill Dom0 fake domain!\n",
            1
        )
    );
}
