//! Batched UDP receive for the fast subscriber sockets: `recvmmsg` (and UDP
//! GRO where the kernel has it) through `quinn-udp`, up to
//! [`quinn_udp::BATCH_SIZE`] datagrams per system call, into one buffer
//! that a worker reuses for all of its sockets (with GRO a slot holds up
//! to 64 coalesced datagrams, so the buffer is a few MiB: one per socket
//! would be too many).

use mio::net::UdpSocket;
use quinn_udp::{RecvMeta, UdpSockRef, UdpSocketState};
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;

/// Largest datagram read without GRO.
const MAX_DATAGRAM: usize = 2048;

/// Batching state of one socket: what `quinn-udp` set up on it.
pub struct BatchSocket {
    state: UdpSocketState,
}

impl BatchSocket {
    /// Set `socket` up for batched reads (GRO on where available).
    pub fn new(socket: &UdpSocket) -> io::Result<Self> {
        Ok(Self {
            state: UdpSocketState::new(UdpSockRef::from(socket))?,
        })
    }

    /// Datagrams one read may hold (GRO), at least 1.
    pub fn gro_segments(&self) -> usize {
        self.state.gro_segments().max(1)
    }
}

/// The receive buffer a worker shares between its sockets.
pub struct RecvBatch {
    buf: Box<[u8]>,
    slot: usize,
    metas: [RecvMeta; quinn_udp::BATCH_SIZE],
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RecvBatch {
    /// A buffer of [`quinn_udp::BATCH_SIZE`] slots, each large enough for a
    /// full GRO read (64 datagrams of up to 1500 bytes).
    pub fn new() -> Self {
        let slot = (64 * 1500).max(MAX_DATAGRAM);
        Self {
            buf: vec![0u8; slot * quinn_udp::BATCH_SIZE].into_boxed_slice(),
            slot,
            metas: [RecvMeta::default(); quinn_udp::BATCH_SIZE],
        }
    }

    /// Read everything queued on `socket` (until it would block), calling
    /// `handle(source, datagram)` for each datagram. Returns how many
    /// system calls returned data.
    pub fn drain(
        &mut self,
        socket: &UdpSocket,
        batching: &BatchSocket,
        mut handle: impl FnMut(SocketAddr, &[u8]),
    ) -> usize {
        let slot = self
            .slot
            .min(batching.gro_segments() * 1500)
            .max(MAX_DATAGRAM);
        let mut calls = 0;
        loop {
            let res = {
                let mut chunks = self.buf.chunks_exact_mut(slot);
                let mut iovs: [IoSliceMut<'_>; quinn_udp::BATCH_SIZE] =
                    std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or(&mut [])));
                batching
                    .state
                    .recv(UdpSockRef::from(socket), &mut iovs, &mut self.metas)
            };
            let n = match res {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ICMP errors (port unreachable) and the like.
                Err(e) => {
                    tracing::debug!(error = %e, "recvmmsg");
                    break;
                }
            };
            calls += 1;
            huddle_sfu::udp::split_reads(&self.metas[..n], &self.buf, slot, &mut handle);
            if n < quinn_udp::BATCH_SIZE {
                // The queue was empty when this read returned: epoll reports
                // the next datagram as a new edge.
                break;
            }
        }
        calls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_datagram_queued_in_batches() {
        let rx = UdpSocket::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let batching = BatchSocket::new(&rx).expect("batching");
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let to = rx.local_addr().expect("addr");
        let sent = 3 * quinn_udp::BATCH_SIZE + 5;
        for i in 0..sent {
            let len = 20 + i % 7;
            tx.send_to(&vec![i as u8; len], to).expect("send");
        }
        let mut batch = RecvBatch::new();
        let mut got = Vec::new();
        let calls = batch.drain(&rx, &batching, |src, d| {
            assert_eq!(src, tx.local_addr().expect("addr"));
            got.push(d.to_vec());
        });
        assert_eq!(got.len(), sent);
        assert!(calls >= 4 && calls < sent, "batched: {calls} calls");
        for (i, d) in got.iter().enumerate() {
            assert_eq!(d.len(), 20 + i % 7);
            assert!(d.iter().all(|&b| b == i as u8));
        }
        assert_eq!(batch.drain(&rx, &batching, |_, _| {}), 0, "nothing left");
    }
}
