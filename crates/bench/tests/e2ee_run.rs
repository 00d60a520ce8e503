//! The load tool in end-to-end encrypted rooms (`--e2ee`) against a server
//! started in process: every participant joins its room's MLS group
//! through the signaling and seals every payload, and every subscriber
//! opens what it receives before reading its probe (which travels
//! encrypted: a packet counts as received only if it decrypted). Asserts
//! on what arrived, never on wall-clock figures.

mod common;

use huddle_bench::{run, Plan, Receiver, RunConfig, Scenario};
use std::time::Duration;

#[test]
fn an_encrypted_meeting_gets_everything_through() {
    let server = common::InProcess::start(
        "bench-e2ee-secret-padded-to-32-bytes-or-more",
        Some(1),
        false,
    );
    let mut config = RunConfig::new(Scenario::Meeting, Plan::meeting(3, 2));
    config.e2ee = true;
    // AES-GCM in a debug build takes about a hundred times longer than
    // in release: lighter video keeps the tool's one thread on time.
    config.media.video_kbps = 200;
    config.media.fps = 15;
    config.seconds = 3;
    config.warmup = 2;
    // The tool's own receivers: what arrives is counted before any
    // retransmission, and no estimate of theirs pauses a video (see
    // docs/benchmarks.md, "E2EE on and off").
    config.receiver = Receiver::Fast;
    config.setup_timeout = Duration::from_secs(30);
    config.progress = false;
    let report = run(&config, &server.target).expect("run");
    server.shutdown();
    println!("{}", report.summary());
    assert!(report.e2ee);
    assert_eq!(report.failed, 0, "no participant failed");
    assert_eq!(
        report.ready, 6,
        "everyone in the group, sending and receiving"
    );
    // 2 rooms x 3 members, each receiving the other two's audio and video.
    assert_eq!(report.forwarded_streams, 24);
    assert!(report.received_packets > 0 && report.forwarded_packets > 0);
    assert!(report.loss < 0.2, "loss {}", report.loss);
    assert!(report.markdown().contains("end-to-end encryption"));
}
