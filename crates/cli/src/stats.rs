//! `--stats`: what this participant receives, four times a second (so what
//! a reader takes is at most 250 ms old), as one JSON line per report on
//! stdout (prefixed `stats `): per video track its rate over the last second,
//! the picture size of its last keyframe (which simulcast layer the server
//! sends), whether the server paused it, and its freezes (as WebRTC's
//! statistics count them: a frame that comes more than three times the mean
//! frame interval and 150 ms after the one before, where "comes" is the
//! arrival of the frame's last packet); for audio, played through a jitter
//! buffer and an Opus decoder to no device (as `huddle::Playout` plays it
//! to speakers), what the listener would get: packets received, packets
//! missing at their turn (`lost`), how many of those the redundancy made up
//! for (`recovered`: RED copies and Opus in-band FEC), and the rest
//! (`unrecovered`: concealed, audio the listener loses).

use huddle::media::rtp::vp8_keyframe_size;
use huddle::{JitterStats, MediaPacket, NullSink, Playout, RemoteTrack, TrackId};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// One remote video as last reported.
#[derive(Default)]
struct Video {
    from: String,
    bytes: u64,
    /// `bytes` at the reports of the last second or so, oldest first.
    reported: VecDeque<(Instant, u64)>,
    size: Option<(u16, u16)>,
    paused: bool,
    frames: u64,
    last_frame: Option<Instant>,
    /// Mean frame interval (moving average), seconds.
    mean_interval: Option<f64>,
    freezes: u64,
    freeze_secs: f64,
}

/// How often a report is printed.
const REPORT_EVERY: Duration = Duration::from_millis(250);
/// The window the rates are taken over.
const RATE_WINDOW: Duration = Duration::from_secs(1);

impl Video {
    /// Kilobits per second over the last `RATE_WINDOW` (or since the first
    /// report, when that is more recent), as of a report at `now`.
    fn kbps(&mut self, now: Instant) -> f64 {
        // Keep the newest snapshot at least a window old, and all after it.
        while self.reported.len() > 1 && now - self.reported[1].0 >= RATE_WINDOW {
            self.reported.pop_front();
        }
        let rate = match self.reported.front() {
            Some(&(at, bytes)) if now > at => {
                (self.bytes - bytes) as f64 * 8.0 / (now - at).as_secs_f64() / 1000.0
            }
            _ => 0.0,
        };
        self.reported.push_back((now, self.bytes));
        rate
    }

    /// The last packet of a frame arrived at `now`.
    fn on_frame(&mut self, now: Instant) {
        self.frames += 1;
        if let Some(last) = self.last_frame {
            let gap = (now - last).as_secs_f64();
            if let Some(mean) = self.mean_interval {
                if gap > (3.0 * mean).max(mean + 0.150) {
                    self.freezes += 1;
                    self.freeze_secs += gap;
                }
                self.mean_interval = Some(mean * 0.9 + gap * 0.1);
            } else {
                self.mean_interval = Some(gap);
            }
        }
        self.last_frame = Some(now);
    }
}

/// Audio counts of one remote track, summed over its subscriptions (a
/// track subscribed again starts a new jitter buffer, whose counts start
/// from zero).
#[derive(Default, Clone, Copy)]
struct Audio {
    /// Counts of the subscriptions before the current one.
    before: AudioCounts,
    /// The current subscription's, as last read.
    current: AudioCounts,
}

/// What a jitter buffer says about one remote audio track.
#[derive(Default, Clone, Copy, PartialEq, Debug)]
struct AudioCounts {
    received: u64,
    lost: u64,
    recovered: u64,
}

impl AudioCounts {
    fn of(s: &JitterStats) -> Self {
        AudioCounts {
            received: s.packets_received,
            lost: s.lost,
            recovered: s.red_recovered_frames + s.fec_recovered_frames,
        }
    }

    fn add(self, o: AudioCounts) -> Self {
        AudioCounts {
            received: self.received + o.received,
            lost: self.lost + o.lost,
            recovered: self.recovered + o.recovered,
        }
    }
}

impl Audio {
    /// The jitter buffer now says `now`.
    fn update(&mut self, now: AudioCounts) {
        if now.received < self.current.received {
            // A new subscription: its buffer counts from zero.
            self.before = self.before.add(self.current);
        }
        self.current = now;
    }

    fn total(&self) -> AudioCounts {
        self.before.add(self.current)
    }
}

#[derive(Default)]
struct State {
    videos: HashMap<TrackId, Video>,
    audio: HashMap<TrackId, Audio>,
}

/// Shared by the track readers and the reporter.
#[derive(Clone)]
pub struct Stats {
    state: Arc<Mutex<State>>,
    /// Plays the remote audio to no device, for its jitter-buffer counts.
    playout: Arc<Playout>,
}

impl Stats {
    /// Counts nothing yet; starts the playout clock (inside a runtime).
    pub fn new() -> Self {
        Stats {
            state: Arc::default(),
            playout: Arc::new(Playout::start(Box::new(NullSink::new()))),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Play remote audio `track` (to no device), counting what the listener
    /// would get.
    pub fn listen(&self, track: RemoteTrack) {
        self.playout.add(track);
    }

    /// Read video `track` until it ends, counting what arrives.
    pub fn watch(&self, track: RemoteTrack) {
        let stats = self.clone();
        tokio::spawn(async move {
            let id = track.track_id().clone();
            let from = track.participant().name().to_string();
            while let Some(p) = track.recv().await {
                stats.with(|s| {
                    let v = s.videos.entry(id.clone()).or_default();
                    v.from.clone_from(&from);
                    count_video(v, &p);
                });
            }
        });
    }

    /// The server paused (or resumed) sending a video. The gap a pause
    /// makes is no freeze: the next frame starts the count afresh.
    pub fn set_paused(&self, track: &TrackId, paused: bool) {
        self.with(|s| {
            let v = s.videos.entry(track.clone()).or_default();
            v.paused = paused;
            v.last_frame = None;
        });
    }

    /// One report line at `now`, rates over the last second.
    fn report_line(&self, since_start: Duration, now: Instant) -> String {
        let played = self.playout.stats();
        self.with(|s| {
            for (id, (_, jitter)) in &played {
                s.audio
                    .entry(id.clone())
                    .or_default()
                    .update(AudioCounts::of(jitter));
            }
            let mut videos: Vec<_> = s.videos.iter_mut().collect();
            videos.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
            let videos: Vec<serde_json::Value> = videos
                .into_iter()
                .map(|(id, v)| {
                    let kbps = v.kbps(now);
                    let (width, height) = v.size.unwrap_or((0, 0));
                    serde_json::json!({
                        "track": id.as_str(), "from": v.from, "kbps": kbps.round(),
                        "width": width, "height": height, "paused": v.paused,
                        "frames": v.frames, "freezes": v.freezes,
                        "freeze_secs": (v.freeze_secs * 1000.0).round() / 1000.0,
                    })
                })
                .collect();
            let audio = s
                .audio
                .values()
                .fold(AudioCounts::default(), |sum, a| sum.add(a.total()));
            let line = serde_json::json!({
                "t_ms": since_start.as_millis() as u64,
                "videos": videos,
                "audio": {
                    "received": audio.received,
                    "lost": audio.lost,
                    "recovered": audio.recovered,
                    "unrecovered": audio.lost.saturating_sub(audio.recovered),
                },
            });
            format!("stats {line}")
        })
    }

    /// Print a report every 250 ms until the task is dropped.
    pub async fn report(self) {
        let start = Instant::now();
        let mut tick = tokio::time::interval(REPORT_EVERY);
        tick.tick().await;
        loop {
            tick.tick().await;
            let now = Instant::now();
            println!("{}", self.report_line(now - start, now));
        }
    }
}

fn count_video(v: &mut Video, p: &MediaPacket) {
    v.bytes += p.payload.len() as u64;
    if let Some(size) = vp8_keyframe_size(&p.payload) {
        v.size = Some(size);
    }
    if p.marker {
        v.on_frame(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::{Audio, AudioCounts, Video};
    use std::time::{Duration, Instant};

    #[test]
    fn the_rate_is_over_the_last_second() {
        let mut v = Video::default();
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(v.kbps(at(0)), 0.0);
        // 1,000 bytes every 250 ms: 32 kb/s, at every report.
        for i in 1..=8 {
            v.bytes += 1000;
            assert!((v.kbps(at(i * 250)) - 32.0).abs() < 1e-9, "report {i}");
        }
        // Nothing more: the rate falls over the next second, to zero.
        assert!((v.kbps(at(2250)) - 24.0).abs() < 1e-9);
        assert!((v.kbps(at(3000)) - 0.0).abs() < 1e-9);
    }

    #[test]
    fn a_late_frame_is_a_freeze() {
        let mut v = Video::default();
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        for i in 0..10 {
            v.on_frame(at(i * 33));
        }
        assert_eq!(v.freezes, 0);
        v.on_frame(at(9 * 33 + 100)); // late, but under mean + 150 ms
        assert_eq!(v.freezes, 0);
        v.on_frame(at(9 * 33 + 100 + 400));
        assert_eq!((v.freezes, v.frames), (1, 12));
        assert!((v.freeze_secs - 0.4).abs() < 1e-9);
    }

    #[test]
    fn audio_counts_add_up_over_subscriptions() {
        let counts = |received, lost, recovered| AudioCounts {
            received,
            lost,
            recovered,
        };
        let mut a = Audio::default();
        a.update(counts(100, 4, 3));
        a.update(counts(150, 5, 3));
        assert_eq!(a.total(), counts(150, 5, 3));
        // Subscribed again: a new buffer, counting from zero.
        a.update(counts(20, 1, 0));
        assert_eq!(a.total(), counts(170, 6, 3));
    }
}
