//! SFU configuration.

use std::net::SocketAddr;
use std::time::Duration;

/// How the SFU runs. [`SfuConfig::default`] binds 127.0.0.1:7882 with one
/// worker.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// UDP address the media socket binds (port 0 picks a free port). With
    /// several workers, worker `i` binds port `bind.port() + i` (or a free
    /// port each when the port is 0).
    pub bind: SocketAddr,
    /// Address announced in ICE candidates; defaults to the bound address.
    /// With several workers, worker `i` announces port `port + i`.
    pub public_addr: Option<SocketAddr>,
    /// Workers: threads that each own a media socket and whole rooms (one
    /// per core is the rule; 0 counts as 1).
    pub workers: usize,
    /// A participant whose connections stay down (ICE disconnected, failed or
    /// closed) this long is removed.
    pub disconnect_timeout: Duration,
    /// A participant that has not connected this long after joining is removed.
    pub connect_timeout: Duration,
    /// No datagram at all (STUN, DTLS, RTP, RTCP) from a client for this
    /// long marks its connection down: media to it stops, and it is removed
    /// after `disconnect_timeout` more unless traffic comes back.
    pub ice_disconnected_timeout: Duration,
    /// ICE consent (RFC 7675): no STUN check from the client for
    /// `ice_disconnected_timeout` plus this long fails the connection even
    /// while other traffic arrives (30 s in all, as the RFC says).
    pub ice_failed_timeout: Duration,
    /// Keyframe requests toward one publisher track are merged and sent at most
    /// once per this interval.
    pub keyframe_request_interval: Duration,
}

impl Default for SfuConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 7882)),
            public_addr: None,
            workers: 1,
            disconnect_timeout: Duration::from_secs(4),
            connect_timeout: Duration::from_secs(30),
            ice_disconnected_timeout: Duration::from_secs(3),
            ice_failed_timeout: Duration::from_secs(27),
            keyframe_request_interval: Duration::from_millis(500),
        }
    }
}
