//! Mixing several remote speakers into one output.
//!
//! Each 20 ms, hand [`Mixer::mix`] the frame of every speaker that has one
//! (frames of the same layout, `channels.frame_len()` samples each). The mixer
//! keeps per-participant volume (`0.0..=2.0`) and mute, set by
//! [`ParticipantId`].
//!
//! # Method
//!
//! 1. Each sample is scaled by the participant's volume in Q14 fixed point
//!    (`s * round(volume * 16384) >> 14`, exact at volume 1.0) and summed in
//!    `i32`: no intermediate can overflow (|s * gain| < 2^30, and the sum of
//!    up to 32 767 streams stays below 2^31).
//! 2. A peak limiter brings the sum under the ceiling ([`CEILING`], about
//!    -0.4 dBFS) without clipping: for each frame it computes the gain that
//!    would put the frame's peak at the ceiling. *Attack is instant*: the gain
//!    never exceeds that value anywhere in the frame. *Release is smooth*: when
//!    the mix gets quieter the gain climbs back toward 1.0 by
//!    [`RELEASE_PER_FRAME`] of the remaining distance per frame (time constant
//!    about 200 ms), ramped sample by sample across the frame, so gain changes
//!    do not click.
//! 3. A final saturating conversion to `i16` is a safety net that the limiter
//!    makes a no-op; nothing ever wraps around.
//!
//! A mix that stays under the ceiling passes through untouched (gain exactly
//! 1.0): one speaker at volume 1.0 comes out bit-exact.

use crate::error::{MediaError, Result};
use crate::format::Channels;
use std::collections::BTreeMap;

/// Largest output magnitude the limiter aims for (0.95 of full scale).
pub const CEILING: i32 = 31_129;

/// Fraction of the distance back to unity gain recovered per 20 ms frame.
pub const RELEASE_PER_FRAME: f32 = 0.1;

/// Fixed-point scale of per-participant volume.
const Q14: f32 = 16_384.0;

/// Identifies one remote participant in a [`Mixer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ParticipantId(pub u64);

#[derive(Debug, Clone, Copy, PartialEq)]
struct Settings {
    volume: f32,
    /// `volume` in Q14.
    gain_q14: i32,
    muted: bool,
}

/// Mixes remote speakers with per-participant volume and mute and a peak
/// limiter (see the [module docs](self)).
#[derive(Debug, Clone)]
pub struct Mixer {
    channels: Channels,
    participants: BTreeMap<ParticipantId, Settings>,
    limiter_gain: f32,
    acc: Vec<i32>,
}

impl Mixer {
    /// A mixer of `channels` frames with no participants.
    pub fn new(channels: Channels) -> Self {
        Mixer {
            channels,
            participants: BTreeMap::new(),
            limiter_gain: 1.0,
            acc: vec![0; channels.frame_len()],
        }
    }

    /// Channel layout of inputs and output.
    pub fn channels(&self) -> Channels {
        self.channels
    }

    /// Add a participant at volume 1.0, unmuted. False if already present
    /// (its settings are kept).
    pub fn add_participant(&mut self, id: ParticipantId) -> bool {
        if self.participants.contains_key(&id) {
            return false;
        }
        self.participants.insert(
            id,
            Settings {
                volume: 1.0,
                gain_q14: Q14 as i32,
                muted: false,
            },
        );
        true
    }

    /// Remove a participant. False if it was not there.
    pub fn remove_participant(&mut self, id: ParticipantId) -> bool {
        self.participants.remove(&id).is_some()
    }

    /// The participants, in id order.
    pub fn participants(&self) -> impl Iterator<Item = ParticipantId> + '_ {
        self.participants.keys().copied()
    }

    /// Set a participant's volume, `0.0..=2.0` (1.0 is unchanged).
    ///
    /// [`MediaError::InvalidConfig`] outside that range (or NaN),
    /// [`MediaError::UnknownParticipant`] for an id not added.
    pub fn set_volume(&mut self, id: ParticipantId, volume: f32) -> Result<()> {
        if !(0.0..=2.0).contains(&volume) {
            return Err(MediaError::InvalidConfig(format!(
                "volume {volume} outside 0.0..=2.0"
            )));
        }
        let s = self
            .participants
            .get_mut(&id)
            .ok_or(MediaError::UnknownParticipant(id.0))?;
        s.volume = volume;
        s.gain_q14 = (volume * Q14).round() as i32;
        Ok(())
    }

    /// Mute or unmute a participant ([`MediaError::UnknownParticipant`] for an
    /// id not added).
    pub fn set_muted(&mut self, id: ParticipantId, muted: bool) -> Result<()> {
        let s = self
            .participants
            .get_mut(&id)
            .ok_or(MediaError::UnknownParticipant(id.0))?;
        s.muted = muted;
        Ok(())
    }

    /// A participant's volume, if present.
    pub fn volume(&self, id: ParticipantId) -> Option<f32> {
        self.participants.get(&id).map(|s| s.volume)
    }

    /// Whether a participant is muted, if present.
    pub fn is_muted(&self, id: ParticipantId) -> Option<bool> {
        self.participants.get(&id).map(|s| s.muted)
    }

    /// The limiter's gain at the end of the last frame (1.0 = not limiting).
    pub fn limiter_gain(&self) -> f32 {
        self.limiter_gain
    }

    /// Mix one frame from each speaker in `inputs` into a new frame.
    ///
    /// Frames of participants that were not added, or are muted, are ignored;
    /// a participant missing from `inputs` contributes silence. Every frame must
    /// be `channels().frame_len()` samples ([`MediaError::FrameSize`]
    /// otherwise, before anything is mixed). No inputs give silence.
    pub fn mix(&mut self, inputs: &[(ParticipantId, &[i16])]) -> Result<Vec<i16>> {
        let mut out = Vec::with_capacity(self.channels.frame_len());
        self.mix_into(inputs, &mut out)?;
        Ok(out)
    }

    /// Like [`mix`](Self::mix), writing into `out` (cleared first).
    pub fn mix_into(
        &mut self,
        inputs: &[(ParticipantId, &[i16])],
        out: &mut Vec<i16>,
    ) -> Result<()> {
        let len = self.channels.frame_len();
        if let Some((_, bad)) = inputs.iter().find(|(_, f)| f.len() != len) {
            return Err(MediaError::FrameSize {
                expected: len,
                got: bad.len(),
            });
        }
        self.acc.clear();
        self.acc.resize(len, 0);
        for (id, frame) in inputs {
            let Some(s) = self.participants.get(id) else {
                continue;
            };
            if s.muted || s.gain_q14 == 0 {
                continue;
            }
            let g = s.gain_q14;
            for (a, &x) in self.acc.iter_mut().zip(frame.iter()) {
                *a = a.saturating_add((i32::from(x) * g) >> 14);
            }
        }

        let peak = self.acc.iter().map(|a| a.unsigned_abs()).max().unwrap_or(0);
        let needed = if peak as f32 > CEILING as f32 {
            CEILING as f32 / peak as f32
        } else {
            1.0
        };
        let released = self.limiter_gain + (1.0 - self.limiter_gain) * RELEASE_PER_FRAME;
        let g_start = self.limiter_gain.min(needed);
        let g_end = released.min(needed);
        self.limiter_gain = g_end;

        out.clear();
        out.reserve(len);
        let ch = self.channels.count();
        let frames = (len / ch).max(1);
        if g_start == 1.0 && g_end == 1.0 {
            out.extend(self.acc.iter().map(|&a| saturate(a)));
        } else {
            for (i, &a) in self.acc.iter().enumerate() {
                let t = (i / ch) as f32 / frames as f32;
                let g = g_start + (g_end - g_start) * t;
                out.push(saturate((a as f32 * g).round() as i32));
            }
        }
        Ok(())
    }
}

fn saturate(a: i32) -> i16 {
    a.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::normalized_cross_correlation;
    use crate::format::FRAME_SAMPLES;
    use crate::source::{collect_all, AudioSource, SpeechLike, Tone};

    const A: ParticipantId = ParticipantId(1);
    const B: ParticipantId = ParticipantId(2);

    fn mixer() -> Mixer {
        let mut m = Mixer::new(Channels::Mono);
        assert!(m.add_participant(A));
        assert!(m.add_participant(B));
        assert!(!m.add_participant(B));
        m
    }

    #[test]
    fn two_full_scale_tones_do_not_clip_or_wrap() {
        let mut m = mixer();
        let mut ta = Tone::new(440.0, i16::MAX).with_frames(50);
        let mut tb = Tone::new(660.0, i16::MAX).with_frames(50);
        let (mut sum, mut out) = (Vec::new(), Vec::new());
        while let (Some(a), Some(b)) = (ta.next_frame(), tb.next_frame()) {
            let o = m.mix(&[(A, &a), (B, &b)]).expect("mix");
            for i in 0..o.len() {
                let s = i32::from(a[i]) + i32::from(b[i]);
                // No wrap: the output never has the opposite sign of a large sum.
                if s.abs() > 1000 {
                    assert_eq!(
                        o[i].signum(),
                        s.signum() as i16,
                        "sample {i}: {s} -> {}",
                        o[i]
                    );
                }
                sum.push((s / 2) as i16);
            }
            out.extend(o);
        }
        let peak = out.iter().map(|s| i32::from(*s).abs()).max().unwrap_or(0);
        assert!(peak <= CEILING, "peak {peak}");
        assert!(peak > 25_000, "limited, not squashed: {peak}");
        let (c, lag) = normalized_cross_correlation(&sum, &out, 10);
        assert!(c > 0.99 && lag == 0, "{c} {lag}");
        assert!(m.limiter_gain() < 0.6);
    }

    #[test]
    fn limiter_releases_when_the_mix_gets_quiet() {
        let mut m = mixer();
        let loud = vec![30_000i16; FRAME_SAMPLES];
        m.mix(&[(A, &loud), (B, &loud)]).expect("mix");
        assert!(m.limiter_gain() < 0.6);
        let quiet = vec![1_000i16; FRAME_SAMPLES];
        let mut last = Vec::new();
        for _ in 0..100 {
            last = m.mix(&[(A, &quiet)]).expect("mix");
        }
        assert!(m.limiter_gain() > 0.999);
        assert!(last.iter().all(|s| (999..=1000).contains(s)));
    }

    #[test]
    fn single_stream_at_unity_is_bit_exact() {
        let mut m = mixer();
        let speech = collect_all(&mut SpeechLike::new(3).with_frames(20));
        for f in speech.chunks(FRAME_SAMPLES) {
            assert_eq!(m.mix(&[(A, f)]).expect("mix"), f);
        }
    }

    #[test]
    fn mute_removes_a_stream() {
        let mut m = mixer();
        let a = collect_all(&mut Tone::new(300.0, 8000).with_frames(1));
        let b = collect_all(&mut Tone::new(500.0, 8000).with_frames(1));
        m.set_muted(B, true).expect("mute");
        assert_eq!(m.is_muted(B), Some(true));
        assert_eq!(m.mix(&[(A, &a), (B, &b)]).expect("mix"), a);
        m.set_muted(B, false).expect("unmute");
        let both = m.mix(&[(A, &a), (B, &b)]).expect("mix");
        assert_eq!(both[100], a[100] + b[100]);
    }

    #[test]
    fn volume_scales() {
        let mut m = mixer();
        let a = collect_all(&mut Tone::new(300.0, 10_000).with_frames(1));
        m.set_volume(A, 0.5).expect("volume");
        let half = m.mix(&[(A, &a)]).expect("mix");
        for (h, x) in half.iter().zip(&a) {
            assert!((i32::from(*h) - i32::from(*x) / 2).abs() <= 1);
        }
        m.set_volume(A, 2.0).expect("volume");
        let double = m.mix(&[(A, &a)]).expect("mix");
        for (d, x) in double.iter().zip(&a) {
            assert!((i32::from(*d) - 2 * i32::from(*x)).abs() <= 1);
        }
        m.set_volume(A, 0.0).expect("volume");
        assert!(m.mix(&[(A, &a)]).expect("mix").iter().all(|s| *s == 0));
        assert_eq!(m.volume(A), Some(0.0));
    }

    #[test]
    fn participants_come_and_go() {
        let mut m = mixer();
        let a = vec![100i16; FRAME_SAMPLES];
        assert!(m.remove_participant(A));
        assert!(!m.remove_participant(A));
        assert_eq!(m.participants().collect::<Vec<_>>(), vec![B]);
        assert!(m.mix(&[(A, &a)]).expect("mix").iter().all(|s| *s == 0));
        assert!(matches!(
            m.set_volume(A, 1.0),
            Err(MediaError::UnknownParticipant(1))
        ));
        assert!(matches!(
            m.set_muted(A, true),
            Err(MediaError::UnknownParticipant(1))
        ));
    }

    #[test]
    fn bad_input_is_an_error() {
        let mut m = mixer();
        assert!(m.set_volume(A, 2.5).is_err());
        assert!(m.set_volume(A, f32::NAN).is_err());
        assert!(m.set_volume(A, -0.1).is_err());
        assert!(matches!(
            m.mix(&[(A, &[0i16; 10])]),
            Err(MediaError::FrameSize { .. })
        ));
        assert_eq!(m.mix(&[]).expect("mix"), vec![0; FRAME_SAMPLES]);
    }

    #[test]
    fn stereo_and_many_streams() {
        let mut m = Mixer::new(Channels::Stereo);
        let loud = vec![i16::MIN; 2 * FRAME_SAMPLES];
        let ids: Vec<_> = (0..64).map(ParticipantId).collect();
        for id in &ids {
            m.add_participant(*id);
            m.set_volume(*id, 2.0).expect("volume");
        }
        let inputs: Vec<(ParticipantId, &[i16])> = ids.iter().map(|id| (*id, &loud[..])).collect();
        let out = m.mix(&inputs).expect("mix");
        assert!(out.iter().all(|s| *s < 0 && i32::from(*s) >= -CEILING));
    }
}
