//! Benchmark of the PCI scan with names against `lspci -Dnn` on the same
//! synthetic sysfs trees, measured in the same run (run by
//! `scripts/bench-scan`; GitHub issue 3).
//!
//! Usage: `bench_scan [SIZES...]` (default 256 1024 4096). Trees are built
//! with `PciTopology::synthetic(n)` in `TMPDIR` (the script points it at
//! `/dev/shm`). `BENCH_REPS=N` sets the number of interleaved runs (default
//! 21, at least 11). Each run times, for every size in turn and in an order
//! that alternates between runs:
//!
//! - qpci: `PciIds::load_default()` + `scan(.., names)`, in process;
//! - qpci scan only: `scan(.., names: None)`;
//! - lspci: spawning `lspci -Dnn -A linux-sysfs -O sysfs.path=<root>/sys/bus/pci`
//!   and reading its output to the end (exec and pci.ids load included);
//!
//! plus, once per run, `lspci` on a tree with no device (the cost of starting
//! the process: lspci loads pci.ids lazily, on the first name), `lspci` on a
//! tree with one device (start + pci.ids load: the floor of a listing) and
//! `PciIds::load_default()` alone. Every figure is the median over the runs. Goals: qpci faster than
//! lspci at every size, and t(largest) ≤ 17 × t(smallest) when the sizes are
//! 256 and 4096 (generally: ≤ 1.0625 × the size ratio). Exits 1 when a goal
//! fails, 2 when the benchmark cannot run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use qpci_fixture::HostTree;
use qpci_fixture::pci::PciTopology;
use qpci_host::{HostRoot, PciIds, ScanOptions, scan};

/// The slack the linearity goal allows over the size ratio (17 / 16).
const LINEAR_SLACK: f64 = 17.0 / 16.0;

struct Size {
    n: usize,
    tree: HostTree,
    full: Vec<f64>,
    scan_only: Vec<f64>,
    lspci: Vec<f64>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn quantile(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let at = ((v.len() - 1) as f64 * q).round() as usize;
    v[at]
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Runs lspci on `root`; returns the time and the number of lines printed.
fn lspci(root: &Path) -> (f64, usize) {
    let sysfs = root.join("sys/bus/pci");
    let t = Instant::now();
    let out = Command::new("lspci")
        .args(["-Dnn", "-A", "linux-sysfs", "-O"])
        .arg(format!("sysfs.path={}", sysfs.display()))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            eprintln!("bench_scan: cannot run lspci ({e}): install pciutils");
            std::process::exit(2)
        });
    let took = ms(t.elapsed());
    if !out.status.success() {
        eprintln!("bench_scan: lspci failed on {}", root.display());
        std::process::exit(2);
    }
    (took, out.stdout.iter().filter(|b| **b == b'\n').count())
}

/// Loads pci.ids and scans with names, as `qpci list` does.
fn qpci_full(root: &HostRoot) -> (f64, usize) {
    let t = Instant::now();
    let ids = PciIds::load_default().expect("load pci.ids");
    let inv = scan(root, &ScanOptions { names: Some(&ids) });
    let took = ms(t.elapsed());
    let named = inv
        .devices
        .iter()
        .filter(|d| d.names.vendor.is_some())
        .count();
    assert!(
        ids.is_empty() || named == inv.devices.len(),
        "{named} of {} devices named",
        inv.devices.len()
    );
    (took, inv.devices.len())
}

fn qpci_scan_only(root: &HostRoot) -> (f64, usize) {
    let t = Instant::now();
    let inv = scan(root, &ScanOptions { names: None });
    (ms(t.elapsed()), inv.devices.len())
}

fn check_count(what: &str, n: usize, got: usize) {
    if got != n {
        eprintln!("bench_scan: {what} saw {got} devices on the {n}-device tree");
        std::process::exit(2);
    }
}

/// `--profile N ITERS [scan|lspci]`: builds one tree and runs only the qpci
/// side (scan only with `scan`; only lspci with `lspci`), for `perf`,
/// `strace -fc` or callgrind.
fn profile(args: &[String]) {
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(4096);
    let iters: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let mode = args.get(2).map_or("full", String::as_str);
    let scan_only = mode == "scan";
    let tree = PciTopology::synthetic(n).build();
    let root = HostRoot::new(tree.root());
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let (t, got) = if mode == "lspci" {
            lspci(tree.root())
        } else if scan_only {
            qpci_scan_only(&root)
        } else {
            qpci_full(&root)
        };
        check_count("qpci", n, got);
        times.push(t);
    }
    println!(
        "size_of PciDevice {} bytes",
        std::mem::size_of::<qpci_host::PciDevice>()
    );
    println!(
        "{n} devices, {iters} runs{}: median {:.2} ms, min {:.2} ms",
        if mode == "full" {
            String::new()
        } else {
            format!(", {mode} only")
        },
        median(&times),
        quantile(&times, 0.0)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "--profile") {
        return profile(&args[1..]);
    }
    let mut ns: Vec<usize> = args
        .iter()
        .map(|a| a.parse().expect("sizes are device counts"))
        .collect();
    if ns.is_empty() {
        ns = vec![256, 1024, 4096];
    }
    ns.sort_unstable();
    ns.dedup();
    let reps: usize = std::env::var("BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(21)
        .max(11);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load_before = loadavg();
    let tmp = std::env::temp_dir();

    let built = Instant::now();
    let empty = HostTree::new();
    let one = PciTopology::synthetic(1).build();
    let mut sizes: Vec<Size> = ns
        .iter()
        .map(|&n| {
            let topo = PciTopology::synthetic(n);
            assert_eq!(topo.len(), n, "synthetic({n}) has {} devices", topo.len());
            Size {
                n,
                tree: topo.build(),
                full: Vec::with_capacity(reps),
                scan_only: Vec::with_capacity(reps),
                lspci: Vec::with_capacity(reps),
            }
        })
        .collect();
    let built = built.elapsed();

    // Warm-up: every tree read once by both (dentries, inodes, pci.ids in
    // the page cache), and the counts checked.
    check_count("lspci", 0, lspci(empty.root()).1);
    check_count("lspci", 1, lspci(one.root()).1);
    for s in &sizes {
        let root = HostRoot::new(s.tree.root());
        check_count("qpci", s.n, qpci_full(&root).1);
        check_count("qpci scan", s.n, qpci_scan_only(&root).1);
        check_count("lspci", s.n, lspci(s.tree.root()).1);
    }

    let mut floor = Vec::with_capacity(reps);
    let mut floor1 = Vec::with_capacity(reps);
    let mut ids_load = Vec::with_capacity(reps);
    for rep in 0..reps {
        // Alternate which tool goes first, and the order of the sizes, so
        // neither gains from a warm or a cold moment systematically.
        let order: Vec<usize> = if rep % 2 == 0 {
            (0..sizes.len()).collect()
        } else {
            (0..sizes.len()).rev().collect()
        };
        floor.push(lspci(empty.root()).0);
        floor1.push(lspci(one.root()).0);
        let t = Instant::now();
        let ids = PciIds::load_default().expect("load pci.ids");
        ids_load.push(ms(t.elapsed()));
        drop(ids);
        for i in order {
            let s = &mut sizes[i];
            let root = HostRoot::new(s.tree.root());
            let run_qpci = |s: &mut Size| {
                s.full.push(qpci_full(&root).0);
                s.scan_only.push(qpci_scan_only(&root).0);
            };
            if (rep + i) % 2 == 0 {
                run_qpci(s);
                s.lspci.push(lspci(s.tree.root()).0);
            } else {
                s.lspci.push(lspci(s.tree.root()).0);
                run_qpci(s);
            }
        }
    }
    let load_after = loadavg();

    println!(
        "qpci scan + names vs lspci -Dnn -A linux-sysfs, synthetic trees in {} (built in {:.1} s)",
        tmp.display(),
        built.as_secs_f64()
    );
    println!(
        "{reps} interleaved runs, medians; {threads} CPUs; load average {load_before} before, {load_after} after"
    );
    println!(
        "pci.ids: {}; PciIds::load_default() alone {:.2} ms\n\
         lspci floor: 0-device tree (process start) {:.2} ms, 1-device tree (start + pci.ids load) {:.2} ms",
        PciIds::load_default()
            .ok()
            .and_then(|i| i.source().map(|p| p.display().to_string()))
            .unwrap_or_else(|| "none".into()),
        median(&ids_load),
        median(&floor),
        median(&floor1)
    );
    println!();
    println!(
        "{:>6}  {:>9}  {:>9}  {:>9}  {:>11}  {:>9}  {:>6}",
        "size", "qpci ms", "(p25-p75)", "lspci ms", "(p25-p75)", "qpci/lspci", "goal"
    );
    let mut ok = true;
    for s in &sizes {
        let q = median(&s.full);
        let l = median(&s.lspci);
        let pass = q < l;
        ok &= pass;
        println!(
            "{:>6}  {:>9.2}  {:>9}  {:>9.2}  {:>11}  {:>10.3}  {:>6}",
            s.n,
            q,
            format!(
                "{:.1}-{:.1}",
                quantile(&s.full, 0.25),
                quantile(&s.full, 0.75)
            ),
            l,
            format!(
                "{:.1}-{:.1}",
                quantile(&s.lspci, 0.25),
                quantile(&s.lspci, 0.75)
            ),
            q / l,
            if pass { "PASS" } else { "FAIL" }
        );
    }
    println!();
    println!(
        "{:>6}  {:>13}  {:>15}  {:>15}",
        "size", "qpci scan ms", "lspci-floor1 ms", "scan/(l-floor1)"
    );
    let fl = median(&floor1);
    for s in &sizes {
        let so = median(&s.scan_only);
        let lf = median(&s.lspci) - fl;
        println!("{:>6}  {:>13.2}  {:>15.2}  {:>15.3}", s.n, so, lf, so / lf);
    }

    if let (Some(a), Some(b)) = (sizes.first(), sizes.last())
        && b.n > a.n
    {
        let span = (b.n - a.n) as f64;
        let size_ratio = b.n as f64 / a.n as f64;
        let limit = size_ratio * LINEAR_SLACK;
        let lin = |v: &[f64], w: &[f64]| median(w) / median(v);
        let slope = |v: &[f64], w: &[f64]| (median(w) - median(v)) / span * 1e3;
        let q_lin = lin(&a.full, &b.full);
        let pass = q_lin <= limit;
        ok &= pass;
        println!();
        println!(
            "linearity t{}/t{} (size ratio {size_ratio:.0}, goal <= {limit:.0}):",
            b.n, a.n
        );
        println!(
            "  qpci       {q_lin:>6.2}  {}   slope {:.2} us/device",
            if pass { "PASS" } else { "FAIL" },
            slope(&a.full, &b.full)
        );
        println!(
            "  qpci scan  {:>6.2}         slope {:.2} us/device",
            lin(&a.scan_only, &b.scan_only),
            slope(&a.scan_only, &b.scan_only)
        );
        println!(
            "  lspci      {:>6.2}         slope {:.2} us/device",
            lin(&a.lspci, &b.lspci),
            slope(&a.lspci, &b.lspci)
        );
    }
    println!();
    println!("overall: {}", if ok { "PASS" } else { "FAIL" });
    drop(sizes);
    drop(empty);
    drop(one);
    if !ok {
        std::process::exit(1);
    }
}
