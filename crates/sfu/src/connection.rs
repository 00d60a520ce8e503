//! One peer connection of a participant: the sans-IO `rtc` peer connection,
//! the ICE credentials the SFU chose for it (its demux key), its liveness
//! and the SFU's consent checks (the `consent` module).
//! A subscriber connection also has the SFU's own transport ([`Wire`]):
//! `rtc` only negotiates it.

use crate::config::SfuConfig;
use crate::consent::{Consent, Due};
use crate::error::SfuError;
use crate::transport::{consent_check_to, take_answer, Took, Wire};
use bytes::BytesMut;
use huddle_proto::PcRole;
use huddle_wire::classify::{
    classify, is_binding_indication, is_stun_success_response, DatagramKind,
};
use huddle_wire::codecs::TRANSPORT_CC_URI;
use huddle_wire::{ice_lite, WireError};
use rtc::crypto::{RTCCryptoProvider, SignatureScheme};
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
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpHeaderExtensionCapability, RtpCodecKind, TYPE_RTCP_FB_TRANSPORT_CC,
};
use rtc::sansio::Protocol;
use rtc::shared::error::Error as RtcError;
use rtc::stun::message::TransactionId;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
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
///   packets, each at most [`MAX_NACKS_PER_PACKET`] times; audio too, when
///   the client negotiated NACK for it), TWCC feedback, receiver reports.
/// - Subscriber: none. Its datagrams never pass through `rtc` ([`Wire`]);
///   the feedback and the transport-wide sequence number extension
///   registered here only go into the SDP.
fn interceptors(me: &mut MediaEngine, role: PcRole) -> Result<Registry, RtcError> {
    huddle_wire::codecs::register_nack(me);
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
        PcRole::Subscriber => {
            // Offered so that the client reports when each packet arrived
            // (TWCC feedback), which the SFU's estimator reads; the
            // transport stamps the sequence numbers itself.
            for kind in [RtpCodecKind::Audio, RtpCodecKind::Video] {
                me.register_feedback(
                    RTCPFeedback {
                        typ: TYPE_RTCP_FB_TRANSPORT_CC.to_owned(),
                        parameter: String::new(),
                    },
                    kind,
                );
                me.register_header_extension(
                    RTCRtpHeaderExtensionCapability {
                        uri: TRANSPORT_CC_URI.to_owned(),
                    },
                    kind,
                    None,
                )?;
            }
            Registry::new()
        }
    })
}

/// Liveness of a connection as the SFU judges it: from the `rtc` state
/// (connected, failed, closed; a subscriber connection's from its own
/// transport) and from the SFU's consent checks (the `consent` module).
/// rtc 0.21's ICE agent counts only STUN from the client as a sign of life
/// (not media, not RTCP, not answers to checks it did not send), so its own
/// disconnected and failed timers are off: the SFU judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// Created, never connected yet.
    Connecting { since: Instant },
    /// Connected.
    Up,
    /// Was connected; `SfuConfig::consent_misses` consent checks in a row
    /// went unanswered and nothing else came.
    Down { since: Instant },
    /// Failed or closed: remove the participant.
    Dead,
}

/// What the SFU does with a datagram for a publisher connection before
/// `rtc` sees it ([`Connection::screen`]).
pub(crate) enum Screened {
    /// Give it to `rtc`; if `rtc` takes it, it is this.
    Pass(Took),
    /// Taken here (an answer to one of the SFU's consent checks), or
    /// dropped as harmless (a STUN binding indication).
    Taken(Took),
    /// Media or DTLS during an ICE restart: kept for `rtc` until it has a
    /// path again ([`Connection::restarted`]).
    Held,
}

/// Datagrams a publisher connection keeps during an ICE restart (see
/// [`Connection::screen`]): about a second of audio and video at a
/// call's rates, more than the few round trips a restart takes; the
/// oldest go first past it.
const HELD_DURING_RESTART: usize = 64;

/// What a consent timer did to a connection ([`Connection::run_consent`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConsentChange {
    /// Its checks went unanswered: down.
    Down,
    /// No proof of consent for `SfuConfig::consent_timeout`: dead.
    Expired,
}

/// One `rtc` peer connection on the shared port.
pub(crate) struct Connection {
    pub pc: RTCPeerConnection,
    pub ufrag: String,
    /// The SFU's ICE password for this connection.
    pwd: String,
    crypto: Arc<dyn RTCCryptoProvider>,
    pub liveness: Liveness,
    /// When the client was last heard and when it gets its next check.
    consent: Consent,
    /// A publisher connection's client ICE credentials (ufrag, pwd), from
    /// its offer: the SFU's consent checks are keyed with them.
    remote_ice: Option<(String, String)>,
    /// A publisher connection's path to the client: where the last datagram
    /// the connection took came from.
    peer: Option<SocketAddr>,
    /// Transaction ids of a publisher connection's last consent checks.
    sent_checks: VecDeque<TransactionId>,
    /// A publisher connection's ICE restart is under way: `rtc` dropped its
    /// path when the client's offer with new credentials was applied, and
    /// until the client nominates a new one `rtc` drops media. The SFU keeps
    /// it meanwhile ([`Screened::Held`]) so the restart loses nothing.
    restarting: bool,
    /// What arrived while `restarting`, oldest first, with its source.
    held: VecDeque<(SocketAddr, BytesMut)>,
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
        let mut me = huddle_wire::codecs::media_engine().map_err(rtc_err)?;
        // RED after Opus: a publisher that offers it gets it in the answer;
        // a subscriber offer lists it after Opus (rtc adds it to every
        // audio m-line as a redundancy codec), so a client without RED
        // picks Opus.
        huddle_wire::codecs::register_red(&mut me).map_err(rtc_err)?;
        let registry = interceptors(&mut me, role).map_err(rtc_err)?;
        let pwd = ice_token(32);
        let mut configuration = RTCConfigurationBuilder::new();
        let mut wire = None;
        let provider = rtc::crypto::default_provider()
            .map_err(|e| SfuError::Rtc(format!("crypto provider: {e}")))?;
        if role == PcRole::Subscriber {
            // The SDP rtc writes must describe the SFU's own transport: same
            // certificate (fingerprint), same ICE credentials.
            let params = CertificateParams::new(vec!["huddle-sfu".to_owned()])
                .map_err(|e| SfuError::Rtc(format!("certificate: {e}")))?;
            let certificate = RTCCertificate::generate(
                provider.crypto(),
                SignatureScheme::EcdsaP256Sha256,
                params,
            )
            .map_err(rtc_err)?;
            wire = Some(Wire::new(
                provider.clone(),
                certificate.dtls_certificate.clone(),
                ufrag.clone(),
                pwd.clone(),
                local_addr,
            ));
            configuration = configuration.with_certificates(vec![certificate]);
        }
        let settings = SettingEngineBuilder::new()
            .with_ice_credentials(ufrag.clone(), pwd.clone())
            // Zero turns rtc's disconnected and failed timers off: they
            // count only STUN from the client, and the SFU judges liveness
            // itself (`Liveness`, the `consent` module).
            .with_ice_timeouts(
                Some(Duration::ZERO),
                Some(Duration::ZERO),
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
            pwd,
            crypto: provider,
            liveness: Liveness::Connecting { since: now },
            consent: Consent::new(
                now,
                config.consent_interval,
                config.consent_misses,
                config.consent_timeout,
            ),
            remote_ice: None,
            peer: None,
            sent_checks: VecDeque::new(),
            restarting: false,
            held: VecDeque::new(),
            candidate_added: false,
            timer,
            wire,
        })
    }

    /// The connection took a datagram from the client (from `src`, when
    /// known) as `took`: unless it was nothing, the client is alive, and a
    /// connection that went down is up again.
    pub fn took(&mut self, now: Instant, src: Option<SocketAddr>, took: Took) {
        match took {
            Took::Nothing => return,
            Took::Life => self.consent.heard(now),
            Took::Consent => self.consent.proved(now),
        }
        if self.wire.is_none() && src.is_some() {
            self.peer = src;
        }
        if let Liveness::Down { .. } = self.liveness {
            self.liveness = Liveness::Up;
        }
    }

    /// A publisher connection's offer was applied: its client's ICE
    /// credentials (they change with an ICE restart).
    pub fn set_remote_ice(&mut self, offer_sdp: &str) {
        if let Some(creds) = huddle_wire::sdp::ice_credentials(offer_sdp) {
            if self.remote_ice.as_ref() != Some(&creds) {
                self.sent_checks.clear();
                // New credentials after the first: `rtc` restarted ICE.
                self.restarting = self.remote_ice.is_some();
            }
            self.remote_ice = Some(creds);
        }
    }

    /// `rtc` has a path again after an ICE restart (it says connected):
    /// what arrived meanwhile, oldest first, for `rtc` now.
    pub fn restarted(&mut self) -> VecDeque<(SocketAddr, BytesMut)> {
        self.restarting = false;
        std::mem::take(&mut self.held)
    }

    /// When the next consent check is due (while up or down).
    pub fn consent_deadline(&self) -> Option<Instant> {
        matches!(self.liveness, Liveness::Up | Liveness::Down { .. })
            .then(|| self.consent.deadline())
    }

    /// Time passed: when a consent check is due, an up connection whose
    /// last checks went unanswered goes down; one whose consent expired is
    /// dead. Returns what changed, and the check to send.
    pub fn run_consent(
        &mut self,
        now: Instant,
    ) -> (Option<ConsentChange>, Option<(SocketAddr, BytesMut)>) {
        if !matches!(self.liveness, Liveness::Up | Liveness::Down { .. }) {
            return (None, None);
        }
        let jitter: f64 = rand::random();
        match self.consent.poll(now, jitter) {
            None => (None, None),
            Some(Due::Expired) => {
                self.liveness = Liveness::Dead;
                (Some(ConsentChange::Expired), None)
            }
            Some(Due::Check { down }) => {
                let went_down = down && self.liveness == Liveness::Up;
                if went_down {
                    self.liveness = Liveness::Down { since: now };
                }
                let change = went_down.then_some(ConsentChange::Down);
                (change, self.consent_check())
            }
        }
    }

    /// A consent check for the client, where it goes.
    fn consent_check(&mut self) -> Option<(SocketAddr, BytesMut)> {
        if let Some(wire) = self.wire.as_mut() {
            return wire.consent_check();
        }
        consent_check_to(
            self.peer,
            self.remote_ice.as_ref(),
            &self.ufrag,
            self.crypto.crypto(),
            &mut self.sent_checks,
        )
    }

    /// A publisher connection's datagram, before `rtc` sees it: answers to
    /// the SFU's consent checks are taken here (rtc's agent would warn
    /// about a transaction it did not start), and what `rtc` would only
    /// refuse (with a log line of its own per datagram) is refused here:
    /// datagrams of no known kind, STUN that is not a valid check for this
    /// connection.
    pub fn screen(&mut self, src: SocketAddr, datagram: &[u8]) -> Result<Screened, WireError> {
        match classify(datagram) {
            DatagramKind::Dtls | DatagramKind::Rtp if self.restarting => {
                if self.held.len() == HELD_DURING_RESTART {
                    self.held.pop_front();
                }
                self.held.push_back((src, BytesMut::from(datagram)));
                Ok(Screened::Held)
            }
            // rtc does not say whether it took these (its pipeline logs and
            // swallows a failed SRTP check): life is what it hands out
            // (`Endpoint`'s drain).
            DatagramKind::Dtls | DatagramKind::Rtp => Ok(Screened::Pass(Took::Nothing)),
            DatagramKind::Unknown => Err(WireError::NotReady("datagram of no known kind")),
            DatagramKind::Stun if is_stun_success_response(datagram) => {
                let Some((_, pwd)) = self.remote_ice.as_ref() else {
                    return Err(WireError::Stun("answer before the client's offer".into()));
                };
                // Answers to rtc's own (triggered) checks go on to rtc.
                take_answer(&mut self.sent_checks, datagram, pwd, self.crypto.crypto()).map(
                    |ours| match ours {
                        true => Screened::Taken(Took::Consent),
                        false => Screened::Pass(Took::Consent),
                    },
                )
            }
            DatagramKind::Stun if is_binding_indication(datagram) => {
                Ok(Screened::Taken(Took::Nothing))
            }
            DatagramKind::Stun => {
                ice_lite::verify_check(datagram, &self.ufrag, &self.pwd, self.crypto.crypto())
                    .map(|()| Screened::Pass(Took::Consent))
            }
        }
    }

    /// Restart ICE on a subscriber connection's side: new credentials for
    /// the SFU's next offer ([`Connection::with_local_ice`] puts them in),
    /// the old ones answered until the client answers it. Returns the new
    /// ufrag (for the demultiplexer), and a ufrag to forget, if any;
    /// `None` on a publisher connection, whose ICE `rtc` runs with the
    /// credentials it was built with.
    pub fn restart_ice(&mut self) -> Option<(String, Option<String>)> {
        let wire = self.wire.as_mut()?;
        let ufrag = ice_token(16);
        let forget = wire.restart_ice(ufrag.clone(), ice_token(32));
        Some((ufrag, forget))
    }

    /// `sdp`, a description `rtc` wrote for this connection, with the ICE
    /// credentials the SFU answers now: `rtc` writes the ones it was built
    /// with, and a subscriber connection's may have changed since
    /// ([`Connection::restart_ice`]).
    pub fn with_local_ice(&self, sdp: String) -> String {
        let Some((ufrag, pwd)) = self.wire.as_ref().map(Wire::local_ice) else {
            return sdp;
        };
        if ufrag == self.ufrag {
            return sdp;
        }
        huddle_wire::sdp::with_ice_credentials(&sdp, ufrag, pwd, false)
    }

    /// The SFU's ICE credentials (ufrag, password) as its next description
    /// of this connection carries them.
    pub fn local_ice(&self) -> (&str, &str) {
        match self.wire.as_ref() {
            Some(wire) => wire.local_ice(),
            None => (&self.ufrag, &self.pwd),
        }
    }

    /// Add the SFU's host candidates (the shared port) once: UDP, and with
    /// `tcp` a passive TCP one at the same address (ICE-TCP, the `tcp`
    /// module). Datagrams from a TCP path reach `rtc` marked as UDP, so
    /// `rtc` pairs them with the UDP candidate; the driver sends what goes
    /// back on the connection they came from.
    pub fn add_host_candidate(&mut self, addr: SocketAddr, tcp: bool) -> Result<(), SfuError> {
        if self.candidate_added {
            return Ok(());
        }
        let rtc_err = |e: RtcError| SfuError::Rtc(e.to_string());
        let init = huddle_wire::candidate::host_candidate(addr).map_err(rtc_err)?;
        self.pc.add_local_candidate(init).map_err(rtc_err)?;
        if tcp {
            let init = huddle_wire::candidate::tcp_passive_candidate(addr).map_err(rtc_err)?;
            self.pc.add_local_candidate(init).map_err(rtc_err)?;
        }
        self.candidate_added = true;
        Ok(())
    }
}
