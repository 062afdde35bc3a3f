//! The socket protocol as the server applies it: framing errors and
//! over-long requests close without a reply, name resolution and the
//! generic checks answer with qubesd's exact texts, slow clients time out,
//! and the daemon keeps serving through all of it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use qpci_api::MAX_REQUEST;
use support::{Daemon, exc};

#[test]
fn framing_errors_close_without_reply_and_the_daemon_keeps_serving() {
    let d = Daemon::start(&[]);
    let bad: &[&[u8]] = &[
        b"",
        b"admin.vm.List+ dom0 name dom0",
        b"admin.vm.List+ dom0 name\0",
        b"admin.vm.List+\0",
        b"admin.vm.List+ dom0 uuid dom0\0",
        b"admin.vm.List+ dom0 keyword other\0",
        "adm\u{e9}n.vm.List+ dom0 name dom0\0".as_bytes(),
        b"m+\xff dom0 name dom0\0",
        b"\0\0\0",
    ];
    for b in bad {
        assert_eq!(d.raw(b), b"", "request {:?}", String::from_utf8_lossy(b));
    }
    assert!(d.wait_log("framing error"));
    assert_eq!(
        d.call("qpci.test.GetFeature", "", "dom0", b""),
        exc("ProtocolError", "expected an argument")
    );
}

#[test]
fn over_64_kib_closes_at_the_cap_exactly() {
    let d = Daemon::start(&[]);
    let header = b"qpci.test.SetFeature+big dom0 name dom0\0";
    let mut at_cap = header.to_vec();
    at_cap.resize(MAX_REQUEST, b'a');
    assert_eq!(
        d.raw(&at_cap),
        b"0\0",
        "a request of exactly 64 KiB is served"
    );
    let mut over = header.to_vec();
    over.resize(MAX_REQUEST + 1, b'b');
    assert_eq!(d.raw(&over), b"");
    let mut huge = header.to_vec();
    huge.resize(1 << 20, b'c');
    assert_eq!(d.raw(&huge), b"");
    assert!(d.wait_log("request too long"));
    // Nothing of the refused requests reached the state.
    let value = d.call("qpci.test.GetFeature", "big", "dom0", b"");
    assert_eq!(value.len(), 2 + MAX_REQUEST - header.len());
    assert!(value[2..].iter().all(|b| *b == b'a'));
}

#[test]
fn names_then_generic_checks_with_qubesd_texts() {
    let d = Daemon::start(&[]);
    // (method, arg, dest, payload, class, message; empty: class only)
    type Case<'a> = (&'a str, &'a str, &'a str, &'a [u8], &'a str, &'a str);
    let cases: &[Case] = &[
        (
            "no.Such",
            "",
            "ghost",
            b"",
            "QubesVMNotFoundError",
            "No such domain: 'ghost'",
        ),
        (
            "no.Such",
            "",
            "dom0",
            b"",
            "ProtocolError",
            "no such method: 'no.Such'",
        ),
        (
            "it's",
            "",
            "dom0",
            b"",
            "ProtocolError",
            "no such method: \"it's\"",
        ),
        (
            "no.Such",
            "",
            "-bad",
            b"",
            "QubesValueError",
            "VM name cannot start with hyphen, underscore, dot or numbers",
        ),
        (
            "no.Such",
            "",
            "a23456789012345678901234567890123",
            b"",
            "QubesValueError",
            "VM name must be shorter than 32 characters",
        ),
        (
            "no.Such",
            "",
            "uuid:nope",
            b"",
            "QubesVMInvalidUUIDError",
            "VM UUID is not valid: 'uuid:nope'",
        ),
        (
            "no.Such",
            "",
            "uuid:00000000-0000-0000-0000-000000000001",
            b"",
            "QubesVMNotFoundError",
            "No such domain: 'uuid:00000000-0000-0000-0000-000000000001'",
        ),
        (
            "qpci.test.GetFeature",
            "",
            "dom0",
            b"",
            "ProtocolError",
            "expected an argument",
        ),
        (
            "qpci.test.GetFeature",
            "x",
            "dom0",
            b"p",
            "ProtocolError",
            "unexpected payload",
        ),
        (
            "qpci.test.GetFeature",
            "",
            "dom0",
            b"p",
            "ProtocolError",
            "unexpected payload",
        ),
        (
            "qpci.test.GetFeature",
            "x",
            "dom0",
            b"",
            "QubesFeatureNotFoundError",
            "",
        ),
        (
            "admin.Events",
            "x",
            "dom0",
            b"",
            "ProtocolError",
            "unexpected argument",
        ),
        (
            "admin.Events",
            "",
            "nobody",
            b"",
            "QubesVMNotFoundError",
            "No such domain: 'nobody'",
        ),
    ];
    for (method, arg, dest, payload, class, message) in cases {
        let reply = d.call(method, arg, dest, payload);
        let text = String::from_utf8_lossy(&reply).into_owned();
        assert!(
            text.starts_with(&format!("2\0{class}\0\0")),
            "{method} {dest}: {text:?}"
        );
        if !message.is_empty() {
            assert_eq!(reply, exc(class, message), "{method} {dest}");
        }
    }
    // The uuid form resolves dom0; keyword adminvm is dom0.
    assert_eq!(
        d.call(
            "no.Such",
            "",
            "uuid:00000000-0000-0000-0000-000000000000",
            b""
        ),
        exc("ProtocolError", "no such method: 'no.Such'")
    );
    assert_eq!(
        d.raw(b"qpci.test.GetFeature+ dom0 keyword adminvm\0"),
        exc("ProtocolError", "expected an argument")
    );
    // A bare % is doubled for the client's %-formatting.
    assert_eq!(
        d.call("no%Such", "", "dom0", b""),
        exc("ProtocolError", "no such method: 'no%%Such'")
    );
}

#[test]
fn a_client_that_never_writes_is_dropped_after_the_timeout() {
    let d = Daemon::start(&["--request-timeout", "0.5"]);
    let started = Instant::now();
    let mut s = UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    assert!(out.is_empty());
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(d.wait_log("no complete request within"));
    // One that sends half a request and stalls is dropped too.
    let mut s = UnixStream::connect(&d.socket).unwrap();
    std::io::Write::write_all(&mut s, b"admin.vm.List+ dom0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    assert!(out.is_empty());
    assert_eq!(
        d.call("qpci.test.SetFeature", "x", "dom0", b"1"),
        b"0\0".to_vec()
    );
}

#[test]
fn a_panicking_handler_gets_an_error_and_the_daemon_lives_on() {
    let d = Daemon::start(&[]);
    assert_eq!(
        d.call("qpci.test.Panic", "", "dom0", b""),
        exc(
            "QubesException",
            "internal error in qpci.test.Panic; see the qpcid log"
        )
    );
    assert_eq!(
        d.call("qpci.test.SetFeature", "x", "dom0", b"1"),
        b"0\0".to_vec()
    );
}

/// The client half of the peer test: runs (as another uid) only when the
/// parent test sets `QPCID_TEST_PEER_SOCKET`, and prints the reply as hex.
#[test]
fn peer_client_helper() {
    let Some(socket) = std::env::var_os("QPCID_TEST_PEER_SOCKET") else {
        return;
    };
    let reply = support::raw_call(
        std::path::Path::new(&socket),
        b"qpci.test.SetFeature+peer dom0 name dom0\0ok",
    );
    let hex: String = reply.iter().map(|b| format!("{b:02x}")).collect();
    println!("REPLY:{hex}:END");
}

#[test]
fn peers_outside_the_allowed_set_are_refused() {
    // Needs root (to act as another uid) and setpriv.
    if !rustix::process::geteuid().is_root() || !std::path::Path::new("/usr/bin/setpriv").exists() {
        eprintln!("skipped: needs root and setpriv");
        return;
    }
    let d = Daemon::start(&["--allow-uid", "4243"]);
    use std::os::unix::fs::PermissionsExt;
    let open = |p: &std::path::Path, mode| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    // Let the other uids reach the socket (the daemon's own check is the test).
    open(d.dir.path(), 0o755);
    open(d.socket.parent().unwrap(), 0o755);
    open(&d.socket, 0o666);
    let exe = std::env::current_exe().unwrap();
    let as_uid = |uid: &str| {
        let out = std::process::Command::new("setpriv")
            .args(["--reuid", uid, "--regid", uid, "--clear-groups"])
            .arg(&exe)
            .args([
                "--exact",
                "peer_client_helper",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env("QPCID_TEST_PEER_SOCKET", &d.socket)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let hex = stdout
            .split("REPLY:")
            .nth(1)
            .and_then(|r| r.split(":END").next())
            .unwrap_or_else(|| panic!("no reply in {stdout}"))
            .to_owned();
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect::<Vec<u8>>()
    };
    let refused = as_uid("4242");
    let text = String::from_utf8_lossy(&refused);
    assert!(
        text.starts_with("2\0PermissionDenied\0\0uid 4242 may not use qpcid"),
        "{text:?}"
    );
    assert!(text.ends_with('\0'));
    let allowed = as_uid("4243");
    assert_eq!(allowed, b"0\0", "{:?}", String::from_utf8_lossy(&allowed));
    assert!(d.wait_log("peer refused"));
}
