//! The load tool's core against a server started in process with two SFU
//! workers: two rooms, each with 2 audio publishers and 2 subscribers, for
//! 3 s. Asserts on what arrived and on the report's shape, never on
//! wall-clock figures.

mod common;

use huddle_bench::{run, Plan, RunConfig, Scenario};
use std::time::Duration;

#[test]
fn two_rooms_of_two_publishers_two_subscribers() {
    // The server runs in this process: its CPU figures include the tool's.
    let server = common::InProcess::start(
        "bench-test-secret-padded-to-32-bytes-or-more",
        Some(2),
        true,
    );
    let target = &server.target;

    let mut config = RunConfig::new(Scenario::Audio, Plan::audio(2, 2, 2));
    config.seconds = 3;
    config.warmup = 1;
    config.setup_timeout = Duration::from_secs(20);
    config.progress = false;
    let report = run(&config, target).expect("run");

    assert_eq!(report.failed, 0, "no participant failed");
    assert_eq!(report.rooms, 2);
    assert_eq!(report.ready, 8, "everyone ready");
    assert_eq!(report.forwarded_streams, 8);
    assert_eq!(report.subscriber_loss.len(), 4);
    // 2 rooms x 2 publishers x 50 packets/s x 3 s to each of 2 subscribers: 1200.
    assert!(
        report.expected_packets >= 800,
        "expected {}",
        report.expected_packets
    );
    assert!(report.received_packets > 0 && report.forwarded_packets > 0);
    assert!(report.loss < 0.2, "loss {}", report.loss);
    assert!(report.latency_ms.count > 0);
    assert!(report.server_cpu_us_per_packet.is_some(), "pid given");
    let kernel = report.server_kernel_us_per_packet.expect("pid given");
    assert!(
        kernel <= report.server_cpu_us_per_packet.unwrap_or(0.0),
        "the kernel's part is part of the whole"
    );
    assert_eq!(
        report.server_worker_cpu_percent.len(),
        2,
        "one CPU figure per SFU worker thread"
    );

    let json: serde_json::Value =
        serde_json::from_str(&serde_json::to_string(&report).expect("serialize")).expect("parse");
    for field in [
        "forwarded_pps",
        "forwarded_bps",
        "loss",
        "subscriber_loss",
        "latency_ms",
        "join_to_first_media_ms",
        "server_cpu_us_per_packet",
        "server_kernel_us_per_packet",
        "server_rss_mib",
        "server_worker_cpu_percent",
        "client_cpu_percent",
        "timeline",
    ] {
        assert!(json.get(field).is_some(), "JSON lacks {field}");
    }
    assert!(report.markdown().contains("| forwarded packets/s |"));
    let svg = huddle_bench::plot::svg(&report);
    assert!(svg.starts_with("<svg") && svg.contains("<polyline"));
    server.shutdown();
}
