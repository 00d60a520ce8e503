//! Shared state of the signaling service.

use crate::config::SignalingConfig;
use crate::limits::over;
use crate::ratelimit::KeyedLimiter;
use crate::sfu::SfuControl;
use crate::state::{Hub, HubLimits};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{watch, Notify};

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
    connections: Mutex<Connections>,
    idle: Notify,
    http_sessions: crate::whip::Sessions,
    bans: crate::bans::Bans,
    session_rate: Mutex<SessionRate>,
}

/// Open WebSockets, in total and by client address.
#[derive(Default)]
struct Connections {
    total: usize,
    by_ip: HashMap<IpAddr, PerIp>,
}

#[derive(Default)]
struct PerIp {
    open: usize,
    /// Not joined yet.
    pending: usize,
}

/// Rate of new WHIP/WHEP sessions by client address and by (room,
/// identity).
struct SessionRate {
    by_ip: KeyedLimiter<IpAddr>,
    by_identity: KeyedLimiter<(String, String)>,
}

/// Why a WebSocket was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The server has `max_connections` open.
    ServerFull,
    /// The client address has `max_connections_per_ip` open.
    TooManyFromIp,
    /// The client address has `max_pending_per_ip` not joined yet.
    TooManyPendingFromIp,
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
        let (rate, burst) = (limits.http_sessions_per_sec, limits.http_sessions_burst);
        let session_rate = Mutex::new(SessionRate {
            by_ip: KeyedLimiter::new(rate, burst),
            by_identity: KeyedLimiter::new(rate, burst),
        });
        Self {
            inner: Arc::new(Inner {
                config,
                sfu,
                hub,
                shutdown,
                connections: Mutex::default(),
                idle: Notify::new(),
                http_sessions: crate::whip::Sessions::default(),
                bans: crate::bans::Bans::default(),
                session_rate,
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
    pub fn http_sessions(&self) -> &crate::whip::Sessions {
        &self.inner.http_sessions
    }

    /// The bans in force.
    pub fn bans(&self) -> &crate::bans::Bans {
        &self.inner.bans
    }

    /// Tell every open WebSocket to close (code 1001, going away). New
    /// connections are closed as soon as they open.
    pub fn begin_shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    fn connections(&self) -> MutexGuard<'_, Connections> {
        self.inner
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Open WebSocket connections.
    pub fn connection_count(&self) -> usize {
        self.connections().total
    }

    /// Whether a new WHIP/WHEP session from `ip` (when known) for
    /// `identity` in `room` is within the session rate. Takes a token from
    /// both buckets only when both have one.
    pub fn take_session_token(&self, ip: Option<IpAddr>, room: &str, identity: &str) -> bool {
        let mut r = self
            .inner
            .session_rate
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let ip_ok = ip.is_none_or(|ip| r.by_ip.try_take(ip));
        ip_ok
            && r.by_identity
                .try_take((room.to_owned(), identity.to_owned()))
    }

    /// Wait until no WebSocket is open, or `limit` passes. Returns whether
    /// all closed.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, async {
            loop {
                let notified = self.inner.idle.notified();
                if self.connection_count() == 0 {
                    return;
                }
                notified.await;
            }
        })
        .await
        .is_ok()
    }

    /// Count a new WebSocket from `ip` (when known), not joined yet, unless
    /// that would exceed a limit.
    pub(crate) fn admit(&self, ip: Option<IpAddr>) -> Result<ConnectionGuard, Refused> {
        let limits = &self.config().limits;
        let mut c = self.connections();
        if over(c.total, limits.max_connections) {
            return Err(Refused::ServerFull);
        }
        if let Some(ip) = ip {
            let per = c.by_ip.entry(ip).or_default();
            if over(per.open, limits.max_connections_per_ip) {
                return Err(Refused::TooManyFromIp);
            }
            if over(per.pending, limits.max_pending_per_ip) {
                return Err(Refused::TooManyPendingFromIp);
            }
            per.open += 1;
            per.pending += 1;
        }
        c.total += 1;
        Ok(ConnectionGuard {
            app: self.clone(),
            ip,
            pending: true,
        })
    }
}

/// Counts an open WebSocket (and, until [`ConnectionGuard::joined`], a
/// pending one) while alive.
pub(crate) struct ConnectionGuard {
    app: AppState,
    ip: Option<IpAddr>,
    pending: bool,
}

impl ConnectionGuard {
    /// The connection joined: it no longer counts as pending.
    pub(crate) fn joined(&mut self) {
        if std::mem::take(&mut self.pending) {
            if let Some(ip) = self.ip {
                if let Some(per) = self.app.connections().by_ip.get_mut(&ip) {
                    per.pending = per.pending.saturating_sub(1);
                }
            }
        }
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut c = self.app.connections();
        if let Some(ip) = self.ip {
            if let Some(per) = c.by_ip.get_mut(&ip) {
                per.open = per.open.saturating_sub(1);
                if self.pending {
                    per.pending = per.pending.saturating_sub(1);
                }
                if per.open == 0 {
                    c.by_ip.remove(&ip);
                }
            }
        }
        c.total = c.total.saturating_sub(1);
        let idle = c.total == 0;
        drop(c);
        if idle {
            self.app.inner.idle.notify_waiters();
        }
    }
}
