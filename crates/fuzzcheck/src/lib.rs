//! The checks behind qpci's fuzz targets, shared by both forms of the
//! fuzzing harness so they exercise the same code:
//!
//! - the long form, `cargo fuzz` targets in the top-level `fuzz/` folder
//!   (nightly, libFuzzer; run by `scripts/fuzz`), hands each check raw bytes;
//! - the short form, this crate's proptest tests (stable, part of
//!   `cargo test --workspace`), hands them structured inputs built to reach
//!   deep (near-valid requests, mutated spec examples and `qubes.xml`,
//!   random sysfs trees) and replays every committed corpus file.
//!
//! A check returns normally for any input the code under test handles
//! correctly (accepted or refused) and panics when a property breaks: a
//! panic in the code under test, or a round trip that does not hold.
#![deny(missing_docs)]

pub mod bytes;
pub mod ids;
pub mod kv;
pub mod request;
pub mod scan;
pub mod seeds;
pub mod state;

/// One fuzz target: its name (the `fuzz/fuzz_targets/<name>.rs` file and the
/// `fuzz/corpus/<name>/` folder) and its check.
pub struct Target {
    /// The target's name.
    pub name: &'static str,
    /// The check, on raw fuzzer bytes.
    pub check: fn(&[u8]),
}

/// Every target, in the order `scripts/fuzz` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "request",
        check: request::check,
    },
    Target {
        name: "kv",
        check: kv::check,
    },
    Target {
        name: "ids",
        check: ids::check,
    },
    Target {
        name: "state",
        check: state::check,
    },
    Target {
        name: "scan",
        check: scan::check,
    },
];

/// Reports a broken property. Panicking is this crate's whole job (the
/// fuzzer and proptest catch it), hence the lint exception.
#[track_caller]
#[allow(clippy::panic)]
pub fn fail(message: &str) {
    panic!("{message}");
}

/// The inventory of the fixture laptop (`PciTopology::laptop()`), scanned
/// once per process: the host the state and identifier checks resolve port
/// ids against.
pub fn fixture_inventory() -> &'static qpci_host::Inventory {
    static INVENTORY: std::sync::OnceLock<qpci_host::Inventory> = std::sync::OnceLock::new();
    INVENTORY.get_or_init(|| {
        let tree = qpci_fixture::pci::PciTopology::laptop().build();
        qpci_host::scan(
            &qpci_host::HostRoot::new(tree.root()),
            &qpci_host::ScanOptions::default(),
        )
    })
}
