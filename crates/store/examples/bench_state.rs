//! Benchmark of state loads and durable saves against a raw durable write of
//! the same bytes, measured in the same run (run by `scripts/bench-state`).
//!
//! Usage: `bench_state [DIR] [SIZES...]`; DIR defaults to `target/bench-state`
//! (on the same disk as the work tree, not a tmpfs, so fsync costs what it costs).
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

fn time_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect(),
    )
}

/// The peer: what a durable replace of the same bytes costs with nothing else around it.
fn raw_durable_write(dir: &Path, bytes: &[u8]) {
    let tmp = dir.join("raw.tmp");
    let mut f = File::create(&tmp).unwrap();
    f.write_all(bytes).unwrap();
    f.sync_all().unwrap();
    std::fs::rename(&tmp, dir.join("raw.xml")).unwrap();
    File::open(dir).unwrap().sync_all().unwrap();
}

fn main() {
    let mut args = std::env::args().skip(1);
    let base = PathBuf::from(args.next().unwrap_or_else(|| "target/bench-state".into()));
    let mut sizes: Vec<usize> = args.map(|a| a.parse().expect("size")).collect();
    if sizes.is_empty() {
        sizes = vec![10, 1000, 10000];
    }
    println!(
        "{:>6} {:>9} {:>9} {:>9} {:>10} {:>9} {:>11}",
        "qubes", "size KiB", "load ms", "save ms", "to_xml ms", "raw ms", "save/raw %"
    );
    for n in sizes {
        let dir = base.join(format!("n{n}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let states = [state(n, 1), state(n, 2)];
        let texts = [states[0].to_xml(), states[1].to_xml()];
        let reps = match n {
            0..=100 => 50,
            101..=2000 => 20,
            _ => 7,
        };
        let (mut sf, _) = StateFile::open(&dir).unwrap();
        sf.save(&states[0]).unwrap();
        let mut i = 0;
        let to_xml = time_ms(reps, || {
            std::hint::black_box(states[i % 2].to_xml());
            i += 1;
        });
        // Save and raw write interleaved, so disk-speed drift hits both alike.
        let (mut save, mut raw) = (Vec::new(), Vec::new());
        for r in 0..reps {
            save.push(time_ms(1, || sf.save(&states[r % 2]).unwrap()));
            raw.push(time_ms(1, || {
                raw_durable_write(&dir, texts[r % 2].as_bytes())
            }));
        }
        let (save, raw) = (median(save), median(raw));
        let load = time_ms(reps, || {
            std::hint::black_box(sf.load().unwrap());
        });
        println!(
            "{n:>6} {:>9.1} {load:>9.2} {save:>9.2} {to_xml:>10.2} {raw:>9.2} {:>10.0}%",
            texts[0].len() as f64 / 1024.0,
            raw / save * 100.0
        );
        drop(sf);
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!(
        "save/raw %: durable save rate as a share of a raw write+fsync+rename+folder fsync of the same bytes (goal >= 80%)"
    );
}
