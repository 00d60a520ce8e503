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
    /// ICE: no traffic this long marks a connection disconnected.
    pub ice_disconnected_timeout: Duration,
    /// ICE: disconnected this long more marks it failed.
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
            ice_failed_timeout: Duration::from_secs(3),
            keyframe_request_interval: Duration::from_millis(500),
        }
    }
}
