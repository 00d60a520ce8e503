//! What the server's operator could get: a receive-only WebRTC peer
//! (webrtc-rs) attached to the SFU directly, past the signaling service and
//! its E2EE checks, as a WHEP viewer would be. It is sent what the SFU
//! forwards of the room's first audio track and first video, after the
//! SFU's own SRTP decryption: the RTP payloads the SFU holds.

use huddle_sfu::{ParticipantId, RoomId};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use std::sync::{Arc, Mutex};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCSessionDescription,
};
use webrtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};

/// A packet the spy received.
#[derive(Debug, Clone)]
pub struct Spied {
    pub payload_type: u8,
    pub timestamp: u32,
    pub payload: Vec<u8>,
}

/// The packets the spy received, in order.
pub type Captured = Arc<Mutex<Vec<Spied>>>;

struct Handler {
    captured: Captured,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let captured = self.captured.clone();
        tokio::spawn(async move {
            while let Some(ev) = track.poll().await {
                match ev {
                    TrackRemoteEvent::OnRtpPacket(p) => {
                        captured.lock().expect("lock").push(Spied {
                            payload_type: p.header.payload_type,
                            timestamp: p.header.timestamp,
                            payload: p.payload.to_vec(),
                        });
                    }
                    TrackRemoteEvent::OnEnded => break,
                    _ => {}
                }
            }
        });
    }
}

/// A spy on the audio and video of `room`; keep the connection while it
/// listens.
pub async fn spy_on(
    server: &huddle_server::RunningServer,
    room: &str,
) -> (Arc<dyn PeerConnection>, Captured) {
    let captured = Captured::default();
    let mut media = huddle_wire::codecs::media_engine().expect("codecs");
    huddle_wire::codecs::register_red(&mut media).expect("RED");
    let pc = PeerConnectionBuilder::new()
        .with_media_engine(media)
        .with_handler(Arc::new(Handler {
            captured: captured.clone(),
        }))
        .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
        .build()
        .await
        .expect("peer connection");
    let pc: Arc<dyn PeerConnection> = Arc::new(pc);
    for kind in [RtpCodecKind::Audio, RtpCodecKind::Video] {
        pc.add_transceiver_from_kind(
            kind,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Recvonly,
                ..Default::default()
            }),
        )
        .await
        .expect("transceiver");
    }
    let offer = pc.create_offer(None).await.expect("offer");
    pc.set_local_description(offer).await.expect("local");
    let sdp = pc.local_description().await.expect("offer sdp").sdp;
    // The SFU is ICE-lite: it learns this peer's address from its checks.
    let answer = server
        .sfu()
        .add_viewer(
            RoomId(room.to_owned()),
            ParticipantId("PA_operator_spy".to_owned()),
            sdp,
        )
        .await
        .expect("the SFU takes the viewer");
    pc.set_remote_description(RTCSessionDescription::answer(answer).expect("answer"))
        .await
        .expect("remote");
    (pc, captured)
}
