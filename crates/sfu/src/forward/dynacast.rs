//! Dynacast: a simulcast layer that no subscriber receives is not worth
//! encoding and sending. The publisher is told to stop it, and to start it
//! again as soon as a subscriber's allocation wants it.
//!
//! Per layer: [`DynacastState`]. A layer nobody wants for [`STOP_AFTER`]
//! is stopped (so that a subscriber moving between layers, or a grid
//! being rearranged, does not make the publisher's encoder start and stop
//! again and again); a stopped layer that someone wants is started at once.
//! The lowest layer is never stopped: it keeps the track alive (it is what
//! a new subscriber gets first) and costs little.

use std::time::{Duration, Instant};

/// How long a layer goes unwanted before the publisher is told to stop it.
/// Long: turning a layer on or off makes Chromium reconfigure its VP8
/// encoder, which sends a keyframe on every layer, and a layer turned on
/// again may send few frames for a second or two (seen on a thin link,
/// where the allocator moves layers more: the restarted layer decoded
/// nothing for 2 s). A layer nobody wanted for 10 s is not coming back soon.
pub const STOP_AFTER: Duration = Duration::from_secs(10);

/// Dynacast's memory of one layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DynacastState {
    /// The publisher was told to stop it.
    pub stopped: bool,
    /// Since when no subscriber wants it.
    unwanted_since: Option<Instant>,
}

/// What the publisher must be told of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Stop sending it.
    Stop,
    /// Send it again.
    Start,
}

impl DynacastState {
    /// Look at the layer again: `wanted` when a subscriber receives it or
    /// waits for it, `lowest` for the track's lowest layer. Returns what
    /// the publisher must be told, if anything.
    pub fn update(&mut self, now: Instant, wanted: bool, lowest: bool) -> Option<Change> {
        if wanted || lowest {
            self.unwanted_since = None;
            if self.stopped {
                self.stopped = false;
                return Some(Change::Start);
            }
            return None;
        }
        if self.stopped {
            return None;
        }
        let since = *self.unwanted_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= STOP_AFTER {
            self.stopped = true;
            return Some(Change::Stop);
        }
        None
    }

    /// When [`DynacastState::update`] would stop the layer if nothing
    /// changes.
    pub fn stop_due(&self) -> Option<Instant> {
        (!self.stopped)
            .then_some(self.unwanted_since)
            .flatten()
            .map(|t| t + STOP_AFTER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unwanted_layer_stops_after_the_hold_and_starts_at_once() {
        let t = Instant::now();
        let mut s = DynacastState::default();
        assert_eq!(s.update(t, true, false), None);
        assert_eq!(s.update(t, false, false), None);
        assert_eq!(s.stop_due(), Some(t + STOP_AFTER));
        assert_eq!(s.update(t + STOP_AFTER / 2, false, false), None);
        assert_eq!(s.update(t + STOP_AFTER, false, false), Some(Change::Stop));
        assert!(s.stopped);
        assert_eq!(s.update(t + STOP_AFTER * 2, false, false), None, "once");
        assert_eq!(s.stop_due(), None);
        assert_eq!(
            s.update(t + STOP_AFTER * 3, true, false),
            Some(Change::Start)
        );
        assert_eq!(s.update(t + STOP_AFTER * 3, true, false), None, "once");
    }

    #[test]
    fn wanted_again_within_the_hold_nothing_happens() {
        let t = Instant::now();
        let mut s = DynacastState::default();
        assert_eq!(s.update(t, false, false), None);
        assert_eq!(s.update(t + STOP_AFTER / 2, true, false), None);
        assert_eq!(
            s.update(t + STOP_AFTER, false, false),
            None,
            "the hold restarts"
        );
        assert_eq!(
            s.update(t + STOP_AFTER * 2, false, false),
            Some(Change::Stop)
        );
    }

    #[test]
    fn the_lowest_layer_is_never_stopped() {
        let t = Instant::now();
        let mut s = DynacastState::default();
        for i in 0..10 {
            assert_eq!(s.update(t + STOP_AFTER * i, false, true), None);
        }
        assert!(!s.stopped);
    }
}
