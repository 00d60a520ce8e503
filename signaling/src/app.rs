//! Shared state of the signaling service.

use crate::config::SignalingConfig;
use crate::sfu::SfuControl;
use crate::state::Hub;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
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
    connections: AtomicUsize,
    idle: Notify,
    http_sessions: crate::whip::Sessions,
    bans: crate::bans::Bans,
}

impl AppState {
    /// State for a service driving `sfu`.
    pub fn new(config: SignalingConfig, sfu: Arc<dyn SfuControl>) -> Self {
        let (shutdown, _) = watch::channel(false);
        Self {
            inner: Arc::new(Inner {
                config,
                sfu,
                hub: Hub::new(),
                shutdown,
                connections: AtomicUsize::new(0),
                idle: Notify::new(),
                http_sessions: crate::whip::Sessions::default(),
                bans: crate::bans::Bans::default(),
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

    /// Open WebSocket connections.
    pub fn connection_count(&self) -> usize {
        self.inner.connections.load(Ordering::SeqCst)
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

    pub(crate) fn connection_guard(&self) -> ConnectionGuard {
        self.inner.connections.fetch_add(1, Ordering::SeqCst);
        ConnectionGuard { app: self.clone() }
    }
}

/// Counts an open WebSocket while alive.
pub(crate) struct ConnectionGuard {
    app: AppState,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.app.inner.connections.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.app.inner.idle.notify_waiters();
        }
    }
}
