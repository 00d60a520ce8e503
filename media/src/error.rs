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
    /// A RED (RFC 2198) payload is malformed, or a block does not fit it.
    #[error("RED: {0}")]
    Red(#[from] RedError),
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

/// What is wrong with a RED (RFC 2198) payload, or with a block that was to
/// be written into one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedError {
    /// The payload has no bytes at all.
    #[error("empty payload")]
    Empty,
    /// The block headers end without the primary block's header.
    #[error("no primary block header")]
    NoPrimaryHeader,
    /// A redundant block's 4-byte header is cut short.
    #[error("redundant block header at byte {at} cut short")]
    TruncatedHeader {
        /// Offset of the header in the payload.
        at: usize,
    },
    /// A redundant block is longer than what is left of the payload.
    #[error("redundant block {block} is {len} bytes but only {left} are left")]
    BlockOverrun {
        /// Index of the block (0 = the first header).
        block: usize,
        /// Length its header gives.
        len: usize,
        /// Bytes left in the payload.
        left: usize,
    },
    /// More blocks than a payload may carry (`MAX_BLOCKS`).
    #[error("more than 32 blocks")]
    TooManyBlocks,
    /// A payload type above 127.
    #[error("payload type {0} is not 0..=127")]
    PayloadType(u8),
    /// A timestamp offset that does not fit 14 bits.
    #[error("timestamp offset {0} does not fit 14 bits")]
    TimestampOffset(u32),
    /// A redundant block that does not fit the 10-bit length field.
    #[error("redundant block of {0} bytes does not fit 10 bits")]
    BlockTooLong(usize),
}
