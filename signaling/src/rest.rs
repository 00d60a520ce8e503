//! The REST API: health check and admin endpoints.
//!
//! Everything under `/api` needs `Authorization: Bearer <token>` where the
//! token is signed with the server's secret and carries `"admin": true`:
//! without a valid token the answer is 401, with a valid non-admin token 403.
//!
//! A kick removes a participant, which may join again; a ban
//! (`POST /api/bans`, or a kick with `?ban_seconds=N`) also keeps its
//! identity or token out until the ban ends ([`crate::bans`]).

use crate::admission;
use crate::app::AppState;
use crate::auth::{self, bearer};
use crate::bans::{Ban, BanError, BanRequest};
use crate::close_code;
use crate::hub::RoomSummary;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
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

/// Middleware: let the request through only with a valid admin token.
pub async fn require_admin(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let verdict = bearer(request.headers())
        .ok_or(auth::AuthError::Missing)
        .and_then(|t| app.verify_token(t));
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

/// Query of the kick endpoint.
#[derive(Debug, Default, serde::Deserialize)]
pub struct KickQuery {
    /// Also ban the participant's identity in the room for this long.
    pub ban_seconds: Option<u64>,
}

/// `DELETE /api/rooms/{room}/participants/{id}[?ban_seconds=N]`: remove a
/// participant from the room and the SFU and close its WebSocket (or end its
/// WHIP/WHEP session). 204, or 404 if it is not in that room. With
/// `ban_seconds`, its identity is also banned from the room that long (400
/// if `N` is 0 or above [`crate::bans::MAX_BAN_SECS`]).
pub async fn kick(
    State(app): State<AppState>,
    Path((room, id)): Path<(String, String)>,
    Query(query): Query<KickQuery>,
) -> Response {
    let id = ParticipantId(id);
    if app.hub().room_of(&id).as_deref() != Some(room.as_str()) {
        return json_error(StatusCode::NOT_FOUND, "no such participant in that room");
    }
    if let Some(seconds) = query.ban_seconds {
        let Some(identity) = app.hub().identity_of(&id) else {
            return json_error(StatusCode::NOT_FOUND, "no such participant in that room");
        };
        let request = BanRequest {
            room: Some(room.clone()),
            identity: Some(identity),
            jti: None,
            seconds: Some(seconds),
        };
        // The ban removes every session of that identity in the room, this
        // one included.
        if let Err(e) = apply_ban(&app, &request).await {
            return e;
        }
        tracing::info!(participant = %id, %room, seconds, "participant kicked and banned");
        return StatusCode::NO_CONTENT.into_response();
    }
    if !remove(&app, &id, "removed by an administrator").await {
        return json_error(StatusCode::NOT_FOUND, "no such participant in that room");
    }
    tracing::info!(participant = %id, %room, "participant kicked");
    StatusCode::NO_CONTENT.into_response()
}

/// Take a participant out of its room and the SFU and close its connection
/// with code 4001 and `reason`. Returns false if it was not there.
async fn remove(app: &AppState, id: &ParticipantId, reason: &str) -> bool {
    let Some(removed) = admission::remove(app, id).await else {
        return false;
    };
    removed.conn.close(close_code::KICKED, reason);
    true
}

/// Add the ban `request` asks for and remove every participant it covers.
/// Returns the ban and how many were removed, or the refusal.
async fn apply_ban(app: &AppState, request: &BanRequest) -> Result<(Ban, usize), Response> {
    let ban = app
        .bans()
        .add(request, app.default_ban_secs(), auth::now_secs())
        .map_err(|e| {
            let status = match e {
                BanError::Full => StatusCode::CONFLICT,
                BanError::NothingToBan | BanError::BadDuration => StatusCode::BAD_REQUEST,
            };
            json_error(status, &e.to_string())
        })?;
    let covered = app
        .hub()
        .find(|room, identity, jti| ban.covers(room, identity, jti));
    let mut removed = 0;
    for id in covered {
        if remove(app, &id, "banned by an administrator").await {
            removed += 1;
        }
    }
    tracing::info!(ban = %ban.id, room = ?ban.room, identity = ?ban.identity, jti = ?ban.jti, until = ban.until, removed, "ban added");
    Ok((ban, removed))
}

/// `POST /api/bans` with a JSON [`BanRequest`]: ban an identity (in one room
/// or all) or a token id, and remove every participant it covers at once
/// (their connections close with 4001). 201 with the [`Ban`] and
/// `"removed"`, the number of participants removed; 400 for a request that
/// names nothing or a bad duration; 409 when the list is full.
pub async fn ban(
    State(app): State<AppState>,
    body: Result<Json<BanRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(b) => b,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e.body_text()),
    };
    match apply_ban(&app, &request).await {
        Ok((ban, removed)) => {
            let mut body = serde_json::to_value(&ban).unwrap_or_default();
            body["removed"] = removed.into();
            (StatusCode::CREATED, Json(body)).into_response()
        }
        Err(r) => r,
    }
}

/// `GET /api/bans`: the bans in force, oldest first.
pub async fn list_bans(State(app): State<AppState>) -> Json<Vec<Ban>> {
    Json(app.bans().list(auth::now_secs()))
}

/// `DELETE /api/bans/{id}`: lift a ban. 204, or 404 if none has that id.
pub async fn lift_ban(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    if app.bans().lift(&id) {
        tracing::info!(ban = %id, "ban lifted");
        StatusCode::NO_CONTENT.into_response()
    } else {
        json_error(StatusCode::NOT_FOUND, "no such ban")
    }
}
