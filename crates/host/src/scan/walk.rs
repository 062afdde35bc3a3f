//! Walking `sys/devices/pci*` top-down: each device directory is opened
//! relative to its parent's, and its place in the tree gives the bridge
//! chain, so no per-device link has to be read and no long path walked.
//! Devices the walk does not reach (a root bus elsewhere below
//! `sys/devices`, an odd link) are read through their `sys/bus/pci` link.

use std::collections::HashSet;

use qpci_types::PciAddress;

use super::devdir::DevDir;
use super::read::{RawDevice, read_at, root_bus_name};
use crate::{HostRoot, PciDevice};

/// Deeper nesting than this is taken as a loop in a broken tree.
const MAX_DEPTH: usize = 64;
/// Below this many devices a thread costs more than it saves.
const PARALLEL_FROM: usize = 64;

/// What the walk found.
#[derive(Default)]
pub(crate) struct Walked {
    /// Every wanted function reached, in no particular order.
    pub(crate) raws: Vec<RawDevice>,
    /// Every root-bus directory met, nested ones included.
    pub(crate) root_buses: Vec<(u32, u8)>,
}

/// Walks the root buses in `sys/devices`, reading each function listed in
/// `wanted`; subtrees are spread over the CPUs, since sysfs reads are
/// syscall-bound and independent.
pub(crate) fn walk(root: &HostRoot, wanted: &HashSet<PciAddress>, modern: bool) -> Walked {
    let top = DevDir::open(&root.join("sys/devices"));
    let buses: Vec<((u32, u8), DevDir)> = top
        .children()
        .iter()
        .filter_map(|n| root_bus_name(n).map(|rb| (rb, DevDir::open_at(&top, n))))
        .collect();
    let items: Vec<(usize, &str)> = buses
        .iter()
        .enumerate()
        .flat_map(|(i, (_, d))| d.children().iter().map(move |c| (i, c.as_str())))
        .collect();
    let run = |part: &[(usize, &str)]| {
        let mut out = Walked::default();
        for &(i, name) in part {
            if let Some((rb, dir)) = buses.get(i) {
                visit(dir, name, *rb, &[], wanted, modern, &mut out, 0);
            }
        }
        out
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let mut all = if threads < 2 || wanted.len() < PARALLEL_FROM || items.len() < 2 {
        run(&items)
    } else {
        let chunk = items.len().div_ceil(threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = items
                .chunks(chunk)
                .map(|part| (part, s.spawn(move || run(part))))
                .collect();
            let mut all = Walked::default();
            for (part, h) in handles {
                // A reader cannot panic on host data; should one still, its
                // share is read again here rather than lost.
                let got = h.join().unwrap_or_else(|_| run(part));
                all.raws.extend(got.raws);
                all.root_buses.extend(got.root_buses);
            }
            all
        })
    };
    all.root_buses.extend(buses.iter().map(|(rb, _)| *rb));
    all
}

/// Visits entry `name` of `parent`: a nested root bus, or a function (read
/// if wanted) whose subdirectories are the functions behind it.
#[allow(clippy::too_many_arguments)]
fn visit(
    parent: &DevDir,
    name: &str,
    rb: (u32, u8),
    chain: &[PciAddress],
    wanted: &HashSet<PciAddress>,
    modern: bool,
    out: &mut Walked,
    depth: usize,
) {
    if depth > MAX_DEPTH {
        return;
    }
    if let Some(nested) = root_bus_name(name) {
        let dir = DevDir::open_at(parent, name);
        out.root_buses.push(nested);
        for c in dir.children() {
            visit(&dir, c, nested, &[], wanted, modern, out, depth + 1);
        }
        return;
    }
    let Ok(address) = name.parse::<PciAddress>() else {
        return;
    };
    let dir = DevDir::open_at(parent, name);
    let mut below = Vec::with_capacity(chain.len() + 1);
    below.extend_from_slice(chain);
    below.push(address);
    if wanted.contains(&address) {
        let raw = RawDevice {
            dev: PciDevice::default(),
            root_bus: Some(rb),
            chain: below.clone(),
            reset_method: None,
        };
        let dev = PciDevice {
            address,
            ..PciDevice::default()
        };
        out.raws.push(read_at(&dir, dev, raw, modern));
    }
    for c in dir.children() {
        visit(&dir, c, rb, &below, wanted, modern, out, depth + 1);
    }
}
