//! RFC 2198 redundant audio ("RED"): the payload format, written and parsed.
//!
//! A RED payload is a list of block headers followed by the blocks' data in
//! the same order. Every block but the last is *redundant* and has a 4-byte
//! header; the last one is the *primary* and has a 1-byte header:
//!
//! ```text
//! redundant:  |1| block PT (7) | timestamp offset (14) | block length (10) |
//! primary:    |0| block PT (7) |
//! ```
//!
//! The timestamp offset is how far (in RTP clock ticks) the redundant block's
//! timestamp lies before the packet's; the primary block has the packet's
//! timestamp and runs to the end of the payload. As Chromium sends it
//! (`a=rtpmap:63 red/48000/2`, `a=fmtp:63 111/111`), every block is an Opus
//! frame, the redundant ones oldest first: with distance 1, the previous
//! frame (offset 960 for 20 ms frames) then the current one.
//!
//! [`write_red`] refuses any block that does not fit the header fields (a
//! payload type above 127, an offset of 2^14 or more, a block of 1024 bytes
//! or more) instead of writing a corrupt header; `RedEncoder`
//! leaves such blocks out. [`parse_red`] never panics and gives a
//! [`RedError`] for any malformed input.

use crate::error::RedError;

/// Payload type Chromium offers for `audio/red` (with `a=fmtp:63 111/111`).
pub const RED_PT: u8 = 63;
/// Largest timestamp offset a redundant block header can carry (14 bits).
pub const MAX_TIMESTAMP_OFFSET: u32 = (1 << 14) - 1;
/// Largest redundant block a header can describe (10 bits), in bytes.
pub const MAX_BLOCK_LEN: usize = (1 << 10) - 1;
/// Most blocks (redundant ones plus the primary) [`parse_red`] accepts in
/// one payload, as libwebrtc's RED splitter (`kMaxRedBlocks`). Bounds the
/// work and memory of parsing a hostile packet.
pub const MAX_BLOCKS: usize = 32;

/// Length of a redundant block's header.
const REDUNDANT_HEADER_LEN: usize = 4;
/// Length of the primary block's header.
const PRIMARY_HEADER_LEN: usize = 1;
/// The F bit: set on a redundant block's header, clear on the primary's.
const FOLLOWS: u8 = 0x80;

/// One block of a RED payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedBlock<'a> {
    /// The block's payload type (111 for Opus in Chromium's numbering).
    pub payload_type: u8,
    /// How many RTP clock ticks before the packet's timestamp the block's
    /// timestamp lies (0 for the primary block).
    pub timestamp_offset: u32,
    /// The block's data (one encoded frame).
    pub payload: &'a [u8],
}

/// Header bytes plus data bytes of a RED payload with `redundant` and a
/// primary block of `primary_len` bytes.
pub fn red_len(redundant: &[RedBlock<'_>], primary_len: usize) -> usize {
    redundant
        .iter()
        .map(|b| REDUNDANT_HEADER_LEN + b.payload.len())
        .sum::<usize>()
        + PRIMARY_HEADER_LEN
        + primary_len
}

/// Check that `block` fits a redundant block header.
fn check_redundant(block: &RedBlock<'_>) -> Result<(), RedError> {
    if block.payload_type > 127 {
        return Err(RedError::PayloadType(block.payload_type));
    }
    if block.timestamp_offset > MAX_TIMESTAMP_OFFSET {
        return Err(RedError::TimestampOffset(block.timestamp_offset));
    }
    if block.payload.len() > MAX_BLOCK_LEN {
        return Err(RedError::BlockTooLong(block.payload.len()));
    }
    Ok(())
}

/// Append the RED payload made of `redundant` (in packet order: oldest
/// first) and the primary block (`primary_pt`, `primary`) to `out`.
///
/// Fails, writing nothing, if a block does not fit its header (payload
/// type above 127, timestamp offset above [`MAX_TIMESTAMP_OFFSET`],
/// redundant block longer than [`MAX_BLOCK_LEN`]) or there are more than
/// [`MAX_BLOCKS`] blocks in all. The primary block's length is implicit and
/// has no such limit.
pub fn write_red(
    redundant: &[RedBlock<'_>],
    primary_pt: u8,
    primary: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), RedError> {
    if primary_pt > 127 {
        return Err(RedError::PayloadType(primary_pt));
    }
    if redundant.len() + 1 > MAX_BLOCKS {
        return Err(RedError::TooManyBlocks);
    }
    redundant.iter().try_for_each(check_redundant)?;
    out.reserve(red_len(redundant, primary.len()));
    for b in redundant {
        // Checked above: offset < 2^14, length < 2^10, so the 24 bits
        // `offset << 10 | length` hold both exactly.
        let bits = (b.timestamp_offset << 10) | b.payload.len() as u32;
        let [_, hi, mid, lo] = bits.to_be_bytes();
        out.extend_from_slice(&[FOLLOWS | b.payload_type, hi, mid, lo]);
    }
    out.push(primary_pt);
    for b in redundant {
        out.extend_from_slice(b.payload);
    }
    out.extend_from_slice(primary);
    Ok(())
}

/// A parsed RED payload: the redundant blocks in packet order (oldest
/// first, as senders write them) and the primary block. Borrows the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedPayload<'a> {
    /// The redundant blocks, in the order they appear in the packet.
    pub redundant: Vec<RedBlock<'a>>,
    /// The primary block (timestamp offset 0).
    pub primary: RedBlock<'a>,
}

/// One block of a RED packet placed on the stream's timeline: see
/// [`RedPayload::frames`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedFrame<'a> {
    /// Sequence number of the packet that carried this frame as its own:
    /// the RED packet's minus `distance`.
    pub seq: u16,
    /// RTP timestamp of the frame: the packet's minus the block's offset.
    pub timestamp: u32,
    /// The block's payload type.
    pub payload_type: u8,
    /// The frame.
    pub payload: &'a [u8],
    /// 0 for the primary block, k for the redundant block k frames back.
    pub distance: u16,
}

impl<'a> RedPayload<'a> {
    /// The number of blocks, the primary included.
    pub fn block_count(&self) -> usize {
        self.redundant.len() + 1
    }

    /// Every block placed on the timeline of the packet (`seq`, `timestamp`)
    /// that carried it, the primary first, then the redundant ones newest
    /// first.
    ///
    /// The redundant block k places from the end (the last one before the
    /// primary is k = 1) is taken as the frame sent k packets earlier, with
    /// sequence number `seq - k`. That holds only when each earlier packet
    /// carried one frame of `frame_ticks` and the blocks are the latest
    /// frames in a row, as Chromium's and `RedEncoder`'s
    /// are; so a redundant block is given only if its offset is exactly
    /// `k * frame_ticks`, and the walk stops at the first one that is not
    /// (after a pause in sending, or from a sender that packs them
    /// otherwise), since no older block can be placed with certainty either.
    /// Empty redundant blocks are skipped (nothing to recover from them).
    pub fn frames(
        &self,
        seq: u16,
        timestamp: u32,
        frame_ticks: u32,
    ) -> impl Iterator<Item = RedFrame<'a>> + '_ {
        let primary = RedFrame {
            seq,
            timestamp,
            payload_type: self.primary.payload_type,
            payload: self.primary.payload,
            distance: 0,
        };
        let redundant = self
            .redundant
            .iter()
            .rev()
            .zip(1u16..)
            .take_while(move |(b, k)| {
                u32::from(*k).checked_mul(frame_ticks) == Some(b.timestamp_offset)
            })
            .filter(|(b, _)| !b.payload.is_empty())
            .map(move |(b, k)| RedFrame {
                seq: seq.wrapping_sub(k),
                timestamp: timestamp.wrapping_sub(b.timestamp_offset),
                payload_type: b.payload_type,
                payload: b.payload,
                distance: k,
            });
        std::iter::once(primary).chain(redundant)
    }
}

/// Parse a RED payload (the RTP payload of a packet whose payload type is
/// the negotiated `audio/red` one).
///
/// Never panics and reads nothing outside `payload`. Fails with a
/// [`RedError`] when the payload is empty, a header is cut short, there are
/// more than [`MAX_BLOCKS`] blocks, or the redundant blocks' lengths run
/// past the end. The primary block may be empty.
pub fn parse_red(payload: &[u8]) -> Result<RedPayload<'_>, RedError> {
    let mut headers: Vec<(u8, u32, usize)> = Vec::new();
    let mut pos = 0;
    let primary_pt = loop {
        let Some(&first) = payload.get(pos) else {
            return Err(if pos == 0 {
                RedError::Empty
            } else {
                RedError::NoPrimaryHeader
            });
        };
        if first & FOLLOWS == 0 {
            pos += PRIMARY_HEADER_LEN;
            break first;
        }
        if headers.len() + 1 >= MAX_BLOCKS {
            return Err(RedError::TooManyBlocks);
        }
        let Some(h) = payload.get(pos..pos + REDUNDANT_HEADER_LEN) else {
            return Err(RedError::TruncatedHeader { at: pos });
        };
        let bits = u32::from_be_bytes([0, h[1], h[2], h[3]]);
        headers.push((first & 0x7f, bits >> 10, (bits & 0x3ff) as usize));
        pos += REDUNDANT_HEADER_LEN;
    };
    let mut redundant = Vec::with_capacity(headers.len());
    for (index, (payload_type, timestamp_offset, len)) in headers.into_iter().enumerate() {
        let Some(data) = payload.get(pos..pos + len) else {
            return Err(RedError::BlockOverrun {
                block: index,
                len,
                left: payload.len() - pos.min(payload.len()),
            });
        };
        redundant.push(RedBlock {
            payload_type,
            timestamp_offset,
            payload: data,
        });
        pos += len;
    }
    Ok(RedPayload {
        redundant,
        primary: RedBlock {
            payload_type: primary_pt,
            timestamp_offset: 0,
            payload: &payload[pos..],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prng::SplitMix64;

    fn block(pt: u8, offset: u32, payload: &[u8]) -> RedBlock<'_> {
        RedBlock {
            payload_type: pt,
            timestamp_offset: offset,
            payload,
        }
    }

    #[test]
    fn header_bit_layout_matches_rfc_2198() {
        // What Chromium's AudioEncoderCopyRed writes at distance 1: the
        // previous 20 ms Opus frame (here 3 bytes) then the current one.
        // 960 << 10 | 3 = 0x0F_0003.
        let mut out = Vec::new();
        write_red(
            &[block(111, 960, &[0xa1, 0xa2, 0xa3])],
            111,
            &[0xb1, 0xb2],
            &mut out,
        )
        .expect("fits");
        assert_eq!(
            out,
            [0xef, 0x0f, 0x00, 0x03, 0x6f, 0xa1, 0xa2, 0xa3, 0xb1, 0xb2]
        );
        // The same bytes spelled as RFC 2198 fields: F=1, PT=111 | offset
        // 960 in 14 bits | length 3 in 10 bits.
        let offset_and_len =
            (u32::from(out[1]) << 16) | (u32::from(out[2]) << 8) | u32::from(out[3]);
        assert_eq!(offset_and_len >> 10, 960);
        assert_eq!(offset_and_len & 0x3ff, 3);
    }

    #[test]
    fn round_trip_with_three_redundant_blocks() {
        let (a, b, c, p) = (vec![1u8; 40], vec![2u8; 1023], vec![3u8; 0], vec![4u8; 77]);
        let red = [
            block(111, 2880, &a),
            block(111, 1920, &b),
            block(111, 960, &c),
        ];
        let mut out = vec![0xee]; // appends
        write_red(&red, 111, &p, &mut out).expect("fits");
        assert_eq!(out.len(), 1 + red_len(&red, p.len()));
        let parsed = parse_red(&out[1..]).expect("parses");
        assert_eq!(parsed.redundant, red);
        assert_eq!(parsed.primary, block(111, 0, &p));
        assert_eq!(parsed.block_count(), 4);
    }

    #[test]
    fn primary_only_and_empty_primary() {
        let mut out = Vec::new();
        write_red(&[], 111, &[9, 9], &mut out).expect("fits");
        assert_eq!(out, [111, 9, 9]);
        let parsed = parse_red(&out).expect("parses");
        assert!(parsed.redundant.is_empty());
        assert_eq!(parsed.primary.payload, &[9, 9]);
        let parsed = parse_red(&[111]).expect("an empty primary is valid");
        assert!(parsed.primary.payload.is_empty());
    }

    #[test]
    fn refuses_blocks_that_do_not_fit_and_writes_nothing() {
        let big = vec![0u8; MAX_BLOCK_LEN + 1];
        let mut out = vec![7];
        let cases = [
            (
                block(111, MAX_TIMESTAMP_OFFSET + 1, &[1]),
                RedError::TimestampOffset(16384),
            ),
            (block(111, 960, &big), RedError::BlockTooLong(1024)),
            (block(128, 960, &[1]), RedError::PayloadType(128)),
        ];
        for (b, want) in cases {
            let err = write_red(&[block(111, 1920, &[5]), b], 111, &[1], &mut out)
                .expect_err("must refuse");
            assert_eq!(err, want);
            assert_eq!(out, [7], "nothing written on error");
        }
        assert_eq!(
            write_red(&[], 200, &[1], &mut out),
            Err(RedError::PayloadType(200))
        );
        let many = vec![block(111, 960, &[1]); MAX_BLOCKS];
        assert_eq!(
            write_red(&many, 111, &[1], &mut out),
            Err(RedError::TooManyBlocks)
        );
        assert_eq!(out, [7]);
        // The limits themselves fit.
        let edge = vec![0u8; MAX_BLOCK_LEN];
        write_red(
            &[block(127, MAX_TIMESTAMP_OFFSET, &edge)],
            127,
            &[],
            &mut out,
        )
        .expect("fits");
        let parsed = parse_red(&out[1..]).expect("parses");
        assert_eq!(parsed.redundant[0].timestamp_offset, MAX_TIMESTAMP_OFFSET);
        assert_eq!(parsed.redundant[0].payload.len(), MAX_BLOCK_LEN);
        assert_eq!(parsed.redundant[0].payload_type, 127);
    }

    #[test]
    fn specific_malformations_give_clear_errors() {
        assert_eq!(parse_red(&[]), Err(RedError::Empty));
        // Only redundant headers, no primary header.
        assert_eq!(
            parse_red(&[0xef, 0x0f, 0x00, 0x00]),
            Err(RedError::NoPrimaryHeader)
        );
        // Redundant header cut short.
        assert_eq!(
            parse_red(&[0xef, 0x0f, 0x00]),
            Err(RedError::TruncatedHeader { at: 0 })
        );
        // Block length 3 with 2 data bytes.
        assert_eq!(
            parse_red(&[0xef, 0x0f, 0x00, 0x03, 111, 1, 2]),
            Err(RedError::BlockOverrun {
                block: 0,
                len: 3,
                left: 2
            })
        );
        // 32 redundant headers: one too many.
        let mut many = Vec::new();
        for _ in 0..MAX_BLOCKS {
            many.extend_from_slice(&[0xef, 0x0f, 0x00, 0x00]);
        }
        many.push(111);
        assert_eq!(parse_red(&many), Err(RedError::TooManyBlocks));
        // 31 redundant (empty) blocks and the primary: the most allowed.
        let ok = &many[4..];
        assert_eq!(parse_red(ok).expect("parses").block_count(), MAX_BLOCKS);
    }

    #[test]
    fn every_truncation_fails_or_parses_consistently() {
        let (a, b, p) = ([1u8; 30], [2u8; 31], [3u8; 32]);
        let mut full = Vec::new();
        write_red(
            &[block(111, 1920, &a), block(111, 960, &b)],
            111,
            &p,
            &mut full,
        )
        .expect("fits");
        let headers = 4 + 4 + 1;
        for n in 0..full.len() {
            match parse_red(&full[..n]) {
                Ok(parsed) => {
                    // Only a cut inside the primary block parses, and then
                    // the redundant blocks are whole.
                    assert!(n >= headers + a.len() + b.len(), "cut at {n} parsed");
                    assert_eq!(parsed.redundant[0].payload, &a);
                    assert_eq!(parsed.redundant[1].payload, &b);
                    assert_eq!(parsed.primary.payload, &p[..n - headers - 61]);
                }
                Err(e) => {
                    assert!(n < headers + a.len() + b.len(), "cut at {n}: {e}");
                    assert!(!e.to_string().is_empty());
                }
            }
        }
    }

    #[test]
    fn random_buffers_never_panic_and_parsed_ones_are_consistent() {
        let mut rng = SplitMix64::new(0x2198);
        let mut ok = 0;
        for i in 0..20_000 {
            let len = (rng.next_u64() % 96) as usize;
            let mut buf = vec![0u8; len];
            rng.fill_bytes(&mut buf);
            if i % 4 == 0 {
                // Shorter lengths and small offsets now and then, so that
                // some random buffers are valid RED.
                for h in (0..len.saturating_sub(4)).step_by(7).take(2) {
                    buf[h] |= 0x80;
                    buf[h + 2] &= 0xfc;
                    buf[h + 3] &= 0x0f;
                }
            }
            if let Ok(parsed) = parse_red(&buf) {
                ok += 1;
                let total = red_len(&parsed.redundant, parsed.primary.payload.len());
                assert_eq!(total, buf.len());
                assert!(parsed.block_count() <= MAX_BLOCKS);
                for f in parsed.frames(100, 5000, 960) {
                    assert!(f.distance as usize <= parsed.redundant.len());
                }
            }
        }
        assert!(ok > 100, "some random buffers should parse ({ok})");
    }

    #[test]
    fn frames_are_placed_by_distance_and_checked_against_offsets() {
        let (f1, f2, f3, p) = ([1u8; 5], [2u8; 5], [3u8; 5], [4u8; 5]);
        let mut out = Vec::new();
        write_red(
            &[
                block(111, 2880, &f3),
                block(111, 1920, &f2),
                block(111, 960, &f1),
            ],
            111,
            &p,
            &mut out,
        )
        .expect("fits");
        let parsed = parse_red(&out).expect("parses");
        let frames: Vec<_> = parsed.frames(1, 1000, 960).collect();
        let placed: Vec<_> = frames
            .iter()
            .map(|f| (f.seq, f.timestamp, f.distance, f.payload[0]))
            .collect();
        // Sequence numbers and timestamps wrap.
        assert_eq!(
            placed,
            [
                (1, 1000, 0, 4),
                (0, 40, 1, 1),
                (65535, 1000u32.wrapping_sub(1920), 2, 2),
                (65534, 1000u32.wrapping_sub(2880), 3, 3),
            ]
        );
        // 10 ms frames: the offsets do not match k * 480, nothing redundant.
        assert_eq!(parsed.frames(1, 1000, 480).count(), 1);

        // A gap (the sender paused): the block before it cannot be placed,
        // nor any older one.
        let mut out = Vec::new();
        write_red(
            &[
                block(111, 3840, &f3),
                block(111, 1920, &f2),
                block(111, 960, &f1),
            ],
            111,
            &p,
            &mut out,
        )
        .expect("fits");
        let parsed = parse_red(&out).expect("parses");
        let distances: Vec<_> = parsed.frames(10, 10_000, 960).map(|f| f.distance).collect();
        assert_eq!(distances, [0, 1, 2]);
    }
}
