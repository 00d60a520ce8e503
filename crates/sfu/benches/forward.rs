//! The SFU's per-packet path: one SRTP-protected Opus RTP datagram from a
//! publisher into `Endpoint::handle_datagram` (demux, SRTP unprotect, route,
//! rewrite, SRTP protect and queue per subscriber), then `poll_transmit`
//! drained. One publisher, K subscribers, on the sans-IO harness (no sockets).
//!
//! The input is captured from the publisher's own `rtc` peer connection
//! (sequence numbers increase; SRTP replay protection rejects repeats), and
//! regenerated on a fresh setup, outside the timing, when a run needs more.
//!
//! `cargo bench -p huddle-sfu --bench forward`. Time per iteration is per
//! INPUT packet; the throughput line counts OUTPUT (forwarded) packets.

#[path = "../tests/harness/mod.rs"]
mod harness;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use harness::{Client, Net, Role};
use huddle_proto::TrackKind;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Datagrams generated per setup (more when a sample asks for more).
const BATCH: usize = 20_000;
/// A typical 32 kbit/s Opus frame.
const PAYLOAD: [u8; 80] = [0x55; 80];

struct Rig {
    net: Net,
    src: SocketAddr,
    input: Vec<Vec<u8>>,
    next: usize,
}

impl Rig {
    /// A publisher and `k` subscribers, connected, audio flowing to all.
    fn new(k: usize, packets: usize) -> Self {
        let mut net = Net::new();
        let publisher = net.join("pub", true, false);
        let subs: Vec<usize> = (0..k)
            .map(|i| net.join(&format!("sub{i}"), false, false))
            .collect();
        net.connect();
        net.start_media(publisher, TrackKind::Audio, &subs);
        net.connect();
        let input = (0..packets)
            .map(|_| net.capture_rtp(publisher, TrackKind::Audio, &PAYLOAD))
            .collect();
        Self {
            net,
            src: Client::addr(publisher, Role::Publisher),
            input,
            next: 0,
        }
    }

    fn remaining(&self) -> usize {
        self.input.len() - self.next
    }

    /// Feed `n` captured datagrams; returns the wall time and the number of
    /// datagrams the endpoint queued.
    fn feed(&mut self, n: usize) -> (Duration, u64) {
        let now = self.net.now;
        let mut out = 0u64;
        let start = Instant::now();
        for d in &self.input[self.next..self.next + n] {
            self.net
                .endpoint
                .handle_datagram(now, self.src, black_box(d));
            while let Some(t) = self.net.endpoint.poll_transmit() {
                black_box(&t);
                out += 1;
            }
        }
        let took = start.elapsed();
        self.next += n;
        (took, out)
    }
}

fn bench_forward(c: &mut Criterion) {
    let mut group = c.benchmark_group("sfu_forward_audio");
    for k in [1usize, 5, 20] {
        let mut rig = Rig::new(k, BATCH);
        // Sanity, outside the timing: every input goes out K times.
        let before = rig.net.endpoint.stats();
        let (_, out) = rig.feed(100);
        let after = rig.net.endpoint.stats();
        assert_eq!(after.rtp_in - before.rtp_in, 100, "k={k}: input not taken");
        assert_eq!(
            after.rtp_out - before.rtp_out,
            100 * k as u64,
            "k={k}: not forwarded"
        );
        assert!(out >= 100 * k as u64, "k={k}: transmits missing");

        group.throughput(Throughput::Elements(k as u64));
        group.bench_with_input(BenchmarkId::from_parameter(k), &k, |b, &k| {
            b.iter_custom(|iters| {
                let iters = iters as usize;
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    if rig.remaining() == 0 {
                        rig = Rig::new(k, BATCH.max(iters.min(200_000)));
                    }
                    let n = left.min(rig.remaining());
                    let (took, _) = rig.feed(n);
                    total += took;
                    left -= n;
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_forward
}
criterion_main!(benches);
