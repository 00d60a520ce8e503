//! One peer connection of a participant: the sans-IO `rtc` peer connection,
//! the ICE credentials the SFU chose for it (its demux key), and its liveness.
//! A subscriber connection also has the SFU's own transport ([`Wire`]):
//! `rtc` only negotiates it.

use crate::config::SfuConfig;
use crate::egress::Wire;
use crate::error::SfuError;
use huddle_proto::PcRole;
use rtc::crypto::SignatureScheme;
use rtc::interceptor::{NackGeneratorBuilder, ReceiverReportBuilder, Registry, Slot};
use rtc::peer_connection::certificate::{CertificateParams, RTCCertificate};
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_simulcast_extension_headers, configure_twcc_receiver_only,
};
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::RTCPeerConnectionBuilder;
use rtc::rtp_transceiver::rtp_sender::{RTCPFeedback, RtpCodecKind, TYPE_RTCP_FB_NACK};
use rtc::sansio::Protocol;
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

/// How often the SFU asks a publisher for one lost packet. `rtc`'s NACK
/// generator asks every 100 ms, by default for as long as the gap stays in
/// its 512-packet window (17 s of a 30 packets/s video stream); when the
/// SFU's input queue holds the resends back, every ask brings one more copy,
/// and the load tool saw a packet sent 91 times. Ten asks cover a second:
/// a resend that late is no use to a call, the keyframe request takes over
/// (libwebrtc's receiver also stops after ten).
pub(crate) const MAX_NACKS_PER_PACKET: u16 = 10;

/// Packets of a publisher's stream that SRTP replay protection tracks
/// (RFC 3711 §3.3.2). A packet further behind the newest than this is
/// refused as a replay. `rtc`'s default, 64, is 0.7 s of an 800 kbit/s
/// video stream: a resend the SFU asked for that arrived later than that
/// (a worker busy setting up a large meeting) was refused as "duplicated",
/// so the NACK generator, which never saw it, asked again, up to
/// [`MAX_NACKS_PER_PACKET`] times, each answer refused in turn (28 000
/// warnings setting up a 48-person meeting). It covers the NACK generator's
/// 512-packet window; libwebrtc uses 1024 too.
const SRTP_REPLAY_WINDOW: usize = 1024;

/// The interceptors of a connection, chosen by what it carries: each one
/// is a stage every packet of the connection passes (a copy per stage), so
/// a connection has only those it uses.
///
/// - Publisher (media in): NACK generator (asks the client for lost
///   packets, each at most [`MAX_NACKS_PER_PACKET`] times), TWCC feedback,
///   receiver reports.
/// - Subscriber: none. Its datagrams never pass through `rtc` ([`Wire`]);
///   the feedback registered here only goes into the SDP.
fn interceptors(me: &mut MediaEngine, role: PcRole) -> Result<Registry, RtcError> {
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
    Ok(match role {
        PcRole::Publisher => {
            let registry = Registry::new().with(
                Slot::NackGenerator,
                NackGeneratorBuilder::new()
                    .with_max_nacks_per_packet(MAX_NACKS_PER_PACKET)
                    .build(),
            );
            configure_twcc_receiver_only(registry, me)?
                .with(Slot::ReceiverReport, ReceiverReportBuilder::new().build())
        }
        PcRole::Subscriber => Registry::new(),
    })
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
    /// The `rtc` core's next timer, as of the last time the connection was
    /// drained (every call into `pc` is followed by a drain): asking `pc`
    /// walks its whole handler pipeline, for every connection on every turn
    /// of the worker loop. A subscriber connection's is its [`Wire`]'s.
    pub timer: Option<Instant>,
    /// The SFU's own transport: `Some` on a subscriber connection.
    pub wire: Option<Wire>,
}

impl Connection {
    /// Build a peer connection in `role` whose local ICE ufrag is `ufrag`,
    /// on the media socket at `local_addr`.
    pub fn new(
        now: Instant,
        config: &SfuConfig,
        role: PcRole,
        ufrag: String,
        local_addr: SocketAddr,
    ) -> Result<Self, SfuError> {
        let rtc_err = |e: RtcError| SfuError::Rtc(e.to_string());
        let mut me = crate::codecs::media_engine().map_err(rtc_err)?;
        let registry = interceptors(&mut me, role).map_err(rtc_err)?;
        let pwd = ice_token(32);
        let mut configuration = RTCConfigurationBuilder::new();
        let mut wire = None;
        if role == PcRole::Subscriber {
            // The SDP rtc writes must describe the SFU's own transport: same
            // certificate (fingerprint), same ICE credentials.
            let provider = rtc::crypto::default_provider()
                .map_err(|e| SfuError::Rtc(format!("crypto provider: {e}")))?;
            let params = CertificateParams::new(vec!["huddle-sfu".to_owned()])
                .map_err(|e| SfuError::Rtc(format!("certificate: {e}")))?;
            let certificate = RTCCertificate::generate(
                provider.crypto(),
                SignatureScheme::EcdsaP256Sha256,
                params,
            )
            .map_err(rtc_err)?;
            wire = Some(Wire::new(
                provider,
                certificate.dtls_certificate.clone(),
                ufrag.clone(),
                pwd.clone(),
                local_addr,
            ));
            configuration = configuration.with_certificates(vec![certificate]);
        }
        let settings = SettingEngineBuilder::new()
            .with_ice_credentials(ufrag.clone(), pwd)
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
            .with_srtp_replay_protection_window(SRTP_REPLAY_WINDOW)
            .build();
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(configuration.build())
            .with_media_engine(me)
            .with_setting_engine(settings)
            .with_interceptor_registry(registry)
            .build(now)
            .map_err(rtc_err)?;
        let timer = match &wire {
            Some(w) => w.poll_timeout(),
            None => pc.poll_timeout(),
        };
        Ok(Self {
            pc,
            ufrag,
            liveness: Liveness::Connecting { since: now },
            last_rx: now,
            candidate_added: false,
            timer,
            wire,
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
