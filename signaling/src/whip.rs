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
//!   `ETag` gets `412` (RFC 9725 §4.3.1); a restart sends `If-Match: *`.
//! - A `PATCH` whose `a=ice-ufrag`/`a=ice-pwd` are new is an ICE restart
//!   (RFC 9725 §4.3.2): the SFU checks with the new credentials and
//!   answers `200` with a fragment carrying its own (new for a WHEP
//!   session; a WHIP session's stay, see
//!   [`huddle_sfu::endpoint::Endpoint::restart_ice_with`]) and its
//!   candidate, and a new `ETag`. Late candidates naming a ufrag the client
//!   restarted away from are dropped (`204`).
//! - `DELETE /whip/{resource}`, `/whep/{resource}`: end the session (`200`).
//!
//! When TURN is configured, the `201` carries one `Link: <url>;
//! rel="ice-server"` header per TURN URL with the session's short-lived
//! credentials (RFC 9725 §4.4; `crate::turn_credentials`).
//!
//! A session's resource id is random (24 characters of 62, about 143 bits)
//! and is not the participant id the room sees: only the client that created
//! the session learns it. Requests on a session need both its URL and a
//! valid token for the same room and identity as the one that created it, so
//! neither another participant of the room nor another holder of the same
//! identity can end or change it without having been given the URL.
//!
//! A new session is admitted like a WebSocket join (`admission.rs`): this
//! module checks the request's form and the offer's direction, turns a
//! refusal into an HTTP status, and keeps the session table
//! ([`crate::http_sessions`]).
//!
//! The SFU's answer carries its candidate (ICE lite, one host candidate), so
//! no server-side trickle is needed. A session is a participant like any
//! other: the room sees it join and publish, and an administrator can kick
//! or ban it; it ends too when its media connection dies.

use crate::admission::{self, Media, Via, Wants};
use crate::app::AppState;
use crate::auth::{bearer, AuthError, Claims};
use crate::close_code;
use crate::http_sessions::{Kind, Session};
use crate::hub::AddError;
use crate::limits::client_ip;
use crate::offer::media_ways;
use crate::outbound::{Conn, Outbound};
use crate::ratelimit::TokenBucket;
use crate::sdpfrag;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use huddle_sfu::{ParticipantId, SfuError};
use rand::distr::{Alphanumeric, SampleString};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{mpsc, Notify};

/// `Content-Type` of offers and answers.
pub const SDP: &str = "application/sdp";
/// `Content-Type` of trickle `PATCH` bodies.
pub const SDPFRAG: &str = "application/trickle-ice-sdpfrag";

/// Length of a session's resource id, in characters of 62.
pub const RESOURCE_ID_CHARS: usize = 24;

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
        AddError::E2eeMismatch => StatusCode::FORBIDDEN,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, e.message())
}

/// The reply to a client that was not admitted.
fn refused(e: admission::Refused) -> Refusal {
    use admission::Refused as R;
    match e {
        R::Token(e) => auth_error(e),
        R::NoRoom | R::WrongRoom | R::CannotPublish | R::CannotSubscribe => {
            error(StatusCode::FORBIDDEN, e.to_string())
        }
        R::SessionRate => error(StatusCode::TOO_MANY_REQUESTS, e.to_string()),
        R::Limit(e) => limit_refusal(e),
        R::Sfu { error, .. } => sfu_status(&error),
        R::Gone => error(StatusCode::CONFLICT, "the session ended while starting"),
    }
}

fn auth_error(e: AuthError) -> Refusal {
    error(StatusCode::UNAUTHORIZED, e.to_string())
}

fn sfu_status(e: &SfuError) -> Refusal {
    match e {
        SfuError::BadSdp(_) | SfuError::BadCandidate(_) | SfuError::BadIce(_) => {
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
    let wants = Wants {
        room: None,
        publish: kind == Kind::Whip,
        subscribe: kind == Kind::Whep,
    };
    let claims = admission::verify(&app, bearer(&headers), wants).map_err(refused)?;
    if claims.e2ee {
        // A standard WHIP/WHEP client cannot take part in E2EE.
        return Err(limit_refusal(AddError::E2eeMismatch));
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
    let media = match kind {
        Kind::Whip => Media::Publish { offer },
        Kind::Whep => Media::View { offer },
    };
    let resource = random_chars(RESOURCE_ID_CHARS);
    let etag = format!("\"{}\"", random_chars(16));
    // The session is in the table before it goes live, so that a kick
    // right after finds it to forget.
    let record = |id: &ParticipantId, conn: &Conn| {
        app.http_sessions().lock().insert(
            resource.clone(),
            Session {
                kind,
                participant: id.clone(),
                etag: etag.clone(),
                room: claims.room.clone(),
                identity: claims.sub.clone(),
                ice_ufrag,
                retired_ufrags: Vec::new(),
                answer_media: String::new(),
                bucket: TokenBucket::new(app.config().rate_per_sec, app.config().rate_burst),
                candidates: HashSet::new(),
                kick: conn.kick.clone(),
            },
        );
    };
    let admitted = admission::admit(
        &app,
        &claims,
        Via::HttpSession { ip },
        media,
        |id| detached_conn(&app, id.clone()),
        record,
    )
    .await;
    let (id, answer) = match admitted {
        Ok(a) => (a.id, a.answer.unwrap_or_default()),
        Err(e) => {
            if matches!(e, admission::Refused::Gone) {
                app.http_sessions().lock().remove(&resource);
            }
            return Err(refused(e));
        }
    };
    if let Some(s) = app.http_sessions().lock().sessions.get_mut(&resource) {
        s.answer_media = sdpfrag::answer_media(&answer);
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
    for link in ice_server_links(&admission::ice_servers_for(&app, &id)) {
        h.append(header::LINK, link);
    }
    Ok(r)
}

/// `Link` header values naming the session's STUN/TURN servers (RFC 9725
/// §4.4): `<url>; rel="ice-server"`, with the TURN username and credential
/// when there are. A value that would not be a valid header is left out.
fn ice_server_links(servers: &[huddle_proto::IceServerInfo]) -> Vec<HeaderValue> {
    let quoted = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"");
    let mut links = Vec::new();
    for server in servers {
        for url in &server.urls {
            let mut link = format!("<{url}>; rel=\"ice-server\"");
            if let (Some(user), Some(credential)) = (&server.username, &server.credential) {
                link.push_str(&format!(
                    "; username=\"{}\"; credential=\"{}\"; credential-type=\"password\"",
                    quoted(user),
                    quoted(credential)
                ));
            }
            if let Ok(v) = HeaderValue::from_str(&link) {
                links.push(v);
            }
        }
    }
    links
}

/// `n` random characters of `[A-Za-z0-9]` from the thread's CSPRNG.
fn random_chars(n: usize) -> String {
    Alphanumeric.sample_string(&mut rand::rng(), n)
}

/// End a session (`DELETE`): take its participant out of the room, the
/// session table and the SFU.
async fn end(app: &AppState, id: &ParticipantId) {
    let removed = app.hub().remove(id);
    app.http_sessions().lock().remove_participant(id, |_| false);
    if let Err(e) = app.sfu().remove_participant(id.clone()).await {
        tracing::debug!(error = %e, participant = %id, "SFU remove");
    }
    if let Some(removed) = removed {
        removed.conn.close(close_code::NORMAL, "ended");
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
    let what = {
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
        match frag.ice_ufrag.as_ref() {
            Some(new) if s.retired_ufrags.contains(new) => Patch::Stale,
            Some(new) if Some(new) != s.ice_ufrag.as_ref() => Patch::Restart,
            _ => Patch::Trickle,
        }
    };
    let mut reply = None;
    match what {
        // Late candidates of an ICE generation the client restarted away
        // from (RFC 8838 §4.4: of no use): accepted and dropped.
        Patch::Stale => return Ok(with_etag(StatusCode::NO_CONTENT.into_response(), &etag)),
        Patch::Restart => reply = Some(restart(&app, kind, resource, &id, &frag).await?),
        Patch::Trickle => {}
    }
    let fresh: Vec<_> = {
        let mut table = app.http_sessions().lock();
        let Some(s) = table.sessions.get_mut(resource) else {
            return Err(error(StatusCode::NOT_FOUND, "no such session"));
        };
        frag.candidates
            .into_iter()
            .filter(|c| s.candidates.insert(c.candidate.clone()))
            .collect()
    };
    for candidate in fresh {
        app.sfu()
            .remote_candidate(id.clone(), kind.pc(), candidate)
            .await
            .map_err(|e| sfu_status(&e))?;
    }
    Ok(match reply {
        Some((body, etag)) => {
            let mut r = (StatusCode::OK, body).into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(SDPFRAG));
            with_etag(r, &etag)
        }
        None => with_etag(StatusCode::NO_CONTENT.into_response(), &etag),
    })
}

/// What a `PATCH` asks.
enum Patch {
    /// More candidates of the current ICE generation.
    Trickle,
    /// An ICE restart: new client credentials.
    Restart,
    /// Candidates of an ICE generation the client restarted away from.
    Stale,
}

/// `r` with the `ETag` header `etag`.
fn with_etag(mut r: Response, etag: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(etag) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

/// Restart the session's ICE with the fragment's credentials (RFC 9725
/// §4.3.2); returns the reply's body and the session's new entity tag. A
/// restart the SFU refuses leaves the session as it was.
async fn restart(
    app: &AppState,
    kind: Kind,
    resource: &str,
    id: &ParticipantId,
    frag: &sdpfrag::SdpFrag,
) -> Result<(String, String), Refusal> {
    let (Some(ufrag), Some(pwd)) = (frag.ice_ufrag.clone(), frag.ice_pwd.clone()) else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "an ICE restart needs both a=ice-ufrag and a=ice-pwd",
        ));
    };
    let local = app
        .sfu()
        .restart_ice_with(id.clone(), kind.pc(), ufrag.clone(), pwd)
        .await
        .map_err(|e| sfu_status(&e))?;
    let etag = format!("\"{}\"", random_chars(16));
    let mut table = app.http_sessions().lock();
    let Some(s) = table.sessions.get_mut(resource) else {
        return Err(error(StatusCode::NOT_FOUND, "no such session"));
    };
    s.restarted(ufrag, etag.clone());
    tracing::info!(participant = %id, ?kind, "WHIP/WHEP session restarted ICE");
    let body = sdpfrag::restart_reply(&local.ufrag, &local.pwd, &s.answer_media);
    Ok((body, etag))
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
