//! ICE over TCP (RFC 6544) for clients that cannot reach the media port
//! over UDP: each worker listens on TCP at its UDP port's address and
//! announces a passive TCP host candidate beside the UDP one. A client
//! connects, and the connection carries that client's STUN, DTLS, SRTP and
//! SRTCP, each packet framed by a 2-byte length (RFC 4571).
//!
//! The [`Endpoint`](crate::endpoint::Endpoint) does not know the difference:
//! a frame is handed to it as a datagram from the connection's remote
//! address, and what it sends to that address leaves on the connection
//! ([`IceTcp::send`]) instead of the UDP socket. A TCP connection's address
//! (the client's IP and ephemeral port) is thereby a path like any other:
//! the demux routes it once an authenticated check from it was answered.
//!
//! Each connection has a reader task (frames in, through one channel shared
//! by the worker's connections, so a busy worker slows the readers: TCP's
//! own flow control) and a writer task fed by a bounded queue. When the
//! queue is full (the client's link is slower than its media) frames are
//! dropped, as UDP would lose them, rather than queued without bound: media
//! late by seconds is worse than media lost.
//!
//! Limits: [`SfuConfig::ice_tcp_max_connections`](crate::SfuConfig)
//! connections per worker and [`MAX_PER_IP`] per client address (past
//! them new ones are closed at once). A connection is closed when it sends
//! nothing for [`IDLE_TIMEOUT`] (a live ICE session sends consent checks
//! every few seconds), when a frame says it is longer than [`MAX_FRAME`],
//! and when no authenticated ICE check has come over it [`PROVE_WITHIN`]
//! after it opened ([`IceTcp::close_unproven`]): without the last, idle
//! connections that trickle a byte now and then could hold every slot.

use crate::transmit::Transmit;
use rtc::shared::tcp_framing::{frame_packet_to, TcpFrameDecoder, FRAMING_HEADER_LEN};
use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::debug;

/// A connection that sends nothing for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Frames queued toward one client before more are dropped.
const WRITE_QUEUE: usize = 256;
/// Frames from every connection of a worker waiting for the worker.
const READ_QUEUE: usize = 1024;
/// Bytes read from a connection at a time.
const READ_CHUNK: usize = 4096;
/// Closed connections remembered, so that what the endpoint still sends to
/// one is dropped instead of leaving as UDP toward the client's TCP port.
const CLOSED_REMEMBERED: usize = 4096;
/// Longest frame taken. ICE, DTLS and SRTP packets stay under the path MTU
/// (about 1500 bytes); a length prefix past this closes the connection
/// rather than buffering up to 64 KiB for it.
pub const MAX_FRAME: usize = 4096;
/// Connections one client address may hold on a worker at once (two per
/// participant: many participants behind one NAT still fit).
pub const MAX_PER_IP: usize = 64;
/// A connection whose address no authenticated ICE check has vouched for
/// this long after it opened is closed: it holds a slot and proves nothing.
pub const PROVE_WITHIN: Duration = Duration::from_secs(10);
/// How often the driver looks for connections not proven in time.
pub const PROVE_CHECK_EVERY: Duration = Duration::from_secs(2);
/// Pause after a failed `accept` before trying again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Counters of the TCP side, for logs.
#[derive(Debug, Default, Clone, Copy)]
pub struct TcpStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections closed at once: the worker had as many as it takes.
    pub refused: u64,
    /// Frames received.
    pub frames_in: u64,
    /// Frames queued toward clients.
    pub frames_out: u64,
    /// Frames dropped: the client's queue was full, or it had closed.
    pub dropped_out: u64,
    /// Connections closed because no authenticated check came over them
    /// within [`PROVE_WITHIN`].
    pub unproven: u64,
}

/// What a connection's reader reports.
enum Read {
    /// One frame's payload, from the connection with this remote address.
    Frame(SocketAddr, Vec<u8>),
    /// The connection ended (closed, failed, idle, or a frame too long).
    Closed(SocketAddr),
}

/// What [`IceTcp::next`] hands the worker.
pub enum Incoming {
    /// A frame, to be handled as a datagram from `src`.
    Frame {
        /// The connection's remote address.
        src: SocketAddr,
        /// The frame's payload.
        payload: Vec<u8>,
    },
    /// Nothing for the endpoint (a connection opened or closed).
    Nothing,
}

/// One open connection.
struct Open {
    /// Its write queue.
    writer: mpsc::Sender<Vec<u8>>,
    /// Its reader, aborted to close the connection from this side.
    reader: tokio::task::JoinHandle<()>,
    /// When it opened, until an authenticated check proved it (then `None`).
    unproven_since: Option<Instant>,
}

/// One worker's ICE-TCP listener and connections. See the module docs.
pub struct IceTcp {
    listener: TcpListener,
    /// The open connections, by remote address.
    writers: HashMap<SocketAddr, Open>,
    closed: ClosedPaths,
    reads_tx: mpsc::Sender<Read>,
    reads: mpsc::Receiver<Read>,
    max_connections: usize,
    stats: TcpStats,
}

impl IceTcp {
    /// Listen with `listener` (registered with the worker's runtime), for
    /// at most `max_connections` connections at once.
    pub fn new(listener: TcpListener, max_connections: usize) -> Self {
        let (reads_tx, reads) = mpsc::channel(READ_QUEUE);
        Self {
            listener,
            writers: HashMap::new(),
            closed: ClosedPaths::default(),
            reads_tx,
            reads,
            max_connections,
            stats: TcpStats::default(),
        }
    }

    /// The listening address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Counters so far.
    pub fn stats(&self) -> TcpStats {
        self.stats
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.writers.len()
    }

    /// Wait for a new connection or a frame. Cancel-safe: nothing is lost
    /// if another branch of the worker's `select!` wins.
    pub async fn next(&mut self) -> Incoming {
        tokio::select! {
            accepted = self.listener.accept() => {
                match accepted {
                    Ok((stream, peer)) => self.open(stream, peer),
                    Err(e) => {
                        // Out of file descriptors, say: accepting again at
                        // once would fail again at once, in a loop.
                        debug!("ICE-TCP accept: {e}");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                }
                Incoming::Nothing
            }
            read = self.reads.recv() => match read {
                Some(Read::Frame(src, payload)) => {
                    self.stats.frames_in += 1;
                    Incoming::Frame { src, payload }
                }
                Some(Read::Closed(src)) => {
                    self.close(src);
                    Incoming::Nothing
                }
                // Never: `self` holds a sender.
                None => Incoming::Nothing,
            },
        }
    }

    /// Start the reader and writer of a new connection, or close it at
    /// once when the worker has as many as it takes.
    fn open(&mut self, stream: TcpStream, peer: SocketAddr) {
        let from_ip = self.writers.keys().filter(|a| a.ip() == peer.ip()).count();
        if self.writers.len() >= self.max_connections
            || from_ip >= MAX_PER_IP
            || self.writers.contains_key(&peer)
        {
            self.stats.refused += 1;
            debug!(%peer, "ICE-TCP connection refused: at the limit");
            return; // dropping the stream closes it
        }
        if let Err(e) = stream.set_nodelay(true) {
            debug!(%peer, "ICE-TCP nodelay: {e}");
        }
        self.stats.accepted += 1;
        self.closed.remove(&peer);
        let (read, write) = stream.into_split();
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let reader = tokio::spawn(read_frames(read, peer, self.reads_tx.clone()));
        tokio::spawn(write_frames(write, rx));
        self.writers.insert(
            peer,
            Open {
                writer: tx,
                reader,
                unproven_since: Some(Instant::now()),
            },
        );
        debug!(%peer, "ICE-TCP connection accepted");
    }

    /// Forget connection `peer` (closed by the client, or by us: its reader
    /// stops and its writer ends, which closes the socket).
    fn close(&mut self, peer: SocketAddr) {
        if let Some(open) = self.writers.remove(&peer) {
            open.reader.abort();
            debug!(%peer, "ICE-TCP connection closed");
            self.closed.insert(peer);
        }
    }

    /// Close the connections that [`PROVE_WITHIN`] after opening still
    /// have no address `proven` vouches for (the endpoint's demux: an
    /// authenticated ICE check from there was answered). Returns how many.
    pub fn close_unproven(&mut self, now: Instant, proven: impl Fn(&SocketAddr) -> bool) -> usize {
        let mut late = Vec::new();
        for (peer, open) in self.writers.iter_mut() {
            let Some(since) = open.unproven_since else {
                continue;
            };
            if proven(peer) {
                open.unproven_since = None;
            } else if now.saturating_duration_since(since) >= PROVE_WITHIN {
                late.push(*peer);
            }
        }
        for peer in &late {
            debug!(%peer, "ICE-TCP connection never proved itself: closed");
            self.close(*peer);
        }
        self.stats.unproven += late.len() as u64;
        late.len()
    }

    /// Send `t` on its TCP connection if its destination is one (or was:
    /// then it is dropped). Returns `t` back when the destination is not a
    /// TCP path, for the UDP socket.
    pub fn send(&mut self, t: Transmit) -> Option<Transmit> {
        let Some(tx) = self.writers.get(&t.dst).map(|o| &o.writer) else {
            if self.closed.contains(&t.dst) {
                self.stats.dropped_out += 1;
                return None;
            }
            return Some(t);
        };
        let mut framed = vec![0; t.payload.len() + FRAMING_HEADER_LEN];
        match frame_packet_to(&t.payload, &mut framed) {
            Some(n) => framed.truncate(n),
            None => {
                self.stats.dropped_out += 1;
                return None; // longer than a frame can say: never from the endpoint
            }
        }
        match tx.try_send(framed) {
            Ok(()) => self.stats.frames_out += 1,
            Err(_) => self.stats.dropped_out += 1,
        }
        None
    }

    /// Close every connection (the SFU stops). What was queued is still
    /// written by the writers before they end.
    pub fn close_all(&mut self) {
        // Dropping the writers' queues ends them once they wrote what was
        // queued; the readers stop with the runtime.
        self.writers.clear();
    }
}

/// Read frames from one connection until it ends, then say so.
async fn read_frames(mut read: OwnedReadHalf, peer: SocketAddr, out: mpsc::Sender<Read>) {
    let mut decoder = TcpFrameDecoder::with_capacity(READ_CHUNK);
    let mut chunk = vec![0u8; READ_CHUNK];
    // Bytes in the decoder not yet handed out as frames.
    let mut pending = 0usize;
    loop {
        let n = match tokio::time::timeout(IDLE_TIMEOUT, read.read(&mut chunk)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                debug!(%peer, "ICE-TCP read: {e}");
                break;
            }
            Err(_) => {
                debug!(%peer, "ICE-TCP connection idle: closed");
                break;
            }
        };
        decoder.extend_from_slice(&chunk[..n]);
        pending += n;
        while let Some(payload) = decoder.next_packet() {
            pending -= payload.len() + FRAMING_HEADER_LEN;
            if out.send(Read::Frame(peer, payload)).await.is_err() {
                return; // the worker stopped
            }
        }
        // What is left is less than one frame: its length said more.
        if pending > MAX_FRAME + FRAMING_HEADER_LEN {
            debug!(%peer, "ICE-TCP frame longer than {MAX_FRAME} bytes: closed");
            break;
        }
    }
    let _ = out.send(Read::Closed(peer)).await;
}

/// Write queued frames to one connection until its queue closes or a write
/// fails.
async fn write_frames(mut write: OwnedWriteHalf, mut queue: mpsc::Receiver<Vec<u8>>) {
    while let Some(frame) = queue.recv().await {
        if let Err(e) = write.write_all(&frame).await {
            debug!("ICE-TCP write: {e}");
            return;
        }
    }
    let _ = write.shutdown().await;
}

/// The remote addresses of the last [`CLOSED_REMEMBERED`] connections that
/// closed, oldest forgotten first.
#[derive(Debug, Default)]
struct ClosedPaths {
    set: HashSet<SocketAddr>,
    order: VecDeque<SocketAddr>,
}

impl ClosedPaths {
    fn insert(&mut self, addr: SocketAddr) {
        if !self.set.insert(addr) {
            return;
        }
        self.order.push_back(addr);
        if self.order.len() > CLOSED_REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }

    fn remove(&mut self, addr: &SocketAddr) {
        if self.set.remove(addr) {
            self.order.retain(|a| a != addr);
        }
    }

    fn contains(&self, addr: &SocketAddr) -> bool {
        self.set.contains(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[tokio::test]
    async fn a_frame_too_long_closes_its_connection() -> io::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let mut tcp = IceTcp::new(listener, 4);
        let mut client = TcpStream::connect(tcp.local_addr()?).await?;
        assert!(matches!(tcp.next().await, Incoming::Nothing), "accepted");
        // A 60 000-byte frame announced, then more than MAX_FRAME sent.
        client.write_all(&[0xea, 0x60]).await?;
        client.write_all(&vec![7u8; MAX_FRAME + 100]).await?;
        assert!(matches!(tcp.next().await, Incoming::Nothing), "closed");
        assert_eq!(tcp.connections(), 0);
        let mut buf = [0u8; 1];
        let closed = matches!(client.read(&mut buf).await, Ok(0) | Err(_));
        assert!(closed, "the server closed it");
        Ok(())
    }

    #[tokio::test]
    async fn a_connection_that_never_proves_itself_is_closed() -> io::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let mut tcp = IceTcp::new(listener, 4);
        let addr = tcp.local_addr()?;
        let mut idle = TcpStream::connect(addr).await?;
        assert!(matches!(tcp.next().await, Incoming::Nothing), "accepted");
        let mut good = TcpStream::connect(addr).await?;
        assert!(matches!(tcp.next().await, Incoming::Nothing), "accepted");
        let good_addr = good.local_addr()?;
        let now = Instant::now();
        // Early on nothing is closed.
        assert_eq!(tcp.close_unproven(now, |_| false), 0);
        // The good one is vouched for; later the idle one goes.
        assert_eq!(tcp.close_unproven(now, |a| *a == good_addr), 0);
        let later = now + PROVE_WITHIN + Duration::from_secs(1);
        assert_eq!(tcp.close_unproven(later, |_| false), 1, "once proven, kept");
        assert_eq!(tcp.connections(), 1);
        assert_eq!(tcp.stats().unproven, 1);
        let mut buf = [0u8; 1];
        let closed = matches!(
            tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        );
        assert!(closed, "the server closed the idle one");
        good.write_all(&[0, 1, 9]).await?;
        assert!(
            matches!(tcp.next().await, Incoming::Frame { .. }),
            "the good one works"
        );
        Ok(())
    }

    #[test]
    fn closed_paths_are_remembered_up_to_the_bound() {
        let mut c = ClosedPaths::default();
        let addr = |i: u16| SocketAddr::from(([127, 0, 0, 1], i));
        for i in 0..(CLOSED_REMEMBERED as u16 + 10) {
            c.insert(addr(i));
        }
        assert_eq!(c.set.len(), CLOSED_REMEMBERED);
        assert!(!c.contains(&addr(0)), "the oldest forgotten");
        assert!(c.contains(&addr(CLOSED_REMEMBERED as u16 + 9)));
        c.remove(&addr(CLOSED_REMEMBERED as u16 + 9));
        assert!(!c.contains(&addr(CLOSED_REMEMBERED as u16 + 9)));
        assert_eq!(c.order.len(), c.set.len());
    }

    /// A real connection on 127.0.0.1: frames in either direction, split
    /// and joined as TCP delivers them; the limit; what happens after close.
    #[tokio::test]
    async fn frames_cross_a_real_connection() -> io::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let mut tcp = IceTcp::new(listener, 1);
        let addr = tcp.local_addr()?;
        let mut client = TcpStream::connect(addr).await?;
        assert!(matches!(tcp.next().await, Incoming::Nothing), "accepted");
        assert_eq!(tcp.connections(), 1);
        let src = client.local_addr()?;

        // Two frames in one write, the second split across two writes.
        client.write_all(&[0, 3, 1, 2, 3, 0, 4, 9]).await?;
        client.write_all(&[8, 7, 6]).await?;
        for want in [vec![1, 2, 3], vec![9, 8, 7, 6]] {
            match tcp.next().await {
                Incoming::Frame { src: from, payload } => {
                    assert_eq!(from, src);
                    assert_eq!(payload, want);
                }
                Incoming::Nothing => panic!("expected a frame"),
            }
        }

        // Out: framed on the connection; other destinations come back.
        let back = tcp.send(Transmit {
            dst: src,
            payload: BytesMut::from(&[5u8, 6][..]),
        });
        assert!(back.is_none());
        let mut got = [0u8; 4];
        client.read_exact(&mut got).await?;
        assert_eq!(got, [0, 2, 5, 6]);
        let other = SocketAddr::from(([127, 0, 0, 1], 9));
        let udp = tcp.send(Transmit {
            dst: other,
            payload: BytesMut::from(&[1u8][..]),
        });
        assert_eq!(udp.map(|t| t.dst), Some(other), "not a TCP path: UDP's");

        // Past the limit a connection is closed at once.
        let mut second = TcpStream::connect(addr).await?;
        assert!(matches!(tcp.next().await, Incoming::Nothing));
        assert_eq!(tcp.stats().refused, 1);
        let mut buf = [0u8; 1];
        assert_eq!(second.read(&mut buf).await?, 0, "closed by the server");

        // The client leaves: sends to it are dropped, not sent over UDP.
        drop(client);
        assert!(matches!(tcp.next().await, Incoming::Nothing));
        assert_eq!(tcp.connections(), 0);
        let gone = tcp.send(Transmit {
            dst: src,
            payload: BytesMut::from(&[1u8][..]),
        });
        assert!(gone.is_none());
        assert_eq!(tcp.stats().dropped_out, 1);
        Ok(())
    }
}
