//! RFC 8888 congestion control feedback: what it says about each packet,
//! and which sent packet it means.
//!
//! TWCC feedback names packets by the transport-wide sequence number the
//! SFU stamped on them; RFC 8888 feedback names them by RTP stream (SSRC)
//! and RTP sequence number, and gives each arrival as an offset before the
//! report's own timestamp. [`RtpSeqMap`] remembers, per stream, which
//! packet of the send history ([`crate::congestion::history`]) carried
//! which RTP sequence number, so both kinds of feedback land on the same
//! history and the same estimator.

use std::collections::HashMap;

use rtc::rtcp::transport_feedbacks::cc_feedback_report::CcFeedbackMetricBlock;

use crate::congestion::feedback::Status;

/// The report timestamp counts 1/65536 s (the middle 32 bits of an NTP
/// timestamp, RFC 8888 §3.1).
pub(crate) const REPORT_UNITS_PER_S: i64 = 65_536;

/// An arrival time offset counts 1/1024 s.
const ATO_UNITS_PER_S: i64 = 1024;

/// An arrival time offset this large or larger says "received, time
/// unknown": 0x1FFE is over range, 0x1FFF unavailable (RFC 8888 §3.1).
const ATO_OVER_RANGE: u16 = 0x1FFE;

/// Packets remembered per stream (a power of two). At 512, a stream of
/// 450 packets a second (a 5 Mb/s screen share) is remembered for more
/// than a second, far longer than feedback takes.
const RING: usize = 512;

/// Streams remembered at most. A stream not sent on within the history is
/// forgotten when a new one needs room; past this many active at once,
/// the stream sent on longest ago goes.
const MAX_STREAMS: usize = 1024;

/// Microseconds of a report timestamp unwrapped to `units` (1/65536 s).
pub(crate) fn report_us(units: i64) -> i64 {
    units.saturating_mul(1_000_000) / REPORT_UNITS_PER_S
}

/// What one metric block says, for a report timestamped `report_us` on the
/// receiver's clock.
pub(crate) fn status(block: &CcFeedbackMetricBlock, report_us: i64) -> Status {
    if !block.received {
        return Status::Lost;
    }
    if block.arrival_time_offset >= ATO_OVER_RANGE {
        return Status::Received(None);
    }
    let offset_us = i64::from(block.arrival_time_offset) * 1_000_000 / ATO_UNITS_PER_S;
    Status::Received(Some(report_us - offset_us))
}

/// One remembered packet of a stream.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Low 32 bits of its unwrapped history sequence number.
    history: u32,
    /// Its RTP sequence number (tells a reused slot).
    rtp_seq: u16,
    used: bool,
}

#[derive(Debug)]
struct Stream {
    slots: Box<[Slot]>,
    /// The history sequence number of its newest packet.
    newest: u64,
}

/// Which history packet carried `(SSRC, RTP sequence number)`, for the
/// recent packets of every stream sent. Recording is a hash lookup and a
/// store; 4 KiB per stream.
#[derive(Debug, Default)]
pub(crate) struct RtpSeqMap {
    streams: HashMap<u32, Stream>,
}

impl RtpSeqMap {
    /// History packet `history` was RTP packet `rtp_seq` of stream `ssrc`.
    /// `horizon`: how many packets the history remembers (a stream with
    /// nothing newer than that is of no more use).
    pub fn record(&mut self, ssrc: u32, rtp_seq: u16, history: u64, horizon: u64) {
        if !self.streams.contains_key(&ssrc) && self.streams.len() >= MAX_STREAMS {
            self.make_room(history, horizon);
        }
        let stream = self.streams.entry(ssrc).or_insert_with(|| Stream {
            slots: vec![Slot::default(); RING].into_boxed_slice(),
            newest: history,
        });
        stream.newest = history;
        if let Some(slot) = stream.slots.get_mut(usize::from(rtp_seq) % RING) {
            *slot = Slot {
                history: history as u32,
                rtp_seq,
                used: true,
            };
        }
    }

    /// Forgets streams not sent on within `horizon` packets of `history`;
    /// if none is that old, the one sent on longest ago.
    fn make_room(&mut self, history: u64, horizon: u64) {
        self.streams
            .retain(|_, s| history.saturating_sub(s.newest) < horizon);
        if self.streams.len() >= MAX_STREAMS {
            if let Some(oldest) = self
                .streams
                .iter()
                .min_by_key(|(_, s)| s.newest)
                .map(|(ssrc, _)| *ssrc)
            {
                self.streams.remove(&oldest);
            }
        }
    }

    /// The history sequence number of RTP packet `rtp_seq` of `ssrc`, if it
    /// is remembered; `next` is the history's next sequence number (the
    /// caller checks the history still holds that packet).
    pub fn lookup(&self, ssrc: u32, rtp_seq: u16, next: u64) -> Option<u64> {
        let slot = self
            .streams
            .get(&ssrc)?
            .slots
            .get(usize::from(rtp_seq) % RING)?;
        if !slot.used || slot.rtp_seq != rtp_seq {
            return None;
        }
        let behind = u64::from((next as u32).wrapping_sub(slot.history));
        next.checked_sub(behind)
    }

    /// Streams remembered.
    #[cfg(test)]
    pub fn streams(&self) -> usize {
        self.streams.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtcp::transport_feedbacks::cc_feedback_report::Ecn;

    fn received(ato: u16) -> CcFeedbackMetricBlock {
        CcFeedbackMetricBlock {
            received: true,
            ecn: Ecn::NotEct,
            arrival_time_offset: ato,
        }
    }

    #[test]
    fn arrival_is_the_offset_before_the_report() {
        let report = report_us(10 * REPORT_UNITS_PER_S);
        assert_eq!(report, 10_000_000);
        assert_eq!(
            status(&received(0), report),
            Status::Received(Some(10_000_000))
        );
        assert_eq!(
            status(&received(512), report),
            Status::Received(Some(9_500_000))
        );
        assert_eq!(
            status(&received(0x1FFD), report),
            Status::Received(Some(10_000_000 - 7_997_070))
        );
        assert_eq!(status(&received(0x1FFE), report), Status::Received(None));
        assert_eq!(status(&received(0x1FFF), report), Status::Received(None));
        assert_eq!(
            status(&CcFeedbackMetricBlock::default(), report),
            Status::Lost
        );
    }

    #[test]
    fn finds_what_each_stream_sent_and_forgets_reused_slots() {
        let mut map = RtpSeqMap::default();
        // Two streams interleaved; the audio one wraps its RTP numbers.
        for i in 0..100u64 {
            map.record(1, 65_500u16.wrapping_add(i as u16), 2 * i, 2048);
            map.record(2, 7 + i as u16, 2 * i + 1, 2048);
        }
        let next = 200;
        assert_eq!(map.lookup(1, 65_500, next), Some(0));
        assert_eq!(map.lookup(1, 63, next), Some(198));
        assert_eq!(map.lookup(2, 7, next), Some(1));
        assert_eq!(map.lookup(2, 106, next), Some(199));
        assert_eq!(map.lookup(2, 107, next), None, "never sent");
        assert_eq!(map.lookup(3, 7, next), None, "unknown stream");
        // A stream RING packets further on: the old number's slot is reused.
        for i in 0..RING as u64 {
            map.record(2, 107 + i as u16, 200 + i, 2048);
        }
        assert_eq!(map.lookup(2, 7, 200 + RING as u64), None);
    }

    #[test]
    fn the_number_of_streams_is_bounded() {
        let mut map = RtpSeqMap::default();
        for ssrc in 0..(MAX_STREAMS as u32 + 10) {
            map.record(ssrc, 0, u64::from(ssrc), 2048);
        }
        assert_eq!(map.streams(), MAX_STREAMS);
        // The newest is kept; the oldest went.
        assert!(map.lookup(MAX_STREAMS as u32 + 9, 0, 5000).is_some());
        assert!(map.lookup(0, 0, 5000).is_none());
        // Streams silent for longer than the history go first, all at once.
        map.record(99_999, 0, 1_000_000, 2048);
        assert_eq!(map.streams(), 1);
    }
}
