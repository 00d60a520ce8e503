//! The codecs huddle negotiates, shared by the SFU and the calling crate so
//! both sides offer the same payload types (Chromium's usual numbering).

use rtc::peer_connection::configuration::media_engine::{
    MediaEngine, MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_VP8,
};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpHeaderExtensionCapability,
    RTCRtpParameters, RtpCodecKind, TYPE_RTCP_FB_NACK,
};
use rtc::shared::error::Error as RtcError;

/// Payload type of Opus.
pub const OPUS_PT: u8 = 111;
/// Payload type of VP8.
pub const VP8_PT: u8 = 96;
/// Payload type of H.264 (constrained baseline, packetization mode 1).
pub const H264_PT: u8 = 102;
/// Payload type of RED audio (RFC 2198), as Chromium offers it.
pub const RED_PT: u8 = 63;
/// MIME type of RED audio.
pub const MIME_TYPE_RED: &str = "audio/red";

/// Opus, 48 kHz, in-band FEC.
pub fn opus() -> RTCRtpCodec {
    codec(MIME_TYPE_OPUS, 48000, 2, "minptime=10;useinbandfec=1")
}

/// RED (RFC 2198) carrying Opus, 48 kHz: `a=fmtp:63 111/111` as Chromium
/// (each block an Opus frame of payload type [`OPUS_PT`]; Chromium's
/// default distance 1).
pub fn red() -> RTCRtpCodec {
    codec(MIME_TYPE_RED, 48000, 2, "111/111")
}

/// Register [`red`] for audio at [`RED_PT`]. Call it after
/// [`media_engine`]: RED is then listed after Opus, so a peer that does not
/// know RED still picks Opus. The calling crate and the SFU both do;
/// [`media_engine`] alone (the load tool's clients) has no RED.
pub fn register_red(me: &mut MediaEngine) -> Result<(), RtcError> {
    me.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: red(),
            payload_type: RED_PT,
        },
        RtpCodecKind::Audio,
    )
}

/// Offer and accept NACK (`a=rtcp-fb:<pt> nack`, RFC 4585) for every audio
/// codec: a lost audio packet can then be asked for again, on top of RED
/// and Opus FEC. `rtc`'s `configure_nack` registers it for video only. The
/// SFU and the calling crate both call it. Chromium offers no NACK for
/// the audio it sends, but takes it for the audio it receives.
pub fn register_audio_nack(me: &mut MediaEngine) {
    me.register_feedback(
        RTCPFeedback {
            typ: TYPE_RTCP_FB_NACK.to_owned(),
            parameter: String::new(),
        },
        RtpCodecKind::Audio,
    );
}

/// Offer and accept the NACK feedback huddle's peers use: `nack` and
/// `nack pli` for video (as `rtc`'s `configure_nack` does) and `nack` for
/// audio ([`register_audio_nack`]). The SFU and the calling crate both
/// register it with their own NACK interceptors.
pub fn register_nack(me: &mut MediaEngine) {
    for parameter in ["", "pli"] {
        me.register_feedback(
            RTCPFeedback {
                typ: TYPE_RTCP_FB_NACK.to_owned(),
                parameter: parameter.to_owned(),
            },
            RtpCodecKind::Video,
        );
    }
    register_audio_nack(me);
}

/// VP8.
pub fn vp8() -> RTCRtpCodec {
    codec(MIME_TYPE_VP8, 90000, 0, "")
}

/// H.264 constrained baseline.
pub fn h264() -> RTCRtpCodec {
    codec(
        MIME_TYPE_H264,
        90000,
        0,
        "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
    )
}

fn codec(mime: &str, clock_rate: u32, channels: u16, fmtp: &str) -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: mime.to_owned(),
        clock_rate,
        channels,
        sdp_fmtp_line: fmtp.to_owned(),
        rtcp_feedback: vec![],
    }
}

/// RFC 6464 client-to-mixer audio level, which the SFU reads to tell who speaks.
pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// Transport-wide sequence numbers (draft-holmer-rmcat-transport-wide-cc-
/// extensions-01): the SFU stamps one on every packet it sends a subscriber,
/// whose TWCC feedback says when each arrived.
pub const TRANSPORT_CC_URI: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";

/// The id the header extension `uri` was negotiated with, in a sender's or
/// receiver's `rtp_parameters`; `None` when it was not negotiated.
pub fn extension_id(params: &RTCRtpParameters, uri: &str) -> Option<u8> {
    params
        .header_extensions
        .iter()
        .find(|e| e.uri == uri)
        .and_then(|e| u8::try_from(e.id).ok())
}

/// A media engine with Opus, VP8 and H.264 and the audio-level header
/// extension registered.
pub fn media_engine() -> Result<MediaEngine, RtcError> {
    let mut me = MediaEngine::default();
    for (rtp_codec, payload_type, kind) in [
        (opus(), OPUS_PT, RtpCodecKind::Audio),
        (vp8(), VP8_PT, RtpCodecKind::Video),
        (h264(), H264_PT, RtpCodecKind::Video),
    ] {
        me.register_codec(
            RTCRtpCodecParameters {
                rtp_codec,
                payload_type,
            },
            kind,
        )?;
    }
    me.register_header_extension(
        RTCRtpHeaderExtensionCapability {
            uri: AUDIO_LEVEL_URI.to_owned(),
        },
        RtpCodecKind::Audio,
        None,
    )?;
    Ok(me)
}
