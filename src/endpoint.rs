//! Where the signaling WebSocket is: from the server address the app was
//! given (`http(s)://` or `ws(s)://`, with or without the `/ws` path) to the
//! WebSocket URL, and which local address suits it.

use crate::error::CallError;

/// The signaling endpoint of a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// `ws://` or `wss://` URL ending in `/ws`.
    pub ws_url: String,
    /// Whether the server is on a loopback address.
    pub loopback: bool,
    /// The server's host name or address.
    pub host: String,
    /// The server's port (the scheme's default when the URL has none).
    pub port: u16,
}

fn bad(url: &str, reason: impl Into<String>) -> CallError {
    CallError::BadUrl {
        url: url.to_owned(),
        reason: reason.into(),
    }
}

/// Accepts `ws://host:port/ws`, `ws://host:port`, `http://host:port`,
/// `https://host/prefix/` and the like: `http` becomes `ws`, `https`
/// becomes `wss`, and `/ws` is appended to a path that does not end in it.
pub(crate) fn resolve(url: &str) -> Result<Endpoint, CallError> {
    let mut parsed = url::Url::parse(url).map_err(|e| bad(url, e.to_string()))?;
    let scheme = match parsed.scheme() {
        "ws" | "http" => "ws",
        "wss" | "https" => "wss",
        other => {
            return Err(bad(
                url,
                format!("the scheme must be http, https, ws or wss, not {other}"),
            ))
        }
    };
    if parsed.set_scheme(scheme).is_err() {
        return Err(bad(url, "cannot use this URL for a WebSocket"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad(url, "the server URL takes no query or fragment"));
    }
    let path = parsed.path().trim_end_matches('/').to_owned();
    if path.ends_with("/ws") {
        parsed.set_path(&path);
    } else {
        parsed.set_path(&format!("{path}/ws"));
    }
    let (loopback, host) = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => (ip.is_loopback(), ip.to_string()),
        // Without the URL's brackets: a name to look up.
        Some(url::Host::Ipv6(ip)) => (ip.is_loopback(), ip.to_string()),
        Some(url::Host::Domain(d)) => (d == "localhost", d.to_owned()),
        None => return Err(bad(url, "no host")),
    };
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| bad(url, "no port"))?;
    Ok(Endpoint {
        ws_url: parsed.to_string(),
        loopback,
        host,
        port,
    })
}

/// The server's address (the first its name resolves to), or `None`
/// when the name does not resolve.
pub(crate) async fn server_addr(endpoint: &Endpoint) -> Option<std::net::SocketAddr> {
    tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port))
        .await
        .ok()?
        .next()
}

/// The local address the system routes `server` through: where this host
/// is, as the server would see it without NAT. `None` when there is no
/// route. Sends nothing (connecting a UDP socket only picks the route),
/// so it is cheap enough to ask a few times a second, which is how the
/// call notices its network changed.
pub(crate) fn local_ip_toward(server: std::net::SocketAddr) -> Option<std::net::IpAddr> {
    let unspecified: std::net::SocketAddr = if server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let probe = std::net::UdpSocket::bind(unspecified).ok()?;
    probe.connect(server).ok()?;
    Some(probe.local_addr().ok()?.ip())
}

#[cfg(test)]
mod tests {
    use super::resolve;

    fn ws(url: &str) -> String {
        resolve(url).expect("valid").ws_url
    }

    #[test]
    fn base_urls_reach_the_websocket() {
        assert_eq!(ws("ws://127.0.0.1:7880/ws"), "ws://127.0.0.1:7880/ws");
        assert_eq!(ws("ws://127.0.0.1:7880"), "ws://127.0.0.1:7880/ws");
        assert_eq!(ws("http://127.0.0.1:7880/"), "ws://127.0.0.1:7880/ws");
        assert_eq!(
            ws("https://calls.example.org"),
            "wss://calls.example.org/ws"
        );
        assert_eq!(
            ws("wss://example.org/huddle/"),
            "wss://example.org/huddle/ws"
        );
        assert_eq!(ws("https://example.org/ws/"), "wss://example.org/ws");
    }

    #[test]
    fn host_and_port_are_kept() {
        let e = resolve("https://example.org/huddle").expect("valid");
        assert_eq!((e.host.as_str(), e.port), ("example.org", 443));
        let e = resolve("ws://[::1]:7880").expect("valid");
        assert_eq!((e.host.as_str(), e.port), ("::1", 7880));
    }

    #[tokio::test]
    async fn the_local_address_is_the_one_that_reaches_the_server() {
        let e = resolve("http://127.0.0.1:7880").expect("valid");
        let server = super::server_addr(&e).await.expect("resolves");
        assert_eq!(
            super::local_ip_toward(server),
            Some(std::net::IpAddr::from([127, 0, 0, 1]))
        );
    }

    #[test]
    fn loopback_is_recognised() {
        assert!(resolve("ws://localhost:1/ws").expect("valid").loopback);
        assert!(resolve("http://[::1]:1").expect("valid").loopback);
        assert!(!resolve("wss://example.org").expect("valid").loopback);
    }

    #[test]
    fn other_urls_say_what_is_wrong() {
        let e = resolve("ftp://example.org").expect_err("ftp").to_string();
        assert!(e.contains("scheme"), "{e}");
        let e = resolve("example.org:7880")
            .expect_err("no scheme")
            .to_string();
        assert!(e.contains("bad server URL"), "{e}");
        assert!(resolve("ws://h/ws?x=1").is_err());
    }
}
