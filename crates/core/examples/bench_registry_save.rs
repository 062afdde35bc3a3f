//! Benchmark of the daemon's whole save path against a raw durable write of
//! the same bytes, measured in the same run (run by `scripts/bench-state`,
//! after qpci-store's `bench_state`).
//!
//! Per batch, as qpcid does it: the state owner clones the committed
//! registry (`clone`) and applies one call to the clone (`apply`: one qube's
//! `memory` set through `Registry::set_property`); the saver brings its last
//! saved records up to date (`records`: `Registry::update_records` against
//! the registry it saved last) and saves them with `StateFile::save_changed`
//! told the changed qids (`save`). The goal is on the saver's part
//! (`records` + `save`): rate >= 80% of the raw write's.
//!
//! Usage: `bench_registry_save [DIR] [SIZES...]` (DIR default:
//! `target/bench-state`); `BENCH_REPS=N` as for `bench_state`. Exits 1 when
//! the goal fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::Path;
use std::time::Instant;

use qpci_core::registry::{PowerState, Registry};
use qpci_host::Inventory;
use qpci_store::testing::bench::{self, loadavg, median, raw_durable_write};
use qpci_store::{QubesXml, StateFile, testing};
use qpci_types::QubeName;

/// The state of `bench_state`: dom0, a template and `n` AppVMs with two
/// PCI devices each.
fn state(n: usize) -> QubesXml {
    testing::generated(&testing::Shape::BENCH, n, 1)
}

fn ms<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let t = Instant::now();
    let v = f();
    (t.elapsed().as_secs_f64() * 1000.0, v)
}

fn halted(_: &QubeName) -> PowerState {
    PowerState::Halted
}

struct Row {
    n: usize,
    kib: f64,
    raw: f64,
    clone: f64,
    apply: f64,
    records: f64,
    save: f64,
    /// `records` + `save`, per run.
    saver: f64,
}

fn measure(base: &Path, n: usize, reps: usize) -> Row {
    let dir = base.join(format!("registry-n{n}"));
    let _ = std::fs::remove_dir_all(&dir);
    let state_dir = dir.join("state");
    std::fs::create_dir_all(&state_dir).unwrap();
    let inv = Inventory {
        root_buses: vec![(0, 0)],
        ..Inventory::default()
    };
    let (mut committed, _) = Registry::from_records(state(n), &inv).unwrap();
    let (mut file, _) = StateFile::open(&state_dir).unwrap();
    // The saver's first save is a full one; its registry and records are
    // what the next saves start from.
    let mut xml = committed.to_records();
    file.save(&xml).unwrap();
    let mut since = committed.clone();
    let bytes = std::fs::read(file.path()).unwrap();
    raw_durable_write(&dir, &bytes).unwrap();
    let (mut raw, mut clone, mut apply, mut records, mut save, mut saver) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    // Two warm-up batches, then the measured ones.
    for r in 0..reps + 2 {
        let qube = format!("qube-{}", r * 7919 % n.max(1));
        let value = if (r / 2) % 2 == 0 { "402" } else { "403" };
        let mut batch = || {
            let (c, mut next) = ms(|| committed.clone());
            let (a, ()) = ms(|| {
                next.set_property(&qube, "memory", value.as_bytes(), halted)
                    .unwrap();
            });
            let (u, changed) = ms(|| next.update_records(Some(&since), &mut xml));
            assert_eq!(changed.len(), 1);
            let (s, ()) = ms(|| file.save_changed(&xml, &changed).unwrap());
            since = next.clone();
            committed = next;
            (c, a, u, s)
        };
        let w = || ms(|| raw_durable_write(&dir, &bytes).unwrap()).0;
        // Interleaved, alternating which goes first.
        let (b, w) = if r % 2 == 0 {
            let b = batch();
            (b, w())
        } else {
            let w = w();
            (batch(), w)
        };
        if r < 2 {
            continue;
        }
        let (c, a, u, s) = b;
        raw.push(w);
        clone.push(c);
        apply.push(a);
        records.push(u);
        save.push(s);
        saver.push(u + s);
        if r < 4 {
            assert!(std::fs::read_to_string(file.path()).unwrap() == xml.to_xml());
            assert_eq!(std::fs::read(file.path()).unwrap().len(), bytes.len());
        }
    }
    drop(file);
    let _ = std::fs::remove_dir_all(&dir);
    Row {
        n,
        kib: bytes.len() as f64 / 1024.0,
        raw: median(raw),
        clone: median(clone),
        apply: median(apply),
        records: median(records),
        save: median(save),
        saver: median(saver),
    }
}

fn main() {
    let (base, sizes, reps) = bench::args().unwrap_or_else(|e| {
        eprintln!("bench_registry_save: {e}");
        std::process::exit(2)
    });
    println!("daemon save path (registry change -> update_records -> save_changed)");
    println!("load average at start: {}", loadavg());
    println!(
        "{:>6} {:>9} {:>8} {:>9} {:>9} {:>11} {:>8} {:>12} {:>8}  {:<10}",
        "qubes",
        "size KiB",
        "raw ms",
        "clone ms",
        "apply ms",
        "records ms",
        "save ms",
        "rec+save ms",
        "saver/raw",
        "saver>=80%"
    );
    let mut ok = true;
    for n in sizes {
        let row = measure(&base, n, bench::reps(reps, n));
        let ratio = row.raw / row.saver;
        let pass = ratio >= 0.8;
        ok &= pass;
        println!(
            "{:>6} {:>9.1} {:>8.2} {:>9.3} {:>9.3} {:>11.3} {:>8.2} {:>12.2} {:>8.0}%  {:<10}",
            row.n,
            row.kib,
            row.raw,
            row.clone,
            row.apply,
            row.records,
            row.save,
            row.saver,
            ratio * 100.0,
            if pass { "PASS" } else { "FAIL" },
        );
    }
    println!("load average at end: {}", loadavg());
    println!(
        "medians of interleaved runs. clone: the owner's per-batch registry clone; apply: one \
         set_property; records: update_records against the last saved registry; save: \
         save_changed with its changed set (durable: temp file, fsync, rename, folder fsync); \
         saver/raw: rate of records+save vs the raw write of the same bytes (goal >= 80%)"
    );
    println!("RESULT: {}", if ok { "PASS" } else { "FAIL" });
    if !ok {
        std::process::exit(1);
    }
}
