//! The SFU's media socket: batched UDP receive and send for the driver.
//!
//! Receive: `recvmmsg` (and UDP GRO where the kernel has it) through
//! `quinn-udp`, up to [`quinn_udp::BATCH_SIZE`] datagrams per system call.
//!
//! Send: everything the endpoint produced in one turn is queued, then sent in
//! as few system calls as the kernel allows:
//!
//! - runs of datagrams to the same destination with the same size (all but
//!   the last, which may be shorter; at most 1280 bytes) leave as one UDP GSO
//!   send through `quinn-udp`, where the kernel supports segmentation offload;
//! - everything else leaves through `sendmmsg` (`rustix`, Linux), up to
//!   [`SENDMMSG_BATCH`] datagrams per call; elsewhere one `sendmsg` each.
//!
//! Order is kept per destination (the queue is sorted by destination and then
//! by arrival); datagrams to different destinations may be reordered, which
//! nothing on the receiving side can tell apart from network timing.
//!
//! Buffers are reused from turn to turn: no allocation per datagram. A full
//! socket send buffer makes the driver wait until it drains (as a blocking
//! `send_to` did); other send errors are logged at debug level and the
//! datagram is dropped, like any UDP loss.

use crate::transmit::Transmit;
use quinn_udp::{RecvMeta, UdpSockRef, UdpSocketState};
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tracing::{debug, info, warn};

/// Receive buffer requested for the media socket (`SO_RCVBUF`). Linux caps it
/// at `net.core.rmem_max` and reports twice what it grants.
pub const RECV_BUFFER_BYTES: usize = 8 << 20;
/// Send buffer requested for the media socket (`SO_SNDBUF`). Linux caps it at
/// `net.core.wmem_max`.
pub const SEND_BUFFER_BYTES: usize = 4 << 20;
/// Datagrams per `sendmmsg` call.
pub const SENDMMSG_BATCH: usize = 64;
/// Largest datagram received without GRO; longer ones are truncated (WebRTC
/// keeps datagrams under the path MTU, ~1200-1500 bytes).
const MAX_DATAGRAM: usize = 2048;
/// Largest payload of one GSO send (the UDP length field, less headers).
const MAX_GSO_BYTES: usize = 65_000;
/// Most segments in one GSO send (the kernel's limit is 64).
const MAX_GSO_SEGMENTS: usize = 64;
/// Longest datagram sent with GSO. Linux refuses (EINVAL) a segment longer
/// than the route's MTU allows, and quinn-udp takes EINVAL for "no GSO here"
/// and turns GSO off for good; WebRTC media stays under this anyway (about
/// 1200 bytes), and anything longer leaves through `sendmmsg`.
const MAX_GSO_SEGMENT_BYTES: usize = 1280;

/// Counters of the socket's work, for logs and benchmarks.
#[derive(Debug, Default, Clone, Copy)]
pub struct UdpStats {
    /// Datagrams received.
    pub recv_datagrams: u64,
    /// Receive system calls that returned data.
    pub recv_calls: u64,
    /// Datagrams handed to the kernel.
    pub sent_datagrams: u64,
    /// Send system calls (each `sendmmsg`, GSO `sendmsg` or plain `sendmsg`).
    pub send_calls: u64,
    /// GSO sends among them.
    pub gso_sends: u64,
    /// Datagrams dropped on a send error other than a full buffer.
    pub send_errors: u64,
}

/// One queued datagram and its place in the turn (to keep order per
/// destination through the sort).
struct Queued {
    seq: u32,
    t: Transmit,
}

/// The media socket with its batching state. See the module docs.
pub struct MediaSocket {
    io: UdpSocket,
    state: UdpSocketState,
    /// `quinn_udp::BATCH_SIZE` slots of `slot` bytes each.
    recv_buf: Box<[u8]>,
    slot: usize,
    metas: [RecvMeta; quinn_udp::BATCH_SIZE],
    queue: Vec<Queued>,
    /// Indices into `queue` that leave as plain datagrams.
    singles: Vec<usize>,
    /// Contiguous segments of one GSO send.
    gso_buf: Vec<u8>,
    /// Destinations of one `sendmmsg` call.
    #[cfg(target_os = "linux")]
    addrs: Vec<rustix::net::SocketAddrAny>,
    stats: UdpStats,
}

impl MediaSocket {
    /// Bind `addr`, enlarge the socket buffers (logging what the kernel
    /// granted) and set up batching. Needs a tokio runtime.
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        Self::from_std(std::net::UdpSocket::bind(addr)?)
    }

    /// [`MediaSocket::bind`] for a socket bound already (on another
    /// thread, say). Needs a tokio runtime: the one that will drive it.
    pub fn from_std(std_socket: std::net::UdpSocket) -> io::Result<Self> {
        std_socket.set_nonblocking(true)?;
        let state = UdpSocketState::new(UdpSockRef::from(&std_socket))?;
        set_buffers(&state, &std_socket);
        let io = UdpSocket::from_std(std_socket)?;
        let gro = state.gro_segments().max(1);
        let slot = if gro > 1 {
            // A GRO read holds up to `gro` coalesced datagrams.
            (gro * 1500).max(MAX_DATAGRAM)
        } else {
            MAX_DATAGRAM
        };
        debug!(
            gso_segments = state.max_gso_segments(),
            gro_segments = gro,
            "media socket batching"
        );
        Ok(Self {
            io,
            state,
            recv_buf: vec![0u8; slot * quinn_udp::BATCH_SIZE].into_boxed_slice(),
            slot,
            metas: [RecvMeta::default(); quinn_udp::BATCH_SIZE],
            queue: Vec::new(),
            singles: Vec::new(),
            gso_buf: Vec::new(),
            #[cfg(target_os = "linux")]
            addrs: Vec::with_capacity(SENDMMSG_BATCH),
            stats: UdpStats::default(),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    /// What the socket has done so far.
    pub fn stats(&self) -> UdpStats {
        self.stats
    }

    /// Wait until a datagram can be read.
    pub async fn readable(&self) -> io::Result<()> {
        self.io.readable().await
    }

    /// Read what is queued, without waiting, up to about `max` datagrams,
    /// calling `handle(source, datagram)` for each. Returns how many.
    pub fn recv_batch(&mut self, max: usize, mut handle: impl FnMut(SocketAddr, &[u8])) -> usize {
        let mut handled = 0;
        while handled < max {
            let res = {
                let mut chunks = self.recv_buf.chunks_exact_mut(self.slot);
                let mut iovs: [IoSliceMut<'_>; quinn_udp::BATCH_SIZE] =
                    std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or(&mut [])));
                let (io, state, metas) = (&self.io, &self.state, &mut self.metas);
                io.try_io(Interest::READABLE, || {
                    state.recv(UdpSockRef::from(io), &mut iovs, metas)
                })
            };
            let n = match res {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // ICMP errors and the like surface here on some systems.
                Err(e) => {
                    debug!("recv failed: {e}");
                    break;
                }
            };
            self.stats.recv_calls += 1;
            handled += split_reads(&self.metas[..n], &self.recv_buf, self.slot, &mut handle);
            if n < quinn_udp::BATCH_SIZE {
                // The queue was drained by this read.
                break;
            }
        }
        self.stats.recv_datagrams += handled as u64;
        handled
    }

    /// Queue one datagram for the next [`MediaSocket::flush`].
    pub fn queue(&mut self, t: Transmit) {
        let seq = self.queue.len() as u32;
        self.queue.push(Queued { seq, t });
    }

    /// Send everything queued, in batches. Waits while the socket's send
    /// buffer is full.
    pub async fn flush(&mut self) {
        if self.queue.is_empty() {
            return;
        }
        let gso = self.state.max_gso_segments().min(MAX_GSO_SEGMENTS);
        self.singles.clear();
        if gso > 1 && self.queue.len() > 1 {
            self.queue.sort_unstable_by_key(|q| (q.t.dst, q.seq));
            let mut i = 0;
            while i < self.queue.len() {
                // GSO may have been turned off by a failure in this flush.
                let end = if self.state.max_gso_segments() > 1 {
                    gso_run_end(&self.queue, i, gso)
                } else {
                    i + 1
                };
                if end - i >= 2 {
                    // Datagrams to this destination queued before the run
                    // leave first (they sort just before it).
                    if self
                        .singles
                        .last()
                        .is_some_and(|&j| self.queue[j].t.dst == self.queue[i].t.dst)
                    {
                        self.send_singles().await;
                        self.singles.clear();
                    }
                    if !self.send_gso(i, end).await {
                        // GSO refused (the kernel or the driver cannot do it):
                        // quinn-udp has turned it off; send them one by one.
                        self.singles.extend(i..end);
                    }
                } else {
                    self.singles.push(i);
                }
                i = end;
            }
        } else {
            self.singles.extend(0..self.queue.len());
        }
        self.send_singles().await;
        self.queue.clear();
    }

    /// Send `queue[start..end]` (same destination, equal sizes but the last)
    /// as one GSO datagram train. False if GSO itself failed.
    async fn send_gso(&mut self, start: usize, end: usize) -> bool {
        self.gso_buf.clear();
        for q in &self.queue[start..end] {
            self.gso_buf.extend_from_slice(&q.t.payload);
        }
        let segment = self.queue[start].t.payload.len();
        let transmit = quinn_udp::Transmit {
            destination: self.queue[start].t.dst,
            ecn: None,
            contents: &self.gso_buf,
            segment_size: Some(segment),
            src_ip: None,
        };
        let (io, state) = (&self.io, &self.state);
        let res = send_when_writable(io, || state.try_send(UdpSockRef::from(io), &transmit)).await;
        self.stats.send_calls += 1;
        match res {
            Ok(()) => {
                self.stats.gso_sends += 1;
                self.stats.sent_datagrams += (end - start) as u64;
                true
            }
            Err(e) if self.state.max_gso_segments() <= 1 => {
                info!("UDP GSO unavailable ({e}); sending datagrams one by one");
                false
            }
            Err(e) => {
                debug!(dst = %transmit.destination, "GSO send failed: {e}");
                self.stats.send_errors += (end - start) as u64;
                true
            }
        }
    }

    /// Send `queue[i]` for every `i` in `singles`.
    #[cfg(target_os = "linux")]
    async fn send_singles(&mut self) {
        use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny};
        use std::io::IoSlice;
        let mut done = 0;
        while done < self.singles.len() {
            let chunk = &self.singles[done..(done + SENDMMSG_BATCH).min(self.singles.len())];
            let dst = |k: usize| self.queue[chunk[k]].t.dst;
            self.addrs.clear();
            self.addrs.extend(
                chunk
                    .iter()
                    .map(|&i| SocketAddrAny::from(self.queue[i].t.dst)),
            );
            let addrs = &self.addrs;
            let iovs: [[IoSlice<'_>; 1]; SENDMMSG_BATCH] = std::array::from_fn(|k| {
                [IoSlice::new(
                    chunk
                        .get(k)
                        .map_or(&[][..], |&i| &self.queue[i].t.payload[..]),
                )]
            });
            let io = &self.io;
            let mut sent = 0;
            while sent < chunk.len() {
                // The headers hold raw pointers (not `Send`): build them for
                // each call rather than keep them across an await.
                let res = send_when_writable(io, || {
                    let mut controls: [SendAncillaryBuffer<'_, '_, '_>; SENDMMSG_BATCH] =
                        std::array::from_fn(|_| SendAncillaryBuffer::default());
                    let mut k = sent;
                    let mut msgs = controls.each_mut().map(|c| {
                        let m = k.min(addrs.len() - 1);
                        k += 1;
                        MMsgHdr::new_with_addr(&addrs[m], &iovs[m], c)
                    });
                    rustix::net::sendmmsg(io, &mut msgs[..chunk.len() - sent], SendFlags::empty())
                        .map_err(io::Error::from)
                })
                .await;
                self.stats.send_calls += 1;
                match res {
                    Ok(n) => {
                        self.stats.sent_datagrams += n as u64;
                        sent += n.max(1).min(chunk.len() - sent);
                    }
                    // The first datagram of what was left failed: drop it.
                    Err(e) => {
                        debug!(dst = %dst(sent), "send failed: {e}");
                        self.stats.send_errors += 1;
                        sent += 1;
                    }
                }
            }
            done += chunk.len();
        }
    }

    /// Send `queue[i]` for every `i` in `singles`, one system call each.
    #[cfg(not(target_os = "linux"))]
    async fn send_singles(&mut self) {
        for &i in &self.singles {
            let t = &self.queue[i].t;
            let transmit = quinn_udp::Transmit {
                destination: t.dst,
                ecn: None,
                contents: &t.payload,
                segment_size: None,
                src_ip: None,
            };
            let (io, state) = (&self.io, &self.state);
            let res =
                send_when_writable(io, || state.try_send(UdpSockRef::from(io), &transmit)).await;
            self.stats.send_calls += 1;
            match res {
                Ok(()) => self.stats.sent_datagrams += 1,
                Err(e) => {
                    debug!(dst = %t.dst, "send failed: {e}");
                    self.stats.send_errors += 1;
                }
            }
        }
    }
}

/// Hand every datagram of one batched read to `handle(source, datagram)`:
/// `metas` describe the reads, in `slot`-byte slots of `buf`, and with GRO
/// one read may hold several datagrams of `stride` bytes. An empty datagram
/// is still one. Returns how many.
pub fn split_reads(
    metas: &[RecvMeta],
    buf: &[u8],
    slot: usize,
    mut handle: impl FnMut(SocketAddr, &[u8]),
) -> usize {
    let mut handled = 0;
    for (meta, slot) in metas.iter().zip(buf.chunks_exact(slot)) {
        let data = &slot[..meta.len.min(slot.len())];
        let stride = if meta.stride == 0 {
            data.len().max(1)
        } else {
            meta.stride
        };
        if data.is_empty() {
            handle(meta.addr, data);
            handled += 1;
        }
        for datagram in data.chunks(stride) {
            handle(meta.addr, datagram);
            handled += 1;
        }
    }
    handled
}

/// End (exclusive) of the GSO run starting at `start`: same destination,
/// every segment as long as the first except the last, which may be shorter;
/// at most `max_segments` and [`MAX_GSO_BYTES`] in all.
fn gso_run_end(queue: &[Queued], start: usize, max_segments: usize) -> usize {
    let first = &queue[start].t;
    let segment = first.payload.len();
    if segment == 0 || segment > MAX_GSO_SEGMENT_BYTES {
        return start + 1;
    }
    let limit = max_segments.min(MAX_GSO_BYTES / segment).max(1);
    let mut end = start + 1;
    while end < queue.len() && end - start < limit {
        let t = &queue[end].t;
        if t.dst != first.dst || t.payload.len() > segment || t.payload.is_empty() {
            break;
        }
        end += 1;
        if t.payload.len() < segment {
            // A shorter datagram can only be the last segment.
            break;
        }
    }
    end
}

/// Run a nonblocking send, waiting for the socket to become writable each
/// time the kernel's buffer is full.
async fn send_when_writable<T>(
    io: &UdpSocket,
    mut f: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    loop {
        match io.try_io(Interest::WRITABLE, &mut f) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => io.writable().await?,
            res => return res,
        }
    }
}

/// Ask for large socket buffers and log what the kernel granted.
fn set_buffers(state: &UdpSocketState, socket: &std::net::UdpSocket) {
    let sock = || UdpSockRef::from(socket);
    if let Err(e) = state.set_recv_buffer_size(sock(), RECV_BUFFER_BYTES) {
        warn!("could not set the media socket's receive buffer: {e}");
    }
    if let Err(e) = state.set_send_buffer_size(sock(), SEND_BUFFER_BYTES) {
        warn!("could not set the media socket's send buffer: {e}");
    }
    let recv = state.recv_buffer_size(sock()).unwrap_or(0);
    let send = state.send_buffer_size(sock()).unwrap_or(0);
    info!(
        requested_recv = RECV_BUFFER_BYTES,
        granted_recv = recv,
        requested_send = SEND_BUFFER_BYTES,
        granted_send = send,
        "media socket buffers (Linux reports twice the usable size)"
    );
    if recv < RECV_BUFFER_BYTES {
        warn!(
            granted = recv,
            requested = RECV_BUFFER_BYTES,
            "media socket receive buffer smaller than asked: raise net.core.rmem_max to avoid drops under load"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    fn q(seq: u32, port: u16, len: usize) -> Queued {
        Queued {
            seq,
            t: Transmit {
                dst: SocketAddr::from(([127, 0, 0, 1], port)),
                payload: BytesMut::zeroed(len),
            },
        }
    }

    #[test]
    fn gso_runs_need_one_destination_and_equal_sizes() {
        let queue = vec![
            q(0, 1, 100),
            q(1, 1, 100),
            q(2, 1, 80), // shorter: ends the run, included
            q(3, 1, 100),
            q(4, 2, 100), // other destination
            q(5, 2, 120), // longer: not in the run
        ];
        assert_eq!(gso_run_end(&queue, 0, 64), 3);
        assert_eq!(gso_run_end(&queue, 3, 64), 4);
        assert_eq!(gso_run_end(&queue, 4, 64), 5);
        assert_eq!(gso_run_end(&queue, 5, 64), 6);
        // The segment cap.
        assert_eq!(gso_run_end(&queue, 0, 2), 2);
        // Longer than any path MTU might carry: never GSO.
        let long = vec![q(0, 1, 1300), q(1, 1, 1300)];
        assert_eq!(gso_run_end(&long, 0, 64), 1);
    }

    #[test]
    fn gso_runs_stay_under_the_udp_length_limit() {
        let queue: Vec<Queued> = (0..64).map(|i| q(i, 1, 1250)).collect();
        assert_eq!(gso_run_end(&queue, 0, 64), MAX_GSO_BYTES / 1250);
    }

    /// Everything queued arrives, in order per destination, whatever mix of
    /// GSO runs and plain datagrams the batch becomes.
    #[tokio::test]
    async fn a_flush_delivers_every_datagram_in_order_per_destination() {
        let mut sock = MediaSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for s in [&a, &b] {
            s.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
        }
        let (aa, ba) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        // Interleaved destinations, equal and unequal sizes, more than one
        // sendmmsg batch.
        let mut expected_a = Vec::new();
        let mut expected_b = Vec::new();
        for i in 0..150u32 {
            let (dst, len, exp) = if i % 3 == 0 {
                (ba, 50 + (i as usize % 7), &mut expected_b)
            } else {
                (aa, 100, &mut expected_a)
            };
            let mut payload = BytesMut::zeroed(len);
            payload[..4].copy_from_slice(&i.to_be_bytes());
            exp.push((i, len));
            sock.queue(Transmit { dst, payload });
        }
        sock.flush().await;
        let mut buf = [0u8; 2048];
        for (s, expected) in [(&a, expected_a), (&b, expected_b)] {
            for (i, len) in expected {
                let (n, from) = s.recv_from(&mut buf).unwrap();
                assert_eq!(from, sock.local_addr().unwrap());
                assert_eq!(
                    (u32::from_be_bytes(buf[..4].try_into().unwrap()), n),
                    (i, len)
                );
            }
        }
        let stats = sock.stats();
        assert_eq!(stats.sent_datagrams, 150);
        assert!(stats.send_calls < 150, "{stats:?}");
    }

    #[tokio::test]
    async fn recv_batch_reads_everything_queued() {
        let mut sock = MediaSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let dst = sock.local_addr().unwrap();
        let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..40u8 {
            // Every tenth is empty, and still a datagram.
            let len = if i % 10 == 9 { 0 } else { 60 };
            c.send_to(&[i; 60][..len], dst).unwrap();
        }
        sock.readable().await.unwrap();
        let mut got = Vec::new();
        while got.len() < 40 {
            sock.recv_batch(64, |src, d| {
                assert_eq!(src, c.local_addr().unwrap());
                if d.is_empty() {
                    got.push(got.len() as u8);
                } else {
                    assert_eq!(d.len(), 60);
                    got.push(d[0]);
                }
            });
            if got.len() < 40 {
                sock.readable().await.unwrap();
            }
        }
        assert_eq!(got, (0..40).collect::<Vec<u8>>());
    }
}
