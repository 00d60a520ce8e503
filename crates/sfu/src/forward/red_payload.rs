//! The block layout of an RFC 2198 (RED) payload, read in place: where
//! each block starts and ends, its payload type and timestamp offset. No
//! allocation (at most [`MAX_BLOCKS`] blocks, kept in an array), no
//! panic, nothing read outside the payload, whatever the input.
//!
//! ```text
//! redundant block header:  |1| block PT (7) | timestamp offset (14) | block length (10) |
//! primary block header:    |0| block PT (7) |
//! ```
//!
//! The headers come first (every redundant block's, then the primary's),
//! then the blocks' data in the same order; the primary block runs to the
//! end of the payload. `huddle-media` has the writer and a parser that
//! builds vectors; the SFU reads each packet once per arrival and must
//! not allocate for it.

/// Most blocks (redundant ones plus the primary) a payload may have, as
/// libwebrtc's RED splitter and `huddle_media::rtp::MAX_BLOCKS`: more is
/// not RED any sender writes, and is refused.
pub(crate) const MAX_BLOCKS: usize = 32;

/// Length of a redundant block's header.
const REDUNDANT_HEADER_LEN: usize = 4;
/// The F bit: set on a redundant block's header, clear on the primary's.
const FOLLOWS: u8 = 0x80;

/// Why a RED payload was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RedPayloadError {
    /// No bytes at all.
    #[error("empty RED payload")]
    Empty,
    /// A redundant block header is cut short.
    #[error("RED block header cut short at byte {0}")]
    TruncatedHeader(usize),
    /// Only redundant block headers: the primary's is missing.
    #[error("RED payload has no primary block header")]
    NoPrimary,
    /// More than [`MAX_BLOCKS`] blocks.
    #[error("more than {MAX_BLOCKS} RED blocks")]
    TooManyBlocks,
    /// A redundant block's length runs past the end of the payload.
    #[error("RED block {0} runs past the end of the payload")]
    Overrun(usize),
    /// Longer than an RTP payload can be (64 KiB).
    #[error("RED payload of {0} bytes")]
    TooLong(usize),
}

/// One block of a RED payload: where its data lies in the payload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Block {
    /// Its payload type.
    pub pt: u8,
    /// How many RTP clock ticks before the packet's timestamp its own
    /// lies (0 for the primary block).
    pub offset: u16,
    /// Its data: `payload[start..end]`.
    pub start: u16,
    /// See `start`.
    pub end: u16,
}

impl Block {
    /// Its data, in the payload it was read from.
    pub fn range(&self) -> std::ops::Range<usize> {
        usize::from(self.start)..usize::from(self.end)
    }

    /// Whether it carries no data.
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// The blocks of one RED payload: the redundant ones in packet order
/// (oldest first, as senders write them), then the primary.
#[derive(Debug, Clone)]
pub(crate) struct RedBlocks {
    blocks: [Block; MAX_BLOCKS],
    /// How many of `blocks` are redundant; `blocks[redundant]` is the
    /// primary.
    redundant: usize,
}

impl RedBlocks {
    /// The redundant blocks, oldest first.
    pub fn redundant(&self) -> &[Block] {
        &self.blocks[..self.redundant]
    }

    /// The primary block (the packet's own frame).
    pub fn primary(&self) -> Block {
        self.blocks[self.redundant]
    }

    /// Whether every block, the primary included, has payload type `pt`.
    pub fn all_of_type(&self, pt: u8) -> bool {
        self.blocks[..=self.redundant].iter().all(|b| b.pt == pt)
    }
}

/// Read the block layout of the RED payload `payload`. See the module
/// docs; the primary block may be empty.
pub(crate) fn parse(payload: &[u8]) -> Result<RedBlocks, RedPayloadError> {
    if payload.is_empty() {
        return Err(RedPayloadError::Empty);
    }
    if payload.len() > usize::from(u16::MAX) {
        return Err(RedPayloadError::TooLong(payload.len()));
    }
    let mut blocks = [Block::default(); MAX_BLOCKS];
    let mut n = 0;
    let mut pos = 0;
    // Headers: lengths only for now, `end` holds the block's length.
    let primary_pt = loop {
        let Some(&first) = payload.get(pos) else {
            return Err(RedPayloadError::NoPrimary);
        };
        if first & FOLLOWS == 0 {
            pos += 1;
            break first;
        }
        if n + 1 >= MAX_BLOCKS {
            return Err(RedPayloadError::TooManyBlocks);
        }
        let Some(&[_, a, b, c]) = payload.get(pos..pos + REDUNDANT_HEADER_LEN) else {
            return Err(RedPayloadError::TruncatedHeader(pos));
        };
        let bits = u32::from_be_bytes([0, a, b, c]);
        blocks[n] = Block {
            pt: first & 0x7f,
            // 14 and 10 bits: both fit a u16.
            offset: (bits >> 10) as u16,
            start: 0,
            end: (bits & 0x3ff) as u16,
        };
        n += 1;
        pos += REDUNDANT_HEADER_LEN;
    };
    // Data: place each redundant block after the one before it.
    for (i, block) in blocks[..n].iter_mut().enumerate() {
        let len = usize::from(block.end);
        let end = pos + len;
        if end > payload.len() {
            return Err(RedPayloadError::Overrun(i));
        }
        // Both within the payload, which fits a u16 (checked above).
        block.start = pos as u16;
        block.end = end as u16;
        pos = end;
    }
    blocks[n] = Block {
        pt: primary_pt,
        offset: 0,
        start: pos as u16,
        end: payload.len() as u16,
    };
    Ok(RedBlocks {
        blocks,
        redundant: n,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A RED payload of `redundant` blocks (pt, offset, data), oldest
    /// first, and a primary block: RFC 2198 written by hand, as a sender
    /// would (the SFU itself never writes RED).
    pub(crate) fn red(redundant: &[(u8, u16, &[u8])], primary_pt: u8, primary: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for &(pt, offset, data) in redundant {
            let bits = (u32::from(offset) << 10) | data.len() as u32;
            let [_, a, b, c] = bits.to_be_bytes();
            out.extend_from_slice(&[FOLLOWS | pt, a, b, c]);
        }
        out.push(primary_pt);
        for &(_, _, data) in redundant {
            out.extend_from_slice(data);
        }
        out.extend_from_slice(primary);
        out
    }

    #[test]
    fn reads_what_chromium_writes() {
        // Distance 1: the previous 20 ms frame (offset 960), then this one.
        let payload = [0xef, 0x0f, 0x00, 0x03, 0x6f, 0xa1, 0xa2, 0xa3, 0xb1, 0xb2];
        let blocks = parse(&payload).expect("parses");
        assert_eq!(
            blocks.redundant(),
            [Block {
                pt: 111,
                offset: 960,
                start: 5,
                end: 8
            }]
        );
        assert_eq!(&payload[blocks.redundant()[0].range()], [0xa1, 0xa2, 0xa3]);
        assert_eq!(&payload[blocks.primary().range()], [0xb1, 0xb2]);
        assert_eq!(blocks.primary().pt, 111);
        assert!(blocks.all_of_type(111));
        assert!(!blocks.all_of_type(109));
    }

    #[test]
    fn blocks_come_back_as_written() {
        let (a, b, p) = ([1u8; 40], [2u8; 1023], [4u8; 77]);
        let payload = red(
            &[(111, 2880, &a), (111, 1920, &b), (111, 960, &[])],
            111,
            &p,
        );
        let blocks = parse(&payload).expect("parses");
        let got: Vec<_> = blocks
            .redundant()
            .iter()
            .map(|b| (b.offset, &payload[b.range()]))
            .collect();
        assert_eq!(
            got,
            [(2880, &a[..]), (1920, &b[..]), (960, &[][..])],
            "oldest first, an empty block kept in its place"
        );
        assert!(blocks.redundant()[2].is_empty());
        assert_eq!(&payload[blocks.primary().range()], p);
        // The primary alone, and an empty primary.
        assert!(parse(&[111, 9]).expect("parses").redundant().is_empty());
        assert!(parse(&[111]).expect("parses").primary().is_empty());
    }

    #[test]
    fn malformed_payloads_are_refused() {
        assert_eq!(parse(&[]).err(), Some(RedPayloadError::Empty));
        assert_eq!(
            parse(&[0xef, 0x0f, 0x00]).err(),
            Some(RedPayloadError::TruncatedHeader(0))
        );
        assert_eq!(
            parse(&[0xef, 0x0f, 0x00, 0x00]).err(),
            Some(RedPayloadError::NoPrimary)
        );
        // Length 3, two bytes there.
        assert_eq!(
            parse(&[0xef, 0x0f, 0x00, 0x03, 111, 1, 2]).err(),
            Some(RedPayloadError::Overrun(0))
        );
        // 31 redundant blocks and the primary are the most there may be.
        let empty: &[u8] = &[];
        let most = red(&[(111, 0, empty); MAX_BLOCKS - 1], 111, &[1]);
        assert_eq!(
            parse(&most).map(|b| b.redundant().len()),
            Ok(MAX_BLOCKS - 1)
        );
        let more = red(&[(111, 0, empty); MAX_BLOCKS], 111, &[1]);
        assert_eq!(parse(&more).err(), Some(RedPayloadError::TooManyBlocks));
        assert_eq!(
            parse(&vec![111; 70_000]).err(),
            Some(RedPayloadError::TooLong(70_000))
        );
    }

    #[test]
    fn every_truncation_is_refused_or_read_within_bounds() {
        let (a, b, p) = ([1u8; 30], [2u8; 31], [3u8; 32]);
        let full = red(&[(111, 1920, &a), (111, 960, &b)], 111, &p);
        let data_start = 4 + 4 + 1 + a.len() + b.len();
        for n in 0..=full.len() {
            match parse(&full[..n]) {
                Ok(blocks) => {
                    assert!(n >= data_start, "cut at {n} parsed");
                    assert_eq!(&full[blocks.redundant()[1].range()], b);
                    assert_eq!(blocks.primary().range(), data_start..n);
                }
                Err(e) => assert!(n < data_start, "cut at {n}: {e}"),
            }
        }
    }

    #[test]
    fn random_bytes_never_panic_and_blocks_tile_the_payload() {
        // SplitMix64, seeded: the same buffers every run.
        let mut state = 0x2198_u64;
        let mut next = move || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let mut parsed = 0;
        for i in 0..20_000 {
            let len = (next() % 160) as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if i % 2 == 0 {
                // Small lengths now and then, so that some buffers are RED.
                for h in (0..len.saturating_sub(4)).step_by(4).take(3) {
                    buf[h] |= FOLLOWS;
                    buf[h + 2] &= 0xfc;
                    buf[h + 3] &= 0x0f;
                }
            }
            if let Ok(blocks) = parse(&buf) {
                parsed += 1;
                // The blocks' data follows the headers, in order, without
                // gaps, to the end.
                let headers = REDUNDANT_HEADER_LEN * blocks.redundant().len() + 1;
                let mut at = headers;
                for b in blocks.redundant().iter().chain([&blocks.primary()]) {
                    assert_eq!(b.range().start, at);
                    at = b.range().end;
                }
                assert_eq!(at, buf.len());
            }
        }
        assert!(parsed > 500, "some random buffers should parse ({parsed})");
    }
}
