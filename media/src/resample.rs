//! Any input rate to 48 kHz, framed into 20 ms, with rubato's sinc resampler.

use crate::format::{Channels, FRAME_SAMPLES, SAMPLE_RATE};
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{
    Async, FixedAsync, Resampler, SincInterpolationParameters, SincInterpolationType,
    WindowFunction,
};
use std::collections::VecDeque;

/// Errors of the resampler.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResampleError {
    /// The rate or channel count cannot be handled.
    #[error("cannot resample from {rate} Hz with {channels} channels: {reason}")]
    Unsupported {
        /// Input rate.
        rate: u32,
        /// Input channels.
        channels: usize,
        /// Why.
        reason: String,
    },
}

/// Takes interleaved i16 at any rate and channel count, gives 20 ms frames at
/// 48 kHz, mono (channels averaged) or stereo (first two channels).
pub struct To48k {
    inner: Option<Async<f32>>,
    in_channels: usize,
    out: Channels,
    /// Input not yet resampled, interleaved at the output channel count.
    pending: Vec<f32>,
    /// Resampled output waiting to be framed, interleaved.
    ready: VecDeque<i16>,
    scratch: Vec<f32>,
}

impl std::fmt::Debug for To48k {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("To48k")
            .field("resampling", &self.inner.is_some())
            .field("in_channels", &self.in_channels)
            .field("out", &self.out)
            .finish()
    }
}

/// Input frames per resampler call: 10 ms at the input rate.
fn chunk(rate: u32) -> usize {
    (rate as usize / 100).max(1)
}

impl To48k {
    /// A converter from `rate` Hz with `in_channels` interleaved channels to
    /// 48 kHz with `out` channels.
    pub fn new(rate: u32, in_channels: usize, out: Channels) -> Result<Self, ResampleError> {
        let unsupported = |reason: &str| ResampleError::Unsupported {
            rate,
            channels: in_channels,
            reason: reason.to_owned(),
        };
        if in_channels == 0 {
            return Err(unsupported("no channels"));
        }
        if !(4_000..=384_000).contains(&rate) {
            return Err(unsupported("rate outside 4-384 kHz"));
        }
        let inner = if rate == SAMPLE_RATE {
            None
        } else {
            let params = SincInterpolationParameters::new(64, WindowFunction::BlackmanHarris2)
                .oversampling_factor(128)
                .interpolation(SincInterpolationType::Linear);
            let ratio = SAMPLE_RATE as f64 / rate as f64;
            Some(
                Async::<f32>::new_sinc(
                    ratio,
                    1.0,
                    &params,
                    chunk(rate),
                    out.count(),
                    FixedAsync::Input,
                )
                .map_err(|e| unsupported(&e.to_string()))?,
            )
        };
        Ok(Self {
            inner,
            in_channels,
            out,
            pending: Vec::new(),
            ready: VecDeque::new(),
            scratch: Vec::new(),
        })
    }

    /// Feed interleaved samples (a trailing partial frame is kept for later).
    pub fn push(&mut self, samples: &[i16]) {
        self.push_f32(samples.iter().map(|&s| s as f32 / 32768.0), samples.len());
    }

    /// Feed interleaved f32 samples in -1.0..=1.0.
    pub fn push_f32(&mut self, samples: impl Iterator<Item = f32>, len_hint: usize) {
        let ch = self.in_channels;
        let mut frame = Vec::with_capacity(ch);
        self.pending.reserve(len_hint / ch * self.out.count());
        for s in samples {
            frame.push(s);
            if frame.len() == ch {
                match self.out {
                    Channels::Mono => self.pending.push(frame.iter().sum::<f32>() / ch as f32),
                    Channels::Stereo => {
                        self.pending.push(frame[0]);
                        self.pending.push(*frame.get(1).unwrap_or(&frame[0]));
                    }
                }
                frame.clear();
            }
        }
        self.run();
    }

    fn run(&mut self) {
        let ch = self.out.count();
        let Some(inner) = self.inner.as_mut() else {
            self.ready.extend(self.pending.drain(..).map(to_i16));
            return;
        };
        loop {
            let need = inner.input_frames_next();
            if self.pending.len() < need * ch {
                return;
            }
            let out_frames = inner.output_frames_max();
            self.scratch.resize(out_frames * ch, 0.0);
            let input = InterleavedSlice::new(&self.pending[..need * ch], ch, need);
            let output = InterleavedSlice::new_mut(&mut self.scratch, ch, out_frames);
            let (Ok(input), Ok(mut output)) = (input, output) else {
                return;
            };
            match inner.process_into_buffer(&input, &mut output, None) {
                Ok((used, produced)) => {
                    self.pending.drain(..used * ch);
                    self.ready
                        .extend(self.scratch[..produced * ch].iter().copied().map(to_i16));
                }
                Err(e) => {
                    tracing::warn!("resampler: {e}");
                    self.pending.clear();
                    return;
                }
            }
        }
    }

    /// The next 20 ms frame at 48 kHz, when one is complete.
    pub fn pop_frame(&mut self) -> Option<Vec<i16>> {
        let len = FRAME_SAMPLES * self.out.count();
        if self.ready.len() < len {
            return None;
        }
        Some(self.ready.drain(..len).collect())
    }

    /// Output channel layout.
    pub fn channels(&self) -> Channels {
        self.out
    }
}

fn to_i16(s: f32) -> i16 {
    (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::normalized_cross_correlation;

    fn tone(rate: u32, channels: usize, secs: f64, hz: f64) -> Vec<i16> {
        let n = (rate as f64 * secs) as usize;
        (0..n)
            .flat_map(|i| {
                let v = (8000.0 * (2.0 * std::f64::consts::PI * hz * i as f64 / rate as f64).sin())
                    as i16;
                std::iter::repeat_n(v, channels)
            })
            .collect()
    }

    fn run(rate: u32, channels: usize, out: Channels) -> Vec<i16> {
        let mut r = To48k::new(rate, channels, out).expect("resampler");
        let input = tone(rate, channels, 1.0, 440.0);
        // Feed in odd-sized pieces, as a device callback would.
        for piece in input.chunks(333 * channels) {
            r.push(piece);
        }
        let mut got = Vec::new();
        while let Some(f) = r.pop_frame() {
            assert_eq!(f.len(), FRAME_SAMPLES * out.count());
            got.extend(f);
        }
        got
    }

    #[test]
    fn resamples_common_rates_to_48k() {
        let reference = tone(48_000, 1, 1.0, 440.0);
        for rate in [8_000, 16_000, 44_100, 48_000, 96_000] {
            let got = run(rate, 1, Channels::Mono);
            // One second in, about one second out (the filter delays a little).
            assert!(
                got.len() >= 45 * FRAME_SAMPLES,
                "{rate}: {} samples",
                got.len()
            );
            let (corr, _) = normalized_cross_correlation(&reference[..got.len()], &got, 200);
            assert!(corr > 0.98, "{rate} Hz: correlation {corr}");
        }
    }

    #[test]
    fn downmixes_and_keeps_stereo() {
        assert!(!run(44_100, 2, Channels::Mono).is_empty());
        let stereo = run(44_100, 2, Channels::Stereo);
        assert_eq!(stereo.len() % (2 * FRAME_SAMPLES), 0);
        let six = run(48_000, 6, Channels::Mono);
        assert_eq!(six.len(), 50 * FRAME_SAMPLES);
    }

    #[test]
    fn refuses_what_it_cannot_do() {
        assert!(To48k::new(48_000, 0, Channels::Mono).is_err());
        assert!(To48k::new(1_000, 1, Channels::Mono).is_err());
    }
}
