//! Concurrency (issue 10 part 2): 64 qubes share one PCI device and 64
//! clients, released together, start them at once. Every round exactly one
//! start wins, every other gets the refusal naming the winner, every client
//! gets its reply (a missing reply within [`REPLY_BOUND`] is the failure:
//! a deadlock), exactly one qube runs afterwards and it holds the device;
//! then the winner is stopped and the next round starts. A second test
//! mixes in state writes: half the clients start, the other half assign and
//! unassign another device on the same qubes.
//!
//! Short form: 20 rounds each; `QPCI_LONG=1`: 500.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod methods_common;
mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use support::Daemon;
use support::table::escape;

/// Qubes, and clients per round.
const QUBES: usize = 64;
/// The bound on every reply; only a missing reply fails on time.
const REPLY_BOUND: Duration = Duration::from_secs(60);
/// The shared device: FLR, its own IOMMU group, not needed by dom0.
const SHARED_PORT: &str = "00_14.0";
const SHARED: &str = "00_14.0 (0000:00:14.0)";
const SHARED_ASSIGN: &str = "dom0+00_14.0+0x8086+0xa0ed++p0c0330";
/// The device the writers of the mixed test assign and unassign.
const OTHER: &str = "00_1c.0-00_00.0 (0000:aa:00.0)";
const OTHER_ASSIGN: &str = "dom0+00_1c.0-00_00.0+0x8086+0x2725++p028000";

fn rounds() -> usize {
    if std::env::var_os("QPCI_LONG").is_some_and(|v| v == "1") {
        500
    } else {
        20
    }
}

fn qube(i: usize) -> String {
    format!("q{i:02}")
}

/// The spec fixture's qubes.xml without a default netvm (a start would
/// start sys-net too) plus 64 AppVMs with no netvm.
fn qubes_xml() -> String {
    let mut domains = String::new();
    for i in 0..QUBES {
        domains.push_str(&format!(
            r#"    <domain id="domain-{id}" class="AppVM">
      <properties>
        <property name="qid">{id}</property>
        <property name="name">{name}</property>
        <property name="uuid">00000000-0000-4000-8000-{id:012}</property>
        <property name="label" ref="label-4"/>
        <property name="template">fedora-40</property>
        <property name="netvm"></property>
      </properties>
      <features/>
      <tags/>
    </domain>
"#,
            id = i + 10,
            name = qube(i)
        ));
    }
    let xml = methods_common::QUBES_XML
        .replace(
            "    <property name=\"default_netvm\">sys-net</property>\n",
            "",
        )
        .replace("  </domains>", &format!("{domains}  </domains>"));
    assert!(!xml.contains("default_netvm"));
    xml
}

/// One call with every wait bounded; `Err` when the reply is missing.
fn call(socket: &Path, method_arg: &str, dest: &str, payload: &str) -> Result<Vec<u8>, String> {
    let mut s = UnixStream::connect(socket).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(REPLY_BOUND)).unwrap();
    s.set_write_timeout(Some(REPLY_BOUND)).unwrap();
    let request = format!("{method_arg} dom0 name {dest}\0{payload}");
    s.write_all(request.as_bytes())
        .and_then(|()| s.shutdown(Shutdown::Write))
        .map_err(|e| format!("{method_arg} {dest}: send: {e}"))?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .map_err(|e| format!("{method_arg} {dest}: no reply within {REPLY_BOUND:?}: {e}"))?;
    if out.is_empty() {
        return Err(format!("{method_arg} {dest}: closed without a reply"));
    }
    Ok(out)
}

fn ok(d: &Daemon, method_arg: &str, dest: &str, payload: &str) -> String {
    let reply = call(&d.socket, method_arg, dest, payload).unwrap();
    let text = String::from_utf8(reply).unwrap();
    assert!(text.starts_with("0\0"), "{method_arg} {dest}: {text:?}");
    text[2..].to_owned()
}

/// The daemon with the 64 qubes, each assigned the shared device.
fn daemon() -> Daemon {
    let d = Daemon::start_on(
        &methods_common::topology(),
        methods_common::PCI_IDS,
        Some(&qubes_xml()),
        &[],
    );
    for i in 0..QUBES {
        let arg = format!("admin.vm.device.pci.Assign+{SHARED_ASSIGN}");
        ok(&d, &arg, &qube(i), "mode='required'");
    }
    d
}

/// What one client of a round did.
enum Done {
    Start { qube: String, reply: Vec<u8> },
    Writes { qube: String, replies: Vec<Vec<u8>> },
}

/// A client's result, or the reason its reply is missing.
type Outcome = Result<Done, String>;

/// The refusal a losing start must get.
fn held(qube: &str, device: &str, holder: &str) -> Vec<u8> {
    support::exc(
        "QubesException",
        &format!(
            "Cannot start {qube}: pci device {device} is in use by {holder}, which is running; shut {holder} down first"
        ),
    )
}

/// Tallies over all rounds.
#[derive(Default)]
struct Tally {
    wins: BTreeMap<String, usize>,
    refused_shared: usize,
    refused_other: usize,
    writes: usize,
    slowest: Duration,
}

/// Runs one round; `writers`: odd clients assign/unassign the other device
/// on the qube of the even client before them instead of starting.
fn round(d: &Daemon, n: usize, writers: bool, tally: &mut Tally) {
    let barrier = Arc::new(Barrier::new(QUBES));
    let (tx, rx) = mpsc::channel::<Outcome>();
    let started = Instant::now();
    for i in 0..QUBES {
        let barrier = Arc::clone(&barrier);
        let tx = tx.clone();
        let socket: PathBuf = d.socket.clone();
        std::thread::spawn(move || {
            let write = writers && i % 2 == 1;
            barrier.wait();
            let outcome = if write {
                let target = qube(i - 1);
                let mut replies = Vec::new();
                let calls = [
                    format!("admin.vm.device.pci.Assign+{OTHER_ASSIGN}"),
                    format!("admin.vm.device.pci.Unassign+{OTHER_ASSIGN}"),
                ];
                let mut failed = None;
                for (k, method_arg) in calls.iter().enumerate() {
                    let payload = if k == 0 { "mode='required'" } else { "" };
                    match call(&socket, method_arg, &target, payload) {
                        Ok(r) => replies.push(r),
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                match failed {
                    Some(e) => Err(e),
                    None => Ok(Done::Writes {
                        qube: target,
                        replies,
                    }),
                }
            } else {
                let q = qube(i);
                call(&socket, "admin.vm.Start+", &q, "").map(|reply| Done::Start { qube: q, reply })
            };
            let _ = tx.send(outcome);
        });
    }
    drop(tx);
    // The watchdog: every client answers within the bound (plus the time
    // to connect), or the round fails naming how many are missing.
    let deadline = started + REPLY_BOUND * 2;
    let mut done = Vec::new();
    while done.len() < QUBES {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Ok(x)) => done.push(x),
            Ok(Err(e)) => panic!("round {n}: {e}\n{:#?}", tail(d)),
            Err(_) => panic!(
                "round {n}: {} of {QUBES} clients got no reply within {:?} (deadlock?)\n{:#?}",
                QUBES - done.len(),
                REPLY_BOUND * 2,
                tail(d)
            ),
        }
    }
    tally.slowest = tally.slowest.max(started.elapsed());

    let winners: Vec<&String> = done
        .iter()
        .filter_map(|x| match x {
            Done::Start { qube, reply } if reply == b"0\0" => Some(qube),
            _ => None,
        })
        .collect();
    assert_eq!(winners.len(), 1, "round {n}: winners {winners:?}");
    let winner = winners[0].clone();
    *tally.wins.entry(winner.clone()).or_default() += 1;
    for x in &done {
        match x {
            Done::Start { qube, .. } if *qube == winner => {}
            Done::Start { qube, reply } => {
                if *reply == held(qube, SHARED, &winner) {
                    tally.refused_shared += 1;
                } else if writers && *reply == held(qube, OTHER, &winner) {
                    // The winner started while it had the other device too.
                    tally.refused_other += 1;
                } else {
                    panic!(
                        "round {n}: start of {qube} (winner {winner}) got {}",
                        escape(reply)
                    );
                }
            }
            Done::Writes { qube, replies } => {
                for r in replies {
                    assert_eq!(
                        escape(r),
                        escape(b"0\0"),
                        "round {n}: assign/unassign on {qube}"
                    );
                    tally.writes += 1;
                }
            }
        }
    }

    // Exactly the winner runs, and it holds the shared device.
    let list = ok(d, "admin.vm.List+", "dom0", "");
    let running: Vec<&str> = list
        .lines()
        .filter(|l| l.contains(" state=Running") && !l.starts_with("dom0 "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    assert_eq!(running, [winner.as_str()], "round {n}: {list}");
    let state = ok(d, "admin.vm.CurrentState+", &winner, "");
    assert!(state.ends_with("power_state=Running"), "{state}");
    let attached = ok(d, "admin.vm.device.pci.Attached+", &winner, "");
    assert!(
        attached.contains(&format!("port_id='{SHARED_PORT}'")),
        "round {n}: {winner} holds {attached:?}"
    );
    if writers {
        // Every assignment of the other device was taken back.
        for i in (0..QUBES).step_by(2) {
            let assigned = ok(d, "admin.vm.device.pci.Assigned+", &qube(i), "");
            assert_eq!(
                assigned.lines().count(),
                1,
                "round {n}: {} has {assigned}",
                qube(i)
            );
            assert!(assigned.contains(&format!("port_id='{SHARED_PORT}'")));
        }
    }
    // Stop the winner, by shutdown and by kill in turn.
    let stop = if n.is_multiple_of(2) {
        "admin.vm.Shutdown+force"
    } else {
        "admin.vm.Kill+"
    };
    ok(d, stop, &winner, "");
    let state = ok(d, "admin.vm.CurrentState+", &winner, "");
    assert!(state.ends_with("power_state=Halted"), "{state}");
}

fn tail(d: &Daemon) -> Vec<String> {
    let lines = d.log_lines();
    lines[lines.len().saturating_sub(30)..].to_vec()
}

fn race(writers: bool) {
    let mut d = daemon();
    let rounds = rounds();
    let mut tally = Tally::default();
    let started = Instant::now();
    for n in 0..rounds {
        round(&d, n, writers, &mut tally);
    }
    assert!(d.alive());
    assert!(!d.log_has("panicked"), "{:#?}", d.log_lines());
    eprintln!(
        "start race{}: {rounds} rounds of {QUBES} clients in {:.1?} (slowest round {:.1?}); \
         {} distinct winners; refusals naming the holder: {} for {SHARED}, {} for {OTHER}; \
         {} assign/unassign writes",
        if writers { " with writes" } else { "" },
        started.elapsed(),
        tally.slowest,
        tally.wins.len(),
        tally.refused_shared,
        tally.refused_other,
        tally.writes,
    );
    let starters = if writers { QUBES / 2 } else { QUBES };
    assert_eq!(
        tally.refused_shared + tally.refused_other,
        rounds * (starters - 1)
    );
}

#[test]
fn sixty_four_starts_on_one_device_one_winner_per_round() {
    race(false);
}

#[test]
fn starts_race_with_assignment_writes_on_the_same_qubes() {
    race(true);
}
