//! End to end against the real qpcid (sim backend, temporary socket and
//! state, fixture host tree): the user story of M1–M8, M10 and M12 through
//! the CLI, persistence across a daemon restart, and auto-start.
//!
//! Skipped with a note when qpcid cannot be built or does not come up,
//! unless `QPCI_E2E_REQUIRED=1`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::daemon::Daemon;

fn row<'a>(listing: &'a str, start: &str) -> Vec<&'a str> {
    listing.lines().filter(|l| l.starts_with(start)).collect()
}

#[test]
fn user_story_through_the_cli() {
    let Some((d, dir, tree)) = Daemon::start_xen_laptop() else {
        return;
    };

    // M1: every device, described as Qubes' client does, piped: no header.
    let listing = d.ok("qvm-pci", &[]);
    assert!(!listing.starts_with("BACKEND:DEVID"), "{listing}");
    let usb = row(&listing, "dom0:00_14.0 ");
    assert_eq!(usb.len(), 1, "{listing}");
    assert!(
        usb[0].contains(
            "PCI_USB: Intel Corporation Tiger Lake-LP USB 3.2 Gen 2x1 xHCI Host Controller"
        ),
        "{listing}"
    );

    d.ok("qvm-create", &["-C", "TemplateVM", "-l", "black", "fedora"]);
    for q in ["sys-usb", "work", "tb"] {
        d.ok("qvm-create", &["-l", "red", "-t", "fedora", q]);
    }

    // M2, M3, M5: aliases, typed options, one device for two qubes.
    d.ok(
        "qvm-pci",
        &[
            "at",
            "-p",
            "-o",
            "no-strict-reset=true",
            "sys-usb",
            "dom0:00_14.0",
        ],
    );
    d.ok("qvm-pci", &["s", "-r", "work", "dom0:00_14.0"]);
    let listing = d.ok("qvm-pci", &["list", "-s"]);
    let usb = row(&listing, "dom0:00_14.0 ");
    assert!(
        usb.iter().any(|l| l.ends_with(
            "0x8086:0xa0ed::p0c0330  *sys-usb (required: no-strict-reset=True), *work (required)"
        ) || l
            .contains("*sys-usb (required: no-strict-reset=True), *work (required)")),
        "{listing}"
    );

    // M10: a host bridge is refused at assign, with the reason.
    let (_, err, code) = d.run("qvm-pci", &["assign", "-r", "work", "dom0:00_00.0"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.starts_with("Error: ") && err.contains("host bridge"),
        "{err}"
    );

    // M12: hvm and no memory balancing with PCI devices; pvh refused.
    assert_eq!(d.ok("qvm-prefs", &["sys-usb", "virt_mode"]), "hvm\n");
    assert_eq!(d.ok("qvm-prefs", &["sys-usb", "maxmem"]), "0\n");
    let (_, err, code) = d.run("qvm-prefs", &["sys-usb", "virt_mode", "pvh"]);
    assert_eq!(
        (err.as_str(), code),
        (
            "qvm-prefs: error: pvh mode can't be set if pci devices are assigned\n",
            1
        )
    );

    // M6/M7: a function without its own reset, sharing its bus: refused at start.
    d.ok(
        "qvm-pci",
        &["assign", "-r", "tb", "dom0:00_07.0-00_00.0-00_01.0-00_00.0"],
    );
    let (out, err, code) = d.run("qvm-start", &["tb"]);
    assert_eq!((out.as_str(), code), ("", 1), "{err}");
    assert!(
        err.starts_with("Error: Starting qube failed: tb: "),
        "{err}"
    );

    // M8: the dry run shows the binding plan and XML; the start binds.
    let plan = d.ok("qvm-start", &["--dry-run", "sys-usb"]);
    assert!(
        plan.starts_with("sys-usb: start plan (dry run; nothing was changed)"),
        "{plan}"
    );
    assert!(
        plan.contains("pciback") && plan.contains("domain XML:"),
        "{plan}"
    );
    assert_eq!(d.ok("qvm-start", &["sys-usb"]), "");
    let listing = d.ok("qvm-pci", &[]);
    let usb = row(&listing, "dom0:00_14.0 ");
    assert!(
        usb[0].ends_with("sys-usb (attached: no-strict-reset=True)"),
        "{listing}"
    );
    assert_eq!(d.ok("qvm-pci", &["list", "sys-usb"]).lines().count(), 1);

    // M5: the second qube is refused, naming the holder.
    let (_, err, code) = d.run("qvm-start", &["work"]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("Error: Starting qube failed: work: ") && err.contains("sys-usb"),
        "{err}"
    );

    // M4: assigning to a running qube takes effect at its next start.
    let out = d.ok("qvm-pci", &["assign", "-r", "sys-usb", "dom0:00_1f.6"]);
    assert_eq!(
        out,
        "sys-usb is running: PCI devices are attached only at start, so dom0:00_1f.6 will be attached at its next start.\n"
    );

    // M8: shutdown leaves the device on the stub, never back to dom0.
    let (out, err, code) = d.run("qvm-shutdown", &["sys-usb"]);
    assert_eq!((out.as_str(), code), ("", 0), "{err}");
    assert!(
        err.contains("dom0:00_14.0") && err.contains("stub driver"),
        "{err}"
    );
    let listing = d.ok("qvm-pci", &[]);
    assert!(!listing.contains("(attached"), "{listing}");

    // Persistence across a daemon restart.
    let before = d.ok("qvm-pci", &["list", "-s"]);
    drop(d);
    let Some(d) = Daemon::start(dir.path(), tree.root(), &[]) else {
        panic!("qpcid did not restart");
    };
    assert_eq!(d.ok("qvm-pci", &["list", "-s"]), before);
    assert_eq!(
        d.ok("qvm-ls", &["--raw-list"]),
        "dom0\nfedora\nsys-usb\ntb\nwork\n"
    );
}

/// The pids of qpcid processes whose environment holds `marker`.
fn daemons_with(marker: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        if argv0.ends_with(b"/qpcid")
            && environ.split(|b| *b == 0).any(|kv| kv == marker.as_bytes())
        {
            pids.push(pid);
        }
    }
    pids
}

#[test]
fn two_tools_racing_on_a_fresh_user_start_one_daemon() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    if common::daemon::qpcid().is_none() {
        common::daemon::unavailable::<()>("qpcid does not build");
        return;
    }
    let runtime = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let marker = format!("XDG_RUNTIME_DIR={}", runtime.path().display());
    let spawn = || {
        Command::new(common::bin_path("qvm-ls"))
            .arg("--raw-list")
            .env_remove("QPCI_SOCKET")
            .env("XDG_RUNTIME_DIR", runtime.path())
            .env("XDG_STATE_HOME", state.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let children = [spawn(), spawn()];
    // wait_with_output reads to EOF: a daemon holding the pipes would hang it.
    let (tx, rx) = std::sync::mpsc::channel();
    for child in children {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut outputs = Vec::new();
    for _ in 0..2 {
        let left = deadline.saturating_duration_since(Instant::now());
        let out = rx
            .recv_timeout(left)
            .expect("a tool hung: the daemon holds its pipes, or it never connected")
            .unwrap();
        outputs.push(out);
    }
    // The loser exits at once after failing to take the state lock.
    let mut daemons = daemons_with(&marker);
    let settle = Instant::now() + Duration::from_secs(5);
    while daemons.len() > 1 && Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(20));
        daemons = daemons_with(&marker);
    }
    for out in &outputs {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "dom0\n");
    }
    assert_eq!(daemons.len(), 1, "exactly one daemon: {daemons:?}");
    let qpci = runtime.path().join("qpci");
    assert!(qpci.join("qubesd.sock").exists());
    assert!(qpci.join("qpcid.log").exists());
    // A third run finds the running daemon: no second start.
    let out = Command::new(common::bin_path("qvm-ls"))
        .arg("--raw-list")
        .env_remove("QPCI_SOCKET")
        .env("XDG_RUNTIME_DIR", runtime.path())
        .env("XDG_STATE_HOME", state.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(daemons_with(&marker), daemons);
    // Stop the daemon this test started (by its pid).
    for pid in daemons {
        let _ = Command::new("kill").arg(pid.to_string()).status();
    }
}
