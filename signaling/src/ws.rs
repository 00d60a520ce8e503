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
use crate::limits::client_ip;
use crate::outbound::{Conn, Outbound};
use crate::ratelimit::{LimitNotice, TokenBucket};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use huddle_proto::{
    decode_client_message, ClientMessage, ErrorCode, ServerMessage, MAX_MESSAGE_BYTES,
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

struct Session {
    app: AppState,
    guard: ConnectionGuard,
    conn: Conn,
    want_room: Option<String>,
    joined: Option<Joined>,
    bucket: TokenBucket,
    notice: LimitNotice,
    /// Whether the participant sent an `offer` or answered one.
    negotiated: bool,
}

async fn run(app: AppState, guard: ConnectionGuard, socket: WebSocket, want_room: Option<String>) {
    let (sink, mut stream) = socket.split();
    let (tx, rx) = mpsc::channel(app.config().outbound_queue.max(8));
    let mut writer = tokio::spawn(write_loop(
        sink,
        rx,
        app.config().limits.presence_batch_window,
    ));
    let kick = Arc::new(Notify::new());
    let mut shutdown = app.shutdown_signal();
    let join_deadline = tokio::time::sleep(app.config().join_timeout);
    tokio::pin!(join_deadline);
    // Armed at join for participants that can publish.
    let media_deadline = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(media_deadline);
    let mut media_armed = false;
    let mut session = Session {
        bucket: TokenBucket::new(app.config().rate_per_sec, app.config().rate_burst),
        notice: LimitNotice::new(RATE_LIMIT_NOTICE_WINDOW),
        app: app.clone(),
        guard,
        conn: Conn::new(tx.clone(), kick.clone()),
        want_room,
        joined: None,
        negotiated: false,
    };

    if *shutdown.borrow_and_update() {
        session.close(close_code::GOING_AWAY, "server shutting down");
    } else {
        loop {
            tokio::select! {
                _ = kick.notified() => break,
                _ = shutdown.changed() => {
                    session.close(close_code::GOING_AWAY, "server shutting down");
                    break;
                }
                _ = &mut join_deadline, if session.joined.is_none() => {
                    session.error(ErrorCode::NotJoined, "no join in time");
                    session.close(close_code::POLICY, "join timeout");
                    break;
                }
                _ = &mut media_deadline, if media_armed && !session.negotiated => {
                    tracing::info!(participant = ?session.joined.as_ref().map(|j| &j.id), "no media negotiated in time");
                    session.error(
                        ErrorCode::MediaTimeout,
                        "no offer or answer in time after joining",
                    );
                    session.close(close_code::MEDIA_TIMEOUT, "media timeout");
                    break;
                }
                frame = stream.next() => match frame {
                    Some(Ok(frame)) => {
                        let was_joined = session.joined.is_some();
                        if let Flow::Stop = session.on_frame(frame).await {
                            break;
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
                        break;
                    }
                    None => break,
                },
            }
        }
    }

    session.cleanup().await;
    drop(session);
    // Let the writer flush what is queued (ending with a close frame when one
    // was queued); it stops once every sender is gone.
    let _ = tokio::time::timeout(
        Duration::from_millis(500),
        tx.send(Outbound::Close(close_code::NORMAL, String::new())),
    )
    .await;
    drop(tx);
    if tokio::time::timeout(Duration::from_secs(2), &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Outbound>,
    batch_window: Duration,
) {
    while let Some(out) = rx.recv().await {
        let msg = match out {
            Outbound::Msg(msg) => msg,
            Outbound::Presence(batch) => {
                // Let more joins and leaves gather in the batch.
                tokio::time::sleep_until(Instant::from_std(batch.opened() + batch_window)).await;
                match batch.take() {
                    Some(msg) => msg,
                    None => continue,
                }
            }
            Outbound::Close(code, reason) => {
                let _ = sink
                    .send(Message::Close(Some(CloseFrame {
                        code,
                        reason: reason.into(),
                    })))
                    .await;
                return;
            }
        };
        let text = match serde_json::to_string(&msg) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "could not serialize server message");
                continue;
            }
        };
        if sink.send(Message::Text(text.into())).await.is_err() {
            return;
        }
    }
    let _ = sink.close().await;
}

fn sfu_error_code(e: &SfuError) -> ErrorCode {
    match e {
        SfuError::BadSdp(_) => ErrorCode::BadSdp,
        SfuError::BadCandidate(_) => ErrorCode::BadCandidate,
        SfuError::PublishForbidden => ErrorCode::Forbidden,
        SfuError::NoPendingOffer => ErrorCode::BadMessage,
        SfuError::UnknownTrack(_) => ErrorCode::UnknownTrack,
        _ => ErrorCode::Internal,
    }
}

fn sfu_error_message(e: &SfuError) -> String {
    match e {
        SfuError::BadSdp(_)
        | SfuError::BadCandidate(_)
        | SfuError::PublishForbidden
        | SfuError::UnknownTrack(_) => e.to_string(),
        SfuError::NoPendingOffer => "no subscriber offer is outstanding".into(),
        _ => "the media server failed".into(),
    }
}

impl Session {
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
                ClientMessage::Join { token } => self.join(&token).await,
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
            ClientMessage::Join { .. } => self.error(
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

    async fn join(&mut self, token: &str) -> Flow {
        let wants = Wants {
            room: self.want_room.as_deref(),
            ..Wants::default()
        };
        let claims = match admission::verify(&self.app, Some(token), wants) {
            Ok(c) => c,
            Err(e) => return self.refuse_join(e),
        };
        let rights = Rights {
            publish: claims.publish,
            subscribe: claims.subscribe,
        };
        let conn = self.conn.clone();
        let admitted = admission::admit(
            &self.app,
            &claims,
            Via::WebSocket,
            Media::Negotiated(rights),
            |_| conn.clone(),
            |_, _| {},
        )
        .await;
        let id = match admitted {
            Ok(a) => a.id,
            Err(e) => return self.refuse_join(e),
        };
        tracing::info!(participant = %id, identity = %claims.sub, room = %claims.room, "participant joined");
        self.guard.joined();
        self.joined = Some(Joined { id, rights });
        Flow::Continue
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

    /// Take the participant out of the room (telling the others) and out of
    /// the SFU, unless someone else already did.
    async fn cleanup(&mut self) {
        if let Some(joined) = self.joined.take() {
            admission::remove(&self.app, &joined.id).await;
        }
    }
}
