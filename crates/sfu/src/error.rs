//! SFU errors.

/// Errors the SFU reports to its callers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SfuError {
    /// No participant with that id.
    #[error("unknown participant {0}")]
    UnknownParticipant(String),
    /// A participant with that id already exists.
    #[error("participant {0} already exists")]
    DuplicateParticipant(String),
    /// The SDP did not parse or could not be applied.
    #[error("bad SDP: {0}")]
    BadSdp(String),
    /// The ICE candidate did not parse or could not be applied.
    #[error("bad ICE candidate: {0}")]
    BadCandidate(String),
    /// No such track, or not this participant's.
    #[error("unknown track {0}")]
    UnknownTrack(String),
    /// The participant may not publish.
    #[error("participant may not publish")]
    PublishForbidden,
    /// No subscriber offer is outstanding for this participant.
    #[error("no subscriber offer is outstanding")]
    NoPendingOffer,
    /// The participant has no subscriber connection the SFU offers (none
    /// yet, or a WHEP viewer's, negotiated from the viewer's own offer).
    #[error("no subscriber connection to restart")]
    NoSubscriberConnection,
    /// ICE credentials for a restart were refused, or there is nothing to
    /// restart.
    #[error("ICE restart: {0}")]
    BadIce(String),
    /// The media socket could not be opened.
    #[error("media socket: {0}")]
    Io(#[from] std::io::Error),
    /// The SFU task has stopped.
    #[error("the SFU has stopped")]
    Stopped,
    /// webrtc core failure.
    #[error("webrtc: {0}")]
    Rtc(String),
}
