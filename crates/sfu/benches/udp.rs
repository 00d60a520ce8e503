//! The SFU's UDP send path on its own: one turn's datagrams through
//! `MediaSocket::flush` (sendmmsg across destinations, GSO for same-size
//! runs to one destination) against one `send_to` per datagram on a plain
//! socket, to K loopback receivers.
//!
//! Shapes: `fanout` = one 120-byte datagram to each of K destinations (one
//! audio packet forwarded to K subscribers); `runs` = R datagrams to each of
//! K destinations (R publishers' packets read in one turn, or a video frame).
//! On loopback the sender's system call also delivers into the receiving
//! socket, so this includes what a NIC driver and the receivers' kernels
//! would do on a real network.
//!
//! `cargo bench -p huddle-sfu --bench udp`. Time per iteration is one turn;
//! the throughput line counts datagrams.

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use huddle_sfu::udp::MediaSocket;
use huddle_sfu::Transmit;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

const DATAGRAM: usize = 120;

struct Receivers {
    sockets: Vec<UdpSocket>,
    addrs: Vec<SocketAddr>,
    buf: Vec<u8>,
}

impl Receivers {
    fn new(k: usize) -> Self {
        let sockets: Vec<UdpSocket> = (0..k)
            .map(|_| {
                let s = UdpSocket::bind("127.0.0.1:0").expect("bind receiver");
                s.set_nonblocking(true).expect("nonblocking");
                s
            })
            .collect();
        let addrs = sockets
            .iter()
            .map(|s| s.local_addr().expect("addr"))
            .collect();
        Self {
            sockets,
            addrs,
            buf: vec![0; 2048],
        }
    }

    /// Read everything that arrived (outside the timing), so that no
    /// receive buffer overflows and every send takes the delivery path.
    fn drain(&mut self) -> usize {
        let mut n = 0;
        for s in &self.sockets {
            while s.recv_from(&mut self.buf).is_ok() {
                n += 1;
            }
        }
        n
    }
}

fn turn(addrs: &[SocketAddr], per_dst: usize) -> Vec<Transmit> {
    // Queue order as the endpoint produces it: input by input, each fanned
    // out to every destination.
    (0..per_dst)
        .flat_map(|_| {
            addrs.iter().map(|&dst| Transmit {
                dst,
                payload: BytesMut::zeroed(DATAGRAM),
            })
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("udp_send");
    for (shape, k, per_dst) in [("fanout", 60, 1), ("runs", 60, 10)] {
        let mut rx = Receivers::new(k);
        let n = k * per_dst;
        g.throughput(Throughput::Elements(n as u64));
        let id = format!("{shape}/K={k}/R={per_dst}");

        let mut sock = rt
            .block_on(async { MediaSocket::bind("127.0.0.1:0".parse().expect("addr")) })
            .expect("media socket");
        g.bench_function(BenchmarkId::new("media_socket_flush", &id), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    for t in turn(&rx.addrs, per_dst) {
                        sock.queue(t);
                    }
                    let start = Instant::now();
                    rt.block_on(sock.flush());
                    total += start.elapsed();
                    rx.drain();
                }
                total
            })
        });

        let plain = UdpSocket::bind("127.0.0.1:0").expect("bind");
        g.bench_function(BenchmarkId::new("send_to_each", &id), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let queue = turn(&rx.addrs, per_dst);
                    let start = Instant::now();
                    for t in &queue {
                        let _ = plain.send_to(&t.payload, t.dst);
                    }
                    total += start.elapsed();
                    rx.drain();
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
