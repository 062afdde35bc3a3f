//! Fuzz target `request`: see `qpci_fuzzcheck::request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qpci_fuzzcheck::request::check(data));
