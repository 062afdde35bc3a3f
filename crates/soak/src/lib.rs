//! qpci-soak's shared parts: the daemon under test (fixture host, preloaded
//! state, one qpcid child spawned, waited for and SIGKILLed), used by
//! `qpci-crash-loop` and by the regression tests the crash loop found.

pub mod daemon;
