//! Participants that leave, are killed, or freeze disappear from everyone
//! else's view within 10 s, and the SFU keeps nothing of them.
//!
//! The killed and frozen participants are real separate processes
//! (`huddle-call`): SIGKILL closes their sockets at once; SIGSTOP keeps the
//! signaling TCP connection open (the kernel still acknowledges it) while media
//! stops, so only the SFU's own liveness check (ICE consent) can notice.

use huddle::{Call, CallEvent, CallEvents};
use huddle_sfu::Rights;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BOTH: Rights = Rights {
    publish: true,
    subscribe: true,
};

/// Wait for an event matching `f`, at most `secs` seconds.
async fn wait_for(events: &mut CallEvents, secs: u64, what: &str, f: impl Fn(&CallEvent) -> bool) {
    let found = tokio::time::timeout(Duration::from_secs(secs), async {
        while let Some(ev) = events.recv().await {
            if f(&ev) {
                return true;
            }
        }
        false
    })
    .await;
    assert!(matches!(found, Ok(true)), "no {what} within {secs} s");
}

/// Start `huddle-call` and return it with its participant id.
fn spawn_participant(url: &str, token: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_huddle-call"))
        .args(["--url", url, "--token", token, "--seconds", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn huddle-call");
    let stdout = child.stdout.take().expect("stdout");
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    reader.read_line(&mut line).expect("read joined line");
    // Keep draining its output so it never writes into a closed pipe.
    std::thread::spawn(move || {
        let mut rest = String::new();
        while reader.read_line(&mut rest).map(|n| n > 0).unwrap_or(false) {
            rest.clear();
        }
    });
    let id = line
        .strip_prefix("joined ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, id)
}

fn is_left(ev: &CallEvent, id: &str) -> bool {
    matches!(ev, CallEvent::ParticipantLeft(p) if p.id == id)
}

fn is_media_from(ev: &CallEvent, id: &str) -> bool {
    matches!(ev, CallEvent::TrackSubscribed(t) if t.participant_id() == id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_killed_and_frozen_participants_disappear() {
    let server = huddle_server::start(huddle_server::ServerConfig::ephemeral(
        "kill-secret-padded-to-32-bytes-or-more",
    ))
    .await
    .expect("server");
    let url = server.ws_url();
    let token = |who: &str| server.mint_token("room", who, BOTH).expect("token");
    let (observer, mut events) = Call::join(&url, &token("observer")).await.expect("join");
    let baseline = server.sfu().stats().await.expect("stats");

    // 1. A participant that leaves properly.
    let (leaver, _leaver_events) = Call::join(&url, &token("leaver")).await.expect("join");
    let leaver_id = leaver.participant_id().to_string();
    let mic = leaver.publish_audio().await.expect("publish");
    let sending = tokio::spawn(async move {
        let silence = [0xF8u8, 0xFF, 0xFE]; // an Opus packet of silence
        for _ in 0..500 {
            let frame = huddle::AudioFrame {
                payload: &silence,
                duration: Duration::from_millis(20),
                level: huddle::AudioLevel::SILENCE,
            };
            if mic.write_audio_frame(frame).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    wait_for(&mut events, 15, "media from the leaver", |e| {
        is_media_from(e, &leaver_id)
    })
    .await;
    let t = Instant::now();
    leaver.leave().await.expect("leave");
    wait_for(&mut events, 10, "leaver's participant_left", |e| {
        is_left(e, &leaver_id)
    })
    .await;
    println!("left: seen after {:?}", t.elapsed());
    sending.abort();

    // 2. A participant process killed without leaving.
    let (mut killed, killed_id) = spawn_participant(&url, &token("killed"));
    wait_for(&mut events, 15, "media from the killed one", |e| {
        is_media_from(e, &killed_id)
    })
    .await;
    let t = Instant::now();
    killed.kill().expect("SIGKILL");
    let _ = killed.wait();
    wait_for(&mut events, 10, "killed one's participant_left", |e| {
        is_left(e, &killed_id)
    })
    .await;
    println!("killed: seen after {:?}", t.elapsed());

    // 3. A participant process frozen: its WebSocket stays open, media stops.
    let (mut frozen, frozen_id) = spawn_participant(&url, &token("frozen"));
    wait_for(&mut events, 15, "media from the frozen one", |e| {
        is_media_from(e, &frozen_id)
    })
    .await;
    let t = Instant::now();
    kill(Pid::from_raw(frozen.id() as i32), Signal::SIGSTOP).expect("SIGSTOP");
    wait_for(&mut events, 10, "frozen one's participant_left", |e| {
        is_left(e, &frozen_id)
    })
    .await;
    println!("frozen: seen after {:?}", t.elapsed());
    let _ = frozen.kill();
    let _ = frozen.wait();

    // Nothing of the three is left in the SFU.
    let after = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let s = server.sfu().stats().await.expect("stats");
            if s.participants == baseline.participants && s.tracks == 0 {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("SFU state back to the observer alone");
    println!("SFU before: {baseline:?}\nSFU after:  {after:?}");
    assert_eq!(after.participants, 1);
    assert_eq!(after.tracks, 0);
    // The observer keeps only its subscriber connection and its address.
    assert!(after.connections <= 1, "{after:?}");
    assert!(after.addresses <= 1, "{after:?}");
    observer.leave().await.expect("leave");
    server.shutdown().await.expect("shutdown");
}
