//! A [`DomainSpec`] from what a start decided: the qube's effective values
//! ([`Qube`]), the devices of its [`StartPlan`], and the few facts the
//! registry holds beyond them ([`SpecExtras`]).

use qpci_host::HostFlavour;

use super::{DomainSpec, DomainUuid, HostdevSpec, KernelBoot};
use crate::policy::StartPlan;
use crate::registry::{Qube, VirtMode};

/// Where Qubes keeps VM kernels: `<dir>/<version>/vmlinuz` and `initramfs`.
pub const VM_KERNELS_DIR: &str = "/var/lib/qubes/vm-kernels";

/// Qubes' kernel command line before `kernelopts` (its `xen.xml` template).
pub const COMMON_KERNELOPTS: &str = "root=/dev/mapper/dmroot ro nomodeset console=hvc0 rd_NO_PLYMOUTH rd.plymouth.enable=0 plymouth.enable=0";

/// Facts a domain needs that the policy snapshot does not carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecExtras {
    /// The qube's uuid, `None` to let libvirt pick one.
    pub uuid: Option<DomainUuid>,
    /// The qube's effective `kernel` (a version under [`VM_KERNELS_DIR`]);
    /// empty boots the qube's own kernel (HVM) or nothing (PV/PVH: refused
    /// by the renderer, as Qubes cannot boot it either).
    pub kernel: String,
    /// The qube's effective `kernelopts`.
    pub kernelopts: String,
    /// Feature `memory-hotplug` is on.
    pub memory_hotplug: bool,
    /// Feature `pci-e820-host` (default on; an empty value turns it off).
    pub e820_host: bool,
    /// dom0's feature `suspend-s0ix` is on.
    pub dom0_s0ix: bool,
    /// An assigned device is a display controller and the feature
    /// `no-nomodeset` is unset: `nomodeset` is dropped from the common
    /// options (spec/admin-api.md §5.4).
    pub drop_nomodeset: bool,
}

impl Default for SpecExtras {
    fn default() -> Self {
        Self {
            uuid: None,
            kernel: String::new(),
            kernelopts: String::new(),
            memory_hotplug: false,
            e820_host: true,
            dom0_s0ix: false,
            drop_nomodeset: false,
        }
    }
}

/// The kernel boot of a qube with kernel `version` (empty: none).
fn kernel_boot(extras: &SpecExtras) -> Option<KernelBoot> {
    if extras.kernel.is_empty() {
        return None;
    }
    let dir = format!("{VM_KERNELS_DIR}/{}", extras.kernel);
    let common = if extras.drop_nomodeset {
        COMMON_KERNELOPTS.replace(" nomodeset", "")
    } else {
        COMMON_KERNELOPTS.to_owned()
    };
    let cmdline = if extras.kernelopts.is_empty() {
        common
    } else {
        format!("{common} {}", extras.kernelopts)
    };
    Some(KernelBoot {
        kernel: format!("{dir}/vmlinuz"),
        initrd: Some(format!("{dir}/initramfs")),
        cmdline: Some(cmdline),
    })
}

/// The domain a start of `qube` with `plan` defines: effective memory,
/// vCPUs and virt mode from the snapshot, one hostdev per planned device
/// with its options, Qubes' "has PCI" from every assignment of any mode.
pub fn spec_from_plan(
    qube: &Qube,
    plan: &StartPlan,
    flavour: HostFlavour,
    extras: &SpecExtras,
) -> DomainSpec {
    let mut spec = DomainSpec::new(qube.name.clone(), flavour);
    spec.uuid = extras.uuid;
    spec.virt_mode = qube.virt_mode;
    spec.memory_mib = plan.memory;
    spec.maxmem_mib = plan.maxmem;
    spec.use_memory_hotplug = extras.memory_hotplug;
    spec.vcpus = qube.vcpus;
    spec.kernel = kernel_boot(extras);
    spec.has_pci = !qube.pci.is_empty();
    spec.hostdevs = plan
        .devices
        .iter()
        .map(|d| HostdevSpec::new(d.address, &d.options))
        .collect();
    spec.e820_host = extras.e820_host;
    spec.pm_filtering_off = extras.dom0_s0ix;
    spec
}

/// `true` when a PV/PVH qube would have nothing to boot.
pub fn needs_kernel(mode: VirtMode, flavour: HostFlavour, extras: &SpecExtras) -> bool {
    flavour == HostFlavour::Xen && mode != VirtMode::Hvm && extras.kernel.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::libvirt::render_domain;
    use crate::policy::{PlannedDevice, StubDriver};
    use crate::registry::{PciAssignment, PortSpec, QubeClass};
    use qpci_types::{AssignOptions, ClassCode, DeviceIdentity, QubeName};

    fn qube(mode: VirtMode) -> Qube {
        Qube {
            qid: 3,
            name: "sys-usb".parse().unwrap(),
            class: QubeClass::AppVM,
            virt_mode: mode,
            virt_mode_explicit: false,
            memory: 400,
            maxmem: 0,
            vcpus: 2,
            pci: vec![PciAssignment::required(
                QubeName::dom0(),
                PortSpec::Path("00_14.0".parse().unwrap()),
                None,
                AssignOptions::default(),
            )],
        }
    }

    fn plan(q: &Qube) -> StartPlan {
        StartPlan {
            qube: q.name.clone(),
            stub_driver: StubDriver::Pciback,
            virt_mode: q.virt_mode.name(),
            memory: q.memory,
            maxmem: q.maxmem,
            memory_balancing: false,
            devices: vec![PlannedDevice {
                address: "0000:00:14.0".parse().unwrap(),
                path: Some("00_14.0".parse().unwrap()),
                identity: DeviceIdentity::pci(0x8086, 0xa0ed, ClassCode::new(0x0c, 0x03, 0x30)),
                options: AssignOptions {
                    no_strict_reset: true,
                    permissive: false,
                },
                assignment: "dom0:00_14.0:*".into(),
                stub_driver: StubDriver::Pciback,
                current_driver: Some("xhci_hcd".into()),
                bind: vec![],
            }],
            warnings: vec![],
        }
    }

    #[test]
    fn hvm_with_a_device_renders_hostdev_and_e820() {
        let q = qube(VirtMode::Hvm);
        let extras = SpecExtras {
            uuid: Some("5b0c3d6e-9a57-4d64-8f63-1d4c0c2d0e11".parse().unwrap()),
            kernel: "6.6.48-1.fc37".into(),
            kernelopts: "swiotlb=2048".into(),
            ..SpecExtras::default()
        };
        let spec = spec_from_plan(&q, &plan(&q), HostFlavour::Xen, &extras);
        assert!(spec.has_pci);
        assert_eq!(spec.hostdevs.len(), 1);
        assert!(spec.hostdevs[0].no_strict_reset);
        let xml = render_domain(&spec).unwrap();
        assert!(xml.contains("e820_host"), "{xml}");
        assert!(xml.contains("nostrictreset=\"yes\""), "{xml}");
        assert!(
            xml.contains("/var/lib/qubes/vm-kernels/6.6.48-1.fc37/vmlinuz"),
            "{xml}"
        );
        assert!(xml.contains("plymouth.enable=0 swiotlb=2048"), "{xml}");
    }

    #[test]
    fn display_devices_drop_nomodeset() {
        let extras = SpecExtras {
            kernel: "6.6".into(),
            drop_nomodeset: true,
            ..SpecExtras::default()
        };
        let boot = kernel_boot(&extras).unwrap();
        assert!(!boot.cmdline.unwrap().contains("nomodeset"));
        assert!(kernel_boot(&SpecExtras::default()).is_none());
    }

    #[test]
    fn pvh_without_kernel_is_refused_by_the_renderer() {
        let mut q = qube(VirtMode::Pvh);
        q.pci.clear();
        let mut p = plan(&q);
        p.devices.clear();
        let extras = SpecExtras::default();
        assert!(needs_kernel(q.virt_mode, HostFlavour::Xen, &extras));
        let spec = spec_from_plan(&q, &p, HostFlavour::Xen, &extras);
        assert!(render_domain(&spec).is_err());
    }
}
