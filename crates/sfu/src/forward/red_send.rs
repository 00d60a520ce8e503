//! One packet of a track with RED out on one leg, in the leg's form
//! ([`crate::forward::red`]): as it is to a leg that took RED, as plain
//! Opus (recovered frames included) to one that did not. Fresh packets
//! and NACK resends alike. A leg whose subscriber's loss calls for more
//! redundancy than the packet carries gets it with copies the SFU adds
//! ([`crate::forward::red_boost`]; fresh packets only).

use crate::forward::leg::{Leg, PayloadTypes};
use crate::forward::red::{form, primary_piece, Arrival, Form, Piece, RedFormat};
use crate::forward::red_boost::write_boosted;
use crate::forward::rtx::RtxStore;
use crate::forward::send::{payload_types, send_on_leg, Body, Out};
use crate::ids::ParticipantId;
use bytes::Bytes;
use rtc::rtp::Packet;
use rtc::rtp_transceiver::rtp_sender::RTCRtpCodec;
use std::time::Instant;

/// What [`send_red_on_leg`] sent.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RedSent {
    /// Packets sent.
    pub copies: u64,
    /// Bit i: piece i of the arrival's plan was sent.
    pub pieces: u32,
    /// It went out with copies the SFU added.
    pub boosted: bool,
}

/// The leg's payload types (cached on it; looked up on its connection the
/// first time).
fn leg_payload_types(
    out: &mut Out<'_>,
    sub: &ParticipantId,
    leg: &mut Leg,
    codec: &RTCRtpCodec,
) -> Option<PayloadTypes> {
    if leg.payload_types.is_some() {
        return leg.payload_types;
    }
    let conn = out.participants.get_mut(sub)?.subscriber.as_mut()?;
    payload_types(conn, leg, codec)
}

/// `piece` of `packet` on the leg, with payload type `pt` (a resend as
/// `resend_as`, when given).
#[allow(clippy::too_many_arguments)]
fn send_piece(
    now: Instant,
    out: Out<'_>,
    codec: &RTCRtpCodec,
    sub: &ParticipantId,
    leg: &mut Leg,
    packet: &Packet,
    piece: &Piece,
    pt: u8,
    resend_as: Option<u16>,
) -> bool {
    if piece.range().end > packet.payload.len() {
        return false; // not a piece of this packet
    }
    let mut header = packet.header.clone();
    header.sequence_number = piece.seq;
    header.timestamp = piece.ts;
    if piece.recovered {
        header.marker = false; // the marker was the arriving packet's
    }
    // Shares the packet's storage: no copy of the data.
    let payload: Bytes = packet.payload.slice(piece.range());
    let body = Body {
        header: &header,
        payload: &payload,
        payload_type: Some(pt),
    };
    send_on_leg(now, out, codec, sub, leg, body, resend_as)
}

/// Send `packet` of a track with RED `format`, as `arrival` read it, on
/// one leg: as it is when the leg took RED (with copies from `store` added
/// when its subscriber's loss calls for more), else the arrival's plan.
#[allow(clippy::too_many_arguments)]
pub(crate) fn send_red_on_leg(
    now: Instant,
    mut out: Out<'_>,
    codec: &RTCRtpCodec,
    sub: &ParticipantId,
    leg: &mut Leg,
    packet: &Packet,
    format: RedFormat,
    arrival: &Arrival,
    store: &RtxStore,
) -> RedSent {
    let mut sent = RedSent::default();
    let Some(pts) = leg_payload_types(&mut out, sub, leg, codec) else {
        return sent; // not negotiated yet
    };
    match form(arrival.red, format, pts.primary, pts.red) {
        Form::AsIs(pt) => {
            let wanted = leg.red_boost;
            let mut boosted = Vec::new();
            let boost = wanted > 0
                && write_boosted(packet, format, store, wanted, pts.primary, &mut boosted)
                    .is_some();
            let payload = Bytes::from(boosted);
            let body = match (boost, pts.red) {
                // A plain packet made RED goes out as the leg's RED.
                (true, Some(red_pt)) => {
                    sent.boosted = true;
                    Body {
                        header: &packet.header,
                        payload: &payload,
                        payload_type: Some(red_pt),
                    }
                }
                _ => Body {
                    payload_type: Some(pt),
                    ..Body::of(packet)
                },
            };
            sent.copies = u64::from(send_on_leg(now, out, codec, sub, leg, body, None));
            sent.boosted &= sent.copies > 0;
            if sent.copies > 0 {
                leg.nack_loss.on_sent(packet.header.sequence_number);
            }
        }
        Form::Strip(pt) => {
            for (i, piece) in arrival.plan.pieces().iter().enumerate() {
                let out = out.reborrow();
                if send_piece(now, out, codec, sub, leg, packet, piece, pt, None) {
                    sent.copies += 1;
                    sent.pieces |= 1 << i;
                }
            }
        }
    }
    sent
}

/// Resend the stored `packet` of a track with RED `format` on one leg as
/// its sequence number `seq`: as it is to a leg that took RED, its primary
/// block as plain Opus to one that did not. False when nothing was sent.
#[allow(clippy::too_many_arguments)]
pub(crate) fn resend_red_on_leg(
    now: Instant,
    mut out: Out<'_>,
    codec: &RTCRtpCodec,
    sub: &ParticipantId,
    leg: &mut Leg,
    packet: &Packet,
    format: RedFormat,
    seq: u16,
) -> bool {
    let Some(pts) = leg_payload_types(&mut out, sub, leg, codec) else {
        return false;
    };
    let red = packet.header.payload_type == format.red_pt;
    match form(red, format, pts.primary, pts.red) {
        Form::AsIs(pt) => {
            let body = Body {
                payload_type: Some(pt),
                ..Body::of(packet)
            };
            send_on_leg(now, out, codec, sub, leg, body, Some(seq))
        }
        Form::Strip(pt) if red => {
            let (source_seq, ts) = (packet.header.sequence_number, packet.header.timestamp);
            match primary_piece(source_seq, ts, &packet.payload) {
                Some(piece) => send_piece(now, out, codec, sub, leg, packet, &piece, pt, Some(seq)),
                None => false,
            }
        }
        Form::Strip(pt) => {
            let body = Body {
                payload_type: Some(pt),
                ..Body::of(packet)
            };
            send_on_leg(now, out, codec, sub, leg, body, Some(seq))
        }
    }
}
