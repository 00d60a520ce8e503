//! Connection limits and timeouts: the `[limits]` table of the
//! configuration file, the matching flags and environment variables, and
//! what they resolve to. Defaults and meanings: `docs/security.md`.

use clap::Args;
use huddle_signaling::{Limits, SignalingConfig};
use serde::{Deserialize, Deserializer};
use std::str::FromStr;
use std::time::Duration;

/// A duration given in seconds (`0.5`, `30`): a TOML number or a flag value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Secs(pub Duration);

impl FromStr for Secs {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let v: f64 = s
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not a number of seconds"))?;
        secs(v)
    }
}

fn secs(v: f64) -> Result<Secs, String> {
    Duration::try_from_secs_f64(v)
        .map(Secs)
        .map_err(|_| format!("{v} is not a duration in seconds (0 or more)"))
}

impl<'de> Deserialize<'de> for Secs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        secs(f64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Everything the limits settle: the signaling service's [`Limits`] plus its
/// join timeout and message rate.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerLimits {
    /// Connection, participant, session and timeout limits.
    pub signaling: Limits,
    /// Time a WebSocket has to `join` after opening.
    pub join_timeout: Duration,
    /// Time a participant whose WebSocket dropped stays in its room for a
    /// new connection to resume its session (0: it leaves at once).
    pub resume_grace: Duration,
    /// Sustained client messages per second on one WebSocket.
    pub messages_per_sec: f64,
    /// Burst of client messages above the sustained rate.
    pub messages_burst: f64,
}

impl Default for ServerLimits {
    fn default() -> Self {
        let c = SignalingConfig::new(String::new());
        Self {
            signaling: c.limits,
            join_timeout: c.join_timeout,
            resume_grace: c.resume_grace,
            messages_per_sec: c.rate_per_sec,
            messages_burst: c.rate_burst,
        }
    }
}

impl ServerLimits {
    /// Put these limits into a signaling configuration.
    pub fn apply_to(&self, c: &mut SignalingConfig) {
        c.limits = self.signaling.clone();
        c.join_timeout = self.join_timeout;
        c.resume_grace = self.resume_grace;
        c.rate_per_sec = self.messages_per_sec;
        c.rate_burst = self.messages_burst;
    }
}

/// One layer of limits, every key optional: the `[limits]` table of the
/// TOML file, and the flags (each with its environment variable). Counts
/// take 0 for "no limit"; durations are in seconds.
///
/// ```toml
/// [limits]
/// max_connections_per_ip = 200
/// media_timeout_secs = 30
/// client_ip_header = "x-forwarded-for"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Args)]
#[serde(deny_unknown_fields)]
pub struct LimitsLayer {
    /// Open WebSockets on the server [default: 10000; 0: no limit].
    #[arg(long, env = "HUDDLE_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Open WebSockets from one client address (IPv6: per /64) [default: 200].
    #[arg(long, env = "HUDDLE_MAX_CONNECTIONS_PER_IP", value_name = "N")]
    pub max_connections_per_ip: Option<usize>,
    /// WebSockets from one client address not joined yet [default: 20].
    #[arg(long, env = "HUDDLE_MAX_PENDING_PER_IP", value_name = "N")]
    pub max_pending_per_ip: Option<usize>,
    /// Participants on the server, WHIP/WHEP sessions included [default: 10000].
    #[arg(long, env = "HUDDLE_MAX_PARTICIPANTS", value_name = "N")]
    pub max_participants: Option<usize>,
    /// Participants in one room [default: 500].
    #[arg(long, env = "HUDDLE_MAX_PARTICIPANTS_PER_ROOM", value_name = "N")]
    pub max_participants_per_room: Option<usize>,
    /// Sessions (WebSocket, WHIP, WHEP) of one identity in one room [default: 10].
    #[arg(long, env = "HUDDLE_MAX_SESSIONS_PER_IDENTITY", value_name = "N")]
    pub max_sessions_per_identity: Option<usize>,
    /// New WHIP/WHEP sessions per second per client address and per identity [default: 1].
    #[arg(long, env = "HUDDLE_HTTP_SESSIONS_PER_SEC", value_name = "RATE")]
    pub http_sessions_per_sec: Option<f64>,
    /// Burst of new WHIP/WHEP sessions above that rate [default: 10].
    #[arg(long, env = "HUDDLE_HTTP_SESSIONS_BURST", value_name = "N")]
    pub http_sessions_burst: Option<f64>,
    /// Messages per second one WebSocket may send, sustained [default: 50].
    #[arg(long, env = "HUDDLE_MESSAGES_PER_SEC", value_name = "RATE")]
    pub messages_per_sec: Option<f64>,
    /// Burst of messages above that rate [default: 100].
    #[arg(long, env = "HUDDLE_MESSAGES_BURST", value_name = "N")]
    pub messages_burst: Option<f64>,
    /// Seconds a WebSocket has to join [default: 5].
    #[arg(long, env = "HUDDLE_JOIN_TIMEOUT", value_name = "SECS")]
    pub join_timeout_secs: Option<Secs>,
    /// Seconds a participant allowed to publish has to offer or answer
    /// after joining [default: 30; 0: no limit].
    #[arg(long, env = "HUDDLE_MEDIA_TIMEOUT", value_name = "SECS")]
    pub media_timeout_secs: Option<Secs>,
    /// Seconds a participant whose WebSocket dropped without leaving stays
    /// in its room, for its client to resume the session [default: 20; 0:
    /// it leaves at once].
    #[arg(long, env = "HUDDLE_RESUME_GRACE", value_name = "SECS")]
    pub resume_grace_secs: Option<Secs>,
    /// Seconds an HTTP connection has to send a complete request header [default: 10].
    #[arg(long, env = "HUDDLE_HEADER_READ_TIMEOUT", value_name = "SECS")]
    pub header_read_timeout_secs: Option<Secs>,
    /// Seconds joins and leaves are gathered into one message [default: 0.1].
    #[arg(long, env = "HUDDLE_PRESENCE_BATCH", value_name = "SECS")]
    pub presence_batch_secs: Option<Secs>,
    /// Request header holding the client address, set by a reverse proxy
    /// (e.g. x-forwarded-for; its last address is used) [default: none, the
    /// TCP peer].
    #[arg(long, env = "HUDDLE_CLIENT_IP_HEADER", value_name = "NAME")]
    pub client_ip_header: Option<String>,
}

impl LimitsLayer {
    /// Apply the values this layer sets over `to`.
    pub fn apply(&self, to: &mut ServerLimits) {
        let l = &mut to.signaling;
        let counts = [
            (self.max_connections, &mut l.max_connections),
            (self.max_connections_per_ip, &mut l.max_connections_per_ip),
            (self.max_pending_per_ip, &mut l.max_pending_per_ip),
            (self.max_participants, &mut l.max_participants),
            (
                self.max_participants_per_room,
                &mut l.max_participants_per_room,
            ),
            (
                self.max_sessions_per_identity,
                &mut l.max_sessions_per_identity,
            ),
        ];
        for (value, field) in counts {
            if let Some(v) = value {
                *field = v;
            }
        }
        let rates = [
            (self.http_sessions_per_sec, &mut l.http_sessions_per_sec),
            (self.http_sessions_burst, &mut l.http_sessions_burst),
            (self.messages_per_sec, &mut to.messages_per_sec),
            (self.messages_burst, &mut to.messages_burst),
        ];
        for (value, field) in rates {
            if let Some(v) = value.filter(|v| v.is_finite()) {
                *field = v.max(0.0);
            }
        }
        let durations = [
            (self.join_timeout_secs, &mut to.join_timeout),
            (self.resume_grace_secs, &mut to.resume_grace),
            (self.media_timeout_secs, &mut l.media_timeout),
            (self.header_read_timeout_secs, &mut l.header_read_timeout),
            (self.presence_batch_secs, &mut l.presence_batch_window),
        ];
        for (value, field) in durations {
            if let Some(Secs(v)) = value {
                *field = v;
            }
        }
        if let Some(h) = &self.client_ip_header {
            l.client_ip_header = (!h.trim().is_empty()).then(|| h.trim().to_ascii_lowercase());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_table_over_defaults() {
        let layer: LimitsLayer = toml::from_str(
            "max_connections_per_ip = 0\nmedia_timeout_secs = 2.5\njoin_timeout_secs = 3\n\
             resume_grace_secs = 7\n\
             client_ip_header = \"X-Forwarded-For\"\nmessages_burst = 20\n",
        )
        .expect("parse");
        let mut l = ServerLimits::default();
        assert_eq!(l.signaling, Limits::default());
        layer.apply(&mut l);
        assert_eq!(l.signaling.max_connections_per_ip, 0);
        assert_eq!(l.signaling.media_timeout, Duration::from_millis(2500));
        assert_eq!(l.join_timeout, Duration::from_secs(3));
        assert_eq!(l.resume_grace, Duration::from_secs(7));
        assert_eq!(l.messages_burst, 20.0);
        assert_eq!(
            l.signaling.client_ip_header.as_deref(),
            Some("x-forwarded-for")
        );
        assert_eq!(l.signaling.max_pending_per_ip, 20, "untouched");
        assert!(toml::from_str::<LimitsLayer>("media_timeout_secs = -1").is_err());
        assert!(toml::from_str::<LimitsLayer>("max_conections = 1").is_err());
        assert!("0.25".parse::<Secs>().is_ok() && "soon".parse::<Secs>().is_err());
    }
}
