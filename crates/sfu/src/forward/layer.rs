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
        self.rate
            .running_bps(now)
            .saturating_add(self.keyframe_rate.bps(now))
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
