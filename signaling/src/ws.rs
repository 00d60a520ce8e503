//! The WebSocket endpoint: one connection per participant.
//!
//! A connection has a reader (this task: frames in, SFU calls, replies) and a
//! writer task draining a bounded queue toward the socket, so replies, SFU
//! events and room broadcasts leave in the order they were queued and a slow
//! SFU call never stalls delivery of events.

use crate::app::AppState;
use crate::ratelimit::TokenBucket;
use crate::state::{Conn, Outbound};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use huddle_proto::{
    decode_client_message, ClientMessage, ErrorCode, ServerMessage, MAX_MESSAGE_BYTES,
};
use huddle_sfu::api::Rights;
use huddle_sfu::{ParticipantId, RoomId, SfuError};
use rand::distr::{Alphanumeric, SampleString};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};

/// WebSocket close codes the server uses.
pub mod close_code {
    /// After `leave`.
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// The join was refused or did not come in time.
    pub const POLICY: u16 = 1008;
    /// The server failed.
    pub const INTERNAL: u16 = 1011;
    /// An administrator removed the participant.
    pub const KICKED: u16 = 4001;
    /// The SFU dropped the participant's media connections.
    pub const MEDIA_GONE: u16 = 4002;
}

/// Frames (and messages) larger than this are refused by the WebSocket layer
/// itself, which drops the connection. Between [`MAX_MESSAGE_BYTES`] and this,
/// the client gets a `message_too_large` error and the connection stays open.
pub const WS_FRAME_LIMIT: usize = 2 * MAX_MESSAGE_BYTES;

/// Query of `GET /ws`.
#[derive(Debug, serde::Deserialize)]
pub struct WsQuery {
    /// Room the client means to join; must match the token's if given.
    pub room: Option<String>,
}

/// `GET /ws[?room=ROOM]`: upgrade to a signaling WebSocket.
pub async fn handler(
    State(app): State<AppState>,
    Query(query): Query<WsQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    ws.max_message_size(WS_FRAME_LIMIT)
        .max_frame_size(WS_FRAME_LIMIT)
        .on_upgrade(move |socket| run(app, socket, query.room))
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
    conn: Conn,
    want_room: Option<String>,
    joined: Option<Joined>,
    bucket: TokenBucket,
}

async fn run(app: AppState, socket: WebSocket, want_room: Option<String>) {
    let _guard = app.connection_guard();
    let (sink, mut stream) = socket.split();
    let (tx, rx) = mpsc::channel(app.config().outbound_queue.max(8));
    let mut writer = tokio::spawn(write_loop(sink, rx));
    let kick = Arc::new(Notify::new());
    let mut shutdown = app.shutdown_signal();
    let join_deadline = tokio::time::sleep(app.config().join_timeout);
    tokio::pin!(join_deadline);
    let mut session = Session {
        bucket: TokenBucket::new(app.config().rate_per_sec, app.config().rate_burst),
        app: app.clone(),
        conn: Conn {
            tx: tx.clone(),
            kick: kick.clone(),
        },
        want_room,
        joined: None,
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
                frame = stream.next() => match frame {
                    Some(Ok(frame)) => {
                        if let Flow::Stop = session.on_frame(frame).await {
                            break;
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

async fn write_loop(mut sink: SplitSink<WebSocket, Message>, mut rx: mpsc::Receiver<Outbound>) {
    while let Some(out) = rx.recv().await {
        match out {
            Outbound::Msg(msg) => {
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
            Outbound::Close(code, reason) => {
                let _ = sink
                    .send(Message::Close(Some(CloseFrame {
                        code,
                        reason: reason.into(),
                    })))
                    .await;
                return;
            }
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

    fn error(&self, code: ErrorCode, message: impl Into<String>) {
        self.send(ServerMessage::Error {
            code,
            message: message.into(),
        });
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
        self.close(close_code::POLICY, code.as_str());
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
            Message::Ping(_) | Message::Pong(_) => return Flow::Continue,
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

    fn rate_limited(&mut self) -> bool {
        if self.bucket.try_take() {
            false
        } else {
            self.error(ErrorCode::RateLimited, "too many messages; slow down");
            true
        }
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
                        Ok(sdp) => self.send(ServerMessage::Answer { sdp }),
                        Err(e) => self.sfu_error(&e),
                    }
                }
            }
            ClientMessage::Answer { sdp } => {
                if let Err(e) = sfu.subscriber_answer(id, sdp).await {
                    self.sfu_error(&e);
                }
            }
            ClientMessage::Candidate { pc, candidate } => {
                if let Err(e) = sfu.remote_candidate(id, pc, candidate).await {
                    self.sfu_error(&e);
                }
            }
            ClientMessage::Mute { track_id, muted } => {
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
        let claims = match self.app.verify_token(token) {
            Ok(c) => c,
            Err(e) => return self.refuse(e.code(), &e.to_string()),
        };
        if claims.room.is_empty() {
            return self.refuse(ErrorCode::Forbidden, "token grants no room");
        }
        if self.want_room.as_ref().is_some_and(|r| *r != claims.room) {
            return self.refuse(
                ErrorCode::WrongRoom,
                "token does not grant the room requested",
            );
        }
        let rights = Rights {
            publish: claims.publish,
            subscribe: claims.subscribe,
        };
        let hub = self.app.hub();
        let id = loop {
            let id = ParticipantId(format!(
                "PA_{}",
                Alphanumeric.sample_string(&mut rand::rng(), 12)
            ));
            if hub.add_pending(
                &claims.room,
                id.clone(),
                claims.sub.clone(),
                self.conn.clone(),
            ) {
                break id;
            }
        };
        hub.set_token_id(&id, claims.jti.clone());
        if let Err(e) = self
            .app
            .sfu()
            .add_participant(RoomId(claims.room.clone()), id.clone(), rights)
            .await
        {
            tracing::warn!(error = %e, participant = %id, "SFU refused participant");
            hub.remove(&id);
            self.error(ErrorCode::Internal, "could not join the room");
            self.close(close_code::INTERNAL, "internal error");
            return Flow::Stop;
        }
        let room = claims.room.clone();
        let live = hub.go_live(&id, |participant, others| ServerMessage::Joined {
            room,
            participant,
            others,
            can_publish: rights.publish,
            can_subscribe: rights.subscribe,
        });
        if !live {
            // Removed while the SFU was setting it up (kick or SFU drop).
            let _ = self.app.sfu().remove_participant(id).await;
            return Flow::Stop;
        }
        tracing::info!(participant = %id, identity = %claims.sub, room = %claims.room, "participant joined");
        self.joined = Some(Joined { id, rights });
        Flow::Continue
    }

    /// Take the participant out of the room (telling the others) and out of
    /// the SFU, unless someone else already did.
    async fn cleanup(&mut self) {
        let Some(joined) = self.joined.take() else {
            return;
        };
        if self.app.hub().remove(&joined.id).is_some() {
            if let Err(e) = self.app.sfu().remove_participant(joined.id.clone()).await {
                tracing::debug!(error = %e, participant = %joined.id, "SFU remove failed");
            }
        }
    }
}
