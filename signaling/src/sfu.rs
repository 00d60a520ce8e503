//! The SFU as the signaling service sees it.
//!
//! [`SfuControl`] is the subset of [`huddle_sfu::Sfu`]'s API the service calls.
//! It is a trait so tests can stand a scripted SFU in for the real one; the real
//! handle implements it.

use huddle_proto::{IceCandidate, PcRole};
use huddle_sfu::{IceCredentials, ParticipantId, RoomId, Sfu, SfuError};
use huddle_sfu::{Rights, TrackView};
use std::future::Future;
use std::pin::Pin;

/// A boxed future returned by [`SfuControl`] methods.
pub type SfuFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, SfuError>> + Send + 'a>>;

/// What the signaling service asks of the SFU. See [`huddle_sfu::Sfu`] for the
/// meaning of each call.
pub trait SfuControl: Send + Sync + 'static {
    /// Register a participant of `room`.
    fn add_participant(
        &self,
        room: RoomId,
        participant: ParticipantId,
        rights: Rights,
    ) -> SfuFuture<'_, ()>;
    /// Register a receive-only participant from its SDP offer (WHEP);
    /// returns the answer SDP.
    fn add_viewer(
        &self,
        room: RoomId,
        participant: ParticipantId,
        sdp: String,
    ) -> SfuFuture<'_, String>;
    /// Apply a publisher-connection offer; returns the answer SDP.
    fn publisher_offer(&self, participant: ParticipantId, sdp: String) -> SfuFuture<'_, String>;
    /// Apply the answer to the last subscriber offer.
    fn subscriber_answer(&self, participant: ParticipantId, sdp: String) -> SfuFuture<'_, ()>;
    /// Restart ICE on the participant's subscriber connection (a new
    /// subscriber offer with new ICE credentials follows).
    fn restart_subscriber_ice(&self, participant: ParticipantId) -> SfuFuture<'_, ()>;
    /// Restart ICE on one of the participant's connections with the
    /// client's new credentials, sent without an offer (WHIP/WHEP `PATCH`);
    /// returns the SFU's credentials.
    fn restart_ice_with(
        &self,
        participant: ParticipantId,
        pc: PcRole,
        ufrag: String,
        pwd: String,
    ) -> SfuFuture<'_, IceCredentials>;
    /// Add a trickled client ICE candidate.
    fn remote_candidate(
        &self,
        participant: ParticipantId,
        pc: PcRole,
        candidate: IceCandidate,
    ) -> SfuFuture<'_, ()>;
    /// Mute or unmute a published track.
    fn set_muted(
        &self,
        participant: ParticipantId,
        track_id: String,
        muted: bool,
    ) -> SfuFuture<'_, ()>;
    /// How a participant shows a video it receives (`track_settings`).
    fn set_track_view(
        &self,
        participant: ParticipantId,
        track_id: String,
        view: TrackView,
    ) -> SfuFuture<'_, ()>;
    /// Drop a participant.
    fn remove_participant(&self, participant: ParticipantId) -> SfuFuture<'_, ()>;
}

impl SfuControl for Sfu {
    fn add_participant(
        &self,
        room: RoomId,
        participant: ParticipantId,
        rights: Rights,
    ) -> SfuFuture<'_, ()> {
        Box::pin(Sfu::add_participant(self, room, participant, rights))
    }
    fn add_viewer(
        &self,
        room: RoomId,
        participant: ParticipantId,
        sdp: String,
    ) -> SfuFuture<'_, String> {
        Box::pin(Sfu::add_viewer(self, room, participant, sdp))
    }
    fn publisher_offer(&self, participant: ParticipantId, sdp: String) -> SfuFuture<'_, String> {
        Box::pin(Sfu::publisher_offer(self, participant, sdp))
    }
    fn subscriber_answer(&self, participant: ParticipantId, sdp: String) -> SfuFuture<'_, ()> {
        Box::pin(Sfu::subscriber_answer(self, participant, sdp))
    }
    fn restart_subscriber_ice(&self, participant: ParticipantId) -> SfuFuture<'_, ()> {
        Box::pin(Sfu::restart_subscriber_ice(self, participant))
    }
    fn restart_ice_with(
        &self,
        participant: ParticipantId,
        pc: PcRole,
        ufrag: String,
        pwd: String,
    ) -> SfuFuture<'_, IceCredentials> {
        Box::pin(Sfu::restart_ice_with(self, participant, pc, ufrag, pwd))
    }
    fn remote_candidate(
        &self,
        participant: ParticipantId,
        pc: PcRole,
        candidate: IceCandidate,
    ) -> SfuFuture<'_, ()> {
        Box::pin(Sfu::remote_candidate(self, participant, pc, candidate))
    }
    fn set_muted(
        &self,
        participant: ParticipantId,
        track_id: String,
        muted: bool,
    ) -> SfuFuture<'_, ()> {
        Box::pin(Sfu::set_muted(self, participant, track_id, muted))
    }
    fn set_track_view(
        &self,
        participant: ParticipantId,
        track_id: String,
        view: TrackView,
    ) -> SfuFuture<'_, ()> {
        Box::pin(Sfu::set_track_view(self, participant, track_id, view))
    }
    fn remove_participant(&self, participant: ParticipantId) -> SfuFuture<'_, ()> {
        Box::pin(Sfu::remove_participant(self, participant))
    }
}
