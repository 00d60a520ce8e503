//! Participants coming and going: added, removed on request, closed when
//! the server stops, reaped when their connections die or never come up.

use super::Endpoint;
use crate::connection::Liveness;
use crate::error::SfuError;
use crate::events::SfuEvent;
use crate::ids::{ParticipantId, RoomId};
use crate::participant::Participant;
use crate::rights::Rights;
use crate::transmit::Transmit;
use huddle_proto::PcRole;
use rtc::sansio::Protocol;
use std::time::Instant;
use tracing::{debug, info, warn};

impl Endpoint {
    /// Register a participant. When it may subscribe and the room already has
    /// tracks, a subscriber offer follows.
    pub fn add_participant(
        &mut self,
        now: Instant,
        room: RoomId,
        id: ParticipantId,
        rights: Rights,
    ) -> Result<(), SfuError> {
        if self.participants.contains_key(&id) {
            return Err(SfuError::DuplicateParticipant(id.0));
        }
        self.participants
            .insert(id.clone(), Participant::new(room.clone(), rights));
        if rights.subscribe {
            let ids: Vec<String> = self
                .table
                .tracks
                .values()
                .filter(|t| t.room == room)
                .map(|t| t.id.clone())
                .collect();
            for track_id in ids {
                self.add_leg(now, &track_id, &id);
            }
        }
        self.flush(now);
        info!(participant = %id, room = %room, "participant added");
        Ok(())
    }

    /// Drop a participant and everything of it; others' subscriptions to its
    /// tracks end (with new offers).
    pub fn remove_participant(&mut self, now: Instant, id: &ParticipantId) -> Result<(), SfuError> {
        self.drop_participant(now, id)?;
        self.flush(now);
        Ok(())
    }

    /// Everything of [`Endpoint::remove_participant`] but the flush: the
    /// caller flushes once, however many participants it drops. (Flushing
    /// here made reaping recursive, one stack frame per participant gone in
    /// the same pass.)
    pub(super) fn drop_participant(
        &mut self,
        now: Instant,
        id: &ParticipantId,
    ) -> Result<(), SfuError> {
        self.close_connections(now, id);
        self.participants
            .remove(id)
            .ok_or_else(|| SfuError::UnknownParticipant(id.0.clone()))?;
        for track_id in self.table.published_by(id) {
            self.unpublish(now, &track_id);
        }
        for t in self.table.tracks.values_mut() {
            t.legs.remove(id);
        }
        info!(participant = %id, "participant removed");
        Ok(())
    }

    /// Close `id`'s connections and forget their ufrags and addresses. Say
    /// goodbye so the peer notices at once: on the subscriber connection an
    /// RTCP BYE for the SFU's streams and DTLS close_notify, on the
    /// publisher connection what `rtc`'s close sends.
    pub(super) fn close_connections(&mut self, now: Instant, id: &ParticipantId) {
        let ssrcs = self.ssrcs_sent_to(id);
        let Some(p) = self.participants.get_mut(id) else {
            return;
        };
        for (role, conn) in [
            (PcRole::Publisher, p.publisher.take()),
            (PcRole::Subscriber, p.subscriber.take()),
        ] {
            self.demux.remove(&(id.clone(), role));
            self.deadlines.touch((id.clone(), role));
            let Some(mut conn) = conn else {
                continue;
            };
            if let Some(wire) = conn.wire.as_mut() {
                wire.close(now, &ssrcs);
                while let Some((dst, payload)) = wire.poll_transmit() {
                    self.transmits.push_back(Transmit { dst, payload });
                }
                continue;
            }
            if let Err(e) = conn.pc.close() {
                debug!(participant = %id, "close: {e}");
            }
            while let Some(msg) = conn.pc.poll_write() {
                self.transmits.push_back(Transmit {
                    dst: msg.transport.peer_addr,
                    payload: msg.message,
                });
            }
        }
    }

    /// Close every connection (the server is stopping): each client gets an
    /// RTCP BYE for what the SFU sent it and DTLS close_notify on its
    /// subscriber connection, and what `rtc`'s close sends on its publisher
    /// connection (close_notify too), queued for [`Endpoint::poll_transmit`].
    /// Every participant is removed, without [`SfuEvent::ParticipantGone`]
    /// (signaling is stopping too) and without new offers.
    pub fn close_all(&mut self, now: Instant) {
        let ids: Vec<ParticipantId> = self.participants.keys().cloned().collect();
        // Every goodbye first, while every leg still names its SSRC.
        for id in &ids {
            self.close_connections(now, id);
        }
        for id in &ids {
            if let Err(e) = self.drop_participant(now, id) {
                debug!(participant = %id, "close: {e}");
            }
        }
        self.dirty.clear();
        info!(participants = ids.len(), "every connection closed");
    }

    /// The SSRCs of the streams the SFU sends `sub` (its legs, a viewer's
    /// slots), for its RTCP BYE.
    pub(super) fn ssrcs_sent_to(&self, sub: &ParticipantId) -> Vec<u32> {
        let mut ssrcs: Vec<u32> = self
            .table
            .tracks
            .values()
            .filter_map(|t| t.legs.get(sub).map(|leg| leg.ssrc))
            .collect();
        if let Some(slots) = self.participants.get(sub).and_then(|p| p.slots.as_ref()) {
            ssrcs.extend(slots.iter().map(|s| s.ssrc));
        }
        ssrcs.sort_unstable();
        ssrcs.dedup();
        ssrcs
    }

    /// Remove participants whose connections died or never came up, without
    /// flushing; true when any was removed.
    pub(super) fn reap(&mut self, now: Instant) -> bool {
        let mut gone = Vec::new();
        for (id, p) in &self.participants {
            for conn in [p.publisher.as_ref(), p.subscriber.as_ref()]
                .into_iter()
                .flatten()
            {
                let reason = match conn.liveness {
                    Liveness::Dead => Some("connection failed or closed"),
                    Liveness::Connecting { since }
                        if now.saturating_duration_since(since) >= self.config.connect_timeout =>
                    {
                        Some("connection never came up")
                    }
                    Liveness::Down { since }
                        if now.saturating_duration_since(since)
                            >= self.config.disconnect_timeout =>
                    {
                        Some("connection stopped answering")
                    }
                    _ => None,
                };
                if let Some(r) = reason {
                    gone.push((id.clone(), p.room.clone(), r));
                    break;
                }
            }
        }
        let any = !gone.is_empty();
        for (id, room, reason) in gone {
            warn!(participant = %id, reason, "participant gone");
            if self.drop_participant(now, &id).is_ok() {
                self.events.push_back(SfuEvent::ParticipantGone {
                    room,
                    participant: id,
                    reason: reason.to_owned(),
                });
            }
        }
        any
    }
}
