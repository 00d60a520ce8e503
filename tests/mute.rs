//! Muting a track stops its media at the subscribers and tells the room;
//! unmuting brings both back.

mod common;

use common::*;
use huddle::CallEvent;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mute_stops_media_and_tells_the_room() {
    init_tracing();
    let server = huddle_server::start(huddle_server::ServerConfig::ephemeral(
        "mute-secret-padded-to-32-bytes-or-more",
    ))
    .await
    .expect("server");
    let (alice, _ae) = join(&server, "r", "alice", BOTH).await;
    let (_bob, be) = join(&server, "r", "bob", BOTH).await;
    let (inbox, mut rest) = collect(be);
    let mic = within(20, "publish", alice.publish_audio())
        .await
        .expect("audio");

    let count = || {
        inbox
            .lock()
            .expect("lock")
            .values()
            .map(|r| r.packets.len())
            .sum::<usize>()
    };
    // Send until bob hears alice (his subscription is set up after her
    // first packet reaches the SFU), then one more second.
    within(20, "audio flowing", async {
        let mut seed = 0;
        while count() == 0 {
            seed += 1;
            send_speech(mic.clone(), seed, 5, SentAudio::default()).await;
        }
    })
    .await;
    within(
        20,
        "more audio",
        send_speech(mic.clone(), 1, 50, SentAudio::default()),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(count() > 40, "too little audio before muting: {}", count());

    alice.set_muted(&mic, true).await.expect("mute");
    within(10, "mute_changed", async {
        while let Some(ev) = rest.recv().await {
            if let CallEvent::MuteChanged { muted: true, .. } = ev {
                return;
            }
        }
    })
    .await;
    let at_mute = count();
    within(
        20,
        "muted sending",
        send_speech(mic.clone(), 2, 50, SentAudio::default()),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let while_muted = count() - at_mute;
    println!("packets while muted: {while_muted}");
    assert!(
        while_muted <= 2,
        "{while_muted} packets arrived while muted"
    );

    alice.set_muted(&mic, false).await.expect("unmute");
    within(10, "unmute", async {
        while let Some(ev) = rest.recv().await {
            if let CallEvent::MuteChanged { muted: false, .. } = ev {
                return;
            }
        }
    })
    .await;
    let at_unmute = count();
    within(
        20,
        "unmuted sending",
        send_speech(mic.clone(), 3, 50, SentAudio::default()),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = count() - at_unmute;
    println!("packets after unmuting: {after}/50");
    assert!(after >= 45, "only {after}/50 after unmuting");
    server.shutdown().await.expect("shutdown");
}
