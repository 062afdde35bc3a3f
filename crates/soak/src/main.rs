//! `qpci-crash-loop`: qpcid (sim backend, fixture host, 1000 preloaded
//! qubes) under 32 concurrent clients, SIGKILLed at random moments and
//! restarted, checked after every kill (issue 10, part 1;
//! `scripts/crash-test`).
//!
//! After each kill: `qubes.xml` loads with qpci-store's reader and
//! `sim-runtime.json` parses; every mutation a client saw acknowledged is
//! on disk and in the restarted daemon's answers, nothing refused is, and a
//! call in flight at the kill is either fully there or not at all (each
//! client owns its qubes, so its acknowledged calls give their exact
//! state, including whether a qube is halted, running or paused, and the
//! exact reply class of power calls); the daemon restarts (it refuses a
//! corrupt state, so starting is a check) and its `qpci.List` agrees with
//! the files, power states and attached devices included; no device is held
//! by two active (running or paused) qubes, no dom0-critical device is
//! assigned or attached, and no qube was started pvh with PCI devices. The shared pool (an eighth of
//! the qubes) is where clients race for devices; it is checked through the
//! invariants and the daemon-vs-disk comparison only.
//!
//! The seed is printed first: `--seed S` replays the same choices (the
//! interleaving of 32 threads still varies).

mod check;
mod client;
mod model;
mod op;
mod rng;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use qpci_api::Client;
use qpci_soak::daemon;

use crate::check::{Disk, Findings};
use crate::client::{ClientCtx, Control};
use crate::model::ClientModel;
use crate::rng::Rng;
use daemon::{Daemon, Layout};

/// Crash loop for qpcid: random mutations from concurrent clients, SIGKILL,
/// restart, check.
#[derive(Debug, Parser)]
#[command(name = "qpci-crash-loop", args_override_self = true)]
struct Flags {
    /// How many times the daemon is SIGKILLed.
    #[arg(long, default_value_t = 200)]
    kills: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Qubes preloaded (an eighth shared, the rest split among the clients).
    #[arg(long, default_value_t = 1000)]
    qubes: usize,
    /// Random seed (default: from the clock); printed for replays.
    #[arg(long)]
    seed: Option<u64>,
    /// The qpcid binary (default: next to this one).
    #[arg(long, value_name = "PATH")]
    qpcid: Option<PathBuf>,
    /// Work in DIR (emptied first) and keep it; default: a temp dir removed
    /// after a passing run.
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
}

/// Running totals of the whole run.
#[derive(Debug, Default)]
struct Totals {
    kills: u64,
    startup_kills: u64,
    kills_in_flight: u64,
    in_flight_at_kills: u64,
    restarts: u64,
    peak_rss_kib: u64,
    slowest_start: Duration,
    /// Qube -> first kill where it ran with PCI devices while its
    /// `virt_mode` read pvh.
    pvh_now: BTreeMap<String, u64>,
    /// What the last check saw of qubes running on unexplained state.
    seen: check::Seen,
    /// Kills that left a temporary file of an interrupted save in the
    /// state folder (qubes.xml or sim-runtime.json being written).
    kills_mid_save: u64,
    /// Kills that left one in `state/sim` (a start's plan or domain XML).
    kills_mid_runtime_write: u64,
    /// Temporary files in `state/sim` at the end (the sim backend removes
    /// them when it opens, so after a restart there should be none).
    sim_leftovers: usize,
    /// Running qubes newly seen holding an unassigned device or pvh (each
    /// judged against the calls of its life).
    judged: u64,
    /// Sum over kills of the qubes running with PCI devices (on disk).
    running_with_devices: u64,
    /// The most qubes running with PCI devices after one kill.
    most_running_with_devices: u64,
    /// Daemon lives run with a save delay of 1-4 ms.
    slow_save_lives: u64,
    /// Sum over restarts of the qubes the restarted daemon lists Paused.
    paused_after_restart: u64,
    /// The same, only those holding PCI devices.
    paused_with_devices: u64,
    /// The most qubes listed Paused after one restart.
    most_paused: u64,
}

/// How many temporary files of interrupted durable writes are in `dir`.
fn temps(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(qpci_store::TEMP_PREFIX)
                })
                .count()
        })
        .unwrap_or(0)
}

fn main() {
    match run() {
        Ok(()) => {}
        Err(e) => {
            eprintln!("qpci-crash-loop: FAIL: {e:#}");
            std::process::exit(1);
        }
    }
}

fn run() -> Result<()> {
    let flags = Flags::parse();
    if flags.clients == 0 || flags.qubes < flags.clients * 2 {
        bail!("--qubes must be at least twice --clients (and --clients at least 1)");
    }
    let seed = flags.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    println!(
        "qpci-crash-loop: seed {seed} (replay: --seed {seed}), {} kills, {} clients, {} qubes",
        flags.kills, flags.clients, flags.qubes
    );
    let qpcid = match &flags.qpcid {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .context("locating this binary")?
            .with_file_name("qpcid"),
    };
    if !qpcid.exists() {
        bail!(
            "{} missing: cargo build --release -p qpcid (scripts/crash-test does)",
            qpcid.display()
        );
    }
    let (work, temp) = match &flags.keep {
        Some(dir) => {
            let _ = std::fs::remove_dir_all(dir);
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
            (dir.canonicalize()?, None)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("qpci-crash-")
                .tempdir()
                .context("create a temp dir")?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let tree = daemon::host_tree();
    let layout = Layout {
        qpcid,
        socket: work.join("qubesd.sock"),
        state: work.join("state"),
        root: tree.root().to_path_buf(),
        log: work.join("qpcid.log"),
    };
    let result = crash_loop(&flags, seed, &layout);
    match (&result, temp) {
        (Ok(()), Some(t)) => drop(t),
        (Err(_), Some(t)) => {
            let kept = t.keep();
            eprintln!("qpci-crash-loop: state and logs kept in {}", kept.display());
        }
        (_, None) => println!("qpci-crash-loop: state and logs in {}", work.display()),
    }
    result
}

fn crash_loop(flags: &Flags, seed: u64, l: &Layout) -> Result<()> {
    let started = Instant::now();
    let per_client = flags.qubes * 7 / 8 / flags.clients;
    let shared = flags.qubes - per_client * flags.clients;
    std::fs::create_dir_all(&l.state)?;
    std::fs::write(
        l.state.join(qpci_store::STATE_FILE),
        daemon::qubes_xml(flags.clients, per_client, shared),
    )?;
    let api = Client::new(&l.socket);
    let mut totals = Totals::default();
    let mut d = Daemon::spawn(l, 0)?;
    totals.restarts += 1;
    let first_start = d.wait_ready(l)?;
    totals.slowest_start = first_start;
    let report = check::list(&api)?;
    let devices = Arc::new(check::devices(&report));
    let critical = devices.iter().filter(|d| d.critical).count();
    println!(
        "host: {} devices ({critical} dom0-critical); qubes: {per_client} per client, {shared} shared; first start {:.0} ms",
        devices.len(),
        first_start.as_secs_f64() * 1e3
    );
    if critical == 0 || devices.len() <= critical {
        bail!("the fixture needs both dom0-critical and assignable devices");
    }
    let control = Arc::new(Control::default());
    let models: Vec<Arc<Mutex<ClientModel>>> = (0..flags.clients)
        .map(|c| {
            Arc::new(Mutex::new(ClientModel::new(
                c,
                (0..per_client).map(|i| daemon::owned_name(c, i)),
            )))
        })
        .collect();
    let explain = Arc::new(Mutex::new(check::Explain::new()));
    let shared_assigned = Arc::new(Mutex::new(BTreeMap::new()));
    let shared_names = Arc::new((0..shared).map(daemon::shared_name).collect::<Vec<_>>());
    let threads: Vec<_> = models
        .iter()
        .enumerate()
        .map(|(c, m)| {
            let cx = ClientCtx {
                socket: l.socket.clone(),
                control: Arc::clone(&control),
                model: Arc::clone(m),
                devices: Arc::clone(&devices),
                shared: Arc::clone(&shared_names),
                explain: Arc::clone(&explain),
                shared_assigned: Arc::clone(&shared_assigned),
                initial: per_client,
                rng: Rng::stream(seed, c as u64 + 1),
            };
            std::thread::Builder::new()
                .name(format!("client-{c}"))
                .spawn(move || client::run(cx))
        })
        .collect::<std::io::Result<_>>()?;
    let mut rng = Rng::stream(seed, 0);
    let mut disk = check::read_disk(&l.state)?;
    let mut outcome = Ok(());
    let mut daemon = Some(d);
    for kill in 1..=flags.kills {
        let d = match daemon.take() {
            Some(d) => d,
            None => {
                totals.restarts += 1;
                // Some lives save slowly: kills then land more often between
                // a batch being applied and being durable.
                let delay = if rng.chance(30) {
                    totals.slow_save_lives += 1;
                    1 + rng.below(4) as u64
                } else {
                    0
                };
                Daemon::spawn(l, delay)?
            }
        };
        match cycle(
            kill,
            d,
            &mut rng,
            l,
            &api,
            &control,
            &models,
            &devices,
            &mut disk,
            &explain,
            &mut totals,
        ) {
            Ok(()) => {}
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
        if kill % 50 == 0 || kill == flags.kills {
            let (acked, checked, _, _, _) = sums(&models);
            println!(
                "  {kill:5} kills, {acked} acknowledged, {checked} checked, {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    if outcome.is_ok() {
        // The last kill is checked through a restarted daemon too.
        totals.restarts += 1;
        let mut d = Daemon::spawn(l, 0)?;
        outcome = verify_restart(flags.kills, &mut d, l, &api, &models, &disk, &mut totals);
        totals.peak_rss_kib = totals.peak_rss_kib.max(d.peak_rss_kib().unwrap_or(0));
        drop(d);
    }
    control.quit();
    for t in threads {
        let _ = t.join();
    }
    summary(&totals, &models, started.elapsed());
    if outcome.is_ok() && flags.kills >= 20 && totals.most_running_with_devices == 0 {
        bail!(
            "no qube ever ran with a PCI device: the device invariants were never exercised (is the fixture startable on this flavour?)"
        );
    }
    if outcome.is_ok() && flags.kills >= 20 && totals.paused_after_restart == 0 {
        bail!(
            "no qube was ever listed Paused by a restarted daemon: the pause paths were never checked across a kill"
        );
    }
    outcome
}

/// One daemon life: (kill during startup) or (restart, check, release
/// the clients, kill while they write), then the disk checks.
#[allow(clippy::too_many_arguments)]
fn cycle(
    kill: u64,
    mut d: Daemon,
    rng: &mut Rng,
    l: &Layout,
    api: &Client,
    control: &Control,
    models: &[Arc<Mutex<ClientModel>>],
    devices: &[model::Dev],
    disk: &mut Disk,
    explain: &Mutex<check::Explain>,
    totals: &mut Totals,
) -> Result<()> {
    let clients = models.len();
    if rng.chance(12) {
        // During startup and load: the clients stay parked.
        let window = totals.slowest_start.as_micros().max(1000) as usize;
        std::thread::sleep(Duration::from_micros(rng.below(window) as u64));
        totals.peak_rss_kib = totals.peak_rss_kib.max(d.peak_rss_kib().unwrap_or(0));
        d.kill()?;
        totals.startup_kills += 1;
    } else {
        verify_restart(kill - 1, &mut d, l, api, models, disk, totals)?;
        control.release(kill);
        let delay = match rng.below(100) {
            0..45 => rng.below(15_000),
            45..85 => 15_000 + rng.below(105_000),
            _ => 120_000 + rng.below(480_000),
        };
        std::thread::sleep(Duration::from_micros(delay as u64));
        if rng.chance(30) {
            // Land the kill inside a durable write: as soon as a save's
            // temporary file shows up (bounded wait).
            let until = Instant::now() + Duration::from_millis(300);
            while temps(&l.state) == 0 && Instant::now() < until {
                std::thread::sleep(Duration::from_micros(20));
            }
        } else {
            // Land the kill on a request in flight (bounded wait).
            let until = Instant::now() + Duration::from_millis(50);
            while control.in_flight.load(Ordering::SeqCst) == 0 && Instant::now() < until {
                std::hint::spin_loop();
            }
        }
        totals.peak_rss_kib = totals.peak_rss_kib.max(d.peak_rss_kib().unwrap_or(0));
        let in_flight = control.in_flight.load(Ordering::SeqCst) as u64;
        let alive = d.kill()?;
        if !alive {
            bail!(
                "kill #{kill}: qpcid had exited by itself before the kill; log:\n{}",
                daemon::log_tail(&l.log)
            );
        }
        control.park_all(clients);
        totals.in_flight_at_kills += in_flight;
        totals.kills_in_flight += u64::from(in_flight > 0);
    }
    totals.kills += 1;
    let (state_tmp, sim_tmp) = (temps(&l.state), temps(&l.state.join("sim")));
    totals.kills_mid_save += u64::from(state_tmp > 0);
    totals.kills_mid_runtime_write += u64::from(sim_tmp > totals.sim_leftovers);
    totals.sim_leftovers = sim_tmp;
    *disk = check::read_disk(&l.state).with_context(|| format!("kill #{kill}"))?;
    let with_devices = disk.running.values().filter(|d| !d.is_empty()).count() as u64;
    totals.running_with_devices += with_devices;
    totals.most_running_with_devices = totals.most_running_with_devices.max(with_devices);
    let mut f = Findings::default();
    let mut locked = lock_all(models);
    check::models_vs_disk(kill, &mut locked, disk, &mut f);
    drop(locked);
    check::disk_invariants(kill, &l.state, disk, devices, &mut f);
    {
        let e = explain.lock().unwrap_or_else(|p| p.into_inner());
        totals.judged += check::judge_started_on_unsaved(kill, &mut f, &mut totals.seen, &e) as u64;
    }
    for (qube, _) in &f.pvh_now {
        totals.pvh_now.entry(qube.clone()).or_insert(kill);
    }
    fail_on(f)
}

/// Waits for the daemon, then checks its answers against the models and
/// the disk as read after kill #`after`.
fn verify_restart(
    after: u64,
    d: &mut Daemon,
    l: &Layout,
    api: &Client,
    models: &[Arc<Mutex<ClientModel>>],
    disk: &Disk,
    totals: &mut Totals,
) -> Result<()> {
    let took = d
        .wait_ready(l)
        .with_context(|| format!("the daemon refused to restart after kill #{after}"))?;
    totals.slowest_start = totals.slowest_start.max(took);
    let report = check::list(api)?;
    let paused: Vec<_> = report
        .qubes
        .iter()
        .filter(|q| q.state == "Paused")
        .collect();
    totals.paused_after_restart += paused.len() as u64;
    totals.paused_with_devices += paused.iter().filter(|q| !q.attached.is_empty()).count() as u64;
    totals.most_paused = totals.most_paused.max(paused.len() as u64);
    let mut f = Findings::default();
    let mut locked = lock_all(models);
    check::api_checks(after, api, &report, &locked, disk, &mut f)?;
    if f.violations.is_empty() {
        for m in locked.iter_mut() {
            m.stats.checked += m.stats.unchecked;
            m.stats.unchecked = 0;
            m.touched.clear();
        }
    }
    drop(locked);
    fail_on(f)
}

fn fail_on(f: Findings) -> Result<()> {
    if f.violations.is_empty() {
        return Ok(());
    }
    let n = f.violations.len();
    let shown: Vec<&str> = f.violations.iter().take(20).map(String::as_str).collect();
    bail!("{n} violation(s):\n  {}", shown.join("\n  "))
}

/// The models, locked (the clients are parked).
fn lock_all(models: &[Arc<Mutex<ClientModel>>]) -> Vec<MutexGuard<'_, ClientModel>> {
    models
        .iter()
        .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()))
        .collect()
}

/// (acknowledged, checked, refused, in flight at kills, found applied).
fn sums(models: &[Arc<Mutex<ClientModel>>]) -> (u64, u64, u64, u64, u64) {
    let mut t = (0, 0, 0, 0, 0);
    for m in lock_all(models) {
        let s = &m.stats;
        t.0 += s.acked;
        t.1 += s.checked;
        t.2 += s.refused;
        t.3 += s.unknown;
        t.4 += s.unknown_applied;
    }
    t
}

fn summary(t: &Totals, models: &[Arc<Mutex<ClientModel>>], elapsed: Duration) {
    let (acked, checked, refused, unknown, applied) = sums(models);
    let (mut shared_acked, mut shared_refused, mut not_sent) = (0, 0, 0);
    for m in lock_all(models) {
        shared_acked += m.stats.shared_acked;
        shared_refused += m.stats.shared_refused;
        not_sent += m.stats.not_sent;
    }
    println!("summary:");
    println!(
        "  kills survived          {} ({} during startup/load, {} with >= 1 request in flight, {} requests in flight in all)",
        t.kills, t.startup_kills, t.kills_in_flight, t.in_flight_at_kills
    );
    println!(
        "  daemon restarts         {} ({} with a 1-4 ms save delay)",
        t.restarts, t.slow_save_lives
    );
    println!(
        "  owned mutations         {acked} acknowledged, {checked} checked after a restart, {refused} refused"
    );
    println!(
        "  in flight at a kill     {unknown} (owned ones found applied: {applied}); {not_sent} never delivered"
    );
    println!(
        "  shared-pool mutations   {shared_acked} acknowledged, {shared_refused} refused (invariants only)"
    );
    let mut p = model::Stats::default();
    for m in lock_all(models) {
        p.pause_acked += m.stats.pause_acked;
        p.pause_refused += m.stats.pause_refused;
        p.unpause_acked += m.stats.unpause_acked;
        p.unpause_refused += m.stats.unpause_refused;
        p.predicted += m.stats.predicted;
        p.on_paused += m.stats.on_paused;
    }
    println!(
        "  pause / unpause         {} / {} acknowledged, {} / {} refused (owned and shared)",
        p.pause_acked, p.unpause_acked, p.pause_refused, p.unpause_refused
    );
    println!(
        "  owned replies predicted {} exactly as the model said ({} of them on a paused qube)",
        p.predicted, p.on_paused
    );
    println!(
        "  paused after a restart  {:.1} qubes per restart on average ({} with PCI devices in all), {} at most",
        t.paused_after_restart as f64 / t.restarts.max(1) as f64,
        t.paused_with_devices,
        t.most_paused
    );
    println!(
        "  kills mid-write         {} left a temp file in state/, {} a new one in state/sim ({} there at the end)",
        t.kills_mid_save, t.kills_mid_runtime_write, t.sim_leftovers
    );
    println!(
        "  running with PCI devices {:.1} qubes per kill on average, {} at most",
        t.running_with_devices as f64 / t.kills.max(1) as f64,
        t.most_running_with_devices
    );
    println!(
        "  qubes seen running with PCI devices while virt_mode read pvh (started hvm): {}",
        t.pvh_now.len()
    );
    println!(
        "  running qubes newly seen holding an unassigned device or reading pvh: {} (all explained by an Unassign or virt_mode=pvh in their life)",
        t.judged
    );
    let locked = lock_all(models);
    for (qube, kill) in t.pvh_now.iter().take(3) {
        let owner = locked.iter().find(|m| m.history.contains_key(qube));
        let history =
            owner.map_or_else(|| "      (shared qube)".to_owned(), |m| m.history_of(qube));
        println!("    {qube}, first after kill #{kill}; recent calls:\n{history}");
    }
    println!(
        "  qpcid peak RSS          {:.1} MiB (VmHWM); slowest start {:.0} ms",
        t.peak_rss_kib as f64 / 1024.0,
        t.slowest_start.as_secs_f64() * 1e3
    );
    println!("  elapsed                 {:.1} s", elapsed.as_secs_f64());
}
