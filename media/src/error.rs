//! The crate's error type.

/// Result alias using [`MediaError`].
pub type Result<T, E = MediaError> = std::result::Result<T, E>;

/// Everything that can go wrong in huddle-media.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// libopus reported an error (bad packet, bad argument, ...).
    #[error("opus: {function}: {description}")]
    Opus {
        /// The libopus function that failed.
        function: &'static str,
        /// libopus's description of the error.
        description: &'static str,
    },
    /// A PCM buffer had the wrong number of samples.
    #[error("bad PCM frame: expected {expected} samples, got {got}")]
    FrameSize {
        /// Expected number of interleaved samples.
        expected: usize,
        /// Number actually passed.
        got: usize,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// An RTP packet failed validation.
    #[error("invalid RTP packet: {0}")]
    InvalidRtp(&'static str),
    /// A VP8 RTP payload failed validation.
    #[error("invalid VP8 payload: {0}")]
    InvalidVp8(&'static str),
    /// A mixer participant id that was never added (or was removed).
    #[error("unknown participant {0}")]
    UnknownParticipant(u64),
    /// A media file uses a format this crate does not handle.
    #[error("unsupported format: {0}")]
    UnsupportedFormat(String),
    /// Reading or writing a WAV file failed.
    #[error("wav: {0}")]
    Wav(#[from] hound::Error),
    /// Plain I/O failure.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl From<opus::Error> for MediaError {
    fn from(e: opus::Error) -> Self {
        MediaError::Opus {
            function: e.function(),
            description: e.description(),
        }
    }
}
