//! §9.7 step 3: each property's own checks, then the change (`Set`,
//! `Reset`, for qubes and globals). Everything is checked before anything
//! is changed.

use qpci_store::PropertyValue;
use qpci_types::QubeName;

use super::catalogue::{Kind, PropDef};
use super::sanitize::Value;
use super::truthy;
use crate::registry::{Domain, ExcType, PowerState, QubeClass, Registry, RegistryError};

type Power<'a> = &'a dyn Fn(&QubeName) -> PowerState;

fn pve(m: impl Into<String>) -> RegistryError {
    RegistryError::property_value(m)
}

fn ve(m: impl Into<String>) -> RegistryError {
    RegistryError::value(m)
}

fn write_once(name: &str) -> RegistryError {
    pve(format!("property '{name}' is write-once and already set"))
}

impl Registry {
    pub(super) fn set_checked(
        &mut self,
        qube: &str,
        def: &PropDef,
        value: Value,
        power: Power<'_>,
    ) -> Result<(), RegistryError> {
        let d = self.dom_or_err(qube)?;
        match def.kind {
            Kind::Normal => {}
            Kind::WriteOnce => return Err(write_once(def.name)),
            Kind::Computed | Kind::Fixed => {
                return Err(pve(format!(
                    "property '{}' on {} instance cannot be set",
                    def.name, d.class
                )));
            }
        }
        let stored = self.check_qube_value(d, def, &value, power)?;
        self.apply_qube(qube, def.name, Some(stored));
        Ok(())
    }

    pub(super) fn reset_checked(
        &mut self,
        qube: &str,
        def: &PropDef,
        power: Power<'_>,
    ) -> Result<(), RegistryError> {
        let d = self.dom_or_err(qube)?;
        match def.kind {
            Kind::Normal => {}
            Kind::WriteOnce => return Err(write_once(def.name)),
            Kind::Computed | Kind::Fixed => return Ok(()),
        }
        match def.name {
            "label" => return Err(ve("Property 'label' cannot be reset")),
            "template" => {
                let global = if d.class == QubeClass::DispVM {
                    "default_dispvm"
                } else {
                    "default_template"
                };
                let dflt = self.gval(global);
                return Err(ve(if dflt.is_empty() {
                    "Cannot unset template".to_owned()
                } else {
                    format!(
                        "Cannot unset template. You can set it to the current default ({dflt}) instead"
                    )
                }));
            }
            "netvm" => {
                let new = self.default_netvm(d);
                self.check_netvm(d, &new, power)?;
            }
            "maxmem" => {
                let new = self
                    .qube_default(d, "maxmem", 0)
                    .and_then(|v| super::py_int(&v))
                    .unwrap_or(0);
                self.check_maxmem_change(d, new, power)?;
            }
            "provides_network" => self.check_network_unused(d)?,
            "template_for_dispvms" => self.check_tfd_unused(d)?,
            _ => {}
        }
        self.apply_qube(qube, def.name, None);
        Ok(())
    }

    fn check_qube_value(
        &self,
        d: &Domain,
        def: &PropDef,
        value: &Value,
        power: Power<'_>,
    ) -> Result<PropertyValue, RegistryError> {
        let text = value.stored();
        let name = def.name;
        match (name, value) {
            ("label", _) => {
                let label = self.label_by_ref(&text).ok_or_else(|| {
                    RegistryError::new(
                        ExcType::QubesLabelNotFoundError,
                        format!("Label does not exist: {text}"),
                    )
                })?;
                return Ok(PropertyValue::Ref(label.id.clone()));
            }
            ("virt_mode", _) => {
                let mode = text.to_ascii_lowercase();
                if !matches!(mode.as_str(), "hvm" | "pv" | "pvh") {
                    return Err(pve(
                        "Invalid virtualization mode, supported values: hvm, pv, pvh",
                    ));
                }
                if mode == "pvh" && d.has_pci() {
                    return Err(pve("pvh mode can't be set if pci devices are assigned"));
                }
                return Ok(PropertyValue::Text(mode));
            }
            (
                "memory" | "vcpus" | "qrexec_timeout" | "shutdown_timeout" | "stubdom_mem",
                Value::Int(i),
            ) if *i <= 0 => return Err(pve(format!("{name} must be positive"))),
            ("maxmem", Value::Int(i)) => {
                if *i < 0 {
                    return Err(pve("maxmem must be positive or zero"));
                }
                self.check_maxmem_change(d, *i, power)?;
            }
            ("netvm", _) => self.check_netvm(d, &text, power)?,
            ("audiovm" | "guivm", Value::Vm(Some(t))) => {
                self.must_exist(name, t)?;
            }
            ("default_dispvm" | "management_dispvm", Value::Vm(Some(t))) => {
                let target = self.must_exist(name, t)?;
                if !self.tfd(target, 0) {
                    return Err(pve(format!(
                        "Cannot set invalid property to qube '{}', {name} '{t}' has template_for_dispvms set to False",
                        d.name
                    )));
                }
            }
            ("default_user", _) => {
                let ok = text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+' | ',' | '.'));
                if !ok {
                    return Err(pve(
                        "Username can contain only those characters: abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+,.",
                    ));
                }
            }
            ("devices_denied", _) => return devices_denied(&text).map(PropertyValue::Text),
            ("kernel", _) => self.check_kernel(&text)?,
            ("kernelopts", _) if text.chars().count() > 512 => {
                return Err(pve("Kernelopts value too long (512 chars max)"));
            }
            ("keyboard_layout", _) => keyboard_layout(&text)?,
            ("mac", _) if !is_mac(&text) => return Err(pve("Invalid MAC address value")),
            ("provides_network", Value::Bool(false)) => self.check_network_unused(d)?,
            ("template_for_dispvms", Value::Bool(false)) => self.check_tfd_unused(d)?,
            ("template", Value::Vm(None)) => {
                return Err(pve(format!(
                    "Invalid value None for property 'template' of {}",
                    d.name
                )));
            }
            ("template", Value::Vm(Some(t))) => {
                let target = self.must_exist(name, t)?;
                if d.class == QubeClass::DispVM {
                    if !(target.class == QubeClass::AppVM && self.tfd(target, 0)) {
                        return Err(ve(format!(
                            "template for disposable ({t}) needs to be an AppVM with template_for_dispvms=True"
                        )));
                    }
                } else if target.class != QubeClass::TemplateVM {
                    return Err(wrong_class(t.as_str(), target.class));
                }
                if power(&d.name) != PowerState::Halted {
                    return Err(RegistryError::new(
                        ExcType::QubesVMNotHaltedError,
                        "Cannot change template while qube is running",
                    ));
                }
            }
            _ => {}
        }
        Ok(PropertyValue::Text(text))
    }

    fn must_exist(&self, prop: &str, target: &QubeName) -> Result<&Domain, RegistryError> {
        self.dom(target.as_str())
            .ok_or_else(|| pve(format!("Can't set {prop} to non-existing qube {target}")))
    }

    fn check_netvm(&self, d: &Domain, target: &str, power: Power<'_>) -> Result<(), RegistryError> {
        if target.is_empty() {
            return Ok(());
        }
        let Some(t) = self.dom(target) else {
            return Err(pve(format!(
                "Can't set netvm to non-existing qube {target}"
            )));
        };
        if !self.provides_network(t, 0) {
            return Err(ve(format!("The {target} qube does not provide network")));
        }
        let chain = self.netvm_chain(target, None);
        if chain.iter().any(|n| n == d.name.as_str()) {
            return Err(ve("Loops in network are unsupported"));
        }
        if power(&d.name).is_active() && !power(&t.name).is_active() {
            return Err(RegistryError::new(
                ExcType::QubesVMNotStartedError,
                format!("Cannot dynamically attach to stopped qube {target}"),
            ));
        }
        Ok(())
    }

    fn check_maxmem_change(
        &self,
        d: &Domain,
        new: i64,
        power: Power<'_>,
    ) -> Result<(), RegistryError> {
        let running = power(&d.name) != PowerState::Halted;
        let hotplug = truthy(
            self.feature_with_template(d, "memory-hotplug", 0)
                .as_deref(),
        );
        if running && !hotplug && new != self.eff_int(d, "maxmem", 0) {
            return Err(RegistryError::new(
                ExcType::QubesVMNotHaltedError,
                format!(
                    "Can't change maxmem of VM {}, because it isn't Halted and memory hotplug is forbidden",
                    d.name
                ),
            ));
        }
        Ok(())
    }

    fn check_network_unused(&self, d: &Domain) -> Result<(), RegistryError> {
        let used = self
            .domains
            .iter()
            .any(|o| o.name != d.name && self.qval(o, "netvm", 0) == d.name.as_str());
        if used {
            return Err(ve(
                "The qube is still used by other qubes, change theirs 'netvm' first",
            ));
        }
        Ok(())
    }

    fn check_tfd_unused(&self, d: &Domain) -> Result<(), RegistryError> {
        let me = d.name.as_str();
        if !self.tfd(d, 0) {
            return Ok(());
        }
        if self.gval("default_dispvm") == me || self.gval("management_dispvm") == me {
            return Err(RegistryError::new(
                ExcType::QubesVMInUseError,
                "Cannot change template_for_dispvms to False while it is in use by the system by any of these properties: default_dispvm, management_dispvm",
            ));
        }
        let used = self.domains.iter().any(|o| {
            self.qval(o, "default_dispvm", 0) == me
                || self.qval(o, "management_dispvm", 0) == me
                || (o.class == QubeClass::DispVM && o.prop("template") == Some(me))
        });
        if used {
            return Err(RegistryError::new(
                ExcType::QubesVMInUseError,
                "Cannot change template_for_dispvms to False while it is the disposable template of a qube by any of these properties: default_dispvm, management_dispvm, template",
            ));
        }
        Ok(())
    }

    fn check_kernel(&self, k: &str) -> Result<(), RegistryError> {
        if k.is_empty() {
            return Ok(());
        }
        if k.contains('/') {
            return Err(pve("Kernel name cannot contain '/'"));
        }
        match self.host.kernels.get(k) {
            None => Err(pve(format!("Kernel '{k}' not installed"))),
            Some(f) if !f.vmlinuz => Err(pve(format!(
                "Kernel '{k}' not properly installed: missing 'vmlinuz' file"
            ))),
            Some(_) => Ok(()),
        }
    }

    /// Stores (or, with `None`, forgets) a qube property, keeping the
    /// `audiovm-*`/`guivm-*` tags in step.
    fn apply_qube(&mut self, qube: &str, name: &str, new: Option<PropertyValue>) {
        let tagged = matches!(name, "audiovm" | "guivm");
        let before = self
            .dom(qube)
            .filter(|_| tagged)
            .map(|d| self.qval(d, name, 0));
        if let Some(d) = self.dom_mut(qube) {
            match new {
                Some(v) => {
                    d.record.properties.insert(name.to_owned(), v);
                }
                None => {
                    d.record.properties.remove(name);
                }
            }
        }
        let Some(before) = before else { return };
        let after = self
            .dom(qube)
            .map(|d| self.qval(d, name, 0))
            .unwrap_or_default();
        if after != before
            && let Some(d) = self.dom_mut(qube)
        {
            d.record.tags.remove(&format!("{name}-{before}"));
            if !after.is_empty() {
                d.record.tags.insert(format!("{name}-{after}"));
            }
        }
    }

    pub(super) fn set_global_checked(
        &mut self,
        def: &PropDef,
        value: Value,
    ) -> Result<(), RegistryError> {
        let name = def.name;
        if def.kind == Kind::Fixed {
            return Err(pve(format!(
                "property '{name}' on Qubes instance cannot be set"
            )));
        }
        let text = value.stored();
        if let Value::Vm(Some(t)) = &value {
            let target = self.must_exist(name, t)?;
            match name {
                "default_template" if target.class != QubeClass::TemplateVM => {
                    return Err(wrong_class(t.as_str(), target.class));
                }
                "default_dispvm" | "management_dispvm" if !self.tfd(target, 0) => {
                    return Err(pve(format!(
                        "Cannot set invalid property to system, {name} '{t}' has template_for_dispvms set to False"
                    )));
                }
                "default_netvm" => self.check_default_netvm(t.as_str())?,
                _ => {}
            }
        }
        match name {
            "default_kernel" => self.check_kernel(&text)?,
            n if n.starts_with("default_pool") && self.gval(n) != text => {
                return Err(pve("No such storage pool"));
            }
            _ => {}
        }
        self.apply_global(name, Some(text));
        Ok(())
    }

    pub(super) fn reset_global_checked(&mut self, def: &PropDef) -> Result<(), RegistryError> {
        if def.kind == Kind::Fixed {
            return Ok(());
        }
        self.apply_global(def.name, None);
        Ok(())
    }

    fn check_default_netvm(&self, new: &str) -> Result<(), RegistryError> {
        for q in self.names() {
            let Some(d) = self.dom(q.as_str()) else {
                continue;
            };
            let follows = d.prop("netvm").is_none()
                && !matches!(
                    d.class,
                    QubeClass::TemplateVM | QubeClass::AdminVM | QubeClass::RemoteVM
                );
            if !follows {
                continue;
            }
            let chain = self.netvm_chain(new, Some(new));
            if new == q.as_str() || chain.iter().any(|n| n == q.as_str()) {
                return Err(pve(format!("Network loop on '{q}'")));
            }
        }
        Ok(())
    }

    fn apply_global(&mut self, name: &str, new: Option<String>) {
        let old = self.gval(name);
        match new {
            Some(v) => {
                self.doc
                    .properties
                    .insert(name.to_owned(), PropertyValue::Text(v));
            }
            None => {
                self.doc.properties.remove(name);
            }
        }
        if name == "clockvm" {
            let now = self.gval(name);
            if now != old {
                if !old.is_empty() {
                    self.remove_feature_raw(&old, "service.clocksync");
                }
                if !now.is_empty() {
                    self.set_feature_raw(&now, "service.clocksync", "1");
                }
            }
        }
    }
}

fn wrong_class(name: &str, class: QubeClass) -> RegistryError {
    pve(format!(
        "wrong VM class: domains['{name}'] is of type {class} and not TemplateVM"
    ))
}

fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn keyboard_layout(s: &str) -> Result<(), RegistryError> {
    let parts: Vec<&str> = s.split('+').collect();
    let [layout, variant, options] = parts.as_slice() else {
        return Err(pve("invalid number of keyboard layout parameters"));
    };
    if layout.is_empty() || !layout.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(pve("Invalid keyboard layout provided"));
    }
    if !variant
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
    {
        return Err(pve("Invalid layout variant provided"));
    }
    if !options
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | ',' | '-'))
    {
        return Err(pve("Invalid layout options provided"));
    }
    Ok(())
}

/// `devices_denied`: 7-character interface codes, stored deduplicated and sorted.
fn devices_denied(s: &str) -> Result<String, RegistryError> {
    let n = s.len();
    if !n.is_multiple_of(7) {
        return Err(ve(format!(
            "Invalid length of interfaces='{s}' (is {n}, expected multiple of 7)"
        )));
    }
    let mut codes: Vec<&str> = (0..n / 7).filter_map(|i| s.get(i * 7..i * 7 + 7)).collect();
    codes.sort_unstable();
    codes.dedup();
    let valid = codes.iter().all(|c| {
        let mut b = c.bytes();
        b.next().is_some_and(|f| b"bump*".contains(&f))
            && b.all(|h| h.is_ascii_digit() || (b'a'..=b'f').contains(&h) || h == b'*')
    });
    if !valid {
        return Err(pve(
            "Interface code list should be in the form chhhhhhchhhhhh...,where c is one of \"b\", \"u\", \"m\", \"p\", \"*\" and h is a hexdigit or \"*\".",
        ));
    }
    Ok(codes.concat())
}
