//! The calling crate as an app uses it: the server's base URL, participants
//! with their names, one handle per own track (mute at any time), and audio
//! in and out as PCM.

mod common;

use common::*;
use huddle::media::analysis::normalized_cross_correlation;
use huddle::{AudioSource, Call, CallError, CallEvent, SpeechLike, TrackKind};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_url_and_participants_with_names() {
    init_tracing();
    let server = huddle_server::start(huddle_server::ServerConfig::ephemeral(
        "api-names-secret-padded-to-32-bytes-or-more",
    ))
    .await
    .expect("server");
    let base = format!("http://{}", server.http_addr());
    let token = |who: &str| server.mint_token("r", who, BOTH).expect("token");

    // The server's base URL works as well as its WebSocket URL.
    let (alice, mut alice_events) =
        within(20, "join by base URL", Call::join(&base, &token("alice")))
            .await
            .expect("join with http://host:port");
    assert_eq!(alice.local_participant().name(), "alice");
    assert!(alice.participants().is_empty());

    // A URL that is not a huddle server says so.
    let wrong = format!("{base}/nothing-here");
    let err = within(20, "join a wrong path", Call::join(&wrong, &token("x")))
        .await
        .expect_err("no signaling there");
    assert!(
        matches!(&err, CallError::Signaling(m) if m.contains("instead of a WebSocket")),
        "unclear error: {err}"
    );
    let err = Call::join("ftp://127.0.0.1/", &token("x"))
        .await
        .expect_err("not a server URL");
    assert!(matches!(err, CallError::BadUrl { .. }), "{err}");

    // bob joins with a display name in his token: alice is told his name
    // and her list shows him; bob's list shows alice from the start.
    let bob_token = server
        .mint_named_token("r", "bob", "Bob Builder", BOTH)
        .expect("token");
    let (bob, _bob_events) = within(20, "bob joins", Call::join(&base, &bob_token))
        .await
        .expect("bob joins");
    assert_eq!(bob.local_participant().name(), "Bob Builder");
    assert_eq!(
        bob.participants()
            .iter()
            .map(|p| p.name())
            .collect::<Vec<_>>(),
        ["alice"]
    );
    let joined = next_event(&mut alice_events, 10, "bob joins", |ev| match ev {
        CallEvent::ParticipantJoined(p) => Some(p),
        _ => None,
    })
    .await;
    assert_eq!(joined.name(), "Bob Builder", "the token's display name");
    assert_eq!(joined.identity, "bob");
    assert_eq!(joined.id, bob.participant_id());
    assert_eq!(alice.participants(), vec![joined.clone()]);

    bob.leave().await.expect("leave");
    let left = next_event(&mut alice_events, 10, "bob leaves", |ev| match ev {
        CallEvent::ParticipantLeft(p) => Some(p),
        _ => None,
    })
    .await;
    assert_eq!(left, joined, "the one who left is named");
    assert!(alice.participants().is_empty());
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_track_is_muted_by_its_handle_before_the_server_knows_it() {
    init_tracing();
    let server = huddle_server::start(huddle_server::ServerConfig::ephemeral(
        "api-mute-secret-padded-to-32-bytes-or-more",
    ))
    .await
    .expect("server");
    let (alice, _ae) = join(&server, "r", "alice", BOTH).await;
    let (_bob, mut bob_events) = join(&server, "r", "bob", BOTH).await;
    let mic = within(20, "publish", alice.publish_pcm(Default::default()))
        .await
        .expect("publish");
    // Nothing sent yet, so the server has not announced the track: the
    // mute is taken all the same.
    alice
        .set_muted(mic.track(), true)
        .await
        .expect("mute before the first packet");
    alice
        .set_muted(mic.track(), false)
        .await
        .expect("unmute before the first packet");
    // One frame goes out, and the mute follows at once (before the
    // announcement reaches alice, as a rule): the room is told when the
    // server knows the track.
    let mut speech = SpeechLike::new(3).with_frames(25);
    let frame = speech.next_frame().expect("a frame");
    mic.write(&frame).await.expect("send");
    alice
        .set_muted(mic.track(), true)
        .await
        .expect("mute right after the first packet");
    let (published, muted) = within(10, "the track to be announced, then muted", async {
        let mut published = None;
        loop {
            match bob_events.recv().await {
                Some(CallEvent::TrackPublished {
                    participant,
                    track_id,
                    kind,
                    muted,
                }) => {
                    assert_eq!(participant.name(), "alice");
                    assert_eq!(kind, TrackKind::Audio);
                    if muted {
                        break (track_id.clone(), track_id);
                    }
                    published = Some(track_id);
                }
                Some(CallEvent::MuteChanged {
                    participant,
                    track_id,
                    muted: true,
                }) => {
                    assert_eq!(participant.name(), "alice");
                    break (published.expect("announced before muted"), track_id);
                }
                Some(_) => {}
                None => panic!("bob's call ended"),
            }
        }
    })
    .await;
    assert_eq!(published, muted, "the muted track is alice's one track");
    assert!(mic.track().is_muted());
    server.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcm_goes_in_at_one_end_and_out_at_the_other() {
    init_tracing();
    let server = huddle_server::start(huddle_server::ServerConfig::ephemeral(
        "api-pcm-secret-padded-to-32-bytes-or-more",
    ))
    .await
    .expect("server");
    let (alice, _ae) = join(&server, "r", "alice", BOTH).await;
    let (_bob, mut bob_events) = join(&server, "r", "bob", BOTH).await;

    // bob decodes whatever audio track he gets, into one buffer.
    let heard = Arc::new(Mutex::new(Vec::<i16>::new()));
    let into = heard.clone();
    let listener = tokio::spawn(async move {
        loop {
            match bob_events.recv().await {
                Some(CallEvent::TrackSubscribed(track)) => {
                    assert_eq!(track.participant().name(), "alice");
                    let mut pcm = track.into_pcm(Default::default()).expect("audio");
                    while let Some(frame) = pcm.recv().await {
                        assert_eq!(frame.len(), huddle::FRAME_SAMPLES);
                        into.lock().expect("lock").extend(frame);
                    }
                }
                Some(_) => {}
                None => return,
            }
        }
    });

    // alice pushes 3 s of speech-like PCM, one frame per 20 ms.
    let frames = 150;
    let pcm = within(20, "publish", alice.publish_pcm(Default::default()))
        .await
        .expect("publish");
    let err = pcm.write(&[0i16; 100]).await.expect_err("not a frame");
    assert!(matches!(err, CallError::InvalidInput(_)), "{err}");
    let mut speech = SpeechLike::new(11).with_frames(frames);
    let mut sent = Vec::new();
    let mut clock = tokio::time::interval(Duration::from_millis(20));
    within(20, "sending", async {
        while let Some(frame) = speech.next_frame() {
            clock.tick().await;
            pcm.write(&frame).await.expect("write");
            sent.extend(frame);
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    listener.abort();

    let heard = heard.lock().expect("lock").clone();
    println!("bob decoded {} ms", heard.len() / 48);
    assert!(heard.len() > sent.len() / 2, "bob heard too little");
    // Compared in half-second pieces, each found where it landed: under load
    // the jitter buffer may stretch or conceal between pieces, which shifts
    // everything after it, so one lag for the whole call would not fit.
    let piece = 24_000;
    let mut scores = Vec::new();
    for (k, chunk) in sent.chunks_exact(piece).enumerate() {
        let from = (k * piece).saturating_sub(piece).min(heard.len());
        let to = (k * piece + 3 * piece).min(heard.len());
        let (corr, lag) = normalized_cross_correlation(chunk, &heard[from..to], 3 * piece);
        println!("piece {k}: correlation {corr:.3} at lag {lag}");
        scores.push(corr);
    }
    scores.sort_by(f64::total_cmp);
    let median = scores[scores.len() / 2];
    assert!(median > 0.75, "bob's PCM is not alice's: {scores:?}");
    assert!(
        scores.iter().filter(|&&c| c > 0.5).count() * 4 >= scores.len() * 3,
        "too much of bob's PCM is not alice's: {scores:?}"
    );
    server.shutdown().await.expect("shutdown");
}
