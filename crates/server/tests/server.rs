//! The server in process and as a binary, on 127.0.0.1 with ports 0.

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use huddle_proto::ServerMessage;
use huddle_server::{start, ServerConfig};
use huddle_sfu::Rights;
use std::io::{BufRead, BufReader};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(10);
/// A secret of the shortest length the server accepts.
const SECRET: &str = "server-test-secret-0123456789abc";

async fn http_get(
    addr: std::net::SocketAddr,
    path: &str,
    bearer: Option<&str>,
) -> Result<(u16, String)> {
    let io = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        let auth = bearer
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).await?;
        anyhow::Ok(buf)
    };
    let text = tokio::time::timeout(WAIT, io)
        .await
        .context("HTTP timed out")??;
    let (head, body) = text.split_once("\r\n\r\n").context("no header end")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .context("no status")?
        .parse()?;
    Ok((status, body.to_owned()))
}

async fn recv(
    ws: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
) -> Result<Option<ServerMessage>> {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .context("nothing arrived")?
        {
            Some(Ok(Message::Text(t))) => return Ok(Some(serde_json::from_str(t.as_str())?)),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Ok(None),
            Some(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn in_process_server_joins_lists_and_shuts_down() -> Result<()> {
    let server = start(ServerConfig::ephemeral(SECRET)).await?;
    assert_ne!(server.http_addr().port(), 0);
    assert_ne!(server.media_addr().port(), 0);
    assert_eq!(
        http_get(server.http_addr(), "/healthz", None).await?,
        (200, "ok".into())
    );

    let token = server.mint_token(
        "r",
        "alice",
        Rights {
            publish: true,
            subscribe: true,
        },
    )?;
    let (mut ws, _) =
        tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(server.ws_url())).await??;
    ws.send(Message::text(
        serde_json::json!({"type":"join","token":token}).to_string(),
    ))
    .await?;
    match recv(&mut ws).await? {
        Some(ServerMessage::Joined { room, .. }) => assert_eq!(room, "r"),
        other => bail!("expected joined, got {other:?}"),
    }
    assert_eq!(server.sfu().stats().await?.participants, 1);

    let admin = server.mint_admin_token()?;
    assert_eq!(
        http_get(server.http_addr(), "/api/rooms", None).await?.0,
        401
    );
    let (status, body) = http_get(server.http_addr(), "/api/rooms", Some(&admin)).await?;
    assert_eq!(status, 200);
    assert!(body.contains(r#"{"room":"r","participants":1}"#), "{body}");

    let http = server.http_addr();
    tokio::time::timeout(WAIT, server.shutdown()).await??;
    // The socket is closed (after whatever the SFU had queued).
    while recv(&mut ws).await?.is_some() {}
    assert!(
        tokio::net::TcpStream::connect(http).await.is_err(),
        "still listening"
    );
    Ok(())
}

#[test]
fn token_subcommand_prints_a_verifiable_token() -> Result<()> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_huddle-server"))
        .args([
            "token",
            "--room",
            "r",
            "--identity",
            "bob",
            "--subscribe",
            "false",
            "--ttl",
            "60",
        ])
        .env("HUDDLE_SECRET", SECRET)
        .env_remove("HUDDLE_CONFIG")
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout)?;
    let claims = huddle_signaling::auth::verify(SECRET, token.trim())?;
    assert_eq!((claims.room.as_str(), claims.sub.as_str()), ("r", "bob"));
    assert!(claims.publish && !claims.subscribe);
    assert!(claims.exp - claims.iat == 60);
    Ok(())
}

/// A `huddle-server` child process on ports 0, with its stderr lines.
#[cfg(unix)]
struct ServerProcess {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

#[cfg(unix)]
impl ServerProcess {
    fn spawn() -> Result<Self> {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_huddle-server"))
            .args(["--http", "127.0.0.1:0", "--media-udp", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("HUDDLE_SECRET")
            .env_remove("HUDDLE_CONFIG")
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().context("no stderr")?;
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Ok(Self { child, lines })
    }

    /// Reads the log up to the "started" line: its HTTP address, and whether
    /// the default-secret warning came before it.
    fn wait_started(&self) -> Result<(std::net::SocketAddr, bool)> {
        let mut warned = false;
        loop {
            let line = self
                .lines
                .recv_timeout(WAIT)
                .context("server did not start")?;
            warned |= line.contains("development secret");
            if let Some(rest) = line.split("http=").nth(1) {
                if line.contains("started") {
                    let http = rest.split_whitespace().next().context("no addr")?.parse()?;
                    return Ok((http, warned));
                }
            }
        }
    }

    /// Sends SIGTERM and waits for the process to exit successfully.
    fn terminate(&mut self) -> Result<()> {
        let pid = i32::try_from(self.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .context("no process id")?;
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)?;
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                assert!(status.success(), "exit status {status}");
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                bail!("server did not exit after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[cfg(unix)]
impl Drop for ServerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `huddle-server` (no subcommand) serves, warns about the default secret and
/// exits cleanly on SIGTERM.
#[cfg(unix)]
#[test]
fn binary_serves_and_stops_on_sigterm() -> Result<()> {
    let mut server = ServerProcess::spawn()?;
    let (http, warned) = server.wait_started()?;
    assert!(warned, "no warning about the default secret");
    let rt = tokio::runtime::Runtime::new()?;
    assert_eq!(rt.block_on(http_get(http, "/healthz", None))?.0, 200);
    server.terminate()
}

/// A supervisor may send SIGTERM the moment the "started" line appears: the
/// handler must already be listening then, or the signal kills the process
/// (exit by signal, no clean shutdown). Before the fix this failed in about
/// seven of ten tries, so five tries catch it.
#[cfg(unix)]
#[test]
fn sigterm_right_after_started_still_stops_cleanly() -> Result<()> {
    for _ in 0..5 {
        let mut server = ServerProcess::spawn()?;
        server.wait_started()?;
        server.terminate()?;
    }
    Ok(())
}

/// The web client is served from the binary; `/dev/token` exists only in
/// development mode.
#[tokio::test]
async fn web_client_and_dev_token() -> Result<()> {
    let server = start(ServerConfig::ephemeral(SECRET)).await?;
    let addr = server.http_addr();
    let (status, body) = http_get(addr, "/", None).await?;
    assert_eq!(status, 200);
    assert!(
        body.contains("<script src=\"/app.js\">"),
        "index.html: {body}"
    );
    let (status, body) = http_get(addr, "/app.js", None).await?;
    assert_eq!(status, 200);
    assert!(body.contains("RTCPeerConnection"), "app.js");
    assert_eq!(http_get(addr, "/style.css", None).await?.0, 200);
    let (status, body) = http_get(addr, "/watch.html", None).await?;
    assert_eq!(status, 200);
    assert!(body.contains("<script src=\"/watch.js\">"), "watch.html");
    let (status, body) = http_get(addr, "/watch.js", None).await?;
    assert_eq!(status, 200);
    assert!(body.contains("/whep"), "watch.js");
    let (status, body) = http_get(addr, "/token.js", None).await?;
    assert_eq!(status, 200);
    assert!(body.contains("/dev/token"), "token.js");
    assert_eq!(
        http_get(addr, "/dev/token?room=r&identity=alice", None)
            .await?
            .0,
        404,
        "no token endpoint unless --dev"
    );
    server.shutdown().await?;

    let mut config = ServerConfig::ephemeral(SECRET);
    config.dev = true;
    let server = start(config).await?;
    let addr = server.http_addr();
    let (status, body) = http_get(addr, "/dev/token?room=r&identity=alice", None).await?;
    assert_eq!(status, 200, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body)?;
    let token = body["token"].as_str().context("no token")?;
    let claims = huddle_signaling::auth::verify(SECRET, token)?;
    assert_eq!((claims.room.as_str(), claims.sub.as_str()), ("r", "alice"));
    assert!(claims.publish && claims.subscribe && !claims.is_admin());
    for bad in [
        "/dev/token?room=&identity=alice",
        "/dev/token?room=r",
        "/dev/token?room=r&identity=%20",
    ] {
        assert_eq!(http_get(addr, bad, None).await?.0, 400, "{bad}");
    }
    let long = "x".repeat(huddle_server::web::MAX_DEV_NAME_BYTES + 1);
    assert_eq!(
        http_get(addr, &format!("/dev/token?room={long}&identity=a"), None)
            .await?
            .0,
        400
    );
    server.shutdown().await?;
    Ok(())
}

/// Runs `command` to its end (killing it after [`WAIT`]); returns whether it
/// succeeded and its stderr.
fn run_to_exit(command: &mut std::process::Command) -> Result<(bool, String)> {
    let mut child = command
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("still running: it should have refused to start");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        std::io::Read::read_to_string(&mut e, &mut stderr)?;
    }
    Ok((status.success(), stderr))
}

fn server_command(args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_huddle-server"));
    c.args(args)
        .env_remove("HUDDLE_SECRET")
        .env_remove("HUDDLE_CONFIG")
        .env_remove("HUDDLE_DEV")
        .env_remove("HUDDLE_HTTP")
        .env_remove("HUDDLE_MEDIA_UDP");
    c
}

/// An empty secret (however given) or a short one stops the server before
/// it listens, with a message naming the minimum; so does the built-in
/// development secret on a non-loopback listener without --dev.
#[test]
fn binary_refuses_empty_short_and_exposed_development_secrets() -> Result<()> {
    let local = [
        "serve",
        "--http",
        "127.0.0.1:0",
        "--media-udp",
        "127.0.0.1:0",
    ];
    let dir = std::env::temp_dir().join(format!("huddle-secret-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let toml = dir.join("huddle.toml");
    std::fs::write(&toml, "secret = \"\"\n")?;
    let cases: Vec<(std::process::Command, &str)> = vec![
        (
            {
                let mut c = server_command(&local);
                c.env("HUDDLE_SECRET", "");
                c
            },
            "empty",
        ),
        (
            {
                let mut c = server_command(&local);
                c.args(["--secret", ""]);
                c
            },
            "empty",
        ),
        (
            {
                let mut c = server_command(&local);
                c.env("HUDDLE_CONFIG", &toml);
                c
            },
            "empty",
        ),
        (
            {
                let mut c = server_command(&local);
                c.env("HUDDLE_SECRET", &SECRET[..31]);
                c
            },
            "at least 32",
        ),
        (
            server_command(&["serve", "--http", "0.0.0.0:0", "--media-udp", "127.0.0.1:0"]),
            "development secret",
        ),
        (
            {
                let mut c = server_command(&["token", "--room", "r", "--identity", "a"]);
                c.env("HUDDLE_SECRET", "");
                c
            },
            "empty",
        ),
        (
            {
                let mut c =
                    server_command(&["token", "--room", "r", "--identity", "a", "--ttl", "90000"]);
                c.env("HUDDLE_SECRET", SECRET);
                c
            },
            "--ttl 90000 exceeds",
        ),
    ];
    for (mut command, says) in cases {
        let (ok, stderr) = run_to_exit(&mut command)?;
        assert!(!ok, "{command:?} succeeded");
        assert!(stderr.contains(says), "{command:?}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The library refuses what the binary refuses.
#[tokio::test]
async fn start_refuses_a_short_secret() -> Result<()> {
    let err = start(ServerConfig::ephemeral("short"))
        .await
        .err()
        .context("started")?;
    assert!(err.to_string().contains("at least 32"), "{err}");
    Ok(())
}

/// `GET path`: status and headers (names lowercased).
async fn http_headers(
    addr: std::net::SocketAddr,
    path: &str,
) -> Result<(u16, Vec<(String, String)>)> {
    let io = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).await?;
        anyhow::Ok(buf)
    };
    let text = tokio::time::timeout(WAIT, io)
        .await
        .context("HTTP timed out")??;
    let (head, _) = text.split_once("\r\n\r\n").context("no header end")?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .context("no status")?
        .parse()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok((status, headers))
}

/// Pages, API answers and unknown paths all carry the security headers; the
/// pages' policy lets them use their own scripts and this server's WebSocket.
#[tokio::test]
async fn security_headers_on_pages_and_api() -> Result<()> {
    let server = start(ServerConfig::ephemeral(SECRET)).await?;
    let addr = server.http_addr();
    for path in [
        "/",
        "/index.html",
        "/watch.html",
        "/app.js",
        "/token.js",
        "/api/rooms",
        "/healthz",
        "/nope",
    ] {
        let (status, headers) = http_headers(addr, path).await?;
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let what = format!("{path} ({status})");
        assert_eq!(get("x-frame-options"), Some("DENY"), "{what}");
        assert_eq!(get("referrer-policy"), Some("no-referrer"), "{what}");
        assert_eq!(get("x-content-type-options"), Some("nosniff"), "{what}");
        let csp = get("content-security-policy").context(what.clone())?;
        assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
        if status == 200 && !path.starts_with("/api") && path != "/healthz" {
            assert!(csp.contains("script-src 'self'"), "{what}: {csp}");
            assert!(
                csp.contains(&format!("connect-src 'self' ws://{addr} wss://{addr}")),
                "{what}: {csp}"
            );
        } else {
            assert_eq!(csp, huddle_signaling::headers::API_CSP, "{what}");
        }
    }
    server.shutdown().await?;
    Ok(())
}

/// The limits of the configuration reach the running server: a second
/// WebSocket from one address is refused (429) with a per-address limit of
/// one, and a half-sent request header is cut off.
#[tokio::test]
async fn configured_limits_apply() -> Result<()> {
    let mut config = ServerConfig::ephemeral(SECRET);
    config.limits.signaling.max_connections_per_ip = 1;
    config.limits.signaling.header_read_timeout = Duration::from_millis(200);
    let server = start(config).await?;
    let (_first, _) = tokio_tungstenite::connect_async(server.ws_url()).await?;
    match tokio_tungstenite::connect_async(server.ws_url()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            assert_eq!(r.status().as_u16(), 429)
        }
        other => bail!("second WebSocket not refused: {other:?}"),
    }
    let mut s = tokio::net::TcpStream::connect(server.http_addr()).await?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await?;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .context("half-sent header not cut off")?;
    server.shutdown().await
}
