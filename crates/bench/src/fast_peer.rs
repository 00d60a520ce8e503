//! A fast subscriber connection (`--receiver fast`): the sans-IO
//! [`FastTransport`] on its own nonblocking UDP socket, read in batches
//! ([`RecvBatch`]), and an `rtc` peer connection that only negotiates.
//!
//! The peer connection is built with the certificate and ICE credentials
//! the transport uses, so the answer `rtc` writes describes the transport
//! (as the SFU does for its side, `huddle_wire`). `rtc` never sees a
//! datagram of this connection: its only calls are the SDP ones, and its
//! events are drained and dropped.

use crate::error::{rtc_err, BenchError};
use crate::fast_transport::{FastState, FastTransport};
use crate::peer::{peer_connection, Identity};
use crate::recv_batch::{BatchSocket, RecvBatch};
use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};
use rand::Rng;
use rtc::crypto::SignatureScheme;
use rtc::peer_connection::certificate::{CertificateParams, RTCCertificate};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::RTCPeerConnection;
use rtc::sansio::Protocol;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

/// A random ICE credential of `len` characters (RFC 8839 §5.4 alphabet).
fn ice_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// A fast subscriber connection. See the module docs.
pub struct FastPeer {
    /// The `rtc` core, for SDP only.
    pc: RTCPeerConnection,
    socket: UdpSocket,
    batching: BatchSocket,
    transport: FastTransport,
    /// Datagrams received on the socket.
    pub datagrams_in: u64,
    /// Bytes received on the socket.
    pub bytes_in: u64,
}

impl FastPeer {
    /// Bind a socket on `ip` port 0, generate a certificate and ICE
    /// credentials, and build the transport and the negotiating peer
    /// connection with them.
    pub fn new(now: Instant, ip: IpAddr) -> Result<Self, BenchError> {
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0))?;
        let local = socket.local_addr()?;
        let batching = BatchSocket::new(&socket)?;
        let provider = rtc::crypto::default_provider()
            .map_err(|e| BenchError::Rtc(format!("crypto provider: {e}")))?;
        let params = CertificateParams::new(vec!["huddle-bench".to_owned()]).map_err(rtc_err)?;
        let certificate =
            RTCCertificate::generate(provider.crypto(), SignatureScheme::EcdsaP256Sha256, params)
                .map_err(rtc_err)?;
        let (ufrag, pwd) = (ice_token(16), ice_token(32));
        let transport = FastTransport::new(
            provider,
            certificate.dtls_certificate.clone(),
            ufrag.clone(),
            pwd.clone(),
            local,
        );
        let identity = Identity {
            certificate,
            ufrag,
            pwd,
        };
        let pc = peer_connection(now, local, None, Some(identity))?;
        Ok(Self {
            pc,
            socket,
            batching,
            transport,
            datagrams_in: 0,
            bytes_in: 0,
        })
    }

    /// Register the socket for readability under `token`.
    pub fn register(&mut self, registry: &Registry, token: Token) -> Result<(), BenchError> {
        registry.register(&mut self.socket, token, Interest::READABLE)?;
        Ok(())
    }

    /// Answer an offer of the SFU with `rtc`; the first one also starts the
    /// transport. Returns the answer's SDP.
    pub fn answer(&mut self, now: Instant, offer: String) -> Result<String, BenchError> {
        let desc = RTCSessionDescription::offer(offer.clone()).map_err(rtc_err)?;
        self.pc.set_remote_description(now, desc).map_err(rtc_err)?;
        let answer = self.pc.create_answer(None).map_err(rtc_err)?;
        self.pc
            .set_local_description(now, answer)
            .map_err(rtc_err)?;
        let sdp = self
            .pc
            .local_description()
            .ok_or_else(|| BenchError::Rtc("no local description".into()))?
            .sdp;
        // Events of a connection that never carries a datagram (tracks,
        // signaling state): nothing to act on, only not to pile up.
        while self.pc.poll_event().is_some() {}
        if !self.transport.started() {
            self.transport
                .start(now, &offer, &sdp)
                .map_err(|e| BenchError::Rtc(format!("fast receiver: {e}")))?;
            self.flush();
        }
        Ok(sdp)
    }

    /// Whether DTLS is done.
    pub fn connected(&self) -> bool {
        *self.transport.state() == FastState::Connected
    }

    /// Why it is dead (ICE or DTLS failed, or the SFU closed the
    /// connection), if it is.
    pub fn failure(&self) -> Option<String> {
        match self.transport.state() {
            FastState::Failed(why) => Some(why.clone()),
            FastState::Closed => Some("the SFU closed the connection".into()),
            _ => None,
        }
    }

    /// RTP/RTCP datagrams that failed SRTP unprotection or did not parse.
    pub fn receive_errors(&self) -> u64 {
        self.transport.receive_errors()
    }

    /// Read every datagram waiting on the socket (in batches, into `batch`)
    /// into the transport; each received RTP packet's payload and size go
    /// to `on_media`.
    pub fn receive(
        &mut self,
        batch: &mut RecvBatch,
        on_media: &mut impl FnMut(Instant, &[u8], usize),
    ) {
        let transport = &mut self.transport;
        let (datagrams, bytes) = (&mut self.datagrams_in, &mut self.bytes_in);
        batch.drain(&self.socket, &self.batching, |src, datagram| {
            let now = Instant::now();
            *datagrams += 1;
            *bytes += datagram.len() as u64;
            match transport.handle_datagram(now, src, datagram) {
                Ok(Some(rtp)) => on_media(now, rtp.payload(), rtp.len()),
                Ok(None) => {}
                Err(e) => tracing::debug!(%src, error = %e, "fast receiver: datagram dropped"),
            }
        });
        self.flush();
    }

    /// Run the transport's timer if due.
    pub fn tick(&mut self, now: Instant) {
        if self.transport.poll_timeout().is_some_and(|t| t <= now) {
            self.transport.handle_timeout(now);
        }
        self.flush();
    }

    /// The transport's next deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.transport.poll_timeout()
    }

    /// Send what the transport has to send.
    fn flush(&mut self) {
        while let Some((dst, datagram)) = self.transport.poll_transmit() {
            match self.socket.send_to(&datagram, dst) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {
                    let _ = self.socket.send_to(&datagram, dst);
                }
                // A full send buffer or an ICMP error: lost, like any UDP
                // datagram; checks and DTLS flights are resent.
                Err(e) => tracing::debug!(%dst, error = %e, "fast receiver: send_to"),
            }
        }
    }
}
