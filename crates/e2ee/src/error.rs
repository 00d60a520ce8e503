//! What can go wrong encrypting or decrypting a frame.

/// An SFrame operation that could not be done. A receiver drops the frame
/// whatever the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum E2eeError {
    /// The frame is too short for the header it starts with.
    #[error("malformed SFrame header")]
    MalformedHeader,
    /// A cipher suite identifier RFC 9605 does not define.
    #[error("unknown SFrame cipher suite {0:#06x}")]
    UnknownSuite(u16),
    /// A base key of no use (empty).
    #[error("an SFrame base key must not be empty")]
    EmptyKey,
    /// A key given for the AEAD directly has the wrong length.
    #[error("the cipher suite takes a {expected}-byte key, not {got}")]
    KeyLength {
        /// What the suite takes.
        expected: usize,
        /// What was given.
        got: usize,
    },
    /// No key is known for the frame's KID (never given, removed, or
    /// expired).
    #[error("no key for KID {0}")]
    UnknownKid(u64),
    /// The frame is shorter than its authentication tag.
    #[error("SFrame ciphertext shorter than its tag")]
    Truncated,
    /// The tag does not match: the frame, its header or its metadata was
    /// changed, or it was made with another key.
    #[error("SFrame authentication failed")]
    Authentication,
    /// A frame with this KID and counter was decrypted already, or is older
    /// than the replay window.
    #[error("SFrame replay: KID {kid}, counter {ctr}")]
    Replay {
        /// The frame's KID.
        kid: u64,
        /// The frame's counter.
        ctr: u64,
    },
    /// A frame longer than the cipher can take (2^32 AES blocks, 64 GiB).
    #[error("frame too long for the cipher")]
    FrameTooLong,
    /// The sender used every counter value of its key.
    #[error("SFrame counter exhausted for KID {0}")]
    CounterExhausted(u64),
    /// A KID layout or value that does not fit in 64 bits.
    #[error("KID layout: {0}")]
    KidLayout(&'static str),
}
