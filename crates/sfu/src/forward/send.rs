//! One packet of a track out on one subscriber leg.

use crate::congestion::{PacketClass, PacketKind};
use crate::connection::{Connection, Liveness};
use crate::forward::leg::Leg;
use crate::ids::ParticipantId;
use crate::out_buf::OutBuf;
use crate::participant::Participant;
use crate::transmit::Transmit;
use crate::transport::Sent;
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

/// The payload type `codec` was negotiated with on the leg's connection
/// (looked up once, then cached on the leg); `None` before it is.
pub(crate) fn payload_type(
    conn: &mut Connection,
    leg: &mut Leg,
    codec: &RTCRtpCodec,
) -> Option<u8> {
    if leg.payload_type.is_none() {
        let mut sender = conn.pc.rtp_sender(leg.sender_id)?;
        leg.payload_type = sender
            .get_parameters()
            .rtp_parameters
            .codecs
            .iter()
            .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(&codec.mime_type))
            .map(|c| c.payload_type);
    }
    leg.payload_type
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
    packet: &rtc::rtp::Packet,
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
    let Some(pt) = payload_type(conn, leg, codec) else {
        return false; // not negotiated yet
    };
    let Some(wire) = conn.wire.as_mut() else {
        return false;
    };
    let mut header = packet.header.clone();
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
    let timestamp = header.timestamp;
    match wire.send_rtp(now, class, kind, header, &packet.payload, out.buf.spare()) {
        Ok(Sent::Now(dst)) => {
            let payload = out.buf.take();
            out.transmits.push_back(Transmit { dst, payload });
            leg.sent.on_sent(now, timestamp, packet.payload.len());
            true
        }
        Ok(Sent::Queued { first }) => {
            if first {
                // The pacer's timer is the connection's now.
                conn.timer = wire.poll_timeout();
                out.paced.push(sub.clone());
            }
            leg.sent.on_sent(now, timestamp, packet.payload.len());
            true
        }
        Err(e) => {
            debug!(subscriber = %sub, "send on leg failed: {e}");
            false
        }
    }
}
