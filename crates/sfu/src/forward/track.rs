//! The SFU's table of published tracks: each track, its encodings and
//! everyone it goes to, looked up by id or by its publisher's own track id.

use crate::forward::layer::Layer;
use crate::forward::leg::Leg;
use crate::forward::padding::PaddingFilter;
use crate::forward::red::{RedFormat, Strip};
use crate::forward::simulcast::{rank_of, TOP_RANK};
use crate::ids::{ParticipantId, RoomId};
use huddle_proto::{TrackInfo, TrackKind};
use rtc::rtp_transceiver::rtp_sender::RTCRtpCodec;
use rtc::rtp_transceiver::RTCRtpReceiverId;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tracing::info;

/// A track a publisher sends, and everyone it goes to.
pub(crate) struct PublishedTrack {
    pub id: String,
    pub room: RoomId,
    pub publisher: ParticipantId,
    pub remote_track_id: String,
    pub receiver_id: RTCRtpReceiverId,
    pub kind: TrackKind,
    /// Its codec (Opus for audio sent as RED: what its blocks carry).
    pub codec: RTCRtpCodec,
    /// RED, when the publisher negotiated it for this track (it may send
    /// RED or plain Opus, packet by packet).
    pub red: Option<RedFormat>,
    pub muted: bool,
    pub legs: HashMap<ParticipantId, Leg>,
    /// Its encodings: one, or one per simulcast layer seen so far.
    pub layers: Vec<Layer>,
    /// Id of the RFC 6464 audio-level extension on the publisher's connection.
    pub audio_level_id: Option<u8>,
    /// The last audio level the publisher reported (-dBov) and its voice flag.
    pub audio_level: Option<(u8, bool)>,
    /// Publication order in the SFU (lower = earlier).
    pub order: u64,
    /// When a keyframe request last went to the publisher for any of its
    /// layers (see [`KEYFRAME_REQUEST_SPACING`]).
    pub last_keyframe_request: Option<Instant>,
}

/// Keyframe requests toward one published track, whatever the layer, are
/// at least this far apart: Chromium's encoder ignores a request that comes
/// within 300 ms of the last one for any of its simulcast layers, so a
/// request for `q` right after one for `f` was lost, and a subscriber
/// moving from `f` to `q` waited seconds for a keyframe that never came.
pub const KEYFRAME_REQUEST_SPACING: Duration = Duration::from_millis(350);

impl PublishedTrack {
    /// A keyframe request for `layer` at `now` came too soon after the last
    /// one to the track ([`KEYFRAME_REQUEST_SPACING`]): it waits, merged in
    /// the layer's gate, and this returns true; false when it may go now.
    pub fn defer_keyframe_request(&mut self, now: Instant, layer: usize) -> bool {
        let Some(next) = self
            .last_keyframe_request
            .map(|t| t + KEYFRAME_REQUEST_SPACING)
            .filter(|&next| now < next)
        else {
            return false;
        };
        if let Some(l) = self.layers.get_mut(layer) {
            l.keyframe.defer(next);
        }
        true
    }

    pub fn info(&self) -> TrackInfo {
        TrackInfo {
            id: self.id.clone(),
            kind: self.kind,
            mime_type: self.codec.mime_type.clone(),
            muted: self.muted,
            source_track_id: Some(self.remote_track_id.clone()),
        }
    }
}

/// All published tracks of the SFU.
#[derive(Default)]
pub(crate) struct TrackTable {
    pub tracks: HashMap<String, PublishedTrack>,
    /// The next [`PublishedTrack::order`].
    pub next_order: u64,
    /// (publisher, track id on the publisher's connection) -> published id.
    pub by_remote: HashMap<(ParticipantId, String), String>,
}

impl TrackTable {
    pub fn insert(&mut self, track: PublishedTrack) {
        self.by_remote.insert(
            (track.publisher.clone(), track.remote_track_id.clone()),
            track.id.clone(),
        );
        self.tracks.insert(track.id.clone(), track);
    }

    pub fn remove(&mut self, id: &str) -> Option<PublishedTrack> {
        let t = self.tracks.remove(id)?;
        self.by_remote
            .remove(&(t.publisher.clone(), t.remote_track_id.clone()));
        Some(t)
    }

    /// Ids of the tracks a participant publishes.
    pub fn published_by(&self, p: &ParticipantId) -> Vec<String> {
        self.tracks
            .values()
            .filter(|t| &t.publisher == p)
            .map(|t| t.id.clone())
            .collect()
    }
}

/// Most encodings a track may have: three simulcast layers are what
/// browsers send; the rest is room for odd publishers, not for floods.
const MAX_LAYERS: usize = 4;

/// Add an encoding to `track` (its first, or a simulcast layer seen for the
/// first time) and return its index; a track without RIDs whose SSRC
/// changed (the publisher restarted its stream) keeps its one layer with
/// the new SSRC. `None` when the track has [`MAX_LAYERS`] already.
pub(crate) fn add_layer(
    now: Instant,
    track: &mut PublishedTrack,
    rid: Option<String>,
    ssrc: u32,
) -> Option<usize> {
    if rid.is_none() {
        if let Some(i) = track.layers.iter().position(|l| l.rid.is_none()) {
            track.layers[i].ssrc = ssrc;
            track.layers[i].padding = PaddingFilter::default(); // a new sequence
            track.layers[i].red_strip = Strip::default();
            return Some(i);
        }
    }
    if track.layers.len() >= MAX_LAYERS {
        return None;
    }
    let slots = match track.kind {
        TrackKind::Video => crate::forward::rtx::VIDEO_SLOTS,
        TrackKind::Audio => crate::forward::rtx::AUDIO_SLOTS,
    };
    let fallback = u8::try_from(track.layers.len()).map_or(TOP_RANK, |n| n.min(TOP_RANK));
    let rank = rid.as_deref().map_or(TOP_RANK, |r| rank_of(r, fallback));
    if rid.is_some() {
        info!(track = %track.id, rid = ?rid, ssrc, rank, "simulcast layer");
    }
    track.layers.push(Layer::new(rid, ssrc, rank, slots, now));
    Some(track.layers.len() - 1)
}
