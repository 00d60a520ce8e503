//! Track lifecycle: a remote track becomes a published track on its first
//! packet, each subscriber gets a leg of it, and it goes away with its
//! publisher's track.

use super::viewer::free_slot;
use super::Endpoint;
use crate::connection::{ice_token, Connection};
use crate::error::SfuError;
use crate::events::SfuEvent;
use crate::forward::leg::Leg;
use crate::forward::red::negotiated_red;
use crate::forward::simulcast::{LayerChoice, CHOICE_INTERVAL};
use crate::forward::track::{add_layer, PublishedTrack};
use crate::ids::ParticipantId;
use huddle_proto::{PcRole, TrackKind};
use huddle_wire::codecs::{extension_id, AUDIO_LEVEL_URI};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use std::collections::HashMap;
use std::time::Instant;
use tracing::{debug, info, warn};

impl Endpoint {
    /// Mute or unmute a published track; a muted track is not forwarded.
    pub fn set_muted(
        &mut self,
        id: &ParticipantId,
        track_id: &str,
        muted: bool,
    ) -> Result<(), SfuError> {
        match self.table.tracks.get_mut(track_id) {
            Some(t) if &t.publisher == id => {
                t.muted = muted;
                Ok(())
            }
            _ => Err(SfuError::UnknownTrack(track_id.to_owned())),
        }
    }

    /// A remote track of `publisher`'s publisher connection ended: forget it
    /// and unpublish what it fed.
    pub(super) fn end_incoming(
        &mut self,
        now: Instant,
        publisher: &ParticipantId,
        track_id: String,
    ) {
        if let Some(p) = self.participants.get_mut(publisher) {
            p.incoming.remove(&track_id);
        }
        if let Some(id) = self
            .table
            .by_remote
            .get(&(publisher.clone(), track_id))
            .cloned()
        {
            self.unpublish(now, &id);
        }
    }

    /// First packet of a new remote track: make it a published track and give
    /// it to every subscriber in the room.
    pub(super) fn publish(
        &mut self,
        now: Instant,
        publisher: &ParticipantId,
        remote: &str,
        packet: &rtc::rtp::Packet,
    ) -> Option<String> {
        let p = self.participants.get_mut(publisher)?;
        let receiver_id = *p.incoming.get(remote)?;
        let room = p.room.clone();
        let conn = p.publisher.as_mut()?;
        let mut receiver = conn.pc.rtp_receiver(receiver_id)?;
        let kind = match receiver.track().kind() {
            RtpCodecKind::Video => TrackKind::Video,
            _ => TrackKind::Audio,
        };
        let codecs = &receiver.get_parameters().rtp_parameters.codecs;
        let red = match kind {
            TrackKind::Audio => negotiated_red(codecs),
            TrackKind::Video => None,
        };
        // A RED packet's codec is that of its blocks.
        let pt = match red {
            Some(f) if f.red_pt == packet.header.payload_type => f.primary_pt,
            _ => packet.header.payload_type,
        };
        let codec = codecs
            .iter()
            .find(|c| c.payload_type == pt)?
            .rtp_codec
            .clone();
        let audio_level_id =
            extension_id(&receiver.get_parameters().rtp_parameters, AUDIO_LEVEL_URI);
        let rid = receiver.track().rid(packet.header.ssrc).cloned();
        let id = format!("TR_{}", ice_token(12));
        let mut track = PublishedTrack {
            id: id.clone(),
            room: room.clone(),
            publisher: publisher.clone(),
            remote_track_id: remote.to_owned(),
            receiver_id,
            kind,
            codec,
            red,
            muted: false,
            legs: HashMap::new(),
            layers: Vec::new(),
            audio_level_id,
            audio_level: None,
            order: self.table.next_order,
            last_keyframe_request: None,
        };
        self.table.next_order += 1;
        add_layer(now, &mut track, rid, packet.header.ssrc)?;
        let info = track.info();
        self.table.insert(track);
        info!(participant = %publisher, track = %id, mime = %info.mime_type, red = red.is_some(), "track published");
        self.events.push_back(SfuEvent::TrackPublished {
            room: room.clone(),
            participant: publisher.clone(),
            track: info,
        });
        let subscribers: Vec<ParticipantId> = self
            .participants
            .iter()
            .filter(|(pid, q)| *pid != publisher && q.room == room && q.rights.subscribe)
            .map(|(pid, _)| pid.clone())
            .collect();
        for sub in subscribers {
            self.add_leg(now, &id, &sub);
        }
        Some(id)
    }

    /// Give a subscriber its copy of a published track (renegotiation follows).
    pub(super) fn add_leg(&mut self, now: Instant, track_id: &str, sub: &ParticipantId) {
        let Some(track) = self.table.tracks.get_mut(track_id) else {
            return;
        };
        let Some(p) = self.participants.get_mut(sub) else {
            return;
        };
        if p.slots.is_some() {
            self.fill_slots(now, sub);
            return;
        }
        if p.subscriber.is_none() {
            let ufrag = ice_token(16);
            match Connection::new(
                now,
                &self.config,
                PcRole::Subscriber,
                ufrag.clone(),
                self.local_addr,
            ) {
                Ok(conn) => {
                    p.subscriber = Some(conn);
                    self.demux
                        .insert_ufrag(ufrag, (sub.clone(), PcRole::Subscriber));
                }
                Err(e) => {
                    warn!(participant = %sub, "cannot create subscriber connection: {e}");
                    return;
                }
            }
        }
        let Some(conn) = p.subscriber.as_mut() else {
            return;
        };
        let ssrc: u32 = rand::random();
        let local = huddle_wire::local_track::single_ssrc_track(
            track.publisher.0.clone(),
            track.id.clone(),
            track.kind,
            track.codec.clone(),
            ssrc,
        );
        match conn.pc.add_track(local) {
            Ok(sender_id) => {
                let mut leg = match track.kind {
                    TrackKind::Video => Leg::switchable(sender_id, ssrc),
                    TrackKind::Audio => Leg::new(sender_id, ssrc),
                };
                if track.layers.len() > 1 {
                    // Start at a keyframe of the layer the next choice picks.
                    leg.choice = LayerChoice::default();
                    self.next_layer_choice = Some(now);
                } else if track.kind == TrackKind::Video {
                    // A single layer is allocated too (it may not fit, or
                    // need a probe once its rate is known): the allocator's
                    // rounds start.
                    self.next_layer_choice.get_or_insert(now + CHOICE_INTERVAL);
                }
                track.legs.insert(sub.clone(), leg);
                p.needs_offer = true;
            }
            Err(e) => warn!(participant = %sub, track = %track_id, "add_track failed: {e}"),
        }
    }

    /// A published track went away: take it from every subscriber.
    pub(super) fn unpublish(&mut self, now: Instant, track_id: &str) {
        let Some(track) = self.table.remove(track_id) else {
            return;
        };
        let mut viewers = Vec::new();
        for (sub, leg) in track.legs {
            if let Some(p) = self.participants.get_mut(&sub) {
                if let Some(slots) = p.slots.as_mut() {
                    free_slot(slots, track_id, &leg);
                    viewers.push(sub);
                } else if let Some(conn) = p.subscriber.as_mut() {
                    if let Err(e) = conn.pc.remove_track(leg.sender_id) {
                        debug!(participant = %sub, "remove_track: {e}");
                    }
                    p.needs_offer = true;
                }
            }
        }
        for sub in viewers {
            self.fill_slots(now, &sub);
        }
        if track.kind == TrackKind::Audio {
            self.speakers.forget(&track.room, &track.publisher);
        }
        info!(participant = %track.publisher, track = %track_id, "track unpublished");
        self.events.push_back(SfuEvent::TrackUnpublished {
            room: track.room,
            participant: track.publisher,
            track_id: track_id.to_owned(),
        });
    }
}
