//! The caller's word on which domains changed since the last successful
//! save: the hint [`StateFile::save_changed`](crate::StateFile::save_changed)
//! takes so a save costs in proportion to the change, not to the file.

use std::collections::BTreeSet;

/// The qids of the domains that changed (or are new) since the last
/// successful save of a [`StateFile`](crate::StateFile); removed domains
/// need not be listed (they are simply absent from the next state).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangedSet {
    // A B-tree: usually a handful of qids, looked up once per domain saved.
    qids: BTreeSet<u32>,
}

impl ChangedSet {
    /// An empty set: nothing changed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares the domain with this qid changed.
    pub fn insert(&mut self, qid: u32) {
        self.qids.insert(qid);
    }

    /// Whether the domain with this qid is declared changed.
    pub fn contains(&self, qid: u32) -> bool {
        self.qids.contains(&qid)
    }

    /// How many qids are declared changed.
    pub fn len(&self) -> usize {
        self.qids.len()
    }

    /// Whether nothing is declared changed.
    pub fn is_empty(&self) -> bool {
        self.qids.is_empty()
    }

    /// The declared qids, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.qids.iter().copied()
    }
}

impl FromIterator<u32> for ChangedSet {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        Self {
            qids: iter.into_iter().collect(),
        }
    }
}

impl Extend<u32> for ChangedSet {
    fn extend<I: IntoIterator<Item = u32>>(&mut self, iter: I) {
        self.qids.extend(iter);
    }
}
