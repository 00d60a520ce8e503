//! A call whose signaling WebSocket drops takes its session back: media
//! keeps flowing, nothing is published again, and nobody sees it leave.
//! Past the server's grace period, a participant that does not come back
//! has left.
//!
//! The drop is real: alice's WebSocket goes through a TCP relay on
//! 127.0.0.1 that the test cuts (both sides see the TCP connection end,
//! without a WebSocket close).

mod common;

use common::*;
use huddle::CallEvent;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A TCP relay toward `to` whose connections can be cut, and which can
/// refuse new ones.
struct Relay {
    addr: SocketAddr,
    refusing: Arc<AtomicBool>,
    pipes: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Relay {
    async fn start(to: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay address");
        let refusing = Arc::new(AtomicBool::new(false));
        let pipes: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (r, p) = (refusing.clone(), pipes.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if r.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection end
                }
                let pipe = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                p.lock().expect("lock").push(pipe);
            }
        });
        Self {
            addr,
            refusing,
            pipes,
            accept,
        }
    }

    /// End every connection through the relay (both sockets close).
    fn cut(&self) {
        for pipe in self.pipes.lock().expect("lock").drain(..) {
            pipe.abort();
        }
    }

    /// Drop new connections as soon as they come (or take them again).
    fn refuse(&self, refuse: bool) {
        self.refusing.store(refuse, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

fn packets(inbox: &Inbox) -> usize {
    inbox
        .lock()
        .expect("lock")
        .values()
        .map(|r| r.packets.len())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_signaling_connection_is_resumed_without_anyone_noticing() {
    init_tracing();
    let server = huddle_server::start(huddle_server::ServerConfig::ephemeral(
        "resume-secret-padded-to-32-bytes-or-more",
    ))
    .await
    .expect("server");
    let relay = Relay::start(server.http_addr()).await;
    let token = server.mint_token("r", "alice", BOTH).expect("token");
    let (alice, mut alice_events) = within(
        20,
        "alice joins through the relay",
        huddle::Call::join(&format!("ws://{}/ws", relay.addr), &token),
    )
    .await
    .expect("join");
    let alice_id = alice.participant_id().clone();
    let (bob, bob_events) = join(&server, "r", "bob", BOTH).await;
    let (inbox, mut bob_rest) = collect(bob_events);
    let mic = within(20, "publish", alice.publish_audio())
        .await
        .expect("audio");
    let sending = tokio::spawn(send_speech(mic.clone(), 7, 400, SentAudio::default()));
    within(20, "bob hears alice", async {
        while packets(&inbox) < 25 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    // What bob heard before the drop: alice's audio track.
    let mut before = Vec::new();
    while let Ok(ev) = bob_rest.try_recv() {
        if let CallEvent::TrackPublished { kind, .. } = ev {
            before.push(kind);
        }
    }
    assert_eq!(before, [huddle::proto::TrackKind::Audio]);

    relay.cut();
    next_event(&mut alice_events, 10, "Reconnecting", |ev| {
        matches!(ev, CallEvent::Reconnecting).then_some(())
    })
    .await;
    let at_drop = packets(&inbox);
    next_event(&mut alice_events, 10, "Reconnected", |ev| {
        matches!(ev, CallEvent::Reconnected).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        packets(&inbox) > at_drop + 10,
        "alice's audio kept reaching bob: {} then {}",
        at_drop,
        packets(&inbox)
    );
    assert_eq!(alice.participant_id(), &alice_id);

    // Signaling works on the new connection: a new track is negotiated
    // and announced to bob; the old one was not published again.
    let cam = within(20, "publish video after resuming", alice.publish_video())
        .await
        .expect("video");
    // Announced once the server receives it.
    let filming = tokio::spawn(send_video(cam, 150));
    let mut published = Vec::new();
    within(10, "bob hears of the video", async {
        while let Some(ev) = bob_rest.recv().await {
            match ev {
                CallEvent::ParticipantLeft(p) | CallEvent::ParticipantJoined(p) => {
                    panic!("bob saw {} leave or join", p.name())
                }
                CallEvent::TrackPublished {
                    participant, kind, ..
                } if participant.id == alice_id => {
                    published.push(kind);
                    if kind == huddle::proto::TrackKind::Video {
                        return;
                    }
                }
                _ => {}
            }
        }
    })
    .await;
    assert_eq!(
        published,
        [huddle::proto::TrackKind::Video],
        "only the new track was announced"
    );
    let stats = server.sfu().stats().await.expect("stats");
    assert_eq!(stats.participants, 2, "{stats:?}");

    sending.abort();
    filming.abort();
    alice.leave().await.expect("leave");
    bob.leave().await.expect("leave");
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_that_does_not_come_back_leaves_after_the_grace_period() {
    init_tracing();
    let mut config =
        huddle_server::ServerConfig::ephemeral("resume-secret-padded-to-32-bytes-or-more");
    config.limits.resume_grace = Duration::from_millis(1500);
    let server = huddle_server::start(config).await.expect("server");
    let relay = Relay::start(server.http_addr()).await;
    let token = server.mint_token("r", "alice", BOTH).expect("token");
    let (alice, mut alice_events) = within(
        20,
        "alice joins through the relay",
        huddle::Call::join(&format!("ws://{}/ws", relay.addr), &token),
    )
    .await
    .expect("join");
    let alice_id = alice.participant_id().clone();
    let (_bob, mut bob_events) = join(&server, "r", "bob", BOTH).await;

    relay.refuse(true);
    relay.cut();
    next_event(&mut alice_events, 10, "Reconnecting", |ev| {
        matches!(ev, CallEvent::Reconnecting).then_some(())
    })
    .await;
    let left = next_event(&mut bob_events, 10, "alice leaves", |ev| match ev {
        CallEvent::ParticipantLeft(p) => Some(p),
        _ => None,
    })
    .await;
    assert_eq!(left.id, alice_id);
    next_event(&mut alice_events, 10, "Disconnected", |ev| {
        matches!(ev, CallEvent::Disconnected).then_some(())
    })
    .await;
    let stats = server.sfu().stats().await.expect("stats");
    assert_eq!(stats.participants, 1, "{stats:?}");
    server.shutdown().await.expect("shutdown");
}
