//! `qvm-pci list` on fixture hosts (spec/qvm-tools.md §2.5).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::ffi::OsString;

use common::{Host, outcome};
use qpci_cli::{Io, Tool};
use qpci_fixture::pci::PciTopology;

const LAPTOP: &str = "\
dom0:00_00.0                          PCI_Bridge: Intel Corporation unknown pci device                                
dom0:00_02.0                          Display: Intel Corporation TigerLake-LP GT2 [Iris Xe Graphics]                  
dom0:00_07.0                          PCI_Bridge: Intel Corporation unknown pci device                                
dom0:00_07.0-00_00.0                  PCI_Bridge: Intel Corporation unknown pci device                                
dom0:00_07.0-00_00.0-00_01.0          PCI_Bridge: Intel Corporation unknown pci device                                
dom0:00_07.0-00_00.0-00_01.0-00_00.0  PCI_USB: ASMedia Technology Inc. ASM2142/ASM3142 USB 3.1 Host Controller        
dom0:00_07.0-00_00.0-00_01.0-00_00.1  Audio: ASMedia Technology Inc. unknown pci device                               
dom0:00_0e.0                          Storage: Intel Corporation unknown pci device                                   
dom0:00_14.0                          PCI_USB: Intel Corporation Tiger Lake-LP USB 3.2 Gen 2x1 xHCI Host Controller   
dom0:00_14.2                          Memory: Intel Corporation Tiger Lake-LP Shared SRAM                             
dom0:00_1c.0                          PCI_Bridge: Intel Corporation unknown pci device                                
dom0:00_1c.0-00_00.0                  Network: Intel Corporation Wi-Fi 6 AX200                                        
dom0:00_1d.0                          PCI_Bridge: Intel Corporation unknown pci device                                
dom0:00_1d.0-00_00.0                  Storage: Samsung Electronics Co Ltd NVMe SSD Controller SM981/PM981/PM983       
dom0:00_1f.0                          PCI_Bridge: Intel Corporation Tiger Lake-LP LPC Controller                      
dom0:00_1f.3                          Audio: Intel Corporation Tiger Lake-LP Smart Sound Technology Audio Controller  
dom0:00_1f.4                          PCI_Serial_Bus: Intel Corporation unknown pci device                            
dom0:00_1f.5                          PCI_Serial_Bus: Intel Corporation unknown pci device                            
dom0:00_1f.6                          Network: Intel Corporation Ethernet Connection (13) I219-V                      
dom0:10000_e0_1d.0                    PCI_Bridge: Intel Corporation unknown pci device                                
dom0:10000_e0_1d.0-00_00.0            Storage: Samsung Electronics Co Ltd unknown pci device                          
";

#[test]
fn laptop_listing_is_qubes_format() {
    let host = Host::laptop();
    assert_eq!(host.stdout(&[]), LAPTOP);
}

#[test]
fn no_subcommand_aliases_and_qvm_device_agree() {
    let host = Host::laptop();
    for args in [
        &["list"][..],
        &["ls"],
        &["l"],
        &["list", "-s"],
        &["list", "--assignments"],
        &["list", "dom0"],
        &["list", "d*"],
    ] {
        assert_eq!(host.stdout(args), LAPTOP, "{args:?}");
    }
    let (out, err, code) = outcome(&mut host.qvm_device(&["pci", "list"]));
    assert_eq!((out.as_str(), err.as_str(), code), (LAPTOP, "", 0));
}

#[test]
fn columns_are_padded_to_the_widest_cell_plus_two_spaces() {
    let host = Host::laptop();
    let text = host.stdout(&["list", "--with-sbdf"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 21);
    let ident_width = lines
        .iter()
        .map(|l| l.split("  ").next().unwrap().len())
        .max()
        .unwrap();
    for line in &lines {
        // SBDF column starts right after the widest ident and two spaces.
        let sbdf = &line[ident_width + 2..];
        assert!(
            sbdf.as_bytes()[4] == b':' || sbdf.as_bytes()[5] == b':',
            "{line}"
        );
        // The empty USED BY column leaves the description padded plus two spaces.
        assert!(line.ends_with("  "), "{line:?}");
    }
    let lengths: Vec<usize> = lines.iter().map(|l| l.len()).collect();
    assert!(
        lengths.windows(2).all(|w| w[0] == w[1]),
        "all rows padded alike: {lengths:?}"
    );
    assert!(text.contains("dom0:10000_e0_1d.0-00_00.0            10000:e1:00.0  Storage: "));
}

#[test]
fn rows_are_sorted_as_strings() {
    let host = Host::laptop();
    let text = host.stdout(&[]);
    let mut sorted: Vec<&str> = text.lines().collect();
    sorted.sort();
    assert_eq!(sorted, text.lines().collect::<Vec<_>>());
}

#[test]
fn details_add_qpci_columns() {
    let host = Host::laptop();
    let text = host.stdout(&["list", "--details"]);
    let row = |ident: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{ident} ")))
            .unwrap()
            .to_owned()
    };
    let xhci = row("dom0:00_14.0");
    assert!(
        xhci.contains("  xhci_hcd  ") && xhci.contains("  3  ") && xhci.contains("  pm  "),
        "{xhci}"
    );
    let asm = row("dom0:00_07.0-00_00.0-00_01.0-00_00.0");
    assert!(asm.contains("bus-domain(21:01.0)"), "{asm}");
    assert!(
        row("dom0:00_00.0")
            .ends_with("host bridge (class 0600): dom0 needs it to reach every device")
    );
    assert!(
        row("dom0:00_14.2").contains("  -  "),
        "no driver shows as -"
    );
    // The plain table stays exactly Qubes'.
    assert_eq!(host.stdout(&["list"]), LAPTOP);
}

#[test]
fn json_is_one_object_with_devices_and_warnings() {
    let host = Host::laptop();
    let v: serde_json::Value = serde_json::from_str(&host.stdout(&["list", "--json"])).unwrap();
    assert!(v.is_object());
    assert!(v["warnings"].is_array());
    assert_eq!(v["flavour"], "kvm");
    assert_eq!(v["iommu_groups"], true);
    let devices = v["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 21);
    let xhci = devices
        .iter()
        .find(|d| d["sbdf"] == "0000:00:14.0")
        .unwrap();
    assert_eq!(xhci["backend"], "dom0");
    assert_eq!(xhci["port_id"], "00_14.0");
    assert_eq!(xhci["device_id"], "0x8086:0xa0ed::p0c0330");
    assert_eq!(xhci["vendor_id"], "0x8086");
    assert_eq!(xhci["product_id"], "0xa0ed");
    assert_eq!(xhci["subsystem_vendor_id"], "0x17aa");
    assert_eq!(xhci["class"], "0x0c0330");
    assert_eq!(xhci["revision"], "0x20");
    assert_eq!(xhci["names"]["prog_if"], "XHCI");
    assert_eq!(
        xhci["description"],
        "PCI_USB: Intel Corporation Tiger Lake-LP USB 3.2 Gen 2x1 xHCI Host Controller"
    );
    assert_eq!(xhci["driver"], "xhci_hcd");
    assert_eq!(xhci["iommu_group"], 3);
    assert_eq!(
        xhci["iommu_group_peers"],
        serde_json::json!(["0000:00:14.2"])
    );
    assert_eq!(xhci["reset"]["function_level"], true);
    assert_eq!(xhci["reset_domain"]["kind"], "alone");
    assert_eq!(xhci["critical"], serde_json::Value::Null);
    assert_eq!(xhci["used_by"], serde_json::json!([]));
    let bridge = devices
        .iter()
        .find(|d| d["sbdf"] == "0000:00:00.0")
        .unwrap();
    assert_eq!(bridge["critical"]["tag"], "host-bridge");
    let asm = devices
        .iter()
        .find(|d| d["sbdf"] == "0000:22:00.0")
        .unwrap();
    assert_eq!(asm["reset_domain"]["kind"], "bus");
    assert_eq!(asm["reset_domain"]["bridge"], "0000:21:01.0");
    // It reads back into the API types.
    let report: qpci_api::InventoryReport = serde_json::from_value(v).unwrap();
    assert_eq!(report.devices.len(), 21);
}

#[test]
fn all_excludes_dom0_so_nothing_is_listed() {
    let host = Host::laptop();
    assert_eq!(host.stdout(&["list", "--all"]), "");
    assert_eq!(host.stdout(&["list", "--all", "--exclude", "sys-net"]), "");
}

fn run_in_process(host: &Host, args: &[&str], tty: bool) -> String {
    let mut argv: Vec<OsString> = vec!["qvm-pci".into()];
    argv.extend(args.iter().map(OsString::from));
    let mut backend = qpci_cli::HostBackend::new(
        qpci_host::HostRoot::new(host.tree.root()),
        qpci_cli::NamesSource::File(host.pci_ids.clone()),
    );
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut io = Io {
        out: &mut out,
        err: &mut err,
        stdout_is_tty: tty,
    };
    qpci_cli::run(Tool::Pci, &argv, &mut backend, &mut io).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn header_only_on_a_terminal_and_part_of_the_widths() {
    let host = Host::laptop();
    let tty = run_in_process(&host, &["list"], true);
    let first = tty.lines().next().unwrap();
    assert_eq!(
        first,
        "BACKEND:DEVID                         DESCRIPTION                                                                     USED BY"
    );
    // The header is wider nowhere, so the rows are the piped ones.
    let rows: Vec<&str> = tty.lines().skip(1).collect();
    assert_eq!(rows.join("\n") + "\n", LAPTOP);
    let sbdf = run_in_process(&host, &["list", "--with-sbdf"], true);
    assert!(sbdf.starts_with("BACKEND:DEVID                         SBDF           DESCRIPTION  "));
    let piped = run_in_process(&host, &["list"], false);
    assert_eq!(piped, LAPTOP);
}

#[test]
fn empty_host_prints_nothing_or_the_header_alone() {
    let host = Host::new(&PciTopology::new());
    assert_eq!(host.stdout(&[]), "");
    assert_eq!(
        run_in_process(&host, &["list"], true),
        "BACKEND:DEVID  DESCRIPTION  USED BY\n"
    );
}
