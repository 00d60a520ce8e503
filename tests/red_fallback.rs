//! RED end to end through the SFU. The calling crate offers `audio/red`
//! after Opus on its publisher connection; the SFU's answer takes it, so
//! the frames go out as RED (RFC 2198). The SFU offers RED after Opus on
//! the subscriber connection; the calling crate takes it, so the SFU
//! forwards the RED packets as they are: what bob receives is RED whose
//! primary blocks decode to what alice sent and whose redundant blocks
//! repeat the frames before. (A subscriber without RED gets plain Opus
//! from the SFU, recovered packets included: `crates/sfu/tests/red.rs`.
//! Until the SFU knew RED, this test checked the fallback to Opus alone.)

mod common;

use common::*;
use huddle::CallEvent;
use huddle_media::analysis::normalized_cross_correlation;
use huddle_media::opus_codec::OpusDecoder;
use huddle_media::rtp::{parse_red, RED_PT};
use huddle_media::source::{collect_all, SpeechLike};
use huddle_media::Channels;
use std::time::Duration;

/// 20 ms at 48 kHz: the offset of the previous frame's copy.
const FRAME_TICKS: u32 = 960;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn red_goes_through_the_sfu_as_it_is_and_is_heard() {
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
    assert!(
        sending.track().uses_red().await.is_some(),
        "the SFU's answer takes RED: alice sends RED"
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
        packets.iter().all(|p| p.payload_type == RED_PT),
        "payload types {:?}: RED expected",
        packets
            .iter()
            .map(|p| p.payload_type)
            .collect::<std::collections::BTreeSet<_>>()
    );

    // The primaries are alice's speech.
    let parsed: Vec<_> = packets
        .iter()
        .map(|p| parse_red(&p.payload).expect("well-formed RED"))
        .collect();
    let mut dec = OpusDecoder::new(Channels::Mono).expect("decoder");
    let mut decoded = Vec::new();
    for red in &parsed {
        decoded.extend(
            dec.decode(red.primary.payload)
                .expect("the primary is Opus"),
        );
    }
    let original = collect_all(&mut SpeechLike::new(11).with_frames(frames));
    let tail = &original[original.len().saturating_sub(decoded.len())..];
    let (corr, lag) = normalized_cross_correlation(tail, &decoded, 4800);
    println!("correlation {corr:.3} at lag {lag}");
    assert!(corr > 0.8, "bob did not hear alice: {corr}");

    // The redundancy came through: a packet's last redundant block is the
    // frame of the packet before it, one frame earlier.
    let pairs = packets.len() - 1;
    let repeated = (1..packets.len())
        .filter(|&i| {
            packets[i].sequence_number.0 == packets[i - 1].sequence_number.0.wrapping_add(1)
        })
        .filter(|&i| {
            parsed[i].redundant.last().is_some_and(|b| {
                b.timestamp_offset == FRAME_TICKS && b.payload == parsed[i - 1].primary.payload
            })
        })
        .count();
    println!("{repeated} of {pairs} packets repeat the frame before");
    assert!(
        repeated * 4 >= pairs * 3,
        "only {repeated} of {pairs} packets carry the previous frame"
    );
    server.shutdown().await.expect("shutdown");
}
