//! Keyframe requests toward publishers: what a subscriber needs, merged per
//! layer ([`crate::forward::keyframe_gate`]), spaced per track
//! ([`crate::forward::track::KEYFRAME_REQUEST_SPACING`]) and sent as PLI.

use super::Endpoint;
use crate::ids::ParticipantId;
use huddle_proto::{PcRole, TrackKind};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use std::time::Instant;
use tracing::debug;

impl Endpoint {
    /// `sub` needs a keyframe of every video it gets (new legs, or new
    /// keys): of the layer it gets of each.
    pub(super) fn keyframes_for(&mut self, now: Instant, sub: &ParticipantId) {
        let wanted: Vec<(String, usize)> = self
            .table
            .tracks
            .values()
            .filter(|t| t.kind == TrackKind::Video)
            .filter_map(|t| {
                let layer = t.legs.get(sub)?.choice.layer()?;
                Some((t.id.clone(), layer))
            })
            .collect();
        for (track, layer) in wanted {
            self.request_keyframe(now, &track, layer);
        }
    }

    /// `sub` needs a keyframe of a track it gets: of the layer it gets.
    pub(super) fn subscriber_needs_keyframe(
        &mut self,
        now: Instant,
        track_id: &str,
        sub: &ParticipantId,
    ) {
        let layer = self
            .table
            .tracks
            .get(track_id)
            .and_then(|t| t.legs.get(sub))
            .and_then(|leg| leg.choice.layer());
        if let Some(layer) = layer {
            self.request_keyframe(now, track_id, layer);
        }
    }

    pub(super) fn request_keyframe(&mut self, now: Instant, track_id: &str, layer: usize) {
        let interval = self.config.keyframe_request_interval;
        let Some(t) = self.table.tracks.get_mut(track_id) else {
            return;
        };
        if t.kind != TrackKind::Video || layer >= t.layers.len() {
            return;
        }
        if t.defer_keyframe_request(now, layer) {
            return;
        }
        if t.layers[layer].keyframe.request(now, interval) {
            self.send_keyframe_request(now, track_id, layer);
        }
    }

    /// A merged request of `layer` is due: send it, unless another layer of
    /// the track was asked for a keyframe too recently (then it waits).
    pub(super) fn keyframe_request_due(&mut self, now: Instant, track_id: &str, layer: usize) {
        let Some(t) = self.table.tracks.get_mut(track_id) else {
            return;
        };
        if t.defer_keyframe_request(now, layer) {
            return;
        }
        self.send_keyframe_request(now, track_id, layer);
    }

    pub(super) fn send_keyframe_request(&mut self, now: Instant, track_id: &str, layer: usize) {
        let Some(t) = self.table.tracks.get_mut(track_id) else {
            return;
        };
        let Some(media_ssrc) = t.layers.get(layer).map(|l| l.ssrc) else {
            return;
        };
        let Some(conn) = self
            .participants
            .get_mut(&t.publisher)
            .and_then(|p| p.publisher.as_mut())
        else {
            return;
        };
        if let Some(mut receiver) = conn.pc.rtp_receiver(t.receiver_id) {
            let pli = PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc,
            };
            match receiver.write_rtcp(now, vec![Box::new(pli)]) {
                Ok(()) => {
                    t.last_keyframe_request = Some(now);
                    self.keyframe_requests += 1;
                    debug!(track = %track_id, layer, "keyframe requested");
                    self.dirty.push((t.publisher.clone(), PcRole::Publisher));
                }
                Err(e) => debug!(track = %track_id, "PLI failed: {e}"),
            }
        }
    }
}
