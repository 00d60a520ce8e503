//! The decoder interface the jitter buffer drives.

use crate::error::Result;
use crate::format::Channels;
use crate::opus_codec::{is_dtx_packet, OpusDecoder};

/// What the jitter buffer needs from a codec: decode a packet, rebuild a lost
/// frame from the next packet's in-band FEC, and conceal a missing frame.
///
/// Implemented for [`OpusDecoder`]; tests use a fake that records which
/// operation was asked for. Every method returns interleaved PCM at 48 kHz in
/// the decoder's [`channels`](FrameDecoder::channels) layout, normally one
/// 20 ms frame (`channels().frame_len()` samples).
pub trait FrameDecoder {
    /// Output channel layout.
    fn channels(&self) -> Channels;

    /// Decode one packet.
    fn decode(&mut self, payload: &[u8]) -> Result<Vec<i16>>;

    /// Rebuild the frame *before* `next_payload` from the FEC data it carries
    /// (falling back to concealment if it carries none).
    fn decode_fec(&mut self, next_payload: &[u8]) -> Result<Vec<i16>>;

    /// Synthesize one frame continuing the previous audio (PLC).
    fn conceal(&mut self) -> Result<Vec<i16>>;

    /// Forget the decoding state (a new stream starts). Default: nothing.
    fn reset(&mut self) -> Result<()> {
        Ok(())
    }

    /// Whether `payload` is a DTX (silence) packet, after which the sender may
    /// stop sending until speech resumes. Default: Opus's rule (at most 2 bytes).
    fn is_dtx(&self, payload: &[u8]) -> bool {
        is_dtx_packet(payload)
    }
}

impl FrameDecoder for OpusDecoder {
    fn channels(&self) -> Channels {
        OpusDecoder::channels(self)
    }

    fn decode(&mut self, payload: &[u8]) -> Result<Vec<i16>> {
        OpusDecoder::decode(self, payload)
    }

    fn decode_fec(&mut self, next_payload: &[u8]) -> Result<Vec<i16>> {
        OpusDecoder::decode_fec(self, next_payload)
    }

    fn conceal(&mut self) -> Result<Vec<i16>> {
        OpusDecoder::conceal(self)
    }

    fn reset(&mut self) -> Result<()> {
        OpusDecoder::reset(self)
    }
}
