//! qpci's real-kernel test suite (DESIGN.md "Testing layers" item 5).
//!
//! `tests/vm/run` boots Debian's kernel under QEMU with a busybox initramfs
//! that carries this crate's binary. Inside the guest, `qpci-vmtest guest`
//! runs the checks against the guest's real sysfs and prints one
//! [`report::ResultLine`] per check and a closing summary on the serial
//! console; on the host, `qpci-vmtest verify LOG` reads that log back with
//! [`report::check_log`] and fails unless every expected check passed.
#![deny(missing_docs)]

pub mod report;
