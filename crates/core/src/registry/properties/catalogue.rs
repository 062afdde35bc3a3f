//! The property catalogue (spec/admin-api.md §9.8, §9.9): which class has
//! which property, its type, load stage, kind and help text.

use crate::registry::{PropType, QubeClass};

/// How `Set` sanitizes the payload (§9.7 step 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum San {
    /// Printable text.
    Str,
    /// Python `int()`.
    Int,
    /// `1 yes true on / 0 no false off`.
    Bool,
    /// A qube name or empty (None).
    Vm,
    /// Printable text naming a label.
    Label,
    /// An IPv4 address.
    Ipv4,
    /// An IPv6 address.
    Ipv6,
    /// A UUID.
    Uuid,
}

impl San {
    /// The type sent on the wire.
    pub(crate) fn wire(self) -> PropType {
        match self {
            San::Str | San::Ipv4 | San::Ipv6 | San::Uuid => PropType::Str,
            San::Int => PropType::Int,
            San::Bool => PropType::Bool,
            San::Vm => PropType::Vm,
            San::Label => PropType::Label,
        }
    }
}

/// Whether and how a property may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Settable and resettable.
    Normal,
    /// Set at creation, never again (`name`, `qid`, `uuid`, `dispid`).
    WriteOnce,
    /// Computed from other state; `Set` refused, `Reset` a no-op.
    Computed,
    /// A fixed value (`updateable`, dom0's identity, host facts).
    Fixed,
}

/// One property's definition.
#[derive(Debug)]
pub(crate) struct PropDef {
    pub(crate) name: &'static str,
    pub(crate) san: San,
    pub(crate) stage: u8,
    pub(crate) kind: Kind,
    pub(crate) help: &'static str,
}

const fn p(name: &'static str, san: San, stage: u8, kind: Kind, help: &'static str) -> PropDef {
    PropDef {
        name,
        san,
        stage,
        kind,
        help,
    }
}

use Kind::{Computed as C, Fixed as F, Normal as N, WriteOnce as W};
use San::{Bool, Int, Ipv4, Ipv6, Label, Str, Uuid, Vm};

/// Properties of every non-dom0 qube class (AppVM minus `template` and
/// `template_for_dispvms`).
#[rustfmt::skip]
static COMMON: [PropDef; 46] = [
    p("audiovm", Vm, 4, N, "VM used for Audio"),
    p("autostart", Bool, 2, N, "Setting this to `True` means that VM should be autostarted on dom0 boot."),
    p("backup_timestamp", Int, 2, N, "Time of last backup of the qube, in seconds since unix epoch"),
    p("bootmode", Str, 4, N, "Boot mode of the qube, selecting a set of kernel options from the boot-mode.* features."),
    p("debug", Bool, 2, N, "Turns on debugging features."),
    p("default_dispvm", Vm, 4, N, "Default VM to be used as Disposable VM for service calls."),
    p("default_user", Str, 2, N, "Default user to start applications as. TemplateBasedVMs use its template's value by default."),
    p("devices_denied", Str, 2, N, "List of device interface codes that are denied for this VM."),
    p("dns", Str, 2, C, "DNS servers set up for this domain."),
    p("gateway", Str, 2, C, "Gateway for other domains that use this domain as netvm."),
    p("gateway6", Str, 2, C, "Gateway (IPv6) for other domains that use this domain as netvm."),
    p("guivm", Vm, 4, N, "VM used for GUI"),
    p("icon", Str, 2, C, "freedesktop icon name, suitable for use in :py:meth:`PyQt4.QtGui.QIcon.fromTheme`"),
    p("include_in_backups", Bool, 2, N, "If this domain is to be included in default backup."),
    p("installed_by_rpm", Bool, 2, N, "If this domain's image was installed from package tracked by package manager."),
    p("ip", Ipv4, 2, N, "IP address of this domain."),
    p("ip6", Ipv6, 2, N, "IPv6 address of this domain."),
    p("kernel", Str, 2, N, "Kernel used by this domain. TemplateBasedVMs use its template's value by default."),
    p("kernelopts", Str, 4, N, "Kernel command line passed to domain. TemplateBasedVMs use its template's value by default."),
    p("keyboard_layout", Str, 2, N, "Keyboard layout for this VM"),
    p("klass", Str, 2, C, "Class of the qube."),
    p("label", Label, 2, N, "Colourful label assigned to VM. This is where the colour of the padlock is set."),
    p("mac", Str, 2, N, "MAC address of the NIC emulated inside VM"),
    p("management_dispvm", Vm, 4, N, "Default DVM template for Disposable VM for managing this VM."),
    p("maxmem", Int, 2, N, "Maximum amount of memory available for this VM (for the purpose of the memory balancer). Set to 0 to disable memory balancing for this qube. TemplateBasedVMs use its template's value by default (unless memory balancing not supported for this qube)."),
    p("memory", Int, 2, N, "Memory currently available for this VM. TemplateBasedVMs use its template's value by default."),
    p("name", Str, 2, W, "User-specified name of the domain."),
    p("netvm", Vm, 4, N, "VM that provides network connection to this domain. When `None`, machine is disconnected. When absent, domain uses default NetVM."),
    p("provides_network", Bool, 2, N, "If this domain can act as network provider (formerly known as NetVM or ProxyVM)"),
    p("qid", Int, 2, W, "Internal, persistent identificator of particular domain. Note this is different from Xen domid."),
    p("qrexec_timeout", Int, 2, N, "Time in seconds after which qrexec connection attempt is deemed failed. Operating system inside VM should be able to boot in this time."),
    p("shutdown_timeout", Int, 2, N, "Time in seconds for shutdown of the VM, after which VM may be forcefully powered off. Operating system inside VM should be able to fully shutdown in this time."),
    p("start_time", Str, 2, C, "Tell when machine was started."),
    p("stubdom_mem", Int, 2, N, "Memory amount allocated for the stubdom"),
    p("stubdom_uuid", Str, 2, C, "UUID of the stub domain, if any."),
    p("stubdom_xid", Int, 2, C, "Xen ID of the stub domain, -1 if none."),
    p("updateable", Bool, 2, F, "True if this machine may be updated on its own."),
    p("uuid", Uuid, 2, W, "UUID from libvirt."),
    p("vcpus", Int, 2, N, "Number of virtual CPUs for a qube. TemplateBasedVMs use its template's value by default."),
    p("virt_mode", Str, 2, N, "Virtualisation mode: full virtualisation (\"HVM\"), or paravirtualisation (\"PV\"), or hybrid (\"PVH\"). TemplateBasedVMs use its template's value by default."),
    p("visible_gateway", Str, 2, C, "Default gateway of this domain as seen by the domain."),
    p("visible_gateway6", Str, 2, C, "Default (IPv6) gateway of this domain as seen by the domain."),
    p("visible_ip", Str, 2, C, "IP address of this domain as seen by the domain."),
    p("visible_ip6", Str, 2, C, "IPv6 address of this domain as seen by the domain."),
    p("visible_netmask", Str, 2, C, "Netmask as seen by the domain."),
    p("xid", Int, 2, C, "Xen ID. Or not Xen, but ID."),
];

static TEMPLATE: PropDef = p(
    "template",
    Vm,
    4,
    N,
    "Template, on which this AppVM is based.",
);
static TFD: PropDef = p(
    "template_for_dispvms",
    Bool,
    2,
    N,
    "Should this VM be allowed to start as Disposable VM",
);
static APPVM_DEFAULT_BOOTMODE: PropDef = p(
    "appvm_default_bootmode",
    Str,
    4,
    N,
    "Default boot mode for qubes based on this template.",
);
static DISPID: PropDef = p(
    "dispid",
    Int,
    2,
    W,
    "Internal, persistent identifier of particular DispVM.",
);
static AUTO_CLEANUP: PropDef = p(
    "auto_cleanup",
    Bool,
    2,
    N,
    "automatically remove this VM upon shutdown",
);
static IS_PRELOAD: PropDef = p(
    "is_preload",
    Bool,
    2,
    C,
    "Whether this disposable was preloaded.",
);

/// dom0's properties (§9.8 "AdminVM").
#[rustfmt::skip]
static ADMIN: [PropDef; 12] = [
    p("default_dispvm", Vm, 4, N, "Default VM to be used as Disposable VM for service calls."),
    p("devices_denied", Str, 2, N, "List of device interface codes that are denied for this VM."),
    p("icon", Str, 2, C, "freedesktop icon name, suitable for use in :py:meth:`PyQt4.QtGui.QIcon.fromTheme`"),
    p("include_in_backups", Bool, 2, N, "If this domain is to be included in default backup."),
    p("keyboard_layout", Str, 2, N, "Keyboard layout for this VM"),
    p("klass", Str, 2, C, "Class of the qube."),
    p("label", Label, 2, N, "Colourful label assigned to VM. This is where the colour of the padlock is set."),
    p("maxmem", Int, 2, F, "Memory available to dom0, in MiB."),
    p("name", Str, 2, F, "The name of this VM."),
    p("qid", Int, 2, F, "QID of this VM."),
    p("updateable", Bool, 2, F, "True if this machine may be updated on its own."),
    p("uuid", Uuid, 2, F, "UUID of this VM."),
];

/// A remote qube's properties (no devices, no local configuration).
#[rustfmt::skip]
static REMOTE: [PropDef; 6] = [
    p("icon", Str, 2, C, "freedesktop icon name, suitable for use in :py:meth:`PyQt4.QtGui.QIcon.fromTheme`"),
    p("klass", Str, 2, C, "Class of the qube."),
    p("label", Label, 2, N, "Colourful label assigned to VM. This is where the colour of the padlock is set."),
    p("name", Str, 2, W, "User-specified name of the domain."),
    p("qid", Int, 2, W, "Internal, persistent identificator of particular domain."),
    p("uuid", Uuid, 2, W, "UUID of this VM."),
];

/// The global properties (§9.9), alphabetical.
#[rustfmt::skip]
static GLOBAL: [PropDef; 20] = [
    p("check_updates_vm", Bool, 3, N, "Check for updates inside qubes"),
    p("clockvm", Vm, 3, N, "Which VM to use as NTP proxy for updating AdminVM"),
    p("default_audiovm", Vm, 3, N, "Default AudioVM for VMs."),
    p("default_dispvm", Vm, 3, N, "Default DispVM base for service calls"),
    p("default_guivm", Vm, 3, N, "Default GuiVM for VMs."),
    p("default_kernel", Str, 3, N, "Which kernel to use when not overriden in VM"),
    p("default_netvm", Vm, 3, N, "Default NetVM for AppVMs. Initial state is `None`, which means that AppVMs are not connected to the Internet."),
    p("default_pool", Str, 3, N, "Default storage pool"),
    p("default_pool_kernel", Str, 3, N, "Default storage pool for kernel volumes"),
    p("default_pool_private", Str, 3, N, "Default storage pool for private volumes"),
    p("default_pool_root", Str, 3, N, "Default storage pool for root volumes"),
    p("default_pool_volatile", Str, 3, N, "Default storage pool for volatile volumes"),
    p("default_qrexec_timeout", Int, 3, N, "Default time in seconds after which qrexec connection attempt is deemed failed"),
    p("default_shutdown_timeout", Int, 3, N, "Default time in seconds for VM shutdown to complete"),
    p("default_template", Vm, 3, N, "Default template for new AppVMs"),
    p("management_dispvm", Vm, 3, N, "Default DVM template for Disposable VM for managing other VMs."),
    p("maxmem", Int, 3, F, "Maximum amount of memory available for the host, in MiB"),
    p("no_cpus", Int, 3, F, "Number of physical CPUs available"),
    p("stats_interval", Int, 3, N, "Interval in seconds for VM stats reporting (memory, CPU usage)"),
    p("updatevm", Vm, 3, N, "Which VM to use as `yum` proxy for updating AdminVM and TemplateVMs"),
];

/// The properties a class has, in `property.List` order (stage, then name).
pub(crate) fn qube_props(class: QubeClass) -> Vec<&'static PropDef> {
    let mut v: Vec<&'static PropDef> = match class {
        QubeClass::AdminVM => ADMIN.iter().collect(),
        QubeClass::RemoteVM => REMOTE.iter().collect(),
        _ => COMMON.iter().collect(),
    };
    match class {
        QubeClass::AppVM => v.extend([&TEMPLATE, &TFD]),
        QubeClass::TemplateVM => v.push(&APPVM_DEFAULT_BOOTMODE),
        QubeClass::StandaloneVM => v.push(&TFD),
        QubeClass::DispVM => v.extend([&TEMPLATE, &DISPID, &AUTO_CLEANUP, &IS_PRELOAD]),
        QubeClass::AdminVM | QubeClass::RemoteVM => {}
    }
    v.sort_by_key(|d| (d.stage, d.name));
    v
}

/// A class's property of that name.
pub(crate) fn qube_prop(class: QubeClass, name: &str) -> Option<&'static PropDef> {
    qube_props(class).into_iter().find(|d| d.name == name)
}

/// Every global property, alphabetical.
pub(crate) fn global_props() -> impl Iterator<Item = &'static PropDef> {
    GLOBAL.iter()
}

/// The global property of that name.
pub(crate) fn global_prop(name: &str) -> Option<&'static PropDef> {
    GLOBAL.iter().find(|d| d.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_sets_have_the_spec_sizes() {
        assert_eq!(qube_props(QubeClass::AppVM).len(), 48);
        assert_eq!(qube_props(QubeClass::TemplateVM).len(), 47);
        assert_eq!(qube_props(QubeClass::StandaloneVM).len(), 47);
        assert_eq!(qube_props(QubeClass::AdminVM).len(), 12);
    }

    #[test]
    fn dom0_list_order() {
        let names: Vec<_> = qube_props(QubeClass::AdminVM)
            .iter()
            .map(|d| d.name)
            .collect();
        assert_eq!(
            names.join("\n"),
            "devices_denied\nicon\ninclude_in_backups\nkeyboard_layout\nklass\nlabel\nmaxmem\nname\nqid\nupdateable\nuuid\ndefault_dispvm"
        );
    }

    #[test]
    fn globals_sorted() {
        let names: Vec<_> = global_props().map(|d| d.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
    }
}
