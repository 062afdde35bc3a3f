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

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use qpci_core::registry::Registry;
use qpci_store::{QubesXml, StateFile, StoreError};

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

/// The saver thread's handle.
#[derive(Debug)]
pub struct Saver {
    tx: Option<mpsc::Sender<SaveRequest>>,
    thread: Option<JoinHandle<StateFile>>,
}

impl Saver {
    /// Starts the thread. `done` is called on it after each save; `delay`
    /// (a test hook, normally zero) is slept before each save.
    pub fn spawn(
        mut file: StateFile,
        delay: Duration,
        done: impl Fn(SaveDone) + Send + 'static,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<SaveRequest>();
        let thread = std::thread::Builder::new()
            .name("qpcid-saver".to_owned())
            .spawn(move || {
                let mut number = 0u64;
                // The last successfully saved registry and its records.
                let mut last: Option<(Registry, QubesXml)> = None;
                for req in rx {
                    if !delay.is_zero() {
                        std::thread::sleep(delay);
                    }
                    let started = Instant::now();
                    number += 1;
                    let (result, qubes) = match last.take() {
                        Some((since, mut xml)) => {
                            let changed = req.registry.update_records(Some(&since), &mut xml);
                            let result = file.save_changed(&xml, &changed);
                            if result.is_ok() {
                                last = Some((req.registry.clone(), xml));
                            } else {
                                since.update_records(Some(&req.registry), &mut xml);
                                last = Some((since, xml));
                            }
                            (result, Some(changed.len()))
                        }
                        None => {
                            let xml = req.registry.to_records();
                            let result = file.save(&xml);
                            if result.is_ok() {
                                last = Some((req.registry.clone(), xml));
                            }
                            (result, None)
                        }
                    };
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
