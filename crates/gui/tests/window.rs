//! The real program in a real X11 window (run under `xvfb-run`): it starts
//! against a qpcid, shows the Devices tab, and a PNG screenshot taken with
//! ImageMagick's `import` lands in `target/screenshots/devices-tab.png`,
//! checked to be non-blank (pixel standard deviation).
//!
//! Without `DISPLAY` (the plain `cargo test --workspace` stage) it is
//! skipped with a note, unless `QPCI_GUI_X11_REQUIRED=1`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, XHCI};

fn skip(why: &str) {
    if std::env::var_os("QPCI_GUI_X11_REQUIRED").is_some_and(|v| v == "1") {
        panic!("the X11 window test cannot run: {why}");
    }
    eprintln!("note: skipping the X11 window test: {why}");
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The pixel standard deviation of a PNG (0 = one flat colour), via
/// ImageMagick.
fn std_dev(png: &std::path::Path) -> f64 {
    let out = Command::new("timeout")
        .args(["10", "convert"])
        .arg(png)
        .args(["-format", "%[fx:standard_deviation]", "info:"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0.0)
}

#[test]
fn devices_tab_in_a_real_window_with_a_screenshot() {
    if std::env::var_os("DISPLAY").is_none() {
        return skip("no DISPLAY (run under xvfb-run)");
    }
    if !have("import") || !have("convert") {
        return skip("ImageMagick's import and convert are not installed");
    }
    let Some(d) = Daemon::start(common::laptop()) else {
        return;
    };
    d.assign("work", XHCI, b"mode='required' _no-strict-reset='True'");
    d.assign(
        "work",
        "dom0+00_02.0+0x8086+0x9a49++p030000",
        b"mode='required'",
    );
    let shots = common::target_dir().parent().unwrap().join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let png: PathBuf = shots.join("devices-tab.png");
    let _ = std::fs::remove_file(&png);
    let stderr = d.dir.path().join("gui.stderr");
    let mut gui = Command::new(env!("CARGO_BIN_EXE_qubes-vm-settings"))
        .args(["work", "--tab", "devices"])
        .env("QPCI_SOCKET", &d.socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let title = "work: Qube settings";
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen_at: Option<Instant> = None;
    let mut result = None;
    while Instant::now() < deadline {
        if let Some(status) = gui.try_wait().unwrap() {
            panic!(
                "qubes-vm-settings exited early ({status}): {}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        }
        // The root window (no window manager: the dialog is the only
        // window), trimmed of the empty screen around it afterwards.
        let shot = Command::new("timeout")
            .args(["10", "import", "-window", "root"])
            .arg(&png)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        if shot.success() {
            let first = *seen_at.get_or_insert_with(Instant::now);
            // Give the first frames time to be drawn, then judge.
            if first.elapsed() > Duration::from_secs(2) {
                let _ = Command::new("timeout")
                    .args(["10", "convert"])
                    .arg(&png)
                    .args(["-trim", "+repage"])
                    .arg(&png)
                    .status();
                let sd = std_dev(&png);
                if sd > 0.05 {
                    result = Some(sd);
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let _ = gui.kill();
    let _ = gui.wait();
    let sd = result.unwrap_or_else(|| {
        panic!(
            "no non-blank screenshot of '{title}' within 60 s (window seen: {}); stderr: {}",
            seen_at.is_some(),
            std::fs::read_to_string(&stderr).unwrap_or_default()
        )
    });
    eprintln!(
        "screenshot {} (pixel standard deviation {sd:.3})",
        png.display()
    );
    assert!(png.metadata().unwrap().len() > 10_000);
}
