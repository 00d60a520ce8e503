//! Building the client's peer connections (async `webrtc` layer) and turning
//! their callbacks into channel messages.

use crate::error::CallError;
use huddle_proto::{ClientMessage, IceCandidate, PcRole};
use huddle_wire::feedback::{KeyframeRequestsToApp, SLOT};
use rtc::interceptor::Registry;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState,
};

/// Trickled candidates wait until the description they belong to has been
/// sent: the server cannot use a candidate for a connection it has not heard
/// of yet.
#[derive(Default)]
struct Trickle {
    open: bool,
    queued: Vec<ClientMessage>,
}

/// What a peer connection reports to the call.
pub(crate) struct PcHandler {
    role: PcRole,
    outbox: crate::signal::Outbox,
    trickle: Arc<std::sync::Mutex<Trickle>>,
    state: watch::Sender<RTCPeerConnectionState>,
    tracks: Option<mpsc::UnboundedSender<Arc<dyn TrackRemote>>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for PcHandler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            let msg = ClientMessage::Candidate {
                pc: self.role,
                candidate: IceCandidate {
                    candidate: init.candidate,
                    sdp_mid: init.sdp_mid,
                    sdp_mline_index: init.sdp_mline_index,
                    username_fragment: init.username_fragment,
                },
            };
            let Ok(mut t) = self.trickle.lock() else {
                return;
            };
            if t.open {
                let _ = self.outbox.send(msg);
            } else {
                t.queued.push(msg);
            }
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(pc = ?self.role, %state, "connection state");
        let _ = self.state.send(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        tracing::debug!(pc = ?self.role, "remote track");
        if let Some(tx) = &self.tracks {
            let _ = tx.send(track);
        }
    }
}

/// A built peer connection with its state watch.
pub(crate) struct Peer {
    pub pc: Arc<dyn PeerConnection>,
    pub state: watch::Receiver<RTCPeerConnectionState>,
    trickle: Arc<std::sync::Mutex<Trickle>>,
    outbox: crate::signal::Outbox,
}

impl Peer {
    /// The description was sent: send the candidates held back, and the
    /// next ones as they come.
    pub fn open_trickle(&self) {
        if let Ok(mut t) = self.trickle.lock() {
            t.open = true;
            for msg in t.queued.drain(..) {
                let _ = self.outbox.send(msg);
            }
        }
    }
}

/// Build a peer connection bound to `bind` (e.g. `127.0.0.1:0`).
pub(crate) async fn build(
    role: PcRole,
    bind: &str,
    outbox: crate::signal::Outbox,
    tracks: Option<mpsc::UnboundedSender<Arc<dyn TrackRemote>>>,
) -> Result<Peer, CallError> {
    let mut me = huddle_wire::codecs::media_engine()?;
    // Keyframe requests must reach the app so a publisher can answer them.
    let registry = register_default_interceptors(Registry::new(), &mut me)?
        .with(SLOT.into(), KeyframeRequestsToApp::default());
    let (state_tx, state_rx) = watch::channel(RTCPeerConnectionState::New);
    let trickle = Arc::new(std::sync::Mutex::new(Trickle::default()));
    let handler = Arc::new(PcHandler {
        role,
        outbox: outbox.clone(),
        trickle: trickle.clone(),
        state: state_tx,
        tracks,
    });
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(me)
        .with_interceptor_registry(registry)
        .with_handler(handler)
        .with_udp_addrs(vec![bind.to_owned()])
        .build()
        .await?;
    Ok(Peer {
        pc: Arc::new(pc),
        state: state_rx,
        trickle,
        outbox,
    })
}

/// Wait until the connection is up, failing if it fails or `timeout` passes.
pub(crate) async fn wait_connected(
    state: &mut watch::Receiver<RTCPeerConnectionState>,
    timeout: std::time::Duration,
) -> Result<(), CallError> {
    let wait = async {
        loop {
            match *state.borrow_and_update() {
                RTCPeerConnectionState::Connected => return Ok(()),
                RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                    return Err(CallError::WebRtc("media connection failed".into()))
                }
                _ => {}
            }
            if state.changed().await.is_err() {
                return Err(CallError::Closed);
            }
        }
    };
    tokio::time::timeout(timeout, wait)
        .await
        .map_err(|_| CallError::Timeout("the media connection"))?
}
