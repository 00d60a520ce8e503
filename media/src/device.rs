//! Microphone and speakers through cpal.
//!
//! [`Microphone`] is an [`AudioSource`] (20 ms mono frames at 48 kHz, whatever
//! the device's rate and channels); [`Speaker`] is an [`AudioSink`] taking
//! 48 kHz mono frames. On a machine without a usable device, opening either
//! returns a [`DeviceError`] that names the problem; it never panics and never
//! hangs (opening gives up after [`OPEN_TIMEOUT`]). Use a WAV file or a
//! synthetic source and a WAV or null sink there instead.
//!
//! Each stream lives on its own thread (cpal streams cannot move between
//! threads on every platform); samples cross over through channels.

use crate::format::{Channels, SAMPLE_RATE};
use crate::resample::To48k;
use crate::sink::AudioSink;
use crate::source::AudioSource;
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::SampleFormat;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long opening a device may take before it is given up.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// How long [`Microphone::next_frame`] waits for samples before it reports
/// the device stalled (and returns `None`).
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a device could not be opened or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// The system has no default device of this kind.
    #[error(
        "no {kind} found: the audio system reports no default {kind} device \
         (no sound card, or no PulseAudio/PipeWire/ALSA device available); \
         use a WAV file or the synthetic source instead"
    )]
    NoDevice {
        /// `microphone` or `speaker`.
        kind: &'static str,
    },
    /// No device has the name asked for.
    #[error("no {kind} named {name:?}; available: {available:?}")]
    NotFound {
        /// `microphone` or `speaker`.
        kind: &'static str,
        /// The name asked for.
        name: String,
        /// Names of the devices of that kind that exist.
        available: Vec<String>,
    },
    /// The device exists but could not be opened or started.
    #[error(
        "cannot use {kind} {name:?}: {detail} (without sound hardware, use a WAV \
         file or the synthetic source instead)"
    )]
    Unusable {
        /// `microphone` or `speaker`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// What the audio system said.
        detail: String,
    },
    /// Opening did not finish within [`OPEN_TIMEOUT`].
    #[error("opening the {kind} did not finish within {OPEN_TIMEOUT:?}")]
    Timeout {
        /// `microphone` or `speaker`.
        kind: &'static str,
    },
}

/// Names of the microphones the system offers.
pub fn microphones() -> Vec<String> {
    let host = cpal::default_host();
    match host.input_devices() {
        Ok(devs) => devs.filter_map(|d| name_of(&d)).collect(),
        Err(_) => Vec::new(),
    }
}

/// Names of the speakers the system offers.
pub fn speakers() -> Vec<String> {
    let host = cpal::default_host();
    match host.output_devices() {
        Ok(devs) => devs.filter_map(|d| name_of(&d)).collect(),
        Err(_) => Vec::new(),
    }
}

fn name_of(d: &cpal::Device) -> Option<String> {
    d.description().ok().map(|desc| desc.name().to_owned())
}

fn find(kind: &'static str, name: Option<&str>) -> Result<cpal::Device, DeviceError> {
    let host = cpal::default_host();
    let input = kind == "microphone";
    match name {
        None => {
            let dev = if input {
                host.default_input_device()
            } else {
                host.default_output_device()
            };
            dev.ok_or(DeviceError::NoDevice { kind })
        }
        Some(wanted) => {
            let devices: Vec<cpal::Device> = if input {
                host.input_devices()
                    .map(|d| d.collect())
                    .unwrap_or_default()
            } else {
                host.output_devices()
                    .map(|d| d.collect())
                    .unwrap_or_default()
            };
            let available: Vec<String> = devices.iter().filter_map(name_of).collect();
            devices
                .into_iter()
                .find(|d| name_of(d).as_deref() == Some(wanted))
                .ok_or(DeviceError::NotFound {
                    kind,
                    name: wanted.to_owned(),
                    available,
                })
        }
    }
}

fn unusable(kind: &'static str, name: &str, detail: String) -> DeviceError {
    DeviceError::Unusable {
        kind,
        name: name.to_owned(),
        detail,
    }
}

/// Play a stream just built, or say why the device cannot be used.
fn start(
    kind: &'static str,
    name: &str,
    built: Result<cpal::Stream, cpal::Error>,
) -> Result<(cpal::Stream, ()), DeviceError> {
    let stream = built.map_err(|e| unusable(kind, name, e.to_string()))?;
    stream
        .play()
        .map_err(|e| unusable(kind, name, e.to_string()))?;
    Ok((stream, ()))
}

/// Run `open` on a thread of its own, which keeps the stream it returns alive
/// until `stop` is set. Returns what `open` reported, or a timeout.
fn spawn_stream<T: Send + 'static>(
    kind: &'static str,
    stop: Arc<AtomicBool>,
    open: impl FnOnce() -> Result<(cpal::Stream, T), DeviceError> + Send + 'static,
) -> Result<T, DeviceError> {
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name(format!("huddle-{kind}"))
        .spawn(move || {
            let stream = match open() {
                Ok((stream, value)) => {
                    let _ = tx.send(Ok(value));
                    stream
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
            drop(stream);
        });
    if let Err(e) = spawned {
        return Err(DeviceError::Unusable {
            kind,
            name: String::new(),
            detail: format!("cannot start a thread: {e}"),
        });
    }
    match rx.recv_timeout(OPEN_TIMEOUT) {
        Ok(result) => result,
        Err(_) => Err(DeviceError::Timeout { kind }),
    }
}

/// Audio from a microphone, as 20 ms mono frames at 48 kHz.
#[derive(Debug)]
pub struct Microphone {
    name: String,
    samples: mpsc::Receiver<Vec<f32>>,
    resampler: To48k,
    stop: Arc<AtomicBool>,
    error: Option<DeviceError>,
}

impl Microphone {
    /// Open the default microphone (`None`) or the one with this name.
    pub fn open(name: Option<&str>) -> Result<Self, DeviceError> {
        let device = find("microphone", name)?;
        let dev_name = name_of(&device).unwrap_or_else(|| "default".into());
        let unusable = |detail: String, name: &str| unusable("microphone", name, detail);
        let config = device
            .default_input_config()
            .map_err(|e| unusable(e.to_string(), &dev_name))?;
        let rate = config.sample_rate();
        let channels = config.channels() as usize;
        let format = config.sample_format();
        let resampler = To48k::new(rate, channels, Channels::Mono)
            .map_err(|e| unusable(e.to_string(), &dev_name))?;
        let (tx, rx) = mpsc::sync_channel::<Vec<f32>>(64);
        let stop = Arc::new(AtomicBool::new(false));
        let thread_name = dev_name.clone();
        spawn_stream("microphone", stop.clone(), move || {
            let on_error = |e: cpal::Error| tracing::warn!("microphone: {e}");
            let kind = "microphone";
            let stream_config = config.config();
            let built = match format {
                SampleFormat::F32 => device.build_input_stream::<f32, _, _>(
                    stream_config,
                    move |data: &[f32], _| {
                        let _ = tx.try_send(data.to_vec());
                    },
                    on_error,
                    Some(OPEN_TIMEOUT),
                ),
                SampleFormat::I16 => device.build_input_stream::<i16, _, _>(
                    stream_config,
                    move |data: &[i16], _| {
                        let _ = tx.try_send(data.iter().map(|&s| s as f32 / 32768.0).collect());
                    },
                    on_error,
                    Some(OPEN_TIMEOUT),
                ),
                other => Err(cpal::Error::with_message(
                    cpal::ErrorKind::UnsupportedConfig,
                    format!("sample format {other:?} is not supported"),
                )),
            };
            start(kind, &thread_name, built)
        })?;
        Ok(Self {
            name: dev_name,
            samples: rx,
            resampler,
            stop,
            error: None,
        })
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Why the microphone stopped delivering, if it did.
    pub fn error(&self) -> Option<&DeviceError> {
        self.error.as_ref()
    }
}

impl AudioSource for Microphone {
    /// Blocks until 20 ms of audio are there; `None` once the device stops
    /// delivering (see [`Microphone::error`]).
    fn next_frame(&mut self) -> Option<Vec<i16>> {
        loop {
            if let Some(frame) = self.resampler.pop_frame() {
                return Some(frame);
            }
            match self.samples.recv_timeout(READ_TIMEOUT) {
                Ok(chunk) => {
                    let n = chunk.len();
                    self.resampler.push_f32(chunk.into_iter(), n);
                }
                Err(_) => {
                    self.error = Some(DeviceError::Unusable {
                        kind: "microphone",
                        name: self.name.clone(),
                        detail: format!("no audio for {READ_TIMEOUT:?}"),
                    });
                    return None;
                }
            }
        }
    }

    fn channels(&self) -> Channels {
        Channels::Mono
    }

    fn is_live(&self) -> bool {
        true
    }
}

impl Drop for Microphone {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Plays 48 kHz mono frames on a speaker.
#[derive(Debug)]
pub struct Speaker {
    name: String,
    queue: Arc<Mutex<VecDeque<f32>>>,
    rate: u32,
    channels: usize,
    stop: Arc<AtomicBool>,
}

/// Most audio the speaker queue holds (0.5 s); older audio is dropped.
const SPEAKER_QUEUE_SECONDS: f32 = 0.5;

impl Speaker {
    /// Open the default speaker (`None`) or the one with this name.
    pub fn open(name: Option<&str>) -> Result<Self, DeviceError> {
        let device = find("speaker", name)?;
        let dev_name = name_of(&device).unwrap_or_else(|| "default".into());
        let unusable = |detail: String, name: &str| unusable("speaker", name, detail);
        let config = device
            .default_output_config()
            .map_err(|e| unusable(e.to_string(), &dev_name))?;
        let rate = config.sample_rate();
        let channels = config.channels() as usize;
        let format = config.sample_format();
        let queue = Arc::new(Mutex::new(VecDeque::<f32>::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (q, thread_name) = (queue.clone(), dev_name.clone());
        spawn_stream("speaker", stop.clone(), move || {
            let on_error = |e: cpal::Error| tracing::warn!("speaker: {e}");
            let kind = "speaker";
            let next = move || q.lock().ok().and_then(|mut q| q.pop_front()).unwrap_or(0.0);
            let stream_config = config.config();
            let built = match format {
                SampleFormat::F32 => device.build_output_stream::<f32, _, _>(
                    stream_config,
                    move |data: &mut [f32], _| data.iter_mut().for_each(|s| *s = next()),
                    on_error,
                    Some(OPEN_TIMEOUT),
                ),
                SampleFormat::I16 => device.build_output_stream::<i16, _, _>(
                    stream_config,
                    move |data: &mut [i16], _| {
                        data.iter_mut()
                            .for_each(|s| *s = (next() * 32767.0).clamp(-32768.0, 32767.0) as i16)
                    },
                    on_error,
                    Some(OPEN_TIMEOUT),
                ),
                other => Err(cpal::Error::with_message(
                    cpal::ErrorKind::UnsupportedConfig,
                    format!("sample format {other:?} is not supported"),
                )),
            };
            start(kind, &thread_name, built)
        })?;
        Ok(Self {
            name: dev_name,
            queue,
            rate,
            channels,
            stop,
        })
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl AudioSink for Speaker {
    /// Queue a 48 kHz mono frame, converted to the device's rate (linear
    /// interpolation) and channel count.
    fn write_frame(&mut self, pcm: &[i16]) -> crate::error::Result<()> {
        let out_len = pcm.len() * self.rate as usize / SAMPLE_RATE as usize;
        let max = (self.rate as f32 * SPEAKER_QUEUE_SECONDS) as usize * self.channels;
        if let Ok(mut q) = self.queue.lock() {
            for i in 0..out_len {
                let pos = i as f64 * SAMPLE_RATE as f64 / self.rate as f64;
                let j = pos as usize;
                let frac = (pos - j as f64) as f32;
                let a = *pcm.get(j).unwrap_or(&0) as f32;
                let b = pcm.get(j + 1).or(pcm.get(j)).copied().unwrap_or(0) as f32;
                let v = (a + (b - a) * frac) / 32768.0;
                for _ in 0..self.channels {
                    q.push_back(v);
                }
            }
            while q.len() > max {
                q.pop_front();
            }
        }
        Ok(())
    }
}

impl Drop for Speaker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_that_does_not_exist_is_a_clear_error() {
        match Microphone::open(Some("no-such-microphone-xyz")) {
            Err(DeviceError::NotFound { kind, name, .. }) => {
                assert_eq!(kind, "microphone");
                assert_eq!(name, "no-such-microphone-xyz");
            }
            other => panic!("expected NotFound, got {other:?}"),
        }
        match Speaker::open(Some("no-such-speaker-xyz")) {
            Err(DeviceError::NotFound { kind, .. }) => assert_eq!(kind, "speaker"),
            other => panic!("expected NotFound, got {other:?}"),
        }
    }

    #[test]
    fn the_default_devices_open_or_fail_with_a_documented_error() {
        // On a machine with sound hardware these open; on a headless one they
        // must fail with one of the documented errors, without hanging.
        for result in [
            Microphone::open(None).map(|m| m.name().to_owned()),
            Speaker::open(None).map(|s| s.name().to_owned()),
        ] {
            match result {
                Ok(name) => println!("opened {name}"),
                Err(
                    e @ (DeviceError::NoDevice { .. }
                    | DeviceError::Unusable { .. }
                    | DeviceError::Timeout { .. }),
                ) => {
                    let msg = e.to_string();
                    println!("{msg}");
                    assert!(msg.contains("microphone") || msg.contains("speaker"));
                }
                Err(other) => panic!("undocumented error for a default device: {other:?}"),
            }
        }
    }
}
