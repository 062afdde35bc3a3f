//! The error catalogue of spec/qvm-tools.md §2.4 against a fake qubesd
//! serving the spec's laptop, and a table of malformed input: each gives one
//! specific message, in Qubes' style, with its exit code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::fakeqd::{FakeQd, laptop};
use common::{last_line, offline, outcome};

/// Runs `args` and checks the exit code, the last stderr line, and whether
/// a usage block came first.
fn check(host: &FakeQd, args: &[&str], code: i32, last: &str) {
    let (out, err, got) = outcome(&mut host.cmd("qvm-pci", args));
    assert_eq!(got, code, "{args:?}: exit code; stderr:\n{err}");
    assert_eq!(last_line(&err), last, "{args:?}");
    assert_eq!(out, "", "{args:?}: nothing on stdout");
    let has_usage = err.starts_with("usage: ");
    assert_eq!(
        has_usage,
        code == 2,
        "{args:?}: usage block iff usage error:\n{err}"
    );
    if code == 1 && !last.starts_with("Error: ") {
        assert_eq!(
            err.lines().count(),
            1,
            "{args:?}: a runtime error is one line"
        );
    }
}

const CHOICES: &str = "'list', 'ls', 'l', 'attach', 'at', 'a', 'detach', 'd', 'dt', 'assign', 's', 'unassign', 'u', 'info', 'i'";

#[test]
fn catalogue() {
    let host = FakeQd::start(laptop());
    let no_such = "no such domain: 'nosuch'";
    let table: Vec<(Vec<&str>, i32, String)> = vec![
        (vec!["sys-usb"], 2, format!("qvm-pci: error: argument command: invalid choice: 'sys-usb' (choose from {CHOICES})")),
        (vec!["list", "nosuch"], 2, format!("qvm-pci: error: {no_such}")),
        (vec!["list", "nosuch*"], 0, String::new()),
        (vec!["info", "00_14.0"], 2, "qvm-pci: error: expected a backend vm, port id and [optional] device id combination like foo:bar[:baz] got 00_14.0".into()),
        (vec!["assign", "-r", "--ask", "work", "dom0:00_14.0"], 2, "qvm-pci assign: error: argument --ask/--ask-to-attach: not allowed with argument --required/-r".into()),
        (vec!["assign", "--port", "--device", "-r", "work", "dom0:00_14.0"], 2, "qvm-pci assign: error: argument --device/--only-device: not allowed with argument --port/--only-port".into()),
        (vec!["unassign", "--only-device", "--only-port", "work", "dom0:00_14.0"], 2, "qvm-pci unassign: error: argument --port/--only-port: not allowed with argument --device/--only-device".into()),
        (vec!["list", "--exclude", "sys-net"], 2, "qvm-pci: error: --exclude can only be used with --all".into()),
        (vec!["list", "-s", "--with-sbdf"], 2, "qvm-pci list: error: --with-sbdf cannot be combined with --assignments".into()),
        (vec!["info", "nosuch:00_14.0"], 1, "qvm-pci: error: no such backend vm!".into()),
        (vec!["info", "sys-usb:00_14.0"], 1, "qvm-pci: error: backend vm sys-usb doesn't expose pci device '00_14.0'".into()),
        (vec!["info", "dom0:00_99.0"], 1, "qvm-pci: error: backend vm dom0 doesn't expose pci device '00_99.0'".into()),
        (vec!["attach", "work", "dom0:00_15.0"], 1, "qvm-pci: error: backend vm dom0 doesn't expose pci device '00_15.0'".into()),
        (vec!["info", "dom0:00_14.0:0x8086:0x1234::p0c0330"], 1, "qvm-pci: error: this option works only for explicitly given port ID and does not support device ID".into()),
        (vec!["attach", "work", "dom0:00_14.0"], 1, "Error: PCI devices cannot be attached manually, did you mean `qvm-pci assign --required ...`".into()),
        (vec!["assign", "work", "dom0:00_14.0"], 1, "Error: PCI devices cannot be assigned as not required.".into()),
        (vec!["assign", "--ask", "work", "dom0:00_14.0"], 1, "Error: PCI devices cannot be assigned as not required.".into()),
        (vec!["assign", "-r", "work", "dom0:00_15.0"], 1, "Error: backend vm dom0 doesn't expose pci device '00_15.0'".into()),
        (vec!["detach", "work", "dom0:00_15.0"], 1, "Error: dom0:00_15.0:0000:0000::?****** not found.".into()),
        (vec!["detach", "dom0", "dom0:*"], 1, "Error: dom0:*:0000:0000::?****** is not attached.".into()),
        (vec!["--bogus"], 2, "qvm-pci: error: unrecognized arguments: --bogus".into()),
        (vec!["list", "--bogus"], 2, "qvm-pci: error: unrecognized arguments: --bogus".into()),
        (vec!["--list-dev"], 2, "qvm-pci: error: unrecognized arguments: --list-dev".into()),
        (vec!["assign", "work"], 2, "qvm-pci assign: error: the following arguments are required: BACKEND:DEVICE_ID".into()),
        (vec!["detach"], 2, "qvm-pci detach: error: the following arguments are required: VMNAME, BACKEND:DEVICE_ID".into()),
        (vec!["unassign"], 2, "qvm-pci unassign: error: the following arguments are required: VMNAME, BACKEND:DEVICE_ID".into()),
    ];
    for (args, code, last) in table {
        if code == 0 {
            assert_eq!(outcome(&mut host.cmd("qvm-pci", &args)).2, 0, "{args:?}");
        } else {
            check(&host, &args, code, &last);
        }
    }
}

#[test]
fn device_classes() {
    let host = FakeQd::start(laptop());
    for args in [
        &["--list-device-classes"][..],
        &["--list-classes"],
        &["list", "--bogus", "--list-classes"],
    ] {
        assert_eq!(
            outcome(&mut host.cmd("qvm-pci", args)),
            ("block\npci\n".to_owned(), String::new(), 0),
            "{args:?}"
        );
    }
    let (out, _, code) = outcome(&mut host.cmd("qvm-device", &["--list-device-classes"]));
    assert_eq!((out.as_str(), code), ("block\npci\n", 0));
}

#[test]
fn qvm_device_class_argument() {
    let host = FakeQd::start(laptop());
    let (_, err, code) = outcome(&mut host.cmd("qvm-device", &[]));
    assert_eq!(
        (last_line(&err), code),
        (
            "qvm-device: error: the following arguments are required: DEVICE_CLASS",
            2
        )
    );
    let (_, err, code) = outcome(&mut host.cmd("qvm-device", &["usb", "list"]));
    assert_eq!(
        (last_line(&err), code),
        (
            "qvm-device: error: device class 'usb' is not supported: qpci supports only 'pci'",
            2
        )
    );
    let (_, err, code) = outcome(&mut host.cmd("qvm-device", &["pci", "assign", "work"]));
    assert_eq!(
        (last_line(&err), code),
        (
            "qvm-device DEVICE_CLASS assign: error: the following arguments are required: BACKEND:DEVICE_ID",
            2
        )
    );
    let (_, err, code) = outcome(&mut host.cmd("qvm-device", &["pci", "sys-usb"]));
    assert_eq!(code, 2);
    assert!(
        last_line(&err)
            .starts_with("qvm-device: error: argument command: invalid choice: 'sys-usb'")
    );
}

/// Malformed device arguments and options: each has its own message.
#[test]
fn bad_input_table() {
    let host = FakeQd::start(laptop());
    let table: &[(&[&str], i32, &str)] = &[
        (
            &["info", "dom0:../x"],
            2,
            "qvm-pci: error: invalid device argument 'dom0:../x': invalid PCI device path at '../x' in '../x': expected BB_DD.F (first step may be SSSS_BB_DD.F), steps joined by '-'",
        ),
        (
            &["info", "dom0:00_1a.8"],
            1,
            "qvm-pci: error: backend vm dom0 doesn't expose pci device '00_1a.8'",
        ),
        (
            &["info", "dom0:00_1a"],
            2,
            "qvm-pci: error: invalid device argument 'dom0:00_1a': invalid PCI device path at '00_1a' in '00_1a': expected BB_DD.F (first step may be SSSS_BB_DD.F), steps joined by '-'",
        ),
        (
            &["info", "dom0:"],
            2,
            "qvm-pci: error: invalid device argument 'dom0:': empty PCI port id: expected a path such as 00_1a.0 or 00_1c.0-00_00.0",
        ),
        (
            &["info", "dom0:00_14.0\n"],
            2,
            "qvm-pci: error: invalid device argument 'dom0:00_14.0\\n': invalid PCI device path at '00_14.0\\n' in '00_14.0\\n': function is not hexadecimal",
        ),
        (
            &["info", "dom0:00_14.0:0x8086"],
            2,
            "qvm-pci: error: invalid device argument 'dom0:00_14.0:0x8086': invalid device id '0x8086': expected VENDOR:PRODUCT:SERIAL:INTERFACES such as 0x8086:0xa0ed::p0c0330",
        ),
        (
            &["info", "dom0:00_14.0:0x8086:0xa0ed::x0c0330"],
            2,
            "qvm-pci: error: invalid device argument 'dom0:00_14.0:0x8086:0xa0ed::x0c0330': invalid interface code 'x0c0330': expected a bus letter (p, u, b, m or ?) and 6 lower-case hex digits or '*', such as p0c0330; several codes are concatenated",
        ),
        (
            &["info", "dom0:*:*"],
            2,
            "qvm-pci: error: invalid device argument 'dom0:*:*': '*:*' (any port and any device) is not allowed",
        ),
        (
            &[
                "assign",
                "-r",
                "-o",
                "no-strict-reset=maybe",
                "w",
                "dom0:00_14.0",
            ],
            2,
            "qvm-pci assign: error: invalid value 'maybe' for PCI option no-strict-reset: expected true/false, yes/no, 1/0 or on/off",
        ),
        (
            &["assign", "-r", "-o", "read-only=yes", "w", "dom0:00_14.0"],
            2,
            "qvm-pci assign: error: unknown PCI option 'read-only': known options are no-strict-reset, permissive",
        ),
        (
            &["assign", "-r", "-o", "foo", "w", "dom0:00_14.0"],
            2,
            "qvm-pci assign: error: invalid option 'foo': expected KEY=VALUE",
        ),
        (
            &["assign", "-r", "-o", "ro=maybe", "w", "dom0:00_14.0"],
            2,
            "qvm-pci assign: error: invalid value 'maybe' for option 'ro': expected 1, true, yes, 0, false or no",
        ),
        (
            &["assign", "-r", "-o", "k=é", "w", "dom0:00_14.0"],
            2,
            "qvm-pci assign: error: invalid option 'k=é': Invalid chars in property value: {'é'}",
        ),
        (
            &["attach", "-p", "-o", "a b=1", "w", "dom0:00_14.0"],
            2,
            "qvm-pci attach: error: invalid option 'a b=1': Invalid chars in property name: {' '}",
        ),
        (
            &["attach", "-p", "--ro", "w", "dom0:00_14.0"],
            2,
            "qvm-pci attach: error: --ro: unknown PCI option 'read-only': known options are no-strict-reset, permissive",
        ),
        (
            &["assign", "-r", "-o"],
            2,
            "qvm-pci assign: error: argument --option/-o: expected one argument",
        ),
        (
            &["assign", "-r", "bad name", "dom0:00_14.0"],
            2,
            "qvm-pci: error: no such domain: 'bad name'",
        ),
        (
            &[
                "assign",
                "-r",
                "work",
                "dom0:00_99.0:0x8086:0xa0ed::p0c0330",
            ],
            1,
            "Error: port '00_99.0' cannot exist: invalid PCI device path at '00_99.0' in '00_99.0': device is out of range (00-1f)",
        ),
    ];
    assert!(table.len() >= 10);
    for (args, code, last) in table {
        check(&host, args, *code, last);
    }
}

#[test]
fn non_utf8_argument_is_a_usage_error() {
    use std::os::unix::ffi::OsStrExt;
    let host = FakeQd::start(laptop());
    let mut cmd = host.cmd("qvm-pci", &["info"]);
    cmd.arg(std::ffi::OsStr::from_bytes(b"dom0:00_14.0\xff"));
    let (_, err, code) = outcome(&mut cmd);
    assert_eq!(code, 2);
    assert_eq!(
        last_line(&err),
        "qvm-pci: error: argument is not valid UTF-8: 'dom0:00_14.0\u{fffd}'"
    );
}

#[test]
fn sysfs_root_and_pci_ids_belong_to_the_daemon() {
    let (_, err, code) = outcome(&mut offline("qvm-pci", &["--sysfs-root", "/tmp", "list"]));
    assert_eq!(
        (last_line(&err), code),
        (
            "qvm-pci: error: qvm-pci no longer reads the host; start qpcid with --sysfs-root DIR",
            2
        )
    );
    let (_, err, code) = outcome(&mut offline("qvm-pci", &["--pci-ids", "/x", "list"]));
    assert_eq!(
        (last_line(&err), code),
        (
            "qvm-pci: error: qvm-pci no longer reads pci.ids; start qpcid with --pci-ids FILE",
            2
        )
    );
}

#[test]
fn unreachable_daemon_is_a_clear_error() {
    let (out, err, code) = outcome(&mut offline("qvm-pci", &["list"]));
    assert_eq!((out.as_str(), code), ("", 1));
    assert!(
        err.starts_with(
            "Error: Failed to connect to qubesd service: [Errno 2] No such file or directory"
        ),
        "{err}"
    );
    let (_, err, code) = outcome(&mut offline("qvm-prefs", &["work"]));
    assert_eq!(code, 1);
    assert!(
        err.starts_with("qvm-prefs: error: Failed to connect to qubesd service: [Errno 2]"),
        "{err}"
    );
    // Usage errors need no daemon.
    let (_, err, code) = outcome(&mut offline("qvm-pci", &["--bogus"]));
    assert_eq!(
        (last_line(&err), code),
        ("qvm-pci: error: unrecognized arguments: --bogus", 2)
    );
}

#[test]
fn help_and_version_go_to_stdout() {
    let host = FakeQd::start(laptop());
    let (out, err, code) = outcome(&mut host.cmd("qvm-pci", &["--help"]));
    assert_eq!((err.as_str(), code), ("", 0));
    assert!(
        out.contains("Examples:") && out.contains("[aliases: ls, l]"),
        "{out}"
    );
    let (out, _, code) = outcome(&mut host.cmd("qvm-pci", &["assign", "--help"]));
    assert_eq!(code, 0);
    assert!(
        out.contains("--ask-to-attach") && out.contains("--only-port"),
        "{out}"
    );
    let (out, _, code) = outcome(&mut host.cmd("qvm-pci", &["--version"]));
    assert_eq!(code, 0);
    assert!(out.starts_with("qvm-pci (qpci: "), "{out}");
}
