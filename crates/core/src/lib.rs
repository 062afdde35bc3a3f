//! qpci domain: qube registry, PCI assignment policy, start/stop orchestration, hypervisor backends.
