//! The driver of [`crate::media_path`]: it looks at the route to the server
//! and at the media connections' states, and restarts ICE on both
//! connections when told to. The publisher connection restarts with an
//! ICE-restart offer of its own; the subscriber connection by asking the
//! server for one (`restart_ice`), answered in the session loop like any
//! other offer. Both keep their DTLS association and SRTP keys: only the
//! path changes.

use super::Inner;
use crate::endpoint;
use crate::error::CallError;
use crate::event::CallEvent;
use crate::media_path::{Cause, Decision, Health, PathWatch, LOOK_EVERY};
use huddle_proto::ClientMessage;
use std::sync::Weak;
use std::time::Instant;
use tokio::time::MissedTickBehavior;
use tracing::{debug, info, warn};
use webrtc::peer_connection::RTCPeerConnectionState;

/// Watch the call's media path until the call ends (its `Inner` is gone or
/// its signaling link closed).
pub(super) async fn watch_media_path(inner: Weak<Inner>) {
    // The route is watched only when the call chose the bind itself (an
    // address the app gave is bound again as given) and the server is not
    // on loopback (whose route never changes); connection states always.
    let Some(server) = inner.upgrade().map(|i| {
        i.server
            .filter(|_| i.bind_given.is_none() && !i.endpoint.loopback)
    }) else {
        return;
    };
    let route = move || server.and_then(endpoint::local_ip_toward);
    let mut watch = PathWatch::new(route());
    debug!(?server, local = ?route(), "watching the media path");
    let mut tick = tokio::time::interval(LOOK_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if inner.outbox.is_closed() {
            return;
        }
        let was_restarting = watch.restarting();
        let since = watch.restarting_since();
        match watch.look(Instant::now(), route(), health(&inner)) {
            Decision::Wait => {}
            Decision::Restart(cause) => {
                info!(?cause, "media path lost: restarting ICE");
                if cause == Cause::AddressChanged {
                    // The signaling connection may be as dead as the media
                    // path (its address is gone): resume it on a new one.
                    inner.network_changed.send_modify(|n| *n += 1);
                }
                if !was_restarting {
                    let _ = inner.events.send(CallEvent::MediaReconnecting);
                }
                if let Err(e) = restart_ice(&inner).await {
                    warn!("ICE restart failed (tried again later): {e}");
                }
            }
            Decision::Recovered => {
                let after_ms = since.map(|t| t.elapsed().as_millis());
                info!(?after_ms, "media path back");
                let _ = inner.events.send(CallEvent::MediaReconnected);
            }
        }
    }
}

/// The media connections' health, taken together.
fn health(inner: &Inner) -> Health {
    let st = inner.state();
    let states: Vec<RTCPeerConnectionState> = [st.publisher.as_ref(), st.subscriber.as_ref()]
        .into_iter()
        .flatten()
        .map(|p| *p.state.borrow())
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

/// Restart ICE on both connections: ask the server for a subscriber offer
/// with new credentials, and renegotiate the publisher connection with an
/// ICE-restart offer (its sockets bound again on the interfaces there are
/// now). Returns once the publisher's answer is applied.
async fn restart_ice(inner: &Inner) -> Result<(), CallError> {
    if inner.state().subscriber.is_some() {
        inner
            .outbox
            .send(ClientMessage::RestartIce)
            .map_err(|_| CallError::Closed)?;
    }
    let _one_at_a_time = inner.negotiation.lock().await;
    let publisher = inner.state().publisher.as_ref().map(|p| p.pc.clone());
    if let Some(pc) = publisher {
        pc.restart_ice().await?;
        inner.offer_publisher(&pc).await?;
    }
    Ok(())
}
