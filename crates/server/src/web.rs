//! The browser client and, in development mode, the token endpoint it uses.
//!
//! - `GET /`, `/index.html`, `/app.js`, `/style.css`: the web client of
//!   `web/`, embedded in the binary at build time (so the server serves it
//!   from any working directory); `/watch.html`, `/watch.js`: its WHEP
//!   viewer; `/token.js`: how both get a token.
//! - `GET /dev/token?room=R&identity=I` → `{"token": "..."}`: only when
//!   [`crate::ServerConfig::dev`] is set; otherwise the route does not exist
//!   (404). The token grants publish and subscribe in room `R` for
//!   [`crate::TOKEN_TTL_SECS`].

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use huddle_signaling::{auth, Claims};
use serde::Deserialize;
use std::sync::Arc;

/// `web/index.html`.
const INDEX_HTML: &str = include_str!("../../../web/index.html");
/// `web/app.js`.
const APP_JS: &str = include_str!("../../../web/app.js");
/// `web/style.css`.
const STYLE_CSS: &str = include_str!("../../../web/style.css");
/// `web/watch.html`.
const WATCH_HTML: &str = include_str!("../../../web/watch.html");
/// `web/watch.js`.
const WATCH_JS: &str = include_str!("../../../web/watch.js");
/// `web/token.js`.
const TOKEN_JS: &str = include_str!("../../../web/token.js");

/// Longest room name or identity `/dev/token` accepts, in bytes.
pub const MAX_DEV_NAME_BYTES: usize = 128;

/// The web client's routes, plus `/dev/token` when `dev` is true. Tokens are
/// signed with `secret`.
pub fn router(secret: &str, dev: bool) -> Router {
    let pages = Router::new()
        .route(
            "/",
            get(|| async { page("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/index.html",
            get(|| async { page("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/app.js",
            get(|| async { page("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/style.css",
            get(|| async { page("text/css; charset=utf-8", STYLE_CSS) }),
        )
        .route(
            "/watch.html",
            get(|| async { page("text/html; charset=utf-8", WATCH_HTML) }),
        )
        .route(
            "/watch.js",
            get(|| async { page("text/javascript; charset=utf-8", WATCH_JS) }),
        )
        .route(
            "/token.js",
            get(|| async { page("text/javascript; charset=utf-8", TOKEN_JS) }),
        );
    if !dev {
        return pages;
    }
    let secret: Arc<str> = Arc::from(secret);
    pages.merge(
        Router::new()
            .route("/dev/token", get(dev_token))
            .with_state(secret),
    )
}

/// A static page. `no-cache` so that a browser picks up a new server's client.
fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// Query of `/dev/token`.
#[derive(Debug, Deserialize)]
struct DevTokenQuery {
    room: String,
    identity: String,
}

/// `GET /dev/token?room=R&identity=I`.
async fn dev_token(State(secret): State<Arc<str>>, Query(q): Query<DevTokenQuery>) -> Response {
    for (what, value) in [("room", &q.room), ("identity", &q.identity)] {
        if value.trim().is_empty() || value.len() > MAX_DEV_NAME_BYTES {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("{what} must be 1 to {MAX_DEV_NAME_BYTES} bytes"),
            );
        }
    }
    let mut claims = Claims::new(
        q.identity.clone(),
        q.room.clone(),
        true,
        true,
        crate::TOKEN_TTL_SECS,
    );
    claims.name = Some(q.identity);
    match auth::mint(&secret, &claims) {
        Ok(token) => (
            [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
            Json(serde_json::json!({ "token": token })),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot mint a development token");
            error(StatusCode::INTERNAL_SERVER_ERROR, "cannot mint a token")
        }
    }
}

/// A JSON error body, as the REST API has them.
fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}
