//! The REST API: health check and admin endpoints.
//!
//! Everything under `/api` needs `Authorization: Bearer <token>` where the
//! token is signed with the server's secret and carries `"admin": true`:
//! without a valid token the answer is 401, with a valid non-admin token 403.

use crate::app::AppState;
use crate::auth;
use crate::state::RoomSummary;
use crate::ws::close_code;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use huddle_proto::ParticipantInfo;
use huddle_sfu::ParticipantId;

/// `GET /healthz`: 200 `ok` while the service runs.
pub async fn healthz() -> &'static str {
    "ok"
}

fn json_error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// The token of an `Authorization: Bearer <token>` header.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Middleware: let the request through only with a valid admin token.
pub async fn require_admin(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let config = app.config();
    let verdict = bearer(request.headers())
        .ok_or(auth::AuthError::Missing)
        .and_then(|t| auth::verify_with_leeway(&config.secret, t, config.token_leeway_secs));
    match verdict {
        Ok(claims) if claims.is_admin() => next.run(request).await,
        Ok(_) => json_error(StatusCode::FORBIDDEN, "admin token required"),
        Err(e) => {
            let mut r = json_error(StatusCode::UNAUTHORIZED, &e.to_string());
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            r
        }
    }
}

/// `GET /api/rooms`: every room with its participant count.
pub async fn list_rooms(State(app): State<AppState>) -> Json<Vec<RoomSummary>> {
    Json(app.hub().rooms())
}

/// `GET /api/rooms/{room}/participants`: the room's participants, or 404.
pub async fn list_participants(
    State(app): State<AppState>,
    Path(room): Path<String>,
) -> Result<Json<Vec<ParticipantInfo>>, Response> {
    app.hub()
        .participants(&room)
        .map(Json)
        .ok_or_else(|| json_error(StatusCode::NOT_FOUND, "no such room"))
}

/// `DELETE /api/rooms/{room}/participants/{id}`: remove a participant from
/// the room and the SFU and close its WebSocket. 204, or 404 if it is not in
/// that room.
pub async fn kick(
    State(app): State<AppState>,
    Path((room, id)): Path<(String, String)>,
) -> Response {
    let id = ParticipantId(id);
    if app.hub().room_of(&id).as_deref() != Some(room.as_str()) {
        return json_error(StatusCode::NOT_FOUND, "no such participant in that room");
    }
    let Some(removed) = app.hub().remove(&id) else {
        return json_error(StatusCode::NOT_FOUND, "no such participant in that room");
    };
    if let Err(e) = app.sfu().remove_participant(id.clone()).await {
        tracing::debug!(error = %e, participant = %id, "SFU remove failed");
    }
    removed
        .conn
        .close(close_code::KICKED, "removed by an administrator");
    tracing::info!(participant = %id, %room, "participant kicked");
    StatusCode::NO_CONTENT.into_response()
}
