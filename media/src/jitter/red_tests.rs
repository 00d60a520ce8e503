//! RED into the jitter buffer, on a fake clock: a fake decoder that logs
//! which packet it decoded, and real Opus.

use crate::error::Result;
use crate::format::{Channels, FRAME_SAMPLES};
use crate::jitter::{FrameDecoder, InsertOutcome, JitterBuffer, JitterConfig, RtpAudioPacket};
use crate::rtp::{RedEncoder, RedEncoderConfig};
use std::time::Duration;

const OPUS_PT: u8 = 111;

/// Decodes a payload to a frame holding its tag (first two bytes), and logs
/// what it was asked.
#[derive(Debug, Default)]
struct Tagged {
    decoded: Vec<u16>,
    fec: usize,
    concealed: usize,
}

fn tag(payload: &[u8]) -> u16 {
    u16::from_be_bytes([payload[0], payload[1]])
}

impl FrameDecoder for Tagged {
    fn channels(&self) -> Channels {
        Channels::Mono
    }
    fn decode(&mut self, payload: &[u8]) -> Result<Vec<i16>> {
        self.decoded.push(tag(payload));
        Ok(vec![tag(payload) as i16; FRAME_SAMPLES])
    }
    fn decode_fec(&mut self, _next: &[u8]) -> Result<Vec<i16>> {
        self.fec += 1;
        Ok(vec![0; FRAME_SAMPLES])
    }
    fn conceal(&mut self) -> Result<Vec<i16>> {
        self.concealed += 1;
        Ok(vec![0; FRAME_SAMPLES])
    }
}

fn ms(x: u64) -> Duration {
    Duration::from_millis(x)
}

/// A 40-byte frame tagged with its index.
fn frame(i: u16) -> Vec<u8> {
    let mut f = vec![0x55; 40];
    f[..2].copy_from_slice(&i.to_be_bytes());
    f
}

/// `n` packets, sent every 20 ms and arriving 5 ms later, RED with
/// `distance` when `Some`, plain otherwise; `lost(i)` are dropped.
fn packets(
    n: u16,
    distance: Option<u8>,
    lost: impl Fn(u16) -> bool,
) -> Vec<(Duration, RtpAudioPacket)> {
    let mut red = RedEncoder::new(RedEncoderConfig {
        distance: distance.unwrap_or(0),
        ..RedEncoderConfig::default()
    })
    .expect("encoder");
    let mut out = Vec::new();
    let mut sent = Vec::new();
    for i in 0..n {
        let ts = u32::from(i) * 960;
        let payload = if distance.is_some() {
            red.encode_into(ts, &frame(i), &mut out).expect("fits");
            out.clone()
        } else {
            frame(i)
        };
        if !lost(i) {
            let p = RtpAudioPacket {
                seq: i,
                timestamp: ts,
                ssrc: 3,
                payload,
                marker: i == 0,
            };
            sent.push((ms(20 * u64::from(i) + 5), p));
        }
    }
    sent
}

/// Insert on arrival (RED or plain), pull every 20 ms from 10 ms, until
/// every packet has arrived and been played (so no end-of-stream
/// concealment is counted).
fn play<D: FrameDecoder>(
    jb: &mut JitterBuffer,
    dec: &mut D,
    arrivals: &[(Duration, RtpAudioPacket)],
    red: bool,
) -> Vec<i16> {
    let mut next = 0;
    let mut pcm = Vec::new();
    let mut now = ms(10);
    while (next < arrivals.len() || jb.buffered_packets() > 0) && now < ms(100_000) {
        while next < arrivals.len() && arrivals[next].0 <= now {
            let (t, p) = arrivals[next].clone();
            if red {
                jb.insert_red(p, OPUS_PT, t).expect("valid RED");
            } else {
                jb.insert(p, t);
            }
            next += 1;
        }
        pcm.extend(jb.pull(now, dec));
        now += ms(20);
    }
    pcm
}

fn lost_single(i: u16) -> bool {
    [10, 30, 50, 70, 90].contains(&i)
}

#[test]
fn a_lost_packet_is_played_from_its_copy() {
    let mut jb = JitterBuffer::new(JitterConfig::default()).expect("config");
    let mut dec = Tagged::default();
    play(&mut jb, &mut dec, &packets(100, Some(1), lost_single), true);
    // Every frame, the lost ones included, decoded from its own bytes, in order.
    assert_eq!(dec.decoded, (0..100).collect::<Vec<u16>>());
    let s = jb.stats();
    assert_eq!(s.lost, 5, "{s:?}");
    assert_eq!(s.red_recovered_frames, 5, "{s:?}");
    assert_eq!((s.fec_recovered_frames, dec.fec), (0, 0), "{s:?}");
    // The first loss came with no packet in hand: one concealment frame
    // played before its copy (then played behind it); after it the hold
    // keeps the copy in time.
    assert!(s.concealed_frames <= 1, "{s:?}");
    assert_eq!(
        s.red_received, 94,
        "one copy in each packet received but the first"
    );
    assert_eq!(s.packets_received, 95);
}

#[test]
fn without_red_the_same_losses_are_rebuilt_from_fec_or_concealed() {
    let mut jb = JitterBuffer::new(JitterConfig::default()).expect("config");
    let mut dec = Tagged::default();
    play(&mut jb, &mut dec, &packets(100, None, lost_single), false);
    let s = jb.stats();
    assert_eq!(s.lost, 5, "{s:?}");
    assert_eq!(s.red_recovered_frames, 0);
    assert_eq!(s.fec_recovered_frames + s.concealed_frames, 5, "{s:?}");
    assert!(lost_single(10) && !dec.decoded.contains(&10));
}

#[test]
fn bursts_up_to_the_distance_are_played_from_copies() {
    // Bursts of 3 from packet 20 on, every 25 packets.
    let lost = |i: u16| i >= 20 && i % 25 < 3;
    let mut jb = JitterBuffer::new(JitterConfig::default()).expect("config");
    let mut dec = Tagged::default();
    play(&mut jb, &mut dec, &packets(200, Some(3), lost), true);
    let s = jb.stats();
    let lost_count = (0..200).filter(|&i| lost(i)).count() as u64;
    assert_eq!(s.lost, lost_count, "{s:?}");
    // The first burst finds one packet in hand at most; from then on the
    // hold keeps three and every burst is played from its copies.
    let after_first: Vec<u16> = dec.decoded.iter().copied().filter(|&i| i >= 45).collect();
    assert_eq!(after_first, (45..200).collect::<Vec<u16>>());
    assert!(s.red_recovered_frames >= lost_count - 3, "{s:?}");
    assert!(s.target_delay_ms >= 60.0, "holds three packets: {s:?}");

    assert!(s.concealed_frames <= 3, "only in the first burst: {s:?}");
    // Holding at most one packet (red_hold_packets 1): the copies of a
    // burst of 3 come after their turn; each burst is concealed while they
    // come, and the copies that would put playout further behind than it
    // wants are dropped as late, not played behind the timeline (which
    // would be taken back by accelerating).
    let config = JitterConfig {
        red_hold_packets: 1,
        ..JitterConfig::default()
    };
    let mut jb = JitterBuffer::new(config).expect("config");
    let mut dec = Tagged::default();
    play(&mut jb, &mut dec, &packets(200, Some(3), lost), true);
    let s1 = jb.stats();
    assert!(s1.concealed_frames >= s.concealed_frames + 10, "{s1:?}");
    assert!(s1.late >= 10, "{s1:?}");
    assert!(s1.accelerated_frames <= 1, "{s1:?}");
    assert!(s1.target_delay_ms < 60.0, "{s1:?}");
}

/// What the sender does at 38 % loss and more: distance 8. Bursts of 7
/// are played from the copies once the hold keeps 8 packets, and never
/// more than the copies reach back (RED at distance 3 plays the same
/// bursts half concealed).
#[test]
fn bursts_of_seven_are_played_from_copies_at_distance_eight() {
    let lost = |i: u16| i >= 20 && i % 40 < 7;
    let lost_count = (0..400).filter(|&i| lost(i)).count() as u64;
    let run = |distance: u8| {
        let mut jb = JitterBuffer::new(JitterConfig::default()).expect("config");
        let mut dec = Tagged::default();
        play(&mut jb, &mut dec, &packets(400, Some(distance), lost), true);
        (jb.stats(), dec)
    };
    let (s, dec) = run(8);
    assert_eq!(s.lost, lost_count, "{s:?}");
    // After the first burst every frame is played from itself or its copy.
    let after_first: Vec<u16> = dec.decoded.iter().copied().filter(|&i| i >= 60).collect();
    assert_eq!(after_first, (60..400).collect::<Vec<u16>>());
    assert!(s.concealed_frames <= 7, "only in the first burst: {s:?}");
    assert!(s.target_delay_ms >= 160.0, "holds eight packets: {s:?}");
    let (s3, _) = run(3);
    assert!(
        s3.concealed_frames >= s.concealed_frames + 30,
        "{s3:?} / {s:?}"
    );
    assert!(s3.target_delay_ms < 100.0, "holds three: {s3:?}");
}

#[test]
fn a_copy_never_replaces_a_packet_and_a_packet_replaces_its_copy() {
    let p = |seq: u16, tag: u16| RtpAudioPacket {
        seq,
        timestamp: u32::from(seq) * 960,
        ssrc: 3,
        payload: frame(tag),
        marker: false,
    };
    let mut jb = JitterBuffer::new(JitterConfig::default()).expect("config");
    assert_eq!(jb.insert(p(0, 0), ms(0)), InsertOutcome::Accepted);
    // A copy for a packet that arrived: refused.
    assert_eq!(
        jb.insert_redundant(p(0, 900), ms(1)),
        InsertOutcome::Duplicate
    );
    // A copy first, then its packet: the packet replaces it.
    assert_eq!(
        jb.insert_redundant(p(1, 901), ms(1)),
        InsertOutcome::Accepted
    );
    assert_eq!(jb.insert(p(1, 1), ms(2)), InsertOutcome::Accepted);
    // A copy for a packet not here yet: kept and played.
    assert_eq!(jb.insert_redundant(p(2, 2), ms(3)), InsertOutcome::Accepted);
    // Copies from another stream are not used.
    let other = RtpAudioPacket {
        ssrc: 4,
        ..p(3, 903)
    };
    assert_eq!(jb.insert_redundant(other, ms(3)), InsertOutcome::StaleSsrc);
    let mut dec = Tagged::default();
    for k in 0..4 {
        jb.pull(ms(20 * k + 10), &mut dec);
    }
    assert_eq!(&dec.decoded[..3], &[0, 1, 2]);
    let s = jb.stats();
    assert_eq!(s.red_recovered_frames, 1, "only packet 2 came from a copy");
    assert_eq!(s.red_received, 4);
    // A copy for a packet already played is a duplicate; nothing counted late.
    assert_eq!(
        jb.insert_redundant(p(1, 1), ms(80)),
        InsertOutcome::Duplicate
    );
    assert_eq!(jb.stats().late, 0);
}

#[test]
fn malformed_red_and_other_payload_types() {
    let mut jb = JitterBuffer::new(JitterConfig::default()).expect("config");
    let bad = RtpAudioPacket {
        seq: 0,
        timestamp: 0,
        ssrc: 3,
        payload: vec![0xef, 0x0f, 0x00, 0x30, 111, 1, 2], // block of 48 bytes, 2 left
        marker: false,
    };
    assert!(jb.insert_red(bad, OPUS_PT, ms(0)).is_err());
    assert_eq!(jb.stats().red_malformed, 1);
    assert_eq!(jb.buffered_packets(), 0);
    // Primary of another type (comfort noise, 13), a copy of Opus behind it.
    let mut payload = Vec::new();
    crate::rtp::write_red(
        &[crate::rtp::RedBlock {
            payload_type: OPUS_PT,
            timestamp_offset: 960,
            payload: &frame(4),
        }],
        13,
        &[0],
        &mut payload,
    )
    .expect("fits");
    let red = RtpAudioPacket {
        seq: 5,
        timestamp: 5 * 960,
        ssrc: 3,
        payload,
        marker: false,
    };
    assert_eq!(
        jb.insert_red(red, OPUS_PT, ms(1)),
        Ok(InsertOutcome::OtherPayloadType)
    );
    // ... which sets no stream; nothing was stored.
    assert_eq!(jb.buffered_packets(), 0);
}

/// Real Opus speech, 3 s.
fn opus_frames() -> Vec<Vec<u8>> {
    use crate::opus_codec::{EncoderConfig, OpusEncoder};
    use crate::source::{AudioSource, SpeechLike};
    let mut enc = OpusEncoder::new(EncoderConfig::default()).expect("encoder");
    let mut src = SpeechLike::new(7).with_frames(150);
    std::iter::from_fn(|| src.next_frame())
        .map(|f| enc.encode(&f).expect("encode"))
        .collect()
}

/// The Opus frames as plain or RED packets (distance 2), `lost` dropped.
fn opus_packets(
    frames: &[Vec<u8>],
    red: bool,
    lost: impl Fn(usize) -> bool,
) -> Vec<(Duration, RtpAudioPacket)> {
    let mut enc = RedEncoder::new(RedEncoderConfig {
        distance: 2,
        ..RedEncoderConfig::default()
    })
    .expect("encoder");
    let mut out = Vec::new();
    let mut sent = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let ts = i as u32 * 960;
        let payload = if red {
            enc.encode_into(ts, f, &mut out).expect("fits");
            out.clone()
        } else {
            f.clone()
        };
        if !lost(i) {
            let p = RtpAudioPacket {
                seq: 1000 + i as u16,
                timestamp: ts,
                ssrc: 3,
                payload,
                marker: i == 0,
            };
            sent.push((ms(20 * i as u64 + 5), p));
        }
    }
    sent
}

#[test]
fn real_opus_red_without_loss_is_the_same_pcm_as_plain_opus() {
    use crate::opus_codec::OpusDecoder;
    let frames = opus_frames();
    let run = |red: bool| {
        let mut jb = JitterBuffer::new(JitterConfig::default()).expect("config");
        let mut dec = OpusDecoder::new(Channels::Mono).expect("decoder");
        let pcm = play(
            &mut jb,
            &mut dec,
            &opus_packets(&frames, red, |_| false),
            red,
        );
        (pcm, jb.stats())
    };
    let (plain, plain_stats) = run(false);
    let (red, red_stats) = run(true);
    assert!(
        plain.iter().any(|&s| s.unsigned_abs() > 1000),
        "speech plays"
    );
    assert_eq!(red, plain, "bit for bit");
    assert_eq!(red_stats.normal_frames, plain_stats.normal_frames);
    assert_eq!(red_stats.red_recovered_frames, 0);
}

#[test]
fn real_opus_red_with_loss_plays_the_lost_frames_themselves() {
    use crate::analysis::normalized_cross_correlation;
    use crate::opus_codec::OpusDecoder;
    let frames = opus_frames();
    // Single losses and bursts of 2 (distance 2 covers both).
    let lost = |i: usize| i % 10 == 3 || (i % 30 == 17) || (i % 30 == 18);
    let decode = |red: bool, lost: &dyn Fn(usize) -> bool| {
        let mut jb = JitterBuffer::new(JitterConfig::default()).expect("config");
        let mut dec = OpusDecoder::new(Channels::Mono).expect("decoder");
        let pcm = play(&mut jb, &mut dec, &opus_packets(&frames, red, lost), red);
        (pcm, jb.stats())
    };
    let (reference, _) = decode(false, &|_| false);
    let (with_red, s) = decode(true, &lost);
    let (without, s0) = decode(false, &lost);
    let n = (0..frames.len()).filter(|&i| lost(i)).count() as u64;
    assert_eq!(s.lost, n, "{s:?}");
    assert!(s.red_recovered_frames >= n - 2, "{s:?}");
    assert!(s.concealed_frames <= 2, "{s:?}");
    assert!(
        s0.red_recovered_frames == 0 && s0.concealed_frames > 5,
        "{s0:?}"
    );
    // The RED run is the reference played with one more packet of delay
    // (the hold); the plain run has FEC and PLC frames in it.
    let (c_red, lag) = normalized_cross_correlation(&reference, &with_red, 4_800);
    let (c_plain, _) = normalized_cross_correlation(&reference, &without, 4_800);
    assert!(
        c_red > 0.95 && c_red > c_plain,
        "RED {c_red:.3} at lag {lag}, plain {c_plain:.3}"
    );
}
