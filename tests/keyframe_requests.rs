//! Keyframe requests from subscribers reach the publisher through the SFU,
//! merged: a burst of requests from two subscribers becomes at most one
//! request now and one at the end of the merge interval (500 ms).

mod common;

use common::*;
use huddle::CallEvent;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyframe_requests_reach_the_publisher_merged() {
    init_tracing();
    let server = huddle_server::start(huddle_server::ServerConfig::ephemeral(
        "kf-secret-padded-to-32-bytes-or-more",
    ))
    .await
    .expect("server");
    let (alice, _ae) = join(&server, "r", "alice", BOTH).await;
    let (_bob, mut be) = join(&server, "r", "bob", BOTH).await;
    let (_carol, mut ce) = join(&server, "r", "carol", BOTH).await;
    let camera = within(20, "publish video", alice.publish_video())
        .await
        .expect("video");
    let requests = Arc::new(AtomicUsize::new(0));
    {
        let (camera, requests) = (camera.clone(), requests.clone());
        tokio::spawn(async move {
            while camera.keyframe_requested().await {
                requests.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    let video = tokio::spawn(send_video(camera.clone(), 15 * 6));

    let mut subscribed = Vec::new();
    for events in [&mut be, &mut ce] {
        let track = within(20, "video subscription", async {
            loop {
                match events.recv().await {
                    Some(CallEvent::TrackSubscribed(t)) => break t,
                    Some(_) => continue,
                    None => panic!("events ended"),
                }
            }
        })
        .await;
        // Wait for media so the subscription is fully set up.
        within(10, "first video packet", track.recv())
            .await
            .expect("packet");
        subscribed.push(track);
    }
    // New subscriptions ask for a keyframe themselves; let that settle.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let before = requests.load(Ordering::SeqCst);
    assert!(
        before >= 1,
        "subscribing did not ask the publisher for a keyframe"
    );

    // A burst: 10 requests from each subscriber within ~50 ms.
    for _ in 0..10 {
        for t in &subscribed {
            t.request_keyframe().await.expect("PLI");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let burst = requests.load(Ordering::SeqCst) - before;
    println!("publisher saw {before} requests at setup, {burst} for a burst of 20");
    assert!(burst >= 1, "no keyframe request reached the publisher");
    assert!(
        burst <= 2,
        "requests were not merged: {burst} reached the publisher"
    );
    video.abort();
    server.shutdown().await.expect("shutdown");
}
