//! `qvm-pci list` wall time with 64 devices and 200 qubes against the real
//! qpcid (issue acceptance: ≤ 5.5 ms per whole process, one `qpci.List`
//! round trip). A measurement, not a timed test: run it with
//! `cargo test --release -p qpci-cli --test bench_list -- --ignored --nocapture`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Instant;

use common::daemon::Daemon;
use qpci_api::Client;
use qpci_fixture::pci::PciTopology;

#[test]
#[ignore = "a measurement; run with --ignored --nocapture (in --release)"]
fn list_64_devices_200_qubes() {
    let mut t = PciTopology::new();
    t.xen_dom0();
    t.host_bridge("0000:00:00.0");
    for i in 0..63u32 {
        let (dev, func) = (1 + i / 8, i % 8);
        t.endpoint(&format!("0000:00:{dev:02x}.{func}"))
            .ids(0x8086, 0x1000 + i as u16)
            .class(0x0c0330)
            .flr();
    }
    let tree = t.build();
    let dir = tempfile::tempdir().unwrap();
    let Some(d) = Daemon::start(dir.path(), tree.root(), &["--log-level", "warn"]) else {
        return;
    };
    let client = Client::new(&d.socket);
    client
        .call(
            "admin.vm.Create.TemplateVM",
            "",
            "dom0",
            b"name=tpl label=black",
        )
        .unwrap();
    for i in 0..199 {
        let payload = format!("name=q{i:03} label=red");
        client
            .call("admin.vm.Create.AppVM", "tpl", "dom0", payload.as_bytes())
            .unwrap();
    }
    let mut times = Vec::new();
    let mut out = String::new();
    for _ in 0..21 {
        let start = Instant::now();
        let o = d.cmd("qvm-pci", &["list"]).output().unwrap();
        times.push(start.elapsed());
        assert!(o.status.success());
        out = String::from_utf8(o.stdout).unwrap();
    }
    assert_eq!(out.lines().count(), 64, "{out}");
    times.sort();
    let mut calls = Vec::new();
    let mut size = 0;
    for _ in 0..21 {
        let start = Instant::now();
        size = client.call("qpci.List", "", "dom0", b"").unwrap().len();
        calls.push(start.elapsed());
    }
    calls.sort();
    eprintln!(
        "qpci.List round trip alone ({size} bytes): median {:.2} ms",
        calls[calls.len() / 2].as_secs_f64() * 1e3
    );
    // Peer in the same run: the same binary doing no I/O at all.
    let mut bare = Vec::new();
    for _ in 0..21 {
        let start = Instant::now();
        assert!(
            d.cmd("qvm-pci", &["--version"])
                .output()
                .unwrap()
                .status
                .success()
        );
        bare.push(start.elapsed());
    }
    bare.sort();
    eprintln!(
        "qvm-pci --version (process start only): median {:.2} ms",
        bare[bare.len() / 2].as_secs_f64() * 1e3
    );
    eprintln!(
        "qvm-pci list, 64 devices, 200 qubes: median {:.2} ms, min {:.2} ms, max {:.2} ms ({} runs)",
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        times.len()
    );
}
