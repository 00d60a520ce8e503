//! A call whose signaling WebSocket drops takes its session back: media
//! keeps flowing, nothing is published again, and nobody sees it leave.
//! Past the server's grace period, a participant that does not come back
//! has left; when its network comes back it joins again, as a new
//! participant.
//!
//! The drop is real: alice's WebSocket goes through a TCP relay on
//! 127.0.0.1 that the test cuts (both sides see the TCP connection end,
//! without a WebSocket close).

mod common;

use common::relay::{join_through, Relay};
use common::total_packets as packets;
use common::*;
use huddle::CallEvent;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_signaling_connection_is_resumed_without_anyone_noticing() {
    init_tracing();
    let server = huddle_server::start(huddle_server::ServerConfig::ephemeral(
        "resume-secret-padded-to-32-bytes-or-more",
    ))
    .await
    .expect("server");
    let relay = Relay::start(server.http_addr()).await;
    let (alice, mut alice_events) = join_through(&relay, &server, "r", "alice").await;
    let alice_id = alice.participant_id().clone();
    let (bob, bob_events) = join(&server, "r", "bob", BOTH).await;
    let (inbox, mut bob_rest) = collect(bob_events);
    let mic = within(20, "publish", alice.publish_audio())
        .await
        .expect("audio");
    let sending = tokio::spawn(send_speech(mic.clone(), 7, 400, SentAudio::default()));
    within(20, "bob hears alice", async {
        while packets(&inbox) < 25 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    // What bob heard before the drop: alice's audio track.
    let mut before = Vec::new();
    while let Ok(ev) = bob_rest.try_recv() {
        if let CallEvent::TrackPublished { kind, .. } = ev {
            before.push(kind);
        }
    }
    assert_eq!(before, [huddle::proto::TrackKind::Audio]);

    relay.cut();
    next_event(&mut alice_events, 10, "Reconnecting", |ev| {
        matches!(ev, CallEvent::Reconnecting).then_some(())
    })
    .await;
    let at_drop = packets(&inbox);
    next_event(&mut alice_events, 10, "Reconnected", |ev| {
        matches!(ev, CallEvent::Reconnected { rejoined: false }).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        packets(&inbox) > at_drop + 10,
        "alice's audio kept reaching bob: {} then {}",
        at_drop,
        packets(&inbox)
    );
    assert_eq!(alice.participant_id(), alice_id);

    // Signaling works on the new connection: a new track is negotiated
    // and announced to bob; the old one was not published again.
    let cam = within(20, "publish video after resuming", alice.publish_video())
        .await
        .expect("video");
    // Announced once the server receives it.
    let filming = tokio::spawn(send_video(cam, 150));
    let mut published = Vec::new();
    within(10, "bob hears of the video", async {
        while let Some(ev) = bob_rest.recv().await {
            match ev {
                CallEvent::ParticipantLeft(p) | CallEvent::ParticipantJoined(p) => {
                    panic!("bob saw {} leave or join", p.name())
                }
                CallEvent::TrackPublished {
                    participant, kind, ..
                } if participant.id == alice_id => {
                    published.push(kind);
                    if kind == huddle::proto::TrackKind::Video {
                        return;
                    }
                }
                _ => {}
            }
        }
    })
    .await;
    assert_eq!(
        published,
        [huddle::proto::TrackKind::Video],
        "only the new track was announced"
    );
    let stats = server.sfu().stats().await.expect("stats");
    assert_eq!(stats.participants, 2, "{stats:?}");

    sending.abort();
    filming.abort();
    alice.leave().await.expect("leave");
    bob.leave().await.expect("leave");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_not_back_in_time_leaves_and_joins_again_when_it_can() {
    init_tracing();
    let mut config =
        huddle_server::ServerConfig::ephemeral("resume-secret-padded-to-32-bytes-or-more");
    config.limits.resume_grace = Duration::from_millis(1500);
    let server = huddle_server::start(config).await.expect("server");
    let relay = Relay::start(server.http_addr()).await;
    let (alice, mut alice_events) = join_through(&relay, &server, "r", "alice").await;
    let alice_id = alice.participant_id().clone();
    let (_bob, mut bob_events) = join(&server, "r", "bob", BOTH).await;

    relay.refuse(true);
    relay.cut();
    next_event(&mut alice_events, 10, "Reconnecting", |ev| {
        matches!(ev, CallEvent::Reconnecting).then_some(())
    })
    .await;
    let left = next_event(&mut bob_events, 10, "alice leaves", |ev| match ev {
        CallEvent::ParticipantLeft(p) => Some(p),
        _ => None,
    })
    .await;
    assert_eq!(left.id, alice_id);
    within(5, "the SFU to forget alice", async {
        while server.sfu().stats().await.expect("stats").participants != 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    // Her network comes back: the session is gone, so she joins again, as
    // a new participant.
    relay.refuse(false);
    next_event(&mut alice_events, 10, "Reconnected (joined again)", |ev| {
        matches!(ev, CallEvent::Reconnected { rejoined: true }).then_some(())
    })
    .await;
    let again = next_event(&mut bob_events, 10, "alice joins again", |ev| match ev {
        CallEvent::ParticipantJoined(p) => Some(p),
        _ => None,
    })
    .await;
    assert_eq!(again.id, alice.participant_id());
    assert_ne!(again.id, alice_id);
    server.shutdown().await.expect("shutdown");
}
