//! The audio level a sender measures travels in the RFC 6464 header extension
//! and the SFU reads it per track: loud speech shows a low -dBov value with
//! the voice flag, silence shows 127 without it.

mod common;

use common::*;
use huddle::CallEvent;
use huddle_media::source::Tone;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sfu_sees_who_is_loud() {
    init_tracing();
    let server = huddle_server::start(huddle_server::ServerConfig::ephemeral(
        "level-secret-padded-to-32-bytes-or-more",
    ))
    .await
    .expect("server");
    let (alice, _ae) = join(&server, "r", "alice", BOTH).await;
    let alice_id = alice.participant_id().to_owned();

    // A tone of amplitude 16000: RMS 11314, -9.2 dBov.
    let loud = within(
        20,
        "send loud",
        alice.send_audio(
            Box::new(Tone::new(440.0, 16_000).with_frames(50)),
            Default::default(),
        ),
    )
    .await
    .expect("send_audio");
    within(10, "loud tone", loud.finished())
        .await
        .expect("sent");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let levels = server.sfu().audio_levels().await.expect("levels");
    println!("while loud: {levels:?}");
    let l = levels
        .iter()
        .find(|l| alice_id == l.participant.0.as_str())
        .expect("the SFU has alice's audio level");
    assert!(
        (8..=10).contains(&l.level),
        "level {} for a -9 dBov tone",
        l.level
    );
    assert!(l.voice);

    let quiet = within(
        20,
        "send silence",
        alice.send_audio(
            Box::new(Tone::new(440.0, 0).with_frames(25)),
            Default::default(),
        ),
    )
    .await
    .expect("send_audio");
    within(10, "silence", quiet.finished()).await.expect("sent");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let levels = server.sfu().audio_levels().await.expect("levels");
    println!("while silent: {levels:?}");
    assert!(
        levels
            .iter()
            .any(|l| alice_id == l.participant.0.as_str() && l.level == 127 && !l.voice),
        "silence not reported: {levels:?}"
    );
    server.shutdown().await.expect("shutdown");
}

/// From those levels the SFU picks the room's active speaker and tells every
/// participant: the one who talks, while the other stays quiet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everyone_is_told_who_speaks() {
    init_tracing();
    let server = huddle_server::start(huddle_server::ServerConfig::ephemeral(
        "speaker-secret-padded-to-32-bytes-or-more",
    ))
    .await
    .expect("server");
    let (alice, mut alice_events) = join(&server, "r", "alice", BOTH).await;
    let (bob, mut bob_events) = join(&server, "r", "bob", BOTH).await;
    let alice_id = alice.participant_id().to_owned();
    let bob_id = bob.participant_id().to_owned();

    // bob sends silence all along; alice talks (a loud tone) for 2 s.
    let quiet = within(
        20,
        "bob's silence",
        bob.send_audio(
            Box::new(Tone::new(440.0, 0).with_frames(150)),
            Default::default(),
        ),
    )
    .await
    .expect("send_audio");
    let loud = within(
        20,
        "alice's tone",
        alice.send_audio(
            Box::new(Tone::new(300.0, 12_000).with_frames(100)),
            Default::default(),
        ),
    )
    .await
    .expect("send_audio");

    for (who, events) in [("bob", &mut bob_events), ("alice", &mut alice_events)] {
        let speaker = next_event(events, 10, "an active_speaker event", |ev| match ev {
            CallEvent::ActiveSpeaker { speaker } => Some(speaker),
            _ => None,
        })
        .await
        .expect("someone speaks");
        assert_eq!(
            speaker.id, alice_id,
            "{who} is told alice speaks (bob is {bob_id})"
        );
        assert_eq!(speaker.name(), "alice", "{who} is told the speaker's name");
    }
    within(10, "alice's tone", loud.finished())
        .await
        .expect("sent");
    within(10, "bob's silence", quiet.finished())
        .await
        .expect("sent");

    // alice leaves: bob is told there is no active speaker any more.
    alice.leave().await.expect("leave");
    let speaker = next_event(&mut bob_events, 10, "the speaker to leave", |ev| match ev {
        CallEvent::ActiveSpeaker { speaker } => Some(speaker),
        _ => None,
    })
    .await;
    assert_eq!(speaker, None);
    server.shutdown().await.expect("shutdown");
}
