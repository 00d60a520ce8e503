//! Synthetic media: when each publisher sends, how big each packet is, and
//! the payload bytes (a codec-like header, the [`Probe`], filler).
//!
//! Audio is one Opus-sized packet every 20 ms. Video is `fps` frames per
//! second at `video_kbps`, each frame split into equal MTU-sized packets, the
//! last one with the marker bit; every `keyframe_secs` a keyframe
//! `keyframe_factor` times larger. Frames go out as a burst, as an unpaced
//! encoder would send them.

use crate::probe::{Probe, FLAG_KEYFRAME, MIN_PAYLOAD, PROBE_OFFSET};
use bytes::Bytes;
use huddle_proto::TrackKind;
use serde::Serialize;
use std::time::{Duration, Instant};

/// Largest RTP payload of a video packet (keeps the datagram under ~1200 B).
pub const VIDEO_MAX_PAYLOAD: usize = 1150;
/// Audio packet interval.
pub const AUDIO_INTERVAL: Duration = Duration::from_millis(20);
/// RTP clock ticks per audio packet (48 kHz, 20 ms).
const AUDIO_TICKS: u32 = 960;

/// Shape of the media every publisher sends.
#[derive(Debug, Clone, Serialize)]
pub struct MediaConfig {
    /// RTP payload bytes of an audio packet.
    pub audio_bytes: usize,
    /// Video bitrate of inter frames, in kbit/s (keyframes add to it).
    pub video_kbps: u32,
    /// Video frames per second.
    pub fps: u32,
    /// Seconds between keyframes.
    pub keyframe_secs: f64,
    /// How many times larger a keyframe is than an inter frame.
    pub keyframe_factor: u32,
    /// Send video as three simulcast layers ([`SIMULCAST_LAYERS`]).
    pub simulcast: bool,
}

/// The simulcast layers a publisher sends with `--simulcast`, lowest first:
/// RID and the divisor of `video_kbps` (a layer at half the resolution
/// has a quarter of the pixels).
pub const SIMULCAST_LAYERS: [(&str, u32); 3] = [("q", 16), ("h", 4), ("f", 1)];

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            audio_bytes: 100,
            video_kbps: 800,
            fps: 30,
            keyframe_secs: 2.0,
            keyframe_factor: 4,
            simulcast: false,
        }
    }
}

impl MediaConfig {
    /// The same media with video at `1 / divisor` of the bitrate (a lower
    /// simulcast layer).
    pub fn scaled_video(&self, divisor: u32) -> Self {
        Self {
            video_kbps: (self.video_kbps / divisor.max(1)).max(1),
            ..self.clone()
        }
    }
}

/// One frame to send: packet payload sizes and RTP facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Payload size of each packet, in order.
    pub sizes: Vec<usize>,
    /// Whether this is a keyframe.
    pub keyframe: bool,
    /// RTP timestamp increment after this frame.
    pub rtp_ticks: u32,
}

/// The send schedule of one track.
#[derive(Debug, Clone)]
pub struct Generator {
    kind: TrackKind,
    config: MediaConfig,
    next_due: Instant,
    frame_index: u64,
}

impl Generator {
    /// A schedule whose first frame is due at `start`.
    pub fn new(kind: TrackKind, config: MediaConfig, start: Instant) -> Self {
        Self {
            kind,
            config,
            next_due: start,
            frame_index: 0,
        }
    }

    /// When the next frame is due.
    pub fn next_due(&self) -> Instant {
        self.next_due
    }

    /// Time between frames.
    pub fn interval(&self) -> Duration {
        match self.kind {
            TrackKind::Audio => AUDIO_INTERVAL,
            TrackKind::Video => Duration::from_secs_f64(1.0 / f64::from(self.config.fps.max(1))),
        }
    }

    /// The next frame; moves the schedule one interval on.
    pub fn next_frame(&mut self) -> Frame {
        let frame = match self.kind {
            TrackKind::Audio => Frame {
                sizes: vec![self.config.audio_bytes.max(MIN_PAYLOAD)],
                keyframe: false,
                rtp_ticks: AUDIO_TICKS,
            },
            TrackKind::Video => self.video_frame(),
        };
        self.frame_index += 1;
        self.next_due += self.interval();
        frame
    }

    fn video_frame(&self) -> Frame {
        let fps = self.config.fps.max(1);
        let every = ((self.config.keyframe_secs * f64::from(fps)).round() as u64).max(1);
        let keyframe = self.frame_index.is_multiple_of(every);
        let mut bytes = (u64::from(self.config.video_kbps) * 1000 / 8 / u64::from(fps)) as usize;
        if keyframe {
            bytes *= self.config.keyframe_factor.max(1) as usize;
        }
        let count = bytes.div_ceil(VIDEO_MAX_PAYLOAD).max(1);
        let each = (bytes / count).max(MIN_PAYLOAD);
        Frame {
            sizes: vec![each; count],
            keyframe,
            rtp_ticks: 90_000 / fps,
        }
    }
}

/// Build a payload of `size` bytes carrying `probe`. `first` marks the first
/// packet of a frame (VP8 start bit).
pub fn payload(size: usize, first: bool, probe: &Probe) -> Bytes {
    let mut buf = vec![0x5au8; size.max(MIN_PAYLOAD)];
    buf[..PROBE_OFFSET].fill(0);
    match probe.kind {
        // Opus TOC: config 15 (SILK WB 20 ms), mono, one frame.
        TrackKind::Audio => buf[0] = 0x78,
        TrackKind::Video => {
            // VP8 payload descriptor (S bit on a frame's first packet), then
            // on that packet the VP8 header's P bit: 0 for a keyframe.
            buf[0] = if first { 0x10 } else { 0x00 };
            if first {
                buf[1] = if probe.flags & FLAG_KEYFRAME != 0 {
                    0x00
                } else {
                    0x01
                };
            }
        }
    }
    probe.write(&mut buf);
    Bytes::from(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_frames_have_the_bitrate_and_keyframes() {
        let start = Instant::now();
        let mut g = Generator::new(TrackKind::Video, MediaConfig::default(), start);
        let first = g.next_frame();
        assert!(first.keyframe);
        assert!(first.sizes.iter().all(|&s| s <= VIDEO_MAX_PAYLOAD));
        let second = g.next_frame();
        assert!(!second.keyframe);
        // 800 kbit/s at 30 fps: 3333 B per frame in 3 packets.
        assert_eq!(second.sizes.len(), 3);
        assert_eq!(first.sizes.len(), 12);
        assert_eq!(g.next_due(), start + g.interval() * 2);
        let mut keyframes = 1;
        for _ in 2..60 {
            keyframes += usize::from(g.next_frame().keyframe);
        }
        assert_eq!(keyframes, 1, "one keyframe per 2 s at 30 fps");
        assert!(g.next_frame().keyframe);
    }

    #[test]
    fn payload_carries_the_probe() {
        let probe = Probe {
            kind: TrackKind::Audio,
            flags: 0,
            publisher: 3,
            seq: 9,
            send_ns: 42,
        };
        let p = payload(100, true, &probe);
        assert_eq!(p.len(), 100);
        assert_eq!(Probe::read(&p), Some(probe));
        assert_eq!(payload(1, true, &probe).len(), MIN_PAYLOAD);
    }
}
