//! [`PcmSender`]: the app pushes 20 ms PCM frames; they are Opus-encoded
//! and sent with their level.

use crate::error::CallError;
use crate::level::AudioLevel;
use crate::packet::AudioFrame;
use crate::track::LocalTrack;
use huddle_media::opus_codec::{EncoderConfig, OpusEncoder};
use huddle_media::Channels;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// A published audio track fed with PCM by the app (from
/// `Call::publish_pcm`).
///
/// Each [`write`](Self::write) takes one 20 ms frame: 960 samples per
/// channel of 48 kHz interleaved `i16`. The app paces it (one frame per
/// 20 ms, as a sound card would).
///
/// ```no_run
/// # async fn demo(call: &huddle::Call) -> Result<(), huddle::CallError> {
/// use huddle::{AudioSource, Tone};
/// let pcm = call.publish_pcm(Default::default()).await?;
/// let mut tone = Tone::new(440.0, 8000).with_frames(50); // 1 s of 440 Hz
/// let mut clock = tokio::time::interval(std::time::Duration::from_millis(20));
/// while let Some(frame) = tone.next_frame() {
///     clock.tick().await;
///     pcm.write(&frame).await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct PcmSender {
    track: Arc<LocalTrack>,
    channels: Channels,
    encoder: Mutex<(OpusEncoder, Vec<u8>)>,
}

impl PcmSender {
    pub(crate) fn new(track: Arc<LocalTrack>, config: EncoderConfig) -> Result<Self, CallError> {
        let channels = config.channels;
        let encoder = OpusEncoder::new(config)
            .map_err(|e| CallError::WebRtc(format!("Opus encoder: {e}")))?;
        Ok(Self {
            track,
            channels,
            encoder: Mutex::new((encoder, Vec::with_capacity(1500))),
        })
    }

    /// The track the audio goes out on (to mute or unpublish it).
    pub fn track(&self) -> &Arc<LocalTrack> {
        &self.track
    }

    /// Encode and send one 20 ms frame. Fails with
    /// [`CallError::InvalidInput`] when `pcm` is not one frame long.
    pub async fn write(&self, pcm: &[i16]) -> Result<(), CallError> {
        let want = self.channels.frame_len();
        if pcm.len() != want {
            return Err(CallError::InvalidInput(format!(
                "a PCM frame is {want} samples (20 ms at 48 kHz), got {}",
                pcm.len()
            )));
        }
        let mut guard = self.encoder.lock().await;
        let (encoder, packet) = &mut *guard;
        encoder
            .encode_into(pcm, packet)
            .map_err(|e| CallError::InvalidInput(format!("Opus encode: {e}")))?;
        self.track
            .write_audio_frame(AudioFrame {
                payload: packet,
                duration: Duration::from_millis(20),
                level: AudioLevel::of_pcm(pcm),
            })
            .await?;
        Ok(())
    }
}
