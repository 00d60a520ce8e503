//! The table of open WHIP/WHEP sessions, and the rate at which new ones may
//! be created (per client address and per identity of a room).

use crate::limits::Limits;
use crate::lock::lock;
use crate::ratelimit::{KeyedLimiter, TokenBucket};
use huddle_proto::PcRole;
use huddle_sfu::ParticipantId;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;

/// Which protocol a session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// WHIP: the client publishes.
    Whip,
    /// WHEP: the client views.
    Whep,
}

impl Kind {
    /// The path of its endpoint, and the prefix of its sessions' URLs.
    pub(crate) fn path(self) -> &'static str {
        match self {
            Kind::Whip => "/whip",
            Kind::Whep => "/whep",
        }
    }

    /// The client's connection at the SFU.
    pub(crate) fn pc(self) -> PcRole {
        match self {
            Kind::Whip => PcRole::Publisher,
            Kind::Whep => PcRole::Subscriber,
        }
    }
}

/// Old client ufrags a session remembers (see [`Session::retired_ufrags`]).
pub(crate) const RETIRED_UFRAGS: usize = 4;

/// One open session.
pub(crate) struct Session {
    pub(crate) kind: Kind,
    /// The participant the session is in the room and the SFU.
    pub(crate) participant: ParticipantId,
    pub(crate) room: String,
    pub(crate) identity: String,
    /// The session's entity tag (quoted), for `ETag` and `If-Match`: it
    /// names the session's ICE session, and changes with each ICE restart.
    pub(crate) etag: String,
    /// The client's ICE ufrag now (from its offer or its last restart): a
    /// PATCH naming another one is an ICE restart.
    pub(crate) ice_ufrag: Option<String>,
    /// Ufrags the client restarted away from, newest last (at most
    /// [`RETIRED_UFRAGS`]): a PATCH naming one is late trickle of an old
    /// ICE generation, ignored.
    pub(crate) retired_ufrags: Vec<String>,
    /// The media part of a restart reply (`sdpfrag::answer_media` of the
    /// SFU's answer).
    pub(crate) answer_media: String,
    pub(crate) bucket: TokenBucket,
    /// Candidates of the current ICE generation already handed to the SFU.
    pub(crate) candidates: HashSet<String>,
    /// The session's connection's kick signal: identifies the session's
    /// forwarding task.
    pub(crate) kick: Arc<Notify>,
}

impl Session {
    /// The client restarted ICE with `ufrag`: its candidates start again,
    /// and the session gets a new entity tag.
    pub(crate) fn restarted(&mut self, ufrag: String, etag: String) {
        if let Some(old) = self.ice_ufrag.replace(ufrag) {
            if self.retired_ufrags.len() == RETIRED_UFRAGS {
                self.retired_ufrags.remove(0);
            }
            self.retired_ufrags.push(old);
        }
        self.candidates.clear();
        self.etag = etag;
    }
}

/// The sessions, by resource id and by participant.
#[derive(Default)]
pub(crate) struct Table {
    /// Sessions by resource id.
    pub(crate) sessions: HashMap<String, Session>,
    /// Resource id by participant.
    resources: HashMap<ParticipantId, String>,
}

impl Table {
    /// Add the session with resource id `resource`.
    pub(crate) fn insert(&mut self, resource: String, session: Session) {
        self.resources
            .insert(session.participant.clone(), resource.clone());
        self.sessions.insert(resource, session);
    }

    /// Forget the session `resource`.
    pub(crate) fn remove(&mut self, resource: &str) -> Option<Session> {
        let session = self.sessions.remove(resource)?;
        self.resources.remove(&session.participant);
        Some(session)
    }

    /// Forget the session of `participant`, if `keep` does not object.
    /// Returns whether one was forgotten.
    pub(crate) fn remove_participant(
        &mut self,
        participant: &ParticipantId,
        keep: impl Fn(&Session) -> bool,
    ) -> bool {
        let Some(resource) = self.resources.get(participant) else {
            return false;
        };
        if self.sessions.get(resource).is_some_and(keep) {
            return false;
        }
        if let Some(resource) = self.resources.remove(participant) {
            self.sessions.remove(&resource);
        }
        true
    }
}

/// The open WHIP/WHEP sessions, and the rate of new ones.
pub struct Sessions {
    table: Mutex<Table>,
    rate: Mutex<SessionRate>,
}

/// Rate of new sessions by client address and by (room, identity).
struct SessionRate {
    by_ip: KeyedLimiter<IpAddr>,
    by_identity: KeyedLimiter<(String, String)>,
}

impl Sessions {
    /// No session yet; new ones at the rate `limits` allow.
    pub(crate) fn new(limits: &Limits) -> Self {
        let (rate, burst) = (limits.http_sessions_per_sec, limits.http_sessions_burst);
        Self {
            table: Mutex::default(),
            rate: Mutex::new(SessionRate {
                by_ip: KeyedLimiter::new(rate, burst),
                by_identity: KeyedLimiter::new(rate, burst),
            }),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Table> {
        lock(&self.table)
    }

    /// Open sessions.
    pub fn len(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.lock().sessions.is_empty()
    }

    /// Whether a new session from `ip` (when known) for `identity` in
    /// `room` is within the session rate: takes a token from the address's
    /// bucket, then, if it had one, from the identity's.
    pub fn take_token(&self, ip: Option<IpAddr>, room: &str, identity: &str) -> bool {
        let mut r = lock(&self.rate);
        let ip_ok = ip.is_none_or(|ip| r.by_ip.try_take(ip));
        ip_ok
            && r.by_identity
                .try_take((room.to_owned(), identity.to_owned()))
    }
}
