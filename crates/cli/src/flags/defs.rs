//! The clap definition of `qvm-pci` / `qvm-device pci`: Qubes' subcommands,
//! aliases and options (spec/qvm-tools.md §2.2), plus qpci's own.

use std::path::PathBuf;

use clap::{Arg, ArgAction, ColorChoice, Command, value_parser};

/// The subcommands with their aliases, in Qubes' order (the order of the
/// `invalid choice` message).
pub const SUBCOMMANDS: [(&str, &[&str]); 6] = [
    ("list", &["ls", "l"]),
    ("attach", &["at", "a"]),
    ("detach", &["d", "dt"]),
    ("assign", &["s"]),
    ("unassign", &["u"]),
    ("info", &["i"]),
];

/// qpci's own subcommands (no Qubes alias; left out of Qubes' `invalid
/// choice` list and usage line, which stay as Qubes prints them).
pub const QPCI_SUBCOMMANDS: [&str; 6] = [
    "reattach",
    "doctor",
    "groups",
    "setup-defaults",
    "boot-hide",
    "boot-unhide",
];

/// Hidden subcommands that generate documentation.
pub const HIDDEN_SUBCOMMANDS: [&str; 2] = ["generate-man", "generate-completions"];

/// The argparse names (`--ask/--ask-to-attach`) of options, by long name,
/// for messages that must read as Qubes' do.
pub const ARGPARSE_NAMES: [(&str, &str); 11] = [
    ("--option", "--option/-o"),
    ("--exclude", "--exclude"),
    ("--ask", "--ask/--ask-to-attach"),
    ("--required", "--required/-r"),
    ("--port", "--port/--only-port"),
    ("--device", "--device/--only-device"),
    ("--persistent", "--persistent/-p"),
    ("--assignments", "--assignments/-s"),
    ("--with-sbdf", "--with-sbdf/--resolve-paths"),
    ("--sysfs-root", "--sysfs-root"),
    ("--pci-ids", "--pci-ids"),
];

/// The canonical subcommand for a word (name or alias), if any.
pub fn canonical(word: &str) -> Option<&'static str> {
    SUBCOMMANDS
        .iter()
        .find(|(name, aliases)| *name == word || aliases.contains(&word))
        .map(|(name, _)| *name)
        .or_else(|| QPCI_SUBCOMMANDS.iter().find(|q| **q == word).copied())
        .or_else(|| HIDDEN_SUBCOMMANDS.iter().find(|h| **h == word).copied())
}

/// The `invalid choice` list: `'list', 'ls', 'l', 'attach', ...`.
pub fn choices() -> String {
    SUBCOMMANDS
        .iter()
        .flat_map(|(name, aliases)| std::iter::once(*name).chain(aliases.iter().copied()))
        .map(|w| format!("'{w}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

const EXAMPLES: &str = "\
Examples:
  qvm-pci                                  list every PCI device and the qubes using it
  qvm-pci list --with-sbdf                 ... with the bus address of each
  qvm-pci list --details                   ... with driver, IOMMU group, reset and why dom0 keeps it
  qvm-pci list -s                          ... with assignment rows (*qube (required))
  qvm-pci list --json                      the whole listing as one JSON document
  qvm-pci info dom0:00_14.0 --details      everything known about one device
  qvm-pci assign --required sys-usb dom0:00_14.0
  qvm-pci attach --persistent -o no-strict-reset=true sys-net dom0:00_1c.0-00_00.0

Device arguments are BACKEND:PORT[:DEVICE_ID], e.g. dom0:00_14.0 or
dom0:00_14.0:0x8086:0xa0ed::p0c0330; PORT is the PCI path shown by `list`.
Known -o options: no-strict-reset, permissive (true/false, yes/no, 1/0, on/off).
PCI devices attach only when a qube starts: an assignment to a running qube
takes effect at its next start. A detached device stays on the stub driver;
it is never given back to dom0 automatically: `qvm-pci reattach dom0:PORT`
(qpci's own subcommand) is the explicit way back.
The tool talks to qpcid (QPCI_SOCKET, /run/qubesd.sock, or the per-user
socket, starting a per-user qpcid if none answers).";

fn main_usage(bin: &str) -> String {
    let pad = " ".repeat(bin.len() + 7);
    let class = if bin == "qvm-device" {
        format!("\n{pad}DEVICE_CLASS")
    } else {
        String::new()
    };
    format!(
        "{bin} [--verbose] [--quiet] [--help] [--version]\n{pad}[--list-device-classes]{class}\n{pad}{{list,ls,l,attach,at,a,detach,d,dt,assign,s,unassign,u,info,i}}\n{pad}..."
    )
}

fn flag(id: &'static str, long: &'static str, help: &'static str) -> Arg {
    Arg::new(id)
        .long(long)
        .action(ArgAction::SetTrue)
        .help(help)
}

fn vm_arg() -> Arg {
    Arg::new("vmname")
        .value_name("VMNAME")
        .required(true)
        .help("the qube")
}

fn device_arg(required: bool) -> Arg {
    Arg::new("dev")
        .value_name("BACKEND:DEVICE_ID")
        .required(required)
        .help("the device, BACKEND:PORT[:DEVICE_ID] such as dom0:00_14.0")
}

fn option_arg() -> Arg {
    Arg::new("option")
        .short('o')
        .long("option")
        .value_name("K=V")
        .action(ArgAction::Append)
        .help("set a device option: no-strict-reset=true or permissive=true (repeatable)")
}

fn port_device_args() -> [Arg; 2] {
    [
        flag("port", "port", "the port only: any device at this port").visible_alias("only-port"),
        flag("device", "device", "the device only: at any port").visible_alias("only-device"),
    ]
}

fn sub(name: &'static str, about: &'static str) -> Command {
    let aliases = SUBCOMMANDS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, a)| *a)
        .unwrap_or(&[]);
    Command::new(name)
        .about(about)
        .visible_aliases(aliases.iter().copied())
        .infer_long_args(true)
}

fn list() -> Command {
    sub("list", "list the devices (the default subcommand)")
        .arg(flag("assignments", "assignments", "also list assignments").short('s'))
        .arg(
            flag(
                "with-sbdf",
                "with-sbdf",
                "add the bus address (SBDF) column",
            )
            .visible_alias("resolve-paths"),
        )
        .arg(flag("all", "all", "every qube except dom0"))
        .arg(
            Arg::new("exclude")
                .long("exclude")
                .value_name("NAME")
                .action(ArgAction::Append)
                .help("leave this qube out of --all (repeatable)"),
        )
        .arg(flag(
            "json",
            "json",
            "print one JSON document instead of the table",
        ))
        .arg(flag(
            "details",
            "details",
            "add qpci's columns: driver, IOMMU group, reset, dom0-critical reason",
        ))
        .arg(super::host_defs::groups_flag())
        .arg(
            Arg::new("vmname")
                .value_name("VMNAME")
                .num_args(0..)
                .help("only devices of these qubes (patterns allowed)"),
        )
}

fn info() -> Command {
    sub("info", "describe one device")
        .arg(device_arg(false))
        .arg(flag("json", "json", "print one JSON document"))
        .arg(flag(
            "details",
            "details",
            "add everything the host knows about the device",
        ))
}

fn attach() -> Command {
    sub(
        "attach",
        "assign a device as required (PCI devices attach only at qube start; needs -p)",
    )
    .arg(option_arg())
    .arg(flag("ro", "ro", "read-only (not a PCI option: refused)"))
    .arg(
        flag(
            "persistent",
            "persistent",
            "assign it (the same as assign --required)",
        )
        .short('p'),
    )
    .arg(vm_arg())
    .arg(device_arg(true))
}

fn detach() -> Command {
    sub("detach", "detach a device from a running qube")
        .arg(vm_arg())
        .arg(device_arg(false))
}

fn assign() -> Command {
    sub(
        "assign",
        "assign a device to a qube, attached when it starts",
    )
    .arg(option_arg())
    .arg(flag("ro", "ro", "read-only (not a PCI option: refused)"))
    .arg(
        flag("ask", "ask", "ask before attaching (not for PCI: refused)")
            .visible_alias("ask-to-attach"),
    )
    .arg(
        flag(
            "required",
            "required",
            "the qube needs it to start (the only PCI mode)",
        )
        .short('r'),
    )
    .args(port_device_args())
    .arg(vm_arg())
    .arg(device_arg(true))
}

fn unassign() -> Command {
    sub("unassign", "remove an assignment")
        .args(port_device_args())
        .arg(vm_arg())
        .arg(device_arg(false))
}

const REATTACH_HELP: &str = "\
Examples:
  qvm-pci reattach --dry-run dom0:00_14.0  print every step; change nothing
  qvm-pci reattach dom0:00_14.0            unbind from the stub, load the host driver's module, bind it

Warning: the device comes back with the state a qube left in it (buffers,
firmware, DMA setup): that qube may have been compromised. A device without a
reset method cannot even be reset first; qpci warns about it.

Nothing gives a device back to dom0 on its own: shutdown, kill, detach and
unassign leave it on the stub driver (pciback or vfio-pci); this is the only
way back. It is refused while a running qube holds the device, or while a qube
with autostart=True has it assigned (it would take it again at the next boot),
unless --force. qpci finds the host driver from the device's modalias as
`modprobe -R` does (the module's name may differ from the driver's: module
xhci_pci registers driver xhci_hcd). On qpcid's sim backend without
--emulate-kernel the steps are printed, not performed. Qubes has no such
subcommand and no alias.";

fn reattach() -> Command {
    Command::new("reattach")
        .about("give a device on the stub driver back to its dom0 driver (qpci)")
        .infer_long_args(true)
        .after_help(REATTACH_HELP)
        .arg(flag(
            "force",
            "force",
            "give it back even while a running qube holds it or an autostart qube has it assigned",
        ))
        .arg(flag(
            "dry-run",
            "dry-run",
            "print every step; change nothing",
        ))
        .arg(
            Arg::new("dev")
                .value_name("BACKEND:PORT")
                .required(true)
                .help("the device, dom0:PORT such as dom0:00_14.0"),
        )
}

fn generators() -> [Command; 2] {
    [
        Command::new("generate-man")
            .hide(true)
            .about("write man pages to DIR")
            .arg(
                Arg::new("dir")
                    .value_name("DIR")
                    .required(true)
                    .value_parser(value_parser!(PathBuf)),
            ),
        Command::new("generate-completions")
            .hide(true)
            .about("print a shell completion script")
            .arg(
                Arg::new("shell")
                    .value_name("SHELL")
                    .required(true)
                    .value_parser(value_parser!(clap_complete::Shell)),
            ),
    ]
}

/// The whole command for `bin` (`qvm-pci` or `qvm-device`).
pub fn command(bin: &str) -> Command {
    let bin_name = if bin == "qvm-device" {
        "qvm-device DEVICE_CLASS".to_owned()
    } else {
        bin.to_owned()
    };
    Command::new(bin.to_owned())
        .bin_name(bin_name)
        .about("List PCI devices and manage their assignment to qubes")
        .override_usage(main_usage(bin))
        .color(ColorChoice::Never)
        .disable_version_flag(true)
        .disable_help_subcommand(true)
        .after_help(EXAMPLES)
        .arg(
            Arg::new("verbose")
                .short('v')
                .long("verbose")
                .action(ArgAction::Count)
                .global(true)
                .help("more output (repeatable)"),
        )
        .arg(
            Arg::new("quiet")
                .short('q')
                .long("quiet")
                .action(ArgAction::Count)
                .global(true)
                .help("less output (repeatable)"),
        )
        .arg(flag("version", "version", "print the version and exit"))
        .arg(
            flag(
                "list-device-classes",
                "list-device-classes",
                "list the device classes and exit",
            )
            .visible_alias("list-classes"),
        )
        .arg(
            Arg::new("force-root")
                .long("force-root")
                .action(ArgAction::SetTrue)
                .hide(true)
                .global(true),
        )
        .arg(
            Arg::new("sysfs-root")
                .long("sysfs-root")
                .value_name("DIR")
                .value_parser(value_parser!(PathBuf))
                .global(true)
                .hide(true)
                .help("no longer supported: the daemon reads the host"),
        )
        .arg(
            Arg::new("pci-ids")
                .long("pci-ids")
                .value_name("FILE")
                .value_parser(value_parser!(PathBuf))
                .global(true)
                .hide(true)
                .help("no longer supported: the daemon reads pci.ids"),
        )
        .subcommands([list(), attach(), detach(), assign(), unassign(), info()])
        .subcommand(reattach())
        .subcommands(super::host_defs::commands())
        .subcommands(generators())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definition_is_consistent() {
        command("qvm-pci").debug_assert();
        command("qvm-device").debug_assert();
    }

    #[test]
    fn aliases_resolve() {
        for (word, name) in [
            ("ls", "list"),
            ("l", "list"),
            ("at", "attach"),
            ("dt", "detach"),
            ("s", "assign"),
            ("u", "unassign"),
            ("i", "info"),
        ] {
            assert_eq!(canonical(word), Some(name));
        }
        assert_eq!(canonical("sys-usb"), None);
        assert_eq!(canonical("reattach"), Some("reattach"));
        assert!(!choices().contains("reattach"));
    }

    #[test]
    fn choice_list_is_qubes_order() {
        assert_eq!(
            choices(),
            "'list', 'ls', 'l', 'attach', 'at', 'a', 'detach', 'd', 'dt', 'assign', 's', 'unassign', 'u', 'info', 'i'"
        );
    }
}
