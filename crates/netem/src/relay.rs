//! A UDP relay that applies an [`Impairment`] each way. Put it in front of the
//! SFU's media port (announce the relay's address as the SFU's public media
//! address) and every participant's media crosses it.
//!
//! It works like a NAT: each client source address gets its own upstream
//! socket, so the SFU sees one distinct address per client.

use crate::model::{Counters, Impairment, Model};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::debug;

/// Datagrams held for later delivery at most; more are dropped and counted.
const MAX_QUEUED: usize = 10_000;
/// Largest datagram relayed.
const MAX_DATAGRAM: usize = 2048;

/// How the relay runs.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Address clients send to (port 0 picks one).
    pub listen: SocketAddr,
    /// Where their datagrams go (the SFU's media socket).
    pub upstream: SocketAddr,
    /// Impairment of client -> upstream traffic.
    pub to_upstream: Impairment,
    /// Impairment of upstream -> client traffic.
    pub to_client: Impairment,
    /// Most client addresses served at once.
    pub max_sessions: usize,
}

impl RelayConfig {
    /// A relay on 127.0.0.1 in front of `upstream`, impairing nothing.
    pub fn new(upstream: SocketAddr) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            upstream,
            to_upstream: Impairment::default(),
            to_client: Impairment::default(),
            max_sessions: 64,
        }
    }
}

/// What the relay did, each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Client -> upstream.
    pub to_upstream: Counters,
    /// Upstream -> client.
    pub to_client: Counters,
    /// Datagrams dropped because the queue or the session table was full.
    pub overflow: u64,
    /// Datagrams dropped while their way was blocked.
    pub blocked: u64,
}

/// A running relay; dropping it stops it.
#[derive(Debug)]
pub struct Relay {
    local_addr: SocketAddr,
    stats: Arc<Mutex<RelayStats>>,
    blocked: Arc<Blocked>,
    _stop: oneshot::Sender<()>,
}

/// Which ways the relay drops everything.
#[derive(Debug, Default)]
struct Blocked {
    to_upstream: AtomicBool,
    to_client: AtomicBool,
}

impl Relay {
    /// Bind and start relaying.
    pub async fn start(config: RelayConfig) -> std::io::Result<Relay> {
        let front = UdpSocket::bind(config.listen).await?;
        let local_addr = front.local_addr()?;
        let stats = Arc::new(Mutex::new(RelayStats::default()));
        let (stop, stopped) = oneshot::channel();
        let blocked = Arc::new(Blocked::default());
        tokio::spawn(run(front, config, stats.clone(), blocked.clone(), stopped));
        Ok(Relay {
            local_addr,
            stats,
            blocked,
            _stop: stop,
        })
    }

    /// Drop everything, both ways, from now on (`true`: the path is cut)
    /// or relay again (`false`). What was already queued is still sent.
    pub fn set_blocked(&self, blocked: bool) {
        self.blocked.to_upstream.store(blocked, Ordering::Relaxed);
        self.blocked.to_client.store(blocked, Ordering::Relaxed);
    }

    /// Drop everything the upstream sends toward clients from now on
    /// (`true`) or relay it again (`false`); the other way goes on.
    pub fn set_blocked_to_client(&self, blocked: bool) {
        self.blocked.to_client.store(blocked, Ordering::Relaxed);
    }

    /// The address clients send to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A relay on 127.0.0.1 in front of an SFU that is still to be started
    /// on loopback: picks a free UDP port for the SFU, starts the relay
    /// toward it with `to_client` applied to what the SFU sends, and returns
    /// the relay and the address the SFU must bind. The SFU must announce the
    /// relay's address (`media_public = relay.local_addr()`), so that clients
    /// send through it, and run one worker (the relay fronts one port).
    pub async fn in_front_of_local_sfu(
        to_client: crate::Impairment,
    ) -> std::io::Result<(Relay, SocketAddr)> {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let sfu = SocketAddr::from(([127, 0, 0, 1], port));
        let mut config = RelayConfig::new(sfu);
        config.to_client = to_client;
        Ok((Relay::start(config).await?, sfu))
    }

    /// Counts so far.
    pub fn stats(&self) -> RelayStats {
        self.stats.lock().map(|s| *s).unwrap_or_default()
    }
}

enum Dest {
    Upstream(SocketAddr),
    Client(SocketAddr),
}

struct Queued {
    at: Instant,
    order: u64,
    dest: Dest,
    payload: Vec<u8>,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

async fn run(
    front: UdpSocket,
    config: RelayConfig,
    stats: Arc<Mutex<RelayStats>>,
    blocked: Arc<Blocked>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut dropped_blocked = 0u64;
    let start = Instant::now();
    let mut up_model = Model::new(config.to_upstream.clone());
    let mut down_model = Model::new(config.to_client.clone());
    let mut sessions: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let (from_upstream_tx, mut from_upstream) = mpsc::channel::<(SocketAddr, Vec<u8>)>(1024);
    let mut queue: BinaryHeap<Reverse<Queued>> = BinaryHeap::new();
    let mut order = 0u64;
    let mut overflow = 0u64;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let next = queue.peek().map(|Reverse(q)| q.at);
        let sleep = tokio::time::sleep_until(
            next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
        );
        let mut arrived: Option<(Dest, Vec<u8>)> = None;
        tokio::select! {
            _ = &mut stopped => break,
            res = front.recv_from(&mut buf) => {
                let Ok((n, client)) = res else { continue };
                if !sessions.contains_key(&client) {
                    if sessions.len() >= config.max_sessions {
                        overflow += 1;
                        continue;
                    }
                    match open_session(client, config.upstream, from_upstream_tx.clone()).await {
                        Ok(sock) => { sessions.insert(client, sock); }
                        Err(e) => { debug!("relay session for {client}: {e}"); continue; }
                    }
                }
                arrived = Some((Dest::Upstream(client), buf[..n].to_vec()));
            }
            Some((client, payload)) = from_upstream.recv() => {
                arrived = Some((Dest::Client(client), payload));
            }
            _ = sleep, if next.is_some() => {}
        }
        let way_blocked = match &arrived {
            Some((Dest::Upstream(_), _)) => blocked.to_upstream.load(Ordering::Relaxed),
            Some((Dest::Client(_), _)) => blocked.to_client.load(Ordering::Relaxed),
            None => false,
        };
        if way_blocked {
            arrived = None;
            dropped_blocked += 1;
        }
        if let Some((dest, payload)) = arrived {
            let now = Instant::now();
            let model = match dest {
                Dest::Upstream(_) => &mut up_model,
                Dest::Client(_) => &mut down_model,
            };
            let fates = model.fate(now - start);
            for at in &fates {
                if queue.len() >= MAX_QUEUED {
                    overflow += 1;
                    continue;
                }
                order += 1;
                let dest = match &dest {
                    Dest::Upstream(c) => Dest::Upstream(*c),
                    Dest::Client(c) => Dest::Client(*c),
                };
                queue.push(Reverse(Queued {
                    at: start + *at,
                    order,
                    dest,
                    payload: payload.clone(),
                }));
            }
        }
        // Deliver everything due.
        let now = Instant::now();
        while queue.peek().is_some_and(|Reverse(q)| q.at <= now) {
            let Some(Reverse(q)) = queue.pop() else { break };
            let res = match q.dest {
                Dest::Upstream(client) => match sessions.get(&client) {
                    Some(sock) => sock.send(&q.payload).await,
                    None => continue,
                },
                Dest::Client(client) => front.send_to(&q.payload, client).await,
            };
            if let Err(e) = res {
                debug!("relay send: {e}");
            }
        }
        if let Ok(mut s) = stats.lock() {
            *s = RelayStats {
                to_upstream: up_model.counters(),
                to_client: down_model.counters(),
                overflow,
                blocked: dropped_blocked,
            };
        }
    }
}

/// A socket toward the upstream for one client, and a task reading what the
/// upstream sends back to it.
async fn open_session(
    client: SocketAddr,
    upstream: SocketAddr,
    back: mpsc::Sender<(SocketAddr, Vec<u8>)>,
) -> std::io::Result<Arc<UdpSocket>> {
    let bind = if upstream.is_ipv6() {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    };
    let sock = Arc::new(UdpSocket::bind(bind).await?);
    sock.connect(upstream).await?;
    let reader = sock.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        while let Ok(n) = reader.recv(&mut buf).await {
            if back.send((client, buf[..n].to_vec())).await.is_err() {
                break;
            }
        }
    });
    Ok(sock)
}
