//! Simulcast through the sans-IO SFU: a publisher sends one video track as
//! three layers (RIDs q, h, f, each with its own SSRC, MID/RID header
//! extensions on every packet); each subscriber gets one layer, switched only
//! at a keyframe, as one continuous stream, and the layer follows what the
//! publisher still sends and how many videos the subscriber watches.

mod harness;

use harness::*;
use huddle_proto::TrackKind;
use huddle_sfu::forward::dynacast::STOP_AFTER;
use huddle_sfu::SfuEvent;
use std::time::Duration;

const Q: usize = 0;
const H: usize = 1;
const F: usize = 2;
const RIDS: [&str; 3] = ["q", "h", "f"];
const FRAME: Duration = Duration::from_millis(33);
/// A keyframe every this many frames on every layer.
const GOP: u64 = 10;

/// One VP8 packet (RFC 7741 descriptor S=1, PID=0; payload header P=0 for a
/// keyframe) whose third byte says which layer it is.
fn vp8(layer: usize, frame: u64) -> [u8; 24] {
    let mut p = [0x77u8; 24];
    p[0] = 0x10;
    p[1] = if frame.is_multiple_of(GOP) {
        0x00
    } else {
        0x01
    };
    p[2] = layer as u8;
    p
}

/// Send `frames` frames of each of `layers` from each publisher, one frame
/// time apart, starting at frame number `*frame`.
fn send(net: &mut Net, publishers: &[ClientId], layers: &[usize], frames: u64, frame: &mut u64) {
    for _ in 0..frames {
        for &p in publishers {
            for &l in layers {
                net.send_layer(p, l, &vp8(l, *frame));
            }
        }
        *frame += 1;
        net.drive_for(FRAME);
    }
}

/// The layer of the last packet `sub` got of `publisher`'s video.
fn layer_seen(net: &Net, sub: ClientId, publisher: ClientId) -> Option<u8> {
    let track = net.track_id(publisher, TrackKind::Video)?;
    net.clients[sub]
        .last_payload
        .get(&track)
        .and_then(|p| p.get(2).copied())
}

fn received(net: &Net, sub: ClientId, publisher: ClientId) -> u64 {
    net.received(sub, publisher, TrackKind::Video)
}

fn discontinuities(net: &Net, sub: ClientId, publisher: ClientId) -> u64 {
    net.track_id(publisher, TrackKind::Video)
        .and_then(|t| net.clients[sub].discontinuities.get(&t).copied())
        .unwrap_or(0)
}

/// Send on every layer until `subs` receive `publishers`' video.
fn start(net: &mut Net, publishers: &[ClientId], subs: &[ClientId], frame: &mut u64) {
    for _ in 0..300 {
        let all = subs
            .iter()
            .all(|&s| publishers.iter().all(|&p| received(net, s, p) > 0));
        if all {
            return;
        }
        send(net, publishers, &[Q, H, F], 1, frame);
    }
    panic!("simulcast video did not start");
}

#[test]
fn a_subscriber_gets_the_best_layer_that_arrives_as_one_stream() {
    let mut net = Net::new();
    let alice = net.join_simulcast("alice", &RIDS);
    let bob = net.join("bob", false, false);
    let mut frame = 0;
    start(&mut net, &[alice], &[bob], &mut frame);

    // Settled on f: one layer's packets, not three.
    send(&mut net, &[alice], &[Q, H, F], 30, &mut frame);
    let before = received(&net, bob, alice);
    send(&mut net, &[alice], &[Q, H, F], 60, &mut frame);
    let got = received(&net, bob, alice) - before;
    assert_eq!(got, 60, "one packet per frame: one layer");
    assert_eq!(layer_seen(&net, bob, alice), Some(F as u8));

    // The publisher stops f (as Chromium does when short of bandwidth):
    // after a second without it, bob moves to h at h's next keyframe.
    send(&mut net, &[alice], &[Q, H], 75, &mut frame);
    assert_eq!(layer_seen(&net, bob, alice), Some(H as u8));
    let before = received(&net, bob, alice);
    send(&mut net, &[alice], &[Q, H], 30, &mut frame);
    assert_eq!(received(&net, bob, alice) - before, 30, "h only");

    // f's encoder stops but padding (bandwidth probes, empty payloads)
    // still comes on its SSRC: f counts as stopped all the same.
    send(&mut net, &[alice], &[Q, H, F], 45, &mut frame);
    assert_eq!(layer_seen(&net, bob, alice), Some(F as u8));
    for _ in 0..75 {
        net.send_layer(alice, F, &[]);
        send(&mut net, &[alice], &[Q, H], 1, &mut frame);
    }
    assert_eq!(
        layer_seen(&net, bob, alice),
        Some(H as u8),
        "padding is not video"
    );

    // f comes back: bob goes up again.
    send(&mut net, &[alice], &[Q, H, F], 45, &mut frame);
    assert_eq!(layer_seen(&net, bob, alice), Some(F as u8));

    // Every switch continued the stream: sequence numbers without a gap,
    // timestamps never backwards.
    assert_eq!(discontinuities(&net, bob, alice), 0);
}

#[test]
fn a_bigger_grid_gets_a_lower_layer() {
    let mut net = Net::new();
    let publishers: Vec<ClientId> = ["a", "b", "c"]
        .iter()
        .map(|n| net.join_simulcast(n, &RIDS))
        .collect();
    let viewer = net.join("viewer", false, false);
    let mut frame = 0;
    start(&mut net, &publishers, &[viewer], &mut frame);
    send(&mut net, &publishers, &[Q, H, F], 60, &mut frame);
    for &p in &publishers {
        // Three videos on screen: the middle layer of each.
        assert_eq!(layer_seen(&net, viewer, p), Some(H as u8), "publisher {p}");
        assert_eq!(discontinuities(&net, viewer, p), 0);
    }
    // Each publisher also watches the other two: the best layer.
    assert_eq!(
        layer_seen(&net, publishers[0], publishers[1]),
        Some(F as u8)
    );
}

#[test]
fn a_whep_viewer_gets_one_layer() {
    let mut net = Net::new();
    let alice = net.join_simulcast("alice", &RIDS);
    let mut frame = 0;
    send(&mut net, &[alice], &[Q, H, F], 5, &mut frame);
    let viewer = net.join_viewer("viewer", 0, 1);
    net.connect();
    send(&mut net, &[alice], &[Q, H, F], 60, &mut frame);
    let slot = net.clients[viewer]
        .last_payload
        .keys()
        .next()
        .cloned()
        .expect("the viewer's slot got video");
    let before = net.clients[viewer].received[&slot];
    send(&mut net, &[alice], &[Q, H, F], 30, &mut frame);
    assert_eq!(net.clients[viewer].received[&slot] - before, 30);
    assert_eq!(
        net.clients[viewer].last_payload[&slot].get(2).copied(),
        Some(F as u8)
    );
    assert_eq!(net.clients[viewer].discontinuities.get(&slot), None);
}

/// The `PublisherLayers` events (dynacast) for `publisher`'s video so far:
/// each as the list of RIDs to send.
fn dynacast(net: &Net, publisher: ClientId) -> Vec<Vec<String>> {
    let who = net.clients[publisher].id.clone();
    net.events
        .iter()
        .filter_map(|e| match e {
            huddle_sfu::SfuEvent::PublisherLayers {
                participant,
                layers,
                ..
            } if *participant == who => Some(
                layers
                    .iter()
                    .filter(|(_, on)| *on)
                    .map(|(rid, _)| rid.clone())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

fn view(
    net: &mut Net,
    sub: ClientId,
    publisher: ClientId,
    visible: bool,
    size: Option<(u32, u32)>,
) {
    let track = net.track_id(publisher, TrackKind::Video).expect("video");
    let id = net.clients[sub].id.clone();
    let now = net.now;
    net.endpoint
        .set_view(
            now,
            &id,
            &track,
            huddle_sfu::TrackView {
                visible,
                width: size.map(|s| s.0),
                height: size.map(|s| s.1),
            },
        )
        .expect("a video bob receives");
    net.pump();
}

/// Alice publishes q, h and f; bob receives her video on f, the best
/// layer. Returns the next frame number.
fn bob_on_f() -> (Net, ClientId, ClientId, u64) {
    let mut net = Net::new();
    let alice = net.join_simulcast("alice", &RIDS);
    let bob = net.join("bob", false, false);
    let mut frame = 0;
    start(&mut net, &[alice], &[bob], &mut frame);
    send(&mut net, &[alice], &[Q, H, F], 30, &mut frame);
    assert_eq!(layer_seen(&net, bob, alice), Some(F as u8));
    (net, alice, bob, frame)
}

/// A small tile gets the small layer, a big one the big layer; a hidden
/// video gets nothing. Dynacast: the layers nobody receives are switched
/// off at the publisher (after a hold) and on again as soon as someone
/// wants them; the lowest layer always stays on.
#[test]
fn tile_size_and_visibility_choose_the_layer_and_dynacast_follows() {
    let (mut net, alice, bob, mut frame) = bob_on_f();

    // A 320x180 tile: q, switched at q's next keyframe.
    view(&mut net, bob, alice, true, Some((320, 180)));
    send(&mut net, &[alice], &[Q, H, F], 30, &mut frame);
    assert_eq!(layer_seen(&net, bob, alice), Some(Q as u8));
    // Nobody receives h and f: after the hold, alice is told to send q only.
    let hold = (STOP_AFTER.as_millis() / FRAME.as_millis()) as u64 + 10;
    send(&mut net, &[alice], &[Q, H, F], hold, &mut frame);
    assert_eq!(dynacast(&net, alice).last(), Some(&vec!["q".to_owned()]));
    // Alice stops h and f as told; bob still gets q.
    let before = received(&net, bob, alice);
    send(&mut net, &[alice], &[Q], 60, &mut frame);
    assert_eq!(received(&net, bob, alice) - before, 60);

    // Bob makes the tile big: f is asked for at once, and bob switches to
    // it at its first keyframe once alice sends it again.
    let events = dynacast(&net, alice).len();
    view(&mut net, bob, alice, true, Some((1280, 720)));
    let asked = dynacast(&net, alice);
    assert_eq!(asked.len(), events + 1, "asked for at once: {asked:?}");
    assert!(asked.last().expect("event").contains(&"f".to_owned()));
    send(&mut net, &[alice], &[Q, F], 30, &mut frame);
    assert_eq!(layer_seen(&net, bob, alice), Some(F as u8));

    // Hidden: nothing at all.
    view(&mut net, bob, alice, false, None);
    let before = received(&net, bob, alice);
    send(&mut net, &[alice], &[Q, H, F], 30, &mut frame);
    assert_eq!(
        received(&net, bob, alice),
        before,
        "a hidden video is not sent"
    );
    // Shown again at no particular size: the best layer, from a keyframe.
    view(&mut net, bob, alice, true, None);
    send(&mut net, &[alice], &[Q, H, F], 30, &mut frame);
    assert_eq!(layer_seen(&net, bob, alice), Some(F as u8));
    assert_eq!(discontinuities(&net, bob, alice), 0);
}

/// Keyframe requests toward one publisher's track are at least 350 ms
/// apart, whatever the layer (Chromium's encoder ignores a request sooner
/// after the last one for any of its layers), and a leg that still waits
/// for its new layer's keyframe asks again.
#[test]
fn keyframe_requests_to_a_track_are_spaced_and_repeated_while_a_leg_waits() {
    let (mut net, alice, bob, _) = bob_on_f();

    // Bob's tile shrinks twice within a frame: q is wanted, then h. From
    // here alice sends no keyframe at all (every frame a delta); the
    // requests are seen go out frame by frame.
    let requests = |net: &Net| net.endpoint.stats().keyframe_requests;
    let mut last = requests(&net);
    view(&mut net, bob, alice, true, Some((320, 180)));
    view(&mut net, bob, alice, true, Some((640, 360)));
    let mut sent_at = Vec::new();
    for _ in 0..75 {
        // 2.5 s
        let now = requests(&net);
        assert!(now <= last + 1, "two requests within one frame");
        if now > last {
            sent_at.push(net.now);
        }
        last = now;
        for l in [Q, H, F] {
            net.send_layer(alice, l, &vp8(l, 1));
        }
        net.drive_for(FRAME);
    }
    for pair in sent_at.windows(2) {
        let gap = pair[1].saturating_duration_since(pair[0]);
        // Seen at frame times (33 ms apart): 350 ms less one frame.
        assert!(gap >= Duration::from_millis(317), "requests {gap:?} apart");
    }
    // One for q, then h's, repeated while bob waits (no keyframe comes).
    assert!(sent_at.len() >= 4, "{} requests in 2.5 s", sent_at.len());
    assert_eq!(layer_seen(&net, bob, alice), Some(F as u8), "still waiting");
}

/// A VP8 packet with X, I (15-bit PictureID), L (TL0PICIDX) and T set, as
/// Chromium sends simulcast; its ninth byte says which layer it is.
fn vp8_full(layer: usize, frame: u64) -> Vec<u8> {
    // Each layer's counters start elsewhere, as each encoder's do.
    let pid = ([20_000u64, 300, 9_000][layer] + frame) as u16 & 0x7fff;
    let tl0 = ([200u64, 7, 90][layer] + frame) as u8;
    let key = frame.is_multiple_of(GOP);
    vec![
        0x90,
        0xe0,
        0x80 | (pid >> 8) as u8,
        pid as u8,
        tl0,
        0x20,
        if key { 0x00 } else { 0x01 },
        0x77,
        layer as u8,
        0x77,
    ]
}

/// A subscriber moved between layers sees one VP8 stream: PictureID and
/// TL0PICIDX go on by one per frame across every switch (each layer's
/// encoder has counters of its own; Chromium holds frames after a jump).
#[test]
fn vp8_picture_ids_continue_across_switches() {
    let mut net = Net::new();
    net.log_rtp = true;
    let alice = net.join_simulcast("alice", &RIDS);
    let bob = net.join("bob", false, false);
    let mut frame = 0u64;
    let send_full = |net: &mut Net, frames: u64, frame: &mut u64| {
        for _ in 0..frames {
            for l in [Q, H, F] {
                net.send_layer(alice, l, &vp8_full(l, *frame));
            }
            *frame += 1;
            net.drive_for(FRAME);
        }
    };
    send_full(&mut net, 60, &mut frame);
    view(&mut net, bob, alice, true, Some((320, 180)));
    send_full(&mut net, 30, &mut frame);
    view(&mut net, bob, alice, true, Some((1280, 720)));
    send_full(&mut net, 30, &mut frame);
    view(&mut net, bob, alice, true, Some((640, 360)));
    send_full(&mut net, 30, &mut frame);

    let track = net.track_id(alice, TrackKind::Video).expect("video");
    let log = &net.clients[bob].rtp_log[&track];
    let layers: Vec<u8> = log.iter().map(|p| p.payload[8]).collect();
    let switches = layers.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(
        switches >= 3,
        "bob went f -> q -> f -> h: {switches} switches"
    );
    let mut last: Option<(u16, u8)> = None;
    for p in log {
        let pid = (u16::from(p.payload[2] & 0x7f) << 8) | u16::from(p.payload[3]);
        let tl0 = p.payload[4];
        if let Some((lp, lt)) = last {
            assert_eq!(pid, (lp + 1) & 0x7fff, "PictureID after {lp}");
            assert_eq!(tl0, lt.wrapping_add(1), "TL0PICIDX after {lt}");
        }
        assert_eq!(p.payload[2] & 0x80, 0x80, "still a 15-bit PictureID");
        assert_eq!(p.payload.len(), 10);
        assert_eq!(
            (
                p.payload[0],
                p.payload[1],
                p.payload[5],
                p.payload[7],
                p.payload[9]
            ),
            (0x90, 0xe0, 0x20, 0x77, 0x77),
            "the rest as sent"
        );
        last = Some((pid, tl0));
    }
}

/// Per layer: packets per frame and their size. At 30 frames/s: q 150
/// kb/s, h 400 kb/s, f 1.2 Mb/s.
const SPLIT_FRAMES: [(usize, usize, usize); 3] = [(Q, 1, 600), (H, 2, 800), (F, 4, 1150)];

/// One frame of every layer of `publisher`'s video in several packets
/// ([`SPLIT_FRAMES`]; only the first has the VP8 start bit, only the last
/// the marker), spread over the frame time as a paced publisher sends
/// them.
fn send_split_frame(net: &mut Net, publisher: ClientId, frame: u64) {
    for i in 0..4 {
        for &(layer, n, size) in &SPLIT_FRAMES {
            if i < n {
                let mut p = vec![0x77u8; size];
                p[..3].copy_from_slice(&vp8(layer, frame)[..3]);
                if i > 0 {
                    p[0] &= !0x10; // S: only the frame's first packet
                }
                net.send_layer_packet(publisher, layer, &p, i + 1 == n);
            }
        }
        net.drive_for(FRAME / 4);
    }
}

/// The SFU's bandwidth probes (padding on a video leg) go between frames,
/// never between the packets of one: a receiver cannot assemble a frame
/// whose sequence numbers padding interrupts (libwebrtc's packet buffer
/// drops it, and every later frame that refers to it waits for a
/// keyframe: the Chromium viewer of the thin-link run froze for seconds).
#[test]
fn probes_never_split_a_frame() {
    let mut net = Net::new();
    net.log_rtp = true;
    let alice = net.join_simulcast("alice", &RIDS);
    let bob = net.join("bob", false, false);
    // Frames of several packets, more than a new subscriber's first
    // estimate, so the SFU probes toward f.
    for frame in 0..300u64 {
        send_split_frame(&mut net, alice, frame);
    }

    let track = net.track_id(alice, TrackKind::Video).expect("video");
    let client = &net.clients[bob];
    let media = &client.rtp_log[&track];
    let padding = client.padding_log.get(&track).cloned().unwrap_or_default();
    assert!(!padding.is_empty(), "the SFU probed toward bob");
    // Each padding packet's nearest media neighbour before it (by sequence
    // number) ended its frame.
    let base = media[0].seq;
    let at = |seq: u16| seq.wrapping_sub(base);
    let mut split = 0;
    for &pad in &padding {
        let before = media
            .iter()
            .filter(|m| at(m.seq) < at(pad))
            .max_by_key(|m| at(m.seq));
        if before.is_some_and(|m| !m.marker) {
            split += 1;
        }
    }
    assert_eq!(split, 0, "of {} padding packets", padding.len());
    assert!(
        media.iter().any(|m| m.payload[2] == F as u8),
        "bob got f in the end"
    );
}

/// A new subscriber starts with the layer that fits the initial estimate
/// (here the lowest) and moves up once probing shows room, rather than
/// asking for the best layer's big keyframe before its path is known.
#[test]
fn a_new_subscriber_starts_low_and_moves_up() {
    let mut net = Net::new();
    net.log_rtp = true;
    let alice = net.join_simulcast("alice", &RIDS);
    // Frames of several packets for two seconds before bob comes: what
    // each layer costs is known.
    let mut bob = None;
    for frame in 0..360u64 {
        if frame == 60 {
            bob = Some(net.join("bob", false, false));
        }
        send_split_frame(&mut net, alice, frame);
    }

    let bob = bob.expect("bob joined");
    let track = net.track_id(alice, TrackKind::Video).expect("video");
    let layers: Vec<u8> = net.clients[bob].rtp_log[&track]
        .iter()
        .map(|p| p.payload[2])
        .collect();
    assert_eq!(layers.first(), Some(&(Q as u8)), "starts at q: {layers:?}");
    assert_eq!(layers.last(), Some(&(F as u8)), "then f: {layers:?}");
}

/// One frame of layer `layer` in `parts` packets of `size` bytes, spread
/// over the frame time (only the first has the VP8 start bit, only the last
/// the marker).
fn send_frame_in_parts(
    net: &mut Net,
    publisher: ClientId,
    layer: usize,
    frame: u64,
    parts: usize,
    size: usize,
) {
    for i in 0..parts {
        let mut p = vec![0x77u8; size];
        p[..3].copy_from_slice(&vp8(layer, frame)[..3]);
        if i > 0 {
            p[0] &= !0x10;
        }
        net.send_layer_packet(publisher, layer, &p, i + 1 == parts);
        net.drive_for(FRAME / parts as u32);
    }
}

/// A video the subscriber's estimate cannot carry is paused, possibly in
/// the middle of a frame; the SFU still probes (padding on that video's
/// leg, the only one there is) and resumes it once the path shows room.
/// Before padding could follow a frame cut short, a subscriber whose only
/// video was paused mid-frame never probed again: it stayed paused while
/// its path had room (seen with Chromium behind TURN/TLS).
#[test]
fn a_video_paused_mid_frame_is_probed_for_and_resumed() {
    let mut net = Net::new();
    net.log_rtp = true;
    let alice = net.join_simulcast("alice", &RIDS);
    let bob = net.join("bob", false, false);
    // Small frames while bob's connection settles: his estimate stays
    // near what they cost.
    let mut frame = 0;
    while frame < 150 {
        send_frame_in_parts(&mut net, alice, F, frame, 1, 300);
        frame += 1;
    }
    let track = net.track_id(alice, TrackKind::Video).expect("video");
    let before = net.clients[bob].rtp_log[&track].len();
    // Then frames of four packets, about 1.1 Mb/s: more than the estimate.
    while frame < 600 {
        send_frame_in_parts(&mut net, alice, F, frame, 4, 1150);
        frame += 1;
    }
    let bob_id = huddle_sfu::ParticipantId("bob".into());
    let pauses = |resumed: bool| {
        net.events
            .iter()
            .filter(|e| match e {
                SfuEvent::TrackPaused { participant, .. } => !resumed && *participant == bob_id,
                SfuEvent::TrackResumed { participant, .. } => resumed && *participant == bob_id,
                _ => false,
            })
            .count()
    };
    assert!(pauses(false) > 0, "the big frames did not fit at first");
    assert_eq!(pauses(true), pauses(false), "every pause ended");
    let media = &net.clients[bob].rtp_log[&track];
    let padding = net.clients[bob].padding_log.get(&track).map_or(0, Vec::len);
    assert!(padding > 0, "the SFU probed on the paused video");
    let last_second = media
        .iter()
        .rev()
        .take(120)
        .filter(|m| m.payload.len() > 1000)
        .count();
    assert!(
        media.len() > before && last_second == 120,
        "bob gets the big frames again"
    );
}
