//! The tokio driver of a [`TurnRelay`]: one task owns it and its sockets
//! (the UDP listener, relay sockets' senders), stream connections and relay
//! sockets' receivers run beside it and hand it what arrives.

use crate::relay::{AllocateRequest, ClientTransport, Listener, Output, RelayConfig, TurnRelay};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_rustls::rustls;
use tracing::{debug, info, warn};

/// Streams (TCP and TLS connections) at once, in all.
const MAX_STREAMS: usize = 1024;
/// Streams at once from one IP address.
const MAX_STREAMS_PER_IP: usize = 64;
/// A stream that sends nothing for this long is closed (clients refresh
/// their allocations and permissions every few minutes).
const STREAM_IDLE: Duration = Duration::from_secs(900);
/// Time a TLS handshake may take.
const TLS_HANDSHAKE: Duration = Duration::from_secs(10);
/// TLS handshakes under way at once on a listener; more connections are
/// closed as they arrive.
const MAX_HANDSHAKES: usize = 256;
/// Messages queued toward one stream client; more, and it is closed.
const STREAM_QUEUE: usize = 512;
/// What the owning task takes from streams and relay sockets at once.
const EVENT_QUEUE: usize = 4096;
/// Pause after a failed accept (out of descriptors), so it does not spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Largest datagram read.
const DATAGRAM: usize = 2048;

/// How the TURN server runs.
#[derive(Debug, Clone)]
pub struct TurnConfig {
    /// Credentials, peers and limits.
    pub relay: RelayConfig,
    /// TURN over UDP and over TCP on this address (the same port for both),
    /// if at all.
    pub listen: Option<SocketAddr>,
    /// TURN over TLS on this address, with this certificate, if at all.
    pub tls: Option<(SocketAddr, Arc<rustls::ServerConfig>)>,
    /// The IP relay sockets bind to. By default the IP of `listen` (or of
    /// the TLS address), or the unspecified address of its family.
    pub relay_ip: Option<IpAddr>,
}

/// The addresses a running TURN server listens on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TurnAddrs {
    /// TURN over UDP.
    pub udp: Option<SocketAddr>,
    /// TURN over TCP.
    pub tcp: Option<SocketAddr>,
    /// TURN over TLS.
    pub tls: Option<SocketAddr>,
}

/// A running TURN server. Dropping it stops it.
#[derive(Debug)]
pub struct TurnHandle {
    addrs: TurnAddrs,
    stats: watch::Receiver<crate::TurnStats>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl TurnHandle {
    /// Where it listens.
    pub fn addrs(&self) -> TurnAddrs {
        self.addrs
    }

    /// What its policy did so far (updated as it works).
    pub fn stats(&self) -> crate::TurnStats {
        *self.stats.borrow()
    }

    /// Stop it and wait until its sockets are closed.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for TurnHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Tries at picking a port free for both UDP and TCP when the system picks
/// it (`listen` with port 0).
const PORT_TRIES: usize = 32;

/// A UDP socket and a TCP listener on the same address. With port 0 the
/// system picks the UDP port, which another program may hold for TCP:
/// then another UDP port is tried, up to [`PORT_TRIES`] times (tests bind
/// many servers to 127.0.0.1:0 at once).
async fn bind_udp_and_tcp(listen: SocketAddr) -> io::Result<(UdpSocket, TcpListener)> {
    let mut tries = if listen.port() == 0 { PORT_TRIES } else { 1 };
    loop {
        let socket = UdpSocket::bind(listen).await?;
        match TcpListener::bind(socket.local_addr()?).await {
            Ok(tcp) => return Ok((socket, tcp)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && tries > 1 => tries -= 1,
            Err(e) => return Err(e),
        }
    }
}

/// Opens the sockets `config` names and serves TURN on them until the
/// handle is shut down or dropped.
pub async fn start(config: TurnConfig) -> io::Result<TurnHandle> {
    let mut listeners = Vec::new();
    let mut addrs = TurnAddrs::default();
    let mut udp = None;
    let mut streams = Vec::new();
    if let Some(listen) = config.listen {
        let (socket, tcp) = bind_udp_and_tcp(listen).await?;
        let udp_addr = socket.local_addr()?;
        let tcp_addr = tcp.local_addr()?;
        listeners.push(Listener {
            transport: ClientTransport::Udp,
            addr: udp_addr,
        });
        udp = Some((listeners.len() - 1, Arc::new(socket)));
        listeners.push(Listener {
            transport: ClientTransport::Tcp,
            addr: tcp_addr,
        });
        streams.push((listeners.len() - 1, tcp, None));
        addrs.udp = Some(udp_addr);
        addrs.tcp = Some(tcp_addr);
    }
    if let Some((tls_addr, tls)) = &config.tls {
        let tcp = TcpListener::bind(tls_addr).await?;
        let addr = tcp.local_addr()?;
        listeners.push(Listener {
            transport: ClientTransport::Tcp,
            addr,
        });
        streams.push((
            listeners.len() - 1,
            tcp,
            Some(tokio_rustls::TlsAcceptor::from(tls.clone())),
        ));
        addrs.tls = Some(addr);
    }
    if listeners.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a TURN server needs a listen address or a TLS one",
        ));
    }
    let relay_ip = config.relay_ip.unwrap_or_else(|| listeners[0].addr.ip());
    let relay = TurnRelay::new(
        config.relay,
        &listeners,
        Instant::now(),
        crate::credentials::unix_now(),
    );
    let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
    let (stats_tx, stats) = watch::channel(relay.stats());
    let (stop, stopped) = oneshot::channel();
    let mut accepts = Vec::new();
    for (listener, tcp, tls) in streams {
        accepts.push(tokio::spawn(accept_loop(
            listener,
            tcp,
            tls,
            events_tx.clone(),
        )));
    }
    let owner = Owner {
        relay,
        udp,
        relay_ip,
        relays: HashMap::new(),
        streams: HashMap::new(),
        events_tx,
        stats: stats_tx,
    };
    info!(?addrs, relay_ip = %relay_ip, "TURN server started");
    let task = tokio::spawn(async move {
        owner.run(events, stopped).await;
        for a in accepts {
            a.abort();
        }
    });
    Ok(TurnHandle {
        addrs,
        stats,
        stop: Some(stop),
        task,
    })
}

/// What reaches the owning task.
enum Event {
    /// A stream connected: its writer.
    Opened {
        listener: usize,
        client: SocketAddr,
        writer: mpsc::Sender<Vec<u8>>,
        reader: JoinHandle<()>,
    },
    /// Bytes on a stream.
    Stream {
        listener: usize,
        client: SocketAddr,
        data: Vec<u8>,
    },
    /// A stream ended.
    Closed { listener: usize, client: SocketAddr },
    /// A datagram on a relay socket.
    Peer {
        relay: SocketAddr,
        from: SocketAddr,
        data: Vec<u8>,
    },
}

/// A relay socket.
struct Relay {
    socket: Arc<UdpSocket>,
    reader: JoinHandle<()>,
}

/// A client's stream.
struct Stream {
    writer: mpsc::Sender<Vec<u8>>,
    reader: JoinHandle<()>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The task that owns the relay.
struct Owner {
    relay: TurnRelay,
    udp: Option<(usize, Arc<UdpSocket>)>,
    relay_ip: IpAddr,
    relays: HashMap<SocketAddr, Relay>,
    streams: HashMap<(usize, SocketAddr), Stream>,
    events_tx: mpsc::Sender<Event>,
    stats: watch::Sender<crate::TurnStats>,
}

impl Owner {
    async fn run(mut self, mut events: mpsc::Receiver<Event>, mut stopped: oneshot::Receiver<()>) {
        let mut buf = vec![0u8; DATAGRAM];
        let udp = self.udp.clone();
        loop {
            let wake = tokio::time::Instant::from_std(self.relay.poll_timeout());
            tokio::select! {
                _ = &mut stopped => break,
                received = recv_from(udp.as_ref(), &mut buf) => match received {
                    Ok((listener, n, from)) => {
                        self.relay.from_client(listener, from, &buf[..n], Instant::now());
                    }
                    Err(e) => debug!("TURN UDP receive: {e}"),
                },
                event = events.recv() => match event {
                    Some(event) => self.on_event(event),
                    None => break,
                },
                () = tokio::time::sleep_until(wake) => self.relay.handle_timeout(Instant::now()),
            }
            self.act().await;
            let now = self.relay.stats();
            self.stats.send_if_modified(|s| {
                let changed = *s != now;
                *s = now;
                changed
            });
        }
        info!(stats = ?self.relay.stats(), "TURN server stopped");
    }

    fn on_event(&mut self, event: Event) {
        let now = Instant::now();
        match event {
            Event::Opened {
                listener,
                client,
                writer,
                reader,
            } => {
                let per_ip = self
                    .streams
                    .keys()
                    .filter(|(_, c)| c.ip() == client.ip())
                    .count();
                if self.streams.len() >= MAX_STREAMS || per_ip >= MAX_STREAMS_PER_IP {
                    debug!(%client, "TURN stream refused: too many");
                    reader.abort();
                    return;
                }
                self.streams
                    .insert((listener, client), Stream { writer, reader });
            }
            Event::Stream {
                listener,
                client,
                data,
            } => {
                if self.streams.contains_key(&(listener, client)) {
                    self.relay.from_client(listener, client, &data, now);
                }
            }
            Event::Closed { listener, client } => {
                self.streams.remove(&(listener, client));
                self.relay.client_closed(listener, client);
            }
            Event::Peer { relay, from, data } => self.relay.from_peer(relay, from, &data, now),
        }
    }

    /// Carries out what the relay wants done.
    async fn act(&mut self) {
        while let Some(output) = self.relay.poll_output() {
            match output {
                Output::ToClient {
                    listener,
                    client,
                    data,
                } => self.send_to_client(listener, client, data),
                Output::ToPeer { relay, peer, data } => {
                    if let Some(r) = self.relays.get(&relay) {
                        // A full socket buffer drops it, as the network would.
                        let _ = r.socket.try_send_to(&data, peer);
                    }
                }
                Output::Allocate(request) => self.open_relay(request).await,
                Output::CloseRelay { relay } => {
                    self.relays.remove(&relay);
                }
                Output::CloseClient { listener, client } => {
                    self.streams.remove(&(listener, client));
                    self.relay.client_closed(listener, client);
                }
            }
        }
    }

    fn send_to_client(&mut self, listener: usize, client: SocketAddr, data: Vec<u8>) {
        if let Some((udp_listener, socket)) = &self.udp {
            if *udp_listener == listener {
                let _ = socket.try_send_to(&data, client);
                return;
            }
        }
        let full = match self.streams.get(&(listener, client)) {
            Some(stream) => stream.writer.try_send(data).is_err(),
            None => false,
        };
        if full {
            debug!(%client, "TURN stream not keeping up: closed");
            self.streams.remove(&(listener, client));
            self.relay.client_closed(listener, client);
        }
    }

    async fn open_relay(&mut self, request: AllocateRequest) {
        let ip = match (request.ipv6, self.relay_ip) {
            (false, IpAddr::V4(ip)) => IpAddr::V4(ip),
            (true, IpAddr::V6(ip)) => IpAddr::V6(ip),
            (false, IpAddr::V6(_)) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            (true, IpAddr::V4(_)) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        let opened = async {
            let socket = Arc::new(UdpSocket::bind(SocketAddr::new(ip, 0)).await?);
            let addr = socket.local_addr()?;
            Ok::<_, io::Error>((socket, addr))
        }
        .await;
        let result = match opened {
            Ok((socket, addr)) => {
                let reader =
                    tokio::spawn(relay_reader(socket.clone(), addr, self.events_tx.clone()));
                self.relays.insert(addr, Relay { socket, reader });
                Ok(addr)
            }
            Err(e) => Err(e),
        };
        self.relay.allocated(request, result, Instant::now());
    }
}

/// The next datagram on the UDP listener, if there is one.
async fn recv_from(
    udp: Option<&(usize, Arc<UdpSocket>)>,
    buf: &mut [u8],
) -> io::Result<(usize, usize, SocketAddr)> {
    match udp {
        Some((listener, socket)) => {
            let (n, from) = socket.recv_from(buf).await?;
            Ok((*listener, n, from))
        }
        None => std::future::pending().await,
    }
}

/// Reads a relay socket until it is closed.
async fn relay_reader(socket: Arc<UdpSocket>, relay: SocketAddr, events: mpsc::Sender<Event>) {
    let mut buf = vec![0u8; DATAGRAM];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, from)) => {
                let event = Event::Peer {
                    relay,
                    from,
                    data: buf[..n].to_vec(),
                };
                // The owner is behind: dropped, as a full link would.
                if let Err(mpsc::error::TrySendError::Closed(_)) = events.try_send(event) {
                    return;
                }
            }
            Err(e) => debug!(%relay, "TURN relay receive: {e}"),
        }
    }
}

/// Accepts streams on `tcp` (with TLS when `tls`) until aborted.
async fn accept_loop(
    listener: usize,
    tcp: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    events: mpsc::Sender<Event>,
) {
    let handshakes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    loop {
        let (stream, client) = match tcp.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!("TURN accept: {e}");
                tokio::time::sleep(ACCEPT_PAUSE).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let events = events.clone();
        let tls = tls.clone();
        use std::sync::atomic::Ordering;
        if tls.is_some() && handshakes.load(Ordering::Relaxed) >= MAX_HANDSHAKES {
            debug!(%client, "TURN TLS connection refused: too many handshakes under way");
            continue;
        }
        if tls.is_some() {
            handshakes.fetch_add(1, Ordering::Relaxed);
        }
        let handshakes = handshakes.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_stream(listener, client, stream, events).await,
                Some(acceptor) => {
                    let shaken = tokio::time::timeout(TLS_HANDSHAKE, acceptor.accept(stream)).await;
                    handshakes.fetch_sub(1, Ordering::Relaxed);
                    match shaken {
                        Ok(Ok(stream)) => serve_stream(listener, client, stream, events).await,
                        Ok(Err(e)) => debug!(%client, "TURN TLS handshake: {e}"),
                        Err(_) => debug!(%client, "TURN TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

/// Hands a stream's bytes to the owner and writes what it sends back,
/// until either side ends it.
async fn serve_stream<S>(
    listener: usize,
    client: SocketAddr,
    stream: S,
    events: mpsc::Sender<Event>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut read, mut write) = tokio::io::split(stream);
    let (writer, mut outbox) = mpsc::channel::<Vec<u8>>(STREAM_QUEUE);
    let reader_events = events.clone();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let read = tokio::time::timeout(STREAM_IDLE, read.read(&mut buf)).await;
            let n = match read {
                Ok(Ok(n)) if n > 0 => n,
                _ => break,
            };
            let event = Event::Stream {
                listener,
                client,
                data: buf[..n].to_vec(),
            };
            if reader_events.send(event).await.is_err() {
                return;
            }
        }
        let _ = reader_events.send(Event::Closed { listener, client }).await;
    });
    let opened = Event::Opened {
        listener,
        client,
        writer,
        reader,
    };
    if events.send(opened).await.is_err() {
        return;
    }
    // Until the owner drops the sender (the stream closed or refused).
    while let Some(data) = outbox.recv().await {
        if write.write_all(&data).await.is_err() {
            break;
        }
    }
    let _ = write.shutdown().await;
}
