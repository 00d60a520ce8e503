//! Dropping a `Call` without calling `leave` still leaves the room: the others
//! are told and the SFU forgets the participant.

mod common;

use common::*;
use huddle::CallEvent;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_call_leaves_the_room() {
    init_tracing();
    let server = huddle_server::start(huddle_server::ServerConfig::ephemeral(
        "drop-secret-padded-to-32-bytes-or-more",
    ))
    .await
    .expect("server");
    let (stay, mut events) = join(&server, "r", "stay", BOTH).await;
    let (gone, _gone_events) = join(&server, "r", "gone", BOTH).await;
    let gone_id = gone.participant_id().to_owned();
    let mic = within(20, "publish", gone.publish_audio())
        .await
        .expect("audio");
    within(
        20,
        "audio",
        send_speech(mic.clone(), 1, 25, SentAudio::default()),
    )
    .await;
    drop(gone);
    drop(mic);
    within(10, "participant_left", async {
        while let Some(ev) = events.recv().await {
            if matches!(&ev, CallEvent::ParticipantLeft(p) if p.id == gone_id) {
                return;
            }
        }
        panic!("events ended");
    })
    .await;
    let stats = server.sfu().stats().await.expect("stats");
    assert_eq!(stats.participants, 1, "{stats:?}");
    assert_eq!(stats.tracks, 0, "{stats:?}");
    stay.leave().await.expect("leave");
    server.shutdown().await.expect("shutdown");
}
