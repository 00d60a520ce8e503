//! Which published track goes to which subscriber, and the per-subscriber
//! forwarding state (the sender on the subscriber's connection, its SSRC and
//! negotiated payload type). Keyframe requests toward a publisher are merged
//! here and let through at most once per interval.

use crate::ids::{ParticipantId, RoomId};
use huddle_proto::{TrackInfo, TrackKind};
use rtc::rtp_transceiver::rtp_sender::RTCRtpCodec;
use rtc::rtp_transceiver::{RTCRtpReceiverId, RTCRtpSenderId};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A subscriber's copy of a published track.
pub(crate) struct Leg {
    pub sender_id: RTCRtpSenderId,
    pub ssrc: u32,
    /// Payload type negotiated on the subscriber's connection (cached).
    pub payload_type: Option<u8>,
}

/// A track a publisher sends, and everyone it goes to.
pub(crate) struct PublishedTrack {
    pub id: String,
    pub room: RoomId,
    pub publisher: ParticipantId,
    pub remote_track_id: String,
    pub receiver_id: RTCRtpReceiverId,
    pub media_ssrc: u32,
    pub kind: TrackKind,
    pub codec: RTCRtpCodec,
    pub muted: bool,
    pub legs: HashMap<ParticipantId, Leg>,
    pub keyframe: KeyframeGate,
    /// Recent packets, for answering subscribers' NACKs.
    pub rtx: crate::rtx::RtxStore,
    /// Id of the RFC 6464 audio-level extension on the publisher's connection.
    pub audio_level_id: Option<u8>,
    /// The last audio level the publisher reported (-dBov) and its voice flag.
    pub audio_level: Option<(u8, bool)>,
}

impl PublishedTrack {
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

/// All published tracks of the SFU.
#[derive(Default)]
pub(crate) struct Router {
    pub tracks: HashMap<String, PublishedTrack>,
    /// (publisher, track id on the publisher's connection) -> published id.
    pub by_remote: HashMap<(ParticipantId, String), String>,
}

impl Router {
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
