//! Qubes' client-side device description (spec/qvm-tools.md §2.6):
//! `<category>: <vendor> <product>`.
//!
//! The category comes from the interface codes through Qubes' category table
//! (patterns with `*` wildcards, best score wins, ties to the category
//! declared first); a PCI class outside every category is named from pci.ids
//! instead. The CLI and the GUI both describe devices with this code, so they
//! say what Qubes' own tools say.

use qpci_types::{ClassCode, DeviceInterface};

/// A device category of Qubes' client, in declaration order (which breaks ties).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// Nothing better matched.
    Other,
    /// Network controllers, modems.
    Network,
    /// Keyboards.
    Keyboard,
    /// Mice.
    Mouse,
    /// Other input devices.
    Input,
    /// Printers.
    Printer,
    /// Cameras and scanners.
    Camera,
    /// Microphones.
    Microphone,
    /// Audio devices.
    Audio,
    /// Other multimedia devices.
    Multimedia,
    /// USB mass storage.
    UsbStorage,
    /// Block devices.
    BlockStorage,
    /// Storage controllers.
    Storage,
    /// Bluetooth.
    Bluetooth,
    /// Smart card readers.
    SmartCardReaders,
    /// VGA and other display controllers.
    Display,
    /// Memory controllers.
    Memory,
    /// Bridges.
    PciBridge,
    /// Docking stations.
    DockingStation,
    /// Processors and co-processors.
    Processor,
    /// Serial bus controllers other than USB.
    PciSerialBus,
    /// USB controllers.
    PciUsb,
}

/// Every category with its patterns, in declaration order.
pub const CATEGORY_TABLE: [(Category, &[&str]); 22] = [
    (Category::Other, &["*******"]),
    (
        Category::Network,
        &["u02****", "p0703**", "p02****", "ue0****"],
    ),
    (Category::Keyboard, &["u03**01", "p0900**"]),
    (Category::Mouse, &["u03**02", "p0902**"]),
    (Category::Input, &["u03****", "p09****"]),
    (Category::Printer, &["u07****"]),
    (Category::Camera, &["p0903**", "u06****", "u0e****"]),
    (Category::Microphone, &["m******"]),
    (
        Category::Audio,
        &["p0403**", "p0401**", "p0408**", "u01****", "m******"],
    ),
    (Category::Multimedia, &["u10****", "p03****", "p04****"]),
    (Category::UsbStorage, &["u08****"]),
    (Category::BlockStorage, &["b******"]),
    (Category::Storage, &["b******", "u08****", "p01****"]),
    (Category::Bluetooth, &["ue00101", "p0d11**"]),
    (Category::SmartCardReaders, &["u0b****"]),
    (Category::Display, &["p0300**", "p0380**"]),
    (Category::Memory, &["p05****"]),
    (Category::PciBridge, &["p06****"]),
    (Category::DockingStation, &["p0a****"]),
    (Category::Processor, &["p0b****", "p40****"]),
    (Category::PciSerialBus, &["p0c****"]),
    (Category::PciUsb, &["p0c03**"]),
];

impl Category {
    /// The name Qubes prints, underscores kept: `PCI_USB`.
    pub fn name(self) -> &'static str {
        match self {
            Category::Other => "Other",
            Category::Network => "Network",
            Category::Keyboard => "Keyboard",
            Category::Mouse => "Mouse",
            Category::Input => "Input",
            Category::Printer => "Printer",
            Category::Camera => "Camera",
            Category::Microphone => "Microphone",
            Category::Audio => "Audio",
            Category::Multimedia => "Multimedia",
            Category::UsbStorage => "USB_Storage",
            Category::BlockStorage => "Block_Storage",
            Category::Storage => "Storage",
            Category::Bluetooth => "Bluetooth",
            Category::SmartCardReaders => "Smart_Card_Readers",
            Category::Display => "Display",
            Category::Memory => "Memory",
            Category::PciBridge => "PCI_Bridge",
            Category::DockingStation => "Docking_Station",
            Category::Processor => "Processor",
            Category::PciSerialBus => "PCI_Serial_Bus",
            Category::PciUsb => "PCI_USB",
        }
    }

    /// The category of a 7-character interface code: the best-scoring
    /// pattern wins, ties go to the category declared first, and a score of
    /// 0 (or a code of another length) is [`Category::Other`].
    pub fn of_code(code: &str) -> Category {
        let code = code.as_bytes();
        if code.len() != 7 {
            return Category::Other;
        }
        let mut best = (0, Category::Other);
        for (category, patterns) in CATEGORY_TABLE {
            for pattern in patterns {
                if let Some(score) = pattern_score(code, pattern.as_bytes())
                    && score > best.0
                {
                    best = (score, category);
                }
            }
        }
        best.1
    }
}

/// The number of equal positions, or `None` when a non-`*` pattern character
/// differs from the code.
fn pattern_score(code: &[u8], pattern: &[u8]) -> Option<usize> {
    let mut score = 0;
    for (c, p) in code.iter().zip(pattern) {
        if c == p {
            score += 1;
        } else if *p != b'*' {
            return None;
        }
    }
    Some(score)
}

/// The pci.ids names of one class code, each `None` when pci.ids lacks it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassNames<'a> {
    /// The base class line (`C 0c  Serial bus controller`).
    pub class: Option<&'a str>,
    /// The subclass line (`\t03  USB controller`).
    pub subclass: Option<&'a str>,
    /// The prog-if line (`\t\t30  XHCI`).
    pub prog_if: Option<&'a str>,
}

/// The name used for a PCI class outside every category when pci.ids has
/// nothing better.
pub const GENERIC_PCI_NAME: &str = "PCI device";

fn usable<'a>(name: Option<&'a str>, excluded: &[&str]) -> Option<&'a str> {
    name.filter(|n| !excluded.iter().any(|x| n.eq_ignore_ascii_case(x)))
}

impl ClassNames<'_> {
    /// Qubes' pci.ids name: the subclass name, else the prog-if name, else
    /// the class name, each skipped when it is a placeholder such as `none`
    /// or `unused`; else `PCI device`.
    pub fn qubes_name(&self) -> String {
        usable(
            self.subclass,
            &[
                "none",
                "no subclass",
                "unused",
                "undefined",
                "vendor specific subclass",
            ],
        )
        .or_else(|| usable(self.prog_if, &["none", "unused", "undefined"]))
        .or_else(|| {
            usable(
                self.class,
                &["none", "unused", "undefined", "vendor specific class"],
            )
        })
        .unwrap_or(GENERIC_PCI_NAME)
        .to_owned()
    }
}

/// What a description is built from: the keys of an `Available` line.
#[derive(Debug, Clone, Copy, Default)]
pub struct DescriptionInput<'a> {
    /// `vendor`.
    pub vendor: Option<&'a str>,
    /// `product`.
    pub product: Option<&'a str>,
    /// `manufacturer` (the vendor's fallback).
    pub manufacturer: Option<&'a str>,
    /// `name` (the product's first fallback).
    pub name: Option<&'a str>,
    /// `serial` (the product's second fallback).
    pub serial: Option<&'a str>,
    /// The device class for `unknown <class> device`; empty means `pci`.
    pub devclass: &'a str,
    /// The interface codes, in order.
    pub interfaces: &'a [DeviceInterface],
}

fn known(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.is_empty() && *v != "unknown")
}

/// The name of one interface in the `Other` case: the pci.ids name of a PCI
/// class (`_` turned into spaces), or the raw code when it has no class.
fn interface_name<'n>(
    interface: &DeviceInterface,
    names: &dyn Fn(ClassCode) -> ClassNames<'n>,
) -> String {
    match interface.pci_class() {
        Some(class) => names(class).qubes_name().replace('_', " "),
        None => interface.as_str().replace('_', " "),
    }
}

/// The category text of a device: the first interface whose category is not
/// `Other`, else the first interface name that is not `PCI device`, else
/// `PCI device`.
pub fn category_text<'n>(
    interfaces: &[DeviceInterface],
    names: &dyn Fn(ClassCode) -> ClassNames<'n>,
) -> String {
    let unknown = [DeviceInterface::unknown()];
    let interfaces = if interfaces.is_empty() {
        &unknown[..]
    } else {
        interfaces
    };
    if let Some(category) = interfaces
        .iter()
        .map(|i| Category::of_code(i.as_str()))
        .find(|c| *c != Category::Other)
    {
        return category.name().to_owned();
    }
    interfaces
        .iter()
        .map(|i| interface_name(i, names))
        .find(|n| n != GENERIC_PCI_NAME)
        .unwrap_or_else(|| GENERIC_PCI_NAME.to_owned())
}

/// Qubes' description: `<category>: <vendor> <product>`, with
/// `unknown vendor` and `unknown <class> device` when names are missing.
/// `names` gives the pci.ids names of a class code (used only when no
/// interface has a category).
pub fn describe<'n>(
    input: &DescriptionInput<'_>,
    names: &dyn Fn(ClassCode) -> ClassNames<'n>,
) -> String {
    let devclass = if input.devclass.is_empty() {
        "pci"
    } else {
        input.devclass
    };
    let product = known(input.product)
        .or_else(|| known(input.name))
        .or_else(|| known(input.serial))
        .map(str::to_owned)
        .unwrap_or_else(|| format!("unknown {devclass} device"));
    let vendor = known(input.vendor)
        .or_else(|| known(input.manufacturer))
        .unwrap_or("unknown vendor");
    format!(
        "{}: {vendor} {product}",
        category_text(input.interfaces, names)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use qpci_types::DeviceIdentity;

    fn category(class: &str) -> &'static str {
        Category::of_code(&format!("p{class}")).name()
    }

    /// Every row of the class -> category table of spec §2.6, with a few
    /// class codes per row.
    #[test]
    fn class_to_category_table() {
        let table: &[(&[&str], &str)] = &[
            (&["010000", "010601", "010802", "018000"], "Storage"),
            (&["020000", "028000", "020700"], "Network"),
            (&["030000", "030001", "038000"], "Display"),
            (&["030200", "030100"], "Multimedia"),
            (&["040100", "040300", "040800"], "Audio"),
            (&["040000", "040200", "048000"], "Multimedia"),
            (&["050000", "050100", "058000"], "Memory"),
            (
                &[
                    "060000", "060100", "060400", "060401", "060700", "060900", "068000",
                ],
                "PCI_Bridge",
            ),
            (&["070300", "070301"], "Network"),
            (&["090000"], "Keyboard"),
            (&["090200"], "Mouse"),
            (&["090300"], "Camera"),
            (&["090100", "090400", "098000"], "Input"),
            (&["0a0000", "0a8000"], "Docking_Station"),
            (&["0b0000", "0b4000", "400000", "400100"], "Processor"),
            (
                &["0c0300", "0c0310", "0c0320", "0c0330", "0c0340", "0c03fe"],
                "PCI_USB",
            ),
            (&["0c0000", "0c0500", "0c8000", "0c0700"], "PCI_Serial_Bus"),
            (&["0d1100"], "Bluetooth"),
        ];
        for (classes, expected) in table {
            for class in *classes {
                assert_eq!(category(class), *expected, "class {class}");
            }
        }
        let others = [
            "000000", "000100", "070000", "070100", "078000", "080000", "080600", "088000",
            "0d0000", "0d1000", "0d8000", "0e0000", "0f0000", "100000", "110000", "118000",
            "120000", "130000", "ff0000", "ffff00",
        ];
        for class in others {
            assert_eq!(category(class), "Other", "class {class}");
        }
    }

    #[test]
    fn ties_go_to_the_first_declared() {
        assert_eq!(Category::of_code("b000000"), Category::BlockStorage);
        assert_eq!(Category::of_code("m000000"), Category::Microphone);
        assert_eq!(Category::of_code("u080650"), Category::UsbStorage);
        assert_eq!(Category::of_code("ue00101"), Category::Bluetooth);
        assert_eq!(Category::of_code("u030101"), Category::Keyboard);
        assert_eq!(Category::of_code("p0c03"), Category::Other);
        assert_eq!(Category::of_code("?******"), Category::Other);
    }

    fn describe_class(
        class: &str,
        vendor: Option<&str>,
        product: Option<&str>,
        names: ClassNames<'_>,
    ) -> String {
        let id: DeviceIdentity = format!("0x1234:0x5678::p{class}").parse().unwrap();
        let input = DescriptionInput {
            vendor,
            product,
            interfaces: id.interfaces(),
            ..DescriptionInput::default()
        };
        describe(&input, &|_| names)
    }

    #[test]
    fn categorised_devices() {
        let names = ClassNames::default();
        let v = Some("Intel Corporation");
        assert_eq!(
            describe_class(
                "0c0330",
                v,
                Some("Tiger Lake-LP USB 3.2 Gen 2x1 xHCI Host Controller"),
                names
            ),
            "PCI_USB: Intel Corporation Tiger Lake-LP USB 3.2 Gen 2x1 xHCI Host Controller"
        );
        assert_eq!(
            describe_class("028000", v, Some("Wi-Fi 6 AX201"), names),
            "Network: Intel Corporation Wi-Fi 6 AX201"
        );
        assert_eq!(
            describe_class(
                "060000",
                v,
                Some("11th Gen Core Processor Host Bridge/DRAM Registers"),
                names
            ),
            "PCI_Bridge: Intel Corporation 11th Gen Core Processor Host Bridge/DRAM Registers"
        );
        assert_eq!(
            describe_class("030200", Some("NVIDIA Corporation"), Some("GA107M"), names),
            "Multimedia: NVIDIA Corporation GA107M"
        );
    }

    #[test]
    fn fallbacks_for_missing_names() {
        let names = ClassNames::default();
        assert_eq!(
            describe_class("020000", None, None, names),
            "Network: unknown vendor unknown pci device"
        );
        assert_eq!(
            describe_class("020000", Some("unknown"), Some("unknown"), names),
            "Network: unknown vendor unknown pci device"
        );
        assert_eq!(
            describe_class("020000", Some(""), Some("X"), names),
            "Network: unknown vendor X"
        );
        let id: DeviceIdentity = "0x1:0x2::p020000".parse().unwrap();
        let input = DescriptionInput {
            manufacturer: Some("ACME"),
            name: Some("Thing"),
            serial: Some("S1"),
            interfaces: id.interfaces(),
            ..DescriptionInput::default()
        };
        assert_eq!(describe(&input, &|_| names), "Network: ACME Thing");
        let input = DescriptionInput {
            serial: Some("S1"),
            ..input
        };
        let input = DescriptionInput {
            name: None,
            ..input
        };
        assert_eq!(describe(&input, &|_| names), "Network: ACME S1");
    }

    #[test]
    fn unknown_device() {
        let id = DeviceIdentity::unknown();
        let input = DescriptionInput {
            interfaces: id.interfaces(),
            ..DescriptionInput::default()
        };
        assert_eq!(
            describe(&input, &|_| ClassNames::default()),
            "?******: unknown vendor unknown pci device"
        );
        let none = DescriptionInput::default();
        assert_eq!(
            describe(&none, &|_| ClassNames::default()),
            "?******: unknown vendor unknown pci device"
        );
    }

    #[test]
    fn other_uses_pci_ids_names() {
        let v = Some("Red Hat, Inc.");
        let p = Some("Virtio 1.0 socket");
        let sys = ClassNames {
            class: Some("Generic system peripheral"),
            subclass: Some("System peripheral"),
            prog_if: None,
        };
        assert_eq!(
            describe_class("088000", v, p, sys),
            "System peripheral: Red Hat, Inc. Virtio 1.0 socket"
        );
        let unassigned = ClassNames {
            class: Some("Unassigned class"),
            ..ClassNames::default()
        };
        assert_eq!(
            describe_class("ff0000", v, p, unassigned),
            "Unassigned class: Red Hat, Inc. Virtio 1.0 socket"
        );
        // Placeholders fall through: subclass -> prog-if -> class -> PCI device.
        let placeholder = ClassNames {
            class: Some("Communication controller"),
            subclass: Some("Vendor Specific Subclass"),
            prog_if: Some("Undefined"),
        };
        assert_eq!(
            describe_class("0780ff", v, p, placeholder),
            "Communication controller: Red Hat, Inc. Virtio 1.0 socket"
        );
        let prog_if = ClassNames {
            class: Some("X"),
            subclass: Some("none"),
            prog_if: Some("16550"),
        };
        assert_eq!(
            describe_class("070002", v, p, prog_if),
            "16550: Red Hat, Inc. Virtio 1.0 socket"
        );
        let nothing = ClassNames {
            class: Some("Vendor specific class"),
            subclass: Some("unused"),
            prog_if: Some("none"),
        };
        assert_eq!(
            describe_class("ff0000", v, p, nothing),
            "PCI device: Red Hat, Inc. Virtio 1.0 socket"
        );
        assert_eq!(
            describe_class("ff0000", v, p, ClassNames::default()),
            "PCI device: Red Hat, Inc. Virtio 1.0 socket"
        );
        let underscore = ClassNames {
            subclass: Some("Odd_name"),
            ..ClassNames::default()
        };
        assert_eq!(
            describe_class("110000", v, p, underscore),
            "Odd name: Red Hat, Inc. Virtio 1.0 socket"
        );
    }

    #[test]
    fn first_categorised_interface_wins() {
        let id: DeviceIdentity = "0x1:0x2::p088000p0c0330".parse().unwrap();
        let input = DescriptionInput {
            vendor: Some("V"),
            product: Some("P"),
            interfaces: id.interfaces(),
            ..DescriptionInput::default()
        };
        assert_eq!(describe(&input, &|_| ClassNames::default()), "PCI_USB: V P");
    }
}
