//! The embedded TURN server's per-packet cost, sans-IO: one ChannelData
//! message from a client through `TurnRelay::from_client` to a datagram for
//! the SFU, and one datagram from the SFU through `TurnRelay::from_peer` to
//! ChannelData for the client, outputs drained. The clients are
//! `turn-client-proto` (allocated, permitted, channel bound, in memory);
//! `others` more allocations sit beside the measured one (the TURN server
//! looks allocations up by address).
//!
//! `cargo bench -p huddle-turn --bench relay`. Time per iteration is per
//! relayed packet, without the socket calls (a `sendto` and a `recvfrom`
//! more per packet in the server).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use huddle_turn::credentials::credentials;
use huddle_turn::relay::AllocateRequest;
use huddle_turn::{
    ClientTransport, Listener, Output, PeerPolicy, RelayConfig, TurnLimits, TurnRelay,
};
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use turn_client_proto::api::{TurnClientApi, TurnConfig, TurnEvent};
use turn_client_proto::stun::agent::Transmit;
use turn_client_proto::stun::auth::Feature;
use turn_client_proto::types::{TransportType, TurnCredentials};
use turn_client_proto::udp::TurnClientUdp;

const SECRET: &str = "bench secret";
const UNIX: u64 = 1_800_000_000;
/// A 32 kbit/s Opus frame in SRTP, roughly.
const PAYLOAD: [u8; 120] = [0x80; 120];

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

struct Rig {
    relay: TurnRelay,
    start: Instant,
    /// The clock everything runs on: simulated, so that the clients'
    /// timers (a request waits for its retransmission timer) pass at once.
    clock: Instant,
    sfu: SocketAddr,
    next_relay_port: u16,
}

impl Rig {
    fn new() -> Self {
        let sfu = addr("10.0.0.2:7882");
        let start = Instant::now();
        let relay = TurnRelay::new(
            RelayConfig {
                realm: "huddle".into(),
                secret: SECRET.into(),
                peers: PeerPolicy::new([(sfu, sfu)]),
                limits: TurnLimits {
                    max_allocations: 100_000,
                    max_allocations_per_participant: 100_000,
                    max_bitrate_bps: u64::MAX / 16,
                },
            },
            &[Listener {
                transport: ClientTransport::Udp,
                addr: addr("10.0.0.1:3478"),
            }],
            start,
            UNIX,
        );
        Rig {
            relay,
            start,
            clock: start,
            sfu,
            next_relay_port: 40_000,
        }
    }

    /// The clock, `step` later.
    fn tick(&mut self, step: Duration) -> Instant {
        self.clock += step;
        self.clock
    }

    /// Hands the relay's outputs on: to `client`, or opens relay sockets.
    fn drain(&mut self, client: &mut TurnClientUdp, now: Instant) {
        while let Some(out) = self.relay.poll_output() {
            match out {
                Output::ToClient {
                    client: to, data, ..
                } => {
                    let at = client_now(self.start, now);
                    let t = Transmit::new(&data[..], TransportType::Udp, addr("10.0.0.1:3478"), to);
                    let _ = client.recv(t, at);
                }
                Output::Allocate(req) => self.open(req, now),
                _ => {}
            }
        }
    }

    fn open(&mut self, req: AllocateRequest, now: Instant) {
        let relayed = SocketAddr::new(addr("10.0.0.1:0").ip(), self.next_relay_port);
        self.next_relay_port += 1;
        self.relay.allocated(req, Ok(relayed), now);
    }

    /// A client at `from`, allocated, with a permission and a channel to
    /// the SFU. Returns it and its relayed address.
    fn client(&mut self, from: SocketAddr) -> (TurnClientUdp, SocketAddr) {
        let (user, pass) = credentials(SECRET, UNIX + 3600, "PA_bench");
        let mut config = TurnConfig::new(TurnCredentials::new(&user, &pass));
        config.set_anonymous_username(Feature::Disabled);
        let mut client = TurnClientUdp::allocate(from, addr("10.0.0.1:3478"), config);
        let mut relayed = None;
        let mut channel = false;
        for round in 0..50 {
            let now = self.tick(Duration::from_millis(60));
            let at = client_now(self.start, now);
            let _ = client.poll(at);
            while let Some(t) = client.poll_transmit(at) {
                let data = t.data.to_vec();
                self.relay.from_client(0, from, &data, now);
            }
            self.drain(&mut client, now);
            while let Some(e) = client.poll_event() {
                match e {
                    TurnEvent::AllocationCreated(_, a) => {
                        relayed = Some(a);
                        client
                            .bind_channel(TransportType::Udp, self.sfu, at)
                            .expect("channel");
                    }
                    TurnEvent::ChannelCreated(..) => channel = true,
                    _ => {}
                }
            }
            if channel {
                break;
            }
            assert!(round < 49, "the client never got its channel");
        }
        (client, relayed.expect("allocated"))
    }
}

fn client_now(start: Instant, now: Instant) -> turn_client_proto::types::Instant {
    turn_client_proto::types::Instant::from_nanos((now - start).as_nanos() as i64)
}

fn relay(c: &mut Criterion) {
    let mut group = c.benchmark_group("turn_relay");
    group.throughput(Throughput::Elements(1));
    for others in [0usize, 1000] {
        let mut rig = Rig::new();
        for i in 0..others {
            let from = SocketAddr::new(addr("10.1.0.1:0").ip(), 10_000 + i as u16);
            let _ = rig.client(from);
        }
        let from = addr("10.9.9.9:5000");
        let (mut client, relayed) = rig.client(from);
        let now = rig.tick(Duration::from_micros(1));
        let channel_data = client
            .send_to(
                TransportType::Udp,
                rig.sfu,
                PAYLOAD,
                client_now(rig.start, now),
            )
            .expect("send")
            .expect("a transmit")
            .build()
            .data;
        assert_eq!(channel_data.len(), PAYLOAD.len() + 4, "ChannelData");
        group.bench_function(BenchmarkId::new("client_to_sfu", others), |b| {
            b.iter(|| {
                let now = rig.tick(Duration::from_micros(1));
                rig.relay
                    .from_client(0, from, black_box(&channel_data), now);
                let mut n = 0;
                while let Some(out) = rig.relay.poll_output() {
                    n += matches!(out, Output::ToPeer { .. }) as usize;
                }
                assert_eq!(n, 1);
            })
        });
        group.bench_function(BenchmarkId::new("sfu_to_client", others), |b| {
            b.iter(|| {
                let now = rig.tick(Duration::from_micros(1));
                rig.relay
                    .from_peer(relayed, rig.sfu, black_box(&PAYLOAD), now);
                let mut n = 0;
                while let Some(out) = rig.relay.poll_output() {
                    n += matches!(out, Output::ToClient { .. }) as usize;
                }
                assert_eq!(n, 1);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, relay);
criterion_main!(benches);
