//! A participant's subscriber connection, on one of the two receive paths
//! ([`Receiver`]): `rtc`'s whole pipeline ([`Peer`]) or the tool's own
//! transport ([`FastPeer`]).

use crate::error::{rtc_err, BenchError};
use crate::fast_peer::FastPeer;
use crate::peer::Peer;
use crate::recv_batch::RecvBatch;
use mio::{Registry, Token};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp;
use rtc::shared::marshal::MarshalSize;
use serde::Serialize;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How subscriber connections receive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Receiver {
    /// webrtc-rs `rtc`'s receive pipeline: ICE, DTLS, SRTP, interceptors
    /// (NACKs, receiver reports, TWCC feedback), one datagram at a time.
    #[default]
    Rtc,
    /// The tool's own transport: batched reads, ICE as the controlling
    /// agent with consent checks, DTLS-SRTP on huddle-sfu's code, every
    /// packet SRTP-authenticated; no NACKs, receiver reports or keyframe
    /// requests (loss is measured before retransmission).
    Fast,
}

/// A subscriber connection. See the module docs. (Both are large: boxed.)
pub enum Subscriber {
    /// On `rtc`.
    Rtc(Box<Peer>),
    /// On the tool's own transport.
    Fast(Box<FastPeer>),
}

impl Subscriber {
    /// A connection on `receiver`'s path, its socket bound on `ip`.
    pub fn new(
        receiver: Receiver,
        now: Instant,
        ip: IpAddr,
        ice_check_interval: Option<Duration>,
    ) -> Result<Self, BenchError> {
        Ok(match receiver {
            Receiver::Rtc => Self::Rtc(Box::new(Peer::new(now, ip, ice_check_interval)?)),
            Receiver::Fast => Self::Fast(Box::new(FastPeer::new(now, ip)?)),
        })
    }

    /// Register the socket for readability under `token`.
    pub fn register(&mut self, registry: &Registry, token: Token) -> Result<(), BenchError> {
        match self {
            Self::Rtc(p) => p.register(registry, token),
            Self::Fast(p) => p.register(registry, token),
        }
    }

    /// Answer an offer of the SFU; returns the answer's SDP.
    pub fn answer(&mut self, now: Instant, offer: String) -> Result<String, BenchError> {
        match self {
            Self::Rtc(peer) => {
                let offer = RTCSessionDescription::offer(offer).map_err(rtc_err)?;
                peer.pc
                    .set_remote_description(now, offer)
                    .map_err(rtc_err)?;
                let answer = peer.pc.create_answer(None).map_err(rtc_err)?;
                peer.pc
                    .set_local_description(now, answer)
                    .map_err(rtc_err)?;
                Ok(peer
                    .pc
                    .local_description()
                    .ok_or_else(|| BenchError::Rtc("no local description".into()))?
                    .sdp)
            }
            Self::Fast(peer) => peer.answer(now, offer),
        }
    }

    /// Whether media can flow.
    pub fn connected(&self) -> bool {
        match self {
            Self::Rtc(p) => p.connected(),
            Self::Fast(p) => p.connected(),
        }
    }

    /// Why it failed or closed, if it did.
    pub fn failure(&self) -> Option<String> {
        match self {
            Self::Rtc(p) => p.dead().then(|| format!("rtc: {}", p.state)),
            Self::Fast(p) => p.failure(),
        }
    }

    /// Datagrams that failed SRTP unprotection or did not parse (the fast
    /// path counts them; `rtc` does not tell).
    pub fn receive_errors(&self) -> Option<u64> {
        match self {
            Self::Rtc(_) => None,
            Self::Fast(p) => Some(p.receive_errors()),
        }
    }

    /// Read what the socket holds; each RTP packet's payload and size
    /// (header plus payload) go to `on_media`.
    pub fn receive(
        &mut self,
        batch: &mut RecvBatch,
        on_media: &mut impl FnMut(Instant, &[u8], usize),
    ) {
        match self {
            Self::Rtc(p) => p.receive(&mut |now, packet: &rtp::Packet| {
                on_media(now, &packet.payload, rtp_size(packet))
            }),
            Self::Fast(p) => p.receive(batch, on_media),
        }
    }

    /// Fire due timers and move outputs.
    pub fn tick(&mut self, now: Instant, on_media: &mut impl FnMut(Instant, &[u8], usize)) {
        match self {
            Self::Rtc(p) => {
                p.tick(now);
                p.drain(now, &mut |now, packet: &rtp::Packet| {
                    on_media(now, &packet.payload, rtp_size(packet))
                });
            }
            Self::Fast(p) => p.tick(now),
        }
    }

    /// The next deadline.
    pub fn deadline(&mut self) -> Option<Instant> {
        match self {
            Self::Rtc(p) => p.deadline(),
            Self::Fast(p) => p.deadline(),
        }
    }
}

/// An RTP packet's header plus payload, bytes.
pub fn rtp_size(packet: &rtp::Packet) -> usize {
    packet.header.marshal_size() + packet.payload.len()
}
