//! One packet of a track out on one subscriber leg.

use crate::congestion::{PacketClass, PacketKind};
use crate::connection::{Connection, Liveness};
use crate::forward::leg::{Leg, PayloadTypes};
use crate::ids::ParticipantId;
use crate::out_buf::OutBuf;
use crate::participant::Participant;
use crate::transmit::Transmit;
use crate::transport::Sent;
use bytes::Bytes;
use huddle_wire::codecs::MIME_TYPE_RED;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_VP8;
use rtc::rtp_transceiver::rtp_sender::RTCRtpCodec;
use rustc_hash::FxHashMap;
use std::collections::VecDeque;
use std::time::Instant;
use tracing::debug;

/// Where [`send_on_leg`] writes: through the subscribers' connections into
/// the transmit queue.
pub(crate) struct Out<'a> {
    pub participants: &'a mut FxHashMap<ParticipantId, Participant>,
    pub transmits: &'a mut VecDeque<Transmit>,
    pub buf: &'a mut OutBuf,
    /// Subscribers whose pacer started queueing: their connection's timer
    /// changed (the endpoint reschedules them).
    pub paced: &'a mut Vec<ParticipantId>,
}

impl Out<'_> {
    /// The same destinations, for one more send.
    pub fn reborrow(&mut self) -> Out<'_> {
        Out {
            participants: self.participants,
            transmits: self.transmits,
            buf: self.buf,
            paced: self.paced,
        }
    }
}

/// The payload types the leg's connection negotiated for `codec` (and
/// RED, for audio), looked up once and then cached on the leg; `None`
/// before the codec is negotiated.
pub(crate) fn payload_types(
    conn: &mut Connection,
    leg: &mut Leg,
    codec: &RTCRtpCodec,
) -> Option<PayloadTypes> {
    if leg.payload_types.is_none() {
        let mut sender = conn.pc.rtp_sender(leg.sender_id)?;
        // After an answer, the codecs the subscriber took (in the SFU's
        // numbering); before one, those offered.
        let codecs = &sender.get_parameters().rtp_parameters.codecs;
        let pt = |mime: &str| {
            codecs
                .iter()
                .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(mime))
                .map(|c| c.payload_type)
        };
        leg.payload_types = pt(&codec.mime_type).map(|primary| PayloadTypes {
            primary,
            red: pt(MIME_TYPE_RED),
        });
    }
    leg.payload_types
}

/// One packet to send on a leg: the source's header (its sequence number
/// and timestamp, before the leg's rewrite) and payload, and which of the
/// leg's payload types it goes out with.
#[derive(Clone, Copy)]
pub(crate) struct Body<'a> {
    pub header: &'a rtc::rtp::Header,
    pub payload: &'a Bytes,
    /// `Some`: this payload type (one of the leg's, which the caller looked
    /// up); `None`: the leg's type for the track's codec.
    pub payload_type: Option<u8>,
}

impl<'a> Body<'a> {
    /// `packet` as it is, with the leg's payload type for the track's codec.
    pub fn of(packet: &'a rtc::rtp::Packet) -> Self {
        Self {
            header: &packet.header,
            payload: &packet.payload,
            payload_type: None,
        }
    }
}

/// Send one packet of a track on one subscriber leg (a resend of the
/// leg's packet `resend_as`, when given): SSRC and payload type
/// rewritten to the leg's, SRTP-protected by the leg's connection straight
/// into a datagram. False when the leg cannot send yet (not connected,
/// codec not negotiated) or protection failed.
pub(crate) fn send_on_leg(
    now: Instant,
    out: Out<'_>,
    codec: &RTCRtpCodec,
    sub: &ParticipantId,
    leg: &mut Leg,
    body: Body<'_>,
    resend_as: Option<u16>,
) -> bool {
    let Some(conn) = out
        .participants
        .get_mut(sub)
        .and_then(|p| p.subscriber.as_mut())
    else {
        return false;
    };
    if conn.liveness != Liveness::Up {
        return false; // no SRTP keys yet, or the subscriber is gone
    }
    let Some(pt) = body
        .payload_type
        .or_else(|| payload_types(conn, leg, codec).map(|p| p.primary))
    else {
        return false; // not negotiated yet
    };
    let Some(wire) = conn.wire.as_mut() else {
        return false;
    };
    let mut header = body.header.clone();
    header.ssrc = leg.ssrc;
    header.payload_type = pt;
    let placed = leg.rewrite(now, codec.clock_rate, &mut header);
    if !placed && resend_as.is_none() {
        return false; // a late packet with no place in the leg's stream
    }
    // A resend goes out as the number the subscriber asked for: padding
    // sent since may have moved the leg's numbering on.
    let kind = match resend_as {
        Some(seq) => {
            header.sequence_number = seq;
            PacketKind::Retransmission
        }
        None => PacketKind::Media,
    };
    let class = match kind {
        PacketKind::Retransmission => PacketClass::Retransmission,
        _ if codec
            .mime_type
            .as_bytes()
            .first()
            .is_some_and(|b| b.eq_ignore_ascii_case(&b'a')) =>
        {
            PacketClass::Audio
        }
        _ => PacketClass::Video,
    };
    // VP8 on a leg that switches layers: its descriptor's counters
    // continue across switches (`forward::vp8`).
    let head = (leg.switches() && codec.mime_type.eq_ignore_ascii_case(MIME_TYPE_VP8))
        .then(|| leg.vp8.rewrite(body.payload))
        .flatten();
    let timestamp = header.timestamp;
    match wire.send_rtp(
        now,
        class,
        kind,
        header,
        body.payload,
        head,
        out.buf.spare(),
    ) {
        Ok(Sent::Now(dst)) => {
            let payload = out.buf.take();
            out.transmits.push_back(Transmit { dst, payload });
            leg.sent.on_sent(now, timestamp, body.payload.len());
            true
        }
        Ok(Sent::Queued { first }) => {
            if first {
                // The pacer's timer is the connection's now.
                conn.timer = wire.poll_timeout();
                out.paced.push(sub.clone());
            }
            leg.sent.on_sent(now, timestamp, body.payload.len());
            true
        }
        Err(e) => {
            debug!(subscriber = %sub, "send on leg failed: {e}");
            false
        }
    }
}
