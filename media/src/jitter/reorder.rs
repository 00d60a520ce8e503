//! How long to wait for packets that arrive after their successors.
//!
//! A packet overtaken by a later one was reordered by the network's jitter,
//! or resent after a NACK, or is the original of a packet already resent. Its
//! delay is not the network's delay for every packet, so it does not go into
//! the [`DelayEstimator`](super::DelayEstimator)'s histogram, whose fast
//! forget factor would raise the target for a second after every burst of
//! resends and take it back by time stretching. Instead, as NetEQ's reorder
//! optimizer does, a slowly forgetting histogram of how late reordered
//! packets come (in-order packets count at 0; about the last 200 packets by
//! default, `DelayConfig::reorder_forget_factor`) gives the delay that
//! minimises
//!
//! ```text
//! cost(d) = d + ms_per_loss_percent * (percent of packets reordered by more than d)
//! ```
//!
//! so the target rises to catch reordered packets only when enough of them
//! come late enough to be worth the extra delay (20 ms of delay per percent
//! of packets saved by default, NetEQ's figure). Under heavy jitter that
//! catches the packets the jitter reorders; a burst of resends now and then
//! is not worth a higher delay, and such resends that come after their
//! time was concealed are dropped as late.

/// Width of one bucket of the reordering histogram, in ms.
const BUCKET_MS: f64 = 5.0;
/// The histogram starts as if this many packets had come in order, so the
/// first few resends of a call do not decide the delay on their own.
const PRIOR_PACKETS: u32 = 200;
/// A new delay is taken only if it costs this much less (ms) than keeping
/// the current one: near the break-even point the delay does not flip
/// between "wait" and "do not wait" with every resend (each flip is a
/// stretch of the playout).
const HYSTERESIS_MS: f64 = 10.0;

/// The delay worth waiting for reordered packets (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct ReorderOptimizer {
    /// Fraction of packets per bucket: bucket 0 holds in-order packets (and
    /// reordered ones with no relative delay), bucket `i >= 1` relative
    /// delays in `((i - 1) w, i w]`; the last holds everything beyond.
    buckets: Vec<f64>,
    forget_factor: f64,
    ms_per_loss_percent: f64,
    /// Packets seen, the [`PRIOR_PACKETS`] included, saturating. While it
    /// is below `1 / (1 - f)` every packet so far weighs alike (a forget
    /// factor of `1 - 1 / seen`); with the default prior and forget factor
    /// that phase is already over, and the prior's weight fades at `f`.
    seen: u32,
    optimal_ms: f64,
}

impl ReorderOptimizer {
    /// An empty histogram reaching `max_delay_ms`.
    pub(crate) fn new(max_delay_ms: f64, forget_factor: f64, ms_per_loss_percent: f64) -> Self {
        let n = ((max_delay_ms / BUCKET_MS).ceil().max(0.0) as usize).clamp(1, 2_000) + 2;
        let mut buckets = vec![0.0; n];
        buckets[0] = 1.0;
        ReorderOptimizer {
            buckets,
            forget_factor,
            ms_per_loss_percent,
            seen: PRIOR_PACKETS,
            optimal_ms: 0.0,
        }
    }

    /// Account for one packet: `Some(relative delay in ms)` if it was
    /// overtaken by a later one, `None` if it came in order.
    pub(crate) fn update(&mut self, reordered_by_ms: Option<f64>) {
        self.seen = self.seen.saturating_add(1);
        let f = self
            .forget_factor
            .min(1.0 - 1.0 / f64::from(self.seen.max(1)));
        let last = self.buckets.len() - 1;
        let index = match reordered_by_ms {
            Some(ms) if ms.is_finite() && ms > 0.0 => ((ms / BUCKET_MS).ceil() as usize).min(last),
            _ => 0,
        };
        for b in &mut self.buckets {
            *b *= f;
        }
        self.buckets[index] += 1.0 - f;
        self.optimal_ms = self.find_optimal();
    }

    /// The delay (ms) at which waiting longer for reordered packets stops
    /// paying for itself; 0 when reordering is rare.
    pub(crate) fn optimal_ms(&self) -> f64 {
        self.optimal_ms
    }

    fn find_optimal(&self) -> f64 {
        let total: f64 = self.buckets.iter().sum();
        if total <= 0.0 {
            return 0.0;
        }
        let mut later = total;
        let mut best = (f64::INFINITY, 0.0);
        let mut current = f64::INFINITY;
        for (i, b) in self.buckets.iter().enumerate() {
            later -= b;
            let delay = i as f64 * BUCKET_MS;
            let loss_percent = 100.0 * later.max(0.0) / total;
            let cost = delay + self.ms_per_loss_percent * loss_percent;
            if cost < best.0 {
                best = (cost, delay);
            }
            if delay <= self.optimal_ms {
                current = cost;
            }
        }
        if best.0 + HYSTERESIS_MS < current {
            best.1
        } else {
            self.optimal_ms
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn optimizer() -> ReorderOptimizer {
        ReorderOptimizer::new(500.0, 0.9993, 20.0)
    }

    #[test]
    fn in_order_packets_want_no_wait() {
        let mut r = optimizer();
        assert_eq!(r.optimal_ms(), 0.0);
        for _ in 0..1_000 {
            r.update(None);
        }
        assert_eq!(r.optimal_ms(), 0.0);
    }

    /// A burst of three resends 27-67 ms late once a second (3 % of the
    /// packets): catching them would cost more delay than they are worth.
    #[test]
    fn rare_late_resends_are_not_worth_waiting_for() {
        let mut r = optimizer();
        for i in 0..3_000 {
            match i % 100 {
                0 => r.update(Some(67.0)),
                1 => r.update(Some(47.0)),
                2 => r.update(Some(27.0)),
                _ => r.update(None),
            }
        }
        assert_eq!(r.optimal_ms(), 0.0);
    }

    /// Jitter that reorders a third of the packets by up to 40 ms: waiting
    /// for them is worth it.
    #[test]
    fn frequent_reordering_is_waited_for() {
        let mut r = optimizer();
        for i in 0..3_000 {
            match i % 3 {
                0 => r.update(Some(f64::from(i % 40) + 1.0)),
                _ => r.update(None),
            }
        }
        let d = r.optimal_ms();
        assert!((35.0..=45.0).contains(&d), "{d}");
    }

    /// With no price on loss nothing is waited for; a non-finite delay
    /// counts as in order rather than poisoning the histogram.
    #[test]
    fn free_loss_and_bad_input() {
        let mut r = ReorderOptimizer::new(500.0, 0.9993, 0.0);
        for _ in 0..100 {
            r.update(Some(30.0));
        }
        assert_eq!(r.optimal_ms(), 0.0);
        let mut r = optimizer();
        for _ in 0..100 {
            r.update(Some(f64::NAN));
            r.update(Some(f64::INFINITY));
        }
        assert_eq!(r.optimal_ms(), 0.0);
    }
}
