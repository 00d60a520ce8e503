//! Whether RED (RFC 2198) was negotiated for an audio track, and with which
//! payload types.

use huddle_wire::codecs::MIME_TYPE_RED;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS;
use rtc::rtp_transceiver::rtp_sender::RTCRtpCodecParameters;

/// RED as negotiated: its payload type, and the Opus payload type of the
/// frames inside its blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RedFormat {
    /// Payload type of the RED packets (63 in Chromium's numbering).
    pub red_pt: u8,
    /// Payload type of the Opus frames inside (111).
    pub primary_pt: u8,
}

/// RED among the negotiated `codecs` of an audio sender or receiver: an
/// `audio/red` codec whose fmtp (`111/111`) names only the negotiated
/// Opus payload type. `None` when the peer did not take RED (or RED of
/// something else than Opus).
pub(crate) fn negotiated_red(codecs: &[RTCRtpCodecParameters]) -> Option<RedFormat> {
    let opus = codecs
        .iter()
        .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(MIME_TYPE_OPUS))?
        .payload_type;
    codecs
        .iter()
        .filter(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(MIME_TYPE_RED))
        .find(|c| {
            let mut blocks = c.rtp_codec.sdp_fmtp_line.split('/').map(str::trim);
            blocks.clone().next().is_some() && blocks.all(|b| b.parse::<u8>() == Ok(opus))
        })
        .map(|c| RedFormat {
            red_pt: c.payload_type,
            primary_pt: opus,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use huddle_wire::codecs::{opus, red, vp8};

    fn at(
        rtp_codec: rtc::rtp_transceiver::rtp_sender::RTCRtpCodec,
        pt: u8,
    ) -> RTCRtpCodecParameters {
        RTCRtpCodecParameters {
            rtp_codec,
            payload_type: pt,
        }
    }

    #[test]
    fn red_of_the_negotiated_opus() {
        let both = [at(opus(), 111), at(red(), 63)];
        assert_eq!(
            negotiated_red(&both),
            Some(RedFormat {
                red_pt: 63,
                primary_pt: 111
            })
        );
        // Another numbering (an offer from elsewhere): the fmtp names it.
        let mut other = red();
        other.sdp_fmtp_line = "109/109".into();
        assert_eq!(
            negotiated_red(&[at(opus(), 109), at(other, 100)]),
            Some(RedFormat {
                red_pt: 100,
                primary_pt: 109
            })
        );
    }

    #[test]
    fn no_red_without_it_or_with_other_blocks() {
        assert_eq!(
            negotiated_red(&[at(opus(), 111)]),
            None,
            "the SFU's answer today"
        );
        assert_eq!(
            negotiated_red(&[at(red(), 63)]),
            None,
            "RED of nothing known"
        );
        let mut g711 = red();
        g711.sdp_fmtp_line = "111/0".into();
        assert_eq!(negotiated_red(&[at(opus(), 111), at(g711, 63)]), None);
        let mut empty = red();
        empty.sdp_fmtp_line = String::new();
        assert_eq!(negotiated_red(&[at(opus(), 111), at(empty, 63)]), None);
        assert_eq!(negotiated_red(&[at(vp8(), 96)]), None);
    }
}
