//! What the policy checks in a client's STUN message before the TURN
//! server ([`turn_server_proto`]) sees it: which user it names, and whether
//! the peers it names are the SFU's ([`PeerPolicy`]). Parsing and signing
//! are `turn-types`'/`stun-types`'.

use crate::peers::PeerPolicy;
use turn_server_proto::types::attribute::{RequestedTransport, XorPeerAddress};
use turn_server_proto::types::message::{
    ALLOCATE, CHANNEL_BIND, CONNECT, CONNECTION_BIND, CREATE_PERMISSION, SEND,
};
use turn_server_proto::types::stun::attribute::{ErrorCode, Username};
use turn_server_proto::types::stun::message::{
    IntegrityAlgorithm, LongTermKeyCredentials, Message, MessageClass, MessageIntegrityCredentials,
    MessageWriteVec,
};
use turn_server_proto::types::stun::prelude::*;

/// The policy's verdict on a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing against it: the TURN server decides.
    Pass,
    /// Refused with this error (a request whose integrity checks out).
    Refuse(u16, &'static str),
    /// Dropped without an answer (an indication naming a peer that is not
    /// the SFU's; answers are not given to indications).
    Drop,
}

/// The USERNAME of a STUN request or indication, if it is one and has one.
pub(crate) fn username(msg: &Message<'_>) -> Option<String> {
    if msg.is_response() {
        return None;
    }
    msg.attribute::<Username>()
        .ok()
        .map(|u| u.username().to_owned())
}

/// Whether `msg` asks for anything the policy refuses: an allocation that
/// relays over TCP (RFC 6062; only UDP is relayed), a permission, channel
/// or send to a peer that is not the SFU's, a TCP connection to a peer.
pub(crate) fn check_peers(msg: &Message<'_>, policy: &PeerPolicy) -> Verdict {
    let method = msg.method();
    let tid = msg.transaction_id();
    let peers = || (0..).map_while(|n| msg.nth_attribute::<XorPeerAddress>(n).ok());
    if method == ALLOCATE && msg.has_class(MessageClass::Request) {
        let udp = msg
            .attribute::<RequestedTransport>()
            .map_or(true, |t| t.protocol() == RequestedTransport::UDP);
        if !udp {
            return Verdict::Refuse(
                ErrorCode::UNSUPPORTED_TRANSPORT_PROTOCOL,
                "only UDP is relayed",
            );
        }
    } else if method == CREATE_PERMISSION {
        if peers().any(|p| !policy.allows_ip(p.addr(tid).ip())) {
            return Verdict::Refuse(ErrorCode::FORBIDDEN, "this server relays only to its SFU");
        }
    } else if method == CHANNEL_BIND {
        if peers().any(|p| !policy.allows(p.addr(tid))) {
            return Verdict::Refuse(ErrorCode::FORBIDDEN, "this server relays only to its SFU");
        }
    } else if method == SEND {
        if peers().any(|p| !policy.allows(p.addr(tid))) {
            return Verdict::Drop;
        }
    } else if method == CONNECT || method == CONNECTION_BIND {
        return Verdict::Refuse(ErrorCode::FORBIDDEN, "TCP relaying is not offered");
    }
    Verdict::Pass
}

/// The key of `username` with `password` in `realm`, for message integrity.
pub(crate) fn key(username: &str, password: &str, realm: &str) -> MessageIntegrityCredentials {
    LongTermKeyCredentials::new(username.to_owned(), password.to_owned(), realm.to_owned()).into()
}

/// Whether `msg` carries message integrity that `key` checks, and with
/// which algorithm.
pub(crate) fn integrity(
    msg: &Message<'_>,
    key: &MessageIntegrityCredentials,
) -> Option<IntegrityAlgorithm> {
    msg.validate_integrity(key).ok()
}

/// An error response to `request`: `code` with `reason`, signed with `key`
/// by `algorithm` (the request's), with a fingerprint.
pub(crate) fn error_response(
    request: &Message<'_>,
    code: u16,
    reason: &str,
    key: &MessageIntegrityCredentials,
    algorithm: IntegrityAlgorithm,
) -> Option<Vec<u8>> {
    let mut response = Message::builder_error(request, MessageWriteVec::new());
    let error = ErrorCode::builder(code).reason(reason).build().ok()?;
    response.add_attribute(&error).ok()?;
    response.add_message_integrity(key, algorithm).ok()?;
    response.add_fingerprint().ok()?;
    Some(response.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use turn_server_proto::types::stun::message::TransactionId;

    fn a(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    fn policy() -> PeerPolicy {
        PeerPolicy::new([(a("127.0.0.1:7882"), a("127.0.0.1:7882"))])
    }

    fn request(method: turn_server_proto::types::stun::message::Method, peers: &[&str]) -> Vec<u8> {
        let mut msg = Message::builder_request(method, MessageWriteVec::new());
        let tid: TransactionId = msg.transaction_id();
        for p in peers {
            msg.add_attribute(&XorPeerAddress::new(a(p), tid))
                .expect("attribute");
        }
        msg.finish()
    }

    #[test]
    fn peers_other_than_the_sfu_are_refused() {
        let p = policy();
        let check = |bytes: &[u8]| check_peers(&Message::from_bytes(bytes).expect("parses"), &p);
        assert_eq!(
            check(&request(CREATE_PERMISSION, &["127.0.0.1:1"])),
            Verdict::Pass
        );
        assert!(matches!(
            check(&request(
                CREATE_PERMISSION,
                &["127.0.0.1:1", "10.0.0.1:7882"]
            )),
            Verdict::Refuse(403, _)
        ));
        assert_eq!(
            check(&request(CHANNEL_BIND, &["127.0.0.1:7882"])),
            Verdict::Pass
        );
        // A permission is per IP; a channel names the port: only the SFU's.
        assert!(matches!(
            check(&request(CHANNEL_BIND, &["127.0.0.1:6379"])),
            Verdict::Refuse(403, _)
        ));
        let mut send = Message::builder_indication(SEND, MessageWriteVec::new());
        let tid = send.transaction_id();
        send.add_attribute(&XorPeerAddress::new(a("127.0.0.1:22"), tid))
            .expect("attribute");
        assert_eq!(check(&send.finish()), Verdict::Drop);
        assert!(matches!(
            check(&request(CONNECT, &["127.0.0.1:7882"])),
            Verdict::Refuse(403, _)
        ));
    }

    #[test]
    fn only_udp_allocations() {
        let mut msg = Message::builder_request(ALLOCATE, MessageWriteVec::new());
        msg.add_attribute(&RequestedTransport::new(RequestedTransport::TCP))
            .expect("attribute");
        let bytes = msg.finish();
        assert!(matches!(
            check_peers(&Message::from_bytes(&bytes).expect("parses"), &policy()),
            Verdict::Refuse(442, _)
        ));
        let mut msg = Message::builder_request(ALLOCATE, MessageWriteVec::new());
        msg.add_attribute(&RequestedTransport::new(RequestedTransport::UDP))
            .expect("attribute");
        let bytes = msg.finish();
        assert_eq!(
            check_peers(&Message::from_bytes(&bytes).expect("parses"), &policy()),
            Verdict::Pass
        );
    }

    #[test]
    fn a_refusal_is_signed_with_the_users_key() {
        let k = key("1700000000:PA_x", "pw", "huddle");
        let mut msg = Message::builder_request(CREATE_PERMISSION, MessageWriteVec::new());
        msg.add_attribute(&Username::new("1700000000:PA_x").expect("username"))
            .expect("attribute");
        msg.add_message_integrity(&k, IntegrityAlgorithm::Sha1)
            .expect("integrity");
        let bytes = msg.finish();
        let request = Message::from_bytes(&bytes).expect("parses");
        assert_eq!(username(&request).as_deref(), Some("1700000000:PA_x"));
        assert_eq!(integrity(&request, &k), Some(IntegrityAlgorithm::Sha1));
        assert_eq!(
            integrity(&request, &key("1700000000:PA_x", "other", "huddle")),
            None
        );
        let response =
            error_response(&request, 403, "no", &k, IntegrityAlgorithm::Sha1).expect("response");
        let response = Message::from_bytes(&response).expect("parses");
        assert!(response.has_class(MessageClass::Error));
        assert_eq!(
            response.attribute::<ErrorCode>().expect("error").code(),
            403
        );
        assert!(response.validate_integrity(&k).is_ok());
    }
}
