//! What an SDP offer asks for: whether any of its audio or video m-lines
//! sends, or receives, media. WHIP takes offers that send, WHEP offers that
//! receive; the other kind is refused with 400 before the SFU sees it.
//!
//! Directions are read as RFC 8866 §6.7 says: an m-line's own
//! `a=sendrecv`/`sendonly`/`recvonly`/`inactive`, else the session-level one,
//! else `sendrecv`. An m-line with port 0 is disabled and counts as neither.

/// Which ways an offer's audio and video m-lines carry media, from the
/// offerer's point of view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaWays {
    /// Some m-line sends (`sendonly` or `sendrecv`).
    pub sends: bool,
    /// Some m-line receives (`recvonly` or `sendrecv`).
    pub receives: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

fn direction(line: &str) -> Option<Direction> {
    match line {
        "a=sendrecv" => Some(Direction::SendRecv),
        "a=sendonly" => Some(Direction::SendOnly),
        "a=recvonly" => Some(Direction::RecvOnly),
        "a=inactive" => Some(Direction::Inactive),
        _ => None,
    }
}

/// The media one m-line being read: whether it is an enabled audio or video
/// line, and its own direction if it has one.
struct Section {
    media: bool,
    direction: Option<Direction>,
}

/// Read the ways `sdp`'s audio and video m-lines carry media.
pub fn media_ways(sdp: &str) -> MediaWays {
    let mut session = Direction::SendRecv;
    let mut sections: Vec<Section> = Vec::new();
    for line in sdp.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            let mut fields = m.split_whitespace();
            let kind = fields.next().unwrap_or("");
            let port = fields.next().unwrap_or("0");
            sections.push(Section {
                media: matches!(kind, "audio" | "video") && port != "0",
                direction: None,
            });
        } else if let Some(d) = direction(line) {
            match sections.last_mut() {
                Some(s) => s.direction = Some(d),
                None => session = d,
            }
        }
    }
    let mut ways = MediaWays::default();
    for s in sections.iter().filter(|s| s.media) {
        match s.direction.unwrap_or(session) {
            Direction::SendRecv => {
                ways.sends = true;
                ways.receives = true;
            }
            Direction::SendOnly => ways.sends = true,
            Direction::RecvOnly => ways.receives = true,
            Direction::Inactive => {}
        }
    }
    ways
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n";

    fn ways(body: &str) -> MediaWays {
        media_ways(&format!("{HEAD}{body}"))
    }

    #[test]
    fn reads_media_and_session_directions() {
        let both = MediaWays {
            sends: true,
            receives: true,
        };
        let send = MediaWays {
            sends: true,
            receives: false,
        };
        let recv = MediaWays {
            sends: false,
            receives: true,
        };
        assert_eq!(ways("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"), both, "default");
        assert_eq!(
            ways("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\n"),
            send
        );
        assert_eq!(
            ways("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=inactive\r\n"),
            recv
        );
        // A session-level direction applies to m-lines without their own.
        assert_eq!(
            ways("a=sendonly\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"),
            send
        );
        assert_eq!(
            ways("a=sendonly\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\n"),
            recv,
            "the m-line's own wins"
        );
        // Disabled lines and data channels carry no media.
        assert_eq!(
            ways("m=audio 0 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"),
            MediaWays::default()
        );
        assert_eq!(media_ways("garbage"), MediaWays::default());
    }
}
