//! A byte rate over a sliding window, in fixed buckets: O(1) per sample, no
//! allocation.

/// Bucket width (microseconds).
const BUCKET_US: i64 = 10_000;
/// Buckets kept: the window is at most `BUCKETS - 2` buckets long.
const BUCKETS: usize = 64;

/// Bytes per time bucket on one clock (the receiver's for the delivered
/// rate, this side's for the send rate).
#[derive(Debug)]
pub(crate) struct RateWindow {
    buckets: [u64; BUCKETS],
    /// Index (time / BUCKET_US) of the newest bucket.
    newest: Option<i64>,
    /// Index of the first bucket ever filled.
    first: i64,
    window_us: i64,
}

impl RateWindow {
    /// A window of `window_us` microseconds (at most 620 ms).
    pub fn new(window_us: i64) -> Self {
        Self {
            buckets: [0; BUCKETS],
            newest: None,
            first: 0,
            window_us: window_us.clamp(BUCKET_US, BUCKET_US * (BUCKETS as i64 - 2)),
        }
    }

    fn slot(index: i64) -> usize {
        index.rem_euclid(BUCKETS as i64) as usize
    }

    /// Moves the newest bucket forward to `index`, clearing what it skips.
    fn advance(&mut self, index: i64) {
        match self.newest {
            None => {
                self.newest = Some(index);
                self.first = index;
            }
            Some(newest) if index > newest => {
                let skipped = (index - newest).min(BUCKETS as i64);
                for step in 1..=skipped {
                    self.buckets[Self::slot(newest + step)] = 0;
                }
                self.newest = Some(index);
            }
            Some(_) => {}
        }
    }

    /// Adds `bytes` at time `at_us`. A sample older than the window is
    /// dropped.
    pub fn add(&mut self, at_us: i64, bytes: usize) {
        let index = at_us.div_euclid(BUCKET_US);
        self.advance(index);
        if let Some(newest) = self.newest {
            if newest - index < BUCKETS as i64 {
                self.buckets[Self::slot(index)] += bytes as u64;
            }
        }
    }

    /// Bits per second over the window of complete buckets ending at the
    /// newest sample's, once at
    /// least a third of a window has been seen; `None` before.
    pub fn bps(&self) -> Option<f64> {
        // The newest bucket is still filling: count complete ones only.
        let newest = self.newest? - 1;
        let window = self.window_us / BUCKET_US;
        let span = (newest - self.first + 1).min(window);
        if span * 3 < window {
            return None;
        }
        let bytes: u64 = (0..span)
            .map(|back| self.buckets[Self::slot(newest - back)])
            .sum();
        Some(bytes as f64 * 8.0 * 1e6 / (span * BUCKET_US) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_rate_reads_back() {
        let mut window = RateWindow::new(250_000);
        // 1200 bytes every 4.8 ms = 2 Mb/s.
        for i in 0..1000i64 {
            window.add(i * 4_800, 1200);
        }
        let bps = window.bps().expect("rate");
        assert!((bps - 2e6).abs() < 0.05 * 2e6, "{bps}");
    }

    #[test]
    fn too_early_is_none_and_a_gap_is_zero() {
        let mut window = RateWindow::new(300_000);
        window.add(0, 1000);
        assert_eq!(window.bps(), None);
        for i in 0..100 {
            window.add(i * 10_000, 1000);
        }
        assert!(window.bps().is_some());
        window.add(10_000_000, 0);
        assert_eq!(window.bps(), Some(0.0));
    }
}
