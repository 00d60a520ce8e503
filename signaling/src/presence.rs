//! Batching of joins and leaves toward one connection.
//!
//! A change opens a batch on each connection (one queue slot), later
//! changes join that batch until anything else is queued to the connection
//! or its writer takes the batch, and the writer sends a batch as one
//! message. So when hundreds of participants leave at once each remaining
//! client gets a few `participants_changed` messages instead of one message
//! per leave, and no outbound queue fills.

use crate::lock::lock;
use huddle_proto::{ParticipantInfo, ServerMessage};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Joins and leaves queued for one connection, sent together by its writer.
/// Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct PresenceBatch {
    inner: Arc<Mutex<Batch>>,
}

#[derive(Debug)]
struct Batch {
    opened: Instant,
    /// Taken by the writer: nothing more may be added.
    closed: bool,
    /// Joined, in order; `None` for one that left again within the batch.
    joined: Vec<Option<ParticipantInfo>>,
    /// Participant id -> its index in `joined`.
    joined_at: HashMap<String, usize>,
    left: Vec<String>,
}

impl PresenceBatch {
    pub(crate) fn new() -> Self {
        Self {
            inner: Arc::new(Mutex::new(Batch {
                opened: Instant::now(),
                closed: false,
                joined: Vec::new(),
                joined_at: HashMap::new(),
                left: Vec::new(),
            })),
        }
    }

    /// When the batch was opened (the writer holds it until this plus the
    /// batch window).
    pub fn opened(&self) -> Instant {
        lock(&self.inner).opened
    }

    /// Add a change unless the batch was taken; returns whether it was added.
    pub(crate) fn add(&self, change: &Change) -> bool {
        let mut b = lock(&self.inner);
        if b.closed {
            return false;
        }
        match change {
            Change::Joined(info) => {
                let at = b.joined.len();
                b.joined_at.insert(info.id.clone(), at);
                b.joined.push(Some(info.clone()));
            }
            Change::Left(id) => match b.joined_at.remove(id) {
                // Joined and left within the batch: the client never learns.
                Some(at) => b.joined[at] = None,
                None => b.left.push(id.clone()),
            },
        }
        true
    }

    /// Close the batch and return what to send: nothing, the single
    /// `participant_joined`/`participant_left` it holds, or one
    /// `participants_changed`.
    pub fn take(&self) -> Option<ServerMessage> {
        let mut b = lock(&self.inner);
        b.closed = true;
        let joined: Vec<ParticipantInfo> = std::mem::take(&mut b.joined)
            .into_iter()
            .flatten()
            .collect();
        let left = std::mem::take(&mut b.left);
        match (joined.len(), left.len()) {
            (0, 0) => None,
            (1, 0) => joined
                .into_iter()
                .next()
                .map(|participant| ServerMessage::ParticipantJoined { participant }),
            (0, 1) => left
                .into_iter()
                .next()
                .map(|participant_id| ServerMessage::ParticipantLeft { participant_id }),
            _ => Some(ServerMessage::ParticipantsChanged { joined, left }),
        }
    }
}

/// A join or leave to tell a participant.
pub(crate) enum Change {
    /// It joined: what it is.
    Joined(ParticipantInfo),
    /// The participant with this id left.
    Left(String),
}
