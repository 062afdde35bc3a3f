//! Fuzz target `state`: see `qpci_fuzzcheck::state`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qpci_fuzzcheck::state::check(data));
