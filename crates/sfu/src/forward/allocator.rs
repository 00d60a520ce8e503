//! The stream allocator: one subscriber's bandwidth estimate split over the
//! videos it receives.
//!
//! Audio is never the allocator's: its rate is taken off the estimate
//! first, and an audio leg is never paused. What is left goes to the
//! visible videos in priority order ([`Priority`]: a screen share, then the
//! active speaker, then the rest by publication order):
//!
//! 1. every visible video in turn gets its lowest layer while it fits; one
//!    that does not is paused ([`Allocation::Paused`]), and so is every
//!    video after it (a lower-priority video never runs while a
//!    higher-priority one is paused);
//! 2. then in the same order each gets the best layer it wants (not above
//!    its [`Demand::max_rank`]: its tile size) that fits in what is left.
//!
//! A hidden video gets nothing ([`Allocation::Hidden`]).
//!
//! Hysteresis, so that layers do not flap at the edge of the estimate:
//! what a video has now is kept while the total fits in the estimate;
//! moving a video up (or resuming it) must fit in [`UP_HEADROOM`] of it and
//! waits [`UP_HOLD`] after the subscriber's last move down. When a move up
//! does not fit, [`Decision::probe_bps`] says how much the subscriber would
//! need, so the caller can probe the path at that rate before committing.
//!
//! One video moves up at a time, at most once per [`UP_SPACING`]: each move
//! starts with a keyframe of the new layer, several at once arrive as one
//! burst, and on a thin link that burst is what overflows the bottleneck's
//! queue (audio included) before the estimate can react. A new subscriber
//! whose estimate is still being found (settling) is exempt.
//!
//! Sans-IO and pure apart from the per-subscriber [`AllocatorState`]: the
//! caller hands in the estimate, the demands and the time.

use std::time::{Duration, Instant};

/// Of the estimate, the share a move up must fit in: the rest is the
/// margin that keeps a layer from being taken and dropped again at once.
pub const UP_HEADROOM: f64 = 0.85;

/// After a move down, how long no video of the subscriber moves up,
/// unless a probe succeeds meanwhile
/// ([`AllocatorState::probe_succeeded`]).
pub const UP_HOLD: Duration = Duration::from_secs(4);

/// After one video of the subscriber moved up (or resumed), how long the
/// next waits.
pub const UP_SPACING: Duration = Duration::from_secs(1);

/// A video's rank among one subscriber's videos: lower goes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// A screen share: text must stay readable.
    Screen,
    /// The room's active speaker's camera.
    Speaker,
    /// Any other video.
    Other,
}

/// One encoding the allocator may choose.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerOffer {
    /// Index of the layer in the track's layers (what [`Allocation`] names).
    pub index: usize,
    /// Quality rank: 0 lowest.
    pub rank: u8,
    /// What it costs, bits per second (measured).
    pub bps: u64,
}

/// One video a subscriber receives, as the allocator sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Demand {
    /// Who goes first.
    pub priority: Priority,
    /// Ties within a priority: lower first (publication order).
    pub order: u64,
    /// Whether the subscriber shows it at all.
    pub visible: bool,
    /// The best rank it is worth sending (from its tile size).
    pub max_rank: u8,
    /// The layers it can have now, any order.
    pub layers: Vec<LayerOffer>,
    /// What it had after the last allocation.
    pub current: Allocation,
}

impl Demand {
    /// The layer it has now and what that costs, if it still has one.
    pub fn current_layer(&self) -> Option<LayerOffer> {
        match self.current {
            Allocation::Layer(index) => self.layers.iter().find(|l| l.index == index).copied(),
            _ => None,
        }
    }
}

/// What one video gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocation {
    /// This layer (an index into the track's layers).
    Layer(usize),
    /// Nothing, for want of bandwidth: the subscriber is told.
    Paused,
    /// Nothing: the subscriber does not show it.
    Hidden,
    /// Nothing yet: no layer to send.
    Unavailable,
}

/// The outcome of one allocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// One entry per demand, in the order given.
    pub allocations: Vec<Allocation>,
    /// What the videos allocated cost, bits per second.
    pub allocated_bps: u64,
    /// When a video was held back for want of bandwidth: the video budget
    /// the subscriber would need for the next step up, headroom included
    /// (probe at that rate before moving).
    pub probe_bps: Option<u64>,
    /// What every visible video at the best layer it wants would cost.
    pub wanted_bps: u64,
}

/// What the allocator remembers of one subscriber between allocations.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllocatorState {
    /// When a video of this subscriber last moved down or was paused.
    last_down: Option<Instant>,
    /// When a running video of this subscriber last moved up, or a paused
    /// one resumed.
    last_up: Option<Instant>,
}

impl AllocatorState {
    /// Forget the last move down: while the estimate is still being found
    /// (a new connection), starting low is no reason to hold back.
    pub fn forget_down(&mut self) {
        self.last_down = None;
    }

    /// A probe succeeded at `at`: the path carried more than the estimate
    /// the last move down was made on, which is the evidence the hold
    /// after that move waits for. A move down since still holds.
    pub fn probe_succeeded(&mut self, at: Instant) {
        if self.last_down.is_some_and(|down| at > down) {
            self.last_down = None;
        }
    }
}

/// The budget in which `bps` fits within [`UP_HEADROOM`]: what a probe
/// must show for a move to `bps` to happen.
pub fn with_headroom(bps: u64) -> u64 {
    (bps as f64 / UP_HEADROOM).ceil() as u64
}

/// Split `budget_bps` (the estimate less audio; `None` when nothing limits
/// the subscriber: no estimate yet) over `demands`. See the module docs.
/// While `settling` (a new connection whose estimate is still being
/// found by probing), nothing is paused: every visible video gets at least
/// its lowest layer, and moves up only within the budget.
pub fn allocate(
    now: Instant,
    state: &mut AllocatorState,
    budget_bps: Option<u64>,
    settling: bool,
    demands: &[Demand],
) -> Decision {
    let mut order: Vec<usize> = (0..demands.len()).collect();
    order.sort_by_key(|&i| (demands[i].priority, demands[i].order));
    let may_go_up = state
        .last_down
        .is_none_or(|t| now.saturating_duration_since(t) >= UP_HOLD);
    let spaced = settling
        || state
            .last_up
            .is_none_or(|t| now.saturating_duration_since(t) >= UP_SPACING);
    // A video already moved up (or resumed) in this round.
    let mut moved_up = false;
    let keep_budget = budget_bps.map_or(u64::MAX, |b| b);
    let up_budget = budget_bps.map_or(u64::MAX, |b| (b as f64 * UP_HEADROOM) as u64);

    let mut allocations = vec![Allocation::Unavailable; demands.len()];
    let mut chosen: Vec<Option<LayerOffer>> = vec![None; demands.len()];
    let mut total: u64 = 0;
    let mut probe: Option<u64> = None;
    let mut blocked = false;

    // 1. The lowest layer of each visible video, in priority order.
    for &i in &order {
        let d = &demands[i];
        if !d.visible {
            allocations[i] = Allocation::Hidden;
            continue;
        }
        let Some(lowest) = d.layers.iter().min_by_key(|l| (l.rank, l.bps)).copied() else {
            continue; // Unavailable
        };
        // A video that runs keeps running while it fits the estimate (also
        // when the layer it had stopped arriving: it falls back to what
        // there is); one that is paused (or new) comes in only within the
        // headroom.
        let running = matches!(d.current, Allocation::Layer(_));
        let limit = if settling {
            u64::MAX
        } else if running || budget_bps.is_none() {
            keep_budget
        } else if may_go_up || d.current == Allocation::Unavailable {
            up_budget
        } else {
            0
        };
        if blocked || total.saturating_add(lowest.bps) > limit {
            blocked = true;
            allocations[i] = Allocation::Paused;
            if probe.is_none() {
                probe = Some(with_headroom(total.saturating_add(lowest.bps)));
            }
            continue;
        }
        total += lowest.bps;
        chosen[i] = Some(lowest);
        allocations[i] = Allocation::Layer(lowest.index);
        if d.current == Allocation::Paused && !settling {
            moved_up = true;
        }
    }

    // 2. In the same order, the best layer each wants that fits.
    for &i in &order {
        let Some(base) = chosen[i] else {
            continue;
        };
        let d = &demands[i];
        let current = d.current_layer();
        let mut candidates: Vec<LayerOffer> = d
            .layers
            .iter()
            .filter(|l| l.rank <= d.max_rank || l.index == base.index)
            .copied()
            .collect();
        candidates.sort_by_key(|l| std::cmp::Reverse((l.rank, l.bps)));
        for l in candidates {
            if l.index == base.index {
                break; // nothing better fits
            }
            let extra = l.bps.saturating_sub(base.bps);
            let up = current.is_none_or(|c| (l.rank, l.bps) > (c.rank, c.bps));
            // A running video moving up: one at a time (a new one takes
            // the best that fits at once).
            let raise = up && current.is_some() && !settling;
            if raise && (moved_up || !spaced) {
                continue;
            }
            let limit = match (up, budget_bps) {
                (_, None) | (false, _) => keep_budget,
                (true, Some(_)) if may_go_up => up_budget,
                (true, Some(_)) => 0,
            };
            if total.saturating_add(extra) <= limit {
                total += extra;
                chosen[i] = Some(l);
                allocations[i] = Allocation::Layer(l.index);
                moved_up |= raise;
                break;
            }
            if up && probe.is_none() && current.is_none_or(|c| l.rank == c.rank + 1) {
                // The next step up of this video: what probing must show.
                probe = Some(with_headroom(total.saturating_add(extra)));
            }
        }
    }

    // A move down (or a pause) starts the hold on moves up.
    let went_down = demands.iter().zip(&allocations).any(|(d, a)| {
        let Some(before) = d.current_layer() else {
            return false;
        };
        match a {
            Allocation::Layer(index) => d
                .layers
                .iter()
                .find(|l| l.index == *index)
                .is_some_and(|l| (l.rank, l.bps) < (before.rank, before.bps)),
            Allocation::Paused => true,
            _ => false,
        }
    });
    if went_down {
        state.last_down = Some(now);
    }
    if moved_up {
        state.last_up = Some(now);
    }
    let wanted_bps = demands
        .iter()
        .filter(|d| d.visible)
        .filter_map(|d| {
            d.layers
                .iter()
                .filter(|l| l.rank <= d.max_rank)
                .max_by_key(|l| (l.rank, l.bps))
                .or_else(|| d.layers.iter().min_by_key(|l| (l.rank, l.bps)))
                .map(|l| l.bps)
        })
        .sum();
    Decision {
        allocations,
        allocated_bps: total,
        probe_bps: probe.filter(|_| budget_bps.is_some()),
        wanted_bps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A simulcast video's three layers: 150 kb/s, 500 kb/s, 1.5 Mb/s.
    fn simulcast() -> Vec<LayerOffer> {
        vec![
            LayerOffer {
                index: 0,
                rank: 0,
                bps: 150_000,
            },
            LayerOffer {
                index: 1,
                rank: 1,
                bps: 500_000,
            },
            LayerOffer {
                index: 2,
                rank: 2,
                bps: 1_500_000,
            },
        ]
    }

    fn video(priority: Priority, order: u64) -> Demand {
        Demand {
            priority,
            order,
            visible: true,
            max_rank: 2,
            layers: simulcast(),
            current: Allocation::Unavailable,
        }
    }

    fn run(
        now: Instant,
        state: &mut AllocatorState,
        budget: Option<u64>,
        demands: &mut [Demand],
    ) -> Decision {
        let d = allocate(now, state, budget, false, demands);
        for (demand, a) in demands.iter_mut().zip(&d.allocations) {
            demand.current = *a;
        }
        d
    }

    #[test]
    fn without_an_estimate_everyone_gets_what_they_want() {
        let t = Instant::now();
        let mut demands = vec![video(Priority::Other, 0), video(Priority::Other, 1)];
        demands[1].max_rank = 1;
        let d = run(t, &mut AllocatorState::default(), None, &mut demands);
        assert_eq!(
            d.allocations,
            vec![Allocation::Layer(2), Allocation::Layer(1)]
        );
        assert_eq!(d.probe_bps, None);
    }

    #[test]
    fn the_screen_share_goes_first_then_the_speaker() {
        let t = Instant::now();
        let mut demands = vec![
            video(Priority::Other, 0),
            video(Priority::Speaker, 1),
            video(Priority::Screen, 2),
        ];
        // 85 % of 2.6 Mb/s is 2.21 M: the screen's best (1.5 M), the
        // others' lowest (0.3 M), then the speaker's middle (0.35 M more).
        let d = run(
            t,
            &mut AllocatorState::default(),
            Some(2_600_000),
            &mut demands,
        );
        assert_eq!(
            d.allocations,
            vec![
                Allocation::Layer(0),
                Allocation::Layer(1),
                Allocation::Layer(2)
            ]
        );
        assert_eq!(d.allocated_bps, 150_000 + 500_000 + 1_500_000);
        assert!(d.probe_bps.is_some(), "the speaker wants more");
        assert_eq!(d.wanted_bps, 3 * 1_500_000);
    }

    #[test]
    fn what_does_not_fit_is_paused_lowest_priority_first() {
        let t = Instant::now();
        let mut demands = vec![
            video(Priority::Other, 0),
            video(Priority::Other, 1),
            video(Priority::Speaker, 2),
        ];
        let d = run(
            t,
            &mut AllocatorState::default(),
            Some(400_000),
            &mut demands,
        );
        // Lowest layers at 150 k each: the speaker and the first-published
        // other fit (300 k), the last does not.
        assert_eq!(
            d.allocations,
            vec![
                Allocation::Layer(0),
                Allocation::Paused,
                Allocation::Layer(0)
            ]
        );
        assert_eq!(d.probe_bps, Some(with_headroom(450_000)));
        // Less still: only the speaker.
        let later = t + Duration::from_millis(500);
        let d = run(
            later,
            &mut AllocatorState::default(),
            Some(200_000),
            &mut demands,
        );
        assert_eq!(
            d.allocations,
            vec![Allocation::Paused, Allocation::Paused, Allocation::Layer(0)]
        );
    }

    #[test]
    fn while_settling_nothing_is_paused_and_nothing_moves_up_past_the_budget() {
        let t = Instant::now();
        let mut demands = vec![video(Priority::Other, 0), video(Priority::Other, 1)];
        let mut state = AllocatorState::default();
        let d = allocate(t, &mut state, Some(100_000), true, &demands);
        assert_eq!(
            d.allocations,
            vec![Allocation::Layer(0), Allocation::Layer(0)]
        );
        assert_eq!(d.wanted_bps, 3_000_000);
        for (demand, a) in demands.iter_mut().zip(&d.allocations) {
            demand.current = *a;
        }
        // Settled at the same estimate: the second video no longer fits.
        let d = allocate(t, &mut state, Some(200_000), false, &demands);
        assert_eq!(
            d.allocations,
            vec![Allocation::Layer(0), Allocation::Paused]
        );
    }

    #[test]
    fn hidden_videos_get_nothing_and_cost_nothing() {
        let t = Instant::now();
        let mut demands = vec![video(Priority::Speaker, 0), video(Priority::Other, 1)];
        demands[0].visible = false;
        let d = run(
            t,
            &mut AllocatorState::default(),
            Some(1_800_000),
            &mut demands,
        );
        assert_eq!(
            d.allocations,
            vec![Allocation::Hidden, Allocation::Layer(2)]
        );
        assert_eq!(d.allocated_bps, 1_500_000);
    }

    #[test]
    fn tile_size_caps_the_layer() {
        let t = Instant::now();
        let mut demands = vec![video(Priority::Other, 0)];
        demands[0].max_rank = 0;
        let d = run(
            t,
            &mut AllocatorState::default(),
            Some(10_000_000),
            &mut demands,
        );
        assert_eq!(d.allocations, vec![Allocation::Layer(0)]);
        assert_eq!(d.probe_bps, None, "nothing more is wanted");
    }

    #[test]
    fn layers_hold_inside_the_margin_and_move_up_only_with_headroom() {
        let t = Instant::now();
        let mut state = AllocatorState::default();
        let mut demands = vec![video(Priority::Other, 0)];
        // 1.7 M: 1.5 M fits in 85 % (1.445 M)? No: middle layer.
        let d = run(t, &mut state, Some(1_700_000), &mut demands);
        assert_eq!(d.allocations, vec![Allocation::Layer(1)]);
        assert_eq!(d.probe_bps, Some(with_headroom(1_500_000)));
        // 1.8 M: 85 % is 1.53 M, the top layer fits.
        let d = run(t, &mut state, Some(1_800_000), &mut demands);
        assert_eq!(d.allocations, vec![Allocation::Layer(2)]);
        // Down to 1.55 M: 1.5 M still fits the estimate itself, kept.
        let d = run(t, &mut state, Some(1_550_000), &mut demands);
        assert_eq!(d.allocations, vec![Allocation::Layer(2)]);
        // 1.4 M: no longer fits: down at once.
        let d = run(t, &mut state, Some(1_400_000), &mut demands);
        assert_eq!(d.allocations, vec![Allocation::Layer(1)]);
        // Back to 3 M right away: held down for UP_HOLD, then up.
        let soon = t + UP_HOLD / 2;
        let d = run(soon, &mut state, Some(3_000_000), &mut demands);
        assert_eq!(d.allocations, vec![Allocation::Layer(1)], "no flapping");
        let later = t + UP_HOLD;
        let d = run(later, &mut state, Some(3_000_000), &mut demands);
        assert_eq!(d.allocations, vec![Allocation::Layer(2)]);
    }

    #[test]
    fn one_video_moves_up_at_a_time() {
        let t = Instant::now();
        let mut state = AllocatorState::default();
        let mut demands = vec![
            video(Priority::Other, 0),
            video(Priority::Other, 1),
            video(Priority::Other, 2),
        ];
        // Three new videos on a thin budget: the lowest layers.
        let d = run(t, &mut state, Some(600_000), &mut demands);
        assert_eq!(d.allocations, vec![Allocation::Layer(0); 3]);
        // The path opens up: the first video goes straight to the top, the
        // others wait their turn, a spacing apart, in priority order.
        let wide = Some(10_000_000);
        let d = run(t, &mut state, wide, &mut demands);
        let layers = [
            Allocation::Layer(2),
            Allocation::Layer(0),
            Allocation::Layer(0),
        ];
        assert_eq!(d.allocations, layers);
        assert_eq!(d.probe_bps, None, "waiting is not for want of bandwidth");
        let d = run(t + UP_SPACING / 2, &mut state, wide, &mut demands);
        assert_eq!(d.allocations, layers);
        let d = run(t + UP_SPACING, &mut state, wide, &mut demands);
        let layers = [
            Allocation::Layer(2),
            Allocation::Layer(2),
            Allocation::Layer(0),
        ];
        assert_eq!(d.allocations, layers);
        let d = run(t + UP_SPACING * 2, &mut state, wide, &mut demands);
        assert_eq!(d.allocations, vec![Allocation::Layer(2); 3]);

        // While a new subscriber is settling, everything moves at once.
        let mut state = AllocatorState::default();
        let mut demands = vec![video(Priority::Other, 0), video(Priority::Other, 1)];
        run(t, &mut state, Some(400_000), &mut demands);
        let d = allocate(t, &mut state, wide, true, &demands);
        assert_eq!(d.allocations, vec![Allocation::Layer(2); 2]);
    }

    #[test]
    fn a_paused_video_resumes_only_with_headroom_after_the_hold() {
        let t = Instant::now();
        let mut state = AllocatorState::default();
        let mut demands = vec![video(Priority::Other, 0)];
        // A new video comes in within the headroom too (150 k of 180 k).
        let d = run(t, &mut state, Some(160_000), &mut demands);
        assert_eq!(d.allocations, vec![Allocation::Paused]);
        let d = run(t, &mut state, Some(180_000), &mut demands);
        assert_eq!(d.allocations, vec![Allocation::Layer(0)]);
        let d = run(t, &mut state, Some(100_000), &mut demands);
        assert_eq!(d.allocations, vec![Allocation::Paused]);
        // 170 k: the lowest layer (150 k) fits, but not in 85 % (144 k).
        let later = t + UP_HOLD * 2;
        let d = run(later, &mut state, Some(170_000), &mut demands);
        assert_eq!(d.allocations, vec![Allocation::Paused]);
        assert_eq!(d.probe_bps, Some(with_headroom(150_000)));
        let d = run(later, &mut state, Some(180_000), &mut demands);
        assert_eq!(d.allocations, vec![Allocation::Layer(0)]);
    }

    #[test]
    fn a_probe_that_succeeds_after_a_pause_lifts_the_hold() {
        let t = Instant::now();
        let mut state = AllocatorState::default();
        let mut demands = vec![video(Priority::Other, 0)];
        let d = run(t, &mut state, Some(180_000), &mut demands);
        assert_eq!(d.allocations, vec![Allocation::Layer(0)]);
        // A keyframe burst makes the layer look dearer than the estimate.
        let d = run(t, &mut state, Some(100_000), &mut demands);
        assert_eq!(d.allocations, vec![Allocation::Paused]);
        // A probe from before the pause proves nothing.
        state.probe_succeeded(t - Duration::from_millis(1));
        let soon = t + Duration::from_millis(250);
        let d = run(soon, &mut state, Some(400_000), &mut demands);
        assert_eq!(d.allocations, vec![Allocation::Paused], "held");
        // One after it does: the path carried more.
        state.probe_succeeded(soon);
        let d = run(
            soon + Duration::from_millis(1),
            &mut state,
            Some(400_000),
            &mut demands,
        );
        assert_eq!(d.allocations, vec![Allocation::Layer(0)]);
    }

    #[test]
    fn a_video_whose_layer_stops_arriving_keeps_running_and_so_do_the_rest() {
        let t = Instant::now();
        let mut state = AllocatorState::default();
        let mut demands = vec![video(Priority::Speaker, 0), video(Priority::Other, 1)];
        // 85 % of 1.3 M: both middle layers (1 M).
        let d = run(t, &mut state, Some(1_300_000), &mut demands);
        assert_eq!(
            d.allocations,
            vec![Allocation::Layer(1), Allocation::Layer(1)]
        );
        // Less: a move down, which starts the hold on moves up.
        let d = run(t, &mut state, Some(700_000), &mut demands);
        assert_eq!(
            d.allocations,
            vec![Allocation::Layer(1), Allocation::Layer(0)]
        );
        // Within the hold, the speaker's publisher stops sending the layer
        // it gets (its own uplink, or CPU): with plenty of room, it falls
        // back to its lowest layer, and the other video is not paused.
        demands[0].layers.retain(|l| l.index != 1);
        let soon = t + UP_HOLD / 4;
        let d = run(soon, &mut state, Some(3_000_000), &mut demands);
        assert_eq!(
            d.allocations,
            vec![Allocation::Layer(0), Allocation::Layer(0)]
        );
    }

    #[test]
    fn a_video_with_no_layer_is_unavailable_and_costs_nothing() {
        let t = Instant::now();
        let mut demands = vec![video(Priority::Other, 0)];
        demands[0].layers.clear();
        let d = run(
            t,
            &mut AllocatorState::default(),
            Some(1_000_000),
            &mut demands,
        );
        assert_eq!(d.allocations, vec![Allocation::Unavailable]);
        assert_eq!(d.allocated_bps, 0);
    }
}
