//! Moving a connection's outputs out: datagrams to the transmit queue
//! (binding the addresses its ICE agent vouched for), the rest returned.

use crate::connection::{Connection, Liveness};
use crate::demux::Demux;
use crate::ids::ConnKey;
use crate::transmit::Transmit;
use crate::transport::{Took, Wire, WireEvent};
use bytes::BytesMut;
use huddle_wire::classify::is_stun_success_response;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;
use tracing::debug;

/// Output of draining one connection.
#[derive(Default)]
pub(super) struct Drained {
    pub events: Vec<RTCPeerConnectionEvent>,
    pub rtp: Vec<(String, rtc::rtp::Packet)>,
    pub wire: Vec<WireEvent>,
}

/// Move a connection's outputs out: datagrams to `transmits` (see
/// [`push_writes`]), the rest returned.
pub(super) fn drain(
    now: Instant,
    conn: &mut Connection,
    key: &ConnKey,
    demux: &mut Demux<ConnKey>,
    transmits: &mut VecDeque<Transmit>,
) -> Drained {
    let mut out = Drained::default();
    if let Some(wire) = conn.wire.as_mut() {
        drain_wire(wire, key, demux, transmits, &mut out.wire);
        // rtc only negotiates this connection: it has nothing to send or
        // say that matters (its transport is never started).
        while conn.pc.poll_write().is_some() {}
        while conn.pc.poll_event().is_some() {}
        while conn.pc.poll_read().is_some() {}
        conn.timer = wire.poll_timeout();
        return out;
    }
    push_writes(conn, key, demux, transmits);
    while let Some(ev) = conn.pc.poll_event() {
        out.events.push(ev);
    }
    let mut read = false;
    while let Some(TaggedRTCMessage { message, .. }) = conn.pc.poll_read() {
        read = true;
        if let RTCMessage::RtpPacket(track, packet) = message {
            out.rtp.push((track.to_string(), packet));
        }
    }
    if read {
        // SRTP or SRTCP that rtc decrypted: the client is alive.
        conn.took(now, None, Took::Life);
    }
    // Reading may have queued writes (e.g. RTCP replies).
    push_writes(conn, key, demux, transmits);
    if matches!(conn.liveness, Liveness::Connecting { .. }) {
        // rtc 0.21 queues the DTLS client's first flight when ICE selects a
        // pair (while the connection is drained) but hands it out only from
        // handle_timeout, and its poll_timeout does not ask for that: the
        // ClientHello waited for the next ICE timer, ~200 ms of every join.
        // The timers only fire what is due, so running them now is safe;
        // only while connecting, so the media path never pays for it.
        if let Err(e) = conn.pc.handle_timeout(now) {
            debug!(participant = %key.0, "timeout: {e}");
        }
        push_writes(conn, key, demux, transmits);
    }
    conn.timer = conn.pc.poll_timeout();
    out
}

/// Move what a subscriber connection's own transport has out: datagrams to
/// `transmits` (a STUN success response binds its destination, as in
/// [`push_writes`]), events to `events`; a ufrag an ICE restart retired
/// leaves the demultiplexer.
pub(super) fn drain_wire(
    wire: &mut Wire,
    key: &ConnKey,
    demux: &mut Demux<ConnKey>,
    transmits: &mut VecDeque<Transmit>,
    events: &mut Vec<WireEvent>,
) {
    while let Some((dst, payload)) = wire.poll_transmit() {
        if is_stun_success_response(&payload) {
            demux.bind(dst, key);
        }
        transmits.push_back(Transmit { dst, payload });
    }
    while let Some(ev) = wire.poll_event() {
        events.push(ev);
    }
    if let Some(retired) = wire.retired_ufrag() {
        demux.remove_ufrag(&retired);
    }
}

/// Move the datagrams a connection has to send into `transmits`.
///
/// A STUN success response is the connection's ICE agent vouching for its
/// destination (the request passed MESSAGE-INTEGRITY): that address is bound
/// to the connection in the demux here, never on mere receipt of a STUN
/// message naming the ufrag (see [`Demux::route`]).
pub(super) fn push_writes(
    conn: &mut Connection,
    key: &ConnKey,
    demux: &mut Demux<ConnKey>,
    transmits: &mut VecDeque<Transmit>,
) {
    while let Some(msg) = conn.pc.poll_write() {
        if is_stun_success_response(&msg.message) {
            demux.bind(msg.transport.peer_addr, key);
        }
        transmits.push_back(Transmit {
            dst: msg.transport.peer_addr,
            payload: msg.message,
        });
    }
}

/// A datagram as the `rtc` core takes it.
pub(super) fn tagged(
    now: Instant,
    local_addr: SocketAddr,
    src: SocketAddr,
    message: BytesMut,
) -> TaggedBytesMut {
    TaggedBytesMut {
        now,
        transport: TransportContext {
            local_addr,
            peer_addr: src,
            ecn: None,
            transport_protocol: TransportProtocol::UDP,
        },
        message,
    }
}
