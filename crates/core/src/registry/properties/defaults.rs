//! Effective and default property values (spec/admin-api.md §9.8, §5.4).

use std::collections::HashSet;

use super::catalogue::{Kind, PropDef, San, global_prop, qube_prop};
use super::{DOM0_UUID, py_bool_text, py_int};
use crate::registry::{Domain, MAX_CHAIN, QubeClass, Registry, VirtMode};

/// The netvm address prefix Qubes uses (`10.137.x.y`).
fn ip_for_qid(qid: i64) -> String {
    format!("10.137.{}.{}", (qid >> 8) & 0xff, qid & 0xff)
}

/// The IPv6 address Qubes derives from the qid.
fn ip6_for_qid(qid: i64) -> String {
    format!("fd09:24ef:4179::a89:{qid:x}")
}

/// A feature value counts as set when non-empty (Qubes' truthiness).
pub(crate) fn truthy(v: Option<&str>) -> bool {
    v.is_some_and(|s| !s.is_empty())
}

impl Registry {
    /// The value `Get` shows for a qube property: `(is_default, text)`.
    pub(crate) fn qube_value(&self, d: &Domain, def: &PropDef, depth: usize) -> (bool, String) {
        match def.kind {
            Kind::Computed | Kind::Fixed => (true, self.computed(d, def.name, depth)),
            Kind::WriteOnce => match def.name {
                "name" => (false, d.name.to_string()),
                "qid" => (false, d.record.qid.to_string()),
                _ => match d.prop(def.name) {
                    Some(v) => (false, v.to_owned()),
                    None => (true, String::new()),
                },
            },
            Kind::Normal => match self.explicit(d, def) {
                Some(v) => (false, v),
                None => (
                    true,
                    self.qube_default(d, def.name, depth).unwrap_or_default(),
                ),
            },
        }
    }

    /// A qube property's effective value by name ("" when it has none or
    /// the class lacks it).
    pub(crate) fn qval(&self, d: &Domain, name: &str, depth: usize) -> String {
        match qube_prop(d.class, name) {
            Some(def) if depth <= MAX_CHAIN => self.qube_value(d, def, depth).1,
            _ => String::new(),
        }
    }

    /// The explicit value, normalised for display; `None` when unset.
    pub(crate) fn explicit(&self, d: &Domain, def: &PropDef) -> Option<String> {
        let raw = d.record.properties.get(def.name)?;
        Some(match def.san {
            San::Label => self
                .label_by_ref(raw.as_str())
                .map_or_else(|| raw.as_str().to_owned(), |l| l.name.clone()),
            San::Bool => py_bool_text(raw.as_str()),
            San::Int => {
                py_int(raw.as_str()).map_or_else(|| raw.as_str().to_owned(), |i| i.to_string())
            }
            _ => raw.as_str().to_owned(),
        })
    }

    /// The default of a settable qube property; `None` when it has none
    /// (`GetDefault` then replies empty).
    pub(crate) fn qube_default(&self, d: &Domain, name: &str, depth: usize) -> Option<String> {
        let next = depth + 1;
        let tpl = if next <= MAX_CHAIN {
            self.template_of(d)
        } else {
            None
        };
        let from_tpl = |p: &str| tpl.map(|t| self.qval(t, p, next));
        let s = |v: &str| Some(v.to_owned());
        match name {
            "audiovm" => Some(self.gval("default_audiovm")),
            "guivm" => Some(self.gval("default_guivm")),
            "default_dispvm" => Some(self.gval("default_dispvm")),
            "autostart"
            | "debug"
            | "installed_by_rpm"
            | "provides_network"
            | "template_for_dispvms"
            | "auto_cleanup" => s("False"),
            "include_in_backups" => s("True"),
            "backup_timestamp" | "stubdom_mem" | "devices_denied" => s(""),
            "bootmode" | "appvm_default_bootmode" => s("default"),
            "default_user" => from_tpl("default_user").or_else(|| s("user")),
            "kernel" => from_tpl("kernel").or_else(|| Some(self.gval("default_kernel"))),
            "kernelopts" => Some(self.default_kernelopts(d, next)),
            "keyboard_layout" => Some(self.default_keyboard_layout(d, next)),
            "mac" => s("00:16:3e:5e:6c:00"),
            "management_dispvm" => {
                from_tpl("management_dispvm").or_else(|| Some(self.gval("management_dispvm")))
            }
            "maxmem" => Some(self.default_maxmem(d, next).to_string()),
            "memory" => from_tpl("memory").or_else(|| s("400")),
            "vcpus" => from_tpl("vcpus").or_else(|| s("2")),
            "qrexec_timeout" => {
                from_tpl("qrexec_timeout").or_else(|| Some(self.gval("default_qrexec_timeout")))
            }
            "shutdown_timeout" => {
                from_tpl("shutdown_timeout").or_else(|| Some(self.gval("default_shutdown_timeout")))
            }
            "netvm" => Some(self.default_netvm(d)),
            "virt_mode" => Some(self.eff_virt_mode(d, depth).name().to_owned()),
            "ip" => Some(if self.is_networked(d, next) {
                ip_for_qid(self.qid_of(d))
            } else {
                String::new()
            }),
            "ip6" => Some(
                if self.is_networked(d, next) && self.ipv6_enabled(d, next) {
                    ip6_for_qid(self.qid_of(d))
                } else {
                    String::new()
                },
            ),
            _ => None,
        }
    }

    /// The value of a computed or fixed property.
    pub(crate) fn computed(&self, d: &Domain, name: &str, depth: usize) -> String {
        let next = depth + 1;
        let admin = d.class == QubeClass::AdminVM;
        let netvm = self.qval(d, "netvm", next);
        let net = (!netvm.is_empty()).then(|| self.dom(&netvm)).flatten();
        let v6 = self.ipv6_enabled(d, next);
        match name {
            "klass" => d.class.name().to_owned(),
            "icon" => self.icon(d, next),
            "updateable" => {
                let own_root = !(d.class.is_template_based() || d.class == QubeClass::RemoteVM);
                py_bool_text(if own_root { "True" } else { "False" })
            }
            "name" => d.name.to_string(),
            "qid" => d.record.qid.to_string(),
            "uuid" if admin => DOM0_UUID.to_owned(),
            "maxmem" if admin => self.host.dom0_mem_mib.to_string(),
            "xid" | "stubdom_xid" => if admin && name == "xid" { "0" } else { "-1" }.to_owned(),
            "is_preload" => "False".to_owned(),
            "dns" if net.is_some() => "10.139.1.1 10.139.1.2".to_owned(),
            "gateway" if self.provides_network(d, next) => self.qval(d, "visible_ip", next),
            "gateway6" if self.provides_network(d, next) && v6 => self.qval(d, "visible_ip6", next),
            "visible_ip" if self.is_networked(d, next) => self.qval(d, "ip", next),
            "visible_ip6" if self.is_networked(d, next) && v6 => self.qval(d, "ip6", next),
            "visible_gateway" => net
                .map(|n| self.qval(n, "gateway", next))
                .unwrap_or_default(),
            "visible_gateway6" => net
                .map(|n| self.qval(n, "gateway6", next))
                .unwrap_or_default(),
            "visible_netmask" if net.is_some() => "255.255.255.255".to_owned(),
            _ => String::new(),
        }
    }

    fn icon(&self, d: &Domain, depth: usize) -> String {
        let label = self.qval(d, "label", depth);
        let kind = match d.class {
            QubeClass::AdminVM => "adminvm",
            QubeClass::TemplateVM => "templatevm",
            QubeClass::StandaloneVM if !self.tfd(d, depth) => "standalonevm",
            _ if self.tfd(d, depth) => "templatevm",
            QubeClass::DispVM => "dispvm",
            _ if truthy(d.feature("servicevm")) => "servicevm",
            _ => "appvm",
        };
        format!("{kind}-{label}")
    }

    /// `template_for_dispvms` is on.
    pub(crate) fn tfd(&self, d: &Domain, depth: usize) -> bool {
        qube_prop(d.class, "template_for_dispvms").is_some()
            && self.qval(d, "template_for_dispvms", depth) == "True"
    }

    /// `provides_network` is on.
    pub(crate) fn provides_network(&self, d: &Domain, depth: usize) -> bool {
        qube_prop(d.class, "provides_network").is_some()
            && self.qval(d, "provides_network", depth) == "True"
    }

    fn is_networked(&self, d: &Domain, depth: usize) -> bool {
        self.provides_network(d, depth) || !self.qval(d, "netvm", depth).is_empty()
    }

    fn ipv6_enabled(&self, d: &Domain, depth: usize) -> bool {
        truthy(self.feature_with_template(d, "ipv6", depth).as_deref())
    }

    /// The global `default_netvm`, unless that is the qube itself; TemplateVMs: none.
    pub(crate) fn default_netvm(&self, d: &Domain) -> String {
        if d.class == QubeClass::TemplateVM {
            return String::new();
        }
        let g = self.gval("default_netvm");
        if g == d.name.as_str() {
            String::new()
        } else {
            g
        }
    }

    /// The netvm a qube would have if the global default were `new_default`.
    pub(crate) fn netvm_with_default(&self, d: &Domain, new_default: &str) -> String {
        if qube_prop(d.class, "netvm").is_none() {
            return String::new();
        }
        match d.prop("netvm") {
            Some(v) => v.to_owned(),
            None if d.class == QubeClass::TemplateVM => String::new(),
            None if new_default == d.name.as_str() => String::new(),
            None => new_default.to_owned(),
        }
    }

    /// Effective `virt_mode` (§5.4): explicit, else hvm with PCI, else the
    /// template's, else pvh.
    pub(crate) fn eff_virt_mode(&self, d: &Domain, depth: usize) -> VirtMode {
        if let Some(m) = d.prop("virt_mode").and_then(|v| v.parse::<VirtMode>().ok()) {
            return m;
        }
        if d.has_pci() {
            return VirtMode::Hvm;
        }
        match self.template_of(d) {
            Some(t) if depth < MAX_CHAIN => self.eff_virt_mode(t, depth + 1),
            _ => VirtMode::Pvh,
        }
    }

    /// An effective integer property (0 when unparsable).
    pub(crate) fn eff_int(&self, d: &Domain, name: &str, depth: usize) -> i64 {
        py_int(&self.qval(d, name, depth)).unwrap_or(0)
    }

    fn default_maxmem(&self, d: &Domain, depth: usize) -> i64 {
        if !self.memory_balancing_possible(d, depth) {
            return 0;
        }
        if let Some(t) = self.template_of(d).filter(|_| depth < MAX_CHAIN) {
            return self.eff_int(t, "maxmem", depth + 1);
        }
        let base = if d.feature("os") == Some("Linux") {
            self.eff_int(d, "memory", depth).saturating_mul(10)
        } else {
            4000
        };
        let half = i64::try_from(self.host.mem_mib / 2).unwrap_or(i64::MAX);
        base.min(half)
    }

    /// Qubes' `is_memory_balancing_possible`: no PCI device assigned, and an
    /// HVM qube must run qrexec and the meminfo writer.
    pub(crate) fn memory_balancing_possible(&self, d: &Domain, depth: usize) -> bool {
        if d.has_pci() {
            return false;
        }
        if self.eff_virt_mode(d, depth) == VirtMode::Hvm {
            let qrexec = truthy(self.feature_with_template(d, "qrexec", depth).as_deref());
            let meminfo = truthy(
                self.feature_with_template(d, "supported-service.meminfo-writer", depth)
                    .as_deref(),
            );
            return qrexec && meminfo;
        }
        true
    }

    fn default_kernelopts(&self, d: &Domain, depth: usize) -> String {
        let kernel = self.qval(d, "kernel", depth);
        if kernel.is_empty() {
            return String::new();
        }
        let facts = self.host.kernels.get(&kernel);
        if d.has_pci() {
            let mut opts = facts
                .and_then(|k| k.kernelopts_pci.clone())
                .unwrap_or_default();
            let s0ix = self
                .dom("dom0")
                .is_some_and(|dom0| truthy(dom0.feature("suspend-s0ix")));
            if s0ix {
                opts.push_str(" qubes_exp_pm_use_suspend=1");
            }
            return opts;
        }
        if let Some(t) = self.template_of(d).filter(|_| depth < MAX_CHAIN) {
            return self.qval(t, "kernelopts", depth + 1);
        }
        facts
            .and_then(|k| k.kernelopts_nopci.clone())
            .unwrap_or_else(|| "swiotlb=2048".to_owned())
    }

    fn default_keyboard_layout(&self, d: &Domain, depth: usize) -> String {
        let guivm = self.qval(d, "guivm", depth);
        match self.dom(&guivm) {
            Some(g) if g.name != d.name && depth < MAX_CHAIN => {
                self.qval(g, "keyboard_layout", depth + 1)
            }
            _ => "us++".to_owned(),
        }
    }

    /// A global property's value as `Get` shows it: `(is_default, text)`.
    pub(crate) fn global_value(&self, def: &PropDef) -> (bool, String) {
        if def.kind == Kind::Fixed {
            return (true, self.global_default(def.name).unwrap_or_default());
        }
        match self.doc.properties.get(def.name) {
            Some(v) => (
                false,
                match def.san {
                    San::Bool => py_bool_text(v.as_str()),
                    San::Int => {
                        py_int(v.as_str()).map_or_else(|| v.as_str().to_owned(), |i| i.to_string())
                    }
                    _ => v.as_str().to_owned(),
                },
            ),
            None => (true, self.global_default(def.name).unwrap_or_default()),
        }
    }

    /// A global property's effective value by name ("" when none).
    pub(crate) fn gval(&self, name: &str) -> String {
        global_prop(name)
            .map(|d| self.global_value(d).1)
            .unwrap_or_default()
    }

    /// A global property's default; `None` when it has none.
    pub(crate) fn global_default(&self, name: &str) -> Option<String> {
        let s = |v: &str| Some(v.to_owned());
        match name {
            "check_updates_vm" => s("True"),
            "default_audiovm" | "default_guivm" => s("dom0"),
            "clockvm" | "default_dispvm" | "default_netvm" | "management_dispvm" | "updatevm" => {
                s("")
            }
            "default_qrexec_timeout" | "default_shutdown_timeout" => s("60"),
            "stats_interval" => s("3"),
            "maxmem" => Some(self.host.mem_mib.to_string()),
            "no_cpus" => Some(self.host.cpus.to_string()),
            "default_pool_kernel"
            | "default_pool_private"
            | "default_pool_root"
            | "default_pool_volatile" => self
                .doc
                .properties
                .get("default_pool")
                .map(|v| v.as_str().to_owned()),
            _ => None,
        }
    }

    /// Qube names some other qube's effective netvm chain passes through,
    /// starting at `start` (inclusive), with `new_default` as the global
    /// default netvm.
    pub(crate) fn netvm_chain(&self, start: &str, new_default: Option<&str>) -> Vec<String> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let mut cur = start.to_owned();
        while !cur.is_empty() && seen.insert(cur.clone()) && out.len() <= MAX_CHAIN {
            out.push(cur.clone());
            let Some(d) = self.dom(&cur) else { break };
            cur = match new_default {
                Some(nd) => self.netvm_with_default(d, nd),
                None => self.qval(d, "netvm", 0),
            };
        }
        out
    }
}
