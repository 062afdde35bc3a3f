//! Tags: `admin.vm.tag.*` (spec/admin-api.md §9.11).

use super::{ExcType, Registry, RegistryError};

fn check_tag(untrusted: &str) -> Result<(), RegistryError> {
    if untrusted.is_empty() {
        return Err(RegistryError::protocol("expected an argument"));
    }
    if !untrusted
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
    {
        return Err(RegistryError::new(
            ExcType::QubesInvalidTagError,
            "disallowed characters",
        ));
    }
    Ok(())
}

impl Registry {
    /// The qube's tags, sorted (`admin.vm.tag.List`).
    pub fn tags(&self, qube: &str) -> Result<Vec<String>, RegistryError> {
        Ok(self.dom_or_err(qube)?.record.tags.iter().cloned().collect())
    }

    /// Whether the tag is set (`admin.vm.tag.Get`).
    pub fn has_tag(&self, qube: &str, untrusted_tag: &str) -> Result<bool, RegistryError> {
        let d = self.dom_or_err(qube)?;
        check_tag(untrusted_tag)?;
        Ok(d.record.tags.contains(untrusted_tag))
    }

    /// Sets a tag; setting it again is fine (`admin.vm.tag.Set`).
    pub fn set_tag(&mut self, qube: &str, untrusted_tag: &str) -> Result<(), RegistryError> {
        self.dom_or_err(qube)?;
        check_tag(untrusted_tag)?;
        if let Some(d) = self.dom_mut(qube) {
            d.record.tags.insert(untrusted_tag.to_owned());
        }
        Ok(())
    }

    /// Removes a tag (`admin.vm.tag.Remove`); `QubesTagNotFoundError` when unset.
    pub fn remove_tag(&mut self, qube: &str, untrusted_tag: &str) -> Result<(), RegistryError> {
        let d = self.dom_or_err(qube)?;
        check_tag(untrusted_tag)?;
        if !d.record.tags.contains(untrusted_tag) {
            return Err(RegistryError::new(
                ExcType::QubesTagNotFoundError,
                format!("Tag not set for domain {qube}: {untrusted_tag}"),
            ));
        }
        if let Some(d) = self.dom_mut(qube) {
            d.record.tags.remove(untrusted_tag);
        }
        Ok(())
    }
}
