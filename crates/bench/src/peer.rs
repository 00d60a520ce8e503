//! One client peer connection: the sans-IO `rtc` core and its own
//! nonblocking UDP socket on 127.0.0.1, driven by the worker's poll loop.

use crate::error::{rtc_err, BenchError};
use bytes::BytesMut;
use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};
use rtc::interceptor::Registry as InterceptorRegistry;
use rtc::peer_connection::certificate::RTCCertificate;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Largest datagram read.
const RECV_BUF: usize = 2048;

/// The certificate and ICE credentials a peer connection uses instead of
/// generating its own (so that its SDP describes another transport).
pub struct Identity {
    /// DTLS certificate (its fingerprint goes into the SDP).
    pub certificate: RTCCertificate,
    /// ICE username fragment.
    pub ufrag: String,
    /// ICE password.
    pub pwd: String,
}

/// A peer connection with the shared codec table, webrtc-rs's default
/// interceptors and `local` as its host candidate; `identity` replaces the
/// certificate and ICE credentials it would generate, and
/// `ice_check_interval` rtc-ice's 200 ms between connectivity checks.
pub fn peer_connection(
    now: Instant,
    local: SocketAddr,
    ice_check_interval: Option<Duration>,
    identity: Option<Identity>,
) -> Result<RTCPeerConnection, BenchError> {
    let mut me = huddle_wire::codecs::media_engine().map_err(rtc_err)?;
    let registry =
        register_default_interceptors(InterceptorRegistry::new(), &mut me).map_err(rtc_err)?;
    let mut settings =
        SettingEngineBuilder::new().with_ice_connection_attempts(ice_check_interval, None);
    let mut configuration = RTCConfigurationBuilder::new();
    if let Some(id) = identity {
        settings = settings.with_ice_credentials(id.ufrag, id.pwd);
        configuration = configuration.with_certificates(vec![id.certificate]);
    }
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_configuration(configuration.build())
        .with_media_engine(me)
        .with_setting_engine(settings.build())
        .with_interceptor_registry(registry)
        .build(now)
        .map_err(rtc_err)?;
    let init = huddle_wire::candidate::host_candidate(local).map_err(rtc_err)?;
    pc.add_local_candidate(init).map_err(rtc_err)?;
    Ok(pc)
}

/// A client peer connection on its own socket.
pub struct Peer {
    /// The `rtc` core.
    pub pc: RTCPeerConnection,
    socket: UdpSocket,
    local: SocketAddr,
    /// Last connection state seen.
    pub state: RTCPeerConnectionState,
    /// Datagrams sent and received, for the report.
    pub datagrams_in: u64,
    /// Bytes received on the socket.
    pub bytes_in: u64,
}

impl Peer {
    /// Bind a socket on `ip` port 0 and build a [`peer_connection`] with
    /// that socket's address as its host candidate.
    pub fn new(
        now: Instant,
        ip: IpAddr,
        ice_check_interval: Option<Duration>,
    ) -> Result<Self, BenchError> {
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0))?;
        let local = socket.local_addr()?;
        let pc = peer_connection(now, local, ice_check_interval, None)?;
        Ok(Self {
            pc,
            socket,
            local,
            state: RTCPeerConnectionState::New,
            datagrams_in: 0,
            bytes_in: 0,
        })
    }

    /// Register the socket for readability under `token`.
    pub fn register(&mut self, registry: &Registry, token: Token) -> Result<(), BenchError> {
        registry.register(&mut self.socket, token, Interest::READABLE)?;
        Ok(())
    }

    /// Whether the connection is up.
    pub fn connected(&self) -> bool {
        self.state == RTCPeerConnectionState::Connected
    }

    /// Whether the connection failed or closed.
    pub fn dead(&self) -> bool {
        matches!(
            self.state,
            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
        )
    }

    /// Read every datagram waiting on the socket into the core, draining
    /// the core after each one; received RTP goes to `on_rtp`.
    pub fn receive(&mut self, on_rtp: &mut impl FnMut(Instant, &rtp::Packet)) {
        let mut buf = [0u8; RECV_BUF];
        loop {
            let (n, from) = match self.socket.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "recv_from");
                    return;
                }
            };
            let now = Instant::now();
            self.datagrams_in += 1;
            self.bytes_in += n as u64;
            let msg = TaggedBytesMut {
                now,
                transport: TransportContext {
                    local_addr: self.local,
                    peer_addr: from,
                    ecn: None,
                    transport_protocol: TransportProtocol::UDP,
                },
                message: BytesMut::from(&buf[..n]),
            };
            if let Err(e) = self.pc.handle_read(msg) {
                tracing::debug!(error = %e, "handle_read");
            }
            self.drain(now, on_rtp);
        }
    }

    /// Fire the core's timer if due.
    pub fn tick(&mut self, now: Instant) {
        if self.pc.poll_timeout().is_some_and(|t| t <= now) {
            if let Err(e) = self.pc.handle_timeout(now) {
                tracing::debug!(error = %e, "handle_timeout");
            }
        }
    }

    /// The core's next deadline.
    pub fn deadline(&mut self) -> Option<Instant> {
        self.pc.poll_timeout()
    }

    /// Move every output of the core: datagrams to the socket, state changes
    /// into [`Peer::state`], RTP to `on_rtp`.
    pub fn drain(&mut self, now: Instant, on_rtp: &mut impl FnMut(Instant, &rtp::Packet)) {
        while let Some(msg) = self.pc.poll_write() {
            if let Err(e) = self.socket.send_to(&msg.message, msg.transport.peer_addr) {
                tracing::debug!(error = %e, "send_to");
            }
        }
        while let Some(ev) = self.pc.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(s) = ev {
                tracing::debug!(local = %self.local, state = %s, "peer connection state");
                self.state = s;
            }
        }
        while let Some(TaggedRTCMessage { message, .. }) = self.pc.poll_read() {
            if let RTCMessage::RtpPacket(_, packet) = message {
                on_rtp(now, &packet);
            }
        }
    }
}
