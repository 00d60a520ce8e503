//! Which layer of each video every subscriber gets: the stream allocator
//! ([`crate::forward::allocator`]) run per subscriber on its bandwidth
//! estimate, every [`CHOICE_INTERVAL`] and when an estimate falls below
//! what a subscriber was given; the decisions applied to the legs, with a
//! keyframe asked of each newly wanted layer and the subscriber told of
//! videos paused and resumed.

use super::Endpoint;
use crate::congestion::{padding_sizes, PacketKind, Usage};
use crate::connection::Liveness;
use crate::error::SfuError;
use crate::events::{SfuEvent, SubscriberBandwidth};
use crate::forward::allocator::{
    allocate, with_headroom, Allocation, Demand, LayerOffer, Priority,
};
use crate::forward::leg::View;
use crate::forward::pad_log::padding_payload;
use crate::forward::send::payload_types;
use crate::forward::simulcast::{self, wanted_rank, CHOICE_INTERVAL};
use crate::ids::ParticipantId;
use crate::transmit::Transmit;
use crate::view::TrackView;
use huddle_proto::{PauseReason, PcRole, TrackKind};
use std::collections::HashMap;
use std::time::Instant;
use tracing::debug;

/// The least a layer is taken to cost, bits per second: a layer whose rate
/// is not measured yet (it just started) is not free.
const MIN_LAYER_BPS: u64 = 30_000;

/// Most padding packets sent on one connection at one timer tick.
const MAX_PADDING_PER_TICK: usize = 32;

/// One subscriber's videos: (track id, what the allocator is told).
type Demands = Vec<(String, Demand)>;

impl Endpoint {
    /// Run the allocator for every subscriber of a video and apply what it
    /// decides.
    pub(super) fn choose_layers(&mut self, now: Instant) {
        self.next_layer_choice = Some(now + CHOICE_INTERVAL);
        let subscribers: Vec<ParticipantId> = self.demands(now, None).into_keys().collect();
        for sub in subscribers {
            self.allocate_for(now, &sub);
        }
        self.update_dynacast(now);
    }

    /// Tell publishers which simulcast layers to send: stop those nobody
    /// has wanted for a while, start again those someone wants
    /// ([`crate::forward::dynacast`]).
    pub(super) fn update_dynacast(&mut self, now: Instant) {
        for t in self.table.tracks.values_mut() {
            if t.layers.len() < 2 || t.layers.iter().any(|l| l.rid.is_none()) {
                continue;
            }
            let lowest = t.layers.iter().map(|l| l.rank).min();
            let mut changed = false;
            for (i, layer) in t.layers.iter_mut().enumerate() {
                let wanted = t
                    .legs
                    .values()
                    .any(|leg| leg.choice.current == Some(i) || leg.choice.target == Some(i));
                let change = layer
                    .dynacast
                    .update(now, wanted, Some(layer.rank) == lowest);
                changed |= change.is_some();
                if let Some(change) = change {
                    debug!(track = %t.id, rid = ?layer.rid, ?change, "dynacast");
                }
            }
            if changed {
                self.events.push_back(SfuEvent::PublisherLayers {
                    room: t.room.clone(),
                    participant: t.publisher.clone(),
                    track_id: t.id.clone(),
                    layers: t
                        .layers
                        .iter()
                        .filter_map(|l| Some((l.rid.clone()?, !l.dynacast.stopped)))
                        .collect(),
                });
            }
        }
    }

    /// What every subscriber of a video (or `only` that one) asks of its
    /// videos.
    fn demands(
        &mut self,
        now: Instant,
        only: Option<&ParticipantId>,
    ) -> HashMap<ParticipantId, Demands> {
        let mut videos: HashMap<&ParticipantId, usize> = HashMap::new();
        for t in self.table.tracks.values() {
            if t.kind == TrackKind::Video {
                for (sub, leg) in &t.legs {
                    if leg.view.visible {
                        *videos.entry(sub).or_default() += 1;
                    }
                }
            }
        }
        let videos: HashMap<ParticipantId, usize> =
            videos.into_iter().map(|(k, v)| (k.clone(), v)).collect();
        let mut out: HashMap<ParticipantId, Demands> = HashMap::new();
        for t in self.table.tracks.values_mut() {
            if t.kind != TrackKind::Video {
                continue;
            }
            let speaker = self.speakers.current(&t.room) == Some(&t.publisher);
            let priority = if speaker {
                Priority::Speaker
            } else {
                Priority::Other
            };
            if only.is_some_and(|o| !t.legs.contains_key(o)) {
                continue;
            }
            let layers = offers(&mut t.layers, now);
            for (sub, leg) in &t.legs {
                if only.is_some_and(|o| o != sub) {
                    continue;
                }
                let grid = wanted_rank(videos.get(sub).copied().unwrap_or(1));
                out.entry(sub.clone()).or_default().push((
                    t.id.clone(),
                    Demand {
                        priority,
                        order: t.order,
                        visible: leg.view.visible,
                        max_rank: leg.view.max_rank.unwrap_or(grid),
                        layers: layers.clone(),
                        current: leg.allocation,
                    },
                ));
            }
        }
        out
    }

    /// How `sub` shows a video it receives (the `track_settings`
    /// message): the allocator runs for it again at once.
    pub fn set_view(
        &mut self,
        now: Instant,
        sub: &ParticipantId,
        track_id: &str,
        view: TrackView,
    ) -> Result<(), SfuError> {
        let leg = self
            .table
            .tracks
            .get_mut(track_id)
            .filter(|t| t.kind == TrackKind::Video)
            .and_then(|t| t.legs.get_mut(sub))
            .ok_or_else(|| SfuError::UnknownTrack(track_id.to_owned()))?;
        leg.view = View {
            visible: view.visible,
            max_rank: rank_for_size(view.width, view.height),
        };
        debug!(subscriber = %sub, track = %track_id, ?view, max_rank = ?leg.view.max_rank, "track view");
        self.allocate_for(now, sub);
        self.flush(now);
        Ok(())
    }

    /// What the SFU knows of the path toward `sub` and what it sends it.
    pub fn subscriber_bandwidth(&self, sub: &ParticipantId) -> Option<SubscriberBandwidth> {
        let p = self.participants.get(sub)?;
        let cc = p
            .subscriber
            .as_ref()
            .and_then(|c| c.wire.as_ref())
            .and_then(|w| w.congestion());
        let (stamped, feedback) = cc.map_or((0, 0), |cc| cc.counts());
        let (paced_queued, paced_dropped) = cc.map_or((0, 0), |cc| cc.paced_counts());
        let mut out = SubscriberBandwidth {
            feedback_negotiated: cc.is_some(),
            rfc8888: cc.is_some_and(|cc| cc.reports().ccfb),
            packets_stamped: stamped,
            feedback_packets: feedback,
            estimate_bps: cc.and_then(|cc| cc.estimate_bps()),
            rtt: cc.and_then(|cc| cc.stats().rtt),
            allocated_video_bps: p.allocated_bps,
            pacing_bps: cc.and_then(|cc| cc.pacing_bps()),
            paced_queued,
            paced_dropped,
            ..SubscriberBandwidth::default()
        };
        for t in self.table.tracks.values() {
            let Some(leg) = t.legs.get(sub).filter(|_| t.kind == TrackKind::Video) else {
                continue;
            };
            out.videos.push((t.id.clone(), leg.choice.current));
            if leg.allocation == Allocation::Paused {
                out.paused.push(t.id.clone());
            }
        }
        out.videos.sort();
        out.paused.sort();
        Some(out)
    }

    /// Run the allocator for one subscriber and apply its decision.
    pub(super) fn allocate_for(&mut self, now: Instant, sub: &ParticipantId) {
        let mut all = self.demands(now, Some(sub));
        let Some(demands) = all.remove(sub) else {
            return;
        };
        let (budget, audio) = self.video_budget(now, sub).unzip();
        let Some(p) = self.participants.get_mut(sub) else {
            return;
        };
        let list: Vec<Demand> = demands.iter().map(|(_, d)| d.clone()).collect();
        let cc = p
            .subscriber
            .as_ref()
            .and_then(|c| c.wire.as_ref())
            .and_then(|w| w.congestion());
        let settling = cc.is_some_and(|cc| cc.settling(now));
        let paced = cc.map(|cc| cc.paced_counts());
        if let Some(at) = cc.and_then(|cc| cc.probe_succeeded_at()) {
            p.allocator.probe_succeeded(at);
        }
        let decision = allocate(now, &mut p.allocator, budget, settling, &list);
        debug!(
            ?paced,
            subscriber = %sub,
            ?budget,
            ?audio,
            settling,
            allocated = decision.allocated_bps,
            probe = ?decision.probe_bps,
            wanted = decision.wanted_bps,
            allocations = ?decision.allocations,
            layers = ?list.iter().map(|d| d.layers.iter().map(|l| l.bps).collect::<Vec<_>>()).collect::<Vec<_>>(),
            "allocation"
        );
        p.allocated_bps = decision.allocated_bps;
        p.probe_bps = decision.probe_bps;
        let cc = p
            .subscriber
            .as_mut()
            .and_then(|c| c.wire.as_mut())
            .and_then(|w| w.congestion_mut());
        if let Some(cc) = cc {
            cc.allocated();
            let audio = audio.unwrap_or(0);
            if cc.settling(now) {
                // A new connection starts low; find the path's capacity
                // at once, up to what the subscriber wants in all, and do
                // not count the start as a move down.
                p.allocator.forget_down();
                cc.want_probe(now, with_headroom(decision.wanted_bps) + audio);
            } else if let Some(step) = decision.probe_bps {
                // Find out whether the path has room before moving up: for
                // the next step, or for up to twice the budget toward all
                // the subscriber wants (a path that opened up again is
                // found in a few probes, not one per layer).
                let all = with_headroom(decision.wanted_bps);
                let reach = budget.unwrap_or(0).saturating_mul(2);
                cc.want_probe(now, step.max(all.min(reach)) + audio);
            }
            if let Some(conn) = p.subscriber.as_mut() {
                conn.timer = conn.wire.as_ref().and_then(|w| w.poll_timeout());
            }
            self.deadlines.touch((sub.clone(), PcRole::Subscriber));
        }
        // What the videos had cost more than the budget: the path cannot
        // carry them, and a video moved down stops its old layer at once.
        let had: u64 = list
            .iter()
            .filter_map(|d| d.current_layer().map(|l| l.bps))
            .sum();
        let over = budget.is_some_and(|b| had > b);
        for ((track_id, demand), allocation) in demands.into_iter().zip(decision.allocations) {
            self.apply(now, sub, &track_id, &demand, allocation, over);
        }
        // A layer this subscriber now wants may be one dynacast stopped.
        self.update_dynacast(now);
    }

    /// What `sub` can spend on video (its estimate less what its audio
    /// costs) and what its audio costs; `None` while nothing limits it (no
    /// estimate).
    fn video_budget(&mut self, now: Instant, sub: &ParticipantId) -> Option<(u64, u64)> {
        let estimate = self
            .participants
            .get(sub)?
            .subscriber
            .as_ref()?
            .wire
            .as_ref()?
            .congestion()?
            .budget_bps(now)?;
        let audio: u64 = self
            .table
            .tracks
            .values_mut()
            .filter(|t| t.kind == TrackKind::Audio && !t.muted && t.legs.contains_key(sub))
            .flat_map(|t| t.layers.iter_mut())
            .map(|l| l.rate.bps(now))
            .sum();
        Some((estimate.saturating_sub(audio), audio))
    }

    /// Whether `sub`'s link has room for RED copies at `distance` on top of
    /// what it gets: loss that comes with congestion is not made up with
    /// more bytes. The delay detector tells the two apart (random loss
    /// leaves it alone, a full queue does not). Room means no queue
    /// building now (`Usage::Over`), none of its videos paused, and, once
    /// a queue has shown the link's capacity, the audio with that many
    /// copies (each about one more frame) plus the videos' allocation
    /// within 80 % of it. Without congestion feedback there is no telling,
    /// and the copies go.
    pub(super) fn room_for_red_copies(
        &mut self,
        now: Instant,
        sub: &ParticipantId,
        distance: u8,
    ) -> bool {
        let Some((_, audio)) = self.video_budget(now, sub) else {
            return true;
        };
        let Some(p) = self.participants.get(sub) else {
            return false;
        };
        let Some(bwe) = p
            .subscriber
            .as_ref()
            .and_then(|c| c.wire.as_ref())
            .and_then(|w| w.congestion())
            .map(|cc| cc.stats())
        else {
            return true;
        };
        let paused = self.table.tracks.values().any(|t| {
            t.legs
                .get(sub)
                .is_some_and(|leg| leg.allocation == Allocation::Paused)
        });
        let needed = p.allocated_bps + audio * (1 + u64::from(distance));
        let fits = bwe
            .link_capacity_bps
            .is_none_or(|capacity| needed <= capacity / 10 * 8);
        !paused && bwe.usage != Usage::Over && fits
    }

    /// Pad `sub`'s connection with `bytes` of padding-only packets (a
    /// probe runs), on a video leg that is sending; nothing when it has
    /// none (padding on audio would be heard as loss).
    pub(super) fn send_padding(&mut self, now: Instant, sub: &ParticipantId, bytes: usize) {
        let Some(p) = self.participants.get_mut(sub) else {
            return;
        };
        let Some(conn) = p.subscriber.as_mut().filter(|c| c.liveness == Liveness::Up) else {
            return;
        };
        // A video leg (paused ones too: padding carries no picture),
        // preferably one that is sending, and not in the middle of a frame
        // (`Leg::can_pad`; the others can take padding after their frame).
        let mut legs: Vec<_> = self
            .table
            .tracks
            .values_mut()
            .filter(|t| t.kind == TrackKind::Video)
            .filter_map(|t| Some((t.legs.get_mut(sub)?, &t.codec)))
            .filter(|(l, _)| l.can_pad())
            .collect();
        legs.sort_by_key(|(l, _)| l.choice.current.is_none());
        let Some((leg, codec)) = legs.into_iter().next() else {
            return;
        };
        let Some(pt) = payload_types(conn, leg, codec).map(|p| p.primary) else {
            return;
        };
        let Some(wire) = conn.wire.as_mut() else {
            return;
        };
        // At most a burst's worth per call: the rest at the next tick.
        let sizes = padding_sizes(bytes, 255, 50).take(MAX_PADDING_PER_TICK);
        let mut buf = [0u8; 255];
        for len in sizes {
            let Some((seq, ts)) = leg.pad(now) else {
                return;
            };
            let header = rtc::rtp::Header {
                version: 2,
                padding: true,
                payload_type: pt,
                sequence_number: seq,
                timestamp: ts,
                ssrc: leg.ssrc,
                ..Default::default()
            };
            let payload = padding_payload(&mut buf, len as u8);
            match wire.protect_rtp(
                now,
                PacketKind::Padding,
                &header,
                payload,
                self.out_buf.spare(),
            ) {
                Ok(dst) => {
                    let payload = self.out_buf.take();
                    self.transmits.push_back(Transmit { dst, payload });
                    self.padding_sent += 1;
                }
                Err(e) => {
                    debug!(subscriber = %sub, "padding: {e}");
                    return;
                }
            }
        }
    }

    /// Apply one video's allocation to `sub`'s leg.
    fn apply(
        &mut self,
        now: Instant,
        sub: &ParticipantId,
        track_id: &str,
        demand: &Demand,
        allocation: Allocation,
        over: bool,
    ) {
        let Some(t) = self.table.tracks.get_mut(track_id) else {
            return;
        };
        let room = t.room.clone();
        let Some(leg) = t.legs.get_mut(sub) else {
            return;
        };
        let was_paused = leg.allocation == Allocation::Paused;
        let mut keyframe = None;
        match allocation {
            Allocation::Layer(layer) => {
                if leg.choice.target == Some(layer) && leg.choice.current != Some(layer) {
                    // Still waiting for its keyframe: ask again (merged per
                    // interval); a request can be lost, or ignored by the
                    // encoder.
                    keyframe = Some(layer);
                } else if leg.choice.target != Some(layer) {
                    leg.choice.target = Some(layer);
                    if leg.choice.current != Some(layer) {
                        debug!(subscriber = %sub, track = %track_id, layer, "layer wanted");
                        keyframe = Some(layer);
                    }
                    let rank = |i: usize| t.layers.get(i).map(|l| l.rank);
                    let down = leg.choice.current.is_some_and(|c| rank(c) > rank(layer));
                    if over && down {
                        leg.choice.drain();
                    }
                }
            }
            Allocation::Paused | Allocation::Hidden => leg.stop(),
            Allocation::Unavailable => {
                // No layer to choose from (none measured yet): keep to
                // the rule of old, the best active layer for the grid.
                let target = simulcast::pick(&t.layers, now, demand.max_rank);
                if target.is_some() && leg.choice.target != target {
                    leg.choice.target = target;
                    keyframe = target.filter(|&l| leg.choice.current != Some(l));
                }
            }
        }
        leg.allocation = allocation;
        if let Some(layer) = keyframe {
            self.request_keyframe(now, track_id, layer);
        }
        let event = match (was_paused, allocation) {
            (false, Allocation::Paused) => Some(SfuEvent::TrackPaused {
                room,
                participant: sub.clone(),
                track_id: track_id.to_owned(),
                reason: PauseReason::Bandwidth,
            }),
            (true, a) if a != Allocation::Paused => Some(SfuEvent::TrackResumed {
                room,
                participant: sub.clone(),
                track_id: track_id.to_owned(),
            }),
            _ => None,
        };
        if let Some(e) = event {
            debug!(subscriber = %sub, track = %track_id, ?allocation, "video paused or resumed");
            self.events.push_back(e);
        }
    }
}

/// The best layer rank worth sending to a tile of this size (CSS pixels):
/// the layers browsers send of a 1280x720 camera are 320x180, 640x360 and
/// 1280x720, so the smallest that fills the tile (a tenth of slack) is
/// rank 0 up to 200 lines (or 356 columns), 1 up to 400 (711), else 2.
/// `None` when no size is given.
pub(crate) fn rank_for_size(width: Option<u32>, height: Option<u32>) -> Option<u8> {
    let by_height = height.map(|h| match h {
        0..=200 => 0,
        201..=400 => 1,
        _ => 2,
    });
    let by_width = width.map(|w| match w {
        0..=356 => 0,
        357..=711 => 1,
        _ => 2,
    });
    match (by_width, by_height) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// The layers of a track a subscriber can be given now, with what each
/// costs: those that sent something lately, and those dynacast stopped
/// (at what they cost while they ran).
fn offers(layers: &mut [crate::forward::layer::Layer], now: Instant) -> Vec<LayerOffer> {
    layers
        .iter_mut()
        .enumerate()
        .filter(|(_, l)| l.available(now))
        .map(|(index, l)| LayerOffer {
            index,
            rank: l.rank,
            bps: l.cost_bps(now).max(MIN_LAYER_BPS),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::rank_for_size;

    #[test]
    fn a_tile_gets_the_smallest_layer_that_fills_it() {
        assert_eq!(rank_for_size(None, None), None);
        assert_eq!(rank_for_size(Some(320), Some(180)), Some(0));
        assert_eq!(rank_for_size(Some(640), Some(360)), Some(1));
        assert_eq!(rank_for_size(Some(1280), Some(720)), Some(2));
        assert_eq!(rank_for_size(None, Some(300)), Some(1));
        // A wide, short tile: its width decides.
        assert_eq!(rank_for_size(Some(1000), Some(150)), Some(2));
    }
}
