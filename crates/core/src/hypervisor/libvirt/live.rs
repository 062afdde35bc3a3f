//! Reading the domain XML libvirt reports: the PCI hostdevs it holds.
//!
//! The XML comes from libvirt (trusted to be well-formed, but read
//! defensively: anything unexpected is an error naming what, never a panic).

use qpci_types::PciAddress;

/// Each `<hostdev mode="subsystem" type="pci">` of the domain: its node.
fn pci_hostdevs<'a, 'i>(
    doc: &'a roxmltree::Document<'i>,
) -> impl Iterator<Item = roxmltree::Node<'a, 'i>> {
    doc.root_element()
        .children()
        .filter(|n| n.has_tag_name("devices"))
        .flat_map(|d| d.children())
        .filter(|n| n.has_tag_name("hostdev") && n.attribute("type") == Some("pci"))
}

/// A hex (`0x1a`) or decimal number attribute.
fn number(node: roxmltree::Node<'_, '_>, name: &str) -> Result<u32, String> {
    let text = node
        .attribute(name)
        .ok_or_else(|| format!("a hostdev address has no {name} attribute"))?;
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|_| format!("a hostdev address has {name}='{}'", text.escape_default()))
}

/// The host address of a hostdev (`<source><address .../></source>`).
fn source_address(hostdev: roxmltree::Node<'_, '_>) -> Result<PciAddress, String> {
    let address = hostdev
        .children()
        .filter(|n| n.has_tag_name("source"))
        .flat_map(|s| s.children())
        .find(|n| n.has_tag_name("address"))
        .ok_or("a PCI hostdev has no source address")?;
    let byte = |name: &str| -> Result<u8, String> {
        u8::try_from(number(address, name)?)
            .map_err(|_| format!("a hostdev address has an out-of-range {name}"))
    };
    PciAddress::new(
        number(address, "domain")?,
        byte("bus")?,
        byte("slot")?,
        byte("function")?,
    )
    .map_err(|e| format!("a hostdev address is invalid: {e}"))
}

fn parse(xml: &str) -> Result<roxmltree::Document<'_>, String> {
    roxmltree::Document::parse(xml).map_err(|e| format!("the domain XML does not parse: {e}"))
}

/// The host addresses of the domain's PCI hostdevs, in document order.
pub(super) fn hostdev_addresses(xml: &str) -> Result<Vec<PciAddress>, String> {
    let doc = parse(xml)?;
    pci_hostdevs(&doc).map(source_address).collect()
}

/// The `<hostdev>` element for `address`, as text cut from the domain XML
/// (what `virDomainDetachDeviceFlags` is given); `None` when the domain
/// does not hold it.
pub(super) fn hostdev_snippet(xml: &str, address: &PciAddress) -> Result<Option<String>, String> {
    let doc = parse(xml)?;
    for hostdev in pci_hostdevs(&doc) {
        if source_address(hostdev)? == *address {
            return Ok(xml.get(hostdev.range()).map(str::to_owned));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const XML: &str = r#"<domain type='xen' id='2'>
  <name>q1</name>
  <devices>
    <hostdev mode='subsystem' type='pci' managed='no'>
      <source writeFiltering='no'>
        <address domain='0x0000' bus='0x00' slot='0x14' function='0x0'/>
      </source>
      <alias name='hostdev0'/>
    </hostdev>
    <hostdev mode='subsystem' type='usb'>
      <source><vendor id='0x1234'/></source>
    </hostdev>
    <hostdev mode='subsystem' type='pci' managed='no'>
      <source>
        <address domain='0x10000' bus='0x03' slot='0x1f' function='0x7'/>
      </source>
    </hostdev>
  </devices>
</domain>"#;

    #[test]
    fn addresses_and_snippets() {
        let a: PciAddress = "0000:00:14.0".parse().unwrap();
        let b: PciAddress = "10000:03:1f.7".parse().unwrap();
        assert_eq!(hostdev_addresses(XML).unwrap(), vec![a, b]);
        let snippet = hostdev_snippet(XML, &a).unwrap().unwrap();
        assert!(snippet.starts_with("<hostdev mode='subsystem' type='pci'"));
        assert!(snippet.ends_with("</hostdev>"));
        assert!(snippet.contains("writeFiltering='no'"));
        assert!(!snippet.contains("0x03"));
        let c: PciAddress = "0000:00:15.0".parse().unwrap();
        assert_eq!(hostdev_snippet(XML, &c).unwrap(), None);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(hostdev_addresses("<domain").is_err());
        let bad = "<domain><devices><hostdev type='pci'><source><address domain='0' bus='0x100' slot='0' function='0'/></source></hostdev></devices></domain>";
        let e = hostdev_addresses(bad).unwrap_err();
        assert!(e.contains("bus"), "{e}");
        let none = "<domain><devices><hostdev type='pci'/></devices></domain>";
        assert!(hostdev_addresses(none).is_err());
        assert_eq!(hostdev_addresses("<domain/>").unwrap(), vec![]);
    }
}
