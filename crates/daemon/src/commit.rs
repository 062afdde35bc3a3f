//! The saver: one thread that owns the [`StateFile`] (and with it the state
//! lock) and writes batches durably, off the state owner's thread.
//!
//! The owner hands it a whole registry (the last committed state plus one
//! batch of changes); the saver turns it into records, saves them durably
//! (temp file, fsync, rename, fsync of the folder) and hands the registry
//! back with the result, so a batch costs the owner one registry clone (one
//! count per qube: the qubes are shared) and nothing else. Every save is
//! logged as `state saved` with its running number (`save=N`), the changes
//! and clients it carried and how long it took; tests count saves from that
//! line.
//!
//! **Incremental saves.** The saver keeps the last registry it saved with
//! success and that registry's records. The next registry's records are made
//! from them with [`Registry::update_records`], which rebuilds only the
//! qubes that are not the very ones (same allocation) of the saved registry
//! and names them; [`StateFile::save_changed`] then trusts that list and
//! copies every other qube's text from the last save. Both hold only
//! relative to the last *successful* save, so after a failed save the
//! records are turned back into the saved registry's the same way (the
//! failed registry is still alive, so the argument holds the other way).
//!
//! **The first save after start** is incremental too: the registry loaded
//! at start counts as the last one saved. Its records are made once when the
//! thread starts (off the owner's thread, before any batch can wait for it),
//! and the state file names the qubes whose records it cannot show equal to
//! the file it loaded ([`StateFile::changed_since_saved`]: none when the file
//! is our writer's and the load kept everything, every one when another
//! program wrote it or there was no file). Those are declared changed until
//! a save succeeds, on top of what each batch changed.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use qpci_core::registry::Registry;
use qpci_store::{ChangedSet, QubesXml, StateFile, StoreError};

/// One batch to make durable.
#[derive(Debug)]
pub struct SaveRequest {
    /// The state to write: the committed state with the batch applied.
    pub registry: Registry,
    /// How many calls of the batch changed state.
    pub changes: usize,
    /// How many clients wait for this save.
    pub clients: usize,
}

/// A finished save.
#[derive(Debug)]
pub struct SaveDone {
    /// The registry that was (or failed to be) written.
    pub registry: Registry,
    /// `Ok` when the batch is on disk.
    pub result: Result<(), StoreError>,
    /// The save's running number (1 for the first).
    pub number: u64,
}

/// What the next save starts from: the last registry saved with success
/// (at start, the loaded one) and its records.
struct Last {
    since: Registry,
    xml: QubesXml,
    /// Qubes whose records the state file cannot show it holds: declared
    /// changed until a save succeeds.
    unsaved: ChangedSet,
}

impl Last {
    /// Starts from `loaded`, the registry made from what `file` loaded.
    fn new(file: &StateFile, loaded: Registry) -> Self {
        let xml = loaded.to_records();
        let unsaved = file.changed_since_saved(&xml);
        tracing::debug!(
            qubes = xml.domains.len(),
            unsaved = unsaved.len(),
            "saver ready"
        );
        Last {
            since: loaded,
            xml,
            unsaved,
        }
    }

    /// Saves `next`; gives the result and how many qubes it declared changed.
    fn save(&mut self, file: &mut StateFile, next: &Registry) -> (Result<(), StoreError>, usize) {
        let mut changed = next.update_records(Some(&self.since), &mut self.xml);
        changed.extend(self.unsaved.iter());
        let result = file.save_changed(&self.xml, &changed);
        if result.is_ok() {
            self.since = next.clone();
            self.unsaved = ChangedSet::new();
        } else {
            self.since.update_records(Some(next), &mut self.xml);
        }
        (result, changed.len())
    }
}

/// The saver thread's handle.
#[derive(Debug)]
pub struct Saver {
    tx: Option<mpsc::Sender<SaveRequest>>,
    thread: Option<JoinHandle<StateFile>>,
}

impl Saver {
    /// Starts the thread. `loaded` is the registry made from the records
    /// `file` loaded at open (or the default one when there was no file).
    /// `done` is called on it after each save; `delay` (a test hook,
    /// normally zero) is slept before each save.
    pub fn spawn(
        mut file: StateFile,
        loaded: Registry,
        delay: Duration,
        done: impl Fn(SaveDone) + Send + 'static,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<SaveRequest>();
        let thread = std::thread::Builder::new()
            .name("qpcid-saver".to_owned())
            .spawn(move || {
                let mut number = 0u64;
                let mut last = Last::new(&file, loaded);
                for req in rx {
                    if !delay.is_zero() {
                        std::thread::sleep(delay);
                    }
                    let started = Instant::now();
                    number += 1;
                    let (result, qubes) = last.save(&mut file, &req.registry);
                    let ms = started.elapsed().as_secs_f64() * 1e3;
                    match &result {
                        Ok(()) => tracing::info!(
                            save = number,
                            changes = req.changes,
                            clients = req.clients,
                            qubes_written = qubes,
                            ms,
                            "state saved"
                        ),
                        Err(e) => tracing::error!(
                            save = number,
                            changes = req.changes,
                            clients = req.clients,
                            "state save failed: {e}"
                        ),
                    }
                    done(SaveDone {
                        registry: req.registry,
                        result,
                        number,
                    });
                }
                file
            })?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues a save; `Err` gives the request back when the thread is gone.
    pub fn submit(&self, req: SaveRequest) -> Result<(), Box<SaveRequest>> {
        match &self.tx {
            Some(tx) => tx.send(req).map_err(|e| Box::new(e.0)),
            None => Err(Box::new(req)),
        }
    }

    /// Stops the thread after the queued saves and returns the state file
    /// (whose drop releases the lock).
    pub fn finish(mut self) -> Option<StateFile> {
        self.tx = None;
        self.thread.take().and_then(|t| t.join().ok())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::path::Path;
    use std::sync::mpsc;
    use std::time::Duration;

    use qpci_core::registry::Registry;
    use qpci_host::Inventory;
    use qpci_store::{BEFORE_QPCI_FILE, STATE_FILE, StateFile};

    use super::{Last, SaveDone, SaveRequest, Saver};

    /// The store's realistic fixture, as Qubes wrote it (no qpci marker).
    const BY_QUBES: &str = include_str!("../../store/tests/data/qubes.xml");

    /// Opens `dir` and makes the registry from what it loaded.
    fn open(dir: &Path) -> (StateFile, Registry) {
        let (file, xml) = StateFile::open(dir).unwrap();
        let (registry, _) = Registry::from_records(xml.unwrap(), &Inventory::default()).unwrap();
        (file, registry)
    }

    /// Starts a saver on `file` with `loaded` as its start, saves `next`
    /// once, and gives back the result and the state file.
    fn first_save(file: StateFile, loaded: Registry, next: &Registry) -> (SaveDone, StateFile) {
        let (tx, rx) = mpsc::channel();
        let saver = Saver::spawn(file, loaded, Duration::ZERO, move |d| {
            let _ = tx.send(d);
        })
        .unwrap();
        saver
            .submit(SaveRequest {
                registry: next.clone(),
                changes: 1,
                clients: 1,
            })
            .unwrap();
        let done = rx.recv_timeout(Duration::from_secs(60)).unwrap();
        (done, saver.finish().unwrap())
    }

    /// Opens `dir`, lets `prepare` change the loaded registry (as a
    /// migration persisted at start would), sets a feature of `qube` and
    /// hands that to the saver thread as its first save: the save succeeds
    /// and the file then holds exactly that registry.
    fn saved_through_the_thread(dir: &Path, prepare: impl FnOnce(&mut Registry), qube: &str) {
        let (file, mut loaded) = open(dir);
        prepare(&mut loaded);
        let mut next = loaded.clone();
        next.set_feature(qube, "seen", b"1").unwrap();
        let (done, _) = first_save(file, loaded, &next);
        done.result.unwrap();
        assert!(on_disk(dir) == next.to_records().to_xml());
    }

    fn on_disk(dir: &Path) -> String {
        std::fs::read_to_string(dir.join(STATE_FILE)).unwrap()
    }

    /// A folder holding the fixture as our writer saved it.
    fn ours() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), BY_QUBES).unwrap();
        let (mut file, xml) = StateFile::open(dir.path()).unwrap();
        file.save(&xml.unwrap()).unwrap();
        std::fs::remove_file(dir.path().join(BEFORE_QPCI_FILE)).unwrap();
        dir
    }

    #[test]
    fn the_first_save_after_start_declares_only_the_changed_qube() {
        let dir = ours();
        let (mut file, loaded) = open(dir.path());
        let mut last = Last::new(&file, loaded.clone());
        assert!(last.unsaved.is_empty());
        let mut next = loaded;
        next.set_feature("work", "seen", b"1").unwrap();
        let (result, declared) = last.save(&mut file, &next);
        result.unwrap();
        assert_eq!(declared, 1);
        assert!(on_disk(dir.path()) == next.to_records().to_xml());
        assert!(!dir.path().join(BEFORE_QPCI_FILE).exists());
        // Through the thread, the same.
        drop(file);
        saved_through_the_thread(dir.path(), |_| {}, "sys-net");
    }

    #[test]
    fn a_loaded_registry_that_differs_from_the_file_declares_the_difference() {
        let dir = ours();
        let (mut file, mut loaded) = open(dir.path());
        // Changed between the load and the saver's start (as a migration
        // persisted at start would be): not what the file holds.
        loaded.set_feature("work", "at-start", b"1").unwrap();
        let mut last = Last::new(&file, loaded.clone());
        assert_eq!(last.unsaved.len(), 1);
        let mut next = loaded.clone();
        next.set_feature("sys-net", "seen", b"1").unwrap();
        let (result, declared) = last.save(&mut file, &next);
        result.unwrap();
        assert_eq!(declared, 2);
        assert!(on_disk(dir.path()) == next.to_records().to_xml());
        // Through the thread, the same.
        drop((last, file));
        let dir = ours();
        saved_through_the_thread(
            dir.path(),
            |loaded| {
                loaded.set_feature("work", "at-start", b"1").unwrap();
            },
            "sys-net",
        );
    }

    #[test]
    fn another_programs_file_is_copied_and_saved_whole() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), BY_QUBES).unwrap();
        saved_through_the_thread(dir.path(), |_| {}, "work");
        let copy = std::fs::read_to_string(dir.path().join(BEFORE_QPCI_FILE)).unwrap();
        assert!(copy == BY_QUBES);
    }
}
