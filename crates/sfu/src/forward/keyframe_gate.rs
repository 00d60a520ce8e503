//! Keyframe requests toward a publisher, merged: at most one per interval
//! per encoding, however many subscribers ask.

use std::time::{Duration, Instant};

/// Merges keyframe requests: the first goes through, later ones within the
/// interval are folded into one sent when the interval ends.
#[derive(Debug, Default, Clone)]
pub(crate) struct KeyframeGate {
    last_sent: Option<Instant>,
    pending: bool,
    /// A waiting request goes no sooner than this (another layer of the
    /// same encoder was asked for a keyframe just before: see
    /// [`KeyframeGate::defer`]).
    not_before: Option<Instant>,
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
                self.not_before = None;
                true
            }
        }
    }

    /// A request that may not go before `until`: it waits, merged, and
    /// goes then.
    pub fn defer(&mut self, until: Instant) {
        self.pending = true;
        self.not_before = Some(self.not_before.map_or(until, |t| t.max(until)));
    }

    /// When a merged request is due, if one is waiting.
    pub fn deadline(&self, interval: Duration) -> Option<Instant> {
        if !self.pending {
            return None;
        }
        let after_last = self.last_sent.map(|t| t + interval);
        match (after_last, self.not_before) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// Time passed: returns true when the merged request should go now.
    #[must_use = "true means a request must go now"]
    pub fn poll(&mut self, now: Instant, interval: Duration) -> bool {
        match self.deadline(interval) {
            Some(d) if d <= now => {
                self.last_sent = Some(now);
                self.pending = false;
                self.not_before = None;
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

    #[test]
    fn a_deferred_request_waits_for_its_time() {
        let t0 = Instant::now();
        let iv = Duration::from_millis(500);
        let mut g = KeyframeGate::default();
        g.defer(t0 + Duration::from_millis(300));
        assert_eq!(g.deadline(iv), Some(t0 + Duration::from_millis(300)));
        assert!(!g.poll(t0 + Duration::from_millis(299), iv));
        assert!(g.poll(t0 + Duration::from_millis(300), iv));
        assert_eq!(g.deadline(iv), None, "sent");
        // Deferred past the interval after the last one: the later wins.
        g.defer(t0 + Duration::from_millis(1000));
        assert_eq!(g.deadline(iv), Some(t0 + Duration::from_millis(1000)));
    }
}
