//! Pacing toward a subscriber, on the sans-IO endpoint with real `rtc`
//! clients (TWCC feedback, SRTP) and a simulated clock: a burst a
//! publisher sends at once (a keyframe) leaves at the subscriber's
//! estimated rate rather than all at once; audio is never held behind it;
//! a burst larger than the pacer may hold loses its oldest video, counted,
//! and the audio still flows; and a fast path is not capped: a subscriber
//! gets a video faster than 10 Mb/s whole.

mod harness;

use harness::{ClientId, Net};
use huddle_proto::TrackKind;
use std::time::Duration;

/// A publishes audio and video, B receives both, and B's estimate has
/// settled (the first probe ran): video at 30 frames/s of one 1000-byte
/// packet, audio every 20 ms, for three seconds.
fn settled_call() -> (Net, ClientId, ClientId) {
    let mut net = Net::new();
    let a = net.join("a", true, true);
    let b = net.join("b", false, false);
    net.connect();
    net.start_media(a, TrackKind::Audio, &[b]);
    net.start_media(a, TrackKind::Video, &[b]);
    net.connect();
    for i in 0..150 {
        net.send_rtp(a, TrackKind::Audio, &[0x11; 80]);
        if i % 3 == 0 {
            net.send_rtp(a, TrackKind::Video, &[0x22; 1000]);
        }
        net.drive_for(Duration::from_millis(20));
    }
    (net, a, b)
}

fn estimate_bps(net: &Net, sub: ClientId) -> u64 {
    net.endpoint
        .subscriber_bandwidth(&net.clients[sub].id)
        .and_then(|b| b.estimate_bps)
        .expect("the subscriber has an estimate")
}

/// The rate the subscriber's packets are paced at: its estimate, or a
/// probe's rate while one runs.
fn pacing_bps(net: &Net, sub: ClientId) -> u64 {
    net.endpoint
        .subscriber_bandwidth(&net.clients[sub].id)
        .and_then(|b| b.pacing_bps)
        .expect("the subscriber's packets are paced")
}

#[test]
fn a_burst_leaves_at_the_estimated_rate_and_audio_overtakes_it() {
    let (mut net, a, b) = settled_call();
    let rate = estimate_bps(&net, b);
    assert_eq!(pacing_bps(&net, b), rate, "paced at the estimate");
    let video0 = net.received(b, a, TrackKind::Video);
    let audio0 = net.received(b, a, TrackKind::Audio);

    // A keyframe of 25 packets (25 kB, within the 30 kB the pacer holds
    // at least) arrives at once, then an audio packet right behind it.
    const BURST: u64 = 25;
    for _ in 0..BURST {
        net.send_rtp(a, TrackKind::Video, &[0x33; 1000]);
    }
    net.send_rtp(a, TrackKind::Audio, &[0x11; 80]);
    net.pump();
    assert_eq!(
        net.received(b, a, TrackKind::Audio) - audio0,
        1,
        "the audio packet behind the burst left at once"
    );
    let at_once = net.received(b, a, TrackKind::Video) - video0;

    // What may leave at the pacing rate (the estimate, which moves as the
    // feedback comes, x 1.25) plus a 5 ms burst, in 1000-byte packets
    // (about 1040 octets with header, extensions and tag).
    const WIRE: f64 = 1040.0;
    let packets = |bytes: f64| (bytes / WIRE).ceil() as u64 + 1;
    let mut allowed = rate as f64 * 1.25 / 8.0 * 0.005;
    assert!(
        at_once <= packets(allowed),
        "{at_once} of {BURST} left at once at an estimate of {rate} b/s"
    );
    let mut elapsed = Duration::ZERO;
    let step = Duration::from_millis(10);
    while net.received(b, a, TrackKind::Video) - video0 < BURST {
        assert!(
            elapsed < Duration::from_secs(2),
            "the burst never drained: {} of {BURST}",
            net.received(b, a, TrackKind::Video) - video0
        );
        let before = pacing_bps(&net, b);
        net.drive_for(step);
        elapsed += step;
        // The rate may have moved within the step (feedback, a probe).
        let rate = before.max(pacing_bps(&net, b));
        allowed += rate as f64 * 1.25 / 8.0 * step.as_secs_f64();
        let got = net.received(b, a, TrackKind::Video) - video0;
        assert!(
            got <= packets(allowed),
            "{got} packets within {elapsed:?}: at most {} at the pacing rate",
            packets(allowed)
        );
    }
    assert!(
        elapsed >= Duration::from_millis(100),
        "a 25 kB burst at an estimate of {rate} b/s drained in {elapsed:?}"
    );
    let bw = net
        .endpoint
        .subscriber_bandwidth(&net.clients[b].id)
        .expect("bandwidth");
    assert_eq!(
        bw.paced_dropped, 0,
        "a burst within the queue bound is kept"
    );
    assert_eq!(bw.paced_queued, 0, "nothing left waiting");
}

#[test]
fn a_burst_beyond_the_queue_bound_drops_old_video_and_keeps_audio() {
    let (mut net, a, b) = settled_call();
    let rate = estimate_bps(&net, b);
    let audio0 = net.received(b, a, TrackKind::Audio);
    // Far more than half a second at the rate (and the 30 kB floor).
    let burst = (rate / 8 + 60_000) / 1000;
    for _ in 0..burst {
        net.send_rtp(a, TrackKind::Video, &[0x44; 1000]);
    }
    // Audio keeps flowing while the queue drains, each packet at once.
    for i in 0..50 {
        net.send_rtp(a, TrackKind::Audio, &[0x11; 80]);
        net.pump();
        assert_eq!(
            net.received(b, a, TrackKind::Audio) - audio0,
            i + 1,
            "audio packet {i} waited"
        );
        net.drive_for(Duration::from_millis(20));
    }
    let bw = net
        .endpoint
        .subscriber_bandwidth(&net.clients[b].id)
        .expect("bandwidth");
    assert!(
        bw.paced_dropped > 0,
        "{burst} kB at once at {rate} b/s: the oldest video is dropped"
    );
    assert_eq!(bw.paced_queued, 0, "the queue drained within a second");
}

/// The estimate has no low ceiling: on a path with room, a subscriber gets
/// 12 Mb/s of video whole (the estimate probes its way up to it), where a
/// 10 Mb/s cap paused the video for good (the load tool's 12-person meeting
/// of 800 kb/s cameras lost one or two videos per subscriber).
#[test]
fn a_fast_path_carries_more_than_ten_megabits() {
    let (mut net, a, b) = Net::one_to_one(TrackKind::Video);
    // 30 frames/s of 50 packets of 1000 bytes: 12 Mb/s.
    let mut last_two_seconds = 0;
    let mut before = 0;
    for frame in 0..300u32 {
        if frame == 240 {
            before = net.received(b, a, TrackKind::Video);
        }
        for _ in 0..50 {
            net.send_rtp(a, TrackKind::Video, &[0x22; 1000]);
        }
        if frame >= 240 {
            last_two_seconds += 50;
        }
        net.drive_for(Duration::from_micros(33_333));
    }
    net.drive_for(Duration::from_millis(200));
    let got = net.received(b, a, TrackKind::Video) - before;
    assert_eq!(
        got, last_two_seconds,
        "every packet of the last 2 s arrived"
    );
    let estimate = estimate_bps(&net, b);
    assert!(estimate > 12_000_000, "estimate {estimate}");
}
