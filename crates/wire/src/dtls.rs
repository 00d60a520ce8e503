//! The DTLS-SRTP handshake of a subscriber connection (RFC 5763, RFC 5764)
//! on `rtc`'s sans-IO DTLS, and the SRTP contexts keyed from it.
//!
//! The peer's certificate must match a fingerprint from its SDP; the SRTP
//! profiles offered are AES-GCM first (RFC 7714), then AES-CM/HMAC-SHA1.
//!
//! Lost handshake flights. RFC 6347 §4.2.4: a side that receives its peer's
//! previous flight again resends its own. `rtc-dtls` 0.21 does not while the
//! handshake runs: a repeated flight stops its retransmission timer and it
//! waits for good. Both sides of a subscriber connection may be
//! `rtc-dtls` (webrtc-rs clients, the load tool), so:
//!
//! - when a datagram leaves the handshake unfinished with no timer, the SFU
//!   resends its last flight itself ([`Dtls::read`]), after `STALL_WAIT`:
//!   a flight of several datagrams does that too until its last one is in;
//! - the SFU's own timer (`FLIGHT_INTERVAL`) is longer than the 1 s of
//!   other implementations, so when a peer's flight is lost the peer's timer
//!   resends it before the SFU's repeat would stall an `rtc-dtls` peer; and
//!   not much longer, since when the SFU's own flight is lost (an early
//!   ClientHello, say) only its timer resends it.

use crate::srtp::SrtpSender;
use crate::WireError;
use bytes::BytesMut;
use rtc::crypto::{HashAlgorithm, RTCCryptoProvider};
use rtc::dtls::config::{
    ClientAuthType, ConfigBuilder, ExtendedMasterSecretType, HandshakeConfig,
    VerifyPeerCertificateFn,
};
use rtc::dtls::endpoint::{Endpoint, EndpointEvent};
use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc::shared::TransportProtocol;
use rtc::srtp::context::Context;
use rtc::srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use rtc::srtp::protection_profile::ProtectionProfile;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::debug;

/// The server name a DTLS client side sends (rtc-dtls's own default).
const SERVER_NAME: &str = "localhost";

/// Replay windows for what the subscriber sends (RTCP only).
const REPLAY_WINDOW: usize = 64;

/// The SFU's handshake retransmission interval (see the module docs).
const FLIGHT_INTERVAL: Duration = Duration::from_millis(1500);

/// How often the SFU resends a flight because the peer repeated its own.
const MAX_REPEATS: u32 = 7;

/// How long a handshake may sit with no timer before the SFU resends its
/// last flight: the rest of a peer's multi-datagram flight comes well
/// within this on any path a call could use.
const STALL_WAIT: Duration = Duration::from_millis(250);

/// The SRTP profiles offered in the DTLS `use_srtp` extension, best first.
const PROFILES: [SrtpProtectionProfile; 4] = [
    SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
    SrtpProtectionProfile::Srtp_Aead_Aes_256_Gcm,
    SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
    SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_32,
];

/// SRTP keys of a connection, both directions (`rtp`, `local` and `remote`
/// follow the DTLS role this side had, so they are right on either side).
pub struct SrtpKeys {
    /// Protects the RTP this side sends (the SFU's forwarded media), in place.
    pub rtp: SrtpSender,
    /// Protects the RTCP this side sends.
    pub local: Context,
    /// Unprotects what the peer sends (the client's RTCP).
    pub remote: Context,
    /// The negotiated profile, for logs.
    pub profile: ProtectionProfile,
}

/// What a datagram did to the handshake.
#[derive(Default)]
pub struct Progress {
    /// The handshake completed with this datagram: the SRTP keys.
    pub keys: Option<SrtpKeys>,
    /// The peer sent close_notify.
    pub closed: bool,
}

/// One DTLS association with the client. Nothing in it is specific to the
/// SFU's end: the load tool's fast subscriber runs the other end of a
/// subscriber connection with it (its peer, "the client" here, is the SFU).
pub struct Dtls {
    endpoint: Endpoint,
    config: Arc<HandshakeConfig>,
    client: bool,
    /// The association's key in the DTLS endpoint: the first address DTLS
    /// used. The association does not move with the client's address; only
    /// where its datagrams go does ([`Dtls::reply_to`]).
    remote: Option<SocketAddr>,
    /// Where the association's datagrams go: the source of the client's
    /// latest DTLS datagram (every address that reaches the transport passed
    /// an ICE check), at first `remote`.
    reply_to: Option<SocketAddr>,
    crypto: Arc<dyn RTCCryptoProvider>,
    /// Datagrams out of the DTLS endpoint, to send.
    out: VecDeque<(SocketAddr, BytesMut)>,
    /// The last flight the SFU sent, for resending it.
    last_flight: Vec<BytesMut>,
    repeats: u32,
    /// When to resend the last flight of a stalled handshake.
    stall_resend: Option<Instant>,
    completed: bool,
    /// A DTLS datagram from the peer arrived.
    heard: bool,
}

impl Dtls {
    /// A handshake in the given role with `certificate`, accepting only a
    /// peer certificate whose SHA-256 is one of `fingerprints` (hex, any case,
    /// colons).
    pub fn new(
        crypto: Arc<dyn RTCCryptoProvider>,
        certificate: rtc::dtls::crypto::Certificate,
        fingerprints: Vec<String>,
        client: bool,
        local_addr: SocketAddr,
    ) -> Result<Self, WireError> {
        let config = Arc::new(
            ConfigBuilder::default()
                .with_crypto_provider(crypto.clone())
                .with_certificates(vec![certificate])
                .with_srtp_protection_profiles(PROFILES.to_vec())
                .with_client_auth(ClientAuthType::RequireAnyClientCert)
                // The CA chain means nothing here; the fingerprint check is
                // what authenticates the peer.
                .with_insecure_skip_verify(true)
                .with_verify_peer_certificate(Some(fingerprint_check(crypto.clone(), fingerprints)))
                .with_extended_master_secret(ExtendedMasterSecretType::Require)
                .with_flight_interval(FLIGHT_INTERVAL)
                // What a DTLS client puts in its ClientHello's server_name;
                // the certificate is checked by fingerprint, not by name.
                // Without it rtc-dtls warns "conn.remote_addr is empty" on
                // every handshake the SFU starts.
                .with_server_name(SERVER_NAME.to_owned())
                .build(client, None)
                .map_err(|e| WireError::Dtls(e.to_string()))?,
        );
        let server_config = (!client).then(|| config.clone());
        Ok(Self {
            endpoint: Endpoint::new(local_addr, TransportProtocol::UDP, server_config),
            config,
            client,
            remote: None,
            reply_to: None,
            crypto,
            out: VecDeque::new(),
            last_flight: Vec::new(),
            repeats: 0,
            stall_resend: None,
            completed: false,
            heard: false,
        })
    }

    /// Whether the SFU starts the handshake.
    pub fn is_client(&self) -> bool {
        self.client
    }

    /// The association's key (its first address), once it has one.
    pub fn remote(&self) -> Option<SocketAddr> {
        self.remote
    }

    /// As DTLS client, send the first flight to `remote` (once).
    pub fn connect(&mut self, now: Instant, remote: SocketAddr) -> Result<(), WireError> {
        if !self.client || self.remote.is_some() {
            return Ok(());
        }
        self.endpoint
            .connect(now, remote, self.config.clone(), None)
            .map_err(|e| WireError::Dtls(e.to_string()))?;
        self.remote = Some(remote);
        self.reply_to = Some(remote);
        self.collect(true);
        Ok(())
    }

    /// A DTLS datagram from `src` (any of the client's checked addresses:
    /// a browser may move the association to another candidate pair).
    pub fn read(
        &mut self,
        now: Instant,
        src: SocketAddr,
        datagram: &[u8],
    ) -> Result<Progress, WireError> {
        if self.client && self.remote.is_none() {
            return Err(WireError::Dtls("DTLS before the handshake".into()));
        }
        let key = *self.remote.get_or_insert(src);
        self.reply_to = Some(src);
        let result = self
            .endpoint
            .read(now, key, None, BytesMut::from(datagram))
            .map_err(|e| WireError::Dtls(e.to_string()));
        self.heard = true;
        let sent = self.collect(true);
        debug!(%src, len = datagram.len(), sent, ok = result.is_ok(), "DTLS in");
        let events = result?;
        let mut progress = Progress::default();
        for event in events {
            match event {
                EndpointEvent::HandshakeComplete => {
                    self.completed = true;
                    progress.keys = Some(self.keys(key)?);
                }
                EndpointEvent::PeerClosed => progress.closed = true,
                _ => {} // application data: the SFU carries no data channel here
            }
        }
        let stalled = !self.completed && sent == 0 && self.endpoint.poll_timeout(&key).is_none();
        self.stall_resend = match self.stall_resend {
            _ if !stalled => None,
            Some(at) => Some(at),
            None => Some(now + STALL_WAIT),
        };
        Ok(progress)
    }

    /// As DTLS client with no answer from the peer yet, send the first
    /// flight again, to `to` (the path the client nominated; see `Wire`'s
    /// nomination handling).
    pub fn resend_unanswered_first_flight(&mut self, to: SocketAddr) {
        if !self.client || self.remote.is_none() || self.heard {
            return;
        }
        self.reply_to = Some(to);
        self.resend_last_flight(to, "on nomination");
    }

    /// Send the last flight again to `dst`, at most [`MAX_REPEATS`] times
    /// in all; false once that is spent.
    fn resend_last_flight(&mut self, dst: SocketAddr, why: &'static str) -> bool {
        if self.repeats >= MAX_REPEATS {
            return false;
        }
        self.repeats += 1;
        debug!(%dst, datagrams = self.last_flight.len(), why, "DTLS flight resent");
        for d in &self.last_flight {
            self.out.push_back((dst, d.clone()));
        }
        true
    }

    /// Move what the DTLS endpoint has to send into `out`; a new flight
    /// (`fresh`: in reply to a datagram, or the first) becomes the one to
    /// resend. Returns how many datagrams there were.
    fn collect(&mut self, fresh: bool) -> usize {
        let mut n = 0;
        while let Some(t) = self.endpoint.poll_transmit() {
            if fresh && n == 0 {
                self.last_flight.clear();
            }
            if fresh {
                self.last_flight.push(t.message.clone());
            }
            let dst = self.reply_to.unwrap_or(t.transport.peer_addr);
            self.out.push_back((dst, t.message));
            n += 1;
        }
        n
    }

    /// The next datagram the handshake has to send, and where.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, BytesMut)> {
        self.collect(false);
        self.out.pop_front()
    }

    /// When the handshake's retransmission timer fires.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let library = self.remote.and_then(|r| self.endpoint.poll_timeout(&r));
        match (library, self.stall_resend) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Run the retransmission timer; an error means the handshake gave up.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), WireError> {
        if self.stall_resend.is_some_and(|at| at <= now) {
            self.stall_resend = None;
            // The peer repeated a flight, or sent part of one and no more:
            // ours was lost (see the module docs).
            if let Some(dst) = self.reply_to {
                if self.resend_last_flight(dst, "handshake stalled") {
                    self.stall_resend = Some(now + FLIGHT_INTERVAL);
                }
            }
        }
        match self.remote {
            Some(r) => {
                let result = self
                    .endpoint
                    .handle_timeout(r, now)
                    .map_err(|e| WireError::Dtls(e.to_string()));
                let sent = self.collect(false);
                debug!(remote = %r, sent, "DTLS timer");
                result
            }
            None => Ok(()),
        }
    }

    /// Say goodbye (close_notify), queued for [`Dtls::poll_transmit`].
    pub fn close(&mut self, now: Instant) {
        if let Some(r) = self.remote {
            self.endpoint.stop(now, r);
            self.collect(false);
        }
    }

    /// Export the SRTP keying material (RFC 5764 §4.2) and build both contexts.
    fn keys(&self, remote: SocketAddr) -> Result<SrtpKeys, WireError> {
        let srtp = |e: rtc::shared::error::Error| WireError::Srtp(e.to_string());
        let state = self
            .endpoint
            .get_connection_state(remote)
            .ok_or_else(|| WireError::Dtls("handshake state missing".into()))?;
        let profile = match state.srtp_protection_profile() {
            SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm => ProtectionProfile::AeadAes128Gcm,
            SrtpProtectionProfile::Srtp_Aead_Aes_256_Gcm => ProtectionProfile::AeadAes256Gcm,
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80 => {
                ProtectionProfile::Aes128CmHmacSha1_80
            }
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_32 => {
                ProtectionProfile::Aes128CmHmacSha1_32
            }
            other => {
                return Err(WireError::Srtp(format!(
                    "no SRTP profile agreed: {other:?}"
                )))
            }
        };
        let mut config = rtc::srtp::config::Config {
            profile,
            ..Default::default()
        };
        let material = state
            .export_keying_material(
                rtc::srtp::config::LABEL_EXTRACTOR_DTLS_SRTP,
                &[],
                config.keying_material_len(),
            )
            .map_err(|e| WireError::Dtls(e.to_string()))?;
        config
            .set_session_keys_from_keying_material(material.as_ref(), state.is_client())
            .map_err(srtp)?;
        let crypto = self.crypto.crypto();
        let rtp = SrtpSender::new(
            crypto,
            profile,
            &config.keys.local_master_key,
            &config.keys.local_master_salt,
        )?;
        let local = Context::new(
            &config.keys.local_master_key,
            &config.keys.local_master_salt,
            profile,
            None,
            None,
            crypto,
        )
        .map_err(srtp)?;
        let remote = Context::new(
            &config.keys.remote_master_key,
            &config.keys.remote_master_salt,
            profile,
            Some(srtp_replay_protection(REPLAY_WINDOW)),
            Some(srtcp_replay_protection(REPLAY_WINDOW)),
            crypto,
        )
        .map_err(srtp)?;
        Ok(SrtpKeys {
            rtp,
            local,
            remote,
            profile,
        })
    }
}

/// Accept a peer certificate only if its SHA-256 is one of `fingerprints`.
fn fingerprint_check(
    crypto: Arc<dyn RTCCryptoProvider>,
    fingerprints: Vec<String>,
) -> VerifyPeerCertificateFn {
    let wanted: Vec<String> = fingerprints.iter().map(|f| f.to_lowercase()).collect();
    Arc::new(move |certs, _chains| {
        let first = certs
            .first()
            .ok_or(rtc::shared::error::Error::ErrNonCertificate)?;
        let hash = crypto
            .crypto()
            .hash(HashAlgorithm::Sha256, first)
            .map_err(|e| rtc::shared::error::Error::Crypto(e.to_string()))?;
        let got: Vec<String> = hash.iter().map(|b| format!("{b:02x}")).collect();
        if wanted.contains(&got.join(":")) {
            Ok(())
        } else {
            Err(rtc::shared::error::Error::ErrNoMatchingCertificateFingerprint)
        }
    })
}
