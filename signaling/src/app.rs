//! Shared state of the signaling service: [`AppState`], which holds each
//! piece (configuration, SFU handle, rooms, open WebSockets, WHIP/WHEP
//! sessions, bans) and verifies access tokens against the configuration and
//! the bans.

use crate::auth::{self, AuthError, Claims};
use crate::bans::Bans;
use crate::config::SignalingConfig;
use crate::connections::{ConnectionGuard, Connections, Refused};
use crate::http_sessions::Sessions;
use crate::hub::{Hub, HubLimits};
use crate::resume::Resumable;
use crate::sfu::SfuControl;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Everything the handlers share: configuration, the SFU handle, the rooms.
/// Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: SignalingConfig,
    sfu: Arc<dyn SfuControl>,
    hub: Hub,
    shutdown: watch::Sender<bool>,
    connections: Connections,
    http_sessions: Sessions,
    bans: Bans,
    resumable: Resumable,
}

impl AppState {
    /// State for a service driving `sfu`.
    pub fn new(config: SignalingConfig, sfu: Arc<dyn SfuControl>) -> Self {
        let (shutdown, _) = watch::channel(false);
        let limits = &config.limits;
        let hub = Hub::with_limits(HubLimits {
            max_participants: limits.max_participants,
            max_per_room: limits.max_participants_per_room,
            max_per_identity: limits.max_sessions_per_identity,
        });
        let http_sessions = Sessions::new(limits);
        Self {
            inner: Arc::new(Inner {
                config,
                sfu,
                hub,
                shutdown,
                connections: Connections::default(),
                http_sessions,
                bans: Bans::default(),
                resumable: Resumable::default(),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SignalingConfig {
        &self.inner.config
    }

    /// The SFU.
    pub fn sfu(&self) -> &dyn SfuControl {
        self.inner.sfu.as_ref()
    }

    /// Rooms and participants.
    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// The open WHIP/WHEP sessions.
    pub fn http_sessions(&self) -> &Sessions {
        &self.inner.http_sessions
    }

    /// Sessions that can be resumed after their WebSocket dropped.
    pub fn resumable(&self) -> &Resumable {
        &self.inner.resumable
    }

    /// The bans in force.
    pub fn bans(&self) -> &Bans {
        &self.inner.bans
    }

    /// Verify an access token as the service's configuration says, and
    /// refuse it if a ban covers it.
    pub fn verify_token(&self, token: &str) -> Result<Claims, AuthError> {
        let config = self.config();
        let claims = auth::verify_with(&config.secret, token, &config.token_policy())?;
        if self.bans().refuses(&claims, auth::now_secs()) {
            return Err(AuthError::Revoked);
        }
        Ok(claims)
    }

    /// How long a ban lasts unless it says: the longest token lifetime plus
    /// the leeway, so every token alive when it is made is dead when it ends.
    pub fn default_ban_secs(&self) -> u64 {
        let c = self.config();
        c.token_max_lifetime_secs
            .saturating_add(c.token_leeway_secs)
    }

    /// Tell every open WebSocket to close (code 1001, going away). New
    /// connections are closed as soon as they open.
    pub fn begin_shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    /// Open WebSocket connections.
    pub fn connection_count(&self) -> usize {
        self.inner.connections.count()
    }

    /// Wait until no WebSocket is open, or `limit` passes. Returns whether
    /// all closed.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        self.inner.connections.wait_idle(limit).await
    }

    /// Count a new WebSocket from `ip` (when known), not joined yet, unless
    /// that would exceed a limit.
    pub(crate) fn open_connection(&self, ip: Option<IpAddr>) -> Result<ConnectionGuard, Refused> {
        self.inner.connections.open(&self.config().limits, ip)
    }
}
