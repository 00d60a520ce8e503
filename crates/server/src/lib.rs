//! huddle-server: the process operators run, signaling + SFU in one binary.
//!
//! The library part lets tests and examples run the whole server in process:
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use huddle_server::{start, ServerConfig};
//! let server = start(ServerConfig::ephemeral("a test secret of at least 32 bytes")).await?;
//! let token = server.mint_token("room", "alice", huddle_sfu::Rights { publish: true, subscribe: true })?;
//! println!("ws://{}/ws  token {token}", server.http_addr());
//! server.shutdown().await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cli;
pub mod config;
pub mod limits;
mod shutdown;
pub mod turn;
pub mod web;

pub use config::{ConfigError, ServerConfig, DEV_SECRET, MIN_SECRET_BYTES, TOKEN_TTL_SECS};
pub use shutdown::shutdown_signal;

use anyhow::Context;
use huddle_sfu::Rights;
use huddle_sfu::{Sfu, SfuConfig};
use huddle_signaling::{auth, AppState, Claims, SignalingConfig};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The log filter when `RUST_LOG` is not set: `info`, with the `rtc`
/// targets that log once per refused datagram or per connection held to
/// errors ([`huddle_sfu::log_limit::RTC_LOG_FILTER`]; the SFU logs refused
/// datagrams itself, rate-limited), and the TURN protocol crates quieter
/// ([`huddle_turn::TURN_LOG_FILTER`]).
pub fn default_log_filter() -> String {
    format!(
        "info,{},{}",
        huddle_sfu::log_limit::RTC_LOG_FILTER,
        huddle_turn::TURN_LOG_FILTER
    )
}

/// How long shutdown waits for the SFU workers to send their goodbyes.
const SFU_CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// A server running in this process. Dropping it stops it too, without
/// waiting; prefer [`RunningServer::shutdown`].
#[derive(Debug)]
pub struct RunningServer {
    http_addr: SocketAddr,
    sfu: Sfu,
    turn: Option<huddle_turn::driver::TurnHandle>,
    secret: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// Start the SFU and the signaling service as `config` says. Refused, before
/// anything is bound, when [`ServerConfig::validate`] fails (an empty or
/// short secret; the development secret off loopback without `dev`).
pub async fn start(config: ServerConfig) -> anyhow::Result<RunningServer> {
    config.validate()?;
    if config.uses_dev_secret() {
        tracing::warn!(
            "using the embedded development secret: anyone can mint tokens for this server; \
             set HUDDLE_SECRET or `secret` in the configuration file"
        );
    }
    let (sfu, events) = huddle_sfu::driver::start(SfuConfig {
        bind: config.media_udp,
        public_addr: config.media_public,
        workers: config.workers,
        ice_tcp: config.ice_tcp,
        ..Default::default()
    })
    .await
    .with_context(|| {
        let tcp = match config.ice_tcp {
            true => " (and the same tcp ports, for ICE-TCP; --ice-tcp=false goes without)",
            false => "",
        };
        format!(
            "cannot open the media sockets of {} SFU worker(s) from udp/{}{tcp}",
            config.workers, config.media_udp
        )
    })?;
    // The embedded TURN server shares the secret external TURN servers
    // check credentials with; alone, it draws one (only this process makes
    // and checks its credentials).
    let turn_secret = config.turn_secret.clone().unwrap_or_else(|| {
        let bytes: [u8; 32] = rand::random();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    });
    let mut turn_urls = config.turn_urls.clone();
    let turn = match config.turn.enabled() {
        true => {
            let sfu_addrs = sfu.local_addrs();
            let started =
                turn::start(&config.turn, &turn_secret, &sfu_addrs, config.media_public).await;
            let handle = match started {
                Ok(h) => h,
                Err(e) => {
                    sfu.shutdown();
                    return Err(e);
                }
            };
            turn_urls.extend(config.turn.urls(handle.addrs(), config.media_public)?);
            Some(handle)
        }
        false => None,
    };
    let listener = match tokio::net::TcpListener::bind(config.http).await {
        Ok(l) => l,
        Err(e) => {
            sfu.shutdown();
            return Err(e).with_context(|| format!("cannot listen on tcp/{}", config.http));
        }
    };
    let http_addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let mut signaling = SignalingConfig::new(config.secret.clone());
    signaling.token_max_lifetime_secs = config.token_max_lifetime_secs;
    if !turn_urls.is_empty() {
        signaling.turn = Some(huddle_signaling::turn_credentials::TurnConfig {
            urls: turn_urls.clone(),
            secret: turn_secret,
            ttl: std::time::Duration::from_secs(config.turn_credential_ttl_secs),
        });
    }
    config.limits.apply_to(&mut signaling);
    let app = AppState::new(signaling, Arc::new(sfu.clone()));
    // Signaling (/ws, /api, /healthz) and the web client (/, /dev/token);
    // every response, unknown paths' too, with the security headers.
    let routes = huddle_signaling::router(app.clone())
        .merge(web::router(&config.secret, config.dev))
        .layer(axum::middleware::from_fn(
            huddle_signaling::headers::security_headers,
        ));
    let task = tokio::spawn(huddle_signaling::serve_router(
        listener,
        routes,
        app,
        events,
        async move {
            let _ = stopped.await;
        },
    ));
    if config.dev {
        tracing::warn!(
            "development mode: GET /dev/token mints a token for anyone who asks; \
             never run production with --dev"
        );
    }
    tracing::info!(
        http = %http_addr,
        media_udp = ?sfu.local_addrs(),
        ice_tcp = config.ice_tcp,
        turn = ?turn_urls,
        web_client = %format!("http://{http_addr}/"),
        "huddle server started"
    );
    Ok(RunningServer {
        http_addr,
        sfu,
        turn,
        secret: config.secret,
        stop: Some(stop),
        task: Some(task),
    })
}

impl RunningServer {
    /// Address of the HTTP server (signaling at `/ws`, REST under `/api`,
    /// the web client at `/`).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// URL of the signaling WebSocket.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.http_addr)
    }

    /// Address of the SFU's first media socket (every worker's:
    /// [`Sfu::local_addrs`]).
    pub fn media_addr(&self) -> SocketAddr {
        self.sfu.local_addr()
    }

    /// Where the embedded TURN server listens, if it runs.
    pub fn turn_addrs(&self) -> Option<huddle_turn::driver::TurnAddrs> {
        self.turn.as_ref().map(|t| t.addrs())
    }

    /// What the embedded TURN server's policy did so far, if it runs.
    pub fn turn_stats(&self) -> Option<huddle_turn::TurnStats> {
        self.turn.as_ref().map(|t| t.stats())
    }

    /// The SFU handle (e.g. for [`Sfu::stats`]).
    pub fn sfu(&self) -> &Sfu {
        &self.sfu
    }

    /// A token for `identity` in `room` with `rights`, valid [`TOKEN_TTL_SECS`].
    pub fn mint_token(&self, room: &str, identity: &str, rights: Rights) -> anyhow::Result<String> {
        self.mint(Self::claims(room, identity, rights))
    }

    /// [`RunningServer::mint_token`] for an end-to-end encrypted room
    /// (the token's `e2ee` claim: docs/e2ee.md).
    pub fn mint_e2ee_token(
        &self,
        room: &str,
        identity: &str,
        rights: Rights,
    ) -> anyhow::Result<String> {
        let mut claims = Self::claims(room, identity, rights);
        claims.e2ee = true;
        self.mint(claims)
    }

    /// [`RunningServer::mint_token`] with a display name (the token's `name`
    /// claim), which everyone in the room is shown.
    pub fn mint_named_token(
        &self,
        room: &str,
        identity: &str,
        name: &str,
        rights: Rights,
    ) -> anyhow::Result<String> {
        let mut claims = Self::claims(room, identity, rights);
        claims.name = Some(name.to_owned());
        self.mint(claims)
    }

    fn claims(room: &str, identity: &str, rights: Rights) -> Claims {
        Claims::new(
            identity,
            room,
            rights.publish,
            rights.subscribe,
            TOKEN_TTL_SECS,
        )
    }

    fn mint(&self, claims: Claims) -> anyhow::Result<String> {
        Ok(auth::mint(&self.secret, &claims)?)
    }

    /// A token for the REST admin API, valid [`TOKEN_TTL_SECS`].
    pub fn mint_admin_token(&self) -> anyhow::Result<String> {
        self.mint(Claims::admin("admin", TOKEN_TTL_SECS))
    }

    /// Stop: close every WebSocket (code 1001), stop the HTTP server, then
    /// the SFU, whose workers close every media connection (RTCP BYE, DTLS
    /// close_notify) and send that before this returns.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop_and_wait().await
    }

    /// Run until `signal` completes (then shut down) or the server fails.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
        let Some(task) = self.task.as_mut() else {
            return Ok(());
        };
        tokio::select! {
            () = signal => {
                tracing::info!("shutting down");
                self.stop_and_wait().await
            }
            res = task => {
                self.task = None;
                self.sfu.shutdown();
                res.context("HTTP server task failed")?.context("HTTP server failed")?;
                anyhow::bail!("HTTP server stopped unexpectedly")
            }
        }
    }

    async fn stop_and_wait(&mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = match self.task.take() {
            Some(task) => match task.await {
                Ok(r) => r.context("HTTP server failed"),
                Err(e) => Err(e).context("HTTP server task failed"),
            },
            None => Ok(()),
        };
        // Every media connection is closed with a goodbye (RTCP BYE, DTLS
        // close_notify) that is sent before this returns, so WHIP/WHEP
        // clients, which have no WebSocket, learn at once. Bounded: a
        // wedged worker must not hold the process.
        if tokio::time::timeout(SFU_CLOSE_TIMEOUT, self.sfu.close())
            .await
            .is_err()
        {
            tracing::warn!("SFU workers did not close within {SFU_CLOSE_TIMEOUT:?}");
            self.sfu.shutdown();
        }
        if let Some(turn) = self.turn.take() {
            turn.shutdown().await;
        }
        result
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
            self.sfu.shutdown();
        }
    }
}
