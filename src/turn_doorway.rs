//! TURN over TCP and TLS for webrtc-rs, which reaches TURN servers over UDP
//! only (`turn_relayer.rs` in webrtc 0.21 skips `turns:` and
//! `?transport=tcp` URLs).
//!
//! Each such server gets a doorway: a UDP socket on 127.0.0.1 that
//! webrtc-rs is told is the TURN server. Each of webrtc-rs's sockets that
//! sends to it gets a stream of its own to the real server (an allocation
//! belongs to its client's transport address, RFC 8656 §2.2): its
//! datagrams go onto the stream as TURN messages (`turn_stream`, RFC 8656
//! §12.5), and the messages that come back go to that socket as datagrams.
//! The server sees a TURN client over TCP or TLS, and relays as it would
//! for a browser; the credentials are the URL's own.
//!
//! A stream ends when the server closes it, when its webrtc-rs socket has
//! sent nothing for [`IDLE`], or with the call ([`Doorways`] is dropped).

use crate::error::CallError;
use crate::ice::StreamTurn;
use huddle_wire::turn_stream::{padded, Frames, MAX_FRAME};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tracing::{debug, warn};

/// A stream whose webrtc-rs socket sent nothing this long is closed: a
/// TURN client refreshes its allocation and permissions well within it
/// (an allocation lives 600 s by default, RFC 8656 §7.2).
pub(crate) const IDLE: Duration = Duration::from_secs(600);

/// How long a connection (and TLS handshake) to the server may take.
const CONNECT: Duration = Duration::from_secs(5);

/// Streams per doorway at most: one per webrtc-rs socket (an interface of
/// a peer connection), so a handful in a call.
const MAX_STREAMS: usize = 64;

/// Datagrams waiting for a stream; past this they are dropped, as a full
/// UDP path would.
const QUEUE: usize = 256;

/// The doorways of a call, one per TURN server reached over a stream.
pub(crate) struct Doorways {
    open: HashMap<StreamTurn, SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
    tls: Arc<ClientConfig>,
}

impl Doorways {
    /// No doorway yet. `turns:` servers are checked against the web's root
    /// certificates (webpki-roots) and `extra_roots` (DER).
    pub fn new(extra_roots: &[Vec<u8>]) -> Result<Self, CallError> {
        let mut roots = RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for der in extra_roots {
            roots
                .add(CertificateDer::from(der.clone()))
                .map_err(|e| CallError::InvalidInput(format!("a TLS root certificate: {e}")))?;
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let tls = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| CallError::InvalidInput(format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            open: HashMap::new(),
            tasks: Vec::new(),
            tls: Arc::new(tls),
        })
    }

    /// The URL webrtc-rs reaches `server` at, its doorway opened the first
    /// time; `None` (logged) when no socket can be bound for it or there is
    /// no tokio runtime to run it on.
    pub fn local_url(&mut self, server: &StreamTurn) -> Option<String> {
        if let Some(addr) = self.open.get(server) {
            return Some(local_url(*addr));
        }
        let socket = match open_socket() {
            Ok(s) => s,
            Err(e) => {
                warn!(host = %server.host, port = server.port, "no doorway for TURN over a stream: {e}");
                return None;
            }
        };
        let addr = socket.local_addr().ok()?;
        let tls = server.tls.then(|| self.tls.clone());
        debug!(host = %server.host, port = server.port, tls = server.tls, %addr, "TURN doorway open");
        self.tasks
            .push(tokio::spawn(doorway(socket, server.clone(), tls)));
        self.open.insert(server.clone(), addr);
        Some(local_url(addr))
    }
}

impl Drop for Doorways {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// What webrtc-rs is given for a doorway at `addr`.
fn local_url(addr: SocketAddr) -> String {
    format!("turn:{addr}?transport=udp")
}

/// A UDP socket on 127.0.0.1 (webrtc-rs 0.21 resolves a TURN server's
/// `host:port` with the host as written, which IPv6 does not survive), on
/// the current tokio runtime.
fn open_socket() -> std::io::Result<UdpSocket> {
    tokio::runtime::Handle::try_current().map_err(std::io::Error::other)?;
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

/// Takes webrtc-rs's datagrams for `server` and hands each to the stream of
/// the socket it came from, opening one for a socket not seen before (or
/// whose stream ended).
async fn doorway(socket: UdpSocket, server: StreamTurn, tls: Option<Arc<ClientConfig>>) {
    let socket = Arc::new(socket);
    let mut streams: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let mut buf = vec![0u8; MAX_FRAME];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(e) => {
                debug!("TURN doorway: {e}");
                continue;
            }
        };
        let datagram = buf[..n].to_vec();
        if let Some(stream) = streams.get(&from).filter(|s| !s.is_closed()) {
            // A full queue drops the datagram; TURN and ICE retransmit.
            let _ = stream.try_send(datagram);
            continue;
        }
        streams.retain(|_, s| !s.is_closed());
        if streams.len() >= MAX_STREAMS {
            debug!(%from, "TURN doorway: {MAX_STREAMS} streams open already; datagram dropped");
            continue;
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let _ = tx.try_send(datagram);
        streams.insert(from, tx);
        tokio::spawn(carry(server.clone(), tls.clone(), socket.clone(), from, rx));
    }
}

/// One webrtc-rs socket's stream to the server, until it ends.
async fn carry(
    server: StreamTurn,
    tls: Option<Arc<ClientConfig>>,
    socket: Arc<UdpSocket>,
    client: SocketAddr,
    rx: mpsc::Receiver<Vec<u8>>,
) {
    let what = if server.tls { "TLS" } else { "TCP" };
    let ended = match tokio::time::timeout(CONNECT, connect(&server, tls)).await {
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no connection within 5 s",
        )),
        Ok(Err(e)) => Err(e),
        Ok(Ok(Stream::Tcp(tcp))) => pump(tcp, &socket, client, rx).await,
        Ok(Ok(Stream::Tls(tls))) => pump(*tls, &socket, client, rx).await,
    };
    match ended {
        Ok(()) => {
            debug!(host = %server.host, port = server.port, "TURN over {what}: stream closed")
        }
        Err(e) => warn!(host = %server.host, port = server.port, "TURN over {what}: {e}"),
    }
}

/// A connection to the server.
enum Stream {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

async fn connect(server: &StreamTurn, tls: Option<Arc<ClientConfig>>) -> std::io::Result<Stream> {
    let tcp = TcpStream::connect((server.host.as_str(), server.port)).await?;
    tcp.set_nodelay(true)?;
    let Some(tls) = tls else {
        return Ok(Stream::Tcp(tcp));
    };
    let name = ServerName::try_from(server.host.clone())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let stream = TlsConnector::from(tls).connect(name, tcp).await?;
    Ok(Stream::Tls(Box::new(stream)))
}

/// Datagrams from `rx` onto `stream`, messages from `stream` to `client`,
/// until either side ends or `client` is idle for [`IDLE`].
async fn pump<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    socket: &UdpSocket,
    client: SocketAddr,
    mut rx: mpsc::Receiver<Vec<u8>>,
) -> std::io::Result<()> {
    let (mut from_server, mut to_server) = tokio::io::split(stream);
    let mut frames = Frames::default();
    let mut buf = vec![0u8; MAX_FRAME];
    let mut idle = Box::pin(tokio::time::sleep(IDLE));
    loop {
        tokio::select! {
            datagram = rx.recv() => {
                let Some(datagram) = datagram else {
                    return Ok(()); // the doorway (the call) is gone
                };
                idle.as_mut().reset(tokio::time::Instant::now() + IDLE);
                to_server.write_all(&padded(datagram)).await?;
            }
            read = from_server.read(&mut buf) => {
                let n = read?;
                if n == 0 {
                    return Ok(());
                }
                frames.push(&buf[..n]);
                while let Some(message) = frames.next_frame().map_err(std::io::Error::other)? {
                    socket.send_to(&message, client).await?;
                }
            }
            () = &mut idle => return Ok(()),
        }
    }
}
