//! Hand-made inputs: the seed corpus of `fuzz/corpus/` is written from
//! these (`cargo run -p qpci-fuzzcheck --example make_seeds`), and the
//! proptest short form mutates them.

use std::fs;
use std::path::Path;

use qpci_fixture::pci::PciTopology;

use crate::scan::{DeviceSpec, FILES, Listing, TreeSpec};

/// Every request/response example of the Admin API spec, in its notation.
pub const SPEC_EXAMPLES: &str = include_str!("../../daemon/tests/data/spec_examples.txt");

/// The store's realistic `qubes.xml`.
pub const STORE_QUBES_XML: &str = include_str!("../../store/tests/data/qubes.xml");

/// Decodes the spec notation: `\0`, `\n`, `\\`, `\r`, `\t`, `\v`, `\f`,
/// `\xNN`; anything else is literal.
pub fn unescape(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        i += 1;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let Some(&e) = bytes.get(i) else {
            out.push(b'\\');
            break;
        };
        i += 1;
        match e {
            b'0' => out.push(0),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(0x0b),
            b'f' => out.push(0x0c),
            b'\\' => out.push(b'\\'),
            b'x' => {
                let hex = bytes
                    .get(i..i + 2)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.extend_from_slice(b"\\x"),
                }
            }
            other => out.extend_from_slice(&[b'\\', other]),
        }
    }
    out
}

/// The requests and the replies of the spec examples, as raw bytes.
pub fn spec_frames() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut requests = Vec::new();
    let mut replies = Vec::new();
    for line in SPEC_EXAMPLES.lines() {
        if line.starts_with('#') || line.starts_with("==") || line.trim().is_empty() {
            continue;
        }
        let (request, reply) = match line.split_once('⇒') {
            Some((req, rep)) => (req.strip_suffix(' ').unwrap_or(req), rep.trim_start()),
            None => (line, ""),
        };
        if !request.is_empty() {
            requests.push(unescape(request));
        }
        if !reply.is_empty() && reply != "(closed)" {
            replies.push(unescape(reply));
        }
    }
    (requests, replies)
}

/// `key='value'` lines: request payloads and reply lines of the spec.
pub fn kv_lines() -> Vec<Vec<u8>> {
    let (requests, replies) = spec_frames();
    let mut lines: Vec<Vec<u8>> = Vec::new();
    for r in &requests {
        if let Some(nul) = r.iter().position(|b| *b == 0) {
            let payload = &r[nul + 1..];
            if payload.windows(2).any(|w| w == b"='") {
                lines.push(payload.to_vec());
            }
        }
    }
    for r in &replies {
        for line in r.get(2..).unwrap_or_default().split(|b| *b == b'\n') {
            // Listing lines start with `port:identity ` before the items.
            let items = match line.iter().position(|b| *b == b' ') {
                Some(sp) if !line[..sp].contains(&b'=') => &line[sp + 1..],
                _ => line,
            };
            if items.windows(2).any(|w| w == b"='") {
                lines.push(items.to_vec());
            }
        }
    }
    lines.sort();
    lines.dedup();
    lines
}

/// Identifier texts, valid and near-valid, one per input.
pub const IDENTIFIERS: &[&str] = &[
    "0000:00:1a.0",
    "00:14.0",
    "10000:e1:00.3",
    "pci_0000_00_18_4",
    "0001_02_00_2",
    "00_14.0",
    "00_1c.0-00_00.0",
    "0001_00_01.0-01_00.0-00_00.7",
    "00_07.0-00_00.0-00_01.0-00_00.0",
    "0x8086:0xa0ed::p0c0330",
    "0000:0000::?******",
    "0x8086:0x2725:ABC-123:p028000u0e0100",
    "p0c0330",
    "0x0c0330",
    "060400",
    "work",
    "sys-net",
    "Domain-0",
    "x-dm",
    "no-strict-reset=true",
    "permissive=yes,no-strict-reset=off",
    "read-only=true",
    "*",
];

/// A seed tree from a fixture topology: every device directory of the
/// built tree, its attribute files and links read back into a [`TreeSpec`].
pub fn tree_of(topology: &PciTopology) -> TreeSpec {
    let tree = topology.build();
    let root = tree.root();
    let devices_dir = root.join("sys/bus/pci/devices");
    let mut entries: Vec<(String, std::path::PathBuf)> = fs::read_dir(&devices_dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| {
                    let dir = fs::canonicalize(e.path()).ok()?;
                    Some((e.file_name().to_string_lossy().into_owned(), dir))
                })
                .collect()
        })
        .unwrap_or_default();
    // Parents before children, so `parent` indexes point backwards.
    entries.sort_by_key(|(_, dir)| dir.components().count());
    let mut devices: Vec<DeviceSpec> = Vec::new();
    let mut dirs: Vec<std::path::PathBuf> = Vec::new();
    for (name, dir) in &entries {
        let Ok(a) = name.parse::<qpci_types::PciAddress>() else {
            continue;
        };
        let mut files = Vec::new();
        for (i, f) in FILES.iter().enumerate() {
            if let Ok(mut content) = fs::read(dir.join(f)) {
                // Config space past its last set byte is zeros: the
                // scanner reads a shorter file the same way.
                let used = content.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
                if *f == "config" {
                    content.truncate(used.max(64));
                }
                for part in content.chunks(255) {
                    // FILES has fewer than 256 entries.
                    files.push((i as u8, part.to_vec()));
                }
            }
        }
        let link_name = |l: &str| {
            fs::read_link(dir.join(l)).ok().and_then(|t| {
                t.file_name()
                    .map(|n| n.to_string_lossy().into_owned().into_bytes())
            })
        };
        let parent = dir
            .parent()
            .and_then(|p| dirs.iter().position(|d| d.as_path() == p));
        let physfn = fs::canonicalize(dir.join("physfn"))
            .ok()
            .and_then(|p| dirs.iter().position(|d| *d == p));
        let domain = match a.domain() {
            0 => 0,
            1 => 2,
            _ => 3,
        };
        devices.push(DeviceSpec {
            domain,
            bus: a.bus(),
            device: a.device(),
            function: a.function(),
            parent,
            listing: Listing::Link,
            files,
            iommu_group: link_name("iommu_group"),
            driver: link_name("driver"),
            physfn,
        });
        dirs.push(dir.clone());
    }
    let read = |rel: &str| fs::read(root.join(rel)).ok();
    TreeSpec {
        osrelease: read("proc/sys/kernel/osrelease"),
        xen: read("proc/xen/capabilities").is_some_and(|c| c.starts_with(b"control_d")),
        devices,
    }
}

/// The seed trees: the fixture laptop, workstation and a small synthetic host.
pub fn trees() -> Vec<TreeSpec> {
    vec![
        tree_of(&PciTopology::laptop()),
        tree_of(&PciTopology::workstation()),
        tree_of(&PciTopology::synthetic(8)),
    ]
}

/// Writes every seed under `corpus/<target>/`.
pub fn write_corpus(corpus: &Path) -> std::io::Result<usize> {
    let mut n = 0;
    let mut put = |target: &str, name: String, data: &[u8]| -> std::io::Result<()> {
        let dir = corpus.join(target);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(name), data)?;
        n += 1;
        Ok(())
    };
    let (requests, replies) = spec_frames();
    for (i, r) in requests.iter().enumerate() {
        put("request", format!("spec-request-{i:03}"), r)?;
    }
    for (i, r) in replies.iter().enumerate().step_by(8) {
        put("request", format!("spec-reply-{i:03}"), r)?;
    }
    for (i, l) in kv_lines().iter().enumerate() {
        put("kv", format!("spec-line-{i:03}"), l)?;
    }
    put(
        "kv",
        "item-quote".into(),
        b"product\0it's a 'quoted' \\ name",
    )?;
    for (i, id) in IDENTIFIERS.iter().enumerate() {
        put("ids", format!("id-{i:02}"), id.as_bytes())?;
    }
    put(
        "state",
        "store-fixture.xml".into(),
        STORE_QUBES_XML.as_bytes(),
    )?;
    put(
        "state",
        "daemon-fixture.xml".into(),
        crate::request::QUBES_XML.as_bytes(),
    )?;
    for (name, tree) in ["laptop", "workstation", "synthetic8"].iter().zip(trees()) {
        put("scan", format!("{name}.tree"), &tree.to_bytes())?;
    }
    Ok(n)
}
