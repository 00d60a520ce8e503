//! A participant that may use relayed paths only (`CallOptions::relay_only`)
//! reaches the SFU through an external TURN server: coturn's `turnserver`
//! (the Debian package `coturn`, which `.ci/run` installs) on 127.0.0.1, as
//! an operator may run beside huddle or an app may name. (huddle-server's
//! own TURN server: tests/embedded_turn.rs.)
//!
//! - With a TURN server the app names (one long-term user): audio both
//!   ways; with a wrong password no path at all, so the media really goes
//!   through the relay.
//! - With the TURN server huddle-server hands out (`turn_urls`,
//!   `turn_secret`): the participant's credentials come in `joined`, made
//!   with the secret coturn checks them with (`use-auth-secret`); a server
//!   with another secret hands out credentials coturn refuses.

mod common;

use common::*;
use huddle::{Call, CallError, CallOptions, IceServer};
use std::net::{TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const USER: &str = "relay-user";
const PASSWORD: &str = "relay-password";

/// A `turnserver` on 127.0.0.1, stopped (and its files removed) when
/// dropped.
struct Coturn {
    child: Child,
    port: u16,
    files: [std::path::PathBuf; 2],
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// A port free for both UDP and TCP on 127.0.0.1 a moment ago.
fn free_port() -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
        let port = udp.local_addr().expect("addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP");
}

/// How coturn checks credentials.
enum Auth {
    /// One long-term user, [`USER`] with [`PASSWORD`].
    User,
    /// The TURN REST API scheme with this shared secret.
    Secret(&'static str),
}

/// Start coturn: plain TURN on UDP and TCP, relaying from 127.0.0.1 to
/// loopback peers (the SFU). Fails loudly when it is missing.
async fn coturn(auth: Auth) -> Coturn {
    let port = free_port();
    let relay_min = free_port();
    let log = std::env::temp_dir().join(format!("huddle-coturn-{port}.log"));
    let pid = log.with_extension("pid");
    let child = Command::new("turnserver")
        .args([
            "-n",
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            &format!("--listening-port={port}"),
            &format!("--min-port={relay_min}"),
            &format!("--max-port={}", relay_min.saturating_add(50)),
            "--realm=huddle.test",
            "--allow-loopback-peers",
            "--no-tls",
            "--no-dtls",
            "--no-cli",
            "--simple-log",
            &format!("--log-file={}", log.display()),
            &format!("--pidfile={}", pid.display()),
        ])
        .args(match auth {
            Auth::User => vec![
                "--lt-cred-mech".to_owned(),
                format!("--user={USER}:{PASSWORD}"),
            ],
            Auth::Secret(secret) => vec![
                "--use-auth-secret".to_owned(),
                format!("--static-auth-secret={secret}"),
            ],
        })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start turnserver (apt-get install coturn): {e}");
        });
    let coturn = Coturn {
        child,
        port,
        files: [log, pid],
    };
    // Listening once a TCP connection to its port succeeds.
    within(10, "turnserver to listen", async {
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    coturn
}

/// Options for a participant that may only use `coturn`'s relay, with
/// `password`, waiting at most `timeout` for anything.
fn relay_only(coturn: &Coturn, password: &str, timeout: u64) -> CallOptions {
    CallOptions {
        ice_servers: vec![IceServer {
            urls: vec![format!("turn:127.0.0.1:{}?transport=udp", coturn.port)],
            username: Some(USER.into()),
            credential: Some(password.into()),
        }],
        relay_only: true,
        timeout: Some(Duration::from_secs(timeout)),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_only_participant_calls_through_turn() {
    init_tracing();
    let coturn = coturn(Auth::User).await;
    let server = huddle_server::start(huddle_server::ServerConfig::ephemeral(
        "turn-relay-secret-padded-to-32-bytes-or-more",
    ))
    .await
    .expect("server");
    let token = |who: &str| server.mint_token("relayed", who, BOTH).expect("token");

    let (bob, bob_events) = join(&server, "relayed", "bob", BOTH).await;
    let (alice, alice_events) = within(
        20,
        "alice to join",
        Call::join_with(
            &server.ws_url(),
            &token("alice"),
            relay_only(&coturn, PASSWORD, 15),
        ),
    )
    .await
    .expect("alice joins");
    let (bob_inbox, _bob_rest) = collect(bob_events);
    let (alice_inbox, _alice_rest) = collect(alice_events);

    // Media both ways: alice's only path is the relay.
    audio_both_ways(&alice, &alice_inbox, &bob, &bob_inbox).await;
    println!(
        "through the relay: bob got {} packets from alice, alice {} from bob",
        total_packets(&bob_inbox),
        total_packets(&alice_inbox)
    );

    // A wrong TURN password: no relay, no other path allowed, no media
    // connection (the join itself, signaling, works).
    let (carol, _carol_events) = within(
        20,
        "carol to join",
        Call::join_with(
            &server.ws_url(),
            &token("carol"),
            relay_only(&coturn, "not-the-password", 4),
        ),
    )
    .await
    .expect("carol joins");
    let refused = within(20, "carol's publish to fail", carol.publish_audio()).await;
    assert!(
        matches!(refused, Err(CallError::Timeout(_))),
        "without the relay carol has no path: {refused:?}"
    );

    // Relay-only without a TURN server is refused before anything starts.
    let err = Call::join_with(
        &server.ws_url(),
        &token("dave"),
        CallOptions {
            relay_only: true,
            ..Default::default()
        },
    )
    .await
    .expect_err("refused");
    assert!(matches!(err, CallError::InvalidInput(_)), "{err}");

    drop(coturn);
    server.shutdown().await.expect("shutdown");
}

/// Audio from `a` reaches `b` and back, each publishing one track.
async fn audio_both_ways(a: &Call, a_inbox: &Inbox, b: &Call, b_inbox: &Inbox) {
    let a_mic = within(20, "a to publish", a.publish_audio())
        .await
        .expect("publish");
    let b_mic = within(20, "b to publish", b.publish_audio())
        .await
        .expect("publish");
    speak_until_both_hear(&a_mic, a_inbox, &b_mic, b_inbox).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_turn_credentials_get_a_relay_only_participant_through() {
    init_tracing();
    const SECRET: &str = "turn-rest-shared-secret";
    let coturn = coturn(Auth::Secret(SECRET)).await;
    let start = |turn_secret: &str| {
        let mut config =
            huddle_server::ServerConfig::ephemeral("turn-rest-secret-padded-to-32-bytes-or-more");
        config.turn_urls = vec![format!("turn:127.0.0.1:{}?transport=udp", coturn.port)];
        config.turn_secret = Some(turn_secret.to_owned());
        huddle_server::start(config)
    };
    let server = start(SECRET).await.expect("server");
    let only_relay = || CallOptions {
        relay_only: true,
        timeout: Some(Duration::from_secs(5)),
        ..Default::default()
    };
    let token = |s: &huddle_server::RunningServer, who: &str| {
        s.mint_token("rest", who, BOTH).expect("token")
    };
    let (bob, bob_events) = join(&server, "rest", "bob", BOTH).await;
    // No TURN server of the app's own: the server's, with alice's own
    // credentials from `joined`.
    let (alice, alice_events) = within(
        20,
        "alice to join",
        Call::join_with(&server.ws_url(), &token(&server, "alice"), only_relay()),
    )
    .await
    .expect("alice joins");
    let (bob_inbox, _b) = collect(bob_events);
    let (alice_inbox, _a) = collect(alice_events);
    audio_both_ways(&alice, &alice_inbox, &bob, &bob_inbox).await;
    println!(
        "through the relay with the server's credentials: bob got {}, alice {}",
        total_packets(&bob_inbox),
        total_packets(&alice_inbox)
    );
    server.shutdown().await.expect("shutdown");

    // A server whose secret is not coturn's hands out credentials coturn
    // refuses: no relay, no path.
    let wrong = start("not-the-shared-secret").await.expect("server");
    let (carol, _c) = within(
        20,
        "carol to join",
        Call::join_with(&wrong.ws_url(), &token(&wrong, "carol"), only_relay()),
    )
    .await
    .expect("carol joins");
    let refused = within(20, "carol's publish to fail", carol.publish_audio()).await;
    assert!(
        matches!(refused, Err(CallError::Timeout(_))),
        "coturn refused carol's credentials: {refused:?}"
    );
    wrong.shutdown().await.expect("shutdown");
}
