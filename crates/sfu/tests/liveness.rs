//! Liveness on simulated time (see `harness`): the SFU's consent checks
//! (RFC 7675) keep quiet clients that answer them, and clients that vanish
//! are down within seconds and gone soon after. Deterministic: the quiet
//! clients' RTCP timing is seeded.

mod harness;

use harness::{ClientId, Net, Role};
use huddle_proto::TrackKind;
use huddle_sfu::SfuEvent;
use std::time::Duration;

/// 60 s of 20 ms audio packets.
const MINUTE_OF_AUDIO: u64 = 3_000;

fn gone(net: &Net, who: &str) -> bool {
    net.events
        .iter()
        .any(|e| matches!(e, SfuEvent::ParticipantGone { participant, .. } if participant.0 == who))
}

/// A publishes audio; B views it through WHEP (one audio slot); media flows.
fn viewer_of_audio() -> (Net, ClientId, ClientId) {
    let mut net = Net::new();
    let a = net.join("a", true, false);
    net.connect();
    net.start_media(a, TrackKind::Audio, &[]);
    let b = net.join_viewer("b", 1, 0);
    net.connect();
    for _ in 0..50 {
        net.send_audio(a, 1);
    }
    assert!(net.clients[b].received_total() > 0, "B gets audio");
    (net, a, b)
}

/// A receive-only viewer that, once connected, sends no STUN of its own
/// and RTCP only every 5 s ±50 % (libnice in GStreamer's webrtcbin), but
/// answers the SFU's checks: it keeps every packet for a minute. Before
/// the SFU checked quiet clients itself, 3 s without a datagram cut its
/// media until its next report: about a third of it was lost.
#[test]
fn a_quiet_viewer_that_answers_checks_keeps_all_its_media() {
    for seed in [1, 2, 3] {
        let (mut net, a, b) = viewer_of_audio();
        net.make_quiet(b, Role::Subscriber, seed, true);
        let before = net.clients[b].received_total();
        net.send_audio(a, MINUTE_OF_AUDIO);
        let got = net.clients[b].received_total() - before;
        let q = &net.quiet[&harness::Client::addr(b, Role::Subscriber)];
        println!(
            "seed {seed}: {got} of {MINUTE_OF_AUDIO} packets; {} reports, {} answers, {} own checks held",
            q.rtcp_sent, q.answers_sent, q.checks_held
        );
        assert!(!gone(&net, "b"), "B was dropped");
        assert_eq!(got, MINUTE_OF_AUDIO, "seed {seed}: B lost media");
        assert!(
            (8..=24).contains(&q.rtcp_sent),
            "reports every 5 s ±50 %: {}",
            q.rtcp_sent
        );
        assert!(
            q.answers_sent >= 30,
            "the SFU checked the quiet viewer: {} answers",
            q.answers_sent
        );
    }
}

/// A publisher that sends media but no STUN checks of its own for a
/// minute (libnice sends a keepalive only every 25 s), and answers the
/// SFU's checks: it stays, and its media with it. rtc's ICE agent,
/// counting only STUN from the client, used to fail the connection after
/// 30 s.
#[test]
fn a_publisher_that_sends_media_but_no_checks_stays() {
    let mut net = Net::new();
    let a = net.join("a", true, false);
    let b = net.join("b", false, false);
    net.connect();
    net.start_media(a, TrackKind::Audio, &[b]);
    net.make_quiet(a, Role::Publisher, 5, true);
    let before = net.received(b, a, TrackKind::Audio);
    net.send_audio(a, MINUTE_OF_AUDIO);
    assert!(!gone(&net, "a"), "A was dropped");
    let got = net.received(b, a, TrackKind::Audio) - before;
    assert_eq!(got, MINUTE_OF_AUDIO, "B got all of A");
    let q = &net.quiet[&harness::Client::addr(a, Role::Publisher)];
    assert!(q.checks_held > 0, "A's own checks were held back");
    assert!(
        (10..=16).contains(&q.answers_sent),
        "a check every 5 s while media flows: {}",
        q.answers_sent
    );
}

/// A publisher that sends media but answers none of the SFU's checks and
/// sends none of its own: its consent expires after 30 s (RFC 7675) and
/// it is removed, media or not.
#[test]
fn a_publisher_that_never_proves_consent_is_dropped_after_30s() {
    let mut net = Net::new();
    let a = net.join("a", true, false);
    let b = net.join("b", false, false);
    net.connect();
    net.start_media(a, TrackKind::Audio, &[b]);
    net.make_quiet(a, Role::Publisher, 5, false);
    let t0 = net.now;
    while !gone(&net, "a") {
        assert!(net.now - t0 < Duration::from_secs(32), "A still there");
        net.send_audio(a, 1);
    }
    assert!(
        net.now - t0 >= Duration::from_secs(29),
        "{:?}",
        net.now - t0
    );
}

/// A publisher that sends nothing for a minute (muted: no media, RTCP
/// every 5 s ±50 %, no STUN of its own) but answers the SFU's checks (which
/// the SFU takes by transaction id before `rtc` sees them) stays, and its
/// media reaches B when it speaks again.
#[test]
fn a_silent_publisher_that_answers_checks_stays() {
    let mut net = Net::new();
    let a = net.join("a", true, false);
    let b = net.join("b", false, false);
    net.connect();
    net.start_media(a, TrackKind::Audio, &[b]);
    net.make_quiet(a, Role::Publisher, 11, true);
    net.drive_for(Duration::from_secs(60));
    let q = &net.quiet[&harness::Client::addr(a, Role::Publisher)];
    assert!(q.answers_sent >= 30, "{} answers", q.answers_sent);
    assert!(!gone(&net, "a"), "A was dropped");
    let before = net.received(b, a, TrackKind::Audio);
    net.send_audio(a, 100);
    assert_eq!(net.received(b, a, TrackKind::Audio) - before, 100);
}

/// The same publisher, answering nothing: down after its checks go
/// unanswered, gone soon after, as a vanished client.
#[test]
fn a_silent_publisher_that_answers_nothing_is_dropped() {
    let mut net = Net::new();
    let a = net.join("a", true, false);
    let b = net.join("b", false, false);
    net.connect();
    net.start_media(a, TrackKind::Audio, &[b]);
    net.make_quiet(a, Role::Publisher, 11, false);
    // Its RTCP (every 2.5-7.5 s) brings it back up for a while; with no
    // answer, its consent expires after 30 s.
    net.drive_until(Duration::from_secs(32), "A gone", |net| gone(net, "a"));
}

/// A viewer that vanishes: the SFU stops sending it media within 5 s
/// (three checks unanswered, the fourth due) and removes it within 10 s.
#[test]
fn a_vanished_viewer_gets_no_media_after_5s_and_is_gone_within_10s() {
    let (mut net, a, b) = viewer_of_audio();
    net.clients[b].online = false;
    net.send_audio(a, 250); // 5 s
    let out = net.endpoint.stats().rtp_out;
    net.send_audio(a, 100);
    assert_eq!(
        net.endpoint.stats().rtp_out,
        out,
        "media to the vanished viewer stopped"
    );
    net.drive_until(Duration::from_secs(5), "B gone", |net| gone(net, "b"));
}
