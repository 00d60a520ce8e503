//! Bans: an administrator keeps an identity (in one room or in every room)
//! or one token (by its `jti`) out until the ban ends.
//!
//! A kick (`DELETE /api/rooms/{room}/participants/{id}`) only removes a
//! participant, whose token may join again at once; a ban also refuses every
//! token it covers, on the WebSocket, WHIP, WHEP and the admin API alike, with
//! `token_revoked` (HTTP 401). See `docs/security.md`, "Tokens".
//!
//! A ban lasts, by default, as long as the longest token lifetime the server
//! accepts (plus the clock-skew leeway): every token that exists when the ban
//! is made has expired by the time it ends. The list is in memory, bounded by
//! [`MAX_BANS`], and forgets a ban once it ends.
//! `AppState::verify_token` (in `app.rs`, which holds the list) refuses the
//! tokens a ban covers.

use crate::auth::Claims;
use crate::lock::lock;
use rand::distr::{Alphanumeric, SampleString};
use serde::{Deserialize, Serialize};
use std::sync::{Mutex, MutexGuard};

/// Most bans in force at once.
pub const MAX_BANS: usize = 10_000;

/// Longest ban, in seconds: 30 days.
pub const MAX_BAN_SECS: u64 = 30 * 24 * 3600;

/// One ban, as `GET /api/bans` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    /// The ban's id (`BN_` + 16 random characters), for lifting it.
    pub id: String,
    /// The room it applies to; every room when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// The identity (`sub`) it keeps out, if it is by identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// The token id (`jti`) it revokes, if it is by token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// When it ends, seconds since the Unix epoch.
    pub until: u64,
}

impl Ban {
    /// Whether a token for `identity` in `room` with token id `jti` is kept
    /// out (the ban's end aside).
    pub fn covers(&self, room: &str, identity: &str, jti: Option<&str>) -> bool {
        self.room.as_deref().is_none_or(|r| r == room)
            && self.identity.as_deref().is_none_or(|i| i == identity)
            && self.jti.as_deref().is_none_or(|j| Some(j) == jti)
    }
}

/// The body of `POST /api/bans`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BanRequest {
    /// Limit the ban to this room (default: every room).
    #[serde(default)]
    pub room: Option<String>,
    /// Keep this identity out.
    #[serde(default)]
    pub identity: Option<String>,
    /// Revoke the token with this id.
    #[serde(default)]
    pub jti: Option<String>,
    /// How long, in seconds (default: the longest token lifetime plus the
    /// leeway; at most [`MAX_BAN_SECS`]).
    #[serde(default)]
    pub seconds: Option<u64>,
}

/// Why a ban could not be made.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum BanError {
    /// Neither an identity nor a token id was given, or one was blank.
    #[error("a ban needs a non-empty identity or jti")]
    NothingToBan,
    /// `seconds` is 0 or above [`MAX_BAN_SECS`].
    #[error("seconds must be 1 to {MAX_BAN_SECS}")]
    BadDuration,
    /// [`MAX_BANS`] bans are in force.
    #[error("the ban list is full ({MAX_BANS} bans in force)")]
    Full,
}

/// The bans in force. Every method takes the lock briefly.
#[derive(Debug, Default)]
pub struct Bans {
    inner: Mutex<Vec<Ban>>,
}

impl Bans {
    fn lock(&self) -> MutexGuard<'_, Vec<Ban>> {
        lock(&self.inner)
    }

    /// Add a ban as `request` asks, ending `default_secs` after `now` unless
    /// it names its own length.
    pub fn add(&self, request: &BanRequest, default_secs: u64, now: u64) -> Result<Ban, BanError> {
        let blank = |v: &Option<String>| v.as_deref().is_some_and(|s| s.trim().is_empty());
        if (request.identity.is_none() && request.jti.is_none())
            || blank(&request.identity)
            || blank(&request.jti)
            || blank(&request.room)
        {
            return Err(BanError::NothingToBan);
        }
        let secs = request.seconds.unwrap_or(default_secs.min(MAX_BAN_SECS));
        if secs == 0 || secs > MAX_BAN_SECS {
            return Err(BanError::BadDuration);
        }
        let mut bans = self.lock();
        bans.retain(|b| b.until > now);
        if bans.len() >= MAX_BANS {
            return Err(BanError::Full);
        }
        let ban = Ban {
            id: format!("BN_{}", Alphanumeric.sample_string(&mut rand::rng(), 16)),
            room: request.room.clone(),
            identity: request.identity.clone(),
            jti: request.jti.clone(),
            until: now.saturating_add(secs),
        };
        bans.push(ban.clone());
        Ok(ban)
    }

    /// Lift a ban. Returns whether it was in force.
    pub fn lift(&self, id: &str) -> bool {
        let mut bans = self.lock();
        let before = bans.len();
        bans.retain(|b| b.id != id);
        bans.len() != before
    }

    /// The bans in force at `now`, oldest first.
    pub fn list(&self, now: u64) -> Vec<Ban> {
        let mut bans = self.lock();
        bans.retain(|b| b.until > now);
        bans.clone()
    }

    /// Whether a ban in force at `now` covers `claims`.
    pub fn refuses(&self, claims: &Claims, now: u64) -> bool {
        self.lock()
            .iter()
            .any(|b| b.until > now && b.covers(&claims.room, &claims.sub, claims.jti.as_deref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(room: Option<&str>, identity: Option<&str>, jti: Option<&str>) -> BanRequest {
        BanRequest {
            room: room.map(Into::into),
            identity: identity.map(Into::into),
            jti: jti.map(Into::into),
            seconds: None,
        }
    }

    fn claims(room: &str, sub: &str, jti: Option<&str>) -> Claims {
        let mut c = Claims::new(sub, room, true, true, 60);
        c.jti = jti.map(Into::into);
        c
    }

    #[test]
    fn bans_cover_what_they_name_until_they_end() {
        let bans = Bans::default();
        let now = 1_000;
        let in_room = bans
            .add(&req(Some("r"), Some("mallory"), None), 60, now)
            .expect("ban");
        assert_eq!(in_room.until, 1_060);
        assert!(bans.refuses(&claims("r", "mallory", None), now));
        assert!(bans.refuses(&claims("r", "mallory", Some("t1")), now));
        assert!(
            !bans.refuses(&claims("s", "mallory", None), now),
            "other room"
        );
        assert!(!bans.refuses(&claims("r", "alice", None), now));
        assert!(!bans.refuses(&claims("r", "mallory", None), 1_060), "ended");

        bans.add(&req(None, None, Some("t2")), 60, now)
            .expect("ban");
        assert!(bans.refuses(&claims("s", "bob", Some("t2")), now));
        assert!(!bans.refuses(&claims("s", "bob", Some("t3")), now));
        assert!(!bans.refuses(&claims("s", "bob", None), now));

        assert_eq!(bans.list(now).len(), 2);
        assert!(bans.lift(&in_room.id));
        assert!(!bans.lift(&in_room.id));
        assert!(!bans.refuses(&claims("r", "mallory", None), now));
        assert!(bans.list(2_000).is_empty(), "ended bans are forgotten");
    }

    #[test]
    fn refuses_bad_requests() {
        let bans = Bans::default();
        for bad in [
            req(Some("r"), None, None),
            req(None, Some(" "), None),
            req(None, None, Some("")),
            req(Some(""), Some("a"), None),
        ] {
            assert_eq!(
                bans.add(&bad, 60, 0),
                Err(BanError::NothingToBan),
                "{bad:?}"
            );
        }
        let mut r = req(None, Some("a"), None);
        r.seconds = Some(0);
        assert_eq!(bans.add(&r, 60, 0), Err(BanError::BadDuration));
        r.seconds = Some(MAX_BAN_SECS + 1);
        assert_eq!(bans.add(&r, 60, 0), Err(BanError::BadDuration));
        r.seconds = Some(5);
        assert_eq!(bans.add(&r, 60, 0).expect("ban").until, 5);
    }

    #[test]
    fn the_list_is_bounded() {
        let bans = Bans::default();
        for i in 0..MAX_BANS {
            bans.add(&req(None, Some(&format!("u{i}")), None), 60, 0)
                .expect("ban");
        }
        assert_eq!(
            bans.add(&req(None, Some("one-more"), None), 60, 0),
            Err(BanError::Full)
        );
        // Once those end there is room again.
        assert!(bans.add(&req(None, Some("one-more"), None), 60, 61).is_ok());
    }
}
