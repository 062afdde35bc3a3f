//! Walking `sys/devices/pci*` top-down: each device directory is opened
//! relative to its parent's, and its place in the tree gives the bridge
//! chain, so no per-device link has to be read and no long path walked.
//! Devices the walk does not reach (a root bus elsewhere below
//! `sys/devices`, an odd link) are read through their `sys/bus/pci` link.

use std::sync::atomic::{AtomicUsize, Ordering};

use qpci_types::PciAddress;

use super::devdir::{ChildKind, DevDir};
use super::fx::FxHashSet;
use super::read::{RawDevice, read_at};
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
/// syscall-bound and independent. Each thread takes the next subtree when
/// done with one, so a thread the scheduler holds back does not hold up
/// the scan with a fixed share.
pub(crate) fn walk(root: &HostRoot, wanted: &FxHashSet<PciAddress>, modern: bool) -> Walked {
    let top = DevDir::open_top(&root.join("sys/devices"));
    let buses: Vec<((u32, u8), DevDir)> = top
        .children()
        .iter()
        .filter_map(|c| match c.kind {
            ChildKind::RootBus(rb) => Some((rb, DevDir::open_at(&top, &c.name))),
            ChildKind::Function(_) => None,
        })
        .collect();
    let items: Vec<(usize, usize)> = buses
        .iter()
        .enumerate()
        .flat_map(|(i, (_, d))| (0..d.children().len()).map(move |c| (i, c)))
        .collect();
    let next = AtomicUsize::new(0);
    let run = || {
        let mut out = Walked::default();
        while let Some(&(i, c)) = items.get(next.fetch_add(1, Ordering::Relaxed)) {
            if let Some((rb, dir)) = buses.get(i)
                && let Some(child) = dir.children().get(c)
            {
                visit(
                    dir,
                    &child.name,
                    child.kind,
                    *rb,
                    &[],
                    wanted,
                    modern,
                    &mut out,
                    0,
                );
            }
        }
        out
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8)
        .min(items.len());
    let mut all = if threads < 2 || wanted.len() < PARALLEL_FROM {
        run()
    } else {
        std::thread::scope(|s| {
            let handles: Vec<_> = (1..threads).map(|_| s.spawn(run)).collect();
            // This thread takes its share too.
            let mut all = run();
            for h in handles {
                // A reader cannot panic on host data; should one still, the
                // subtrees it had taken are read through their links later.
                if let Ok(got) = h.join() {
                    all.raws.extend(got.raws);
                    all.root_buses.extend(got.root_buses);
                }
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
    kind: ChildKind,
    rb: (u32, u8),
    chain: &[PciAddress],
    wanted: &FxHashSet<PciAddress>,
    modern: bool,
    out: &mut Walked,
    depth: usize,
) {
    if depth > MAX_DEPTH {
        return;
    }
    let address = match kind {
        ChildKind::RootBus(nested) => {
            let dir = DevDir::open_at(parent, name);
            out.root_buses.push(nested);
            for c in dir.children() {
                visit(
                    &dir,
                    &c.name,
                    c.kind,
                    nested,
                    &[],
                    wanted,
                    modern,
                    out,
                    depth + 1,
                );
            }
            return;
        }
        ChildKind::Function(address) => address,
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
        visit(
            &dir,
            &c.name,
            c.kind,
            rb,
            &below,
            wanted,
            modern,
            out,
            depth + 1,
        );
    }
}
