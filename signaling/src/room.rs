//! One room's roster: its participants, pending and live, what each
//! publishes, and telling the live ones about changes.
//!
//! The roster owns the mute state of the room's tracks: it is what clients
//! are told (`joined`, `mute_changed`, the admin API's participant list).
//! The SFU keeps only a forwarding switch per track, which the `mute`
//! request sets before the room is told (see the WebSocket endpoint).
//!
//! The hub (`hub.rs`, which uses this module) finds the room and holds the lock; a
//! [`Room`] only changes itself and queues messages.

use crate::e2ee::{GroupDs, Sends};
use crate::outbound::{Conn, Outbound};
use crate::presence::Change;
use huddle_proto::{ParticipantInfo, ServerMessage, TrackInfo};
use huddle_sfu::ParticipantId;
use std::collections::HashMap;

/// One participant of a room.
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) identity: String,
    /// The display name of its token, if any.
    pub(crate) name: Option<String>,
    /// The `jti` of the token it joined with, for bans by token.
    pub(crate) jti: Option<String>,
    /// Join order, to list participants stably.
    pub(crate) seq: u64,
    /// What it publishes, each with the mute state the room was told.
    pub(crate) tracks: Vec<TrackInfo>,
    pub(crate) conn: Conn,
    /// `Some(kept messages)` while pending; `None` once live.
    pub(crate) pending: Option<Vec<ServerMessage>>,
}

impl Member {
    /// A pending member, joining `seq`th.
    pub(crate) fn pending(identity: String, name: Option<String>, seq: u64, conn: Conn) -> Self {
        Self {
            identity,
            name,
            jti: None,
            seq,
            tracks: Vec::new(),
            conn,
            pending: Some(Vec::new()),
        }
    }

    /// Whether others have been told it joined.
    pub(crate) fn is_live(&self) -> bool {
        self.pending.is_none()
    }

    /// What others are told of it.
    pub(crate) fn info(&self, id: &ParticipantId) -> ParticipantInfo {
        ParticipantInfo {
            id: id.0.clone(),
            identity: self.identity.clone(),
            name: self.name.clone(),
            tracks: self.tracks.clone(),
        }
    }

    /// Send `msg`, or keep it for when it goes live.
    pub(crate) fn send(&mut self, id: &ParticipantId, msg: ServerMessage) {
        match &mut self.pending {
            Some(kept) => kept.push(msg),
            None => self.conn.send(id, Outbound::Msg(msg)),
        }
    }
}

/// The participants of one room.
#[derive(Debug, Default)]
pub(crate) struct Room {
    pub(crate) members: HashMap<ParticipantId, Member>,
    /// An end-to-end encrypted room's group, as its delivery service
    /// keeps it (`None`: not an E2EE room).
    pub(crate) e2ee: Option<GroupDs>,
}

impl Room {
    /// The live members, in no order.
    pub(crate) fn live(&self) -> impl Iterator<Item = (&ParticipantId, &Member)> {
        self.members.iter().filter(|(_, m)| m.is_live())
    }

    /// The live members in join order.
    pub(crate) fn sorted_live(&self) -> Vec<(&ParticipantId, &Member)> {
        let mut v: Vec<_> = self.live().collect();
        v.sort_by_key(|(_, m)| m.seq);
        v
    }

    /// Send each message to its recipient, if still a member (kept for
    /// later while it is pending).
    pub(crate) fn deliver(&mut self, sends: Sends) {
        for (to, msg) in sends {
            if let Some(m) = self.members.get_mut(&to) {
                m.send(&to, msg);
            }
        }
    }

    /// Queue `msg` to every live member but `except`.
    pub(crate) fn broadcast(&self, msg: &ServerMessage, except: Option<&ParticipantId>) {
        for (id, m) in self.live() {
            if Some(id) != except {
                m.conn.send(id, Outbound::Msg(msg.clone()));
            }
        }
    }

    /// Tell every live member but `except` about a join or leave.
    pub(crate) fn broadcast_presence(&self, change: &Change, except: Option<&ParticipantId>) {
        for (id, m) in self.live() {
            if Some(id) != except {
                m.conn.presence(id, change);
            }
        }
    }

    /// Make a pending member live: queue `joined` (built by `make_joined`
    /// from its own info and the others') and the messages kept for it, and
    /// tell the others. Returns false if it is not a member.
    pub(crate) fn go_live(
        &mut self,
        id: &ParticipantId,
        make_joined: impl FnOnce(ParticipantInfo, Vec<ParticipantInfo>) -> ServerMessage,
    ) -> bool {
        let others: Vec<ParticipantInfo> = self
            .sorted_live()
            .into_iter()
            .filter(|(pid, _)| *pid != id)
            .map(|(pid, m)| m.info(pid))
            .collect();
        let Some(me) = self.members.get_mut(id) else {
            return false;
        };
        let kept = me.pending.take().unwrap_or_default();
        let info = me.info(id);
        me.conn
            .send(id, Outbound::Msg(make_joined(info.clone(), others)));
        for msg in kept {
            me.conn.send(id, Outbound::Msg(msg));
        }
        self.broadcast_presence(&Change::Joined(info), Some(id));
        true
    }

    /// Record a track `id` publishes and tell the room (publisher included).
    /// The track starts unmuted: its mute state is the room's own from then
    /// on, changed only by [`Room::set_muted`]. Returns false if `id` is not
    /// a member.
    pub(crate) fn track_published(&mut self, id: &ParticipantId, mut track: TrackInfo) -> bool {
        let Some(m) = self.members.get_mut(id) else {
            return false;
        };
        track.muted = false;
        m.tracks.retain(|t| t.id != track.id);
        m.tracks.push(track.clone());
        self.broadcast(
            &ServerMessage::TrackPublished {
                participant_id: id.0.clone(),
                track,
            },
            None,
        );
        true
    }

    /// Forget a track of `id` and tell the room. Returns false if either is
    /// unknown.
    pub(crate) fn track_unpublished(&mut self, id: &ParticipantId, track_id: &str) -> bool {
        let Some(m) = self.members.get_mut(id) else {
            return false;
        };
        let before = m.tracks.len();
        m.tracks.retain(|t| t.id != track_id);
        if m.tracks.len() == before {
            return false;
        }
        self.broadcast(
            &ServerMessage::TrackUnpublished {
                participant_id: id.0.clone(),
                track_id: track_id.to_owned(),
            },
            None,
        );
        true
    }

    /// Record the mute state of a track of `id` and tell the room. Returns
    /// false if either is unknown.
    pub(crate) fn set_muted(&mut self, id: &ParticipantId, track_id: &str, muted: bool) -> bool {
        let Some(t) = self
            .members
            .get_mut(id)
            .and_then(|m| m.tracks.iter_mut().find(|t| t.id == track_id))
        else {
            return false;
        };
        t.muted = muted;
        self.broadcast(
            &ServerMessage::MuteChanged {
                participant_id: id.0.clone(),
                track_id: track_id.to_owned(),
                muted,
            },
            None,
        );
        true
    }
}
