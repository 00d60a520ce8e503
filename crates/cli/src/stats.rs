//! `--stats`: what this participant receives, once a second, as one JSON
//! line per report on stdout (prefixed `stats `): per video track its rate,
//! the picture size of its last keyframe (which simulcast layer the server
//! sends), whether the server paused it, and its freezes (as WebRTC's
//! statistics count them: a frame that comes more than three times the mean
//! frame interval and 150 ms after the one before, where "comes" is the
//! arrival of the frame's last packet); for audio, packets received and
//! missing (sequence gaps never filled).

use huddle::media::rtp::vp8_keyframe_size;
use huddle::{MediaPacket, RemoteTrack, TrackId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// One remote video as last reported.
#[derive(Default)]
struct Video {
    from: String,
    bytes: u64,
    bytes_reported: u64,
    size: Option<(u16, u16)>,
    paused: bool,
    frames: u64,
    last_frame: Option<Instant>,
    /// Mean frame interval (moving average), seconds.
    mean_interval: Option<f64>,
    freezes: u64,
    freeze_secs: f64,
}

impl Video {
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

/// Audio sequence accounting of one remote track.
#[derive(Default)]
struct Audio {
    highest: Option<u16>,
    received: u64,
    /// Sequence numbers skipped over, minus late arrivals that filled them.
    missing: u64,
}

impl Audio {
    fn on_packet(&mut self, seq: u16) {
        self.received += 1;
        match self.highest {
            None => self.highest = Some(seq),
            Some(h) => {
                let ahead = seq.wrapping_sub(h);
                if ahead == 0 {
                    // A duplicate: counted as received, it fills nothing.
                } else if ahead < 0x8000 {
                    self.missing += u64::from(ahead - 1);
                    self.highest = Some(seq);
                } else {
                    // Late: it fills a gap counted before.
                    self.missing = self.missing.saturating_sub(1);
                }
            }
        }
    }
}

#[derive(Default)]
struct State {
    videos: HashMap<TrackId, Video>,
    audio: HashMap<TrackId, Audio>,
}

/// Shared by the track readers and the reporter.
#[derive(Clone, Default)]
pub struct Stats(Arc<Mutex<State>>);

impl Stats {
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Read `track` until it ends, counting what arrives.
    pub fn watch(&self, track: RemoteTrack) {
        let stats = self.clone();
        tokio::spawn(async move {
            let id = track.track_id().clone();
            let video = track.kind() == huddle::TrackKind::Video;
            let from = track.participant().name().to_string();
            while let Some(p) = track.recv().await {
                stats.with(|s| {
                    if video {
                        let v = s.videos.entry(id.clone()).or_default();
                        v.from.clone_from(&from);
                        count_video(v, &p);
                    } else {
                        s.audio
                            .entry(id.clone())
                            .or_default()
                            .on_packet(p.sequence_number.0);
                    }
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

    /// One report line, rates over `elapsed`.
    fn report(&self, since_start: Duration, elapsed: Duration) -> String {
        let secs = elapsed.as_secs_f64().max(1e-3);
        self.with(|s| {
            let mut videos: Vec<_> = s.videos.iter_mut().collect();
            videos.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
            let videos: Vec<serde_json::Value> = videos
                .into_iter()
                .map(|(id, v)| {
                    let kbps = (v.bytes - v.bytes_reported) as f64 * 8.0 / secs / 1000.0;
                    v.bytes_reported = v.bytes;
                    let (width, height) = v.size.unwrap_or((0, 0));
                    serde_json::json!({
                        "track": id.as_str(), "from": v.from, "kbps": kbps.round(),
                        "width": width, "height": height, "paused": v.paused,
                        "frames": v.frames, "freezes": v.freezes,
                        "freeze_secs": (v.freeze_secs * 1000.0).round() / 1000.0,
                    })
                })
                .collect();
            let received: u64 = s.audio.values().map(|a| a.received).sum();
            let lost: u64 = s.audio.values().map(|a| a.missing).sum();
            let line = serde_json::json!({
                "t_ms": since_start.as_millis() as u64,
                "videos": videos,
                "audio": { "received": received, "lost": lost },
            });
            format!("stats {line}")
        })
    }

    /// Print a report every second until the task is dropped.
    pub async fn report_every_second(self) {
        let start = Instant::now();
        let mut last = start;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tick.tick().await;
            let now = Instant::now();
            println!("{}", self.report(now - start, now - last));
            last = now;
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
    use super::{Audio, Video};
    use std::time::{Duration, Instant};

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
    fn audio_gaps_count_as_lost_until_filled() {
        let mut a = Audio::default();
        for seq in [65533u16, 65534, 1, 2] {
            a.on_packet(seq);
        }
        // 65535 and 0 skipped over the wrap.
        assert_eq!((a.received, a.missing), (4, 2));
        a.on_packet(0); // late
        assert_eq!((a.received, a.missing), (5, 1));
        a.on_packet(2); // duplicate
        assert_eq!((a.received, a.missing), (6, 1));
    }
}
