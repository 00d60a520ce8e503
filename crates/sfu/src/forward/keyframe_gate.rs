//! Keyframe requests toward a publisher, merged: at most one per interval
//! per encoding, however many subscribers ask.

use std::time::{Duration, Instant};

/// Merges keyframe requests: the first goes through, later ones within the
/// interval are folded into one sent when the interval ends.
#[derive(Debug, Default, Clone)]
pub(crate) struct KeyframeGate {
    last_sent: Option<Instant>,
    pending: bool,
}

impl KeyframeGate {
    /// A subscriber asked for a keyframe. Returns true when a request should
    /// go to the publisher now.
    pub fn request(&mut self, now: Instant, interval: Duration) -> bool {
        match self.last_sent {
            Some(t) if now.saturating_duration_since(t) < interval => {
                self.pending = true;
                false
            }
            _ => {
                self.last_sent = Some(now);
                self.pending = false;
                true
            }
        }
    }

    /// When a merged request is due, if one is waiting.
    pub fn deadline(&self, interval: Duration) -> Option<Instant> {
        match (self.pending, self.last_sent) {
            (true, Some(t)) => Some(t + interval),
            _ => None,
        }
    }

    /// Time passed: returns true when the merged request should go now.
    #[must_use = "true means a request must go now"]
    pub fn poll(&mut self, now: Instant, interval: Duration) -> bool {
        match self.deadline(interval) {
            Some(d) if d <= now => {
                self.last_sent = Some(now);
                self.pending = false;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyframe_requests_are_merged_per_interval() {
        let t0 = Instant::now();
        let iv = Duration::from_millis(500);
        let mut g = KeyframeGate::default();
        assert!(g.request(t0, iv), "first request passes");
        assert!(!g.request(t0 + Duration::from_millis(10), iv));
        assert!(!g.request(t0 + Duration::from_millis(20), iv));
        assert_eq!(g.deadline(iv), Some(t0 + iv));
        assert!(!g.poll(t0 + Duration::from_millis(499), iv));
        assert!(g.poll(t0 + iv, iv), "merged request goes at the deadline");
        assert!(!g.poll(t0 + iv * 2, iv), "only once");
        assert!(g.request(t0 + iv * 3, iv));
    }
}
