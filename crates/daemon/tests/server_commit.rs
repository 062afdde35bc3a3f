//! Group commit and the read path: concurrent writers share saves, every
//! ok reply is already on disk, readers never wait for a save nor see an
//! unsaved change, a failed save rolls back, events follow durability.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use support::{Daemon, exc, read_frame, subscribe};

/// dom0's features as the state file on disk has them now.
fn features_on_disk(d: &Daemon) -> std::collections::BTreeMap<String, String> {
    let xml = qpci_store::read_state(&d.state.join("qubes.xml")).unwrap();
    xml.domains
        .into_iter()
        .find(|r| r.name == "dom0")
        .unwrap()
        .features
}

#[test]
fn concurrent_writers_share_saves_and_every_ok_is_durable() {
    let d = Arc::new(Daemon::start(&["--test-save-delay-ms", "40"]));
    const CLIENTS: usize = 32;
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let d = Arc::clone(&d);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let name = format!("f{i}");
                let reply = d.call(
                    "qpci.test.SetFeature",
                    &name,
                    "dom0",
                    format!("v{i}").as_bytes(),
                );
                assert_eq!(reply, b"0\0", "client {i}");
                // The reply came after the save: the file has it already.
                assert_eq!(
                    features_on_disk(&d).get(&name).map(String::as_str),
                    Some(format!("v{i}").as_str()),
                    "client {i}'s change is on disk when it is told ok"
                );
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // The log is read by another thread: let it catch up.
    std::thread::sleep(Duration::from_millis(300));
    let saves = d.log_count("state saved");
    assert!(
        (1..CLIENTS).contains(&saves),
        "{saves} saves for {CLIENTS} clients"
    );
    let on_disk = features_on_disk(&d);
    assert_eq!(on_disk.len(), CLIENTS);
    eprintln!("{CLIENTS} concurrent writers: {saves} saves");
}

#[test]
fn reads_do_not_wait_for_a_slow_save_and_see_only_durable_state() {
    let d = Arc::new(Daemon::start(&["--test-save-delay-ms", "1500"]));
    let writer = {
        let d = Arc::clone(&d);
        std::thread::spawn(move || {
            let started = Instant::now();
            let r = d.call("qpci.test.SetFeature", "slow", "dom0", b"yes");
            (r, started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let read = d.call("qpci.test.GetFeature", "slow", "dom0", b"");
    let read_took = started.elapsed();
    assert!(
        read_took < Duration::from_millis(700),
        "a read waited {read_took:?} for the save"
    );
    assert!(
        read.starts_with(b"2\0QubesFeatureNotFoundError\0"),
        "the unsaved change is not visible: {:?}",
        String::from_utf8_lossy(&read)
    );
    let (reply, write_took) = writer.join().unwrap();
    assert_eq!(reply, b"0\0");
    assert!(write_took >= Duration::from_millis(1400), "{write_took:?}");
    assert_eq!(
        d.call("qpci.test.GetFeature", "slow", "dom0", b""),
        b"0\0yes".to_vec()
    );
}

#[test]
fn a_failed_save_answers_an_error_and_rolls_back() {
    let d = Daemon::start(&[]);
    assert_eq!(d.call("qpci.test.SetFeature", "a", "dom0", b"1"), b"0\0");
    // Make the next save fail: a folder where the state file goes.
    let file = d.state.join("qubes.xml");
    let saved = std::fs::read(&file).unwrap();
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir(&file).unwrap();
    let reply =
        String::from_utf8_lossy(&d.call("qpci.test.SetFeature", "b", "dom0", b"2")).into_owned();
    assert!(
        reply.starts_with(
            "2\0QubesException\0\0the change was not applied: saving the state failed"
        ),
        "{reply:?}"
    );
    assert!(
        d.call("qpci.test.GetFeature", "b", "dom0", b"")
            .starts_with(b"2\0QubesFeatureNotFoundError\0"),
        "rolled back"
    );
    std::fs::remove_dir(&file).unwrap();
    std::fs::write(&file, saved).unwrap();
    assert_eq!(d.call("qpci.test.SetFeature", "c", "dom0", b"3"), b"0\0");
    let on_disk = features_on_disk(&d);
    assert_eq!(on_disk.get("a").map(String::as_str), Some("1"));
    assert_eq!(on_disk.get("b"), None);
    assert_eq!(on_disk.get("c").map(String::as_str), Some("3"));
}

#[test]
fn refused_writes_are_answered_and_change_nothing() {
    let d = Daemon::start(&[]);
    assert_eq!(d.call("qpci.test.SetFeature", "ok", "dom0", b"1"), b"0\0");
    let before = std::fs::read(d.state.join("qubes.xml")).unwrap();
    assert!(d.wait_log("state saved"));
    let saves = d.log_count("state saved");
    assert_eq!(
        d.call("qpci.test.SetFeature", "bad!", "dom0", b"1"),
        exc("ProtocolError", "feature name contains illegal characters")
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(d.log_count("state saved"), saves, "no save for a refusal");
    assert_eq!(std::fs::read(d.state.join("qubes.xml")).unwrap(), before);
    assert!(d.wait_log("mutating call method=\"qpci.test.SetFeature\" dest=\"dom0\" uid="));
}

#[test]
fn state_survives_a_restart() {
    let mut d = Daemon::start(&[]);
    assert_eq!(
        d.call("qpci.test.SetFeature", "kept", "dom0", b"yes"),
        b"0\0"
    );
    assert!(d.stop().success());
    let dir = std::mem::replace(&mut d.dir, tempfile::tempdir().unwrap());
    drop(d);
    let d = Daemon::start_in(dir, &[]);
    assert_eq!(
        d.call("qpci.test.GetFeature", "kept", "dom0", b""),
        b"0\0yes".to_vec()
    );
}

#[test]
fn events_stream_after_durability_and_ends_on_disconnect() {
    let mut d = Daemon::start(&["--idle-exit", "1"]);
    let mut s = subscribe(&d, "dom0");
    read_frame(&mut s, b"1\0\0connection-established\0\0");
    assert_eq!(d.call("qpci.test.SetFeature", "ev", "dom0", b"on"), b"0\0");
    read_frame(
        &mut s,
        b"1\0dom0\0domain-feature-set:ev\0feature\0ev\0value\0on\0\0",
    );
    // A refused change publishes nothing; the next event is the next change.
    assert!(
        d.call("qpci.test.SetFeature", "bad!", "dom0", b"")
            .starts_with(b"2\0")
    );
    assert_eq!(d.call("qpci.test.SetFeature", "ev2", "dom0", b""), b"0\0");
    read_frame(
        &mut s,
        b"1\0dom0\0domain-feature-set:ev2\0feature\0ev2\0value\0\0\0",
    );
    // An open stream keeps an idle daemon alive...
    std::thread::sleep(Duration::from_millis(2000));
    assert!(d.alive(), "a subscriber keeps it up");
    // ...and closing it ends the stream, so the idle exit follows.
    drop(s);
    let st = d.wait_exit(Duration::from_secs(10));
    assert!(
        st.is_some_and(|s| s.success()),
        "idle exit after the subscriber left"
    );
}

#[test]
fn a_qube_subscriber_gets_only_its_own_events() {
    let d = Daemon::start(&[]);
    assert_eq!(
        d.call(
            "admin.vm.Create.StandaloneVM",
            "",
            "dom0",
            b"name=work label=red"
        ),
        b"0\0"
    );
    let mut work = subscribe(&d, "work");
    read_frame(&mut work, b"1\0\0connection-established\0\0");
    let mut all = subscribe(&d, "dom0");
    read_frame(&mut all, b"1\0\0connection-established\0\0");
    assert_eq!(d.call("qpci.test.SetFeature", "a", "dom0", b"1"), b"0\0");
    assert_eq!(d.call("qpci.test.SetFeature", "b", "work", b"2"), b"0\0");
    let dom0_event = b"1\0dom0\0domain-feature-set:a\0feature\0a\0value\x001\0\0";
    let work_event = b"1\0work\0domain-feature-set:b\0feature\0b\0value\x002\0\0";
    read_frame(&mut all, dom0_event);
    read_frame(&mut all, work_event);
    // The work subscriber's first frame after the greeting is work's event.
    read_frame(&mut work, work_event);
}

#[test]
fn sigterm_during_a_save_finishes_it_before_exiting() {
    let d = Arc::new(Daemon::start(&["--test-save-delay-ms", "800"]));
    let writer = {
        let d = Arc::clone(&d);
        std::thread::spawn(move || d.call("qpci.test.SetFeature", "last", "dom0", b"words"))
    };
    std::thread::sleep(Duration::from_millis(200));
    d.term();
    assert_eq!(
        writer.join().unwrap(),
        b"0\0",
        "the in-flight call is answered"
    );
    let mut d = Arc::into_inner(d).unwrap();
    let st = d.wait_exit(Duration::from_secs(20)).unwrap();
    assert!(st.success());
    assert!(!d.socket.exists());
    assert_eq!(
        features_on_disk(&d).get("last").map(String::as_str),
        Some("words")
    );
}
