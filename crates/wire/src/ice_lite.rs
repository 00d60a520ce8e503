//! ICE-lite (RFC 8445 §2.5): the SFU answers the client's connectivity
//! checks. A check is a STUN binding request whose USERNAME starts with the
//! SFU's ufrag and whose MESSAGE-INTEGRITY is keyed with the SFU's password;
//! anything else gets no answer.
//!
//! One addition (`triggered_check`): after the client's first check the
//! SFU sends one check back. A lite agent need not, but webrtc-rs's
//! controlling agent nominates a pair the moment the peer checks it, and
//! otherwise only at its next check tick (200 ms later): that was 200 ms of
//! every webrtc-rs client's join.
//!
//! The other end, for a client that runs its own controlling agent against
//! the SFU (the load tool's fast subscriber): [`controlling_check`] builds
//! its checks and [`verify_success`] authenticates the SFU's answers.

use crate::WireError;
use rtc::crypto::RTCCrypto;
use rtc::stun::attributes::{
    ATTR_FINGERPRINT, ATTR_ICE_CONTROLLED, ATTR_ICE_CONTROLLING, ATTR_PRIORITY, ATTR_USERNAME,
    ATTR_USE_CANDIDATE,
};
use rtc::stun::fingerprint::FINGERPRINT;
use rtc::stun::integrity::MessageIntegrity;
use rtc::stun::message::{
    Message, MessageType, Setter, TransactionId, BINDING_REQUEST, BINDING_SUCCESS,
};
use rtc::stun::textattrs::Username;
use rtc::stun::xoraddr::XorMappedAddress;
use std::net::SocketAddr;

/// A check that passed: the response to send back to where it came from.
#[derive(Debug)]
pub struct Answered {
    /// The binding success response.
    pub response: Vec<u8>,
    /// The check carried USE-CANDIDATE: the client nominated this path.
    pub nominated: bool,
}

/// A check to the client, as the controlled agent: the one after its first
/// check (see the module docs), and the SFU's consent checks (RFC 7675,
/// sent by the SFU). USERNAME `<client ufrag>:<SFU ufrag>`, keyed with
/// the client's password. Returns the datagram and its transaction id, to
/// match the answer ([`verify_success`]).
pub fn triggered_check(
    client_ufrag: &str,
    client_pwd: &str,
    ufrag: &str,
    crypto: &dyn RTCCrypto,
) -> Result<(Vec<u8>, TransactionId), WireError> {
    // A host candidate's priority (RFC 8445 §5.1.2.1): type 126, local 65535,
    // component 1.
    let priority: u32 = (126 << 24) | (65_535 << 8) | 255;
    let role = (ATTR_ICE_CONTROLLED, rand::random::<u64>());
    let m = binding_request(
        client_ufrag,
        client_pwd,
        ufrag,
        priority,
        role,
        false,
        crypto,
    )?;
    Ok((m.marshal_binary().map_err(stun_err)?, m.transaction_id))
}

fn stun_err(e: rtc::shared::error::Error) -> WireError {
    WireError::Stun(e.to_string())
}

/// A binding request (a connectivity check) to the agent whose credentials
/// are `remote_ufrag`/`remote_pwd`, from `local_ufrag`, with PRIORITY, the
/// role attribute and its tie-breaker, USE-CANDIDATE when `nominate`,
/// MESSAGE-INTEGRITY and FINGERPRINT.
fn binding_request(
    remote_ufrag: &str,
    remote_pwd: &str,
    local_ufrag: &str,
    priority: u32,
    (role, tie_breaker): (rtc::stun::attributes::AttrType, u64),
    nominate: bool,
    crypto: &dyn RTCCrypto,
) -> Result<Message, WireError> {
    let mut m = Message::new();
    m.build(&[
        Box::new(BINDING_REQUEST),
        Box::new(TransactionId::new()),
        Box::new(Username::new(
            ATTR_USERNAME,
            format!("{remote_ufrag}:{local_ufrag}"),
        )),
    ])
    .map_err(stun_err)?;
    m.add(ATTR_PRIORITY, &priority.to_be_bytes());
    m.add(role, &tie_breaker.to_be_bytes());
    if nominate {
        m.add(ATTR_USE_CANDIDATE, &[]);
    }
    MessageIntegrity::new_short_term_integrity_with_provider(remote_pwd.to_owned(), crypto)
        .add_to(&mut m)
        .map_err(stun_err)?;
    FINGERPRINT.add_to(&mut m).map_err(stun_err)?;
    Ok(m)
}

/// A connectivity check from a controlling agent to a lite agent (RFC 8445
/// §7.2.2): USERNAME `<remote ufrag>:<local ufrag>`, PRIORITY (that of a
/// peer-reflexive host candidate), ICE-CONTROLLING with `tie_breaker`,
/// USE-CANDIDATE when `nominate`, MESSAGE-INTEGRITY keyed with the remote
/// password, FINGERPRINT. Returns the datagram and its transaction id, to
/// match the answer ([`verify_success`]).
pub fn controlling_check(
    remote_ufrag: &str,
    remote_pwd: &str,
    local_ufrag: &str,
    tie_breaker: u64,
    nominate: bool,
    crypto: &dyn RTCCrypto,
) -> Result<(Vec<u8>, TransactionId), WireError> {
    // RFC 8445 §7.1.1: the priority a peer-reflexive candidate would have
    // (type 110, local 65535, component 1).
    let priority: u32 = (110 << 24) | (65_535 << 8) | 255;
    let role = (ATTR_ICE_CONTROLLING, tie_breaker);
    let m = binding_request(
        remote_ufrag,
        remote_pwd,
        local_ufrag,
        priority,
        role,
        nominate,
        crypto,
    )?;
    Ok((m.marshal_binary().map_err(stun_err)?, m.transaction_id))
}

/// Authenticate a binding success response to a check sent with
/// [`controlling_check`]: MESSAGE-INTEGRITY keyed with the password the
/// check was keyed with (`remote_pwd`), FINGERPRINT when present. Returns
/// its transaction id, for the caller to match against its checks.
pub fn verify_success(
    datagram: &[u8],
    remote_pwd: &str,
    crypto: &dyn RTCCrypto,
) -> Result<TransactionId, WireError> {
    let mut response = parse(datagram, BINDING_SUCCESS, "binding success response")?;
    authenticate(&mut response, remote_pwd, crypto)?;
    Ok(response.transaction_id)
}

/// A STUN message of type `typ` (`what`, for the error).
fn parse(datagram: &[u8], typ: MessageType, what: &str) -> Result<Message, WireError> {
    let mut m = Message::new();
    m.unmarshal_binary(datagram).map_err(stun_err)?;
    if m.typ != typ {
        return Err(WireError::Stun(format!("not a {what}: {}", m.typ)));
    }
    Ok(m)
}

/// Check MESSAGE-INTEGRITY (keyed with `pwd`) and FINGERPRINT when present.
fn authenticate(m: &mut Message, pwd: &str, crypto: &dyn RTCCrypto) -> Result<(), WireError> {
    MessageIntegrity::check(m, pwd.as_bytes(), crypto).map_err(stun_err)?;
    if m.contains(ATTR_FINGERPRINT) {
        FINGERPRINT.check(m).map_err(stun_err)?;
    }
    Ok(())
}

/// The binding request in `datagram` if it is a check for this
/// connection: USERNAME starting with `ufrag`, MESSAGE-INTEGRITY keyed with
/// `pwd`, FINGERPRINT when present. Errors name what is wrong.
fn verified_request(
    datagram: &[u8],
    ufrag: &str,
    pwd: &str,
    crypto: &dyn RTCCrypto,
) -> Result<Message, WireError> {
    let mut request = parse(datagram, BINDING_REQUEST, "binding request")?;
    let name = Username::get_from_as(&request, ATTR_USERNAME)
        .map_err(stun_err)?
        .text;
    if name.split(':').next() != Some(ufrag) {
        return Err(WireError::Stun(
            "USERNAME is not for this connection".to_owned(),
        ));
    }
    authenticate(&mut request, pwd, crypto)?;
    Ok(request)
}

/// Whether `datagram` is a valid check for this connection (see
/// [`answer`]), without answering it: the SFU screens what reaches `rtc`'s
/// ICE agent with it, so a bad check is refused (and logged) once, by the SFU.
pub fn verify_check(
    datagram: &[u8],
    ufrag: &str,
    pwd: &str,
    crypto: &dyn RTCCrypto,
) -> Result<(), WireError> {
    verified_request(datagram, ufrag, pwd, crypto).map(|_| ())
}

/// Answer one STUN datagram from `src`. Errors name why it was not answered
/// (not a binding request, wrong ufrag, bad integrity or fingerprint).
pub fn answer(
    datagram: &[u8],
    src: SocketAddr,
    ufrag: &str,
    pwd: &str,
    crypto: &dyn RTCCrypto,
) -> Result<Answered, WireError> {
    let request = verified_request(datagram, ufrag, pwd, crypto)?;
    let mut response = Message::new();
    response
        .build(&[
            Box::new(request.clone()),
            Box::new(BINDING_SUCCESS),
            Box::new(XorMappedAddress {
                ip: src.ip(),
                port: src.port(),
            }),
            Box::new(MessageIntegrity::new_short_term_integrity_with_provider(
                pwd.to_owned(),
                crypto,
            )),
            Box::new(FINGERPRINT),
        ])
        .map_err(stun_err)?;
    Ok(Answered {
        response: response.marshal_binary().map_err(stun_err)?,
        nominated: request.contains(ATTR_USE_CANDIDATE),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::is_stun_success_response;
    use rtc::stun::message::Getter;

    fn crypto() -> std::sync::Arc<dyn rtc::crypto::RTCCryptoProvider> {
        rtc::crypto::default_provider().expect("crypto provider")
    }

    /// A binding request as a controlling ICE agent sends it.
    fn check(username: &str, pwd: &str, nominate: bool) -> Vec<u8> {
        let provider = crypto();
        let mut m = Message::new();
        m.build(&[
            Box::new(BINDING_REQUEST),
            Box::new(TransactionId::new()),
            Box::new(Username::new(ATTR_USERNAME, username.to_owned())),
        ])
        .expect("build check");
        if nominate {
            m.add(ATTR_USE_CANDIDATE, &[]);
        }
        MessageIntegrity::new_short_term_integrity_with_provider(pwd.to_owned(), provider.crypto())
            .add_to(&mut m)
            .expect("integrity");
        FINGERPRINT.add_to(&mut m).expect("fingerprint");
        m.marshal_binary().expect("marshal check")
    }

    fn src() -> SocketAddr {
        "127.0.0.1:40000".parse().expect("addr")
    }

    #[test]
    fn a_valid_check_is_answered_with_the_mapped_address() {
        let provider = crypto();
        let req = check("sfu:client", "sfupassword0123456789", true);
        let got = answer(
            &req,
            src(),
            "sfu",
            "sfupassword0123456789",
            provider.crypto(),
        )
        .expect("answered");
        assert!(got.nominated);
        assert!(is_stun_success_response(&got.response));
        let mut resp = Message::new();
        resp.unmarshal_binary(&got.response)
            .expect("response parses");
        let mut mapped = XorMappedAddress::default();
        mapped.get_from(&resp).expect("XOR-MAPPED-ADDRESS");
        assert_eq!(SocketAddr::new(mapped.ip, mapped.port), src());
        MessageIntegrity::check(&mut resp, b"sfupassword0123456789", provider.crypto())
            .expect("response integrity uses the SFU's password");
    }

    #[test]
    fn the_triggered_check_passes_the_clients_integrity_check() {
        let provider = crypto();
        let (req, id) = triggered_check(
            "cli",
            "client-password-0123456789",
            "sfu",
            provider.crypto(),
        )
        .expect("check");
        // The client answers it like any check for its own ufrag.
        let got = answer(
            &req,
            src(),
            "cli",
            "client-password-0123456789",
            provider.crypto(),
        )
        .expect("a valid check");
        assert!(!got.nominated, "the controlled side never nominates");
        assert!(is_stun_success_response(&got.response));
        assert!(!is_stun_success_response(&req));
        assert_eq!(
            verify_success(
                &got.response,
                "client-password-0123456789",
                provider.crypto()
            )
            .expect("the answer verifies with the client's password"),
            id
        );
    }

    #[test]
    fn a_controlling_check_is_answered_nominates_and_its_answer_verifies() {
        let provider = crypto();
        let c = provider.crypto();
        let (req, id) =
            controlling_check("sfu", "sfupassword0123456789", "tool", 7, true, c).expect("check");
        let mut m = Message::new();
        m.unmarshal_binary(&req).expect("parses");
        assert!(m.contains(ATTR_ICE_CONTROLLING) && m.contains(ATTR_PRIORITY));
        assert!(!m.contains(ATTR_ICE_CONTROLLED));
        assert!(m.contains(ATTR_FINGERPRINT));
        assert_eq!(
            Username::get_from_as(&m, ATTR_USERNAME)
                .expect("USERNAME")
                .text,
            "sfu:tool"
        );
        let got = answer(&req, src(), "sfu", "sfupassword0123456789", c).expect("answered");
        assert!(got.nominated, "USE-CANDIDATE");
        assert_eq!(
            verify_success(&got.response, "sfupassword0123456789", c).expect("verifies"),
            id,
            "the answer names the check"
        );
        assert!(
            verify_success(&got.response, "another-password-0123", c).is_err(),
            "keyed with the SFU's password only"
        );
        assert!(
            verify_success(&req, "sfupassword0123456789", c).is_err(),
            "a request"
        );
        let mut flipped = got.response.clone();
        let at = flipped.len() - 30;
        flipped[at] ^= 1;
        assert!(verify_success(&flipped, "sfupassword0123456789", c).is_err());
    }

    #[test]
    fn a_consent_check_does_not_nominate() {
        let provider = crypto();
        let c = provider.crypto();
        let (req, _) =
            controlling_check("sfu", "sfupassword0123456789", "tool", 7, false, c).expect("check");
        let got = answer(&req, src(), "sfu", "sfupassword0123456789", c).expect("answered");
        assert!(!got.nominated);
        assert!(
            answer(&req, src(), "sfu", "wrong-password-0123456789", c).is_err(),
            "keyed with the SFU's password"
        );
    }

    #[test]
    fn a_check_without_use_candidate_is_answered_but_not_nominated() {
        let provider = crypto();
        let req = check("sfu:client", "pw-pw-pw-pw-pw-pw-pw-pw", false);
        let got = answer(
            &req,
            src(),
            "sfu",
            "pw-pw-pw-pw-pw-pw-pw-pw",
            provider.crypto(),
        )
        .expect("answered");
        assert!(!got.nominated);
    }

    #[test]
    fn wrong_password_wrong_ufrag_and_garbage_get_no_answer() {
        let provider = crypto();
        let c = provider.crypto();
        let req = check("sfu:client", "not-the-password-at-all", true);
        assert!(answer(&req, src(), "sfu", "sfupassword0123456789", c).is_err());
        let req = check("other:client", "sfupassword0123456789", true);
        assert!(answer(&req, src(), "sfu", "sfupassword0123456789", c).is_err());
        for bad in [
            &b""[..],
            &[0u8; 19][..],
            &[0, 1, 0, 8, 0x21, 0x12, 0xA4, 0x42][..],
        ] {
            assert!(answer(bad, src(), "sfu", "sfupassword0123456789", c).is_err());
        }
        let mut flipped = check("sfu:client", "sfupassword0123456789", true);
        let last = flipped.len() - 1;
        flipped[last] ^= 1; // breaks the FINGERPRINT
        assert!(answer(&flipped, src(), "sfu", "sfupassword0123456789", c).is_err());
    }
}
