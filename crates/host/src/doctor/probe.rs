//! Small sysfs probes: which PCI device carries dom0's default route, and
//! which input devices sit behind a USB controller.

use std::fs;
use std::path::{Path, PathBuf};

use qpci_types::PciAddress;

use crate::HostRoot;

/// Most directories walked below one controller (a real xHCI with a hub
/// and a few devices has a few hundred).
const WALK_LIMIT: usize = 20_000;
/// Deepest nesting walked (controller → usbN → port → interface → hid →
/// input → inputN is 7).
const DEPTH_LIMIT: usize = 14;

/// The PCI devices behind dom0's default route: each interface with a
/// default route in `proc/net/route` (destination and mask 0), resolved
/// through `sys/class/net/<iface>/device` to the nearest PCI function on
/// its path (a USB NIC resolves to its USB controller).
pub fn default_route_devices(root: &HostRoot) -> Vec<(PciAddress, String)> {
    let Ok(table) = fs::read_to_string(root.join("proc/net/route")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 || f[1] != "00000000" || f[7] != "00000000" {
            continue;
        }
        let iface = f[0];
        if iface.contains('/') || iface.starts_with('.') {
            continue;
        }
        let link = root.join(format!("sys/class/net/{iface}/device"));
        if let Some(a) = fs::canonicalize(link)
            .ok()
            .and_then(|p| nearest_pci(&p))
            .filter(|a| !out.iter().any(|(b, _)| b == a))
        {
            out.push((a, iface.to_owned()));
        }
    }
    out
}

/// The last path component that is a PCI address.
fn nearest_pci(path: &Path) -> Option<PciAddress> {
    path.components()
        .rev()
        .find_map(|c| c.as_os_str().to_str()?.parse::<PciAddress>().ok())
}

/// Input devices (`input/inputN` directories) anywhere below the device
/// directory of `address`, as `(root-relative path, name)`, sorted. Links
/// are not followed, so the walk stays inside the device's subtree.
pub fn input_devices_below(root: &HostRoot, address: &PciAddress) -> Vec<(String, String)> {
    let Ok(start) = fs::canonicalize(root.pci_device(address)) else {
        return Vec::new();
    };
    let base = fs::canonicalize(root.dir()).unwrap_or_else(|_| root.dir().to_owned());
    let mut found = Vec::new();
    let mut stack: Vec<(PathBuf, usize)> = vec![(start, 0)];
    let mut visited = 0usize;
    while let Some((dir, depth)) = stack.pop() {
        visited += 1;
        if visited > WALK_LIMIT {
            break;
        }
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for entry in rd.filter_map(Result::ok) {
            let Ok(ft) = entry.file_type() else { continue };
            if !ft.is_dir() {
                continue;
            }
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let path = entry.path();
            let is_input = name
                .strip_prefix("input")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                && dir.file_name().is_some_and(|p| p == "input");
            if is_input {
                let label = fs::read_to_string(path.join("name"))
                    .map(|n| n.trim().to_owned())
                    .unwrap_or_else(|_| "(unnamed input device)".to_owned());
                let rel = path
                    .strip_prefix(&base)
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|_| path.clone());
                found.push((rel.display().to_string(), label));
            } else if depth < DEPTH_LIMIT {
                stack.push((path, depth + 1));
            }
        }
    }
    found.sort();
    found
}
