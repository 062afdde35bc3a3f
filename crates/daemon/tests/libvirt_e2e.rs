//! End to end on the libvirt backend (cargo feature `libvirt`): the real
//! CLI (`qvm-create`, `qvm-pci`, `qvm-start`, `qvm-shutdown`, built into
//! the same target folder) against a qpcid on `--backend libvirt
//! --libvirt-uri test:///default --emulate-kernel` over a fixture host
//! tree, for `--flavour xen` and `--flavour kvm`.
//!
//! A start moves the devices to the stub in the tree (pciback, vfio-pci)
//! and runs the domain in libvirt's test driver, which lives inside the
//! qpcid process: what libvirt returned is checked through the XML qpcid
//! keeps (`<state>/libvirt/<qube>.xml`, with the live domain's `id`) and
//! the power state through the socket. Shutdown destroys the domain and
//! leaves the devices on the stub; a libvirt failure is a clear error and
//! the qube stays halted.
#![cfg(feature = "libvirt")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use qpci_api::Reply;
use qpci_fixture::HostTree;
use qpci_fixture::daemon::Daemon;
use qpci_fixture::modules::Modules;
use qpci_fixture::pci::PciTopology;

const RELEASE: &str = "6.1.0-test-amd64";
const XHCI: &str = "0000:00:14.0";
const NIC: &str = "0000:00:1f.6";
const I2C: &str = "0000:00:15.0";

/// A CLI tool, built once per test process (the daemon crate cannot
/// depend on the CLI crate).
fn tool(name: &str) -> PathBuf {
    let dir = qpci_fixture::daemon::cli_tools();
    assert!(dir.is_some(), "building the CLI tools failed");
    let path = dir.unwrap_or_default().join(name);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// xHCI `00_14.0` (xhci_hcd), an e1000e NIC `00_1f.6` and an I2C
/// controller `00_15.0` (no driver), each with FLR and alone in its IOMMU
/// group on KVM; the desktop module set (stubs not loaded).
fn host(xen: bool) -> HostTree {
    let mut t = PciTopology::kvm_xhci(RELEASE);
    if xen {
        t.xen_dom0();
    }
    t.endpoint(I2C)
        .ids(0x8086, 0xa0e8)
        .class(0x0c8000)
        .flr()
        .iommu_group(5);
    t.endpoint(NIC)
        .ids(0x8086, 0x15bc)
        .class(0x020000)
        .flr()
        .driver("e1000e")
        .iommu_group(9);
    let tree = t.build();
    Modules::desktop(RELEASE).write_to(&tree);
    tree
}

/// A qpcid on the libvirt backend, its state folder and temp folder.
struct Qpcid {
    d: Daemon,
    state: PathBuf,
    _dir: tempfile::TempDir,
}

impl Qpcid {
    fn start(root: &Path, flavour: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (mut cmd, socket, state) = qpci_fixture::daemon::qpcid_command(
            Path::new(env!("CARGO_BIN_EXE_qpcid")),
            dir.path(),
            root,
            flavour,
        );
        cmd.args(["--backend", "libvirt", "--libvirt-uri", "test:///default"])
            .arg("--emulate-kernel");
        Self {
            d: Daemon::spawn(cmd, &socket).unwrap_or_else(|why| panic!("{why}")),
            state,
            _dir: dir,
        }
    }

    /// Runs a CLI tool against this daemon: (stdout, stderr, code).
    fn run(&self, bin: &str, args: &[&str]) -> (String, String, i32) {
        let out = Command::new(tool(bin))
            .env("QPCI_SOCKET", &self.d.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            out.status.code().unwrap_or(-1),
        )
    }

    #[track_caller]
    fn ok(&self, bin: &str, args: &[&str]) -> String {
        let (out, err, code) = self.run(bin, args);
        assert_eq!(
            code,
            0,
            "{bin} {args:?}: {err}\nqpcid log:\n{}",
            self.d.log_lines().join("\n")
        );
        out
    }

    fn power_state(&self, qube: &str) -> String {
        let req = format!("admin.vm.CurrentState dom0 name {qube}\0");
        match Reply::decode(&self.d.raw(req.as_bytes())).unwrap() {
            Reply::Ok(data) => {
                let text = String::from_utf8(data).unwrap();
                text.rsplit("power_state=").next().unwrap().to_owned()
            }
            other => panic!("CurrentState {qube}: {other:?}"),
        }
    }

    /// The XML libvirt returned at the start of `qube`.
    fn kept_xml(&self, qube: &str) -> String {
        fs::read_to_string(self.state.join(format!("libvirt/{qube}.xml"))).unwrap()
    }
}

fn driver(tree: &HostTree, a: &str) -> Option<String> {
    tree.pci_driver(a)
}

/// `(address, managed, writeFiltering)` of every hostdev.
fn hostdevs(xml: &str) -> Vec<(String, String, Option<String>)> {
    let doc = roxmltree::Document::parse(xml).unwrap();
    doc.descendants()
        .filter(|n| n.has_tag_name("hostdev"))
        .map(|h| {
            let source = h.children().find(|n| n.has_tag_name("source")).unwrap();
            let a = source
                .children()
                .find(|n| n.has_tag_name("address"))
                .unwrap();
            let num = |k: &str| {
                u32::from_str_radix(a.attribute(k).unwrap().trim_start_matches("0x"), 16).unwrap()
            };
            (
                format!(
                    "{:04x}:{:02x}:{:02x}.{:x}",
                    num("domain"),
                    num("bus"),
                    num("slot"),
                    num("function")
                ),
                h.attribute("managed").unwrap().to_owned(),
                source.attribute("writeFiltering").map(str::to_owned),
            )
        })
        .collect()
}

fn story(flavour: &str) {
    let xen = flavour == "xen";
    let stub = if xen { "pciback" } else { "vfio-pci" };
    let tree = host(xen);
    let d = Qpcid::start(tree.root(), flavour);
    assert!(
        d.d.log_has("libvirt backend connected"),
        "{:#?}",
        d.d.log_lines()
    );

    d.ok("qvm-create", &["-C", "TemplateVM", "-l", "black", "fedora"]);
    for q in ["sys-usb", "sys-net", "plain"] {
        d.ok("qvm-create", &["-l", "red", "-t", "fedora", q]);
    }
    let usb_options: &[&str] = if xen { &["-o", "permissive=true"] } else { &[] };
    let mut assign = vec!["assign", "-r"];
    assign.extend_from_slice(usb_options);
    assign.extend(["sys-usb", "dom0:00_14.0"]);
    d.ok("qvm-pci", &assign);
    d.ok("qvm-pci", &["assign", "-r", "sys-net", "dom0:00_1f.6"]);
    d.ok("qvm-pci", &["assign", "-r", "sys-net", "dom0:00_15.0"]);

    // A qube without devices runs in the test driver (hvm: a Xen pvh
    // qube needs a kernel, which the fixture has none of).
    d.ok("qvm-prefs", &["plain", "virt_mode", "hvm"]);
    assert_eq!(d.ok("qvm-start", &["plain"]), "");
    assert_eq!(d.power_state("plain"), "Running");
    assert!(hostdevs(&d.kept_xml("plain")).is_empty());

    // Devices move to the stub; the domain holds them, managed='no'.
    assert_eq!(d.ok("qvm-start", &["sys-usb"]), "");
    assert_eq!(driver(&tree, XHCI).as_deref(), Some(stub));
    assert_eq!(d.power_state("sys-usb"), "Running");
    let xml = d.kept_xml("sys-usb");
    assert!(xml.contains(" id='"), "a live domain: {xml}");
    assert_eq!(
        hostdevs(&xml),
        vec![(
            XHCI.to_owned(),
            "no".to_owned(),
            xen.then(|| "no".to_owned())
        )],
        "{xml}"
    );

    assert_eq!(d.ok("qvm-start", &["sys-net"]), "");
    assert_eq!(driver(&tree, NIC).as_deref(), Some(stub));
    assert_eq!(driver(&tree, I2C).as_deref(), Some(stub));
    let nets: Vec<String> = hostdevs(&d.kept_xml("sys-net"))
        .into_iter()
        .map(|h| h.0)
        .collect();
    assert_eq!(nets, vec![NIC.to_owned(), I2C.to_owned()]);

    // Shutdown destroys the domain; the devices stay on the stub.
    d.ok("qvm-shutdown", &["sys-usb"]);
    d.ok("qvm-shutdown", &["sys-net"]);
    d.ok("qvm-shutdown", &["plain"]);
    for q in ["sys-usb", "sys-net", "plain"] {
        assert_eq!(d.power_state(q), "Halted", "{q}");
    }
    for a in [XHCI, NIC, I2C] {
        assert_eq!(driver(&tree, a).as_deref(), Some(stub), "{a}");
    }

    // A second start of the same qube: redefined and running again.
    assert_eq!(d.ok("qvm-start", &["sys-usb"]), "");
    assert_eq!(d.power_state("sys-usb"), "Running");
    d.ok("qvm-shutdown", &["sys-usb"]);
    let runtime = fs::read_to_string(d.state.join("libvirt-runtime.json")).unwrap();
    assert!(!runtime.contains("sys-usb"), "{runtime}");
}

#[test]
fn xen_start_binds_pciback_runs_the_domain_and_shutdown_keeps_the_stub() {
    story("xen");
}

#[test]
fn kvm_start_binds_vfio_runs_the_domain_and_shutdown_keeps_the_stub() {
    story("kvm");
}

#[test]
fn permissive_on_kvm_is_refused_and_the_qube_stays_halted() {
    let tree = host(false);
    let d = Qpcid::start(tree.root(), "kvm");
    d.ok("qvm-create", &["-C", "TemplateVM", "-l", "black", "fedora"]);
    d.ok("qvm-create", &["-l", "red", "-t", "fedora", "sys-usb"]);
    d.ok(
        "qvm-pci",
        &[
            "assign",
            "-r",
            "-o",
            "permissive=true",
            "sys-usb",
            "dom0:00_14.0",
        ],
    );
    let (out, err, code) = d.run("qvm-start", &["sys-usb"]);
    assert_eq!((out.as_str(), code), ("", 1), "{err}");
    assert!(
        err.contains("permissive") && err.contains("KVM") && err.contains("sys-usb"),
        "{err}"
    );
    assert_eq!(d.power_state("sys-usb"), "Halted");
    assert!(!d.state.join("libvirt/sys-usb.xml").exists());
}

#[test]
fn an_unreachable_libvirt_stops_the_daemon_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let tree = host(false);
    let out = Command::new(env!("CARGO_BIN_EXE_qpcid"))
        .arg("--socket")
        .arg(dir.path().join("qubesd.sock"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--sysfs-root")
        .arg(tree.root())
        .args(["--flavour", "kvm", "--backend", "libvirt"])
        .args(["--libvirt-uri", "nosuchdriver:///system"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(
            "opening the libvirt backend: cannot connect to libvirt at nosuchdriver:///system: "
        ),
        "{err}"
    );
    assert!(!dir.path().join("qubesd.sock").exists());
}
