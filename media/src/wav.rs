//! WAV file input and output.
//!
//! [`WavSource`] reads any PCM WAV that `hound` understands (8/16/24/32-bit
//! integer or 32-bit float, any rate, any channel count) and yields 20 ms frames
//! of 48 kHz i16: files that are not 48 kHz are resampled by linear interpolation
//! (adequate for test signals; proper band-limited resampling with rubato is a later
//! step), mono and stereo are kept, and more than two channels are averaged to mono.
//! [`WavSink`] writes 48 kHz i16 mono or stereo.

use crate::error::{MediaError, Result};
use crate::format::{Channels, SAMPLE_RATE};
use crate::sink::AudioSink;
use crate::source::AudioSource;
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

type Reader = hound::WavReader<std::io::BufReader<File>>;

/// Reads a WAV file as 20 ms frames of 48 kHz i16 PCM.
///
/// The last frame is padded with zeros to a full 20 ms. A read error part-way
/// through ends the stream early; [`WavSource::error`] then tells what happened.
pub struct WavSource {
    reader: Reader,
    spec: hound::WavSpec,
    channels: Channels,
    /// Interleaved input channels per input sample frame.
    in_channels: usize,
    /// Resampler state: the input sample frames around the current output position.
    cur: Vec<i16>,
    next: Vec<i16>,
    /// Output position between `cur` and `next`, as `acc / SAMPLE_RATE`.
    acc: u32,
    started: bool,
    ended: bool,
    error: Option<MediaError>,
}

impl std::fmt::Debug for WavSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavSource")
            .field("spec", &self.spec)
            .field("channels", &self.channels)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl WavSource {
    /// Open `path`. Fails with [`MediaError::Wav`] if it is not a readable WAV, and
    /// [`MediaError::UnsupportedFormat`] for a sample format we do not convert.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let reader = hound::WavReader::open(path)?;
        let spec = reader.spec();
        match (spec.sample_format, spec.bits_per_sample) {
            (hound::SampleFormat::Int, 1..=32) | (hound::SampleFormat::Float, 32) => {}
            (fmt, bits) => {
                return Err(MediaError::UnsupportedFormat(format!(
                    "{bits}-bit {fmt:?} samples"
                )))
            }
        }
        if spec.channels == 0 || spec.sample_rate == 0 {
            return Err(MediaError::UnsupportedFormat(format!(
                "{} channels at {} Hz",
                spec.channels, spec.sample_rate
            )));
        }
        let in_channels = usize::from(spec.channels);
        let channels = Channels::from_count(in_channels).unwrap_or(Channels::Mono);
        Ok(WavSource {
            reader,
            spec,
            channels,
            in_channels,
            cur: Vec::new(),
            next: Vec::new(),
            acc: 0,
            started: false,
            ended: false,
            error: None,
        })
    }

    /// The file's own format (before conversion to 48 kHz i16).
    pub fn spec(&self) -> hound::WavSpec {
        self.spec
    }

    /// The error that ended the stream early, if any.
    pub fn error(&self) -> Option<&MediaError> {
        self.error.as_ref()
    }

    fn read_sample(&mut self) -> Option<i16> {
        let bits = self.spec.bits_per_sample;
        let r = match self.spec.sample_format {
            hound::SampleFormat::Float => self.reader.samples::<f32>().next().map(|r| {
                r.map(|x| {
                    let x = if x.is_finite() { x } else { 0.0 };
                    (x.clamp(-1.0, 1.0) * 32767.0).round() as i16
                })
            }),
            hound::SampleFormat::Int => self.reader.samples::<i32>().next().map(|r| {
                r.map(|x| {
                    let v = if bits >= 16 {
                        x >> (bits - 16)
                    } else {
                        x << (16 - bits)
                    };
                    v.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
                })
            }),
        };
        match r {
            None => None,
            Some(Ok(v)) => Some(v),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "WAV read error; ending stream");
                self.error = Some(e.into());
                None
            }
        }
    }

    /// Read one input sample frame, converted to the output channel layout.
    fn read_input_frame(&mut self) -> Option<Vec<i16>> {
        let mut raw = Vec::with_capacity(self.in_channels);
        for _ in 0..self.in_channels {
            raw.push(self.read_sample()?);
        }
        if self.in_channels > 2 {
            let sum: i64 = raw.iter().map(|&s| i64::from(s)).sum();
            let avg = sum / self.in_channels as i64;
            return Some(vec![avg as i16]);
        }
        Some(raw)
    }

    /// Produce one output sample frame at 48 kHz, or `None` at end of input.
    fn next_output(&mut self) -> Option<()> {
        if !self.started {
            self.started = true;
            self.cur = self.read_input_frame()?;
            self.next = self.read_input_frame().unwrap_or_default();
        } else {
            self.acc += self.spec.sample_rate;
            while self.acc >= SAMPLE_RATE {
                self.acc -= SAMPLE_RATE;
                if self.next.is_empty() {
                    return None;
                }
                self.cur = std::mem::take(&mut self.next);
                self.next = self.read_input_frame().unwrap_or_default();
            }
        }
        Some(())
    }

    fn push_output(&self, out: &mut Vec<i16>) {
        if self.acc == 0 || self.next.is_empty() {
            out.extend_from_slice(&self.cur);
            return;
        }
        let frac = f64::from(self.acc) / f64::from(SAMPLE_RATE);
        for (&a, &b) in self.cur.iter().zip(&self.next) {
            let v = f64::from(a) + (f64::from(b) - f64::from(a)) * frac;
            out.push(v.round() as i16);
        }
    }
}

impl AudioSource for WavSource {
    fn next_frame(&mut self) -> Option<Vec<i16>> {
        if self.ended {
            return None;
        }
        let len = self.channels.frame_len();
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            if self.next_output().is_none() {
                self.ended = true;
                break;
            }
            self.push_output(&mut out);
        }
        if out.is_empty() {
            return None;
        }
        out.resize(len, 0);
        Some(out)
    }

    fn channels(&self) -> Channels {
        self.channels
    }
}

/// Writes 48 kHz 16-bit mono or stereo PCM to a WAV file.
///
/// Call [`finish`](WavSink::finish) to finalize the header and see any error;
/// dropping the sink finalizes too, logging (not returning) errors.
pub struct WavSink {
    writer: Option<hound::WavWriter<BufWriter<File>>>,
    channels: Channels,
}

impl std::fmt::Debug for WavSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavSink")
            .field("channels", &self.channels)
            .field("open", &self.writer.is_some())
            .finish()
    }
}

impl WavSink {
    /// Create (or truncate) `path` for 48 kHz i16 audio with `channels`.
    pub fn create(path: impl AsRef<Path>, channels: Channels) -> Result<Self> {
        let spec = hound::WavSpec {
            channels: channels.count() as u16,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(path, spec)?;
        Ok(WavSink {
            writer: Some(writer),
            channels,
        })
    }

    /// Channel layout being written.
    pub fn channels(&self) -> Channels {
        self.channels
    }

    /// Finalize the file (write the header's lengths and flush).
    pub fn finish(mut self) -> Result<()> {
        match self.writer.take() {
            Some(w) => Ok(w.finalize()?),
            None => Ok(()),
        }
    }
}

impl AudioSink for WavSink {
    /// Append interleaved samples; `pcm.len()` must be a multiple of the channel
    /// count.
    fn write_frame(&mut self, pcm: &[i16]) -> Result<()> {
        let ch = self.channels.count();
        if !pcm.len().is_multiple_of(ch) {
            return Err(MediaError::FrameSize {
                expected: pcm.len() - pcm.len() % ch,
                got: pcm.len(),
            });
        }
        let w = self
            .writer
            .as_mut()
            .ok_or_else(|| MediaError::Io(std::io::Error::other("WavSink already finished")))?;
        // Bounded chunks keep hound's staging buffer small and its u32 count exact.
        for chunk in pcm.chunks(4096) {
            let mut i16w = w.get_i16_writer(chunk.len() as u32);
            for &s in chunk {
                i16w.write_sample(s);
            }
            i16w.flush()?;
        }
        Ok(())
    }
}

impl Drop for WavSink {
    fn drop(&mut self) {
        if let Some(w) = self.writer.take() {
            if let Err(e) = w.finalize() {
                tracing::warn!(error = %e, "finalizing WAV file on drop failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::normalized_cross_correlation;
    use crate::format::FRAME_SAMPLES;
    use crate::source::{collect_all, SpeechLike, Tone};
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn temp_path(tag: &str) -> PathBuf {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        std::env::temp_dir().join(format!("huddle-media-{}-{tag}-{n}.wav", std::process::id()))
    }

    #[test]
    fn roundtrip_mono_and_stereo() {
        for channels in [Channels::Mono, Channels::Stereo] {
            let path = temp_path("rt");
            let mut src = SpeechLike::new(5).with_frames(25);
            if channels == Channels::Stereo {
                src = src.stereo();
            }
            let pcm = collect_all(&mut src);
            let mut sink = WavSink::create(&path, channels).expect("create");
            for f in pcm.chunks(channels.frame_len()) {
                sink.write_frame(f).expect("write");
            }
            sink.finish().expect("finish");

            let mut wav = WavSource::open(&path).expect("open");
            assert_eq!(wav.channels(), channels);
            let back = collect_all(&mut wav);
            assert!(wav.error().is_none());
            assert_eq!(back, pcm);
            let _ = std::fs::remove_file(&path);
        }
    }

    #[test]
    fn drop_finalizes() {
        let path = temp_path("drop");
        {
            let mut sink = WavSink::create(&path, Channels::Mono).expect("create");
            sink.write_frame(&[1, 2, 3]).expect("write");
        }
        let r = hound::WavReader::open(&path).expect("open");
        assert_eq!(r.len(), 3);
        let back = collect_all(&mut WavSource::open(&path).expect("open"));
        // Padded to one whole frame.
        assert_eq!(back.len(), FRAME_SAMPLES);
        assert_eq!(&back[..4], &[1, 2, 3, 0]);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn resamples_16k_to_48k() {
        let path = temp_path("16k");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).expect("create");
        // 1 s of 500 Hz at 16 kHz.
        for n in 0..16_000 {
            let v = (8000.0 * (std::f64::consts::TAU * 500.0 * n as f64 / 16_000.0).sin()) as i16;
            w.write_sample(v).expect("write");
        }
        w.finalize().expect("finalize");
        let mut src = WavSource::open(&path).expect("open");
        assert_eq!(src.channels(), Channels::Mono);
        let got = collect_all(&mut src);
        assert_eq!(got.len(), 50 * FRAME_SAMPLES);
        let want = collect_all(&mut Tone::new(500.0, 8000).with_frames(50));
        // A 500 Hz tone repeats every 96 samples: search well inside one period.
        let (corr, lag) = normalized_cross_correlation(&want, &got, 40);
        assert!(corr > 0.99, "corr {corr}");
        assert_eq!(lag, 0);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn float_and_multichannel_are_converted() {
        let path = temp_path("f32x4");
        let spec = hound::WavSpec {
            channels: 4,
            sample_rate: 48_000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut w = hound::WavWriter::create(&path, spec).expect("create");
        for _ in 0..FRAME_SAMPLES {
            for c in 0..4 {
                w.write_sample(0.25f32 * c as f32).expect("write");
            }
        }
        w.finalize().expect("finalize");
        let mut src = WavSource::open(&path).expect("open");
        assert_eq!(src.channels(), Channels::Mono);
        let f = src.next_frame().expect("frame");
        // Average of 0, 0.25, 0.5, 0.75 = 0.375.
        assert!(f.iter().all(|&s| (s - 12288).abs() <= 1), "{}", f[0]);
        assert!(src.next_frame().is_none());
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn not_a_wav_is_an_error() {
        let path = temp_path("junk");
        std::fs::write(&path, b"definitely not a wav file").expect("write");
        assert!(matches!(WavSource::open(&path), Err(MediaError::Wav(_))));
        let _ = std::fs::remove_file(&path);
        assert!(WavSource::open(temp_path("missing")).is_err());
    }
}
