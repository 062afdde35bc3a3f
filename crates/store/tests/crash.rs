//! SIGKILL a writer at random points during saves: what is on disk afterwards
//! is always the old or the new state, whole, and the next open works.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use qpci_store::{STATE_FILE, StateFile, TEMP_PREFIX};

/// Set in the child: the state folder to write into.
const CHILD_ENV: &str = "QPCI_STORE_CRASH_CHILD_DIR";
/// Large enough that a save takes a few milliseconds (about 100 KiB).
const QUBES: usize = 100;

/// The writer, run in a child process by the test below (a no-op otherwise):
/// saves two distinct states alternately, forever, printing `#` after each.
#[test]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let states = [common::generated(QUBES, 1), common::generated(QUBES, 2)];
    let (mut sf, _) = StateFile::open(dir.as_ref()).unwrap();
    let mut out = std::io::stdout();
    for i in 0.. {
        sf.save(&states[i % 2]).unwrap();
        out.write_all(b"#").unwrap();
        out.flush().unwrap();
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn sigkill_during_saves_leaves_old_or_new_state() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let a = common::generated(QUBES, 1);
    let b = common::generated(QUBES, 2);
    let (text_a, text_b) = (a.to_xml(), b.to_xml());
    assert_ne!(text_a, text_b);
    {
        let (mut sf, _) = StateFile::open(dir.path()).unwrap();
        sf.save(&a).unwrap();
    }
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("crash test seed {seed}");
    let mut rng = Rng(seed);
    let (mut saves, mut kills, mut stray_temps) = (0usize, 0usize, 0usize);
    let started = Instant::now();
    while kills < 200 || saves < 200 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "crash test too slow: {kills} kills, {saves} saves"
        );
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        // Wait for the first completed save, so the kill lands in the save loop,
        // then kill at a random point within the next few saves.
        let mut seen = Vec::new();
        let mut byte = [0u8; 1];
        while !seen.contains(&b'#') {
            let n = stdout.read(&mut byte).unwrap();
            assert!(n == 1, "writer child ended before its first save");
            seen.push(byte[0]);
        }
        std::thread::sleep(Duration::from_micros(rng.next() % 30_000));
        child.kill().unwrap();
        child.wait().unwrap();
        stdout.read_to_end(&mut seen).unwrap();
        saves += seen.iter().filter(|&&c| c == b'#').count();
        kills += 1;

        let on_disk = std::fs::read_to_string(dir.path().join(STATE_FILE)).unwrap();
        assert!(
            on_disk == text_a || on_disk == text_b,
            "kill {kills}: partial or foreign state ({} bytes)",
            on_disk.len()
        );
        let temps = || {
            std::fs::read_dir(dir.path())
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .starts_with(TEMP_PREFIX)
                })
                .count()
        };
        stray_temps += temps();
        let (sf, loaded) = StateFile::open(dir.path()).unwrap();
        assert_eq!(loaded.unwrap().to_xml(), on_disk);
        assert_eq!(temps(), 0, "open left a stray temp file");
        drop(sf);
    }
    assert!(!dir.path().join(qpci_store::BEFORE_QPCI_FILE).exists());
    eprintln!(
        "{kills} kills over {saves} completed saves, {stray_temps} stray temp files cleaned, {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
