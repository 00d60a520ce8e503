//! What a datagram on a WebRTC port is, from its first bytes (RFC 7983),
//! and the few STUN fields read before any parsing: never panics on any
//! input.

/// First-byte classes of a datagram on a WebRTC port (RFC 7983).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramKind {
    /// STUN, first byte 0..=3.
    Stun,
    /// DTLS, first byte 20..=63.
    Dtls,
    /// RTP or RTCP, first byte 128..=191.
    Rtp,
    /// Anything else (including empty datagrams).
    Unknown,
}

/// Classify a datagram by its first byte.
pub fn classify(datagram: &[u8]) -> DatagramKind {
    match datagram.first() {
        Some(0..=3) => DatagramKind::Stun,
        Some(20..=63) => DatagramKind::Dtls,
        Some(128..=191) => DatagramKind::Rtp,
        _ => DatagramKind::Unknown,
    }
}

/// Whether a datagram of kind [`DatagramKind::Rtp`] is RTCP: its second
/// byte, the RTCP packet type, is 192..=223 (RFC 5761 §4). The byte is in
/// the clear in SRTP and SRTCP alike.
pub fn is_rtcp(datagram: &[u8]) -> bool {
    matches!(datagram.get(1), Some(192..=223))
}

const STUN_HEADER: usize = 20;

/// Whether an outgoing datagram is a STUN success response (class bits
/// 0b10, RFC 5389 §6): an ICE agent sends one only to a request that passed
/// its MESSAGE-INTEGRITY check.
pub fn is_stun_success_response(datagram: &[u8]) -> bool {
    match datagram {
        [b0, b1, _, _, 0x21, 0x12, 0xA4, 0x42, ..] if datagram.len() >= STUN_HEADER => {
            let ty = u16::from_be_bytes([*b0, *b1]);
            ty & 0xC000 == 0 && ty & 0x0110 == 0x0100
        }
        _ => false,
    }
}
/// Whether a datagram is a STUN binding indication (type 0x0011, RFC 5389
/// §7.2.2): the keepalive of RFC 8445 §11, unauthenticated and unanswered.
pub fn is_binding_indication(datagram: &[u8]) -> bool {
    datagram.len() >= STUN_HEADER && datagram[..2] == [0x00, 0x11] && datagram[4..8] == MAGIC_COOKIE
}

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const ATTR_USERNAME: u16 = 0x0006;

/// The local (first) part of a STUN message's USERNAME, if the datagram is a
/// well-formed STUN message that carries one. Never panics on any input.
pub fn stun_local_ufrag(datagram: &[u8]) -> Option<&str> {
    if datagram.len() < STUN_HEADER || classify(datagram) != DatagramKind::Stun {
        return None;
    }
    if datagram[4..8] != MAGIC_COOKIE {
        return None;
    }
    let body_len = u16::from_be_bytes([datagram[2], datagram[3]]) as usize;
    let body = datagram.get(STUN_HEADER..STUN_HEADER.checked_add(body_len)?)?;
    let mut rest = body;
    while rest.len() >= 4 {
        let ty = u16::from_be_bytes([rest[0], rest[1]]);
        let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
        let value = rest.get(4..4 + len)?;
        if ty == ATTR_USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next().filter(|u| !u.is_empty());
        }
        let padded = (4 + len).checked_add(3)? & !3;
        rest = rest.get(padded..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stun_with_username(username: &str) -> Vec<u8> {
        let mut attr = Vec::new();
        attr.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        attr.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attr.extend_from_slice(username.as_bytes());
        while attr.len() % 4 != 0 {
            attr.push(0);
        }
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(attr.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[7u8; 12]);
        m.extend_from_slice(&attr);
        m
    }

    #[test]
    fn finds_local_ufrag() {
        let m = stun_with_username("serverUfrag:client");
        assert_eq!(stun_local_ufrag(&m), Some("serverUfrag"));
    }

    #[test]
    fn truncations_and_garbage_never_panic() {
        let m = stun_with_username("abcd:efgh");
        for n in 0..m.len() {
            let _ = stun_local_ufrag(&m[..n]);
        }
        let mut x: u32 = 12345;
        for _ in 0..10_000 {
            let len = (x % 64) as usize;
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            let _ = stun_local_ufrag(&buf);
            let _ = classify(&buf);
        }
    }

    #[test]
    fn recognises_success_responses() {
        let mut m = stun_with_username("a:b");
        assert!(!is_stun_success_response(&m), "request");
        m[0..2].copy_from_slice(&0x0101u16.to_be_bytes());
        assert!(is_stun_success_response(&m));
        m[0..2].copy_from_slice(&0x0111u16.to_be_bytes());
        assert!(!is_stun_success_response(&m), "error response");
        assert!(!is_stun_success_response(&m[..19]));
        assert!(!is_stun_success_response(&[0x80, 0, 0, 0]));
    }

    #[test]
    fn rtcp_by_its_packet_type() {
        assert!(is_rtcp(&[0x80, 200, 0, 6])); // sender report
        assert!(is_rtcp(&[0x81, 205, 0, 3])); // NACK
        assert!(!is_rtcp(&[0x80, 111, 0, 1])); // Opus RTP
        assert!(!is_rtcp(&[0x80, 0x80 | 96, 0, 1])); // RTP, marker set, PT 96
        assert!(!is_rtcp(&[0x80]));
    }
}
