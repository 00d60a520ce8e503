//! huddle-media: the audio/video building blocks of a huddle call.
//!
//! This crate is the client-side media toolbox used by the `huddle` calling crate
//! and by the end-to-end tests to check what arrived:
//!
//! - [`opus_codec`]: Opus encoder/decoder at 48 kHz with 20 ms frames, in-band FEC,
//!   DTX and packet-loss concealment.
//! - [`source`]: synthetic audio sources ([`source::Tone`], [`source::SpeechLike`],
//!   [`source::Noise`]) behind the [`source::AudioSource`] trait.
//! - [`sink`]: the [`sink::AudioSink`] trait and a [`sink::NullSink`].
//! - [`wav`]: [`wav::WavSource`] (any WAV file, framed into 20 ms at 48 kHz) and
//!   [`wav::WavSink`].
//! - [`rtp`]: RTP packetization of Opus frames, a strict RTP parser, RED
//!   (RFC 2198) payloads and a [`rtp::RedEncoder`], and synthetic VP8 video
//!   with an RFC 7741 packetizer.
//! - [`jitter`]: the receive-side adaptive jitter buffer (sans-IO, NetEQ-style:
//!   reorder, dedupe, loss detection, FEC/PLC concealment, time stretching,
//!   statistics, RED copies standing in for lost packets), driving any
//!   [`jitter::FrameDecoder`].
//! - [`mixer`]: mixes remote speakers with per-participant volume and mute and a
//!   peak limiter.
//! - [`analysis`]: normalized cross-correlation with lag search, and RMS, for tests.
//! - `device` (feature `devices`, on by default): microphone and speaker
//!   through the system's sound API.
//!
//! # Cargo features and system packages
//!
//! - `devices` (default): the `device` module, built on `cpal`. On Linux it
//!   links ALSA: install `libasound2-dev` (Debian/Ubuntu) or `alsa-lib-devel`
//!   (Fedora) and `pkg-config`. Without it (`default-features = false`) the
//!   crate needs no sound library.
//! - Always: Opus, built from the bundled libopus source (a C compiler and
//!   `cmake` are needed when no system `libopus` is found through `pkg-config`).
//!
//! Every audio buffer in this crate is interleaved signed 16-bit PCM at
//! [`SAMPLE_RATE`] (48 kHz); one frame is [`FRAME_SAMPLES`] samples per channel (20 ms).
//!
//! # Example: one trip through the sending and receiving pipeline
//!
//! ```
//! use huddle_media::analysis::normalized_cross_correlation;
//! use huddle_media::opus_codec::{EncoderConfig, OpusDecoder, OpusEncoder};
//! use huddle_media::rtp::{parse_rtp, OpusPacketizer};
//! use huddle_media::source::{AudioSource, SpeechLike};
//! use huddle_media::Channels;
//!
//! # fn main() -> huddle_media::Result<()> {
//! let mut source = SpeechLike::new(1).with_frames(50); // 1 s
//! let mut encoder = OpusEncoder::new(EncoderConfig::default())?;
//! let mut packetizer = OpusPacketizer::new(0x1234_5678, 111, 0, 0)?;
//! let mut decoder = OpusDecoder::new(Channels::Mono)?;
//! let (mut sent, mut received) = (Vec::new(), Vec::new());
//! while let Some(frame) = source.next_frame() {
//!     let bytes = packetizer.packetize(&encoder.encode(&frame)?).marshal();
//!     // ... network ...
//!     let rtp = parse_rtp(&bytes)?;
//!     received.extend(decoder.decode(rtp.payload)?);
//!     sent.extend(frame);
//! }
//! let (corr, lag) = normalized_cross_correlation(&sent, &received, 4_800);
//! assert!(corr > 0.8);
//! assert!(lag > 0); // Opus's lookahead delays the output by 312 samples.
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

pub mod analysis;
#[cfg(feature = "devices")]
pub mod device;
mod error;
mod format;
pub mod jitter;
pub mod mixer;
pub mod opus_codec;
mod prng;
pub mod resample;
pub mod rtp;
pub mod sink;
pub mod source;
pub mod wav;

pub use error::{MediaError, RedError, Result};
pub use format::{Channels, FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE};

#[cfg(test)]
mod tests {
    fn assert_send<T: Send>() {}

    #[test]
    fn pipeline_types_are_send() {
        assert_send::<crate::opus_codec::OpusEncoder>();
        assert_send::<crate::opus_codec::OpusDecoder>();
        assert_send::<crate::wav::WavSource>();
        assert_send::<crate::wav::WavSink>();
        assert_send::<crate::source::SpeechLike>();
        assert_send::<crate::rtp::Vp8Packetizer>();
        assert_send::<Box<dyn crate::source::AudioSource + Send>>();
    }
}
