//! Resource limits and timeouts of the signaling service, and the client
//! address they are counted against.
//!
//! Every count limit takes 0 to mean "no limit". `docs/security.md` lists
//! them with their defaults and what a client sees when it hits one.

use axum::extract::ConnectInfo;
use axum::http::HeaderMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// How much one client, one identity, one room and the whole node may use.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Open WebSockets on this server, joined or not. Over it, `GET /ws` is
    /// answered 503 without upgrading.
    pub max_connections: usize,
    /// Open WebSockets from one client address (IPv6: one /64), joined or
    /// not. Over it, `GET /ws` is answered 429.
    pub max_connections_per_ip: usize,
    /// WebSockets from one client address that have not joined yet. Over
    /// it, `GET /ws` is answered 429.
    pub max_pending_per_ip: usize,
    /// Participants on this server: joined WebSockets and WHIP/WHEP
    /// sessions. Over it: `server_full` / 503.
    pub max_participants: usize,
    /// Participants in one room (WHIP/WHEP sessions included). Over it:
    /// `room_full` / 503.
    pub max_participants_per_room: usize,
    /// Participants of one room with the same identity (the token's `sub`):
    /// WebSockets and WHIP/WHEP sessions together. Over it:
    /// `too_many_sessions` / 429.
    pub max_sessions_per_identity: usize,
    /// New WHIP/WHEP sessions (`POST /whip`, `POST /whep`) per second,
    /// sustained, for one client address and for one identity of a room.
    pub http_sessions_per_sec: f64,
    /// Burst of new WHIP/WHEP sessions above the sustained rate.
    pub http_sessions_burst: f64,
    /// A participant whose token allows publishing must send an `offer` or
    /// answer a subscriber `offer` this long after `joined`, or it is closed
    /// (`media_timeout`, close code 4003). Zero disables the check.
    pub media_timeout: Duration,
    /// An HTTP connection must deliver a complete request header this long
    /// after it opens (or after its previous request); otherwise it is
    /// closed. Also bounds how long an idle keep-alive connection stays.
    pub header_read_timeout: Duration,
    /// Joins and leaves that reach one client within this window go out as
    /// one message (`participants_changed`). Zero sends them as they come
    /// (still coalescing what queued up while the client was being written).
    pub presence_batch_window: Duration,
    /// Take the client address from this request header (the last address
    /// in it, e.g. `x-forwarded-for` as set by a reverse proxy) instead of
    /// the TCP peer. Only set it when every request comes through a proxy
    /// that sets the header: a client reaching the server directly could
    /// otherwise pick any address.
    pub client_ip_header: Option<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connections_per_ip: 200,
            max_pending_per_ip: 20,
            max_participants: 10_000,
            max_participants_per_room: 500,
            max_sessions_per_identity: 10,
            http_sessions_per_sec: 1.0,
            http_sessions_burst: 10.0,
            media_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            presence_batch_window: Duration::from_millis(100),
            client_ip_header: None,
        }
    }
}

/// Whether `count` more would exceed `limit` (0: no limit).
pub(crate) fn over(count: usize, limit: usize) -> bool {
    limit != 0 && count >= limit
}

/// The address limits count a client under: IPv4 as is, IPv6 by its /64
/// (one subscriber's usual allocation), an IPv4-mapped IPv6 as its IPv4.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// The client's address for limits: from [`Limits::client_ip_header`] when
/// configured and present, else the TCP peer the server recorded; `None`
/// when neither is known (the router served by another server), in which
/// case per-address limits do not apply.
pub fn client_ip(
    limits: &Limits,
    headers: &HeaderMap,
    peer: Option<&ConnectInfo<SocketAddr>>,
) -> Option<IpAddr> {
    let from_header = limits.client_ip_header.as_deref().and_then(|name| {
        let value = headers.get_all(name).iter().next_back()?.to_str().ok()?;
        value.rsplit(',').next()?.trim().parse::<IpAddr>().ok()
    });
    from_header
        .or_else(|| peer.map(|c| c.0.ip()))
        .map(client_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_counts_by_prefix_and_headers_are_opt_in() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().expect("ip");
        assert_eq!(client_key(a), client_key(b));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("ip");
        assert_eq!(
            client_key(mapped),
            "192.0.2.1".parse::<IpAddr>().expect("ip")
        );

        let peer = ConnectInfo(SocketAddr::from(([10, 0, 0, 1], 5000)));
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "1.1.1.1, 192.0.2.7".parse().expect("hv"));
        let mut limits = Limits::default();
        assert_eq!(
            client_ip(&limits, &headers, Some(&peer)),
            Some(IpAddr::from([10, 0, 0, 1])),
            "the header is ignored unless configured"
        );
        limits.client_ip_header = Some("x-forwarded-for".into());
        assert_eq!(
            client_ip(&limits, &headers, Some(&peer)),
            Some(IpAddr::from([192, 0, 2, 7])),
            "the proxy's own entry, the last one"
        );
        assert_eq!(client_ip(&limits, &HeaderMap::new(), None), None);
        assert!(!over(5, 0) && over(5, 5) && !over(4, 5));
    }
}
