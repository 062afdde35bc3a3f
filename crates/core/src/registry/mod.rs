//! The qube registry: typed qubes built from `qubes.xml` records.

mod model;

pub use model::{
    AssignMode, AssignmentProblem, PciAssignment, PortSpec, PowerState, Qube, QubeClass, VirtMode,
};
