//! The embedded TURN server over real sockets on loopback, driven by an
//! independent TURN client (`turn-client-proto`): allocations over UDP, TCP
//! and TLS relay to the SFU's address and nowhere else; expired, forged and
//! malformed credentials are refused; the per-participant quota holds.
//!
//! The "SFU" here is a UDP socket whose address the server is told is the
//! SFU's; a second socket on the same IP, another port, stands for anything
//! else on that host (a database, say).

use huddle_turn::credentials::{credentials, unix_now};
use huddle_turn::driver::{self, TurnAddrs, TurnConfig, TurnHandle};
use huddle_turn::{PeerPolicy, RelayConfig, TurnLimits};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_rustls::rustls;
use turn_client_proto::api::{TurnClientApi, TurnConfig as ClientConfig, TurnEvent, TurnRecvRet};
use turn_client_proto::stun::agent::Transmit;
use turn_client_proto::stun::auth::Feature;
use turn_client_proto::tcp::TurnClientTcp;
use turn_client_proto::types::stun::attribute::ErrorCode;
use turn_client_proto::types::stun::message::{Message, MessageClass};
use turn_client_proto::types::{TransportType, TurnCredentials};
use turn_client_proto::udp::TurnClientUdp;

const SECRET: &str = "the secret the signaling service shares";

struct Setup {
    turn: TurnHandle,
    sfu: UdpSocket,
    other: UdpSocket,
    tls_root: rustls::pki_types::CertificateDer<'static>,
}

async fn setup(limits: TurnLimits) -> Setup {
    let sfu = UdpSocket::bind("127.0.0.1:0").await.expect("sfu socket");
    let other = UdpSocket::bind("127.0.0.1:0").await.expect("other socket");
    let sfu_addr = sfu.local_addr().expect("sfu address");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("certificate");
    let tls_root = cert.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_no_client_auth()
    .with_single_cert(vec![tls_root.clone()], key)
    .expect("tls config");
    let turn = driver::start(TurnConfig {
        relay: RelayConfig {
            realm: "huddle".into(),
            secret: SECRET.into(),
            peers: PeerPolicy::new([(sfu_addr, sfu_addr)]),
            limits,
        },
        listen: Some("127.0.0.1:0".parse().expect("address")),
        tls: Some(("127.0.0.1:0".parse().expect("address"), Arc::new(tls))),
        relay_ip: None,
    })
    .await
    .expect("TURN server starts");
    Setup {
        turn,
        sfu,
        other,
        tls_root,
    }
}

fn creds(participant: &str) -> TurnCredentials {
    let (user, pass) = credentials(SECRET, unix_now() + 600, participant);
    TurnCredentials::new(&user, &pass)
}

/// How a test client reaches the server.
enum Io {
    Udp(UdpSocket),
    Stream(Box<dyn Stream>),
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A TURN client (sans-IO) with its socket, on a clock of its own.
struct Client<C: TurnClientApi> {
    turn: C,
    io: Io,
    server: SocketAddr,
    local: SocketAddr,
    base: Instant,
    events: Vec<TurnEvent>,
    received: Vec<(SocketAddr, Vec<u8>)>,
    /// Error codes of the STUN error responses the server sent.
    errors: Vec<u16>,
}

impl<C: TurnClientApi> Client<C> {
    fn now(&self) -> turn_client_proto::types::Instant {
        turn_client_proto::types::Instant::from_nanos(self.base.elapsed().as_nanos() as i64)
    }

    async fn write(&mut self, data: &[u8], to: SocketAddr) {
        match &mut self.io {
            Io::Udp(s) => {
                s.send_to(data, to).await.expect("send");
            }
            Io::Stream(s) => s.write_all(data).await.expect("write"),
        }
    }

    /// Runs the client for `time`, or until `done` says so.
    async fn run(&mut self, time: Duration, done: impl Fn(&Self) -> bool) {
        let end = Instant::now() + time;
        let mut buf = vec![0u8; 4096];
        while Instant::now() < end && !done(self) {
            let now = self.now();
            let _ = self.turn.poll(now);
            while let Some(t) = self.turn.poll_transmit(now) {
                let (data, to) = (t.data.to_vec(), t.to);
                self.write(&data, to).await;
            }
            while let Some(e) = self.turn.poll_event() {
                self.events.push(e);
            }
            let read = match &mut self.io {
                Io::Udp(s) => {
                    tokio::time::timeout(Duration::from_millis(20), s.recv_from(&mut buf)).await
                }
                Io::Stream(s) => {
                    let server = self.server;
                    tokio::time::timeout(Duration::from_millis(20), async {
                        s.read(&mut buf).await.map(|n| (n, server))
                    })
                    .await
                }
            };
            let Ok(Ok((n, from))) = read else { continue };
            if n == 0 {
                break;
            }
            if let Ok(msg) = Message::from_bytes(&buf[..n]) {
                if msg.has_class(MessageClass::Error) {
                    if let Ok(e) = msg.attribute::<ErrorCode>() {
                        self.errors.push(e.code());
                    }
                }
            }
            let transport = self.turn.transport();
            let transmit = Transmit::new(&buf[..n], transport, from, self.local);
            let now = self.now();
            if let TurnRecvRet::PeerData(p) = self.turn.recv(transmit, now) {
                self.received.push((p.peer, p.data().to_vec()));
            }
            while let Some(p) = self.turn.poll_recv(now) {
                self.received.push((p.peer, p.data().to_vec()));
            }
            while let Some(e) = self.turn.poll_event() {
                self.events.push(e);
            }
        }
    }

    fn relayed(&self) -> Option<SocketAddr> {
        self.events.iter().find_map(|e| match e {
            TurnEvent::AllocationCreated(_, addr) => Some(*addr),
            _ => None,
        })
    }

    fn failed(&self) -> bool {
        self.events
            .iter()
            .any(|e| matches!(e, TurnEvent::AllocationCreateFailed(_)))
    }

    async fn allocate(&mut self) -> Option<SocketAddr> {
        // Done when allocated, failed, or refused twice (the first 401 only
        // asks for credentials).
        self.run(Duration::from_secs(5), |c| {
            c.relayed().is_some() || c.failed() || c.errors.len() >= 2
        })
        .await;
        self.relayed()
    }

    /// Runs until an event `outcome` tells apart comes (`Some(true)`: it
    /// worked), for at most 5 s; whether it worked.
    async fn outcome(&mut self, outcome: impl Fn(&TurnEvent) -> Option<bool>) -> bool {
        self.run(Duration::from_secs(5), |c| {
            c.events.iter().any(|e| outcome(e).is_some())
        })
        .await;
        self.events.iter().any(|e| outcome(e) == Some(true))
    }

    async fn permit(&mut self, ip: IpAddr) -> bool {
        let now = self.now();
        self.turn
            .create_permission(TransportType::Udp, ip, now)
            .expect("permission request");
        self.outcome(|e| match e {
            TurnEvent::PermissionCreated(_, i) if *i == ip => Some(true),
            TurnEvent::PermissionCreateFailed(_, i) if *i == ip => Some(false),
            _ => None,
        })
        .await
    }

    async fn bind(&mut self, peer: SocketAddr) -> bool {
        let now = self.now();
        self.turn
            .bind_channel(TransportType::Udp, peer, now)
            .expect("channel request");
        self.outcome(|e| match e {
            TurnEvent::ChannelCreated(_, p) if *p == peer => Some(true),
            TurnEvent::ChannelCreateFailed(_, p) if *p == peer => Some(false),
            _ => None,
        })
        .await
    }

    async fn send(&mut self, to: SocketAddr, data: &[u8]) {
        let now = self.now();
        let transmit = self
            .turn
            .send_to(TransportType::Udp, to, data.to_vec(), now)
            .expect("send through the relay");
        if let Some(t) = transmit {
            let t = t.build();
            let (data, dest) = (t.data, t.to);
            self.write(&data, dest).await;
        }
    }
}

/// The client's configuration: USERNAME in the clear. `turn-server-proto`
/// offers RFC 8489 username anonymity (USERHASH), which a server that
/// learns its users from their usernames cannot take; browsers and the
/// other WebRTC stacks do not use it.
fn client_config(creds: TurnCredentials) -> ClientConfig {
    let mut config = ClientConfig::new(creds);
    config.set_anonymous_username(Feature::Disabled);
    config
}

async fn udp_client(addrs: TurnAddrs, creds: TurnCredentials) -> Client<TurnClientUdp> {
    let server = addrs.udp.expect("udp listener");
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("client socket");
    let local = socket.local_addr().expect("address");
    Client {
        turn: TurnClientUdp::allocate(local, server, client_config(creds)),
        io: Io::Udp(socket),
        server,
        local,
        base: Instant::now(),
        events: Vec::new(),
        received: Vec::new(),
        errors: Vec::new(),
    }
}

fn stream_client(
    io: Box<dyn Stream>,
    local: SocketAddr,
    server: SocketAddr,
    creds: TurnCredentials,
) -> Client<TurnClientTcp> {
    Client {
        turn: TurnClientTcp::allocate(local, server, client_config(creds)),
        io: Io::Stream(io),
        server,
        local,
        base: Instant::now(),
        events: Vec::new(),
        received: Vec::new(),
        errors: Vec::new(),
    }
}

/// What `socket` receives within `time`.
async fn receive(socket: &UdpSocket, time: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = vec![0u8; 2048];
    match tokio::time::timeout(time, socket.recv_from(&mut buf)).await {
        Ok(Ok((n, from))) => Some((buf[..n].to_vec(), from)),
        _ => None,
    }
}

/// A client relays to the SFU and hears back from it; `c` is allocated.
async fn relays_to_the_sfu<C: TurnClientApi>(c: &mut Client<C>, s: &Setup, relayed: SocketAddr) {
    let sfu = s.sfu.local_addr().expect("address");
    assert!(
        c.permit(sfu.ip()).await,
        "a permission for the SFU's address"
    );
    c.send(sfu, b"stun binding, say").await;
    let (data, from) = receive(&s.sfu, Duration::from_secs(2))
        .await
        .expect("the SFU gets what the client relays");
    assert_eq!(data, b"stun binding, say");
    assert_eq!(from, relayed, "from the relayed address");
    s.sfu.send_to(b"answer", from).await.expect("answer");
    c.run(Duration::from_secs(2), |c| !c.received.is_empty())
        .await;
    assert_eq!(c.received, vec![(sfu, b"answer".to_vec())]);
}

#[tokio::test]
async fn a_udp_allocation_relays_to_the_sfu_and_nowhere_else() {
    let s = setup(TurnLimits::default()).await;
    let mut c = udp_client(s.turn.addrs(), creds("PA_alice")).await;
    let relayed = c.allocate().await.expect("allocated");
    relays_to_the_sfu(&mut c, &s, relayed).await;

    // Another host: no permission.
    assert!(!c.permit("127.0.0.2".parse().expect("ip")).await);
    // The SFU's IP, another port: the permission (per IP) exists, but
    // nothing is relayed there, and no channel can be bound to it.
    let other = s.other.local_addr().expect("address");
    c.send(other, b"FLUSHALL").await;
    assert_eq!(receive(&s.other, Duration::from_millis(500)).await, None);
    assert!(!c.bind(other).await, "no channel to another port");
    // A channel to the SFU carries data both ways.
    let sfu = s.sfu.local_addr().expect("address");
    assert!(c.bind(sfu).await);
    c.send(sfu, b"over the channel").await;
    let (data, _) = receive(&s.sfu, Duration::from_secs(2))
        .await
        .expect("relayed");
    assert_eq!(data, b"over the channel");
    // Nobody else reaches the client through its relay.
    s.other
        .send_to(b"unsolicited", relayed)
        .await
        .expect("send");
    c.received.clear();
    c.run(Duration::from_millis(500), |c| !c.received.is_empty())
        .await;
    assert!(c.received.is_empty(), "{:?}", c.received);
    let stats = s.turn.stats();
    assert!(stats.refused_peers >= 3, "{stats:?}");
    assert_eq!(stats.allocations, 1, "{stats:?}");
}

#[tokio::test]
async fn expired_forged_and_malformed_credentials_are_refused() {
    let s = setup(TurnLimits::default()).await;
    let (user, pass) = credentials(SECRET, unix_now() - 1, "PA_late");
    let (forged_user, forged_pass) = credentials("another secret", unix_now() + 600, "PA_eve");
    let cases = [
        ("expired", TurnCredentials::new(&user, &pass)),
        ("forged", TurnCredentials::new(&forged_user, &forged_pass)),
        ("malformed", TurnCredentials::new("alice", "password")),
    ];
    for (what, creds) in cases {
        let mut c = udp_client(s.turn.addrs(), creds).await;
        assert_eq!(c.allocate().await, None, "{what} credentials");
        // The first request has no credentials (401 asks for them); the
        // second has these, and gets 401 again.
        let unauthorized = c.errors.iter().filter(|&&e| e == 401).count();
        assert!(
            unauthorized >= 2,
            "{what}: the server said no: {:?}",
            c.errors
        );
    }
    assert_eq!(s.turn.stats().allocations, 0);
    assert!(s.turn.stats().expired >= 1);
}

/// Credentials that expire during an allocation open no new one; the
/// allocation made with them goes on (its client refreshes it; cutting it
/// would cut a live call's media, and the client gets new credentials over
/// signaling for its next allocations).
#[tokio::test]
async fn expired_credentials_keep_their_allocation_but_open_no_other() {
    let s = setup(TurnLimits::default()).await;
    let (user, pass) = credentials(SECRET, unix_now() + 2, "PA_brief");
    let mut c = udp_client(s.turn.addrs(), TurnCredentials::new(&user, &pass)).await;
    let relayed = c.allocate().await.expect("allocated while valid");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    relays_to_the_sfu(&mut c, &s, relayed).await;
    let mut late = udp_client(s.turn.addrs(), TurnCredentials::new(&user, &pass)).await;
    assert_eq!(
        late.allocate().await,
        None,
        "no new allocation once expired"
    );
    assert!(
        late.errors.iter().filter(|&&e| e == 401).count() >= 2,
        "{:?}",
        late.errors
    );
    assert_eq!(s.turn.stats().allocations, 1);
}

#[tokio::test]
async fn a_participant_gets_at_most_its_quota_of_allocations() {
    let s = setup(TurnLimits {
        max_allocations_per_participant: 2,
        ..TurnLimits::default()
    })
    .await;
    let mut clients = Vec::new();
    for _ in 0..2 {
        let mut c = udp_client(s.turn.addrs(), creds("PA_bob")).await;
        assert!(c.allocate().await.is_some());
        clients.push(c);
    }
    let mut third = udp_client(s.turn.addrs(), creds("PA_bob")).await;
    assert_eq!(third.allocate().await, None, "over the quota");
    assert!(third.errors.contains(&486), "{:?}", third.errors);
    let mut other = udp_client(s.turn.addrs(), creds("PA_carol")).await;
    assert!(other.allocate().await.is_some(), "someone else still may");
    assert_eq!(s.turn.stats().allocations, 3);
    assert_eq!(s.turn.stats().refused_allocations, 1);
}

#[tokio::test]
async fn tcp_and_tls_clients_relay_to_the_sfu() {
    let s = setup(TurnLimits::default()).await;
    let addrs = s.turn.addrs();

    let server = addrs.tcp.expect("tcp listener");
    let tcp = TcpStream::connect(server).await.expect("connect");
    let local = tcp.local_addr().expect("address");
    let mut c = stream_client(Box::new(tcp), local, server, creds("PA_tcp"));
    let relayed = c.allocate().await.expect("allocated over TCP");
    relays_to_the_sfu(&mut c, &s, relayed).await;

    let server = addrs.tls.expect("tls listener");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(s.tls_root.clone()).expect("root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(server).await.expect("connect");
    let local = tcp.local_addr().expect("address");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let mut c = stream_client(Box::new(tls), local, server, creds("PA_tls"));
    let relayed = c.allocate().await.expect("allocated over TLS");
    relays_to_the_sfu(&mut c, &s, relayed).await;
}

/// An allocation over TCP ends with its connection: its relay closes and
/// it no longer counts against the participant's quota.
#[tokio::test]
async fn a_tcp_allocation_ends_with_its_connection() {
    let s = setup(TurnLimits {
        max_allocations_per_participant: 1,
        ..TurnLimits::default()
    })
    .await;
    let server = s.turn.addrs().tcp.expect("tcp listener");
    for round in 0..3 {
        let tcp = TcpStream::connect(server).await.expect("connect");
        let local = tcp.local_addr().expect("address");
        let mut c = stream_client(Box::new(tcp), local, server, creds("PA_tcp"));
        assert!(
            c.allocate().await.is_some(),
            "round {round}: the quota of one is free again"
        );
        drop(c);
        let ended = tokio::time::timeout(Duration::from_secs(5), async {
            while s.turn.stats().allocations > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            ended.is_ok(),
            "round {round}: the allocation ended with its connection"
        );
    }
}
