//! The calling crate publishes simulcast and follows dynacast, through the
//! real server: alice sends a video as three layers (q, h, f: synthetic VP8
//! whose keyframes say 320, 640 and 1280 pixels wide), bob shows it in a
//! small tile and gets q; nobody receiving h and f, the server tells alice
//! to stop them, and she does; bob makes the tile large, the server asks
//! for f again, and bob gets it.

mod common;

use common::*;
use huddle::{CallEvent, SimulcastTrack, TrackKind};
use huddle_media::rtp::{vp8_keyframe_size, SyntheticVideo, SyntheticVideoConfig, Vp8Packetizer};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RIDS: [&str; 3] = ["q", "h", "f"];
const WIDTHS: [u16; 3] = [320, 640, 1280];

/// Send every active layer at 15 fps until the track is dropped; count the
/// packets sent per layer.
async fn send_layers(track: Arc<SimulcastTrack>, sent: Arc<[AtomicUsize; 3]>) {
    let mut layers: Vec<(SyntheticVideo, Vp8Packetizer)> = WIDTHS
        .iter()
        .enumerate()
        .map(|(i, &width)| {
            let video = SyntheticVideo::new(SyntheticVideoConfig {
                width,
                height: width * 9 / 16,
                fps: 15,
                frame_bytes: 300 * (i + 1),
                keyframe_bytes: 3000 * (i + 1),
                keyframe_interval: 15,
                seed: i as u64,
            })
            .expect("video");
            (video, Vp8Packetizer::new(1, 96, 0).expect("packetizer"))
        })
        .collect();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / 15);
    loop {
        tick.tick().await;
        for (i, (video, packetizer)) in layers.iter_mut().enumerate() {
            // An encoder encodes only what is wanted (its frames still
            // advance, as a camera's do).
            let frame = video.next_frame();
            if !track.is_active(RIDS[i]) {
                continue;
            }
            let packets = packetizer
                .packetize(&frame.data, frame.timestamp)
                .expect("packetize");
            let payloads: Vec<&[u8]> = packets.iter().map(|p| p.payload.as_slice()).collect();
            match track
                .write_frame(RIDS[i], &payloads, Duration::from_secs(1) / 15)
                .await
            {
                Ok(n) => {
                    sent[i].fetch_add(n, Ordering::Relaxed);
                }
                Err(_) => return,
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulcast_publisher_stops_the_layers_nobody_receives_and_starts_them_again() {
    simulcast_and_dynacast(false).await;
}

/// The same with end-to-end encryption: the layers' frames are encrypted
/// whole, their first bytes in clear for the SFU, which still switches
/// layers at keyframes; bob reads each layer's keyframe size from the
/// frames he decrypted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_simulcast_layers_switch_as_plain_ones_do() {
    simulcast_and_dynacast(true).await;
}

async fn simulcast_and_dynacast(e2ee: bool) {
    init_tracing();
    let server = huddle_server::start(huddle_server::ServerConfig::ephemeral(
        "simulcast-secret-padded-to-32-bytes-or-more",
    ))
    .await
    .expect("server");
    let ((alice, mut alice_events), (bob, mut bob_events)) = if e2ee {
        (
            join_e2ee(&server, "dynacast", "alice").await,
            join_e2ee(&server, "dynacast", "bob").await,
        )
    } else {
        (
            join(&server, "dynacast", "alice", BOTH).await,
            join(&server, "dynacast", "bob", BOTH).await,
        )
    };

    let camera = within(
        20,
        "publish simulcast",
        alice.publish_simulcast_video(&RIDS),
    )
    .await
    .expect("simulcast");
    assert_eq!(camera.rids(), RIDS.to_vec());
    assert!(
        RIDS.iter().all(|r| camera.is_active(r)),
        "all layers at first"
    );
    let sent: Arc<[AtomicUsize; 3]> = Arc::new(Default::default());
    let sender = tokio::spawn(send_layers(camera.clone(), sent.clone()));

    // Bob gets the video; the width of its keyframes says which layer.
    let track = next_event(&mut bob_events, 20, "alice's video at bob", |ev| match ev {
        CallEvent::TrackSubscribed(t) if t.kind() == TrackKind::Video => Some(t),
        _ => None,
    })
    .await;
    let track_id = track.track_id().clone();
    let width = Arc::new(AtomicU16::new(0));
    let w = width.clone();
    tokio::spawn(async move {
        while let Some(p) = track.recv().await {
            if let Some((width, _)) = vp8_keyframe_size(&p.payload) {
                w.store(width, Ordering::Relaxed);
            }
        }
    });
    let got = |want: u16| {
        let width = width.clone();
        async move {
            while width.load(Ordering::Relaxed) != want {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };

    // A small tile: q.
    bob.set_track_view(&track_id, true, Some((320, 180)))
        .expect("view");
    within(10, "bob to get q", got(WIDTHS[0])).await;

    // Nobody receives h and f: alice is told to send q alone (h may go
    // first: bob got f before his tile said small), and does.
    next_event(
        &mut alice_events,
        30,
        "dynacast to stop h and f",
        |ev| match ev {
            CallEvent::LayersChanged { active, .. } if active == ["q"] => Some(()),
            _ => None,
        },
    )
    .await;
    assert!(camera.is_active("q") && !camera.is_active("h") && !camera.is_active("f"));
    let before: Vec<usize> = sent.iter().map(|s| s.load(Ordering::Relaxed)).collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after: Vec<usize> = sent.iter().map(|s| s.load(Ordering::Relaxed)).collect();
    assert!(after[0] > before[0], "q still goes out");
    assert_eq!(&after[1..], &before[1..], "h and f are not sent");
    let q_width = width.load(Ordering::Relaxed);
    assert_eq!(q_width, WIDTHS[0], "bob still gets q");

    // A large tile: f is asked for again at once, and bob gets it.
    let asked = Instant::now();
    bob.set_track_view(&track_id, true, Some((1280, 720)))
        .expect("view");
    let active = next_event(
        &mut alice_events,
        10,
        "dynacast to start f",
        |ev| match ev {
            CallEvent::LayersChanged { active, .. } => Some(active),
            _ => None,
        },
    )
    .await;
    let back = asked.elapsed();
    assert!(active.contains(&"f".to_owned()), "{active:?}");
    within(10, "bob to get f", got(WIDTHS[2])).await;
    println!(
        "f asked for again {:?} after bob's large tile; bob received it {:?} after",
        back,
        asked.elapsed()
    );

    sender.abort();
    alice.leave().await.expect("leave");
    bob.leave().await.expect("leave");
    server.shutdown().await.expect("shutdown");
}
