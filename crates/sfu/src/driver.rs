//! The driver: the only async code of the SFU. Each worker is an OS thread
//! with a single-threaded tokio runtime that owns one media socket
//! ([`MediaSocket`]: batched receive and send), its ICE-TCP listener and
//! connections ([`IceTcp`], when on), one timer and one [`Endpoint`], feeds
//! it datagrams, time and commands and sends what it produces. Workers
//! share nothing on the per-packet path: each owns whole rooms (the
//! `placement` module), so forwarding never crosses threads.

use crate::config::SfuConfig;
use crate::endpoint::Endpoint;
use crate::error::SfuError;
use crate::events::{SfuEvent, SfuEvents};
use crate::handle::{Command, Sfu, WorkerHandle};
use crate::placement::Placement;
use crate::tcp::{IceTcp, Incoming};
use crate::udp::MediaSocket;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info};

/// Datagrams read per wake-up before the loop sends, checks timers and
/// commands.
const MAX_READS_PER_TURN: usize = 64;
/// How often the socket's counters are logged (debug level).
const STATS_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Bind the media sockets and start the SFU's workers.
///
/// Every socket is bound before any worker starts, so a port in use is an
/// error here and nothing is left running.
pub async fn start(config: SfuConfig) -> Result<(Sfu, SfuEvents), SfuError> {
    let n = config.workers.max(1);
    let mut sockets = Vec::with_capacity(n);
    for i in 0..n {
        sockets.push(bind(nth_port(config.bind, i)?, config.ice_tcp)?);
    }
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let placement = Arc::new(Mutex::new(Placement::new(n)));
    let mut workers: Vec<WorkerHandle> = Vec::with_capacity(n);
    for (i, socket) in sockets.into_iter().enumerate() {
        let mut worker_config = config.clone();
        worker_config.public_addr = config.public_addr.map(|a| nth_port(a, i)).transpose()?;
        let handle = spawn_worker(i, socket, worker_config, ev_tx.clone(), placement.clone())
            .await
            .inspect_err(|_| {
                // Stop the workers started so far.
                for w in &workers {
                    let _ = w.tx.send(Command::Shutdown { done: None });
                }
            })?;
        workers.push(handle);
    }
    let sfu = Sfu {
        workers: workers.into(),
        placement,
    };
    info!(media = ?sfu.local_addrs(), "SFU started with {n} worker(s)");
    Ok((sfu, ev_rx))
}

/// A worker's sockets: UDP at `addr` and, with `tcp`, a TCP listener at
/// the same address (port 0: a port free for both, tried a few times).
type Sockets = (std::net::UdpSocket, Option<std::net::TcpListener>);

/// Bind a worker's sockets (see [`Sockets`]).
fn bind(addr: SocketAddr, tcp: bool) -> Result<Sockets, SfuError> {
    const ATTEMPTS: usize = 16;
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let udp = std::net::UdpSocket::bind(addr)?;
        if !tcp {
            return Ok((udp, None));
        }
        match std::net::TcpListener::bind(udp.local_addr()?) {
            Ok(listener) => {
                listener.set_nonblocking(true)?;
                return Ok((udp, Some(listener)));
            }
            // Another program has that TCP port: with a free port of our
            // choosing, choose again.
            Err(e) if addr.port() == 0 => last = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last
        .unwrap_or_else(|| std::io::Error::other("no port free for UDP and TCP"))
        .into())
}

/// `addr` with its port moved up by `i` (port 0 stays 0: any free port).
fn nth_port(addr: SocketAddr, i: usize) -> Result<SocketAddr, SfuError> {
    if addr.port() == 0 {
        return Ok(addr);
    }
    let port = u16::try_from(i)
        .ok()
        .and_then(|i| addr.port().checked_add(i))
        .ok_or_else(|| {
            SfuError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("worker {i} would need a port above 65535 (base {addr})"),
            ))
        })?;
    Ok(SocketAddr::new(addr.ip(), port))
}

/// Start worker `index` on its own thread and wait until its socket is
/// registered with the worker's runtime.
async fn spawn_worker(
    index: usize,
    (socket, tcp): Sockets,
    config: SfuConfig,
    events: mpsc::UnboundedSender<SfuEvent>,
    placement: Arc<Mutex<Placement>>,
) -> Result<WorkerHandle, SfuError> {
    let local_addr = socket.local_addr()?;
    let max_tcp = config.ice_tcp_max_connections;
    let (tx, rx) = mpsc::unbounded_channel::<Command>();
    let (ready_tx, ready_rx) = oneshot::channel::<std::io::Result<()>>();
    std::thread::Builder::new()
        .name(format!("huddle-sfu-{index}"))
        .spawn(move || {
            // The socket registers with the runtime that will drive it.
            let setup = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .and_then(|runtime| {
                    let (socket, tcp) = runtime.block_on(async {
                        let tcp = tcp
                            .map(|l| tokio::net::TcpListener::from_std(l))
                            .transpose()?
                            .map(|l| IceTcp::new(l, max_tcp));
                        Ok::<_, std::io::Error>((MediaSocket::from_std(socket)?, tcp))
                    })?;
                    Ok((runtime, socket, tcp))
                });
            let (runtime, socket, tcp) = match setup {
                Ok(ready) => ready,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            let mut endpoint = Endpoint::new(config, local_addr);
            let since_unix_epoch = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            endpoint.set_wall_clock(std::time::Instant::now(), since_unix_epoch);
            let io = Io { socket, tcp };
            runtime.block_on(run(index, io, endpoint, rx, events, placement));
        })?;
    ready_rx.await.map_err(|_| SfuError::Stopped)??;
    debug!(worker = index, %local_addr, "SFU worker started");
    Ok(WorkerHandle { tx, local_addr })
}

/// A worker's sockets, registered with its runtime.
struct Io {
    socket: MediaSocket,
    tcp: Option<IceTcp>,
}

impl Io {
    /// Send everything the endpoint produced: on its ICE-TCP connection
    /// when the destination is one, else in the UDP socket's batch.
    async fn send(&mut self, endpoint: &mut Endpoint) {
        while let Some(t) = endpoint.poll_transmit() {
            let t = match self.tcp.as_mut() {
                Some(tcp) => tcp.send(t),
                None => Some(t),
            };
            if let Some(t) = t {
                self.socket.queue(t);
            }
        }
        self.socket.flush().await;
    }
}

/// The next ICE-TCP connection or frame; never, without ICE-TCP.
async fn tcp_next(tcp: &mut Option<IceTcp>) -> Incoming {
    match tcp.as_mut() {
        Some(tcp) => tcp.next().await,
        None => std::future::pending().await,
    }
}

async fn run(
    index: usize,
    mut io: Io,
    mut endpoint: Endpoint,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<SfuEvent>,
    placement: Arc<Mutex<Placement>>,
) {
    let mut next_stats_log = Instant::now() + STATS_LOG_INTERVAL;
    let mut prove_check = tokio::time::interval(crate::tcp::PROVE_CHECK_EVERY);
    prove_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Send (in batches) and report everything the endpoint produced.
        io.send(&mut endpoint).await;
        while let Some(ev) = endpoint.poll_event() {
            if let SfuEvent::ParticipantGone { participant, .. } = &ev {
                crate::placement::lock(&placement).leave(participant);
            }
            let _ = events.send(ev);
        }
        let now = Instant::now();
        if now >= next_stats_log {
            next_stats_log = now + STATS_LOG_INTERVAL;
            debug!(worker = index, stats = ?io.socket.stats(), tcp = ?io.tcp.as_ref().map(IceTcp::stats), "media sockets");
        }
        let deadline = endpoint
            .poll_timeout()
            .unwrap_or(now + Duration::from_secs(3600));
        if deadline <= now {
            endpoint.handle_timeout(now);
            continue;
        }
        tokio::select! {
            biased;
            cmd = commands.recv() => {
                match cmd {
                    Some(Command::Shutdown { done }) => {
                        close_all(&mut io, &mut endpoint).await;
                        if let Some(done) = done {
                            let _ = done.send(());
                        }
                        break;
                    }
                    Some(Command::Run(job)) => job(&mut endpoint, Instant::now()),
                    // Every handle is gone: stop as if told to.
                    None => {
                        close_all(&mut io, &mut endpoint).await;
                        break;
                    }
                }
            }
            res = io.socket.readable() => {
                match res {
                    // One clock reading per turn: the batch arrived together.
                    Ok(()) => {
                        let now = Instant::now();
                        io.socket.recv_batch(MAX_READS_PER_TURN, |src, datagram| {
                            endpoint.handle_datagram(now, src, datagram);
                        });
                    }
                    Err(e) => debug!(worker = index, "media socket not readable: {e}"),
                }
            }
            incoming = tcp_next(&mut io.tcp) => {
                if let Incoming::Frame { src, payload } = incoming {
                    endpoint.handle_datagram(Instant::now(), src, &payload);
                }
            }
            _ = prove_check.tick(), if io.tcp.is_some() => {
                if let Some(tcp) = io.tcp.as_mut() {
                    tcp.close_unproven(Instant::now(), |addr| endpoint.knows_path(addr));
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                endpoint.handle_timeout(Instant::now());
            }
        }
    }
    info!(worker = index, stats = ?io.socket.stats(), tcp = ?io.tcp.as_ref().map(IceTcp::stats), "SFU worker stopped");
}

/// Close every connection and send the goodbyes before the worker stops
/// (see [`Sfu::close`]).
async fn close_all(io: &mut Io, endpoint: &mut Endpoint) {
    endpoint.close_all(Instant::now());
    io.send(endpoint).await;
    if let Some(tcp) = io.tcp.as_mut() {
        tcp.close_all();
        // Let the connections' writers send the goodbyes queued to them.
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
    }
}
