//! The delay-based detector: is the bottleneck queue growing?
//!
//! GoogCC's pipeline as libwebrtc runs it today (not the older Kalman
//! filter that `rtc`'s `gcc` ports): packets are grouped into bursts by
//! send time ([`InterArrival`]), the growth of one-way delay between groups
//! is accumulated, smoothed and fitted with a line over the last 20 groups
//! (the *trendline*), and the slope, scaled, is compared with an adaptive
//! threshold ([`Trendline::detect`]). A slope above the threshold for long
//! enough is overuse; below minus the threshold, underuse (the queue is
//! draining).
//!
//! Times are microseconds: send times on this side's clock, arrival times
//! on the receiver's; only differences within each clock are used.

/// Packets sent within this span of a group's first belong to the group.
const BURST_US: u64 = 5_000;
/// A packet arriving within this span of its group's last, sooner than it
/// was sent after it, belongs to the group too (a receiver that stalled
/// and caught up: its packets were stamped late, then in a batch).
const ARRIVAL_BURST_US: i64 = 5_000;
/// ... while the group's arrivals span less than this.
const MAX_ARRIVAL_BURST_US: i64 = 100_000;
/// A jump of the arrival clock against the send clock larger than this
/// (receiver restarted, bogus reference time) resets the detector instead
/// of being read as a queue.
const CLOCK_JUMP_US: i64 = 3_000_000;
/// Groups in the linear fit.
const WINDOW: usize = 20;
/// Exponential smoothing of the accumulated delay.
const SMOOTHING: f64 = 0.9;
/// Gain applied to the slope before comparing with the threshold.
const GAIN: f64 = 4.0;
/// Threshold, in the scaled-slope unit (ms), at start.
const THRESHOLD_INITIAL: f64 = 12.5;
/// Adaptive threshold bounds.
const THRESHOLD_MIN: f64 = 6.0;
const THRESHOLD_MAX: f64 = 600.0;
/// Adaptation speed when the trend is above (up) or below (down) it.
const K_UP: f64 = 0.0087;
const K_DOWN: f64 = 0.039;
/// How long the trend must stay above the threshold to be overuse (ms).
const OVERUSE_TIME_MS: f64 = 10.0;

/// What the detector concludes about the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Usage {
    /// Delay is steady: the path has room.
    #[default]
    Normal,
    /// Delay is growing: a queue is building.
    Over,
    /// Delay is shrinking: a queue is draining.
    Under,
}

/// A burst of packets sent close together.
#[derive(Debug, Clone, Copy)]
struct Group {
    first_send_us: u64,
    last_send_us: u64,
    first_arrival_us: i64,
    last_arrival_us: i64,
}

impl Group {
    fn new(send_us: u64, arrival_us: i64) -> Self {
        Self {
            first_send_us: send_us,
            last_send_us: send_us,
            first_arrival_us: arrival_us,
            last_arrival_us: arrival_us,
        }
    }

    /// Whether a packet sent at `send_us`, arriving at `arrival_us`, is
    /// part of this group: sent within [`BURST_US`] of its first, or
    /// (libwebrtc's `BelongsToBurst`) arriving in a batch with it.
    fn takes(&self, send_us: u64, arrival_us: i64) -> bool {
        if send_us - self.first_send_us <= BURST_US {
            return true;
        }
        let send_delta = send_us as i64 - self.last_send_us as i64;
        let arrival_delta = arrival_us - self.last_arrival_us;
        arrival_delta - send_delta < 0
            && arrival_delta <= ARRIVAL_BURST_US
            && arrival_us - self.first_arrival_us < MAX_ARRIVAL_BURST_US
    }
}

/// The delay between two consecutive groups.
#[derive(Debug, Clone, Copy, PartialEq)]
struct GroupDelta {
    send_ms: f64,
    arrival_ms: f64,
    /// Arrival time of the later group (ms, receiver clock).
    at_ms: f64,
}

/// Groups packets by send time and yields the delta between groups.
#[derive(Debug, Default)]
struct InterArrival {
    current: Option<Group>,
    previous: Option<Group>,
}

/// What feeding a packet to [`InterArrival`] produced.
enum Grouped {
    /// Still inside a group, or the first group.
    Pending,
    /// A group completed: its delta to the one before.
    Delta(GroupDelta),
    /// The clocks jumped, or packets came wildly out of order: start over.
    Reset,
}

impl InterArrival {
    fn push(&mut self, send_us: u64, arrival_us: i64) -> Grouped {
        let Some(current) = self.current.as_mut() else {
            self.current = Some(Group::new(send_us, arrival_us));
            return Grouped::Pending;
        };
        if send_us < current.first_send_us {
            // Reordered behind its group: not informative.
            return Grouped::Pending;
        }
        if current.takes(send_us, arrival_us) {
            current.last_send_us = current.last_send_us.max(send_us);
            current.last_arrival_us = current.last_arrival_us.max(arrival_us);
            return Grouped::Pending;
        }
        // A new group starts: the current one is complete.
        let complete = *current;
        let mut out = Grouped::Pending;
        if let Some(previous) = self.previous {
            // A group may end before the one ahead of it ended: a packet sent
            // late joined that one for arriving in its batch. Feedback can
            // also name packets out of send order. Either way the delta says
            // nothing: start over.
            let send = complete.last_send_us as i64 - previous.last_send_us as i64;
            let arrival = complete.last_arrival_us - previous.last_arrival_us;
            if (arrival - send).abs() > CLOCK_JUMP_US || arrival < 0 || send < 0 {
                self.previous = None;
                self.current = None;
                return Grouped::Reset;
            }
            out = Grouped::Delta(GroupDelta {
                send_ms: send as f64 / 1000.0,
                arrival_ms: arrival as f64 / 1000.0,
                at_ms: complete.last_arrival_us as f64 / 1000.0,
            });
        }
        self.previous = Some(complete);
        self.current = Some(Group::new(send_us, arrival_us));
        out
    }
}

/// The trendline filter and overuse detector with its adaptive threshold.
#[derive(Debug)]
struct Trendline {
    /// (arrival time since the first, smoothed accumulated delay), ms; a
    /// ring of the last [`WINDOW`] groups.
    points: [(f64, f64); WINDOW],
    len: usize,
    head: usize,
    first_at_ms: Option<f64>,
    accumulated_ms: f64,
    smoothed_ms: f64,
    deltas: u32,
    trend: f64,
    previous_trend: f64,
    threshold: f64,
    threshold_updated_ms: Option<f64>,
    time_over_ms: Option<f64>,
    overuse_count: u32,
    usage: Usage,
    /// Times overuse was (re)detected: the trend above the threshold for
    /// long enough *and still rising*.
    triggers: u64,
}

impl Default for Trendline {
    fn default() -> Self {
        Self {
            points: [(0.0, 0.0); WINDOW],
            len: 0,
            head: 0,
            first_at_ms: None,
            accumulated_ms: 0.0,
            smoothed_ms: 0.0,
            deltas: 0,
            trend: 0.0,
            previous_trend: 0.0,
            threshold: THRESHOLD_INITIAL,
            threshold_updated_ms: None,
            time_over_ms: None,
            overuse_count: 0,
            usage: Usage::Normal,
            triggers: 0,
        }
    }
}

impl Trendline {
    fn update(&mut self, delta: GroupDelta) -> Usage {
        self.deltas = (self.deltas + 1).min(1000);
        let first = *self.first_at_ms.get_or_insert(delta.at_ms);
        self.accumulated_ms += delta.arrival_ms - delta.send_ms;
        self.smoothed_ms = SMOOTHING * self.smoothed_ms + (1.0 - SMOOTHING) * self.accumulated_ms;
        self.points[self.head] = (delta.at_ms - first, self.smoothed_ms);
        self.head = (self.head + 1) % WINDOW;
        self.len = (self.len + 1).min(WINDOW);
        if self.len == WINDOW {
            if let Some(slope) = self.slope() {
                self.trend = slope;
            }
        }
        self.detect(delta.send_ms, delta.at_ms)
    }

    /// Least-squares slope of the window's points.
    fn slope(&self) -> Option<f64> {
        let points = &self.points[..self.len];
        let n = points.len() as f64;
        let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
        let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
        let (mut numerator, mut denominator) = (0.0, 0.0);
        for &(x, y) in points {
            numerator += (x - mean_x) * (y - mean_y);
            denominator += (x - mean_x) * (x - mean_x);
        }
        (denominator != 0.0).then(|| numerator / denominator)
    }

    fn detect(&mut self, send_delta_ms: f64, now_ms: f64) -> Usage {
        if self.deltas < 2 {
            self.usage = Usage::Normal;
            return self.usage;
        }
        let modified = f64::from(self.deltas.min(60)) * self.trend * GAIN;
        if modified > self.threshold {
            let over = match self.time_over_ms {
                None => send_delta_ms / 2.0,
                Some(t) => t + send_delta_ms,
            };
            self.time_over_ms = Some(over);
            self.overuse_count += 1;
            if over > OVERUSE_TIME_MS && self.overuse_count > 1 && self.trend >= self.previous_trend
            {
                self.time_over_ms = Some(0.0);
                self.overuse_count = 0;
                self.usage = Usage::Over;
                self.triggers += 1;
            }
        } else if modified < -self.threshold {
            self.time_over_ms = None;
            self.overuse_count = 0;
            self.usage = Usage::Under;
        } else {
            self.time_over_ms = None;
            self.overuse_count = 0;
            self.usage = Usage::Normal;
        }
        self.previous_trend = self.trend;
        self.adapt_threshold(modified, now_ms);
        self.usage
    }

    fn adapt_threshold(&mut self, modified: f64, now_ms: f64) {
        let last = *self.threshold_updated_ms.get_or_insert(now_ms);
        if modified.abs() > self.threshold + 15.0 {
            // A spike (a route change, a burst): not something to adapt to.
            self.threshold_updated_ms = Some(now_ms);
            return;
        }
        let k = if modified.abs() < self.threshold {
            K_DOWN
        } else {
            K_UP
        };
        let elapsed = (now_ms - last).clamp(0.0, 100.0);
        self.threshold += k * (modified.abs() - self.threshold) * elapsed;
        self.threshold = self.threshold.clamp(THRESHOLD_MIN, THRESHOLD_MAX);
        self.threshold_updated_ms = Some(now_ms);
    }
}

/// Delay-based detection over fed-back packets, in send order.
#[derive(Debug, Default)]
pub(crate) struct DelayDetector {
    groups: InterArrival,
    trend: Trendline,
}

impl DelayDetector {
    /// Feeds one received packet (sent at `send_us` here, arrived at
    /// `arrival_us` there). Returns the usage if a group completed.
    pub fn on_packet(&mut self, send_us: u64, arrival_us: i64) -> Option<Usage> {
        match self.groups.push(send_us, arrival_us) {
            Grouped::Pending => None,
            Grouped::Delta(delta) => Some(self.trend.update(delta)),
            Grouped::Reset => {
                let triggers = self.trend.triggers;
                *self = Self::default();
                self.trend.triggers = triggers;
                None
            }
        }
    }

    /// How many times overuse was (re)detected so far. The detector stays
    /// [`Usage::Over`] while the trend is above the threshold, also once
    /// the queue stopped growing; a new trigger means it still grows.
    pub fn overuse_triggers(&self) -> u64 {
        self.trend.triggers
    }

    /// The latest conclusion.
    pub fn usage(&self) -> Usage {
        self.trend.usage
    }

    /// The current scaled trend and threshold (ms), for stats and tests.
    pub fn trend_and_threshold(&self) -> (f64, f64) {
        (
            f64::from(self.trend.deltas.min(60)) * self.trend.trend * GAIN,
            self.trend.threshold,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by a Chromium viewer's RFC 8888 feedback (a debug build
    /// panicked on the subtraction): a group that ends before the previous
    /// one did resets the grouping instead of underflowing.
    #[test]
    fn a_group_ending_before_the_previous_one_resets() {
        let mut groups = InterArrival::default();
        assert!(matches!(groups.push(0, 0), Grouped::Pending));
        // Sent 20 ms later but arriving in the same batch: the same group,
        // which now ends at 20 ms.
        assert!(matches!(groups.push(20_000, 100), Grouped::Pending));
        // Sent at 6 ms, arriving late: a new group, ending at 6 ms.
        assert!(matches!(groups.push(6_000, 30_000), Grouped::Pending));
        assert!(matches!(groups.push(30_000, 60_000), Grouped::Reset));
        // And it goes on from there.
        assert!(matches!(groups.push(40_000, 70_000), Grouped::Pending));
        assert!(matches!(groups.push(50_000, 80_000), Grouped::Pending));
        assert!(matches!(groups.push(60_000, 90_000), Grouped::Delta(_)));
    }

    /// Whatever order and times feedback gives packets in, grouping never
    /// panics (a seeded walk through reorderings, batches and clock jumps).
    #[test]
    fn any_send_and_arrival_order_is_taken_without_panicking() {
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut groups = InterArrival::default();
        let (mut send, mut arrival) = (1_000_000u64, 0i64);
        for _ in 0..100_000 {
            let r = next();
            // Mostly forward, sometimes back, sometimes a jump.
            match r % 16 {
                0 => send = send.saturating_sub(r % 50_000),
                1 => arrival -= (r % 50_000) as i64,
                2 => arrival += (r % 10_000_000) as i64,
                _ => {
                    send += r % 20_000;
                    arrival += ((r >> 20) % 25_000) as i64;
                }
            }
            let _ = groups.push(send, arrival);
        }
    }

    /// Packets every `gap_us`, each arriving after `queue(i)` extra delay.
    fn run(detector: &mut DelayDetector, n: u64, gap_us: u64, queue: impl Fn(u64) -> i64) -> Usage {
        let mut last = Usage::Normal;
        for i in 0..n {
            let send = i * gap_us;
            if let Some(usage) = detector.on_packet(send, 20_000 + send as i64 + queue(i)) {
                last = usage;
            }
        }
        last
    }

    #[test]
    fn steady_delay_is_normal() {
        let mut detector = DelayDetector::default();
        assert_eq!(run(&mut detector, 500, 6_000, |_| 0), Usage::Normal);
    }

    #[test]
    fn growing_delay_is_overuse() {
        let mut detector = DelayDetector::default();
        // 1 ms more queue per packet sent 6 ms apart.
        assert_eq!(
            run(&mut detector, 200, 6_000, |i| i as i64 * 1_000),
            Usage::Over
        );
    }

    #[test]
    fn draining_delay_is_underuse() {
        let mut detector = DelayDetector::default();
        // 0.8 ms less queue per packet sent 6 ms apart (arrivals 5.2 ms
        // apart: a faster drain reads as one burst, see the next test).
        assert_eq!(
            run(&mut detector, 240, 6_000, |i| 200_000 - i as i64 * 800),
            Usage::Under
        );
    }

    #[test]
    fn a_receiver_that_stalls_and_catches_up_is_not_a_queue() {
        // A receiver whose thread is late (a busy CPU, Wi-Fi aggregation)
        // stamps packets late, then a batch within a millisecond: every
        // 150 ms, 40 ms of packets are held back and arrive together. The
        // path has no queue; only libwebrtc's arrival-time burst grouping
        // keeps that from reading as one.
        let mut detector = DelayDetector::default();
        let gap = 2_000u64;
        for i in 0..3_000u64 {
            let send = i * gap;
            let phase = send % 150_000;
            let arrival = if phase < 40_000 {
                // Held back until 40 ms into the cycle, then 20 us apart.
                send - phase + 40_000 + (phase / gap) * 20
            } else {
                send
            };
            detector.on_packet(send, 20_000 + arrival as i64);
        }
        assert_eq!(detector.overuse_triggers(), 0);
    }

    #[test]
    fn a_clock_jump_resets_instead_of_reading_as_queue() {
        let mut detector = DelayDetector::default();
        run(&mut detector, 100, 6_000, |_| 0);
        for i in 100..200u64 {
            let send = i * 6_000;
            detector.on_packet(send, 3_600_000_000 + send as i64);
        }
        assert_eq!(detector.usage(), Usage::Normal);
    }
}
