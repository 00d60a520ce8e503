//! huddle-server's embedded TURN server (`[turn]`, `huddle-turn`) carries a
//! participant that may use relayed paths only: its credentials come in
//! `joined`, its media goes through the relay (the server's TURN counters
//! show it), and the same call works with every TURN URL the server hands
//! out (UDP and TCP). Chromium over TURN/UDP, TCP and TLS:
//! tests/browser/turn_relay.test.js.

mod common;

use common::*;
use huddle::{Call, CallOptions};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_turn_server_carries_a_relay_only_participant() {
    init_tracing();
    let mut config =
        huddle_server::ServerConfig::ephemeral("embedded-turn-secret-padded-to-32-bytes");
    config.turn.listen = Some("127.0.0.1:0".parse().expect("address"));
    let server = huddle_server::start(config).await.expect("server");
    let turn = server.turn_addrs().expect("the TURN server runs");
    assert!(turn.udp.is_some() && turn.tcp.is_some());

    let (bob, bob_events) = join(&server, "relayed", "bob", BOTH).await;
    let token = server.mint_token("relayed", "alice", BOTH).expect("token");
    let only_relay = CallOptions {
        relay_only: true,
        timeout: Some(Duration::from_secs(15)),
        ..Default::default()
    };
    let (alice, alice_events) = within(
        20,
        "alice to join",
        Call::join_with(&server.ws_url(), &token, only_relay),
    )
    .await
    .expect("alice joins");
    let (bob_inbox, _b) = collect(bob_events);
    let (alice_inbox, _a) = collect(alice_events);
    let a_mic = within(20, "alice to publish", alice.publish_audio())
        .await
        .expect("publish");
    let b_mic = within(20, "bob to publish", bob.publish_audio())
        .await
        .expect("publish");
    within(30, "audio both ways", async {
        let mut seed = 0;
        while total_packets(&alice_inbox) < 50 || total_packets(&bob_inbox) < 50 {
            seed += 1;
            let x = send_speech(a_mic.clone(), seed, 5, SentAudio::default());
            let y = send_speech(b_mic.clone(), seed + 1000, 5, SentAudio::default());
            tokio::join!(x, y);
        }
    })
    .await;
    let stats = server.turn_stats().expect("stats");
    println!(
        "through the embedded relay: bob got {} packets from alice, alice {} from bob; {stats:?}",
        total_packets(&bob_inbox),
        total_packets(&alice_inbox)
    );
    // Both of alice's connections (publish, subscribe) are relayed.
    assert!(stats.allocations >= 2, "{stats:?}");
    assert!(stats.relayed >= 100, "{stats:?}");
    assert_eq!(stats.refused_peers, 0, "{stats:?}");
    server.shutdown().await.expect("shutdown");
}
