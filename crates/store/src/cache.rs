//! What a [`StateFile`](crate::StateFile) remembers of its last save, so the
//! next one redoes only what changed.
//!
//! A save of a few thousand qubes usually changes one of them. For each domain
//! of the last save the cache keeps where its `<domain>` element is in the
//! last text, and an exact encoding of the record: every field, foreign
//! content and layout included, each string with its length, so two records
//! have the same encoding exactly when they are equal (`==`). A domain of the
//! next save whose record encodes to the cached bytes of the same qid is
//! written by copying its old text, which is what serialising it would give
//! (the writer is a function of the record and its depth), and its own checks
//! are skipped, as they passed for an equal record (see
//! [`validate::check_known`](crate::validate::check_known)). Comparing with
//! the encoding reads the new record once and the cache sequentially, without
//! a hash that could collide or a clone of every record.
//!
//! The cache is only filled from a save that passed every check and reached
//! the disk, or from the file `StateFile::open` loaded when that file is
//! byte for byte what a save of its parsed records writes (see
//! [`SaveCache::seed`]); a failed save leaves it as it was. A changed domain
//! is encoded once its text stops changing (the next save that writes it the
//! same), so saves that change everything do not pay for encodings they
//! cannot use.
//!
//! A caller that knows which domains changed since the last successful save
//! (the daemon does, from its registry) passes them as a
//! [`ChangedSet`](crate::ChangedSet): every other domain with a cached entry
//! of its qid is then taken as equal without comparing anything, so the save
//! does no work per unchanged domain beyond copying its text. Debug builds
//! keep a copy of each saved record and check every such claim, so a test
//! that misses a change gets an error instead of a file that lies.
//!
//! Copying is not even a copy: the domains' texts live in an arena, and a
//! save is written as runs (`writev`), each either of its own buffer (the
//! parts around the domains, the domains it wrote) or of the arena (the
//! domains it copied, consecutive ones in one run). The domains a save
//! wrote are appended to the arena when it reached the disk. The arena is
//! rebuilt (one save copies every domain into its own buffer, which becomes
//! the arena) when it holds more dead text than live, or when the file has
//! fragmented into too many runs.

mod enc;

use std::collections::HashMap;
use std::io::IoSlice;
use std::ops::Range;

use self::enc::{Cmp, Enc};
use crate::changed::ChangedSet;
#[cfg(debug_assertions)]
use crate::model::DomainRecord;
use crate::model::{LabelRecord, QubesXml};
use crate::validate::Known;

/// A domain of the last save.
struct Entry {
    qid: u32,
    name: String,
    /// Its `<domain>` element (with the foreign nodes before it) in the arena.
    span: Range<usize>,
    /// Its record's encoding in `enc`, when it was encoded.
    enc: Option<Range<usize>>,
    /// The record as saved, to check the claims of a [`ChangedSet`] (debug builds only).
    #[cfg(debug_assertions)]
    record: DomainRecord,
}

/// Runs a file may have before the next save rebuilds the arena (few in
/// unit tests, so they rebuild often).
const MAX_RUNS: usize = if cfg!(test) { 8 } else { 1024 };
/// Dead text the arena may hold beyond as much as its live text.
const DEAD_SLACK: usize = if cfg!(test) { 512 } else { 1 << 20 };

/// The last save's domains and labels.
#[derive(Default)]
pub(crate) struct SaveCache {
    /// The text of every domain of the last save, at its entry's span; dead
    /// text (of domains changed or removed since) is dropped by a rebuild.
    arena: String,
    /// The buffer the next save writes into (kept for its capacity).
    spare: String,
    /// The next save copies every domain into its own buffer (see the module doc).
    rebuild: bool,
    /// Encodings of records; only appended to, and compacted when more than
    /// half of it is no longer used.
    enc: Vec<u8>,
    entries: Vec<Entry>,
    /// The index in `entries` of each name.
    by_name: HashMap<Box<str>, usize>,
    labels: Vec<LabelRecord>,
    /// The depth the domains were written at.
    depth: usize,
}

impl std::fmt::Debug for SaveCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let encoded = self.entries.iter().filter(|e| e.enc.is_some()).count();
        write!(
            f,
            "SaveCache({} bytes of arena, {encoded} of {} domains encoded)",
            self.arena.len(),
            self.entries.len()
        )
    }
}

/// A run of a save's text: of its own buffer, or of the arena.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Run {
    Own(Range<usize>),
    Arena(Range<usize>),
}

impl Run {
    /// Appends `run` to `runs`, merging it into the last when they are adjacent.
    fn push(runs: &mut Vec<Run>, run: Run) {
        let (Run::Own(r) | Run::Arena(r)) = &run;
        if r.is_empty() {
            return;
        }
        match (runs.last_mut(), &run) {
            (Some(Run::Own(a)), Run::Own(b)) | (Some(Run::Arena(a)), Run::Arena(b))
                if a.end == b.start =>
            {
                a.end = b.end;
            }
            _ => runs.push(run),
        }
    }
}

/// The text of a save, not yet on disk.
pub(crate) struct Written {
    own: String,
    /// The whole text, in order.
    runs: Vec<Run>,
    /// Per domain of the state, where its text is.
    locs: Vec<Run>,
}

/// A save in progress.
pub(crate) struct Plan {
    /// Per domain of the state: the cached entry of the same qid, if any.
    same_qid: Vec<Option<usize>>,
    /// Per domain of the state: whether it equals its cached entry's record.
    unchanged: Vec<bool>,
    /// Per domain of the state, once written: whether its text is the same
    /// as its cached entry's.
    same_text: Vec<bool>,
}

impl SaveCache {
    /// Finds, for each domain of `state`, the cached domain of the same qid
    /// and whether the records are equal: by comparing with the cached
    /// encoding, or, with a `hint`, by the caller's word (any domain not in
    /// it that has a cached entry is equal).
    pub(crate) fn plan(&self, state: &QubesXml, hint: Option<&ChangedSet>) -> Plan {
        let entries = &self.entries;
        // Domains usually keep their places; the map is only for when they do not.
        let mut by_qid: Option<HashMap<u32, usize>> = None;
        let mut same_qid = Vec::with_capacity(state.domains.len());
        let mut unchanged = Vec::with_capacity(state.domains.len());
        for (i, d) in state.domains.iter().enumerate() {
            let j = if entries.get(i).is_some_and(|e| e.qid == d.qid) {
                Some(i)
            } else {
                let map = by_qid.get_or_insert_with(|| {
                    entries
                        .iter()
                        .enumerate()
                        .map(|(j, e)| (e.qid, j))
                        .collect()
                });
                map.get(&d.qid).copied()
            };
            if let Some(hint) = hint {
                unchanged.push(j.is_some() && !hint.contains(d.qid));
                same_qid.push(j);
                continue;
            }
            let cached = j
                .and_then(|j| entries.get(j))
                .and_then(|e| e.enc.clone())
                .and_then(|r| self.enc.get(r));
            unchanged.push(cached.is_some_and(|bytes| {
                let mut cmp = Cmp {
                    rest: bytes,
                    ok: true,
                };
                d.enc(&mut cmp);
                cmp.ok && cmp.rest.is_empty()
            }));
            same_qid.push(j);
        }
        Plan {
            same_qid,
            unchanged,
            same_text: Vec::new(),
        }
    }

    /// Takes the file just loaded as if this writer had saved it, when it
    /// is: `text` must be, byte for byte, what a save of `state` (the
    /// records parsed from it) writes. Then the first save after the load
    /// copies the domains that did not change, as every later save does.
    /// Returns whether it did; otherwise the cache stays empty and the first
    /// save writes everything, as with no file.
    ///
    /// Only the text of our own writer is trusted this way, so the cache
    /// never holds text that serialising its records would not give (another
    /// program's layout or attribute order, a hand edit). The domains are
    /// encoded at once: their text is the one on disk, as for a domain
    /// written twice the same, so a save without a [`ChangedSet`] and
    /// [`changed`](Self::changed) can compare them.
    pub(crate) fn seed(&mut self, text: &str, state: &QubesXml) -> bool {
        // A file without the marker cannot be our writer's: no need to write it.
        if !self.entries.is_empty() || !state.written_by_qpci() {
            return false;
        }
        let depth = self.depth;
        let mut plan = self.plan(state, None);
        let written = self.write(&mut plan, state);
        if written.own != text {
            self.abandon(written);
            self.depth = depth;
            return false;
        }
        plan.same_text = vec![true; state.domains.len()];
        self.commit(plan, state, written);
        true
    }

    /// The qids of the domains of `state` not shown equal to their record
    /// in the cache: those that differ, have none, or have no encoding.
    pub(crate) fn changed(&self, state: &QubesXml) -> ChangedSet {
        let plan = self.plan(state, None);
        (state.domains.iter().zip(&plan.unchanged))
            .filter(|(_, u)| !**u)
            .map(|(d, _)| d.qid)
            .collect()
    }

    /// The first domain the plan takes as unchanged whose record differs
    /// from the one saved: a [`ChangedSet`] that missed a change.
    #[cfg(debug_assertions)]
    pub(crate) fn undeclared_change<'a>(
        &self,
        plan: &Plan,
        state: &'a QubesXml,
    ) -> Option<&'a DomainRecord> {
        state
            .domains
            .iter()
            .zip(plan.same_qid.iter().zip(&plan.unchanged))
            .find(|(d, (j, u))| {
                **u && j
                    .and_then(|j| self.entries.get(j))
                    .is_none_or(|e| e.record != **d)
            })
            .map(|(d, _)| d)
    }

    /// What the plan proves to the checks.
    pub(crate) fn known<'a>(&'a self, plan: &'a Plan, state: &QubesXml) -> Known<'a> {
        let mut hit = vec![false; self.entries.len()];
        let mut clash = false;
        for (j, _) in plan
            .same_qid
            .iter()
            .zip(&plan.unchanged)
            .filter_map(|(j, &u)| j.filter(|_| u).map(|j| (j, ())))
        {
            if let Some(h) = hit.get_mut(j) {
                clash |= *h;
                *h = true;
            }
        }
        Known {
            unchanged: &plan.unchanged,
            other_names: self
                .entries
                .iter()
                .zip(&hit)
                .filter(|(_, h)| !**h)
                .map(|(e, _)| e.name.as_str())
                .collect(),
            same_labels: !self.entries.is_empty() && state.labels == self.labels,
            same_qid: &plan.same_qid,
            hit,
            by_name: &self.by_name,
            clash,
        }
    }

    /// Serialises `state`, taking the unchanged domains from the arena.
    pub(crate) fn write(&mut self, plan: &mut Plan, state: &QubesXml) -> Written {
        let mut own = std::mem::take(&mut self.spare);
        let mut runs = Vec::new();
        let mut locs = Vec::with_capacity(state.domains.len());
        let mut same_text = Vec::with_capacity(state.domains.len());
        let mut own_from = 0;
        let mut depth = self.depth;
        let (arena, entries, cached_depth, copy) =
            (&self.arena, &self.entries, self.depth, self.rebuild);
        let (same_qid, unchanged) = (&plan.same_qid, &plan.unchanged);
        state.write_xml_with(&mut own, &mut |out, at, i, d| {
            let start = out.len();
            let old = same_qid
                .get(i)
                .copied()
                .flatten()
                .filter(|_| at == cached_depth)
                .and_then(|j| entries.get(j))
                .and_then(|e| Some((e.span.clone(), arena.get(e.span.clone())?)));
            match old {
                Some((span, bytes)) if unchanged.get(i) == Some(&true) => {
                    if copy {
                        out.push_str(bytes);
                        locs.push(Run::Own(start..out.len()));
                    } else {
                        Run::push(&mut runs, Run::Own(own_from..start));
                        Run::push(&mut runs, Run::Arena(span.clone()));
                        own_from = start;
                        locs.push(Run::Arena(span));
                    }
                    same_text.push(true);
                }
                _ => {
                    crate::write::domain_xml(out, at, d);
                    let same = old.is_some_and(|(_, b)| out.get(start..) == Some(b));
                    same_text.push(same);
                    locs.push(Run::Own(start..out.len()));
                }
            }
            depth = at;
        });
        Run::push(&mut runs, Run::Own(own_from..own.len()));
        self.depth = depth;
        plan.same_text = same_text;
        Written { own, runs, locs }
    }

    /// The text of `w`, as slices for `writev`.
    pub(crate) fn slices<'a>(&'a self, w: &'a Written) -> Vec<IoSlice<'a>> {
        w.runs
            .iter()
            .map(|run| {
                let bytes = match run {
                    Run::Own(r) => w.own.as_bytes().get(r.clone()),
                    Run::Arena(r) => self.arena.as_bytes().get(r.clone()),
                };
                IoSlice::new(bytes.unwrap_or_default())
            })
            .collect()
    }

    /// Gives back the buffer of a save that did not reach the disk.
    pub(crate) fn abandon(&mut self, w: Written) {
        self.spare = w.own;
    }

    /// Makes a save that reached the disk the one the next save starts from.
    ///
    /// Unchanged domains keep their encodings. A changed one is encoded when
    /// its text is the same as last time (it changed in a way the text does
    /// not show, or is new since two saves and then unchanged); otherwise it
    /// is encoded at the next save that writes it unchanged.
    pub(crate) fn commit(&mut self, plan: Plan, state: &QubesXml, w: Written) {
        let Written {
            mut own,
            runs,
            locs,
        } = w;
        // A save that wrote every domain itself: its buffer is the new arena.
        let all_own = locs.iter().all(|l| matches!(l, Run::Own(_)));
        if all_own {
            std::mem::swap(&mut self.arena, &mut own);
        }
        let arena = &mut self.arena;
        let mut place = |loc: &Run| match loc {
            Run::Arena(r) => r.clone(),
            Run::Own(r) if all_own => r.clone(),
            Run::Own(r) => {
                let start = arena.len();
                arena.push_str(own.get(r.clone()).unwrap_or_default());
                start..arena.len()
            }
        };
        let aligned = self.entries.len() == state.domains.len()
            && plan.same_qid.iter().enumerate().all(|(i, j)| *j == Some(i));
        if aligned {
            // The usual save: same domains in the same places; only the
            // changed entries are touched (and every span after a rebuild).
            for (i, ((d, e), loc)) in state
                .domains
                .iter()
                .zip(&mut self.entries)
                .zip(&locs)
                .enumerate()
            {
                let span = place(loc);
                if plan.unchanged.get(i) == Some(&true) {
                    e.span = span;
                    continue;
                }
                e.enc = (plan.same_text.get(i) == Some(&true)).then(|| {
                    let start = self.enc.len();
                    d.enc(&mut self.enc);
                    start..self.enc.len()
                });
                e.span = span;
                if e.name != d.name {
                    // Names are unique once the save passed its checks, so a
                    // later entry taking this one's old name overwrites it.
                    if self.by_name.get(e.name.as_str()) == Some(&i) {
                        self.by_name.remove(e.name.as_str());
                    }
                    self.by_name.insert(d.name.as_str().into(), i);
                    e.name.clone_from(&d.name);
                }
                #[cfg(debug_assertions)]
                e.record.clone_from(d);
            }
        } else {
            let mut old = std::mem::take(&mut self.entries);
            let mut entries = Vec::with_capacity(state.domains.len());
            for (i, (d, loc)) in state.domains.iter().zip(&locs).enumerate() {
                let span = place(loc);
                let j = plan.same_qid.get(i).copied().flatten();
                let prev = j.and_then(|j| old.get_mut(j));
                let unchanged = plan.unchanged.get(i) == Some(&true);
                entries.push(match prev {
                    Some(e) if unchanged => Entry {
                        qid: d.qid,
                        name: std::mem::take(&mut e.name),
                        span,
                        enc: e.enc.take(),
                        #[cfg(debug_assertions)]
                        record: std::mem::take(&mut e.record),
                    },
                    _ => {
                        let enc = (plan.same_text.get(i) == Some(&true)).then(|| {
                            let start = self.enc.len();
                            d.enc(&mut self.enc);
                            start..self.enc.len()
                        });
                        Entry {
                            qid: d.qid,
                            name: d.name.clone(),
                            span,
                            enc,
                            #[cfg(debug_assertions)]
                            record: d.clone(),
                        }
                    }
                });
            }
            self.entries = entries;
            self.by_name = (self.entries.iter().enumerate())
                .map(|(j, e)| (e.name.as_str().into(), j))
                .collect();
        }
        let (mut live_enc, mut live_text) = (0, 0);
        for e in &self.entries {
            live_enc += e.enc.as_ref().map_or(0, ExactSizeIterator::len);
            live_text += e.span.len();
        }
        if self.enc.len() > 2 * live_enc + 4096 {
            let mut packed = Vec::with_capacity(live_enc);
            for e in &mut self.entries {
                if let Some(r) = e.enc.take() {
                    let start = packed.len();
                    packed.extend_from_slice(self.enc.get(r).unwrap_or_default());
                    e.enc = Some(start..packed.len());
                }
            }
            self.enc = packed;
        }
        self.rebuild = runs.len() > MAX_RUNS || self.arena.len() > 2 * live_text + DEAD_SLACK;
        if self.labels != state.labels {
            self.labels = state.labels.clone();
        }
        self.spare = own;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DomainRecord, PropertyValue};

    fn domain(qid: u32) -> DomainRecord {
        let mut d = DomainRecord {
            qid,
            class: "AppVM".into(),
            name: format!("q{qid}"),
            ..Default::default()
        };
        d.properties
            .insert("memory".into(), PropertyValue::Text("400".into()));
        d
    }

    /// One save through the cache, as `StateFile` does it, without the disk.
    fn save(c: &mut SaveCache, x: &QubesXml, hint: Option<&ChangedSet>) -> String {
        let mut plan = c.plan(x, hint);
        let w = c.write(&mut plan, x);
        let bytes: Vec<u8> = c.slices(&w).iter().flat_map(|s| s.to_vec()).collect();
        c.commit(plan, x, w);
        String::from_utf8(bytes).unwrap_or_default()
    }

    #[test]
    fn text_stays_exact_while_the_arena_fragments_and_is_rebuilt() {
        let mut c = SaveCache::default();
        let mut x = QubesXml {
            domains: (0..30).map(domain).collect(),
            ..Default::default()
        };
        assert!(save(&mut c, &x, None) == x.to_xml());
        let (mut rebuilds, mut next_qid) = (0, 30);
        for round in 0..400u32 {
            let mut hint = ChangedSet::new();
            let k = (round as usize * 7) % x.domains.len();
            let d = &mut x.domains[k];
            d.properties
                .insert("memory".into(), PropertyValue::Text(round.to_string()));
            hint.insert(d.qid);
            if round % 25 == 0 {
                x.domains.remove(round as usize % x.domains.len());
                x.domains.push(domain(next_qid));
                hint.insert(next_qid);
                next_qid += 1;
            }
            if round % 40 == 0 {
                x.domains.swap(0, 5);
            }
            rebuilds += usize::from(c.rebuild);
            let hint = (round % 3 != 0).then_some(&hint);
            assert!(save(&mut c, &x, hint) == x.to_xml(), "round {round}");
            let live: usize = c.entries.iter().map(|e| e.span.len()).sum();
            assert!(
                c.arena.len() <= 2 * live + DEAD_SLACK + 2048,
                "round {round}"
            );
        }
        assert!(rebuilds > 10, "{rebuilds} rebuilds");
    }
}
