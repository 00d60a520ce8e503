//! [`CallEvent`]: what happens in the room, as the app sees it.

use crate::ids::TrackId;
use crate::participant::Participant;
use crate::track::RemoteTrack;
use huddle_proto::{ErrorCode, PauseReason, TrackKind};
use tokio::sync::mpsc;

/// What happens in the room, in order. Participants come with their
/// identity; `Call::participants` is already up to date when an
/// event about them arrives.
///
/// ```no_run
/// # async fn demo(call: huddle::Call, mut events: huddle::CallEvents) {
/// use huddle::CallEvent;
/// while let Some(ev) = events.recv().await {
///     match ev {
///         CallEvent::ParticipantJoined(p) => println!("{} joined", p.name()),
///         CallEvent::ParticipantLeft(p) => println!("{} left", p.name()),
///         CallEvent::ActiveSpeaker { speaker: Some(p) } => println!("{} speaks", p.name()),
///         CallEvent::TrackSubscribed(track) => {
///             // Read it in a task of its own; this loop goes on.
///             tokio::spawn(async move { while track.recv().await.is_some() {} });
///         }
///         CallEvent::Disconnected => break,
///         _ => {}
///     }
/// }
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum CallEvent {
    /// Someone joined.
    ParticipantJoined(Participant),
    /// Someone left, was removed or timed out.
    ParticipantLeft(Participant),
    /// A participant (this one included) published a track.
    ///
    /// For one of this call's own tracks it means the server is receiving
    /// it. Each other participant hears it from its own
    /// [`CallEvent::TrackSubscribed`] on: media sent before a listener's
    /// subscription is up is not delivered to that listener (the server
    /// forwards, it does not store).
    TrackPublished {
        /// Publisher.
        participant: Participant,
        /// The track's room-wide id.
        track_id: TrackId,
        /// Audio or video.
        kind: TrackKind,
        /// Whether it is muted.
        muted: bool,
    },
    /// A track went away.
    TrackUnpublished {
        /// Publisher.
        participant: Participant,
        /// The track's room-wide id.
        track_id: TrackId,
    },
    /// A track was muted or unmuted.
    MuteChanged {
        /// Publisher.
        participant: Participant,
        /// The track's room-wide id.
        track_id: TrackId,
        /// New state.
        muted: bool,
    },
    /// The room's active speaker changed (`None`: the last one left).
    ActiveSpeaker {
        /// Who speaks now (possibly this participant).
        speaker: Option<Participant>,
    },
    /// Media of another participant's track started arriving: this
    /// participant's subscription to it is up, and from here on it hears
    /// everything the publisher sends.
    TrackSubscribed(RemoteTrack),
    /// A video this participant receives is no longer sent to it: even its
    /// lowest layer does not fit the bandwidth the server estimates toward
    /// this participant, after the videos that go first. Audio is never
    /// paused. Show the tile as paused (its last frame, or the avatar).
    TrackPaused {
        /// The video's room-wide id.
        track_id: TrackId,
        /// Why.
        reason: PauseReason,
    },
    /// A video paused for this participant is sent again (from a keyframe).
    TrackResumed {
        /// The video's room-wide id.
        track_id: TrackId,
    },
    /// The server changed which layers of one of this participant's
    /// simulcast videos somebody receives (dynacast): encode and send
    /// those in `active`, the others may stop
    /// (`SimulcastTrack::is_active` says the same).
    LayersChanged {
        /// The video's room-wide id.
        track_id: TrackId,
        /// RIDs of the layers wanted now.
        active: Vec<String>,
    },
    /// The server reported an error not tied to a pending request.
    Error {
        /// Code.
        code: ErrorCode,
        /// Explanation.
        message: String,
    },
    /// The signaling connection dropped (a network change, a proxy timing
    /// out); the call is trying to take its session back on a new one.
    /// Media keeps flowing meanwhile; requests wait.
    Reconnecting,
    /// Back in the call after [`CallEvent::Reconnecting`].
    ///
    /// `rejoined: false`: the session was taken back on a new signaling
    /// connection: the same participant, tracks and subscriptions, nothing
    /// missed, and nobody else in the room noticed.
    ///
    /// `rejoined: true`: the session was lost (the server restarted, or the
    /// connection stayed down past the server's grace period) and the call
    /// joined the room again with its access token: a new participant id
    /// (`Call::participant_id`), the room as it is now (a
    /// [`CallEvent::ParticipantLeft`] for everyone known before, a
    /// [`CallEvent::ParticipantJoined`] for everyone there now, just
    /// before this event), this call's tracks published again (their
    /// [`CallEvent::TrackPublished`] follow), and the others' tracks
    /// arriving anew as [`CallEvent::TrackSubscribed`] (the old
    /// `RemoteTrack`s end).
    Reconnected {
        /// Whether the call joined again rather than resumed.
        rejoined: bool,
    },
    /// The media path to the server was lost: the local network changed
    /// (a new address) or a media connection went `disconnected` or
    /// `failed`. The call restarts ICE on its connections (and again, with
    /// backoff, while they stay down); media resumes without a new
    /// negotiation of tracks, and nobody else in the room notices more
    /// than a gap.
    MediaReconnecting,
    /// The media connections are up again after
    /// [`CallEvent::MediaReconnecting`].
    MediaReconnected,
    /// End-to-end encrypted call: the room's group moved to a new epoch
    /// (someone joined or left, or this participant joined the group),
    /// with new keys. Show its safety code: equal for every member of
    /// the epoch, it changes when anyone, seen or not, is added. Frames
    /// are sent from the first of these on.
    E2eeEpoch(huddle_e2ee::client::EpochInfo),
    /// The signaling connection closed and the call could neither resume
    /// nor join again (or the server closed it: a kick, a refusal); the
    /// call is over.
    Disconnected,
}

/// The receiving end of a call's events.
pub type CallEvents = mpsc::UnboundedReceiver<CallEvent>;
