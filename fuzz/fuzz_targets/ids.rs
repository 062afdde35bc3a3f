//! Fuzz target `ids`: see `qpci_fuzzcheck::ids`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qpci_fuzzcheck::ids::check(data));
