//! Where relayed traffic may go: only to the SFU's media addresses. TURN
//! permissions are per IP address (RFC 8656 §9), so a permission for the
//! SFU's IP would let a client reach every port of that host (a database on
//! localhost, say); this policy is checked per address and port, on every
//! request that names a peer and on every datagram a relay sends.
//!
//! Clients know the SFU by the addresses in its ICE candidates (the public
//! ones behind NAT); the relay reaches it at the addresses it is bound to,
//! which may differ (a host rarely reaches its own public address through
//! its NAT). Each peer address maps to the address the relay sends to, and
//! back for what the SFU answers.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The SFU's media addresses, as clients name them and as the relay
/// reaches them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerPolicy {
    /// Advertised address -> the address the relay sends to.
    to_local: HashMap<SocketAddr, SocketAddr>,
    /// The address the relay gets answers from -> advertised address.
    to_advertised: HashMap<SocketAddr, SocketAddr>,
}

impl PeerPolicy {
    /// A policy allowing the SFU's media addresses: pairs of (the address
    /// clients know, from the SFU's candidates; the address the SFU is
    /// bound to). A bound address whose IP is unspecified (`0.0.0.0`,
    /// `::`) is reached on loopback.
    pub fn new(addrs: impl IntoIterator<Item = (SocketAddr, SocketAddr)>) -> Self {
        let mut policy = PeerPolicy::default();
        for (advertised, bound) in addrs {
            let local = reachable(bound);
            policy.to_local.insert(advertised, local);
            policy.to_local.insert(local, local);
            policy.to_advertised.insert(local, advertised);
        }
        policy
    }

    /// Whether a client may name `ip` in a permission (some SFU address
    /// has it).
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        self.to_local.keys().any(|a| a.ip() == ip)
    }

    /// Where the relay sends what a client sends to `peer`, if `peer` is
    /// an SFU address.
    pub fn local_for(&self, peer: SocketAddr) -> Option<SocketAddr> {
        self.to_local.get(&peer).copied()
    }

    /// Whether a client may name `peer` (a channel, a send).
    pub fn allows(&self, peer: SocketAddr) -> bool {
        self.to_local.contains_key(&peer)
    }

    /// The address clients know for `from`, an address the relay got a
    /// datagram from, if it is the SFU's.
    pub fn advertised_for(&self, from: SocketAddr) -> Option<SocketAddr> {
        self.to_advertised.get(&from).copied()
    }

    /// Whether no address is allowed (nothing can be relayed).
    pub fn is_empty(&self) -> bool {
        self.to_local.is_empty()
    }
}

/// `addr`, with an unspecified IP replaced by loopback of its family.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    #[test]
    fn only_the_sfu_ports_of_its_addresses() {
        let p = PeerPolicy::new([
            (a("203.0.113.7:7882"), a("0.0.0.0:7882")),
            (a("203.0.113.7:7883"), a("0.0.0.0:7883")),
        ]);
        assert!(p.allows_ip(a("203.0.113.7:1").ip()));
        assert!(p.allows_ip(a("127.0.0.1:1").ip()));
        assert!(!p.allows_ip(a("198.51.100.1:1").ip()));
        assert_eq!(
            p.local_for(a("203.0.113.7:7883")),
            Some(a("127.0.0.1:7883"))
        );
        assert_eq!(p.local_for(a("127.0.0.1:7882")), Some(a("127.0.0.1:7882")));
        // Same host, another port: a database, a metrics endpoint.
        assert_eq!(p.local_for(a("203.0.113.7:6379")), None);
        assert_eq!(p.local_for(a("127.0.0.1:6379")), None);
        assert!(!p.allows(a("127.0.0.1:22")));
        assert_eq!(
            p.advertised_for(a("127.0.0.1:7882")),
            Some(a("203.0.113.7:7882"))
        );
        assert_eq!(p.advertised_for(a("127.0.0.1:9")), None);
    }

    #[test]
    fn a_bound_address_is_its_own_advertised_one() {
        let p = PeerPolicy::new([(a("127.0.0.1:40000"), a("127.0.0.1:40000"))]);
        assert_eq!(
            p.local_for(a("127.0.0.1:40000")),
            Some(a("127.0.0.1:40000"))
        );
        assert_eq!(
            p.advertised_for(a("127.0.0.1:40000")),
            Some(a("127.0.0.1:40000"))
        );
        assert!(PeerPolicy::default().is_empty());
    }
}
