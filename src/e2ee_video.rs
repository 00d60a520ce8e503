//! VP8 in an end-to-end encrypted call: each encoded frame encrypted whole
//! with SFrame before it goes out in RTP packets, and put back together
//! from its packets to be decrypted on arrival (docs/e2ee.md, "Media
//! path").
//!
//! The app writes a frame as its RTP payloads, each a VP8 payload
//! descriptor (RFC 7741) and a piece of the frame, as without E2EE. The
//! frame is taken out of them, its first bytes kept in clear (the 3-byte
//! frame tag, and on a keyframe the 7 bytes after it: start code and
//! size) so that the SFU still tells keyframes and their size, and the
//! rest encrypted with those bytes as SFrame metadata: an SFU that changes
//! them makes the frame fail. The result goes out in pieces of the app's
//! size behind the app's descriptors (one packet more when the SFrame
//! header and tag need it).
//!
//! A receiver gathers a frame's packets (same timestamp, from the one
//! that starts the frame to the one with the marker, none missing),
//! decrypts the frame and hands the plaintext on in the same packets:
//! their sequence numbers, descriptors and marker as they came, each
//! carrying its share of the (shorter) frame.

use crate::e2ee::E2ee;
use crate::error::CallError;
use crate::packet::MediaPacket;
use bytes::Bytes;
use huddle_e2ee::session::Stream;
use huddle_media::rtp::parse_vp8_descriptor;

/// Bytes of a keyframe kept in clear: frame tag, start code, size.
const KEYFRAME_CLEAR: usize = 10;
/// Bytes of an interframe kept in clear: the frame tag.
const INTERFRAME_CLEAR: usize = 3;
/// The S bit of a VP8 payload descriptor's first byte.
const START: u8 = 0x10;

/// How many bytes of `frame` stay in clear.
pub(crate) fn clear_len(frame: &[u8]) -> usize {
    let wanted = match frame.first() {
        Some(tag) if tag & 0x01 == 0 => KEYFRAME_CLEAR,
        _ => INTERFRAME_CLEAR,
    };
    wanted.min(frame.len())
}

/// A frame taken out of its RTP payloads: the descriptor of each, and the
/// frame.
pub(crate) struct Unpacked<'a> {
    descriptors: Vec<&'a [u8]>,
    /// The longest piece of frame one payload carried.
    piece: usize,
    frame: Vec<u8>,
}

impl<'a> Unpacked<'a> {
    /// The frame in `payloads` (VP8 RTP payloads, the first one starting
    /// the frame). `None` when one is not VP8 or the first does not start
    /// a frame.
    pub(crate) fn new(payloads: &[&'a [u8]]) -> Option<Self> {
        let mut descriptors = Vec::with_capacity(payloads.len());
        let mut frame = Vec::new();
        let mut piece = 0;
        for (i, p) in payloads.iter().enumerate() {
            let d = parse_vp8_descriptor(p).ok()?;
            if i == 0 && !(d.start_of_partition && d.partition_id == 0) {
                return None;
            }
            let data = p.get(d.len..)?;
            piece = piece.max(data.len());
            descriptors.push(p.get(..d.len)?);
            frame.extend_from_slice(data);
        }
        (!descriptors.is_empty()).then_some(Unpacked {
            descriptors,
            piece: piece.max(1),
            frame,
        })
    }

    /// The frame.
    pub(crate) fn frame(&self) -> &[u8] {
        &self.frame
    }

    /// `frame` (the sealed one) in payloads behind the same descriptors,
    /// pieces as long as the longest one was; a payload more, behind the
    /// last descriptor without its start bit, if it does not fit.
    pub(crate) fn repack(&self, frame: &[u8]) -> Vec<Vec<u8>> {
        frame
            .chunks(self.piece)
            .enumerate()
            .map(|(i, chunk)| {
                let mut payload = Vec::with_capacity(8 + chunk.len());
                match self.descriptors.get(i) {
                    Some(d) => payload.extend_from_slice(d),
                    None => {
                        let last = self.descriptors[self.descriptors.len() - 1];
                        payload.extend_from_slice(last);
                        if i > 0 {
                            payload[0] &= !START;
                        }
                    }
                }
                payload.extend_from_slice(chunk);
                payload
            })
            .collect()
    }
}

/// The frame in `payloads` (VP8 RTP payloads, as the app writes them)
/// sealed with `e2ee` as a frame of `stream`, in payloads to send. `None`
/// while not in a group (nothing may go out).
pub(crate) fn seal(
    e2ee: &E2ee,
    stream: Stream,
    payloads: &[&[u8]],
) -> Result<Option<Vec<Vec<u8>>>, CallError> {
    let unpacked = Unpacked::new(payloads).ok_or_else(|| {
        CallError::InvalidInput(
            "an end-to-end encrypted video frame is written as its VP8 RTP payloads, \
             the first one starting the frame"
                .into(),
        )
    })?;
    let frame = unpacked.frame();
    let (clear, rest) = frame.split_at(clear_len(frame));
    let mut sealed = clear.to_vec();
    if !e2ee.seal(stream, clear, rest, &mut sealed) {
        return Ok(None);
    }
    Ok(Some(unpacked.repack(&sealed)))
}

/// Most frames gathered at once: older ones are given up.
const MAX_PENDING_FRAMES: usize = 16;
/// Most packets of one frame (1.2 MB of 1200-byte packets): a frame with
/// more is given up, so that a stream of packets under one timestamp
/// cannot grow without bound.
const MAX_FRAME_PACKETS: usize = 1024;

/// Gathers a remote video's packets into whole frames.
#[derive(Default)]
pub(crate) struct Reassembly {
    /// Frames being gathered, by timestamp, in the order they began to
    /// arrive.
    frames: Vec<(u32, Vec<MediaPacket>)>,
}

impl Reassembly {
    /// Take `p`; the packets of its frame, in order, once it is whole.
    pub(crate) fn push(&mut self, p: MediaPacket) -> Option<Vec<MediaPacket>> {
        let i = match self.frames.iter().position(|(ts, _)| *ts == p.timestamp) {
            Some(i) => i,
            None => {
                if self.frames.len() >= MAX_PENDING_FRAMES {
                    self.frames.remove(0);
                }
                self.frames.push((p.timestamp, Vec::new()));
                self.frames.len() - 1
            }
        };
        let packets = &mut self.frames[i].1;
        if packets
            .iter()
            .any(|q| q.sequence_number == p.sequence_number)
        {
            return None;
        }
        if packets.len() >= MAX_FRAME_PACKETS {
            self.frames.remove(i);
            return None;
        }
        packets.push(p);
        let start = first_of(packets)?;
        if !whole(packets, start) {
            return None;
        }
        // Frames begun before a whole one will not be whole any more.
        let mut done: Vec<_> = self.frames.drain(..=i).collect();
        let (_, mut packets) = done.pop()?;
        packets.sort_by_key(|q| q.sequence_number.0.wrapping_sub(start));
        Some(packets)
    }
}

/// The sequence number of the packet in `packets` that starts the frame.
fn first_of(packets: &[MediaPacket]) -> Option<u16> {
    packets
        .iter()
        .find(|p| starts_frame(&p.payload))
        .map(|p| p.sequence_number.0)
}

/// Whether `packets` (one timestamp's, the first of the frame numbered
/// `start`) hold a whole frame: one ends it (marker), and every sequence
/// number from `start` to it is there.
fn whole(packets: &[MediaPacket], start: u16) -> bool {
    let Some(end) = packets.iter().find(|p| p.marker) else {
        return false;
    };
    let span = end.sequence_number.0.wrapping_sub(start);
    span < 0x8000 && usize::from(span) + 1 == packets.len()
}

fn starts_frame(payload: &[u8]) -> bool {
    parse_vp8_descriptor(payload).is_ok_and(|d| d.start_of_partition && d.partition_id == 0)
}

/// `plain` (a decrypted frame) handed on in `packets`, the packets that
/// carried it encrypted: each keeps its descriptor and carries as much of
/// the frame as it did, in order, until the frame runs out.
pub(crate) fn spread(packets: Vec<MediaPacket>, plain: &[u8]) -> Option<Vec<MediaPacket>> {
    let mut rest = plain;
    let mut out = Vec::with_capacity(packets.len());
    for mut p in packets {
        let d = parse_vp8_descriptor(&p.payload).ok()?;
        let carried = p.payload.len() - d.len;
        let (mine, after) = rest.split_at(carried.min(rest.len()));
        let mut payload = Vec::with_capacity(d.len + mine.len());
        payload.extend_from_slice(&p.payload[..d.len]);
        payload.extend_from_slice(mine);
        p.payload = Bytes::from(payload);
        out.push(p);
        rest = after;
    }
    rest.is_empty().then_some(out)
}

/// The frame in `packets` (a whole one, in order).
pub(crate) fn frame_of(packets: &[MediaPacket]) -> Option<Vec<u8>> {
    let payloads: Vec<&[u8]> = packets.iter().map(|p| &p.payload[..]).collect();
    Unpacked::new(&payloads).map(|u| u.frame)
}

#[cfg(test)]
pub(crate) mod tests;
