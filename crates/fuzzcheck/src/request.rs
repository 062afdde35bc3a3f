//! The request path: framing (`qpci_api::wire`), then everything qpcid does
//! with a framed request short of the socket: name resolution, the generic
//! checks, and the method handler with its argument and payload parsing,
//! on an in-process daemon state (a fixture host, the sim backend).
//!
//! Properties: nothing panics; a framed request encodes back to bytes that
//! frame the same; a reply frame re-encodes to one that reads the same; a
//! refused call leaves the registry as it was.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use qpci_api::{MAX_REQUEST, RawRequest, Reply};
use qpci_core::hypervisor::SimHypervisor;
use qpci_core::registry::Registry;
use qpci_fixture::HostTree;
use qpci_fixture::pci::PciTopology;
use qpci_host::{HostFlavour, HostRoot, Inventory, ScanOptions, scan};
use qpcid::dispatch::checks::prepare;
use qpcid::dispatch::{Ctx, HostSource, Table};
use qpcid::host_writer::HostWriter;

/// The qubes of the daemon state requests run against: dom0, fedora-40,
/// sys-net and work (with the xHCI `00_14.0` assigned), the uuids of
/// crates/daemon/tests/data/spec_examples.txt.
pub const QUBES_XML: &str = include_str!("../data/request-qubes.xml");

/// Frames `data`, checks the framing round trip, and runs the request
/// through the dispatcher; also reads `data` as a reply frame.
pub fn check(data: &[u8]) {
    check_reply(data);
    let Ok(request) = RawRequest::decode(data) else {
        return;
    };
    let encoded = request.encode();
    // `encode` always writes the `+`, so an input at the size limit
    // without one grows past it.
    if encoded.len() <= MAX_REQUEST {
        assert_eq!(
            RawRequest::decode(&encoded).as_ref(),
            Ok(&request),
            "re-encoded request {:?} frames differently",
            String::from_utf8_lossy(&encoded)
        );
    }
    DAEMON.with(|d| d.dispatch(request));
}

/// A reply frame the client reads encodes back to one it reads the same.
pub fn check_reply(data: &[u8]) {
    if let Ok(reply) = Reply::decode(data) {
        let again = Reply::decode(&reply.encode());
        assert_eq!(again.as_ref(), Ok(&reply), "reply {reply:?}");
    }
}

thread_local! {
    static DAEMON: Daemon = Daemon::new();
}

/// A host source that hands out one inventory (the fixture never changes).
struct FixedHost(Arc<Inventory>);

impl HostSource for FixedHost {
    fn inventory(&mut self, _fresh: bool) -> Arc<Inventory> {
        Arc::clone(&self.0)
    }
}

/// The daemon state each request starts from.
struct Daemon {
    tree: HostTree,
    inventory: Arc<Inventory>,
    registry: Registry,
    snapshot: String,
    table: Table,
}

/// A Xen dom0 with a host bridge, the xHCI `00_14.0`, the root port
/// `00_1c.0` and behind it the Wi-Fi `00_1c.0-00_00.0` (spec §3.7).
fn topology() -> PciTopology {
    let mut t = PciTopology::spec_host();
    t.xen_dom0();
    t
}

/// Where per-run scratch directories go: `TMPDIR` when set (scripts/fuzz
/// points it at a folder it removes afterwards), else memory when possible.
pub(crate) fn scratch_base() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if std::env::var_os("TMPDIR").is_none() && shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

impl Daemon {
    /// Builds the fixture; a failure here is a broken harness, not a finding.
    #[allow(clippy::expect_used)]
    fn new() -> Self {
        let tree = topology().build();
        let inventory = Arc::new(scan(&HostRoot::new(tree.root()), &ScanOptions::default()));
        let doc = qpci_store::QubesXml::parse(QUBES_XML, Path::new("qubes.xml"))
            .expect("fixture qubes.xml loads");
        let (registry, _) =
            Registry::from_records(doc, &inventory).expect("fixture registry loads");
        let snapshot = registry.to_records().to_xml();
        Self {
            tree,
            inventory,
            registry,
            snapshot,
            table: Table::standard(),
        }
    }

    fn dispatch(&self, request: RawRequest) {
        let mut registry = self.registry.clone();
        let (call, handler) = match prepare(&self.table, &registry, request) {
            Ok(x) => x,
            Err(e) => {
                let _ = Reply::exception(&e.class, e.message).encode();
                return;
            }
        };
        // A fresh sim backend per run: nothing runs, as in the fixture.
        let Ok(state) = tempfile::Builder::new()
            .prefix("qpci-fuzz-sim-")
            .tempdir_in(scratch_base())
        else {
            return;
        };
        let Ok(mut hv) = SimHypervisor::open(state.path()) else {
            return;
        };
        let writer = HostWriter::compute_only(HostRoot::new(self.tree.root()), None);
        let mut host = FixedHost(Arc::clone(&self.inventory));
        let mut ctx = Ctx {
            registry: &mut registry,
            hypervisor: &mut hv,
            host: &mut host,
            flavour: HostFlavour::Xen,
            writer: &writer,
        };
        let outcome = handler(&mut ctx, &call);
        drop(state);
        match outcome {
            Ok(outcome) => {
                let _ = Reply::Ok(outcome.data).encode();
            }
            Err(e) => {
                let _ = Reply::exception(&e.class, e.message.clone()).encode();
                assert_eq!(
                    registry.to_records().to_xml(),
                    self.snapshot,
                    "{} refused ({}: {}) but changed the registry",
                    call.method,
                    e.class,
                    e.message
                );
            }
        }
    }
}
