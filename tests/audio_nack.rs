//! Lost audio is asked for again (NACK, RFC 4585) and resent, both ways
//! through the SFU: the calling crate negotiates NACK for Opus and RED, the
//! SFU answers a subscriber's NACKs from the track's store and asks a
//! publisher for what its link lost. The huddle-netem relay in front of the
//! SFU cuts the media path for 300 ms, longer than RED's reach: first only
//! toward the clients (bob misses what the SFU forwarded), then both ways
//! (the SFU misses what alice sent). Both times bob ends up holding every
//! packet alice sent.

mod common;

use common::*;
use huddle::LocalTrack;
use std::sync::Arc;
use std::time::Duration;

/// alice speaks for 1.5 s; 0.4 s into it `cut(true)` runs, 0.3 s later
/// `cut(false)`. Waits until bob holds every packet she sent then.
async fn outage(mic: &Arc<LocalTrack>, bob: &Inbox, seed: u64, cut: impl Fn(bool)) {
    let sent = SentAudio::default();
    let speaking = tokio::spawn(send_speech(mic.clone(), seed, 75, sent.clone()));
    tokio::time::sleep(Duration::from_millis(400)).await;
    cut(true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    cut(false);
    within(10, "alice's speech", speaking)
        .await
        .expect("sender");
    let sent: Vec<u16> = sent.0.lock().expect("lock").keys().copied().collect();
    within(10, "every packet alice sent to reach bob", async {
        loop {
            let missing = {
                let ib = bob.lock().expect("lock");
                let r = ib.values().next().expect("alice's track");
                sent.iter().filter(|s| !r.packets.contains_key(s)).count()
            };
            if missing == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_lost_in_an_outage_is_resent_both_ways() {
    init_tracing();
    let (relay, server) = server_behind_relay(
        "audio-nack-secret-padded-to-32-bytes-long",
        Default::default(),
    )
    .await;

    let (alice, _alice_events) = join(&server, "nack", "alice", BOTH).await;
    let (_bob, bob_events) = join(&server, "nack", "bob", BOTH).await;
    let (bob_inbox, _rest) = collect(bob_events);
    let mic = within(20, "alice to publish", alice.publish_audio())
        .await
        .expect("publish");
    within(30, "bob to hear alice", async {
        let mut seed = 0;
        while total_packets(&bob_inbox) < 50 {
            seed += 1;
            send_speech(mic.clone(), seed, 5, SentAudio::default()).await;
        }
    })
    .await;

    let blocked = relay.stats().blocked;
    let resent = server.sfu().stats().await.expect("SFU stats").rtx_sent;
    outage(&mic, &bob_inbox, 77, |cut| relay.set_blocked_to_client(cut)).await;
    let toward_bob = relay.stats().blocked - blocked;
    let resent = server.sfu().stats().await.expect("SFU stats").rtx_sent - resent;
    println!("cut toward the clients: {toward_bob} datagrams dropped, the SFU resent {resent}");
    assert!(toward_bob >= 10, "the cut cost bob packets");
    assert!(resent >= 10, "the SFU resent what bob asked for");

    let blocked = relay.stats().blocked;
    outage(&mic, &bob_inbox, 78, |cut| relay.set_blocked(cut)).await;
    let both = relay.stats().blocked - blocked;
    println!("cut both ways: {both} datagrams dropped");
    assert!(both >= 10, "the cut cost the SFU alice's packets");
    server.shutdown().await.expect("shutdown");
}
