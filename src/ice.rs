//! ICE servers (STUN, TURN) and the transport policy of a call's media
//! connections, as the app gives them in `CallOptions`.

use crate::error::CallError;
use tracing::debug;
use webrtc::peer_connection::{RTCIceServer, RTCIceTransportPolicy};

/// A STUN or TURN server for the media connections (as in WebRTC's
/// `RTCIceServer`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IceServer {
    /// Its URLs: `stun:host:port`, `turn:host:port?transport=udp|tcp`,
    /// `turns:host:port` (RFC 7064, RFC 7065).
    pub urls: Vec<String>,
    /// The TURN username, if it needs one.
    pub username: Option<String>,
    /// The TURN password (or REST API credential), if it needs one.
    pub credential: Option<String>,
}

impl From<huddle_proto::IceServerInfo> for IceServer {
    fn from(s: huddle_proto::IceServerInfo) -> Self {
        Self {
            urls: s.urls,
            username: s.username,
            credential: s.credential,
        }
    }
}

/// What the peer connections are built with.
#[derive(Debug, Clone, Default)]
pub(crate) struct IceConfig {
    pub servers: Vec<RTCIceServer>,
    pub relay_only: bool,
}

impl IceConfig {
    /// Check and convert the app's servers. Every URL must be a STUN or
    /// TURN one; `relay_only` needs at least one TURN server this stack can
    /// use. webrtc-rs 0.21 reaches TURN servers over UDP only
    /// (`turn_relayer.rs` skips `turns:` and `?transport=tcp` URLs, with a
    /// warning at every gathering), so those URLs are left out here: on a
    /// network without UDP the call takes the server's ICE-TCP candidate
    /// instead.
    pub fn new(servers: &[IceServer], relay_only: bool) -> Result<Self, CallError> {
        let mut turn = false;
        let mut usable = Vec::new();
        for server in servers {
            let mut urls = Vec::new();
            for url in &server.urls {
                let scheme = url.split(':').next().unwrap_or_default();
                match scheme {
                    "stun" | "stuns" => urls.push(url.clone()),
                    "turn" if !url.to_ascii_lowercase().contains("transport=tcp") => {
                        turn = true;
                        urls.push(url.clone());
                    }
                    "turn" | "turns" => {
                        debug!("ICE server {url}: TURN over TCP or TLS, which webrtc-rs does not reach; left out");
                    }
                    _ => {
                        return Err(CallError::InvalidInput(format!(
                            "ICE server URL {url:?}: not stun:, stuns:, turn: or turns:"
                        )))
                    }
                }
            }
            if !urls.is_empty() {
                usable.push(RTCIceServer {
                    urls,
                    username: server.username.clone().unwrap_or_default(),
                    credential: server.credential.clone().unwrap_or_default(),
                });
            }
        }
        if relay_only && !turn {
            return Err(CallError::InvalidInput(
                "relay_only needs a TURN server over UDP (turn:host:port, or ?transport=udp) in \
                 ice_servers"
                    .into(),
            ));
        }
        Ok(Self {
            servers: usable,
            relay_only,
        })
    }

    /// The transport policy for WebRTC's configuration.
    pub fn policy(&self) -> RTCIceTransportPolicy {
        match self.relay_only {
            true => RTCIceTransportPolicy::Relay,
            false => RTCIceTransportPolicy::All,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(url: &str) -> IceServer {
        IceServer {
            urls: vec![url.to_owned()],
            username: Some("u".into()),
            credential: Some("p".into()),
        }
    }

    #[test]
    fn servers_are_checked() {
        assert!(IceConfig::new(&[], false).is_ok());
        assert!(IceConfig::new(&[server("stun:127.0.0.1:3478")], false).is_ok());
        let relay =
            IceConfig::new(&[server("turn:127.0.0.1:3478?transport=udp")], true).expect("relay");
        assert_eq!(relay.policy(), RTCIceTransportPolicy::Relay);
        assert_eq!(relay.servers[0].username, "u");
        assert!(matches!(
            IceConfig::new(&[server("stun:127.0.0.1:3478")], true),
            Err(CallError::InvalidInput(_))
        ));
        assert!(matches!(
            IceConfig::new(&[], true),
            Err(CallError::InvalidInput(_))
        ));
        assert!(matches!(
            IceConfig::new(&[server("http://127.0.0.1")], false),
            Err(CallError::InvalidInput(_))
        ));
    }

    #[test]
    fn turn_over_tcp_and_tls_is_left_out() {
        let both = IceServer {
            urls: vec![
                "turn:127.0.0.1:3478?transport=udp".into(),
                "turn:127.0.0.1:3478?transport=tcp".into(),
                "turns:127.0.0.1:5349?transport=tcp".into(),
            ],
            ..server("stun:x")
        };
        let ice = IceConfig::new(&[both], true).expect("the UDP one is enough");
        assert_eq!(
            ice.servers[0].urls,
            vec!["turn:127.0.0.1:3478?transport=udp"]
        );
        // Only TCP or TLS: nothing to relay through.
        assert!(matches!(
            IceConfig::new(&[server("turns:127.0.0.1:5349")], true),
            Err(CallError::InvalidInput(_))
        ));
        let none = IceConfig::new(&[server("turn:127.0.0.1:3478?transport=tcp")], false)
            .expect("not relay-only: fine");
        assert!(none.servers.is_empty());
    }
}
