//! Jitter-buffer tests on a fake clock. Nothing here sleeps or reads a clock:
//! arrivals and pulls are scheduled in simulated time.

use super::*;
use crate::prng::SplitMix64;
use crate::Channels;

const FRAME: Duration = Duration::from_millis(20);

/// What the fake decoder was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    /// Decoded the packet with this tag (its sequence number).
    Decode(u16),
    /// Decoded a DTX packet.
    DecodeDtx,
    /// FEC from the packet with this tag (so it rebuilt tag - 1).
    Fec(u16),
    Conceal,
    Reset,
}

/// Outputs frames filled with the tag of what it decoded; logs every call.
#[derive(Debug, Default)]
struct FakeDecoder {
    log: Vec<Call>,
}

fn tag(payload: &[u8]) -> Option<u16> {
    (payload.len() > 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))
}

impl FrameDecoder for FakeDecoder {
    fn channels(&self) -> Channels {
        Channels::Mono
    }
    fn decode(&mut self, payload: &[u8]) -> crate::Result<Vec<i16>> {
        match tag(payload) {
            Some(t) => {
                self.log.push(Call::Decode(t));
                Ok(vec![t as i16; FRAME_SAMPLES])
            }
            None => {
                self.log.push(Call::DecodeDtx);
                Ok(vec![0; FRAME_SAMPLES])
            }
        }
    }
    fn decode_fec(&mut self, next_payload: &[u8]) -> crate::Result<Vec<i16>> {
        let t = tag(next_payload).unwrap_or(0);
        self.log.push(Call::Fec(t));
        Ok(vec![t.wrapping_sub(1) as i16; FRAME_SAMPLES])
    }
    fn conceal(&mut self) -> crate::Result<Vec<i16>> {
        self.log.push(Call::Conceal);
        Ok(vec![-1; FRAME_SAMPLES])
    }
    fn reset(&mut self) -> crate::Result<()> {
        self.log.push(Call::Reset);
        Ok(())
    }
}

impl FakeDecoder {
    fn decoded(&self) -> Vec<u16> {
        self.log
            .iter()
            .filter_map(|c| match c {
                Call::Decode(t) => Some(*t),
                _ => None,
            })
            .collect()
    }
    fn count(&self, call: Call) -> usize {
        self.log.iter().filter(|c| **c == call).count()
    }
}

fn pkt(seq: u16, timestamp: u32, ssrc: u32) -> RtpAudioPacket {
    let [a, b] = seq.to_be_bytes();
    RtpAudioPacket {
        seq,
        timestamp,
        ssrc,
        payload: vec![a, b, 0xaa, 0xbb],
        marker: false,
    }
}

fn ms(x: f64) -> Duration {
    Duration::from_secs_f64(x.max(0.0) / 1000.0)
}

/// A scheduled run: packets with arrival times (any order) and pulls every
/// 20 ms starting at `first_pull`.
struct Sim {
    jb: JitterBuffer,
    dec: FakeDecoder,
    arrivals: Vec<(Duration, RtpAudioPacket)>,
    next: usize,
    now: Duration,
    outcomes: Vec<InsertOutcome>,
}

impl Sim {
    fn new(mut arrivals: Vec<(Duration, RtpAudioPacket)>, first_pull: Duration) -> Sim {
        arrivals.sort_by_key(|(t, _)| *t);
        Sim {
            jb: JitterBuffer::new(JitterConfig::default()).expect("config"),
            dec: FakeDecoder::default(),
            arrivals,
            next: 0,
            now: first_pull,
            outcomes: Vec::new(),
        }
    }

    /// Insert what has arrived by now, pull once, advance 20 ms.
    fn pull(&mut self) -> Operation {
        while self.next < self.arrivals.len() && self.arrivals[self.next].0 <= self.now {
            let (t, p) = self.arrivals[self.next].clone();
            self.outcomes.push(self.jb.insert(p, t));
            self.next += 1;
        }
        let mut out = Vec::new();
        let op = self.jb.pull_into(self.now, &mut self.dec, &mut out);
        assert_eq!(out.len(), FRAME_SAMPLES);
        self.now += FRAME;
        op
    }

    /// Pull until every packet has arrived and been played (so no
    /// end-of-stream concealment is counted); at most 100 000 pulls.
    fn drain(&mut self) -> Vec<Operation> {
        let mut ops = Vec::new();
        while ops.len() < 100_000
            && (self.next < self.arrivals.len() || self.jb.buffered_packets() > 0)
        {
            ops.push(self.pull());
        }
        ops
    }
}

/// `n` packets from `seq0`/`ts0`, sent every 20 ms from t = 0, arriving
/// `delay_ms` later, except those `drop` says to lose.
fn stream(
    n: usize,
    seq0: u16,
    ts0: u32,
    delay_ms: f64,
    drop: impl Fn(usize) -> bool,
) -> Vec<(Duration, RtpAudioPacket)> {
    (0..n)
        .filter(|i| !drop(*i))
        .map(|i| {
            let seq = seq0.wrapping_add(i as u16);
            let ts = ts0.wrapping_add(i as u32 * 960);
            (ms(i as f64 * 20.0 + delay_ms), pkt(seq, ts, 1))
        })
        .collect()
}

fn assert_in_order(decoded: &[u16], first: u16, n: usize) {
    let want: Vec<u16> = (0..n).map(|i| first.wrapping_add(i as u16)).collect();
    assert_eq!(decoded, want.as_slice());
}

#[test]
fn clean_stream_plays_in_order() {
    let mut sim = Sim::new(stream(100, 0, 0, 5.0, |_| false), ms(10.0));
    let ops = sim.drain();
    assert_in_order(&sim.dec.decoded(), 0, 100);
    let s = sim.jb.stats();
    assert_eq!((s.lost, s.late, s.duplicates), (0, 0, 0));
    assert_eq!(s.fec_recovered_frames, 0);
    assert!(s.preemptive_expanded_frames <= 2, "{s:?}");
    assert_eq!(s.target_delay_ms, 20.0);
    assert!(s.mean_delay_ms() <= 40.0, "{s:?}");
    assert_eq!(s.frames_out, ops.len() as u64);
    assert_eq!(s.concealed_frames, 0);
}

#[test]
fn reordered_packets_play_in_order() {
    // Every odd packet overtakes the even one before it.
    let arrivals: Vec<_> = (0..100usize)
        .map(|i| {
            let d = if i % 2 == 0 { 18.0 } else { 2.0 };
            (ms(i as f64 * 20.0 + d), pkt(i as u16, i as u32 * 960, 1))
        })
        .collect();
    let mut sim = Sim::new(arrivals, ms(25.0));
    sim.drain();
    assert_in_order(&sim.dec.decoded(), 0, 100);
    let s = sim.jb.stats();
    assert_eq!((s.lost, s.late, s.fec_recovered_frames), (0, 0, 0));
}

#[test]
fn duplicates_are_counted_and_dropped() {
    let mut arrivals = stream(50, 0, 0, 5.0, |_| false);
    let copies: Vec<_> = arrivals
        .iter()
        .map(|(t, p)| (*t + ms(3.0), p.clone()))
        .collect();
    arrivals.extend(copies);
    // And a copy of packet 5 long after it was played.
    arrivals.push((ms(600.0), pkt(5, 5 * 960, 1)));
    let mut sim = Sim::new(arrivals, ms(10.0));
    sim.drain();
    assert_in_order(&sim.dec.decoded(), 0, 50);
    let s = sim.jb.stats();
    assert_eq!(s.duplicates, 51);
    assert_eq!(s.lost, 0);
    assert_eq!(
        sim.outcomes
            .iter()
            .filter(|o| **o == InsertOutcome::Duplicate)
            .count(),
        51
    );
}

#[test]
fn single_loss_is_recovered_from_fec() {
    let mut sim = Sim::new(stream(60, 0, 0, 5.0, |i| i == 30), ms(10.0));
    sim.drain();
    let s = sim.jb.stats();
    assert_eq!(s.lost, 1);
    assert_eq!(s.fec_recovered_frames, 1);
    assert_eq!(s.concealed_frames, 0);
    let decoded = sim.dec.decoded();
    let want: Vec<u16> = (0..60).filter(|i| *i != 30).collect();
    assert_eq!(decoded, want);
    // FEC from packet 31, then 31 itself.
    let at = sim
        .dec
        .log
        .iter()
        .position(|c| *c == Call::Fec(31))
        .expect("fec");
    assert_eq!(sim.dec.log[at - 1], Call::Decode(29));
    assert_eq!(sim.dec.log[at + 1], Call::Decode(31));
}

#[test]
fn burst_loss_conceals_then_uses_fec() {
    let mut sim = Sim::new(stream(60, 0, 0, 5.0, |i| i == 30 || i == 31), ms(10.0));
    sim.drain();
    let s = sim.jb.stats();
    assert_eq!(s.lost, 2);
    assert_eq!(s.fec_recovered_frames, 1, "31 rebuilt from 32");
    assert_eq!(s.concealed_frames, 1, "30 concealed");
    let at = sim
        .dec
        .log
        .iter()
        .position(|c| *c == Call::Decode(29))
        .expect("29");
    assert_eq!(
        &sim.dec.log[at + 1..at + 4],
        &[Call::Conceal, Call::Fec(32), Call::Decode(32)]
    );
}

#[test]
fn long_loss_conceals_each_frame_then_silence() {
    // 40 packets (800 ms) lost: 10 concealment frames, then silence.
    let mut sim = Sim::new(stream(100, 0, 0, 5.0, |i| (30..70).contains(&i)), ms(10.0));
    sim.drain();
    let s = sim.jb.stats();
    assert_eq!(s.lost, 40);
    assert_eq!(s.concealed_frames, 10);
    assert_eq!(s.fec_recovered_frames, 1, "69 from 70");
    assert!(s.silence_frames >= 29, "{s:?}");
    let decoded = sim.dec.decoded();
    assert_eq!(decoded.len(), 60);
    assert!(decoded.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn packet_after_its_turn_is_late() {
    let mut arrivals = stream(60, 0, 0, 5.0, |i| i == 20);
    arrivals.push((ms(20.0 * 20.0 + 200.0), pkt(20, 20 * 960, 1)));
    let mut sim = Sim::new(arrivals, ms(10.0));
    sim.drain();
    let s = sim.jb.stats();
    assert_eq!(s.late, 1);
    assert_eq!(s.lost, 1);
    assert!(!sim.dec.decoded().contains(&20));
    assert!(sim.outcomes.contains(&InsertOutcome::Late));
}

#[test]
fn sequence_and_timestamp_wrap() {
    let ts0 = u32::MAX - 5 * 960 + 1;
    let mut sim = Sim::new(stream(40, 65_530, ts0, 5.0, |_| false), ms(10.0));
    sim.drain();
    assert_in_order(&sim.dec.decoded(), 65_530, 40);
    let s = sim.jb.stats();
    assert_eq!((s.lost, s.late, s.stream_resets), (0, 0, 0));
    assert_eq!(s.concealed_frames, 0);
    // A loss across the wrap is still recovered from FEC.
    let mut sim = Sim::new(stream(40, 65_530, ts0, 5.0, |i| i == 6), ms(10.0));
    sim.drain();
    assert_eq!(sim.jb.stats().fec_recovered_frames, 1);
    assert!(sim.dec.log.contains(&Call::Fec(1)));
}

/// 50 packets of speech, a DTX packet, 2 s of nothing, 50 more packets (the
/// timestamp jumps by the gap; sequence numbers stay contiguous).
fn dtx_stream(send_dtx_packet: bool) -> Vec<(Duration, RtpAudioPacket)> {
    let mut out = Vec::new();
    let mut seq = 0u16;
    for i in 0..151u32 {
        let gap = (51..150).contains(&i);
        if gap || (i == 50 && !send_dtx_packet) {
            continue;
        }
        let mut p = pkt(seq, i * 960, 1);
        if i == 50 {
            p.payload = vec![0xf8];
        }
        p.marker = i == 150 || (i == 51 && !send_dtx_packet);
        out.push((ms(f64::from(i) * 20.0 + 5.0), p));
        seq += 1;
    }
    // ... and 50 more after the talkspurt restarts.
    for i in 151..200u32 {
        out.push((ms(f64::from(i) * 20.0 + 5.0), pkt(seq, i * 960, 1)));
        seq += 1;
    }
    out
}

#[test]
fn dtx_gap_is_comfort_noise_not_loss() {
    let mut sim = Sim::new(dtx_stream(true), ms(10.0));
    let ops = sim.drain();
    let s = sim.jb.stats();
    assert_eq!(s.lost, 0);
    assert_eq!(s.late, 0);
    assert_eq!(s.concealed_frames, 0);
    assert!(s.comfort_noise_frames >= 95, "{s:?}");
    assert_eq!(sim.dec.count(Call::DecodeDtx), 1);
    assert_in_order(&sim.dec.decoded()[..50], 0, 50);
    // Speech after the gap plays in order, with the delay it had before.
    let after: Vec<u16> = sim.dec.decoded()[50..].to_vec();
    assert_in_order(&after, 51, 50);
    assert!(s.current_delay_ms <= 40.0, "{s:?}");
    assert_eq!(s.target_delay_ms, 20.0);
    assert!(ops[60..140].iter().all(|o| *o == Operation::ComfortNoise));
}

#[test]
fn silent_gap_without_dtx_packet_is_not_loss() {
    let mut sim = Sim::new(dtx_stream(false), ms(10.0));
    sim.drain();
    let s = sim.jb.stats();
    assert_eq!(s.lost, 0);
    assert_eq!(s.late, 0);
    assert_eq!(s.concealed_frames, 10, "PLC fades out, then silence");
    assert!(s.silence_frames >= 85, "{s:?}");
    assert_in_order(&sim.dec.decoded(), 0, 100);
    assert!(s.current_delay_ms <= 40.0, "{s:?}");
}

#[test]
fn new_ssrc_resets_without_loss() {
    let mut arrivals = stream(50, 100, 0, 5.0, |_| false);
    // The new stream starts 1.2 s in, with unrelated numbering.
    for i in 0..50usize {
        let mut p = pkt(40_000 + i as u16, 3_000_000 + i as u32 * 960, 2);
        p.marker = i == 0;
        arrivals.push((ms(1200.0 + i as f64 * 20.0 + 5.0), p));
    }
    // A straggler from the old stream after the switch is dropped.
    arrivals.push((ms(1300.0), pkt(150, 50 * 960, 1)));
    let mut sim = Sim::new(arrivals, ms(10.0));
    sim.drain();
    let s = sim.jb.stats();
    assert_eq!(s.ssrc_changes, 1);
    assert_eq!(s.lost, 0);
    assert_eq!(s.fec_recovered_frames, 0);
    assert!(sim.outcomes.contains(&InsertOutcome::StaleSsrc));
    let decoded = sim.dec.decoded();
    assert_in_order(&decoded[..50], 100, 50);
    assert_in_order(&decoded[50..], 40_000, 50);
    let reset = sim.dec.log.iter().position(|c| *c == Call::Reset);
    let first_b = sim.dec.log.iter().position(|c| *c == Call::Decode(40_000));
    assert!(reset.is_some() && reset < first_b);
    assert_eq!(sim.jb.ssrc(), Some(2));
}

#[test]
fn wild_sequence_jump_restarts_the_stream() {
    let mut arrivals = stream(30, 0, 0, 5.0, |_| false);
    for i in 0..30usize {
        arrivals.push((
            ms(800.0 + i as f64 * 20.0 + 5.0),
            pkt(30_000 + i as u16, 5_000_000 + i as u32 * 960, 1),
        ));
    }
    let mut sim = Sim::new(arrivals, ms(10.0));
    sim.drain();
    let s = sim.jb.stats();
    assert_eq!(s.stream_resets, 1);
    assert_eq!(s.lost, 0);
    assert_eq!(sim.dec.decoded().len(), 60);
}

#[test]
fn overflow_is_bounded() {
    // 200 packets arrive at once (a stalled network path flushing).
    let arrivals: Vec<_> = (0..200u16)
        .map(|i| (ms(5.0), pkt(i, u32::from(i) * 960, 1)))
        .collect();
    let mut sim = Sim::new(arrivals, ms(10.0));
    sim.pull();
    assert!(sim.jb.buffered_packets() <= 50);
    assert_eq!(sim.jb.stats().flushed, 150);
    // The backlog drains by accelerating, not by growing.
    sim.drain();
    let s = sim.jb.stats();
    assert!(s.accelerated_frames > 10, "{s:?}");
    assert_eq!(sim.jb.buffered_packets(), 0);
}

/// Drift: the sender's 20 ms are `period_ms` of our clock, for 10 minutes,
/// with 0..5 ms of jitter.
fn drift_run(period_ms: f64) -> (JitterStats, f64, usize) {
    let n = 30_000usize;
    let mut rng = SplitMix64::new(42);
    let arrivals: Vec<_> = (0..n)
        .map(|i| {
            let t = i as f64 * period_ms + 10.0 + rng.range_f64(0.0, 5.0);
            (ms(t), pkt(i as u16, (i as u32).wrapping_mul(960), 1))
        })
        .collect();
    let mut sim = Sim::new(arrivals, ms(15.0));
    let mut max_delay: f64 = 0.0;
    let mut max_buffered = 0;
    // Stop before the fast sender's stream ends (597 s).
    for k in 0..n - 300 {
        sim.pull();
        if k > 500 {
            max_delay = max_delay.max(sim.jb.stats().current_delay_ms);
            max_buffered = max_buffered.max(sim.jb.buffered_packets());
        }
    }
    (sim.jb.stats(), max_delay, max_buffered)
}

#[test]
fn fast_sender_drift_is_absorbed_by_accelerate() {
    let (s, max_delay, max_buffered) = drift_run(19.9);
    eprintln!("fast: max delay {max_delay:.1} ms, max buffered {max_buffered}, {s:?}");
    // 0.5% of 30000 frames = 150 surplus frames to drop.
    assert!((100..=250).contains(&s.accelerated_frames), "{s:?}");
    assert!(max_delay < 100.0, "max delay {max_delay} ms");
    assert!(max_buffered <= 5, "{max_buffered}");
    assert_eq!(s.lost, 0);
    assert!(s.concealed_frames <= 5, "{s:?}");
}

#[test]
fn slow_sender_drift_is_absorbed_by_preemptive_expand() {
    let (s, max_delay, max_buffered) = drift_run(20.1);
    eprintln!("slow: max delay {max_delay:.1} ms, max buffered {max_buffered}, {s:?}");
    // 150 frames missing over 10 minutes: inserted, mostly before running dry.
    assert!(
        s.preemptive_expanded_frames + s.concealed_frames >= 140,
        "{s:?}"
    );
    assert!(s.concealed_frames <= 30, "{s:?}");
    assert!(max_delay < 100.0, "max delay {max_delay} ms");
    assert!(max_buffered <= 5, "{max_buffered}");
    assert_eq!(s.lost, 0);
}

#[test]
fn target_follows_jitter_up_and_back_down() {
    // 30 s with 0..60 ms of jitter, then 40 s with none.
    let mut rng = SplitMix64::new(7);
    let arrivals: Vec<_> = (0..3500usize)
        .map(|i| {
            let j = if i < 1500 {
                rng.range_f64(0.0, 60.0)
            } else {
                0.0
            };
            (
                ms(i as f64 * 20.0 + 10.0 + j),
                pkt(i as u16, i as u32 * 960, 1),
            )
        })
        .collect();
    let mut sim = Sim::new(arrivals, ms(15.0));
    let mut target_at = Vec::new();
    let mut delay_sum = 0.0;
    let mut delay_n = 0;
    for k in 0..3500usize {
        sim.pull();
        target_at.push(sim.jb.stats().target_delay_ms);
        if (1200..1500).contains(&k) {
            delay_sum += sim.jb.stats().current_delay_ms;
            delay_n += 1;
        }
    }
    let during = target_at[1499];
    assert!(during >= 60.0, "target under 60 ms jitter: {during}");
    let s = sim.jb.stats();
    let jittery_mean = delay_sum / f64::from(delay_n);
    assert!(
        jittery_mean >= 40.0,
        "delay follows the target: {jittery_mean}"
    );
    // Back down within 30 s of the jitter stopping (pull 1500 + 1500).
    let back = target_at[3000];
    assert!(back < 40.0, "target 30 s after jitter: {back}");
    // Find when it came down.
    let down_at = (1500..3500).find(|k| target_at[*k] < 40.0).expect("down");
    eprintln!(
        "jitter: target {during} ms, mean delay {jittery_mean:.1} ms; down after {} ms; {s:?}",
        (down_at - 1500) * 20
    );
    assert!(
        down_at - 1500 < 500,
        "came down after {} pulls",
        down_at - 1500
    );
    // And the actual delay followed it.
    assert!(s.current_delay_ms < 50.0, "{s:?}");
    assert!(s.accelerated_frames > 0);
}

#[test]
fn random_input_never_panics() {
    let mut rng = SplitMix64::new(99);
    let mut jb = JitterBuffer::new(JitterConfig::default()).expect("config");
    let mut fake = FakeDecoder::default();
    let mut opus = crate::opus_codec::OpusDecoder::new(Channels::Stereo).expect("opus");
    let mut now = Duration::ZERO;
    let mut base_seq = 0u16;
    let mut base_ts = 0u32;
    for round in 0..20_000u32 {
        let r = rng.next_u64();
        let mut payload = vec![0u8; (r % 40) as usize];
        rng.fill_bytes(&mut payload);
        // Mostly plausible packets, sometimes wild ones.
        let (seq, ts) = if r.is_multiple_of(7) {
            (rng.next_u64() as u16, rng.next_u64() as u32)
        } else {
            base_seq = base_seq.wrapping_add((r >> 8) as u16 % 3);
            base_ts = base_ts.wrapping_add(960 * ((r >> 16) as u32 % 4));
            (base_seq, base_ts)
        };
        let ssrc = if r.is_multiple_of(101) {
            (r >> 20) as u32 % 4
        } else {
            0
        };
        let arrival = if r.is_multiple_of(13) {
            now.saturating_sub(ms(((r >> 24) % 3000) as f64))
        } else {
            now + ms(((r >> 24) % 100) as f64)
        };
        jb.insert(
            RtpAudioPacket {
                seq,
                timestamp: ts,
                ssrc,
                payload,
                marker: r.is_multiple_of(3),
            },
            arrival,
        );
        if round % 2 == 0 {
            if round % 4 == 0 {
                assert_eq!(jb.pull(now, &mut fake).len(), FRAME_SAMPLES);
            } else {
                assert_eq!(jb.pull(now, &mut opus).len(), 2 * FRAME_SAMPLES);
            }
            now += FRAME;
        }
        assert!(jb.buffered_packets() <= 50);
    }
    let s = jb.stats();
    assert_eq!(s.frames_out, 10_000);
    assert!(s.target_delay_ms >= 20.0 && s.target_delay_ms <= 500.0);
}

#[test]
fn config_is_validated() {
    let mut c = JitterConfig::default();
    c.delay.quantile = 1.5;
    assert!(JitterBuffer::new(c).is_err());
    let mut c = JitterConfig::default();
    c.delay.min_delay = Duration::from_secs(1);
    assert!(JitterBuffer::new(c).is_err());
    let c = JitterConfig {
        max_packets: 1,
        ..JitterConfig::default()
    };
    assert!(JitterBuffer::new(c).is_err());
}

/// The real thing: speech through Opus (FEC on), 5% random loss and 0..30 ms
/// uniform jitter, through the buffer into the real decoder.
#[test]
fn real_opus_with_loss_and_jitter() {
    use crate::analysis::normalized_cross_correlation;
    use crate::opus_codec::{EncoderConfig, OpusDecoder, OpusEncoder};
    use crate::source::{AudioSource, SpeechLike};

    let frames = 750usize; // 15 s
    let mut enc = OpusEncoder::new(EncoderConfig::default()).expect("encoder");
    let mut src = SpeechLike::new(5).with_frames(frames as u64);
    let mut rng = SplitMix64::new(2024);
    let mut sent = Vec::new();
    let mut arrivals = Vec::new();
    for i in 0..frames {
        let frame = src.next_frame().expect("frame");
        let payload = enc.encode(&frame).expect("encode");
        sent.extend_from_slice(&frame);
        let lost = rng.next_f64() < 0.05;
        let jitter = rng.range_f64(0.0, 30.0);
        if !lost {
            let p = RtpAudioPacket {
                seq: i as u16,
                timestamp: i as u32 * 960,
                ssrc: 9,
                payload,
                marker: i == 0,
            };
            arrivals.push((ms(i as f64 * 20.0 + 10.0 + jitter), p));
        }
    }
    arrivals.sort_by_key(|(t, _)| *t);
    let mut jb = JitterBuffer::new(JitterConfig::default()).expect("config");
    let mut dec = OpusDecoder::new(Channels::Mono).expect("decoder");
    let mut received = Vec::new();
    let mut next = 0;
    let mut now = ms(15.0);
    for _ in 0..frames + 10 {
        while next < arrivals.len() && arrivals[next].0 <= now {
            let (t, p) = arrivals[next].clone();
            jb.insert(p, t);
            next += 1;
        }
        received.extend(jb.pull(now, &mut dec));
        now += FRAME;
    }
    let s = jb.stats();
    assert!(s.fec_recovered_frames > 0, "{s:?}");
    assert!(s.concealed_frames > 0, "{s:?}");
    assert!(s.lost >= 20, "{s:?}");
    // Time stretching shifts the lag a little over the run, so compare in
    // windows of 2 s (each with its own lag search), and the whole run.
    let (whole, _) = normalized_cross_correlation(&sent, &received, 24_000);
    let win = 96_000;
    let mut per_window = Vec::new();
    for w in (0..sent.len() - win).step_by(win) {
        let (c, _) = normalized_cross_correlation(
            &sent[w..w + win],
            &received[w..(w + win + 12_000).min(received.len())],
            12_000,
        );
        per_window.push(c);
    }
    let mean = per_window.iter().sum::<f64>() / per_window.len() as f64;
    eprintln!("whole {whole:.3} windows {per_window:.3?} stats {s:?}");
    assert!(mean > 0.7, "mean window correlation {mean}");
    assert!(whole > 0.5, "whole-run correlation {whole}");
    assert!(s.mean_delay_ms() < 80.0, "{s:?}");
}
