//! `admin.Events`: the event stream (spec/admin-api.md §1.6).
//!
//! The state owner publishes each handler's [`Outcome::events`] to an
//! [`EventHub`] once the change is durable (a broadcast channel). A
//! subscriber is registered on the owner thread, after name resolution and
//! the generic checks, so it sees exactly the events published after its
//! request was accepted. Its connection then writes
//! `1\0\0connection-established\0\0` and every later event whose subject is
//! its destination (a dom0 subscriber gets all of them, app-level events
//! included), until the client goes away, the daemon stops, or the
//! subscriber falls [`CAPACITY`] events behind (the stream is then closed,
//! so the client reconnects and refreshes instead of missing changes
//! silently).
//!
//! The client half-closes after its request, so a disconnect shows only as
//! a hang-up: the stream polls for it every [`HANGUP_POLL`] between events.
//!
//! [`Outcome::events`]: crate::dispatch::Outcome::events

use std::os::fd::AsFd;
use std::time::Duration;

use qpci_api::Event;
use qpci_types::QubeName;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::sync::{broadcast, watch};

/// Events a subscriber may lag behind before its stream is closed.
pub const CAPACITY: usize = 4096;
/// How often an idle stream checks whether its client hung up.
pub const HANGUP_POLL: Duration = Duration::from_millis(500);

/// Where published events go.
#[derive(Debug, Clone)]
pub struct EventHub {
    tx: broadcast::Sender<Event>,
}

impl Default for EventHub {
    fn default() -> Self {
        Self::new()
    }
}

impl EventHub {
    /// A hub with no subscribers.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        Self { tx }
    }

    /// Sends events to every current subscriber.
    pub fn publish(&self, events: impl IntoIterator<Item = Event>) {
        for e in events {
            // No subscriber is not an error.
            let _ = self.tx.send(e);
        }
    }

    /// A new subscriber for `dest`'s events.
    pub fn subscribe(&self, dest: QubeName) -> Subscription {
        Subscription {
            dest,
            rx: self.tx.subscribe(),
        }
    }

    /// How many streams are open.
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }
}

/// One `admin.Events` subscriber.
#[derive(Debug)]
pub struct Subscription {
    dest: QubeName,
    rx: broadcast::Receiver<Event>,
}

impl Subscription {
    /// Whether this subscriber wants `event`.
    pub fn wants(&self, event: &Event) -> bool {
        self.dest.is_dom0() || event.subject == self.dest.as_str()
    }

    /// Streams events to `stream` until the client hangs up, `stop` turns
    /// true, a write fails, or the subscriber lags behind.
    pub async fn run(mut self, stream: &mut UnixStream, mut stop: watch::Receiver<bool>) {
        if write(stream, &Event::connection_established())
            .await
            .is_err()
        {
            return;
        }
        let mut poll = tokio::time::interval(HANGUP_POLL);
        loop {
            tokio::select! {
                ev = self.rx.recv() => match ev {
                    Ok(ev) => {
                        if self.wants(&ev) && write(stream, &ev).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(dest = %self.dest, missed = n, "events subscriber too slow; closing its stream");
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = poll.tick() => {
                    if hung_up(stream) {
                        tracing::debug!(dest = %self.dest, "events client went away");
                        return;
                    }
                }
                _ = stopped(&mut stop) => return,
            }
        }
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn write(stream: &mut UnixStream, event: &Event) -> std::io::Result<()> {
    stream.write_all(&event.encode()).await
}

/// `true` when the peer closed its end entirely (POLLHUP/POLLERR).
fn hung_up(stream: &UnixStream) -> bool {
    use rustix::event::{PollFd, PollFlags, poll};
    let fd = stream.as_fd();
    let mut fds = [PollFd::new(&fd, PollFlags::empty())];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match poll(&mut fds, Some(&zero)) {
        Ok(_) => fds[0].revents().intersects(PollFlags::HUP | PollFlags::ERR),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(subject: &str) -> Event {
        Event {
            subject: subject.to_owned(),
            name: "x".to_owned(),
            kwargs: Vec::new(),
        }
    }

    #[test]
    fn filtering_per_destination() {
        let hub = EventHub::new();
        let all = hub.subscribe(QubeName::dom0());
        let work = hub.subscribe("work".parse().unwrap());
        assert!(all.wants(&ev("")) && all.wants(&ev("work")));
        assert!(work.wants(&ev("work")));
        assert!(!work.wants(&ev("")) && !work.wants(&ev("other")));
        assert_eq!(hub.subscribers(), 2);
    }
}
