//! The server under load: a `huddle-server` child process this tool starts
//! (and stops), or one already running that it only connects to.

use crate::error::BenchError;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Time the child gets to answer `/healthz`.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Lifetime of the tokens minted for a run.
const TOKEN_TTL_SECS: u64 = 6 * 3600;

/// Where the server is and how to get in.
#[derive(Debug)]
pub struct Server {
    url: String,
    secret: String,
    pid: Option<u32>,
    media_ports: Vec<u16>,
    child: Option<Child>,
    log: Option<PathBuf>,
}

fn server_err(e: impl std::fmt::Display) -> BenchError {
    BenchError::Server(e.to_string())
}

/// A free port on 127.0.0.1 for TCP and `udp_count` consecutive free ones
/// for UDP (one per SFU worker), all freed again: the server binds them a
/// moment later.
fn free_ports(udp_count: usize) -> Result<(u16, u16), BenchError> {
    let tcp = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    for _ in 0..50 {
        let first = UdpSocket::bind("127.0.0.1:0")?;
        let base = first.local_addr()?.port();
        let rest: Option<Vec<UdpSocket>> = (1..udp_count)
            .map(|i| {
                let port = base.checked_add(u16::try_from(i).ok()?)?;
                UdpSocket::bind(("127.0.0.1", port)).ok()
            })
            .collect();
        if rest.is_some() {
            return Ok((tcp, base));
        }
    }
    Err(server_err(format!(
        "found no {udp_count} consecutive free UDP ports on 127.0.0.1"
    )))
}

/// The `huddle-server` next to this executable (same target directory), or
/// one level up (this executable is a test in `deps/`).
pub fn default_server_bin() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [
        dir.join("huddle-server"),
        dir.parent()?.join("huddle-server"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

impl Server {
    /// Start `bin` with `workers` SFU workers on free loopback ports with a
    /// random secret, its log in `log` (warn level unless `RUST_LOG` says
    /// otherwise), and wait until it answers.
    pub fn spawn(bin: &Path, log: PathBuf, workers: usize) -> Result<Self, BenchError> {
        let workers = workers.max(1);
        let (http_port, udp_port) = free_ports(workers)?;
        let secret = format!("bench-{:032x}", rand::random::<u128>());
        let log_file = std::fs::File::create(&log)?;
        let child = Command::new(bin)
            .arg("serve")
            .env("HUDDLE_HTTP", format!("127.0.0.1:{http_port}"))
            .env("HUDDLE_MEDIA_UDP", format!("127.0.0.1:{udp_port}"))
            .env("HUDDLE_WORKERS", workers.to_string())
            .env("HUDDLE_SECRET", &secret)
            // Every simulated participant comes from 127.0.0.1: lift the
            // per-address and per-room limits meant for real clients.
            .env("HUDDLE_MAX_CONNECTIONS_PER_IP", "0")
            .env("HUDDLE_MAX_PENDING_PER_IP", "0")
            .env("HUDDLE_MAX_PARTICIPANTS_PER_ROOM", "0")
            .env(
                "RUST_LOG",
                std::env::var("HUDDLE_BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env_remove("HUDDLE_CONFIG")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .map_err(|e| server_err(format!("cannot start {}: {e}", bin.display())))?;
        let mut server = Self {
            url: format!("ws://127.0.0.1:{http_port}/ws"),
            secret,
            pid: Some(child.id()),
            media_ports: (0..workers)
                .filter_map(|i| udp_port.checked_add(u16::try_from(i).ok()?))
                .collect(),
            child: Some(child),
            log: Some(log),
        };
        server.wait_healthy(SocketAddr::from(([127, 0, 0, 1], http_port)))?;
        Ok(server)
    }

    /// A server already running at `url`, whose tokens are signed with
    /// `secret`; `pid` (when given) is measured.
    pub fn external(url: String, secret: String, pid: Option<u32>) -> Self {
        Self {
            url,
            secret,
            pid,
            media_ports: Vec::new(),
            child: None,
            log: None,
        }
    }

    fn wait_healthy(&mut self, addr: SocketAddr) -> Result<(), BenchError> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    return Err(server_err(format!(
                        "huddle-server exited at start ({status}); log: {}",
                        self.log_path()
                    )));
                }
            }
            if healthz(addr).unwrap_or(false) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(server_err(format!(
                    "huddle-server did not answer /healthz within {START_TIMEOUT:?}; log: {}",
                    self.log_path()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_path(&self) -> String {
        self.log
            .as_ref()
            .map_or_else(|| "-".to_owned(), |p| p.display().to_string())
    }

    /// The signaling WebSocket URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The process to measure, if known.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The server's media UDP ports (one per SFU worker), when this tool
    /// chose them; empty otherwise.
    pub fn media_ports(&self) -> &[u16] {
        &self.media_ports
    }

    /// Whether this tool started the server.
    pub fn spawned(&self) -> bool {
        self.child.is_some()
    }

    /// A token for `identity` in `room`.
    pub fn mint(
        &self,
        room: &str,
        identity: &str,
        publish: bool,
        subscribe: bool,
        e2ee: bool,
    ) -> Result<String, BenchError> {
        crate::token::mint(
            &self.secret,
            room,
            identity,
            (publish, subscribe, e2ee),
            TOKEN_TTL_SECS,
        )
    }

    /// Stop the child, if this tool started one.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether `GET /healthz` answers 200.
fn healthz(addr: SocketAddr) -> std::io::Result<bool> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_secs(1)))?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut head = [0u8; 16];
    let n = s.read(&mut head)?;
    Ok(head[..n].starts_with(b"HTTP/1.1 200"))
}
