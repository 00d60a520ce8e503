//! The load tool's core against a server started in process: 2 audio
//! publishers and 2 subscribers for 3 s. Asserts on what arrived and on the
//! report's shape, never on wall-clock figures.

use huddle_bench::{run, Plan, RunConfig, Scenario, Server};
use std::time::Duration;

#[test]
fn two_publishers_two_subscribers() {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let secret = "bench-test-secret";
    let server = rt
        .block_on(huddle_server::start(
            huddle_server::ServerConfig::ephemeral(secret),
        ))
        .expect("start server");
    let target = Server::external(server.ws_url(), secret.to_owned(), None);

    let mut config = RunConfig::new(Scenario::Audio, Plan::audio(2, 2, 1));
    config.seconds = 3;
    config.warmup = 1;
    config.setup_timeout = Duration::from_secs(20);
    config.progress = false;
    let report = run(&config, &target).expect("run");

    assert_eq!(report.failed, 0, "no participant failed");
    assert_eq!(report.ready, 4, "everyone ready");
    assert_eq!(report.forwarded_streams, 4);
    assert_eq!(report.subscriber_loss.len(), 2);
    // 2 publishers x 50 packets/s x 3 s to each of 2 subscribers: 600.
    assert!(
        report.expected_packets >= 400,
        "expected {}",
        report.expected_packets
    );
    assert!(report.received_packets > 0 && report.forwarded_packets > 0);
    assert!(report.loss < 0.2, "loss {}", report.loss);
    assert!(report.latency_ms.count > 0);
    assert!(report.server_cpu_us_per_packet.is_none(), "no pid given");

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
        "server_rss_mib",
        "client_cpu_percent",
        "timeline",
    ] {
        assert!(json.get(field).is_some(), "JSON lacks {field}");
    }
    assert!(report.markdown().contains("| forwarded packets/s |"));
    let svg = huddle_bench::plot::svg(&report);
    assert!(svg.starts_with("<svg") && svg.contains("<polyline"));
    rt.block_on(server.shutdown()).expect("shutdown");
}
