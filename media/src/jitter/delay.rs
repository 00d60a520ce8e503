//! The arrival-delay estimator and the target delay it gives.
//!
//! For every packet, the *relative arrival delay* is how much later it arrived
//! than the best-placed packet of the last [`DelayConfig::window`] predicts:
//!
//! ```text
//! transit(p)  = arrival(p) - timestamp(p) / 48 kHz          (ms; offset unknown, irrelevant)
//! relative(p) = transit(p) - min { transit(q) : q arrived within the window before p }
//! ```
//!
//! A sliding-window minimum (monotonic deque) keeps this O(1) per packet. The
//! relative delays feed a histogram of [`DelayConfig::bucket_ms`]-wide buckets
//! with a forget factor: on each packet every bucket is multiplied by `f` and
//! the packet's bucket gains `1 - f` (NetEQ's DelayManager uses f = 0.983). The
//! histogram therefore weighs the last ~`1 / (1 - f)` packets (about 1.2 s of
//! 20 ms packets): a burst of jitter moves the quantile up within a few
//! packets, and once the jitter stops the old mass decays by `f` per packet, so
//! the quantile falls back within seconds.
//!
//! The target delay is the [`DelayConfig::quantile`] (0.95) of that
//! histogram, interpolated linearly inside its bucket (1 ms buckets by
//! default), plus [`DelayConfig::margin`], clamped to `[min_delay, max_delay]`.
//! It is the *playout lag* the buffer should keep: how far the playout
//! timeline runs behind the best-placed packet of the window
//! ([`DelayEstimator::reference_transit_ms`]). A packet whose relative delay is
//! at most the lag arrives in time; so a lag equal to the q95 has 95% of the
//! packets in time, and the time a packet actually waits in the buffer is the
//! lag minus its own relative delay.
//!
//! Timestamp gaps (DTX) move arrival and timestamp together, so they do not
//! show up as delay.

use std::collections::VecDeque;
use std::time::Duration;

/// Largest number of entries in the sliding-minimum window (bounds memory when a
/// caller passes a frozen clock).
const MAX_WINDOW_ENTRIES: usize = 512;
/// The histogram weights grow by `1 / f` per packet instead of every bucket
/// shrinking by `f`; past this they are scaled back to 1 (O(1) per packet).
const RESCALE_ABOVE: f64 = 1e100;

/// Settings of the [`DelayEstimator`].
#[derive(Debug, Clone, PartialEq)]
pub struct DelayConfig {
    /// Quantile of the relative delay to cover (0.95 = 95th percentile).
    pub quantile: f64,
    /// Per-packet forget factor of the histogram, in `(0, 1)`.
    pub forget_factor: f64,
    /// Width of one histogram bucket, in ms.
    pub bucket_ms: f64,
    /// How far back the reference (minimum transit) is searched.
    pub window: Duration,
    /// Added to the quantile to get the target (default 0: the playout step
    /// of one packet already leaves the lag 0-20 ms above the target).
    pub margin: Duration,
    /// Smallest target delay.
    pub min_delay: Duration,
    /// Largest target delay (relative delays beyond it all land in the top bucket).
    pub max_delay: Duration,
    /// Per-packet forget factor of the histogram of packets that arrive
    /// after their successors, in `(0, 1)`. Default 0.995: about the last
    /// 200 packets (4 s). NetEQ's reorder optimizer uses 0.9993 (about
    /// 30 s); here that kept the delay up for 22 s after a spell of jitter,
    /// against 9 s with 0.995, for the same speech quality.
    pub reorder_forget_factor: f64,
    /// What waiting for reordered packets may cost: ms of delay per percent
    /// of packets it saves from arriving too late (NetEQ: 20). 0: never
    /// wait for them.
    pub reorder_ms_per_loss_percent: f64,
}

impl Default for DelayConfig {
    fn default() -> Self {
        DelayConfig {
            quantile: 0.95,
            forget_factor: 0.983,
            bucket_ms: 1.0,
            window: Duration::from_secs(2),
            margin: Duration::ZERO,
            min_delay: Duration::ZERO,
            max_delay: Duration::from_millis(500),
            reorder_forget_factor: 0.995,
            reorder_ms_per_loss_percent: 20.0,
        }
    }
}

/// Relative arrival delay estimator with a forgetting histogram (see the module
/// docs).
#[derive(Debug, Clone)]
pub struct DelayEstimator {
    config: DelayConfig,
    buckets: Vec<f64>,
    /// Total weight in `buckets`.
    mass: f64,
    /// Weight the next packet adds (grows by `1 / f` per packet, so older
    /// packets weigh `f^age` relative to it; rescaled now and then).
    weight: f64,
    /// The quantile, recomputed on each update.
    quantile_ms: f64,
    /// The median, recomputed on each update.
    median_ms: f64,
    /// (arrival, transit ms), transit increasing from front to back.
    window: VecDeque<(Duration, f64)>,
    last_relative_ms: f64,
}

impl DelayEstimator {
    /// A fresh estimator. The config is assumed valid (see
    /// `JitterConfig::validate`).
    pub fn new(config: DelayConfig) -> Self {
        let max_ms = config.max_delay.as_secs_f64() * 1000.0;
        // Buckets 0 ..= max / w, and one above for everything beyond.
        let n = ((max_ms / config.bucket_ms).ceil() as usize).clamp(1, 10_000) + 2;
        DelayEstimator {
            config,
            buckets: vec![0.0; n],
            mass: 0.0,
            weight: 1.0,
            quantile_ms: 0.0,
            median_ms: 0.0,
            window: VecDeque::new(),
            last_relative_ms: 0.0,
        }
    }

    /// Account for one packet with extended RTP timestamp `ts` (48 kHz) that
    /// arrived at `arrival`. Returns its relative delay in ms.
    pub fn update(&mut self, ts: i64, arrival: Duration) -> f64 {
        let arrival_ms = arrival.as_secs_f64() * 1000.0;
        let transit = arrival_ms - ts as f64 / 48.0;
        // Expire entries older than the window.
        let horizon = arrival.saturating_sub(self.config.window);
        while self.window.front().is_some_and(|(t, _)| *t < horizon) {
            self.window.pop_front();
        }
        while self.window.back().is_some_and(|(_, tr)| *tr >= transit) {
            self.window.pop_back();
        }
        if self.window.len() >= MAX_WINDOW_ENTRIES {
            self.window.pop_front();
        }
        self.window.push_back((arrival, transit));
        let min = self.window.front().map_or(transit, |(_, tr)| *tr);
        let relative = (transit - min).max(0.0);
        self.last_relative_ms = relative;

        // Bucket 0 holds exactly 0 (the best-placed packets), bucket i >= 1
        // holds ((i - 1) w, i w].
        let last = self.buckets.len() - 1;
        // (1 ns of slack: float rounding of on-time arrivals is not delay.)
        let idx = ((relative / self.config.bucket_ms - 1e-6).ceil().max(0.0) as usize).min(last);
        self.weight /= self.config.forget_factor;
        if self.weight > RESCALE_ABOVE {
            let k = 1.0 / self.weight;
            // Weights that have decayed to nothing become exactly 0 (no
            // subnormal arithmetic later).
            self.buckets
                .iter_mut()
                .for_each(|b| *b = if *b * k < 1e-200 { 0.0 } else { *b * k });
            self.mass *= k;
            self.weight = 1.0;
        }
        self.buckets[idx] += self.weight;
        self.mass += self.weight;
        let (median, quantile) = self.compute_quantiles(0.5, self.config.quantile);
        self.median_ms = median;
        self.quantile_ms = quantile;
        relative
    }

    /// The relative delay (ms) of a packet that arrived after a later one,
    /// against the current arrival line, without letting it into the
    /// histogram or the window (see `reorder`). It becomes
    /// [`last_relative_ms`](Self::last_relative_ms).
    pub fn observe_reordered(&mut self, ts: i64, arrival: Duration) -> f64 {
        let transit = arrival.as_secs_f64() * 1000.0 - ts as f64 / 48.0;
        let relative = self
            .window
            .front()
            .map_or(0.0, |(_, min)| (transit - min).max(0.0));
        self.last_relative_ms = relative;
        relative
    }

    /// Forget the arrival reference (a new stream starts: its timestamps have
    /// nothing to do with the old ones). The histogram is kept: the network has
    /// not changed.
    pub fn reset_reference(&mut self) {
        self.window.clear();
    }

    /// Relative delay of the last packet, in ms.
    pub fn last_relative_ms(&self) -> f64 {
        self.last_relative_ms
    }

    /// Smallest transit time (`arrival - timestamp`, ms) of the packets of the
    /// window: the arrival line of the best-placed packet, which relative
    /// delays and the playout lag are measured from. `None` before any packet
    /// of the current stream.
    pub fn reference_transit_ms(&self) -> Option<f64> {
        self.window.front().map(|(_, tr)| *tr)
    }

    /// The configured quantile of the relative delay, in ms (interpolated
    /// inside its bucket); 0 before any packet.
    pub fn quantile_ms(&self) -> f64 {
        self.quantile_ms
    }

    /// The median relative delay, in ms (interpolated); 0 before any packet.
    pub fn median_ms(&self) -> f64 {
        self.median_ms
    }

    /// Two quantiles `low <= high` of the histogram in one pass.
    fn compute_quantiles(&self, low: f64, high: f64) -> (f64, f64) {
        if self.mass <= 0.0 {
            return (0.0, 0.0);
        }
        let goals = [low * self.mass, high * self.mass];
        let mut found = [None, None];
        let mut acc = 0.0;
        for (i, b) in self.buckets.iter().enumerate() {
            if *b > 0.0 {
                for (goal, slot) in goals.iter().zip(found.iter_mut()) {
                    if slot.is_none() && acc + b >= *goal {
                        let within = ((goal - acc) / b).clamp(0.0, 1.0);
                        *slot = Some(if i == 0 {
                            0.0
                        } else {
                            (i as f64 - 1.0 + within) * self.config.bucket_ms
                        });
                    }
                }
                if found[1].is_some() {
                    break;
                }
            }
            acc += b;
        }
        let top = (self.buckets.len() - 1) as f64 * self.config.bucket_ms;
        (found[0].unwrap_or(top), found[1].unwrap_or(top))
    }

    /// The target delay in ms: quantile + margin, clamped to
    /// `[min_delay, max_delay]`.
    pub fn target_ms(&self) -> f64 {
        let min = self.config.min_delay.as_secs_f64() * 1000.0;
        let max = (self.config.max_delay.as_secs_f64() * 1000.0).max(min);
        let margin = self.config.margin.as_secs_f64() * 1000.0;
        (self.quantile_ms() + margin).clamp(min, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prng::SplitMix64;

    fn ms(x: f64) -> Duration {
        Duration::from_secs_f64(x / 1000.0)
    }

    #[test]
    fn steady_stream_has_minimum_target() {
        let mut d = DelayEstimator::new(DelayConfig::default());
        for i in 0..500i64 {
            let r = d.update(i * 960, ms(100.0 + i as f64 * 20.0));
            assert!(r < 1e-6);
        }
        // No jitter, no margin, no minimum: nothing to wait for.
        assert_eq!(d.target_ms(), 0.0);
        let d = DelayEstimator::new(DelayConfig {
            min_delay: Duration::from_millis(20),
            ..DelayConfig::default()
        });
        assert_eq!(d.target_ms(), 20.0);
    }

    #[test]
    fn quantile_is_interpolated_within_its_bucket() {
        let mut d = DelayEstimator::new(DelayConfig::default());
        let mut rng = SplitMix64::new(11);
        for i in 0..3000i64 {
            d.update(i * 960, ms(i as f64 * 20.0 + rng.range_f64(0.0, 30.0)));
        }
        // q95 of U(0, 30) is 28.5; the forgetting histogram holds ~60 packets.
        let q = d.quantile_ms();
        assert!((25.0..=30.0).contains(&q), "{q}");
        let reference = d.reference_transit_ms().expect("reference");
        assert!(reference.abs() < 2.0, "best transit ~0: {reference}");
    }

    #[test]
    fn dtx_gap_is_not_delay() {
        let mut d = DelayEstimator::new(DelayConfig::default());
        for i in 0..100i64 {
            d.update(i * 960, ms(i as f64 * 20.0));
        }
        // 2 s of silence: timestamp and arrival jump together.
        let r = d.update(200 * 960, ms(200.0 * 20.0));
        assert!(r < 1e-6, "{r}");
    }

    #[test]
    fn jitter_raises_then_decays() {
        let mut d = DelayEstimator::new(DelayConfig::default());
        let mut rng = SplitMix64::new(3);
        for i in 0..1000i64 {
            d.update(i * 960, ms(i as f64 * 20.0 + rng.range_f64(0.0, 60.0)));
        }
        let q = d.quantile_ms();
        assert!((50.0..=65.0).contains(&q), "q95 of U(0,60) ~ 57: {q}");
        for i in 1000..1500i64 {
            d.update(i * 960, ms(i as f64 * 20.0 + 30.0));
        }
        assert!(d.target_ms() < 40.0, "{}", d.target_ms());
    }

    #[test]
    fn huge_delays_clamp_to_max() {
        let mut d = DelayEstimator::new(DelayConfig::default());
        d.update(0, ms(0.0));
        for i in 1..100i64 {
            d.update(-i * 48_000_000, ms(i as f64));
        }
        assert_eq!(d.target_ms(), 500.0);
    }
}
