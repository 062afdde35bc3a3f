//! Handing devices to the passthrough stub driver and back (DESIGN.md M8,
//! M9; spec/linux-pci.md §2–§4, §6, §9).
//!
//! This module is the only code in qpci that writes to the host. Every
//! write goes through a [`SysfsWriter`]: the real one ([`RealWriter`])
//! refuses the real `/` unless the caller passes
//! [`WriteAccess::Production`]; tests and `qpcid --emulate-kernel` use the
//! fake kernel ([`EmulatedKernel`]) over a fixture tree, and
//! [`FaultyWriter`] fails a chosen write to test every rollback path.
//!
//! - [`engine`]: bind a plan of devices to `pciback` or `vfio-pci`, with
//!   live checks first and a rollback of the whole plan on any failure.
//! - [`giveback`]: the explicit, guarded return of one device to its host
//!   driver, found from `modalias` as `modprobe -R` does ([`modalias`]),
//!   loaded through a [`ModprobeRunner`].
//!
//! xen-pciback cannot load outside a Xen dom0, so its path is tested only
//! against fixture trees that model its files (`new_slot`, `remove_slot`,
//! `slots`, `permissive`) and its probe rule exactly.

pub mod emulate;
mod emulate_ids;
pub mod engine;
pub mod error;
pub mod giveback;
pub mod modalias;
pub mod runner;
pub mod sysfs_io;
pub mod tree;

pub use emulate::EmulatedKernel;
pub use engine::{
    BindDevice, BindPlan, BindReport, Engine, EngineOptions, Guards, Prepared, PreparedDevice,
    Snapshot, Step, Stub, is_stub_driver,
};
pub use error::{BindFailure, ModuleLoad, StubError};
pub use giveback::{GiveBackReport, GiveBackRequest};
pub use runner::{CommandRunner, FakeModprobe, ModprobeRunner, RunnerError};
pub use sysfs_io::{Fault, FaultyWriter, RealWriter, SysfsWriter, WriteAccess};

/// The Linux errnos the engine and the fake kernel name (x86-64 and
/// every other Linux architecture agree on these).
pub mod errno {
    /// Operation not permitted.
    pub const EPERM: i32 = 1;
    /// No such file.
    pub const ENOENT: i32 = 2;
    /// I/O error.
    pub const EIO: i32 = 5;
    /// Permission denied.
    pub const EACCES: i32 = 13;
    /// Busy.
    pub const EBUSY: i32 = 16;
    /// Exists.
    pub const EEXIST: i32 = 17;
    /// No such device.
    pub const ENODEV: i32 = 19;
    /// Is a directory.
    pub const EISDIR: i32 = 21;
    /// Invalid argument.
    pub const EINVAL: i32 = 22;
}
