//! One encoding of a published track (one per simulcast layer, one for a
//! track without simulcast): what arrives on it and what is kept of it.

use crate::forward::dynacast::DynacastState;
use crate::forward::keyframe::KeyframeBytes;
use crate::forward::keyframe_gate::KeyframeGate;
use crate::forward::padding::PaddingFilter;
use crate::forward::rate::{RateMeter, KEYFRAME_WINDOW};
use crate::forward::red::Strip;
use crate::forward::rtx::RtxStore;
use std::time::{Duration, Instant};

/// Rank of the best layer: what a subscriber of few videos asks for.
pub const TOP_RANK: u8 = 2;

/// A layer that sent nothing for this long is not chosen (the publisher
/// stopped it: Chromium drops its top layer when bandwidth or CPU run short).
pub const LAYER_IDLE: Duration = Duration::from_secs(1);

/// One encoding of a published track.
#[derive(Debug)]
pub(crate) struct Layer {
    /// RTP stream id, for a simulcast layer.
    pub rid: Option<String>,
    /// SSRC the publisher sends it with.
    pub ssrc: u32,
    /// Quality among the track's layers: 0 lowest, [`TOP_RANK`] best.
    pub rank: u8,
    /// Merges keyframe requests toward this layer.
    pub keyframe: KeyframeGate,
    /// Recent packets, for NACKs of subscribers fed by this layer.
    pub rtx: RtxStore,
    /// When its last packet arrived.
    pub last_rx: Instant,
    /// Drops its padding-only packets, renumbering what follows.
    pub padding: PaddingFilter,
    /// What it costs a subscriber to receive it, keyframes not counted.
    pub rate: RateMeter,
    /// Tells its keyframes' packets apart.
    pub keyframes: KeyframeBytes,
    /// What its keyframes cost, over wider windows.
    pub keyframe_rate: RateMeter,
    /// Whether the publisher was told to stop it (nobody receives it).
    pub dynacast: DynacastState,
    /// The plain Opus stream made of it for legs without RED (a track
    /// with RED).
    pub red_strip: Strip,
}

impl Layer {
    /// A layer first seen at `now`, keeping `rtx_slots` packets for NACKs.
    pub fn new(rid: Option<String>, ssrc: u32, rank: u8, rtx_slots: usize, now: Instant) -> Self {
        Self {
            rid,
            ssrc,
            rank,
            keyframe: KeyframeGate::default(),
            rtx: RtxStore::new(rtx_slots),
            last_rx: now,
            padding: PaddingFilter::default(),
            rate: RateMeter::new(now),
            keyframes: KeyframeBytes::default(),
            keyframe_rate: RateMeter::with_window(now, KEYFRAME_WINDOW),
            dynacast: DynacastState::default(),
            red_strip: Strip::default(),
        }
    }

    /// What receiving it costs, bits per second: its rate while it last
    /// ran, its keyframes spread over a few seconds.
    pub fn cost_bps(&mut self, now: Instant) -> u64 {
        // A layer that stopped (dynacast, or its publisher) restarts with
        // a keyframe and goes on with them as before: it costs its
        // keyframes as they were, not the nothing its meter now reads
        // (else a stopped layer looked cheap, and a subscriber whose
        // estimate could not carry it had it started again).
        let keyframes = if self.active(now) {
            self.keyframe_rate.bps(now)
        } else {
            self.keyframe_rate.running_bps(now)
        };
        self.rate.running_bps(now).saturating_add(keyframes)
    }

    /// Whether it sent something within [`LAYER_IDLE`].
    pub fn active(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last_rx) < LAYER_IDLE
    }

    /// Whether a subscriber can be given it: it arrives, or it was stopped
    /// only because nobody received it (asking for it starts it again).
    pub fn available(&self, now: Instant) -> bool {
        self.active(now) || self.dynacast.stopped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_layer_costs_what_it_cost_while_it_ran_keyframes_included() {
        let t0 = Instant::now();
        let mut layer = Layer::new(Some("h".into()), 1, 1, 64, t0);
        // 6 s: 30 delta frames of 1000 bytes a second (240 kb/s), and a
        // 12 kB keyframe every second (96 kb/s).
        let mut t = t0;
        for i in 0..180u32 {
            t = t0 + Duration::from_millis(33) * i;
            if i % 30 == 0 {
                layer.keyframe_rate.on_packet(t, 12_000);
            } else {
                layer.rate.on_packet(t, 1000);
            }
            layer.last_rx = t;
        }
        let running = layer.cost_bps(t);
        assert!(running > 300_000, "{running}");
        // Stopped: 10 s without a packet.
        let later = t + Duration::from_secs(10);
        assert!(!layer.active(later));
        let stopped = layer.cost_bps(later);
        let delta_frames = layer.rate.running_bps(later);
        // Its keyframes still count: at least one 12 kB keyframe per 2 s
        // window (48 kb/s) on top of its delta frames.
        assert!(
            stopped >= delta_frames + 48_000,
            "stopped {stopped}: delta frames {delta_frames}, {running} while it ran"
        );
        assert!(stopped <= running, "{stopped} > {running}");
    }
}
