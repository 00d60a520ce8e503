//! What goes toward one participant's connection: its queue of
//! [`Outbound`] items and its kick signal ([`Conn`]).

use crate::lock::lock;
use crate::presence::{Change, PresenceBatch};
use huddle_proto::throttle::LogThrottle;
use huddle_proto::ServerMessage;
use huddle_sfu::ParticipantId;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, Notify};

/// "outbound queue full" is logged at most once a second.
static SLOW_CLIENT_LOG: LogThrottle = LogThrottle::per_second();

/// What a connection's writer task sends to its socket.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A protocol message.
    Msg(ServerMessage),
    /// Joins and leaves to send as one message (see [`PresenceBatch`]).
    Presence(PresenceBatch),
    /// Send a close frame with this code and reason, then stop.
    Close(u16, String),
}

/// The server's side of one participant's WebSocket.
#[derive(Debug, Clone)]
pub struct Conn {
    /// Queue toward the socket writer.
    pub tx: mpsc::Sender<Outbound>,
    /// Fired to make the connection stop reading and shut down.
    pub kick: Arc<Notify>,
    /// The batch presence changes are added to, while it is open.
    open_batch: Arc<Mutex<Option<PresenceBatch>>>,
}

impl Conn {
    /// A connection whose writer drains `tx`'s receiver and that stops when
    /// `kick` fires.
    pub fn new(tx: mpsc::Sender<Outbound>, kick: Arc<Notify>) -> Self {
        Self {
            tx,
            kick,
            open_batch: Arc::default(),
        }
    }

    /// Queue a message; if the client is too slow to drain its queue it is
    /// kicked rather than allowed to grow memory without bound. Presence
    /// changes after this message go into a new batch, so they reach the
    /// client after it.
    pub(crate) fn send(&self, id: &ParticipantId, msg: Outbound) {
        lock(&self.open_batch).take();
        self.push(id, msg);
    }

    fn push(&self, id: &ParticipantId, msg: Outbound) {
        if let Err(e) = self.tx.try_send(msg) {
            if matches!(e, mpsc::error::TrySendError::Full(_)) {
                if let Some(suppressed) = SLOW_CLIENT_LOG.check() {
                    tracing::warn!(participant = %id, suppressed, "outbound queue full, disconnecting slow client");
                }
            }
            self.kick.notify_one();
        }
    }

    /// Tell the connection about a join or leave: into the open batch, or a
    /// new one queued behind what is queued already.
    pub(crate) fn presence(&self, id: &ParticipantId, change: &Change) {
        let mut open = lock(&self.open_batch);
        if open.as_ref().is_some_and(|b| b.add(change)) {
            return;
        }
        let batch = PresenceBatch::new();
        batch.add(change);
        *open = Some(batch.clone());
        drop(open);
        self.push(id, Outbound::Presence(batch));
    }

    /// Ask the connection to close with `code` and `reason`.
    pub fn close(&self, code: u16, reason: &str) {
        let _ = self.tx.try_send(Outbound::Close(code, reason.to_owned()));
        self.kick.notify_one();
    }
}
