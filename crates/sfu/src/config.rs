//! SFU configuration.

use std::net::SocketAddr;
use std::time::Duration;

/// How the SFU runs. [`SfuConfig::default`] binds 127.0.0.1:7882 with one
/// worker.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// UDP address the media socket binds (port 0 picks a free port). With
    /// several workers, worker `i` binds port `bind.port() + i` (or a free
    /// port each when the port is 0). With `ice_tcp`, the same address is
    /// bound for TCP too.
    pub bind: SocketAddr,
    /// Address announced in ICE candidates; defaults to the bound address.
    /// With several workers, worker `i` announces port `port + i`.
    pub public_addr: Option<SocketAddr>,
    /// Workers: threads that each own a media socket and whole rooms (one
    /// per core is the rule; 0 counts as 1).
    pub workers: usize,
    /// A participant whose connection stays down (its consent checks
    /// unanswered, see `consent_misses`) this long is removed; a failed or
    /// closed connection removes it at once.
    pub disconnect_timeout: Duration,
    /// A participant that has not connected this long after joining is removed.
    pub connect_timeout: Duration,
    /// A connection that sent nothing the SFU accepted (authenticated STUN,
    /// DTLS, SRTP, SRTCP) for this long gets a consent check (RFC 7675: a
    /// STUN binding request the client must answer), and another every
    /// interval (±20 %) while it stays quiet. See the `consent` module.
    pub consent_interval: Duration,
    /// Unanswered consent checks in a row after which a connection is down:
    /// media to it stops, and it is removed after `disconnect_timeout` more
    /// unless it speaks again. Down comes about
    /// `consent_interval * (consent_misses + 1)` after the last datagram.
    pub consent_misses: u32,
    /// No proof of consent (an answer to one of the SFU's checks, or a
    /// valid check from the client) for this long closes the connection
    /// even while it sends (RFC 7675 §5.1: 30 s). A connection with no
    /// proof for 5 s gets a check whether or not it is quiet.
    pub consent_timeout: Duration,
    /// Keyframe requests toward one publisher track are merged and sent at most
    /// once per this interval.
    pub keyframe_request_interval: Duration,
    /// ICE over TCP (RFC 6544): each worker also listens on TCP at its UDP
    /// port's address and announces a passive TCP candidate, so a client
    /// whose UDP is blocked connects over TCP (see the `tcp` module).
    pub ice_tcp: bool,
    /// Most ICE-TCP connections one worker holds at once; more are closed
    /// as they come.
    pub ice_tcp_max_connections: usize,
}

impl Default for SfuConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 7882)),
            public_addr: None,
            workers: 1,
            disconnect_timeout: Duration::from_secs(4),
            connect_timeout: Duration::from_secs(30),
            consent_interval: Duration::from_secs(1),
            consent_misses: 3,
            consent_timeout: Duration::from_secs(30),
            keyframe_request_interval: Duration::from_millis(500),
            ice_tcp: true,
            ice_tcp_max_connections: 1024,
        }
    }
}
