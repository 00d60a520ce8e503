//! What the SFU's own transport needs from a session description: the
//! peer's DTLS fingerprints and who starts the DTLS handshake (RFC 8842).
//! The rest of the SDP (m-lines, codecs, SSRCs) stays with `rtc`.

use crate::WireError;

/// The `a=setup` attribute (RFC 4145 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// Starts the DTLS handshake (DTLS client).
    Active,
    /// Waits for it (DTLS server).
    Passive,
    /// Either: only an offer says this.
    ActPass,
}

/// DTLS parameters of one side, from its SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtlsParams {
    /// `a=setup`, from the first place it appears; `active` when absent
    /// (RFC 4145 §4).
    pub setup: Setup,
    /// Every `a=fingerprint:sha-256` value, lowercase.
    pub fingerprints: Vec<String>,
}

/// Read the DTLS parameters of an SDP (session or media level; BUNDLE means
/// one transport, so every m-line says the same).
pub fn dtls_params(sdp: &str) -> Result<DtlsParams, WireError> {
    let mut setup = None;
    let mut fingerprints = Vec::new();
    for line in sdp.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("a=setup:") {
            setup = setup.or(match v.trim() {
                "active" => Some(Setup::Active),
                "passive" => Some(Setup::Passive),
                "actpass" => Some(Setup::ActPass),
                _ => None,
            });
        } else if let Some(v) = line.strip_prefix("a=fingerprint:") {
            let mut parts = v.split_whitespace();
            if let (Some(alg), Some(value)) = (parts.next(), parts.next()) {
                let value = value.to_lowercase();
                if alg.eq_ignore_ascii_case("sha-256") && !fingerprints.contains(&value) {
                    fingerprints.push(value);
                }
            }
        }
    }
    if fingerprints.is_empty() {
        return Err(WireError::Sdp("no a=fingerprint:sha-256".into()));
    }
    Ok(DtlsParams {
        setup: setup.unwrap_or(Setup::Active),
        fingerprints,
    })
}

/// The ICE credentials (`a=ice-ufrag`, `a=ice-pwd`) of an SDP, if it has both.
pub fn ice_credentials(sdp: &str) -> Option<(String, String)> {
    let mut ufrag = None;
    let mut pwd = None;
    for line in sdp.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("a=ice-ufrag:") {
            ufrag.get_or_insert_with(|| v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("a=ice-pwd:") {
            pwd.get_or_insert_with(|| v.trim().to_owned());
        }
    }
    ufrag.zip(pwd)
}

/// Check ICE credentials a client sent (RFC 8839 §5.4): a ufrag of 4 to
/// 256 and a password of 22 to 256 `ice-char`s (letters, digits, `+`, `/`).
pub fn check_ice_credentials(ufrag: &str, pwd: &str) -> Result<(), WireError> {
    let ice_chars = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    };
    if !(4..=256).contains(&ufrag.len()) || !ice_chars(ufrag) {
        return Err(WireError::Sdp(
            "ice-ufrag must be 4 to 256 letters, digits, + or /".into(),
        ));
    }
    if !(22..=256).contains(&pwd.len()) || !ice_chars(pwd) {
        return Err(WireError::Sdp(
            "ice-pwd must be 22 to 256 letters, digits, + or /".into(),
        ));
    }
    Ok(())
}

/// `sdp` with every `a=ice-ufrag` and `a=ice-pwd` line set to `ufrag` and
/// `pwd` (line endings as the SDP's own). With `drop_candidates`, its
/// `a=candidate` and `a=end-of-candidates` lines go too: they belong to
/// the ICE generation the credentials replace.
pub fn with_ice_credentials(sdp: &str, ufrag: &str, pwd: &str, drop_candidates: bool) -> String {
    let eol = if sdp.contains("\r\n") { "\r\n" } else { "\n" };
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.lines() {
        let trimmed = line.trim_end();
        if trimmed.starts_with("a=ice-ufrag:") {
            out.push_str("a=ice-ufrag:");
            out.push_str(ufrag);
        } else if trimmed.starts_with("a=ice-pwd:") {
            out.push_str("a=ice-pwd:");
            out.push_str(pwd);
        } else if drop_candidates
            && (trimmed.starts_with("a=candidate:") || trimmed == "a=end-of-candidates")
        {
            continue;
        } else {
            out.push_str(trimmed);
        }
        out.push_str(eol);
    }
    out
}

/// Whether this side is the DTLS client, from its own `a=setup` (`local`)
/// and the peer's: the SFU on its end, the load tool's receiver on the other.
pub fn is_dtls_client(local: Setup, remote: Setup) -> Result<bool, WireError> {
    match (local, remote) {
        (Setup::Active, Setup::Passive | Setup::ActPass) => Ok(true),
        (Setup::Passive, Setup::Active | Setup::ActPass) => Ok(false),
        (Setup::ActPass, Setup::Active) => Ok(false),
        (Setup::ActPass, Setup::Passive) => Ok(true),
        (l, r) => Err(WireError::Sdp(format!("a=setup {l:?} against {r:?}"))),
    }
}

/// The id of the header extension `uri` in an SDP's `a=extmap` lines
/// (RFC 8285 §8), when it is one a one-byte header can carry (1 to 14).
/// BUNDLE gives every m-line the same id; the first line wins.
pub fn extmap_id(sdp: &str, uri: &str) -> Option<u8> {
    sdp.lines().map(str::trim).find_map(|line| {
        let rest = line.strip_prefix("a=extmap:")?;
        let mut parts = rest.split_whitespace();
        let id = parts.next()?;
        // "5" or "5/sendonly".
        let id = id.split('/').next()?.parse::<u8>().ok()?;
        (parts.next()? == uri && (1..=14).contains(&id)).then_some(id)
    })
}

/// The attribute that offers or accepts RFC 8888 congestion control
/// feedback for every payload type of an m-line (RFC 8888 §6).
pub const CCFB_ATTRIBUTE: &str = "a=rtcp-fb:* ack ccfb";

/// Whether an audio or video m-line of an SDP offers or accepts RFC 8888
/// congestion control feedback (`a=rtcp-fb:<pt or *> ack ccfb`).
pub fn has_ccfb(sdp: &str) -> bool {
    let mut media = false;
    for line in sdp.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            media = m.starts_with("audio ") || m.starts_with("video ");
            continue;
        }
        let Some(rest) = line.strip_prefix("a=rtcp-fb:").filter(|_| media) else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let _payload_type = parts.next();
        if parts.next() == Some("ack") && parts.next() == Some("ccfb") {
            return true;
        }
    }
    false
}

/// `sdp` with [`CCFB_ATTRIBUTE`] at the end of every audio and video m-line
/// that does not carry it yet (line endings as the SDP's own).
pub fn with_ccfb(sdp: &str) -> String {
    let eol = if sdp.contains("\r\n") { "\r\n" } else { "\n" };
    let mut out = String::with_capacity(sdp.len() + 128);
    let mut pending = false;
    let close = |out: &mut String, pending: &mut bool| {
        if std::mem::take(pending) {
            out.push_str(CCFB_ATTRIBUTE);
            out.push_str(eol);
        }
    };
    for line in sdp.split_inclusive('\n') {
        let trimmed = line.trim_end();
        if let Some(m) = trimmed.strip_prefix("m=") {
            close(&mut out, &mut pending);
            pending = m.starts_with("audio ") || m.starts_with("video ");
        } else if trimmed == CCFB_ATTRIBUTE {
            pending = false;
        }
        out.push_str(line);
        if !line.ends_with('\n') && !line.is_empty() {
            out.push_str(eol);
        }
    }
    close(&mut out, &mut pending);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ccfb_is_added_to_every_audio_and_video_section_once() {
        let sdp = "v=0\r\ns=-\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
                   m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:1\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\n";
        assert!(!has_ccfb(sdp));
        let with = with_ccfb(sdp);
        assert_eq!(
            with,
            "v=0\r\ns=-\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=rtcp-fb:* ack ccfb\r\n\
             m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:1\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=rtcp-fb:* ack ccfb\r\n"
        );
        assert!(has_ccfb(&with));
        assert_eq!(with_ccfb(&with), with, "not added twice");
        // A last line without its line ending gets one before the attribute.
        assert_eq!(
            with_ccfb("m=video 9 UDP/TLS/RTP/SAVPF 96\na=mid:0"),
            "m=video 9 UDP/TLS/RTP/SAVPF 96\na=mid:0\na=rtcp-fb:* ack ccfb\n"
        );
    }

    #[test]
    fn ccfb_is_read_per_payload_type_or_wildcard_in_media_sections_only() {
        assert!(has_ccfb(
            "m=video 9 RTP/SAVPF 96\r\na=rtcp-fb:96 ack ccfb\r\n"
        ));
        assert!(has_ccfb("m=audio 9 RTP/SAVPF 111\na=rtcp-fb:* ack ccfb\n"));
        assert!(!has_ccfb(
            "a=rtcp-fb:* ack ccfb\r\nm=video 9 RTP/SAVPF 96\r\n"
        ));
        assert!(!has_ccfb(
            "m=video 9 RTP/SAVPF 96\r\na=rtcp-fb:96 ack rpsi\r\n"
        ));
        assert!(!has_ccfb(
            "m=video 9 RTP/SAVPF 96\r\na=rtcp-fb:96 transport-cc\r\n"
        ));
        assert!(!has_ccfb(
            "m=application 9 UDP/DTLS/SCTP x\r\na=rtcp-fb:* ack ccfb\r\n"
        ));
    }

    #[test]
    fn extmap_ids_are_read_from_the_first_line_that_names_the_uri() {
        let twcc = crate::codecs::TRANSPORT_CC_URI;
        let sdp = format!(
            "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
             a=extmap:3/sendrecv {twcc}\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=extmap:3 {twcc}\r\n"
        );
        assert_eq!(extmap_id(&sdp, twcc), Some(3));
        assert_eq!(
            extmap_id(&sdp, "urn:ietf:params:rtp-hdrext:ssrc-audio-level"),
            Some(1)
        );
        assert_eq!(extmap_id(&sdp, "urn:nope"), None);
        // Two-byte ids and garbage are not taken.
        assert_eq!(extmap_id(&format!("a=extmap:15 {twcc}"), twcc), None);
        assert_eq!(extmap_id(&format!("a=extmap:x {twcc}"), twcc), None);
        assert_eq!(extmap_id("a=extmap:", twcc), None);
    }

    const ANSWER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        a=fingerprint:sha-256 AB:CD:EF\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
        a=setup:active\r\na=fingerprint:sha-256 ab:cd:ef\r\na=fingerprint:sha-1 00:11\r\n";

    #[test]
    fn fingerprints_and_setup_are_read_once_each() {
        let p = dtls_params(ANSWER).expect("params");
        assert_eq!(p.setup, Setup::Active);
        assert_eq!(p.fingerprints, vec!["ab:cd:ef".to_owned()]);
    }

    #[test]
    fn an_sdp_without_a_sha256_fingerprint_is_refused_and_setup_defaults_to_active() {
        assert!(dtls_params("v=0\r\na=setup:active\r\n").is_err());
        assert!(dtls_params("a=fingerprint:sha-1 AB\r\na=setup:active\r\n").is_err());
        let p = dtls_params("v=0\r\na=fingerprint:sha-256 AB\r\n").expect("params");
        assert_eq!(p.setup, Setup::Active);
    }

    #[test]
    fn ice_credentials_are_read_from_the_first_lines() {
        let sdp = "a=ice-ufrag:abcd\r\na=ice-pwd:secret\r\na=ice-ufrag:zzzz\r\n";
        assert_eq!(
            ice_credentials(sdp),
            Some(("abcd".to_owned(), "secret".to_owned()))
        );
        assert_eq!(ice_credentials("a=ice-ufrag:abcd\r\n"), None);
    }

    #[test]
    fn ice_credentials_are_checked_by_rfc_8839() {
        let pwd = "a".repeat(22);
        assert!(check_ice_credentials("abcd", &pwd).is_ok());
        assert!(check_ice_credentials("ab+/", &"x/+9".repeat(6)).is_ok());
        assert!(check_ice_credentials("abc", &pwd).is_err(), "short ufrag");
        assert!(
            check_ice_credentials("abcd", &"a".repeat(21)).is_err(),
            "short pwd"
        );
        assert!(check_ice_credentials("ab d", &pwd).is_err(), "space");
        assert!(
            check_ice_credentials("abcd\r\na=x", &pwd).is_err(),
            "an SDP line"
        );
        assert!(check_ice_credentials(&"u".repeat(257), &pwd).is_err());
    }

    #[test]
    fn ice_credentials_are_replaced_everywhere() {
        let sdp = "v=0\r\na=ice-ufrag:old\r\na=ice-pwd:oldpwd\r\nm=audio 9 x 0\r\n\
                   a=ice-ufrag:old\r\na=ice-pwd:oldpwd\r\n\
                   a=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\na=end-of-candidates\r\n";
        let kept = with_ice_credentials(sdp, "new", "newpwd", false);
        assert_eq!(
            ice_credentials(&kept),
            Some(("new".into(), "newpwd".into()))
        );
        assert!(!kept.contains("old"));
        assert!(kept.contains("a=candidate:") && kept.ends_with("a=end-of-candidates\r\n"));
        let dropped = with_ice_credentials(sdp, "new", "newpwd", true);
        assert!(!dropped.contains("candidate"), "{dropped}");
        assert_eq!(dropped.matches("a=ice-ufrag:new\r\n").count(), 2);
        let lf = with_ice_credentials("a=ice-ufrag:old\na=ice-pwd:p\n", "n", "q", true);
        assert_eq!(lf, "a=ice-ufrag:n\na=ice-pwd:q\n");
    }

    #[test]
    fn roles_follow_rfc_8842() {
        assert_eq!(
            is_dtls_client(Setup::ActPass, Setup::Active).ok(),
            Some(false)
        );
        assert_eq!(
            is_dtls_client(Setup::ActPass, Setup::Passive).ok(),
            Some(true)
        );
        assert_eq!(
            is_dtls_client(Setup::Active, Setup::ActPass).ok(),
            Some(true)
        );
        assert_eq!(
            is_dtls_client(Setup::Passive, Setup::ActPass).ok(),
            Some(false)
        );
        assert!(is_dtls_client(Setup::Active, Setup::Active).is_err());
        assert!(is_dtls_client(Setup::ActPass, Setup::ActPass).is_err());
    }
}
