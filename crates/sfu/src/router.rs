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

/// The last packet a leg sent: where a WHEP slot's next source continues.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SentMark {
    pub seq: u16,
    pub ts: u32,
    pub at: Instant,
}

/// A subscriber's copy of a published track.
pub(crate) struct Leg {
    pub sender_id: RTCRtpSenderId,
    pub ssrc: u32,
    /// Payload type negotiated on the subscriber's connection (cached).
    pub payload_type: Option<u8>,
    /// Only on a WHEP slot's leg: how it keeps the slot's stream continuous.
    /// An ordinary leg passes sequence numbers and timestamps through.
    pub continuity: Option<Continuity>,
}

/// A WHEP slot's renumbering: its source changes, its output stream does not.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Continuity {
    /// Added (wrapping) to the source's sequence numbers and timestamps, set
    /// at the leg's first packet.
    seq_offset: u16,
    ts_offset: u32,
    /// Until the first packet: continue after this mark.
    continue_from: Option<SentMark>,
    /// The newest packet sent (retransmissions do not move it).
    last_sent: Option<SentMark>,
}

impl Continuity {
    /// Where the next source of the slot should continue from.
    pub fn mark(&self) -> Option<SentMark> {
        self.last_sent.or(self.continue_from)
    }
}

impl Leg {
    /// An ordinary leg sending on `sender_id` with `ssrc`.
    pub fn new(sender_id: RTCRtpSenderId, ssrc: u32) -> Self {
        Self {
            sender_id,
            ssrc,
            payload_type: None,
            continuity: None,
        }
    }

    /// A WHEP slot's leg, continuing the slot's stream after `from` (what the
    /// slot's previous source last sent, if any).
    pub fn slot(sender_id: RTCRtpSenderId, ssrc: u32, from: Option<SentMark>) -> Self {
        Self {
            continuity: Some(Continuity {
                continue_from: from,
                ..Continuity::default()
            }),
            ..Self::new(sender_id, ssrc)
        }
    }

    /// Rewrite a source packet's sequence number and timestamp for this leg
    /// (`clock_rate` in Hz; nothing to do on an ordinary leg).
    pub fn rewrite(
        &mut self,
        now: Instant,
        clock_rate: u32,
        header: &mut rtc::rtp::header::Header,
    ) {
        let Some(c) = self.continuity.as_mut() else {
            return;
        };
        if let Some(mark) = c.continue_from.take() {
            // One frame's worth at least, so the timestamp always moves on.
            let elapsed = now.saturating_duration_since(mark.at).as_millis() as u64;
            let step = (elapsed * u64::from(clock_rate) / 1000).max(1) as u32;
            c.seq_offset = mark
                .seq
                .wrapping_add(1)
                .wrapping_sub(header.sequence_number);
            c.ts_offset = mark.ts.wrapping_add(step).wrapping_sub(header.timestamp);
        }
        header.sequence_number = header.sequence_number.wrapping_add(c.seq_offset);
        header.timestamp = header.timestamp.wrapping_add(c.ts_offset);
        let newer = c
            .last_sent
            .is_none_or(|m| (header.sequence_number.wrapping_sub(m.seq) as i16) > 0);
        if newer {
            c.last_sent = Some(SentMark {
                seq: header.sequence_number,
                ts: header.timestamp,
                at: now,
            });
        }
    }

    /// The source sequence number of a sequence number this leg sent.
    pub fn source_seq(&self, sent: u16) -> u16 {
        sent.wrapping_sub(self.continuity.map_or(0, |c| c.seq_offset))
    }
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
    /// Publication order in the SFU (lower = earlier).
    pub order: u64,
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
    /// The next [`PublishedTrack::order`].
    pub next_order: u64,
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

    #[test]
    fn leg_continues_a_stream_across_sources() {
        use rtc::rtp::header::Header;
        let t0 = Instant::now();
        let sender = RTCRtpSenderId::from(0);
        let mut leg = Leg::slot(sender, 7, None);
        let mut h = Header {
            sequence_number: 65535,
            timestamp: 1000,
            ..Default::default()
        };
        leg.rewrite(t0, 48_000, &mut h);
        assert_eq!(
            (h.sequence_number, h.timestamp),
            (65535, 1000),
            "passes through"
        );
        let mark = leg.continuity.and_then(|c| c.mark()).expect("marked");
        let mut ordinary = Leg::new(sender, 8);
        let mut h = Header {
            sequence_number: 9,
            timestamp: 99,
            ..Default::default()
        };
        ordinary.rewrite(t0, 48_000, &mut h);
        assert_eq!((h.sequence_number, h.timestamp), (9, 99));
        assert!(
            ordinary.continuity.is_none(),
            "an ordinary leg keeps no marks"
        );
        assert_eq!(ordinary.source_seq(9), 9);

        // A new source 100 ms later, with numbers of its own.
        let mut next = Leg::slot(sender, 7, Some(mark));
        let mut h = Header {
            sequence_number: 500,
            timestamp: 90_000,
            ..Default::default()
        };
        next.rewrite(t0 + Duration::from_millis(100), 48_000, &mut h);
        assert_eq!(h.sequence_number, 0, "one after the last sent (wrapped)");
        assert_eq!(h.timestamp, 1000 + 4800, "100 ms later at 48 kHz");
        let mut h = Header {
            sequence_number: 501,
            timestamp: 90_960,
            ..Default::default()
        };
        next.rewrite(t0 + Duration::from_millis(120), 48_000, &mut h);
        assert_eq!((h.sequence_number, h.timestamp), (1, 1000 + 4800 + 960));
        assert_eq!(next.source_seq(1), 501, "NACKs map back to the source");

        // A retransmission of an older packet does not move the mark back.
        let mut old = Header {
            sequence_number: 500,
            timestamp: 90_000,
            ..Default::default()
        };
        next.rewrite(t0 + Duration::from_millis(130), 48_000, &mut old);
        assert_eq!(
            next.continuity.and_then(|c| c.mark()).map(|m| m.seq),
            Some(1)
        );
    }
}
