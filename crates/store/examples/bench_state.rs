//! Benchmark of state loads and durable saves against a raw durable write of
//! the same bytes, measured in the same run (run by `scripts/bench-state`).
//!
//! Usage: `bench_state [DIR] [SIZES...]`; DIR defaults to `target/bench-state`
//! (on the same disk as the work tree, not a tmpfs, so fsync costs what it costs).
//! `BENCH_REPS=N` sets the number of interleaved runs per size (default 51,
//! 21 and 9 for small, medium and large states). Exits 1 when a goal fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use qpci_store::{DeviceRecord, DomainRecord, LabelRecord, PropertyValue, QubesXml, StateFile};

fn state(n: usize, variant: u32) -> QubesXml {
    let mut x = QubesXml::default();
    for (i, name) in [
        "red", "orange", "yellow", "green", "gray", "blue", "purple", "black",
    ]
    .iter()
    .enumerate()
    {
        x.labels.push(LabelRecord {
            id: format!("label-{}", i + 1),
            color: format!("0x{:06x}", i * 0x111111),
            name: name.to_string(),
            ..LabelRecord::default()
        });
    }
    x.properties
        .insert("default_template".into(), "fedora-40".into());
    x.properties.insert("default_netvm".into(), "".into());
    let mut dom0 = DomainRecord {
        qid: 0,
        class: "AdminVM".into(),
        name: "dom0".into(),
        ..Default::default()
    };
    dom0.properties
        .insert("label".into(), PropertyValue::Ref("label-8".into()));
    x.domains.push(dom0);
    let mut tpl = DomainRecord {
        qid: 1,
        class: "TemplateVM".into(),
        name: "fedora-40".into(),
        ..Default::default()
    };
    tpl.properties
        .insert("label".into(), PropertyValue::Ref("label-8".into()));
    x.domains.push(tpl);
    for i in 0..n {
        let qid = u32::try_from(i).unwrap() + 2;
        let mut d = DomainRecord {
            qid,
            class: "AppVM".into(),
            name: format!("qube-{i}"),
            ..Default::default()
        };
        for (k, v) in [
            ("label", "label-1".to_string()),
            ("template", "fedora-40".to_string()),
            ("memory", (400 + variant).to_string()),
            ("maxmem", "0".to_string()),
            ("virt_mode", "hvm".to_string()),
            ("uuid", format!("5b0c3d6e-9a57-4d64-8f63-{qid:012}")),
        ] {
            let v = if k == "label" {
                PropertyValue::Ref(v)
            } else {
                PropertyValue::Text(v)
            };
            d.properties.insert(k.into(), v);
        }
        d.features.insert("servicevm".into(), "1".into());
        d.tags.insert("created-by-dom0".into());
        let devs = (0..2u32)
            .map(|j| DeviceRecord {
                backend_domain: "dom0".into(),
                port_id: format!("00_{:02x}.{j}", i % 32),
                device_id: Some("0x8086:0xa0ed::p0c0330".into()),
                mode: Some("required".into()),
                options: [("no-strict-reset".to_string(), "True".to_string())].into(),
                ..Default::default()
            })
            .collect();
        d.devices.insert("pci".into(), devs);
        x.domains.push(d);
    }
    x
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64() * 1000.0
}

/// The peer: what a durable replace of the same bytes costs with nothing else
/// around it. The same steps as a save: write a temp file in the folder,
/// fsync it, rename it over the target, fsync the folder.
fn raw_durable_write(dir: &Path, bytes: &[u8]) {
    let tmp = dir.join("raw.tmp");
    let mut f = File::create(&tmp).unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
    drop(f);
    std::fs::rename(&tmp, dir.join("raw.xml")).unwrap();
    File::open(dir).unwrap().sync_all().unwrap();
}

struct Row {
    n: usize,
    kib: f64,
    load: f64,
    save: f64,
    to_xml: f64,
    raw: f64,
}

impl Row {
    /// Durable save rate as a share of the raw write's rate.
    fn ratio(&self) -> f64 {
        self.raw / self.save
    }
}

fn measure(base: &Path, n: usize, reps: usize) -> Row {
    let dir = base.join(format!("n{n}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Two versions that differ in content but not in size, saved in turn,
    // so every save really rewrites the file.
    let states = [state(n, 1), state(n, 2)];
    let texts = [states[0].to_xml(), states[1].to_xml()];
    assert_eq!(texts[0].len(), texts[1].len());
    let (mut sf, _) = StateFile::open(&dir).unwrap();
    // Warm up both paths (page cache, allocator, first-save copy).
    sf.save(&states[0]).unwrap();
    raw_durable_write(&dir, texts[0].as_bytes());
    let (mut load, mut save, mut raw, mut to_xml) = (vec![], vec![], vec![], vec![]);
    for r in 0..reps {
        let (state, text) = (&states[r % 2], &texts[r % 2]);
        // Interleaved, alternating which goes first, so drift in disk speed
        // or machine load hits both sides alike.
        let mut s = || ms(|| sf.save(state).unwrap());
        let w = || ms(|| raw_durable_write(&dir, text.as_bytes()));
        if r % 2 == 0 {
            save.push(s());
            raw.push(w());
        } else {
            raw.push(w());
            save.push(s());
        }
        // Same bytes on both sides.
        let saved = std::fs::metadata(sf.path()).unwrap().len();
        let rawlen = std::fs::metadata(dir.join("raw.xml")).unwrap().len();
        assert_eq!(saved, rawlen, "save and raw wrote different sizes");
        to_xml.push(ms(|| {
            std::hint::black_box(state.to_xml());
        }));
        // The load's result is dropped outside the timed part: the time is
        // until the caller holds the records.
        let mut loaded = None;
        load.push(ms(|| loaded = Some(sf.load().unwrap().unwrap())));
        assert_eq!(loaded.unwrap().domains.len(), n + 2);
    }
    drop(sf);
    let _ = std::fs::remove_dir_all(&dir);
    Row {
        n,
        kib: texts[0].len() as f64 / 1024.0,
        load: median(load),
        save: median(save),
        to_xml: median(to_xml),
        raw: median(raw),
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let base = PathBuf::from(args.next().unwrap_or_else(|| "target/bench-state".into()));
    let mut sizes: Vec<usize> = args.map(|a| a.parse().expect("size")).collect();
    if sizes.is_empty() {
        sizes = vec![10, 1000, 10000];
    }
    let reps: usize = std::env::var("BENCH_REPS")
        .ok()
        .map_or(0, |r| r.parse().expect("BENCH_REPS"));
    println!(
        "{:>6} {:>9} {:>8} {:>8} {:>9} {:>8} {:>9}  {:<10} {:<10}",
        "qubes",
        "size KiB",
        "load ms",
        "save ms",
        "to_xml ms",
        "raw ms",
        "save/raw",
        "save>=80%",
        "load<200ms"
    );
    let mut ok = true;
    for n in sizes {
        let reps = match (reps, n) {
            (r, _) if r > 0 => r,
            (_, 0..=100) => 51,
            (_, 101..=2000) => 21,
            _ => 9,
        };
        let row = measure(&base, n, reps);
        let save_ok = row.ratio() >= 0.8;
        let load_ok = row.n < 10000 || row.load < 200.0;
        ok &= save_ok && load_ok;
        println!(
            "{:>6} {:>9.1} {:>8.2} {:>8.2} {:>9.2} {:>8.2} {:>8.0}%  {:<10} {:<10}",
            row.n,
            row.kib,
            row.load,
            row.save,
            row.to_xml,
            row.raw,
            row.ratio() * 100.0,
            verdict(save_ok),
            if row.n < 10000 { "-" } else { verdict(load_ok) },
        );
    }
    println!(
        "medians of interleaved runs; save/raw: durable save rate as a share of a raw \
         write+fsync+rename+folder fsync of the same bytes (goal >= 80%); \
         load of 10000 qubes: goal < 200 ms"
    );
    println!("RESULT: {}", verdict(ok));
    if !ok {
        std::process::exit(1);
    }
}
