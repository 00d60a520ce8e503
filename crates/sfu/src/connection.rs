//! One peer connection of a participant: the sans-IO `rtc` peer connection,
//! the ICE credentials the SFU chose for it (its demux key), and its liveness.

use crate::config::SfuConfig;
use crate::error::SfuError;
use crate::feedback::{KeyframeRequestsToApp, SLOT};
use rtc::interceptor::{NackGeneratorBuilder, Registry, Slot};
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_rtcp_reports, configure_simulcast_extension_headers, configure_twcc_receiver_only,
};
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::RTCPeerConnectionBuilder;
use rtc::rtp_transceiver::rtp_sender::{RTCPFeedback, RtpCodecKind, TYPE_RTCP_FB_NACK};
use rtc::shared::error::Error as RtcError;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Random ICE credential of `len` characters from the ICE alphabet (RFC 8839 §5.4).
pub(crate) fn ice_token(len: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// webrtc-rs's default interceptors minus the NACK responder: the SFU asks
/// publishers for lost packets (NACK generator) and answers subscribers'
/// NACKs itself from one store per track (`rtx.rs`), instead of a copy of
/// every packet per subscriber leg.
fn interceptors(me: &mut MediaEngine) -> Result<Registry, RtcError> {
    for parameter in ["", "pli"] {
        me.register_feedback(
            RTCPFeedback {
                typ: TYPE_RTCP_FB_NACK.to_owned(),
                parameter: parameter.to_owned(),
            },
            RtpCodecKind::Video,
        );
    }
    configure_simulcast_extension_headers(me)?;
    let registry = Registry::new().with(Slot::NackGenerator, NackGeneratorBuilder::new().build());
    let registry = configure_twcc_receiver_only(registry, me)?;
    Ok(configure_rtcp_reports(registry).with(SLOT.into(), KeyframeRequestsToApp::with_nacks()))
}

/// Liveness of a connection as the SFU judges it: from the `rtc` state
/// (connected, failed, closed) and from the traffic the SFU sees arrive.
/// rtc 0.21's ICE agent counts only STUN as a sign of life (not media, not
/// RTCP), so a client that is late with a consent check but still sends is
/// not down; the SFU watches every datagram itself (`last_rx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// Created, never connected yet.
    Connecting { since: Instant },
    /// Connected.
    Up,
    /// Was connected; nothing arrived for `SfuConfig::ice_disconnected_timeout`.
    Down { since: Instant },
    /// Failed or closed: remove the participant.
    Dead,
}

/// One `rtc` peer connection on the shared port.
pub(crate) struct Connection {
    pub pc: RTCPeerConnection,
    pub ufrag: String,
    pub liveness: Liveness,
    /// When the last datagram from the client arrived.
    pub last_rx: Instant,
    /// Whether the SFU's own host candidate was added yet.
    pub candidate_added: bool,
}

impl Connection {
    /// Build a peer connection whose local ICE ufrag is `ufrag`.
    pub fn new(now: Instant, config: &SfuConfig, ufrag: String) -> Result<Self, SfuError> {
        let rtc_err = |e: RtcError| SfuError::Rtc(e.to_string());
        let mut me = crate::codecs::media_engine().map_err(rtc_err)?;
        let registry = interceptors(&mut me).map_err(rtc_err)?;
        let settings = SettingEngineBuilder::new()
            .with_ice_credentials(ufrag.clone(), ice_token(32))
            .with_ice_timeouts(
                Some(config.ice_disconnected_timeout),
                Some(config.ice_failed_timeout),
                Some(Duration::from_secs(1)),
            )
            // ICE-lite (RFC 8445 §2.5), as SFUs on public addresses run: the
            // SFU only answers checks and the client nominates. It never
            // sends checks of its own, so media follows the path the client
            // chose (through a NAT or a relay in front of the SFU), and
            // Chromium's aggressive nomination works (with full ICE, rtc-ice
            // 0.21 left USE-CANDIDATE checks unanswered: see docs/interop.md).
            .with_lite(true)
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
            last_rx: now,
            candidate_added: false,
        })
    }

    /// A datagram from the client arrived: a connection that went down for
    /// silence is up again.
    pub fn heard(&mut self, now: Instant) {
        self.last_rx = now;
        if let Liveness::Down { .. } = self.liveness {
            self.liveness = Liveness::Up;
        }
    }

    /// When this connection goes down if nothing arrives (only while up).
    pub fn silence_deadline(&self, timeout: Duration) -> Option<Instant> {
        (self.liveness == Liveness::Up).then(|| self.last_rx + timeout)
    }

    /// Time passed: an up connection that heard nothing for `timeout` is
    /// down. Returns true when that happened now.
    pub fn check_silence(&mut self, now: Instant, timeout: Duration) -> bool {
        match self.silence_deadline(timeout) {
            Some(deadline) if deadline <= now => {
                self.liveness = Liveness::Down { since: deadline };
                true
            }
            _ => false,
        }
    }

    /// Add the SFU's host candidate (the shared port) once.
    pub fn add_host_candidate(&mut self, addr: SocketAddr) -> Result<(), SfuError> {
        if self.candidate_added {
            return Ok(());
        }
        let rtc_err = |e: RtcError| SfuError::Rtc(e.to_string());
        let init = crate::candidate::host_candidate(addr).map_err(rtc_err)?;
        self.pc.add_local_candidate(init).map_err(rtc_err)?;
        self.candidate_added = true;
        Ok(())
    }
}
