//! One peer connection of a participant: the sans-IO `rtc` peer connection,
//! the ICE credentials the SFU chose for it (its demux key), and its liveness.

use crate::config::SfuConfig;
use crate::error::SfuError;
use rtc::interceptor::{Attribute, Interceptor, Packet, Registry, StreamInfo, TaggedPacket};
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{
    MediaEngine, MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_VP8,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::RTCPeerConnectionBuilder;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind};
use rtc::sansio::Protocol;
use rtc::shared::error::Error as RtcError;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The codecs the SFU accepts and forwards. Payload types follow Chromium's
/// usual numbering so that offers from browsers map without surprises.
fn media_engine() -> Result<MediaEngine, RtcError> {
    let mut me = MediaEngine::default();
    let codecs = [
        (
            RtpCodecKind::Audio,
            MIME_TYPE_OPUS,
            48000,
            2,
            "minptime=10;useinbandfec=1",
            111,
        ),
        (RtpCodecKind::Video, MIME_TYPE_VP8, 90000, 0, "", 96),
        (
            RtpCodecKind::Video,
            MIME_TYPE_H264,
            90000,
            0,
            "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
            102,
        ),
    ];
    for (kind, mime, clock_rate, channels, fmtp, pt) in codecs {
        me.register_codec(
            RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: mime.to_owned(),
                    clock_rate,
                    channels,
                    sdp_fmtp_line: fmtp.to_owned(),
                    rtcp_feedback: vec![],
                },
                payload_type: pt,
            },
            kind,
        )?;
    }
    Ok(me)
}

/// Random ICE credential of `len` characters from the ICE alphabet (RFC 8839 §5.4).
pub(crate) fn ice_token(len: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Liveness of a connection as the SFU judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// Created, never connected yet.
    Connecting { since: Instant },
    /// Connected.
    Up,
    /// Was connected, now disconnected.
    Down { since: Instant },
    /// Failed or closed: remove the participant.
    Dead,
}

/// One `rtc` peer connection on the shared port.
pub(crate) struct Connection {
    pub pc: RTCPeerConnection,
    pub ufrag: String,
    pub liveness: Liveness,
    /// Whether the SFU's own host candidate was added yet.
    pub candidate_added: bool,
}

impl Connection {
    /// Build a peer connection whose local ICE ufrag is `ufrag`.
    pub fn new(now: Instant, config: &SfuConfig, ufrag: String) -> Result<Self, SfuError> {
        let rtc_err = |e: RtcError| SfuError::Rtc(e.to_string());
        let mut me = media_engine().map_err(rtc_err)?;
        let registry = register_default_interceptors(Registry::new(), &mut me)
            .map_err(rtc_err)?
            .with(14_000usize.into(), KeyframeRequestsToApp::default());
        let settings = SettingEngineBuilder::new()
            .with_ice_credentials(ufrag.clone(), ice_token(32))
            .with_ice_timeouts(
                Some(config.ice_disconnected_timeout),
                Some(config.ice_failed_timeout),
                Some(Duration::from_secs(1)),
            )
            .build();
        let pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(me)
            .with_setting_engine(settings)
            .with_interceptor_registry(registry)
            .build(now)
            .map_err(rtc_err)?;
        Ok(Self {
            pc,
            ufrag,
            liveness: Liveness::Connecting { since: now },
            candidate_added: false,
        })
    }

    /// Add the SFU's host candidate (the shared port) once.
    pub fn add_host_candidate(&mut self, addr: SocketAddr) -> Result<(), SfuError> {
        if self.candidate_added {
            return Ok(());
        }
        let rtc_err = |e: RtcError| SfuError::Rtc(e.to_string());
        let candidate = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: addr.ip().to_string(),
                port: addr.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()
        .map_err(rtc_err)?;
        let init = RTCIceCandidate::from(&candidate)
            .to_json()
            .map_err(rtc_err)?;
        self.pc.add_local_candidate(init).map_err(rtc_err)?;
        self.candidate_added = true;
        Ok(())
    }
}

/// Interceptor that lets keyframe requests (PLI, FIR) from subscribers reach
/// the SFU's routing, which merges them toward the publisher. Marks, does not
/// consume: the rest of the chain still sees them.
#[derive(Default)]
struct KeyframeRequestsToApp {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

/// Whether an RTCP compound packet carries a PLI or FIR.
pub(crate) fn is_keyframe_request(packets: &[Box<dyn rtc::rtcp::Packet>]) -> bool {
    packets
        .iter()
        .any(|p| p.as_any().is::<PictureLossIndication>() || p.as_any().is::<FullIntraRequest>())
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequestsToApp {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = RtcError;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            if is_keyframe_request(packets) {
                msg.message.add(Attribute::DeliverToApplication);
            }
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }

    fn handle_timeout(&mut self, _now: Instant) -> Result<(), Self::Error> {
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Self::Time> {
        None
    }
}

impl Interceptor for KeyframeRequestsToApp {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}
