//! [`RtpClock`]: the sequence number and timestamp of one RTP stream this
//! participant sends (a track, or one simulcast layer of one).

use huddle_proto::TrackKind;
use std::time::Duration;

/// Sequence number and timestamp of one outgoing RTP stream, from random
/// starts.
#[derive(Debug)]
pub(crate) struct RtpClock {
    seq: u16,
    ts: u32,
}

impl RtpClock {
    /// A stream starting at a random sequence number and timestamp.
    pub fn random() -> Self {
        Self {
            seq: rand::random(),
            ts: rand::random(),
        }
    }

    /// The sequence number the next packet will carry.
    pub fn seq(&self) -> u16 {
        self.seq
    }

    /// The timestamp the next frame will carry.
    pub fn ts(&self) -> u32 {
        self.ts
    }

    /// The next packet's sequence number; the one after is one more.
    pub fn next_seq(&mut self) -> u16 {
        let seq = self.seq;
        self.seq = seq.wrapping_add(1);
        seq
    }

    /// The timestamp of the frame starting now; the next frame's is
    /// `ticks` later.
    pub fn start_frame(&mut self, ticks: u32) -> u32 {
        let ts = self.ts;
        self.ts = ts.wrapping_add(ticks);
        ts
    }
}

/// RTP clock ticks in `d` for a track of `kind` (48 kHz for audio, 90 kHz
/// for video).
pub(crate) fn ticks(kind: TrackKind, d: Duration) -> u32 {
    let rate: u128 = match kind {
        TrackKind::Audio => 48_000,
        TrackKind::Video => 90_000,
    };
    (d.as_nanos() * rate / 1_000_000_000) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_share_a_timestamp_and_packets_count_on() {
        let mut c = RtpClock {
            seq: 65_535,
            ts: u32::MAX - 10,
        };
        assert_eq!(c.start_frame(3000), u32::MAX - 10);
        assert_eq!((c.next_seq(), c.next_seq()), (65_535, 0), "wraps");
        assert_eq!(c.start_frame(3000), 2989);
        assert_eq!(c.seq(), 1);
        assert_eq!(ticks(TrackKind::Video, Duration::from_millis(33)), 2970);
        assert_eq!(ticks(TrackKind::Audio, Duration::from_millis(20)), 960);
    }
}
