//! A background thread reading qpcid's `admin.Events` stream (spec §1.6):
//! every event after `connection-established` calls `notify` (the dialog
//! then reloads). When the stream ends (daemon restart, lag), it reconnects
//! after a pause and notifies once, since events may have been missed.

use std::io::Read;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use qpci_api::{Event, RawRequest};

/// Stops the thread when dropped.
#[derive(Debug)]
pub struct Watcher {
    stop: Arc<AtomicBool>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Splits complete event frames (`1\0subject\0event\0{k\0v\0}*\0`) off
/// the front of `buf`.
pub fn take_frames(buf: &mut Vec<u8>) -> Vec<Event> {
    let mut out = Vec::new();
    loop {
        let fields: Vec<&[u8]> = buf.split(|b| *b == 0).collect();
        // Need "1", subject, name, then pairs, then an empty field.
        if fields.len() < 4 {
            break;
        }
        let mut i = 3;
        let mut kwargs = Vec::new();
        let mut complete = false;
        while i < fields.len() - 1 {
            if fields[i].is_empty() {
                complete = true;
                break;
            }
            if i + 1 >= fields.len() - 1 {
                break;
            }
            kwargs.push((
                String::from_utf8_lossy(fields[i]).into_owned(),
                String::from_utf8_lossy(fields[i + 1]).into_owned(),
            ));
            i += 2;
        }
        if !complete {
            break;
        }
        let used: usize = fields[..=i].iter().map(|f| f.len() + 1).sum();
        out.push(Event {
            subject: String::from_utf8_lossy(fields[1]).into_owned(),
            name: String::from_utf8_lossy(fields[2]).into_owned(),
            kwargs,
        });
        buf.drain(..used.min(buf.len()));
    }
    out
}

/// Starts the watcher on `socket`.
pub fn watch(socket: PathBuf, notify: impl Fn() + Send + 'static) -> Watcher {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let spawned = std::thread::Builder::new()
        .name("qpci-events".into())
        .spawn(move || {
            let mut first = true;
            while !flag.load(Ordering::Relaxed) {
                if let Ok(mut stream) = UnixStream::connect(&socket) {
                    if !first {
                        notify();
                    }
                    first = false;
                    let request = RawRequest::new("admin.Events", "", "dom0", Vec::new());
                    let ok = std::io::Write::write_all(&mut stream, &request.encode()).is_ok()
                        && stream.shutdown(Shutdown::Write).is_ok()
                        && stream
                            .set_read_timeout(Some(Duration::from_millis(500)))
                            .is_ok();
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while ok && !flag.load(Ordering::Relaxed) {
                        match stream.read(&mut chunk) {
                            Ok(0) => break,
                            Ok(n) => {
                                buf.extend_from_slice(&chunk[..n]);
                                let events = take_frames(&mut buf);
                                if events.iter().any(|e| e.name != "connection-established") {
                                    notify();
                                }
                            }
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                                ) => {}
                            Err(_) => break,
                        }
                    }
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        });
    if let Err(e) = spawned {
        eprintln!("qubes-vm-settings: no live refresh (cannot start the event thread: {e})");
    }
    Watcher { stop }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split() {
        let mut buf = Event::connection_established().encode();
        let e = Event {
            subject: "work".into(),
            name: "device-assign:pci".into(),
            kwargs: vec![("device".into(), "dom0:00_14.0:x".into())],
        };
        let bytes = e.encode();
        buf.extend_from_slice(&bytes[..5]);
        let got = take_frames(&mut buf);
        assert_eq!(got, vec![Event::connection_established()]);
        buf.extend_from_slice(&bytes[5..]);
        assert_eq!(take_frames(&mut buf), vec![e]);
        assert!(buf.is_empty());
    }
}
