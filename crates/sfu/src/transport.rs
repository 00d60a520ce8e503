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
//! The transport (`Wire`, crate-private: the endpoint drives it) takes
//! `handle_datagram`, `handle_timeout`, `start` (once both descriptions are
//! known), `protect_rtp` and `protect_rtcp`, and gives `poll_transmit` and
//! `poll_event`. Its parts (DTLS-SRTP, ICE-lite, SRTP, the SDP readers)
//! live in `huddle_wire`, where the load tool takes them to run the
//! client's end of a subscriber connection.

use crate::congestion::{PacketClass, PacketKind};
use crate::payload_head::PayloadHead;
use crate::transport_cc::{Feedback, Paced, Reports, SentRtp, TransportCc};
use bytes::{Bytes, BytesMut};
use huddle_wire::classify::{
    classify, is_binding_indication, is_rtcp, is_stun_success_response, DatagramKind,
};
use huddle_wire::codecs::TRANSPORT_CC_URI;
use huddle_wire::dtls::Dtls;
pub(crate) use huddle_wire::dtls::SrtpKeys;
use huddle_wire::feedback::{keyframe_ssrcs, nacked, reception_reports, LossReport};
use huddle_wire::srtp::OneByteExtension;
use huddle_wire::{ice_lite, sdp, WireError};
use rtc::crypto::RTCCryptoProvider;
use rtc::rtcp::transport_feedbacks::cc_feedback_report::CcFeedbackReport;
use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
use rtc::stun::message::TransactionId;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// What a connection did with a datagram it took (see the `consent`
/// module).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Took {
    /// Harmless and of no use (a STUN binding indication, a keepalive
    /// anyone could send): not life.
    Nothing,
    /// Authenticated (DTLS, SRTP or SRTCP that decrypts): the client is
    /// alive.
    Life,
    /// ICE (a valid check, an answer to one of the SFU's): the client is
    /// alive and still consents.
    Consent,
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
    /// The client's reception reports: what it lost of each SSRC since its
    /// last report about it.
    LossReports(Vec<LossReport>),
}

/// Checks whose answers are still taken: a late answer to one of the last
/// few checks is life too.
pub(crate) const SENT_CHECKS: usize = 8;

/// Remember the transaction id of a check just sent (the last
/// [`SENT_CHECKS`]).
fn remember_check(sent: &mut VecDeque<TransactionId>, id: TransactionId) {
    if sent.len() >= SENT_CHECKS {
        sent.pop_front();
    }
    sent.push_back(id);
}

/// A consent check (RFC 7675) from the SFU (`local_ufrag`) to the client
/// at `peer` whose ICE credentials are `remote_ice` (ufrag, password), its
/// transaction id remembered in `sent`; `None` before both are known.
pub(crate) fn consent_check_to(
    peer: Option<SocketAddr>,
    remote_ice: Option<&(String, String)>,
    local_ufrag: &str,
    crypto: &dyn rtc::crypto::RTCCrypto,
    sent: &mut VecDeque<TransactionId>,
) -> Option<(SocketAddr, BytesMut)> {
    let (Some(peer), Some((ufrag, pwd))) = (peer, remote_ice) else {
        return None;
    };
    match ice_lite::triggered_check(ufrag, pwd, local_ufrag, crypto) {
        Ok((check, id)) => {
            remember_check(sent, id);
            Some((peer, BytesMut::from(&check[..])))
        }
        Err(e) => {
            tracing::debug!("consent check: {e}");
            None
        }
    }
}

/// Whether `datagram` is an authenticated answer (keyed with `pwd`, the
/// client's password) to one of the checks in `sent` (`Ok(true)`; that
/// check is then forgotten) or to another check (`Ok(false)`).
pub(crate) fn take_answer(
    sent: &mut VecDeque<TransactionId>,
    datagram: &[u8],
    pwd: &str,
    crypto: &dyn rtc::crypto::RTCCrypto,
) -> Result<bool, WireError> {
    let id = ice_lite::verify_success(datagram, pwd, crypto)?;
    Ok(match sent.iter().position(|s| *s == id) {
        Some(at) => {
            sent.remove(at);
            true
        }
        None => false,
    })
}

/// DTLS datagrams kept while the SFU does not yet know its role (the answer
/// is still on its way through signaling); the client would resend them,
/// but only after a second.
const EARLY_DTLS: usize = 8;

/// What [`Wire::send_rtp`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Protected into the caller's buffer: send it there.
    Now(SocketAddr),
    /// Waiting in the pacer; `first` when nothing waited before it (the
    /// connection's timer must be looked at again).
    Queued {
        /// The queue was empty.
        first: bool,
    },
}

/// One subscriber connection's transport. See the module docs.
pub(crate) struct Wire {
    ufrag: String,
    pwd: String,
    /// The credentials before an ICE restart ([`Wire::restart_ice`]), still
    /// answered until the client's answer shows it has the new ones.
    previous: Option<(String, String)>,
    /// The ufrag a finished restart retired, for the demultiplexer to forget.
    retired: Option<String>,
    crypto: Arc<dyn RTCCryptoProvider>,
    certificate: rtc::dtls::crypto::Certificate,
    local_addr: SocketAddr,
    dtls: Option<Dtls>,
    early_dtls: Vec<(SocketAddr, Vec<u8>)>,
    /// Where media goes: the path the client nominated (USE-CANDIDATE),
    /// or before any nomination the first one that passed a check.
    peer: Option<SocketAddr>,
    nominated: bool,
    /// The client's ICE credentials, from its SDP.
    remote_ice: Option<(String, String)>,
    /// The one check the SFU sends back was sent ([`ice_lite::triggered_check`]).
    checked_back: bool,
    /// Transaction ids of the last checks the SFU sent (the check back,
    /// consent checks): only answers to these are taken.
    sent_checks: VecDeque<TransactionId>,
    srtp: Option<SrtpKeys>,
    /// Transport-wide sequence numbers and what the client's feedback says
    /// of them, once the client accepted the extension.
    cc: Option<TransportCc>,
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
            previous: None,
            retired: None,
            crypto,
            certificate,
            local_addr,
            dtls: None,
            early_dtls: Vec::new(),
            peer: None,
            nominated: false,
            remote_ice: None,
            checked_back: false,
            sent_checks: VecDeque::new(),
            srtp: None,
            cc: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Whether a remote description (answer or offer) carries what this
    /// transport needs (a SHA-256 fingerprint), checked before it is applied.
    pub fn check_remote(remote_sdp: &str) -> Result<(), WireError> {
        sdp::dtls_params(remote_sdp).map(|_| ())
    }

    /// Both descriptions are known (local and remote SDP): set up DTLS in
    /// the role they give the SFU. Later negotiations change only whether
    /// (and with which id) packets carry a transport-wide sequence number.
    pub fn start(
        &mut self,
        now: Instant,
        local_sdp: &str,
        remote_sdp: &str,
    ) -> Result<(), WireError> {
        self.negotiated_cc(now, local_sdp, remote_sdp);
        if self.dtls.is_some() {
            self.renegotiated_ice(remote_sdp);
            return Ok(());
        }
        let local = sdp::dtls_params(local_sdp)?;
        let remote = sdp::dtls_params(remote_sdp)?;
        let client = sdp::is_dtls_client(local.setup, remote.setup)?;
        self.remote_ice = sdp::ice_credentials(remote_sdp);
        tracing::debug!(local = ?local.setup, remote = ?remote.setup, client, "DTLS roles");
        self.dtls = Some(Dtls::new(
            self.crypto.clone(),
            self.certificate.clone(),
            remote.fingerprints,
            client,
            self.local_addr,
        )?);
        self.connect_dtls(now)?;
        self.check_back();
        for (src, datagram) in std::mem::take(&mut self.early_dtls) {
            if let Err(e) = self.on_dtls(now, src, &datagram) {
                tracing::debug!(%src, "early DTLS datagram: {e}");
            }
        }
        Ok(())
    }

    /// The SFU's ICE credentials (ufrag, password) now: what its next
    /// description carries.
    pub fn local_ice(&self) -> (&str, &str) {
        (&self.ufrag, &self.pwd)
    }

    /// Restart ICE on the SFU's side (RFC 8445 §9): the next description
    /// carries `ufrag`/`pwd`. Checks keyed with the old credentials are
    /// still answered until the client's next description arrives (it may
    /// not have applied the restart yet); returns the ufrag that then
    /// stops being answered, if the previous restart had not finished.
    pub fn restart_ice(&mut self, ufrag: String, pwd: String) -> Option<String> {
        let old = (
            std::mem::replace(&mut self.ufrag, ufrag),
            std::mem::replace(&mut self.pwd, pwd),
        );
        // A restart not yet answered: the client still knows the oldest
        // credentials, not the ones never delivered.
        match self.previous.as_ref() {
            Some(_) => Some(old.0),
            None => {
                self.previous = Some(old);
                None
            }
        }
    }

    /// The ufrag a finished restart retired (see [`Wire::restart_ice`]),
    /// once: the client's description with the new credentials was
    /// applied, or it checked with them.
    pub fn retired_ufrag(&mut self) -> Option<String> {
        self.retired.take()
    }

    /// The client restarted ICE with `remote` credentials (ufrag,
    /// password) outside an offer/answer exchange (a WHEP `PATCH`, RFC 9725
    /// §4.3.2), after [`Wire::restart_ice`] on this side: consent checks
    /// use them. The SFU's previous credentials are answered until the
    /// client checks with the new ones (it learns them from the reply).
    pub fn remote_restarted(&mut self, remote: (String, String)) {
        self.remote_ice = Some(remote);
        self.sent_checks.clear();
        self.checked_back = false;
    }

    /// A later description from the client: if its ICE credentials changed
    /// (its side restarted), consent checks use the new ones; either way it
    /// now knows the SFU's current credentials, so the previous ones retire.
    fn renegotiated_ice(&mut self, remote_sdp: &str) {
        let creds = sdp::ice_credentials(remote_sdp);
        if creds.is_some() && creds != self.remote_ice {
            tracing::debug!("the client's ICE credentials changed (ICE restart)");
            self.remote_ice = creds;
            self.sent_checks.clear();
            self.checked_back = false;
        }
        if let Some((ufrag, _)) = self.previous.take() {
            self.retired = Some(ufrag);
        }
    }

    /// How the client reports arrivals: the transport-wide sequence number
    /// extension, if both descriptions carry it (the answer echoes the
    /// offer's id, RFC 8285 §6), and RFC 8888 feedback, if the client's
    /// description has it (the SFU offers it in every subscriber offer and
    /// accepts it in every answer to an offer that has it).
    fn negotiated_cc(&mut self, now: Instant, local_sdp: &str, remote_sdp: &str) {
        let id = sdp::extmap_id(remote_sdp, TRANSPORT_CC_URI)
            .filter(|_| sdp::extmap_id(local_sdp, TRANSPORT_CC_URI).is_some());
        let reports = Reports {
            twcc: id,
            ccfb: sdp::has_ccfb(remote_sdp),
        };
        match self.cc.as_mut() {
            _ if reports.none() => self.cc = None,
            Some(cc) => cc.set_reports(reports),
            None => self.cc = Some(TransportCc::new(now, reports)),
        }
    }

    /// The connection's congestion control, when the client reports
    /// arrivals (transport-wide congestion control was negotiated).
    pub fn congestion(&self) -> Option<&TransportCc> {
        self.cc.as_ref()
    }

    /// [`Wire::congestion`], to change.
    pub fn congestion_mut(&mut self) -> Option<&mut TransportCc> {
        self.cc.as_mut()
    }

    /// A datagram from the client at `src`: what the transport took it
    /// for ([`Took`]), or why it refused it.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        src: SocketAddr,
        datagram: &[u8],
    ) -> Result<Took, WireError> {
        match classify(datagram) {
            DatagramKind::Stun if is_binding_indication(datagram) => Ok(Took::Nothing),
            DatagramKind::Stun => self.on_stun(now, src, datagram).map(|()| Took::Consent),
            DatagramKind::Dtls => self.on_dtls(now, src, datagram).map(|()| Took::Life),
            DatagramKind::Rtp => self.on_rtcp(now, datagram).map(|()| Took::Life),
            DatagramKind::Unknown => Err(WireError::NotReady("datagram of no known kind")),
        }
    }

    /// Protect one RTP packet for the client, appending the datagram to
    /// `out` (what `out` held stays; on error nothing is appended), with
    /// the next transport-wide sequence number when that was negotiated
    /// (the packet leaves `now`, outside the pacer: padding). Returns
    /// where the datagram goes.
    pub fn protect_rtp(
        &mut self,
        now: Instant,
        kind: PacketKind,
        header: &rtc::rtp::Header,
        payload: &[u8],
        out: &mut BytesMut,
    ) -> Result<SocketAddr, WireError> {
        self.protect_stamped(now, kind, header, payload, None, out, false)
    }

    #[allow(clippy::too_many_arguments)]
    fn protect_stamped(
        &mut self,
        now: Instant,
        kind: PacketKind,
        header: &rtc::rtp::Header,
        payload: &[u8],
        head: Option<&PayloadHead>,
        out: &mut BytesMut,
        paced: bool,
    ) -> Result<SocketAddr, WireError> {
        let (head, rest) = match head {
            Some(h) => h.split(payload),
            None => (&[][..], payload),
        };
        let (Some(keys), Some(peer)) = (self.srtp.as_mut(), self.peer) else {
            return Err(WireError::NotReady("no SRTP keys yet"));
        };
        match self.cc.as_mut() {
            Some(cc) => {
                let start = out.len();
                let seq = cc.next_sequence_number().to_be_bytes();
                let ext = cc
                    .extension_id()
                    .map(|id| OneByteExtension { id, data: &seq });
                keys.rtp.protect_split(header, ext, head, rest, out)?;
                let size = out.len() - start;
                let sent = SentRtp {
                    size,
                    kind,
                    ssrc: header.ssrc,
                    seq: header.sequence_number,
                };
                if paced {
                    cc.on_paced_sent(now, sent);
                } else {
                    cc.on_sent(now, sent);
                }
            }
            None => keys.rtp.protect_split(header, None, head, rest, out)?,
        }
        Ok(peer)
    }

    /// Send one RTP packet of `class` to the client through the pacer
    /// (when congestion control runs): protected into `out` at once
    /// ([`Sent::Now`]) when the pacer lets it leave, else queued
    /// ([`Sent::Queued`]) to leave from [`Wire::handle_timeout`] into
    /// [`Wire::poll_transmit`].
    /// `head`, when given, replaces the payload's first bytes (see
    /// [`PayloadHead`]).
    #[allow(clippy::too_many_arguments)]
    pub fn send_rtp(
        &mut self,
        now: Instant,
        class: PacketClass,
        kind: PacketKind,
        header: rtc::rtp::Header,
        payload: &Bytes,
        head: Option<PayloadHead>,
        out: &mut BytesMut,
    ) -> Result<Sent, WireError> {
        if self.srtp.is_none() || self.peer.is_none() {
            return Err(WireError::NotReady("no SRTP keys yet"));
        }
        let held = self.cc.as_mut().is_some_and(|cc| !cc.admits(now, class));
        match self.cc.as_mut() {
            Some(cc) if held => {
                // Payload, header with its extensions and the SRTP tag,
                // roughly (the exact size is charged when it leaves).
                let size = payload.len() + 48;
                let first = cc.queue(
                    now,
                    class,
                    size,
                    Paced {
                        kind,
                        header,
                        payload: payload.clone(),
                        head,
                    },
                );
                Ok(Sent::Queued { first })
            }
            _ => self
                .protect_stamped(now, kind, &header, payload, head.as_ref(), out, false)
                .map(Sent::Now),
        }
    }

    /// Let out what the pacer allows at `now`, into the transmit queue.
    fn release_paced(&mut self, now: Instant) {
        loop {
            let Some(p) = self.cc.as_mut().and_then(|cc| cc.pop_paced(now)) else {
                return;
            };
            let mut out = BytesMut::with_capacity(p.payload.len() + 128);
            let head = p.head.as_ref();
            match self.protect_stamped(now, p.kind, &p.header, &p.payload, head, &mut out, true) {
                Ok(dst) => self.transmits.push_back((dst, out)),
                Err(e) => {
                    tracing::debug!("paced packet not sent: {e}");
                    return;
                }
            }
        }
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
    #[must_use = "a datagram polled and dropped is never sent"]
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, BytesMut)> {
        if let Some(t) = self.transmits.pop_front() {
            return Some(t);
        }
        self.dtls.as_mut().and_then(Dtls::poll_transmit)
    }

    /// Next event for the endpoint.
    #[must_use = "an event polled and dropped is lost"]
    pub fn poll_event(&mut self) -> Option<WireEvent> {
        self.events.pop_front()
    }

    /// When [`Wire::handle_timeout`] has work (DTLS retransmissions
    /// during the handshake; then congestion control's timers).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.srtp.is_some() {
            return self.cc.as_ref().and_then(TransportCc::poll_timeout);
        }
        self.dtls.as_ref().and_then(Dtls::poll_timeout)
    }

    /// Run the DTLS retransmission timer, or congestion control's.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.srtp.is_some() {
            if let Some(cc) = self.cc.as_mut() {
                cc.handle_timeout(now);
            }
            self.release_paced(now);
            return;
        }
        if let Some(dtls) = self.dtls.as_mut() {
            if let Err(e) = dtls.handle_timeout(now) {
                self.events.push_back(WireEvent::Failed(e.to_string()));
            }
        }
    }

    /// Close the connection: an RTCP BYE for `ssrcs` (the SFU's outgoing
    /// streams on it, RFC 3550 §6.6) when media flows, then DTLS
    /// close_notify, queued for sending.
    pub fn close(&mut self, now: Instant, ssrcs: &[u32]) {
        if self.srtp.is_some() {
            for bye in goodbyes(ssrcs) {
                match self.protect_rtcp(&bye) {
                    Ok(t) => self.transmits.push_back(t),
                    Err(e) => tracing::debug!("BYE: {e}"),
                }
            }
        }
        if let Some(dtls) = self.dtls.as_mut() {
            dtls.close(now);
        }
        self.srtp = None;
    }

    /// A consent check for the client (RFC 7675, the `consent` module), on
    /// the path media takes; `None` before there is one or before the
    /// client's credentials are known.
    pub fn consent_check(&mut self) -> Option<(SocketAddr, BytesMut)> {
        // Until a restart is answered the client knows the old ufrag.
        let local_ufrag = self.previous.as_ref().map_or(&self.ufrag, |(u, _)| u);
        consent_check_to(
            self.peer,
            self.remote_ice.as_ref(),
            local_ufrag,
            self.crypto.crypto(),
            &mut self.sent_checks,
        )
    }

    fn on_stun(&mut self, now: Instant, src: SocketAddr, datagram: &[u8]) -> Result<(), WireError> {
        if is_stun_success_response(datagram) {
            // The client's answer to one of the SFU's checks.
            let Some((_, pwd)) = self.remote_ice.as_ref() else {
                return Err(WireError::Stun(
                    "answer before the client's credentials".into(),
                ));
            };
            return match take_answer(&mut self.sent_checks, datagram, pwd, self.crypto.crypto())? {
                true => Ok(()),
                false => Err(WireError::Stun(
                    "answer to no check the SFU sent".to_owned(),
                )),
            };
        }
        let crypto = self.crypto.crypto();
        let answered = match ice_lite::answer(datagram, src, &self.ufrag, &self.pwd, crypto) {
            Err(e) => match self.previous.as_ref() {
                Some((ufrag, pwd)) => ice_lite::answer(datagram, src, ufrag, pwd, crypto),
                None => Err(e),
            },
            Ok(answered) => {
                // A check with the new credentials: the client has them,
                // the previous ones retire.
                if let Some((ufrag, _)) = self.previous.take() {
                    self.retired = Some(ufrag);
                }
                Ok(answered)
            }
        }?;
        self.transmits
            .push_back((src, BytesMut::from(&answered.response[..])));
        let first_nomination = answered.nominated && !self.nominated;
        if answered.nominated {
            self.peer = Some(src);
            self.nominated = true;
        } else if self.peer.is_none() {
            self.peer = Some(src);
        }
        self.connect_dtls(now)?;
        self.check_back();
        if first_nomination {
            // A ClientHello sent on the first check can reach the client
            // before its DTLS listens (it starts once it has our answer) and
            // be dropped; by its nomination it listens. Unanswered so far:
            // send it again now rather than after a retransmission interval.
            if let Some(dtls) = self.dtls.as_mut() {
                dtls.resend_unanswered_first_flight(src);
            }
        }
        Ok(())
    }

    /// Once there is a path and the client's credentials are known, check
    /// it back once (see [`ice_lite`]'s module docs), unless it nominated.
    fn check_back(&mut self) {
        let (Some(peer), Some((ufrag, pwd))) = (self.peer, self.remote_ice.as_ref()) else {
            return;
        };
        if self.checked_back || self.nominated {
            return;
        }
        self.checked_back = true;
        match ice_lite::triggered_check(ufrag, pwd, &self.ufrag, self.crypto.crypto()) {
            Ok((check, id)) => {
                remember_check(&mut self.sent_checks, id);
                self.transmits.push_back((peer, BytesMut::from(&check[..])));
            }
            Err(e) => tracing::debug!("check back: {e}"),
        }
    }

    /// As DTLS client, start the handshake once there is a path to the
    /// client (its first check that passed).
    fn connect_dtls(&mut self, now: Instant) -> Result<(), WireError> {
        match (self.dtls.as_mut(), self.peer) {
            (Some(dtls), Some(peer)) if dtls.is_client() && dtls.remote().is_none() => {
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
    fn on_rtcp(&mut self, now: Instant, datagram: &[u8]) -> Result<(), WireError> {
        if !is_rtcp(datagram) {
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
        let reports: Vec<LossReport> = reception_reports(&packets).map(LossReport::from).collect();
        if !reports.is_empty() {
            self.events.push_back(WireEvent::LossReports(reports));
        }
        if let Some(cc) = self.cc.as_mut() {
            for packet in &packets {
                if let Some(twcc) = packet.as_any().downcast_ref::<TransportLayerCc>() {
                    cc.on_feedback(now, Feedback::Twcc(twcc));
                } else if let Some(ccfb) = packet.as_any().downcast_ref::<CcFeedbackReport>() {
                    cc.on_feedback(now, Feedback::Ccfb(ccfb));
                }
            }
        }
        Ok(())
    }
}

/// Compound RTCP packets saying goodbye for `ssrcs` (RFC 3550 §6.6): each
/// a sender report of the first source with no sender information (a
/// compound packet starts with a report, §6.1; a sender's with an SR, and
/// receivers such as rtc's route the packet by its SSRC) and a BYE of at
/// most 31 sources (its count field).
pub(crate) fn goodbyes(ssrcs: &[u32]) -> Vec<Vec<u8>> {
    use rtc::rtcp::goodbye::Goodbye;
    use rtc::rtcp::sender_report::SenderReport;
    ssrcs
        .chunks(31)
        .filter_map(|chunk| {
            let packets: Vec<Box<dyn rtc::rtcp::Packet>> = vec![
                Box::new(SenderReport {
                    ssrc: chunk[0],
                    ..Default::default()
                }),
                Box::new(Goodbye {
                    sources: chunk.to_vec(),
                    reason: bytes::Bytes::new(),
                }),
            ];
            rtc::rtcp::packet::marshal(&packets)
                .map(|b| b.to_vec())
                .inspect_err(|e| tracing::debug!("BYE: {e}"))
                .ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::crypto::SignatureScheme;
    use rtc::peer_connection::certificate::{CertificateParams, RTCCertificate};

    const SFU_PWD: &str = "sfu-password-0123456789";

    fn wire() -> Wire {
        let provider = rtc::crypto::default_provider().expect("crypto provider");
        let params = CertificateParams::new(vec!["test".to_owned()]).expect("params");
        let cert =
            RTCCertificate::generate(provider.crypto(), SignatureScheme::EcdsaP256Sha256, params)
                .expect("certificate");
        let local: SocketAddr = "127.0.0.1:7882".parse().expect("addr");
        Wire::new(
            provider,
            cert.dtls_certificate,
            "sfu".into(),
            SFU_PWD.into(),
            local,
        )
    }

    const OFFER: &str = "a=ice-ufrag:sfu\r\na=ice-pwd:sfu-password-0123456789\r\n\
        a=fingerprint:sha-256 AA:BB\r\na=setup:actpass\r\n";
    const ANSWER: &str = "a=ice-ufrag:cli\r\na=ice-pwd:client-password-0123456789\r\n\
        a=fingerprint:sha-256 CC:DD\r\na=setup:active\r\n";

    #[test]
    fn the_first_check_is_answered_and_checked_back_once() {
        let mut w = wire();
        let now = Instant::now();
        w.start(now, OFFER, ANSWER).expect("start");
        let client: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
        let provider = rtc::crypto::default_provider().expect("crypto provider");
        for _ in 0..3 {
            let (check, _) =
                ice_lite::controlling_check("sfu", SFU_PWD, "cli", 1, false, provider.crypto())
                    .expect("check");
            w.handle_datagram(now, client, &check).expect("valid check");
        }
        let out: Vec<_> = std::iter::from_fn(|| w.poll_transmit()).collect();
        let responses = out
            .iter()
            .filter(|(_, d)| is_stun_success_response(d))
            .count();
        assert_eq!(responses, 3, "every check answered");
        let back: Vec<_> = out
            .iter()
            .filter(|(_, d)| !is_stun_success_response(d))
            .collect();
        assert_eq!(back.len(), 1, "one check back");
        assert_eq!(back[0].0, client);
        // It is a valid check for the client's ufrag and password.
        let answered = ice_lite::answer(
            &back[0].1,
            back[0].0,
            "cli",
            "client-password-0123456789",
            provider.crypto(),
        )
        .expect("the client would answer it");
        assert!(!answered.nominated);
        // The client's answer to it is taken quietly.
        w.handle_datagram(now, client, &answered.response)
            .expect("a success response is no error");
    }

    /// A check from the client at `from` keyed for the SFU's `ufrag`/`pwd`,
    /// nominating: whether the wire answers it, and where media goes after.
    fn nominate(w: &mut Wire, from: SocketAddr, ufrag: &str, pwd: &str) -> bool {
        let provider = rtc::crypto::default_provider().expect("crypto provider");
        let (check, _) = ice_lite::controlling_check(ufrag, pwd, "cli", 1, true, provider.crypto())
            .expect("check");
        let answered = w.handle_datagram(Instant::now(), from, &check).is_ok();
        while w.poll_transmit().is_some() {}
        answered
    }

    #[test]
    fn an_ice_restart_answers_the_old_credentials_until_the_client_answers() {
        let mut w = wire();
        let now = Instant::now();
        w.start(now, OFFER, ANSWER).expect("start");
        let home: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
        let away: SocketAddr = "127.0.0.1:40100".parse().expect("addr");
        assert!(nominate(&mut w, home, "sfu", SFU_PWD));
        assert_eq!(w.peer, Some(home));

        assert_eq!(
            w.restart_ice("sfu2".into(), "sfu2-password-0123456789".into()),
            None
        );
        assert_eq!(w.local_ice(), ("sfu2", "sfu2-password-0123456789"));
        // The client has not seen the new offer: its checks still pass.
        assert!(nominate(&mut w, home, "sfu", SFU_PWD));
        // It answers with new credentials of its own and checks from where
        // it is now: the new credentials work, media follows it, and the
        // old ones are retired.
        let answer = ANSWER
            .replace("ufrag:cli", "ufrag:cli2")
            .replace("client-", "client2-");
        w.start(now, OFFER, &answer).expect("renegotiated");
        assert_eq!(
            w.remote_ice,
            Some(("cli2".to_owned(), "client2-password-0123456789".to_owned()))
        );
        assert_eq!(w.retired_ufrag().as_deref(), Some("sfu"));
        assert_eq!(w.retired_ufrag(), None, "taken once");
        assert!(nominate(&mut w, away, "sfu2", "sfu2-password-0123456789"));
        assert_eq!(w.peer, Some(away));
        assert!(
            !nominate(&mut w, home, "sfu", SFU_PWD),
            "old credentials refused"
        );
        assert_eq!(w.peer, Some(away));
    }

    #[test]
    fn a_second_restart_before_the_answer_retires_the_undelivered_credentials() {
        let mut w = wire();
        w.start(Instant::now(), OFFER, ANSWER).expect("start");
        assert_eq!(
            w.restart_ice("a".into(), "a-password-0123456789012".into()),
            None
        );
        assert_eq!(
            w.restart_ice("b".into(), "b-password-0123456789012".into())
                .as_deref(),
            Some("a")
        );
        let home: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
        assert!(
            nominate(&mut w, home, "sfu", SFU_PWD),
            "the client's known ones"
        );
        assert!(nominate(&mut w, home, "b", "b-password-0123456789012"));
        assert!(!nominate(&mut w, home, "a", "a-password-0123456789012"));
    }

    #[test]
    fn goodbyes_name_every_ssrc_31_a_packet_after_a_sender_report() {
        use rtc::rtcp::goodbye::Goodbye;
        use rtc::rtcp::sender_report::SenderReport;
        let ssrcs: Vec<u32> = (1..=40).collect();
        let packets = goodbyes(&ssrcs);
        assert_eq!(packets.len(), 2);
        let mut named: Vec<u32> = Vec::new();
        for datagram in packets {
            let mut buf = bytes::Bytes::from(datagram);
            let parsed = rtc::rtcp::packet::unmarshal(&mut buf).expect("parses");
            assert_eq!(parsed.len(), 2, "SR + BYE");
            let sr = parsed[0]
                .as_any()
                .downcast_ref::<SenderReport>()
                .expect("led by a sender report");
            let bye = parsed[1]
                .as_any()
                .downcast_ref::<Goodbye>()
                .expect("then a BYE");
            assert_eq!(sr.ssrc, bye.sources[0]);
            named.extend(&bye.sources);
        }
        assert_eq!(named, ssrcs);
        assert!(goodbyes(&[]).is_empty());
    }

    #[test]
    fn media_before_the_handshake_is_refused() {
        let mut w = wire();
        let header = rtc::rtp::Header::default();
        let mut out = BytesMut::new();
        assert!(w
            .protect_rtp(
                Instant::now(),
                PacketKind::Media,
                &header,
                &[0; 10],
                &mut out
            )
            .is_err());
        assert!(out.is_empty());
        assert!(w.protect_rtcp(&[0x80, 200, 0, 1]).is_err());
        let now = Instant::now();
        let src: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
        // SRTCP before keys, RTP on a send-only connection, nothing at all.
        assert!(w
            .handle_datagram(now, src, &[0x80, 201, 0, 1, 0, 0, 0, 0])
            .is_err());
        assert!(w
            .handle_datagram(now, src, &[0x80, 96, 0, 1, 0, 0, 0, 0])
            .is_err());
        assert!(w.handle_datagram(now, src, &[]).is_err());
        assert!(w.poll_transmit().is_none());
    }
}
