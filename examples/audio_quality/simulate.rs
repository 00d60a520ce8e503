//! The simulated path (`--simulated`): the sender's encoder (and RED), the
//! impairment model and the receiver's jitter buffer and decoder on a
//! simulated clock.

use crate::{Condition, Measured, SETTLE_FRAMES, TAIL_FRAMES};
use huddle_media::jitter::{JitterBuffer, JitterConfig, RtpAudioPacket};
use huddle_media::opus_codec::{EncoderConfig, OpusDecoder, OpusEncoder};
use huddle_media::rtp::{RedEncoder, RedEncoderConfig};
use huddle_media::{Channels, FRAME_SAMPLES};
use huddle_wire::red_distance::{RedDistance, RedDistancePolicy};
use std::time::Duration;

/// Network delay of the simulated path besides the impairment (loopback).
const SIMULATED_BASE_DELAY: Duration = Duration::from_millis(1);
/// Phase of the simulated 20 ms playout clock against the sender's: the
/// middle of the range, so the wait for the next pull is the average one.
const SIMULATED_PULL_PHASE: Duration = Duration::from_millis(10);
/// Packets per loss report fed to the RED distance rule (an RTCP receiver
/// report every second).
const REPORT_PACKETS: usize = 50;
/// Opus's payload type inside the RED blocks.
const OPUS_PT: u8 = 111;

/// Whether and how the sender wraps its frames in RED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RedMode {
    /// Plain Opus packets.
    Off,
    /// RED at this distance (0..=8) throughout.
    Fixed(u8),
    /// RED with the distance set by `RedDistancePolicy::default()` from a
    /// loss report every [`REPORT_PACKETS`] packets.
    Auto,
}

impl RedMode {
    /// `off`, `auto` or a distance 0..=8.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(RedMode::Off),
            "auto" => Ok(RedMode::Auto),
            d => match d.parse::<u8>() {
                Ok(d) if d <= huddle_media::rtp::MAX_RED_DISTANCE => Ok(RedMode::Fixed(d)),
                _ => Err(format!("expected off, auto or 0..=8, got {d:?}")),
            },
        }
    }

    /// As written on the command line.
    pub(crate) fn label(self) -> String {
        match self {
            RedMode::Off => "off".into(),
            RedMode::Auto => "auto".into(),
            RedMode::Fixed(d) => d.to_string(),
        }
    }
}

/// The path of one condition on a simulated clock: alice's frames (1 s of
/// silence, the file, 0.5 s of silence) are Opus-encoded every 20 ms
/// (wrapped in RED unless `red` is off), given their fates by the
/// impairment model, and pulled from bob's jitter buffer every 20 ms into
/// the Opus decoder, as `huddle::Playout` does.
///
/// With `RedMode::Auto` the sender's distance follows a loss report every
/// second: the fraction of the last second's packets the model dropped,
/// taken at once (a real report comes one round trip later).
pub(crate) fn simulate_condition(
    cond: &Condition,
    speech: &[Vec<i16>],
    encoder: &EncoderConfig,
    jitter: &JitterConfig,
    red: RedMode,
) -> anyhow::Result<Measured> {
    let silence = vec![0i16; FRAME_SAMPLES];
    let frames: Vec<&[i16]> = std::iter::repeat_n(silence.as_slice(), SETTLE_FRAMES)
        .chain(speech.iter().map(Vec::as_slice))
        .chain(std::iter::repeat_n(silence.as_slice(), TAIL_FRAMES))
        .collect();
    let mut enc = OpusEncoder::new(encoder.clone())?;
    let mut red_distance = RedDistance::new(match red {
        RedMode::Fixed(d) => RedDistancePolicy::fixed(d),
        RedMode::Off | RedMode::Auto => RedDistancePolicy::default(),
    });
    let mut red_enc = RedEncoder::new(RedEncoderConfig {
        primary_pt: OPUS_PT,
        distance: red_distance.get(),
        ..RedEncoderConfig::default()
    })?;
    let mut model = huddle_netem::Model::new(cond.impairment.clone());
    let mut arrivals = Vec::new();
    let mut payload_bytes = 0u64;
    let mut distances = [0u64; huddle_media::rtp::MAX_RED_DISTANCE as usize + 1];
    let mut red_payload = Vec::new();
    let mut reported = model.counters();
    for (i, frame) in frames.iter().enumerate() {
        let timestamp = (i as u32).wrapping_mul(FRAME_SAMPLES as u32);
        let opus = enc.encode(frame)?;
        let payload = if red == RedMode::Off {
            opus
        } else {
            if red == RedMode::Auto && i > 0 && i % REPORT_PACKETS == 0 {
                let now = model.counters();
                let offered = now.offered - reported.offered;
                let lost = now.lost - reported.lost;
                red_enc.set_distance(red_distance.on_report(lost as f64 / offered.max(1) as f64));
                reported = now;
            }
            distances[usize::from(red_enc.distance())] += 1;
            red_enc.encode_into(timestamp, &opus, &mut red_payload)?;
            red_payload.clone()
        };
        payload_bytes += payload.len() as u64;
        let sent = Duration::from_millis(20 * i as u64);
        for at in model.fate(sent) {
            let packet = RtpAudioPacket {
                seq: i as u16,
                timestamp,
                ssrc: 1,
                payload: payload.clone(),
                marker: i == 0,
            };
            arrivals.push((at + SIMULATED_BASE_DELAY, packet));
        }
    }
    arrivals.sort_by_key(|(at, _)| *at);
    let mut jb = JitterBuffer::new(jitter.clone())?;
    let mut dec = OpusDecoder::new(Channels::Mono)?;
    let mut heard = Vec::with_capacity((frames.len() + 20) * FRAME_SAMPLES);
    let mut next = 0;
    for k in 0..frames.len() as u64 + 20 {
        let now = Duration::from_millis(20 * k) + SIMULATED_PULL_PHASE;
        while next < arrivals.len() && arrivals[next].0 <= now {
            let (at, packet) = arrivals[next].clone();
            if red == RedMode::Off {
                jb.insert(packet, at);
            } else {
                jb.insert_red(packet, OPUS_PT, at)?;
            }
            next += 1;
        }
        heard.extend(jb.pull(now, &mut dec));
    }
    let counters = model.counters();
    Ok(Measured {
        heard,
        jb: jb.stats(),
        relay_offered: counters.offered,
        relay_lost: counters.lost,
        payload_kbps: Some(payload_bytes as f64 * 8.0 / (frames.len() as f64 * 20.0)),
        red_distances: (red != RedMode::Off).then_some(distances),
    })
}
