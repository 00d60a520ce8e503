//! Building the client's peer connections (async `webrtc` layer) and turning
//! their callbacks into channel messages.

use crate::error::CallError;
use huddle_proto::{ClientMessage, IceCandidate, PcRole};
use rtc::interceptor::Registry;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{
    MediaEngine, MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_VP8,
};
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState,
};

/// Payload type huddle uses for Opus (Chromium's usual one).
pub const OPUS_PT: u8 = 111;
/// Payload type huddle uses for VP8.
pub const VP8_PT: u8 = 96;

/// The codec description of Opus as huddle sends it.
pub fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// The codec description of VP8.
pub fn vp8_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_VP8.to_owned(),
        clock_rate: 90000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    }
}

fn media_engine() -> Result<MediaEngine, CallError> {
    let mut me = MediaEngine::default();
    let h264 = RTCRtpCodec {
        mime_type: MIME_TYPE_H264.to_owned(),
        clock_rate: 90000,
        channels: 0,
        sdp_fmtp_line: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
            .to_owned(),
        rtcp_feedback: vec![],
    };
    for (codec, pt, kind) in [
        (opus_codec(), OPUS_PT, RtpCodecKind::Audio),
        (vp8_codec(), VP8_PT, RtpCodecKind::Video),
        (h264, 102, RtpCodecKind::Video),
    ] {
        me.register_codec(
            RTCRtpCodecParameters {
                rtp_codec: codec,
                payload_type: pt,
            },
            kind,
        )?;
    }
    Ok(me)
}

/// What a peer connection reports to the call.
pub(crate) struct PcHandler {
    role: PcRole,
    outbox: crate::signal::Outbox,
    state: watch::Sender<RTCPeerConnectionState>,
    tracks: Option<mpsc::UnboundedSender<Arc<dyn TrackRemote>>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for PcHandler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            let _ = self.outbox.send(ClientMessage::Candidate {
                pc: self.role,
                candidate: IceCandidate {
                    candidate: init.candidate,
                    sdp_mid: init.sdp_mid,
                    sdp_mline_index: init.sdp_mline_index,
                    username_fragment: init.username_fragment,
                },
            });
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(pc = ?self.role, %state, "connection state");
        let _ = self.state.send(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        if let Some(tx) = &self.tracks {
            let _ = tx.send(track);
        }
    }
}

/// A built peer connection with its state watch.
pub(crate) struct Peer {
    pub pc: Arc<dyn PeerConnection>,
    pub state: watch::Receiver<RTCPeerConnectionState>,
}

/// Build a peer connection bound to `bind` (e.g. `127.0.0.1:0`).
pub(crate) async fn build(
    role: PcRole,
    bind: &str,
    outbox: crate::signal::Outbox,
    tracks: Option<mpsc::UnboundedSender<Arc<dyn TrackRemote>>>,
) -> Result<Peer, CallError> {
    let mut me = media_engine()?;
    let registry = register_default_interceptors(Registry::new(), &mut me)?;
    let (state_tx, state_rx) = watch::channel(RTCPeerConnectionState::New);
    let handler = Arc::new(PcHandler {
        role,
        outbox,
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
