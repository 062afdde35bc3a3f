//! The libvirt backend against libvirt's `test:///default` driver (cargo
//! feature `libvirt`; needs libvirt-dev and pkg-config to build, no daemon).
//!
//! `test:///default` is shared by every connection of this process while
//! one is open, and always runs a domain named `test`: each test uses its
//! own qube names, and never assumes the driver is empty.
#![cfg(feature = "libvirt")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod libvirt_common;
mod policy_common;

use libvirt_common::*;
use policy_common::*;
use qpci_core::hypervisor::{
    DomainLifetime, Hypervisor, HypervisorError, LIBVIRT_RUNTIME_FILE, LibvirtConfig,
    LibvirtHypervisor,
};
use qpci_core::libvirt::{SpecExtras, render_domain, spec_from_plan};
use qpci_core::orchestrate::{self, OrchestrateError, RenderError, StartOutcome};
use qpci_core::policy::{DeviceKey, StartPlan};
use qpci_core::registry::{PciAssignment, PortSpec, PowerState, Qube};
use qpci_host::{HostFlavour, Inventory};
use qpci_types::{PciAddress, QubeName};

const NIC: &str = "0x8086:0x1533::p020000";
const I2C: &str = "0x8086:0xa0e8::p0c8000";

/// The real renderer with a uuid.
fn renderer_uuid<'a>(
    qube: &'a Qube,
    uuid: &str,
) -> impl Fn(&StartPlan) -> Result<String, RenderError> + 'a {
    let uuid = uuid.parse().unwrap();
    move |plan| {
        let extras = SpecExtras {
            uuid: Some(uuid),
            ..SpecExtras::default()
        };
        let spec = spec_from_plan(qube, plan, HostFlavour::Xen, &extras);
        render_domain(&spec).map_err(|e| Box::new(e) as RenderError)
    }
}

fn defined(name: &str) -> bool {
    raw().lookup_domain_by_name(name).is_ok()
}

fn active(name: &str) -> bool {
    raw()
        .lookup_domain_by_name(name)
        .is_ok_and(|d| d.is_active().unwrap())
}

fn hex(node: roxmltree::Node<'_, '_>, attr: &str) -> u32 {
    u32::from_str_radix(node.attribute(attr).unwrap().trim_start_matches("0x"), 16).unwrap()
}

/// `(address, managed, writeFiltering)` of every hostdev in `xml`.
fn hostdevs(xml: &str) -> Vec<(PciAddress, String, Option<String>)> {
    let doc = roxmltree::Document::parse(xml).unwrap();
    doc.descendants()
        .filter(|n| n.has_tag_name("hostdev"))
        .map(|h| {
            let source = h.children().find(|n| n.has_tag_name("source")).unwrap();
            let a = source
                .children()
                .find(|n| n.has_tag_name("address"))
                .unwrap();
            let address = PciAddress::new(
                hex(a, "domain"),
                u8::try_from(hex(a, "bus")).unwrap(),
                u8::try_from(hex(a, "slot")).unwrap(),
                u8::try_from(hex(a, "function")).unwrap(),
            )
            .unwrap();
            (
                address,
                h.attribute("managed").unwrap_or("").to_owned(),
                source.attribute("writeFiltering").map(str::to_owned),
            )
        })
        .collect()
}

/// Starts `q`, checks what libvirt holds, shuts it down, checks nothing
/// is left.
fn round_trip(flavour: HostFlavour, q: &Qube, expected: &[(&str, bool)]) {
    let dir = tempfile::tempdir().unwrap();
    let inv = host(flavour);
    let mut hv = open(dir.path(), &inv);
    let out = orchestrate::start(&mut hv, q, &inv, flavour, renderer(q, flavour)).unwrap();
    let StartOutcome::Started(plan) = out else {
        panic!("not started")
    };
    assert_eq!(plan.devices.len(), expected.len());
    assert_eq!(hv.state(&q.name), PowerState::Running);
    assert!(active(q.name.as_str()));

    let xml = hv.domain_xml(&q.name).unwrap().unwrap();
    let want: Vec<(PciAddress, String, Option<String>)> = expected
        .iter()
        .map(|(a, permissive)| {
            (
                addr(a),
                "no".to_owned(),
                permissive.then(|| "no".to_owned()),
            )
        })
        .collect();
    assert_eq!(hostdevs(&xml), want, "{xml}");
    if flavour == HostFlavour::Kvm && !expected.is_empty() {
        assert!(xml.contains("<driver name='vfio'/>"), "{xml}");
    }
    // What libvirt returned is kept, and the runtime file says it runs.
    let kept = std::fs::read_to_string(hv.xml_path(&q.name)).unwrap();
    assert_eq!(hostdevs(&kept), want);
    let file = std::fs::read_to_string(dir.path().join(LIBVIRT_RUNTIME_FILE)).unwrap();
    assert!(file.contains(&format!("\"{}\"", q.name)), "{file}");
    assert_eq!(hv.attached(&q.name), plan.attached());

    let stop = orchestrate::shutdown(&mut hv, q, false).unwrap();
    assert_eq!(stop.left_on_stub.len(), expected.len());
    assert_eq!(hv.state(&q.name), PowerState::Halted);
    assert!(!defined(q.name.as_str()), "undefined at halt");
    let reopened = open(dir.path(), &inv);
    assert_eq!(reopened.state(&q.name), PowerState::Halted);
}

#[test]
fn xen_qubes_with_zero_one_and_three_devices() {
    let _serial = serial();
    round_trip(HostFlavour::Xen, &qube("lv-zero", vec![]), &[]);
    round_trip(
        HostFlavour::Xen,
        &qube("lv-one", vec![asg("00_14.0", USB, &["permissive=true"])]),
        &[("0000:00:14.0", true)],
    );
    round_trip(
        HostFlavour::Xen,
        &qube(
            "lv-three",
            vec![
                asg("00_14.0", USB, &["no-strict-reset=true"]),
                asg("00_19.0", NIC, &["permissive=yes"]),
                asg("00_15.0", I2C, &[]),
            ],
        ),
        &[
            ("0000:00:14.0", false),
            ("0000:00:19.0", true),
            ("0000:00:15.0", false),
        ],
    );
}

#[test]
fn kvm_qubes_with_zero_one_and_three_devices() {
    let _serial = serial();
    round_trip(HostFlavour::Kvm, &qube("lv-kvm-zero", vec![]), &[]);
    round_trip(
        HostFlavour::Kvm,
        &qube("lv-kvm-one", vec![asg("00_19.0", NIC, &[])]),
        &[("0000:00:19.0", false)],
    );
    round_trip(
        HostFlavour::Kvm,
        &qube(
            "lv-kvm-three",
            vec![
                asg("00_19.0", NIC, &[]),
                asg("00_1b.0", NIC, &[]),
                asg("00_15.0", I2C, &[]),
            ],
        ),
        &[
            ("0000:00:19.0", false),
            ("0000:00:1b.0", false),
            ("0000:00:15.0", false),
        ],
    );
}

#[test]
fn kill_destroys_and_a_persistent_lifetime_keeps_the_definition() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let inv = host(HostFlavour::Xen);
    let mut config = LibvirtConfig::new(URI, dir.path());
    config.lifetime = DomainLifetime::Persistent;
    let (mut hv, _) = LibvirtHypervisor::open(config, &inv).unwrap();
    let q = qube("lv-kill", vec![asg("00_14.0", USB, &[])]);
    let render = renderer_uuid(&q, "0b5b0a1e-1111-4222-8333-444455556666");
    for _ in 0..2 {
        // The second start redefines the inactive domain (same uuid).
        orchestrate::start(&mut hv, &q, &inv, HostFlavour::Xen, &render).unwrap();
        assert!(active("lv-kill"));
        let stop = orchestrate::kill(&mut hv, &q).unwrap();
        assert_eq!(stop.left_on_stub.len(), 1);
        assert!(defined("lv-kill") && !active("lv-kill"));
    }
    raw()
        .lookup_domain_by_name("lv-kill")
        .unwrap()
        .undefine()
        .unwrap();
}

/// The start failed: an error naming the qube, the device and libvirt's
/// message; the qube is not running; libvirt holds no domain of that name
/// (unless `keeps` says one was there before).
fn assert_clean_failure(hv: &LibvirtHypervisor, e: &OrchestrateError, q: &QubeName, keeps: bool) {
    let text = e.wire_text();
    assert!(
        text.starts_with("Start failed: libvirt (test:///default) could not"),
        "{text}"
    );
    assert!(text.contains(q.as_str()), "{text}");
    assert!(text.contains("0000:00:14.0"), "{text}");
    assert!(!text.trim_end().ends_with(':'), "{text}");
    assert_eq!(hv.state(q), PowerState::Halted);
    assert!(!hv.runtime().qubes.contains_key(q));
    assert_eq!(defined(q.as_str()), keeps, "{text}");
    assert!(!active(q.as_str()) || keeps, "{text}");
}

#[test]
fn bad_xml_defines_nothing() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let inv = host(HostFlavour::Xen);
    let mut hv = open(dir.path(), &inv);
    let q = qube("lv-bad", vec![asg("00_14.0", USB, &[])]);
    for xml in [
        "<domain type='xen'><name>lv-bad</name",
        "<domain type='xen'><name>lv-bad</name></domain>",
        "",
    ] {
        let e = orchestrate::start(&mut hv, &q, &inv, HostFlavour::Xen, |_| Ok(xml.to_owned()))
            .unwrap_err();
        assert_clean_failure(&hv, &e, &q.name, false);
        assert!(
            e.wire_text().contains("could not define"),
            "{}",
            e.wire_text()
        );
    }
}

#[test]
fn a_name_or_uuid_taken_by_another_domain_is_left_alone() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let inv = host(HostFlavour::Xen);
    let mut hv = open(dir.path(), &inv);
    // An inactive domain of the same name with another uuid.
    let other = "<domain type='xen'><name>lv-dup</name><uuid>11111111-2222-3333-4444-555555555555</uuid><memory>4096</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>";
    let conn = raw();
    conn.define_domain_xml(other).unwrap();
    let mut q = qube("lv-dup", vec![asg("00_14.0", USB, &[])]);
    let render = renderer_uuid(&q, "66666666-7777-4888-9999-aaaaaaaaaaaa");
    let e = orchestrate::start(&mut hv, &q, &inv, HostFlavour::Xen, render).unwrap_err();
    assert_clean_failure(&hv, &e, &q.name, true);
    let text = e.wire_text();
    assert!(text.contains("already exists"), "{text}");
    assert!(text.contains("qpcid leaves it alone"), "{text}");
    let kept = conn.lookup_domain_by_name("lv-dup").unwrap();
    assert_eq!(
        kept.uuid_string().unwrap(),
        "11111111-2222-3333-4444-555555555555"
    );
    kept.undefine().unwrap();

    // The uuid of the running `test` domain, under another name.
    let test_uuid = conn
        .lookup_domain_by_name("test")
        .unwrap()
        .uuid_string()
        .unwrap();
    q.name = "lv-uuid".parse().unwrap();
    let render = renderer_uuid(&q, &test_uuid);
    let e = orchestrate::start(&mut hv, &q, &inv, HostFlavour::Xen, render).unwrap_err();
    assert_clean_failure(&hv, &e, &q.name, false);
    assert!(active("test"), "the other domain still runs");
}

#[test]
fn a_domain_libvirt_already_runs_is_not_touched() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let inv = host(HostFlavour::Xen);
    let mut hv = open(dir.path(), &inv);
    // Started behind the backend's back, after it reconciled.
    let conn = raw();
    let xml = "<domain type='xen'><name>lv-behind</name><memory>4096</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>";
    let dom = conn.define_domain_xml(xml).unwrap();
    dom.create().unwrap();
    let q = qube("lv-behind", vec![asg("00_14.0", USB, &[])]);
    let e = start_xen(&mut hv, &q, &inv).unwrap_err();
    assert_clean_failure(&hv, &e, &q.name, true);
    assert!(
        e.wire_text()
            .contains("already runs a domain named lv-behind")
    );
    assert!(active("lv-behind"));
    dom.destroy().unwrap();
    dom.undefine().unwrap();
}

#[test]
fn a_device_libvirt_drops_undoes_the_start() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let inv = host(HostFlavour::Xen);
    let mut hv = open(dir.path(), &inv);
    let q = qube("lv-dropped", vec![asg("00_14.0", USB, &[])]);
    // A valid domain without the planned hostdev: defined and started, then
    // the read-back finds the device missing and everything is undone.
    let without = qube("lv-dropped", vec![]);
    let render = |plan: &StartPlan| {
        let mut bare = plan.clone();
        bare.devices.clear();
        renderer(&without, HostFlavour::Xen)(&bare)
    };
    let e = orchestrate::start(&mut hv, &q, &inv, HostFlavour::Xen, render).unwrap_err();
    assert_clean_failure(&hv, &e, &q.name, false);
    let text = e.wire_text();
    assert!(text.contains("does not hold 0000:00:14.0"), "{text}");
    assert!(text.contains("undefined again"), "{text}");
}

#[test]
fn a_held_device_or_a_running_qube_is_refused_before_libvirt() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let inv = host(HostFlavour::Xen);
    let mut hv = open(dir.path(), &inv);
    let a = qube("lv-holder", vec![asg("00_14.0", USB, &[])]);
    let b = qube("lv-second", vec![asg("00_14.0", USB, &[])]);
    start_xen(&mut hv, &a, &inv).unwrap();
    let plan = match orchestrate::plan(&hv, &a, &inv, HostFlavour::Xen).unwrap() {
        qpci_core::policy::StartDecision::AlreadyRunning => None,
        qpci_core::policy::StartDecision::Start(p) => Some(p),
    };
    assert!(plan.is_none());
    let e = start_xen(&mut hv, &b, &inv).unwrap_err();
    assert!(
        e.wire_text().contains("in use by lv-holder"),
        "{}",
        e.wire_text()
    );
    assert!(!defined("lv-second"));
    orchestrate::kill(&mut hv, &a).unwrap();
}

#[test]
fn detach_after_unassign_hot_unplugs_or_says_why_not() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let inv = host(HostFlavour::Xen);
    let mut config = LibvirtConfig::new(URI, dir.path());
    config.unplug_wait = std::time::Duration::from_millis(300);
    let (mut hv, _) = LibvirtHypervisor::open(config, &inv).unwrap();
    let mut q = qube(
        "lv-detach",
        vec![asg("00_14.0", USB, &[]), asg("00_19.0", NIC, &[])],
    );
    start_xen(&mut hv, &q, &inv).unwrap();
    let key = DeviceKey {
        backend: QubeName::dom0(),
        port: PortSpec::Path("00_14.0".parse().unwrap()),
        identity: Some(ident(USB)),
    };
    // Still assigned: refused by policy, nothing reaches libvirt.
    let e = orchestrate::detach(&mut hv, &q, &key).unwrap_err();
    assert!(matches!(e, OrchestrateError::Refused(_)), "{e}");
    // Unassigned: the live hot-unplug.
    q.pci.retain(|a: &PciAssignment| a.port != key.port);
    let usb = addr("0000:00:14.0");
    let nic = addr("0000:00:19.0");
    match orchestrate::detach(&mut hv, &q, &key) {
        Ok(plan) => {
            assert_eq!(plan.device.address, usb);
            let xml = hv.domain_xml(&q.name).unwrap().unwrap();
            let left: Vec<PciAddress> = hostdevs(&xml).into_iter().map(|h| h.0).collect();
            assert_eq!(left, vec![nic], "{xml}");
            assert_eq!(hv.attached(&q.name).len(), 1);
        }
        Err(e) => {
            // libvirt 9.0's test driver has no device hot-unplug at all.
            let text = e.wire_text();
            assert!(
                text.contains(
                    "could not hot-unplug a device from lv-detach with device 0000:00:14.0"
                ),
                "{text}"
            );
            assert!(text.contains("not supported"), "{text}");
            let xml = hv.domain_xml(&q.name).unwrap().unwrap();
            let left: Vec<PciAddress> = hostdevs(&xml).into_iter().map(|h| h.0).collect();
            assert_eq!(left, vec![usb, nic], "unchanged: {xml}");
            assert_eq!(hv.attached(&q.name).len(), 2, "runtime unchanged");
        }
    }
    // A device not attached: the backend's own check.
    let e = hv.detach(&q.name, &addr("0000:00:15.0")).unwrap_err();
    assert!(matches!(e, HypervisorError::NotAttached { .. }), "{e}");
    orchestrate::shutdown(&mut hv, &q, true).unwrap();
    assert!(!defined("lv-detach"));
}

#[test]
fn reconciliation_adopts_running_domains_and_halts_unknown_ones() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let inv = host(HostFlavour::Xen);
    let q = qube("lv-recorded", vec![asg("00_14.0", USB, &["permissive=on"])]);
    let gone = qube("lv-vanished", vec![asg("00_19.0", NIC, &[])]);
    // Held open so the driver's domains outlive the first backend.
    let conn = raw();
    {
        let mut hv = open(dir.path(), &inv);
        for q in [&q, &gone] {
            orchestrate::start(
                &mut hv,
                q,
                &inv,
                HostFlavour::Xen,
                renderer(q, HostFlavour::Xen),
            )
            .unwrap();
        }
    }
    // Behind qpcid's back: one recorded qube vanishes, another domain
    // (holding a device) starts.
    let vanished = conn.lookup_domain_by_name("lv-vanished").unwrap();
    vanished.destroy().unwrap();
    vanished.undefine().unwrap();
    let stranger = "<domain type='xen'><name>lv-adopted</name><memory>4096</memory><vcpu>1</vcpu><os><type>hvm</type></os><devices><hostdev mode='subsystem' type='pci' managed='no'><source><address domain='0x0000' bus='0x00' slot='0x1b' function='0x0'/></source></hostdev></devices></domain>";
    let dom = conn.define_domain_xml(stranger).unwrap();
    dom.create().unwrap();

    let (hv, report) = LibvirtHypervisor::open(LibvirtConfig::new(URI, dir.path()), &inv).unwrap();
    assert_eq!(report.halted, vec![gone.name.clone()]);
    assert!(report.kept.contains(&q.name));
    assert!(report.adopted.contains(&name("lv-adopted")));
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("lv-vanished was recorded running, but libvirt")),
        "{:?}",
        report.warnings
    );
    assert_eq!(hv.state(&gone.name), PowerState::Halted);
    assert_eq!(hv.state(&q.name), PowerState::Running);
    // The recorded device keeps its options; the adopted one is named from
    // the inventory.
    assert!(hv.attached(&q.name)[0].options.permissive);
    assert_eq!(
        hv.attached(&name("lv-adopted")),
        vec![attached(&inv, "0000:00:1b.0")]
    );
    assert_eq!(
        hv.runtime().holder_of(&addr("0000:00:1b.0")),
        Some(&name("lv-adopted"))
    );
    drop(hv);
    for n in ["lv-recorded", "lv-adopted"] {
        let d = conn.lookup_domain_by_name(n).unwrap();
        d.destroy().unwrap();
        d.undefine().unwrap();
    }
}

#[test]
fn a_bad_uri_is_a_clear_error() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let e = LibvirtHypervisor::open(
        LibvirtConfig::new("nosuchdriver:///system", dir.path()),
        &Inventory::default(),
    )
    .unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with("cannot connect to libvirt at nosuchdriver:///system: "),
        "{text}"
    );
    assert!(text.len() > "cannot connect to libvirt at nosuchdriver:///system: ".len());
}
