//! The clients: each a thread making one call at a time, three quarters
//! on the qubes it owns (checked exactly after every restart) and the rest
//! on the shared pool (checked only for the invariants).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use qpci_api::{CallError, Client, RawRequest, Reply};

use crate::model::{ClientModel, Dev, Pending, Power};
use crate::op::{Expect, Op};
use crate::rng::Rng;

/// Shared qubes that get most of the shared-pool calls.
const HOT_SHARED: usize = 4;

/// Starts and stops the clients around each daemon life.
#[derive(Debug, Default)]
pub struct Control {
    ctl: Mutex<Ctl>,
    cv: Condvar,
    /// Clients make calls while set.
    pub run: AtomicBool,
    /// Calls sent whose reply has not arrived.
    pub in_flight: AtomicUsize,
}

#[derive(Debug, Default)]
struct Ctl {
    /// The daemon life the clients may run in.
    life: u64,
    /// Clients parked since the last [`Control::release`].
    idle: usize,
    /// The run is over.
    quit: bool,
}

impl Control {
    fn lock(&self) -> MutexGuard<'_, Ctl> {
        self.ctl.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lets the clients run against daemon life `life`.
    pub fn release(&self, life: u64) {
        let mut c = self.lock();
        c.life = life;
        c.idle = 0;
        self.run.store(true, Ordering::SeqCst);
        self.cv.notify_all();
    }

    /// Stops new calls and waits until all `clients` have parked.
    pub fn park_all(&self, clients: usize) {
        self.run.store(false, Ordering::SeqCst);
        let mut c = self.lock();
        while c.idle < clients {
            c = self.cv.wait(c).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Ends the run: parked clients return.
    pub fn quit(&self) {
        let mut c = self.lock();
        c.quit = true;
        self.cv.notify_all();
    }

    /// Waits for a life after `seen`; `None` when the run is over.
    fn wait_life(&self, seen: u64) -> Option<u64> {
        let mut c = self.lock();
        loop {
            if c.quit {
                return None;
            }
            // A new life even if it already ended: the client must still
            // park once for it, or `park_all` would wait forever.
            if c.life != seen {
                return Some(c.life);
            }
            c = self.cv.wait(c).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn parked(&self) {
        let mut c = self.lock();
        c.idle += 1;
        self.cv.notify_all();
    }
}

/// What a client needs.
#[derive(Debug)]
pub struct ClientCtx {
    /// The socket.
    pub socket: PathBuf,
    /// Start/stop.
    pub control: Arc<Control>,
    /// Its expectations (locked by the checker while clients are parked).
    pub model: Arc<Mutex<ClientModel>>,
    /// The host's devices (critical ones included).
    pub devices: Arc<Vec<Dev>>,
    /// The shared pool.
    pub shared: Arc<Vec<String>>,
    /// Lives in which a call that may turn a running qube pvh was made.
    pub explain: Arc<Mutex<crate::check::Explain>>,
    /// Shared qube -> port ids last seen assigned (approximate).
    pub shared_assigned: Arc<Mutex<BTreeMap<String, BTreeSet<String>>>>,
    /// How many qubes it owned at the start (it keeps near that).
    pub initial: usize,
    /// Its random stream.
    pub rng: Rng,
}

/// How a call ended.
enum Outcome {
    Ok,
    /// An exception reply: class, message.
    Refused(String, String),
    /// Never delivered: nothing listened.
    NotSent,
    /// Delivered, no reply: in flight at the kill.
    Unknown(String),
}

fn call(client: &Client, control: &Control, req: &RawRequest) -> Outcome {
    control.in_flight.fetch_add(1, Ordering::SeqCst);
    let r = client.call_raw(req);
    control.in_flight.fetch_sub(1, Ordering::SeqCst);
    match r {
        Ok(Reply::Ok(_)) => Outcome::Ok,
        Ok(Reply::Exception(e)) => Outcome::Refused(e.class, e.message),
        Err(CallError::Connect { .. }) => Outcome::NotSent,
        Err(e) => Outcome::Unknown(e.to_string()),
    }
}

/// The client's thread: one daemon life after another until the run ends.
pub fn run(mut cx: ClientCtx) {
    let client = Client::new(&cx.socket);
    let mut life = 0;
    while let Some(l) = cx.control.wait_life(life) {
        life = l;
        while cx.control.run.load(Ordering::SeqCst) {
            if !step(&mut cx, &client, life) {
                break;
            }
        }
        cx.control.parked();
    }
}

/// One call; `false` when the daemon is gone.
fn step(cx: &mut ClientCtx, client: &Client, life: u64) -> bool {
    if cx.rng.chance(25) {
        return shared_step(cx, client, life);
    }
    let model = Arc::clone(&cx.model);
    let mut m = model.lock().unwrap_or_else(|p| p.into_inner());
    let (qube, op) = pick_owned(cx, &mut m);
    let before = m.qubes.get(&qube).cloned().unwrap_or_default();
    let expect = op.expect(&before);
    let predicted = op.predict(&before);
    let what = op.describe(&qube);
    let outcome = call(client, &cx.control, &op.request(&qube));
    note_explain(cx, &op, &qube, &outcome, life);
    if matches!(op, Op::Shutdown(_) | Op::Kill | Op::Remove)
        && !matches!(outcome, Outcome::Refused(..) | Outcome::NotSent)
    {
        m.cycled.insert(qube.clone());
    }
    count_power(&mut m, &op, &outcome);
    let on_paused = before.power == Power::Paused;
    match outcome {
        Outcome::Ok => {
            m.stats.acked += 1;
            m.stats.unchecked += 1;
            judge_reply(&mut m, expect, None, &what, life, on_paused);
            if before.virt != predicted.virt {
                m.touched.insert(qube.clone());
            }
            m.qubes.insert(qube.clone(), predicted);
            m.note(&qube, format!("life {life}: {what} -> ok"));
            true
        }
        Outcome::Refused(class, msg) => {
            m.stats.refused += 1;
            judge_reply(&mut m, expect, Some(&class), &what, life, on_paused);
            m.note(
                &qube,
                format!("life {life}: {what} -> refused ({class}: {msg})"),
            );
            true
        }
        Outcome::NotSent => {
            m.stats.not_sent += 1;
            false
        }
        Outcome::Unknown(why) => {
            m.stats.unknown += 1;
            m.note(&qube, format!("life {life}: {what} -> no reply ({why})"));
            // A call the model knows is refused cannot have changed it.
            let after = match expect {
                Expect::Refused(_) => before.clone(),
                _ => predicted,
            };
            m.pending = Some(Pending {
                qube,
                op: what,
                before,
                after,
            });
            false
        }
    }
}

/// Compares a reply (`None`: ok, else the exception class) with the
/// model's prediction; a difference fails the run at the next check.
fn judge_reply(
    m: &mut ClientModel,
    expect: Expect,
    class: Option<&str>,
    what: &str,
    life: u64,
    on_paused: bool,
) {
    let as_predicted = match (expect, class) {
        (Expect::Any, _) => return,
        (Expect::Ok, None) => true,
        (Expect::Refused(want), Some(got)) => want == got,
        _ => false,
    };
    if as_predicted {
        m.stats.predicted += 1;
        m.stats.on_paused += u64::from(on_paused);
    } else {
        let id = m.id;
        m.mispredicted.push(format!(
            "life {life}: client {id}: `{what}` replied {} where the model predicts {}",
            class.unwrap_or("ok"),
            expect.text()
        ));
    }
}

/// Counts pause and unpause outcomes.
fn count_power(m: &mut ClientModel, op: &Op, outcome: &Outcome) {
    let s = &mut m.stats;
    match (op, outcome) {
        (Op::Pause, Outcome::Ok) => s.pause_acked += 1,
        (Op::Pause, Outcome::Refused(..)) => s.pause_refused += 1,
        (Op::Unpause, Outcome::Ok) => s.unpause_acked += 1,
        (Op::Unpause, Outcome::Refused(..)) => s.unpause_refused += 1,
        _ => {}
    }
}

/// Picks an owned qube and what to do to it.
fn pick_owned(cx: &mut ClientCtx, m: &mut ClientModel) -> (String, Op) {
    let existing = m.existing();
    let r = cx.rng.below(100);
    let create = existing.is_empty()
        || ((60..70).contains(&r) && existing.len() < cx.initial + cx.initial / 4);
    if create {
        let name = format!("c{:02}-n{:04}", m.id, m.next_new);
        m.next_new += 1;
        return (name, Op::Create);
    }
    let qube = cx.rng.pick(&existing).cloned().unwrap_or_default();
    let assigned: Vec<Dev> = m
        .qubes
        .get(&qube)
        .map(|s| {
            cx.devices
                .iter()
                .filter(|d| s.devices.contains(&d.port))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let op = match r {
        0..2 => pick_dev(cx, Pool::Critical).map_or(Op::Start, |d| Op::Assign(d, false)),
        2..20 => pick_dev(cx, Pool::Owned).map_or(Op::Start, |d| {
            let nsr = cx.rng.chance(40);
            Op::Assign(d, nsr)
        }),
        20..32 => match cx.rng.pick(&assigned) {
            Some(d) if cx.rng.chance(85) => Op::Unassign(d.clone()),
            _ => pick_dev(cx, Pool::Owned).map_or(Op::Start, Op::Unassign),
        },
        32..46 => Op::Start,
        46..54 => Op::Shutdown(cx.rng.chance(50)),
        54..60 => Op::Kill,
        70..76 => Op::Remove,
        // Mostly on a qube where it does something, so that paused qubes
        // are common; the rest exercises the refusals.
        76..84 => return (prefer(cx, m, &qube, Power::Running), Op::Pause),
        84..89 => return (prefer(cx, m, &qube, Power::Paused), Op::Unpause),
        _ => Op::SetVirt(if cx.rng.chance(70) { "hvm" } else { "pvh" }),
    };
    (qube, op)
}

/// Usually an owned qube in state `power` (if any), else `qube`.
fn prefer(cx: &mut ClientCtx, m: &ClientModel, qube: &str, power: Power) -> String {
    let those: Vec<&String> = m
        .qubes
        .iter()
        .filter(|(_, s)| s.exists && s.power == power)
        .map(|(n, _)| n)
        .collect();
    match cx.rng.pick(&those) {
        Some(n) if cx.rng.chance(75) => (*n).clone(),
        _ => qube.to_owned(),
    }
}

/// Which devices a pick draws from.
#[derive(Debug, Clone, Copy)]
enum Pool {
    /// Assignable devices of the owned qubes.
    Owned,
    /// dom0-critical ones (Assign must refuse).
    Critical,
    /// Mostly the shared-only devices.
    Shared,
}

/// A device from `pool`.
fn pick_dev(cx: &mut ClientCtx, pool: Pool) -> Option<Dev> {
    let shared_only = cx.rng.chance(80);
    let from: Vec<&Dev> = cx
        .devices
        .iter()
        .filter(|d| match pool {
            Pool::Owned => !d.critical && !d.shared_only,
            Pool::Critical => d.critical,
            Pool::Shared => !d.critical && (d.shared_only || !shared_only),
        })
        .collect();
    cx.rng.pick(&from).map(|d| (*d).clone())
}

/// A call on a shared qube: outcomes only counted.
fn shared_step(cx: &mut ClientCtx, client: &Client, life: u64) -> bool {
    // Most shared calls go to a few hot qubes, so that calls of different
    // clients on one qube share a batch (group commit) often.
    let hot = cx.shared.len().min(HOT_SHARED);
    let pool = if cx.rng.chance(60) {
        cx.shared.get(..hot).unwrap_or_default()
    } else {
        &cx.shared[..]
    };
    let Some(qube) = cx.rng.pick(pool).cloned() else {
        return true;
    };
    let op = match cx.rng.below(100) {
        0..30 => pick_dev(cx, Pool::Shared).map_or(Op::Start, |d| {
            let nsr = cx.rng.chance(50);
            Op::Assign(d, nsr)
        }),
        30..50 => {
            let known: Vec<Dev> = {
                let a = cx.shared_assigned.lock().unwrap_or_else(|p| p.into_inner());
                let ports = a.get(&qube).cloned().unwrap_or_default();
                cx.devices
                    .iter()
                    .filter(|d| ports.contains(&d.port))
                    .cloned()
                    .collect()
            };
            match cx.rng.pick(&known) {
                Some(d) if cx.rng.chance(85) => Op::Unassign(d.clone()),
                _ => pick_dev(cx, Pool::Shared).map_or(Op::Start, Op::Unassign),
            }
        }
        50..66 => Op::Start,
        66..72 => Op::Pause,
        72..76 => Op::Unpause,
        76..82 => Op::Shutdown(cx.rng.chance(80)),
        82..88 => Op::Kill,
        _ => Op::SetVirt(if cx.rng.chance(70) { "hvm" } else { "pvh" }),
    };
    let outcome = call(client, &cx.control, &op.request(&qube));
    note_explain(cx, &op, &qube, &outcome, life);
    if matches!(outcome, Outcome::Ok) {
        // Roughly what the shared qubes hold, to pick Unassign targets.
        let mut a = cx.shared_assigned.lock().unwrap_or_else(|p| p.into_inner());
        let ports = a.entry(qube.clone()).or_default();
        match &op {
            Op::Assign(d, _) => {
                ports.insert(d.port.clone());
            }
            Op::Unassign(d) => {
                ports.remove(&d.port);
            }
            _ => {}
        }
    }
    let mut m = cx.model.lock().unwrap_or_else(|p| p.into_inner());
    count_power(&mut m, &op, &outcome);
    match outcome {
        Outcome::Ok => {
            m.stats.shared_acked += 1;
            true
        }
        Outcome::Refused(..) => {
            m.stats.shared_refused += 1;
            true
        }
        Outcome::NotSent => {
            m.stats.not_sent += 1;
            false
        }
        Outcome::Unknown(_) => {
            m.stats.unknown += 1;
            false
        }
    }
}

/// Records a call that may leave a running qube with devices and pvh.
fn note_explain(cx: &ClientCtx, op: &Op, qube: &str, outcome: &Outcome, life: u64) {
    let key = match op {
        Op::Unassign(d) => d.port.clone(),
        Op::SetVirt("pvh") => "virt_mode".to_owned(),
        _ => return,
    };
    if matches!(outcome, Outcome::Ok | Outcome::Unknown(_)) {
        let mut e = cx.explain.lock().unwrap_or_else(|p| p.into_inner());
        e.entry((qube.to_owned(), key)).or_default().insert(life);
    }
}
