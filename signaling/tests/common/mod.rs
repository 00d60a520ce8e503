//! Test harness: a signaling server on 127.0.0.1:0, WebSocket and HTTP clients.
#![allow(dead_code)]

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use huddle_proto::{ErrorCode, ServerMessage};
use huddle_signaling::{auth, AppState, Claims, SfuControl, SignalingConfig};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single wait in a test may take.
pub const WAIT: Duration = Duration::from_secs(5);
pub const SECRET: &str = "test-secret-0123456789";

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Server {
    pub addr: SocketAddr,
    pub app: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    /// Serve with `sfu`, whose events come from `events`.
    pub async fn start(
        sfu: Arc<dyn SfuControl>,
        events: huddle_sfu::SfuEvents,
        config: SignalingConfig,
    ) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = AppState::new(config, sfu);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(huddle_signaling::serve_with(
            listener,
            app.clone(),
            events,
            async move {
                let _ = rx.await;
            },
        ));
        Ok(Self {
            addr,
            app,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// Serve in front of the real SFU (`huddle_sfu::driver::start`) with two
    /// workers, as on a two-core server, their media sockets on 127.0.0.1:0.
    pub async fn start_with_real_sfu() -> Result<(Self, huddle_sfu::Sfu)> {
        Self::start_with_real_sfu_config(SignalingConfig::new(SECRET)).await
    }

    /// [`Server::start_with_real_sfu`] with `config`.
    pub async fn start_with_real_sfu_config(
        config: SignalingConfig,
    ) -> Result<(Self, huddle_sfu::Sfu)> {
        let (sfu, events) = huddle_sfu::driver::start(huddle_sfu::SfuConfig {
            bind: "127.0.0.1:0".parse()?,
            workers: 2,
            ..Default::default()
        })
        .await?;
        let server = Self::start(Arc::new(sfu.clone()), events, config).await?;
        Ok((server, sfu))
    }

    /// Shut down and wait for the server to return.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .context("server did not stop")???;
        }
        Ok(())
    }

    pub async fn connect(&self, room: Option<&str>) -> Result<Ws> {
        let url = match room {
            Some(r) => format!("ws://{}/ws?room={r}", self.addr),
            None => format!("ws://{}/ws", self.addr),
        };
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .context("connect timed out")??;
        Ok(ws)
    }

    /// Connect and join with a fresh token; returns the socket and `joined`.
    pub async fn join(
        &self,
        room: &str,
        identity: &str,
        publish: bool,
        subscribe: bool,
    ) -> Result<(Ws, ServerMessage)> {
        let mut ws = self.connect(Some(room)).await?;
        send_json(
            &mut ws,
            &join_msg(&token(room, identity, publish, subscribe)),
        )
        .await?;
        let joined = recv(&mut ws).await?;
        if !matches!(joined, ServerMessage::Joined { .. }) {
            bail!("expected joined, got {joined:?}");
        }
        Ok((ws, joined))
    }

    /// An HTTP request; returns (status, body).
    pub async fn http(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
    ) -> Result<(u16, String)> {
        http(self.addr, method, path, bearer).await
    }
}

pub fn token(room: &str, identity: &str, publish: bool, subscribe: bool) -> String {
    auth::mint(
        SECRET,
        &Claims::new(identity, room, publish, subscribe, 600),
    )
    .expect("mint")
}

pub fn admin_token() -> String {
    auth::mint(SECRET, &Claims::admin("ops", 600)).expect("mint")
}

pub fn join_msg(token: &str) -> String {
    serde_json::json!({"type": "join", "token": token}).to_string()
}

pub fn joined_id(m: &ServerMessage) -> String {
    match m {
        ServerMessage::Joined { participant, .. } => participant.id.clone(),
        other => panic!("not joined: {other:?}"),
    }
}

pub async fn send_json(ws: &mut Ws, text: &str) -> Result<()> {
    tokio::time::timeout(WAIT, ws.send(Message::text(text)))
        .await
        .context("send timed out")??;
    Ok(())
}

/// What arrived next: a message, or the close.
#[derive(Debug)]
// A test helper: the size of a `joined` in a return value does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Got {
    Msg(ServerMessage),
    Closed(Option<u16>),
}

pub async fn next(ws: &mut Ws) -> Result<Got> {
    loop {
        let frame = tokio::time::timeout(WAIT, ws.next())
            .await
            .context("nothing arrived in time")?;
        match frame {
            None => return Ok(Got::Closed(None)),
            Some(Err(_)) => return Ok(Got::Closed(None)),
            Some(Ok(Message::Text(t))) => {
                let m: ServerMessage = serde_json::from_str(t.as_str())
                    .with_context(|| format!("bad server JSON {t}"))?;
                return Ok(Got::Msg(m));
            }
            Some(Ok(Message::Close(frame))) => {
                return Ok(Got::Closed(frame.map(|f| u16::from(f.code))))
            }
            Some(Ok(_)) => continue,
        }
    }
}

pub async fn recv(ws: &mut Ws) -> Result<ServerMessage> {
    match next(ws).await? {
        Got::Msg(m) => Ok(m),
        Got::Closed(c) => Err(anyhow!("connection closed ({c:?})")),
    }
}

/// Expect an `error` with `code`; returns its message.
pub async fn expect_error(ws: &mut Ws, code: ErrorCode) -> Result<String> {
    match recv(ws).await? {
        ServerMessage::Error { code: c, message } if c == code => Ok(message),
        other => bail!("expected error {code}, got {other:?}"),
    }
}

/// Expect the server to close the connection; returns the close code.
pub async fn expect_closed(ws: &mut Ws) -> Result<Option<u16>> {
    match next(ws).await? {
        Got::Closed(c) => Ok(c),
        Got::Msg(m) => bail!("expected close, got {m:?}"),
    }
}

pub async fn ping_pong(ws: &mut Ws) -> Result<()> {
    send_json(ws, r#"{"type":"ping"}"#).await?;
    match recv(ws).await? {
        ServerMessage::Pong => Ok(()),
        other => bail!("expected pong, got {other:?}"),
    }
}

/// Minimal HTTP/1.1 client (Connection: close).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
) -> Result<(u16, String)> {
    let r = request(addr, method, path, bearer, &[], "").await?;
    Ok((r.status, r.body))
}

/// An HTTP response: status, headers (names lowercased) and body.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request with extra `headers` and a `body`.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<HttpResponse> {
    let io = async {
        let mut s = TcpStream::connect(addr).await?;
        let mut extra = bearer
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        for (n, v) in headers {
            extra.push_str(&format!("{n}: {v}\r\n"));
        }
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        anyhow::Ok(buf)
    };
    let buf = tokio::time::timeout(WAIT, io)
        .await
        .context("HTTP timed out")??;
    let text = String::from_utf8(buf)?;
    let (head, body) = text.split_once("\r\n\r\n").context("no header end")?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .context("no status")?
        .parse()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}
