//! huddle-signaling: the signaling service of the huddle server.
//!
//! - `GET /ws[?room=ROOM]`: the JSON-over-WebSocket signaling protocol of
//!   [`huddle_proto`] (see `docs/signaling.md`), one connection per participant.
//! - `GET /healthz`: liveness.
//! - `/api/...`: admin REST API (see [`rest`]), bans included ([`bans`]).
//! - `/whip`, `/whep` and their sessions: WHIP (RFC 9725) ingest and WHEP
//!   egress (see [`whip`]).
//!
//! # Module map
//!
//! Entry points, each keeping only what is particular to its transport:
//! - [`ws`]: the WebSocket endpoint (reader loop, writer task, messages);
//! - [`whip`]: WHIP/WHEP over HTTP (offers, trickle `PATCH`, `DELETE`);
//! - [`rest`]: health check and admin API (rooms, kicks, bans);
//! - [`dispatch`]: relays the SFU's events to participants and rooms.
//!
//! Joining, whichever way a client comes in, is `admission.rs`'s: verify
//! the token (and the bans) and what it grants, enforce the limits, mint the
//! participant id, add it to the SFU and the hub, go live, or undo all that;
//! leaving is there too.
//!
//! Shared state, in [`AppState`] ([`app`]):
//! - [`hub`]: rooms and participants in memory, with their limits; a room's
//!   roster (`room.rs`, which owns the mute state clients are told), batched
//!   joins and leaves ([`presence`]), and each connection's queue
//!   ([`outbound`]); an end-to-end encrypted room's MLS delivery service
//!   (`e2ee.rs`: it orders commits per epoch and relays key packages,
//!   commits and welcomes, holding no group secret);
//! - [`http_sessions`]: open WHIP/WHEP sessions and the rate of new ones;
//! - [`resume`]: WebSocket sessions kept through a dropped connection;
//! - `connections.rs`: open WebSockets per node and per client address;
//! - [`bans`]: bans in force; [`sfu`]: the SFU as the service sees it.
//!
//! Leaves the rest build on: [`auth`] (HS256 JWTs, bearer tokens),
//! [`config`], [`limits`], [`ratelimit`], [`close_code`], [`headers`] (the
//! security headers every response carries), [`offer`] and [`sdpfrag`]
//! (SDP inspection), and `listener.rs` (the HTTP/1.1 server loop). Files
//! import each other without cycles: entry points -> admission -> state ->
//! leaves.
//!
//! Embedding: either [`serve`] (router + dispatcher + graceful shutdown in one
//! call), or build an [`AppState`], mount [`router`] in a larger axum app and
//! hand that app to [`serve_router`] (or run [`dispatch::run`] yourself).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod admission;
pub mod app;
pub mod auth;
pub mod bans;
pub mod close_code;
pub mod config;
mod connections;
pub mod dispatch;
mod e2ee;
pub mod headers;
pub mod http_sessions;
pub mod hub;
pub mod limits;
mod listener;
mod lock;
pub mod offer;
pub mod outbound;
pub mod presence;
pub mod ratelimit;
pub mod rest;
pub mod resume;
mod room;
pub mod sdpfrag;
pub mod sfu;
pub mod turn_credentials;
pub mod whip;
pub mod ws;
mod ws_writer;

pub use app::AppState;
pub use auth::{AuthError, Claims};
pub use config::SignalingConfig;
pub use limits::Limits;
pub use sfu::SfuControl;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;
use std::future::Future;
use std::sync::Arc;

/// The service's routes, ready to serve (state applied).
pub fn router(app: AppState) -> Router {
    let api = Router::new()
        .route("/rooms", get(rest::list_rooms))
        .route("/rooms/{room}/participants", get(rest::list_participants))
        .route("/rooms/{room}/participants/{id}", delete(rest::kick))
        .route("/bans", get(rest::list_bans).post(rest::ban))
        .route("/bans/{id}", delete(rest::lift_ban))
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            rest::require_admin,
        ));
    let http_sessions = Router::new()
        .route("/whip", post(whip::whip_post).options(whip::options))
        .route(
            "/whip/{id}",
            axum::routing::patch(whip::whip_patch)
                .delete(whip::whip_delete)
                .options(whip::options),
        )
        .route("/whep", post(whip::whep_post).options(whip::options))
        .route(
            "/whep/{id}",
            axum::routing::patch(whip::whep_patch)
                .delete(whip::whep_delete)
                .options(whip::options),
        )
        .layer(DefaultBodyLimit::max(huddle_proto::MAX_MESSAGE_BYTES))
        .layer(axum::middleware::from_fn(whip::cors));
    Router::new()
        .route("/healthz", get(rest::healthz))
        .route("/ws", get(ws::handler))
        .nest("/api", api)
        .merge(http_sessions)
        .with_state(app)
        .layer(axum::middleware::from_fn(headers::security_headers))
}

/// Serve signaling on `listener` for the SFU `sfu` (whose events are
/// `events`) until `shutdown` completes; then close every WebSocket (code
/// 1001) and wait up to [`SignalingConfig::shutdown_grace`] for them to go.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: SignalingConfig,
    sfu: huddle_sfu::Sfu,
    events: huddle_sfu::SfuEvents,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(
        listener,
        AppState::new(config, Arc::new(sfu)),
        events,
        shutdown,
    )
    .await
}

/// [`serve`] with a prepared [`AppState`] (any [`SfuControl`]).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    app: AppState,
    events: huddle_sfu::SfuEvents,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_router(listener, router(app.clone()), app, events, shutdown).await
}

/// [`serve_with`] serving `routes` instead of [`router`]: a larger axum app
/// that mounts [`router`]`(app.clone())` beside routes of its own (the
/// server's web client, for one). Runs the [`dispatch`] task for `app` and
/// shuts down the same way as [`serve`].
///
/// HTTP/1.1 only; each request carries its peer's
/// [`axum::extract::ConnectInfo`]`<SocketAddr>`, and a connection that does
/// not send a complete request header within
/// [`Limits::header_read_timeout`] is closed.
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    routes: Router,
    app: AppState,
    events: huddle_sfu::SfuEvents,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let dispatcher = tokio::spawn(dispatch::run(app.clone(), events));
    let on_shutdown = app.clone();
    let result = listener::serve(
        listener,
        routes,
        app.config().limits.header_read_timeout,
        async move {
            shutdown.await;
            on_shutdown.begin_shutdown();
        },
    )
    .await;
    // Upgraded WebSockets are not tracked by the HTTP server: wait for them.
    app.begin_shutdown();
    if !app.wait_idle(app.config().shutdown_grace).await {
        tracing::warn!(
            open = app.connection_count(),
            "WebSockets still open after the shutdown grace period"
        );
    }
    dispatcher.abort();
    result
}
