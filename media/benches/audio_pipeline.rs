//! Criterion benches for the receive side: the jitter buffer per 20 ms frame
//! (insert one packet + pull one frame, fake decoder and real Opus), the
//! mixer with 4 speakers, and the whole receive path for N remote streams
//! (CPU per received stream).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use huddle_media::jitter::{FrameDecoder, JitterBuffer, JitterConfig, RtpAudioPacket};
use huddle_media::mixer::{Mixer, ParticipantId};
use huddle_media::opus_codec::{EncoderConfig, OpusDecoder, OpusEncoder};
use huddle_media::source::{collect_all, AudioSource, SpeechLike};
use huddle_media::{Channels, FRAME_SAMPLES};
use std::hint::black_box;
use std::time::Duration;

/// A decoder that costs nothing, so the bench measures the buffer itself.
struct NullDecoder(Vec<i16>);

impl FrameDecoder for NullDecoder {
    fn channels(&self) -> Channels {
        Channels::Mono
    }
    fn decode(&mut self, _payload: &[u8]) -> huddle_media::Result<Vec<i16>> {
        Ok(self.0.clone())
    }
    fn decode_fec(&mut self, _next: &[u8]) -> huddle_media::Result<Vec<i16>> {
        Ok(self.0.clone())
    }
    fn conceal(&mut self) -> huddle_media::Result<Vec<i16>> {
        Ok(self.0.clone())
    }
}

fn opus_packets(n: usize) -> Vec<Vec<u8>> {
    let mut enc = match OpusEncoder::new(EncoderConfig::default()) {
        Ok(e) => e,
        Err(e) => panic!("encoder: {e}"),
    };
    let mut src = SpeechLike::new(1);
    std::iter::from_fn(|| src.next_frame())
        .filter(|f| huddle_media::analysis::rms(f) > 500.0)
        .take(n)
        .map(|f| enc.encode(&f).unwrap_or_default())
        .collect()
}

/// One step of a steady stream with 0..30 ms pseudo-random jitter: insert the
/// packet for frame `i`, pull one frame.
fn step<D: FrameDecoder>(
    jb: &mut JitterBuffer,
    dec: &mut D,
    i: u64,
    payload: &[u8],
    out: &mut Vec<i16>,
) {
    let jitter_us = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) % 30_000;
    let arrival = Duration::from_micros(i * 20_000 + jitter_us);
    jb.insert(
        RtpAudioPacket {
            seq: i as u16,
            timestamp: (i as u32).wrapping_mul(960),
            ssrc: 1,
            payload: payload.to_vec(),
            marker: false,
        },
        arrival,
    );
    jb.pull_into(Duration::from_micros(i * 20_000 + 15_000), dec, out);
}

fn bench_jitter(c: &mut Criterion) {
    let packets = opus_packets(50);
    let new_jb = || match JitterBuffer::new(JitterConfig::default()) {
        Ok(j) => j,
        Err(e) => panic!("jitter buffer: {e}"),
    };

    let mut jb = new_jb();
    let mut null = NullDecoder(vec![0; FRAME_SAMPLES]);
    let mut out = Vec::with_capacity(FRAME_SAMPLES);
    let mut i = 0u64;
    c.bench_function("jitter_insert_pull_20ms_null_decoder", |b| {
        b.iter(|| {
            i += 1;
            step(
                &mut jb,
                &mut null,
                i,
                black_box(&packets[i as usize % 50]),
                &mut out,
            );
            black_box(&out);
        })
    });

    let mut jb = new_jb();
    let mut opus = match OpusDecoder::new(Channels::Mono) {
        Ok(d) => d,
        Err(e) => panic!("decoder: {e}"),
    };
    let mut i = 0u64;
    c.bench_function("jitter_insert_pull_20ms_opus_decode", |b| {
        b.iter(|| {
            i += 1;
            step(
                &mut jb,
                &mut opus,
                i,
                black_box(&packets[i as usize % 50]),
                &mut out,
            );
            black_box(&out);
        })
    });
}

fn bench_mixer(c: &mut Criterion) {
    let speakers: Vec<Vec<i16>> = (0..4)
        .map(|s| collect_all(&mut SpeechLike::new(s + 10).with_frames(50)))
        .collect();
    let mut mixer = Mixer::new(Channels::Mono);
    for id in 0..4 {
        mixer.add_participant(ParticipantId(id));
    }
    let _ = mixer.set_volume(ParticipantId(1), 1.5);
    let mut out = Vec::with_capacity(FRAME_SAMPLES);
    let mut f = 0usize;
    c.bench_function("mixer_4_streams_20ms_mono", |b| {
        b.iter(|| {
            f = (f + 1) % 50;
            let r = f * FRAME_SAMPLES..(f + 1) * FRAME_SAMPLES;
            let inputs: [(ParticipantId, &[i16]); 4] = [
                (ParticipantId(0), &speakers[0][r.clone()]),
                (ParticipantId(1), &speakers[1][r.clone()]),
                (ParticipantId(2), &speakers[2][r.clone()]),
                (ParticipantId(3), &speakers[3][r]),
            ];
            black_box(mixer.mix_into(black_box(&inputs), &mut out).ok());
        })
    });
    // Loud enough that the limiter works on every frame.
    let loud = vec![30_000i16; FRAME_SAMPLES];
    c.bench_function("mixer_4_streams_20ms_mono_limiting", |b| {
        b.iter(|| {
            let inputs: [(ParticipantId, &[i16]); 4] = [
                (ParticipantId(0), &loud),
                (ParticipantId(1), &loud),
                (ParticipantId(2), &loud),
                (ParticipantId(3), &loud),
            ];
            black_box(mixer.mix_into(black_box(&inputs), &mut out).ok());
        })
    });
}

/// One remote speaker on the receive side: its jitter buffer and decoder.
struct Receiver {
    jb: JitterBuffer,
    dec: OpusDecoder,
    frame: Vec<i16>,
}

/// CPU per received stream: per 20 ms tick, for each of N streams, insert its
/// packet (0..30 ms jitter) and pull one frame through its jitter buffer and
/// Opus decoder; then mix the N frames into one, as `huddle::Playout` does.
/// Criterion's time is per tick; per stream and second of audio it is
/// `time / N * 50`.
fn bench_streams(c: &mut Criterion) {
    let packets = opus_packets(50);
    let mut group = c.benchmark_group("receive_streams_per_20ms_tick");
    for n in [1usize, 8, 32] {
        let mut receivers: Vec<Receiver> = (0..n)
            .map(|_| Receiver {
                jb: match JitterBuffer::new(JitterConfig::default()) {
                    Ok(j) => j,
                    Err(e) => panic!("jitter buffer: {e}"),
                },
                dec: match OpusDecoder::new(Channels::Mono) {
                    Ok(d) => d,
                    Err(e) => panic!("decoder: {e}"),
                },
                frame: Vec::with_capacity(FRAME_SAMPLES),
            })
            .collect();
        let mut mixer = Mixer::new(Channels::Mono);
        for id in 0..n {
            mixer.add_participant(ParticipantId(id as u64));
        }
        let mut mixed = Vec::with_capacity(FRAME_SAMPLES);
        let mut tick = 0u64;
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                tick += 1;
                for (k, r) in receivers.iter_mut().enumerate() {
                    // Each stream speaks a different part of the speech.
                    let payload = &packets[(tick as usize + 7 * k) % packets.len()];
                    step(
                        &mut r.jb,
                        &mut r.dec,
                        tick,
                        black_box(payload),
                        &mut r.frame,
                    );
                }
                let inputs: Vec<(ParticipantId, &[i16])> = receivers
                    .iter()
                    .enumerate()
                    .map(|(k, r)| (ParticipantId(k as u64), r.frame.as_slice()))
                    .collect();
                black_box(mixer.mix_into(&inputs, &mut mixed).ok());
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_jitter, bench_mixer, bench_streams);
criterion_main!(benches);
