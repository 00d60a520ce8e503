//! The load tool with simulcast against a server started in process (its
//! own test binary: the other tiny run counts the SFU worker threads of its
//! process). Asserts on what arrived, never on wall-clock figures.

mod common;

use huddle_bench::{run, Plan, RunConfig, Scenario};
use std::time::Duration;

#[test]
fn a_simulcast_meeting_gets_one_layer_per_stream() {
    let server = common::InProcess::start(
        "bench-simulcast-secret-padded-to-32-bytes-or-more",
        None,
        false,
    );
    let target = &server.target;

    // 3 participants, each publishing audio + video as q/h/f and watching
    // the other two: the SFU sends each of them the f layer only.
    let mut config = RunConfig::new(Scenario::Meeting, Plan::meeting(3, 1));
    config.media.simulcast = true;
    config.media.video_kbps = 600;
    config.seconds = 3;
    config.warmup = 3; // the first switch to f waits for its keyframe (2 s)
    config.setup_timeout = Duration::from_secs(20);
    config.progress = false;
    let report = run(&config, target).expect("run");

    assert_eq!(report.failed, 0);
    assert_eq!(report.forwarded_streams, 12, "3 x (2 audio + 2 video)");
    assert!(report.loss < 0.2, "loss {}", report.loss);
    // Had the SFU forwarded every layer, subscribers would get ~1.5 times
    // the packets of the one layer they are counted against.
    let ratio = report.forwarded_packets as f64 / report.expected_packets as f64;
    println!(
        "forwarded / expected = {ratio:.3}, per layer {:?}",
        report.video_received_by_layer
    );
    let layers = &report.video_received_by_layer;
    assert_eq!(layers.len(), 3);
    let total: u64 = layers.iter().sum();
    assert!(
        layers[2] as f64 > 0.95 * total as f64,
        "two videos each: the f layer, not {layers:?}"
    );
    assert!(
        ratio < 1.15,
        "forwarded {} for {} expected: more than one layer per stream?",
        report.forwarded_packets,
        report.expected_packets
    );
    server.shutdown();
}
