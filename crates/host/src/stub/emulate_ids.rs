//! Parsers of the fake kernel: dynamic ids (`new_id`/`remove_id`) and
//! pciback slot ids (`new_slot`/`remove_slot`/`permissive`, `slots`).

use std::fmt;
use std::fs;
use std::path::Path;

use qpci_types::PciAddress;

use super::errno::EINVAL;

const ANY: u32 = 0xffff_ffff;

/// A device's ids as dynamic-id matching sees them.
pub struct Ids {
    vendor: u32,
    device: u32,
    subvendor: u32,
    subdevice: u32,
    class: u32,
}

/// Reads `vendor`, `device`, `subsystem_*` and `class` of a device directory.
pub fn device_ids(dir: &Path) -> Option<Ids> {
    let hex = |f: &str| -> Option<u32> {
        let t = fs::read_to_string(dir.join(f)).ok()?;
        u32::from_str_radix(t.trim().trim_start_matches("0x"), 16).ok()
    };
    Some(Ids {
        vendor: hex("vendor")?,
        device: hex("device")?,
        subvendor: hex("subsystem_vendor").unwrap_or(0),
        subdevice: hex("subsystem_device").unwrap_or(0),
        class: hex("class")?,
    })
}

/// One dynamic id: `VVVV DDDD [SVVV SDDD CCCCCC MMMMMM [DATA]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DynId {
    vendor: u32,
    device: u32,
    subvendor: u32,
    subdevice: u32,
    class: u32,
    class_mask: u32,
}

fn hex_field(word: &str) -> Result<u32, i32> {
    let w = word.strip_prefix("0x").unwrap_or(word);
    u32::from_str_radix(w, 16).map_err(|_| EINVAL)
}

impl DynId {
    /// Parses a `new_id` (`with_data`: 7 fields at most) or `remove_id` line.
    pub fn parse(text: &str, with_data: bool) -> Result<Self, i32> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let max = if with_data { 7 } else { 6 };
        if words.len() < 2 {
            return Err(EINVAL);
        }
        let mut f = [0u32, 0, ANY, ANY, 0, 0];
        for (i, w) in words.iter().take(max.min(6)).enumerate() {
            if let Some(slot) = f.get_mut(i) {
                *slot = hex_field(w)?;
            }
        }
        if with_data && let Some(w) = words.get(6) {
            hex_field(w)?;
        }
        Ok(Self {
            vendor: f[0],
            device: f[1],
            subvendor: f[2],
            subdevice: f[3],
            class: f[4],
            class_mask: f[5],
        })
    }

    /// `true` when this id matches the device.
    pub fn matches(&self, ids: &Ids) -> bool {
        let field = |want: u32, have: u32| want == ANY || want == have;
        field(self.vendor, ids.vendor)
            && field(self.device, ids.device)
            && field(self.subvendor, ids.subvendor)
            && field(self.subdevice, ids.subdevice)
            && (self.class ^ ids.class) & self.class_mask == 0
    }

    /// `true` when `other` names the same id (what `remove_id` compares).
    pub fn same_match(&self, other: &Self) -> bool {
        self == other
    }

    /// A modalias of a device with these ids (for the static-table check).
    pub fn modalias(&self) -> String {
        format!(
            "pci:v{:08X}d{:08X}sv{:08X}sd{:08X}bc{:02X}sc{:02X}i{:02X}",
            self.vendor,
            self.device,
            self.subvendor,
            self.subdevice,
            (self.class >> 16) & 0xff,
            (self.class >> 8) & 0xff,
            self.class & 0xff
        )
    }
}

/// A pciback slot entry; `None` in slot or function is the `*` wildcard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotId {
    domain: u32,
    bus: u8,
    slot: Option<u8>,
    func: Option<u8>,
}

impl SlotId {
    /// The entry for exactly `address`.
    pub fn exact(address: &PciAddress) -> Self {
        Self {
            domain: address.domain(),
            bus: address.bus(),
            slot: Some(address.device()),
            func: Some(address.function()),
        }
    }

    /// `true` when the entry covers `address`.
    pub fn covers(&self, address: &PciAddress) -> bool {
        self.domain == address.domain()
            && self.bus == address.bus()
            && self.slot.is_none_or(|s| s == address.device())
            && self.func.is_none_or(|f| f == address.function())
    }

    /// The address, when the entry has no wildcard.
    pub fn address(&self) -> Option<PciAddress> {
        PciAddress::new(self.domain, self.bus, self.slot?, self.func?).ok()
    }
}

impl fmt::Display for SlotId {
    /// As pciback prints `slots`: `%04x:%02x:%02x.%d`, a wildcard being -1.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let slot = self.slot.map_or(-1i32, i32::from);
        let func = self.func.map_or(-1i32, i32::from);
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{}",
            self.domain, self.bus, slot, func
        )
    }
}

/// Parses `[DDDD:]BB:SS.F` with `*` for slot or function (and pciback's own
/// printed wildcards `ffffffff`/`-1`).
pub fn parse_slot(text: &str) -> Result<SlotId, i32> {
    let t = text.trim();
    let (head, func) = t.rsplit_once('.').ok_or(EINVAL)?;
    let parts: Vec<&str> = head.split(':').collect();
    let (domain, bus, slot) = match parts.as_slice() {
        [b, s] => ("0", *b, *s),
        [d, b, s] => (*d, *b, *s),
        _ => return Err(EINVAL),
    };
    let domain = hex_field(domain)?;
    let bus = u8::try_from(hex_field(bus)?).map_err(|_| EINVAL)?;
    let slot = match slot {
        "*" | "ffffffff" => None,
        s => Some(
            u8::try_from(hex_field(s)?)
                .ok()
                .filter(|v| *v <= 0x1f)
                .ok_or(EINVAL)?,
        ),
    };
    let func = match func {
        "*" | "-1" => None,
        f => Some(
            u8::try_from(hex_field(f)?)
                .ok()
                .filter(|v| *v <= 7)
                .ok_or(EINVAL)?,
        ),
    };
    Ok(SlotId {
        domain,
        bus,
        slot,
        func,
    })
}
