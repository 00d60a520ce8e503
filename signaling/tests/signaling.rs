//! Signaling service tests against a scripted SFU (no media), so every
//! protocol path is exercised deterministically.

mod common;

use anyhow::{bail, Result};
use common::*;
use futures_util::SinkExt;
use huddle_proto::{ErrorCode, ServerMessage, TrackInfo, TrackKind, MAX_MESSAGE_BYTES};
use huddle_sfu::{ParticipantId, RoomId, SfuError, SfuEvent};
use huddle_sfu::{Rights, TrackView};
use huddle_signaling::sfu::SfuFuture;
use huddle_signaling::{auth, Claims, SfuControl, SignalingConfig};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// A scripted SFU: offers SDP starting with `v=0` are answered and publish one
/// audio track; anything else is bad SDP.
struct FakeSfu {
    events: mpsc::UnboundedSender<SfuEvent>,
    rooms: Mutex<std::collections::HashMap<ParticipantId, RoomId>>,
    removed: Mutex<Vec<ParticipantId>>,
    muted: Mutex<Vec<(String, bool)>>,
    views: Mutex<Vec<(ParticipantId, String, TrackView)>>,
}

impl FakeSfu {
    fn new() -> (Arc<Self>, huddle_sfu::SfuEvents) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Arc::new(Self {
                events: tx,
                rooms: Mutex::default(),
                removed: Mutex::default(),
                muted: Mutex::default(),
                views: Mutex::default(),
            }),
            rx,
        )
    }
    fn emit(&self, e: SfuEvent) {
        let _ = self.events.send(e);
    }
}

impl SfuControl for FakeSfu {
    fn add_participant(
        &self,
        room: RoomId,
        participant: ParticipantId,
        rights: Rights,
    ) -> SfuFuture<'_, ()> {
        Box::pin(async move {
            self.rooms.lock().unwrap().insert(participant.clone(), room);
            if rights.subscribe {
                // Emitted before the call returns: must still reach the
                // client after `joined`.
                self.emit(SfuEvent::SubscriberOffer {
                    participant,
                    sdp: "fake-subscriber-offer".into(),
                });
            }
            Ok(())
        })
    }
    fn add_viewer(
        &self,
        room: RoomId,
        participant: ParticipantId,
        sdp: String,
    ) -> SfuFuture<'_, String> {
        Box::pin(async move {
            if !sdp.starts_with("v=0") {
                return Err(SfuError::BadSdp("not an SDP".into()));
            }
            self.rooms.lock().unwrap().insert(participant, room);
            Ok("fake-viewer-answer".into())
        })
    }
    fn publisher_offer(&self, participant: ParticipantId, sdp: String) -> SfuFuture<'_, String> {
        Box::pin(async move {
            if !sdp.starts_with("v=0") {
                return Err(SfuError::BadSdp("not an SDP".into()));
            }
            let room = self.rooms.lock().unwrap().get(&participant).cloned();
            if let Some(room) = room {
                self.emit(SfuEvent::TrackPublished {
                    room,
                    track: TrackInfo {
                        id: format!("TR_{participant}"),
                        kind: TrackKind::Audio,
                        mime_type: "audio/opus".into(),
                        muted: false,
                        source_track_id: None,
                    },
                    participant,
                });
            }
            Ok("fake-answer".into())
        })
    }
    fn subscriber_answer(&self, _p: ParticipantId, sdp: String) -> SfuFuture<'_, ()> {
        Box::pin(async move {
            match sdp.as_str() {
                "none-pending" => Err(SfuError::NoPendingOffer),
                s if s.starts_with("v=0") => Ok(()),
                _ => Err(SfuError::BadSdp("not an SDP".into())),
            }
        })
    }
    fn restart_subscriber_ice(&self, _p: ParticipantId) -> SfuFuture<'_, ()> {
        Box::pin(async { Err(SfuError::NoSubscriberConnection) })
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
        _p: ParticipantId,
        _pc: huddle_proto::PcRole,
        c: huddle_proto::IceCandidate,
    ) -> SfuFuture<'_, ()> {
        Box::pin(async move {
            if c.candidate.starts_with("candidate:") {
                Ok(())
            } else {
                Err(SfuError::BadCandidate("unparsable".into()))
            }
        })
    }
    fn set_muted(&self, _p: ParticipantId, track_id: String, muted: bool) -> SfuFuture<'_, ()> {
        Box::pin(async move {
            self.muted.lock().unwrap().push((track_id, muted));
            Ok(())
        })
    }
    fn set_track_view(
        &self,
        participant: ParticipantId,
        track_id: String,
        view: TrackView,
    ) -> SfuFuture<'_, ()> {
        Box::pin(async move {
            self.views
                .lock()
                .unwrap()
                .push((participant, track_id, view));
            Ok(())
        })
    }
    fn remove_participant(&self, participant: ParticipantId) -> SfuFuture<'_, ()> {
        Box::pin(async move {
            self.rooms.lock().unwrap().remove(&participant);
            self.removed.lock().unwrap().push(participant);
            Ok(())
        })
    }
}

async fn start() -> Result<(Server, Arc<FakeSfu>)> {
    start_with(SignalingConfig::new(SECRET)).await
}

async fn start_with(config: SignalingConfig) -> Result<(Server, Arc<FakeSfu>)> {
    let (sfu, events) = FakeSfu::new();
    let server = Server::start(sfu.clone(), events, config).await?;
    Ok((server, sfu))
}

/// Refused joins: error code, then close; nothing about the room is revealed.
#[tokio::test]
async fn join_refusals() -> Result<()> {
    let (server, _sfu) = start().await?;
    let (_a, _) = server.join("existing", "alice", true, true).await?;

    let mut expired = Claims::new("bob", "existing", true, true, 0);
    expired.exp = auth::now_secs() - 3600;
    let expired = auth::mint(SECRET, &expired)?;
    let forged = auth::mint(
        "not-the-secret",
        &Claims::new("bob", "existing", true, true, 600),
    )?;
    // A valid token with its payload swapped for another room's.
    let valid = token("existing", "bob", true, true);
    let other = token("other", "bob", true, true);
    let tampered = {
        let v: Vec<&str> = valid.split('.').collect();
        let o: Vec<&str> = other.split('.').collect();
        format!("{}.{}.{}", v[0], o[1], v[2])
    };

    let cases: Vec<(Option<&str>, String, ErrorCode)> = vec![
        (None, join_msg(""), ErrorCode::TokenMissing),
        (None, r#"{"type":"join"}"#.into(), ErrorCode::TokenMissing),
        (None, join_msg(&expired), ErrorCode::TokenExpired),
        (None, join_msg(&forged), ErrorCode::TokenInvalid),
        (None, join_msg(&tampered), ErrorCode::TokenInvalid),
        (None, join_msg("not.a.jwt"), ErrorCode::TokenInvalid),
        (Some("existing"), join_msg(&other), ErrorCode::WrongRoom),
        (Some("nowhere"), join_msg(&valid), ErrorCode::WrongRoom),
        (None, join_msg(&admin_token()), ErrorCode::Forbidden),
    ];
    let mut wrong_room_messages = Vec::new();
    for (room, msg, code) in cases {
        let mut ws = server.connect(room).await?;
        send_json(&mut ws, &msg).await?;
        let message = expect_error(&mut ws, code).await?;
        if code == ErrorCode::WrongRoom {
            wrong_room_messages.push(message);
        }
        assert_eq!(expect_closed(&mut ws).await?, Some(1008), "{code}");
    }
    assert_eq!(wrong_room_messages[0], wrong_room_messages[1]);
    assert_eq!(
        server.app.hub().participants("existing").map(|p| p.len()),
        Some(1)
    );
    assert!(server.app.hub().participants("other").is_none());
    server.stop().await
}

/// Before join: ping works, other messages get `not_joined`; a second join
/// gets `already_joined`.
#[tokio::test]
async fn before_and_after_join() -> Result<()> {
    let (server, _sfu) = start().await?;
    let mut ws = server.connect(None).await?;
    ping_pong(&mut ws).await?;
    send_json(&mut ws, r#"{"type":"offer","sdp":"v=0"}"#).await?;
    expect_error(&mut ws, ErrorCode::NotJoined).await?;
    send_json(&mut ws, &join_msg(&token("r", "alice", true, false))).await?;
    assert!(matches!(
        recv(&mut ws).await?,
        ServerMessage::Joined {
            can_publish: true,
            can_subscribe: false,
            resume: Some(_),
            ..
        }
    ));
    send_json(&mut ws, &join_msg(&token("r", "alice", true, false))).await?;
    expect_error(&mut ws, ErrorCode::AlreadyJoined).await?;
    ping_pong(&mut ws).await?;
    server.stop().await
}

/// Malformed, unknown, oversized and binary messages each get an error; the
/// connection stays usable and the other participant sees nothing.
#[tokio::test]
async fn bad_input_keeps_connection_open() -> Result<()> {
    let (server, _sfu) = start().await?;
    let (mut a, _) = server.join("r", "alice", true, false).await?;
    let (mut b, _) = server.join("r", "bob", true, false).await?;
    assert!(matches!(
        recv(&mut a).await?,
        ServerMessage::ParticipantJoined { .. }
    ));

    let big = format!(
        r#"{{"type":"offer","sdp":"{}"}}"#,
        "a".repeat(MAX_MESSAGE_BYTES + 10)
    );
    for (text, code) in [
        ("{not json".to_string(), ErrorCode::BadMessage),
        (r#"{"type":"teleport"}"#.to_string(), ErrorCode::UnknownType),
        (r#"{"type":"offer"}"#.to_string(), ErrorCode::BadMessage),
        (big, ErrorCode::MessageTooLarge),
    ] {
        send_json(&mut a, &text).await?;
        expect_error(&mut a, code).await?;
        ping_pong(&mut a).await?;
    }
    a.send(Message::binary(vec![1u8, 2, 3])).await?;
    expect_error(&mut a, ErrorCode::BadMessage).await?;
    ping_pong(&mut a).await?;

    // Bob got nothing in the meantime: his next message is his own pong.
    ping_pong(&mut b).await?;
    assert_eq!(server.app.hub().participants("r").map(|p| p.len()), Some(2));
    server.stop().await
}

/// A frame beyond the WebSocket limit drops that connection only.
#[tokio::test]
async fn huge_frame_drops_only_that_connection() -> Result<()> {
    let mut config = SignalingConfig::new(SECRET);
    config.resume_grace = std::time::Duration::from_millis(300);
    let (server, _sfu) = start_with(config).await?;
    let (mut a, _) = server.join("r", "alice", false, false).await?;
    let (mut b, _) = server.join("r", "bob", false, false).await?;
    assert!(matches!(
        recv(&mut a).await?,
        ServerMessage::ParticipantJoined { .. }
    ));
    let huge = format!(
        r#"{{"type":"offer","sdp":"{}"}}"#,
        "a".repeat(4 * MAX_MESSAGE_BYTES)
    );
    let _ = b.send(Message::text(huge)).await;
    // Bob is gone (closed or reset), Alice hears about it once Bob's
    // session is not resumed in time.
    loop {
        match next(&mut b).await? {
            Got::Closed(_) => break,
            Got::Msg(ServerMessage::Error { .. }) => continue,
            Got::Msg(m) => bail!("unexpected {m:?}"),
        }
    }
    assert!(matches!(
        recv(&mut a).await?,
        ServerMessage::ParticipantLeft { .. }
    ));
    ping_pong(&mut a).await?;
    server.stop().await
}

#[tokio::test]
async fn subscribe_only_cannot_offer() -> Result<()> {
    let (server, _sfu) = start().await?;
    let (mut ws, _) = server.join("r", "viewer", false, true).await?;
    assert!(matches!(recv(&mut ws).await?, ServerMessage::Offer { .. }));
    send_json(&mut ws, r#"{"type":"offer","sdp":"v=0\r\n"}"#).await?;
    expect_error(&mut ws, ErrorCode::Forbidden).await?;
    ping_pong(&mut ws).await?;
    server.stop().await
}

/// SFU errors map to protocol codes.
#[tokio::test]
async fn sfu_errors_map_to_codes() -> Result<()> {
    let (server, _sfu) = start().await?;
    let (mut ws, _) = server.join("r", "alice", true, true).await?;
    assert!(matches!(recv(&mut ws).await?, ServerMessage::Offer { .. }));
    for (msg, code) in [
        (r#"{"type":"offer","sdp":"garbage"}"#, ErrorCode::BadSdp),
        (r#"{"type":"answer","sdp":"garbage"}"#, ErrorCode::BadSdp),
        (
            r#"{"type":"answer","sdp":"none-pending"}"#,
            ErrorCode::BadMessage,
        ),
        (
            r#"{"type":"candidate","pc":"publisher","candidate":{"candidate":"junk"}}"#,
            ErrorCode::BadCandidate,
        ),
        (
            r#"{"type":"mute","track_id":"nope","muted":true}"#,
            ErrorCode::UnknownTrack,
        ),
    ] {
        send_json(&mut ws, msg).await?;
        expect_error(&mut ws, code).await?;
    }
    send_json(&mut ws, r#"{"type":"answer","sdp":"v=0"}"#).await?;
    send_json(&mut ws, r#"{"type":"candidate","pc":"subscriber","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdpMid":"0"}}"#).await?;
    ping_pong(&mut ws).await?; // no error came before the pong
    server.stop().await
}

/// joined/participant_joined/participant_left, by leave and by dropping
/// the socket (once the session's resume grace period is over).
#[tokio::test]
async fn join_and_leave_are_announced() -> Result<()> {
    let mut config = SignalingConfig::new(SECRET);
    config.resume_grace = std::time::Duration::from_millis(300);
    let (server, sfu) = start_with(config).await?;
    let (mut a, ja) = server.join("r", "alice", true, false).await?;
    let a_id = joined_id(&ja);
    let (mut b, jb) = server.join("r", "bob", true, false).await?;
    let b_id = joined_id(&jb);
    match &jb {
        ServerMessage::Joined { others, room, .. } => {
            assert_eq!(room, "r");
            assert_eq!(others.len(), 1);
            assert_eq!(others[0].id, a_id);
            assert_eq!(others[0].identity, "alice");
        }
        _ => unreachable!(),
    }
    match recv(&mut a).await? {
        ServerMessage::ParticipantJoined { participant } => {
            assert_eq!(participant.id, b_id);
            assert_eq!(participant.identity, "bob");
        }
        m => bail!("unexpected {m:?}"),
    }
    assert_ne!(a_id, b_id);
    assert!(a_id.starts_with("PA_"));

    send_json(&mut b, r#"{"type":"leave"}"#).await?;
    assert_eq!(expect_closed(&mut b).await?, Some(1000));
    assert_eq!(
        recv(&mut a).await?,
        ServerMessage::ParticipantLeft {
            participant_id: b_id.clone()
        }
    );

    let (c, jc) = server.join("r", "carol", true, false).await?;
    let c_id = joined_id(&jc);
    assert!(matches!(
        recv(&mut a).await?,
        ServerMessage::ParticipantJoined { .. }
    ));
    drop(c); // no leave, just gone, and not resumed
    assert_eq!(
        recv(&mut a).await?,
        ServerMessage::ParticipantLeft {
            participant_id: c_id.clone()
        }
    );

    let removed = sfu.removed.lock().unwrap().clone();
    assert!(removed.contains(&ParticipantId(b_id)) && removed.contains(&ParticipantId(c_id)));
    drop(a);
    // The room disappears with its last participant.
    tokio::time::timeout(WAIT, async {
        while !server.app.hub().rooms().is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await?;
    server.stop().await
}

/// SFU events: offers and candidates go to their participant (after
/// `joined`), tracks and mutes to the whole room, a gone participant is
/// announced and disconnected.
#[tokio::test]
async fn sfu_events_reach_clients() -> Result<()> {
    let (server, sfu) = start().await?;
    let (mut a, ja) = server.join("r", "alice", true, true).await?;
    let a_id = joined_id(&ja);
    assert_eq!(
        recv(&mut a).await?,
        ServerMessage::Offer {
            sdp: "fake-subscriber-offer".into()
        }
    );
    let (mut b, jb) = server.join("r", "bob", false, true).await?;
    let b_id = joined_id(&jb);
    assert!(matches!(recv(&mut b).await?, ServerMessage::Offer { .. }));
    assert!(matches!(
        recv(&mut a).await?,
        ServerMessage::ParticipantJoined { .. }
    ));

    sfu.emit(SfuEvent::Candidate {
        participant: ParticipantId(b_id.clone()),
        pc: huddle_proto::PcRole::Subscriber,
        candidate: huddle_proto::IceCandidate {
            candidate: "candidate:1 1 udp 1 127.0.0.1 7882 typ host".into(),
            ..Default::default()
        },
    });
    assert!(matches!(
        recv(&mut b).await?,
        ServerMessage::Candidate {
            pc: huddle_proto::PcRole::Subscriber,
            ..
        }
    ));

    send_json(&mut a, r#"{"type":"offer","sdp":"v=0\r\n"}"#).await?;
    let track_id = format!("TR_{a_id}");
    // The answer and the track event come from different sources: either order.
    let mut got_answer = false;
    let mut got_track = false;
    for _ in 0..2 {
        match recv(&mut a).await? {
            ServerMessage::Answer { sdp } => got_answer = sdp == "fake-answer",
            ServerMessage::TrackPublished {
                participant_id,
                track,
            } => got_track = participant_id == a_id && track.id == track_id,
            m => bail!("unexpected {m:?}"),
        }
    }
    assert!(got_answer && got_track);
    assert!(matches!(
        recv(&mut b).await?,
        ServerMessage::TrackPublished { .. }
    ));

    // Bob cannot mute Alice's track; Alice can.
    send_json(
        &mut b,
        &format!(r#"{{"type":"mute","track_id":"{track_id}","muted":true}}"#),
    )
    .await?;
    expect_error(&mut b, ErrorCode::UnknownTrack).await?;
    send_json(
        &mut a,
        &format!(r#"{{"type":"mute","track_id":"{track_id}","muted":true}}"#),
    )
    .await?;
    let want = ServerMessage::MuteChanged {
        participant_id: a_id.clone(),
        track_id: track_id.clone(),
        muted: true,
    };
    assert_eq!(recv(&mut a).await?, want);
    assert_eq!(recv(&mut b).await?, want);
    assert_eq!(
        sfu.muted.lock().unwrap().as_slice(),
        &[(track_id.clone(), true)]
    );

    // Bob says how he shows Alice's video; the SFU is told, and what it
    // pauses and resumes for Bob reaches Bob alone.
    send_json(
        &mut b,
        &format!(r#"{{"type":"track_settings","track_id":"{track_id}","width":320,"height":180}}"#),
    )
    .await?;
    send_json(&mut b, r#"{"type":"ping"}"#).await?;
    assert_eq!(recv(&mut b).await?, ServerMessage::Pong);
    let b_pid = ParticipantId(b_id.clone());
    assert_eq!(
        sfu.views.lock().unwrap().as_slice(),
        &[(
            b_pid.clone(),
            track_id.clone(),
            TrackView {
                visible: true,
                width: Some(320),
                height: Some(180)
            }
        )]
    );
    sfu.emit(SfuEvent::TrackPaused {
        room: RoomId("r".into()),
        participant: b_pid.clone(),
        track_id: track_id.clone(),
        reason: huddle_proto::PauseReason::Bandwidth,
    });
    sfu.emit(SfuEvent::TrackResumed {
        room: RoomId("r".into()),
        participant: b_pid,
        track_id: track_id.clone(),
    });
    assert_eq!(
        recv(&mut b).await?,
        ServerMessage::TrackPaused {
            track_id: track_id.clone(),
            reason: huddle_proto::PauseReason::Bandwidth
        }
    );
    assert_eq!(
        recv(&mut b).await?,
        ServerMessage::TrackResumed {
            track_id: track_id.clone()
        }
    );

    // A late joiner sees the track, muted, in `joined`.
    let (mut c, jc) = server.join("r", "carol", false, false).await?;
    match &jc {
        ServerMessage::Joined { others, .. } => {
            let alice = others.iter().find(|p| p.id == a_id).expect("alice listed");
            assert_eq!(alice.tracks.len(), 1);
            assert!(alice.tracks[0].muted);
        }
        _ => unreachable!(),
    }
    assert!(matches!(
        recv(&mut a).await?,
        ServerMessage::ParticipantJoined { .. }
    ));
    assert!(matches!(
        recv(&mut b).await?,
        ServerMessage::ParticipantJoined { .. }
    ));

    sfu.emit(SfuEvent::TrackUnpublished {
        room: RoomId("r".into()),
        participant: ParticipantId(a_id.clone()),
        track_id: track_id.clone(),
    });
    for ws in [&mut a, &mut b, &mut c] {
        assert_eq!(
            recv(ws).await?,
            ServerMessage::TrackUnpublished {
                participant_id: a_id.clone(),
                track_id: track_id.clone()
            }
        );
    }

    sfu.emit(SfuEvent::ParticipantGone {
        room: RoomId("r".into()),
        participant: ParticipantId(b_id.clone()),
        reason: "ICE failed".into(),
    });
    assert_eq!(expect_closed(&mut b).await?, Some(4002));
    for ws in [&mut a, &mut c] {
        assert_eq!(
            recv(ws).await?,
            ServerMessage::ParticipantLeft {
                participant_id: b_id.clone()
            }
        );
    }
    server.stop().await
}

#[tokio::test]
async fn rest_api() -> Result<()> {
    let (server, sfu) = start().await?;
    assert_eq!(
        server.http("GET", "/healthz", None).await?,
        (200, "ok".to_string())
    );

    let admin = admin_token();
    let user = token("r", "alice", true, true);
    for (method, path) in [
        ("GET", "/api/rooms"),
        ("GET", "/api/rooms/r/participants"),
        ("DELETE", "/api/rooms/r/participants/PA_x"),
    ] {
        assert_eq!(
            server.http(method, path, None).await?.0,
            401,
            "{method} {path}"
        );
        assert_eq!(
            server.http(method, path, Some("garbage")).await?.0,
            401,
            "{method} {path}"
        );
        assert_eq!(
            server.http(method, path, Some(&user)).await?.0,
            403,
            "{method} {path}"
        );
    }

    let (status, body) = server.http("GET", "/api/rooms", Some(&admin)).await?;
    assert_eq!((status, body.as_str()), (200, "[]"));

    let (mut a, ja) = server.join("r", "alice", true, false).await?;
    let (mut b, jb) = server.join("r", "bob", true, false).await?;
    let (_c, _) = server.join("s", "carol", true, false).await?;
    assert!(matches!(
        recv(&mut a).await?,
        ServerMessage::ParticipantJoined { .. }
    ));
    let b_id = joined_id(&jb);

    let (status, body) = server.http("GET", "/api/rooms", Some(&admin)).await?;
    assert_eq!(status, 200);
    let rooms: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(
        rooms,
        serde_json::json!([{"room":"r","participants":2},{"room":"s","participants":1}])
    );

    let (status, body) = server
        .http("GET", "/api/rooms/r/participants", Some(&admin))
        .await?;
    assert_eq!(status, 200);
    let list: Vec<huddle_proto::ParticipantInfo> = serde_json::from_str(&body)?;
    assert_eq!(
        list.iter().map(|p| p.identity.as_str()).collect::<Vec<_>>(),
        ["alice", "bob"]
    );
    assert_eq!(list[0].id, joined_id(&ja));
    assert_eq!(
        server
            .http("GET", "/api/rooms/nope/participants", Some(&admin))
            .await?
            .0,
        404
    );

    // Kicking needs the right room.
    assert_eq!(
        server
            .http(
                "DELETE",
                &format!("/api/rooms/s/participants/{b_id}"),
                Some(&admin)
            )
            .await?
            .0,
        404
    );
    assert_eq!(
        server
            .http(
                "DELETE",
                &format!("/api/rooms/r/participants/{b_id}"),
                Some(&admin)
            )
            .await?
            .0,
        204
    );
    assert_eq!(expect_closed(&mut b).await?, Some(4001));
    assert_eq!(
        recv(&mut a).await?,
        ServerMessage::ParticipantLeft {
            participant_id: b_id.clone()
        }
    );
    assert!(sfu
        .removed
        .lock()
        .unwrap()
        .contains(&ParticipantId(b_id.clone())));
    assert_eq!(
        server
            .http(
                "DELETE",
                &format!("/api/rooms/r/participants/{b_id}"),
                Some(&admin)
            )
            .await?
            .0,
        404
    );
    let (_, body) = server.http("GET", "/api/rooms", Some(&admin)).await?;
    assert!(body.contains(r#"{"room":"r","participants":1}"#), "{body}");
    ping_pong(&mut a).await?;
    server.stop().await
}

#[tokio::test]
async fn rate_limited_then_recovers() -> Result<()> {
    let mut config = SignalingConfig::new(SECRET);
    config.rate_per_sec = 20.0;
    config.rate_burst = 10.0;
    let (server, _sfu) = start_with(config).await?;
    let (mut ws, _) = server.join("r", "alice", false, false).await?;
    for _ in 0..30 {
        send_json(&mut ws, r#"{"type":"ping"}"#).await?;
    }
    // The excess is dropped; the client hears of it once per second, not
    // once per message.
    let mut limited = 0;
    let mut pongs = 0;
    while limited == 0 || pongs < 9 {
        match recv(&mut ws).await? {
            ServerMessage::Pong => pongs += 1,
            ServerMessage::Error {
                code: ErrorCode::RateLimited,
                ..
            } => limited += 1,
            m => bail!("unexpected {m:?}"),
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    // Whatever else the burst left comes before the answer to a mute.
    send_json(&mut ws, r#"{"type":"mute","track_id":"none","muted":true}"#).await?;
    loop {
        match recv(&mut ws).await? {
            ServerMessage::Pong => pongs += 1,
            ServerMessage::Error {
                code: ErrorCode::RateLimited,
                ..
            } => limited += 1,
            ServerMessage::Error {
                code: ErrorCode::UnknownTrack,
                ..
            } => break,
            m => bail!("unexpected {m:?}"),
        }
    }
    assert!(
        limited == 1 && (9..30).contains(&pongs),
        "limited {limited}, pongs {pongs}"
    );
    ping_pong(&mut ws).await?;
    server.stop().await
}

#[tokio::test]
async fn join_timeout_closes() -> Result<()> {
    let mut config = SignalingConfig::new(SECRET);
    config.join_timeout = std::time::Duration::from_millis(200);
    let (server, _sfu) = start_with(config).await?;
    let mut ws = server.connect(None).await?;
    expect_error(&mut ws, ErrorCode::NotJoined).await?;
    assert_eq!(expect_closed(&mut ws).await?, Some(1008));
    server.stop().await
}

/// Shutdown closes open WebSockets with 1001 and returns.
#[tokio::test]
async fn shutdown_closes_sockets() -> Result<()> {
    let (server, sfu) = start().await?;
    let (mut a, ja) = server.join("r", "alice", false, false).await?;
    let mut pre = server.connect(None).await?;
    ping_pong(&mut pre).await?;
    let app = server.app.clone();
    server.stop().await?;
    assert_eq!(expect_closed(&mut a).await?, Some(1001));
    assert_eq!(expect_closed(&mut pre).await?, Some(1001));
    assert_eq!(app.connection_count(), 0);
    assert!(sfu
        .removed
        .lock()
        .unwrap()
        .contains(&ParticipantId(joined_id(&ja))));
    Ok(())
}

/// The token and grace period `joined` gives for resuming.
fn resume_of(joined: &ServerMessage) -> huddle_proto::ResumeInfo {
    match joined {
        ServerMessage::Joined {
            resume: Some(r), ..
        } => r.clone(),
        other => panic!("no resume in {other:?}"),
    }
}

fn resume_msg(token: &str, received: u64) -> String {
    serde_json::json!({"type": "resume", "token": token, "received": received}).to_string()
}

/// Wait until the hub has parked `n` sessions.
async fn parked(server: &Server, n: usize) -> Result<()> {
    tokio::time::timeout(WAIT, async {
        while server.app.resumable().parked() != n {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await?;
    Ok(())
}

/// A socket that drops without `leave` parks the session: the room sees
/// nothing; a new connection resumes it with the token from `joined`, is
/// told how many client messages arrived, and gets every server message
/// after the count it gives, those queued while it was away included.
#[tokio::test]
async fn a_dropped_connection_is_resumed_and_nothing_is_missed() -> Result<()> {
    let (server, sfu) = start().await?;
    let (mut alice, ja) = server.join("r", "alice", true, true).await?;
    let alice_id = joined_id(&ja);
    let resume = resume_of(&ja);
    assert_eq!(resume.grace_ms, 20_000, "the default grace period");
    assert!(resume.token.len() >= 32);
    assert_eq!(
        recv(&mut alice).await?,
        ServerMessage::Offer {
            sdp: "fake-subscriber-offer".into()
        }
    );
    let (mut bob, _) = server.join("r", "bob", true, false).await?;
    assert!(matches!(
        recv(&mut alice).await?,
        ServerMessage::ParticipantJoined { .. }
    ));
    // alice has had 3 messages; she sent 1 (join).
    drop(alice);
    parked(&server, 1).await?;
    let (_carol, jc) = server.join("r", "carol", true, false).await?;
    let carol_id = joined_id(&jc);
    assert!(
        matches!(recv(&mut bob).await?, ServerMessage::ParticipantJoined { participant } if participant.id == carol_id),
        "bob hears of carol, and of no leave"
    );

    // Say only `joined` arrived: the offer and bob's join come again.
    let mut alice = server.connect(None).await?;
    send_json(&mut alice, &resume_msg(&resume.token, 1)).await?;
    assert_eq!(
        recv(&mut alice).await?,
        ServerMessage::Resumed {
            participant_id: alice_id.clone(),
            received: 1
        }
    );
    assert!(matches!(
        recv(&mut alice).await?,
        ServerMessage::Offer { .. }
    ));
    assert!(
        matches!(recv(&mut alice).await?, ServerMessage::ParticipantJoined { participant } if participant.identity == "bob")
    );
    assert!(
        matches!(recv(&mut alice).await?, ServerMessage::ParticipantJoined { participant } if participant.id == carol_id),
        "what was queued while away"
    );
    ping_pong(&mut alice).await?;
    assert_eq!(server.app.resumable().parked(), 0);
    assert!(!sfu
        .removed
        .lock()
        .unwrap()
        .contains(&ParticipantId(alice_id.clone())));
    assert_eq!(server.app.hub().participants("r").map(|p| p.len()), Some(3));
    ping_pong(&mut bob).await?; // bob heard nothing else: no leave, no join

    // The session goes on: resumed again, the count carries on (join,
    // resume not counted, ping).
    drop(alice);
    parked(&server, 1).await?;
    let mut alice = server.connect(None).await?;
    // joined, offer, bob, carol, pong.
    send_json(&mut alice, &resume_msg(&resume.token, 5)).await?;
    assert!(
        matches!(
            recv(&mut alice).await?,
            ServerMessage::Resumed { received: 2, .. }
        ),
        "join and ping counted"
    );
    send_json(&mut alice, r#"{"type":"leave"}"#).await?;
    assert_eq!(expect_closed(&mut alice).await?, Some(1000));
    assert!(
        matches!(recv(&mut bob).await?, ServerMessage::ParticipantLeft { participant_id } if participant_id == alice_id)
    );
    assert_eq!(
        server.app.resumable().len(),
        2,
        "bob's and carol's sessions"
    );
    server.stop().await
}

/// A new connection takes the session even from a connection the server
/// still thinks alive (a half-open TCP connection): the old one is let go.
#[tokio::test]
async fn a_resume_takes_the_session_from_a_connection_still_open() -> Result<()> {
    let (server, _sfu) = start().await?;
    let (mut old, ja) = server.join("r", "alice", true, false).await?;
    let alice_id = joined_id(&ja);
    let resume = resume_of(&ja);
    let (mut bob, _) = server.join("r", "bob", true, false).await?;
    assert!(matches!(
        recv(&mut old).await?,
        ServerMessage::ParticipantJoined { .. }
    ));
    // Say bob's join was lost with the old connection.
    let mut new = server.connect(None).await?;
    send_json(&mut new, &resume_msg(&resume.token, 1)).await?;
    assert!(
        matches!(recv(&mut new).await?, ServerMessage::Resumed { participant_id, received: 1 } if participant_id == alice_id)
    );
    assert!(
        matches!(recv(&mut new).await?, ServerMessage::ParticipantJoined { participant } if participant.identity == "bob"),
        "bob's join, sent to the old connection, comes again"
    );
    loop {
        match next(&mut old).await? {
            Got::Closed(_) => break,
            Got::Msg(_) => continue,
        }
    }
    ping_pong(&mut new).await?;
    ping_pong(&mut bob).await?;
    server.stop().await
}

/// What cannot be resumed is refused with `resume_failed` and a close:
/// an unknown token, a session whose grace period is over (the room saw
/// it leave), a count of more messages than were sent (the session ends:
/// the client must join again), a session kicked while away (its close
/// code), and a resume on a joined connection.
#[tokio::test]
async fn resume_refusals() -> Result<()> {
    let mut config = SignalingConfig::new(SECRET);
    config.resume_grace = std::time::Duration::from_millis(300);
    let (server, _sfu) = start_with(config).await?;
    let (mut bob, jb) = server.join("r", "bob", true, false).await?;
    assert_eq!(resume_of(&jb).grace_ms, 300);

    let mut ws = server.connect(None).await?;
    send_json(&mut ws, &resume_msg("not-a-token", 0)).await?;
    expect_error(&mut ws, ErrorCode::ResumeFailed).await?;
    assert_eq!(expect_closed(&mut ws).await?, Some(4004));

    send_json(&mut bob, &resume_msg(&resume_of(&jb).token, 1)).await?;
    expect_error(&mut bob, ErrorCode::AlreadyJoined).await?;

    // Not back in time.
    let (alice, ja) = server.join("r", "alice", true, false).await?;
    let alice_id = joined_id(&ja);
    assert!(matches!(
        recv(&mut bob).await?,
        ServerMessage::ParticipantJoined { .. }
    ));
    drop(alice);
    assert!(
        matches!(recv(&mut bob).await?, ServerMessage::ParticipantLeft { participant_id } if participant_id == alice_id)
    );
    let mut ws = server.connect(None).await?;
    send_json(&mut ws, &resume_msg(&resume_of(&ja).token, 1)).await?;
    expect_error(&mut ws, ErrorCode::ResumeFailed).await?;
    assert_eq!(expect_closed(&mut ws).await?, Some(4004));

    // Claims more than was sent: the session cannot be made whole.
    let (carol, jc) = server.join("r", "carol", true, false).await?;
    let carol_id = joined_id(&jc);
    assert!(matches!(
        recv(&mut bob).await?,
        ServerMessage::ParticipantJoined { .. }
    ));
    drop(carol);
    parked(&server, 1).await?;
    let mut ws = server.connect(None).await?;
    send_json(&mut ws, &resume_msg(&resume_of(&jc).token, 99)).await?;
    expect_error(&mut ws, ErrorCode::ResumeFailed).await?;
    assert_eq!(expect_closed(&mut ws).await?, Some(4004));
    assert!(
        matches!(recv(&mut bob).await?, ServerMessage::ParticipantLeft { participant_id } if participant_id == carol_id)
    );

    // Kicked while away: the resume learns it was kicked.
    let (dave, jd) = server.join("r", "dave", true, false).await?;
    let dave_id = joined_id(&jd);
    assert!(matches!(
        recv(&mut bob).await?,
        ServerMessage::ParticipantJoined { .. }
    ));
    drop(dave);
    parked(&server, 1).await?;
    let (status, _) = server
        .http(
            "DELETE",
            &format!("/api/rooms/r/participants/{dave_id}"),
            Some(&admin_token()),
        )
        .await?;
    assert_eq!(status, 204);
    assert!(
        matches!(recv(&mut bob).await?, ServerMessage::ParticipantLeft { participant_id } if participant_id == dave_id)
    );
    parked(&server, 0).await?;
    let mut ws = server.connect(None).await?;
    send_json(&mut ws, &resume_msg(&resume_of(&jd).token, 1)).await?;
    expect_error(&mut ws, ErrorCode::ResumeFailed).await?;
    assert_eq!(expect_closed(&mut ws).await?, Some(4001));
    ping_pong(&mut bob).await?;
    server.stop().await
}
