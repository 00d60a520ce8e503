//! The WebSocket endpoint: one connection per participant.
//!
//! A connection has a reader (this task: frames in, SFU calls, replies) and a
//! writer task draining a bounded queue toward the socket, so replies, SFU
//! events and room broadcasts leave in the order they were queued and a slow
//! SFU call never stalls delivery of events.
//!
//! Before the upgrade the connection is counted against the node's and the
//! client address's limits ([`crate::limits::Limits`]); until it joins it
//! has small buffers and [`crate::SignalingConfig::join_timeout`] to join.
//! A `join` goes through the admission every entry point shares
//! (`admission.rs`); this module turns a refusal into an `error` and a close
//! code.

use crate::admission::{self, Media, Refused, Via, Wants};
use crate::app::AppState;
use crate::close_code;
use crate::connections::{self, ConnectionGuard};
use crate::e2ee::CommitIn;
use crate::hub::AddError;
use crate::limits::client_ip;
use crate::outbound::{Conn, Outbound};
use crate::ratelimit::{LimitNotice, TokenBucket};
use crate::resume::{self, Outlet, Take, Taken};
use crate::ws_writer::{self, Writer};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures_util::StreamExt;
use huddle_proto::{
    decode_client_message, ClientMessage, ErrorCode, ResumeInfo, ServerMessage, MAX_MESSAGE_BYTES,
};
use huddle_sfu::Rights;
use huddle_sfu::{ParticipantId, SfuError};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

/// Frames (and messages) larger than this are refused by the WebSocket layer
/// itself, which drops the connection. Between [`MAX_MESSAGE_BYTES`] and this,
/// the client gets a `message_too_large` error and the connection stays open.
pub const WS_FRAME_LIMIT: usize = 2 * MAX_MESSAGE_BYTES;

/// Bytes the WebSocket layer reads at a time (and allocates up front):
/// small, so that a connection that has not joined costs little.
pub const WS_READ_BUFFER: usize = 4 * 1024;

/// Bytes of outgoing frames the WebSocket layer buffers before writing.
pub const WS_WRITE_BUFFER: usize = 8 * 1024;

/// Most bytes of outgoing frames (messages and automatic pongs) one
/// connection may have waiting for a client that does not read. Past it
/// further pongs are dropped and a message ends the connection. Large enough
/// for a subscriber offer of a full room.
pub const WS_MAX_WRITE_BUFFER: usize = 2 * 1024 * 1024;

/// A client is told it is rate limited at most once per this window.
pub const RATE_LIMIT_NOTICE_WINDOW: Duration = Duration::from_secs(1);

/// Query of `GET /ws`.
#[derive(Debug, serde::Deserialize)]
pub struct WsQuery {
    /// Room the client means to join; must match the token's if given.
    pub room: Option<String>,
}

/// `GET /ws[?room=ROOM]`: upgrade to a signaling WebSocket, unless the
/// server (503) or the client's address (429) has as many WebSockets as
/// allowed.
pub async fn handler(
    State(app): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Query(query): Query<WsQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let ip = client_ip(&app.config().limits, &headers, peer.as_deref());
    let guard = match app.open_connection(ip) {
        Ok(g) => g,
        Err(refused) => return refusal(refused, ip),
    };
    ws.max_message_size(WS_FRAME_LIMIT)
        .max_frame_size(WS_FRAME_LIMIT)
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(WS_WRITE_BUFFER)
        .max_write_buffer_size(WS_MAX_WRITE_BUFFER)
        .on_upgrade(move |socket| run(app, guard, socket, query.room))
}

fn refusal(refused: connections::Refused, ip: Option<std::net::IpAddr>) -> Response {
    static LOG: huddle_proto::throttle::LogThrottle =
        huddle_proto::throttle::LogThrottle::per_second();
    let (status, message) = match refused {
        connections::Refused::ServerFull => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the server has as many connections as it allows; try again later",
        ),
        connections::Refused::TooManyFromIp => (
            StatusCode::TOO_MANY_REQUESTS,
            "too many connections from this address",
        ),
        connections::Refused::TooManyPendingFromIp => (
            StatusCode::TOO_MANY_REQUESTS,
            "too many connections from this address that have not joined",
        ),
    };
    if let Some(suppressed) = LOG.check() {
        tracing::warn!(?ip, ?refused, suppressed, "WebSocket refused");
    }
    let mut r = (status, message).into_response();
    r.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("1"),
    );
    r
}

/// The participant a connection joined as.
struct Joined {
    id: ParticipantId,
    rights: Rights,
}

enum Flow {
    Continue,
    Stop,
}

/// How a connection's loop ended.
enum End {
    /// The participant leaves (it said so, was refused, kicked, timed out,
    /// or the server shuts down).
    Leave,
    /// The socket dropped, or another connection takes the session: keep
    /// the session for resuming if it can be.
    Drop,
}

/// How long a `resume` waits for the session's old connection to let go.
const TAKEOVER_WAIT: Duration = Duration::from_secs(2);

/// How long an ended session stays known, so that a late `resume` is told
/// why it ended (kicked, say) rather than that it never was.
const ENDED_KEPT: Duration = Duration::from_secs(60);

struct Session {
    app: AppState,
    guard: ConnectionGuard,
    conn: Conn,
    writer: Option<Writer>,
    want_room: Option<String>,
    joined: Option<Joined>,
    bucket: TokenBucket,
    notice: LimitNotice,
    /// Whether the participant sent an `offer` or answered one.
    negotiated: bool,
    /// Client text frames received in the session (on every connection of
    /// it), for `resumed`.
    received: u64,
    /// The session's resume token, once joined, when sessions are kept.
    resume_token: Option<String>,
    /// Notified when another connection takes the session.
    takeover: Arc<Notify>,
}

async fn run(app: AppState, guard: ConnectionGuard, socket: WebSocket, want_room: Option<String>) {
    let (sink, mut stream) = socket.split();
    let (tx, rx) = mpsc::channel(app.config().outbound_queue.max(8));
    let writer = Writer::spawn(
        sink,
        Outlet::new(rx),
        Vec::new(),
        app.config().limits.presence_batch_window,
    );
    let mut shutdown = app.shutdown_signal();
    let join_deadline = tokio::time::sleep(app.config().join_timeout);
    tokio::pin!(join_deadline);
    // Armed at join for participants that can publish.
    let media_deadline = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(media_deadline);
    let mut media_armed = false;
    // Armed at join when the server hands out TURN credentials: new ones
    // before those the client has expire.
    let renew_turn = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(renew_turn);
    let renew_every = turn_renewal_period(&app);
    let mut renew_armed = false;
    let mut session = Session {
        bucket: TokenBucket::new(app.config().rate_per_sec, app.config().rate_burst),
        notice: LimitNotice::new(RATE_LIMIT_NOTICE_WINDOW),
        app: app.clone(),
        guard,
        conn: Conn::new(tx, Arc::new(Notify::new())),
        writer: Some(writer),
        want_room,
        joined: None,
        negotiated: false,
        received: 0,
        resume_token: None,
        takeover: Arc::new(Notify::new()),
    };

    let end = if *shutdown.borrow_and_update() {
        session.close(close_code::GOING_AWAY, "server shutting down");
        End::Leave
    } else {
        loop {
            // A resumed session's kicks come through the session's own
            // connection handle, so look it up each time round.
            let kick = session.conn.kick.clone();
            let takeover = session.takeover.clone();
            tokio::select! {
                _ = kick.notified() => break End::Leave,
                _ = takeover.notified(), if session.joined.is_some() => break End::Drop,
                _ = shutdown.changed() => {
                    session.close(close_code::GOING_AWAY, "server shutting down");
                    break End::Leave;
                }
                _ = &mut join_deadline, if session.joined.is_none() => {
                    session.error(ErrorCode::NotJoined, "no join in time");
                    session.close(close_code::POLICY, "join timeout");
                    break End::Leave;
                }
                _ = &mut renew_turn, if renew_armed => {
                    session.renew_ice_servers();
                    if let Some(every) = renew_every {
                        renew_turn.as_mut().reset(Instant::now() + every);
                    }
                }
                _ = &mut media_deadline, if media_armed && !session.negotiated => {
                    tracing::info!(participant = ?session.joined.as_ref().map(|j| &j.id), "no media negotiated in time");
                    session.error(
                        ErrorCode::MediaTimeout,
                        "no offer or answer in time after joining",
                    );
                    session.close(close_code::MEDIA_TIMEOUT, "media timeout");
                    break End::Leave;
                }
                frame = stream.next() => match frame {
                    Some(Ok(frame)) => {
                        let was_joined = session.joined.is_some();
                        if let Flow::Stop = session.on_frame(frame).await {
                            break End::Leave;
                        }
                        if let (false, true, Some(every)) =
                            (was_joined, session.joined.is_some(), renew_every)
                        {
                            renew_turn.as_mut().reset(Instant::now() + every);
                            renew_armed = true;
                        }
                        let timeout = app.config().limits.media_timeout;
                        if !was_joined
                            && session.joined.as_ref().is_some_and(|j| j.rights.publish)
                            && !timeout.is_zero()
                        {
                            media_deadline.as_mut().reset(Instant::now() + timeout);
                            media_armed = true;
                        }
                    }
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "websocket read failed");
                        break End::Drop;
                    }
                    None => break End::Drop,
                },
            }
        }
    };

    match end {
        End::Drop if session.can_park() => session.park().await,
        _ => session.finish().await,
    }
}

/// Wait out a parked session's grace period; end it then unless it was
/// taken back, or sooner if the room removes it (kick, ban, media gone:
/// its queue's kick fires) or the server shuts down.
async fn expire_later(app: AppState, token: String, epoch: u64, conn: Conn) {
    let mut shutdown = app.shutdown_signal();
    let kicked = tokio::select! {
        _ = tokio::time::sleep(app.config().resume_grace) => false,
        _ = conn.kick.notified() => true,
        _ = shutdown.wait_for(|down| *down) => false,
    };
    let ended = app
        .resumable()
        .expire(&token, epoch, |s| closing(&mut s.outlet));
    let Some(session) = ended else {
        if kicked {
            // Taken back meanwhile: the new connection acts on the kick.
            conn.kick.notify_one();
        }
        return;
    };
    if admission::remove(&app, &session.id).await.is_some() {
        tracing::info!(participant = %session.id, "session not resumed in time: left");
    }
    drop(session);
    tokio::time::sleep(ENDED_KEPT).await;
    app.resumable().forget(&token);
}

/// The close code and reason a parked session ended with: the close its
/// queue holds (a kick), or the grace period's.
fn closing(outlet: &mut Outlet) -> (u16, String) {
    while let Ok(out) = outlet.rx.try_recv() {
        if let Outbound::Close(code, reason) = out {
            return (code, reason);
        }
    }
    (
        close_code::RESUME_FAILED,
        "not resumed within the grace period".to_owned(),
    )
}

fn sfu_error_code(e: &SfuError) -> ErrorCode {
    match e {
        SfuError::BadSdp(_) => ErrorCode::BadSdp,
        SfuError::BadCandidate(_) => ErrorCode::BadCandidate,
        SfuError::PublishForbidden => ErrorCode::Forbidden,
        SfuError::NoPendingOffer | SfuError::NoSubscriberConnection => ErrorCode::BadMessage,
        SfuError::UnknownTrack(_) => ErrorCode::UnknownTrack,
        _ => ErrorCode::Internal,
    }
}

fn sfu_error_message(e: &SfuError) -> String {
    match e {
        SfuError::BadSdp(_)
        | SfuError::BadCandidate(_)
        | SfuError::PublishForbidden
        | SfuError::UnknownTrack(_)
        | SfuError::NoSubscriberConnection => e.to_string(),
        SfuError::NoPendingOffer => "no subscriber offer is outstanding".into(),
        _ => "the media server failed".into(),
    }
}

/// How often a joined participant gets new TURN credentials: at three
/// quarters of their lifetime (at least every second); `None` without TURN
/// servers.
fn turn_renewal_period(app: &AppState) -> Option<Duration> {
    let ttl = app.config().turn.as_ref()?.ttl;
    Some((ttl * 3 / 4).max(Duration::from_secs(1)))
}

impl Session {
    /// Send the participant new TURN credentials (`ice_servers`), if the
    /// server hands any out.
    fn renew_ice_servers(&self) {
        let Some(joined) = &self.joined else { return };
        let ice_servers = admission::ice_servers_for(&self.app, &joined.id);
        if !ice_servers.is_empty() {
            self.send(ServerMessage::IceServers { ice_servers });
        }
    }

    fn send(&self, msg: ServerMessage) {
        // A full queue means the client does not read: it gets kicked.
        if self.conn.tx.try_send(Outbound::Msg(msg)).is_err() {
            self.conn.kick.notify_one();
        }
    }

    /// Queue an error reply. Best effort: when the queue is full the reply
    /// is dropped, never taken for a slow reader (errors answer the client's
    /// own messages, which the rate limit bounds already).
    fn error(&self, code: ErrorCode, message: impl Into<String>) {
        let msg = ServerMessage::Error {
            code,
            message: message.into(),
        };
        if self.conn.tx.try_send(Outbound::Msg(msg)).is_err() {
            tracing::debug!(%code, "error reply dropped: outbound queue full");
        }
    }

    fn close(&self, code: u16, reason: &str) {
        let _ = self
            .conn
            .tx
            .try_send(Outbound::Close(code, reason.to_owned()));
    }

    fn refuse(&self, code: ErrorCode, message: &str) -> Flow {
        tracing::debug!(%code, "join refused");
        self.error(code, message);
        let close = match code {
            ErrorCode::RoomFull | ErrorCode::ServerFull => close_code::TRY_AGAIN_LATER,
            _ => close_code::POLICY,
        };
        self.close(close, code.as_str());
        Flow::Stop
    }

    async fn on_frame(&mut self, frame: Message) -> Flow {
        let text = match frame {
            Message::Text(t) => t,
            Message::Binary(_) => {
                if self.rate_limited() {
                    return Flow::Continue;
                }
                self.error(
                    ErrorCode::BadMessage,
                    "binary frames are not accepted; send JSON text frames",
                );
                return Flow::Continue;
            }
            Message::Close(_) => return Flow::Stop,
            Message::Ping(_) | Message::Pong(_) => {
                // The WebSocket layer answers pings by itself, so a ping
                // over the rate cannot just be dropped: a client flooding
                // control frames is closed.
                if self.bucket.try_take() {
                    return Flow::Continue;
                }
                tracing::debug!("control frame flood, closing");
                self.error(ErrorCode::RateLimited, "too many ping/pong frames");
                self.close(close_code::POLICY, "rate_limited");
                return Flow::Stop;
            }
        };
        self.received += 1;
        if self.rate_limited() {
            return Flow::Continue;
        }
        match decode_client_message(text.as_str()) {
            Ok(msg) => self.on_message(msg).await,
            Err(e) => {
                self.error(e.code, e.message);
                Flow::Continue
            }
        }
    }

    /// Take a token for a message; without one the message is dropped and
    /// the client told so, at most once per [`RATE_LIMIT_NOTICE_WINDOW`].
    fn rate_limited(&mut self) -> bool {
        if self.bucket.try_take() {
            return false;
        }
        if let Some(dropped) = self.notice.refused() {
            self.error(
                ErrorCode::RateLimited,
                format!(
                    "too many messages; slow down ({dropped} dropped; more are dropped \
                     without notice for the next second)"
                ),
            );
        }
        true
    }

    async fn on_message(&mut self, msg: ClientMessage) -> Flow {
        let Some(joined) = &self.joined else {
            return match msg {
                ClientMessage::Join { token, e2ee } => self.join(&token, e2ee).await,
                ClientMessage::Resume { token, received } => self.resume(&token, received).await,
                ClientMessage::Ping => {
                    self.send(ServerMessage::Pong);
                    Flow::Continue
                }
                ClientMessage::Leave => {
                    self.close(close_code::NORMAL, "left");
                    Flow::Stop
                }
                _ => {
                    self.error(ErrorCode::NotJoined, "send join first");
                    Flow::Continue
                }
            };
        };
        let id = joined.id.clone();
        let rights = joined.rights;
        let sfu = self.app.sfu();
        match msg {
            ClientMessage::Join { .. } | ClientMessage::Resume { .. } => self.error(
                ErrorCode::AlreadyJoined,
                "already joined on this connection",
            ),
            ClientMessage::Offer { sdp } => {
                if !rights.publish {
                    self.error(ErrorCode::Forbidden, "token does not allow publishing");
                } else {
                    match sfu.publisher_offer(id, sdp).await {
                        Ok(sdp) => {
                            self.negotiated = true;
                            self.send(ServerMessage::Answer { sdp });
                        }
                        Err(e) => self.sfu_error(&e),
                    }
                }
            }
            ClientMessage::Answer { sdp } => match sfu.subscriber_answer(id, sdp).await {
                Ok(()) => self.negotiated = true,
                Err(e) => self.sfu_error(&e),
            },
            ClientMessage::RestartIce => {
                if let Err(e) = sfu.restart_subscriber_ice(id).await {
                    self.sfu_error(&e);
                }
            }
            ClientMessage::Candidate { pc, candidate } => {
                if let Err(e) = sfu.remote_candidate(id, pc, candidate).await {
                    self.sfu_error(&e);
                }
            }
            ClientMessage::Mute { track_id, muted } => {
                // The hub owns the mute state clients see; the SFU only
                // stops or resumes forwarding. It is switched first, so the
                // room is never told of a mute that is not in effect.
                if !self.app.hub().owns_track(&id, &track_id) {
                    self.error(ErrorCode::UnknownTrack, "no such track of yours");
                } else {
                    match sfu.set_muted(id.clone(), track_id.clone(), muted).await {
                        Ok(()) => {
                            self.app.hub().set_muted(&id, &track_id, muted);
                        }
                        Err(e) => self.sfu_error(&e),
                    }
                }
            }
            ClientMessage::TrackSettings {
                track_id,
                visible,
                width,
                height,
            } => {
                let view = huddle_sfu::TrackView {
                    visible,
                    width,
                    height,
                };
                if let Err(e) = sfu.set_track_view(id, track_id, view).await {
                    self.sfu_error(&e);
                }
            }
            ClientMessage::E2eeKeyPackage { key_package } => {
                if let Err(e) = self.app.hub().e2ee_key_package(&id, key_package) {
                    self.error(ErrorCode::E2eeRefused, e.message());
                }
            }
            ClientMessage::E2eeCommit {
                epoch,
                commit,
                welcome,
                added,
                removed,
            } => {
                let commit = CommitIn {
                    epoch,
                    commit,
                    welcome,
                    added,
                    removed,
                };
                if let Err(e) = self.app.hub().e2ee_commit(&id, commit) {
                    self.error(ErrorCode::E2eeRefused, e.message());
                }
            }
            ClientMessage::Ping => self.send(ServerMessage::Pong),
            ClientMessage::Leave => {
                tracing::info!(participant = %id, "participant left");
                self.close(close_code::NORMAL, "left");
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    fn sfu_error(&self, e: &SfuError) {
        let code = sfu_error_code(e);
        if code == ErrorCode::Internal {
            tracing::warn!(error = %e, "SFU call failed");
        }
        self.error(code, sfu_error_message(e));
    }

    async fn join(&mut self, token: &str, e2ee: bool) -> Flow {
        let wants = Wants {
            room: self.want_room.as_deref(),
            ..Wants::default()
        };
        let claims = match admission::verify(&self.app, Some(token), wants) {
            Ok(c) => c,
            Err(e) => return self.refuse_join(e),
        };
        if claims.e2ee && !e2ee {
            return self.refuse_join(Refused::Limit(AddError::E2eeMismatch));
        }
        let rights = Rights {
            publish: claims.publish,
            subscribe: claims.subscribe,
        };
        let conn = self.conn.clone();
        let grace = self.app.config().resume_grace;
        let resume = (!grace.is_zero()).then(|| ResumeInfo {
            token: resume::new_token(),
            grace_ms: u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
        });
        let token = resume.as_ref().map(|r| r.token.clone());
        if let Some(token) = &token {
            // Before anyone can see the token (in `joined`).
            self.app.resumable().attach(token, self.takeover.clone());
        }
        let admitted = admission::admit(
            &self.app,
            &claims,
            Via::WebSocket(resume),
            Media::Negotiated(rights),
            |_| conn.clone(),
            |_, _| {},
        )
        .await;
        let id = match admitted {
            Ok(a) => a.id,
            Err(e) => {
                if let Some(token) = &token {
                    self.app.resumable().forget(token);
                }
                return self.refuse_join(e);
            }
        };
        tracing::info!(participant = %id, identity = %claims.sub, room = %claims.room, "participant joined");
        self.guard.joined();
        self.joined = Some(Joined { id, rights });
        self.resume_token = token;
        Flow::Continue
    }

    /// Take back a session whose connection dropped (`resume`): wait for
    /// its old connection to let go if it has not noticed yet, move the
    /// session's queue to this connection's socket behind `resumed` and
    /// what the client missed.
    async fn resume(&mut self, token: &str, received: u64) -> Flow {
        let waited_until = Instant::now() + TAKEOVER_WAIT;
        let taken = loop {
            match self.app.resumable().take(token) {
                Take::Parked(taken) => break *taken,
                Take::Attached(takeover) if Instant::now() < waited_until => {
                    takeover.notify_one();
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Take::Attached(_) => {
                    return self.resume_failed(
                        close_code::RESUME_FAILED,
                        "the session's connection did not let go",
                    )
                }
                Take::Ended(code, reason) => {
                    let why = format!("the session has ended: {reason}");
                    return self.resume_failed(code, &why);
                }
                Take::Unknown => {
                    return self.resume_failed(
                        close_code::RESUME_FAILED,
                        "no such session: unknown token, or not resumed in time",
                    )
                }
            }
        };
        let Some(missed) = taken.outlet.replay.after(received) else {
            // The client cannot be made whole: end the session so that it
            // joins again from a clean state.
            tracing::info!(participant = %taken.id, received, "resume refused: missed messages no longer held");
            self.app.resumable().forget(token);
            admission::remove(&self.app, &taken.id).await;
            return self.resume_failed(
                close_code::RESUME_FAILED,
                "the messages this client missed are no longer held",
            );
        };
        let resumed = ServerMessage::Resumed {
            participant_id: taken.id.0.clone(),
            received: taken.received,
        };
        let stopped = match self.writer.take() {
            Some(writer) => writer.stop().await,
            None => None,
        };
        let (Some((sink, _fresh)), Some(first)) = (stopped, ws_writer::encode(&resumed)) else {
            // Cannot happen short of a panic in the writer; the session
            // stays parked for another try.
            tracing::error!(participant = %taken.id, "resume: this connection's writer is gone");
            let conn = taken.conn.clone();
            let epoch = self.app.resumable().park(token, taken);
            tokio::spawn(expire_later(
                self.app.clone(),
                token.to_owned(),
                epoch,
                conn,
            ));
            return Flow::Stop;
        };
        let mut frames = vec![first];
        let replayed = missed.len();
        frames.extend(missed);
        self.writer = Some(Writer::spawn(
            sink,
            taken.outlet,
            frames,
            self.app.config().limits.presence_batch_window,
        ));
        tracing::info!(participant = %taken.id, replayed, "session resumed");
        self.app.resumable().attach(token, self.takeover.clone());
        self.conn = taken.conn;
        self.received = taken.received;
        self.negotiated = taken.negotiated;
        self.joined = Some(Joined {
            id: taken.id,
            rights: taken.rights,
        });
        self.resume_token = Some(token.to_owned());
        self.guard.joined();
        // Those it had may have expired while it was away.
        self.renew_ice_servers();
        Flow::Continue
    }

    /// Tell the client its `resume` failed and close with `code`.
    fn resume_failed(&self, code: u16, message: &str) -> Flow {
        tracing::debug!(message, "resume failed");
        self.error(ErrorCode::ResumeFailed, message);
        self.close(code, ErrorCode::ResumeFailed.as_str());
        Flow::Stop
    }

    /// Tell the client why it was not admitted and close.
    fn refuse_join(&self, refused: Refused) -> Flow {
        match refused {
            Refused::Sfu { participant, error } => {
                tracing::warn!(%error, %participant, "SFU refused participant");
                self.error(ErrorCode::Internal, "could not join the room");
                self.close(close_code::INTERNAL, "internal error");
                Flow::Stop
            }
            // Removed (kicked, banned, media gone) while joining: whoever
            // removed it closes the connection.
            Refused::Gone => Flow::Stop,
            other => self.refuse(other.code(), &other.to_string()),
        }
    }

    /// Whether the session can be kept for resuming now that its socket
    /// dropped.
    fn can_park(&self) -> bool {
        self.joined.is_some()
            && self.resume_token.is_some()
            && !*self.app.shutdown_signal().borrow()
    }

    /// Keep the session, without its socket, for a `resume` within the
    /// grace period.
    async fn park(mut self) {
        let (Some(token), Some(joined)) = (self.resume_token.take(), self.joined.take()) else {
            return self.finish().await;
        };
        let Some((sink, outlet)) = (match self.writer.take() {
            Some(writer) => writer.stop().await,
            None => None,
        }) else {
            self.joined = Some(joined);
            self.resume_token = Some(token);
            return self.finish().await;
        };
        drop(sink);
        tracing::info!(participant = %joined.id, "connection dropped: session kept for resuming");
        let conn = self.conn.clone();
        let epoch = self.app.resumable().park(
            &token,
            Taken {
                id: joined.id,
                rights: joined.rights,
                conn: conn.clone(),
                outlet,
                received: self.received,
                negotiated: self.negotiated,
            },
        );
        tokio::spawn(expire_later(self.app.clone(), token, epoch, conn));
    }

    /// End the session: take the participant out of the room (telling the
    /// others) and out of the SFU, unless someone else already did; let the
    /// writer flush what is queued, ending with a close frame.
    async fn finish(mut self) {
        if let Some(token) = self.resume_token.take() {
            self.app.resumable().forget(&token);
        }
        if let Some(joined) = self.joined.take() {
            admission::remove(&self.app, &joined.id).await;
        }
        let _ = tokio::time::timeout(
            Duration::from_millis(500),
            self.conn
                .tx
                .send(Outbound::Close(close_code::NORMAL, String::new())),
        )
        .await;
        if let Some(writer) = self.writer.take() {
            drop(self);
            writer.finish(Duration::from_secs(2)).await;
        }
    }
}
