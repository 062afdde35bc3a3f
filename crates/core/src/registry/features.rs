//! Features: `admin.vm.feature.*` (spec/admin-api.md §9.10).

use super::{Domain, ExcType, MAX_CHAIN, Registry, RegistryError};

fn not_found(qube: &str, name: &str) -> RegistryError {
    RegistryError::new(
        ExcType::QubesFeatureNotFoundError,
        format!("Feature not set for domain {qube}: {name}"),
    )
}

impl Registry {
    /// The qube's feature names in insertion order (`admin.vm.feature.List`).
    pub fn features(&self, qube: &str) -> Result<Vec<String>, RegistryError> {
        Ok(self.dom_or_err(qube)?.feature_order.clone())
    }

    /// A feature's raw value (`admin.vm.feature.Get`).
    pub fn feature(&self, qube: &str, name: &str) -> Result<String, RegistryError> {
        let d = self.dom_or_err(qube)?;
        d.feature(name)
            .map(str::to_owned)
            .ok_or_else(|| not_found(qube, name))
    }

    /// The value from the qube, else from its template, recursively
    /// (`admin.vm.feature.CheckWithTemplate`).
    pub fn feature_check_with_template(
        &self,
        qube: &str,
        name: &str,
    ) -> Result<String, RegistryError> {
        let d = self.dom_or_err(qube)?;
        self.feature_with_template(d, name, 0)
            .ok_or_else(|| not_found(qube, name))
    }

    /// Sets a feature (`admin.vm.feature.Set`); an empty value means false.
    pub fn set_feature(
        &mut self,
        qube: &str,
        untrusted_name: &str,
        untrusted_value: &[u8],
    ) -> Result<(), RegistryError> {
        self.dom_or_err(qube)?;
        let Some(value) = std::str::from_utf8(untrusted_value)
            .ok()
            .filter(|v| v.is_ascii())
        else {
            return Err(RegistryError::protocol(
                "Feature value contains non-ASCII characters",
            ));
        };
        let name_ok = !untrusted_name.is_empty()
            && untrusted_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !name_ok {
            return Err(RegistryError::protocol(
                "feature name contains illegal characters",
            ));
        }
        if !value.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            return Err(RegistryError::protocol(format!(
                "{untrusted_name} value contains illegal characters"
            )));
        }
        self.set_feature_raw(qube, untrusted_name, value);
        Ok(())
    }

    /// Removes a feature (`admin.vm.feature.Remove`).
    pub fn remove_feature(&mut self, qube: &str, name: &str) -> Result<(), RegistryError> {
        let d = self.dom_or_err(qube)?;
        if d.feature(name).is_none() {
            return Err(not_found(qube, name));
        }
        self.remove_feature_raw(qube, name);
        Ok(())
    }

    /// The feature on the qube or up its template chain.
    pub(crate) fn feature_with_template(
        &self,
        d: &Domain,
        name: &str,
        depth: usize,
    ) -> Option<String> {
        if let Some(v) = d.feature(name) {
            return Some(v.to_owned());
        }
        match self.template_of(d) {
            Some(t) if depth < MAX_CHAIN => self.feature_with_template(t, name, depth + 1),
            _ => None,
        }
    }

    /// Sets a feature without checks (validated callers only).
    pub(crate) fn set_feature_raw(&mut self, qube: &str, name: &str, value: &str) {
        if let Some(d) = self.dom_mut(qube)
            && d.record
                .features
                .insert(name.to_owned(), value.to_owned())
                .is_none()
        {
            d.feature_order.push(name.to_owned());
        }
    }

    /// Removes a feature if present.
    pub(crate) fn remove_feature_raw(&mut self, qube: &str, name: &str) {
        if let Some(d) = self.dom_mut(qube) {
            d.record.features.remove(name);
            d.feature_order.retain(|n| n != name);
        }
    }
}
