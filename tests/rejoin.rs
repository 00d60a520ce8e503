//! When the server restarts, calls join the room again by themselves and
//! publish their tracks again: the participants hear each other again.
//!
//! alice reaches the server through a TCP relay that the test cuts before
//! stopping the server (her connection just dies, as when a server is
//! killed: she tries to resume, is refused by the new server, and joins
//! again); bob is connected directly and sees the server go away (close
//! 1001), and joins again at once.
//!
//! And when the media path fails while signaling survives (a UDP relay in
//! front of the SFU stops relaying), the SFU drops both participants' media
//! (close 4002) and they join again once the path is back.

mod common;

use common::relay::{join_through, Relay};
use common::*;
use huddle::CallEvent;
use std::time::{Duration, Instant};

const SECRET: &str = "rejoin-secret-padded-to-32-bytes-or-more";

/// Packets received from `publisher`'s tracks.
fn heard(inbox: &Inbox, publisher: &huddle::ParticipantId) -> usize {
    inbox
        .lock()
        .expect("lock")
        .values()
        .filter(|r| r.publisher.as_ref() == Some(publisher))
        .map(|r| r.packets.len())
        .sum()
}

/// Two calls in one room, each publishing audio and talking.
struct Pair {
    alice: huddle::Call,
    bob: huddle::Call,
    alice_inbox: Inbox,
    bob_inbox: Inbox,
    alice_rest: tokio::sync::mpsc::UnboundedReceiver<CallEvent>,
    bob_rest: tokio::sync::mpsc::UnboundedReceiver<CallEvent>,
    talking: [tokio::task::JoinHandle<()>; 2],
}

/// Both publish audio and talk for `frames` 20 ms frames; returns once each
/// hears the other.
async fn talking(
    (alice, alice_events): (huddle::Call, huddle::CallEvents),
    (bob, bob_events): (huddle::Call, huddle::CallEvents),
    frames: usize,
) -> Pair {
    let (alice_inbox, alice_rest) = collect(alice_events);
    let (bob_inbox, bob_rest) = collect(bob_events);
    let alice_mic = within(20, "alice publishes", alice.publish_audio())
        .await
        .expect("audio");
    let bob_mic = within(20, "bob publishes", bob.publish_audio())
        .await
        .expect("audio");
    let talking = [
        tokio::spawn(send_speech(alice_mic, 1, frames, SentAudio::default())),
        tokio::spawn(send_speech(bob_mic, 2, frames, SentAudio::default())),
    ];
    let (alice_id, bob_id) = (alice.participant_id(), bob.participant_id());
    within(20, "each hears the other", async {
        while heard(&bob_inbox, &alice_id) < 25 || heard(&alice_inbox, &bob_id) < 25 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    Pair {
        alice,
        bob,
        alice_inbox,
        bob_inbox,
        alice_rest,
        bob_rest,
        talking,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_join_again_when_the_server_restarts() {
    init_tracing();
    let config = huddle_server::ServerConfig::ephemeral(SECRET);
    let server = huddle_server::start(config.clone()).await.expect("server");
    let http = server.http_addr();
    let relay = Relay::start(http).await;
    let alice = join_through(&relay, &server, "r", "alice").await;
    let bob = join(&server, "r", "bob", BOTH).await;
    // Both talk for the whole test (the tracks outlive the restart).
    let Pair {
        alice,
        bob,
        alice_inbox,
        bob_inbox,
        mut alice_rest,
        mut bob_rest,
        talking,
    } = talking(alice, bob, 2000).await;
    let (alice_id, bob_id) = (alice.participant_id(), bob.participant_id());

    relay.cut();
    server.shutdown().await.expect("shutdown");
    let mut config = config;
    config.http = http;
    let server = huddle_server::start(config).await.expect("restart");
    let up = Instant::now();

    for (who, rest) in [("alice", &mut alice_rest), ("bob", &mut bob_rest)] {
        within(20, &format!("{who} joins again"), async {
            while let Some(ev) = rest.recv().await {
                match ev {
                    CallEvent::Reconnected { rejoined: true } => return,
                    CallEvent::Disconnected => panic!("{who}'s call ended"),
                    _ => {}
                }
            }
            panic!("{who}'s events ended");
        })
        .await;
    }
    let (alice_again, bob_again) = (alice.participant_id(), bob.participant_id());
    assert_ne!(alice_again, alice_id, "a new session, a new id");
    assert_ne!(bob_again, bob_id);
    within(15, "each hears the other again", async {
        while heard(&bob_inbox, &alice_again) < 25 || heard(&alice_inbox, &bob_again) < 25 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    println!(
        "both hear each other again {} ms after the server was up",
        up.elapsed().as_millis()
    );
    let names: Vec<String> = alice
        .participants()
        .iter()
        .map(|p| p.name().to_owned())
        .collect();
    assert_eq!(names, ["bob"], "alice's roster is the room as it is now");
    let stats = server.sfu().stats().await.expect("stats");
    assert_eq!(stats.participants, 2, "{stats:?}");
    assert_eq!(stats.tracks, 2, "{stats:?}");

    for t in talking {
        t.abort();
    }
    alice.leave().await.expect("leave");
    bob.leave().await.expect("leave");
    server.shutdown().await.expect("shutdown");
}

/// The media path fails while signaling survives (a network change the
/// WebSocket outlived, a firewall): the SFU drops the participants' media
/// connections (close 4002), they join again, and once the path is back
/// they hear each other again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_join_again_when_their_media_path_fails() {
    init_tracing();
    let (path, server) = server_behind_relay(SECRET, Default::default()).await;
    let alice = join(&server, "r", "alice", BOTH).await;
    let bob = join(&server, "r", "bob", BOTH).await;
    let Pair {
        alice,
        bob,
        alice_inbox,
        bob_inbox,
        mut alice_rest,
        mut bob_rest,
        talking,
    } = talking(alice, bob, 3000).await;
    let (alice_id, bob_id) = (alice.participant_id(), bob.participant_id());

    path.set_blocked(true);
    for (who, rest) in [("alice", &mut alice_rest), ("bob", &mut bob_rest)] {
        within(30, &format!("{who}'s media to be given up"), async {
            while let Some(ev) = rest.recv().await {
                match ev {
                    CallEvent::Reconnecting => return,
                    CallEvent::Disconnected => panic!("{who}'s call ended"),
                    _ => {}
                }
            }
            panic!("{who}'s events ended");
        })
        .await;
    }
    path.set_blocked(false);
    let back = Instant::now();
    within(30, "each hears the other again", async {
        loop {
            let (a, b) = (alice.participant_id(), bob.participant_id());
            if a != alice_id
                && b != bob_id
                && heard(&bob_inbox, &a) >= 25
                && heard(&alice_inbox, &b) >= 25
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    println!(
        "both hear each other again {} ms after the path came back",
        back.elapsed().as_millis()
    );
    let stats = server.sfu().stats().await.expect("stats");
    assert_eq!(stats.participants, 2, "{stats:?}");
    for t in talking {
        t.abort();
    }
    alice.leave().await.expect("leave");
    bob.leave().await.expect("leave");
    server.shutdown().await.expect("shutdown");
}
