//! Criterion benches for the per-frame hot paths: Opus encode/decode of one 20 ms
//! mono frame, and Opus RTP packetize + marshal + parse.

use criterion::{criterion_group, criterion_main, Criterion};
use huddle_media::opus_codec::{EncoderConfig, OpusDecoder, OpusEncoder};
use huddle_media::rtp::{parse_rtp, OpusPacketizer};
use huddle_media::source::{AudioSource, SpeechLike};
use huddle_media::Channels;
use std::hint::black_box;

fn speech_frames(n: usize) -> Vec<Vec<i16>> {
    // Skip the leading silence so the benched frames are voiced.
    let mut src = SpeechLike::new(1);
    std::iter::from_fn(|| src.next_frame())
        .filter(|f| huddle_media::analysis::rms(f) > 500.0)
        .take(n)
        .collect()
}

fn bench_opus(c: &mut Criterion) {
    let frames = speech_frames(50);
    let mut enc = match OpusEncoder::new(EncoderConfig::default()) {
        Ok(e) => e,
        Err(e) => panic!("encoder: {e}"),
    };
    let packets: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| enc.encode(f).unwrap_or_default())
        .collect();

    let mut i = 0;
    let mut out = Vec::new();
    c.bench_function("opus_encode_20ms_mono_32k", |b| {
        b.iter(|| {
            i = (i + 1) % frames.len();
            black_box(enc.encode_into(black_box(&frames[i]), &mut out).ok())
        })
    });

    let mut dec = match OpusDecoder::new(Channels::Mono) {
        Ok(d) => d,
        Err(e) => panic!("decoder: {e}"),
    };
    let mut j = 0;
    c.bench_function("opus_decode_20ms_mono_32k", |b| {
        b.iter(|| {
            j = (j + 1) % packets.len();
            black_box(dec.decode(black_box(&packets[j])).ok())
        })
    });

    let mut pz = match OpusPacketizer::new(0x1234, 111, 0, 0) {
        Ok(p) => p,
        Err(e) => panic!("packetizer: {e}"),
    };
    let mut buf = Vec::with_capacity(1500);
    c.bench_function("rtp_opus_packetize_marshal_parse", |b| {
        b.iter(|| {
            let pkt = pz.packetize(black_box(&packets[0]));
            buf.clear();
            pkt.marshal_into(&mut buf);
            black_box(parse_rtp(&buf).map(|v| v.sequence_number).ok())
        })
    });
}

fn bench_correlation(c: &mut Criterion) {
    // The end-to-end test size: 5 s sent vs 5.5 s received, lags within +-1 s.
    let mut src = SpeechLike::new(2).with_frames(250);
    let sent: Vec<i16> = std::iter::from_fn(|| src.next_frame()).flatten().collect();
    let mut received = vec![0i16; 24_000];
    received.extend_from_slice(&sent);
    let mut group = c.benchmark_group("analysis");
    group.sample_size(10);
    group.bench_function("ncc_5s_vs_5.5s_lag_1s", |b| {
        b.iter(|| {
            black_box(huddle_media::analysis::normalized_cross_correlation(
                black_box(&sent),
                black_box(&received),
                48_000,
            ))
        })
    });
    group.finish();
}

criterion_group!(benches, bench_opus, bench_correlation);
criterion_main!(benches);
