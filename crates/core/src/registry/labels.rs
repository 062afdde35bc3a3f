//! Labels: `admin.label.List/Get/Index` (spec/admin-api.md §9.12).

use qpci_store::LabelRecord;

use super::{ExcType, Registry, RegistryError};

/// Qubes' eight built-in labels: index, name, colour.
pub(crate) const DEFAULT_LABELS: [(u32, &str, &str); 8] = [
    (1, "red", "0xcc0000"),
    (2, "orange", "0xf57900"),
    (3, "yellow", "0xedd400"),
    (4, "green", "0x73d216"),
    (5, "gray", "0x555555"),
    (6, "blue", "0x3465a4"),
    (7, "purple", "0x75507b"),
    (8, "black", "0x000000"),
];

/// The safe set a label name must be drawn from.
pub(crate) const LABEL_SAFE_SET: &str =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.";

/// One label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// The index (`label-<index>`).
    pub index: u32,
    /// The name, e.g. `red`.
    pub name: String,
    /// The colour, e.g. `0xcc0000`.
    pub color: String,
}

/// The built-in labels as records.
pub(crate) fn default_label_records() -> Vec<LabelRecord> {
    DEFAULT_LABELS
        .iter()
        .map(|(i, name, color)| LabelRecord {
            id: format!("label-{i}"),
            color: (*color).to_owned(),
            name: (*name).to_owned(),
            extra: Default::default(),
        })
        .collect()
}

fn index_of(rec: &LabelRecord) -> Option<u32> {
    rec.id.strip_prefix("label-")?.parse().ok()
}

/// `QubesInvalidLabelError` for a name outside the safe set.
pub(crate) fn unsafe_label() -> RegistryError {
    RegistryError::new(
        ExcType::QubesInvalidLabelError,
        format!("Label must be in safe set: {LABEL_SAFE_SET}"),
    )
}

impl Registry {
    /// Every label, in index order (`admin.label.List`).
    pub fn labels(&self) -> Vec<Label> {
        let mut v: Vec<Label> = self
            .doc
            .labels
            .iter()
            .map(|l| Label {
                index: index_of(l).unwrap_or(0),
                name: l.name.clone(),
                color: l.color.clone(),
            })
            .collect();
        v.sort_by_key(|l| l.index);
        v
    }

    /// `admin.label.Get`/`Index`: a label by name or index. Errors:
    /// `QubesInvalidLabelError` (characters), `QubesLabelNotFoundError`.
    pub fn label(&self, untrusted: &str) -> Result<Label, RegistryError> {
        if !untrusted.chars().all(|c| LABEL_SAFE_SET.contains(c)) {
            return Err(unsafe_label());
        }
        let by_index = untrusted.parse::<u32>().ok();
        self.labels()
            .into_iter()
            .find(|l| l.name == untrusted || (by_index.is_some() && Some(l.index) == by_index))
            .ok_or_else(|| {
                RegistryError::new(
                    ExcType::QubesLabelNotFoundError,
                    format!("Label does not exist: {untrusted}"),
                )
            })
    }

    /// A label by reference as stored or sent: its id (`label-3`), name, or index.
    pub(crate) fn label_by_ref(&self, r: &str) -> Option<&LabelRecord> {
        if r.is_empty() {
            return None;
        }
        let by_index = r
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| r.parse::<u32>().ok())
            .flatten();
        self.doc
            .labels
            .iter()
            .find(|l| l.id == r || l.name == r || (by_index.is_some() && index_of(l) == by_index))
    }
}
