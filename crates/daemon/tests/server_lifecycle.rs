//! The daemon's life: one daemon per state (the loser names the holder and
//! leaves the winner's socket alone), stale and live sockets, per-user
//! folder and socket modes, the pid file, READY=1, SIGTERM and idle exit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::process::Command;
use std::time::{Duration, Instant};

use support::{Daemon, base_args, bin, spawn_logged, wait_exit};

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn a_second_daemon_on_the_same_state_exits_naming_the_holder() {
    let d = Daemon::start(&[]);
    // Same state, another socket path: refused at the lock, before any socket.
    let other_socket = d.dir.path().join("run/other.sock");
    let started = Instant::now();
    let mut args = base_args(d.dir.path());
    args[1] = other_socket.to_string_lossy().into_owned();
    let out = Command::new(bin()).args(&args).output().unwrap();
    assert!(!out.status.success());
    assert!(started.elapsed() < Duration::from_secs(5));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("pid {}", d.pid())),
        "the error names the holder: {err}"
    );
    assert!(!other_socket.exists(), "the loser touched no socket");
    // Same socket too (the auto-start race): the winner's socket survives.
    let out = Command::new(bin())
        .args(base_args(d.dir.path()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(d.socket.exists());
    assert_eq!(
        d.call("qpci.test.SetFeature", "x", "dom0", b"1"),
        b"0\0".to_vec()
    );
}

#[test]
fn racing_daemons_end_with_one_serving() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("run")).unwrap();
    let mut children: Vec<_> = (0..4)
        .map(|_| {
            let mut cmd = Command::new(bin());
            cmd.args(base_args(dir.path()));
            spawn_logged(cmd)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let socket = dir.path().join("run/qubesd.sock");
    let until = Instant::now() + Duration::from_secs(20);
    let mut exited = 0;
    while Instant::now() < until {
        exited = 0;
        for (c, _) in &mut children {
            exited += usize::from(c.try_wait().unwrap().is_some());
        }
        if exited == 3 && socket.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(exited, 3, "three losers exit");
    let reply = support::raw_call(&socket, b"qpci.test.SetFeature+x dom0 name dom0\0v");
    assert_eq!(reply, b"0\0");
    for (c, _) in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
}

#[test]
fn stale_socket_is_replaced_but_a_live_one_or_a_file_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let socket = run.join("qubesd.sock");
    // A live listener: refused.
    let live = UnixListener::bind(&socket).unwrap();
    let out = Command::new(bin())
        .args(base_args(dir.path()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use by another server"));
    assert!(socket.exists());
    // The same socket with nobody listening: stale, replaced.
    drop(live);
    assert!(socket.exists());
    let mut d = Daemon::start_in(dir, &[]);
    assert!(d.wait_log("removing a stale socket"));
    assert_eq!(
        d.call("qpci.test.SetFeature", "x", "dom0", b"1"),
        b"0\0".to_vec()
    );
    assert!(d.stop().success());
    // A regular file at the socket path is never removed.
    std::fs::write(&d.socket, "precious").unwrap();
    let out = Command::new(bin())
        .args(base_args(d.dir.path()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a socket"));
    assert_eq!(std::fs::read_to_string(&d.socket).unwrap(), "precious");
}

#[test]
fn per_user_mode_folders_modes_pid_file_and_graceful_stop() {
    let t = tempfile::tempdir().unwrap();
    let xdg_run = t.path().join("xdg-run");
    std::fs::create_dir_all(&xdg_run).unwrap();
    std::fs::write(t.path().join("pci.ids"), "").unwrap();
    let notify_path = t.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut cmd = Command::new(bin());
    cmd.args(["--sysfs-root", &t.path().to_string_lossy()])
        .args(["--pci-ids", &t.path().join("pci.ids").to_string_lossy()])
        .env("XDG_RUNTIME_DIR", &xdg_run)
        .env("XDG_STATE_HOME", t.path().join("xdg-state"))
        .env("NOTIFY_SOCKET", &notify_path);
    let (mut child, _log) = spawn_logged(cmd);
    let mut buf = [0u8; 256];
    let n = notify.recv(&mut buf).unwrap();
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.starts_with("READY=1\n"), "{msg:?}");
    assert!(msg.contains(&format!("MAINPID={}", child.id())));
    let runtime = xdg_run.join("qpci");
    let socket = runtime.join("qubesd.sock");
    let pid = runtime.join("qpcid.pid");
    assert_eq!(mode(&runtime), 0o700);
    assert_eq!(mode(&socket), 0o600);
    assert_eq!(
        std::fs::read_to_string(&pid).unwrap().trim(),
        child.id().to_string()
    );
    assert!(t.path().join("xdg-state/qpci/qubes.xml.lock").exists());
    support::term(child.id());
    let st = wait_exit(&mut child, Duration::from_secs(20)).unwrap();
    assert!(st.success());
    let n = notify.recv(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("STOPPING=1"));
    assert!(!socket.exists() && !pid.exists());
}

#[test]
fn an_unsafe_runtime_folder_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let runtime = t.path().join("qpci");
    std::fs::create_dir_all(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(t.path().join("pci.ids"), "").unwrap();
    let out = Command::new(bin())
        .args(["--sysfs-root", &t.path().to_string_lossy()])
        .args(["--pci-ids", &t.path().join("pci.ids").to_string_lossy()])
        .env("XDG_RUNTIME_DIR", t.path())
        .env("XDG_STATE_HOME", t.path().join("state"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing runtime folder") && err.contains("0777"),
        "{err}"
    );
    assert!(!runtime.join("qubesd.sock").exists());
}

#[test]
fn idle_exit_stops_a_daemon_nobody_talks_to() {
    let mut d = Daemon::start(&["--idle-exit", "0.6"]);
    // Activity keeps it alive.
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            d.call("qpci.test.SetFeature", "x", "dom0", b"1"),
            b"0\0".to_vec()
        );
    }
    let st = d.wait_exit(Duration::from_secs(10)).expect("idle exit");
    assert!(st.success());
    assert!(!d.socket.exists());
    let until = Instant::now() + Duration::from_secs(5);
    while !d.log_has("no connection for the idle time") && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(d.wait_log("no connection for the idle time"));
}

/// Without the cargo feature `libvirt` (with it: tests/libvirt_e2e.rs).
#[cfg(not(feature = "libvirt"))]
#[test]
fn libvirt_backend_is_refused_clearly() {
    let out = Command::new(bin())
        .args(["--backend", "libvirt"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(
        "qpcid was built without libvirt support: cargo build -p qpcid --features libvirt"
    ));
}
