//! Test support (feature `testing`): generated `qubes.xml` states for tests
//! and benchmarks. Not part of the state file's API; nothing in a release
//! build of qpci enables it.
//!
//! One generator serves qpci-store's tests, its `bench_state` example and
//! qpci-core's `bench_registry_save` example; a [`Shape`] keeps each one's
//! bytes as they were (their expectations, e.g. file sizes, depend on them).

use crate::{DeviceRecord, DomainRecord, LabelRecord, PropertyValue, QubesXml};

/// What differs between the generated states of the tests and the benchmarks.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// The labels, `(name, color)`, as `label-1`, `label-2`, ...; AppVMs get
    /// the first, dom0 and the template the last.
    pub labels: &'static [(&'static str, &'static str)],
    /// The template's name (also the `default_template` global).
    pub template: &'static str,
    /// Whether the `default_netvm` global is present (empty).
    pub default_netvm: bool,
    /// Whether AppVMs have a `maxmem` property (`0`).
    pub maxmem: bool,
    /// An AppVM's `uuid` before its 12-digit qid.
    pub uuid_prefix: &'static str,
    /// The devices' product id; `None`: the variant's.
    pub device_product: Option<u16>,
}

impl Shape {
    /// The integration tests' state: three labels, template `tpl`.
    pub const TEST: Shape = Shape {
        labels: &[
            ("red", "0xcc0000"),
            ("blue", "0x3465a4"),
            ("black", "0x000000"),
        ],
        template: "tpl",
        default_netvm: false,
        maxmem: false,
        uuid_prefix: "00000000-0000-4000-8000-",
        device_product: None,
    };

    /// The benchmarks' state: Qubes' eight labels, template `fedora-40`.
    pub const BENCH: Shape = Shape {
        labels: &[
            ("red", "0x000000"),
            ("orange", "0x111111"),
            ("yellow", "0x222222"),
            ("green", "0x333333"),
            ("gray", "0x444444"),
            ("blue", "0x555555"),
            ("purple", "0x666666"),
            ("black", "0x777777"),
        ],
        template: "fedora-40",
        default_netvm: true,
        maxmem: true,
        uuid_prefix: "5b0c3d6e-9a57-4d64-8f63-",
        device_product: Some(0xa0ed),
    };
}

/// A generated state: dom0, a template and `n` AppVMs (`qube-0`, ...; qids
/// from 2) with two PCI devices each; `variant` sets every AppVM's memory to
/// `400 + variant` (and the devices' product id when the shape has none).
pub fn generated(shape: &Shape, n: usize, variant: u32) -> QubesXml {
    let mut x = QubesXml::default();
    for (i, (name, color)) in shape.labels.iter().enumerate() {
        x.labels.push(LabelRecord {
            id: format!("label-{}", i + 1),
            color: color.to_string(),
            name: name.to_string(),
            ..LabelRecord::default()
        });
    }
    let last_label = PropertyValue::Ref(format!("label-{}", shape.labels.len()));
    x.properties
        .insert("default_template".into(), shape.template.into());
    if shape.default_netvm {
        x.properties.insert("default_netvm".into(), "".into());
    }
    for (qid, class, name) in [(0, "AdminVM", "dom0"), (1, "TemplateVM", shape.template)] {
        let mut d = DomainRecord {
            qid,
            class: class.into(),
            name: name.into(),
            ..DomainRecord::default()
        };
        d.properties.insert("label".into(), last_label.clone());
        x.domains.push(d);
    }
    let product = shape.device_product.map_or(variant, u32::from);
    for (i, qid) in (0..n).zip(2u32..) {
        let mut d = DomainRecord {
            qid,
            class: "AppVM".into(),
            name: format!("qube-{i}"),
            ..DomainRecord::default()
        };
        let p = &mut d.properties;
        p.insert("label".into(), PropertyValue::Ref("label-1".into()));
        p.insert("template".into(), shape.template.into());
        let memory = PropertyValue::Text((400 + variant).to_string());
        p.insert("memory".into(), memory);
        if shape.maxmem {
            p.insert("maxmem".into(), "0".into());
        }
        p.insert("virt_mode".into(), "hvm".into());
        let uuid = format!("{}{qid:012}", shape.uuid_prefix);
        p.insert("uuid".into(), PropertyValue::Text(uuid));
        d.features.insert("servicevm".into(), "1".into());
        d.tags.insert("created-by-dom0".into());
        let devs = (0..2)
            .map(|j| DeviceRecord {
                backend_domain: "dom0".into(),
                port_id: format!("00_{:02x}.{j}", i % 32),
                device_id: Some(format!("0x8086:0x{product:04x}::p0c0330")),
                mode: Some("required".into()),
                options: [("no-strict-reset".to_string(), "True".to_string())].into(),
                ..DeviceRecord::default()
            })
            .collect();
        d.devices.insert("pci".into(), devs);
        x.domains.push(d);
    }
    x
}

/// What the state benchmarks (`bench_state`, `bench_registry_save`) share:
/// the raw peer they are measured against and their run parameters.
pub mod bench {
    use std::fs::File;
    use std::io::Write;
    use std::path::{Path, PathBuf};

    /// The median of `v` (0 for an empty one).
    pub fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    }

    /// The peer: what a durable replace of the same bytes costs with nothing
    /// else around it. The same steps as a save: write a temp file in the
    /// folder, fsync it, rename it over the target, fsync the folder.
    pub fn raw_durable_write(dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let tmp = dir.join("raw.tmp");
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, dir.join("raw.xml"))?;
        File::open(dir)?.sync_all()
    }

    /// The first three fields of `/proc/loadavg` (`?` when unreadable).
    pub fn loadavg() -> String {
        std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "?".into())
    }

    /// The command line both take, `[DIR] [SIZES...]` (DIR default
    /// `target/bench-state`, sizes 10, 1000 and 10000), and `BENCH_REPS`
    /// (0 when unset: [`reps`] picks per size).
    pub fn args() -> Result<(PathBuf, Vec<usize>, usize), String> {
        let mut args = std::env::args().skip(1);
        let base = PathBuf::from(args.next().unwrap_or_else(|| "target/bench-state".into()));
        let mut sizes = Vec::new();
        for a in args {
            sizes.push(
                a.parse()
                    .map_err(|_| format!("bad size {a:?}: a number of qubes"))?,
            );
        }
        if sizes.is_empty() {
            sizes = vec![10, 1000, 10000];
        }
        let reps = match std::env::var("BENCH_REPS") {
            Ok(r) => r
                .parse()
                .map_err(|_| format!("bad BENCH_REPS {r:?}: a number of runs"))?,
            Err(_) => 0,
        };
        Ok((base, sizes, reps))
    }

    /// How many interleaved runs for `n` qubes: `reps` when set, else 51,
    /// 21 or 9 for small, medium and large states.
    pub fn reps(reps: usize, n: usize) -> usize {
        match (reps, n) {
            (r, _) if r > 0 => r,
            (_, 0..=100) => 51,
            (_, 101..=2000) => 21,
            _ => 9,
        }
    }
}
