//! Sending an audio source on a published track: encode with Opus, packetize,
//! pace in real time.

use crate::error::CallError;
use crate::track::LocalTrack;
use huddle_media::opus_codec::{EncoderConfig, OpusEncoder};
use huddle_media::source::AudioSource;
use huddle_media::FRAME_SAMPLES;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

/// A source being sent. Dropping it stops the sending.
#[derive(Debug)]
pub struct AudioSender {
    track: Arc<LocalTrack>,
    task: JoinHandle<Result<u64, CallError>>,
}

impl AudioSender {
    /// The track the audio goes out on (for mute).
    pub fn track(&self) -> &Arc<LocalTrack> {
        &self.track
    }

    /// Wait until the source is exhausted; returns the frames sent.
    pub async fn finished(mut self) -> Result<u64, CallError> {
        let res = (&mut self.task).await;
        res.map_err(|e| CallError::WebRtc(format!("audio sender task: {e}")))?
    }

    /// Stop sending now.
    pub fn stop(self) {}
}

impl Drop for AudioSender {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// RFC 6464 level of a frame: its RMS in -dBov (0 = full scale, 127 =
/// silence), and a voice flag from a plain level threshold (-50 dBov).
pub(crate) fn audio_level(pcm: &[i16]) -> (u8, bool) {
    let rms = huddle_media::analysis::rms(pcm);
    if rms < 1.0 {
        return (127, false);
    }
    let dbov = 20.0 * (rms / 32768.0).log10();
    let level = (-dbov).round().clamp(0.0, 127.0) as u8;
    (level, level < 50)
}

/// Start sending `source` on `track`.
///
/// The source runs on a thread of its own (a microphone blocks while it
/// captures); frames cross to an async task that encodes and sends them. A
/// source that is not live (file, synthetic) is paced at one frame per 20 ms.
pub(crate) fn start(
    track: Arc<LocalTrack>,
    mut source: Box<dyn AudioSource + Send>,
    mut config: EncoderConfig,
) -> Result<AudioSender, CallError> {
    config.channels = source.channels();
    let mut encoder =
        OpusEncoder::new(config).map_err(|e| CallError::WebRtc(format!("Opus encoder: {e}")))?;
    let live = source.is_live();
    let (tx, mut rx) = mpsc::channel::<Vec<i16>>(8);
    std::thread::Builder::new()
        .name("huddle-audio-source".into())
        .spawn(move || {
            while let Some(frame) = source.next_frame() {
                if tx.blocking_send(frame).is_err() {
                    break;
                }
            }
            debug!("audio source ended");
        })
        .map_err(|e| CallError::WebRtc(format!("cannot start the source thread: {e}")))?;
    let sending = track.clone();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sent = 0u64;
        let mut packet = Vec::with_capacity(1500);
        while let Some(frame) = rx.recv().await {
            if !live {
                tick.tick().await;
            }
            if let Err(e) = encoder.encode_into(&frame, &mut packet) {
                warn!("Opus encode failed: {e}");
                continue;
            }
            let (level, voice) = audio_level(&frame);
            sending
                .write_audio_frame(&packet, FRAME_SAMPLES as u32, level, voice)
                .await?;
            sent += 1;
        }
        Ok(sent)
    });
    Ok(AudioSender { track, task })
}

#[cfg(test)]
mod tests {
    use super::audio_level;

    #[test]
    fn levels_follow_rfc_6464() {
        assert_eq!(audio_level(&[0; 960]), (127, false));
        // A full-scale square wave is 0 dBov.
        let square: Vec<i16> = (0..960)
            .map(|i| if i % 2 == 0 { 32767 } else { -32767 })
            .collect();
        assert_eq!(audio_level(&square), (0, true));
        // -20 dBov.
        let quiet: Vec<i16> = (0..960)
            .map(|i| if i % 2 == 0 { 3277 } else { -3277 })
            .collect();
        assert_eq!(audio_level(&quiet), (20, true));
        let faint: Vec<i16> = (0..960)
            .map(|i| if i % 2 == 0 { 33 } else { -33 })
            .collect();
        assert!(!audio_level(&faint).1, "-60 dBov is not voice");
    }
}
