//! Criterion benches of a call's audio path on one machine, through the
//! calling crate's public API (`huddle::media`), no network:
//!
//! - `send_20ms_frame`: one 20 ms frame from a capture source (a synthetic
//!   voice) -> Opus encode -> RTP packet marshalled into bytes, as a
//!   microphone track does per frame.
//! - `receive_per_20ms_tick/N`: per 20 ms tick, for each of N remote
//!   streams: parse its RTP packet, insert it in the stream's jitter buffer
//!   (0..30 ms jitter), pull and Opus-decode one frame; then mix the N
//!   frames into one. Criterion reports the time per tick and, as
//!   throughput, streams per second of CPU.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use huddle::media::jitter::{JitterBuffer, JitterConfig, RtpAudioPacket};
use huddle::media::mixer::{Mixer, ParticipantId};
use huddle::media::opus_codec::{OpusDecoder, OpusEncoder};
use huddle::media::rtp::{parse_rtp, OpusPacketizer};
use huddle::{AudioSource, Channels, EncoderConfig, SpeechLike, FRAME_SAMPLES};
use std::hint::black_box;
use std::time::Duration;

fn encoder() -> OpusEncoder {
    match OpusEncoder::new(EncoderConfig::default()) {
        Ok(e) => e,
        Err(e) => panic!("encoder: {e}"),
    }
}

fn bench_send(c: &mut Criterion) {
    let mut source = SpeechLike::new(1);
    let mut enc = encoder();
    let mut packetizer = match OpusPacketizer::new(0x1234_5678, 111, 0, 0) {
        Ok(p) => p,
        Err(e) => panic!("packetizer: {e}"),
    };
    let mut opus = Vec::with_capacity(1500);
    c.bench_function("send_20ms_frame", |b| {
        b.iter(|| {
            let pcm = source.next_frame().unwrap_or_default();
            if enc.encode_into(black_box(&pcm), &mut opus).is_ok() {
                black_box(packetizer.packetize(&opus).marshal());
            }
        })
    });
}

/// 50 RTP packets (1 s) of Opus-encoded speech, marshalled.
fn rtp_packets() -> Vec<Vec<u8>> {
    let mut enc = encoder();
    let mut source = SpeechLike::new(2);
    let mut packetizer = match OpusPacketizer::new(7, 111, 0, 0) {
        Ok(p) => p,
        Err(e) => panic!("packetizer: {e}"),
    };
    std::iter::from_fn(|| source.next_frame())
        .take(50)
        .map(|f| {
            packetizer
                .packetize(&enc.encode(&f).unwrap_or_default())
                .marshal()
        })
        .collect()
}

/// One remote stream: its jitter buffer and decoder, and its last frame.
struct Stream {
    jb: JitterBuffer,
    dec: OpusDecoder,
    frame: Vec<i16>,
}

fn bench_receive(c: &mut Criterion) {
    let packets = rtp_packets();
    let mut group = c.benchmark_group("receive_per_20ms_tick");
    for n in [1usize, 4, 16] {
        let mut streams: Vec<Stream> = (0..n)
            .map(|_| Stream {
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
                let jitter_us = (tick.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) % 30_000;
                let arrival = Duration::from_micros(tick * 20_000 + jitter_us);
                let now = Duration::from_micros(tick * 20_000 + 15_000);
                for (k, s) in streams.iter_mut().enumerate() {
                    let bytes = &packets[(tick as usize + 7 * k) % packets.len()];
                    if let Ok(view) = parse_rtp(black_box(bytes)) {
                        let mut p = RtpAudioPacket::from_view(&view);
                        // A steady stream: one sequence number per tick.
                        p.seq = tick as u16;
                        p.timestamp = (tick as u32).wrapping_mul(960);
                        s.jb.insert(p, arrival);
                    }
                    s.jb.pull_into(now, &mut s.dec, &mut s.frame);
                }
                let inputs: Vec<(ParticipantId, &[i16])> = streams
                    .iter()
                    .enumerate()
                    .map(|(k, s)| (ParticipantId(k as u64), s.frame.as_slice()))
                    .collect();
                black_box(mixer.mix_into(&inputs, &mut mixed).ok());
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_send, bench_receive);
criterion_main!(benches);
