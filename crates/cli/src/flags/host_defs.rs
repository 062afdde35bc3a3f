//! qpci's host subcommands of `qvm-pci`: `doctor`, `groups` (also
//! `list --groups`), `setup-defaults`, `boot-hide`, `boot-unhide`. Qubes
//! has none of them; they have no aliases and stay out of Qubes' `invalid
//! choice` list.

use clap::{Arg, ArgAction, ArgMatches, Command};

use super::{CheckedDevice, DeviceArg, Prog, errors};

/// The subcommand names.
pub const NAMES: [&str; 5] = [
    "doctor",
    "groups",
    "setup-defaults",
    "boot-hide",
    "boot-unhide",
];

/// A host subcommand with its arguments.
#[derive(Debug)]
pub enum HostCmd {
    /// `doctor [dom0:PORT] [--vm VM] [--json]`.
    Doctor {
        /// The device, if given.
        device: Option<Box<CheckedDevice>>,
        /// `--vm`.
        vm: Option<String>,
        /// `--json`.
        json: bool,
    },
    /// `groups` / `list --groups`.
    Groups {
        /// `--json`.
        json: bool,
    },
    /// `setup-defaults`.
    SetupDefaults {
        /// `--dry-run`.
        dry_run: bool,
        /// `--force`.
        force: bool,
        /// `--json`.
        json: bool,
    },
    /// `boot-hide` (`unhide: false`) or `boot-unhide`.
    BootHide {
        /// `boot-unhide`.
        unhide: bool,
        /// `--dry-run`.
        dry_run: bool,
        /// `--json`.
        json: bool,
    },
}

fn flag(id: &'static str, help: &'static str) -> Arg {
    Arg::new(id).long(id).action(ArgAction::SetTrue).help(help)
}

fn json_flag() -> Arg {
    flag("json", "print one JSON document")
}

const DOCTOR_HELP: &str = "\
Examples:
  qvm-pci doctor                 every device and assignment
  qvm-pci doctor dom0:00_14.0    one device (present or not) and its assignments
  qvm-pci doctor --vm sys-usb    the devices assigned to a qube
  qvm-pci doctor --json          one JSON document

Every reason a device cannot be passed through or may misbehave, most severe
first, each with its evidence (the file read and its value) and the fix: no
IOMMU (KVM: sys/kernel/iommu_groups; Xen dom0: xl info virt_caps), dom0-critical,
no reset method, a bus-reset domain or IOMMU group shared with other devices,
a driver dom0 needs (its default route, a keyboard behind a USB controller),
the boot VGA, SR-IOV VFs, a qube in pvh or with memory balancing, a device
held by a running qube, missing, or replaced at its port. Exit status 1 when
problems were found that concern the host, a qube, the device asked for or an
assigned device; 0 otherwise.";

const SETUP_HELP: &str = "\
What Qubes' installer does: every network controller (class 02) to sys-net,
every USB controller (class 0c03) to sys-usb, creating those qubes when missing
(an AppVM on default_template when set, else a StandaloneVM; virt_mode hvm,
maxmem 0, autostart True). dom0-critical and already-assigned devices are
skipped. A USB controller with an input device behind it would take dom0's
keyboard: it is skipped unless --force. Rerunning changes nothing.";

const HIDE_HELP: &str = "\
Keeps dom0's drivers off every assigned device from boot on: Qubes gets
rd.qubes.hide_pci= and plain Xen xen-pciback.hide= on the kernel command line
(a marked block in /etc/default/grub), KVM a per-device driver_override udev
rule. qpcid writes the files only where it may write to the host; otherwise
(its sim backend) it prints them. `boot-unhide` removes them, leaving
/etc/default/grub as it was, byte for byte. Then run what is printed
(regenerate the grub config or the initramfs) and reboot.";

/// The clap definitions.
pub fn commands() -> Vec<Command> {
    vec![
        Command::new("doctor")
            .about("explain why devices cannot be passed through, with evidence and the fix (qpci)")
            .infer_long_args(true)
            .after_help(DOCTOR_HELP)
            .arg(
                Arg::new("vm")
                    .long("vm")
                    .value_name("VM")
                    .help("the devices assigned to this qube"),
            )
            .arg(json_flag())
            .arg(
                Arg::new("dev")
                    .value_name("BACKEND:PORT")
                    .help("one device, dom0:PORT such as dom0:00_14.0"),
            ),
        Command::new("groups")
            .about("devices by IOMMU group, with drivers and assignability (qpci)")
            .infer_long_args(true)
            .arg(json_flag()),
        Command::new("setup-defaults")
            .about("first-boot defaults: network controllers to sys-net, USB to sys-usb (qpci)")
            .infer_long_args(true)
            .after_help(SETUP_HELP)
            .arg(flag("dry-run", "explain every decision; change nothing"))
            .arg(flag(
                "force",
                "also assign USB controllers with input devices behind them",
            ))
            .arg(json_flag()),
        Command::new("boot-hide")
            .about("keep dom0's drivers off assigned devices from boot on (qpci)")
            .infer_long_args(true)
            .after_help(HIDE_HELP)
            .arg(flag("dry-run", "print the files; write nothing"))
            .arg(json_flag()),
        Command::new("boot-unhide")
            .about("undo boot-hide (qpci)")
            .infer_long_args(true)
            .after_help(HIDE_HELP)
            .arg(flag("dry-run", "print the changes; write nothing"))
            .arg(json_flag()),
    ]
}

/// The `list --groups` flag.
pub fn groups_flag() -> Arg {
    flag(
        "groups",
        "list devices by IOMMU group with drivers and assignability (qpci; = groups)",
    )
}

/// The parsed subcommand `name`.
pub fn parse(prog: &Prog, name: &str, m: &ArgMatches) -> HostCmd {
    let json = m.get_flag("json");
    match name {
        "doctor" => HostCmd::Doctor {
            device: m.get_one::<String>("dev").map(|raw| {
                Box::new(DeviceArg::parse(raw).map_err(|e| errors::usage_main(&prog.main, e.0)))
            }),
            vm: m.get_one::<String>("vm").cloned(),
            json,
        },
        "setup-defaults" => HostCmd::SetupDefaults {
            dry_run: m.get_flag("dry-run"),
            force: m.get_flag("force"),
            json,
        },
        "boot-hide" | "boot-unhide" => HostCmd::BootHide {
            unhide: name == "boot-unhide",
            dry_run: m.get_flag("dry-run"),
            json,
        },
        _ => HostCmd::Groups { json },
    }
}
