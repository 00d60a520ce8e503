//! Signaling service configuration.

use std::time::Duration;

/// How the signaling service runs. Build with [`SignalingConfig::new`] and
/// adjust the public fields.
#[derive(Clone)]
pub struct SignalingConfig {
    /// HS256 secret that access tokens are signed with.
    pub secret: String,
    /// Seconds a token is still accepted past its `exp` or before its `nbf`
    /// (clock skew).
    pub token_leeway_secs: u64,
    /// Longest lifetime (`exp` - `iat`) a token may have, in seconds; longer
    /// ones are refused (`token_invalid`). Also the default length of a ban.
    pub token_max_lifetime_secs: u64,
    /// A connection that has not sent a successful `join` this long after
    /// opening is closed.
    pub join_timeout: Duration,
    /// Sustained client messages per second a connection may send.
    pub rate_per_sec: f64,
    /// Burst of client messages allowed above the sustained rate.
    pub rate_burst: f64,
    /// Server messages queued toward one client before it is considered too
    /// slow and disconnected.
    pub outbound_queue: usize,
    /// How long shutdown waits for open WebSockets to close.
    pub shutdown_grace: Duration,
    /// How long a participant whose WebSocket dropped without `leave`
    /// stays in its room, media flowing, for a new connection to `resume`
    /// its session. Zero: a dropped connection leaves at once.
    pub resume_grace: Duration,
    /// Connection, participant and session limits and the other timeouts.
    pub limits: crate::limits::Limits,
    /// TURN servers whose short-lived credentials each participant gets in
    /// `joined` (and WHIP/WHEP clients in `Link` headers); none by default.
    pub turn: Option<crate::turn_credentials::TurnConfig>,
}

impl SignalingConfig {
    /// Defaults: leeway [`crate::auth::DEFAULT_LEEWAY_SECS`], token lifetime
    /// at most [`crate::auth::DEFAULT_MAX_LIFETIME_SECS`], join timeout 5 s,
    /// 50 messages/s with bursts of 100, 256 queued messages, 5 s shutdown
    /// grace, 20 s to resume a dropped session,
    /// [`crate::limits::Limits::default`].
    pub fn new(secret: impl Into<String>) -> Self {
        Self {
            secret: secret.into(),
            token_leeway_secs: crate::auth::DEFAULT_LEEWAY_SECS,
            token_max_lifetime_secs: crate::auth::DEFAULT_MAX_LIFETIME_SECS,
            join_timeout: Duration::from_secs(5),
            rate_per_sec: 50.0,
            rate_burst: 100.0,
            outbound_queue: 256,
            shutdown_grace: Duration::from_secs(5),
            resume_grace: Duration::from_secs(20),
            limits: crate::limits::Limits::default(),
            turn: None,
        }
    }
}

impl std::fmt::Debug for SignalingConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalingConfig")
            .field("secret", &"<redacted>")
            .field("token_leeway_secs", &self.token_leeway_secs)
            .field("token_max_lifetime_secs", &self.token_max_lifetime_secs)
            .field("join_timeout", &self.join_timeout)
            .field("rate_per_sec", &self.rate_per_sec)
            .field("rate_burst", &self.rate_burst)
            .field("outbound_queue", &self.outbound_queue)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("resume_grace", &self.resume_grace)
            .field("limits", &self.limits)
            .field("turn", &self.turn)
            .finish()
    }
}

impl SignalingConfig {
    /// The rules tokens are verified by.
    pub fn token_policy(&self) -> crate::auth::Policy {
        crate::auth::Policy {
            leeway_secs: self.token_leeway_secs,
            max_lifetime_secs: self.token_max_lifetime_secs,
        }
    }
}
