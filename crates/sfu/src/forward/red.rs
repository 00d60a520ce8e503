//! RED (RFC 2198, `audio/red`) on the forwarding path: what each leg gets
//! of a packet of a track whose publisher negotiated RED, and the plain
//! Opus stream made for subscribers that did not.
//!
//! A leg whose subscriber took RED gets the publisher's packets as they
//! are ([`Form::AsIs`]; only the SSRC and payload type change, as for any
//! packet). A leg without RED gets plain Opus ([`Form::Strip`]): the
//! primary block of each RED packet, under the packet's own sequence
//! number and timestamp. When a packet is missing from the publisher's
//! stream (lost on the way to the SFU), the redundant blocks of the packets
//! after it carry its frame: [`Strip`] sends that frame as the lost packet
//! (its sequence number; timestamp = the primary's minus the block's
//! offset), so a subscriber without RED gets it too.
//!
//! Sequence numbers stay the publisher's: the stripped stream is the
//! publisher's stream with its gaps filled where the redundancy allows, so
//! NACKs and sender reports map as for any other leg. Nothing goes out
//! twice: [`Strip`] remembers which of the last [`WINDOW`] sequence numbers
//! it let through (recovered or not), so an original that arrives after
//! its frame was recovered, or a block seen in two packets, is not sent
//! again, and nothing older than the window is sent at all.
//!
//! A redundant block is placed only where that is certain: block k from
//! the primary (k = 1 the last before it) is the frame of packet
//! `seq - k` only if its offset is exactly k frames (frame length learned
//! from consecutive packets), as Chromium and `huddle-media`'s encoder
//! write them. The walk stops at the first block that is not (after a DTX
//! pause, or a sender that packs blocks otherwise): a block that cannot be
//! placed is not sent.

use crate::forward::red_payload::{parse, Block, RedBlocks, RedPayloadError, MAX_BLOCKS};
use huddle_wire::codecs::MIME_TYPE_RED;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS;
use rtc::rtp_transceiver::rtp_sender::RTCRtpCodecParameters;

/// RED as a publisher's track carries it, in the numbering of the
/// publisher's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RedFormat {
    /// Payload type of its RED packets.
    pub red_pt: u8,
    /// Payload type of the Opus frames in their blocks (and of its plain
    /// Opus packets).
    pub primary_pt: u8,
}

/// RED among the codecs a publisher's connection negotiated for a track:
/// an `audio/red` codec and the Opus its blocks carry. The Opus payload
/// type is the one the connection negotiated (the SFU's numbering, which
/// its answer gave the publisher), not the one the publisher's offer named
/// in RED's fmtp: `rtc` maps a peer's numbers onto its codec table, but
/// leaves fmtp lines as the peer wrote them.
pub(crate) fn negotiated_red(codecs: &[RTCRtpCodecParameters]) -> Option<RedFormat> {
    let pt = |mime: &str| {
        codecs
            .iter()
            .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(mime))
            .map(|c| c.payload_type)
    };
    Some(RedFormat {
        red_pt: pt(MIME_TYPE_RED)?,
        primary_pt: pt(MIME_TYPE_OPUS)?,
    })
}

/// Why a packet of a RED track was dropped (counted as
/// `SfuStats::red_malformed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RedRefused {
    /// Not a RED payload.
    #[error(transparent)]
    Malformed(#[from] RedPayloadError),
    /// A block of another payload type than the track's Opus.
    #[error("RED block of payload type {0}, not the track's Opus")]
    OtherPayloadType(u8),
}

/// How many recent sequence numbers [`Strip`] remembers (2.56 s of 20 ms
/// packets): nothing older is sent to a leg without RED.
pub(crate) const WINDOW: u16 = 128;

/// A packet further behind the newest than this is not late but a new
/// numbering (a sender that restarted its sequence): [`Strip`] starts
/// over from it instead of dropping everything until the numbers catch up.
const RESTART: u16 = 1024;

/// Longest frame learned as the track's frame length: 120 ms at 48 kHz,
/// the longest Opus packet. A longer step between consecutive packets is
/// a pause (DTX), not a frame.
const MAX_FRAME_TICKS: u32 = 5760;

/// `a` comes after `b` in RTP sequence order (RFC 3550 wrapping).
fn after(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000
}

/// One plain Opus packet for legs without RED: a block of the arriving
/// packet under its own sequence number and timestamp.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Piece {
    /// Its sequence number.
    pub seq: u16,
    /// Its RTP timestamp.
    pub ts: u32,
    /// Its data: `payload[start..end]` of the arriving packet.
    pub start: u16,
    /// See `start`.
    pub end: u16,
    /// A frame recovered from a redundant block (its own packet was lost).
    pub recovered: bool,
}

impl Piece {
    /// Its data in the arriving packet's payload.
    pub fn range(&self) -> std::ops::Range<usize> {
        usize::from(self.start)..usize::from(self.end)
    }
}

/// The plain packets one arriving packet gives legs without RED, oldest
/// first: recovered frames, then the packet's own (unless it went out
/// already). Fixed size: no allocation.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pieces: [Piece; MAX_BLOCKS],
    len: usize,
}

impl Default for Plan {
    fn default() -> Self {
        Self {
            pieces: [Piece::default(); MAX_BLOCKS],
            len: 0,
        }
    }
}

impl Plan {
    /// The packets to send, oldest first.
    pub fn pieces(&self) -> &[Piece] {
        &self.pieces[..self.len]
    }

    fn push(&mut self, piece: Piece) {
        if let Some(slot) = self.pieces.get_mut(self.len) {
            *slot = piece;
            self.len += 1;
        }
    }
}

/// Where a sequence number stands in the stripped stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// After everything sent.
    New,
    /// Within the window, not sent.
    Missing,
    /// Within the window, sent.
    Sent,
    /// Before the window.
    Old,
}

/// The plain Opus stream made of one received RED stream (one per received
/// stream, like its padding filter). See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Strip {
    /// The newest sequence number sent.
    newest: Option<u16>,
    /// Bit i: `newest - i` was sent.
    sent: u128,
    /// Ticks between consecutive frames, once two consecutive packets came.
    frame_ticks: Option<u32>,
    /// The newest packet received (sequence number, timestamp).
    last_rx: Option<(u16, u32)>,
}

impl Strip {
    /// A RED packet (`seq`, `ts`) with `blocks` arrived: the plain packets
    /// it gives, each marked as sent.
    pub fn red(&mut self, seq: u16, ts: u32, blocks: &RedBlocks) -> Plan {
        self.arrive(seq, ts);
        let mut plan = Plan::default();
        // Recovered frames, newest first, then reversed.
        let mut found = [Piece::default(); MAX_BLOCKS];
        let mut n = 0;
        if let (Some(ticks), Some(_)) = (self.frame_ticks, self.newest) {
            for (block, k) in blocks.redundant().iter().rev().zip(1u16..) {
                if u32::from(k) * ticks != u32::from(block.offset) {
                    break; // not the frame of packet seq - k
                }
                let target = seq.wrapping_sub(k);
                match self.place(target) {
                    Place::Old => break,
                    Place::Sent => continue,
                    Place::New | Place::Missing if block.is_empty() => continue,
                    Place::New | Place::Missing => {
                        found[n] = piece(target, ts.wrapping_sub(u32::from(block.offset)), block);
                        found[n].recovered = true;
                        n += 1;
                    }
                }
            }
        }
        for p in found[..n].iter().rev() {
            plan.push(*p);
        }
        if matches!(self.place(seq), Place::New | Place::Missing) {
            plan.push(piece(seq, ts, &blocks.primary()));
        }
        for p in plan.pieces() {
            self.mark(p.seq);
        }
        plan
    }

    /// A plain packet (`seq`, `ts`, `len` bytes of payload) of the same
    /// stream arrived (its sender switched RED off): itself, unless it went
    /// out already.
    pub fn plain(&mut self, seq: u16, ts: u32, len: u16) -> Plan {
        self.arrive(seq, ts);
        let mut plan = Plan::default();
        if matches!(self.place(seq), Place::New | Place::Missing) {
            plan.push(Piece {
                seq,
                ts,
                start: 0,
                end: len,
                recovered: false,
            });
            self.mark(seq);
        }
        plan
    }

    /// A packet (`seq`, `ts`) that is not forwarded (its track is muted):
    /// counted as sent, so no later packet's redundancy brings its frame
    /// back.
    pub fn skip(&mut self, seq: u16, ts: u32) {
        self.arrive(seq, ts);
        self.mark(seq);
    }

    /// Learn the frame length from consecutive packets; start over on a
    /// new numbering.
    fn arrive(&mut self, seq: u16, ts: u32) {
        if let Some(newest) = self.newest {
            if newest.wrapping_sub(seq) > RESTART && !after(seq, newest) {
                *self = Strip::default();
            }
        }
        match self.last_rx {
            Some((last, _)) if !after(seq, last) => {}
            Some((last, last_ts)) if seq == last.wrapping_add(1) => {
                let step = ts.wrapping_sub(last_ts);
                if (1..=MAX_FRAME_TICKS).contains(&step) {
                    self.frame_ticks = Some(step);
                }
                self.last_rx = Some((seq, ts));
            }
            _ => self.last_rx = Some((seq, ts)),
        }
    }

    fn place(&self, seq: u16) -> Place {
        let Some(newest) = self.newest else {
            return Place::New;
        };
        if after(seq, newest) {
            return Place::New;
        }
        let age = newest.wrapping_sub(seq);
        if age >= WINDOW {
            Place::Old
        } else if self.sent >> age & 1 == 1 {
            Place::Sent
        } else {
            Place::Missing
        }
    }

    fn mark(&mut self, seq: u16) {
        match self.newest {
            Some(newest) if !after(seq, newest) => {
                let age = newest.wrapping_sub(seq);
                if age < WINDOW {
                    self.sent |= 1 << age;
                }
            }
            Some(newest) => {
                let shift = seq.wrapping_sub(newest);
                self.sent = if shift >= WINDOW {
                    0
                } else {
                    self.sent << shift
                };
                self.sent |= 1;
                self.newest = Some(seq);
            }
            None => {
                // What came before the first packet is not the stream's:
                // count it as sent, so no block brings it back.
                self.sent = u128::MAX;
                self.newest = Some(seq);
            }
        }
    }
}

fn piece(seq: u16, ts: u32, block: &Block) -> Piece {
    Piece {
        seq,
        ts,
        start: block.start,
        end: block.end,
        recovered: false,
    }
}

/// A packet of a RED track as the SFU forwards it: whether it is RED, and
/// the plain packets it gives legs without RED.
#[derive(Debug, Clone)]
pub(crate) struct Arrival {
    /// It is RED (its payload type is the track's RED one); else plain Opus.
    pub red: bool,
    /// The plain packets for legs without RED.
    pub plan: Plan,
}

/// A packet (`pt`, `seq`, `ts`, `payload`) of a track with RED `format`
/// arrived on the stream `strip` follows. Refused when it is RED and not
/// well formed, or its blocks are not the track's Opus.
pub(crate) fn arrive(
    format: RedFormat,
    strip: &mut Strip,
    pt: u8,
    seq: u16,
    ts: u32,
    payload: &[u8],
) -> Result<Arrival, RedRefused> {
    if pt != format.red_pt {
        let len =
            u16::try_from(payload.len()).map_err(|_| RedPayloadError::TooLong(payload.len()))?;
        return Ok(Arrival {
            red: false,
            plan: strip.plain(seq, ts, len),
        });
    }
    let blocks = parse(payload)?;
    if !blocks.all_of_type(format.primary_pt) {
        let other = blocks
            .redundant()
            .iter()
            .chain([&blocks.primary()])
            .map(|b| b.pt)
            .find(|&pt| pt != format.primary_pt)
            .unwrap_or(format.primary_pt);
        return Err(RedRefused::OtherPayloadType(other));
    }
    Ok(Arrival {
        red: true,
        plan: strip.red(seq, ts, &blocks),
    })
}

/// What one leg gets of a packet of a RED track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    /// The packet as it is, with this payload type.
    AsIs(u8),
    /// The plain Opus packets of its [`Plan`], with this payload type.
    Strip(u8),
}

/// What a leg gets of a packet (RED when `red`) of a track with RED
/// `format`, the leg's connection having negotiated payload type
/// `primary` for Opus and `leg_red` for RED (if it took RED). A leg takes
/// RED as it is only when its blocks' payload type is the publisher's, so
/// they need no rewriting. That is always so: both connections number
/// codecs from the SFU's one codec table (rtc maps a peer's numbers onto
/// it), and the blocks are checked against the publisher's Opus on
/// arrival ([`arrive`]). Were it not, the leg would get plain Opus.
pub(crate) fn form(red: bool, format: RedFormat, primary: u8, leg_red: Option<u8>) -> Form {
    let takes_red = leg_red.is_some() && primary == format.primary_pt;
    match (red, leg_red) {
        (true, Some(red_pt)) if takes_red => Form::AsIs(red_pt),
        (false, _) if takes_red => Form::AsIs(primary),
        _ => Form::Strip(primary),
    }
}

/// The primary block of a stored RED packet (`seq`, `ts`, `payload`) as
/// one plain packet: what a NACK for it resends to a leg without RED.
/// `None` when the payload is not RED.
pub(crate) fn primary_piece(seq: u16, ts: u32, payload: &[u8]) -> Option<Piece> {
    parse(payload)
        .ok()
        .map(|blocks| piece(seq, ts, &blocks.primary()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::red_payload::tests::red;

    const OPUS: u8 = 111;
    const FORMAT: RedFormat = RedFormat {
        red_pt: 63,
        primary_pt: OPUS,
    };

    /// The RED packet `seq` of a 20 ms stream at distance `distance`:
    /// frame n's data is `[n as u8; 10]`, timestamp `n * 960`.
    fn packet(seq: u16, distance: u16) -> (u32, Vec<u8>) {
        let frame = |n: u16| vec![n as u8; 10];
        let olds: Vec<(u16, Vec<u8>)> = (1..=distance)
            .rev()
            .map(|k| (k * 960, frame(seq.wrapping_sub(k))))
            .collect();
        let blocks: Vec<(u8, u16, &[u8])> =
            olds.iter().map(|(o, f)| (OPUS, *o, f.as_slice())).collect();
        (u32::from(seq) * 960, red(&blocks, OPUS, &frame(seq)))
    }

    /// What the strip sends for RED packets `seqs` (in arrival order):
    /// (seq, ts, first data byte, recovered) per plain packet.
    fn run(strip: &mut Strip, seqs: &[u16], distance: u16) -> Vec<(u16, u32, u8, bool)> {
        let mut out = Vec::new();
        for &seq in seqs {
            let (ts, payload) = packet(seq, distance);
            let a = arrive(FORMAT, strip, 63, seq, ts, &payload).expect("well formed");
            assert!(a.red);
            for p in a.plan.pieces() {
                out.push((p.seq, p.ts, payload[p.range()][0], p.recovered));
            }
        }
        out
    }

    fn seqs(out: &[(u16, u32, u8, bool)]) -> Vec<u16> {
        out.iter().map(|p| p.0).collect()
    }

    #[test]
    fn in_order_packets_give_their_primaries() {
        let mut s = Strip::default();
        let out = run(&mut s, &[10, 11, 12], 1);
        assert_eq!(
            out,
            [
                (10, 9600, 10, false),
                (11, 10_560, 11, false),
                (12, 11_520, 12, false)
            ]
        );
    }

    #[test]
    fn a_lost_packet_is_recovered_from_the_next() {
        let mut s = Strip::default();
        let out = run(&mut s, &[10, 11, 13], 1);
        assert_eq!(
            &out[2..],
            [(12, 11_520, 12, true), (13, 12_480, 13, false)],
            "12's frame, with 12's number and timestamp, before 13"
        );
    }

    #[test]
    fn a_burst_is_recovered_as_far_as_the_distance_reaches() {
        // Distance 2: three lost, the oldest cannot come back.
        let mut s = Strip::default();
        let out = run(&mut s, &[10, 11, 15], 2);
        assert_eq!(seqs(&out), [10, 11, 13, 14, 15]);
        assert_eq!(out[2], (13, 12_480, 13, true));
        assert_eq!(out[3], (14, 13_440, 14, true));
        // Distance 3: the three come back, oldest first.
        let mut s = Strip::default();
        let out = run(&mut s, &[10, 11, 15], 3);
        assert_eq!(seqs(&out), [10, 11, 12, 13, 14, 15]);
        assert!(out[2..5].iter().all(|p| p.3));
    }

    #[test]
    fn nothing_goes_out_twice() {
        let mut s = Strip::default();
        // 12 lost, recovered from 13; then 12 arrives late, and 13 again.
        let out = run(&mut s, &[10, 11, 13, 12, 13, 14], 2);
        assert_eq!(seqs(&out), [10, 11, 12, 13, 14]);
        // A plain packet already sent is not sent either.
        let a = arrive(FORMAT, &mut s, OPUS, 14, 14 * 960, &[1, 2]).expect("plain");
        assert!(!a.red);
        assert!(a.plan.pieces().is_empty());
        let a = arrive(FORMAT, &mut s, OPUS, 15, 15 * 960, &[1, 2]).expect("plain");
        assert_eq!(a.plan.pieces()[0].range(), 0..2);
    }

    #[test]
    fn a_late_packet_still_missing_goes_out_but_not_one_older_than_the_window() {
        let mut s = Strip::default();
        // No redundancy: 12 never came back.
        let out = run(&mut s, &[10, 11, 13, 14, 12], 0);
        assert_eq!(
            seqs(&out),
            [10, 11, 13, 14, 12],
            "12 late, never sent: sent"
        );
        let mut s = Strip::default();
        let mut order: Vec<u16> = vec![10, 11];
        order.extend(13..13 + WINDOW);
        order.push(12); // WINDOW packets late
        let out = run(&mut s, &order, 0);
        assert!(!seqs(&out).contains(&12), "older than the window");
    }

    #[test]
    fn a_block_that_cannot_be_placed_is_not_sent() {
        // A pause (DTX) between 11 and 12: 12 is two frames after 11, and
        // 13 one after 12. Block k = 1 is packet 12 whatever came before.
        let mut s = Strip::default();
        run(&mut s, &[10, 11], 1);
        let payload = red(&[(OPUS, 960, &[12; 10])], OPUS, &[13; 10]);
        let a = arrive(FORMAT, &mut s, 63, 13, 14 * 960, &payload).expect("well formed");
        // 12 is at 13 * 960: offset 960 is one frame, so it is placed.
        assert_eq!(a.plan.pieces()[0].seq, 12);
        assert_eq!(a.plan.pieces()[0].ts, 13 * 960);
        // An offset of 1.5 frames is no frame of a packet: not sent.
        let mut s = Strip::default();
        run(&mut s, &[10, 11], 1);
        let payload = red(&[(OPUS, 1440, &[12; 10])], OPUS, &[13; 10]);
        let a = arrive(FORMAT, &mut s, 63, 13, 13 * 960, &payload).expect("well formed");
        assert_eq!(a.plan.pieces().len(), 1, "the primary alone");
        assert!(!a.plan.pieces()[0].recovered);
    }

    #[test]
    fn nothing_is_recovered_before_the_first_packet_or_the_frame_length() {
        let mut s = Strip::default();
        let out = run(&mut s, &[10], 2);
        assert_eq!(seqs(&out), [10], "nothing before the stream began");
        // One packet, then a gap: the frame length is not known yet.
        let out = run(&mut s, &[12], 2);
        assert_eq!(seqs(&out), [12]);
    }

    #[test]
    fn frames_not_forwarded_are_not_recovered_later() {
        let mut s = Strip::default();
        run(&mut s, &[10, 11], 2);
        s.skip(12, 12 * 960);
        s.skip(13, 13 * 960);
        let out = run(&mut s, &[14], 2);
        assert_eq!(seqs(&out), [14], "muted 12 and 13 stay out");
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut s = Strip::default();
        let out = run(&mut s, &[65_533, 65_534, 0], 2);
        assert_eq!(seqs(&out), [65_533, 65_534, 65_535, 0]);
        assert_eq!(out[2].1, 0u32.wrapping_sub(960), "one frame before 0's");
    }

    #[test]
    fn a_new_numbering_starts_over() {
        let mut s = Strip::default();
        run(&mut s, &[30_000, 30_001], 1);
        let out = run(&mut s, &[1000, 1001, 1002], 1);
        assert_eq!(seqs(&out), [1000, 1001, 1002]);
    }

    #[test]
    fn malformed_or_foreign_red_is_refused() {
        let mut s = Strip::default();
        let err = arrive(FORMAT, &mut s, 63, 1, 0, &[0xef, 0x0f]).expect_err("cut short");
        assert_eq!(
            err,
            RedRefused::Malformed(RedPayloadError::TruncatedHeader(0))
        );
        let g711 = red(&[(0, 960, &[1])], OPUS, &[2]);
        assert_eq!(
            arrive(FORMAT, &mut s, 63, 1, 0, &g711).expect_err("foreign"),
            RedRefused::OtherPayloadType(0)
        );
    }

    #[test]
    fn each_leg_gets_red_only_if_it_took_it() {
        assert_eq!(form(true, FORMAT, OPUS, Some(63)), Form::AsIs(63));
        assert_eq!(form(false, FORMAT, OPUS, Some(63)), Form::AsIs(OPUS));
        assert_eq!(form(true, FORMAT, OPUS, None), Form::Strip(OPUS));
        assert_eq!(form(false, FORMAT, OPUS, None), Form::Strip(OPUS));
        // Blocks that would need another payload type: plain Opus.
        assert_eq!(form(true, FORMAT, 109, Some(63)), Form::Strip(109));
    }

    #[test]
    fn red_is_negotiated_with_opus_only() {
        use huddle_wire::codecs::{opus, red as red_codec, vp8};
        let at = |rtp_codec, payload_type| RTCRtpCodecParameters {
            rtp_codec,
            payload_type,
        };
        assert_eq!(
            negotiated_red(&[at(opus(), 111), at(red_codec(), 63)]),
            Some(FORMAT)
        );
        assert_eq!(negotiated_red(&[at(opus(), 111)]), None);
        assert_eq!(negotiated_red(&[at(red_codec(), 63), at(vp8(), 96)]), None);
    }

    #[test]
    fn a_resend_to_a_leg_without_red_is_the_primary() {
        let (ts, payload) = packet(20, 2);
        let p = primary_piece(20, ts, &payload).expect("RED");
        assert_eq!((p.seq, p.ts), (20, ts));
        assert_eq!(&payload[p.range()], [20; 10]);
        assert_eq!(primary_piece(20, ts, &[]), None);
    }
}
