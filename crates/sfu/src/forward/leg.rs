//! A subscriber's copy of a published track (its [`Leg`]): the sender on
//! the subscriber's connection, its SSRC and negotiated payload type, the
//! simulcast layer it gets, and the rewrite of sequence numbers and
//! timestamps that keeps its stream continuous when its source or layer
//! changes (the RTP munger and sequence map).

use crate::forward::allocator::Allocation;
use crate::forward::nack_loss::NackLoss;
use crate::forward::pad_log::{PadLog, Sent};
use crate::forward::resend::ResendGuard;
use crate::forward::sender_report::SentCount;
use crate::forward::simulcast::LayerChoice;
use crate::forward::vp8::Vp8Munger;
use huddle_wire::red_distance::RedDistance;
use rtc::rtp_transceiver::RTCRtpSenderId;
use std::time::Instant;

/// The last packet a leg sent: where a WHEP slot's next source continues.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SentMark {
    pub seq: u16,
    pub ts: u32,
    pub at: Instant,
}

/// A subscriber's copy of a published track.
pub(crate) struct Leg {
    pub sender_id: RTCRtpSenderId,
    pub ssrc: u32,
    /// Payload types negotiated on the subscriber's connection (cached;
    /// looked up again after each negotiation).
    pub payload_types: Option<PayloadTypes>,
    /// On a WHEP slot's leg and a video leg: how it keeps its stream
    /// continuous when its source (slot) or layer (simulcast) changes. An
    /// audio leg passes sequence numbers and timestamps through.
    pub continuity: Option<Continuity>,
    /// The simulcast layer it forwards and the one it wants (unused while
    /// the track has one layer).
    pub choice: LayerChoice,
    /// Its recent retransmissions (each packet resent a bounded number of
    /// times).
    pub resent: ResendGuard,
    /// What it sent, for sender reports.
    pub sent: SentCount,
    /// How the subscriber shows it (video), as it said.
    pub view: View,
    /// What the stream allocator gave it last (video).
    pub allocation: Allocation,
    /// The padding (probes) sent on it, once there was any.
    pads: Option<Box<PadLog>>,
    /// Its VP8 PictureID and TL0PICIDX, continuous across switches.
    pub vp8: Vp8Munger,
    /// The RED distance its subscriber's loss reports call for (an audio
    /// leg that took RED, once a report came).
    pub red_distance: Option<RedDistance>,
    /// The RED distance it is sent at: the one above while the subscriber's
    /// link has room for the copies, else 0 (the packets as they came).
    /// More than a packet carries, and the SFU adds copies
    /// ([`crate::forward::red_boost`]).
    pub red_boost: u8,
    /// What it sent and its subscriber NACKed of that (an audio leg that
    /// took RED): the loss before repair its RED distance follows.
    pub nack_loss: NackLoss,
}

/// The payload types a leg's connection negotiated for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PayloadTypes {
    /// The track's codec (Opus, VP8, ...).
    pub primary: u8,
    /// `audio/red` (RFC 2198), when the subscriber took it: its blocks
    /// then carry `primary`.
    pub red: Option<u8>,
}

/// How a subscriber shows one video it receives (the `track_settings`
/// message): whether at all, and the best layer worth sending for its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    /// Shown at all; a hidden video gets nothing.
    pub visible: bool,
    /// The best layer rank its size is worth; `None`: by the grid rule.
    pub max_rank: Option<u8>,
}

impl Default for View {
    fn default() -> Self {
        Self {
            visible: true,
            max_rank: None,
        }
    }
}

/// A renumbering: the leg's source (WHEP slot) or layer (simulcast)
/// changes, its output stream does not.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Continuity {
    /// Added (wrapping) to the source's sequence numbers and timestamps, set
    /// at the leg's first packet.
    seq_offset: u16,
    ts_offset: u32,
    /// Until the first packet: continue after this mark.
    continue_from: Option<SentMark>,
    /// The newest packet sent (retransmissions do not move it).
    last_sent: Option<SentMark>,
    /// The newest media packet sent did not end its frame (no marker bit):
    /// the frame's next packets follow it, so no padding may come between
    /// (a receiver cannot assemble a frame whose sequence numbers padding
    /// interrupts: libwebrtc's packet buffer drops it, and every frame
    /// that refers to it waits for a keyframe).
    frame_open: bool,
    /// Output sequence number of the current source's first packet: what
    /// was sent before it came from another source. Once the source has
    /// sent more than [`SOURCE_SPAN`] packets it trails the newest by that
    /// much, so wrapping sequence numbers never make a recent packet look
    /// older than the source.
    started: Option<u16>,
}

/// How far back from the newest packet [`Leg::source_seq`] can tell a
/// packet of the current source from an earlier one: far more than any
/// retransmission store holds.
const SOURCE_SPAN: u16 = 0x4000;

impl Continuity {
    /// Where the next source of the slot should continue from.
    pub fn mark(&self) -> Option<SentMark> {
        self.last_sent.or(self.continue_from)
    }
}

impl Leg {
    /// A leg sending on `sender_id` with `ssrc` that passes sequence
    /// numbers and timestamps through (audio: never switched).
    pub fn new(sender_id: RTCRtpSenderId, ssrc: u32) -> Self {
        Self {
            sender_id,
            ssrc,
            payload_types: None,
            continuity: None,
            choice: LayerChoice {
                current: Some(0),
                target: Some(0),
                draining: false,
            },
            resent: ResendGuard::default(),
            sent: SentCount::default(),
            view: View::default(),
            allocation: Allocation::Unavailable,
            pads: None,
            vp8: Vp8Munger::default(),
            red_distance: None,
            red_boost: 0,
            nack_loss: NackLoss::default(),
        }
    }

    /// A leg that can switch simulcast layers (video).
    pub fn switchable(sender_id: RTCRtpSenderId, ssrc: u32) -> Self {
        Self::slot(sender_id, ssrc, None)
    }

    /// Whether it renumbers its stream (video, WHEP slots): it may switch
    /// sources.
    pub fn switches(&self) -> bool {
        self.continuity.is_some()
    }

    /// The next packet comes from another layer: continue this leg's
    /// stream after what it sent last.
    pub fn resync(&mut self) {
        if let Some(c) = self.continuity.as_mut() {
            c.continue_from = c.last_sent;
        }
        self.vp8.resync();
    }

    /// Stop forwarding (the video is paused or hidden), maybe in the middle
    /// of a frame whose rest will never come. What the leg sends next,
    /// bandwidth probes first and then the next keyframe, continues after
    /// what it sent: without this, a leg paused mid-frame could never be
    /// padded, and a subscriber whose only video was paused could never
    /// probe for the room to resume it.
    pub fn stop(&mut self) {
        if self.choice.current.is_some() {
            self.resync();
        }
        self.choice.stop();
    }

    /// A WHEP slot's leg, continuing the slot's stream after `from` (what the
    /// slot's previous source last sent, if any).
    pub fn slot(sender_id: RTCRtpSenderId, ssrc: u32, from: Option<SentMark>) -> Self {
        Self {
            continuity: Some(Continuity {
                continue_from: from,
                ..Continuity::default()
            }),
            ..Self::new(sender_id, ssrc)
        }
    }

    /// Rewrite a source packet's sequence number and timestamp for this leg
    /// (`clock_rate` in Hz; nothing to do on an ordinary leg). False when
    /// the packet has no place in the leg's stream: it arrived after
    /// padding sent later than it that the leg no longer remembers, or it
    /// belongs before the current source (don't send it).
    #[must_use]
    pub fn rewrite(
        &mut self,
        now: Instant,
        clock_rate: u32,
        header: &mut rtc::rtp::header::Header,
    ) -> bool {
        let Some(c) = self.continuity.as_mut() else {
            return true;
        };
        let first = c.continue_from.is_some() || c.started.is_none();
        if let Some(mark) = c.continue_from.take() {
            // One frame's worth at least, so the timestamp always moves on.
            let elapsed = now.saturating_duration_since(mark.at).as_millis() as u64;
            let step = (elapsed * u64::from(clock_rate) / 1000).max(1) as u32;
            c.seq_offset = mark
                .seq
                .wrapping_add(1)
                .wrapping_sub(header.sequence_number);
            c.ts_offset = mark.ts.wrapping_add(step).wrapping_sub(header.timestamp);
        }
        header.sequence_number = header.sequence_number.wrapping_add(c.seq_offset);
        header.timestamp = header.timestamp.wrapping_add(c.ts_offset);
        if first {
            c.started = Some(header.sequence_number);
        }
        let newer = c
            .last_sent
            .is_none_or(|m| (header.sequence_number.wrapping_sub(m.seq) as i16) > 0);
        if let (false, Some(last)) = (newer, c.last_sent) {
            // Late: the offset grew by the padding sent since its turn.
            if let Some(pads) = &self.pads {
                match pads.place(header.sequence_number, last.seq) {
                    Some(seq) => header.sequence_number = seq,
                    None => return false,
                }
            }
            let before_source = c.started.is_some_and(|first| {
                last.seq.wrapping_sub(header.sequence_number) > last.seq.wrapping_sub(first)
            });
            return !before_source;
        }
        if newer {
            c.frame_open = !header.marker;
            c.last_sent = Some(SentMark {
                seq: header.sequence_number,
                ts: header.timestamp,
                at: now,
            });
            if let Some(first) = c.started {
                if header.sequence_number.wrapping_sub(first) > SOURCE_SPAN {
                    c.started = Some(header.sequence_number.wrapping_sub(SOURCE_SPAN));
                }
            }
        }
        true
    }

    /// Whether a padding packet may go out on this leg now: it renumbers
    /// (video), and it is not in the middle of a frame (padding goes
    /// between frames, or before the next source's first packet).
    pub fn can_pad(&self) -> bool {
        self.continuity
            .is_some_and(|c| c.continue_from.is_some() || !c.frame_open)
    }

    /// The sequence number and timestamp of a padding packet (a bandwidth
    /// probe) sent next on this leg at `now`: one after the last packet,
    /// whose timestamp it repeats; what follows is numbered one further.
    /// Works on a paused leg and on one that sent nothing yet (its media
    /// will continue after the padding). `None` when it [cannot
    /// pad](Self::can_pad): an audio leg, or one in the middle of a frame.
    pub fn pad(&mut self, now: Instant) -> Option<(u16, u32)> {
        if !self.can_pad() {
            return None;
        }
        let c = self.continuity.as_mut()?;
        let base = c.continue_from.or(c.last_sent).unwrap_or(SentMark {
            seq: (self.ssrc >> 16) as u16, // any start will do
            ts: self.ssrc,
            at: now,
        });
        let seq = base.seq.wrapping_add(1);
        let mark = SentMark { seq, ..base };
        if c.continue_from.is_some() || c.last_sent.is_none() {
            // The next media packet starts a source: it continues after
            // this one.
            c.continue_from = Some(mark);
        } else {
            c.seq_offset = c.seq_offset.wrapping_add(1);
        }
        c.last_sent = Some(mark);
        self.pads.get_or_insert_with(Box::default).record(seq);
        Some((seq, base.ts))
    }

    /// The current source's sequence number of a sequence number this leg
    /// sent; `None` when that packet came from an earlier source (its
    /// store is not the current one's: the subscriber needs a keyframe),
    /// was padding, or is older than the padding the leg remembers.
    pub fn source_seq(&self, sent: u16) -> Option<u16> {
        let Some(c) = self.continuity else {
            return Some(sent);
        };
        let mut offset = c.seq_offset;
        if let (Some(first), Some(last)) = (c.started, c.last_sent) {
            // Counted back from the newest packet: older than the source's
            // first packet (or not sent yet) is not the current source's.
            if last.seq.wrapping_sub(sent) > last.seq.wrapping_sub(first) {
                return None;
            }
            if let Some(pads) = &self.pads {
                match pads.classify(sent, last.seq) {
                    Sent::Media { later_padding } => {
                        offset = offset.wrapping_sub(later_padding);
                    }
                    Sent::Padding | Sent::Unknown => return None,
                }
            }
        }
        Some(sent.wrapping_sub(offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn leg_continues_a_stream_across_sources() {
        use rtc::rtp::header::Header;
        let t0 = Instant::now();
        let sender = RTCRtpSenderId::from(0);
        let mut leg = Leg::slot(sender, 7, None);
        let mut h = Header {
            sequence_number: 65535,
            timestamp: 1000,
            ..Default::default()
        };
        assert!(leg.rewrite(t0, 48_000, &mut h));
        assert_eq!(
            (h.sequence_number, h.timestamp),
            (65535, 1000),
            "passes through"
        );
        let mark = leg.continuity.and_then(|c| c.mark()).expect("marked");
        let mut ordinary = Leg::new(sender, 8);
        let mut h = Header {
            sequence_number: 9,
            timestamp: 99,
            ..Default::default()
        };
        assert!(ordinary.rewrite(t0, 48_000, &mut h));
        assert_eq!((h.sequence_number, h.timestamp), (9, 99));
        assert!(
            ordinary.continuity.is_none(),
            "an ordinary leg keeps no marks"
        );
        assert_eq!(ordinary.source_seq(9), Some(9));

        // A new source 100 ms later, with numbers of its own.
        let mut next = Leg::slot(sender, 7, Some(mark));
        let mut h = Header {
            sequence_number: 500,
            timestamp: 90_000,
            ..Default::default()
        };
        assert!(next.rewrite(t0 + Duration::from_millis(100), 48_000, &mut h));
        assert_eq!(h.sequence_number, 0, "one after the last sent (wrapped)");
        assert_eq!(h.timestamp, 1000 + 4800, "100 ms later at 48 kHz");
        let mut h = Header {
            sequence_number: 501,
            timestamp: 90_960,
            ..Default::default()
        };
        assert!(next.rewrite(t0 + Duration::from_millis(120), 48_000, &mut h));
        assert_eq!((h.sequence_number, h.timestamp), (1, 1000 + 4800 + 960));
        assert_eq!(
            next.source_seq(1),
            Some(501),
            "NACKs map back to the source"
        );
        assert_eq!(
            next.source_seq(65535),
            None,
            "sent before this source: not in its store"
        );

        // A retransmission of an older packet does not move the mark back.
        let mut old = Header {
            sequence_number: 500,
            timestamp: 90_000,
            ..Default::default()
        };
        assert!(next.rewrite(t0 + Duration::from_millis(130), 48_000, &mut old));
        assert_eq!(
            next.continuity.and_then(|c| c.mark()).map(|m| m.seq),
            Some(1)
        );
    }

    /// Source packets through `leg` at `t0`: their output numbers, `None`
    /// for one not sent.
    fn through(leg: &mut Leg, t0: Instant, seqs: &[u16]) -> Vec<Option<u16>> {
        seqs.iter()
            .map(|&seq| {
                let mut h = rtc::rtp::header::Header {
                    sequence_number: seq,
                    timestamp: u32::from(seq) * 3000,
                    marker: true, // a frame in one packet
                    ..Default::default()
                };
                leg.rewrite(t0, 90_000, &mut h).then_some(h.sequence_number)
            })
            .collect()
    }

    #[test]
    fn a_late_packet_keeps_its_place_across_padding_sent_after_it() {
        let t0 = Instant::now();
        let mut leg = Leg::switchable(RTCRtpSenderId::from(0), 7);
        // 102 is late: 100, 101, 103, then a probe's padding (104 on the
        // output), then 104 (105 out), then 102 at last.
        assert_eq!(
            through(&mut leg, t0, &[100, 101, 103]),
            [Some(100), Some(101), Some(103)]
        );
        assert_eq!(leg.pad(t0).map(|(seq, _)| seq), Some(104));
        assert_eq!(through(&mut leg, t0, &[104, 102]), [Some(105), Some(102)]);
        assert_eq!(leg.source_seq(102), Some(102), "a NACK for it maps back");
        // A packet from before the leg's first is not sent.
        assert_eq!(through(&mut leg, t0, &[90]), [None]);
    }

    #[test]
    fn a_late_packet_older_than_the_remembered_padding_is_not_sent() {
        let t0 = Instant::now();
        let mut leg = Leg::switchable(RTCRtpSenderId::from(0), 7);
        let mut seq = 1000u16;
        assert_eq!(through(&mut leg, t0, &[seq]), [Some(seq)]);
        for _ in 0..100 {
            seq += 1;
            assert!(leg.pad(t0).is_some());
            assert!(through(&mut leg, t0, &[seq])[0].is_some());
        }
        // 1000's padding-era neighbours are forgotten: no safe number.
        assert_eq!(through(&mut leg, t0, &[1001]), [None]);
        // A recent one still has its number (two back: one padding between).
        assert_eq!(through(&mut leg, t0, &[seq - 1]), [Some(seq + 100 - 2)]);
    }

    #[test]
    fn a_resync_continues_after_the_last_packet_sent() {
        use rtc::rtp::header::Header;
        let t0 = Instant::now();
        let mut leg = Leg::switchable(RTCRtpSenderId::from(0), 7);
        for (seq, ts) in [(100u16, 9000u32), (101, 12_000)] {
            let mut h = Header {
                sequence_number: seq,
                timestamp: ts,
                ..Default::default()
            };
            assert!(leg.rewrite(t0, 90_000, &mut h));
            assert_eq!((h.sequence_number, h.timestamp), (seq, ts));
        }
        // Another layer, with its own numbers, 40 ms later.
        leg.resync();
        let mut h = Header {
            sequence_number: 7000,
            timestamp: 555,
            ..Default::default()
        };
        assert!(leg.rewrite(t0 + Duration::from_millis(40), 90_000, &mut h));
        assert_eq!(h.sequence_number, 102);
        assert_eq!(h.timestamp, 12_000 + 3600);
        assert_eq!(leg.source_seq(102), Some(7000));
        assert_eq!(leg.source_seq(101), None, "the old layer's packet");
        assert_eq!(leg.source_seq(103), None, "not sent yet");
    }

    #[test]
    fn padding_takes_numbers_and_nacks_still_map_to_the_source() {
        use rtc::rtp::header::Header;
        let t0 = Instant::now();
        let mut leg = Leg::switchable(RTCRtpSenderId::from(0), 7);

        let send = |leg: &mut Leg, seq: u16| {
            let mut h = Header {
                sequence_number: seq,
                timestamp: u32::from(seq) * 3000,
                marker: true,
                ..Default::default()
            };
            assert!(leg.rewrite(t0, 90_000, &mut h));
            h.sequence_number
        };
        assert_eq!(send(&mut leg, 65534), 65534);
        assert_eq!(leg.pad(t0), Some((65535, 65534 * 3000)));
        assert_eq!(leg.pad(t0), Some((0, 65534 * 3000)));
        assert_eq!(send(&mut leg, 65535), 1, "media moved on by two");
        assert_eq!(send(&mut leg, 0), 2);
        assert_eq!(leg.pad(t0), Some((3, 0)));
        assert_eq!(send(&mut leg, 1), 4);
        // NACKs: media maps back to its source number, padding to nothing.
        assert_eq!(leg.source_seq(65534), Some(65534));
        assert_eq!(leg.source_seq(65535), None);
        assert_eq!(leg.source_seq(0), None);
        assert_eq!(leg.source_seq(1), Some(65535));
        assert_eq!(leg.source_seq(2), Some(0));
        assert_eq!(leg.source_seq(3), None);
        assert_eq!(leg.source_seq(4), Some(1));
        // A packet of the source sent again (late, or resent) gets the
        // number it went out with, not the offset of now (which counts the
        // padding sent after it).
        let mut h = Header {
            sequence_number: 0,
            timestamp: 0,
            ..Default::default()
        };
        assert!(leg.rewrite(t0, 90_000, &mut h));
        assert_eq!(h.sequence_number, 2);
        // An audio leg is never padded.
        assert_eq!(Leg::new(RTCRtpSenderId::from(1), 8).pad(t0), None);
    }

    #[test]
    fn no_padding_goes_between_the_packets_of_a_frame() {
        use rtc::rtp::header::Header;
        let t0 = Instant::now();
        let mut leg = Leg::switchable(RTCRtpSenderId::from(0), 7);
        let send = |leg: &mut Leg, seq: u16, ts: u32, marker: bool| {
            let mut h = Header {
                sequence_number: seq,
                timestamp: ts,
                marker,
                ..Default::default()
            };
            assert!(leg.rewrite(t0, 90_000, &mut h));
            h.sequence_number
        };
        // A frame's first two packets: its last one is still to come.
        assert_eq!(send(&mut leg, 10, 3000, false), 10);
        assert_eq!(send(&mut leg, 11, 3000, false), 11);
        assert!(!leg.can_pad());
        assert_eq!(leg.pad(t0), None, "mid-frame");
        // The frame ends: padding may follow it.
        assert_eq!(send(&mut leg, 12, 3000, true), 12);
        assert!(leg.can_pad());
        assert_eq!(leg.pad(t0).map(|(seq, _)| seq), Some(13));
        // The leg moves to another layer mid-frame: the next source starts
        // a new frame, so padding may go before it.
        assert_eq!(send(&mut leg, 13, 6000, false), 14);
        assert!(!leg.can_pad());
        leg.resync();
        assert!(leg.can_pad());
        assert_eq!(leg.pad(t0).map(|(seq, _)| seq), Some(15));
        assert_eq!(send(&mut leg, 9000, 1, false), 16);
    }

    #[test]
    fn a_leg_stopped_mid_frame_can_be_padded() {
        use rtc::rtp::header::Header;
        let t0 = Instant::now();
        let mut leg = Leg::switchable(RTCRtpSenderId::from(0), 7);
        leg.choice.current = Some(0);
        let mut h = Header {
            sequence_number: 10,
            timestamp: 3000,
            marker: false,
            ..Default::default()
        };
        assert!(leg.rewrite(t0, 90_000, &mut h));
        assert!(!leg.can_pad(), "mid-frame");
        leg.stop();
        assert_eq!(leg.choice.current, None);
        assert!(leg.can_pad(), "the frame's rest will not come");
        assert_eq!(leg.pad(t0).map(|(seq, _)| seq), Some(11));
        // Stopped again (every allocation while paused): still numbered on.
        leg.stop();
        assert_eq!(leg.pad(t0).map(|(seq, _)| seq), Some(12));
        // The next keyframe continues after the padding.
        leg.resync();
        let mut h = Header {
            sequence_number: 500,
            timestamp: 90_000,
            marker: true,
            ..Default::default()
        };
        assert!(leg.rewrite(t0, 90_000, &mut h));
        assert_eq!(h.sequence_number, 13);
    }

    #[test]
    fn padding_before_any_media_is_followed_by_media_in_sequence() {
        use rtc::rtp::header::Header;
        let t0 = Instant::now();
        let mut leg = Leg::switchable(RTCRtpSenderId::from(0), 0x0102_0304);
        let (p1, _) = leg.pad(t0).expect("pads");
        let (p2, _) = leg.pad(t0).expect("pads");
        assert_eq!(p2, p1.wrapping_add(1));
        let mut h = Header {
            sequence_number: 40_000,
            timestamp: 7,
            ..Default::default()
        };
        assert!(leg.rewrite(t0 + std::time::Duration::from_millis(20), 90_000, &mut h));
        assert_eq!(h.sequence_number, p2.wrapping_add(1));
        assert_eq!(leg.source_seq(h.sequence_number), Some(40_000));
        assert_eq!(leg.source_seq(p2), None);
    }

    #[test]
    fn a_long_running_leg_still_maps_recent_nacks() {
        use rtc::rtp::header::Header;
        let t0 = Instant::now();
        let mut leg = Leg::switchable(RTCRtpSenderId::from(0), 7);
        // 100 000 packets: the sequence numbers wrap more than once.
        for i in 0..100_000u32 {
            let mut h = Header {
                sequence_number: (i % 65_536) as u16,
                timestamp: i * 3000,
                ..Default::default()
            };
            assert!(leg.rewrite(t0, 90_000, &mut h));
        }
        let last = (99_999 % 65_536) as u16;
        for back in [0u16, 1, 100, 511] {
            let seq = last.wrapping_sub(back);
            assert_eq!(leg.source_seq(seq), Some(seq), "{back} back");
        }
    }
}
