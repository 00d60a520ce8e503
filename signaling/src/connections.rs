//! Open WebSockets, counted in total and by client address against the
//! node's and the address's limits ([`crate::limits::Limits`]) before the
//! upgrade.

use crate::limits::{over, Limits};
use crate::lock::lock;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

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

/// The open WebSockets. Cheap to clone (shared).
#[derive(Clone, Default)]
pub(crate) struct Connections {
    inner: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    counts: Mutex<Counts>,
    /// Notified when the last connection closes.
    idle: Notify,
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_ip: HashMap<IpAddr, PerIp>,
}

#[derive(Default)]
struct PerIp {
    open: usize,
    /// Not joined yet.
    pending: usize,
}

impl Connections {
    /// Open WebSockets.
    pub(crate) fn count(&self) -> usize {
        lock(&self.inner.counts).total
    }

    /// Count a new WebSocket from `ip` (when known), not joined yet, unless
    /// that would exceed one of `limits`.
    pub(crate) fn open(
        &self,
        limits: &Limits,
        ip: Option<IpAddr>,
    ) -> Result<ConnectionGuard, Refused> {
        let mut c = lock(&self.inner.counts);
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
            connections: self.clone(),
            ip,
            pending: true,
        })
    }

    /// Wait until no WebSocket is open, or `limit` passes. Returns whether
    /// all closed.
    pub(crate) async fn wait_idle(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, async {
            loop {
                let notified = self.inner.idle.notified();
                if self.count() == 0 {
                    return;
                }
                notified.await;
            }
        })
        .await
        .is_ok()
    }
}

/// Counts an open WebSocket (and, until [`ConnectionGuard::joined`], a
/// pending one) while alive.
pub(crate) struct ConnectionGuard {
    connections: Connections,
    ip: Option<IpAddr>,
    pending: bool,
}

impl ConnectionGuard {
    /// The connection joined: it no longer counts as pending.
    pub(crate) fn joined(&mut self) {
        if std::mem::take(&mut self.pending) {
            if let Some(ip) = self.ip {
                if let Some(per) = lock(&self.connections.inner.counts).by_ip.get_mut(&ip) {
                    per.pending = per.pending.saturating_sub(1);
                }
            }
        }
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut c = lock(&self.connections.inner.counts);
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
            self.connections.inner.idle.notify_waiters();
        }
    }
}
