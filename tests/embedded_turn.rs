//! huddle-server's embedded TURN server (`[turn]`, `huddle-turn`) carries a
//! participant that may use relayed paths only: its credentials come in
//! `joined`, its media goes through the relay (the server's TURN counters
//! show it), and the same call works with every TURN URL the server hands
//! out (UDP and TCP). With credentials shorter than the call, the server
//! renews them (`ice_servers`), the call restarts ICE with the new ones and
//! goes on. A server with TURN over TLS alone carries the participant too:
//! webrtc-rs reaches TURN over UDP only, so the calling crate carries its
//! TURN messages over the TLS stream (`turn_doorway`). Chromium over
//! TURN/UDP, TCP and TLS, and huddle-call over TCP and TLS from a network
//! without UDP: tests/browser/turn_relay.test.js.

mod common;

use common::*;
use huddle::{Call, CallOptions, LocalTrack};
use std::sync::Arc;
use std::time::Duration;

/// A server with the embedded TURN server on loopback, credentials valid
/// `ttl_secs`; bob joined directly, alice relay-only, both publishing.
struct Relayed {
    server: huddle_server::RunningServer,
    alice: (Call, Inbox, Arc<LocalTrack>),
    bob: (Call, Inbox, Arc<LocalTrack>),
}

async fn relayed_call(ttl_secs: u64) -> Relayed {
    let mut config =
        huddle_server::ServerConfig::ephemeral("embedded-turn-secret-padded-to-32-bytes");
    config.turn.listen = Some("127.0.0.1:0".parse().expect("address"));
    config.turn_credential_ttl_secs = ttl_secs;
    let server = huddle_server::start(config).await.expect("server");
    let turn = server.turn_addrs().expect("the TURN server runs");
    assert!(turn.udp.is_some() && turn.tcp.is_some());
    relayed_through(server, Vec::new()).await
}

/// bob joined to `server` directly, alice relay-only (trusting
/// `tls_roots` for `turns:`), both publishing.
async fn relayed_through(server: huddle_server::RunningServer, tls_roots: Vec<Vec<u8>>) -> Relayed {
    let (bob, bob_events) = join(&server, "relayed", "bob", BOTH).await;
    let token = server.mint_token("relayed", "alice", BOTH).expect("token");
    let only_relay = CallOptions {
        relay_only: true,
        timeout: Some(Duration::from_secs(15)),
        tls_roots,
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
    Relayed {
        server,
        alice: (alice, alice_inbox, a_mic),
        bob: (bob, bob_inbox, b_mic),
    }
}

impl Relayed {
    /// Both speak for `frames` 20 ms frames; what each received meanwhile
    /// (bob from alice, alice from bob).
    async fn speak(&self, seed: u64, frames: usize) -> (usize, usize) {
        let before = (total_packets(&self.bob.1), total_packets(&self.alice.1));
        let x = send_speech(self.alice.2.clone(), seed, frames, SentAudio::default());
        let y = send_speech(
            self.bob.2.clone(),
            seed + 1000,
            frames,
            SentAudio::default(),
        );
        tokio::join!(x, y);
        // What was sent last is on its way.
        tokio::time::sleep(Duration::from_millis(200)).await;
        (
            total_packets(&self.bob.1) - before.0,
            total_packets(&self.alice.1) - before.1,
        )
    }

    /// Until audio flows both ways.
    async fn flowing(&self) {
        speak_until_both_hear(&self.alice.2, &self.alice.1, &self.bob.2, &self.bob.1).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_turn_server_carries_a_relay_only_participant() {
    init_tracing();
    let call = relayed_call(3600).await;
    call.flowing().await;
    let stats = call.server.turn_stats().expect("stats");
    println!(
        "through the embedded relay: bob got {} packets from alice, alice {} from bob; {stats:?}",
        total_packets(&call.bob.1),
        total_packets(&call.alice.1)
    );
    // Both of alice's connections (publish, subscribe) are relayed.
    assert!(stats.allocations >= 2, "{stats:?}");
    assert!(stats.relayed >= 100, "{stats:?}");
    assert_eq!(stats.refused_peers, 0, "{stats:?}");
    call.server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_call_outlives_its_turn_credentials() {
    init_tracing();
    // Valid 6 s, renewed every 4.5 s (`ice_servers`). The relays in use
    // stay; new allocations need unexpired credentials.
    let call = relayed_call(6).await;
    call.flowing().await;
    // 10 s: the credentials of `joined` expire within it.
    let (to_bob, to_alice) = call.speak(1, 500).await;
    println!("10 s through a credential expiry: bob got {to_bob} of 500, alice {to_alice}");
    assert!(
        to_bob >= 450 && to_alice >= 450,
        "the call goes on through its relay, without a gap"
    );
    // A restart now (a network change, say) allocates with the renewed
    // credentials: the first ones would be refused.
    let before = call.server.turn_stats().expect("stats");
    within(20, "alice's ICE restart", call.alice.0.restart_ice())
        .await
        .expect("restart");
    let (last_bob, last_alice) = call.speak(2, 150).await;
    let (again_bob, again_alice) = call.speak(3, 150).await;
    let stats = call.server.turn_stats().expect("stats");
    println!(
        "after the restart, 3 s then 3 s: bob got {last_bob}, {again_bob}; alice {last_alice}, {again_alice}; {before:?} -> {stats:?}"
    );
    assert!(
        again_bob >= 100 && again_alice >= 100,
        "audio flows both ways through the new relays"
    );
    assert!(
        stats.allocated > before.allocated,
        "new allocations, made with the renewed credentials: {stats:?}"
    );
    call.server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_only_participant_reaches_turn_over_tls() {
    init_tracing();
    // A certificate for 127.0.0.1 that alice trusts, as an operator's
    // clients trust its CA; TURN over TLS only, so `turns:` is the one
    // relay there is.
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).expect("certificate");
    let dir = std::env::temp_dir().join(format!("huddle-turns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_file, cert.cert.pem()).expect("cert");
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).expect("key");
    let mut config =
        huddle_server::ServerConfig::ephemeral("embedded-turn-secret-padded-to-32-bytes");
    config.turn.tls_listen = Some("127.0.0.1:0".parse().expect("address"));
    config.turn.tls_cert = Some(cert_file);
    config.turn.tls_key = Some(key_file);
    let server = huddle_server::start(config).await.expect("server");
    let turn = server.turn_addrs().expect("the TURN server runs");
    assert!(turn.udp.is_none() && turn.tcp.is_none() && turn.tls.is_some());

    let call = relayed_through(server, vec![cert.cert.der().to_vec()]).await;
    call.flowing().await;
    let (to_bob, to_alice) = call.speak(7, 150).await;
    let stats = call.server.turn_stats().expect("stats");
    println!("3 s through TURN/TLS: bob got {to_bob} of 150, alice {to_alice}; {stats:?}");
    assert!(to_bob >= 140 && to_alice >= 140, "audio flows both ways");
    assert!(
        stats.allocations >= 2,
        "both of alice's connections relay: {stats:?}"
    );
    call.server.shutdown().await.expect("shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}
