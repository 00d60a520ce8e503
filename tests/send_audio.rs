//! `Call::send_audio` sends a whole source, encoded and paced, and what the
//! other side decodes is that source.

mod common;

use common::*;
use huddle_media::analysis::normalized_cross_correlation;
use huddle_media::source::{collect_all, SpeechLike};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_audio_delivers_the_source() {
    init_tracing();
    let server = huddle_server::start(huddle_server::ServerConfig::ephemeral(
        "send-secret-padded-to-32-bytes-or-more",
    ))
    .await
    .expect("server");
    let (alice, _ae) = join(&server, "r", "alice", BOTH).await;
    let (_bob, be) = join(&server, "r", "bob", BOTH).await;
    let (inbox, _rest) = collect(be);
    // 4 s of speech-like signal; the first ~0.5 s go while bob subscribes.
    let frames = 200;
    let sending = within(
        20,
        "send_audio",
        alice.send_audio(
            Box::new(SpeechLike::new(7).with_frames(frames)),
            Default::default(),
        ),
    )
    .await
    .expect("send_audio");
    let sent = within(20, "source to finish", sending.finished())
        .await
        .expect("sender");
    assert_eq!(sent, frames);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let received = inbox
        .lock()
        .expect("lock")
        .values()
        .next()
        .cloned()
        .expect("bob got alice's track");
    let seqs: Vec<u16> = received.packets.keys().copied().collect();
    println!("bob received {} of {frames} frames", seqs.len());
    assert!(
        seqs.len() as u64 >= frames * 3 / 4,
        "too few: {}",
        seqs.len()
    );
    // Decode what arrived (in order) and find it in what was sent.
    let decoded = decode_in_order(&received, &seqs);
    let original = collect_all(&mut SpeechLike::new(7).with_frames(frames));
    let tail = &original[original.len() - decoded.len()..];
    let (corr, lag) = normalized_cross_correlation(tail, &decoded, 4800);
    println!("correlation {corr:.3} at lag {lag}");
    assert!(corr > 0.8, "bob did not hear the source: {corr}");
    server.shutdown().await.expect("shutdown");
}
