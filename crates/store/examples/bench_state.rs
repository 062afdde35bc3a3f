//! Benchmark of state loads and durable saves against a raw durable write of
//! the same bytes, measured in the same run (run by `scripts/bench-state`).
//!
//! Two saves are measured: `save1`, the daemon's case (the loaded file's
//! records with one qube changed since the last save, saved with
//! `StateFile::save_changed` told that qube's qid, as the daemon's saver
//! does), which carries the goal; and `saveall`, two versions differing in
//! every qube saved in turn with `StateFile::save` (the worst case,
//! reported). `examples/bench_registry_save` of qpci-core measures the
//! daemon's whole path (registry change, records, save). Each has its own state folder, so its
//! save cache holds what it saved last. Also reported: roxmltree's parse alone
//! and quick-xml's event stream alone on the same file, for the load; and the
//! first save after `StateFile::open` (a daemon start), one qube changed since
//! the loaded file and told which, against a raw write of the same bytes, with
//! the open itself (lock, load, and whatever it prepares for that save).
//!
//! Usage: `bench_state [DIR] [SIZES...]`; DIR defaults to `target/bench-state`
//! (on the same disk as the work tree, not a tmpfs, so fsync costs what it costs).
//! `BENCH_REPS=N` sets the number of interleaved runs per size (default 51,
//! 21 and 9 for small, medium and large states). Exits 1 when a goal fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Instant;

use qpci_store::testing::bench::{self, loadavg, median, raw_durable_write};
use qpci_store::{ChangedSet, PropertyValue, QubesXml, StateFile, testing};

/// dom0, a template and `n` AppVMs with two PCI devices each (memory `400 + variant`).
fn state(n: usize, variant: u32) -> QubesXml {
    testing::generated(&testing::Shape::BENCH, n, variant)
}

fn ms(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64() * 1000.0
}

struct Row {
    n: usize,
    kib: f64,
    load: f64,
    raw: f64,
    /// Durable save after one qube changed (what the daemon does).
    save_one: f64,
    /// Durable save after every qube changed.
    save_all: f64,
    to_xml: f64,
    /// roxmltree's parse of the file alone (the first step of a load).
    rox: f64,
    /// quick-xml reading every event and attribute of the file.
    qx: f64,
    /// `StateFile::open` of the file (lock, stale temp sweep, load).
    open: f64,
    /// The first save after that open, one qube changed, told which.
    first: f64,
    /// The raw durable write of the first save's bytes.
    first_raw: f64,
    /// `changed_since_saved` of the loaded records right after the open
    /// (what the daemon's saver asks at start).
    check: f64,
}

impl Row {
    /// Durable save rate as a share of the raw write's rate.
    fn ratio(&self, save: f64) -> f64 {
        self.raw / save
    }
}

/// Sets qube `k`'s memory to `400 + v` (same length for v < 10, so the
/// file's size does not change); returns what changed.
fn set_memory(x: &mut QubesXml, k: usize, v: u32) -> ChangedSet {
    let d = &mut x.domains[k + 2];
    d.properties
        .insert("memory".into(), PropertyValue::Text((400 + v).to_string()));
    [d.qid].into_iter().collect()
}

fn measure(base: &Path, n: usize, reps: usize) -> Row {
    let dir = base.join(format!("n{n}"));
    let _ = std::fs::remove_dir_all(&dir);
    // One state folder per case, so each save's cache holds what that case
    // saved last; the raw write goes to the parent folder.
    let (dir_one, dir_all) = (dir.join("one"), dir.join("all"));
    std::fs::create_dir_all(&dir_one).unwrap();
    std::fs::create_dir_all(&dir_all).unwrap();
    let (mut sf_one, _) = StateFile::open(&dir_one).unwrap();
    let (mut sf_all, _) = StateFile::open(&dir_all).unwrap();
    sf_one.save(&state(n, 1)).unwrap();
    // The realistic case starts from the loaded file, as the daemon does,
    // and saves fresh records (the daemon builds them for every save) in
    // which one qube changed.
    let loaded = sf_one.load().unwrap().unwrap();
    let mut one = loaded.clone();
    // The worst case: two versions that differ in every qube (but not in
    // size), saved in turn.
    let all = [state(n, 1), state(n, 2)];
    let all_texts = [all[0].to_xml(), all[1].to_xml()];
    assert_eq!(all_texts[0].len(), all_texts[1].len());
    // Warm up (page cache, allocator, and the save cache, which fills over
    // up to eight saves).
    for i in 0..10 {
        sf_one.save(&loaded).unwrap();
        sf_all.save(&all[i % 2]).unwrap();
    }
    raw_durable_write(&dir, all_texts[0].as_bytes()).unwrap();
    let (mut load, mut raw, mut save_one, mut save_all, mut to_xml) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut rox, mut qx) = (vec![], vec![]);
    for r in 0..reps {
        // A different qube each time, flipping its memory between two values.
        let changed = set_memory(&mut one, r * 7919 % n.max(1), 2 + (r as u32 / 2) % 2);
        let fresh = one.clone();
        let text = fresh.to_xml();
        assert_eq!(text.len(), all_texts[0].len());
        let worst = &all[r % 2];
        let mut s1 = || ms(|| sf_one.save_changed(&fresh, &changed).unwrap());
        let mut sa = || ms(|| sf_all.save(worst).unwrap());
        let w = || ms(|| raw_durable_write(&dir, text.as_bytes()).unwrap());
        // Interleaved, rotating which goes first, so drift in disk speed or
        // machine load hits all sides alike.
        match r % 3 {
            0 => {
                save_one.push(s1());
                raw.push(w());
                save_all.push(sa());
            }
            1 => {
                raw.push(w());
                save_all.push(sa());
                save_one.push(s1());
            }
            _ => {
                save_all.push(sa());
                save_one.push(s1());
                raw.push(w());
            }
        }
        // The saves wrote what to_xml gives, byte for byte.
        if r < 4 {
            assert_eq!(std::fs::read_to_string(sf_one.path()).unwrap(), text);
            let got = std::fs::read_to_string(sf_all.path()).unwrap();
            assert_eq!(got, all_texts[r % 2]);
        }
        to_xml.push(ms(|| {
            std::hint::black_box(fresh.to_xml());
        }));
        // The load's result is dropped outside the timed part: the time is
        // until the caller holds the records.
        let mut got = None;
        load.push(ms(|| got = Some(sf_one.load().unwrap().unwrap())));
        assert_eq!(got.unwrap().domains.len(), n + 2);
        rox.push(ms(|| {
            let opts = roxmltree::ParsingOptions {
                allow_dtd: false,
                nodes_limit: qpci_store::MAX_NODES,
                ..roxmltree::ParsingOptions::default()
            };
            std::hint::black_box(roxmltree::Document::parse_with_options(&text, opts).unwrap());
        }));
        qx.push(ms(|| {
            std::hint::black_box(quick_xml_events(&text));
        }));
    }
    drop((sf_one, sf_all));
    let [open, first, first_raw, check] = measure_first(&dir, n, reps);
    let _ = std::fs::remove_dir_all(&dir);
    Row {
        n,
        kib: all_texts[0].len() as f64 / 1024.0,
        load: median(load),
        raw: median(raw),
        save_one: median(save_one),
        save_all: median(save_all),
        to_xml: median(to_xml),
        rox: median(rox),
        qx: median(qx),
        open: median(open),
        first: median(first),
        first_raw: median(first_raw),
        check: median(check),
    }
}

/// The daemon's start: open the state folder (the file our last save
/// wrote), change one qube, save told which; each run opens afresh.
/// Returns the times of each measured run: open, first save, raw write,
/// and `changed_since_saved` of the loaded records.
fn measure_first(dir: &Path, n: usize, reps: usize) -> [Vec<f64>; 4] {
    let state_dir = dir.join("first");
    std::fs::create_dir_all(&state_dir).unwrap();
    StateFile::open(&state_dir)
        .unwrap()
        .0
        .save(&state(n, 1))
        .unwrap();
    let (mut open, mut first, mut raw, mut check) = (vec![], vec![], vec![], vec![]);
    // Two warm-up runs (page cache, allocator), then the measured ones.
    for r in 0..reps + 2 {
        let mut opened = None;
        let o = ms(|| opened = Some(StateFile::open(&state_dir).unwrap()));
        let (mut sf, loaded) = opened.unwrap();
        let mut x = loaded.unwrap();
        let mut unsaved = None;
        let c = ms(|| unsaved = Some(sf.changed_since_saved(&x)));
        assert_eq!(unsaved.map(|u| u.len()), Some(0));
        let changed = set_memory(&mut x, r * 7919 % n.max(1), 2 + (r as u32 / 2) % 2);
        let text = x.to_xml();
        let mut s = || ms(|| sf.save_changed(&x, &changed).unwrap());
        let w = || ms(|| raw_durable_write(dir, text.as_bytes()).unwrap());
        let (s, w) = if r % 2 == 0 {
            let s = s();
            (s, w())
        } else {
            let w = w();
            (s(), w)
        };
        assert_eq!(std::fs::read_to_string(sf.path()).unwrap(), text);
        if r >= 2 {
            open.push(o);
            first.push(s);
            raw.push(w);
            check.push(c);
        }
    }
    [open, first, raw, check]
}

/// What a streaming parse on quick-xml would start from: every event, every
/// attribute checked and its value's length summed.
fn quick_xml_events(text: &str) -> usize {
    use quick_xml::events::Event;
    let mut r = quick_xml::Reader::from_str(text);
    let mut k = 0;
    loop {
        match r.read_event().unwrap() {
            Event::Eof => return k,
            Event::Start(e) | Event::Empty(e) => {
                for a in e.attributes() {
                    k += a.unwrap().value.len();
                }
            }
            _ => k += 1,
        }
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

fn main() {
    let (base, sizes, reps) = bench::args().unwrap_or_else(|e| {
        eprintln!("bench_state: {e}");
        std::process::exit(2)
    });
    println!("load average at start: {}", loadavg());
    println!(
        "{:>6} {:>9} {:>8} {:>7} {:>6} {:>8} {:>10} {:>6} {:>10} {:>6} {:>9}  {:<9} {:<10}",
        "qubes",
        "size KiB",
        "load ms",
        "rox ms",
        "qx ms",
        "raw ms",
        "save1 ms",
        "1/raw",
        "saveall ms",
        "all/raw",
        "to_xml ms",
        "save1>=80%",
        "load<200ms"
    );
    let mut ok = true;
    let mut rows = Vec::new();
    for n in sizes {
        let row = measure(&base, n, bench::reps(reps, n));
        let save_ok = row.ratio(row.save_one) >= 0.8;
        let load_ok = row.n < 10000 || row.load < 200.0;
        ok &= save_ok && load_ok;
        println!(
            "{:>6} {:>9.1} {:>8.2} {:>7.2} {:>6.2} {:>8.2} {:>10.2} {:>5.0}% {:>10.2} {:>6.0}% {:>9.2}  {:<10} {:<10}",
            row.n,
            row.kib,
            row.load,
            row.rox,
            row.qx,
            row.raw,
            row.save_one,
            row.ratio(row.save_one) * 100.0,
            row.save_all,
            row.ratio(row.save_all) * 100.0,
            row.to_xml,
            verdict(save_ok),
            if row.n < 10000 { "-" } else { verdict(load_ok) },
        );
        rows.push(row);
    }
    println!();
    println!(
        "{:>6} {:>8} {:>9} {:>8} {:>10} {:>9}",
        "qubes", "open ms", "first ms", "raw ms", "first/raw", "check ms"
    );
    for row in &rows {
        println!(
            "{:>6} {:>8.2} {:>9.2} {:>8.2} {:>9.0}% {:>9.2}",
            row.n,
            row.open,
            row.first,
            row.first_raw,
            row.first_raw / row.first * 100.0,
            row.check
        );
    }
    println!("load average at end: {}", loadavg());
    println!(
        "medians of interleaved runs. raw: write+fsync+rename+folder fsync of the same bytes. \
         save1: durable save of the loaded state with one qube changed, told which (the \
         daemon's case; goal: rate >= 80% of raw's, i.e. 1/raw >= 80%); saveall: every qube changed \
         (reported, no goal); load of 10000 qubes: goal < 200 ms; rox: roxmltree's \
         parse alone, qx: quick-xml's events alone (no records built). open: \
         StateFile::open of a file qpci wrote; first: the save right after it, one qube \
         changed, told which (a daemon's first save after start; reported, no goal), \
         first/raw: its rate as a share of the raw write's of the same bytes; check: \
         changed_since_saved of the loaded records (the daemon's saver, at start)"
    );
    println!("RESULT: {}", verdict(ok));
    if !ok {
        std::process::exit(1);
    }
}
