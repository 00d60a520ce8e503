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

/// A TURN server reached over a stream: TCP (`turn:host:port?transport=tcp`)
/// or TLS (`turns:host:port`), RFC 7065.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct StreamTurn {
    /// TLS (`turns:`) rather than plain TCP.
    pub tls: bool,
    /// The host name or address, as in the URL (no brackets).
    pub host: String,
    /// The port: the URL's, else 3478 (TCP) or 5349 (TLS).
    pub port: u16,
}

impl StreamTurn {
    /// `url` as a TURN server over a stream; `None` for any other URL
    /// (STUN, TURN over UDP, `turns:` over DTLS).
    pub fn parse(url: &str) -> Result<Option<Self>, CallError> {
        let bad = |why: &str| CallError::InvalidInput(format!("ICE server URL {url:?}: {why}"));
        let Some((scheme, rest)) = url.split_once(':') else {
            return Ok(None);
        };
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "turn" => false,
            "turns" => true,
            _ => return Ok(None),
        };
        let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
        let transport = match query.to_ascii_lowercase().as_str() {
            "" => None,
            "transport=udp" => Some(false),
            "transport=tcp" => Some(true),
            _ => {
                return Err(bad(
                    "the only query a TURN URL takes is transport=udp or tcp",
                ))
            }
        };
        // `turn:` is UDP unless it says tcp; `turns:` is TLS unless it says
        // udp (DTLS, which nothing here speaks).
        if transport != Some(true) && !(tls && transport.is_none()) {
            return Ok(None);
        }
        let parsed = url::Url::parse(&format!("turn://{authority}"))
            .map_err(|e| bad(&format!("no host and port here ({e})")))?;
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = parsed.port().unwrap_or(if tls { 5349 } else { 3478 });
        Ok(Some(Self { tls, host, port }))
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
    /// TURN one; `relay_only` needs at least one TURN server.
    ///
    /// webrtc-rs 0.21 reaches TURN servers over UDP only (`turn_relayer.rs`
    /// skips `turns:` and `?transport=tcp` URLs). Each of those is handed
    /// to `doorway`, which opens a local UDP doorway that carries the
    /// datagrams over TCP or TLS (`turn_doorway`) and gives its URL for
    /// webrtc-rs, with the same credentials; a URL it gives none for is
    /// left out.
    pub fn new(
        servers: &[IceServer],
        relay_only: bool,
        doorway: &mut dyn FnMut(&StreamTurn) -> Option<String>,
    ) -> Result<Self, CallError> {
        let mut turn = false;
        let mut usable = Vec::new();
        for server in servers {
            let mut urls = Vec::new();
            for url in &server.urls {
                let scheme = url.split(':').next().unwrap_or_default();
                match scheme {
                    "stun" | "stuns" => urls.push(url.clone()),
                    "turn" | "turns" => match StreamTurn::parse(url)? {
                        None if scheme == "turn" => {
                            turn = true;
                            urls.push(url.clone());
                        }
                        None => debug!(
                            "ICE server {url}: TURN over DTLS, which nothing here speaks; left out"
                        ),
                        Some(stream) => match doorway(&stream) {
                            Some(local) => {
                                turn = true;
                                urls.push(local);
                            }
                            None => debug!("ICE server {url}: no doorway to it; left out"),
                        },
                    },
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
                "relay_only needs a TURN server (turn: or turns:) in ice_servers".into(),
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

    /// No doorways: stream URLs are left out.
    fn new(servers: &[IceServer], relay_only: bool) -> Result<IceConfig, CallError> {
        IceConfig::new(servers, relay_only, &mut |_| None)
    }

    #[test]
    fn servers_are_checked() {
        assert!(new(&[], false).is_ok());
        assert!(new(&[server("stun:127.0.0.1:3478")], false).is_ok());
        let relay = new(&[server("turn:127.0.0.1:3478?transport=udp")], true).expect("relay");
        assert_eq!(relay.policy(), RTCIceTransportPolicy::Relay);
        assert_eq!(relay.servers[0].username, "u");
        assert!(matches!(
            new(&[server("stun:127.0.0.1:3478")], true),
            Err(CallError::InvalidInput(_))
        ));
        assert!(matches!(new(&[], true), Err(CallError::InvalidInput(_))));
        assert!(matches!(
            new(&[server("http://127.0.0.1")], false),
            Err(CallError::InvalidInput(_))
        ));
        assert!(matches!(
            new(&[server("turn:127.0.0.1:3478?transport=sctp")], false),
            Err(CallError::InvalidInput(_))
        ));
    }

    #[test]
    fn stream_urls_are_told_apart() {
        let parse = |url: &str| StreamTurn::parse(url).expect(url);
        let tcp = |tls, host: &str, port| {
            Some(StreamTurn {
                tls,
                host: host.into(),
                port,
            })
        };
        assert_eq!(parse("turn:h:3478"), None);
        assert_eq!(parse("turn:h:3478?transport=udp"), None);
        assert_eq!(parse("turns:h:443?transport=udp"), None, "DTLS");
        assert_eq!(parse("stun:h:3478"), None);
        assert_eq!(parse("turn:h:3479?transport=tcp"), tcp(false, "h", 3479));
        assert_eq!(parse("turn:h?transport=TCP"), tcp(false, "h", 3478));
        assert_eq!(parse("turns:h"), tcp(true, "h", 5349));
        assert_eq!(
            parse("turns:198.18.0.1:443?transport=tcp"),
            tcp(true, "198.18.0.1", 443)
        );
        assert_eq!(parse("turns:[::1]:443"), tcp(true, "::1", 443));
        assert!(StreamTurn::parse("turns::443").is_err());
        assert!(StreamTurn::parse("turn:h:99999?transport=tcp").is_err());
    }

    #[test]
    fn turn_over_tcp_and_tls_goes_through_a_doorway() {
        let both = IceServer {
            urls: vec![
                "turn:127.0.0.1:3478?transport=udp".into(),
                "turn:127.0.0.1:3478?transport=tcp".into(),
                "turns:127.0.0.1:5349?transport=tcp".into(),
            ],
            ..server("stun:x")
        };
        let mut asked = Vec::new();
        let ice = IceConfig::new(std::slice::from_ref(&both), true, &mut |s| {
            asked.push(s.clone());
            Some(format!(
                "turn:127.0.0.1:{}?transport=udp",
                40000 + asked.len()
            ))
        })
        .expect("doorways");
        assert_eq!(
            ice.servers[0].urls,
            vec![
                "turn:127.0.0.1:3478?transport=udp",
                "turn:127.0.0.1:40001?transport=udp",
                "turn:127.0.0.1:40002?transport=udp"
            ]
        );
        assert_eq!(
            ice.servers[0].credential, "p",
            "the doorways take the same credentials"
        );
        assert_eq!(
            asked.iter().map(|s| s.tls).collect::<Vec<_>>(),
            vec![false, true]
        );

        // Without doorways only the UDP one is left, and a TCP or TLS
        // server alone relays nothing.
        let ice = new(&[both], true).expect("the UDP one is enough");
        assert_eq!(
            ice.servers[0].urls,
            vec!["turn:127.0.0.1:3478?transport=udp"]
        );
        assert!(matches!(
            new(&[server("turns:127.0.0.1:5349")], true),
            Err(CallError::InvalidInput(_))
        ));
        let none = new(&[server("turn:127.0.0.1:3478?transport=tcp")], false)
            .expect("not relay-only: fine");
        assert!(none.servers.is_empty());
    }
}
