//! ICE credentials as the SFU hands them to signaling.

/// The SFU's ICE credentials for a connection (after a restart: see
/// [`crate::endpoint::Endpoint::restart_ice_with`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceCredentials {
    /// `a=ice-ufrag`.
    pub ufrag: String,
    /// `a=ice-pwd`.
    pub pwd: String,
}
