//! Fuzz target `scan`: see `qpci_fuzzcheck::scan`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qpci_fuzzcheck::scan::check(data));
