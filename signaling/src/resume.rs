//! Sessions that outlive their WebSocket.
//!
//! A participant joined over a WebSocket gets a resume token in `joined`.
//! When its connection drops without a `leave` (a network change, a proxy
//! timing out) the session is *parked* instead of ended: the participant
//! stays in its room and in the SFU, messages for it keep queueing, and a
//! new connection that sends `resume` with the token within the grace
//! period takes the session back. Nobody else notices. Past the grace
//! period, or if the parked queue fills, the participant leaves as it did
//! before this existed.
//!
//! Nothing is lost across the drop in either direction: each side counts
//! the messages it has received in the session and says so (`resume`,
//! `resumed`); the other sends again what came after. The server keeps the
//! last messages it wrote to the socket for that ([`Replay`]); messages
//! that were queued but not yet written are simply still queued
//! ([`Outlet`]).
//!
//! [`Resumable`] maps tokens to sessions, each attached to a connection or
//! parked; the WebSocket endpoint moves them between the two.

use crate::lock::lock;
use crate::outbound::{Conn, Outbound};
use axum::extract::ws::Utf8Bytes;
use huddle_sfu::{ParticipantId, Rights};
use rand::distr::{Alphanumeric, SampleString};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, Notify};

/// Most messages kept for sending again after a drop.
pub const REPLAY_MESSAGES: usize = 128;

/// Most bytes of messages kept for sending again after a drop (the newest
/// message is kept whatever its size).
pub const REPLAY_BYTES: usize = 512 * 1024;

/// A new resume token: 32 random alphanumerics (about 190 bits).
pub(crate) fn new_token() -> String {
    Alphanumeric.sample_string(&mut rand::rng(), 32)
}

/// The messages written toward one participant, counted from the first
/// connection of its session, the most recent kept.
#[derive(Debug, Default)]
pub(crate) struct Replay {
    written: u64,
    kept: VecDeque<Utf8Bytes>,
    bytes: usize,
}

impl Replay {
    /// `text` is being written to the socket.
    pub(crate) fn record(&mut self, text: Utf8Bytes) {
        self.written += 1;
        self.bytes += text.len();
        self.kept.push_back(text);
        while self.kept.len() > REPLAY_MESSAGES
            || (self.bytes > REPLAY_BYTES && self.kept.len() > 1)
        {
            if let Some(old) = self.kept.pop_front() {
                self.bytes -= old.len();
            }
        }
    }

    /// Messages written so far.
    #[cfg(test)]
    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    /// What a client that received the first `received` messages missed,
    /// or `None` when that is not known any more (or `received` is more
    /// than was written).
    pub(crate) fn after(&self, received: u64) -> Option<Vec<Utf8Bytes>> {
        let missed = self.written.checked_sub(received)?;
        let missed = usize::try_from(missed).ok()?;
        let skip = self.kept.len().checked_sub(missed)?;
        Some(self.kept.iter().skip(skip).cloned().collect())
    }
}

/// What a connection's writer drains and records, handed from one
/// connection of a session to the next.
#[derive(Debug)]
pub(crate) struct Outlet {
    /// The participant's queue (its [`Conn`] sends into it).
    pub(crate) rx: mpsc::Receiver<Outbound>,
    /// What was written from it.
    pub(crate) replay: Replay,
}

impl Outlet {
    /// A fresh outlet draining `rx`.
    pub(crate) fn new(rx: mpsc::Receiver<Outbound>) -> Self {
        Self {
            rx,
            replay: Replay::default(),
        }
    }
}

/// A session as the connection that takes it back gets it.
#[derive(Debug)]
pub(crate) struct Taken {
    /// The participant.
    pub(crate) id: ParticipantId,
    /// What it may do.
    pub(crate) rights: Rights,
    /// How the room reaches it.
    pub(crate) conn: Conn,
    /// Its queue and what was written from it.
    pub(crate) outlet: Outlet,
    /// Client messages received in the session.
    pub(crate) received: u64,
    /// Whether it had negotiated media.
    pub(crate) negotiated: bool,
}

/// What [`Resumable::take`] found for a token.
#[derive(Debug)]
pub(crate) enum Take {
    /// The session, parked: it is the caller's now.
    Parked(Box<Taken>),
    /// Still attached to a connection (which may be dead without knowing
    /// it yet): notify this to make that connection let go, then try again.
    Attached(Arc<Notify>),
    /// The session ended while parked (kicked, say): close with this.
    Ended(u16, String),
    /// No such session (never was, or over).
    Unknown,
}

#[derive(Debug)]
enum State {
    Attached { takeover: Arc<Notify> },
    Parked { session: Box<Taken>, epoch: u64 },
    Ended { code: u16, reason: String },
}

#[derive(Debug, Default)]
struct Inner {
    sessions: HashMap<String, State>,
    next_epoch: u64,
}

/// Resumable sessions by token. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct Resumable {
    inner: Arc<Mutex<Inner>>,
}

impl Resumable {
    /// A session now attached to a connection, which lets go when
    /// `takeover` is notified.
    pub(crate) fn attach(&self, token: &str, takeover: Arc<Notify>) {
        lock(&self.inner)
            .sessions
            .insert(token.to_owned(), State::Attached { takeover });
    }

    /// Park a session whose connection dropped; returns the epoch that
    /// [`Resumable::expire`] needs.
    pub(crate) fn park(&self, token: &str, session: Taken) -> u64 {
        let mut g = lock(&self.inner);
        g.next_epoch += 1;
        let epoch = g.next_epoch;
        g.sessions.insert(
            token.to_owned(),
            State::Parked {
                session: Box::new(session),
                epoch,
            },
        );
        epoch
    }

    /// Take a parked session back (see [`Take`]).
    pub(crate) fn take(&self, token: &str) -> Take {
        let mut g = lock(&self.inner);
        match g.sessions.remove(token) {
            None => Take::Unknown,
            Some(State::Parked { session, .. }) => Take::Parked(session),
            Some(State::Attached { takeover }) => {
                g.sessions.insert(
                    token.to_owned(),
                    State::Attached {
                        takeover: takeover.clone(),
                    },
                );
                Take::Attached(takeover)
            }
            Some(State::Ended { code, reason }) => Take::Ended(code, reason),
        }
    }

    /// End a session still parked in `epoch` (not taken back meanwhile);
    /// returns it. It stays known as ended, with the close `code` and
    /// `reason` given, until [`Resumable::forget`].
    pub(crate) fn expire(
        &self,
        token: &str,
        epoch: u64,
        close: impl FnOnce(&mut Taken) -> (u16, String),
    ) -> Option<Taken> {
        let mut g = lock(&self.inner);
        let parked_in = match g.sessions.get(token) {
            Some(State::Parked { epoch, .. }) => *epoch,
            _ => return None,
        };
        if parked_in != epoch {
            return None;
        }
        let Some(State::Parked { mut session, .. }) = g.sessions.remove(token) else {
            return None;
        };
        let (code, reason) = close(&mut session);
        g.sessions
            .insert(token.to_owned(), State::Ended { code, reason });
        Some(*session)
    }

    /// Forget a session.
    pub(crate) fn forget(&self, token: &str) {
        lock(&self.inner).sessions.remove(token);
    }

    /// Sessions known (attached, parked or recently ended).
    pub fn len(&self) -> usize {
        lock(&self.inner).sessions.len()
    }

    /// Whether no session is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sessions parked now.
    pub fn parked(&self) -> usize {
        lock(&self.inner)
            .sessions
            .values()
            .filter(|s| matches!(s, State::Parked { .. }))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `i` zero-padded to `len` characters.
    fn text(i: usize, len: usize) -> Utf8Bytes {
        let digits = i.to_string();
        let pad = "0".repeat(len.saturating_sub(digits.len()));
        Utf8Bytes::from(format!("{pad}{digits}"))
    }

    #[test]
    fn replay_gives_what_a_client_missed_while_it_is_kept() {
        let mut r = Replay::default();
        assert_eq!(r.after(0), Some(Vec::new()));
        assert_eq!(r.after(1), None, "more than was written");
        for i in 0..10 {
            r.record(text(i, 4));
        }
        assert_eq!(r.written(), 10);
        let missed = r.after(7).expect("kept");
        let got: Vec<&str> = missed.iter().map(|t| t.as_str()).collect();
        assert_eq!(got, ["0007", "0008", "0009"]);
        assert_eq!(r.after(10), Some(Vec::new()));
        for i in 10..(REPLAY_MESSAGES + 10) {
            r.record(text(i, 4));
        }
        assert_eq!(r.after(9), None, "message 10 is no longer kept");
        assert_eq!(r.after(10).map(|v| v.len()), Some(REPLAY_MESSAGES));
    }

    #[test]
    fn replay_is_bounded_in_bytes_but_keeps_the_newest() {
        let mut r = Replay::default();
        for i in 0..4 {
            r.record(text(i, REPLAY_BYTES / 3));
        }
        assert_eq!(r.after(0), None, "the first no longer fits");
        assert_eq!(r.after(1).map(|v| v.len()), Some(3));
        r.record(text(4, REPLAY_BYTES * 2));
        assert_eq!(r.after(4).map(|v| v.len()), Some(1), "the newest stays");
        assert_eq!(r.after(3), None);
    }

    fn taken() -> Taken {
        let (tx, rx) = mpsc::channel(4);
        Taken {
            id: ParticipantId("PA_x".into()),
            rights: Rights {
                publish: true,
                subscribe: true,
            },
            conn: Conn::new(tx, Arc::new(Notify::new())),
            outlet: Outlet::new(rx),
            received: 3,
            negotiated: true,
        }
    }

    #[test]
    fn a_session_is_taken_once_and_only_while_parked() {
        let r = Resumable::default();
        let takeover = Arc::new(Notify::new());
        assert!(matches!(r.take("t"), Take::Unknown));
        r.attach("t", takeover);
        assert!(matches!(r.take("t"), Take::Attached(_)));
        let epoch = r.park("t", taken());
        assert_eq!(r.parked(), 1);
        let Take::Parked(s) = r.take("t") else {
            panic!("parked")
        };
        assert_eq!(s.received, 3);
        assert!(matches!(r.take("t"), Take::Unknown), "taken once");
        assert!(
            r.expire("t", epoch, |_| (1000, String::new())).is_none(),
            "taken back: the old grace period ends nothing"
        );
        let again = r.park("t", *s);
        assert!(r.expire("t", epoch, |_| (1000, String::new())).is_none());
        assert!(r.expire("t", again, |_| (4001, "kicked".into())).is_some());
        assert!(matches!(r.take("t"), Take::Ended(4001, ref why) if why == "kicked"));
        r.forget("t");
        assert!(r.is_empty());
    }
}
