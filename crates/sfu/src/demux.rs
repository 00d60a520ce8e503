//! Datagram demultiplexing for the shared media port.
//!
//! A datagram is routed to a connection by its source address once that
//! address is known. Before that only a STUN binding request can introduce an
//! address: its USERNAME attribute (`<server ufrag>:<client ufrag>`, RFC 8445
//! §7.2.2) names the connection, whose ufrag the SFU chose itself. Anything
//! else from an unknown address is dropped.

use huddle_wire::classify::stun_local_ufrag;
use std::collections::HashMap;
use std::net::SocketAddr;

/// Maps ICE ufrags and source addresses to connection keys.
#[derive(Debug)]
pub struct Demux<K> {
    by_ufrag: HashMap<String, K>,
    by_addr: HashMap<SocketAddr, K>,
}

impl<K> Default for Demux<K> {
    fn default() -> Self {
        Self {
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
        }
    }
}

impl<K: Clone + PartialEq> Demux<K> {
    /// Register the ufrag the SFU chose for a connection.
    pub fn insert_ufrag(&mut self, ufrag: String, key: K) {
        self.by_ufrag.insert(ufrag, key);
    }

    /// Forget one ufrag (retired by an ICE restart).
    pub fn remove_ufrag(&mut self, ufrag: &str) {
        self.by_ufrag.remove(ufrag);
    }

    /// Which connection a datagram from `src` belongs to: a STUN message
    /// naming a known ufrag goes to that connection, anything else by its
    /// bound source address.
    ///
    /// Routing by ufrag does NOT bind `src`: anyone can put a ufrag in a STUN
    /// message (it travels in clear text), so binding here let unauthenticated
    /// requests grow the address table without bound and re-point a connected
    /// client's address at another connection. The connection's ICE agent
    /// checks MESSAGE-INTEGRITY and answers only a request that passes; the
    /// endpoint then binds the address it answered ([`Demux::bind`], see
    /// [`is_stun_success_response`](huddle_wire::classify::is_stun_success_response)), so a client that changes address (ICE
    /// restart, NAT rebinding) is still followed.
    pub fn route(&mut self, src: SocketAddr, datagram: &[u8]) -> Option<K> {
        if let Some(ufrag) = stun_local_ufrag(datagram) {
            if let Some(key) = self.by_ufrag.get(ufrag) {
                return Some(key.clone());
            }
        }
        self.by_addr.get(&src).cloned()
    }

    /// Bind `addr` to a connection: call when that connection authenticated
    /// a peer at `addr` (it sends a STUN success response there).
    pub fn bind(&mut self, addr: SocketAddr, key: &K) {
        if self.by_addr.get(&addr) != Some(key) {
            self.by_addr.insert(addr, key.clone());
        }
    }

    /// Forget every ufrag and address of a connection.
    pub fn remove(&mut self, key: &K) {
        self.by_ufrag.retain(|_, k| k != key);
        self.by_addr.retain(|_, k| k != key);
    }

    /// Whether `addr` is bound to a connection: one of its authenticated
    /// checks from there was answered.
    pub fn is_bound(&self, addr: &SocketAddr) -> bool {
        self.by_addr.contains_key(addr)
    }

    /// Number of known source addresses.
    pub fn addresses(&self) -> usize {
        self.by_addr.len()
    }

    /// Number of known ufrags.
    pub fn ufrags(&self) -> usize {
        self.by_ufrag.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use huddle_wire::ice_lite::controlling_check;

    /// A real ICE check naming `server_ufrag` as the SFU's ufrag.
    fn check_to(server_ufrag: &str) -> Vec<u8> {
        let provider = rtc::crypto::default_provider().expect("crypto provider");
        let (check, _) = controlling_check(
            server_ufrag,
            "password",
            "client",
            1,
            false,
            provider.crypto(),
        )
        .expect("check");
        check
    }

    #[test]
    fn routes_by_ufrag_then_address() {
        let mut d: Demux<u32> = Demux::default();
        d.insert_ufrag("serverUfrag".into(), 7);
        let a: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:5001".parse().unwrap();
        assert_eq!(d.route(a, &[0x80, 0, 0, 0]), None, "unknown address");
        assert_eq!(d.route(a, &check_to("serverUfrag")), Some(7));
        assert_eq!(
            d.route(a, &[0x80, 0, 0, 0]),
            None,
            "naming a ufrag binds nothing"
        );
        assert_eq!(d.addresses(), 0);
        d.bind(a, &7);
        assert_eq!(d.route(a, &[0x80, 0, 0, 0]), Some(7));
        assert_eq!(d.route(b, &check_to("other")), None);
        d.remove(&7);
        assert_eq!(d.route(a, &[0x80]), None);
        assert_eq!(d.addresses(), 0);
    }
}
