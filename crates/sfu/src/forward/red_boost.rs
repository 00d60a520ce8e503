//! Copies the SFU adds to a RED stream for one subscriber whose link loses
//! more than the publisher's redundancy covers.
//!
//! A publisher sets its RED distance from the loss on its own link (the
//! SFU's reports about it); Chromium always sends distance 1. A subscriber
//! on a lossy link may need more: at 40 % loss in bursts, 8
//! (docs/audio-quality.md, "RED"). The SFU keeps the track's recent packets
//! (its retransmission store), so for a leg whose subscriber's reception
//! reports call for a longer distance ([`huddle_wire::red_distance`], the
//! rule the calling crate's sender follows) it rewrites each packet with
//! the frames of the packets before it as redundant blocks. Other legs get
//! the packet as it came: the extra bytes go only where they are needed.
//! Blocks are whole frames, so this needs no plaintext.
//!
//! The blocks are the frames of the packets just before, in a row: a
//! receiver (libwebrtc's RED splitter, `huddle-media`'s jitter buffer)
//! places block k from the primary at sequence number `seq - k`. The walk
//! back stops at the first packet the store no longer has, or whose frame
//! does not fit (a timestamp offset of 2^14 ticks or more, a frame of 1024
//! bytes or more, a payload over [`MAX_PAYLOAD`]). As in `huddle-media`'s
//! encoder, the oldest block is never a DTX frame.

use crate::forward::red::RedFormat;
use crate::forward::red_payload::parse;
use crate::forward::rtx::RtxStore;
use huddle_wire::red_distance::MAX_RED_DISTANCE;
use rtc::rtp::Packet;

/// The least distance the SFU adds copies for: below it (up to about 30 %
/// loss) the publisher's own copies and NACK resends did as well in real
/// calls (PESQ 4.1 at 20 % loss + jitter), and the extra copies only
/// widened the spread between runs (3.2-4.25); at 40 % bursty loss they
/// raised it from 1.6 to 2.2-3.1 (docs/audio-quality.md, "RED").
pub(crate) const MIN_DISTANCE: u8 = 4;
/// Largest RED payload written, as Chromium's and `huddle-media`'s
/// encoders: a packet stays well inside a 1500-byte MTU.
pub(crate) const MAX_PAYLOAD: usize = 1200;
/// Largest timestamp offset a redundant block header holds (14 bits).
const MAX_OFFSET: u32 = (1 << 14) - 1;
/// Largest redundant block a header holds (10 bits).
const MAX_BLOCK: usize = (1 << 10) - 1;
/// A frame this short is DTX or empty (Opus's "nothing to code").
const DTX_LEN: usize = 2;

/// The frame a packet of a track with RED `format` carries: its primary
/// block if it is RED (and well formed), else its whole payload.
fn frame_of(packet: &Packet, format: RedFormat) -> Option<&[u8]> {
    if packet.header.payload_type == format.red_pt {
        let blocks = parse(&packet.payload).ok()?;
        packet.payload.get(blocks.primary().range())
    } else {
        Some(&packet.payload)
    }
}

/// How many redundant blocks the packet already has (0 for plain Opus or
/// a payload that does not parse).
fn own_redundancy(packet: &Packet, format: RedFormat) -> usize {
    if packet.header.payload_type != format.red_pt {
        return 0;
    }
    parse(&packet.payload).map_or(0, |b| b.redundant().len())
}

/// Write into `out` (cleared first) `packet` as a RED payload repeating up
/// to `distance` earlier frames from `store`, every block of payload type
/// `block_pt` (the Opus payload type of the leg it goes out on). Returns
/// the number of redundant blocks written, or `None` when that would be no
/// more than the packet has already (send it as it is).
pub(crate) fn write_boosted(
    packet: &Packet,
    format: RedFormat,
    store: &RtxStore,
    distance: u8,
    block_pt: u8,
    out: &mut Vec<u8>,
) -> Option<usize> {
    let own = own_redundancy(packet, format);
    if usize::from(distance) <= own {
        return None;
    }
    let primary = frame_of(packet, format)?;
    let (seq, ts) = (packet.header.sequence_number, packet.header.timestamp);
    let mut picks: [(u32, &[u8]); MAX_RED_DISTANCE as usize] =
        [(0, &[]); MAX_RED_DISTANCE as usize];
    let mut n = 0;
    let mut len = 1 + primary.len();
    let mut last_offset = 0;
    for back in 1..=u16::from(distance.min(MAX_RED_DISTANCE)) {
        let Some(earlier) = store.get(seq.wrapping_sub(back)) else {
            break;
        };
        let Some(frame) = frame_of(earlier, format) else {
            break;
        };
        let offset = ts.wrapping_sub(earlier.header.timestamp);
        let grown = len + 4 + frame.len();
        if offset <= last_offset
            || offset > MAX_OFFSET
            || frame.len() > MAX_BLOCK
            || grown > MAX_PAYLOAD
        {
            break;
        }
        picks[n] = (offset, frame);
        n += 1;
        len = grown;
        last_offset = offset;
    }
    // The oldest block must be speech.
    while n > 0 && picks[n - 1].1.len() <= DTX_LEN {
        n -= 1;
    }
    if n <= own {
        return None;
    }
    out.clear();
    out.reserve(len);
    let pt = block_pt & 0x7f;
    // Oldest first: headers, then the data in the same order.
    for &(offset, frame) in picks[..n].iter().rev() {
        // Offset < 2^14 and length < 2^10, checked above.
        let bits = (offset << 10) | frame.len() as u32;
        let [_, a, b, c] = bits.to_be_bytes();
        out.extend_from_slice(&[0x80 | pt, a, b, c]);
    }
    out.push(pt);
    for &(_, frame) in picks[..n].iter().rev() {
        out.extend_from_slice(frame);
    }
    out.extend_from_slice(primary);
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::red_payload::tests::red;

    const FORMAT: RedFormat = RedFormat {
        red_pt: 63,
        primary_pt: 111,
    };

    /// Packet `seq` of a distance-1 RED stream (20 ms frames), its frame
    /// `len` bytes of `seq as u8`.
    fn packet(seq: u16, len: usize) -> Packet {
        let frame = vec![seq as u8; len];
        let before = vec![seq.wrapping_sub(1) as u8; len];
        let mut p = Packet::default();
        p.header.sequence_number = seq;
        p.header.timestamp = u32::from(seq) * 960;
        p.header.payload_type = FORMAT.red_pt;
        p.payload = red(&[(111, 960, &before)], 111, &frame).into();
        p
    }

    fn store_of(seqs: impl IntoIterator<Item = u16>, len: usize) -> RtxStore {
        let mut s = RtxStore::new(64);
        for seq in seqs {
            s.insert(&packet(seq, len));
        }
        s
    }

    /// (offset, first byte) of each redundant block and the primary's
    /// first byte, read back by the SFU's own parser.
    fn shape(payload: &[u8]) -> (Vec<(u16, u8)>, u8) {
        let b = parse(payload).expect("well formed");
        (
            b.redundant()
                .iter()
                .map(|x| (x.offset, payload[usize::from(x.start)]))
                .collect(),
            payload[usize::from(b.primary().start)],
        )
    }

    #[test]
    fn repeats_the_frames_before_up_to_the_distance() {
        let store = store_of(10..20, 40);
        let now = packet(20, 40);
        let mut out = Vec::new();
        assert_eq!(
            write_boosted(&now, FORMAT, &store, 4, 96, &mut out),
            Some(4)
        );
        let (blocks, primary) = shape(&out);
        assert_eq!(blocks, [(3840, 16), (2880, 17), (1920, 18), (960, 19)]);
        assert_eq!(primary, 20);
        assert!(
            parse(&out).expect("parses").all_of_type(96),
            "the leg's Opus type"
        );
        assert_eq!(out.len(), 4 * 4 + 1 + 5 * 40);
        // No more than the packet has: as it is.
        assert_eq!(write_boosted(&now, FORMAT, &store, 1, 96, &mut out), None);
    }

    #[test]
    fn stops_at_a_gap_a_dtx_frame_and_the_size_limit() {
        let mut out = Vec::new();
        // 17 is not in the store: 18 and 19 only.
        let store = store_of((10..20).filter(|&s| s != 17), 40);
        assert_eq!(
            write_boosted(&packet(20, 40), FORMAT, &store, 8, 111, &mut out),
            Some(2)
        );
        // The oldest of the walk is DTX: left out.
        let mut store = store_of(15..20, 40);
        store.insert(&packet(16, 1));
        assert_eq!(
            write_boosted(&packet(20, 40), FORMAT, &store, 4, 111, &mut out),
            Some(3)
        );
        // 300-byte frames: 2 more fit in 1200 bytes, not 8.
        let store = store_of(10..20, 300);
        assert_eq!(
            write_boosted(&packet(20, 300), FORMAT, &store, 8, 111, &mut out),
            Some(2)
        );
        assert!(out.len() <= MAX_PAYLOAD);
        // A frame too long for a block header ends the walk.
        let store = store_of(10..20, 1100);
        assert_eq!(
            write_boosted(&packet(20, 50), FORMAT, &store, 8, 111, &mut out),
            None
        );
    }

    #[test]
    fn plain_opus_and_a_restarted_clock_are_handled() {
        let mut out = Vec::new();
        // Plain Opus packets (RED negotiated, not used): wrapped from 0.
        let mut store = RtxStore::new(64);
        for seq in 5..10u16 {
            let mut p = packet(seq, 30);
            p.header.payload_type = FORMAT.primary_pt;
            p.payload = vec![seq as u8; 30].into();
            store.insert(&p);
        }
        let mut now = packet(10, 30);
        now.header.payload_type = FORMAT.primary_pt;
        now.payload = vec![10; 30].into();
        assert_eq!(
            write_boosted(&now, FORMAT, &store, 2, 111, &mut out),
            Some(2)
        );
        assert_eq!(shape(&out), (vec![(1920, 8), (960, 9)], 10));
        // Timestamps that do not go back with the sequence numbers.
        store.insert(&now);
        let mut odd = packet(11, 30);
        odd.header.timestamp = 0;
        assert_eq!(write_boosted(&odd, FORMAT, &store, 4, 111, &mut out), None);
    }
}
