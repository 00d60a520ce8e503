//! [`RedEncoder`]: wraps each encoded frame in an RFC 2198 RED payload with
//! copies of the frames before it.

use crate::error::RedError;
use crate::opus_codec::is_dtx_packet;
use crate::rtp::red::{red_len, write_red, RedBlock, MAX_BLOCK_LEN, MAX_TIMESTAMP_OFFSET};
use std::collections::VecDeque;

/// Most earlier frames a [`RedEncoder`] repeats (the redundancy distance).
/// The loss rule of `huddle_wire::red_distance` goes as far.
pub const MAX_RED_DISTANCE: u8 = 8;

/// Largest RED payload [`RedEncoder`] makes by default, as Chromium
/// (`kRedMaxPacketSize`): with the RTP header and extensions a packet stays
/// well inside a 1500-byte MTU after SRTP and any tunnel.
pub const DEFAULT_MAX_RED_PAYLOAD: usize = 1200;

/// Settings of a [`RedEncoder`].
#[derive(Debug, Clone, PartialEq)]
pub struct RedEncoderConfig {
    /// Payload type of the frames (the primary and redundant blocks' type):
    /// Opus's, 111 in Chromium's numbering.
    pub primary_pt: u8,
    /// Redundant blocks are left out when they would make the payload longer
    /// than this (default [`DEFAULT_MAX_RED_PAYLOAD`]).
    pub max_payload_bytes: usize,
    /// The redundancy distance to start at (at most [`MAX_RED_DISTANCE`];
    /// default 1, as Chromium).
    pub distance: u8,
}

impl Default for RedEncoderConfig {
    fn default() -> Self {
        RedEncoderConfig {
            primary_pt: 111,
            max_payload_bytes: DEFAULT_MAX_RED_PAYLOAD,
            distance: 1,
        }
    }
}

/// What one [`RedEncoder::encode_into`] put in the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedEncoded {
    /// Redundant blocks written (0..=distance).
    pub redundant_blocks: usize,
    /// Earlier frames within the distance left out: they would have pushed
    /// the payload over `max_payload_bytes`, did not fit a block header, or
    /// were DTX/empty frames with no speech frame behind them.
    pub left_out: usize,
}

/// A frame kept for the next packets.
#[derive(Debug, Clone)]
struct Kept {
    timestamp: u32,
    payload: Vec<u8>,
}

/// Wraps each encoded frame in a RED payload (RFC 2198) carrying it as the
/// primary block and up to [`distance`](Self::distance) earlier frames as
/// redundant blocks, oldest first, byte for byte as Chromium's RED encoder.
///
/// **One call per packet sent.** The receiver places the redundant block k
/// frames back at sequence number `seq - k`, so every frame passed in must
/// go out as one packet, in order, and a frame that is not sent (the track
/// is muted, the sender skipped it) must be followed by [`reset`](Self::reset).
///
/// Which earlier frames go in, walking back from the newest:
///
/// - at most `distance` of them (0..=[`MAX_RED_DISTANCE`], see
///   [`set_distance`](Self::set_distance));
/// - the walk stops at the first frame that does not fit: a timestamp
///   offset of 2^14 ticks or more (a pause in the stream), a frame of 1024
///   bytes or more, or one that would take the payload over
///   `max_payload_bytes` (the blocks must be the latest frames in a row for
///   the receiver to place them);
/// - **DTX**: DTX and empty frames (at most 2 bytes: Opus's "nothing to
///   code") are never the oldest block: the redundancy ends at the oldest
///   speech frame within the distance. So during silence packets carry no
///   redundancy, and at the end of a talkspurt the last speech frames are
///   still repeated behind the DTX frames that follow them (a DTX frame in
///   between costs 5 bytes and keeps the frames in a row).
///
/// ```
/// use huddle_media::rtp::{parse_red, RedEncoder, RedEncoderConfig};
///
/// # fn main() -> Result<(), huddle_media::rtp::RedError> {
/// let mut red = RedEncoder::new(RedEncoderConfig::default())?; // distance 1
/// let mut out = Vec::new();
/// red.encode_into(0, &[0x78; 60], &mut out)?;
/// assert_eq!(parse_red(&out)?.redundant.len(), 0); // nothing earlier yet
/// let written = red.encode_into(960, &[0x79; 60], &mut out)?;
/// assert_eq!(written.redundant_blocks, 1);
/// let parsed = parse_red(&out)?;
/// assert_eq!(parsed.redundant[0].timestamp_offset, 960);
/// assert_eq!(parsed.redundant[0].payload, &[0x78; 60]);
/// assert_eq!(parsed.primary.payload, &[0x79; 60]);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RedEncoder {
    primary_pt: u8,
    max_payload_bytes: usize,
    distance: u8,
    /// The latest frames, newest first, at most [`MAX_RED_DISTANCE`].
    kept: VecDeque<Kept>,
}

impl RedEncoder {
    /// An encoder with `config`. Fails if the payload type is above 127.
    pub fn new(config: RedEncoderConfig) -> Result<Self, RedError> {
        if config.primary_pt > 127 {
            return Err(RedError::PayloadType(config.primary_pt));
        }
        Ok(RedEncoder {
            primary_pt: config.primary_pt,
            max_payload_bytes: config.max_payload_bytes,
            distance: config.distance.min(MAX_RED_DISTANCE),
            kept: VecDeque::with_capacity(usize::from(MAX_RED_DISTANCE) + 1),
        })
    }

    /// The redundancy distance in use: how many earlier frames each packet
    /// repeats at most.
    pub fn distance(&self) -> u8 {
        self.distance
    }

    /// Repeat up to `distance` earlier frames from the next packet on
    /// (capped at [`MAX_RED_DISTANCE`]).
    pub fn set_distance(&mut self, distance: u8) {
        let distance = distance.min(MAX_RED_DISTANCE);
        if distance != self.distance {
            tracing::debug!(
                before = self.distance,
                after = distance,
                "RED distance changed"
            );
        }
        self.distance = distance;
    }

    /// Forget the frames kept for redundancy: the next packet repeats none.
    /// Call when a frame was not sent (see the type's doc).
    pub fn reset(&mut self) {
        self.kept.clear();
    }

    /// Write the RED payload for `frame` (an encoded frame with RTP timestamp
    /// `timestamp`) into `out` (cleared first), and keep the frame for the
    /// next packets.
    ///
    /// Fails only if a block the walk chose would not fit its header, which
    /// the walk rules out; then `out` holds nothing and the frame is not kept.
    pub fn encode_into(
        &mut self,
        timestamp: u32,
        frame: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<RedEncoded, RedError> {
        out.clear();
        let within = usize::from(self.distance).min(self.kept.len());
        // Walk back from the newest kept frame while each one fits.
        let mut blocks: Vec<RedBlock<'_>> = Vec::with_capacity(within);
        let mut len = red_len(&[], frame.len());
        for kept in self.kept.iter().take(within) {
            let offset = timestamp.wrapping_sub(kept.timestamp);
            let grown = len + 4 + kept.payload.len();
            if offset == 0
                || offset > MAX_TIMESTAMP_OFFSET
                || kept.payload.len() > MAX_BLOCK_LEN
                || grown > self.max_payload_bytes
            {
                break;
            }
            len = grown;
            blocks.push(RedBlock {
                payload_type: self.primary_pt,
                timestamp_offset: offset,
                payload: &kept.payload,
            });
        }
        // The oldest block must be speech: drop trailing DTX/empty frames.
        while blocks.last().is_some_and(|b| is_dtx_packet(b.payload)) {
            blocks.pop();
        }
        blocks.reverse(); // packet order: oldest first
        let written = blocks.len();
        write_red(&blocks, self.primary_pt, frame, out)?;
        drop(blocks);
        self.keep(timestamp, frame);
        Ok(RedEncoded {
            redundant_blocks: written,
            left_out: within - written,
        })
    }

    fn keep(&mut self, timestamp: u32, frame: &[u8]) {
        let mut slot = if self.kept.len() >= usize::from(MAX_RED_DISTANCE) {
            self.kept.pop_back()
        } else {
            None
        }
        .unwrap_or(Kept {
            timestamp,
            payload: Vec::new(),
        });
        slot.timestamp = timestamp;
        slot.payload.clear();
        slot.payload.extend_from_slice(frame);
        self.kept.push_front(slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::red::parse_red;

    fn encoder(distance: u8) -> RedEncoder {
        RedEncoder::new(RedEncoderConfig {
            distance,
            ..RedEncoderConfig::default()
        })
        .expect("valid")
    }

    /// A fake speech frame tagged with its index.
    fn frame(i: u8, len: usize) -> Vec<u8> {
        vec![i; len]
    }

    /// (offset, first byte) of each redundant block, then the primary's first byte.
    fn shape(payload: &[u8]) -> (Vec<(u32, u8)>, u8) {
        let p = parse_red(payload).expect("valid RED");
        (
            p.redundant
                .iter()
                .map(|b| (b.timestamp_offset, b.payload[0]))
                .collect(),
            p.primary.payload[0],
        )
    }

    #[test]
    fn repeats_the_latest_frames_up_to_the_distance() {
        for d in 0..=3u8 {
            let mut red = encoder(d);
            let mut out = Vec::new();
            for i in 0..6u8 {
                let got = red
                    .encode_into(u32::from(i) * 960, &frame(i, 50), &mut out)
                    .expect("encodes");
                let n = usize::from(d).min(usize::from(i));
                assert_eq!(got.redundant_blocks, n);
                let (blocks, primary) = shape(&out);
                let want: Vec<(u32, u8)> = (1..=n as u8)
                    .rev()
                    .map(|k| (u32::from(k) * 960, i - k))
                    .collect();
                assert_eq!((blocks, primary), (want, i), "distance {d}, frame {i}");
            }
        }
    }

    #[test]
    fn mtu_leaves_out_the_oldest_blocks() {
        let mut red = encoder(3);
        let mut out = Vec::new();
        for i in 0..3u8 {
            red.encode_into(u32::from(i) * 960, &frame(i, 400), &mut out)
                .expect("encodes");
        }
        // 1 + 400 primary, + 404 per block: two blocks make 1209 > 1200.
        let got = red
            .encode_into(3 * 960, &frame(3, 400), &mut out)
            .expect("encodes");
        assert_eq!(got.redundant_blocks, 1);
        assert_eq!(got.left_out, 2);
        assert!(out.len() <= DEFAULT_MAX_RED_PAYLOAD);
        assert_eq!(shape(&out).0, [(960, 2)]);
        // A primary too big for any redundancy still goes out alone.
        let got = red
            .encode_into(4 * 960, &frame(4, 1199), &mut out)
            .expect("encodes");
        assert_eq!(got.redundant_blocks, 0);
        assert_eq!(out.len(), 1200);
    }

    #[test]
    fn blocks_that_do_not_fit_a_header_end_the_walk() {
        let mut red = encoder(3);
        let mut out = Vec::new();
        red.encode_into(0, &frame(0, 30), &mut out)
            .expect("encodes");
        // 1024 bytes: too long for a redundant block.
        red.encode_into(960, &frame(1, 1024), &mut out)
            .expect("encodes");
        let got = red
            .encode_into(1920, &frame(2, 30), &mut out)
            .expect("encodes");
        assert_eq!(
            got.redundant_blocks, 0,
            "frame 1 cannot be repeated, nor 0 behind it"
        );
        // A pause of 2^14 ticks or more: the frames before it are not repeated.
        let mut red = encoder(3);
        red.encode_into(0, &frame(0, 30), &mut out)
            .expect("encodes");
        let got = red
            .encode_into(16_384, &frame(1, 30), &mut out)
            .expect("encodes");
        assert_eq!(got.redundant_blocks, 0);
        let got = red
            .encode_into(16_384 + 960, &frame(2, 30), &mut out)
            .expect("encodes");
        assert_eq!(got.redundant_blocks, 1);
        // Timestamps wrap.
        let mut red = encoder(1);
        red.encode_into(u32::MAX - 100, &frame(0, 30), &mut out)
            .expect("encodes");
        red.encode_into(859, &frame(1, 30), &mut out)
            .expect("encodes");
        assert_eq!(shape(&out).0, [(960, 0)]);
    }

    #[test]
    fn dtx_frames_are_not_repeated_unless_speech_is_behind_them() {
        let mut red = encoder(3);
        let mut out = Vec::new();
        let dtx = [0xf8u8];
        let ts = |i: u32| i * 960;
        red.encode_into(ts(0), &frame(10, 60), &mut out)
            .expect("encodes"); // speech
        red.encode_into(ts(1), &dtx, &mut out).expect("encodes");
        // Primary DTX, behind it speech: both repeated.
        let (blocks, _) = shape(&out);
        assert_eq!(blocks, [(960, 10)]);
        red.encode_into(ts(2), &dtx, &mut out).expect("encodes");
        assert_eq!(shape(&out).0, [(1920, 10), (960, 0xf8)]);
        red.encode_into(ts(3), &dtx, &mut out).expect("encodes");
        assert_eq!(shape(&out).0.len(), 3);
        // The speech frame is now 4 back: only DTX within reach, none sent.
        let got = red.encode_into(ts(4), &dtx, &mut out).expect("encodes");
        assert_eq!(got.redundant_blocks, 0);
        assert_eq!(got.left_out, 3);
        assert_eq!(out, [111, 0xf8]);
        // Speech again: the DTX frames before it are not repeated.
        red.encode_into(ts(5), &frame(11, 60), &mut out)
            .expect("encodes");
        assert_eq!(shape(&out).0.len(), 0);
        red.encode_into(ts(6), &frame(12, 60), &mut out)
            .expect("encodes");
        assert_eq!(shape(&out).0, [(960, 11)]);
    }

    #[test]
    fn reset_and_set_distance() {
        let mut red = RedEncoder::new(RedEncoderConfig::default()).expect("valid");
        assert_eq!(red.distance(), 1);
        let mut out = Vec::new();
        red.encode_into(0, &frame(0, 30), &mut out)
            .expect("encodes");
        red.reset();
        let got = red
            .encode_into(960, &frame(1, 30), &mut out)
            .expect("encodes");
        assert_eq!(got.redundant_blocks, 0);
        red.set_distance(2);
        assert_eq!(red.distance(), 2);
        red.set_distance(200);
        assert_eq!(red.distance(), MAX_RED_DISTANCE, "capped");
        assert!(RedEncoder::new(RedEncoderConfig {
            primary_pt: 128,
            ..RedEncoderConfig::default()
        })
        .is_err());
    }
}
