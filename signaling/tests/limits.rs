//! Resource limits, timeouts and floods (docs/security.md): every limit is
//! hit on purpose and must be refused the documented way, while clients
//! within the limits keep working.

mod common;

use anyhow::{bail, Context, Result};
use common::*;
use futures_util::{SinkExt, StreamExt};
use huddle_proto::{ErrorCode, ServerMessage};
use huddle_sfu::{ParticipantId, RoomId, SfuError, SfuEvent};
use huddle_sfu::{Rights, TrackView};
use huddle_signaling::sfu::SfuFuture;
use huddle_signaling::{Limits, SfuControl, SignalingConfig};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{self, Message};

/// The smallest offers the WHIP and WHEP endpoints take (the fake SFU
/// answers anything; the endpoints check the direction first).
const WHIP_OFFER: &str =
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\n";
const WHEP_OFFER: &str =
    "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\n";

fn offer_for(path: &str) -> &'static str {
    if path.starts_with("/whep") {
        WHEP_OFFER
    } else {
        WHIP_OFFER
    }
}

/// An SFU that accepts everything and says nothing: offers starting with
/// `v=0` are answered, everything else succeeds.
struct QuietSfu {
    _events: mpsc::UnboundedSender<SfuEvent>,
}

impl SfuControl for QuietSfu {
    fn add_participant(&self, _: RoomId, _: ParticipantId, _: Rights) -> SfuFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
    fn add_viewer(&self, _: RoomId, _: ParticipantId, _: String) -> SfuFuture<'_, String> {
        Box::pin(async { Ok("v=0 viewer-answer".into()) })
    }
    fn publisher_offer(&self, _: ParticipantId, sdp: String) -> SfuFuture<'_, String> {
        Box::pin(async move {
            if sdp.starts_with("v=0") {
                Ok("v=0 answer".into())
            } else {
                Err(SfuError::BadSdp("not an SDP".into()))
            }
        })
    }
    fn subscriber_answer(&self, _: ParticipantId, _: String) -> SfuFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
    fn restart_subscriber_ice(&self, _: ParticipantId) -> SfuFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
    fn restart_ice_with(
        &self,
        _: ParticipantId,
        _: huddle_proto::PcRole,
        _: String,
        _: String,
    ) -> SfuFuture<'_, huddle_sfu::IceCredentials> {
        Box::pin(async { Err(SfuError::BadIce("not in this test".into())) })
    }
    fn remote_candidate(
        &self,
        _: ParticipantId,
        _: huddle_proto::PcRole,
        _: huddle_proto::IceCandidate,
    ) -> SfuFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
    fn set_muted(&self, _: ParticipantId, _: String, _: bool) -> SfuFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
    fn set_track_view(&self, _: ParticipantId, _: String, _: TrackView) -> SfuFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
    fn remove_participant(&self, _: ParticipantId) -> SfuFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
}

fn config(limits: Limits) -> SignalingConfig {
    let mut c = SignalingConfig::new(SECRET);
    c.limits = limits;
    c
}

async fn start(config: SignalingConfig) -> Result<Server> {
    let (tx, rx) = mpsc::unbounded_channel();
    Server::start(Arc::new(QuietSfu { _events: tx }), rx, config).await
}

/// Try to open a WebSocket; `Err((status, body))` when the upgrade is
/// refused.
async fn try_connect(server: &Server) -> Result<std::result::Result<Ws, (u16, String)>> {
    let url = format!("ws://{}/ws", server.addr);
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .context("connect timed out")?
    {
        Ok((ws, _)) => Ok(Ok(ws)),
        Err(tungstenite::Error::Http(r)) => {
            let body =
                String::from_utf8_lossy(r.body().as_deref().unwrap_or_default()).into_owned();
            Ok(Err((r.status().as_u16(), body)))
        }
        Err(e) => Err(e.into()),
    }
}

/// Ping and read until the pong (skipping room messages); fails on an
/// error or a close.
async fn alive(ws: &mut Ws) -> Result<()> {
    send_json(ws, r#"{"type":"ping"}"#).await?;
    loop {
        match recv(ws).await? {
            ServerMessage::Pong => return Ok(()),
            ServerMessage::Error { code, message } => bail!("unexpected {code}: {message}"),
            _ => continue,
        }
    }
}

async fn join_ws(ws: &mut Ws, room: &str, identity: &str, publish: bool) -> Result<ServerMessage> {
    send_json(ws, &join_msg(&token(room, identity, publish, true))).await?;
    recv(ws).await
}

/// Per-address limits (pending and total) and the node's total are checked
/// before the upgrade: 429 / 503 with a body saying why.
#[tokio::test]
async fn websocket_limits_per_address_and_node() -> Result<()> {
    let server = start(config(Limits {
        max_connections_per_ip: 3,
        max_pending_per_ip: 2,
        ..Limits::default()
    }))
    .await?;
    let mut a = try_connect(&server).await?.expect("first");
    let _b = try_connect(&server).await?.expect("second");
    let (status, body) = try_connect(&server).await?.expect_err("third pending");
    assert_eq!(status, 429);
    assert!(body.contains("not joined"), "{body}");
    // Once one has joined, it no longer counts as pending.
    assert!(matches!(
        join_ws(&mut a, "r", "alice", false).await?,
        ServerMessage::Joined { .. }
    ));
    let _c = try_connect(&server)
        .await?
        .expect("pending slot freed by the join");
    let (status, body) = try_connect(&server)
        .await?
        .expect_err("fourth from the address");
    assert_eq!(status, 429);
    assert_eq!(body, "too many connections from this address");
    alive(&mut a).await?;
    server.stop().await?;

    let server = start(config(Limits {
        max_connections: 2,
        max_connections_per_ip: 0,
        max_pending_per_ip: 0,
        ..Limits::default()
    }))
    .await?;
    let _a = try_connect(&server).await?.expect("first");
    let b = try_connect(&server).await?.expect("second");
    let (status, body) = try_connect(&server).await?.expect_err("node full");
    assert_eq!(status, 503);
    assert!(body.contains("as many connections"), "{body}");
    drop(b);
    // The closed one's slot comes back once the server has seen it go.
    let mut reopened = None;
    for _ in 0..50 {
        if let Ok(ws) = try_connect(&server).await? {
            reopened = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reopened.is_some(), "slot not released");
    server.stop().await
}

/// Identity, room and node participant limits refuse the join with an error
/// code and a close code; others are unaffected.
#[tokio::test]
async fn join_limits_identity_room_and_server() -> Result<()> {
    let server = start(config(Limits {
        max_participants: 5,
        max_participants_per_room: 3,
        max_sessions_per_identity: 2,
        ..Limits::default()
    }))
    .await?;
    let (mut a1, _) = server.join("r", "alice", false, true).await?;
    let (_a2, _) = server.join("r", "alice", false, true).await?;
    let mut a3 = server.connect(None).await?;
    let refused = join_ws(&mut a3, "r", "alice", false).await?;
    assert!(
        matches!(
            &refused,
            ServerMessage::Error {
                code: ErrorCode::TooManySessions,
                ..
            }
        ),
        "{refused:?}"
    );
    assert_eq!(expect_closed(&mut a3).await?, Some(1008));

    let (_b, _) = server.join("r", "bob", false, true).await?;
    let mut c = server.connect(None).await?;
    let refused = join_ws(&mut c, "r", "carol", false).await?;
    assert!(
        matches!(
            &refused,
            ServerMessage::Error {
                code: ErrorCode::RoomFull,
                ..
            }
        ),
        "{refused:?}"
    );
    assert_eq!(expect_closed(&mut c).await?, Some(1013));

    let (_d, _) = server.join("s", "dave", false, true).await?;
    let (_e, _) = server.join("s", "erin", false, true).await?;
    let mut f = server.connect(None).await?;
    let refused = join_ws(&mut f, "t", "frank", false).await?;
    assert!(
        matches!(
            &refused,
            ServerMessage::Error {
                code: ErrorCode::ServerFull,
                ..
            }
        ),
        "{refused:?}"
    );
    assert_eq!(expect_closed(&mut f).await?, Some(1013));

    // WHIP sessions count too, and are refused over HTTP.
    let sdp = [("Content-Type", "application/sdp")];
    let r = request(
        server.addr,
        "POST",
        "/whip",
        Some(&token("s", "erin", true, false)),
        &sdp,
        WHIP_OFFER,
    )
    .await?;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.body.contains("server has as many participants"), "{r:?}");
    alive(&mut a1).await?;
    server.stop().await?;

    let server = start(config(Limits {
        max_sessions_per_identity: 1,
        ..Limits::default()
    }))
    .await?;
    let cam = token("r", "cam", true, false);
    let r = request(server.addr, "POST", "/whip", Some(&cam), &sdp, WHIP_OFFER).await?;
    assert_eq!(r.status, 201, "{r:?}");
    let r = request(server.addr, "POST", "/whip", Some(&cam), &sdp, WHIP_OFFER).await?;
    assert_eq!(r.status, 429, "{r:?}");
    assert!(r.body.contains("as many sessions"), "{r:?}");
    server.stop().await
}

/// `POST /whip` and `POST /whep` are rate limited per client address and
/// per identity: 429 with `Retry-After`, even when every session would fit.
#[tokio::test]
async fn new_http_sessions_are_rate_limited() -> Result<()> {
    let server = start(config(Limits {
        http_sessions_per_sec: 0.001,
        http_sessions_burst: 3.0,
        max_sessions_per_identity: 0,
        client_ip_header: Some("x-forwarded-for".into()),
        ..Limits::default()
    }))
    .await?;
    let post = |path: &'static str, identity: &'static str, ip: &'static str| {
        let addr = server.addr;
        async move {
            let t = token("r", identity, true, true);
            let headers = [("Content-Type", "application/sdp"), ("X-Forwarded-For", ip)];
            request(addr, "POST", path, Some(&t), &headers, offer_for(path)).await
        }
    };
    // One identity from three addresses: its own bucket runs out.
    for ip in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
        assert_eq!(post("/whip", "cam", ip).await?.status, 201);
    }
    let r = post("/whip", "cam", "192.0.2.4").await?;
    assert_eq!(r.status, 429, "{r:?}");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.body.contains("too many new sessions"), "{r:?}");
    // One address, new identities: the address's bucket runs out.
    for who in ["v1", "v2", "v3"] {
        assert_eq!(post("/whip", who, "198.51.100.9").await?.status, 201);
    }
    assert_eq!(post("/whip", "v4", "198.51.100.9").await?.status, 429);
    assert_eq!(
        post("/whip", "v4", "198.51.100.10").await?.status,
        201,
        "other addresses unaffected"
    );
    server.stop().await
}

/// A connection that sends half a request header is closed after the
/// header-read timeout instead of holding its socket forever.
#[tokio::test]
async fn half_sent_header_is_closed() -> Result<()> {
    let server = start(config(Limits {
        header_read_timeout: Duration::from_millis(200),
        ..Limits::default()
    }))
    .await?;
    let mut s = tokio::net::TcpStream::connect(server.addr).await?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await?;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .context("the server kept a half-sent request open")?;
    // Closed (maybe reset); never answered as if the request were complete.
    if read.is_ok() {
        assert!(!String::from_utf8_lossy(&buf).contains(" 200 "), "{buf:?}");
    }
    // A complete request is still served.
    assert_eq!(server.http("GET", "/healthz", None).await?.0, 200);
    server.stop().await
}

/// A participant allowed to publish that neither offers nor answers within
/// the media timeout is closed (media_timeout, 4003); one that offered, and
/// a receive-only one with nothing to answer yet, stay.
#[tokio::test]
async fn joined_without_media_is_closed() -> Result<()> {
    let server = start(config(Limits {
        media_timeout: Duration::from_millis(300),
        ..Limits::default()
    }))
    .await?;
    let (mut offered, _) = server.join("r", "pub", true, true).await?;
    send_json(&mut offered, r#"{"type":"offer","sdp":"v=0 offer"}"#).await?;
    let (mut viewer, _) = server.join("r", "viewer", false, true).await?;
    let (mut idle, _) = server.join("r", "idle", true, true).await?;
    // The others were told of `idle` before its deadline, the deadline of
    // those that joined earlier has passed once `idle` is closed.
    loop {
        match recv(&mut idle).await {
            Ok(ServerMessage::Error {
                code: ErrorCode::MediaTimeout,
                ..
            }) => break,
            Ok(_) => continue,
            Err(e) => bail!("no media_timeout error: {e}"),
        }
    }
    assert_eq!(expect_closed(&mut idle).await?, Some(4003));
    alive(&mut offered).await?;
    alive(&mut viewer).await?;
    server.stop().await
}

/// A client that sends Ping frames and never reads is closed: pings count
/// against the message rate, so the pongs the server owes it stay bounded.
#[tokio::test]
async fn ping_flood_is_closed() -> Result<()> {
    let server = start(config(Limits::default())).await?;
    let mut ws = server.connect(None).await?;
    let payload = vec![7u8; 125];
    let mut sent = 0;
    for _ in 0..20_000 {
        match tokio::time::timeout(WAIT, ws.send(Message::Ping(payload.clone().into()))).await {
            Ok(Ok(())) => sent += 1,
            Ok(Err(_)) => break,
            Err(_) => bail!("a ping could not be sent in time"),
        }
    }
    assert!(
        sent < 20_000,
        "the server took {sent} pings without closing"
    );
    server.stop().await
}

/// Read `ws` until the reply to a `mute` of an unknown track (the sentinel
/// sent after a burst): counts of pongs and rate_limited errors on the way.
async fn until_sentinel(ws: &mut Ws) -> Result<(usize, usize)> {
    let (mut pongs, mut limited) = (0, 0);
    loop {
        match next(ws).await? {
            Got::Msg(ServerMessage::Pong) => pongs += 1,
            Got::Msg(ServerMessage::Error {
                code: ErrorCode::RateLimited,
                ..
            }) => limited += 1,
            Got::Msg(ServerMessage::Error {
                code: ErrorCode::UnknownTrack,
                ..
            }) => return Ok((pongs, limited)),
            Got::Msg(_) => {}
            Got::Closed(c) => bail!("closed ({c:?}) after {pongs} pongs, {limited} rate_limited"),
        }
    }
}

const SENTINEL: &str = r#"{"type":"mute","track_id":"sentinel","muted":true}"#;

/// A burst far over the rate limit from a client that reads promptly: the
/// excess is dropped with at most a few `rate_limited` errors and the
/// connection stays open; a burst of candidates does not end the call.
#[tokio::test]
async fn burst_over_the_rate_keeps_the_connection() -> Result<()> {
    let server = start(config(Limits::default())).await?;
    let (ws, _) = server.join("r", "alice", true, true).await?;
    let (mut tx, mut rx) = ws.split();
    let reader = tokio::spawn(async move {
        let mut pongs = 0;
        let mut limited = 0;
        loop {
            let frame = tokio::time::timeout(WAIT, rx.next()).await;
            match frame {
                Ok(Some(Ok(Message::Text(t)))) => match serde_json::from_str(t.as_str())? {
                    ServerMessage::Pong => pongs += 1,
                    ServerMessage::Error {
                        code: ErrorCode::RateLimited,
                        ..
                    } => limited += 1,
                    ServerMessage::Error {
                        code: ErrorCode::UnknownTrack,
                        ..
                    } => return anyhow::Ok((pongs, limited, rx)),
                    _ => {}
                },
                Ok(Some(Ok(Message::Close(c)))) => bail!("closed {c:?} after {pongs} pongs"),
                Ok(Some(Ok(_))) => {}
                other => bail!("read ended: {other:?}"),
            }
        }
    });
    let ping = Message::text(r#"{"type":"ping"}"#);
    let burst: Vec<_> = (0..1000).map(|_| Ok(ping.clone())).collect();
    tx.send_all(&mut futures_util::stream::iter(burst)).await?;
    // The bucket refills; then the sentinel gets through.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    tx.send(Message::text(SENTINEL)).await?;
    let (pongs, limited, rx) = reader.await??;
    assert!(pongs >= 90, "{pongs} pongs");
    assert!(limited <= 3, "{limited} rate_limited errors for one burst");
    let mut ws = tx.reunite(rx).map_err(|_| anyhow::anyhow!("reunite"))?;

    // A few hundred candidates at once, read promptly: the call goes on.
    let candidate = r#"{"type":"candidate","pc":"publisher","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host"}}"#;
    for _ in 0..400 {
        send_json(&mut ws, candidate).await?;
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    send_json(&mut ws, SENTINEL).await?;
    let (_, limited) = until_sentinel(&mut ws).await?;
    assert!(limited <= 3, "{limited} rate_limited errors for one burst");
    alive(&mut ws).await?;
    server.stop().await
}

/// Follow a client's view of the room: `others` of its `joined`, then
/// every join and leave, single or batched. Returns the presence messages
/// read.
async fn follow_until(
    ws: &mut Ws,
    view: &mut BTreeSet<String>,
    want: &BTreeSet<String>,
) -> Result<usize> {
    let mut presence = 0;
    while view != want {
        match next(ws).await? {
            Got::Msg(ServerMessage::ParticipantJoined { participant }) => {
                presence += 1;
                view.insert(participant.id);
            }
            Got::Msg(ServerMessage::ParticipantLeft { participant_id }) => {
                presence += 1;
                view.remove(&participant_id);
            }
            Got::Msg(ServerMessage::ParticipantsChanged { joined, left }) => {
                presence += 1;
                view.extend(joined.into_iter().map(|p| p.id));
                for id in left {
                    view.remove(&id);
                }
            }
            Got::Msg(_) => {}
            Got::Closed(c) => bail!("disconnected ({c:?}) with {} in view", view.len()),
        }
    }
    Ok(presence)
}

/// 350 participants join one room, then 300 of them leave at once: nobody
/// is disconnected as a slow client, every one left ends with the same,
/// right participant list, and joins and leaves reach each one in a few
/// batched messages instead of one message per change.
#[tokio::test]
async fn mass_leave_is_batched() -> Result<()> {
    const TOTAL: usize = 350;
    const LEAVING: usize = 300;
    let mut c = config(Limits {
        max_connections_per_ip: 0,
        max_pending_per_ip: 0,
        presence_batch_window: Duration::from_millis(250),
        ..Limits::default()
    });
    // The dropped sessions leave once not resumed in time, all about
    // together.
    c.resume_grace = Duration::from_millis(200);
    let server = start(c).await?;
    let mut clients = Vec::new();
    for i in 0..TOTAL {
        let (ws, joined) = server.join("big", &format!("p{i}"), false, true).await?;
        let ServerMessage::Joined {
            participant,
            others,
            ..
        } = joined
        else {
            bail!("not joined");
        };
        let view: BTreeSet<String> = others.into_iter().map(|p| p.id).collect();
        clients.push((participant.id, ws, view));
    }
    let everyone: BTreeSet<String> = clients.iter().map(|c| c.0.clone()).collect();
    let staying_ids: BTreeSet<String> = clients[LEAVING..].iter().map(|c| c.0.clone()).collect();
    let mut join_messages = 0;
    for (id, ws, view) in clients.iter_mut() {
        let mut want = everyone.clone();
        want.remove(id);
        join_messages += follow_until(ws, view, &want).await?;
    }
    let leavers: Vec<_> = clients.drain(..LEAVING).collect();
    // All at once: every leaver's socket closes without a word.
    drop(leavers);
    let mut leave_messages = 0;
    for (id, ws, view) in clients.iter_mut() {
        let mut want = staying_ids.clone();
        want.remove(id);
        leave_messages += follow_until(ws, view, &want).await?;
    }
    let staying = TOTAL - LEAVING;
    eprintln!("presence messages: {join_messages} for the joins, {leave_messages} for the leaves");
    // One message per change would be (TOTAL-1)*TOTAL/2 for the joins and
    // LEAVING*staying for the leaves.
    assert!(
        leave_messages <= staying * LEAVING / 10,
        "{leave_messages} messages to tell {staying} clients of {LEAVING} leaves"
    );
    assert!(
        join_messages <= TOTAL * TOTAL / 4,
        "{join_messages} messages for {TOTAL} joins"
    );
    for (_, ws, _) in clients.iter_mut() {
        alive(ws).await?;
    }
    let listed = server.app.hub().participants("big").context("room")?;
    assert_eq!(listed.len(), staying);
    server.stop().await
}
