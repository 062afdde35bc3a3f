//! `qpci-vmtest`: the in-guest test program and its host-side check.
//!
//! - `qpci-vmtest guest` runs inside the QEMU guest booted by
//!   `tests/vm/run` and prints `QPCI-RESULT` lines. It writes to sysfs, so it
//!   refuses to run unless the kernel command line carries `qpci.vmtest=1`
//!   and it is a child of PID 1's `/init` script in an initramfs.
//! - `qpci-vmtest verify LOG` reads a serial log on the host and exits 0
//!   only when every expected check passed.

mod guest;

use std::process::ExitCode;

use anyhow::Context;
use qpci_vmtest::report::{EXPECTED, check_log};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("guest") => guest::run(),
        Some("verify") if args.len() == 2 => match verify(&args[1]) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("qpci-vmtest verify: {e:#}");
                ExitCode::from(2)
            }
        },
        _ => {
            eprintln!("usage: qpci-vmtest guest | qpci-vmtest verify SERIAL_LOG");
            ExitCode::from(2)
        }
    }
}

fn verify(path: &str) -> anyhow::Result<bool> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
    let report = check_log(&String::from_utf8_lossy(&bytes), EXPECTED);
    println!("--- real-kernel results ({path})");
    for r in &report.results {
        println!("  {:<28} {:<4} {}", r.name, r.status.word(), r.detail);
    }
    if !report.notes.is_empty() {
        println!("--- driver moves and timings");
        for n in &report.notes {
            println!("  {n}");
        }
    }
    if report.passed() {
        let n = report.results.len();
        println!("real-kernel suite: {n} checks, all expected checks passed");
    } else {
        println!("--- problems");
        for p in &report.problems {
            println!("  {p}");
        }
    }
    let passed = report
        .results
        .iter()
        .filter(|r| r.status == qpci_vmtest::report::Status::Pass)
        .count();
    println!("vm: {passed} passed, {} failed", report.failed_checks);
    Ok(report.passed())
}
