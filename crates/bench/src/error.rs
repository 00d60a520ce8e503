//! The load tool's error type.

/// What can go wrong while running a load.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The WebRTC core refused something.
    #[error("webrtc: {0}")]
    Rtc(String),
    /// A socket or file operation failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The signaling WebSocket failed or the server said no.
    #[error("signaling: {0}")]
    Signaling(String),
    /// The server process could not be started or measured.
    #[error("server: {0}")]
    Server(String),
}

/// Map any displayable `rtc` error into [`BenchError::Rtc`].
pub(crate) fn rtc_err(e: impl std::fmt::Display) -> BenchError {
    BenchError::Rtc(e.to_string())
}
