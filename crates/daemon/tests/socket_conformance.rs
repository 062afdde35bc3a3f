//! Conformance over a real socket: the built `qpcid` (sim backend) on a
//! temporary socket and state, the spec-like fixture host tree and
//! `qubes.xml` of `tests/methods_common`, and raw request bytes in, raw
//! reply bytes out for every request/response example of spec/admin-api.md
//! §1, §3 and §9.
//!
//! The examples live in one table, `tests/data/spec_examples.txt`, in the
//! spec's own notation with the state-dependent values adapted to the
//! fixture. The same table also runs through the in-process dispatcher
//! (`methods_common::Fixture`), so the socket and the handlers are held to
//! the same bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod methods_common;
mod support;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use support::spec_daemon;
use support::table::{Scenario, escape, run_scenario, spec_examples};

/// Every scenario on its own daemon, a few at a time (each daemon is one
/// process and a few threads; the machine may have two cores).
fn over_the_socket(scenarios: &[Scenario]) -> Vec<String> {
    let mut failures = Vec::new();
    for chunk in scenarios.chunks(4) {
        let found: Vec<Vec<String>> = std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|sc| {
                    s.spawn(move || {
                        let d = spec_daemon!(&[]);
                        run_scenario(sc, |request| d.raw(request))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        failures.extend(found.into_iter().flatten());
    }
    failures
}

#[test]
fn the_table_covers_every_section() {
    let scenarios = spec_examples();
    let examples: usize = scenarios.iter().map(|s| s.examples.len()).sum();
    assert!(examples >= 150, "{examples} examples");
    for section in [
        "§1.2", "§1.4", "§3.1", "§3.2", "§3.3", "§3.4", "§3.5", "§3.7", "§3.8", "§3.9", "§3.10",
        "§3.11", "§3.12", "§3.13", "§3.14", "§3.15", "§9.1", "§9.2", "§9.3", "§9.4", "§9.5",
        "§9.6", "§9.7", "§9.8", "§9.9", "§9.10", "§9.11", "§9.12", "§9.13",
    ] {
        assert!(
            scenarios
                .iter()
                .any(|s| s.title.split([' ', ',']).any(|w| w == section)),
            "no scenario for {section}"
        );
    }
}

#[test]
fn spec_examples_over_the_socket() {
    let failures = over_the_socket(&spec_examples());
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn spec_examples_in_process() {
    let mut failures = Vec::new();
    for scenario in spec_examples() {
        let mut fx = methods_common::Fixture::new();
        failures.extend(run_scenario(&scenario, |request| fx.call(request)));
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Reads one event frame (`1\0subject\0event\0{key\0value\0}*\0`).
fn read_event(s: &mut UnixStream) -> Vec<u8> {
    let mut frame = Vec::new();
    let mut byte = [0u8; 1];
    let mut fields_done = 0;
    loop {
        s.read_exact(&mut byte).unwrap();
        frame.push(byte[0]);
        if byte[0] == 0 {
            fields_done += 1;
            // status, subject, event, then key/value pairs; an empty field
            // after the event name (or after a value) ends the frame.
            if fields_done >= 4 && frame.len() >= 2 && frame[frame.len() - 2] == 0 {
                let after_name = fields_done - 3;
                if after_name % 2 == 1 {
                    return frame;
                }
            }
        }
    }
}

#[test]
fn s1_6_events_stream_over_the_socket() {
    let d = spec_daemon!(&[]);
    let mut all = UnixStream::connect(&d.socket).unwrap();
    all.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    all.write_all(b"admin.Events+ dom0 name dom0\0").unwrap();
    all.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        escape(&read_event(&mut all)),
        escape(b"1\0\0connection-established\0\0")
    );
    let mut one = UnixStream::connect(&d.socket).unwrap();
    one.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    one.write_all(b"admin.Events+ dom0 name sys-net\0").unwrap();
    one.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        escape(&read_event(&mut one)),
        escape(b"1\0\0connection-established\0\0")
    );
    assert_eq!(
        d.raw(b"admin.vm.device.pci.Assign+dom0+00_14.0+0x8086+0xa0ed++p0c0330 dom0 name work\0mode='required'"),
        b"0\0"
    );
    assert_eq!(
        d.raw(b"admin.vm.device.pci.Assign+dom0+00_14.0+0x8086+0xa0ed++p0c0330 dom0 name sys-net\0mode='required'"),
        b"0\0"
    );
    let assign = |q: &str| {
        format!(
            "1\0{q}\0device-assign:pci\0device\0dom0:00_14.0:0x8086:0xa0ed::p0c0330\0mode\0required\0\0"
        )
    };
    // The dom0 subscriber sees both, in order; the sys-net one only its own.
    assert_eq!(
        escape(&read_event(&mut all)),
        escape(assign("work").as_bytes())
    );
    assert_eq!(
        escape(&read_event(&mut all)),
        escape(assign("sys-net").as_bytes())
    );
    assert_eq!(
        escape(&read_event(&mut one)),
        escape(assign("sys-net").as_bytes())
    );
}

#[test]
fn a_reply_means_the_change_is_on_disk() {
    let d = spec_daemon!(&[]);
    let before = std::fs::read(d.qubes_xml()).unwrap();
    assert_eq!(
        d.raw(b"admin.vm.device.pci.Assign+dom0+00_1c.0-00_00.0+0x8086+0x2725++p028000 dom0 name sys-net\0device_id='0x8086:0x2725::p028000' port_id='00_1c.0-00_00.0' devclass='pci' backend_domain='dom0' mode='required' frontend_domain='sys-net' _no-strict-reset='True' _permissive='yes'"),
        b"0\0"
    );
    let after = std::fs::read_to_string(d.qubes_xml()).unwrap();
    assert_ne!(after.as_bytes(), &before[..]);
    assert!(after.contains("00_1c.0-00_00.0"), "{after}");
    // The file qpcid did not write is kept beside it (DESIGN.md "State").
    assert_eq!(
        std::fs::read(d.state.join("qubes.xml.before-qpci")).unwrap(),
        before
    );
}
