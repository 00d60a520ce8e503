//! Opus encoding and decoding at 48 kHz with 20 ms frames.
//!
//! [`OpusEncoder`] takes exactly one 20 ms frame of interleaved i16 PCM
//! ([`Channels::frame_len`] samples) per call and returns one Opus packet.
//! [`OpusDecoder`] turns one packet back into PCM, recovers a lost frame from the
//! in-band FEC carried by the *next* packet ([`OpusDecoder::decode_fec`]), or
//! synthesizes one frame by packet-loss concealment ([`OpusDecoder::conceal`]).

use crate::error::{MediaError, Result};
use crate::format::{Channels, SAMPLE_RATE};

/// Largest Opus packet we produce. RFC 6716 allows up to 1275 bytes per frame;
/// 1500 leaves room for any encoder setting.
pub const MAX_PACKET_BYTES: usize = 1500;

/// Longest Opus packet duration (120 ms) in samples per channel at 48 kHz.
const MAX_PACKET_SAMPLES: usize = 5760;

/// Encoder settings. `Default` gives mono voice at 32 kbit/s with in-band FEC
/// tuned for 10% loss and DTX on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderConfig {
    /// Mono or stereo input.
    pub channels: Channels,
    /// Target bitrate in bits per second (libopus accepts 500..=512000).
    pub bitrate_bps: i32,
    /// Encode in-band forward error correction (LBRR) so a receiver can rebuild a
    /// lost frame from the next packet.
    pub inband_fec: bool,
    /// Expected packet loss in percent (0..=100); drives how much FEC is spent.
    pub expected_loss_percent: i32,
    /// Discontinuous transmission: during silence the encoder emits tiny
    /// (<= 2 byte) packets that senders may skip (see [`is_dtx_packet`]).
    pub dtx: bool,
    /// Encoder complexity 0..=10 (libopus default is 10).
    pub complexity: i32,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        EncoderConfig {
            channels: Channels::Mono,
            bitrate_bps: 32_000,
            inband_fec: true,
            expected_loss_percent: 10,
            dtx: true,
            complexity: 10,
        }
    }
}

fn opus_channels(c: Channels) -> opus::Channels {
    match c {
        Channels::Mono => opus::Channels::Mono,
        Channels::Stereo => opus::Channels::Stereo,
    }
}

/// True if `packet` is a DTX (silence) packet: libopus emits at most 2 bytes
/// (the TOC byte, maybe one more) for a frame it decided not to code. Senders
/// usually do not transmit these; receivers treat the gap as silence/comfort noise.
pub fn is_dtx_packet(packet: &[u8]) -> bool {
    packet.len() <= 2
}

/// Opus encoder for 48 kHz, 20 ms frames (application VoIP).
pub struct OpusEncoder {
    inner: opus::Encoder,
    config: EncoderConfig,
    buf: Vec<u8>,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl OpusEncoder {
    /// Create an encoder with the given settings.
    ///
    /// Fails with [`MediaError::InvalidConfig`] for out-of-range values.
    pub fn new(config: EncoderConfig) -> Result<Self> {
        if !(500..=512_000).contains(&config.bitrate_bps) {
            return Err(MediaError::InvalidConfig(format!(
                "bitrate {} bps outside 500..=512000",
                config.bitrate_bps
            )));
        }
        if !(0..=100).contains(&config.expected_loss_percent) {
            return Err(MediaError::InvalidConfig(format!(
                "expected loss {}% outside 0..=100",
                config.expected_loss_percent
            )));
        }
        if !(0..=10).contains(&config.complexity) {
            return Err(MediaError::InvalidConfig(format!(
                "complexity {} outside 0..=10",
                config.complexity
            )));
        }
        let mut inner = opus::Encoder::new(
            SAMPLE_RATE,
            opus_channels(config.channels),
            opus::Application::Voip,
        )?;
        inner.set_bitrate(opus::Bitrate::Bits(config.bitrate_bps))?;
        inner.set_inband_fec(config.inband_fec)?;
        inner.set_packet_loss_perc(config.expected_loss_percent)?;
        inner.set_dtx(config.dtx)?;
        inner.set_complexity(config.complexity)?;
        Ok(OpusEncoder {
            inner,
            config,
            buf: vec![0; MAX_PACKET_BYTES],
        })
    }

    /// The settings this encoder was created with.
    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    /// Encoder lookahead in samples per channel at 48 kHz: how far decoded output
    /// lags the input (312 samples = 6.5 ms for VoIP at 48 kHz).
    pub fn lookahead(&mut self) -> Result<usize> {
        let la = self.inner.get_lookahead()?;
        Ok(usize::try_from(la).unwrap_or(0))
    }

    /// Change the target bitrate on the fly (e.g. from congestion control).
    pub fn set_bitrate(&mut self, bitrate_bps: i32) -> Result<()> {
        if !(500..=512_000).contains(&bitrate_bps) {
            return Err(MediaError::InvalidConfig(format!(
                "bitrate {bitrate_bps} bps outside 500..=512000"
            )));
        }
        self.inner.set_bitrate(opus::Bitrate::Bits(bitrate_bps))?;
        self.config.bitrate_bps = bitrate_bps;
        Ok(())
    }

    /// Change the expected packet loss (0..=100 %) used to size FEC.
    pub fn set_expected_loss(&mut self, percent: i32) -> Result<()> {
        if !(0..=100).contains(&percent) {
            return Err(MediaError::InvalidConfig(format!(
                "expected loss {percent}% outside 0..=100"
            )));
        }
        self.inner.set_packet_loss_perc(percent)?;
        self.config.expected_loss_percent = percent;
        Ok(())
    }

    /// Encode one 20 ms frame (`channels.frame_len()` interleaved samples) into a
    /// new packet. With DTX on, silent frames give a packet of <= 2 bytes
    /// ([`is_dtx_packet`]).
    pub fn encode(&mut self, pcm: &[i16]) -> Result<Vec<u8>> {
        let n = self.encode_internal(pcm)?;
        Ok(self.buf[..n].to_vec())
    }

    /// Like [`encode`](Self::encode) but writes into `out` (cleared first), reusing
    /// its allocation. Returns the packet length.
    pub fn encode_into(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<usize> {
        let n = self.encode_internal(pcm)?;
        out.clear();
        out.extend_from_slice(&self.buf[..n]);
        Ok(n)
    }

    fn encode_internal(&mut self, pcm: &[i16]) -> Result<usize> {
        let expected = self.config.channels.frame_len();
        if pcm.len() != expected {
            return Err(MediaError::FrameSize {
                expected,
                got: pcm.len(),
            });
        }
        Ok(self.inner.encode(pcm, &mut self.buf)?)
    }
}

/// Opus decoder producing 48 kHz interleaved i16 PCM.
pub struct OpusDecoder {
    inner: opus::Decoder,
    channels: Channels,
    buf: Vec<i16>,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder")
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

impl OpusDecoder {
    /// Create a decoder with the given output layout. (Opus can decode a mono
    /// stream to stereo and vice versa.)
    pub fn new(channels: Channels) -> Result<Self> {
        let inner = opus::Decoder::new(SAMPLE_RATE, opus_channels(channels))?;
        Ok(OpusDecoder {
            inner,
            channels,
            buf: vec![0; MAX_PACKET_SAMPLES * channels.count()],
        })
    }

    /// Output channel layout.
    pub fn channels(&self) -> Channels {
        self.channels
    }

    /// Decode one packet to interleaved PCM. A 20 ms packet gives
    /// `channels.frame_len()` samples; longer packets (up to 120 ms) give more.
    /// An empty `packet` means "lost" and is the same as [`conceal`](Self::conceal).
    /// A corrupt packet gives [`MediaError::Opus`].
    pub fn decode(&mut self, packet: &[u8]) -> Result<Vec<i16>> {
        if packet.is_empty() {
            return self.conceal();
        }
        let per_channel = self.inner.decode(packet, &mut self.buf, false)?;
        Ok(self.take(per_channel))
    }

    /// Rebuild the 20 ms frame *before* `next_packet` from the in-band FEC data
    /// that `next_packet` carries. Call this when packet N is lost and packet N+1
    /// has arrived, then decode N+1 normally with [`decode`](Self::decode).
    /// If `next_packet` carries no FEC, libopus falls back to concealment, so this
    /// still returns one frame.
    pub fn decode_fec(&mut self, next_packet: &[u8]) -> Result<Vec<i16>> {
        if next_packet.is_empty() {
            return self.conceal();
        }
        let len = self.channels.frame_len();
        let per_channel = self.inner.decode(next_packet, &mut self.buf[..len], true)?;
        Ok(self.take(per_channel))
    }

    /// Packet-loss concealment: synthesize one 20 ms frame continuing the
    /// previous audio (fading to silence after repeated calls).
    pub fn conceal(&mut self) -> Result<Vec<i16>> {
        let len = self.channels.frame_len();
        let per_channel = self.inner.decode(&[], &mut self.buf[..len], false)?;
        Ok(self.take(per_channel))
    }

    /// Reset decoder state (e.g. when the remote stream restarts).
    pub fn reset(&mut self) -> Result<()> {
        Ok(self.inner.reset_state()?)
    }

    fn take(&self, per_channel: usize) -> Vec<i16> {
        let n = (per_channel * self.channels.count()).min(self.buf.len());
        self.buf[..n].to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::normalized_cross_correlation;
    use crate::format::FRAME_SAMPLES;
    use crate::source::{AudioSource, SpeechLike, Tone};

    fn encode_all(enc: &mut OpusEncoder, src: &mut dyn AudioSource) -> Vec<(Vec<i16>, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(frame) = src.next_frame() {
            let pkt = enc.encode(&frame).expect("encode");
            out.push((frame, pkt));
        }
        out
    }

    #[test]
    fn tone_roundtrip_correlates() {
        let mut enc = OpusEncoder::new(EncoderConfig::default()).expect("encoder");
        let mut dec = OpusDecoder::new(Channels::Mono).expect("decoder");
        let mut src = Tone::new(440.0, 8000).with_frames(50);
        let frames = encode_all(&mut enc, &mut src);
        assert_eq!(frames.len(), 50);
        let mut input = Vec::new();
        let mut output = Vec::new();
        for (pcm, pkt) in &frames {
            assert!(!pkt.is_empty() && pkt.len() < 200, "len {}", pkt.len());
            input.extend_from_slice(pcm);
            let out = dec.decode(pkt).expect("decode");
            assert_eq!(out.len(), FRAME_SAMPLES);
            output.extend_from_slice(&out);
        }
        let (corr, lag) = normalized_cross_correlation(&input, &output, 2000);
        assert!(corr > 0.9, "corr {corr} lag {lag}");
        assert!((0..2000).contains(&lag), "lag {lag}");
    }

    #[test]
    fn speech_roundtrip_finds_lookahead() {
        let mut enc = OpusEncoder::new(EncoderConfig::default()).expect("encoder");
        let la = enc.lookahead().expect("lookahead") as isize;
        let mut dec = OpusDecoder::new(Channels::Mono).expect("decoder");
        let mut src = SpeechLike::new(7).with_frames(100);
        let mut input = Vec::new();
        let mut output = Vec::new();
        for (pcm, pkt) in encode_all(&mut enc, &mut src) {
            input.extend_from_slice(&pcm);
            output.extend_from_slice(&dec.decode(&pkt).expect("decode"));
        }
        let (corr, lag) = normalized_cross_correlation(&input, &output, 4800);
        assert!(corr > 0.8, "corr {corr} lag {lag}");
        assert!((lag - la).abs() <= 8, "lag {lag} lookahead {la}");
    }

    #[test]
    fn stereo_roundtrip() {
        let cfg = EncoderConfig {
            channels: Channels::Stereo,
            bitrate_bps: 64_000,
            ..EncoderConfig::default()
        };
        let mut enc = OpusEncoder::new(cfg).expect("encoder");
        let mut dec = OpusDecoder::new(Channels::Stereo).expect("decoder");
        let mut src = Tone::new(300.0, 6000).stereo().with_frames(20);
        let mut input = Vec::new();
        let mut output = Vec::new();
        for (pcm, pkt) in encode_all(&mut enc, &mut src) {
            assert_eq!(pcm.len(), 2 * FRAME_SAMPLES);
            input.extend_from_slice(&pcm);
            let out = dec.decode(&pkt).expect("decode");
            assert_eq!(out.len(), 2 * FRAME_SAMPLES);
            output.extend_from_slice(&out);
        }
        let (corr, _) = normalized_cross_correlation(&input, &output, 4000);
        assert!(corr > 0.9, "corr {corr}");
    }

    #[test]
    fn fec_and_plc_return_a_frame() {
        let mut enc = OpusEncoder::new(EncoderConfig::default()).expect("encoder");
        let mut dec = OpusDecoder::new(Channels::Mono).expect("decoder");
        let mut src = SpeechLike::new(1).with_frames(30);
        let pkts: Vec<Vec<u8>> = encode_all(&mut enc, &mut src)
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        for p in &pkts[..10] {
            dec.decode(p).expect("decode");
        }
        // Packet 10 lost: recover it from packet 11's FEC.
        let fec = dec.decode_fec(&pkts[11]).expect("fec");
        assert_eq!(fec.len(), FRAME_SAMPLES);
        let next = dec.decode(&pkts[11]).expect("decode after fec");
        assert_eq!(next.len(), FRAME_SAMPLES);
        // Packet 12 lost with nothing after it: conceal.
        let plc = dec.conceal().expect("plc");
        assert_eq!(plc.len(), FRAME_SAMPLES);
        let plc2 = dec.decode(&[]).expect("empty = plc");
        assert_eq!(plc2.len(), FRAME_SAMPLES);
        assert_eq!(dec.decode(&pkts[13]).expect("decode").len(), FRAME_SAMPLES);
    }

    #[test]
    fn fec_improves_on_plc() {
        // With FEC the recovered frame should be closer to the lossless decode.
        let mut enc = OpusEncoder::new(EncoderConfig::default()).expect("encoder");
        let mut src = SpeechLike::new(3).with_frames(40);
        let pkts: Vec<Vec<u8>> = encode_all(&mut enc, &mut src)
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        let lost = 20;
        let reference = {
            let mut d = OpusDecoder::new(Channels::Mono).expect("decoder");
            let mut last = Vec::new();
            for p in &pkts[..=lost] {
                last = d.decode(p).expect("decode");
            }
            last
        };
        let err = |got: &[i16]| -> f64 {
            got.iter()
                .zip(&reference)
                .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
                .sum::<f64>()
        };
        let mut d_fec = OpusDecoder::new(Channels::Mono).expect("decoder");
        let mut d_plc = OpusDecoder::new(Channels::Mono).expect("decoder");
        for p in &pkts[..lost] {
            d_fec.decode(p).expect("decode");
            d_plc.decode(p).expect("decode");
        }
        let fec = d_fec.decode_fec(&pkts[lost + 1]).expect("fec");
        let plc = d_plc.conceal().expect("plc");
        assert!(err(&fec) < err(&plc), "fec {} plc {}", err(&fec), err(&plc));
    }

    #[test]
    fn dtx_on_silence() {
        let mut enc = OpusEncoder::new(EncoderConfig::default()).expect("encoder");
        let silence = vec![0i16; FRAME_SAMPLES];
        let sizes: Vec<usize> = (0..50)
            .map(|_| enc.encode(&silence).expect("encode").len())
            .collect();
        assert!(
            sizes.iter().filter(|&&n| n <= 2).count() > 20,
            "sizes {sizes:?}"
        );
    }

    #[test]
    fn bad_input_is_an_error() {
        let mut enc = OpusEncoder::new(EncoderConfig::default()).expect("encoder");
        assert!(matches!(
            enc.encode(&[0; 100]),
            Err(MediaError::FrameSize {
                expected: 960,
                got: 100
            })
        ));
        let bad = EncoderConfig {
            bitrate_bps: 1,
            ..EncoderConfig::default()
        };
        assert!(matches!(
            OpusEncoder::new(bad),
            Err(MediaError::InvalidConfig(_))
        ));
        let mut dec = OpusDecoder::new(Channels::Mono).expect("decoder");
        // Garbage must not panic; libopus may reject it or decode noise.
        let mut rng = crate::prng::SplitMix64::new(9);
        for len in 1..300 {
            let mut pkt = vec![0u8; len];
            rng.fill_bytes(&mut pkt);
            let _ = dec.decode(&pkt);
            let _ = dec.decode_fec(&pkt);
        }
    }
}
