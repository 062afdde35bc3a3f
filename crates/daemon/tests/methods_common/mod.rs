//! In-process harness for the method conformance tests: a fixture host
//! (the spec's two devices behind a Xen dom0), a registry loaded from a
//! `qubes.xml` with fixed uuids, the sim backend in a temp dir, and raw
//! request bytes in, raw reply bytes out.
#![allow(
    dead_code,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use qpci_api::{Event, RawRequest, Reply};
use qpci_core::hypervisor::SimHypervisor;
use qpci_core::registry::Registry;
use qpci_fixture::HostTree;
use qpci_fixture::pci::PciTopology;
use qpci_host::{HostFlavour, HostRoot, Inventory, PciIds, ScanOptions, scan};
use qpcid::dispatch::checks::prepare;
use qpcid::dispatch::{Ctx, HostSource, Outcome, Table};

/// The pci.ids entries the fixture's devices need.
pub const PCI_IDS: &[u8] = b"8086  Intel Corporation\n\t2725  Wi-Fi 6 AX210/AX211/AX411 160MHz\n\t9a14  11th Gen Core Processor Host Bridge/DRAM Registers\n\ta0b8  Tiger Lake-LP PCI Express Root Port #5\n\ta0ed  Tiger Lake-LP USB 3.2 Gen 2x1 xHCI Host Controller\n\nC 02  Network controller\n\t80  Network controller\nC 06  Bridge\n\t00  Host bridge\n\t04  PCI bridge\n\t\t00  Normal decode\nC 0c  Serial bus controller\n\t03  USB controller\n\t\t30  XHCI\n";

/// A Xen dom0 with a host bridge, the xHCI `00_14.0`, the root port
/// `00_1c.0` and behind it the Wi-Fi `00_1c.0-00_00.0` at `0000:aa:00.0`.
pub fn topology() -> PciTopology {
    let mut t = PciTopology::spec_host();
    t.xen_dom0();
    t
}

/// dom0, the template fedora-40, sys-net (network) and work, with fixed
/// uuids; `default_netvm` sys-net, a default kernel.
pub const QUBES_XML: &str = r#"<?xml version='1.0' encoding='UTF-8'?>
<qubes>
  <labels>
    <label id="label-1" color="0xcc0000">red</label>
    <label id="label-2" color="0xf57900">orange</label>
    <label id="label-3" color="0xedd400">yellow</label>
    <label id="label-4" color="0x73d216">green</label>
    <label id="label-5" color="0x555555">gray</label>
    <label id="label-6" color="0x3465a4">blue</label>
    <label id="label-7" color="0x75507b">purple</label>
    <label id="label-8" color="0x000000">black</label>
  </labels>
  <pools/>
  <properties>
    <property name="default_kernel">6.6.48-1.fc37</property>
    <property name="default_netvm">sys-net</property>
    <property name="default_template">fedora-40</property>
  </properties>
  <domains>
    <domain id="domain-0" class="AdminVM">
      <properties>
        <property name="label" ref="label-8"/>
      </properties>
      <features/>
      <tags/>
    </domain>
    <domain id="domain-1" class="TemplateVM">
      <properties>
        <property name="qid">1</property>
        <property name="name">fedora-40</property>
        <property name="uuid">33333333-3333-3333-3333-333333333333</property>
        <property name="label" ref="label-8"/>
      </properties>
      <features/>
      <tags/>
    </domain>
    <domain id="domain-2" class="AppVM">
      <properties>
        <property name="qid">2</property>
        <property name="name">sys-net</property>
        <property name="uuid">11111111-1111-1111-1111-111111111111</property>
        <property name="label" ref="label-1"/>
        <property name="template">fedora-40</property>
        <property name="provides_network">True</property>
        <property name="netvm"></property>
      </properties>
      <features/>
      <tags/>
    </domain>
    <domain id="domain-3" class="AppVM">
      <properties>
        <property name="qid">3</property>
        <property name="name">work</property>
        <property name="uuid">22222222-2222-2222-2222-222222222222</property>
        <property name="label" ref="label-6"/>
        <property name="template">fedora-40</property>
      </properties>
      <features/>
      <tags/>
    </domain>
  </domains>
</qubes>
"#;

/// Scans the fixture tree on every request (always fresh).
pub struct FixtureHost {
    root: PathBuf,
    ids: PciIds,
}

impl HostSource for FixtureHost {
    fn inventory(&mut self, _fresh: bool) -> Arc<Inventory> {
        Arc::new(scan(
            &HostRoot::new(&self.root),
            &ScanOptions {
                names: Some(&self.ids),
            },
        ))
    }
}

/// One daemon state, driven in process.
pub struct Fixture {
    pub tree: HostTree,
    pub state: tempfile::TempDir,
    pub registry: Registry,
    pub hv: SimHypervisor,
    pub host: FixtureHost,
    pub table: Table,
    pub flavour: HostFlavour,
    /// Compute-only: the methods harness never writes to its tree.
    pub writer: qpcid::host_writer::HostWriter,
    /// The last call's outcome (`None` after an error).
    pub last: Option<Outcome>,
}

impl Fixture {
    /// The spec-like host and qubes.
    pub fn new() -> Self {
        Self::with(topology(), QUBES_XML)
    }

    /// A fixture from a topology and a `qubes.xml` text.
    pub fn with(topology: PciTopology, xml: &str) -> Self {
        let tree = topology.build();
        let mut host = FixtureHost {
            root: tree.root().to_path_buf(),
            ids: PciIds::parse(PCI_IDS),
        };
        let inv = host.inventory(true);
        let doc = qpci_store::QubesXml::parse(xml, Path::new("qubes.xml")).unwrap();
        let (registry, _warnings) = Registry::from_records(doc, &inv).unwrap();
        let state = tempfile::tempdir().unwrap();
        let hv = SimHypervisor::open(state.path()).unwrap();
        let writer = qpcid::host_writer::HostWriter::compute_only(HostRoot::new(tree.root()), None);
        Self {
            tree,
            state,
            registry,
            hv,
            host,
            table: Table::standard(),
            flavour: HostFlavour::Xen,
            writer,
            last: None,
        }
    }

    /// Request bytes in, reply bytes out (empty for a framing error: the
    /// server closes the connection without a reply).
    pub fn call(&mut self, raw: &[u8]) -> Vec<u8> {
        self.last = None;
        let Ok(request) = RawRequest::decode(raw) else {
            return Vec::new();
        };
        let (call, handler) = match prepare(&self.table, &self.registry, request) {
            Ok(x) => x,
            Err(e) => return Reply::exception(&e.class, e.message).encode(),
        };
        let mut ctx = Ctx {
            registry: &mut self.registry,
            hypervisor: &mut self.hv,
            host: &mut self.host,
            flavour: self.flavour,
            writer: &self.writer,
        };
        match handler(&mut ctx, &call) {
            Ok(outcome) => {
                let reply = Reply::Ok(outcome.data.clone()).encode();
                self.last = Some(outcome);
                reply
            }
            Err(e) => Reply::exception(&e.class, e.message).encode(),
        }
    }

    /// Calls and asserts the reply, byte for byte.
    #[track_caller]
    pub fn expect(&mut self, request: &[u8], reply: &[u8]) {
        let got = self.call(request);
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(reply),
            "request {:?}",
            String::from_utf8_lossy(request)
        );
    }

    /// Calls and asserts a `0\0` reply; returns its data.
    #[track_caller]
    pub fn ok(&mut self, request: &[u8]) -> Vec<u8> {
        let got = self.call(request);
        assert!(
            got.starts_with(b"0\0"),
            "request {:?} got {:?}",
            String::from_utf8_lossy(request),
            String::from_utf8_lossy(&got)
        );
        got[2..].to_vec()
    }

    /// The xHCI controller (00_14.0) assigned as required to both work and
    /// sys-net, sys-net work's netvm, and work started: work holds the
    /// device that sys-net's start then wants.
    pub fn start_work_holding_the_xhci(&mut self) {
        for q in ["work", "sys-net"] {
            self.ok(format!(
                "admin.vm.device.pci.Assign+dom0+00_14.0+0x8086+0xa0ed++p0c0330 dom0 name {q}\0mode='required'"
            )
            .as_bytes());
        }
        self.ok(b"admin.vm.property.Set+netvm dom0 name work\0");
        self.ok(b"admin.vm.Start+ dom0 name work\0");
    }

    /// The last call's events.
    pub fn events(&self) -> Vec<Event> {
        self.last
            .as_ref()
            .map(|o| o.events.clone())
            .unwrap_or_default()
    }

    /// The last call changed persistent state.
    pub fn changed(&self) -> bool {
        self.last.as_ref().is_some_and(|o| o.changed)
    }

    /// The registry as `qubes.xml` text (to check that a refusal changed nothing).
    pub fn snapshot(&self) -> String {
        self.registry.to_records().to_xml()
    }
}
