//! The driver of [`crate::media_path`]: it looks at the route to the server
//! and at the media connections' states, and has the call ([`Restartable`],
//! implemented in `call.rs`) restart ICE on both connections when told to.
//! The publisher connection restarts with an ICE-restart offer of its own;
//! the subscriber connection by asking the server for one (`restart_ice`),
//! answered in the session loop like any other offer. Both keep their DTLS
//! association and SRTP keys: only the path changes.

use crate::endpoint;
use crate::error::CallError;
use crate::event::CallEvent;
use crate::media_path::{Cause, Decision, Health, PathWatch, LOOK_EVERY};
use std::net::SocketAddr;
use std::sync::Weak;
use std::time::Instant;
use tokio::time::MissedTickBehavior;
use tracing::{debug, info, warn};
use webrtc::peer_connection::RTCPeerConnectionState;

/// What the driver needs of a call.
#[async_trait::async_trait]
pub(crate) trait Restartable: Send + Sync {
    /// The call is over: stop watching.
    fn ended(&self) -> bool;
    /// Its media connections' health, taken together.
    fn health(&self) -> Health;
    /// Tell the signaling link the local network changed.
    fn network_changed(&self);
    /// Hand the app an event.
    fn event(&self, event: CallEvent);
    /// Restart ICE on both connections; returns once the publisher's
    /// answer is applied.
    async fn restart_ice(&self) -> Result<(), CallError>;
}

/// Watch `call`'s media path until the call ends (it is gone or says so).
/// `server` is the server's address when the route to it is to be watched
/// (not when the app chose the bind address, which is bound again as given,
/// nor toward a loopback server, whose route never changes).
pub(crate) async fn watch_media_path<C: Restartable>(call: Weak<C>, server: Option<SocketAddr>) {
    let route = move || server.and_then(endpoint::local_ip_toward);
    let mut watch = PathWatch::new(route());
    debug!(?server, local = ?route(), "watching the media path");
    let mut tick = tokio::time::interval(LOOK_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(call) = call.upgrade() else {
            return;
        };
        if call.ended() {
            return;
        }
        let was_restarting = watch.restarting();
        let since = watch.restarting_since();
        match watch.look(Instant::now(), route(), call.health()) {
            Decision::Wait => {}
            Decision::Restart(cause) => {
                info!(?cause, "media path lost: restarting ICE");
                if cause == Cause::AddressChanged {
                    // The signaling connection may be as dead as the media
                    // path (its address is gone): resume it on a new one.
                    call.network_changed();
                }
                if !was_restarting {
                    call.event(CallEvent::MediaReconnecting);
                }
                if let Err(e) = call.restart_ice().await {
                    warn!("ICE restart failed (tried again later): {e}");
                }
            }
            Decision::Recovered => {
                let after_ms = since.map(|t| t.elapsed().as_millis());
                info!(?after_ms, "media path back");
                call.event(CallEvent::MediaReconnected);
            }
        }
    }
}

/// The health of connections in these states, taken together (closed ones
/// not counted).
pub(crate) fn health_of(states: impl IntoIterator<Item = RTCPeerConnectionState>) -> Health {
    let states: Vec<RTCPeerConnectionState> = states
        .into_iter()
        .filter(|s| *s != RTCPeerConnectionState::Closed)
        .collect();
    if states.iter().any(|s| {
        matches!(
            s,
            RTCPeerConnectionState::Disconnected | RTCPeerConnectionState::Failed
        )
    }) {
        Health::Down
    } else if states
        .iter()
        .all(|s| *s == RTCPeerConnectionState::Connected)
    {
        Health::Up
    } else {
        Health::Starting
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RTCPeerConnectionState as S;

    #[test]
    fn one_connection_down_is_down_and_all_connected_is_up() {
        assert_eq!(health_of([S::Connected, S::Disconnected]), Health::Down);
        assert_eq!(health_of([S::Failed]), Health::Down);
        assert_eq!(health_of([S::Connected, S::Connected]), Health::Up);
        assert_eq!(health_of([S::Connected, S::Closed]), Health::Up);
        assert_eq!(health_of([]), Health::Up, "no connection yet");
        assert_eq!(health_of([S::Connected, S::Connecting]), Health::Starting);
        assert_eq!(health_of([S::New]), Health::Starting);
    }
}
