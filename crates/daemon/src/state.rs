//! The state owner: one thread owns the registry, the hypervisor backend,
//! the host source and the flavour (everything a [`Ctx`] lends), and runs
//! every handler; the saver thread ([`crate::commit`]) writes `qubes.xml`.
//!
//! **Two registries.** `committed` is the state as it is on disk. While a
//! save is in flight, the batch being saved lives only in the saver's copy.
//!
//! **Reads** (methods with `writes == false`, unknown methods, event
//! subscriptions) run at once on the owner, against `committed`: they never
//! wait for a save and never see a change that is not yet durable. Read
//! handlers must not change the registry (the contract of [`Handler`]); one
//! that says it did is logged as a bug and its change is not persisted.
//!
//! **Writes** are queued. Whenever no save is in flight and writes are
//! queued, the owner takes the whole queue as one batch: it clones
//! `committed` (one reference count per qube: a qube is shared until a
//! handler changes it, which copies it), runs the batch's handlers on the
//! clone in arrival order
//! (names resolved against the clone, so a qube created earlier in the batch
//! exists for the next call), and hands the clone to the saver. Writes that
//! arrive during that save wait in the queue and form the next batch: that
//! is the group commit, one `StateFile::save` per batch however many clients
//! it carries. When the save succeeds, the saved registry becomes
//! `committed`, then every client of the batch gets its reply and the
//! batch's events are published. When it fails, the clone is dropped
//! (`committed` is still the last durable state: that is the rollback) and
//! every client whose call ran after the batch's first change gets an
//! error. Calls that ran before the first change saw only durable state, so
//! they are answered at once, as is a batch that changed nothing.
//!
//! What is not rolled back: the hypervisor's own runtime state (a sim start
//! writes `sim-runtime.json` itself) and host writes (the stub engine's,
//! through [`HostWriter`]: a start's binding, a reattach). So a method that
//! acts outside `qubes.xml` ([`MethodSpec::acts`]: start, shutdown, kill,
//! attach, detach, reattach, host setup) never runs on changes that are not
//! yet durable: when earlier calls of its batch changed state, the batch is
//! cut before it and saved, and it heads the next batch. A crash can then
//! never leave a qube running on state that was never saved (found by the
//! crash loop: a pvh qube made hvm, given a device and started in one batch).
//!
//! The owner drains up to [`DRAIN`] messages between batches, so a flood of
//! reads cannot starve writes.
//!
//! [`Ctx`]: crate::dispatch::Ctx
//! [`MethodSpec::acts`]: crate::dispatch::MethodSpec::acts
//! [`Handler`]: crate::dispatch::Handler

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::thread::JoinHandle;
use std::time::Duration;

use qpci_api::{Event, RawRequest, Reply};
use qpci_core::hypervisor::Hypervisor;
use qpci_core::registry::Registry;
use qpci_host::HostFlavour;
use qpci_store::StateFile;
use tokio::sync::{mpsc, oneshot};

use crate::commit::{SaveDone, SaveRequest, Saver};
use crate::dispatch::checks::{check_request, prepare};
use crate::dispatch::table::EVENTS;
use crate::dispatch::{Ctx, Exc, HostSource, Outcome, Table};
use crate::events::{EventHub, Subscription};
use crate::host_writer::HostWriter;
use crate::peer::Peer;

/// Messages handled between batches.
pub const DRAIN: usize = 512;

/// One call waiting for its reply.
#[derive(Debug)]
pub struct Job {
    /// The framed request (fields still untrusted).
    pub request: RawRequest,
    /// Who sent it.
    pub peer: Peer,
    /// Where the reply goes.
    pub reply: oneshot::Sender<Reply>,
}

/// What the owner thread receives.
#[derive(Debug)]
pub enum Msg {
    /// A method call.
    Call(Job),
    /// An `admin.Events` request: answered with a subscription or an error.
    Subscribe {
        /// The framed request.
        request: RawRequest,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<Subscription, Exc>>,
    },
    /// The saver finished a batch.
    Saved(Box<SaveDone>),
    /// Finish queued work, then stop.
    Shutdown,
}

/// Everything the owner owns.
pub struct Parts {
    /// The committed registry (as loaded).
    pub registry: Registry,
    /// The hypervisor backend.
    pub hypervisor: Box<dyn Hypervisor + Send>,
    /// The host inventory source.
    pub host: Box<dyn HostSource + Send>,
    /// Which stub driver and XML flavour starts use.
    pub flavour: HostFlavour,
    /// The stub engine's writer (compute-only unless `--emulate-kernel`).
    pub writer: HostWriter,
    /// The methods.
    pub table: Table,
    /// The state file (the lock goes with it).
    pub file: StateFile,
    /// Test hook: sleep before each save.
    pub save_delay: Duration,
    /// Where events go.
    pub hub: EventHub,
}

/// The running owner: send it messages, then shut it down.
#[derive(Debug)]
pub struct OwnerHandle {
    tx: mpsc::UnboundedSender<Msg>,
    thread: JoinHandle<()>,
}

impl OwnerHandle {
    /// A sender for connection tasks.
    pub fn sender(&self) -> mpsc::UnboundedSender<Msg> {
        self.tx.clone()
    }

    /// Finishes queued calls and in-flight saves, stops the threads and
    /// releases the state lock.
    pub fn shutdown(self) {
        let _ = self.tx.send(Msg::Shutdown);
        if self.thread.join().is_err() {
            tracing::error!("the state owner thread panicked");
        }
    }
}

/// Starts the owner and saver threads.
pub fn spawn(parts: Parts) -> std::io::Result<OwnerHandle> {
    let (tx, rx) = mpsc::unbounded_channel();
    let saved_tx = tx.clone();
    // The loaded registry is what the state file holds: the saver's first
    // save starts from it (a clone shares every qube, so it costs a count each).
    let loaded = parts.registry.clone();
    let saver = Saver::spawn(parts.file, loaded, parts.save_delay, move |done| {
        let _ = saved_tx.send(Msg::Saved(Box::new(done)));
    })?;
    let owner = Owner {
        committed: parts.registry,
        hypervisor: parts.hypervisor,
        host: parts.host,
        flavour: parts.flavour,
        writer: parts.writer,
        table: parts.table,
        hub: parts.hub,
        saver,
        queue: Vec::new(),
        in_flight: None,
    };
    let thread = std::thread::Builder::new()
        .name("qpcid-owner".to_owned())
        .spawn(move || owner.run(rx))?;
    Ok(OwnerHandle { tx, thread })
}

/// A client whose reply waits for a save.
struct Waiter {
    reply: oneshot::Sender<Reply>,
    result: Reply,
    events: Vec<Event>,
}

struct Owner {
    committed: Registry,
    hypervisor: Box<dyn Hypervisor + Send>,
    host: Box<dyn HostSource + Send>,
    flavour: HostFlavour,
    writer: HostWriter,
    table: Table,
    hub: EventHub,
    saver: Saver,
    queue: Vec<Job>,
    in_flight: Option<Vec<Waiter>>,
}

impl Owner {
    fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        let mut stopping = false;
        while let Some(msg) = rx.blocking_recv() {
            stopping |= self.handle(msg);
            for _ in 0..DRAIN {
                match rx.try_recv() {
                    Ok(msg) => stopping |= self.handle(msg),
                    Err(_) => break,
                }
            }
            if self.in_flight.is_none() && !self.queue.is_empty() {
                self.run_batch();
            }
            if stopping && self.in_flight.is_none() && self.queue.is_empty() {
                break;
            }
        }
        drop(self.saver.finish());
        tracing::debug!("state owner stopped; state lock released");
    }

    /// Handles one message; `true` for a shutdown request.
    fn handle(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Call(job) => {
                if self.table.writes(&job.request.method) {
                    self.queue.push(job);
                } else {
                    self.read(job);
                }
            }
            Msg::Subscribe { request, reply } => {
                let answer = check_request(&self.committed, Some(&EVENTS), request)
                    .map(|call| self.hub.subscribe(call.dest));
                let _ = reply.send(answer);
            }
            Msg::Saved(done) => self.saved(*done),
            Msg::Shutdown => return true,
        }
        false
    }

    fn read(&mut self, job: Job) {
        let method = job.request.method.clone();
        let Owner {
            committed,
            hypervisor,
            host,
            flavour,
            writer,
            table,
            ..
        } = self;
        let result = execute(
            table,
            committed,
            &mut **hypervisor,
            &mut **host,
            (*flavour, writer),
            job.request,
        );
        let (reply, events) = match result {
            Ok(outcome) => {
                if outcome.changed {
                    tracing::error!(
                        method,
                        "bug: a read-only method reported a change; not saved"
                    );
                }
                (Reply::Ok(outcome.data), outcome.events)
            }
            Err(e) => (exc_reply(e), Vec::new()),
        };
        let _ = job.reply.send(reply);
        self.hub.publish(events);
    }

    fn run_batch(&mut self) {
        let jobs = std::mem::take(&mut self.queue);
        let started = std::time::Instant::now();
        let mut next = self.committed.clone();
        let clone_ms = started.elapsed().as_secs_f64() * 1e3;
        let mut waiters: Vec<Waiter> = Vec::new();
        let mut changes = 0usize;
        let mut poisoned = false;
        let mut jobs = jobs.into_iter();
        while let Some(job) = jobs.next() {
            if changes > 0 && self.table.acts(&job.request.method) {
                // It would act on changes not yet durable: save them first;
                // it heads the next batch, which starts from the saved state.
                let mut rest = vec![job];
                rest.extend(jobs);
                rest.append(&mut self.queue);
                self.queue = rest;
                break;
            }
            let method = job.request.method.clone();
            let dest = job.request.dest.clone();
            let result = execute(
                &self.table,
                &mut next,
                &mut *self.hypervisor,
                &mut *self.host,
                (self.flavour, &self.writer),
                job.request,
            );
            let (reply, events, changed) = match result {
                Ok(o) => (Reply::Ok(o.data), o.events, o.changed),
                Err(e) => {
                    poisoned |= e.class == INTERNAL;
                    (exc_reply(e), Vec::new(), false)
                }
            };
            tracing::info!(
                method,
                dest,
                uid = job.peer.uid,
                pid = job.peer.pid,
                ok = matches!(reply, Reply::Ok(_)),
                changed,
                "mutating call"
            );
            changes += usize::from(changed);
            if changes == 0 {
                // Saw only durable state: answer now.
                let _ = job.reply.send(reply);
                self.hub.publish(events);
            } else {
                waiters.push(Waiter {
                    reply: job.reply,
                    result: reply,
                    events,
                });
            }
        }
        if changes == 0 {
            return;
        }
        if poisoned {
            self.fail(waiters, "a handler failed while applying it");
            return;
        }
        let clients = waiters.len();
        tracing::debug!(
            clone_ms,
            apply_ms = started.elapsed().as_secs_f64() * 1e3,
            changes,
            clients,
            "batch applied"
        );
        match self.saver.submit(SaveRequest {
            registry: next,
            changes,
            clients,
        }) {
            Ok(()) => self.in_flight = Some(waiters),
            Err(_) => self.fail(waiters, "the saver thread is gone"),
        }
    }

    fn saved(&mut self, done: SaveDone) {
        let Some(waiters) = self.in_flight.take() else {
            tracing::error!(
                save = done.number,
                "bug: a save finished with no batch in flight"
            );
            return;
        };
        match done.result {
            Ok(()) => {
                self.committed = done.registry;
                for w in waiters {
                    let _ = w.reply.send(w.result);
                    self.hub.publish(w.events);
                }
            }
            Err(e) => self.fail(waiters, &format!("saving the state failed: {e}")),
        }
    }

    /// Answers every waiter with an error: their changes were not kept.
    fn fail(&mut self, waiters: Vec<Waiter>, why: &str) {
        let message =
            format!("the change was not applied: {why}; the state is as it was before the request");
        for w in waiters {
            let _ = w
                .reply
                .send(Reply::exception("QubesException", message.clone()));
        }
    }
}

/// The class a panicking handler's call is answered with.
const INTERNAL: &str = "QubesException.internal";

/// Resolution, generic checks and the handler, with a handler panic turned
/// into an error reply (the daemon keeps serving).
fn execute(
    table: &Table,
    registry: &mut Registry,
    hypervisor: &mut dyn Hypervisor,
    host: &mut dyn HostSource,
    (flavour, writer): (HostFlavour, &HostWriter),
    request: RawRequest,
) -> Result<Outcome, Exc> {
    let (call, handler) = prepare(table, registry, request)?;
    let mut ctx = Ctx {
        registry,
        hypervisor,
        host,
        flavour,
        writer,
    };
    match catch_unwind(AssertUnwindSafe(|| handler(&mut ctx, &call))) {
        Ok(result) => result,
        Err(_) => {
            tracing::error!(method = call.method, "bug: the handler panicked");
            Err(Exc::new(
                INTERNAL,
                format!("internal error in {}; see the qpcid log", call.method),
            ))
        }
    }
}

fn exc_reply(e: Exc) -> Reply {
    let class = if e.class == INTERNAL {
        "QubesException"
    } else {
        e.class.as_str()
    };
    Reply::exception(class, e.message)
}
