//! In-memory rooms and participants: the [`Hub`].
//!
//! A room exists while it has participants: it is created by the first join and
//! removed with its last participant. A participant is first *pending* (its
//! connection is registered so SFU events addressed to it are kept, in order,
//! but nobody sees it yet) and becomes *live* once the SFU has accepted it: at
//! that moment, atomically, it gets `joined` followed by whatever was kept, and
//! everyone else learns that it joined.
//!
//! Joins and leaves reach the others in per-connection batches
//! ([`crate::presence`]); each room's roster is a `room::Room`.
//!
//! Every method takes the lock briefly and never awaits while holding it.

use crate::e2ee::{CommitIn, GroupDs, Refusal, Sends};
use crate::limits::over;
use crate::lock::lock;
use crate::outbound::Conn;
use crate::presence::Change;
use crate::room::{Member, Room};
use huddle_proto::{ErrorCode, ParticipantInfo, ServerMessage, TrackInfo};
use huddle_sfu::ParticipantId;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

/// Why [`Hub::add_pending`] refused a participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddError {
    /// The id is taken (pick another).
    IdTaken,
    /// The server has [`HubLimits::max_participants`].
    ServerFull,
    /// The room has [`HubLimits::max_per_room`].
    RoomFull,
    /// The identity has [`HubLimits::max_per_identity`] in the room.
    TooManySessions,
    /// The room is end-to-end encrypted and the participant does not take
    /// part (or the other way round: its token says E2EE, the room's do
    /// not).
    E2eeMismatch,
}

impl AddError {
    /// The protocol error code for a refused join.
    pub fn code(self) -> ErrorCode {
        match self {
            AddError::IdTaken => ErrorCode::Internal,
            AddError::ServerFull => ErrorCode::ServerFull,
            AddError::RoomFull => ErrorCode::RoomFull,
            AddError::TooManySessions => ErrorCode::TooManySessions,
            AddError::E2eeMismatch => ErrorCode::E2eeRequired,
        }
    }

    /// What to tell the client.
    pub fn message(self) -> &'static str {
        match self {
            AddError::IdTaken => "could not assign a participant id",
            AddError::ServerFull => "the server has as many participants as it allows",
            AddError::RoomFull => "the room has as many participants as it allows",
            AddError::TooManySessions => {
                "this identity already has as many sessions in the room as allowed"
            }
            AddError::E2eeMismatch => {
                "the room is end-to-end encrypted (or not) and this participant's token says otherwise"
            }
        }
    }
}

/// Why an E2EE message was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum E2eeRefused {
    /// The sender is not in a room.
    NotJoined,
    /// Its room is not end-to-end encrypted.
    NotE2ee,
    /// The group's delivery service refused it.
    Group(Refusal),
}

impl E2eeRefused {
    /// What to tell the client.
    pub(crate) fn message(self) -> &'static str {
        match self {
            E2eeRefused::NotJoined => "not in a room",
            E2eeRefused::NotE2ee => "the room is not end-to-end encrypted",
            E2eeRefused::Group(r) => r.message(),
        }
    }
}

/// Participant limits a [`Hub`] enforces (0: no limit); see
/// [`crate::limits::Limits`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HubLimits {
    /// Participants in all rooms.
    pub max_participants: usize,
    /// Participants in one room.
    pub max_per_room: usize,
    /// Participants of one room with the same identity.
    pub max_per_identity: usize,
}

#[derive(Debug, Default)]
struct Inner {
    limits: HubLimits,
    rooms: BTreeMap<String, Room>,
    /// participant -> room name
    index: HashMap<ParticipantId, String>,
    next_seq: u64,
}

/// A room as the REST API lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RoomSummary {
    /// Room name.
    pub room: String,
    /// Participants in it (joined ones; not those still being set up).
    pub participants: usize,
}

/// What [`Hub::remove`] took out.
#[derive(Debug)]
pub struct Removed {
    /// The room it was in.
    pub room: String,
    /// Its connection, to close if the caller wants to.
    pub conn: Conn,
    /// Whether it had been live (others had been told it joined).
    pub was_live: bool,
}

/// All rooms and participants. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct Hub {
    inner: Arc<Mutex<Inner>>,
}

impl Inner {
    /// The room `id` is in.
    fn room_mut(&mut self, id: &ParticipantId) -> Option<&mut Room> {
        let name = self.index.get(id)?;
        self.rooms.get_mut(name)
    }

    /// The member `id`.
    fn member(&self, id: &ParticipantId) -> Option<&Member> {
        self.rooms.get(self.index.get(id)?)?.members.get(id)
    }
}

impl Hub {
    /// An empty hub without limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty hub enforcing `limits`.
    pub fn with_limits(limits: HubLimits) -> Self {
        let hub = Self::default();
        hub.lock().limits = limits;
        hub
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// Register a pending participant (creating the room if needed), unless
    /// the id is taken or a limit would be exceeded; then nothing changes.
    pub fn add_pending(
        &self,
        room: &str,
        id: ParticipantId,
        identity: String,
        name: Option<String>,
        conn: Conn,
        e2ee: bool,
    ) -> Result<(), AddError> {
        let mut g = self.lock();
        if g.index.contains_key(&id) {
            return Err(AddError::IdTaken);
        }
        let limits = g.limits;
        if over(g.index.len(), limits.max_participants) {
            return Err(AddError::ServerFull);
        }
        if let Some(r) = g.rooms.get(room) {
            if over(r.members.len(), limits.max_per_room) {
                return Err(AddError::RoomFull);
            }
            let same = r.members.values().filter(|m| m.identity == identity);
            if over(same.count(), limits.max_per_identity) {
                return Err(AddError::TooManySessions);
            }
            if r.e2ee.is_some() != e2ee {
                return Err(AddError::E2eeMismatch);
            }
        }
        let seq = g.next_seq;
        g.next_seq += 1;
        g.index.insert(id.clone(), room.to_owned());
        let r = g.rooms.entry(room.to_owned()).or_insert_with(|| Room {
            e2ee: e2ee.then(GroupDs::default),
            ..Room::default()
        });
        r.members
            .insert(id, Member::pending(identity, name, seq, conn));
        Ok(())
    }

    /// Make a pending participant live: queue `joined` (built by `make_joined`
    /// from its own info and the others') and the messages kept for it, and
    /// tell the others. Returns false if it is no longer registered.
    pub fn go_live(
        &self,
        id: &ParticipantId,
        make_joined: impl FnOnce(ParticipantInfo, Vec<ParticipantInfo>) -> ServerMessage,
    ) -> bool {
        let mut g = self.lock();
        let Some(room) = g.room_mut(id) else {
            return false;
        };
        if !room.go_live(id, make_joined) {
            return false;
        }
        let identity = room.members.get(id).map(|m| m.identity.clone());
        if let (Some(ds), Some(identity)) = (room.e2ee.as_mut(), identity) {
            let sends = ds.on_live(id, &identity);
            room.deliver(sends);
        }
        true
    }

    /// Remove a participant; if it was live, tell the others. Returns `None`
    /// if it was not registered (already removed by someone else).
    pub fn remove(&self, id: &ParticipantId) -> Option<Removed> {
        let mut g = self.lock();
        let room_name = g.index.remove(id)?;
        let room = g.rooms.get_mut(&room_name)?;
        let member = room.members.remove(id)?;
        let was_live = member.is_live();
        if was_live {
            room.broadcast_presence(&Change::Left(id.0.clone()), None);
        }
        if let Some(ds) = room.e2ee.as_mut() {
            let sends = ds.on_left(id);
            room.deliver(sends);
        }
        if room.members.is_empty() {
            g.rooms.remove(&room_name);
        }
        Some(Removed {
            room: room_name,
            conn: member.conn,
            was_live,
        })
    }

    /// An E2EE room's participant sent its key package (base64).
    pub(crate) fn e2ee_key_package(
        &self,
        id: &ParticipantId,
        key_package: String,
    ) -> Result<(), E2eeRefused> {
        self.in_e2ee_group(id, |ds, identity| {
            ds.on_key_package(id, identity, key_package)
        })
    }

    /// An E2EE room's group member sent a commit.
    pub(crate) fn e2ee_commit(
        &self,
        id: &ParticipantId,
        commit: CommitIn,
    ) -> Result<(), E2eeRefused> {
        self.in_e2ee_group(id, |ds, _| ds.on_commit(id, commit))
    }

    /// Hand what `id` sent to its room's E2EE group (`f`, given the group
    /// and `id`'s identity) and deliver what the group sends.
    fn in_e2ee_group(
        &self,
        id: &ParticipantId,
        f: impl FnOnce(&mut GroupDs, &str) -> Result<Sends, Refusal>,
    ) -> Result<(), E2eeRefused> {
        let mut g = self.lock();
        let room = g.room_mut(id).ok_or(E2eeRefused::NotJoined)?;
        let identity = room
            .members
            .get(id)
            .map(|m| m.identity.clone())
            .ok_or(E2eeRefused::NotJoined)?;
        let ds = room.e2ee.as_mut().ok_or(E2eeRefused::NotE2ee)?;
        let sends = f(ds, &identity).map_err(E2eeRefused::Group)?;
        room.deliver(sends);
        Ok(())
    }

    /// The epoch of the E2EE group of `room`, if it is an E2EE room with a
    /// group.
    pub fn e2ee_epoch(&self, room: &str) -> Option<u64> {
        self.lock().rooms.get(room)?.e2ee.as_ref()?.epoch()
    }

    /// Send `msg` to one participant (kept for later if it is still pending).
    /// Returns false if it is unknown.
    pub fn send_to(&self, id: &ParticipantId, msg: ServerMessage) -> bool {
        let mut g = self.lock();
        let Some(m) = g.room_mut(id).and_then(|r| r.members.get_mut(id)) else {
            return false;
        };
        m.send(id, msg);
        true
    }

    /// Send `msg` to every live participant of `room`. Returns false if there
    /// is no such room.
    pub fn tell_room(&self, room: &str, msg: &ServerMessage) -> bool {
        let g = self.lock();
        match g.rooms.get(room) {
            Some(r) => {
                r.broadcast(msg, None);
                true
            }
            None => false,
        }
    }

    /// The room a participant is in.
    pub fn room_of(&self, id: &ParticipantId) -> Option<String> {
        self.lock().index.get(id).cloned()
    }

    /// Record a published track and tell the room (publisher included).
    /// Returns false if the publisher is unknown.
    pub fn track_published(&self, id: &ParticipantId, track: TrackInfo) -> bool {
        self.lock()
            .room_mut(id)
            .is_some_and(|room| room.track_published(id, track))
    }

    /// Forget a track and tell the room. Returns false if either is unknown.
    pub fn track_unpublished(&self, id: &ParticipantId, track_id: &str) -> bool {
        self.lock()
            .room_mut(id)
            .is_some_and(|room| room.track_unpublished(id, track_id))
    }

    /// Whether `track_id` is one of the participant's tracks.
    pub fn owns_track(&self, id: &ParticipantId, track_id: &str) -> bool {
        self.lock()
            .member(id)
            .is_some_and(|m| m.tracks.iter().any(|t| t.id == track_id))
    }

    /// Record a mute state and tell the room. Returns false if unknown.
    pub fn set_muted(&self, id: &ParticipantId, track_id: &str, muted: bool) -> bool {
        self.lock()
            .room_mut(id)
            .is_some_and(|room| room.set_muted(id, track_id, muted))
    }

    /// Rooms and their live participant counts, by name.
    pub fn rooms(&self) -> Vec<RoomSummary> {
        self.lock()
            .rooms
            .iter()
            .map(|(name, r)| RoomSummary {
                room: name.clone(),
                participants: r.live().count(),
            })
            .collect()
    }

    /// Live participants of a room in join order, or `None` if there is no
    /// such room.
    pub fn participants(&self, room: &str) -> Option<Vec<ParticipantInfo>> {
        let g = self.lock();
        let r = g.rooms.get(room)?;
        Some(
            r.sorted_live()
                .into_iter()
                .map(|(id, m)| m.info(id))
                .collect(),
        )
    }

    /// Record the id (`jti`) of the token a participant joined with. Returns
    /// false if it is unknown.
    pub fn set_token_id(&self, id: &ParticipantId, jti: Option<String>) -> bool {
        let mut g = self.lock();
        match g.room_mut(id).and_then(|r| r.members.get_mut(id)) {
            Some(m) => {
                m.jti = jti;
                true
            }
            None => false,
        }
    }

    /// The identity of a participant.
    pub fn identity_of(&self, id: &ParticipantId) -> Option<String> {
        self.lock().member(id).map(|m| m.identity.clone())
    }

    /// Every registered participant (pending ones too) for which
    /// `matches(room, identity, token id)` holds.
    pub fn find(&self, matches: impl Fn(&str, &str, Option<&str>) -> bool) -> Vec<ParticipantId> {
        let g = self.lock();
        g.rooms
            .iter()
            .flat_map(|(name, r)| {
                r.members
                    .iter()
                    .filter(|(_, m)| matches(name, &m.identity, m.jti.as_deref()))
                    .map(|(id, _)| id.clone())
            })
            .collect()
    }

    /// Every registered participant, for shutdown.
    pub fn all_ids(&self) -> Vec<ParticipantId> {
        self.lock().index.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::Outbound;
    use huddle_proto::TrackKind;
    use tokio::sync::{mpsc, Notify};

    fn conn() -> (Conn, mpsc::Receiver<Outbound>) {
        let (tx, rx) = mpsc::channel(16);
        (Conn::new(tx, Arc::new(Notify::new())), rx)
    }

    fn joined(p: ParticipantInfo, others: Vec<ParticipantInfo>) -> ServerMessage {
        ServerMessage::Joined {
            room: "r".into(),
            participant: p,
            others,
            can_publish: true,
            can_subscribe: true,
            resume: None,
            ice_servers: Vec::new(),
            e2ee: false,
        }
    }

    fn pid(s: &str) -> ParticipantId {
        ParticipantId(s.into())
    }

    fn drain(rx: &mut mpsc::Receiver<Outbound>) -> Vec<ServerMessage> {
        let mut v = Vec::new();
        while let Ok(out) = rx.try_recv() {
            match out {
                Outbound::Msg(m) => v.push(m),
                Outbound::Presence(b) => v.extend(b.take()),
                Outbound::Close(..) => break,
            }
        }
        v
    }

    fn live(hub: &Hub, id: &str) -> mpsc::Receiver<Outbound> {
        let (c, rx) = conn();
        hub.add_pending("r", pid(id), id.to_lowercase(), None, c, false)
            .expect("add");
        assert!(hub.go_live(&pid(id), joined));
        rx
    }

    /// Joins and leaves queued together reach a client as one message; a
    /// join and leave within one batch cancel out; anything else queued in
    /// between keeps its place in the order.
    #[test]
    fn presence_changes_are_batched_in_order() {
        let hub = Hub::new();
        let mut arx = live(&hub, "A");
        assert!(matches!(
            drain(&mut arx)[..],
            [ServerMessage::Joined { .. }]
        ));
        let mut others: Vec<_> = ["B", "C", "D", "E"]
            .iter()
            .map(|id| live(&hub, id))
            .collect();
        hub.remove(&pid("C"));
        hub.remove(&pid("D"));
        assert!(
            arx.len() == 1,
            "one queue slot for every change so far, got {}",
            arx.len()
        );
        let got = drain(&mut arx);
        let ServerMessage::ParticipantsChanged { joined, left } = &got[0] else {
            panic!("{got:?}")
        };
        let ids: Vec<_> = joined.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["B", "E"], "C and D joined and left within the batch");
        assert!(left.is_empty());

        hub.remove(&pid("B"));
        assert!(hub.tell_room("r", &ServerMessage::Pong));
        hub.remove(&pid("E"));
        let got = drain(&mut arx);
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(
            matches!(&got[0], ServerMessage::ParticipantLeft { participant_id } if participant_id == "B")
        );
        assert_eq!(got[1], ServerMessage::Pong);
        assert!(
            matches!(&got[2], ServerMessage::ParticipantLeft { participant_id } if participant_id == "E")
        );
        drop(others.drain(..));
    }

    /// The room's mute state is the hub's: a newcomer and the participant
    /// list see what the publisher last said, whatever the SFU reported
    /// when the track appeared.
    #[test]
    fn mute_state_is_the_rooms_own() {
        let hub = Hub::new();
        let mut arx = live(&hub, "A");
        let track = |muted| TrackInfo {
            id: "t1".into(),
            kind: TrackKind::Audio,
            mime_type: "audio/opus".into(),
            muted,
            source_track_id: None,
        };
        assert!(hub.track_published(&pid("A"), track(true)));
        assert!(!hub.participants("r").expect("room")[0].tracks[0].muted);
        assert!(!hub.set_muted(&pid("A"), "t2", true), "not a track of A");
        assert!(hub.set_muted(&pid("A"), "t1", true));
        let got = drain(&mut arx);
        assert!(matches!(
            got.last(),
            Some(ServerMessage::MuteChanged { track_id, muted: true, .. }) if track_id == "t1"
        ));
        assert!(hub.participants("r").expect("room")[0].tracks[0].muted);
        let mut brx = live(&hub, "B");
        let got = drain(&mut brx);
        let Some(ServerMessage::Joined { others, .. }) = got.first() else {
            panic!("{got:?}")
        };
        assert!(others[0].tracks[0].muted, "a newcomer sees the track muted");
    }

    #[test]
    fn limits_refuse_joins() {
        let hub = Hub::with_limits(HubLimits {
            max_participants: 4,
            max_per_room: 3,
            max_per_identity: 2,
        });
        let add = |room: &str, id: &str, who: &str| {
            hub.add_pending(room, pid(id), who.into(), None, conn().0, false)
        };
        assert_eq!(add("r", "1", "alice"), Ok(()));
        assert_eq!(add("r", "1", "bob"), Err(AddError::IdTaken));
        assert_eq!(add("r", "2", "alice"), Ok(()));
        assert_eq!(add("r", "3", "alice"), Err(AddError::TooManySessions));
        assert_eq!(add("r", "3", "bob"), Ok(()));
        assert_eq!(add("r", "4", "carol"), Err(AddError::RoomFull));
        assert_eq!(
            add("s", "4", "alice"),
            Ok(()),
            "the identity limit is per room"
        );
        assert_eq!(add("t", "5", "dave"), Err(AddError::ServerFull));
        hub.remove(&pid("3"));
        assert_eq!(add("r", "5", "carol"), Ok(()));
    }

    #[test]
    fn pending_keeps_messages_until_live_and_rooms_vanish_when_empty() {
        let hub = Hub::new();
        let (a, mut arx) = conn();
        let (b, mut brx) = conn();
        hub.add_pending("r", pid("A"), "alice".into(), None, a, false)
            .expect("add");
        assert!(hub.go_live(&pid("A"), joined));
        hub.add_pending("r", pid("B"), "bob".into(), None, b, false)
            .expect("add");
        assert!(hub.send_to(&pid("B"), ServerMessage::Pong));
        let track = TrackInfo {
            id: "t1".into(),
            kind: TrackKind::Audio,
            mime_type: "audio/opus".into(),
            muted: false,
            source_track_id: None,
        };
        assert!(hub.track_published(&pid("A"), track));
        assert_eq!(hub.rooms()[0].participants, 1);
        assert!(brx.try_recv().is_err(), "pending B gets nothing yet");
        assert!(hub.go_live(&pid("B"), joined));
        let got = drain(&mut brx);
        assert!(
            matches!(&got[0], ServerMessage::Joined { others, .. } if others.len() == 1 && others[0].tracks.len() == 1)
        );
        assert_eq!(got[1], ServerMessage::Pong);
        let got = drain(&mut arx);
        assert!(matches!(&got[0], ServerMessage::Joined { others, .. } if others.is_empty()));
        assert!(matches!(&got[1], ServerMessage::TrackPublished { .. }));
        assert!(
            matches!(&got[2], ServerMessage::ParticipantJoined { participant } if participant.id == "B")
        );
        assert!(hub.remove(&pid("A")).is_some_and(|r| r.was_live));
        assert!(hub.remove(&pid("A")).is_none());
        assert!(
            matches!(&drain(&mut brx)[0], ServerMessage::ParticipantLeft { participant_id } if participant_id == "A")
        );
        hub.remove(&pid("B"));
        assert!(hub.rooms().is_empty());
    }
}
