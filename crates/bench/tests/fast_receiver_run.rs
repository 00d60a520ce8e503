//! The load tool with `--receiver fast` (every subscriber connection on the
//! tool's own transport) against a server started in process: what
//! arrives must be counted exactly as with `rtc`, and no packet may fail
//! SRTP authentication. Asserts on what arrived, never on wall-clock
//! figures. The two runs take turns (one machine, two cores).

mod common;

use huddle_bench::{run, Plan, Receiver, Report, RunConfig, Scenario};
use std::sync::Mutex;
use std::time::Duration;

/// One run at a time in this test binary.
static TURN: Mutex<()> = Mutex::new(());

fn fast_run(secret: &str, scenario: Scenario, plan: Plan) -> Report {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let server = common::InProcess::start(secret, Some(1), false);
    let mut config = RunConfig::new(scenario, plan);
    config.receiver = Receiver::Fast;
    config.seconds = 3;
    config.warmup = 1;
    config.setup_timeout = Duration::from_secs(20);
    config.progress = false;
    let report = run(&config, &server.target).expect("run");
    server.shutdown();
    println!("{}", report.summary());
    report
}

fn assert_received_all(report: &Report, participants: u64) {
    assert_eq!(report.failed, 0, "no participant failed");
    assert_eq!(report.ready, participants, "everyone ready");
    assert_eq!(report.receiver, Receiver::Fast);
    assert_eq!(
        report.receive_errors,
        Some(0),
        "every packet passed SRTP authentication"
    );
    assert!(report.received_packets > 0 && report.forwarded_packets > 0);
    assert!(report.loss < 0.2, "loss {}", report.loss);
    assert!(report.latency_ms.count > 0, "latency samples");
}

#[test]
fn audio_subscribers_on_the_fast_receiver() {
    // 2 publishers, 3 subscribers: 2 x 50 packets/s x 3 s to each of 3.
    let report = fast_run(
        "bench-fast-audio-secret-padded-to-32-bytes",
        Scenario::Audio,
        Plan::audio(2, 3, 1),
    );
    assert_received_all(&report, 5);
    assert_eq!(report.forwarded_streams, 6);
    assert!(
        report.expected_packets >= 600,
        "expected {}",
        report.expected_packets
    );
    let json: serde_json::Value =
        serde_json::from_str(&serde_json::to_string(&report).expect("serialize")).expect("parse");
    assert_eq!(json["receiver"], "fast");
    assert_eq!(json["receive_errors"], 0);
    assert!(report
        .markdown()
        .contains("| receiver (subscriber connections) | fast |"));
}

#[test]
fn a_meeting_on_the_fast_receiver() {
    // 3 participants, each publishing audio + video and receiving the
    // other two's (video frames span several packets, keyframes larger).
    let report = fast_run(
        "bench-fast-meeting-secret-padded-to-32-bytes",
        Scenario::Meeting,
        Plan::meeting(3, 1),
    );
    assert_received_all(&report, 3);
    assert_eq!(report.forwarded_streams, 12, "3 x (2 audio + 2 video)");
}
