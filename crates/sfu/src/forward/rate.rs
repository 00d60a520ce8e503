//! What a stream costs: the bit rate of the packets of one layer, over the
//! last second or so, and the last rate it had while it ran (what resuming
//! it would cost).

use std::time::{Duration, Instant};

/// Length of one measuring window of a stream's rate; the rate covers the
/// last full window and the current one.
pub const RATE_WINDOW: Duration = Duration::from_millis(500);

/// Length of one measuring window of a stream's keyframes: they come
/// seldom and in bursts, so their share of the cost is spread wider.
pub const KEYFRAME_WINDOW: Duration = Duration::from_secs(2);

/// A bit rate measured from packets as they arrive. One addition per
/// packet; no allocation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RateMeter {
    /// When it started measuring: until a window and more have passed,
    /// the rate is over the time since.
    since: Instant,
    window: Duration,
    window_start: Instant,
    bytes: u64,
    previous: u64,
    /// The last rate measured over a window in which something arrived.
    last_running_bps: u64,
}

impl RateMeter {
    /// A meter with nothing measured, from `now`, over [`RATE_WINDOW`]s.
    pub fn new(now: Instant) -> Self {
        Self::with_window(now, RATE_WINDOW)
    }

    /// A meter over windows of `window` (not zero).
    pub fn with_window(now: Instant, window: Duration) -> Self {
        Self {
            since: now,
            window: window.max(Duration::from_millis(1)),
            window_start: now,
            bytes: 0,
            previous: 0,
            last_running_bps: 0,
        }
    }

    /// `bytes` of payload (and header) arrived at `now`.
    pub fn on_packet(&mut self, now: Instant, bytes: usize) {
        self.roll(now);
        self.bytes += bytes as u64;
    }

    fn roll(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < self.window {
            return;
        }
        if elapsed >= self.window * 2 {
            // The current window ended a window or more ago: the one after
            // it, the previous one now, had nothing.
            self.previous = 0;
            if self.bytes > 0 {
                self.last_running_bps = bps(self.bytes, self.window);
            }
            self.bytes = 0;
            self.window_start = now;
            return;
        }
        if self.bytes > 0 {
            self.last_running_bps =
                bps(self.bytes + self.previous, self.window * 2).max(bps(self.bytes, self.window));
        }
        self.previous = self.bytes;
        self.bytes = 0;
        self.window_start += self.window;
    }

    /// Bits per second over the last window and the current one, at `now`
    /// (over the time since it started, when that is shorter, but at
    /// least a quarter window: a stream's first second is not diluted over
    /// time it did not exist).
    pub fn bps(&mut self, now: Instant) -> u64 {
        self.roll(now);
        let elapsed = now.saturating_duration_since(self.window_start);
        let existed = now.saturating_duration_since(self.since);
        let over = (self.window + elapsed).min(existed.max(self.window / 4));
        bps(self.previous + self.bytes, over)
    }

    /// The rate while it last ran: what it would cost if it ran again.
    pub fn running_bps(&mut self, now: Instant) -> u64 {
        let current = self.bps(now);
        if current > 0 {
            current.max(self.last_running_bps / 2)
        } else {
            self.last_running_bps
        }
    }
}

fn bps(bytes: u64, over: Duration) -> u64 {
    let micros = over.as_micros().max(1) as u64;
    bytes.saturating_mul(8_000_000) / micros
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `bps` bits per second in 1,000-byte packets for `secs` from `from`.
    fn feed(m: &mut RateMeter, from: Instant, bps: u64, secs: u64) -> Instant {
        let per_second = bps / 8 / 1000;
        let gap = Duration::from_secs(1) / per_second as u32;
        let mut t = from;
        for _ in 0..per_second * secs {
            m.on_packet(t, 1000);
            t += gap;
        }
        t
    }

    #[test]
    fn a_steady_stream_measures_its_rate() {
        let t0 = Instant::now();
        let mut m = RateMeter::new(t0);
        let t = feed(&mut m, t0, 800_000, 3);
        let r = m.bps(t);
        assert!((720_000..=880_000).contains(&r), "{r}");
        assert!((720_000..=880_000).contains(&m.running_bps(t)));
    }

    #[test]
    fn a_stopped_stream_reads_zero_but_remembers_what_it_cost() {
        let t0 = Instant::now();
        let mut m = RateMeter::new(t0);
        let t = feed(&mut m, t0, 1_600_000, 2);
        let later = t + Duration::from_secs(5);
        assert_eq!(m.bps(later), 0);
        let r = m.running_bps(later);
        assert!((1_400_000..=1_800_000).contains(&r), "{r}");
    }

    #[test]
    fn a_wider_window_spreads_a_burst() {
        let t0 = Instant::now();
        let mut m = RateMeter::with_window(t0, KEYFRAME_WINDOW);
        // 40 kB at once (a keyframe), nothing more for a second.
        let t = t0 + Duration::from_secs(5);
        m.on_packet(t, 40_000);
        let r = m.bps(t + Duration::from_secs(1));
        assert_eq!(r, 40_000 * 8 / 3, "over the 3 s the windows cover");
        assert_eq!(m.bps(t + Duration::from_secs(5)), 0, "gone 4 s later");
    }

    #[test]
    fn a_new_stream_is_measured_over_the_time_it_has_existed() {
        let t0 = Instant::now();
        let mut m = RateMeter::with_window(t0, KEYFRAME_WINDOW);
        // 400 kb/s for its first second: not a third of it.
        let t = feed(&mut m, t0, 400_000, 1);
        let r = m.bps(t);
        assert!((360_000..=440_000).contains(&r), "{r}");
    }

    #[test]
    fn the_rate_follows_a_change_within_a_second() {
        let t0 = Instant::now();
        let mut m = RateMeter::new(t0);
        let t = feed(&mut m, t0, 1_600_000, 3);
        let t = feed(&mut m, t, 400_000, 1);
        let r = m.bps(t);
        assert!((300_000..=600_000).contains(&r), "{r}");
        assert_eq!(RateMeter::new(t0).bps(t0), 0, "nothing measured");
    }
}
