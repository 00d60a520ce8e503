//! WHEP viewers: participants that receive only, whose one subscriber
//! connection is negotiated from their own offer and never again.
//!
//! Each audio or video m-line the viewer offers to receive becomes a [`Slot`]:
//! the answer gives it a sender with a fixed SSRC, and one published track of
//! the room at a time feeds it. When that track goes away another of the same
//! kind takes its place, with sequence numbers and timestamps rewritten so the
//! viewer keeps seeing one continuous stream (no renegotiation is possible).
//! Slots prefer tracks that are arriving, then tracks of a publisher the
//! viewer already watches (so a publisher's audio and video stay together),
//! then the earliest published.
//!
//! A slot whose track stops arriving (its publisher crashed or lost its
//! network: the SFU only declares it gone seconds later) moves to another
//! track of its kind that is arriving, if the room has one, within
//! [`SOURCE_QUIET`] and a check interval.

use super::sdp::{bad_sdp, make_answer, rtc_err, start_wire};
use super::Endpoint;
use crate::connection::{ice_token, Connection};
use crate::error::SfuError;
use crate::forward::leg::Leg;
use crate::forward::simulcast::LayerChoice;
use crate::forward::track::PublishedTrack;
use crate::ids::{ParticipantId, RoomId};
use crate::participant::{Participant, Slot};
use crate::rights::Rights;
use crate::transport::Wire;
use huddle_proto::{PcRole, TrackKind};
use huddle_wire::local_track::default_track;
use rtc::peer_connection::sdp::RTCSessionDescription;
use std::collections::HashSet;
use std::time::{Duration, Instant};
use tracing::info;

/// A slot's track that sent nothing for this long is replaced by one that
/// is arriving. Longer than the gaps of a live stream (Opus DTX sends a
/// packet every 400 ms of silence).
pub(super) const SOURCE_QUIET: Duration = Duration::from_secs(1);

/// How often the viewers' slots are looked at for a quiet source.
const SLOT_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// Whether packets of `track` arrived within [`SOURCE_QUIET`].
fn arriving(track: &PublishedTrack, now: Instant) -> bool {
    track
        .layers
        .iter()
        .any(|l| now.saturating_duration_since(l.last_rx) < SOURCE_QUIET)
}

impl Endpoint {
    /// Add a receive-only participant of `room` from its SDP offer (WHEP) and
    /// return the answer. Every audio or video m-line it offers to receive is
    /// fed by a track of the room as soon as there is one.
    pub fn add_viewer(
        &mut self,
        now: Instant,
        room: RoomId,
        id: ParticipantId,
        sdp: String,
    ) -> Result<String, SfuError> {
        if self.participants.contains_key(&id) {
            return Err(SfuError::DuplicateParticipant(id.0));
        }
        let kinds = wanted_kinds(&sdp);
        if kinds.is_empty() {
            return Err(SfuError::BadSdp(
                "the offer asks to receive neither audio nor video".into(),
            ));
        }
        Wire::check_remote(&sdp).map_err(bad_sdp)?;
        let offer = RTCSessionDescription::offer(sdp.clone()).map_err(bad_sdp)?;
        let ufrag = ice_token(16);
        let mut conn = Connection::new(
            now,
            &self.config,
            PcRole::Subscriber,
            ufrag.clone(),
            self.local_addr,
        )?;
        conn.pc
            .set_remote_description(now, offer)
            .map_err(bad_sdp)?;
        let mut slots = Vec::with_capacity(kinds.len());
        for (i, kind) in kinds.into_iter().enumerate() {
            let ssrc: u32 = rand::random();
            let local_track_id = format!("SL{i}_{}", ice_token(8));
            let placeholder = default_track(id.0.clone(), local_track_id.clone(), kind, ssrc);
            let sender_id = conn.pc.add_track(placeholder).map_err(rtc_err)?;
            slots.push(Slot {
                kind,
                sender_id,
                ssrc,
                source: None,
                last_sent: None,
            });
        }
        let answer = make_answer(now, &mut conn, self.host())?;
        start_wire(now, &mut conn, &sdp)?;
        self.demux
            .insert_ufrag(ufrag, (id.clone(), PcRole::Subscriber));
        let mut p = Participant::new(
            room.clone(),
            Rights {
                publish: false,
                subscribe: true,
            },
        );
        p.subscriber = Some(conn);
        p.slots = Some(slots);
        self.participants.insert(id.clone(), p);
        self.dirty.push((id.clone(), PcRole::Subscriber));
        self.fill_slots(now, &id);
        self.next_slot_check
            .get_or_insert(now + SLOT_CHECK_INTERVAL);
        self.flush(now);
        info!(participant = %id, room = %room, "viewer added");
        Ok(answer)
    }

    /// Feed every empty slot of `viewer` with a track of its room, if any.
    pub(super) fn fill_slots(&mut self, now: Instant, viewer: &ParticipantId) {
        let Some(p) = self.participants.get(viewer) else {
            return;
        };
        let Some(slots) = &p.slots else {
            return;
        };
        let mut taken: HashSet<&str> = slots.iter().filter_map(|s| s.source.as_deref()).collect();
        let mut watched: Vec<&ParticipantId> = taken
            .iter()
            .filter_map(|t| self.table.tracks.get(*t))
            .map(|t| &t.publisher)
            .collect();
        let mut assigned = Vec::new();
        for (i, slot) in slots.iter().enumerate() {
            if slot.source.is_some() {
                continue;
            }
            let best = self
                .table
                .tracks
                .values()
                .filter(|t| {
                    t.room == p.room
                        && t.kind == slot.kind
                        && &t.publisher != viewer
                        && !taken.contains(t.id.as_str())
                })
                .min_by_key(|t| (!arriving(t, now), !watched.contains(&&t.publisher), t.order));
            if let Some(t) = best {
                taken.insert(&t.id);
                watched.push(&t.publisher);
                assigned.push((i, t.id.clone()));
            }
        }
        for (i, track_id) in assigned {
            let Some(slot) = self
                .participants
                .get_mut(viewer)
                .and_then(|p| p.slots.as_mut())
                .and_then(|s| s.get_mut(i))
            else {
                return;
            };
            let Some(track) = self.table.tracks.get_mut(&track_id) else {
                continue;
            };
            slot.source = Some(track_id.clone());
            let mut leg = Leg::slot(slot.sender_id, slot.ssrc, slot.last_sent);
            let simulcast = track.layers.len() > 1;
            if simulcast {
                // Start at a keyframe of the layer the next choice picks.
                leg.choice = LayerChoice::default();
                self.next_layer_choice = Some(now);
            }
            track.legs.insert(viewer.clone(), leg);
            info!(participant = %viewer, track = %track_id, slot = i, "viewer slot fed");
            if !simulcast {
                self.subscriber_needs_keyframe(now, &track_id, viewer);
            }
        }
    }

    /// Move every viewer slot whose track went quiet to a track of its kind
    /// that is arriving, where the room has one not shown in another of the
    /// viewer's slots.
    pub(super) fn check_slot_sources(&mut self, now: Instant) {
        self.next_slot_check = None;
        let mut quiet = Vec::new();
        let mut viewers = false;
        for (id, p) in &self.participants {
            let Some(slots) = &p.slots else {
                continue;
            };
            viewers = true;
            for slot in slots {
                let Some(track) = slot
                    .source
                    .as_deref()
                    .and_then(|t| self.table.tracks.get(t))
                else {
                    continue;
                };
                if arriving(track, now) {
                    continue;
                }
                let replacement = self.table.tracks.values().any(|t| {
                    t.room == p.room
                        && t.kind == slot.kind
                        && &t.publisher != id
                        && arriving(t, now)
                        && !slots.iter().any(|s| s.source.as_deref() == Some(&t.id))
                });
                if replacement {
                    quiet.push((id.clone(), track.id.clone()));
                }
            }
        }
        for (viewer, track_id) in quiet {
            let Some(leg) = self
                .table
                .tracks
                .get_mut(&track_id)
                .and_then(|t| t.legs.remove(&viewer))
            else {
                continue;
            };
            if let Some(slots) = self
                .participants
                .get_mut(&viewer)
                .and_then(|p| p.slots.as_mut())
            {
                free_slot(slots, &track_id, &leg);
            }
            info!(participant = %viewer, track = %track_id, "viewer slot's track went quiet");
            self.fill_slots(now, &viewer);
        }
        if viewers {
            self.next_slot_check = Some(now + SLOT_CHECK_INTERVAL);
        }
    }
}

/// `track_id` stopped feeding one of `slots` through `leg`: empty that slot,
/// remembering where its output stream got to.
pub(super) fn free_slot(slots: &mut [Slot], track_id: &str, leg: &Leg) {
    if let Some(slot) = slots
        .iter_mut()
        .find(|s| s.source.as_deref() == Some(track_id))
    {
        slot.source = None;
        slot.last_sent = leg.continuity.and_then(|c| c.mark()).or(slot.last_sent);
    }
}

/// The kinds of the m-lines of `sdp` that want to receive media (audio or
/// video, not `sendonly` or `inactive`), in order.
fn wanted_kinds(sdp: &str) -> Vec<TrackKind> {
    let mut out = Vec::new();
    let mut current: Option<(TrackKind, bool)> = None;
    for line in sdp.lines().map(str::trim_end) {
        if let Some(media) = line.strip_prefix("m=") {
            if let Some((kind, true)) = current {
                out.push(kind);
            }
            current = if media.starts_with("audio ") {
                Some((TrackKind::Audio, true))
            } else if media.starts_with("video ") {
                Some((TrackKind::Video, true))
            } else {
                None
            };
        } else if line == "a=sendonly" || line == "a=inactive" {
            if let Some((_, wants)) = current.as_mut() {
                *wants = false;
            }
        }
    }
    if let Some((kind, true)) = current {
        out.push(kind);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wanted_kinds_follow_the_offer() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
                   m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\n\
                   m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendrecv\r\n\
                   m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=inactive\r\n";
        assert_eq!(
            wanted_kinds(sdp),
            vec![TrackKind::Audio, TrackKind::Video],
            "recvonly and sendrecv m-lines count; sendonly, inactive and data do not"
        );
        assert!(wanted_kinds("v=0\r\n").is_empty());
    }
}
