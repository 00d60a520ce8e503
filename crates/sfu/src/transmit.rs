//! What the sans-IO core hands the socket: one datagram and where it goes.

use bytes::BytesMut;
use std::net::SocketAddr;

/// A datagram to send from the media socket.
#[derive(Debug)]
pub struct Transmit {
    /// Destination.
    pub dst: SocketAddr,
    /// Bytes.
    pub payload: BytesMut,
}
