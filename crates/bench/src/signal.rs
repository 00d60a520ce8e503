//! The signaling WebSocket of one participant: a blocking handshake, then a
//! nonblocking socket the worker's poll loop reads when it is readable.

use crate::error::BenchError;
use huddle_proto::{ClientMessage, ServerMessage};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use std::io::ErrorKind;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::time::Duration;
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

/// Time allowed for the TCP connect and the WebSocket handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// One participant's signaling connection.
pub struct Signal {
    ws: WebSocket<TcpStream>,
    closed: bool,
}

fn sig_err(e: impl std::fmt::Display) -> BenchError {
    BenchError::Signaling(e.to_string())
}

impl Signal {
    /// Connect to `url` (`ws://host:port/ws`) and complete the handshake.
    pub fn connect(url: &str) -> Result<Self, BenchError> {
        let request = url.into_client_request().map_err(sig_err)?;
        let host = request
            .uri()
            .host()
            .ok_or_else(|| sig_err("URL without host"))?;
        let port = request.uri().port_u16().unwrap_or(80);
        let addr = (host, port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| sig_err(format!("cannot resolve {host}")))?;
        let stream = TcpStream::connect_timeout(&addr, HANDSHAKE_TIMEOUT)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
        stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
        let (ws, _) = tungstenite::client::client(request, stream).map_err(sig_err)?;
        ws.get_ref().set_nonblocking(true)?;
        Ok(Self { ws, closed: false })
    }

    /// Register the socket for readability under `token`.
    pub fn register(&mut self, registry: &Registry, token: Token) -> Result<(), BenchError> {
        let fd = self.ws.get_ref().as_raw_fd();
        registry.register(&mut SourceFd(&fd), token, Interest::READABLE)?;
        Ok(())
    }

    /// Whether the server closed the connection.
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Queue `msg` and try to flush it.
    pub fn send(&mut self, msg: &ClientMessage) -> Result<(), BenchError> {
        let text = serde_json::to_string(msg).map_err(sig_err)?;
        match self.ws.send(Message::Text(text.into())) {
            Ok(()) => Ok(()),
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(sig_err(e)),
        }
    }

    /// Flush anything still queued (a previous send hit a full socket).
    pub fn flush(&mut self) {
        if let Err(e) = self.ws.flush() {
            if !matches!(&e, tungstenite::Error::Io(io) if io.kind() == ErrorKind::WouldBlock) {
                tracing::debug!(error = %e, "websocket flush");
            }
        }
    }

    /// Every server message readable now.
    pub fn receive(&mut self) -> Vec<ServerMessage> {
        let mut out = Vec::new();
        while !self.closed {
            match self.ws.read() {
                Ok(Message::Text(text)) => match serde_json::from_str(&text) {
                    Ok(m) => out.push(m),
                    Err(e) => tracing::debug!(error = %e, "unparseable server message"),
                },
                Ok(Message::Close(_)) => self.closed = true,
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!(error = %e, "websocket read");
                    self.closed = true;
                }
            }
        }
        out
    }

    /// Say `leave` and close, best effort.
    pub fn leave(&mut self) {
        if !self.closed {
            let _ = self.send(&ClientMessage::Leave);
            let _ = self.ws.close(None);
            self.flush();
        }
    }
}
