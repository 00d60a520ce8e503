//! The SFU's own transport for subscriber connections: ICE-lite, DTLS-SRTP
//! and RTCP feedback, sans-IO, with forwarded RTP protected straight into
//! the datagram that leaves.
//!
//! `rtc` 0.21 still negotiates these connections (SDP offers and answers,
//! m-lines, payload types, SSRCs), but it never sees their datagrams: its
//! write pipeline cost several times the SRTP it carried per forwarded copy
//! (docs/benchmarks.md), and it keeps the SRTP keys to itself. The
//! certificate and ICE credentials are the SFU's own and go into both, so
//! the SDP `rtc` writes describes this transport.
//!
//! Inputs: [`Wire::handle_datagram`], [`Wire::handle_timeout`],
//! [`Wire::start`] (once both descriptions are known),
//! [`Wire::protect_rtp`] and [`Wire::protect_rtcp`]. Outputs: [`Wire::poll_transmit`] and
//! [`Wire::poll_event`].

mod dtls;
mod ice_lite;
mod sdp;

use crate::demux::{classify, DatagramKind};
use crate::feedback::{keyframe_ssrcs, nacked};
use bytes::BytesMut;
use dtls::Dtls;
pub(crate) use dtls::SrtpKeys;
use rtc::crypto::RTCCryptoProvider;
use rtc::shared::marshal::{Marshal, MarshalSize};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Why a datagram or a step of the transport failed. None of these is fatal
/// to the connection on its own; [`WireEvent::Failed`] is.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// A STUN message that is not a valid check for this connection.
    #[error("STUN: {0}")]
    Stun(String),
    /// DTLS record or handshake trouble.
    #[error("DTLS: {0}")]
    Dtls(String),
    /// SRTP/SRTCP protection or unprotection failed.
    #[error("SRTP: {0}")]
    Srtp(String),
    /// RTCP that does not parse.
    #[error("RTCP: {0}")]
    Rtcp(String),
    /// The session description lacks what DTLS needs.
    #[error("SDP: {0}")]
    Sdp(String),
    /// Media before the handshake finished, or a datagram of no known kind.
    #[error("{0}")]
    NotReady(&'static str),
}

/// What the transport tells the endpoint.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WireEvent {
    /// DTLS is done: media can flow. Carries the SRTP profile, for logs.
    Connected(String),
    /// The client closed the connection (DTLS close_notify).
    Closed,
    /// The handshake gave up (retransmissions exhausted).
    Failed(String),
    /// The client asked for a keyframe (PLI or FIR) of this SSRC.
    KeyframeRequest(u32),
    /// The client reported these (SSRC, sequence number) lost.
    Nack(Vec<(u32, u16)>),
}

/// DTLS datagrams kept while the SFU does not yet know its role (the answer
/// is still on its way through signaling); the client would resend them,
/// but only after a second.
const EARLY_DTLS: usize = 8;

/// One subscriber connection's transport. See the module docs.
pub(crate) struct Wire {
    ufrag: String,
    pwd: String,
    crypto: Arc<dyn RTCCryptoProvider>,
    certificate: rtc::dtls::crypto::Certificate,
    local_addr: SocketAddr,
    dtls: Option<Dtls>,
    early_dtls: Vec<(SocketAddr, Vec<u8>)>,
    /// Where media goes: the path the client nominated (USE-CANDIDATE),
    /// or before any nomination the first one that passed a check.
    peer: Option<SocketAddr>,
    nominated: bool,
    srtp: Option<SrtpKeys>,
    /// An RTP packet is marshalled here before it is protected.
    scratch: Vec<u8>,
    transmits: VecDeque<(SocketAddr, BytesMut)>,
    events: VecDeque<WireEvent>,
}

impl Wire {
    /// A transport answering checks for `ufrag`/`pwd` and proving itself
    /// with `certificate` (the one whose fingerprint the SDP carries).
    pub fn new(
        crypto: Arc<dyn RTCCryptoProvider>,
        certificate: rtc::dtls::crypto::Certificate,
        ufrag: String,
        pwd: String,
        local_addr: SocketAddr,
    ) -> Self {
        Self {
            ufrag,
            pwd,
            crypto,
            certificate,
            local_addr,
            dtls: None,
            early_dtls: Vec::new(),
            peer: None,
            nominated: false,
            srtp: None,
            scratch: Vec::with_capacity(1500),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Both descriptions are known (local and remote SDP): set up DTLS in
    /// the role they give the SFU. Later negotiations change nothing here.
    pub fn start(
        &mut self,
        now: Instant,
        local_sdp: &str,
        remote_sdp: &str,
    ) -> Result<(), WireError> {
        if self.dtls.is_some() {
            return Ok(());
        }
        let local = sdp::dtls_params(local_sdp)?;
        let remote = sdp::dtls_params(remote_sdp)?;
        let client = sdp::sfu_is_dtls_client(local.setup, remote.setup)?;
        tracing::debug!(local = ?local.setup, remote = ?remote.setup, client, "DTLS roles");
        self.dtls = Some(Dtls::new(
            self.crypto.clone(),
            self.certificate.clone(),
            remote.fingerprints,
            client,
            self.local_addr,
        )?);
        self.connect_dtls(now)?;
        for (src, datagram) in std::mem::take(&mut self.early_dtls) {
            self.on_dtls(now, src, &datagram)?;
        }
        Ok(())
    }

    /// A datagram from the client at `src`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        src: SocketAddr,
        datagram: &[u8],
    ) -> Result<(), WireError> {
        match classify(datagram) {
            DatagramKind::Stun => self.on_stun(now, src, datagram),
            DatagramKind::Dtls => self.on_dtls(now, src, datagram),
            DatagramKind::Rtp => self.on_rtcp(datagram),
            DatagramKind::Unknown => Err(WireError::NotReady("datagram of no known kind")),
        }
    }

    /// Protect one RTP packet for the client: the datagram and where it goes.
    pub fn protect_rtp(
        &mut self,
        header: &rtc::rtp::Header,
        payload: &[u8],
    ) -> Result<(SocketAddr, BytesMut), WireError> {
        let (Some(keys), Some(peer)) = (self.srtp.as_mut(), self.peer) else {
            return Err(WireError::NotReady("no SRTP keys yet"));
        };
        let header_len = header.marshal_size();
        self.scratch.clear();
        self.scratch.resize(header_len, 0);
        header
            .marshal_to(&mut self.scratch)
            .map_err(|e| WireError::Srtp(e.to_string()))?;
        self.scratch.extend_from_slice(payload);
        let protected = keys
            .local
            .encrypt_rtp_with_header(&self.scratch, header)
            .map_err(|e| WireError::Srtp(e.to_string()))?;
        Ok((peer, protected))
    }

    /// Protect a (compound) RTCP packet for the client.
    pub fn protect_rtcp(&mut self, rtcp: &[u8]) -> Result<(SocketAddr, BytesMut), WireError> {
        let (Some(keys), Some(peer)) = (self.srtp.as_mut(), self.peer) else {
            return Err(WireError::NotReady("no SRTP keys yet"));
        };
        let protected = keys
            .local
            .encrypt_rtcp(rtcp)
            .map_err(|e| WireError::Srtp(e.to_string()))?;
        Ok((peer, protected))
    }

    /// Next datagram to send and its destination.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, BytesMut)> {
        if let Some(t) = self.transmits.pop_front() {
            return Some(t);
        }
        self.dtls.as_mut().and_then(Dtls::poll_transmit)
    }

    /// Next event for the endpoint.
    pub fn poll_event(&mut self) -> Option<WireEvent> {
        self.events.pop_front()
    }

    /// When [`Wire::handle_timeout`] has work (DTLS retransmissions).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.srtp.is_some() {
            return None;
        }
        self.dtls.as_ref().and_then(Dtls::poll_timeout)
    }

    /// Run the DTLS retransmission timer.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.srtp.is_some() {
            return;
        }
        if let Some(dtls) = self.dtls.as_mut() {
            if let Err(e) = dtls.handle_timeout(now) {
                self.events.push_back(WireEvent::Failed(e.to_string()));
            }
        }
    }

    /// Close the connection: DTLS close_notify, queued for sending.
    pub fn close(&mut self, now: Instant) {
        if let Some(dtls) = self.dtls.as_mut() {
            dtls.close(now);
        }
        self.srtp = None;
    }

    fn on_stun(&mut self, now: Instant, src: SocketAddr, datagram: &[u8]) -> Result<(), WireError> {
        let answered =
            ice_lite::answer(datagram, src, &self.ufrag, &self.pwd, self.crypto.crypto())?;
        self.transmits
            .push_back((src, BytesMut::from(&answered.response[..])));
        if answered.nominated {
            self.peer = Some(src);
            self.nominated = true;
        } else if self.peer.is_none() {
            self.peer = Some(src);
        }
        self.connect_dtls(now)
    }

    /// As DTLS client, start the handshake once the client nominated a
    /// path: it has our answer to its check by then, so its ICE is up and
    /// its DTLS listens. A ClientHello sent on the first check tends to
    /// arrive before that, be dropped, and cost a retransmission interval.
    fn connect_dtls(&mut self, now: Instant) -> Result<(), WireError> {
        match (self.dtls.as_mut(), self.peer) {
            (Some(dtls), Some(peer))
                if self.nominated && dtls.is_client() && dtls.remote().is_none() =>
            {
                dtls.connect(now, peer)
            }
            _ => Ok(()),
        }
    }

    fn on_dtls(&mut self, now: Instant, src: SocketAddr, datagram: &[u8]) -> Result<(), WireError> {
        let Some(dtls) = self.dtls.as_mut() else {
            tracing::debug!(%src, "DTLS before the answer: kept");
            if self.early_dtls.len() < EARLY_DTLS {
                self.early_dtls.push((src, datagram.to_vec()));
            }
            return Ok(());
        };
        let progress = dtls.read(now, src, datagram)?;
        if let Some(keys) = progress.keys {
            let profile = format!("{:?}", keys.profile);
            self.srtp = Some(keys);
            self.peer = self.peer.or(Some(src));
            self.events.push_back(WireEvent::Connected(profile));
        }
        if progress.closed {
            self.srtp = None;
            self.events.push_back(WireEvent::Closed);
        }
        Ok(())
    }

    /// SRTCP from the client: keyframe requests and NACKs become events;
    /// receiver reports and the rest are read and dropped. Anything that is
    /// not RTCP (RFC 5761 §4: payload types 192-223) is refused: the client
    /// sends no media on this connection.
    fn on_rtcp(&mut self, datagram: &[u8]) -> Result<(), WireError> {
        if !matches!(datagram.get(1), Some(192..=223)) {
            return Err(WireError::NotReady("RTP on a send-only connection"));
        }
        let Some(keys) = self.srtp.as_mut() else {
            return Err(WireError::NotReady("SRTCP before the handshake"));
        };
        let mut plain = keys
            .remote
            .decrypt_rtcp(datagram)
            .map_err(|e| WireError::Srtp(e.to_string()))?;
        let packets =
            rtc::rtcp::packet::unmarshal(&mut plain).map_err(|e| WireError::Rtcp(e.to_string()))?;
        for ssrc in keyframe_ssrcs(&packets) {
            self.events.push_back(WireEvent::KeyframeRequest(ssrc));
        }
        let lost = nacked(&packets);
        if !lost.is_empty() {
            self.events.push_back(WireEvent::Nack(lost));
        }
        Ok(())
    }
}
