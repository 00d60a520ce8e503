//! RTCP sender reports for what the SFU sends (RFC 3550 §6.4.1): per
//! subscriber leg, how many packets and payload octets went out, and which
//! RTP timestamp goes with which wall-clock time. Receivers use them to
//! line up a publisher's audio and video, and for round-trip times.
//!
//! The SFU reports its own send clock: the RTP timestamp of the last packet
//! a leg sent, moved on by the time since at the codec's clock rate.

use rtc::rtcp::sender_report::SenderReport;
use std::time::{Duration, Instant};

/// How often each subscriber connection gets its reports (RFC 3550 allows
/// much less often at these rates; browsers send theirs about every second).
pub(crate) const INTERVAL: Duration = Duration::from_secs(1);

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// What one leg has sent.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SentCount {
    packets: u32,
    octets: u32,
    /// RTP timestamp of the newest packet sent, and when.
    newest: Option<(u32, Instant)>,
}

impl SentCount {
    /// A packet with RTP timestamp `rtp_ts` and `payload` octets went out
    /// (a retransmission counts, but does not move the clock back).
    pub fn on_sent(&mut self, now: Instant, rtp_ts: u32, payload: usize) {
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload as u32);
        let newer = self
            .newest
            .is_none_or(|(ts, _)| (rtp_ts.wrapping_sub(ts) as i32) >= 0);
        if newer {
            self.newest = Some((rtp_ts, now));
        }
    }
}

/// Maps the SFU's monotonic clock to wall-clock time, from one reading of
/// both taken by the driver (the sans-IO core never reads a clock).
#[derive(Debug, Clone, Copy)]
pub(crate) struct WallClock {
    at: Instant,
    since_unix_epoch: Duration,
}

impl WallClock {
    /// `now` was `since_unix_epoch` after 1970-01-01 UTC.
    pub fn new(now: Instant, since_unix_epoch: Duration) -> Self {
        Self {
            at: now,
            since_unix_epoch,
        }
    }

    /// `now` as a 64-bit NTP timestamp (32.32 fixed point, RFC 5905).
    pub fn ntp(&self, now: Instant) -> u64 {
        let unix = if now >= self.at {
            self.since_unix_epoch + (now - self.at)
        } else {
            self.since_unix_epoch.saturating_sub(self.at - now)
        };
        let secs = unix.as_secs() + NTP_UNIX_OFFSET;
        let frac = (u64::from(unix.subsec_nanos()) << 32) / 1_000_000_000;
        (secs << 32) | frac
    }
}

/// The sender report of a leg sending as `ssrc` at `clock_rate` Hz, or
/// `None` before its first packet.
pub(crate) fn report(
    ssrc: u32,
    sent: &SentCount,
    clock_rate: u32,
    now: Instant,
    wall: &WallClock,
) -> Option<SenderReport> {
    let (ts, at) = sent.newest?;
    let elapsed = now.saturating_duration_since(at);
    let ticks = elapsed.as_nanos() * u128::from(clock_rate) / 1_000_000_000;
    Some(SenderReport {
        ssrc,
        ntp_time: wall.ntp(now),
        rtp_time: ts.wrapping_add(ticks as u32),
        packet_count: sent.packets,
        octet_count: sent.octets,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_time_counts_from_1900() {
        let t0 = Instant::now();
        let wall = WallClock::new(t0, Duration::from_millis(1_500));
        let ntp = wall.ntp(t0 + Duration::from_millis(250));
        assert_eq!(ntp >> 32, NTP_UNIX_OFFSET + 1);
        let frac = (ntp & 0xFFFF_FFFF) as f64 / 4_294_967_296.0;
        assert!((frac - 0.75).abs() < 1e-6, "{frac}");
    }

    #[test]
    fn the_report_moves_the_rtp_clock_on_from_the_newest_packet() {
        let t0 = Instant::now();
        let wall = WallClock::new(t0, Duration::from_secs(1_000));
        let mut sent = SentCount::default();
        assert!(report(7, &sent, 48_000, t0, &wall).is_none());
        sent.on_sent(t0, 4_000_000_000, 80);
        sent.on_sent(t0 + Duration::from_millis(20), 4_000_000_960, 80);
        // A retransmission of the first: counted, clock not moved back.
        sent.on_sent(t0 + Duration::from_millis(30), 4_000_000_000, 80);
        let sr = report(7, &sent, 48_000, t0 + Duration::from_millis(120), &wall)
            .expect("report after packets");
        assert_eq!(sr.ssrc, 7);
        assert_eq!(sr.packet_count, 3);
        assert_eq!(sr.octet_count, 240);
        assert_eq!(sr.rtp_time, 4_000_000_960 + 4_800);
    }

    #[test]
    fn the_rtp_clock_wraps() {
        let t0 = Instant::now();
        let wall = WallClock::new(t0, Duration::ZERO);
        let mut sent = SentCount::default();
        sent.on_sent(t0, u32::MAX - 10, 1);
        sent.on_sent(t0, 5, 1); // after the wrap: newer
        let sr = report(1, &sent, 90_000, t0 + Duration::from_millis(1), &wall).expect("report");
        assert_eq!(sr.rtp_time, 5 + 90);
    }
}
