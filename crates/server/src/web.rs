//! The browser client and, in development mode, the token endpoint it uses.
//!
//! - `GET /`, `/index.html`, `/app.js`, `/style.css`: the web client of
//!   `crates/server/web/`, embedded in the binary at build time (so the server serves it
//!   from any working directory); `/watch.html`, `/watch.js`: its WHEP
//!   viewer; `/token.js`: how both get a token; `/e2ee/huddle_e2ee_web.js`
//!   and `/e2ee/huddle_e2ee_web_bg.wasm`: the end-to-end encryption of
//!   E2EE rooms, as WebAssembly (`crates/e2ee-web`, built by
//!   `scripts/build_e2ee_wasm.sh`).
//! - Pages carry a Content-Security-Policy ([`page_csp`]) that lets them
//!   load only their own scripts, styles and media and connect only to this
//!   server (its WebSocket included); the other security headers come from
//!   [`huddle_signaling::headers`].
//! - `GET /e2ee-worker.js`: the worker the web client's end-to-end
//!   encryption runs in.
//! - `GET /dev/token?room=R&identity=I[&e2ee=1]` → `{"token": "..."}`: only when
//!   [`crate::ServerConfig::dev`] is set; otherwise the route does not exist
//!   (404). The token grants publish and subscribe in room `R` for
//!   [`TOKEN_TTL_SECS`](crate::config::TOKEN_TTL_SECS), of an end-to-end
//!   encrypted room with `e2ee=1`.

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use huddle_signaling::{auth, Claims};
use serde::Deserialize;
use std::sync::Arc;

/// `web/index.html`.
const INDEX_HTML: &str = include_str!("../web/index.html");
/// `web/app.js`.
const APP_JS: &str = include_str!("../web/app.js");
/// `web/style.css`.
const STYLE_CSS: &str = include_str!("../web/style.css");
/// `web/watch.html`.
const WATCH_HTML: &str = include_str!("../web/watch.html");
/// `web/watch.js`.
const WATCH_JS: &str = include_str!("../web/watch.js");
/// `web/token.js`.
const TOKEN_JS: &str = include_str!("../web/token.js");

/// `web/e2ee-worker.js`.
const E2EE_WORKER_JS: &str = include_str!("../web/e2ee-worker.js");
/// `web/e2ee/huddle_e2ee_web.js`: the WebAssembly's JavaScript bindings.
const E2EE_JS: &str = include_str!("../web/e2ee/huddle_e2ee_web.js");
/// `web/e2ee/huddle_e2ee_web_bg.wasm`: huddle-e2ee as WebAssembly.
const E2EE_WASM: &[u8] = include_bytes!("../web/e2ee/huddle_e2ee_web_bg.wasm");

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
        )
        .route(
            "/e2ee-worker.js",
            get(|| async { page("text/javascript; charset=utf-8", E2EE_WORKER_JS) }),
        )
        .route(
            "/e2ee/huddle_e2ee_web.js",
            get(|| async { page("text/javascript; charset=utf-8", E2EE_JS) }),
        )
        .route(
            "/e2ee/huddle_e2ee_web_bg.wasm",
            get(|| async { page("application/wasm", E2EE_WASM) }),
        );
    let pages = pages.route_layer(axum::middleware::from_fn(page_headers));
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

/// The Content-Security-Policy of the pages, for a page served as `host`
/// (the request's `Host`, when it is a plain `name[:port]`): scripts, styles
/// and media only from this server (WebAssembly too: `'wasm-unsafe-eval'`
/// lets a page compile the E2EE module it fetched from here; it allows no
/// `eval` of JavaScript) (and the `data:` icon; media elements play
/// `MediaStream`s and may play `blob:` URLs); `fetch` and the signaling
/// WebSocket only to this server (`'self'` covers `ws:`/`wss:` in CSP 3, and
/// the host is named too for browsers that predate it); no plugins, no
/// framing, no `<base>`, forms posting only here.
pub fn page_csp(host: Option<&str>) -> String {
    let host = host.filter(|h| {
        !h.is_empty()
            && h.len() <= 255
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    });
    let sockets = host
        .map(|h| format!(" ws://{h} wss://{h}"))
        .unwrap_or_default();
    format!(
        "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
         img-src 'self' data:; \
         media-src 'self' blob: mediastream:; connect-src 'self'{sockets}; \
         form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
}

/// Middleware for the pages: their Content-Security-Policy ([`page_csp`]).
async fn page_headers(request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut response = next.run(request).await;
    if let Ok(v) = HeaderValue::from_str(&page_csp(host.as_deref())) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, v);
    }
    response
}

/// A static page. `no-cache` so that a browser picks up a new server's client.
fn page(content_type: &'static str, body: impl IntoResponse) -> Response {
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
    /// `1`: a token of an end-to-end encrypted room.
    #[serde(default)]
    e2ee: Option<String>,
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
        crate::config::TOKEN_TTL_SECS,
    );
    claims.name = Some(q.identity);
    claims.e2ee = q.e2ee.as_deref() == Some("1");
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

#[cfg(test)]
mod tests {
    use super::page_csp;

    #[test]
    fn page_csp_names_the_host_only_when_it_is_plain() {
        let csp = page_csp(Some("call.example.com:8443"));
        assert!(
            csp.contains(
                "connect-src 'self' ws://call.example.com:8443 wss://call.example.com:8443;"
            ),
            "{csp}"
        );
        assert!(csp.contains("script-src 'self' 'wasm-unsafe-eval';"));
        assert!(csp.contains("frame-ancestors 'none'"));
        assert!(page_csp(Some("[::1]:7880")).contains("ws://[::1]:7880"));
        for bad in ["evil.com; script-src *", "a b", "", "x\"y"] {
            let csp = page_csp(Some(bad));
            assert!(csp.contains("connect-src 'self';"), "{bad:?}: {csp}");
        }
        assert!(page_csp(None).contains("connect-src 'self';"));
    }
}
