//! The fast subscriber transport, sans-IO: the client end of the SFU's own
//! subscriber transport (`huddle_wire`), with the same DTLS-SRTP
//! code, so the load tool can receive forwarded media without `rtc`'s
//! per-datagram pipeline.
//!
//! - ICE: the tool is the controlling agent (the SFU is ICE-lite). It sends
//!   a nominating check ([`controlling_check`], USE-CANDIDATE) to the SFU's
//!   candidate from the offer every [`CHECK_INTERVAL`] until an
//!   authenticated answer arrives, then a consent check every
//!   [`CONSENT_INTERVAL`] (the SFU takes a subscriber connection for down
//!   after 3 s of silence, and the tool sends nothing else). It answers the
//!   SFU's own checks ([`answer`]). No answer for [`CONSENT_TIMEOUT`]
//!   fails the transport (RFC 7675's 30 s).
//! - DTLS: in the role the SDP gives (RFC 8842: the SFU offers `actpass`
//!   and the answer decides; `rtc` 0.21 answers the SFU `passive`, so the
//!   tool is the DTLS server and the SFU starts the handshake once a check
//!   reached it), on `huddle_sfu`'s [`Dtls`], which checks the SFU's
//!   certificate against the offer's fingerprint and derives the SRTP keys
//!   for this side's role (either role works: both are tested).
//! - Media: every RTP packet is SRTP-unprotected (authenticated) and its
//!   payload handed out; a packet that fails is counted
//!   ([`FastTransport::receive_errors`]) and not delivered. SRTCP (the
//!   SFU's sender reports) is unprotected the same way and dropped.
//!
//! Not done, unlike `rtc`'s receive pipeline: no NACKs (so no
//! retransmissions: loss is measured before retransmission), no receiver
//! reports, no keyframe requests, no TWCC feedback.
//!
//! Inputs: [`FastTransport::start`] (once, with the first offer and
//! answer), [`FastTransport::handle_datagram`],
//! [`FastTransport::handle_timeout`]. Outputs:
//! [`FastTransport::poll_transmit`], [`FastTransport::poll_timeout`] and the
//! RTP packets `handle_datagram` returns.

use bytes::BytesMut;
use huddle_wire::classify::{classify, DatagramKind};
use huddle_wire::dtls::{Dtls, SrtpKeys};
use huddle_wire::ice_lite::{answer, controlling_check, verify_success};
use huddle_wire::sdp::{dtls_params, ice_credentials, is_dtls_client};
use huddle_wire::WireError;
use rtc::crypto::RTCCryptoProvider;
use rtc::stun::message::TransactionId;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Time between checks until the SFU answers one.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(200);
/// Time between consent checks once it has.
pub const CONSENT_INTERVAL: Duration = Duration::from_secs(1);
/// No authenticated answer for this long fails the transport.
pub const CONSENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Checks whose answers are still accepted (the latest ones).
const OUTSTANDING_CHECKS: usize = 8;

/// Why a datagram or a step of the transport failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FastError {
    /// The offer or answer lacks what the transport needs.
    #[error("SDP: {0}")]
    Sdp(String),
    /// STUN or DTLS trouble (from `huddle_sfu`'s transport code).
    #[error(transparent)]
    Wire(#[from] WireError),
    /// SRTP or SRTCP unprotection failed (authentication, replay, length).
    #[error("SRTP: {0}")]
    Srtp(String),
    /// A decrypted RTP packet that does not parse.
    #[error("RTP: malformed packet")]
    Rtp,
    /// A datagram the transport cannot take (yet).
    #[error("{0}")]
    Ignored(&'static str),
}

/// Where the transport is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FastState {
    /// Not started, or ICE/DTLS under way.
    Connecting,
    /// DTLS done: SRTP keys in hand.
    Connected,
    /// The SFU closed the connection (DTLS close_notify).
    Closed,
    /// ICE or DTLS gave up.
    Failed(String),
}

/// The SFU's side, from its offer.
#[derive(Debug, Clone)]
struct Remote {
    ufrag: String,
    pwd: String,
    addr: SocketAddr,
}

/// One subscriber connection's transport. See the module docs.
pub struct FastTransport {
    crypto: Arc<dyn RTCCryptoProvider>,
    certificate: rtc::dtls::crypto::Certificate,
    ufrag: String,
    pwd: String,
    local_addr: SocketAddr,
    tie_breaker: u64,
    remote: Option<Remote>,
    dtls: Option<Dtls>,
    keys: Option<SrtpKeys>,
    /// Transaction ids of the latest checks sent.
    checks: VecDeque<TransactionId>,
    /// When the SFU first answered a check (the nomination).
    answered: Option<Instant>,
    /// When it last did (or when the transport started).
    last_answer: Option<Instant>,
    next_check: Option<Instant>,
    state: FastState,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    receive_errors: u64,
}

impl FastTransport {
    /// A transport whose ICE credentials are `ufrag`/`pwd` and whose DTLS
    /// certificate is `certificate`: the same the answer `rtc` writes
    /// carries. `local_addr` is the socket's address.
    pub fn new(
        crypto: Arc<dyn RTCCryptoProvider>,
        certificate: rtc::dtls::crypto::Certificate,
        ufrag: String,
        pwd: String,
        local_addr: SocketAddr,
    ) -> Self {
        Self {
            crypto,
            certificate,
            ufrag,
            pwd,
            local_addr,
            tie_breaker: rand::random(),
            remote: None,
            dtls: None,
            keys: None,
            checks: VecDeque::new(),
            answered: None,
            last_answer: None,
            next_check: None,
            state: FastState::Connecting,
            transmits: VecDeque::new(),
            receive_errors: 0,
        }
    }

    /// Whether [`FastTransport::start`] ran.
    pub fn started(&self) -> bool {
        self.remote.is_some()
    }

    /// The state.
    pub fn state(&self) -> &FastState {
        &self.state
    }

    /// RTP and RTCP datagrams whose SRTP unprotection failed, or that did
    /// not parse once decrypted: counted, never delivered.
    pub fn receive_errors(&self) -> u64 {
        self.receive_errors
    }

    /// Start with the SFU's offer and the answer sent to it: the SFU's ICE
    /// credentials, candidate and fingerprints from the offer, the DTLS
    /// role from both `a=setup`s. Sends the first check at once. Later
    /// offers (renegotiation) change nothing: call it once.
    pub fn start(&mut self, now: Instant, offer: &str, answer: &str) -> Result<(), FastError> {
        if self.started() {
            return Ok(());
        }
        let (ufrag, pwd) = ice_credentials(offer)
            .ok_or_else(|| FastError::Sdp("no ICE credentials in the offer".into()))?;
        let addr = sfu_candidate(offer, self.local_addr.ip())
            .ok_or_else(|| FastError::Sdp("no usable UDP candidate in the offer".into()))?;
        let theirs = dtls_params(offer)?;
        let ours = dtls_params(answer)?;
        let client = is_dtls_client(ours.setup, theirs.setup)?;
        tracing::debug!(sfu = %addr, client, "fast subscriber transport starts");
        self.dtls = Some(Dtls::new(
            self.crypto.clone(),
            self.certificate.clone(),
            theirs.fingerprints,
            client,
            self.local_addr,
        )?);
        self.remote = Some(Remote { ufrag, pwd, addr });
        self.last_answer = Some(now);
        self.send_check(now)?;
        Ok(())
    }

    /// A datagram from `src`. Returns the decrypted RTP packet when it was
    /// one.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        src: SocketAddr,
        datagram: &[u8],
    ) -> Result<Option<Rtp>, FastError> {
        let Some(remote) = self.remote.as_ref() else {
            return Err(FastError::Ignored("datagram before the transport started"));
        };
        if src != remote.addr {
            return Err(FastError::Ignored("datagram from another address"));
        }
        match classify(datagram) {
            DatagramKind::Stun => self.on_stun(now, src, datagram).map(|()| None),
            DatagramKind::Dtls => self.on_dtls(now, src, datagram).map(|()| None),
            DatagramKind::Rtp => self.on_srtp(datagram),
            DatagramKind::Unknown => Err(FastError::Ignored("datagram of no known kind")),
        }
    }

    /// Next datagram to send and its destination.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        if let Some(t) = self.transmits.pop_front() {
            return Some(t);
        }
        let (dst, datagram) = self.dtls.as_mut()?.poll_transmit()?;
        Some((dst, datagram.to_vec()))
    }

    /// When [`FastTransport::handle_timeout`] has work: the next check, the
    /// DTLS retransmission timer while the handshake runs, the consent
    /// deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if matches!(self.state, FastState::Closed | FastState::Failed(_)) {
            return None;
        }
        let dtls = match (&self.dtls, &self.keys) {
            (Some(d), None) => d.poll_timeout(),
            _ => None,
        };
        let consent = self.last_answer.map(|t| t + CONSENT_TIMEOUT);
        [self.next_check, dtls, consent].into_iter().flatten().min()
    }

    /// Time passed: send a check if one is due, run the DTLS timer, fail
    /// on lost consent or a handshake that gave up.
    pub fn handle_timeout(&mut self, now: Instant) {
        if matches!(self.state, FastState::Closed | FastState::Failed(_)) {
            return;
        }
        if self
            .last_answer
            .is_some_and(|t| now.saturating_duration_since(t) >= CONSENT_TIMEOUT)
        {
            self.fail(format!(
                "ICE: no answer from the SFU for {CONSENT_TIMEOUT:?}"
            ));
            return;
        }
        if self.next_check.is_some_and(|t| t <= now) {
            if let Err(e) = self.send_check(now) {
                self.fail(e.to_string());
                return;
            }
        }
        if self.keys.is_none() {
            if let Some(dtls) = self.dtls.as_mut() {
                if dtls.poll_timeout().is_some_and(|t| t <= now) {
                    if let Err(e) = dtls.handle_timeout(now) {
                        self.fail(e.to_string());
                    }
                }
            }
        }
    }

    fn fail(&mut self, why: String) {
        tracing::debug!(local = %self.local_addr, "fast subscriber transport failed: {why}");
        self.state = FastState::Failed(why);
        self.next_check = None;
    }

    /// Send a check (nominating until the SFU answered one) and schedule
    /// the next.
    fn send_check(&mut self, now: Instant) -> Result<(), FastError> {
        let Some(remote) = self.remote.as_ref() else {
            return Ok(());
        };
        let nominate = self.answered.is_none();
        let (check, id) = controlling_check(
            &remote.ufrag,
            &remote.pwd,
            &self.ufrag,
            self.tie_breaker,
            nominate,
            self.crypto.crypto(),
        )?;
        self.transmits.push_back((remote.addr, check));
        if self.checks.len() == OUTSTANDING_CHECKS {
            self.checks.pop_front();
        }
        self.checks.push_back(id);
        self.next_check = Some(
            now + if nominate {
                CHECK_INTERVAL
            } else {
                CONSENT_INTERVAL
            },
        );
        Ok(())
    }

    fn on_stun(&mut self, now: Instant, src: SocketAddr, datagram: &[u8]) -> Result<(), FastError> {
        let Some(remote) = self.remote.as_ref() else {
            return Ok(());
        };
        if huddle_wire::classify::is_stun_success_response(datagram) {
            let id = verify_success(datagram, &remote.pwd, self.crypto.crypto())?;
            if !self.checks.contains(&id) {
                return Err(FastError::Ignored("answer to no recent check"));
            }
            let addr = remote.addr;
            self.last_answer = Some(now);
            if self.answered.is_none() {
                self.answered = Some(now);
                self.next_check = Some(now + CONSENT_INTERVAL);
                if let Some(dtls) = self.dtls.as_mut() {
                    if dtls.is_client() {
                        dtls.connect(now, addr)?;
                    }
                }
            }
            return Ok(());
        }
        // The SFU's own check (it checks back once): answer it.
        let answered = answer(datagram, src, &self.ufrag, &self.pwd, self.crypto.crypto())?;
        self.transmits.push_back((src, answered.response));
        Ok(())
    }

    fn on_dtls(&mut self, now: Instant, src: SocketAddr, datagram: &[u8]) -> Result<(), FastError> {
        let Some(dtls) = self.dtls.as_mut() else {
            return Err(FastError::Ignored("DTLS before the transport started"));
        };
        let progress = dtls.read(now, src, datagram)?;
        if let Some(keys) = progress.keys {
            tracing::debug!(local = %self.local_addr, profile = ?keys.profile, "fast subscriber transport connected");
            self.keys = Some(keys);
            if self.state == FastState::Connecting {
                self.state = FastState::Connected;
            }
        }
        if progress.closed {
            self.keys = None;
            self.state = FastState::Closed;
            self.next_check = None;
        }
        Ok(())
    }

    /// SRTP or SRTCP from the SFU (RFC 5761 §4: payload types 192-223 are
    /// RTCP).
    fn on_srtp(&mut self, datagram: &[u8]) -> Result<Option<Rtp>, FastError> {
        let Some(keys) = self.keys.as_mut() else {
            return Err(FastError::Ignored("SRTP before the handshake"));
        };
        let rtcp = huddle_wire::classify::is_rtcp(datagram);
        let plain = if rtcp {
            keys.remote.decrypt_rtcp(datagram)
        } else {
            keys.remote.decrypt_rtp(datagram)
        };
        let plain = match plain {
            Ok(p) => p,
            Err(e) => {
                self.receive_errors += 1;
                return Err(FastError::Srtp(e.to_string()));
            }
        };
        if rtcp {
            return Ok(None);
        }
        let Some((start, payload)) = rtp_payload(&plain) else {
            self.receive_errors += 1;
            return Err(FastError::Rtp);
        };
        let payload = start..start + payload.len();
        Ok(Some(Rtp {
            packet: plain,
            payload,
        }))
    }
}

/// A decrypted RTP packet.
#[derive(Debug)]
pub struct Rtp {
    packet: BytesMut,
    payload: Range<usize>,
}

impl Rtp {
    /// The payload (no header, no padding).
    pub fn payload(&self) -> &[u8] {
        &self.packet[self.payload.clone()]
    }

    /// Header plus payload, bytes (as `rtc` counts an RTP packet's size).
    pub fn len(&self) -> usize {
        self.payload.end
    }

    /// Whether it has neither header nor payload (never: it parsed).
    pub fn is_empty(&self) -> bool {
        self.payload.end == 0
    }
}

/// The SFU's media address: the first UDP `a=candidate` of the offer in
/// the address family of `family` (the SFU offers its one host candidate).
pub fn sfu_candidate(sdp: &str, family: IpAddr) -> Option<SocketAddr> {
    sdp.lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("a=candidate:"))
        .find_map(|c| {
            // foundation component transport priority address port typ type ...
            let f: Vec<&str> = c.split_whitespace().collect();
            if f.len() < 8 || !f[2].eq_ignore_ascii_case("udp") || f[6] != "typ" {
                return None;
            }
            let ip: IpAddr = f[4].parse().ok()?;
            let port: u16 = f[5].parse().ok()?;
            (ip.is_ipv4() == family.is_ipv4()).then_some(SocketAddr::new(ip, port))
        })
}

/// The payload of a plain RTP packet (RFC 3550 §5.1): after the fixed
/// header, the CSRCs and the header extension, before any padding; `None`
/// when the packet does not parse. Its start is where the payload begins
/// in `packet`: `start + payload.len()` is the header plus the payload.
pub fn rtp_payload(packet: &[u8]) -> Option<(usize, &[u8])> {
    let first = *packet.first()?;
    if packet.len() < 12 || first >> 6 != 2 {
        return None;
    }
    let mut start = 12 + 4 * usize::from(first & 0x0f);
    if first & 0x10 != 0 {
        let ext = packet.get(start..start + 4)?;
        start += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
    }
    let mut end = packet.len();
    if first & 0x20 != 0 {
        let padding = usize::from(*packet.last()?);
        end = end.checked_sub(padding)?;
    }
    Some((start, packet.get(start..end)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::shared::marshal::{Marshal, MarshalSize, Unmarshal};

    #[test]
    fn the_sfu_candidate_is_read_from_the_offer() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
            a=candidate:1 1 tcp 2130706431 127.0.0.1 9 typ host\r\n\
            a=candidate:2 1 udp 2130706431 ::1 7000 typ host\r\n\
            a=candidate:3 1 udp 2130706431 127.0.0.1 7882 typ host\r\n";
        let v4 = IpAddr::from([127, 0, 0, 1]);
        assert_eq!(sfu_candidate(sdp, v4), "127.0.0.1:7882".parse().ok());
        let v6: IpAddr = "::1".parse().expect("v6");
        assert_eq!(sfu_candidate(sdp, v6), "[::1]:7000".parse().ok());
        assert_eq!(sfu_candidate("a=candidate:x\r\n", v4), None);
    }

    fn packet(csrc: Vec<u32>, extension: bool, padding: bool, payload: &[u8]) -> Vec<u8> {
        let mut header = rtc::rtp::Header {
            version: 2,
            padding,
            payload_type: 111,
            sequence_number: 7,
            timestamp: 9,
            ssrc: 0x1234,
            csrc,
            ..Default::default()
        };
        if extension {
            header
                .set_extension(1, bytes::Bytes::from_static(&[1, 2, 3]))
                .expect("extension");
        }
        let p = rtc::rtp::Packet {
            header,
            payload: bytes::Bytes::copy_from_slice(payload),
        };
        p.marshal().expect("marshal").to_vec()
    }

    #[test]
    fn the_payload_is_what_rtc_parses() {
        for (csrc, ext, pad) in [
            (vec![], false, false),
            (vec![1, 2], false, false),
            (vec![], true, false),
            (vec![3], true, true),
            (vec![], false, true),
        ] {
            let raw = packet(csrc, ext, pad, b"hello probe");
            let parsed = rtc::rtp::Packet::unmarshal(&mut &raw[..]).expect("rtc parses it");
            let (start, payload) = rtp_payload(&raw).expect("parses");
            assert_eq!(payload, &parsed.payload[..]);
            assert_eq!(start, parsed.header.marshal_size());
        }
    }

    /// The SFU's end of a subscriber connection, from huddle-sfu's public
    /// pieces: ICE-lite answers and a DTLS server.
    struct Sfu {
        dtls: Dtls,
        keys: Option<SrtpKeys>,
    }

    const SFU: &str = "127.0.0.1:7882";
    const TOOL: &str = "127.0.0.1:40000";
    const SFU_PWD: &str = "sfu-password-0123456789";
    const TOOL_PWD: &str = "tool-password-0123456789";

    fn addr(a: &str) -> SocketAddr {
        a.parse().expect("addr")
    }

    fn certificate(
        provider: &Arc<dyn RTCCryptoProvider>,
    ) -> (rtc::dtls::crypto::Certificate, String) {
        use rtc::peer_connection::certificate::{CertificateParams, RTCCertificate};
        let params = CertificateParams::new(vec!["test".to_owned()]).expect("params");
        let cert = RTCCertificate::generate(
            provider.crypto(),
            rtc::crypto::SignatureScheme::EcdsaP256Sha256,
            params,
        )
        .expect("certificate");
        let fp = cert
            .get_fingerprints(provider.crypto())
            .expect("fingerprint")
            .into_iter()
            .find(|f| f.algorithm == "sha-256")
            .expect("sha-256")
            .value;
        (cert.dtls_certificate, fp)
    }

    /// A started transport and the SFU's end, nothing exchanged yet; the
    /// tool answers `a=setup:<tool_setup>` (`rtc` answers `passive`).
    fn pair(now: Instant, tool_setup: &str) -> (FastTransport, Sfu) {
        let provider = rtc::crypto::default_provider().expect("crypto");
        let (sfu_cert, sfu_fp) = certificate(&provider);
        let (tool_cert, tool_fp) = certificate(&provider);
        let offer = format!(
            "v=0\r\na=ice-ufrag:sfu\r\na=ice-pwd:{SFU_PWD}\r\n\
             a=fingerprint:sha-256 {sfu_fp}\r\na=setup:actpass\r\n\
             a=candidate:1 1 udp 2130706431 127.0.0.1 7882 typ host\r\n"
        );
        let answer = format!(
            "v=0\r\na=ice-ufrag:tool\r\na=ice-pwd:{TOOL_PWD}\r\n\
             a=fingerprint:sha-256 {tool_fp}\r\na=setup:{tool_setup}\r\n"
        );
        let mut t = FastTransport::new(
            provider.clone(),
            tool_cert,
            "tool".into(),
            TOOL_PWD.into(),
            addr(TOOL),
        );
        t.start(now, &offer, &answer).expect("start");
        let sfu_client = tool_setup == "passive";
        let mut dtls =
            Dtls::new(provider, sfu_cert, vec![tool_fp], sfu_client, addr(SFU)).expect("dtls");
        if sfu_client {
            dtls.connect(now, addr(TOOL)).expect("ClientHello");
        }
        (t, Sfu { dtls, keys: None })
    }

    /// Hand every datagram each side has to the other until both are quiet.
    /// Returns the checks the SFU answered (whether each nominated).
    fn exchange(now: Instant, t: &mut FastTransport, sfu: &mut Sfu) -> Vec<bool> {
        let crypto = rtc::crypto::default_provider().expect("crypto");
        let mut nominations = Vec::new();
        for _ in 0..20 {
            let mut quiet = true;
            while let Some((dst, d)) = t.poll_transmit() {
                quiet = false;
                assert_eq!(dst, addr(SFU));
                match classify(&d) {
                    DatagramKind::Stun => {
                        let a = answer(&d, addr(TOOL), "sfu", SFU_PWD, crypto.crypto())
                            .expect("the SFU accepts the check");
                        nominations.push(a.nominated);
                        t.handle_datagram(now, addr(SFU), &a.response)
                            .expect("the answer verifies");
                    }
                    DatagramKind::Dtls => {
                        let p = sfu.dtls.read(now, addr(TOOL), &d).expect("DTLS");
                        if p.keys.is_some() {
                            sfu.keys = p.keys;
                        }
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            while let Some((dst, d)) = sfu.dtls.poll_transmit() {
                quiet = false;
                assert_eq!(dst, addr(TOOL));
                t.handle_datagram(now, addr(SFU), &d)
                    .expect("DTLS from the SFU");
            }
            if quiet {
                break;
            }
        }
        nominations
    }

    fn rtp(seq: u16, payload: &[u8]) -> Vec<u8> {
        let p = rtc::rtp::Packet {
            header: rtc::rtp::Header {
                version: 2,
                payload_type: 111,
                sequence_number: seq,
                ssrc: 42,
                ..Default::default()
            },
            payload: bytes::Bytes::copy_from_slice(payload),
        };
        p.marshal().expect("marshal").to_vec()
    }

    #[test]
    fn connects_and_authenticates_every_packet() {
        // As DTLS server: what rtc's answer makes the tool.
        connects_and_authenticates_every_packet_as("passive");
    }

    #[test]
    fn connects_as_dtls_client_too() {
        connects_and_authenticates_every_packet_as("active");
    }

    fn connects_and_authenticates_every_packet_as(tool_setup: &str) {
        let now = Instant::now();
        let (mut t, mut sfu) = pair(now, tool_setup);
        let nominations = exchange(now, &mut t, &mut sfu);
        assert_eq!(nominations, vec![true], "one nominating check, answered");
        assert_eq!(*t.state(), FastState::Connected);
        let keys = sfu.keys.as_mut().expect("the SFU has keys");

        let sealed = keys
            .local
            .encrypt_rtp(&rtp(1, b"probe payload"))
            .expect("protect");
        let got = t
            .handle_datagram(now, addr(SFU), &sealed)
            .expect("authentic")
            .expect("an RTP packet");
        assert_eq!(got.payload(), b"probe payload");
        assert_eq!(got.len(), 12 + 13);

        let mut forged = keys
            .local
            .encrypt_rtp(&rtp(2, b"probe payload"))
            .expect("protect");
        let at = forged.len() - 1;
        forged[at] ^= 1;
        assert!(matches!(
            t.handle_datagram(now, addr(SFU), &forged),
            Err(FastError::Srtp(_))
        ));
        assert_eq!(t.receive_errors(), 1, "counted, not delivered");
        assert!(
            t.handle_datagram(now, addr(TOOL), &sealed).is_err(),
            "only from the SFU's address"
        );
        assert_eq!(t.receive_errors(), 1);

        // A sender report: unprotected and dropped.
        let sr = rtc::rtcp::sender_report::SenderReport {
            ssrc: 42,
            ..Default::default()
        };
        let plain = rtc::shared::marshal::Marshal::marshal(&sr).expect("marshal");
        let sealed = keys.local.encrypt_rtcp(&plain).expect("protect");
        assert!(t
            .handle_datagram(now, addr(SFU), &sealed)
            .expect("authentic")
            .is_none());
        assert_eq!(t.receive_errors(), 1);
    }

    #[test]
    fn checks_repeat_until_answered_then_keep_consent() {
        let now = Instant::now();
        let (mut t, mut sfu) = pair(now, "active");
        let crypto = rtc::crypto::default_provider().expect("crypto");
        // The first check is lost; the next comes CHECK_INTERVAL later.
        assert!(t.poll_transmit().is_some());
        assert_eq!(t.poll_timeout(), Some(now + CHECK_INTERVAL));
        t.handle_timeout(now + CHECK_INTERVAL);
        let later = now + CHECK_INTERVAL;
        assert_eq!(exchange(later, &mut t, &mut sfu), vec![true]);
        assert_eq!(*t.state(), FastState::Connected);
        // Then one consent check a second, not nominating.
        assert_eq!(t.poll_timeout(), Some(later + CONSENT_INTERVAL));
        t.handle_timeout(later + CONSENT_INTERVAL);
        let (_, check) = t.poll_transmit().expect("consent check");
        let a = answer(&check, addr(TOOL), "sfu", SFU_PWD, crypto.crypto()).expect("valid");
        assert!(!a.nominated);
        // An answer to no check of ours is refused.
        let (stray, _) =
            controlling_check("sfu", SFU_PWD, "tool", 1, false, crypto.crypto()).expect("check");
        let stray = answer(&stray, addr(TOOL), "sfu", SFU_PWD, crypto.crypto()).expect("valid");
        assert!(t
            .handle_datagram(later, addr(SFU), &stray.response)
            .is_err());
        // The SFU's own check is answered, keyed with the tool's password.
        let (theirs, id) =
            controlling_check("tool", TOOL_PWD, "sfu", 2, false, crypto.crypto()).expect("check");
        t.handle_datagram(later, addr(SFU), &theirs)
            .expect("answered");
        let (dst, response) = t.poll_transmit().expect("response");
        assert_eq!(dst, addr(SFU));
        assert_eq!(
            verify_success(&response, TOOL_PWD, crypto.crypto()).expect("verifies"),
            id
        );
    }

    #[test]
    fn no_answer_for_the_consent_timeout_fails() {
        let now = Instant::now();
        let (mut t, _sfu) = pair(now, "active");
        let mut at = now;
        while let Some(next) = t.poll_timeout() {
            assert!(next >= at, "time moves on");
            at = next;
            t.handle_timeout(at);
            while t.poll_transmit().is_some() {}
            if at > now + 2 * CONSENT_TIMEOUT {
                break;
            }
        }
        assert!(matches!(t.state(), FastState::Failed(_)), "{:?}", t.state());
        assert_eq!(at, now + CONSENT_TIMEOUT);
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn malformed_packets_do_not_parse() {
        let raw = packet(vec![1], true, false, b"x");
        for n in 0..13 {
            assert!(rtp_payload(&raw[..n]).is_none(), "{n} bytes");
        }
        let mut v1 = raw.clone();
        v1[0] = (v1[0] & 0x3f) | 0x40;
        assert!(rtp_payload(&v1).is_none(), "version 1");
        let mut pad = packet(vec![], false, false, b"ab");
        pad[0] |= 0x20;
        *pad.last_mut().expect("byte") = 200;
        assert!(
            rtp_payload(&pad).is_none(),
            "padding longer than the packet"
        );
    }
}
