//! The saver: one thread that owns the [`StateFile`] (and with it the state
//! lock) and writes batches durably, off the state owner's thread.
//!
//! The owner hands it a whole registry (the last committed state plus one
//! batch of changes); the saver turns it into records, saves them with
//! [`StateFile::save`] (temp file, fsync, rename, fsync of the folder) and
//! hands the registry back with the result, so a batch costs the owner one
//! registry clone and nothing else. Every save is logged as `state saved`
//! with its running number (`save=N`), the changes and clients it carried
//! and how long it took; tests count saves from that line.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use qpci_core::registry::Registry;
use qpci_store::{StateFile, StoreError};

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
                for req in rx {
                    if !delay.is_zero() {
                        std::thread::sleep(delay);
                    }
                    let started = Instant::now();
                    number += 1;
                    let result = file.save(&req.registry.to_records());
                    let ms = started.elapsed().as_secs_f64() * 1e3;
                    match &result {
                        Ok(()) => tracing::info!(
                            save = number,
                            changes = req.changes,
                            clients = req.clients,
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
