//! Server CPU per relayed packet of the embedded TURN server, sockets and
//! all: this program starts a TURN server in a child process (the same
//! binary with `--serve`), allocates `--clients` relays through it with an
//! independent TURN client (`turn-client-proto`), each with a channel to a
//! UDP peer here that echoes what it gets, then sends `--pps` packets a
//! second per client for `--seconds`. Each echo is two relayed packets
//! (client to peer, peer to client). The child's CPU time (user + system,
//! from /proc) over the run, divided by the packets relayed, is the figure.
//!
//! ```sh
//! cargo run --release -p huddle-turn --example turn_load -- --clients 50 --pps 200 --seconds 10
//! ```
//!
//! Loopback only; Linux (/proc).

use huddle_turn::credentials::{credentials, unix_now};
use huddle_turn::driver::{self, TurnConfig};
use huddle_turn::{PeerPolicy, RelayConfig, TurnLimits};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use turn_client_proto::api::{TurnClientApi, TurnConfig as ClientConfig, TurnEvent};
use turn_client_proto::stun::agent::Transmit;
use turn_client_proto::stun::auth::Feature;
use turn_client_proto::types::{TransportType, TurnCredentials};
use turn_client_proto::udp::TurnClientUdp;

const SECRET: &str = "turn-load secret";
/// A 32 kbit/s Opus frame in SRTP, roughly.
const PAYLOAD: usize = 120;

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--serve") {
        return serve(&args);
    }
    let clients = arg(&args, "--clients", 20) as usize;
    let pps = arg(&args, "--pps", 200);
    let seconds = arg(&args, "--seconds", 10);

    let peer = UdpSocket::bind("127.0.0.1:0")?;
    let peer_addr = peer.local_addr()?;
    let port = {
        let probe = UdpSocket::bind("127.0.0.1:0")?;
        probe.local_addr()?.port()
    };
    let server_addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "--serve",
            "--port",
            &port.to_string(),
            "--peer-port",
            &peer_addr.port().to_string(),
        ])
        .stdout(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(500));

    // The echoing peer.
    peer.set_read_timeout(Some(Duration::from_millis(100)))?;
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let end = Instant::now() + Duration::from_secs(seconds + 30);
        while Instant::now() < end {
            if let Ok((n, from)) = peer.recv_from(&mut buf) {
                let _ = peer.send_to(&buf[..n], from);
            }
        }
    });

    let mut relays = Vec::new();
    for _ in 0..clients {
        relays.push(open(server_addr, peer_addr)?);
    }
    println!("{clients} allocations, each with a channel to the peer");

    let cpu_before = cpu_ticks(child.id())?;
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / pps as f64);
    let mut next = Instant::now();
    let mut sent = 0u64;
    let mut received = 0u64;
    let mut buf = [0u8; 2048];
    while started.elapsed() < Duration::from_secs(seconds) {
        for (socket, frame) in &relays {
            if socket.send_to(frame, server_addr).is_ok() {
                sent += 1;
            }
        }
        next += interval;
        loop {
            let mut any = false;
            for (socket, _) in &relays {
                while socket.recv_from(&mut buf).is_ok() {
                    received += 1;
                    any = true;
                }
            }
            let now = Instant::now();
            if now >= next {
                break;
            }
            if !any {
                std::thread::sleep((next - now).min(Duration::from_micros(500)));
            }
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    for (socket, _) in &relays {
        while socket.recv_from(&mut buf).is_ok() {
            received += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_after = cpu_ticks(child.id())?;
    let _ = child.kill();
    let _ = child.wait();
    let _ = echo.join();

    let ticks_per_s = 100.0; // USER_HZ
    let cpu_s = (cpu_after - cpu_before) as f64 / ticks_per_s;
    // Each echo that came back crossed the relay twice; a lost one at least once.
    let relayed = received * 2 + (sent - received);
    println!(
        "{sent} sent, {received} echoed back in {elapsed:.1} s; {relayed} packets relayed; \
         server CPU {cpu_s:.2} s ({:.1} % of a core): {:.2} us per relayed packet",
        100.0 * cpu_s / elapsed,
        cpu_s * 1e6 / relayed.max(1) as f64
    );
    Ok(())
}

/// An allocation through `server` with a channel bound to `peer`: its
/// socket (non-blocking) and the ChannelData frame it sends.
fn open(
    server: SocketAddr,
    peer: SocketAddr,
) -> Result<(UdpSocket, Vec<u8>), Box<dyn std::error::Error>> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_millis(20)))?;
    let local = socket.local_addr()?;
    let (user, pass) = credentials(SECRET, unix_now() + 3600, "PA_load");
    let mut config = ClientConfig::new(TurnCredentials::new(&user, &pass));
    config.set_anonymous_username(Feature::Disabled);
    let mut client = TurnClientUdp::allocate(local, server, config);
    let base = Instant::now();
    let now = |base: Instant| {
        turn_client_proto::types::Instant::from_nanos(base.elapsed().as_nanos() as i64)
    };
    let mut buf = [0u8; 2048];
    let mut bound = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !bound {
        if Instant::now() > deadline {
            return Err("no allocation and channel within 5 s".into());
        }
        let _ = client.poll(now(base));
        while let Some(t) = client.poll_transmit(now(base)) {
            socket.send_to(&t.data, t.to)?;
        }
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            let _ = client.recv(
                Transmit::new(&buf[..n], TransportType::Udp, from, local),
                now(base),
            );
        }
        while let Some(e) = client.poll_event() {
            match e {
                TurnEvent::AllocationCreated(..) => {
                    client.bind_channel(TransportType::Udp, peer, now(base))?;
                }
                TurnEvent::ChannelCreated(..) => bound = true,
                TurnEvent::AllocationCreateFailed(_) => return Err("allocation refused".into()),
                _ => {}
            }
        }
    }
    let frame = client
        .send_to(TransportType::Udp, peer, vec![0x80u8; PAYLOAD], now(base))?
        .ok_or("no transmit")?
        .build()
        .data;
    socket.set_nonblocking(true)?;
    Ok((socket, frame))
}

/// utime + stime of process `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64, Box<dyn std::error::Error>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').ok_or("bad /proc stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11).ok_or("no utime")?.parse()?;
    let stime: u64 = fields.get(12).ok_or("no stime")?.parse()?;
    Ok(utime + stime)
}

/// The child: a TURN server on `--port` (UDP) relaying to `--peer-port`.
fn serve(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let port = arg(args, "--port", 3478) as u16;
    let peer: SocketAddr = format!("127.0.0.1:{}", arg(args, "--peer-port", 9)).parse()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let turn = driver::start(TurnConfig {
            relay: RelayConfig {
                realm: "huddle".into(),
                secret: SECRET.into(),
                peers: PeerPolicy::new([(peer, peer)]),
                limits: TurnLimits {
                    max_allocations: 100_000,
                    max_allocations_per_participant: 100_000,
                    max_bitrate_bps: u64::MAX / 16,
                },
            },
            listen: Some(format!("127.0.0.1:{port}").parse()?),
            tls: None,
            relay_ip: None,
        })
        .await?;
        std::future::pending::<()>().await;
        drop(turn);
        Ok(())
    })
}
