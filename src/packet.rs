//! [`MediaPacket`] (what a remote track delivers) and [`AudioFrame`] (what
//! the app writes into a local audio track).

use crate::ids::{SeqNum, Ssrc};
use crate::level::AudioLevel;
use bytes::Bytes;
use std::time::Duration;

/// One RTP packet of a remote track: its payload (an Opus frame, or a VP8
/// payload with its descriptor) and the header fields an app uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaPacket {
    /// The payload.
    pub payload: Bytes,
    /// Sequence number (one per packet, wraps).
    pub sequence_number: SeqNum,
    /// Media timestamp in clock ticks (48 kHz audio, 90 kHz video).
    pub timestamp: u32,
    /// Marker bit: the last packet of a video frame.
    pub marker: bool,
    /// The stream the packet belongs to.
    pub ssrc: Ssrc,
    /// RTP payload type (see [`OPUS_PT`](huddle_wire::codecs::OPUS_PT), [`VP8_PT`](huddle_wire::codecs::VP8_PT);
    /// audio is [`RED_PT`](huddle_wire::codecs::RED_PT) when RED was
    /// negotiated: RFC 2198 blocks of Opus frames).
    pub payload_type: u8,
}

impl From<rtc::rtp::Packet> for MediaPacket {
    fn from(p: rtc::rtp::Packet) -> Self {
        MediaPacket {
            payload: p.payload,
            sequence_number: SeqNum(p.header.sequence_number),
            timestamp: p.header.timestamp,
            marker: p.header.marker,
            ssrc: Ssrc(p.header.ssrc),
            payload_type: p.header.payload_type,
        }
    }
}

impl MediaPacket {
    /// The packet as the jitter buffer takes it.
    pub(crate) fn to_jitter(&self) -> huddle_media::jitter::RtpAudioPacket {
        huddle_media::jitter::RtpAudioPacket {
            seq: self.sequence_number.0,
            timestamp: self.timestamp,
            ssrc: self.ssrc.0,
            payload: self.payload.to_vec(),
            marker: self.marker,
        }
    }
}

/// One encoded audio frame to send with `LocalTrack::write_audio_frame`.
///
/// ```
/// use huddle::{AudioFrame, AudioLevel};
/// use std::time::Duration;
/// let opus = [0xF8, 0xFF, 0xFE]; // a 20 ms Opus silence frame
/// let frame = AudioFrame {
///     payload: &opus,
///     duration: Duration::from_millis(20),
///     level: AudioLevel::SILENCE,
/// };
/// # let _ = frame;
/// ```
#[derive(Debug, Clone, Copy)]
pub struct AudioFrame<'a> {
    /// The encoded frame (one Opus packet).
    pub payload: &'a [u8],
    /// How much audio it holds (20 ms for huddle's Opus frames).
    pub duration: Duration,
    /// How loud it is (see [`AudioLevel::of_pcm`]).
    pub level: AudioLevel,
}
