//! A local track with one encoding of a fixed SSRC and codec: what the SFU
//! adds to a subscriber connection per forwarded track, and what its clients
//! (the calling crate, the load tool, the tests) publish.

use huddle_proto::TrackKind;
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};

/// The `rtc` kind of a track kind.
pub fn rtc_kind(kind: TrackKind) -> RtpCodecKind {
    match kind {
        TrackKind::Audio => RtpCodecKind::Audio,
        TrackKind::Video => RtpCodecKind::Video,
    }
}

/// The codec huddle sends a kind of track with by default (Opus, VP8).
pub fn default_codec(kind: TrackKind) -> RTCRtpCodec {
    match kind {
        TrackKind::Audio => crate::codecs::opus(),
        TrackKind::Video => crate::codecs::vp8(),
    }
}

/// A track `track_id` of stream `stream_id` (its label is the track id),
/// sent with `codec` under `ssrc`.
pub fn single_ssrc_track(
    stream_id: String,
    track_id: String,
    kind: TrackKind,
    codec: RTCRtpCodec,
    ssrc: u32,
) -> MediaStreamTrack {
    MediaStreamTrack::new(
        stream_id,
        track_id.clone(),
        track_id,
        rtc_kind(kind),
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec,
            ..Default::default()
        }],
    )
}

/// A video track sent as simulcast: one encoding per `(rid, ssrc)` in
/// `layers`, all with `codec`. The sender must put the MID and RID header
/// extensions on each layer's packets (rtc does not add them), at least
/// until the receiver has seen every layer.
pub fn simulcast_track(
    stream_id: String,
    track_id: String,
    codec: RTCRtpCodec,
    layers: &[(&str, u32)],
) -> MediaStreamTrack {
    MediaStreamTrack::new(
        stream_id,
        track_id.clone(),
        track_id,
        RtpCodecKind::Video,
        layers
            .iter()
            .map(|&(rid, ssrc)| RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    rid: rid.to_owned(),
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec: codec.clone(),
                ..Default::default()
            })
            .collect(),
    )
}

/// [`single_ssrc_track`] with the kind's [`default_codec`].
pub fn default_track(
    stream_id: String,
    track_id: String,
    kind: TrackKind,
    ssrc: u32,
) -> MediaStreamTrack {
    single_ssrc_track(stream_id, track_id, kind, default_codec(kind), ssrc)
}
