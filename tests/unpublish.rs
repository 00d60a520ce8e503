//! Unpublishing: a track renegotiated away by its publisher leaves the room
//! (`track_unpublished` for everyone, nothing more forwarded), while the
//! publisher's other tracks and the call go on.

mod common;

use common::*;
use huddle::CallEvent;
use huddle_media::source::Tone;
use huddle_proto::TrackKind;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpublished_track_leaves_the_room() {
    init_tracing();
    let server = huddle_server::start(huddle_server::ServerConfig::ephemeral(
        "unpublish-secret-padded-to-32-bytes-or-more",
    ))
    .await
    .expect("server");
    let (alice, _alice_events) = join(&server, "r", "alice", BOTH).await;
    let (_bob, mut bob_events) = join(&server, "r", "bob", BOTH).await;

    // alice sends a tone on one track and publishes a second audio track.
    let tone = within(
        20,
        "send_audio",
        alice.send_audio(
            Box::new(Tone::new(440.0, 8000).with_frames(1000)),
            Default::default(),
        ),
    )
    .await
    .expect("send_audio");
    let second = within(20, "publish", alice.publish_audio())
        .await
        .expect("publish");
    let remote = next_event(
        &mut bob_events,
        10,
        "bob to get alice's tone",
        |ev| match ev {
            CallEvent::TrackSubscribed(t) if t.kind() == TrackKind::Audio => Some(t),
            _ => None,
        },
    )
    .await;
    within(5, "a packet", remote.recv()).await.expect("packet");
    // The id bob knows the track by is the room-wide one.
    let server_id = remote.track_id().clone();
    assert_eq!(server.sfu().stats().await.expect("stats").tracks, 1);

    let track = tone.track().clone();
    tone.stop();
    within(20, "unpublish", alice.unpublish(&track))
        .await
        .expect("unpublish");

    let gone = next_event(&mut bob_events, 10, "bob to be told", |ev| match ev {
        CallEvent::TrackUnpublished { track_id, .. } => Some(track_id),
        _ => None,
    })
    .await;
    assert_eq!(gone, server_id);
    assert_eq!(server.sfu().stats().await.expect("stats").tracks, 0);

    // Nothing more reaches the SFU from the unpublished track.
    let before = server.sfu().stats().await.expect("stats").rtp_in;
    for _ in 0..10 {
        let _ = track
            .write_audio_frame(huddle::AudioFrame {
                payload: &[0xF8, 0xFF, 0xFE],
                duration: Duration::from_millis(20),
                level: huddle::AudioLevel::SILENCE,
            })
            .await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.sfu().stats().await.expect("stats").rtp_in, before);

    // A second unpublish is refused; the other track can still go.
    assert!(alice.unpublish(&track).await.is_err());
    within(20, "unpublish the second", alice.unpublish(&second))
        .await
        .expect("unpublish second");
    server.shutdown().await.expect("shutdown");
}
