//! Simulcast: a publisher sends one video track as several encodings
//! ("layers", told apart by RID, RFC 8851/8853), and each subscriber gets
//! one of them, switched only at a keyframe of the new layer.
//!
//! A published track holds one `Layer` per encoding it has seen (one for
//! a track without simulcast). Each subscriber's leg has a [`LayerChoice`]:
//! the layer it forwards now and the one it wants. The wanted layer comes
//! from a rule ([`wanted_rank`], `pick`): the best layer for a subscriber
//! watching few videos, lower ones as the grid grows, and never a layer that
//! stopped arriving. The leg's sequence numbers and timestamps are rewritten
//! at every switch (`Leg::resync` in `leg`), so the subscriber sees
//! one continuous stream and is never renegotiated.

use crate::forward::layer::Layer;
pub use crate::forward::layer::TOP_RANK;
use std::time::{Duration, Instant};

/// How often the layer choice of every leg is looked at again.
pub const CHOICE_INTERVAL: Duration = Duration::from_millis(500);

/// The quality rank of a layer from its RID: the names browsers and SFUs
/// use (`q`/`h`/`f`, `low`/`mid`/`high`, `l`/`m`/`h`...), else a trailing
/// number (`r0`, `1`...: bigger is better), else `fallback` (the order the
/// layers appeared in).
pub fn rank_of(rid: &str, fallback: u8) -> u8 {
    match rid.to_ascii_lowercase().as_str() {
        "q" | "l" | "low" | "lo" | "quarter" => 0,
        "h" | "m" | "mid" | "medium" | "half" => 1,
        "f" | "high" | "hi" | "full" => TOP_RANK,
        other => {
            let digits = other.trim_start_matches(|c: char| !c.is_ascii_digit());
            digits.parse::<u8>().map_or(fallback, |n| n.min(TOP_RANK))
        }
    }
}

/// The rank a subscriber receiving `videos` video tracks wants: the best
/// layer for one or two, the middle one up to six, the lowest beyond (small
/// tiles). Bandwidth estimation or the subscriber's own wish may lower it
/// later; this is the default.
pub fn wanted_rank(videos: usize) -> u8 {
    match videos {
        0..=2 => TOP_RANK,
        3..=6 => 1,
        _ => 0,
    }
}

/// The layer to send someone who wants `rank`: the best active layer not
/// above it, else the lowest active layer, else (nothing active) the layer
/// that sent last.
pub(crate) fn pick(layers: &[Layer], now: Instant, rank: u8) -> Option<usize> {
    let active = || layers.iter().enumerate().filter(|(_, l)| l.active(now));
    active()
        .filter(|(_, l)| l.rank <= rank)
        .max_by_key(|(_, l)| l.rank)
        .or_else(|| active().min_by_key(|(_, l)| l.rank))
        .or_else(|| layers.iter().enumerate().max_by_key(|(_, l)| l.last_rx))
        .map(|(i, _)| i)
}

/// What a leg does with a packet of a simulcast track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it: it is of the layer the leg forwards.
    Forward,
    /// Send it after resynchronising the leg: it starts a keyframe of the
    /// wanted layer, which the leg forwards from now on.
    Switch,
    /// Not for this leg.
    Drop,
}

/// One leg's layers: the one it forwards and the one it wants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerChoice {
    /// Layer forwarded now (index into the track's layers).
    pub current: Option<usize>,
    /// Layer wanted; the leg moves to it at its next keyframe.
    pub target: Option<usize>,
    /// Stop forwarding `current` at the end of the frame being sent,
    /// without waiting for the target's keyframe ([`LayerChoice::drain`]).
    pub draining: bool,
}

impl LayerChoice {
    /// A packet of `layer` arrived; `keyframe` when it starts a keyframe.
    pub fn on_packet(&mut self, layer: usize, keyframe: bool) -> Verdict {
        if self.target == Some(layer) && self.current != Some(layer) && keyframe {
            self.current = Some(layer);
            self.draining = false;
            return Verdict::Switch;
        }
        if self.current == Some(layer) {
            Verdict::Forward
        } else {
            Verdict::Drop
        }
    }

    /// Whether a packet of `layer` would switch the leg if it started a
    /// keyframe (the only case where that is worth finding out).
    pub fn waits_for(&self, layer: usize) -> bool {
        self.target == Some(layer) && self.current != Some(layer)
    }

    /// Stop forwarding (the video is paused or hidden); the leg comes back
    /// at a keyframe of the next target set.
    pub fn stop(&mut self) {
        self.current = None;
        self.target = None;
        self.draining = false;
    }

    /// The path cannot carry the current layer: stop it at the end of the
    /// frame being sent, and send nothing until the target's keyframe.
    /// The picture holds a moment (the keyframe's round trip) where it
    /// would otherwise lose packets to the bottleneck (and audio with it)
    /// until that keyframe came.
    pub fn drain(&mut self) {
        if self.current.is_some() && self.current != self.target {
            self.draining = true;
        }
    }

    /// A packet of `layer` that ends a frame (RTP marker) was forwarded:
    /// a draining leg stops there.
    pub fn frame_ended(&mut self, layer: usize) {
        if self.draining && self.current == Some(layer) {
            self.current = None;
            self.draining = false;
        }
    }

    /// The layer whose packets the subscriber has (for NACKs and keyframe
    /// requests), else the one it waits for.
    pub fn layer(&self) -> Option<usize> {
        self.current.or(self.target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::layer::LAYER_IDLE;

    fn layer(rank: u8, last_rx: Instant) -> Layer {
        Layer::new(None, u32::from(rank), rank, 0, last_rx)
    }

    #[test]
    fn ranks_from_rids() {
        assert_eq!(rank_of("q", 9), 0);
        assert_eq!(rank_of("h", 9), 1);
        assert_eq!(rank_of("f", 9), 2);
        assert_eq!(rank_of("HIGH", 9), 2);
        assert_eq!(rank_of("r0", 9), 0);
        assert_eq!(rank_of("r1", 9), 1);
        assert_eq!(rank_of("7", 9), 2);
        assert_eq!(rank_of("foo", 1), 1);
    }

    #[test]
    fn the_grid_size_sets_the_wanted_rank() {
        assert_eq!(wanted_rank(1), TOP_RANK);
        assert_eq!(wanted_rank(4), 1);
        assert_eq!(wanted_rank(12), 0);
    }

    #[test]
    fn pick_takes_the_best_active_layer_not_above_the_wish() {
        let t = Instant::now();
        // Arrival order h, q, f.
        let layers = vec![layer(1, t), layer(0, t), layer(2, t)];
        assert_eq!(pick(&layers, t, 2), Some(2));
        assert_eq!(pick(&layers, t, 1), Some(0));
        assert_eq!(pick(&layers, t, 0), Some(1));
        // f stopped a while ago: h is the best left.
        let later = t + LAYER_IDLE * 2;
        let layers = vec![layer(1, later), layer(0, later), layer(2, t)];
        assert_eq!(pick(&layers, later, 2), Some(0));
        // Only f is active and q is wanted: f rather than nothing.
        let layers = vec![layer(0, t), layer(2, later)];
        assert_eq!(pick(&layers, later, 0), Some(1));
        // Nothing active: the one that sent last.
        assert_eq!(pick(&layers, later + LAYER_IDLE * 2, 0), Some(1));
        assert_eq!(pick(&[], t, 0), None);
    }

    #[test]
    fn a_leg_switches_only_at_a_keyframe_of_its_target() {
        let mut c = LayerChoice {
            current: Some(0),
            target: Some(0),
            draining: false,
        };
        assert_eq!(c.on_packet(0, false), Verdict::Forward);
        assert_eq!(c.on_packet(1, true), Verdict::Drop, "not wanted");
        c.target = Some(1);
        assert_eq!(c.on_packet(1, false), Verdict::Drop, "no keyframe yet");
        assert_eq!(
            c.on_packet(0, false),
            Verdict::Forward,
            "old layer meanwhile"
        );
        assert_eq!(c.on_packet(1, true), Verdict::Switch);
        assert_eq!(c.on_packet(0, true), Verdict::Drop, "old layer now");
        assert_eq!(c.on_packet(1, false), Verdict::Forward);
        assert_eq!(c.on_packet(1, true), Verdict::Forward, "no second switch");
        // A new leg starts at its target's keyframe.
        let mut fresh = LayerChoice {
            current: None,
            target: Some(2),
            draining: false,
        };
        assert_eq!(fresh.layer(), Some(2));
        assert_eq!(fresh.on_packet(2, false), Verdict::Drop);
        assert_eq!(fresh.on_packet(2, true), Verdict::Switch);
    }

    #[test]
    fn a_draining_leg_stops_at_the_frame_end_and_waits_for_the_keyframe() {
        let mut c = LayerChoice {
            current: Some(2),
            target: Some(2),
            draining: false,
        };
        c.drain();
        assert!(!c.draining, "nothing to move to: nothing to drain");
        c.target = Some(0);
        c.drain();
        assert_eq!(c.on_packet(2, false), Verdict::Forward, "the frame goes on");
        c.frame_ended(0);
        assert_eq!(
            c.on_packet(2, false),
            Verdict::Forward,
            "another layer's end"
        );
        c.frame_ended(2);
        assert_eq!(c.on_packet(2, false), Verdict::Drop, "stopped at its end");
        assert_eq!(c.layer(), Some(0), "NACKs and PLIs go to the target");
        assert_eq!(c.on_packet(0, false), Verdict::Drop);
        assert_eq!(c.on_packet(0, true), Verdict::Switch);
        assert!(!c.draining);
        c.frame_ended(0);
        assert_eq!(
            c.on_packet(0, false),
            Verdict::Forward,
            "no drain left over"
        );
    }
}
