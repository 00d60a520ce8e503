//! [`PcmStream`]: one remote audio track decoded to PCM, through a jitter
//! buffer, on a 20 ms clock.

use crate::error::CallError;
use crate::ids::TrackId;
use crate::participant::Participant;
use crate::track::RemoteTrack;
use huddle_media::jitter::{JitterBuffer, JitterConfig};
use huddle_media::opus_codec::OpusDecoder;
use huddle_media::Channels;
use huddle_proto::TrackKind;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Frames waiting for the app: 1 s.
const QUEUE: usize = 50;

/// Decoded audio of one remote track: one 20 ms frame of 48 kHz mono PCM
/// every 20 ms, from the first packet until the track ends. Lost packets
/// are concealed; gaps before the jitter buffer fills are silence.
///
/// ```no_run
/// # async fn demo(mut events: huddle::CallEvents) -> Result<(), huddle::CallError> {
/// use huddle::CallEvent;
/// while let Some(ev) = events.recv().await {
///     if let CallEvent::TrackSubscribed(track) = ev {
///         let Ok(mut pcm) = track.into_pcm(Default::default()) else {
///             continue; // a video track
///         };
///         tokio::spawn(async move {
///             while let Some(frame) = pcm.recv().await {
///                 let _ = frame; // 960 samples
///             }
///         });
///     }
/// }
/// # Ok(()) }
/// ```
///
/// Frames are queued for up to one second; if the app reads more slowly,
/// the newest frames are dropped and counted ([`dropped`](Self::dropped)).
#[derive(Debug)]
pub struct PcmStream {
    participant: Participant,
    track_id: TrackId,
    frames: mpsc::Receiver<Vec<i16>>,
    dropped: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl RemoteTrack {
    /// Decode this audio track to PCM (see [`PcmStream`]), with `config`
    /// for its jitter buffer. Fails for a video track or an invalid config.
    pub fn into_pcm(self, config: JitterConfig) -> Result<PcmStream, CallError> {
        if self.kind() != TrackKind::Audio {
            return Err(CallError::InvalidInput(
                "only audio tracks decode to PCM".into(),
            ));
        }
        let buffer =
            JitterBuffer::new(config).map_err(|e| CallError::InvalidInput(e.to_string()))?;
        let decoder = OpusDecoder::new(Channels::Mono)
            .map_err(|e| CallError::InvalidInput(format!("Opus decoder: {e}")))?;
        let (tx, frames) = mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let participant = self.participant().clone();
        let track_id = self.track_id().clone();
        let task = tokio::spawn(run(self, buffer, decoder, tx, dropped.clone()));
        Ok(PcmStream {
            participant,
            track_id,
            frames,
            dropped,
            task,
        })
    }
}

impl PcmStream {
    /// The next 20 ms frame (960 samples), or `None` once the track ended.
    pub async fn recv(&mut self) -> Option<Vec<i16>> {
        self.frames.recv().await
    }

    /// Who speaks on it.
    pub fn participant(&self) -> &Participant {
        &self.participant
    }

    /// The track's room-wide id.
    pub fn track_id(&self) -> &TrackId {
        &self.track_id
    }

    /// Frames dropped because the app did not read them in time.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for PcmStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(
    track: RemoteTrack,
    mut buffer: JitterBuffer,
    mut decoder: OpusDecoder,
    tx: mpsc::Sender<Vec<i16>>,
    dropped: Arc<AtomicU64>,
) {
    // The clock starts with the first packet.
    let Some(first) = track.recv().await else {
        return;
    };
    let start = Instant::now();
    track
        .audio_packet(&first)
        .insert_into(&mut buffer, Duration::ZERO);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    loop {
        tokio::select! {
            packet = track.recv() => {
                let Some(p) = packet else { return };
                track.audio_packet(&p).insert_into(&mut buffer, start.elapsed());
            }
            _ = tick.tick() => {
                let frame = buffer.pull(start.elapsed(), &mut decoder);
                match tx.try_send(frame) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
        }
    }
}
