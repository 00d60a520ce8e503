//! WHIP (RFC 9725) ingest and WHEP egress over HTTP.
//!
//! - `POST /whip` with an SDP offer (`application/sdp`) and
//!   `Authorization: Bearer <token>` (a token with `publish`): the client
//!   becomes a publish-only participant of the token's room; `201 Created`
//!   with the answer and `Location: /whip/{id}`.
//! - `POST /whep` likewise with a receive-only offer and a token with
//!   `subscribe`: a viewer of the room (see [`huddle_sfu::Sfu::add_viewer`]);
//!   `Location: /whep/{id}`.
//! - `PATCH /whip/{id}`, `/whep/{id}` with `application/trickle-ice-sdpfrag`:
//!   trickled client candidates (`204`). ICE restarts are not supported
//!   (`422`), as RFC 9725 §4.3.1 asks of a session that trickles only.
//! - `DELETE /whip/{id}`, `/whep/{id}`: end the session (`200`).
//!
//! Requests on a session need a valid token for the same room and identity
//! as the one that created it. The SFU's answer carries its candidate (ICE
//! lite, one host candidate), so no server-side trickle is needed. A session
//! is a participant like any other: the room sees it join and publish, and an
//! administrator can kick it; it ends too when its media connection dies.

use crate::app::AppState;
use crate::auth::{self, AuthError, Claims};
use crate::limits::client_ip;
use crate::ratelimit::TokenBucket;
use crate::rest::bearer;
use crate::sdpfrag;
use crate::state::{AddError, Conn, Outbound};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use huddle_proto::{PcRole, ServerMessage};
use huddle_sfu::api::Rights;
use huddle_sfu::{ParticipantId, RoomId, SfuError};
use rand::distr::{Alphanumeric, SampleString};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{mpsc, Notify};

/// `Content-Type` of offers and answers.
pub const SDP: &str = "application/sdp";
/// `Content-Type` of trickle `PATCH` bodies.
pub const SDPFRAG: &str = "application/trickle-ice-sdpfrag";

/// Which protocol a session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// WHIP: the client publishes.
    Whip,
    /// WHEP: the client views.
    Whep,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::Whip => "/whip",
            Kind::Whep => "/whep",
        }
    }

    /// The client's connection at the SFU.
    fn pc(self) -> PcRole {
        match self {
            Kind::Whip => PcRole::Publisher,
            Kind::Whep => PcRole::Subscriber,
        }
    }
}

struct Session {
    kind: Kind,
    room: String,
    identity: String,
    /// The client's ICE ufrag from its offer: a PATCH naming another one is
    /// an ICE restart.
    ice_ufrag: Option<String>,
    bucket: TokenBucket,
    /// Candidates already handed to the SFU.
    candidates: HashSet<String>,
    /// The session's connection's kick signal: identifies the session's
    /// forwarding task.
    kick: Arc<Notify>,
}

/// The open WHIP/WHEP sessions, by participant id.
#[derive(Default)]
pub struct Sessions {
    inner: Mutex<HashMap<ParticipantId, Session>>,
}

impl Sessions {
    fn lock(&self) -> MutexGuard<'_, HashMap<ParticipantId, Session>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Open sessions.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

/// A refused request: its status and a plain-text reason.
#[derive(Debug)]
pub struct Refusal {
    status: StatusCode,
    message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut r = (self.status, self.message).into_response();
        let h = r.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
            h.insert("accept-post", HeaderValue::from_static(SDP));
            h.insert("accept-patch", HeaderValue::from_static(SDPFRAG));
        }
        r
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

/// A join refused by a participant limit: 429 for the identity's own
/// sessions, 503 when the room or server is full.
fn limit_refusal(e: AddError) -> Refusal {
    let status = match e {
        AddError::TooManySessions => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, e.message())
}

fn auth_error(e: AuthError) -> Refusal {
    error(StatusCode::UNAUTHORIZED, e.to_string())
}

fn sfu_status(e: &SfuError) -> Refusal {
    match e {
        SfuError::BadSdp(_) | SfuError::BadCandidate(_) => {
            error(StatusCode::BAD_REQUEST, e.to_string())
        }
        SfuError::UnknownParticipant(_) => error(StatusCode::NOT_FOUND, "no such session"),
        SfuError::Stopped => error(StatusCode::SERVICE_UNAVAILABLE, "the media server stopped"),
        _ => {
            tracing::warn!(error = %e, "SFU call failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "the media server failed")
        }
    }
}

/// Whether the request's `Content-Type` is `want` (parameters ignored).
fn content_type_is(headers: &HeaderMap, want: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(want))
}

fn verify(app: &AppState, headers: &HeaderMap) -> Result<Claims, Refusal> {
    let config = app.config();
    let token = bearer(headers).ok_or_else(|| auth_error(AuthError::Missing))?;
    auth::verify_with_leeway(&config.secret, token, config.token_leeway_secs).map_err(auth_error)
}

fn body_text(body: &Bytes) -> Result<&str, Refusal> {
    std::str::from_utf8(body).map_err(|_| error(StatusCode::BAD_REQUEST, "body is not UTF-8"))
}

/// A [`Conn`] for a participant with no WebSocket: what the room would tell
/// it is discarded, and when it is closed (kick, media gone, DELETE) its
/// session is forgotten.
fn detached_conn(app: &AppState, id: ParticipantId) -> Conn {
    let (tx, mut rx) = mpsc::channel(app.config().outbound_queue.max(8));
    let kick = Arc::new(Notify::new());
    let conn = Conn::new(tx, kick.clone());
    let app = app.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = kick.notified() => break,
                msg = rx.recv() => match msg {
                    Some(Outbound::Close(..)) | None => break,
                    Some(_) => {}
                },
            }
        }
        let mut sessions = app.http_sessions().lock();
        if sessions
            .get(&id)
            .is_some_and(|s| Arc::ptr_eq(&s.kick, &kick))
        {
            sessions.remove(&id);
            tracing::info!(participant = %id, "WHIP/WHEP session ended");
        }
    });
    conn
}

/// The TCP peer, when the server recorded it.
type Peer = Option<Extension<ConnectInfo<SocketAddr>>>;

/// `POST /whip`: publish into the token's room.
pub async fn whip_post(
    State(app): State<AppState>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    create(app, Kind::Whip, peer, headers, body).await
}

/// `POST /whep`: watch the token's room.
pub async fn whep_post(
    State(app): State<AppState>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    create(app, Kind::Whep, peer, headers, body).await
}

async fn create(
    app: AppState,
    kind: Kind,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    if !content_type_is(&headers, SDP) {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the offer must be sent as application/sdp",
        ));
    }
    let claims = verify(&app, &headers)?;
    if claims.room.is_empty() {
        return Err(error(StatusCode::FORBIDDEN, "token grants no room"));
    }
    let allowed = match kind {
        Kind::Whip => claims.publish,
        Kind::Whep => claims.subscribe,
    };
    if !allowed {
        return Err(error(
            StatusCode::FORBIDDEN,
            match kind {
                Kind::Whip => "token does not allow publishing",
                Kind::Whep => "token does not allow subscribing",
            },
        ));
    }
    let offer = body_text(&body)?.to_owned();
    let ice_ufrag = sdpfrag::ice_ufrag(&offer);
    let ip = client_ip(&app.config().limits, &headers, peer.as_deref());
    if !app.take_session_token(ip, &claims.room, &claims.sub) {
        return Err(error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many new sessions; slow down",
        ));
    }

    let hub = app.hub();
    let (id, kick) = loop {
        let id = ParticipantId(format!(
            "PA_{}",
            Alphanumeric.sample_string(&mut rand::rng(), 12)
        ));
        let conn = detached_conn(&app, id.clone());
        let kick = conn.kick.clone();
        match hub.add_pending(&claims.room, id.clone(), claims.sub.clone(), conn) {
            Ok(()) => break (id, kick),
            Err(AddError::IdTaken) => continue,
            Err(e) => return Err(limit_refusal(e)),
        }
    };
    let room = RoomId(claims.room.clone());
    let sfu = app.sfu();
    let answer = match kind {
        Kind::Whip => {
            let rights = Rights {
                publish: true,
                subscribe: false,
            };
            match sfu.add_participant(room, id.clone(), rights).await {
                Ok(()) => sfu.publisher_offer(id.clone(), offer).await,
                Err(e) => Err(e),
            }
        }
        Kind::Whep => sfu.add_viewer(room, id.clone(), offer).await,
    };
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            end(&app, &id).await;
            return Err(sfu_status(&e));
        }
    };
    app.http_sessions().lock().insert(
        id.clone(),
        Session {
            kind,
            room: claims.room.clone(),
            identity: claims.sub.clone(),
            ice_ufrag,
            bucket: TokenBucket::new(app.config().rate_per_sec, app.config().rate_burst),
            candidates: HashSet::new(),
            kick,
        },
    );
    let room_name = claims.room.clone();
    let live = hub.go_live(&id, |participant, others| ServerMessage::Joined {
        room: room_name,
        participant,
        others,
        can_publish: kind == Kind::Whip,
        can_subscribe: kind == Kind::Whep,
    });
    if !live {
        // Kicked or dropped while being set up.
        end(&app, &id).await;
        return Err(error(
            StatusCode::CONFLICT,
            "the session ended while starting",
        ));
    }
    tracing::info!(participant = %id, identity = %claims.sub, room = %claims.room, ?kind, "WHIP/WHEP session started");
    let location = format!("{}/{}", kind.path(), id);
    let mut r = (StatusCode::CREATED, answer).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(SDP));
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    h.insert("accept-patch", HeaderValue::from_static(SDPFRAG));
    Ok(r)
}

/// Take a participant out of the room, the SFU and the session table.
async fn end(app: &AppState, id: &ParticipantId) {
    let removed = app.hub().remove(id);
    app.http_sessions().lock().remove(id);
    if let Err(e) = app.sfu().remove_participant(id.clone()).await {
        tracing::debug!(error = %e, participant = %id, "SFU remove");
    }
    if let Some(removed) = removed {
        removed.conn.close(crate::ws::close_code::NORMAL, "ended");
    }
}

/// Check the session exists under `kind` and the token is its owner's.
fn authorize(
    app: &AppState,
    kind: Kind,
    id: &ParticipantId,
    headers: &HeaderMap,
) -> Result<(), Refusal> {
    let claims = verify(app, headers)?;
    let sessions = app.http_sessions().lock();
    let s = sessions
        .get(id)
        .filter(|s| s.kind == kind)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "no such session"))?;
    if s.room != claims.room || s.identity != claims.sub {
        return Err(error(
            StatusCode::FORBIDDEN,
            "token is not the session owner's",
        ));
    }
    Ok(())
}

/// `PATCH /whip/{id}`: trickle ICE.
pub async fn whip_patch(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, Refusal> {
    patch(app, Kind::Whip, ParticipantId(id), headers, body).await
}

/// `PATCH /whep/{id}`: trickle ICE.
pub async fn whep_patch(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, Refusal> {
    patch(app, Kind::Whep, ParticipantId(id), headers, body).await
}

async fn patch(
    app: AppState,
    kind: Kind,
    id: ParticipantId,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, Refusal> {
    authorize(&app, kind, &id, &headers)?;
    if !content_type_is(&headers, SDPFRAG) {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send candidates as application/trickle-ice-sdpfrag",
        ));
    }
    let frag = sdpfrag::parse(body_text(&body)?)
        .map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))?;
    let fresh = {
        let mut sessions = app.http_sessions().lock();
        let Some(s) = sessions.get_mut(&id) else {
            return Err(error(StatusCode::NOT_FOUND, "no such session"));
        };
        if !s.bucket.try_take() {
            return Err(error(
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests; slow down",
            ));
        }
        let restart = match (&frag.ice_ufrag, &s.ice_ufrag) {
            (Some(new), Some(old)) => new != old,
            (Some(_), None) => true,
            _ => false,
        };
        if restart {
            return Err(error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "ICE restarts are not supported; start a new session",
            ));
        }
        let fresh: Vec<_> = frag
            .candidates
            .into_iter()
            .filter(|c| s.candidates.insert(c.candidate.clone()))
            .collect();
        fresh
    };
    for candidate in fresh {
        app.sfu()
            .remote_candidate(id.clone(), kind.pc(), candidate)
            .await
            .map_err(|e| sfu_status(&e))?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /whip/{id}`: stop publishing.
pub async fn whip_delete(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, Refusal> {
    delete(app, Kind::Whip, ParticipantId(id), headers).await
}

/// `DELETE /whep/{id}`: stop watching.
pub async fn whep_delete(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, Refusal> {
    delete(app, Kind::Whep, ParticipantId(id), headers).await
}

async fn delete(
    app: AppState,
    kind: Kind,
    id: ParticipantId,
    headers: HeaderMap,
) -> Result<StatusCode, Refusal> {
    authorize(&app, kind, &id, &headers)?;
    end(&app, &id).await;
    tracing::info!(participant = %id, ?kind, "WHIP/WHEP session deleted");
    Ok(StatusCode::OK)
}

/// `OPTIONS` on the endpoints and sessions: what they accept (CORS
/// preflights get their answer from the CORS headers added to every
/// response of these routes).
pub async fn options() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert("accept-post", HeaderValue::from_static(SDP));
    h.insert("accept-patch", HeaderValue::from_static(SDPFRAG));
    r
}

/// Middleware for the WHIP/WHEP routes: let browser clients on other origins
/// call them (they authenticate with a bearer token, not cookies).
pub async fn cors(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut r = next.run(request).await;
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, PATCH, DELETE, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type, if-match"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("location, accept-patch, accept-post, etag, link"),
    );
    r
}
