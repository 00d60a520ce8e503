//! Security headers on every HTTP response of the service.
//!
//! - `X-Content-Type-Options: nosniff`: a body is only what its
//!   `Content-Type` says (no JSON or SDP run as a script).
//! - `Referrer-Policy: no-referrer`: no URL of ours leaves in a `Referer`.
//! - `X-Frame-Options: DENY` and CSP `frame-ancestors 'none'`: no page of
//!   ours is framed by another site (clickjacking).
//! - `Content-Security-Policy`: [`API_CSP`] (nothing may load) unless the
//!   handler set its own, as the web client's pages do.

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

/// The policy of responses that are not pages (JSON, SDP, plain text): a
/// browser that renders one anyway may load and run nothing.
pub const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";

/// Middleware: add the security headers to the response.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(API_CSP),
        );
    }
    response
}
