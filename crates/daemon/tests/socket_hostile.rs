//! Bad input over the real socket: malformed frames, over-long requests,
//! hostile names, arguments and payloads, and clients that misbehave at the
//! connection level. Each gets its specified error frame (exact bytes) or a
//! closed connection without a reply; afterwards the daemon still serves,
//! never panicked, and `qubes.xml` is byte-identical to before.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod methods_common;
mod support;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use qpci_api::MAX_REQUEST;
use support::table::{escape, unescape};
use support::{Daemon, spec_daemon};

/// What a hostile request must get.
enum Want {
    /// The connection is closed with no reply.
    Closed,
    /// Exactly these bytes (the table notation of `tests/data`).
    Bytes(&'static str),
    /// `2\0<class>\0\0<message>\0` where the message is built at run time.
    Exc(&'static str, String),
}

struct Case {
    what: &'static str,
    request: Vec<u8>,
    want: Want,
}

fn case(what: &'static str, request: impl Into<Vec<u8>>, want: Want) -> Case {
    Case {
        what,
        request: request.into(),
        want,
    }
}

fn closed(what: &'static str, request: impl Into<Vec<u8>>) -> Case {
    case(what, request, Want::Closed)
}

fn bytes(what: &'static str, request: impl Into<Vec<u8>>, reply: &'static str) -> Case {
    case(what, request, Want::Bytes(reply))
}

fn exc(what: &'static str, request: impl Into<Vec<u8>>, class: &'static str, msg: &str) -> Case {
    case(what, request, Want::Exc(class, msg.to_owned()))
}

/// `method+arg dom0 name dest\0payload`.
fn req(method_arg: &str, dest: &str, payload: &[u8]) -> Vec<u8> {
    let mut b = format!("{method_arg} dom0 name {dest}\0").into_bytes();
    b.extend_from_slice(payload);
    b
}

fn with_payload(header: &[u8], payload: &[u8]) -> Vec<u8> {
    [header, payload].concat()
}

const INVALID_LABEL: &str =
    "Label must be in safe set: abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.";

/// The request table: at least 50 malformed or hostile requests.
fn cases() -> Vec<Case> {
    let long_devid = "0x8086+".repeat(1500); // 10.5 KB
    let long_name = "a".repeat(10_000);
    let big_value = "x".repeat(60_000);
    let assign = b"admin.vm.device.pci.Assign+dom0+00_14.0+0x8086+0xa0ed++p0c0330 dom0 name work\0";
    let mut over_cap = b"admin.vm.feature.Set+big dom0 name work\0".to_vec();
    over_cap.resize(MAX_REQUEST + 1, b'b');
    let mut mib = b"admin.vm.feature.Set+big dom0 name work\0".to_vec();
    mib.resize(1 << 20, b'c');
    let mut long_header = b"admin.vm.List+".to_vec();
    long_header.resize(MAX_REQUEST + 10, b'h');
    long_header.extend_from_slice(b" dom0 name dom0\0");

    vec![
        // ---- framing (§1.2): closed without a reply ----
        closed("empty request", b"".to_vec()),
        closed("no NUL", b"admin.vm.List+ dom0 name dom0".to_vec()),
        closed("only a NUL", b"\0".to_vec()),
        closed("NULs only", b"\0\0\0".to_vec()),
        closed(
            "three header fields",
            b"admin.vm.List+ dom0 name\0".to_vec(),
        ),
        closed("two header fields", b"admin.vm.List+ dom0\0".to_vec()),
        closed("one header field", b"admin.vm.List+\0".to_vec()),
        closed(
            "dest type uuid",
            b"admin.vm.List+ dom0 uuid dom0\0".to_vec(),
        ),
        closed(
            "keyword other",
            b"admin.vm.List+ dom0 keyword other\0".to_vec(),
        ),
        closed(
            "keyword ADMINVM",
            b"admin.vm.List+ dom0 keyword ADMINVM\0".to_vec(),
        ),
        closed(
            "invalid UTF-8 in method",
            b"admin.vm.\xffList+ dom0 name dom0\0".to_vec(),
        ),
        closed(
            "invalid UTF-8 in arg",
            b"admin.vm.property.Get+\xfe\xff dom0 name work\0".to_vec(),
        ),
        closed(
            "non-ASCII method",
            "admin.vm.Lïst+ dom0 name dom0\0".as_bytes(),
        ),
        closed("truncated header", b"admin.vm.List+ dom0 na".to_vec()),
        closed(
            "truncated before the NUL",
            b"admin.vm.device.pci.Assign+dom0+00_14.0+_ dom0 name work".to_vec(),
        ),
        closed("64 KiB + 1", over_cap),
        closed("1 MiB payload", mib),
        closed("64 KiB header", long_header),
        // ---- names and destinations (§1.2 step 5, §9.1) ----
        exc(
            "unknown dest",
            req("admin.vm.List+", "nosuch", b""),
            "QubesVMNotFoundError",
            "No such domain: 'nosuch'",
        ),
        exc(
            "dest ../etc",
            req("admin.vm.List+", "../etc", b""),
            "QubesValueError",
            "VM name cannot start with hyphen, underscore, dot or numbers",
        ),
        exc(
            "dest with a slash",
            req("admin.vm.List+", "work/../dom0", b""),
            "QubesValueError",
            "VM name contains illegal characters",
        ),
        exc(
            "dest with a space",
            req("admin.vm.List+", "dom0 extra", b""),
            "QubesValueError",
            "VM name contains illegal characters",
        ),
        exc(
            "dest -bad",
            req("admin.vm.List+", "-bad", b""),
            "QubesValueError",
            "VM name cannot start with hyphen, underscore, dot or numbers",
        ),
        exc(
            "dest 32 chars",
            req("admin.vm.List+", &"a".repeat(32), b""),
            "QubesValueError",
            "VM name must be shorter than 32 characters",
        ),
        exc(
            "dest 10 KB",
            req("admin.vm.List+", &long_name, b""),
            "QubesValueError",
            "VM name must be shorter than 32 characters",
        ),
        exc(
            "dest Domain-0",
            req("admin.vm.List+", "Domain-0", b""),
            "QubesValueError",
            "VM name cannot be 'Domain-0'",
        ),
        exc(
            "dest none",
            req("admin.vm.List+", "none", b""),
            "QubesValueError",
            "VM name cannot be 'none' nor 'default'",
        ),
        exc(
            "dest -dm",
            req("admin.vm.List+", "work-dm", b""),
            "QubesValueError",
            "VM name cannot end with -dm",
        ),
        exc(
            "dest lost+found",
            req("admin.vm.List+", "lost+found", b""),
            "QubesValueError",
            "VM name contains illegal characters",
        ),
        exc(
            "dest empty",
            req("admin.vm.List+", "", b""),
            "QubesValueError",
            "VM name contains illegal characters",
        ),
        exc(
            "source ../x",
            b"admin.vm.List+ ../x name dom0\0".to_vec(),
            "QubesValueError",
            "VM name cannot start with hyphen, underscore, dot or numbers",
        ),
        exc(
            "source unknown",
            b"admin.vm.List+ ghost name dom0\0".to_vec(),
            "QubesVMNotFoundError",
            "No such domain: 'ghost'",
        ),
        exc(
            "uuid: empty",
            req("admin.vm.List+", "uuid:", b""),
            "QubesVMInvalidUUIDError",
            "VM UUID is not valid: 'uuid:'",
        ),
        exc(
            "uuid: garbage of the right length",
            req(
                "admin.vm.List+",
                "uuid:zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz",
                b"",
            ),
            "QubesVMInvalidUUIDError",
            "VM UUID is not valid: 'uuid:zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz'",
        ),
        exc(
            "uuid: upper case",
            req(
                "admin.vm.List+",
                "uuid:22222222-2222-2222-2222-22222222222A",
                b"",
            ),
            "QubesVMInvalidUUIDError",
            "VM UUID is not valid: 'uuid:22222222-2222-2222-2222-22222222222A'",
        ),
        exc(
            "uuid: ../",
            req(
                "admin.vm.List+",
                "uuid:../../../../../../../../../../../../",
                b"",
            ),
            "QubesVMInvalidUUIDError",
            "VM UUID is not valid: 'uuid:../../../../../../../../../../../../'",
        ),
        exc(
            "uuid: unknown",
            req(
                "admin.vm.List+",
                "uuid:99999999-9999-9999-9999-999999999999",
                b"",
            ),
            "QubesVMNotFoundError",
            "No such domain: 'uuid:99999999-9999-9999-9999-999999999999'",
        ),
        exc(
            "name adminvm is a name",
            req("admin.vm.List+", "adminvm", b""),
            "QubesVMNotFoundError",
            "No such domain: 'adminvm'",
        ),
        exc(
            "keyword adminvm is dom0",
            b"admin.vm.Start+ dom0 keyword adminvm\0".to_vec(),
            "QubesVMNotHaltedError",
            "Cannot start Dom0 fake domain!",
        ),
        // ---- generic checks (§1.4) ----
        exc(
            "unknown method",
            req("admin.vm.Frobnicate+", "dom0", b""),
            "ProtocolError",
            "no such method: 'admin.vm.Frobnicate'",
        ),
        exc(
            "unknown method ../",
            req("../../bin/sh+", "dom0", b""),
            "ProtocolError",
            "no such method: '../../bin/sh'",
        ),
        exc(
            "method with %",
            req("admin.%s%n+", "dom0", b""),
            "ProtocolError",
            "no such method: 'admin.%%s%%n'",
        ),
        exc(
            "method with a quote",
            req("it's+", "dom0", b""),
            "ProtocolError",
            "no such method: \"it's\"",
        ),
        exc(
            "unexpected payload",
            req("admin.vm.List+", "dom0", b"x"),
            "ProtocolError",
            "unexpected payload",
        ),
        exc(
            "unexpected argument",
            req("admin.vm.List+../..", "dom0", b""),
            "ProtocolError",
            "unexpected argument",
        ),
        exc(
            "expected argument",
            req("admin.vm.property.Get+", "work", b""),
            "ProtocolError",
            "expected an argument",
        ),
        exc(
            "expected payload",
            req("admin.vm.device.pci.Assign+dom0+00_14.0+_", "work", b""),
            "ProtocolError",
            "expected payload",
        ),
        exc(
            "not AdminVM",
            req("admin.label.List+", "work", b""),
            "ProtocolError",
            "expected destination to be AdminVM",
        ),
        exc(
            "Events with payload",
            req("admin.Events+", "dom0", b"x"),
            "ProtocolError",
            "unexpected payload",
        ),
        // ---- `../` and junk in arguments ----
        exc(
            "property ../",
            req("admin.vm.property.Get+../../etc/passwd", "work", b""),
            "QubesNoSuchPropertyError",
            "Invalid property '../../etc/passwd' of work",
        ),
        exc(
            "feature ../",
            req("admin.vm.feature.Get+../x", "work", b""),
            "QubesFeatureNotFoundError",
            "Feature not set for domain work: ../x",
        ),
        exc(
            "feature name ../ on Set",
            req("admin.vm.feature.Set+../x", "work", b"1"),
            "ProtocolError",
            "feature name contains illegal characters",
        ),
        exc(
            "tag ../",
            req("admin.vm.tag.Set+../x", "work", b""),
            "QubesInvalidTagError",
            "disallowed characters",
        ),
        exc(
            "label ../",
            req("admin.label.Get+../x", "dom0", b""),
            "QubesInvalidLabelError",
            INVALID_LABEL,
        ),
        exc(
            "label DEL",
            req("admin.label.Get+\x7f", "dom0", b""),
            "QubesInvalidLabelError",
            INVALID_LABEL,
        ),
        exc(
            "Shutdown junk",
            req("admin.vm.Shutdown+force+force+force", "work", b""),
            "ProtocolError",
            "Argument must match: force, wait",
        ),
        // Upstream looks the template up without checking the name (§9.4 row 6).
        exc(
            "Create template ../",
            req("admin.vm.Create.AppVM+../x", "dom0", b"name=x1 label=red"),
            "QubesVMNotFoundError",
            "No such domain: '../x'",
        ),
        exc(
            "Create name ../",
            req("admin.vm.Create.AppVM+", "dom0", b"name=../x label=red"),
            "QubesValueError",
            "VM name cannot start with hyphen, underscore, dot or numbers",
        ),
        exc(
            "Create label ../",
            req("admin.vm.Create.AppVM+", "dom0", b"name=x1 label=../red"),
            "QubesInvalidLabelError",
            INVALID_LABEL,
        ),
        exc(
            "Create double space",
            req("admin.vm.Create.AppVM+", "dom0", b"name=x1  label=red"),
            "ProtocolError",
            "Invalid parameter: ''",
        ),
        exc(
            "Create repeated key",
            req(
                "admin.vm.Create.AppVM+",
                "dom0",
                b"name=x1 name=x2 label=red",
            ),
            "ProtocolError",
            "Options must be unique",
        ),
        exc(
            "Create non-ASCII",
            req("admin.vm.Create.AppVM+", "dom0", b"name=x1 label=r\xffd"),
            "ProtocolError",
            "Parameters contains non-ASCII characters",
        ),
        exc(
            "Create NUL in name",
            req("admin.vm.Create.AppVM+", "dom0", b"name=a\0b label=red"),
            "QubesValueError",
            "VM name contains illegal characters",
        ),
        exc(
            "Create 60 KB payload",
            req(
                "admin.vm.Create.AppVM+",
                "dom0",
                format!("name={big_value} label=red").as_bytes(),
            ),
            "QubesValueError",
            "VM name must be shorter than 32 characters",
        ),
        // ---- bad device arguments (qargs, §2.4) ----
        exc(
            "qarg without +",
            req(
                "admin.vm.device.pci.Assign+dom0",
                "work",
                b"mode='required'",
            ),
            "QubesValueError",
            "Invalid device argument 'dom0': expected BACKEND+PORT[+DEVICE_ID], such as dom0+00_14.0",
        ),
        exc(
            "qarg ../ port",
            req(
                "admin.vm.device.pci.Assign+dom0+../../etc+_",
                "work",
                b"mode='required'",
            ),
            "QubesValueError",
            "invalid PCI port id: invalid PCI device path at '../../etc' in '../../etc': expected BB_DD.F (first step may be SSSS_BB_DD.F), steps joined by '-'",
        ),
        exc(
            "qarg unknown backend",
            req(
                "admin.vm.device.pci.Assign+nosuch+00_14.0+_",
                "work",
                b"mode='required'",
            ),
            "QubesVMNotFoundError",
            "No such domain: 'nosuch'",
        ),
        exc(
            "qarg backend ../",
            req("admin.vm.device.pci.Detach+../..+00_14.0", "work", b""),
            "QubesValueError",
            "VM name cannot start with hyphen, underscore, dot or numbers",
        ),
        exc(
            "qarg any port, any device",
            req(
                "admin.vm.device.pci.Assign+dom0+_+_",
                "work",
                b"mode='required'",
            ),
            "QubesValueError",
            "an assignment needs a port or a device id: any port with any device ('*:*') is not allowed",
        ),
        exc(
            "qarg empty parts",
            req(
                "admin.vm.device.pci.Assign+dom0++",
                "work",
                b"mode='required'",
            ),
            "QubesValueError",
            "invalid PCI port id: empty PCI port id: expected a path such as 00_1a.0 or 00_1c.0-00_00.0",
        ),
        exc(
            "qarg short device id",
            req(
                "admin.vm.device.pci.Assign+dom0+00_14.0+0x8086",
                "work",
                b"mode='required'",
            ),
            "QubesValueError",
            "invalid device id '0x8086': expected VENDOR:PRODUCT:SERIAL:INTERFACES such as 0x8086:0xa0ed::p0c0330",
        ),
        // Unassign compares the qarg literally (§3.11), as upstream does.
        exc(
            "qarg interfaces not 7",
            req(
                "admin.vm.device.pci.Unassign+dom0+00_14.0+0x8086+0xa0ed++p0c033",
                "work",
                b"",
            ),
            "DeviceNotAssigned",
            "'pci device dom0:00_14.0:0x8086:0xa0ed::p0c033 not assigned to work'",
        ),
        exc(
            "qarg 10 KB device id (Assign)",
            req(
                &format!("admin.vm.device.pci.Assign+dom0+00_14.0+{long_devid}"),
                "work",
                b"mode='required'",
            ),
            "QubesValueError",
            "device id is too long (10500 bytes): expected VENDOR:PRODUCT:SERIAL:INTERFACES",
        ),
        exc(
            "qarg 10 KB device id (Unassign)",
            req(
                &format!("admin.vm.device.pci.Unassign+dom0+00_14.0+{long_devid}"),
                "work",
                b"",
            ),
            "DeviceNotAssigned",
            &format!(
                "'pci device dom0:00_14.0:{} not assigned to work'",
                long_devid.replace('+', ":")
            ),
        ),
        exc(
            "qarg 10 KB port",
            req(
                &format!("admin.vm.device.pci.Assign+dom0+{}+_", "0".repeat(10_000)),
                "work",
                b"mode='required'",
            ),
            "QubesValueError",
            "invalid PCI port id: PCI port id is too long (10000 bytes): expected a path such as 00_1c.0-00_00.0",
        ),
        // Python repr of the message, as qubesd quotes KeyError texts.
        exc(
            "qarg control bytes",
            req("admin.vm.device.pci.Unassign+dom0+\x01\x02+_", "work", b""),
            "DeviceNotAssigned",
            "'pci device dom0:\\x01\\x02:* not assigned to work'",
        ),
        bytes(
            "Available ../ lists nothing",
            req("admin.vm.device.pci.Available+../../", "dom0", b""),
            "0\\0",
        ),
        exc(
            "Assigned filter without port",
            req("admin.vm.device.pci.Assigned+dom0", "work", b""),
            "QubesValueError",
            "Invalid filter 'dom0': expected BACKEND+PORT, such as dom0+00_14.0",
        ),
        exc(
            "Set.assignment with NUL",
            req(
                "admin.vm.device.pci.Set.assignment+dom0+00_14.0+_",
                "work",
                b"required\0",
            ),
            "QubesUnrecognizedDeviceAssignmentMode",
            "Invalid assignment mode",
        ),
        exc(
            "denied Add odd length",
            req("admin.vm.device.denied.Add+", "work", b"p0c03"),
            "QubesValueError",
            "Invalid length of interfaces='p0c03' (is 5, expected multiple of 7)",
        ),
        exc(
            "denied Add invalid UTF-8",
            req("admin.vm.device.denied.Add+", "work", b"\xff\xfe"),
            "QubesValueError",
            "Non-ASCII bytes in device interfaces",
        ),
        // ---- hostile Assign payloads (§2.3, §2.7) ----
        exc(
            "payload NUL inside",
            with_payload(assign, b"mode='required\0' _x='\x01'"),
            "ProtocolError",
            "Invalid chars in property value: {'\\0'}",
        ),
        exc(
            "payload invalid UTF-8",
            with_payload(assign, b"mode='r\xffquired'"),
            "ProtocolError",
            "serialized properties are not ASCII",
        ),
        // The reader drops the last character of the last value (§2.3 step 4).
        exc(
            "payload truncated",
            with_payload(assign, b"mode='requ"),
            "QubesValueError",
            "'req' is not a valid AssignmentMode",
        ),
        exc(
            "payload no quotes",
            with_payload(assign, b"mode=required"),
            "ProtocolError",
            "Invalid chars in property name: {'='}",
        ),
        exc(
            "payload unknown key",
            with_payload(assign, b"mode='required' evil='1'"),
            "ProtocolError",
            "Unexpected key 'evil' in a device assignment",
        ),
        exc(
            "payload frontend ../",
            with_payload(assign, b"mode='required' frontend_domain='../x'"),
            "ProtocolError",
            "'../x'",
        ),
        exc(
            "payload backend mismatch",
            with_payload(assign, b"mode='required' backend_domain='work'"),
            "ProtocolError",
            "Got device exposed by workwhen expected devices from dom0.",
        ),
        exc(
            "payload 60 KB option",
            with_payload(
                assign,
                format!("mode='required' _permissive='{big_value}'").as_bytes(),
            ),
            "QubesValueError",
            &format!(
                "invalid value '{}...' for PCI option permissive: expected true/false, yes/no, 1/0 or on/off",
                &big_value[..64]
            ),
        ),
        exc(
            "payload unknown option",
            with_payload(assign, b"mode='required' _read-only='yes'"),
            "QubesValueError",
            "unknown PCI option 'read-only': known options are no-strict-reset, permissive",
        ),
        exc(
            "payload manual mode",
            with_payload(assign, b"mode='manual'"),
            "QubesValueError",
            "PCI devices cannot be assigned as not required.",
        ),
        // ---- hostile property values (§9.7) ----
        exc(
            "CR in a str value",
            req("admin.vm.property.Set+kernelopts", "work", b"a\rb"),
            "QubesValueError",
            "Invalid characters in property value",
        ),
        exc(
            "VT in a str value",
            req("admin.vm.property.Set+kernelopts", "work", b"a\x0bb"),
            "QubesValueError",
            "Invalid characters in property value",
        ),
        exc(
            "FF in a str value",
            req("admin.vm.property.Set+kernelopts", "work", b"a\x0cb"),
            "QubesValueError",
            "Invalid characters in property value",
        ),
        exc(
            "CR in default_user",
            req("admin.vm.property.Set+default_user", "work", b"user\r"),
            "QubesValueError",
            "Invalid characters in property value",
        ),
        exc(
            "NUL in a str value",
            req("admin.vm.property.Set+kernelopts", "work", b"a\0b"),
            "QubesValueError",
            "Invalid characters in property value",
        ),
        exc(
            "invalid UTF-8 value",
            req("admin.vm.property.Set+kernelopts", "work", b"\xff"),
            "QubesValueError",
            "Non-ASCII bytes in property value",
        ),
        exc(
            "huge kernelopts",
            req(
                "admin.vm.property.Set+kernelopts",
                "work",
                big_value.as_bytes(),
            ),
            "QubesPropertyValueError",
            "Kernelopts value too long (512 chars max)",
        ),
        exc(
            "huge int",
            req(
                "admin.vm.property.Set+memory",
                "work",
                "9".repeat(60_000).as_bytes(),
            ),
            "QubesValueError",
            "Failed to parse property value as int",
        ),
        exc(
            "huge label",
            req("admin.vm.property.Set+label", "work", big_value.as_bytes()),
            "QubesLabelNotFoundError",
            &format!("Label does not exist: {big_value}"),
        ),
        exc(
            "netvm ../",
            req("admin.vm.property.Set+netvm", "work", b"../x"),
            "QubesValueError",
            "VM name cannot start with hyphen, underscore, dot or numbers",
        ),
        exc(
            "template invalid UTF-8",
            req("admin.vm.property.Set+template", "work", b"\xff"),
            "QubesValueError",
            "",
        ),
        exc(
            "bool junk",
            req("admin.vm.property.Set+autostart", "work", b"maybe\0"),
            "QubesValueError",
            "Invalid literal for boolean property: 'maybe\\x00'",
        ),
        exc(
            "global property CR",
            req("admin.property.Set+default_netvm", "dom0", b"sys-net\r"),
            "QubesValueError",
            "VM name contains illegal characters",
        ),
        exc(
            "feature value NUL",
            req("admin.vm.feature.Set+x", "work", b"\0"),
            "ProtocolError",
            "x value contains illegal characters",
        ),
        exc(
            "feature value invalid UTF-8",
            req("admin.vm.feature.Set+x", "work", b"\xff"),
            "ProtocolError",
            "Feature value contains non-ASCII characters",
        ),
        exc(
            "tag control byte",
            req("admin.vm.tag.Set+a\x01b", "work", b""),
            "QubesInvalidTagError",
            "disallowed characters",
        ),
    ]
}

fn check(d: &Daemon, c: &Case) -> Option<String> {
    let got = d.raw(&c.request);
    let want: Vec<u8> = match &c.want {
        Want::Closed => Vec::new(),
        Want::Bytes(text) => unescape(text).unwrap(),
        Want::Exc(class, msg) => support::exc(class, msg),
    };
    (got != want).then(|| {
        format!(
            "{}: request {:.300}\n  expected {:.600}\n  got      {:.600}",
            c.what,
            escape(&c.request),
            if want.is_empty() {
                "(closed)".into()
            } else {
                escape(&want)
            },
            if got.is_empty() {
                "(closed)".into()
            } else {
                escape(&got)
            },
        )
    })
}

/// A normal request still works.
fn serves(d: &Daemon) {
    assert_eq!(
        d.raw(b"admin.vm.device.pci.Assigned+ dom0 name work\0"),
        b"0\0dom0+00_14.0:0x8086:0xa0ed::p0c0330 device_id='0x8086:0xa0ed::p0c0330' port_id='00_14.0' devclass='pci' backend_domain='dom0' mode='required' frontend_domain='work'\n"
    );
}

#[test]
fn hostile_requests_get_their_error_or_a_closed_connection() {
    let mut d = spec_daemon!(&["--request-timeout", "1"]);
    // One accepted change first, so the state file is qpcid's own.
    assert_eq!(
        d.raw(b"admin.vm.device.pci.Assign+dom0+00_14.0+0x8086+0xa0ed++p0c0330 dom0 name work\0mode='required'"),
        b"0\0"
    );
    let before = std::fs::read(d.qubes_xml()).unwrap();
    let cases = cases();
    assert!(cases.len() >= 50, "{} cases", cases.len());
    let failures: Vec<String> = cases.iter().filter_map(|c| check(&d, c)).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    serves(&d);
    assert!(d.alive());
    assert!(!d.log_has("panicked"), "{:#?}", d.log_lines());
    assert_eq!(
        std::fs::read(d.qubes_xml()).unwrap(),
        before,
        "qubes.xml changed"
    );
}

#[test]
fn misbehaving_clients_are_dropped_and_the_daemon_serves_on() {
    let mut d = spec_daemon!(&["--request-timeout", "1"]);
    assert_eq!(
        d.raw(b"admin.vm.device.pci.Assign+dom0+00_14.0+0x8086+0xa0ed++p0c0330 dom0 name work\0mode='required'"),
        b"0\0"
    );
    let before = std::fs::read(d.qubes_xml()).unwrap();

    // 200 clients that connect and never write, held open throughout.
    let idle: Vec<UnixStream> = (0..200)
        .map(|_| UnixStream::connect(&d.socket).unwrap())
        .collect();
    // Served while they wait.
    let start = Instant::now();
    serves(&d);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );

    // Disconnects mid-request: half a header, then gone (no shutdown).
    for part in [
        &b"admin.vm.List+ do"[..],
        b"admin.vm.device.pci.Assign+dom0+00_14.0+_ dom0 name work\0mode='req",
    ] {
        let mut s = UnixStream::connect(&d.socket).unwrap();
        s.write_all(part).unwrap();
        drop(s);
    }
    // A full mutating request, then gone before the reply is read: the
    // daemon may carry it out, but must not die.
    {
        let mut s = UnixStream::connect(&d.socket).unwrap();
        s.write_all(b"admin.vm.feature.Set+gone dom0 name work\0")
            .unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        drop(s);
    }
    // Slow but complete: one byte at a time, well within the timeout.
    {
        let mut s = UnixStream::connect(&d.socket).unwrap();
        for b in b"admin.vm.List+ dom0 name work\0" {
            s.write_all(&[*b]).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        s.shutdown(Shutdown::Write).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        assert_eq!(
            escape(&out),
            escape(b"0\0work class=AppVM state=Halted uuid=22222222-2222-2222-2222-222222222222\n")
        );
    }
    // A client that writes a whole request but never half-closes: no EOF,
    // so no reply; dropped at the request timeout.
    {
        let mut s = UnixStream::connect(&d.socket).unwrap();
        s.write_all(b"admin.vm.List+ dom0 name dom0\0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let start = Instant::now();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        assert!(out.is_empty(), "{}", escape(&out));
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    }
    // The idle ones were closed by the daemon at the timeout.
    for mut s in idle {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        assert!(out.is_empty());
    }
    serves(&d);
    assert!(d.alive());
    assert!(!d.log_has("panicked"), "{:#?}", d.log_lines());
    // Only the one complete request changed the state: the feature `gone`.
    let after = std::fs::read_to_string(d.qubes_xml()).unwrap();
    assert!(
        after.as_bytes() == before || after.contains("gone"),
        "only the feature may have changed"
    );
    // Removing it gives back the same bytes.
    if after.contains("gone") {
        assert_eq!(
            d.raw(b"admin.vm.feature.Remove+gone dom0 name work\0"),
            b"0\0"
        );
        assert_eq!(std::fs::read(d.qubes_xml()).unwrap(), before);
    }
}
