//! A server with two SFU workers: two rooms land on different workers (each
//! with its own media port), media flows in both, and a room stays on its
//! worker as people join and leave.

mod common;

use common::total_packets as count;
use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rooms_run_on_two_workers() {
    init_tracing();
    let mut config =
        huddle_server::ServerConfig::ephemeral("workers-secret-padded-to-32-bytes-or-more");
    config.workers = 2;
    let server = huddle_server::start(config).await.expect("server");
    let addrs = server.sfu().local_addrs();
    assert_eq!(addrs.len(), 2);
    assert_ne!(addrs[0], addrs[1], "each worker has its own port");

    // Room "a": alice talks to bob. Room "b": carol talks to dave.
    let (alice, _ae) = join(&server, "a", "alice", BOTH).await;
    let (_bob, be) = join(&server, "a", "bob", BOTH).await;
    let (carol, _ce) = join(&server, "b", "carol", BOTH).await;
    let (_dave, de) = join(&server, "b", "dave", BOTH).await;
    let (bob_inbox, _br) = collect(be);
    let (dave_inbox, _dr) = collect(de);
    let alice_mic = within(20, "alice publishes", alice.publish_audio())
        .await
        .expect("audio");
    let carol_mic = within(20, "carol publishes", carol.publish_audio())
        .await
        .expect("audio");

    // Send until both listeners hear something, then one more second.
    within(30, "audio flowing in both rooms", async {
        let mut seed = 0;
        while count(&bob_inbox) == 0 || count(&dave_inbox) == 0 {
            seed += 1;
            tokio::join!(
                send_speech(alice_mic.clone(), seed, 5, SentAudio::default()),
                send_speech(carol_mic.clone(), seed + 1000, 5, SentAudio::default()),
            );
        }
    })
    .await;
    within(20, "one more second", async {
        tokio::join!(
            send_speech(alice_mic.clone(), 1, 50, SentAudio::default()),
            send_speech(carol_mic.clone(), 2, 50, SentAudio::default()),
        )
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(count(&bob_inbox) > 40, "bob heard {}", count(&bob_inbox));
    assert!(count(&dave_inbox) > 40, "dave heard {}", count(&dave_inbox));
    // Each listener hears only their own room.
    for (inbox, other) in [
        (&bob_inbox, carol.participant_id()),
        (&dave_inbox, alice.participant_id()),
    ] {
        let heard_other = inbox
            .lock()
            .expect("lock")
            .values()
            .any(|r| r.publisher.as_ref() == Some(&other));
        assert!(!heard_other, "media crossed rooms");
    }

    let each = server.sfu().worker_stats().await.expect("stats");
    println!("workers: {each:?}");
    for (i, w) in each.iter().enumerate() {
        assert_eq!(w.participants, 2, "worker {i} holds one room of two");
        assert!(w.rtp_out > 40, "worker {i} forwarded {}", w.rtp_out);
    }

    // A third participant of room "a" must land on that room's worker, or
    // she could not hear alice.
    let (_erin, ee) = join(&server, "a", "erin", BOTH).await;
    let (erin_inbox, _er) = collect(ee);
    within(30, "erin hears alice", async {
        let mut seed = 5000;
        while count(&erin_inbox) < 40 {
            seed += 1;
            send_speech(alice_mic.clone(), seed, 5, SentAudio::default()).await;
        }
    })
    .await;
    let each = server.sfu().worker_stats().await.expect("stats");
    let mut held: Vec<usize> = each.iter().map(|w| w.participants).collect();
    held.sort_unstable();
    assert_eq!(held, vec![2, 3], "rooms stay whole: {each:?}");
    let total = server.sfu().stats().await.expect("stats");
    assert_eq!(total.participants, 5);
    server.shutdown().await.expect("shutdown");
}
