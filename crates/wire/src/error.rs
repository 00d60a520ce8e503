//! The one error type of the wire pieces.

/// Why a datagram or a step of the transport failed. None of these is fatal
/// to the connection on its own; a failed handshake is.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// A STUN message that is not a valid check for this connection.
    #[error("STUN: {0}")]
    Stun(String),
    /// DTLS record or handshake trouble.
    #[error("DTLS: {0}")]
    Dtls(String),
    /// SRTP/SRTCP protection or unprotection failed.
    #[error("SRTP: {0}")]
    Srtp(String),
    /// RTCP that does not parse.
    #[error("RTCP: {0}")]
    Rtcp(String),
    /// The session description lacks what DTLS needs.
    #[error("SDP: {0}")]
    Sdp(String),
    /// Media before the handshake finished, or a datagram of no known kind.
    #[error("{0}")]
    NotReady(&'static str),
}
