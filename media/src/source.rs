//! Synthetic audio sources producing 20 ms frames of 48 kHz i16 PCM.
//!
//! All sources are deterministic: the same parameters (and seed) always give the
//! same samples, so a test can regenerate what a sender sent.

use crate::format::{Channels, FRAME_SAMPLES, SAMPLE_RATE};
use crate::prng::SplitMix64;
use std::f64::consts::TAU;

/// Something that yields 20 ms frames of 48 kHz interleaved i16 PCM.
pub trait AudioSource {
    /// The next frame: exactly `self.channels().frame_len()` samples
    /// (960 per channel), or `None` once the source is exhausted.
    fn next_frame(&mut self) -> Option<Vec<i16>>;

    /// Channel layout of the frames.
    fn channels(&self) -> Channels;

    /// Whether the source runs in real time by itself (a microphone blocks
    /// until each frame is captured). A sender paces the others, which can
    /// produce frames as fast as they are asked.
    fn is_live(&self) -> bool {
        false
    }
}

impl<S: AudioSource + ?Sized> AudioSource for Box<S> {
    fn next_frame(&mut self) -> Option<Vec<i16>> {
        (**self).next_frame()
    }
    fn channels(&self) -> Channels {
        (**self).channels()
    }
    fn is_live(&self) -> bool {
        (**self).is_live()
    }
}

/// Frame counting and mono-to-stereo duplication shared by the synthetic sources.
#[derive(Debug, Clone)]
struct Framing {
    channels: Channels,
    /// Frames left to produce, `None` for endless.
    remaining: Option<u64>,
}

impl Framing {
    fn new() -> Self {
        Framing {
            channels: Channels::Mono,
            remaining: None,
        }
    }

    /// Consume one frame of budget; false when exhausted.
    fn take(&mut self) -> bool {
        match &mut self.remaining {
            None => true,
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
        }
    }

    /// Lay out a mono frame in the configured channel layout.
    fn emit(&self, mono: Vec<i16>) -> Vec<i16> {
        match self.channels {
            Channels::Mono => mono,
            Channels::Stereo => mono.iter().flat_map(|&s| [s, s]).collect(),
        }
    }
}

fn frames_for(duration: std::time::Duration) -> u64 {
    // Round up to whole 20 ms frames.
    let ms = duration.as_millis();
    let frames = ms.div_ceil(u128::from(crate::format::FRAME_MS));
    u64::try_from(frames).unwrap_or(u64::MAX)
}

macro_rules! framing_builders {
    () => {
        /// Produce interleaved stereo (the same signal on both channels).
        pub fn stereo(mut self) -> Self {
            self.framing.channels = Channels::Stereo;
            self
        }

        /// Stop after `frames` frames (default: endless).
        pub fn with_frames(mut self, frames: u64) -> Self {
            self.framing.remaining = Some(frames);
            self
        }

        /// Stop after `duration`, rounded up to whole 20 ms frames.
        pub fn with_duration(self, duration: std::time::Duration) -> Self {
            self.with_frames(frames_for(duration))
        }
    };
}

/// A sine tone: `amplitude * sin(2π f n / 48000)`, phase-continuous across frames.
#[derive(Debug, Clone)]
pub struct Tone {
    freq_hz: f64,
    amplitude: f64,
    n: u64,
    framing: Framing,
}

impl Tone {
    /// A mono, endless tone of `freq_hz` Hz with peak `amplitude`.
    pub fn new(freq_hz: f64, amplitude: i16) -> Self {
        Tone {
            freq_hz: if freq_hz.is_finite() { freq_hz } else { 0.0 },
            amplitude: f64::from(amplitude),
            n: 0,
            framing: Framing::new(),
        }
    }

    framing_builders!();
}

impl AudioSource for Tone {
    fn next_frame(&mut self) -> Option<Vec<i16>> {
        if !self.framing.take() {
            return None;
        }
        let rate = f64::from(SAMPLE_RATE);
        let mono = (0..FRAME_SAMPLES as u64)
            .map(|i| {
                // Reduce the phase to [0, 1) cycles before multiplying by 2π to stay
                // precise however long the tone runs.
                let cycles = ((self.n + i) as f64 * self.freq_hz / rate).fract();
                to_i16(self.amplitude * (TAU * cycles).sin())
            })
            .collect();
        self.n += FRAME_SAMPLES as u64;
        Some(self.framing.emit(mono))
    }

    fn channels(&self) -> Channels {
        self.framing.channels
    }
}

fn to_i16(x: f64) -> i16 {
    x.round().clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16
}

/// A deterministic speech-like test signal.
///
/// It is a train of "syllables" separated by short gaps (and now and then a longer
/// pause). Each syllable lasts 120-300 ms and is a sum of harmonics (1/k amplitude,
/// up to 4 kHz) of a fundamental that glides between two random pitches in
/// 90-240 Hz, under a raised-cosine amplitude envelope with a random peak, plus a
/// little noise. The result has pitch, amplitude and silence structure, so a
/// cross-correlation against it has one clear peak, and DTX gets real silence.
/// The same seed always gives the same samples.
#[derive(Debug, Clone)]
pub struct SpeechLike {
    rng: SplitMix64,
    amplitude: f64,
    /// Phase of the fundamental in cycles, in [0, 1).
    phase: f64,
    /// Current segment (a syllable or a gap).
    seg: Segment,
    framing: Framing,
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    voiced: bool,
    len: u32,
    pos: u32,
    f0_start: f64,
    f0_end: f64,
    peak: f64,
}

const MAX_HARMONIC_HZ: f64 = 4000.0;
const MAX_HARMONICS: usize = 24;

impl SpeechLike {
    /// A mono, endless speech-like signal with peak amplitude about 12000.
    pub fn new(seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        let seg = Self::next_segment(&mut rng, false);
        SpeechLike {
            rng,
            amplitude: 12_000.0,
            phase: 0.0,
            seg,
            framing: Framing::new(),
        }
    }

    /// Set the peak amplitude (default 12000).
    pub fn with_amplitude(mut self, amplitude: i16) -> Self {
        self.amplitude = f64::from(amplitude);
        self
    }

    framing_builders!();

    /// The segment after one that was `voiced`: syllables and gaps alternate.
    fn next_segment(rng: &mut SplitMix64, was_voiced: bool) -> Segment {
        let rate = f64::from(SAMPLE_RATE);
        if was_voiced {
            // A gap: usually short, sometimes a pause.
            let secs = if rng.next_f64() < 0.15 {
                rng.range_f64(0.3, 0.6)
            } else {
                rng.range_f64(0.03, 0.15)
            };
            Segment {
                voiced: false,
                len: (secs * rate) as u32,
                pos: 0,
                f0_start: 0.0,
                f0_end: 0.0,
                peak: 0.0,
            }
        } else {
            let secs = rng.range_f64(0.12, 0.30);
            Segment {
                voiced: true,
                len: (secs * rate) as u32,
                pos: 0,
                f0_start: rng.range_f64(90.0, 240.0),
                f0_end: rng.range_f64(90.0, 240.0),
                peak: rng.range_f64(0.35, 1.0),
            }
        }
    }

    fn next_sample(&mut self) -> f64 {
        if self.seg.pos >= self.seg.len {
            self.seg = Self::next_segment(&mut self.rng, self.seg.voiced);
        }
        let seg = self.seg;
        self.seg.pos += 1;
        let t = f64::from(seg.pos) / f64::from(seg.len.max(1));
        if !seg.voiced {
            return 0.0;
        }
        let f0 = seg.f0_start + (seg.f0_end - seg.f0_start) * t;
        let env = seg.peak * (std::f64::consts::PI * t).sin().powi(2);
        self.phase = (self.phase + f0 / f64::from(SAMPLE_RATE)).fract();
        let harmonics = ((MAX_HARMONIC_HZ / f0) as usize).clamp(1, MAX_HARMONICS);
        let mut sum = 0.0;
        let mut norm = 0.0;
        for k in 1..=harmonics {
            let kf = k as f64;
            sum += (TAU * kf * self.phase).sin() / kf;
            norm += 1.0 / kf;
        }
        let noise = self.rng.range_f64(-1.0, 1.0) * 0.03;
        env * (sum / norm * 0.97 + noise)
    }
}

impl AudioSource for SpeechLike {
    fn next_frame(&mut self) -> Option<Vec<i16>> {
        if !self.framing.take() {
            return None;
        }
        let mono = (0..FRAME_SAMPLES)
            .map(|_| to_i16(self.amplitude * self.next_sample()))
            .collect();
        Some(self.framing.emit(mono))
    }

    fn channels(&self) -> Channels {
        self.framing.channels
    }
}

/// Uniform white noise in `[-amplitude, amplitude]`, deterministic given the seed.
#[derive(Debug, Clone)]
pub struct Noise {
    rng: SplitMix64,
    amplitude: f64,
    framing: Framing,
}

impl Noise {
    /// Mono, endless noise with peak `amplitude`.
    pub fn new(seed: u64, amplitude: i16) -> Self {
        Noise {
            rng: SplitMix64::new(seed),
            amplitude: f64::from(amplitude),
            framing: Framing::new(),
        }
    }

    framing_builders!();
}

impl AudioSource for Noise {
    fn next_frame(&mut self) -> Option<Vec<i16>> {
        if !self.framing.take() {
            return None;
        }
        let mono = (0..FRAME_SAMPLES)
            .map(|_| to_i16(self.amplitude * self.rng.range_f64(-1.0, 1.0)))
            .collect();
        Some(self.framing.emit(mono))
    }

    fn channels(&self) -> Channels {
        self.framing.channels
    }
}

/// Pull every frame from `source` and concatenate them (for tests and small
/// fixtures; do not call on an endless source).
pub fn collect_all(source: &mut dyn AudioSource) -> Vec<i16> {
    let mut out = Vec::new();
    while let Some(f) = source.next_frame() {
        out.extend_from_slice(&f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Root mean square, computed here so this file's tests do not depend
    /// on the analysis module (whose tests use these sources).
    fn rms(x: &[i16]) -> f64 {
        if x.is_empty() {
            return 0.0;
        }
        let sum: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        (sum / x.len() as f64).sqrt()
    }

    #[test]
    fn tone_frames_and_level() {
        let mut t = Tone::new(1000.0, 10_000).with_duration(Duration::from_millis(50));
        let frames: Vec<_> = std::iter::from_fn(|| t.next_frame()).collect();
        assert_eq!(frames.len(), 3);
        assert!(frames.iter().all(|f| f.len() == FRAME_SAMPLES));
        let r = rms(&frames[0]);
        assert!((r - 10_000.0 / 2f64.sqrt()).abs() < 50.0, "rms {r}");
        // 1 kHz at 48 kHz: period 48 samples, starts at 0.
        assert_eq!(frames[0][0], 0);
        assert_eq!(frames[0][12], 10_000);
        assert_eq!(frames[1][12], 10_000);
    }

    #[test]
    fn stereo_duplicates() {
        let mut t = Tone::new(440.0, 1000).stereo().with_frames(1);
        let f = t.next_frame().expect("frame");
        assert_eq!(f.len(), 2 * FRAME_SAMPLES);
        assert!(f.chunks(2).all(|c| c[0] == c[1]));
        assert_eq!(t.channels(), Channels::Stereo);
        assert!(t.next_frame().is_none());
    }

    #[test]
    fn speech_like_is_deterministic_and_structured() {
        let a = collect_all(&mut SpeechLike::new(42).with_frames(100));
        let b = collect_all(&mut SpeechLike::new(42).with_frames(100));
        let c = collect_all(&mut SpeechLike::new(43).with_frames(100));
        assert_eq!(a.len(), 100 * FRAME_SAMPLES);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let levels: Vec<f64> = a.chunks(FRAME_SAMPLES).map(rms).collect();
        let silent = levels.iter().filter(|&&l| l < 1.0).count();
        let loud = levels.iter().filter(|&&l| l > 1000.0).count();
        assert!(silent > 5 && loud > 20, "silent {silent} loud {loud}");
    }

    #[test]
    fn noise_level() {
        let n = collect_all(&mut Noise::new(1, 10_000).with_frames(10));
        let r = rms(&n);
        // Uniform: rms = A / sqrt(3).
        assert!((r - 10_000.0 / 3f64.sqrt()).abs() < 200.0, "rms {r}");
    }
}
