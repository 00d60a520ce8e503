//! WHIP (RFC 9725) ingest and WHEP egress over HTTP.
//!
//! - `POST /whip` with an SDP offer (`application/sdp`) that sends media and
//!   `Authorization: Bearer <token>` (a token with `publish`): the client
//!   becomes a publish-only participant of the token's room; `201 Created`
//!   with the answer, `Location: /whip/{resource}` and an `ETag`.
//! - `POST /whep` likewise with an offer that receives media and a token with
//!   `subscribe`: a viewer of the room (see [`huddle_sfu::Sfu::add_viewer`]);
//!   `Location: /whep/{resource}`.
//! - `PATCH /whip/{resource}`, `/whep/{resource}` with
//!   `application/trickle-ice-sdpfrag`: trickled client candidates (`204`,
//!   with the `ETag`). An `If-Match` that does not match the session's
//!   `ETag` gets `412` (RFC 9725 §4.3.1). ICE restarts are not supported
//!   (`422`), as RFC 9725 §4.3.1 asks of a session that trickles only.
//! - `DELETE /whip/{resource}`, `/whep/{resource}`: end the session (`200`).
//!
//! A session's resource id is random (24 characters of 62, about 143 bits)
//! and is not the participant id the room sees: only the client that created
//! the session learns it. Requests on a session need both its URL and a
//! valid token for the same room and identity as the one that created it, so
//! neither another participant of the room nor another holder of the same
//! identity can end or change it without having been given the URL.
//!
//! The SFU's answer carries its candidate (ICE lite, one host candidate), so
//! no server-side trickle is needed. A session is a participant like any
//! other: the room sees it join and publish, and an administrator can kick
//! or ban it; it ends too when its media connection dies.

use crate::app::AppState;
use crate::auth::{AuthError, Claims};
use crate::limits::client_ip;
use crate::offer::media_ways;
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
use huddle_sfu::Rights;
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

/// Length of a session's resource id, in characters of 62.
pub const RESOURCE_ID_CHARS: usize = 24;

struct Session {
    kind: Kind,
    /// The participant the session is in the room and the SFU.
    participant: ParticipantId,
    room: String,
    identity: String,
    /// The session's entity tag (quoted), for `ETag` and `If-Match`. Fixed
    /// for the session's life: it names its ICE session, which never
    /// restarts.
    etag: String,
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

#[derive(Default)]
struct Table {
    /// Sessions by resource id.
    sessions: HashMap<String, Session>,
    /// Resource id by participant.
    resources: HashMap<ParticipantId, String>,
}

impl Table {
    fn insert(&mut self, resource: String, session: Session) {
        self.resources
            .insert(session.participant.clone(), resource.clone());
        self.sessions.insert(resource, session);
    }

    /// Forget the session of `participant`, if `keep` does not object.
    fn remove_participant(
        &mut self,
        participant: &ParticipantId,
        keep: impl Fn(&Session) -> bool,
    ) -> bool {
        let Some(resource) = self.resources.get(participant) else {
            return false;
        };
        if self.sessions.get(resource).is_some_and(keep) {
            return false;
        }
        if let Some(resource) = self.resources.remove(participant) {
            self.sessions.remove(&resource);
        }
        true
    }
}

/// The open WHIP/WHEP sessions, by resource id.
#[derive(Default)]
pub struct Sessions {
    inner: Mutex<Table>,
}

impl Sessions {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Open sessions.
    pub fn len(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.lock().sessions.is_empty()
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
    let token = bearer(headers).ok_or_else(|| auth_error(AuthError::Missing))?;
    app.verify_token(token).map_err(auth_error)
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
        let removed = app
            .http_sessions()
            .lock()
            .remove_participant(&id, |s| !Arc::ptr_eq(&s.kick, &kick));
        if removed {
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
    let ways = media_ways(&offer);
    match kind {
        Kind::Whip if !ways.sends => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "a WHIP offer must send audio or video (sendonly or sendrecv)",
            ))
        }
        Kind::Whep if !ways.receives => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "a WHEP offer must receive audio or video (recvonly or sendrecv)",
            ))
        }
        _ => {}
    }
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
    hub.set_token_id(&id, claims.jti.clone());
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
    let resource = random_chars(RESOURCE_ID_CHARS);
    let etag = format!("\"{}\"", random_chars(16));
    app.http_sessions().lock().insert(
        resource.clone(),
        Session {
            kind,
            participant: id.clone(),
            etag: etag.clone(),
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
    let location = format!("{}/{}", kind.path(), resource);
    let mut r = (StatusCode::CREATED, answer).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(SDP));
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    h.insert("accept-patch", HeaderValue::from_static(SDPFRAG));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    Ok(r)
}

/// `n` random characters of `[A-Za-z0-9]` from the thread's CSPRNG.
fn random_chars(n: usize) -> String {
    Alphanumeric.sample_string(&mut rand::rng(), n)
}

/// Take a participant out of the room, the SFU and the session table.
async fn end(app: &AppState, id: &ParticipantId) {
    let removed = app.hub().remove(id);
    app.http_sessions().lock().remove_participant(id, |_| false);
    if let Err(e) = app.sfu().remove_participant(id.clone()).await {
        tracing::debug!(error = %e, participant = %id, "SFU remove");
    }
    if let Some(removed) = removed {
        removed.conn.close(crate::ws::close_code::NORMAL, "ended");
    }
}

/// A session a request may act on.
struct Owned {
    participant: ParticipantId,
    etag: String,
}

/// Check the session `resource` exists under `kind` and the token is for
/// its room and identity.
fn authorize(
    app: &AppState,
    kind: Kind,
    resource: &str,
    headers: &HeaderMap,
) -> Result<Owned, Refusal> {
    let claims = verify(app, headers)?;
    let table = app.http_sessions().lock();
    let s = table
        .sessions
        .get(resource)
        .filter(|s| s.kind == kind)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "no such session"))?;
    if s.room != claims.room || s.identity != claims.sub {
        return Err(error(
            StatusCode::FORBIDDEN,
            "token is not the session owner's",
        ));
    }
    Ok(Owned {
        participant: s.participant.clone(),
        etag: s.etag.clone(),
    })
}

/// Whether the request's `If-Match` (RFC 9110 §13.1.1), if any, matches
/// `etag`: `*`, or a listed strong tag equal to it.
fn if_match(headers: &HeaderMap, etag: &str) -> bool {
    let mut values = headers.get_all(header::IF_MATCH).iter().peekable();
    if values.peek().is_none() {
        return true;
    }
    values
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag == etag)
}

/// `PATCH /whip/{resource}`: trickle ICE.
pub async fn whip_patch(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    patch(app, Kind::Whip, &id, headers, body).await
}

/// `PATCH /whep/{resource}`: trickle ICE.
pub async fn whep_patch(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    patch(app, Kind::Whep, &id, headers, body).await
}

async fn patch(
    app: AppState,
    kind: Kind,
    resource: &str,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Refusal> {
    let Owned {
        participant: id,
        etag,
    } = authorize(&app, kind, resource, &headers)?;
    if !if_match(&headers, &etag) {
        return Err(error(
            StatusCode::PRECONDITION_FAILED,
            "If-Match does not match the session's ETag",
        ));
    }
    if !content_type_is(&headers, SDPFRAG) {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send candidates as application/trickle-ice-sdpfrag",
        ));
    }
    let frag = sdpfrag::parse(body_text(&body)?)
        .map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))?;
    let fresh = {
        let mut table = app.http_sessions().lock();
        let Some(s) = table.sessions.get_mut(resource) else {
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
    let mut r = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    Ok(r)
}

/// `DELETE /whip/{resource}`: stop publishing.
pub async fn whip_delete(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, Refusal> {
    delete(app, Kind::Whip, &id, headers).await
}

/// `DELETE /whep/{resource}`: stop watching.
pub async fn whep_delete(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, Refusal> {
    delete(app, Kind::Whep, &id, headers).await
}

async fn delete(
    app: AppState,
    kind: Kind,
    resource: &str,
    headers: HeaderMap,
) -> Result<StatusCode, Refusal> {
    let Owned {
        participant: id, ..
    } = authorize(&app, kind, resource, &headers)?;
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
