//! RED falls back to Opus through the SFU: the calling crate offers
//! `audio/red` after Opus, the SFU answers Opus alone (it does not know
//! RED yet), and the audio must still flow as plain Opus both ways.

mod common;

use common::*;
use huddle::{CallEvent, OPUS_PT};
use huddle_media::analysis::normalized_cross_correlation;
use huddle_media::opus_codec::OpusDecoder;
use huddle_media::source::{collect_all, SpeechLike};
use huddle_media::Channels;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn red_offered_opus_answered_opus_sent_and_heard() {
    init_tracing();
    let server = huddle_server::start(huddle_server::ServerConfig::ephemeral(
        "red-fallback-secret-padded-to-32-bytes",
    ))
    .await
    .expect("server");
    let (alice, _ae) = join(&server, "r", "alice", BOTH).await;
    let (_bob, mut be) = join(&server, "r", "bob", BOTH).await;
    let frames = 150;
    let sending = within(
        20,
        "send_audio",
        alice.send_audio(
            Box::new(SpeechLike::new(11).with_frames(frames)),
            Default::default(),
        ),
    )
    .await
    .expect("send_audio");
    assert_eq!(
        sending.track().uses_red().await,
        None,
        "the SFU's answer has no RED: plain Opus"
    );
    let track = next_event(&mut be, 20, "alice's track", |ev| match ev {
        CallEvent::TrackSubscribed(t) => Some(t),
        _ => None,
    })
    .await;
    let reader = tokio::spawn(async move {
        let mut packets = Vec::new();
        while let Ok(Some(p)) = tokio::time::timeout(Duration::from_secs(2), track.recv()).await {
            packets.push(p);
        }
        packets
    });
    within(20, "the source to finish", sending.finished())
        .await
        .expect("sender");
    let packets = within(10, "bob's packets", reader).await.expect("reader");
    println!("bob received {} of {frames} packets", packets.len());
    assert!(
        packets.len() as u64 >= frames / 2,
        "too few: {}",
        packets.len()
    );
    assert!(
        packets.iter().all(|p| p.payload_type == OPUS_PT),
        "payload types {:?}",
        packets
            .iter()
            .map(|p| p.payload_type)
            .collect::<std::collections::BTreeSet<_>>()
    );
    let mut dec = OpusDecoder::new(Channels::Mono).expect("decoder");
    let mut decoded = Vec::new();
    for p in &packets {
        decoded.extend(dec.decode(&p.payload).expect("plain Opus decodes"));
    }
    let original = collect_all(&mut SpeechLike::new(11).with_frames(frames));
    let tail = &original[original.len().saturating_sub(decoded.len())..];
    let (corr, lag) = normalized_cross_correlation(tail, &decoded, 4800);
    println!("correlation {corr:.3} at lag {lag}");
    assert!(corr > 0.8, "bob did not hear alice: {corr}");
    server.shutdown().await.expect("shutdown");
}
