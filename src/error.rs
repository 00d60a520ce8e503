//! Errors of the calling crate.

use huddle_proto::ErrorCode;

/// Errors a `Call` reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The server URL is not an http(s):// or ws(s):// URL.
    #[error("bad server URL {url:?}: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The WebSocket to the signaling service failed.
    #[error("signaling connection: {0}")]
    Signaling(String),
    /// The server refused a request (join, offer, mute, ...).
    #[error("server refused with {code}: {message}")]
    Refused {
        /// Stable error code.
        code: ErrorCode,
        /// Server's explanation.
        message: String,
    },
    /// The server sent something that is not the protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// WebRTC failure in the local peer connection.
    #[error("webrtc: {0}")]
    WebRtc(String),
    /// Waiting for the server or the media connection took too long.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The call has ended.
    #[error("the call has ended")]
    Closed,
    /// A microphone or speaker could not be used.
    #[cfg(feature = "devices")]
    #[error(transparent)]
    Device(#[from] huddle_media::device::DeviceError),
    /// The app passed something unusable (a PCM frame of the wrong length,
    /// a video track where audio is needed, an invalid configuration).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// End-to-end encryption could not do what was asked (a key package or
    /// group message that cannot be made or read, media E2EE does not
    /// cover yet).
    #[error("end-to-end encryption: {0}")]
    E2ee(String),
    /// The token does not allow publishing.
    #[error("this participant may not publish")]
    CannotPublish,
}

impl From<webrtc::error::Error> for CallError {
    fn from(e: webrtc::error::Error) -> Self {
        CallError::WebRtc(e.to_string())
    }
}
