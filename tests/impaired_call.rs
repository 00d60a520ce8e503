//! A call over a bad network: alice's speech reaches bob through the SFU with
//! 5% random loss and 30 ms of jitter on the way to him (the huddle-netem
//! relay in front of the SFU). Bob's playout (jitter buffer, RED, resends
//! after NACK, Opus FEC and PLC, mixer) still gives back what alice said.

mod common;

use common::*;
use huddle::{CallEvent, ChannelSink, Playout};
use huddle_media::analysis::normalized_cross_correlation;
use huddle_media::source::{collect_all, SpeechLike};
use huddle_netem::Impairment;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speech_survives_loss_and_jitter() {
    init_tracing();
    let (relay, server) = server_behind_relay(
        "impaired-secret-padded-to-32-bytes-or-more",
        Impairment {
            loss: 0.05,
            jitter: Duration::from_millis(30),
            seed: 2026,
            ..Impairment::default()
        },
    )
    .await;

    let (alice, _ae) = join(&server, "r", "alice", BOTH).await;
    let (_bob, mut be) = join(&server, "r", "bob", BOTH).await;
    let (frames_tx, mut frames_rx) = tokio::sync::mpsc::channel(2000);
    let playout = Playout::start(Box::new(ChannelSink(frames_tx)));
    let recorder = tokio::spawn(async move {
        let mut pcm = Vec::new();
        while let Some(f) = frames_rx.recv().await {
            pcm.extend(f);
        }
        pcm
    });

    let frames = 400; // 8 s
    let sending = within(
        20,
        "send_audio",
        alice.send_audio(
            Box::new(SpeechLike::new(5).with_frames(frames)),
            Default::default(),
        ),
    )
    .await
    .expect("send_audio");
    let track = within(20, "bob subscribes", async {
        loop {
            match be.recv().await {
                Some(CallEvent::TrackSubscribed(t)) => break t,
                Some(_) => continue,
                None => panic!("bob's events ended"),
            }
        }
    })
    .await;
    assert!(playout.add(track));
    within(30, "alice's source", sending.finished())
        .await
        .expect("sender");
    tokio::time::sleep(Duration::from_millis(600)).await;

    let stats = playout.stats();
    let (_, jb) = stats.values().next().cloned().expect("a stream was played");
    let relay_stats = relay.stats();
    drop(playout);
    let heard = recorder.await.expect("recorder");
    let said = collect_all(&mut SpeechLike::new(5).with_frames(frames));
    // Time stretching moves the alignment a little during the call, so match
    // each second heard against what was said, and take the median.
    let mut scores: Vec<f64> = heard
        .chunks_exact(48_000)
        .filter(|w| huddle_media::analysis::rms(w) > 300.0)
        .map(|w| normalized_cross_correlation(&said, w, said.len()).0)
        .collect();
    scores.sort_by(|a, b| a.total_cmp(b));
    let corr = scores.get(scores.len() / 2).copied().unwrap_or(0.0);
    println!(
        "relay to clients: {:?}\njitter buffer: {jb:?}\nper-second correlation {scores:.2?}, median {corr:.3}",
        relay_stats.to_client
    );
    assert!(
        scores.len() >= 5,
        "too little audio heard: {} s",
        scores.len()
    );
    assert!(relay_stats.to_client.lost > 0, "the network lost nothing");
    // What repairs a loss depends on timing: a RED copy in the next packet,
    // a resend (NACK) arriving in time, the next packet's FEC; what is left
    // is concealed. That some loss was repaired from redundancy is certain
    // at 5 % loss over 8 s; which way, and whether any frame was left to
    // conceal, is not.
    assert!(
        jb.fec_recovered_frames + jb.red_recovered_frames > 0,
        "no lost frame was rebuilt from RED or FEC: {jb:?}"
    );
    assert!(corr > 0.6, "bob did not hear alice: correlation {corr}");
    server.shutdown().await.expect("shutdown");
}
