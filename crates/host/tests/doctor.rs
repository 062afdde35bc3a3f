//! `qvm-pci doctor` findings on fixture trees (DESIGN.md M14): one tree per
//! finding, each checked for the finding, its evidence and its fix; a
//! healthy device has none; a Xen dom0 asks a fake `xl`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use qpci_fixture::HostTree;
use qpci_fixture::pci::PciTopology;
use qpci_host::doctor::{
    AssignmentFacts, DoctorInput, Finding, HostFacts, IommuState, Kind, Report, Scope, Severity,
    XlRunner, diagnose, gather,
};
use qpci_host::{HostFlavour, HostRoot, Inventory, ScanOptions, scan};
use qpci_types::{PciAddress, PciPath};

fn addr(s: &str) -> PciAddress {
    s.parse().unwrap()
}

fn port(s: &str) -> PciPath {
    s.parse().unwrap()
}

struct FakeXl(Result<String, String>);

impl XlRunner for FakeXl {
    fn info(&self) -> Result<String, String> {
        self.0.clone()
    }
    fn describe(&self) -> String {
        "fake-xl info".into()
    }
}

struct Case {
    _tree: HostTree,
    inv: Inventory,
    facts: HostFacts,
    flavour: HostFlavour,
    assignments: Vec<AssignmentFacts>,
    holders: Vec<(PciAddress, String)>,
}

impl Case {
    fn new(t: &PciTopology) -> Self {
        Self::with(t, |_| {}, None)
    }

    fn with(t: &PciTopology, extra: impl Fn(&HostTree), xl: Option<&dyn XlRunner>) -> Self {
        let tree = t.build();
        extra(&tree);
        let root = HostRoot::new(tree.root());
        let inv = scan(&root, &ScanOptions::default());
        let facts = gather(&root, &inv, xl);
        let flavour = inv.flavour;
        Self {
            _tree: tree,
            inv,
            facts,
            flavour,
            assignments: Vec::new(),
            holders: Vec::new(),
        }
    }

    fn assign(&mut self, qube: &str, at: &str) -> &mut AssignmentFacts {
        let p = port(at);
        let identity = self
            .inv
            .devices
            .iter()
            .find(|d| d.path.as_ref() == Some(&p))
            .map(qpci_host::PciDevice::identity);
        self.assignments.push(AssignmentFacts {
            qube: qube.into(),
            text: format!("dom0:{at}"),
            port: Some(p),
            identity,
            required: true,
            mode: "required".into(),
            ..AssignmentFacts::default()
        });
        self.assignments.last_mut().unwrap()
    }

    fn run(&self, scope: Scope) -> Report {
        diagnose(&DoctorInput {
            inventory: &self.inv,
            facts: &self.facts,
            flavour: self.flavour,
            assignments: &self.assignments,
            holders: &self.holders,
            scope: &scope,
        })
    }

    fn port(&self, at: &str) -> Report {
        self.run(Scope::Port(port(at)))
    }
}

#[track_caller]
fn one(r: &Report, kind: Kind) -> &Finding {
    let found: Vec<&Finding> = r.findings.iter().filter(|f| f.kind == kind).collect();
    assert_eq!(found.len(), 1, "{kind:?} in {:#?}", r.findings);
    found[0]
}

#[track_caller]
fn evidence(f: &Finding, file: &str, value: &str) {
    assert!(
        f.evidence
            .iter()
            .any(|e| e.file.contains(file) && e.value.contains(value)),
        "{file} = {value} not in {:#?}",
        f.evidence
    );
}

/// A KVM host with an IOMMU: one healthy card behind its own root port.
fn healthy() -> PciTopology {
    let mut t = PciTopology::new();
    t.emulate_reset_method(true);
    t.host_bridge("0000:00:00.0").iommu_group(0);
    t.bridge("0000:00:1c.0", 2).iommu_group(1);
    t.endpoint("0000:02:00.0")
        .ids(0x8086, 0x2723)
        .class(0x028000)
        .flr()
        .iommu_group(2);
    t
}

#[test]
fn healthy_device_has_no_findings() {
    let mut c = Case::new(&healthy());
    c.assign("sys-net", "00_1c.0-00_00.0");
    let r = c.port("00_1c.0-00_00.0");
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    assert!(!r.problems_found());
    assert_eq!(r.examined.len(), 1);
    assert_eq!(r.examined[0].assigned_to, vec!["sys-net".to_owned()]);
    // Bound to a host driver: only a fact.
    let mut t = healthy();
    t.device("0000:02:00.0").driver("iwlwifi");
    let r = Case::new(&t).port("00_1c.0-00_00.0");
    let f = one(&r, Kind::HostDriver);
    assert_eq!(f.severity, Severity::Info);
    evidence(f, "0000:02:00.0/driver", "iwlwifi");
    assert!(f.fix.contains("boot-hide"));
    assert!(!r.problems_found());
}

#[test]
fn no_iommu_on_kvm_with_the_command_line_hint() {
    let mut t = healthy();
    t.without_iommu();
    let c = Case::with(
        &t,
        |tree| {
            tree.write("proc/cmdline", "BOOT_IMAGE=/vmlinuz root=/dev/sda1 quiet\n");
            tree.write("proc/cpuinfo", "processor : 0\nvendor_id : GenuineIntel\n");
        },
        None,
    );
    assert_eq!(c.facts.iommu, IommuState::Empty);
    let r = c.run(Scope::All);
    let f = one(&r, Kind::NoIommu);
    assert_eq!((f.severity, f.device), (Severity::Error, None));
    evidence(f, "sys/kernel/iommu_groups", "empty");
    evidence(f, "proc/cmdline", "root=/dev/sda1 quiet");
    assert!(f.fix.contains("intel_iommu=on iommu=pt"), "{}", f.fix);
    assert!(f.fix.contains("VT-d"));
    assert!(r.problems_found());
    assert_eq!(r.findings[0].kind, Kind::NoIommu, "host-wide errors first");

    // Already on the command line, on AMD, the folder missing: the firmware.
    let c = Case::with(
        &t,
        |tree| {
            std::fs::remove_dir_all(tree.path("sys/kernel/iommu_groups")).unwrap();
            tree.write("proc/cmdline", "quiet amd_iommu=on\n");
            tree.write("proc/cpuinfo", "vendor_id\t: AuthenticAMD\n");
        },
        None,
    );
    assert_eq!(c.facts.iommu, IommuState::Missing);
    let r = c.run(Scope::All);
    let f = one(&r, Kind::NoIommu);
    evidence(f, "sys/kernel/iommu_groups", "missing");
    assert!(
        f.fix.contains("firmware") && f.fix.contains("AMD-Vi"),
        "{}",
        f.fix
    );
}

fn xen_tree() -> PciTopology {
    let mut t = healthy();
    t.xen_dom0();
    t
}

#[test]
fn xen_dom0_asks_xl_for_hvm_directio() {
    let without = FakeXl(Ok("host : dom0\nvirt_caps : pv hvm hap shadow\n".into()));
    let c = Case::with(&xen_tree(), |_| {}, Some(&without));
    assert!(c.facts.xen_dom0);
    assert_eq!(c.flavour, HostFlavour::Xen);
    let r = c.run(Scope::All);
    let f = one(&r, Kind::XenNoDirectIo);
    assert_eq!(f.severity, Severity::Error);
    evidence(f, "xl info: virt_caps", "pv hvm hap shadow");
    assert!(f.fix.contains("iommu=0") && f.fix.contains("xl dmesg"));
    assert!(
        r.findings.iter().all(|f| f.kind != Kind::NoIommu),
        "no groups on Xen is normal"
    );

    let with = FakeXl(Ok("virt_caps : pv hvm hvm_directio pv_directio\n".into()));
    let r = Case::with(&xen_tree(), |_| {}, Some(&with)).run(Scope::All);
    assert!(
        r.findings.iter().all(|f| f.device.is_some()),
        "{:#?}",
        r.findings
    );

    let broken = FakeXl(Err("cannot run xl: No such file".into()));
    let r = Case::with(&xen_tree(), |_| {}, Some(&broken)).run(Scope::All);
    let f = one(&r, Kind::XlFailed);
    assert_eq!(f.severity, Severity::Warning);
    evidence(f, "xl info", "No such file");
}

#[test]
fn dom0_critical_with_its_class() {
    let c = Case::new(&PciTopology::laptop());
    let r = c.port("00_1f.0");
    let f = one(&r, Kind::Dom0Critical);
    assert_eq!(f.severity, Severity::Error);
    assert!(f.message.contains("ISA/LPC bridge"));
    evidence(f, "0000:00:1f.0/class", "0x060100");
    assert!(f.fix.contains("no override"));
    assert!(r.problems_found(), "asked for by name");
    // In a sweep, bridges nobody assigned are not looked at.
    let all = c.run(Scope::All);
    assert!(all.for_device(&addr("0000:00:1c.0")).next().is_none());
}

#[test]
fn no_reset_method_and_no_strict_reset() {
    let mut t = healthy();
    t.endpoint("0000:00:05.0")
        .ids(0x1234, 0x1111)
        .class(0x048000)
        .no_pm()
        .iommu_group(5);
    let mut c = Case::new(&t);
    let r = c.port("00_05.0");
    let f = one(&r, Kind::NoReset);
    assert_eq!(f.severity, Severity::Error);
    evidence(f, "0000:00:05.0/reset_method", "(missing)");
    assert!(f.fix.contains("no-strict-reset=true") && f.fix.contains("leak"));
    c.assign("work", "00_05.0").no_strict_reset = true;
    let r = c.port("00_05.0");
    assert_eq!(one(&r, Kind::NoReset).severity, Severity::Warning);
    assert!(!r.problems_found());
}

#[test]
fn bus_reset_domain_split_across_qubes() {
    let mut c = Case::new(&PciTopology::laptop());
    c.assign("sys-usb", "00_07.0-00_00.0-00_01.0-00_00.0");
    c.assign("work", "00_07.0-00_00.0-00_01.0-00_00.1");
    let r = c.port("00_07.0-00_00.0-00_01.0-00_00.0");
    let f = one(&r, Kind::ResetDomainShared);
    assert_eq!(f.severity, Severity::Error);
    assert!(
        f.message.contains("0000:22:00.1 (snd_hda_intel)"),
        "{}",
        f.message
    );
    assert!(f.message.contains("0000:21:01.0"));
    evidence(f, "0000:21:01.0/secondary_bus_number", "2 functions");
    assert!(f.fix.contains("same qube"));
    // Both to one qube: the reset domain is fine (the shared IOMMU group of
    // the Thunderbolt chain is another matter).
    c.assignments[1].qube = "sys-usb".into();
    let r = c.port("00_07.0-00_00.0-00_01.0-00_00.0");
    assert!(r.findings.iter().all(|f| f.kind != Kind::ResetDomainShared));
}

#[test]
fn shared_iommu_group_names_the_others_and_their_drivers() {
    let mut c = Case::new(&PciTopology::laptop());
    c.assign("sys-usb", "00_14.0");
    let r = c.port("00_14.0");
    let f = one(&r, Kind::IommuGroupShared);
    assert_eq!(f.severity, Severity::Error);
    assert!(
        f.message.contains("dom0:00_14.2 0000:00:14.2 (no driver)"),
        "{}",
        f.message
    );
    evidence(f, "sys/kernel/iommu_groups/3/devices", "0000:00:14.2");
    assert!(f.fix.contains("same qube"));
    c.assign("sys-usb", "00_14.2");
    let r = c.port("00_14.0");
    assert!(r.findings.iter().all(|f| f.kind != Kind::IommuGroupShared));
}

#[test]
fn no_iommu_group_for_one_device() {
    let mut t = healthy();
    t.endpoint("0000:00:06.0").class(0x020000).flr();
    let r = Case::new(&t).port("00_06.0");
    let f = one(&r, Kind::NoIommuGroup);
    evidence(f, "0000:00:06.0/iommu_group", "(missing)");
}

#[test]
fn nic_carrying_dom0_default_route() {
    let mut t = healthy();
    t.endpoint("0000:00:1f.6")
        .ids(0x8086, 0x15fc)
        .class(0x020000)
        .driver("e1000e")
        .flr()
        .iommu_group(8);
    let c = Case::with(
        &t,
        |tree| {
            tree.write(
                "proc/net/route",
                "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\neno1\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\neno1\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n",
            );
            tree.link_rel(
                "sys/class/net/eno1/device",
                "sys/devices/pci0000:00/0000:00:1f.6",
            );
        },
        None,
    );
    let r = c.port("00_1f.6");
    let f = one(&r, Kind::Dom0Network);
    assert_eq!(f.severity, Severity::Warning);
    evidence(f, "proc/net/route", "eno1");
    evidence(f, "sys/class/net/eno1/device", "0000:00:1f.6");
    assert!(f.fix.contains("sys-net"));
}

/// Writes a USB keyboard below the xHCI at `dev_dir`.
pub fn usb_keyboard(tree: &HostTree, dev_dir: &str) {
    tree.write(
        format!("{dev_dir}/usb1/1-1/1-1:1.0/0003:046D:C31C.0001/input/input5/name"),
        "Logitech USB Keyboard\n",
    );
}

#[test]
fn usb_controller_with_a_keyboard_behind_it() {
    let c = Case::with(
        &PciTopology::laptop(),
        |tree| usb_keyboard(tree, "sys/devices/pci0000:00/0000:00:14.0"),
        None,
    );
    let r = c.port("00_14.0");
    let f = one(&r, Kind::Dom0Input);
    assert!(f.message.contains("Logitech USB Keyboard"));
    evidence(f, "input/input5/name", "Logitech USB Keyboard");
    assert!(f.fix.contains("another controller"));
    // The other xHCI has none.
    let r = c.port("00_07.0-00_00.0-00_01.0-00_00.0");
    assert!(r.findings.iter().all(|f| f.kind != Kind::Dom0Input));
}

#[test]
fn already_on_the_stub() {
    let mut t = healthy();
    t.device("0000:02:00.0").driver("vfio-pci");
    let r = Case::new(&t).port("00_1c.0-00_00.0");
    let f = one(&r, Kind::OnStub);
    assert_eq!(f.severity, Severity::Info);
    evidence(f, "0000:02:00.0/driver", "vfio-pci");
}

#[test]
fn boot_vga_warns() {
    let r = Case::new(&PciTopology::laptop()).port("00_02.0");
    let f = one(&r, Kind::BootVga);
    assert_eq!(f.severity, Severity::Warning);
    evidence(f, "0000:00:02.0/boot_vga", "1");
    assert!(f.fix.contains("another display"));
}

#[test]
fn sriov_pf_with_vfs_enabled() {
    let mut c = Case::new(&PciTopology::workstation());
    c.flavour = HostFlavour::Kvm;
    let r = c.port("40_01.1-00_00.0");
    let f = one(&r, Kind::SriovVfsEnabled);
    assert_eq!(f.severity, Severity::Error);
    assert!(f.message.contains("EBUSY"));
    evidence(f, "0000:41:00.0/sriov_numvfs", "2");
    assert!(f.fix.contains("sriov_numvfs"));
}

#[test]
fn assignment_whose_device_is_gone_or_changed() {
    let mut c = Case::new(&healthy());
    c.assign("sys-net", "00_1c.0-00_00.0");
    c.assignments.push(AssignmentFacts {
        qube: "work".into(),
        port: Some(port("00_19.0")),
        identity: Some("0x8086:0x1234::p020000".parse().unwrap()),
        text: "dom0:00_19.0:0x8086:0x1234::p020000".into(),
        required: true,
        mode: "required".into(),
        ..AssignmentFacts::default()
    });
    let r = c.run(Scope::Qube("work".into()));
    let f = one(&r, Kind::NotPresent);
    assert_eq!(
        (f.severity, f.qube.as_deref()),
        (Severity::Error, Some("work"))
    );
    evidence(f, "port 00_19.0", "no such device");
    assert!(f.fix.contains("qvm-pci unassign work"));
    assert!(r.problems_found());

    c.assignments[0].identity = Some("0x8086:0x9999::p028000".parse().unwrap());
    let r = c.run(Scope::Qube("sys-net".into()));
    let f = one(&r, Kind::IdentityChanged);
    assert!(
        f.message
            .contains("expected 0x8086:0x9999::p028000, found 0x8086:0x2723::p028000")
    );
    evidence(f, "0000:02:00.0/device", "0x2723");

    c.assignments[0].identity = None;
    let r = c.run(Scope::Qube("sys-net".into()));
    let f = one(&r, Kind::NotPinned);
    assert_eq!(f.severity, Severity::Warning);
    assert!(
        f.fix
            .contains("qvm-pci assign --required sys-net dom0:00_1c.0-00_00.0")
    );
}

#[test]
fn qube_side_problems() {
    let mut c = Case::new(&healthy());
    {
        let a = c.assign("net2", "00_1c.0-00_00.0");
        a.pvh = true;
        a.maxmem = 4000;
        a.permissive = true;
        a.problems = vec!["option 'permissive' has value 'maybe'".into()];
    }
    c.holders.push((addr("0000:02:00.0"), "sys-net".into()));
    let r = c.run(Scope::Qube("net2".into()));
    let f = one(&r, Kind::Pvh);
    assert!(f.fix.contains("qvm-prefs net2 virt_mode hvm"));
    evidence(f, "qubes.xml", "virt_mode pvh");
    let f = one(&r, Kind::MemoryBalancing);
    assert_eq!(f.severity, Severity::Warning);
    assert!(f.fix.contains("qvm-prefs net2 maxmem 0"));
    let f = one(&r, Kind::HeldByRunningQube);
    assert!(f.message.contains("running qube sys-net"));
    assert!(f.fix.contains("qvm-shutdown --wait sys-net"));
    evidence(f, "runtime state", "sys-net");
    let f = one(&r, Kind::PermissiveOnKvm);
    assert_eq!(f.severity, Severity::Error);
    let f = one(&r, Kind::BadAssignment);
    assert!(f.message.contains("'maybe'"));
    // Most severe first.
    let sev: Vec<Severity> = r.findings.iter().map(|f| f.severity).collect();
    let mut sorted = sev.clone();
    sorted.sort();
    assert_eq!(sev, sorted);
    // A loaded mode other than required is never attached.
    c.assignments[0] = AssignmentFacts {
        required: false,
        mode: "auto-attach".into(),
        ..c.assignments[0].clone()
    };
    c.assignments[0].problems.clear();
    let r = c.run(Scope::Qube("net2".into()));
    let f = one(&r, Kind::BadAssignment);
    assert_eq!(f.severity, Severity::Warning);
    assert!(f.message.contains("auto-attach"));
}

#[test]
fn this_machine_reads_without_error() {
    let root = HostRoot::real();
    let inv = scan(&root, &ScanOptions::default());
    let facts = gather(&root, &inv, None);
    let r = diagnose(&DoctorInput {
        inventory: &inv,
        facts: &facts,
        flavour: inv.flavour,
        assignments: &[],
        holders: &[],
        scope: &Scope::All,
    });
    if !facts.xen_dom0 && !facts.iommu.active() {
        assert_eq!(r.findings[0].kind, Kind::NoIommu);
    }
}
