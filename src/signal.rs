//! The WebSocket to the signaling service, kept up for the call: one task
//! owns the socket, writes what the outbox queues and hands what the
//! server sends to a channel of [`Inbound`]s.
//!
//! When the socket drops without a close (a network change, a proxy timing
//! out, or nothing heard for [`SILENCE_LIMIT`]), the task reconnects with
//! backoff and resumes the session with the token from `joined` (see
//! `docs/signaling.md`, "Resuming a session"): same participant, same
//! tracks, nobody else notices. Each side counts the messages it received
//! and the other sends again what came after, so nothing is lost in either
//! direction.
//!
//! When the session cannot be resumed (the server restarted and forgot it,
//! or its grace period is over) or the server closes the socket because it
//! is going away (1001) or lost this participant's media (4002: its network
//! changed or failed), the task joins again with the access token, with backoff,
//! for up to [`REJOIN_FOR`]: the call sees a new `joined` and sets itself
//! up again (see `call.rs`). Any other close from the server (a kick, a
//! refused join) ends the channel, as does a refused rejoin.

use crate::error::CallError;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use huddle_proto::{ClientMessage, ErrorCode, ResumeInfo, ServerMessage};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::{debug, info, warn};

/// Sending half: cheap to clone, messages are written in order.
pub(crate) type Outbox = mpsc::UnboundedSender<ClientMessage>;

/// Tells the link the local network changed (a new address): its
/// connection may be dead without knowing it (its address is gone), so it
/// resumes on a new one now instead of after [`SILENCE_LIMIT`]. Each send
/// of a new value is one change.
pub(crate) type NetworkChanged = tokio::sync::watch::Sender<u64>;

/// What the signaling link hands on.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A message from the server (boxed: `joined` is large, and most of
    /// what passes here is small).
    Msg(Box<ServerMessage>),
    /// The connection dropped; the session is being resumed.
    Reconnecting,
    /// The session was resumed on a new connection.
    Resumed,
    /// The session was lost; joining again (a `joined` follows if that
    /// works).
    Rejoining,
}

/// A `ping` goes out this often, so a dead connection is noticed.
pub(crate) const PING_EVERY: Duration = Duration::from_secs(5);

/// A connection that brought nothing (not even a `pong`) for this long is
/// taken for dead.
pub(crate) const SILENCE_LIMIT: Duration = Duration::from_secs(15);

/// Messages kept for sending again after a resume.
const RESEND_KEPT: usize = 256;

/// How long the task tries to join again after the session was lost.
pub(crate) const REJOIN_FOR: Duration = Duration::from_secs(60);

/// Close code of a server going away (shutting down or restarting).
const GOING_AWAY: u16 = 1001;

/// Close code of a participant an administrator removed.
const KICKED: u16 = 4001;

/// Close code of a participant whose media connections the SFU dropped
/// (they failed or timed out: the network changed or went away).
const MEDIA_GONE: u16 = 4002;

/// Joining again after the media was given up this many times within
/// [`MEDIA_GONE_WINDOW`] ends the call instead: media that never gets
/// through (UDP blocked) would otherwise have the call leave and join the
/// room forever.
const MEDIA_GONE_LIMIT: usize = 3;
const MEDIA_GONE_WINDOW: Duration = Duration::from_secs(180);

/// One attempt to connect or resume may take this long.
const ATTEMPT_LIMIT: Duration = Duration::from_secs(5);

/// First wait between attempts to resume; it doubles up to
/// [`BACKOFF_MAX`].
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Open the WebSocket; returns the outbox and the channel of what the
/// server sends, which closes when the session ends.
pub(crate) async fn connect(
    url: &str,
    token: &str,
) -> Result<(Outbox, mpsc::UnboundedReceiver<Inbound>, NetworkChanged), CallError> {
    let socket = open(url).await?;
    let (out_tx, out_rx) = mpsc::unbounded_channel::<ClientMessage>();
    let (in_tx, in_rx) = mpsc::unbounded_channel::<Inbound>();
    let (network_tx, network_rx) = tokio::sync::watch::channel(0);
    let link = Link {
        url: url.to_owned(),
        token: token.to_owned(),
        outbox: out_rx,
        inbound: in_tx,
        received: 0,
        sent: Sent::default(),
        resume: None,
        media_gone: Strikes::new(MEDIA_GONE_LIMIT, MEDIA_GONE_WINDOW),
        network: network_rx,
    };
    tokio::spawn(link.run(socket));
    Ok((out_tx, in_rx, network_tx))
}

async fn open(url: &str) -> Result<Socket, CallError> {
    use tokio_tungstenite::tungstenite::Error as WsError;
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| match e {
            WsError::Http(response) => CallError::Signaling(format!(
                "{url} answered HTTP {} instead of a WebSocket: is this a huddle \
                 server's address (its signaling WebSocket is at /ws)?",
                response.status()
            )),
            other => CallError::Signaling(format!("{url}: {other}")),
        })?;
    Ok(ws)
}

/// The client messages written in the session, counted, the last kept.
#[derive(Debug, Default)]
struct Sent {
    count: u64,
    kept: VecDeque<String>,
}

impl Sent {
    fn record(&mut self, text: &str) {
        self.count += 1;
        self.kept.push_back(text.to_owned());
        if self.kept.len() > RESEND_KEPT {
            self.kept.pop_front();
        }
    }

    /// What the server missed when it received the first `received`.
    fn after(&self, received: u64) -> impl Iterator<Item = &String> {
        let missed = usize::try_from(self.count.saturating_sub(received)).unwrap_or(usize::MAX);
        if missed > self.kept.len() {
            warn!(
                missed,
                kept = self.kept.len(),
                "the server missed more messages than are kept"
            );
        }
        let skip = self.kept.len().saturating_sub(missed);
        self.kept.iter().skip(skip)
    }
}

/// How one connection ended.
enum Ended {
    /// This side left (`leave`, or the call was dropped).
    Left,
    /// The server closed it (with this code), or nobody reads the inbound
    /// channel (no code).
    Closed(Option<u16>),
    /// It dropped: resume if possible.
    Dropped,
}

struct Link {
    url: String,
    /// The access token, to join again.
    token: String,
    outbox: mpsc::UnboundedReceiver<ClientMessage>,
    inbound: mpsc::UnboundedSender<Inbound>,
    /// Server messages received in the session (`resumed` not counted).
    received: u64,
    sent: Sent,
    /// From `joined`: how to resume.
    resume: Option<ResumeInfo>,
    /// When the server last gave up this call's media (4002).
    media_gone: Strikes,
    /// Changes of the local network ([`NetworkChanged`]).
    network: tokio::sync::watch::Receiver<u64>,
}

/// Recent occurrences of something, to tell when it happens too often.
#[derive(Debug)]
struct Strikes {
    at: VecDeque<Instant>,
    limit: usize,
    window: Duration,
}

impl Strikes {
    fn new(limit: usize, window: Duration) -> Self {
        Self {
            at: VecDeque::new(),
            limit,
            window,
        }
    }

    /// One more at `now`; whether there have now been more than the limit
    /// within the window.
    fn strike(&mut self, now: Instant) -> bool {
        while self
            .at
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.window)
        {
            self.at.pop_front();
        }
        self.at.push_back(now);
        self.at.len() > self.limit
    }
}

impl Link {
    async fn run(mut self, first: Socket) {
        let mut socket = first;
        loop {
            let ended = self.serve(socket).await;
            // Known once `joined` came, during `serve`.
            let resumable = self.resume.is_some();
            let again = match ended {
                Ended::Dropped if resumable => {
                    info!("signaling connection dropped; resuming the session");
                    if self.inbound.send(Inbound::Reconnecting).is_err() {
                        return;
                    }
                    match self.reconnect().await {
                        Resumption::Resumed(again) => {
                            info!("session resumed");
                            if self.inbound.send(Inbound::Resumed).is_err() {
                                return;
                            }
                            Some(*again)
                        }
                        Resumption::Lost => self.rejoin().await,
                        Resumption::Over => None,
                    }
                }
                Ended::Closed(Some(MEDIA_GONE)) if resumable && !self.media_keeps_failing() => {
                    info!("the server gave up this call's media; joining again");
                    if self.inbound.send(Inbound::Reconnecting).is_err() {
                        return;
                    }
                    self.rejoin().await
                }
                Ended::Closed(Some(code @ GOING_AWAY)) if resumable => {
                    info!(code, "the server ended the session; joining again");
                    if self.inbound.send(Inbound::Reconnecting).is_err() {
                        return;
                    }
                    self.rejoin().await
                }
                _ => None,
            };
            match again {
                Some(again) => socket = again,
                None => return,
            }
        }
    }

    /// Count a 4002; whether they came too often to try again.
    fn media_keeps_failing(&mut self) -> bool {
        let failing = self.media_gone.strike(Instant::now());
        if failing {
            warn!("the server keeps giving up this call's media; not joining again");
        }
        failing
    }

    /// Join again with the access token, with backoff, for up to
    /// [`REJOIN_FOR`]: a new session (counts start again). `None` when the
    /// server refuses the token or the time is up.
    async fn rejoin(&mut self) -> Option<Socket> {
        if self.inbound.send(Inbound::Rejoining).is_err() {
            return None;
        }
        let give_up = Instant::now() + REJOIN_FOR;
        let mut backoff = BACKOFF_FIRST;
        while Instant::now() < give_up && !self.inbound.is_closed() {
            match tokio::time::timeout(ATTEMPT_LIMIT, self.try_join()).await {
                Ok(Attempt::Resumed(socket)) => {
                    info!("joined again");
                    return Some(*socket);
                }
                Ok(Attempt::Refused(why) | Attempt::Ended(why)) => {
                    warn!("cannot join again: {why}");
                    return None;
                }
                Ok(Attempt::Failed(why)) => debug!("join attempt failed: {why}"),
                Err(_) => debug!("join attempt timed out"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        warn!("could not join again within {REJOIN_FOR:?}");
        None
    }

    async fn try_join(&mut self) -> Attempt {
        let mut socket = match open(&self.url).await {
            Ok(s) => s,
            Err(e) => return Attempt::Failed(e.to_string()),
        };
        // A new session: what was queued for the old one is void, but a
        // call that left meanwhile stays gone.
        self.received = 0;
        self.sent = Sent::default();
        self.resume = None;
        while let Ok(msg) = self.outbox.try_recv() {
            if matches!(msg, ClientMessage::Leave) {
                return Attempt::Ended("the call left".into());
            }
        }
        let join = ClientMessage::Join {
            token: self.token.clone(),
            e2ee: false,
        };
        let text = match serde_json::to_string(&join) {
            Ok(t) => t,
            Err(e) => return Attempt::Refused(e.to_string()),
        };
        self.sent.record(&text);
        if let Err(e) = socket.send(Message::Text(text.into())).await {
            return Attempt::Failed(e.to_string());
        }
        match first_text(&mut socket).await {
            Some(msg @ ServerMessage::Joined { .. }) => {
                self.received = 1;
                if let ServerMessage::Joined { resume, .. } = &msg {
                    self.resume = resume.clone();
                }
                if self.inbound.send(Inbound::Msg(Box::new(msg))).is_err() {
                    return Attempt::Refused("the call is gone".into());
                }
                Attempt::Resumed(Box::new(socket))
            }
            Some(ServerMessage::Error { code, message }) => match code {
                ErrorCode::RoomFull | ErrorCode::ServerFull | ErrorCode::Internal => {
                    Attempt::Failed(format!("{code}: {message}"))
                }
                _ => Attempt::Refused(format!("{code}: {message}")),
            },
            Some(other) => Attempt::Failed(format!("expected joined, got {other:?}")),
            None => Attempt::Failed("the connection closed".into()),
        }
    }

    /// Carry messages both ways on `socket` until it ends.
    async fn serve(&mut self, socket: Socket) -> Ended {
        let (mut sink, mut stream) = socket.split();
        let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
        let mut heard = Instant::now();
        // A change before this connection opened is what it was opened on.
        self.network.borrow_and_update();
        loop {
            tokio::select! {
                Ok(()) = self.network.changed() => {
                    info!("the local network changed: signaling on a new connection");
                    return Ended::Dropped;
                }
                msg = self.outbox.recv() => {
                    let Some(msg) = msg else {
                        // The call is gone without a word: end cleanly.
                        let _ = sink.close().await;
                        return Ended::Left;
                    };
                    let leaving = matches!(msg, ClientMessage::Leave);
                    if self.write(&mut sink, &msg).await.is_err() {
                        return Ended::Dropped;
                    }
                    if leaving {
                        let _ = sink.close().await;
                        return Ended::Left;
                    }
                }
                frame = stream.next() => {
                    heard = Instant::now();
                    match frame {
                        Some(Ok(Message::Text(text))) => {
                            if !self.deliver(text.as_str()) {
                                return Ended::Closed(None);
                            }
                        }
                        Some(Ok(Message::Close(frame))) => {
                            return Ended::Closed(frame.map(|f| u16::from(f.code)));
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            debug!("signaling read failed: {e}");
                            return Ended::Dropped;
                        }
                        None => return Ended::Dropped,
                    }
                }
                _ = ping.tick() => {
                    if heard.elapsed() >= SILENCE_LIMIT {
                        debug!("nothing from the server for {:?}", heard.elapsed());
                        return Ended::Dropped;
                    }
                    if self.write(&mut sink, &ClientMessage::Ping).await.is_err() {
                        return Ended::Dropped;
                    }
                }
            }
        }
    }

    /// Write and count a message.
    async fn write(
        &mut self,
        sink: &mut SplitSink<Socket, Message>,
        msg: &ClientMessage,
    ) -> Result<(), ()> {
        let text = match serde_json::to_string(msg) {
            Ok(t) => t,
            Err(e) => {
                debug!("cannot encode {msg:?}: {e}");
                return Ok(());
            }
        };
        self.sent.record(&text);
        sink.send(Message::Text(text.into())).await.map_err(|_| ())
    }

    /// Count and hand on a server message; false when nobody listens.
    fn deliver(&mut self, text: &str) -> bool {
        self.received += 1;
        match serde_json::from_str::<ServerMessage>(text) {
            Ok(msg) => {
                if let ServerMessage::Joined {
                    resume: Some(resume),
                    ..
                } = &msg
                {
                    self.resume = Some(resume.clone());
                }
                self.inbound.send(Inbound::Msg(Box::new(msg))).is_ok()
            }
            Err(e) => {
                debug!("unparseable server message: {e}");
                true
            }
        }
    }

    /// Connect again and resume, with backoff, until the grace period
    /// ends.
    async fn reconnect(&mut self) -> Resumption {
        let Some(resume) = self.resume.clone() else {
            return Resumption::Lost;
        };
        let give_up = Instant::now() + Duration::from_millis(resume.grace_ms);
        let mut backoff = BACKOFF_FIRST;
        while Instant::now() < give_up {
            if self.inbound.is_closed() {
                return Resumption::Over;
            }
            match tokio::time::timeout(ATTEMPT_LIMIT, self.try_resume(&resume)).await {
                Ok(Attempt::Resumed(socket)) => return Resumption::Resumed(socket),
                Ok(Attempt::Refused(why)) => {
                    warn!("the session cannot be resumed: {why}");
                    return Resumption::Lost;
                }
                Ok(Attempt::Ended(why)) => {
                    warn!("the session has ended: {why}");
                    return Resumption::Over;
                }
                Ok(Attempt::Failed(why)) => debug!("resume attempt failed: {why}"),
                Err(_) => debug!("resume attempt timed out"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        warn!("the session was not resumed within its grace period");
        Resumption::Lost
    }

    async fn try_resume(&mut self, resume: &ResumeInfo) -> Attempt {
        let mut socket = match open(&self.url).await {
            Ok(s) => s,
            Err(e) => return Attempt::Failed(e.to_string()),
        };
        let hello = ClientMessage::Resume {
            token: resume.token.clone(),
            received: self.received,
        };
        let text = match serde_json::to_string(&hello) {
            Ok(t) => t,
            Err(e) => return Attempt::Refused(e.to_string()),
        };
        if let Err(e) = socket.send(Message::Text(text.into())).await {
            return Attempt::Failed(e.to_string());
        }
        match first_text(&mut socket).await {
            Some(ServerMessage::Resumed { received, .. }) => {
                let (mut sink, stream) = socket.split();
                for text in self.sent.after(received) {
                    if let Err(e) = sink.send(Message::Text(text.clone().into())).await {
                        return Attempt::Failed(e.to_string());
                    }
                }
                match sink.reunite(stream) {
                    Ok(socket) => Attempt::Resumed(Box::new(socket)),
                    Err(e) => Attempt::Failed(e.to_string()),
                }
            }
            Some(ServerMessage::Error {
                code: ErrorCode::ResumeFailed,
                message,
            }) => match close_code(&mut socket).await {
                // Removed by an administrator while away: not to come back.
                Some(KICKED) => Attempt::Ended(message),
                _ => Attempt::Refused(message),
            },
            Some(other) => Attempt::Failed(format!("expected resumed, got {other:?}")),
            None => Attempt::Failed("the connection closed".into()),
        }
    }
}

/// How an attempt to resume ended.
enum Resumption {
    Resumed(Box<Socket>),
    /// The session is gone (refused, or the grace period is over): join
    /// again.
    Lost,
    /// Nobody listens any more.
    Over,
}

enum Attempt {
    Resumed(Box<Socket>),
    /// The server will not resume the session (or take the join).
    Refused(String),
    /// The session ended for good (kicked): neither resume nor join again.
    Ended(String),
    /// Try again.
    Failed(String),
}

/// The code of the close frame that ends a socket, if one comes.
async fn close_code(socket: &mut Socket) -> Option<u16> {
    while let Some(frame) = socket.next().await {
        match frame {
            Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

/// The first server message on a socket, if one comes before it closes.
async fn first_text(socket: &mut Socket) -> Option<ServerMessage> {
    while let Some(frame) = socket.next().await {
        match frame {
            Ok(Message::Text(text)) => return serde_json::from_str(text.as_str()).ok(),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_many_strikes_within_the_window_are_too_many() {
        let t = Instant::now();
        let mut s = Strikes::new(3, Duration::from_secs(180));
        assert!(!s.strike(t));
        assert!(!s.strike(t + Duration::from_secs(30)));
        assert!(!s.strike(t + Duration::from_secs(60)));
        assert!(
            s.strike(t + Duration::from_secs(90)),
            "a fourth within 3 min"
        );
        // Spread out, they never are.
        let mut s = Strikes::new(3, Duration::from_secs(180));
        for i in 0..10 {
            assert!(!s.strike(t + Duration::from_secs(100 * i)));
        }
    }

    #[test]
    fn a_resume_sends_again_what_the_server_missed() {
        let mut sent = Sent::default();
        for i in 0..5 {
            sent.record(&format!("m{i}"));
        }
        let again: Vec<&str> = sent.after(3).map(String::as_str).collect();
        assert_eq!(again, ["m3", "m4"]);
        assert_eq!(sent.after(5).count(), 0);
        assert_eq!(sent.after(9).count(), 0, "more than sent: nothing");
        for i in 5..(RESEND_KEPT + 10) {
            sent.record(&format!("m{i}"));
        }
        assert_eq!(sent.after(0).count(), RESEND_KEPT, "only what is kept");
    }
}
