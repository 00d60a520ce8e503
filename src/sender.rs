//! Sending an audio source on a published track: encode with Opus, packetize,
//! pace in real time.

use crate::error::CallError;
use crate::level::AudioLevel;
use crate::packet::AudioFrame;
use crate::track::LocalTrack;
use huddle_media::opus_codec::{EncoderConfig, OpusEncoder};
use huddle_media::source::AudioSource;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

/// A source being sent (from `Call::send_audio`). Dropping it
/// stops the sending.
///
/// ```no_run
/// # async fn demo(call: &huddle::Call) -> Result<(), huddle::CallError> {
/// use huddle::SpeechLike;
/// let sending = call
///     .send_audio(Box::new(SpeechLike::new(1).with_frames(250)), Default::default())
///     .await?;
/// let frames = sending.finished().await?; // 5 s later: 250
/// # Ok(()) }
/// ```
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
            sending
                .write_audio_frame(AudioFrame {
                    payload: &packet,
                    duration: Duration::from_millis(20),
                    level: AudioLevel::of_pcm(&frame),
                })
                .await?;
            sent += 1;
        }
        Ok(sent)
    });
    Ok(AudioSender { track, task })
}
