//! The live checks before a bind (DESIGN.md M6, M7, M10): identity,
//! endpoint, not critical, not held elsewhere, strict reset, and IOMMU
//! group viability for vfio-pci.

use std::collections::BTreeSet;

use qpci_types::PciAddress;

use super::super::error::StubError;
use super::{BindDevice, BindPlan, Engine, Guards, Stub, is_stub_driver};
use crate::{Inventory, PciDevice, ResetDomain};

impl Engine<'_> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn check_device(
        &self,
        plan: &BindPlan,
        want: &BindDevice,
        dev: &PciDevice,
        inv: &Inventory,
        in_plan: &BTreeSet<PciAddress>,
        guards: &Guards,
        warnings: &mut Vec<String>,
    ) -> Result<(), StubError> {
        let a = want.address;
        if let Some(expected) = &want.identity
            && dev.identity() != *expected
        {
            return Err(StubError::IdentityChanged {
                device: a,
                expected: expected.to_string(),
                found: dev.identity().to_string(),
            });
        }
        if let Some(reason) = &dev.critical {
            return Err(StubError::Critical {
                device: a,
                reason: reason.to_string(),
            });
        }
        match dev.header_type {
            Some(0) => {}
            Some(t) => {
                return Err(StubError::NotEndpoint {
                    device: a,
                    header_type: t,
                });
            }
            None if dev.is_bridge() => {
                return Err(StubError::NotEndpoint {
                    device: a,
                    header_type: 1,
                });
            }
            None => {}
        }
        if let Some(q) = guards.holders.get(&a)
            && plan.qube.as_deref() != Some(q.as_str())
        {
            return Err(StubError::Held {
                device: a,
                qube: q.clone(),
            });
        }
        if want.permissive && plan.stub == Stub::VfioPci {
            return Err(StubError::PermissiveUnsupported { device: a });
        }
        match &dev.reset_domain {
            ResetDomain::Alone => {}
            ResetDomain::NoReset if want.no_strict_reset => warnings.push(format!(
                "{a}: no reset method; passed through anyway (no-strict-reset): its state may leak between qubes"
            )),
            ResetDomain::NoReset => return Err(StubError::NoReset { device: a }),
            ResetDomain::Bus { bridge, members } => {
                let missing: Vec<PciAddress> =
                    members.iter().filter(|m| !in_plan.contains(m)).copied().collect();
                if missing.is_empty() {
                } else if want.no_strict_reset {
                    warnings.push(format!(
                        "{a}: only a bus reset of {bridge} resets it, and not all of its bus goes to this qube (no-strict-reset)"
                    ));
                } else {
                    return Err(StubError::ResetDomainIncomplete { device: a, bridge: *bridge, missing });
                }
            }
        }
        if dev.boot_vga {
            warnings.push(format!(
                "{a}: the boot VGA device (dom0's console) goes to a qube"
            ));
        }
        if plan.stub == Stub::VfioPci {
            self.check_group(a, dev, inv, in_plan)?;
        }
        Ok(())
    }

    /// Viability: every other member is in the plan, unbound, on a stub,
    /// or a bridge on `pcieport`.
    fn check_group(
        &self,
        a: PciAddress,
        dev: &PciDevice,
        inv: &Inventory,
        in_plan: &BTreeSet<PciAddress>,
    ) -> Result<(), StubError> {
        let Some(group) = dev.iommu_group else {
            let noiommu = std::fs::read_to_string(
                self.root
                    .join("sys/module/vfio/parameters/enable_unsafe_noiommu_mode"),
            )
            .is_ok_and(|v| v.trim() == "Y");
            return if noiommu {
                Ok(())
            } else {
                Err(StubError::NoIommuGroup { device: a })
            };
        };
        for peer in &dev.iommu_group_peers {
            if in_plan.contains(peer) {
                continue;
            }
            let Some(p) = inv.device(peer) else { continue };
            let ok = match p.driver.as_deref() {
                None => true,
                Some(d) if is_stub_driver(d) => true,
                Some("pcieport") => p.is_bridge(),
                Some(_) => false,
            };
            if !ok {
                return Err(StubError::GroupNotViable {
                    device: a,
                    group,
                    peer: *peer,
                    driver: p.driver.clone().unwrap_or_default(),
                });
            }
        }
        Ok(())
    }
}
