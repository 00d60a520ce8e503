//! SFrame's cost per frame on a client: encrypt and decrypt one frame with
//! AES-128-GCM (suite 4, huddle's choice), a 20 ms Opus frame (80 bytes,
//! 32 kbit/s) and a video frame (10 kB, about 2.4 Mbit/s at 30 fps), with
//! 12 bytes of authenticated metadata; and the key derivation a new epoch
//! costs per sender.
//!
//! `cargo bench -p huddle-e2ee --bench sframe`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use huddle_e2ee::sframe::keys::KeyMaterial;
use huddle_e2ee::sframe::{CipherSuite, SframeReceiver, SframeSender};
use std::hint::black_box;
use std::time::Instant;

const SUITE: CipherSuite = CipherSuite::AesGcm128Sha256;
const BASE_KEY: [u8; 16] = [0x5a; 16];
const METADATA: [u8; 12] = [0x80; 12];

fn frames(c: &mut Criterion) {
    let mut group = c.benchmark_group("sframe");
    for (name, len) in [("audio_80B", 80usize), ("video_10kB", 10_000)] {
        let frame = vec![0x42u8; len];
        group.throughput(Throughput::Bytes(len as u64));
        let mut tx = SframeSender::new(SUITE, 7, &BASE_KEY).expect("sender");
        let mut out = Vec::with_capacity(len + 64);
        group.bench_function(BenchmarkId::new("encrypt", name), |b| {
            b.iter(|| {
                out.clear();
                tx.encrypt(&METADATA, black_box(&frame), &mut out)
                    .expect("encrypts");
            })
        });
        // A fresh counter for each decryption (the replay window takes each
        // once): encrypt a batch, then decrypt it round after round with a
        // new receiver per round.
        let mut tx = SframeSender::new(SUITE, 7, &BASE_KEY).expect("sender");
        let batch: Vec<Vec<u8>> = (0..1000)
            .map(|_| {
                let mut ct = Vec::new();
                tx.encrypt(&METADATA, &frame, &mut ct).expect("encrypts");
                ct
            })
            .collect();
        let now = Instant::now();
        let mut pt = Vec::with_capacity(len);
        group.throughput(Throughput::Bytes(len as u64 * batch.len() as u64));
        group.bench_function(BenchmarkId::new("decrypt_x1000", name), |b| {
            b.iter(|| {
                let mut rx = SframeReceiver::new(SUITE);
                rx.add_key(7, &BASE_KEY).expect("key");
                for ct in &batch {
                    pt.clear();
                    rx.decrypt(now, &METADATA, black_box(ct), &mut pt)
                        .expect("decrypts");
                }
            })
        });
    }
    group.finish();
    c.bench_function("sframe/derive_key", |b| {
        b.iter(|| KeyMaterial::derive(SUITE, black_box(9), &BASE_KEY).expect("derives"))
    });
}

criterion_group!(benches, frames);
criterion_main!(benches);
