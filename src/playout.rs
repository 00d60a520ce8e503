//! Playing remote audio: one jitter buffer and Opus decoder per remote track,
//! all pulled on one 20 ms clock, mixed, and written to a sink (speakers, a
//! WAV file, or anything implementing `AudioSink`).

use crate::ids::{ParticipantId, TrackId};
use crate::red_recv::AudioPacket;
use crate::track::RemoteTrack;
use huddle_media::jitter::{JitterBuffer, JitterConfig, JitterStats};
use huddle_media::mixer::{Mixer, ParticipantId as MixId};
use huddle_media::opus_codec::OpusDecoder;
use huddle_media::sink::AudioSink;
use huddle_media::Channels;
use huddle_proto::TrackKind;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

/// What reaches the playout task.
enum Input {
    Track(TrackId, ParticipantId),
    Packet(TrackId, AudioPacket, Instant),
    Ended(TrackId),
    Volume(ParticipantId, f32),
    Mute(ParticipantId, bool),
}

/// Per-track state inside the playout task.
struct Stream {
    participant: ParticipantId,
    mix_id: MixId,
    buffer: JitterBuffer,
    decoder: OpusDecoder,
}

/// Jitter-buffer statistics per remote track, with its publisher.
type Stats = HashMap<TrackId, (ParticipantId, JitterStats)>;

/// Plays every remote audio track added to it, mixed, on one sink.
///
/// ```no_run
/// # #[cfg(feature = "devices")]
/// # async fn demo(mut events: huddle::CallEvents) -> Result<(), huddle::CallError> {
/// use huddle::{CallEvent, Playout, Speaker};
/// let speaker = Speaker::open(None)?; // feature `devices`
/// let playout = Playout::start(Box::new(speaker));
/// while let Some(ev) = events.recv().await {
///     if let CallEvent::TrackSubscribed(track) = ev {
///         playout.add(track); // video tracks are ignored
///     }
/// }
/// # Ok(()) }
/// ```
///
/// Without a sound card, mix into a [`ChannelSink`] (or any [`AudioSink`],
/// such as a [`WavSink`](huddle_media::wav::WavSink)):
///
/// ```no_run
/// # async fn demo(track: huddle::RemoteTrack) {
/// use huddle::{ChannelSink, Playout};
/// let (tx, mut mixed) = tokio::sync::mpsc::channel(50);
/// let playout = Playout::start(Box::new(ChannelSink(tx)));
/// playout.add(track);
/// while let Some(frame) = mixed.recv().await {
///     let _ = frame; // 20 ms, 960 samples at 48 kHz
/// }
/// # }
/// ```
///
/// Dropping it stops playing.
#[derive(Debug)]
pub struct Playout {
    tx: mpsc::UnboundedSender<Input>,
    stats: Arc<Mutex<Stats>>,
    task: JoinHandle<()>,
    readers: Mutex<Vec<JoinHandle<()>>>,
}

impl Playout {
    /// Start the 20 ms playout clock, writing mixed 48 kHz mono frames to `sink`.
    pub fn start(sink: Box<dyn AudioSink + Send>) -> Playout {
        Playout::start_with_config(sink, JitterConfig::default())
    }

    /// Like [`start`](Self::start), with `config` for every track's jitter
    /// buffer (a track whose buffer rejects it is not played, with a warning).
    pub fn start_with_config(sink: Box<dyn AudioSink + Send>, config: JitterConfig) -> Playout {
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(Mutex::new(HashMap::new()));
        let task = tokio::spawn(run(rx, sink, stats.clone(), config));
        Playout {
            tx,
            stats,
            task,
            readers: Mutex::new(Vec::new()),
        }
    }

    /// Play a remote track. Video tracks are ignored (returns false).
    pub fn add(&self, track: RemoteTrack) -> bool {
        if track.kind() != TrackKind::Audio {
            return false;
        }
        let id = track.track_id().clone();
        let _ = self
            .tx
            .send(Input::Track(id.clone(), track.participant_id().clone()));
        let tx = self.tx.clone();
        let reader = tokio::spawn(async move {
            while let Some(p) = track.recv().await {
                let packet = track.audio_packet(&p);
                if tx
                    .send(Input::Packet(id.clone(), packet, Instant::now()))
                    .is_err()
                {
                    return;
                }
            }
            let _ = tx.send(Input::Ended(id));
        });
        if let Ok(mut r) = self.readers.lock() {
            r.push(reader);
        }
        true
    }

    /// Volume of a participant's audio, 0.0 (silent) to 2.0.
    pub fn set_volume(&self, participant: &ParticipantId, volume: f32) {
        let _ = self.tx.send(Input::Volume(participant.clone(), volume));
    }

    /// Mute or unmute a participant locally (the others still hear them).
    pub fn set_muted(&self, participant: &ParticipantId, muted: bool) {
        let _ = self.tx.send(Input::Mute(participant.clone(), muted));
    }

    /// Jitter-buffer statistics per remote track id: (participant id, stats).
    pub fn stats(&self) -> HashMap<TrackId, (ParticipantId, JitterStats)> {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for Playout {
    fn drop(&mut self) {
        self.task.abort();
        if let Ok(r) = self.readers.lock() {
            r.iter().for_each(JoinHandle::abort);
        }
    }
}

async fn run(
    mut rx: mpsc::UnboundedReceiver<Input>,
    mut sink: Box<dyn AudioSink + Send>,
    stats: Arc<Mutex<Stats>>,
    config: JitterConfig,
) {
    let start = Instant::now();
    let mut streams: HashMap<TrackId, Stream> = HashMap::new();
    let mut mixer = Mixer::new(Channels::Mono);
    let mut next_mix_id = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    loop {
        tokio::select! {
            input = rx.recv() => {
                let Some(input) = input else { return };
                match input {
                    Input::Track(id, participant) => {
                        let (buffer, decoder) = match (
                            JitterBuffer::new(config.clone()),
                            OpusDecoder::new(Channels::Mono),
                        ) {
                            (Ok(b), Ok(d)) => (b, d),
                            (Err(e), _) | (_, Err(e)) => {
                                warn!("cannot play track {id}: {e}");
                                continue;
                            }
                        };
                        next_mix_id += 1;
                        let mix_id = MixId(next_mix_id);
                        mixer.add_participant(mix_id);
                        streams.insert(id, Stream { participant, mix_id, buffer, decoder });
                    }
                    Input::Packet(id, packet, arrival) => {
                        if let Some(s) = streams.get_mut(&id) {
                            packet.insert_into(&mut s.buffer, arrival.saturating_duration_since(start));
                        }
                    }
                    Input::Ended(id) => {
                        if let Some(s) = streams.remove(&id) {
                            mixer.remove_participant(s.mix_id);
                        }
                        if let Ok(mut st) = stats.lock() {
                            st.remove(&id);
                        }
                    }
                    Input::Volume(participant, v) => {
                        for s in streams.values().filter(|s| s.participant == participant) {
                            if let Err(e) = mixer.set_volume(s.mix_id, v) {
                                debug!("volume: {e}");
                            }
                        }
                    }
                    Input::Mute(participant, m) => {
                        for s in streams.values().filter(|s| s.participant == participant) {
                            if let Err(e) = mixer.set_muted(s.mix_id, m) {
                                debug!("mute: {e}");
                            }
                        }
                    }
                }
            }
            _ = tick.tick() => {
                let now = start.elapsed();
                let frames: Vec<(MixId, Vec<i16>)> = streams
                    .values_mut()
                    .map(|s| (s.mix_id, s.buffer.pull(now, &mut s.decoder)))
                    .collect();
                let inputs: Vec<(MixId, &[i16])> =
                    frames.iter().map(|(id, f)| (*id, f.as_slice())).collect();
                match mixer.mix(&inputs) {
                    Ok(mixed) => {
                        if let Err(e) = sink.write_frame(&mixed) {
                            warn!("audio sink failed, playout stops: {e}");
                            return;
                        }
                    }
                    Err(e) => debug!("mix: {e}"),
                }
                if let Ok(mut st) = stats.lock() {
                    for (id, s) in &streams {
                        st.insert(id.clone(), (s.participant.clone(), s.buffer.stats()));
                    }
                }
            }
        }
    }
}

/// A sink that hands each mixed frame to the app through a channel.
#[derive(Debug)]
pub struct ChannelSink(pub mpsc::Sender<Vec<i16>>);

impl AudioSink for ChannelSink {
    /// Drops the frame when the app is not keeping up (the channel is full).
    fn write_frame(&mut self, pcm: &[i16]) -> huddle_media::Result<()> {
        let _ = self.0.try_send(pcm.to_vec());
        Ok(())
    }
}
