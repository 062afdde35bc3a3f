//! `qvm-pci` against this machine's real `/sys` (read-only), cross-checked
//! with `lspci -D`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::{outcome, real_qvm_pci};

/// The SBDFs `lspci -D` shows, or `None` when lspci or PCI is unavailable.
fn lspci_addresses() -> Option<BTreeSet<String>> {
    if !std::path::Path::new("/sys/bus/pci/devices").is_dir() {
        eprintln!("no /sys/bus/pci/devices: skipped");
        return None;
    }
    let out = Command::new("lspci").arg("-D").output().ok()?;
    if !out.status.success() {
        eprintln!("lspci failed: skipped");
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    Some(
        text.lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_owned)
            .collect(),
    )
}

#[test]
fn list_matches_lspci_device_set() {
    let Some(expected) = lspci_addresses() else {
        return;
    };
    let (out, err, code) = outcome(&mut real_qvm_pci(&["list", "--with-sbdf"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        !out.starts_with("BACKEND:DEVID"),
        "piped output has no header"
    );
    let listed: BTreeSet<String> = out
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap().to_owned())
        .collect();
    assert_eq!(listed, expected);
    assert_eq!(out.lines().count(), expected.len());
    for line in out.lines() {
        assert!(line.starts_with("dom0:"), "{line}");
        let description = line
            .split("  ")
            .filter(|c| !c.is_empty())
            .nth(2)
            .unwrap_or("");
        assert!(
            description.contains(": "),
            "description is '<category>: <vendor> <product>': {line}"
        );
    }
    // The plain table lists the same rows in the same order.
    let (plain, _, _) = outcome(&mut real_qvm_pci(&[]));
    assert_eq!(plain.lines().count(), expected.len());
}

#[test]
fn json_and_info_agree_with_the_table() {
    let Some(expected) = lspci_addresses() else {
        return;
    };
    let (out, err, code) = outcome(&mut real_qvm_pci(&["list", "--json"]));
    assert_eq!(code, 0, "{err}");
    let report: qpci_api::InventoryReport = serde_json::from_str(&out).unwrap();
    let sbdfs: BTreeSet<String> = report.devices.iter().map(|d| d.sbdf.to_string()).collect();
    assert_eq!(sbdfs, expected);
    let first = report.devices.first().unwrap();
    let (info, err, code) = outcome(&mut real_qvm_pci(&["info", &first.ident()]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        info,
        format!(
            "{}\ndevice ID: {}\nsbdf: {}\n",
            first.description, first.device_id, first.sbdf
        )
    );
    let (details, _, code) = outcome(&mut real_qvm_pci(&["info", "--details", &first.ident()]));
    assert_eq!(code, 0);
    assert!(
        details.starts_with(&info) && details.contains("\nreset methods: "),
        "{details}"
    );
}
