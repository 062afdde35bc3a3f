//! `qpci_host::scan` against the guest's own sysfs.

use anyhow::{Context, bail, ensure};
use qpci_host::{ResetDomain, ResetMethod};

use super::sysfs::{self, hex, link_name, list, read};
use super::{Suite, Victim};

/// Runs the scan checks.
pub fn run(suite: &mut Suite) {
    let inv = suite.scan();
    for d in &inv.devices {
        let methods: Vec<&str> = d.reset.methods.iter().map(|m| m.name()).collect();
        println!(
            "QPCI-INFO dev={} id={:04x}:{:04x} class={} driver={} group={} path={} reset=[{}] domain={:?}",
            d.address,
            d.vendor_id.unwrap_or(0),
            d.device_id.unwrap_or(0),
            d.class.map(|c| c.to_string()).unwrap_or_default(),
            d.driver.as_deref().unwrap_or("-"),
            d.iommu_group
                .map(|g| g.to_string())
                .unwrap_or_else(|| "-".into()),
            d.path.as_ref().map(ToString::to_string).unwrap_or_default(),
            methods.join(" "),
            d.reset_domain,
        );
    }

    suite.check("scan.count", |_| {
        let raw = list("/sys/bus/pci/devices")?;
        let got: Vec<String> = inv.devices.iter().map(|d| d.address.to_string()).collect();
        ensure!(got == raw, "scan listed {got:?}, sysfs has {raw:?}");
        // The guest's / is the initramfs: the root-device probe says so, and
        // that is the only warning expected.
        let (rootfs, other): (Vec<_>, Vec<_>) = inv
            .warnings
            .iter()
            .partition(|w| w.device.is_none() && w.message.contains("rootfs"));
        ensure!(other.is_empty(), "scan warnings: {other:?}");
        let noisy: Vec<String> = inv
            .devices
            .iter()
            .filter(|d| !d.warnings.is_empty())
            .map(|d| format!("{}: {:?}", d.address, d.warnings))
            .collect();
        ensure!(noisy.is_empty(), "device warnings: {noisy:?}");
        Ok(format!(
            "{} functions, root buses {:?}, {} expected rootfs warning(s), no others",
            got.len(),
            inv.root_buses,
            rootfs.len()
        ))
    });

    suite.check("scan.sysfs", |_| {
        let mut compared = 0;
        for d in &inv.devices {
            let dir = format!("/sys/bus/pci/devices/{}", d.address);
            let want = |f: &str| read(format!("{dir}/{f}")).as_deref().and_then(hex);
            ensure!(
                d.vendor_id.map(u32::from) == want("vendor"),
                "{}: vendor",
                d.address
            );
            ensure!(
                d.device_id.map(u32::from) == want("device"),
                "{}: device",
                d.address
            );
            ensure!(
                d.class.map(|c| c.to_string()) == read(format!("{dir}/class")),
                "{}: class {:?} vs {:?}",
                d.address,
                d.class.map(|c| c.to_string()),
                read(format!("{dir}/class"))
            );
            ensure!(
                d.driver == link_name(format!("{dir}/driver")),
                "{}: driver {:?}",
                d.address,
                d.driver
            );
            let group = link_name(format!("{dir}/iommu_group")).and_then(|g| g.parse().ok());
            ensure!(d.iommu_group == group, "{}: iommu group", d.address);
            let ov = read(format!("{dir}/driver_override")).filter(|s| s != "(null)");
            ensure!(d.driver_override == ov, "{}: driver_override", d.address);
            ensure!(
                d.modalias == read(format!("{dir}/modalias")),
                "{}: modalias",
                d.address
            );
            compared += 1;
        }
        Ok(format!(
            "{compared} functions: ids, class, driver, group, override, modalias agree with raw sysfs"
        ))
    });

    suite.check("scan.victims", |_| {
        let mut seen = Vec::new();
        for v in Victim::ALL {
            let d = v
                .find(&inv)
                .with_context(|| format!("{} not found", v.name()))?;
            ensure!(
                d.driver.as_deref() == Some(v.driver()),
                "{} {} bound to {:?}, expected {}",
                v.name(),
                d.address,
                d.driver,
                v.driver()
            );
            let on_root = d.parent_bridge.is_none();
            ensure!(
                on_root == (v == Victim::Vmxnet3),
                "{} {}: parent bridge {:?}",
                v.name(),
                d.address,
                d.parent_bridge
            );
            let path = d
                .path
                .as_ref()
                .with_context(|| format!("{} has no port id", d.address))?;
            seen.push(format!(
                "{} {} {} on {}",
                v.name(),
                d.address,
                path,
                v.driver()
            ));
        }
        Ok(seen.join("; "))
    });

    suite.check("scan.iommu", |_| {
        ensure!(inv.iommu_groups, "scan saw no IOMMU groups");
        let groups = list("/sys/kernel/iommu_groups")?;
        let mut detail = vec![format!("{} groups", groups.len())];
        for d in &inv.devices {
            let g = d
                .iommu_group
                .with_context(|| format!("{} has no IOMMU group", d.address))?;
            let members: Vec<String> = list(format!("/sys/kernel/iommu_groups/{g}/devices"))?
                .into_iter()
                .filter(|m| *m != d.address.to_string())
                .collect();
            let peers: Vec<String> = d
                .iommu_group_peers
                .iter()
                .map(ToString::to_string)
                .collect();
            ensure!(
                peers == members,
                "{} group {g}: scan peers {peers:?}, sysfs {members:?}",
                d.address
            );
        }
        for v in Victim::ALL {
            if let Some(d) = v.find(&inv) {
                detail.push(format!(
                    "{} group {} peers {:?}",
                    v.name(),
                    d.iommu_group.unwrap_or(u32::MAX),
                    d.iommu_group_peers
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                ));
            }
        }
        let rng = Victim::RngPair
            .find(&inv)
            .context("virtio-rng pair not found")?;
        ensure!(
            rng.iommu_group_peers.len() == 1
                && rng.iommu_group_peers.iter().all(|p| p.same_slot(&rng.address)),
            "the two-function virtio-rng {} should share its group with its sibling only, peers {:?}",
            rng.address,
            rng.iommu_group_peers
        );
        ensure!(
            std::path::Path::new("/dev/vfio/vfio").exists(),
            "/dev/vfio/vfio missing: vfio not loaded"
        );
        Ok(detail.join("; "))
    });

    suite.check("scan.reset", |_| {
        let mut detail = Vec::new();
        for d in &inv.devices {
            let raw = read(format!("/sys/bus/pci/devices/{}/reset_method", d.address));
            if let Some(raw) = raw {
                let kernel: Vec<ResetMethod> = raw
                    .split_whitespace()
                    .filter_map(ResetMethod::from_name)
                    .collect();
                ensure!(
                    d.reset.methods == kernel,
                    "{}: scan methods {:?}, kernel {raw:?}",
                    d.address,
                    d.reset.methods
                );
            }
        }
        let nvme = Victim::Nvme.find(&inv).context("nvme not found")?;
        ensure!(
            nvme.reset.methods.contains(&ResetMethod::Flr),
            "nvme {}: no flr in {:?}",
            nvme.address,
            nvme.reset.methods
        );
        ensure!(
            nvme.reset_domain == ResetDomain::Alone,
            "nvme domain {:?}",
            nvme.reset_domain
        );
        let vmx = Victim::Vmxnet3.find(&inv).context("vmxnet3 not found")?;
        if !vmx.reset.methods.is_empty() || vmx.reset_domain != ResetDomain::NoReset {
            bail!(
                "vmxnet3 {} on the root bus: methods {:?}, domain {:?}; expected no reset",
                vmx.address,
                vmx.reset.methods,
                vmx.reset_domain
            );
        }
        for v in Victim::ALL {
            if let Some(d) = v.find(&inv) {
                let raw = sysfs::read(format!("/sys/bus/pci/devices/{}/reset_method", d.address))
                    .unwrap_or_else(|| "(none)".into());
                detail.push(format!(
                    "{} reset_method={raw} domain={:?}",
                    v.name(),
                    d.reset_domain
                ));
            }
        }
        Ok(detail.join("; "))
    });
}
