//! Fuzz target `kv`: see `qpci_fuzzcheck::kv`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| qpci_fuzzcheck::kv::check(data));
