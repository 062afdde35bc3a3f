//! Config-space parsing: header type and the capabilities that decide resets
//! (spec/linux-pci.md §1, §7).

use crate::ConfigFacts;

const HEADER_TYPE: usize = 0x0e;
const STATUS: usize = 0x06;
const STATUS_CAP_LIST: u8 = 0x10;
const CAP_PTR_TYPE01: usize = 0x34;
const CAP_PTR_CARDBUS: usize = 0x14;
const CAP_PM: u8 = 0x01;
const CAP_PCIE: u8 = 0x10;
const CAP_AF: u8 = 0x13;
/// The kernel gives up after this many capabilities, so a looping list ends.
const MAX_CAPS: usize = 48;

/// Parses what the scan needs from the first bytes of `config`; `None` when
/// fewer than 64 bytes (not even the header) could be read.
pub(crate) fn parse(config: &[u8]) -> Option<ConfigFacts> {
    if config.len() < 64 {
        return None;
    }
    let header_raw = byte(config, HEADER_TYPE)?;
    let header_type = header_raw & 0x7f;
    let mut facts = ConfigFacts {
        len: config.len(),
        vendor: word(config, 0x00),
        device: word(config, 0x02),
        revision: byte(config, 0x08),
        class: (u32::from(byte(config, 0x0b)?) << 16)
            | (u32::from(byte(config, 0x0a)?) << 8)
            | u32::from(byte(config, 0x09)?),
        header_type,
        multifunction: header_raw & 0x80 != 0,
        secondary_bus: None,
        subordinate_bus: None,
        pcie_port_type: None,
        flr: false,
        af_flr: false,
        pm_no_soft_reset: None,
        capabilities_read: true,
    };
    if header_type == 1 || header_type == 2 {
        facts.secondary_bus = byte(config, 0x19);
        facts.subordinate_bus = byte(config, 0x1a);
    }
    if byte(config, STATUS).is_some_and(|s| s & STATUS_CAP_LIST == 0) {
        return Some(facts);
    }
    let ptr_at = if header_type == 2 {
        CAP_PTR_CARDBUS
    } else {
        CAP_PTR_TYPE01
    };
    // The low two bits of every pointer are reserved.
    let mut at = usize::from(byte(config, ptr_at).unwrap_or(0) & 0xfc);
    for _ in 0..MAX_CAPS {
        if at < 0x40 {
            break;
        }
        let (Some(id), Some(next)) = (byte(config, at), byte(config, at + 1)) else {
            facts.capabilities_read = false;
            break;
        };
        match id {
            CAP_PCIE => {
                let flags = word(config, at + 2);
                let devcap = dword(config, at + 4);
                if flags.is_none() || devcap.is_none() {
                    facts.capabilities_read = false;
                }
                facts.pcie_port_type = flags.map(|f| ((f >> 4) & 0x0f) as u8);
                facts.flr = devcap.is_some_and(|d| d & 0x1000_0000 != 0);
            }
            CAP_AF => match byte(config, at + 3) {
                Some(cap) => facts.af_flr = cap & 0x03 == 0x03,
                None => facts.capabilities_read = false,
            },
            CAP_PM => match word(config, at + 4) {
                Some(pmcsr) => facts.pm_no_soft_reset = Some(pmcsr & 0x0008 != 0),
                None => facts.capabilities_read = false,
            },
            _ => {}
        }
        at = usize::from(next & 0xfc);
    }
    Some(facts)
}

fn byte(c: &[u8], at: usize) -> Option<u8> {
    c.get(at).copied()
}

fn word(c: &[u8], at: usize) -> Option<u16> {
    let b = c.get(at..at + 2)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

fn dword(c: &[u8], at: usize) -> Option<u32> {
    let b = c.get(at..at + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(ht: u8) -> Vec<u8> {
        let mut c = vec![0u8; 256];
        c[0..4].copy_from_slice(&[0x86, 0x80, 0xed, 0xa0]);
        c[0x08] = 0x20;
        c[0x09..0x0c].copy_from_slice(&[0x30, 0x03, 0x0c]);
        c[0x0e] = ht;
        c
    }

    #[test]
    fn short_config_is_none() {
        assert!(parse(&[0u8; 63]).is_none());
    }

    #[test]
    fn header_fields() {
        let f = parse(&header(0x80)).unwrap();
        assert_eq!(
            (f.vendor, f.device, f.revision, f.class),
            (Some(0x8086), Some(0xa0ed), Some(0x20), 0x0c0330)
        );
        assert_eq!(f.header_type, 0);
        assert!(f.multifunction);
        assert_eq!(f.pcie_port_type, None);
    }

    #[test]
    fn bridge_buses() {
        let mut c = header(1);
        c[0x19] = 2;
        c[0x1a] = 5;
        let f = parse(&c).unwrap();
        assert_eq!((f.secondary_bus, f.subordinate_bus), (Some(2), Some(5)));
    }

    #[test]
    fn capabilities() {
        let mut c = header(0);
        c[0x06] = 0x10;
        c[0x34] = 0x40;
        c[0x40..0x42].copy_from_slice(&[0x01, 0x50]);
        c[0x44] = 0x00; // NoSoftRst clear
        c[0x50..0x52].copy_from_slice(&[0x10, 0x70]);
        c[0x52] = 0x92; // v2, port type 9
        c[0x57] = 0x10; // DevCap bit 28
        c[0x70..0x74].copy_from_slice(&[0x13, 0x00, 0x06, 0x03]);
        let f = parse(&c).unwrap();
        assert_eq!(f.pcie_port_type, Some(9));
        assert!(f.flr && f.af_flr);
        assert_eq!(f.pm_no_soft_reset, Some(false));
        assert!(f.capabilities_read);
    }

    #[test]
    fn looping_list_ends() {
        let mut c = header(0);
        c[0x06] = 0x10;
        c[0x34] = 0x40;
        c[0x40..0x42].copy_from_slice(&[0x05, 0x40]);
        assert!(parse(&c).is_some());
    }

    #[test]
    fn truncated_capabilities_are_flagged() {
        let mut c = header(0);
        c[0x06] = 0x10;
        c[0x34] = 0x80;
        c.truncate(64);
        let f = parse(&c).unwrap();
        assert!(!f.capabilities_read);
    }
}
