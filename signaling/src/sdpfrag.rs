//! The `application/trickle-ice-sdpfrag` body of a WHIP/WHEP `PATCH`
//! (RFC 8840 §9, as used by RFC 9725 §4.3.1): ICE credentials, media
//! sections with their `mid`, and the candidates to add.

use huddle_proto::IceCandidate;

/// What a fragment carries.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SdpFrag {
    /// `a=ice-ufrag`, at session level or in the first media section.
    pub ice_ufrag: Option<String>,
    /// `a=ice-pwd`, likewise.
    pub ice_pwd: Option<String>,
    /// The candidates, each with the `mid` and m-line index it was listed under.
    pub candidates: Vec<IceCandidate>,
    /// `a=end-of-candidates` was present.
    pub end_of_candidates: bool,
}

/// Why a fragment was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpFragError {
    /// A line is not `x=...`.
    #[error("line {0} is not an SDP line")]
    BadLine(usize),
    /// A candidate line before any `m=` line.
    #[error("candidate on line {0} is outside any media section")]
    CandidateOutsideMedia(usize),
    /// More candidates than a client could sensibly send.
    #[error("more than {0} candidates")]
    TooManyCandidates(usize),
}

/// Candidates accepted in one fragment.
pub const MAX_CANDIDATES: usize = 64;

/// Parse a trickle-ice-sdpfrag body.
pub fn parse(body: &str) -> Result<SdpFrag, SdpFragError> {
    let mut frag = SdpFrag::default();
    // m-line index of the current media section.
    let mut media: Option<u16> = None;
    let mut mline: u16 = 0;
    for (n, line) in body.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let bytes = line.as_bytes();
        if bytes.len() < 2 || bytes[1] != b'=' {
            return Err(SdpFragError::BadLine(n + 1));
        }
        if line.starts_with("m=") {
            media = Some(mline);
            mline = mline.saturating_add(1);
            continue;
        }
        let Some(attr) = line.strip_prefix("a=") else {
            continue; // other line types carry nothing for us
        };
        if let Some(v) = attr.strip_prefix("ice-ufrag:") {
            frag.ice_ufrag.get_or_insert_with(|| v.trim().to_owned());
        } else if let Some(v) = attr.strip_prefix("ice-pwd:") {
            frag.ice_pwd.get_or_insert_with(|| v.trim().to_owned());
        } else if attr == "end-of-candidates" {
            frag.end_of_candidates = true;
        } else if attr.starts_with("candidate:") {
            let Some(index) = media else {
                return Err(SdpFragError::CandidateOutsideMedia(n + 1));
            };
            if frag.candidates.len() == MAX_CANDIDATES {
                return Err(SdpFragError::TooManyCandidates(MAX_CANDIDATES));
            }
            frag.candidates.push(IceCandidate {
                candidate: attr.to_owned(),
                sdp_mid: None, // filled below, once the section's mid is known
                sdp_mline_index: Some(index),
                username_fragment: None,
            });
        }
    }
    // A section's a=mid may follow its candidates: attach mids afterwards.
    let mids = section_mids(body);
    for c in &mut frag.candidates {
        c.sdp_mid = c
            .sdp_mline_index
            .and_then(|i| mids.get(usize::from(i)).cloned().flatten());
        c.username_fragment = frag.ice_ufrag.clone();
    }
    Ok(frag)
}

/// The `a=mid` of each media section, in order.
fn section_mids(body: &str) -> Vec<Option<String>> {
    let mut mids: Vec<Option<String>> = Vec::new();
    for line in body.lines().map(|l| l.trim_end_matches('\r')) {
        if line.starts_with("m=") {
            mids.push(None);
        } else if let (Some(v), Some(last)) = (line.strip_prefix("a=mid:"), mids.last_mut()) {
            *last = Some(v.trim().to_owned());
        }
    }
    mids
}

/// The first `a=ice-ufrag` of an SDP (session level or first section).
pub fn ice_ufrag(sdp: &str) -> Option<String> {
    sdp.lines()
        .map(|l| l.trim_end_matches('\r'))
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .map(|v| v.trim().to_owned())
}

/// The part of a restart reply (RFC 9725 §4.3.2) that names the session's
/// transport: the first media section of the SFU's answer (BUNDLE: it
/// carries the one transport), reduced to its `m=` line, its `a=mid` and
/// its candidates, then `a=end-of-candidates` (ICE lite: the SFU has no
/// others). Computed once per session.
pub fn answer_media(answer: &str) -> String {
    let mut out = String::new();
    let mut sections = 0;
    for line in answer.lines().map(|l| l.trim_end_matches('\r')) {
        if line.starts_with("m=") {
            sections += 1;
            if sections > 1 {
                break;
            }
        }
        if sections == 1
            && (line.starts_with("m=")
                || line.starts_with("a=mid:")
                || line.starts_with("a=candidate:"))
        {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    if sections > 0 {
        out.push_str("a=end-of-candidates\r\n");
    }
    out
}

/// The body of a `200` reply to an ICE restart (RFC 9725 §4.3.2): the SFU
/// is ICE lite, its new credentials, then `media` ([`answer_media`]).
pub fn restart_reply(ufrag: &str, pwd: &str, media: &str) -> String {
    format!("a=ice-lite\r\na=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\n{media}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_rfc_8840_example_shape() {
        let body = "a=ice-ufrag:EsAw\r\n\
                    a=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n\
                    m=audio 9 RTP/AVP 0\r\n\
                    a=mid:0\r\n\
                    a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0 ufrag EsAw network-id 1\r\n\
                    a=candidate:3471623853 1 udp 2122194687 198.51.100.2 61765 typ host generation 0 ufrag EsAw network-id 2\r\n\
                    a=end-of-candidates\r\n";
        let f = parse(body).expect("parses");
        assert_eq!(f.ice_ufrag.as_deref(), Some("EsAw"));
        assert_eq!(f.ice_pwd.as_deref(), Some("P2uYro0UCOQ4zxjKXaWCBui1"));
        assert!(f.end_of_candidates);
        assert_eq!(f.candidates.len(), 2);
        assert!(f.candidates[0]
            .candidate
            .starts_with("candidate:1387637174 1 udp"));
        assert_eq!(f.candidates[0].sdp_mid.as_deref(), Some("0"));
        assert_eq!(f.candidates[0].sdp_mline_index, Some(0));
        assert_eq!(f.candidates[1].username_fragment.as_deref(), Some("EsAw"));
    }

    #[test]
    fn mid_after_candidates_and_second_section() {
        let body = "m=audio 9 RTP/AVP 0\na=candidate:1 1 udp 1 127.0.0.1 5000 typ host\na=mid:a\n\
                    m=video 9 RTP/AVP 96\na=mid:v\na=candidate:2 1 udp 1 127.0.0.1 5001 typ host\n";
        let f = parse(body).expect("parses");
        let got: Vec<_> = f
            .candidates
            .iter()
            .map(|c| (c.sdp_mid.clone(), c.sdp_mline_index))
            .collect();
        assert_eq!(
            got,
            vec![(Some("a".into()), Some(0)), (Some("v".into()), Some(1))]
        );
        assert_eq!(f.ice_ufrag, None);
    }

    #[test]
    fn refuses_garbage_and_floods() {
        assert_eq!(parse("hello"), Err(SdpFragError::BadLine(1)));
        assert_eq!(
            parse("a=candidate:1 1 udp 1 127.0.0.1 5000 typ host"),
            Err(SdpFragError::CandidateOutsideMedia(1))
        );
        let many = format!(
            "m=audio 9 RTP/AVP 0\n{}",
            "a=candidate:1 1 udp 1 127.0.0.1 5000 typ host\n".repeat(MAX_CANDIDATES + 1)
        );
        assert_eq!(
            parse(&many),
            Err(SdpFragError::TooManyCandidates(MAX_CANDIDATES))
        );
        assert_eq!(parse("").map(|f| f.candidates.len()), Ok(0));
    }

    #[test]
    fn a_restart_reply_names_the_first_section_and_its_candidates() {
        let answer = "v=0\r\na=group:BUNDLE 0 1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
                      c=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:old\r\na=rtpmap:111 opus/48000/2\r\n\
                      a=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\n\
                      m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n\
                      a=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\n";
        let media = answer_media(answer);
        assert_eq!(
            media,
            "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
             a=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\na=end-of-candidates\r\n"
        );
        let reply = restart_reply("newu", "newpassword", &media);
        // The client reads it with the same parser the server uses.
        let f = parse(&reply).expect("parses");
        assert_eq!(f.ice_ufrag.as_deref(), Some("newu"));
        assert_eq!(f.ice_pwd.as_deref(), Some("newpassword"));
        assert_eq!(f.candidates.len(), 1);
        assert_eq!(f.candidates[0].sdp_mid.as_deref(), Some("0"));
        assert!(f.end_of_candidates);
        assert!(reply.starts_with("a=ice-lite\r\n"));
        assert_eq!(answer_media("v=0\r\n"), "");
    }

    #[test]
    fn finds_the_offer_ufrag() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:abcd\r\na=ice-pwd:x\r\n";
        assert_eq!(ice_ufrag(sdp).as_deref(), Some("abcd"));
        assert_eq!(ice_ufrag("v=0\r\n"), None);
    }
}
