use std::path::Path;

use qpci_fixture::HostTree;
use qpci_fixture::block::{BlockDev, BlockTree};

use super::*;

const NVME: &str = "pci0000:00/0000:00:1d.0/0000:01:00.0/nvme/nvme0/nvme0n1";
const NVME2: &str = "pci0000:00/0000:00:1c.4/0000:02:00.0/nvme/nvme1/nvme1n1";
const SATA: &str = "pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sda";
const USB: &str = "pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0/block/sdb";
const VIRTIO: &str = "pci0000:00/0000:00:02.0/virtio1/block/vda";

fn addr(s: &str) -> PciAddress {
    s.parse().unwrap()
}

fn run(tree: &HostTree) -> (Vec<StorageHolder>, Vec<String>) {
    dom0_storage(&HostRoot::new(tree.root()))
}

fn names(chain: &[&str]) -> Vec<String> {
    chain.iter().map(|s| (*s).to_owned()).collect()
}

fn nvme_partition(tree: &HostTree, number: u32) -> BlockDev {
    let disk = tree.disk(NVME, "259:0");
    tree.partition(&disk, number, &format!("259:{number}"))
}

#[test]
fn root_on_a_plain_nvme_partition() {
    let tree = HostTree::new();
    let p2 = nvme_partition(&tree, 2);
    tree.mount(&p2.dev, "/", "ext4", "/dev/nvme0n1p2");
    let (holders, warnings) = run(&tree);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        holders,
        vec![StorageHolder {
            controller: addr("0000:01:00.0"),
            uses: names(&["/"]),
            chain: names(&["nvme0n1p2", "nvme0n1"]),
            routes: vec![StorageRoute {
                what: "/".into(),
                chain: names(&["nvme0n1p2", "nvme0n1"]),
            }],
        }]
    );
}

/// The case issue 3 names: the root disk's controller behind dm-crypt on
/// LVM on a partition; the root port above it is not a storage holder.
#[test]
fn root_on_luks_on_lvm_on_an_nvme_partition() {
    let tree = HostTree::new();
    let p3 = nvme_partition(&tree, 3);
    let lvm = tree.dm(0, "qubes_dom0-root", "253:0", &[&p3]);
    let luks = tree.dm(1, "luks-0a1b", "253:1", &[&lvm]);
    tree.mount(&luks.dev, "/", "ext4", "/dev/mapper/luks-0a1b");
    let (holders, warnings) = run(&tree);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(holders.len(), 1, "{holders:?}");
    assert_eq!(holders[0].controller, addr("0000:01:00.0"));
    assert_eq!(holders[0].uses, names(&["/"]));
    assert_eq!(
        holders[0].chain,
        names(&["dm-1", "dm-0", "nvme0n1p3", "nvme0n1"])
    );
}

#[test]
fn boot_and_swap_on_other_controllers_and_a_swap_file_on_root() {
    let tree = HostTree::new();
    let p3 = nvme_partition(&tree, 3);
    let luks = tree.dm(0, "luks-root", "253:0", &[&p3]);
    let sda = tree.disk(SATA, "8:0");
    let sda1 = tree.partition(&sda, 1, "8:1");
    let sda2 = tree.partition(&sda, 2, "8:2");
    let vda = tree.disk(VIRTIO, "254:0");
    let vda1 = tree.partition(&vda, 1, "254:1");
    tree.mount(&luks.dev, "/", "ext4", "/dev/mapper/luks-root")
        .mount("0:22", "/proc", "proc", "proc")
        .mount(&sda2.dev, "/boot", "ext4", "/dev/sda2")
        .mount(&sda1.dev, "/boot/efi", "vfat", "/dev/sda1")
        .mount(&vda1.dev, "/var/lib/other", "xfs", "/dev/vda1")
        .swap("/dev/vda1", "partition")
        .swap("/var/swapfile", "file");
    let (holders, warnings) = run(&tree);
    assert!(warnings.is_empty(), "{warnings:?}");
    let summary: Vec<(String, Vec<String>)> = holders
        .iter()
        .map(|h| (h.controller.to_string(), h.uses.clone()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("0000:00:02.0".into(), names(&["swap"])),
            ("0000:00:17.0".into(), names(&["/boot", "/boot/efi"])),
            ("0000:01:00.0".into(), names(&["/", "swap"])),
        ]
    );
    let sata = &holders[1];
    assert_eq!(sata.chain, names(&["sda2", "sda"]));
    assert_eq!(sata.routes.len(), 2);
    assert_eq!(sata.routes[1].chain, names(&["sda1", "sda"]));
    assert_eq!(holders[2].routes[1].what, "swap");
    assert_eq!(
        holders[2].routes[1].chain,
        names(&["dm-0", "nvme0n1p3", "nvme0n1"])
    );
}

#[test]
fn btrfs_root_on_two_devices() {
    let tree = HostTree::new();
    let a = nvme_partition(&tree, 2);
    let b_disk = tree.disk(NVME2, "259:8");
    let b = tree.partition(&b_disk, 1, "259:9");
    tree.btrfs("7a3c0d6e-1111-2222-3333-444455556666", &[&a, &b]);
    tree.btrfs("0c0ffee0-0000-0000-0000-000000000000", &[]);
    // btrfs reports an anonymous device number; the source names one member.
    tree.mount("0:31", "/", "btrfs", "/dev/nvme1n1p1");
    let (holders, warnings) = run(&tree);
    assert!(warnings.is_empty(), "{warnings:?}");
    let got: Vec<(PciAddress, Vec<String>)> = holders
        .iter()
        .map(|h| (h.controller, h.chain.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (addr("0000:01:00.0"), names(&["nvme0n1p2", "nvme0n1"])),
            (addr("0000:02:00.0"), names(&["nvme1n1p1", "nvme1n1"])),
        ]
    );
}

#[test]
fn btrfs_on_luks_found_by_mapper_name() {
    let tree = HostTree::new();
    let p2 = nvme_partition(&tree, 2);
    let luks = tree.dm(3, "luks-abc", "253:3", &[&p2]);
    tree.btrfs("11111111-2222-3333-4444-555555555555", &[&luks]);
    tree.mount("0:33", "/", "btrfs", "/dev/mapper/luks-abc");
    let (holders, warnings) = run(&tree);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(holders.len(), 1);
    assert_eq!(holders[0].chain, names(&["dm-3", "nvme0n1p2", "nvme0n1"]));
}

#[test]
fn btrfs_without_sysfs_members_falls_back_to_its_source() {
    let tree = HostTree::new();
    let p2 = nvme_partition(&tree, 2);
    tree.mount("0:33", "/", "btrfs", &format!("/dev/{}", p2.name));
    let (holders, warnings) = run(&tree);
    assert_eq!(holders.len(), 1);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("only that device"), "{warnings:?}");
}

#[test]
fn overlay_root_warns_and_holds_nothing() {
    let tree = HostTree::new();
    tree.mount("0:45", "/", "overlay", "overlay");
    let (holders, warnings) = run(&tree);
    assert!(holders.is_empty());
    assert_eq!(
        warnings,
        vec![
            "/ is on overlay (source overlay), not on a block device: no controller is held for it"
                .to_owned()
        ]
    );
}

#[test]
fn missing_proc_disables_detection() {
    let tree = HostTree::new();
    tree.disk(VIRTIO, "254:0");
    let (holders, warnings) = run(&tree);
    assert!(holders.is_empty());
    assert_eq!(
        warnings,
        vec![format!(
            "no proc/ under {}: dom0 storage detection disabled",
            tree.root().display()
        )]
    );
}

#[test]
fn proc_without_mountinfo_warns() {
    let tree = HostTree::new();
    tree.mkdir("proc");
    let (holders, warnings) = run(&tree);
    assert!(holders.is_empty());
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("mountinfo"), "{warnings:?}");
}

#[test]
fn garbled_mountinfo_line_is_skipped_with_a_warning() {
    let tree = HostTree::new();
    let vda = tree.disk(VIRTIO, "254:0");
    tree.mountinfo_line("this is not a mount")
        .mountinfo_line("27 1 254:x / /boot rw - ext4 /dev/vda2 rw")
        .mount(&vda.dev, "/", "ext4", "/dev/vda");
    let (holders, warnings) = run(&tree);
    assert_eq!(holders.len(), 1);
    assert_eq!(holders[0].controller, addr("0000:00:02.0"));
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].starts_with("proc/self/mountinfo line 1 is garbled"),
        "{warnings:?}"
    );
}

#[test]
fn a_cycle_in_slaves_terminates() {
    let tree = HostTree::new();
    let p2 = nvme_partition(&tree, 2);
    let a = tree.dm(0, "a", "253:0", &[]);
    let b = tree.dm(1, "b", "253:1", &[&a]);
    tree.add_slave(&a, &b).add_slave(&a, &p2);
    tree.mount(&b.dev, "/", "ext4", "/dev/mapper/b");
    let (holders, warnings) = run(&tree);
    assert_eq!(
        holders.len(),
        1,
        "the way out of the cycle is still followed"
    );
    assert_eq!(
        holders[0].chain,
        names(&["dm-1", "dm-0", "nvme0n1p2", "nvme0n1"])
    );
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("cycle (dm-1 -> dm-0 -> dm-1)"),
        "{warnings:?}"
    );
}

#[test]
fn a_self_slave_terminates() {
    let tree = HostTree::new();
    let a = tree.dm(0, "a", "253:0", &[]);
    tree.add_slave(&a, &a);
    tree.mount(&a.dev, "/", "ext4", "/dev/dm-0");
    let (holders, warnings) = run(&tree);
    assert!(holders.is_empty());
    assert!(warnings.iter().any(|w| w.contains("cycle")), "{warnings:?}");
}

/// Qubes' default layout: root on an LVM thin volume whose pool has two
/// lower devices (tmeta, tdata), both on the same LUKS partition.
#[test]
fn qubes_thin_pool_root_converges_on_one_partition() {
    let tree = HostTree::new();
    let p3 = nvme_partition(&tree, 3);
    let luks = tree.dm(0, "luks-4f2e", "253:0", &[&p3]);
    let tmeta = tree.dm(1, "qubes_dom0-root--pool_tmeta", "253:1", &[&luks]);
    let tdata = tree.dm(2, "qubes_dom0-root--pool_tdata", "253:2", &[&luks]);
    let tpool = tree.dm(3, "qubes_dom0-root--pool-tpool", "253:3", &[&tmeta, &tdata]);
    let root = tree.dm(4, "qubes_dom0-root", "253:4", &[&tpool]);
    let swap = tree.dm(5, "qubes_dom0-swap", "253:5", &[&luks]);
    tree.mount(&root.dev, "/", "ext4", "/dev/mapper/qubes_dom0-root")
        .swap("/dev/dm-5", "partition");
    let _ = swap;
    let (holders, warnings) = run(&tree);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(holders.len(), 1);
    assert_eq!(holders[0].uses, names(&["/", "swap"]));
    assert_eq!(
        holders[0].chain,
        names(&["dm-4", "dm-3", "dm-1", "dm-0", "nvme0n1p3", "nvme0n1"])
    );
    assert_eq!(
        holders[0].routes.len(),
        2,
        "tdata's way to the same disk is not repeated"
    );
}

#[test]
fn nvme_multipath_head_leads_to_every_controller() {
    let tree = HostTree::new();
    let head = tree.nvme_multipath_head(
        0,
        "nvme0n1",
        "259:0",
        &[
            "pci0000:00/0000:00:1d.0/0000:01:00.0/nvme/nvme0/nvme0c0n1",
            "pci0000:00/0000:00:1c.4/0000:02:00.0/nvme/nvme1/nvme0c1n1",
        ],
    );
    let p2 = tree.partition(&head, 2, "259:2");
    tree.mount(&p2.dev, "/", "xfs", "/dev/nvme0n1p2");
    let (holders, warnings) = run(&tree);
    assert!(warnings.is_empty(), "{warnings:?}");
    let got: Vec<(PciAddress, Vec<String>)> = holders
        .iter()
        .map(|h| (h.controller, h.chain.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                addr("0000:01:00.0"),
                names(&["nvme0n1p2", "nvme0n1", "nvme0c0n1"])
            ),
            (
                addr("0000:02:00.0"),
                names(&["nvme0n1p2", "nvme0n1", "nvme0c1n1"])
            ),
        ]
    );
}

#[test]
fn an_untriggered_automount_warns_and_a_triggered_one_resolves() {
    let tree = HostTree::new();
    let p1 = nvme_partition(&tree, 1);
    let p2 = tree.partition(&tree.disk(NVME, "259:0"), 2, "259:2");
    tree.mount(&p2.dev, "/", "ext4", "/dev/nvme0n1p2")
        .mount("0:50", "/boot/efi", "autofs", "systemd-1")
        .mount("0:51", "/boot", "autofs", "systemd-1")
        .mount(&p1.dev, "/boot", "vfat", "/dev/nvme0n1p1");
    let (holders, warnings) = run(&tree);
    assert_eq!(holders.len(), 1);
    assert_eq!(holders[0].uses, names(&["/", "/boot"]));
    assert_eq!(
        warnings,
        vec!["/boot/efi is an automount that is not mounted now: its device is unknown".to_owned()]
    );
}

#[test]
fn usb_disk_is_held_by_the_xhci_function() {
    let tree = HostTree::new();
    let sdb = tree.disk(USB, "8:16");
    let sdb1 = tree.partition(&sdb, 1, "8:17");
    tree.mount(&sdb1.dev, "/", "ext4", "/dev/sdb1");
    let (holders, warnings) = run(&tree);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(holders.len(), 1);
    assert_eq!(holders[0].controller, addr("0000:00:14.0"));
}

#[test]
fn nvme_behind_vmd_keeps_its_wide_domain() {
    let tree = HostTree::new();
    let disk = tree.disk(
        "pci0000:00/0000:00:0e.0/pci10000:e0/10000:e0:06.0/10000:e1:00.0/nvme/nvme0/nvme0n1",
        "259:0",
    );
    tree.mount(&disk.dev, "/", "xfs", "/dev/nvme0n1");
    let (holders, _) = run(&tree);
    assert_eq!(holders.len(), 1);
    assert_eq!(holders[0].controller, addr("10000:e1:00.0"));
}

#[test]
fn md_mirror_holds_both_controllers() {
    let tree = HostTree::new();
    let a = nvme_partition(&tree, 1);
    let sda = tree.disk(SATA, "8:0");
    let b = tree.partition(&sda, 1, "8:1");
    let md = tree.md(0, "9:0", &[&a, &b]);
    tree.mount(&md.dev, "/boot", "ext4", "/dev/md0");
    // The root on the same mirror's other half is walked again for its own use.
    tree.mount(&md.dev, "/", "ext4", "/dev/md0");
    let (holders, warnings) = run(&tree);
    assert!(warnings.is_empty(), "{warnings:?}");
    let got: Vec<(PciAddress, Vec<String>, Vec<String>)> = holders
        .iter()
        .map(|h| (h.controller, h.uses.clone(), h.chain.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                addr("0000:00:17.0"),
                names(&["/", "/boot"]),
                names(&["md0", "sda1", "sda"])
            ),
            (
                addr("0000:01:00.0"),
                names(&["/", "/boot"]),
                names(&["md0", "nvme0n1p1", "nvme0n1"])
            ),
        ]
    );
}

#[test]
fn loop_root_follows_its_backing_file() {
    let tree = HostTree::new();
    let sda = tree.disk(SATA, "8:0");
    let sda1 = tree.partition(&sda, 1, "8:1");
    let lo = tree.loop_device(0, "7:0", "/run/media/live/root.img");
    tree.mount(&sda1.dev, "/run/media/live", "vfat", "/dev/sda1")
        .mount(&lo.dev, "/", "ext4", "/dev/loop0");
    let (holders, warnings) = run(&tree);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(holders.len(), 1);
    assert_eq!(holders[0].chain, names(&["loop0", "sda1", "sda"]));
}

#[test]
fn a_loop_backed_by_a_file_on_itself_terminates() {
    let tree = HostTree::new();
    let lo = tree.loop_device(0, "7:0", "/root.img");
    tree.mount(&lo.dev, "/", "ext4", "/dev/loop0");
    let (holders, warnings) = run(&tree);
    assert!(holders.is_empty());
    assert!(warnings.iter().any(|w| w.contains("cycle")), "{warnings:?}");
}

#[test]
fn zram_swap_is_silent_but_nbd_root_warns() {
    let tree = HostTree::new();
    let zram = tree.virtual_disk("zram0", "252:0");
    let nbd = tree.virtual_disk("nbd0", "43:0");
    tree.mount(&nbd.dev, "/", "ext4", "/dev/nbd0")
        .swap("/dev/zram0", "partition");
    let _ = zram;
    let (holders, warnings) = run(&tree);
    assert!(holders.is_empty());
    assert_eq!(
        warnings,
        vec![
            "/ is on nbd0 but nbd0 is not behind a PCI device: no controller is held for it"
                .to_owned()
        ]
    );
}

#[test]
fn the_last_mount_on_a_point_wins() {
    let tree = HostTree::new();
    let sda = tree.disk(SATA, "8:0");
    let vda = tree.disk(VIRTIO, "254:0");
    tree.mount(&sda.dev, "/", "ext4", "/dev/sda")
        .mount(&vda.dev, "/", "ext4", "/dev/vda");
    let (holders, _) = run(&tree);
    assert_eq!(holders.len(), 1);
    assert_eq!(holders[0].controller, addr("0000:00:02.0"));
}

#[test]
fn a_missing_dev_link_falls_back_to_the_source_then_warns() {
    let tree = HostTree::new();
    let vda = tree.disk(VIRTIO, "254:0");
    tree.remove(format!("sys/dev/block/{}", vda.dev));
    tree.mount(&vda.dev, "/", "ext4", "/dev/vda")
        .mount("8:3", "/boot", "ext4", "/dev/root");
    let (holders, warnings) = run(&tree);
    assert_eq!(holders.len(), 1);
    assert_eq!(holders[0].controller, addr("0000:00:02.0"));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("/boot is on device 8:3 (/dev/root), which has no"),
        "{warnings:?}"
    );
}

#[test]
fn links_leading_out_of_the_root_are_ignored() {
    let tree = HostTree::new();
    // An absolute link would read this machine's own sysfs.
    tree.symlink(
        "sys/dev/block/254:0",
        "/sys/devices/pci0000:00/0000:00:02.0/virtio1/block/vda",
    );
    tree.mount("254:0", "/", "ext4", "/dev/vda");
    let (holders, warnings) = run(&tree);
    assert!(holders.is_empty(), "{holders:?}");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
}

#[test]
fn garbled_swaps_and_unknown_swap_devices_warn() {
    let tree = HostTree::new();
    let vda = tree.disk(VIRTIO, "254:0");
    tree.mount(&vda.dev, "/", "ext4", "/dev/vda")
        .swap("/dev/sdz9", "partition")
        .swap("nonsense", "???");
    let (holders, warnings) = run(&tree);
    assert_eq!(holders.len(), 1);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
}

#[test]
fn garbage_files_never_panic() {
    let junk: [&[u8]; 6] = [
        b"",
        b"\xff\xfe\x00garbage\n",
        b"1 2 3 4 5 6 - \n",
        b"1 2 0:0 / / rw - \n",
        b"1 2 999999999999:1 / / rw - ext4 /dev/x rw\n",
        b"1 2 8:1 / / rw - btrfs /dev/../../etc/passwd rw\n",
    ];
    for mountinfo in junk {
        let tree = HostTree::new();
        tree.write("proc/self/mountinfo", mountinfo);
        tree.write("proc/swaps", mountinfo);
        let (holders, _) = run(&tree);
        assert!(holders.is_empty());
    }
}

/// This machine, read-only: `/` is on a virtio disk at 0000:00:02.0 here;
/// elsewhere only the shape is checked.
#[test]
fn real_host_root_device() {
    let root = HostRoot::real();
    let (holders, warnings) = dom0_storage(&root);
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let root_dev = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(2).zip(l.split(' ').nth(4)))
        .filter(|(_, mp)| *mp == "/")
        .map(|(dev, _)| dev.to_owned())
        .next_back();
    let Some(dev) = root_dev else {
        eprintln!("skipped: no / in /proc/self/mountinfo");
        return;
    };
    let link = Path::new("/sys/dev/block").join(&dev);
    let Ok(target) = std::fs::canonicalize(&link) else {
        eprintln!("skipped: / is on {dev}, which has no {}", link.display());
        return;
    };
    let Some(expected) = target
        .iter()
        .rev()
        .filter_map(|c| c.to_str())
        .find_map(parse_sbdf_component)
    else {
        eprintln!(
            "skipped: / is on {} which is not behind a PCI device",
            target.display()
        );
        return;
    };
    eprintln!("real host: {holders:?} {warnings:?}");
    let holder = holders.iter().find(|h| h.controller == expected);
    assert!(
        holder.is_some_and(|h| h.uses.iter().any(|u| u == "/")),
        "expected {expected} holding /: {holders:?} {warnings:?}"
    );
}
