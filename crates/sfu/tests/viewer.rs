//! WHEP viewers on the sans-IO endpoint: a receive-only participant that
//! offers, gets the room's tracks in its fixed m-lines, keeps one continuous
//! stream per m-line when the track feeding it changes, and is never sent a
//! renegotiation; and tracks a publisher renegotiates away being unpublished
//! (for ordinary subscribers and viewers alike).

mod harness;

use harness::{Client, Net, Role};
use huddle_proto::PcRole;
use huddle_proto::TrackKind;
use huddle_sfu::{ParticipantId, RoomId, SfuError, SfuEvent};
use std::time::Duration;

/// Send one audio (and video, when `video`) packet from each of `publishers`
/// every 20 ms for `n` rounds.
fn send_rounds(net: &mut Net, publishers: &[usize], video: bool, n: usize) {
    for _ in 0..n {
        for &p in publishers {
            net.send_rtp(p, TrackKind::Audio, &[0x11; 80]);
            if video {
                net.send_rtp(p, TrackKind::Video, &[0x22; 1000]);
            }
        }
        net.drive_for(Duration::from_millis(20));
    }
}

fn slot_counts(net: &Net, viewer: usize) -> Vec<(String, u64)> {
    let mut v: Vec<_> = net.clients[viewer]
        .received
        .iter()
        .map(|(k, n)| (k.clone(), *n))
        .collect();
    v.sort();
    v
}

#[test]
fn viewer_receives_the_rooms_tracks_without_renegotiation() {
    let mut net = Net::new();
    let alice = net.join("alice", true, true);
    net.connect();
    // The tracks publish on their first packets.
    send_rounds(&mut net, &[alice], true, 3);
    assert!(net.track_id(alice, TrackKind::Audio).is_some());
    assert!(net.track_id(alice, TrackKind::Video).is_some());

    let viewer = net.join_viewer("viewer", 1, 1);
    net.connect();
    send_rounds(&mut net, &[alice], true, 5); // settle
    let before = slot_counts(&net, viewer);
    assert_eq!(before.len(), 2, "one stream per offered m-line: {before:?}");
    send_rounds(&mut net, &[alice], true, 50);
    let after = slot_counts(&net, viewer);
    for ((slot, b), (_, a)) in before.iter().zip(&after) {
        assert_eq!(
            a - b,
            50,
            "slot {slot}: every packet of the 50 sent arrives"
        );
    }
    let v = &net.clients[viewer];
    assert!(v.offers.is_empty(), "a viewer is never sent an offer");
    assert!(
        v.discontinuities.values().all(|&n| n == 0),
        "{:?}",
        v.discontinuities
    );
}

#[test]
fn viewer_slot_switches_source_and_stays_continuous() {
    let mut net = Net::new();
    let alice = net.join("alice", true, true);
    net.connect();
    send_rounds(&mut net, &[alice], true, 3);
    let viewer = net.join_viewer("viewer", 1, 1);
    net.connect();
    send_rounds(&mut net, &[alice], true, 20);

    // bob publishes audio too; the viewer keeps watching alice.
    let bob = net.join("bob", true, false);
    net.connect();
    send_rounds(&mut net, &[alice, bob], false, 10);
    let counts = slot_counts(&net, viewer);
    assert_eq!(counts.len(), 2, "{counts:?}");

    // alice leaves: her audio's slot is fed by bob's audio, in the same
    // stream (sequence numbers and timestamps carry on); the video slot
    // has nothing to show.
    let alice_id = net.clients[alice].id.clone();
    net.endpoint
        .remove_participant(net.now, &alice_id)
        .expect("remove alice");
    net.clients[alice].online = false;
    let before = slot_counts(&net, viewer);
    send_rounds(&mut net, &[bob], false, 30);
    let after = slot_counts(&net, viewer);
    let grew: Vec<_> = before
        .iter()
        .zip(&after)
        .filter(|((_, b), (_, a))| a > b)
        .map(|((slot, b), (_, a))| (slot.clone(), a - b))
        .collect();
    assert_eq!(grew.len(), 1, "only the audio slot moves: {grew:?}");
    assert!(
        grew[0].1 >= 29,
        "bob's audio reaches the viewer through alice's old slot: {grew:?}"
    );
    let v = &net.clients[viewer];
    assert_eq!(
        v.discontinuities.get(&grew[0].0).copied().unwrap_or(0),
        0,
        "the switch from alice to bob is invisible in the RTP stream"
    );
    assert!(v.offers.is_empty());
}

#[test]
fn viewer_joining_an_empty_room_gets_tracks_as_they_come() {
    let mut net = Net::new();
    let viewer = net.join_viewer("viewer", 1, 0);
    net.connect();
    let alice = net.join("alice", true, false);
    net.connect();
    send_rounds(&mut net, &[alice], false, 30);
    let counts = slot_counts(&net, viewer);
    assert_eq!(counts.len(), 1, "{counts:?}");
    assert!(
        counts[0].1 >= 25,
        "alice's audio reaches the viewer: {counts:?}"
    );
}

#[test]
fn leaving_viewer_leaves_nothing_and_bad_offers_change_nothing() {
    let mut net = Net::new();
    let alice = net.join("alice", true, false);
    net.connect();
    send_rounds(&mut net, &[alice], false, 3);
    let empty = net.endpoint.stats();

    // Offers a viewer cannot use: not SDP, and SDP receiving nothing.
    for bad in [
        "hello".to_owned(),
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n".to_owned(),
    ] {
        let r = net.endpoint.add_viewer(
            net.now,
            RoomId("room".into()),
            ParticipantId("bad".into()),
            bad,
        );
        assert!(matches!(r, Err(SfuError::BadSdp(_))), "{r:?}");
        assert_eq!(
            net.endpoint.stats(),
            empty,
            "a refused viewer leaves nothing"
        );
    }

    let viewer = net.join_viewer("viewer", 1, 1);
    net.connect();
    send_rounds(&mut net, &[alice], false, 10);
    assert!(net.clients[viewer].received_total() > 0);
    let id = net.clients[viewer].id.clone();
    net.endpoint
        .remove_participant(net.now, &id)
        .expect("remove viewer");
    net.clients[viewer].online = false;
    send_rounds(&mut net, &[alice], false, 5);
    let s = net.endpoint.stats();
    assert_eq!(
        (s.participants, s.connections, s.tracks, s.addresses),
        (
            empty.participants,
            empty.connections,
            empty.tracks,
            empty.addresses
        )
    );
    assert!(
        !net.events.iter().any(
            |e| matches!(e, SfuEvent::SubscriberOffer { participant, .. } if participant == &id)
        ),
        "no offer ever went to the viewer"
    );
}

/// A publisher that stops one of its tracks (renegotiating it away) has it
/// unpublished: the room is told, an ordinary subscriber is re-offered, a
/// viewer's slot moves to the next track of that kind, and the publisher's
/// other track keeps flowing.
#[test]
fn a_track_removed_by_renegotiation_is_unpublished() {
    let mut net = Net::new();
    let alice = net.join("alice", true, true);
    let bob = net.join("bob", true, false);
    let carol = net.join("carol", false, false);
    net.connect();
    send_rounds(&mut net, &[alice, bob], false, 3);
    send_rounds(&mut net, &[alice], true, 3);
    let viewer = net.join_viewer("viewer", 1, 0);
    net.connect();
    send_rounds(&mut net, &[alice, bob], false, 10);
    let alice_audio = net.track_id(alice, TrackKind::Audio).expect("published");
    let offers_before = net.clients[carol].offers.len();
    let tracks_before = net.endpoint.stats().tracks;

    net.unpublish(alice, TrackKind::Audio);
    net.drive_for(Duration::from_millis(100));
    assert!(
        net.events.iter().any(|e| matches!(e,
            SfuEvent::TrackUnpublished { track_id, .. } if *track_id == alice_audio)),
        "the room is told alice's audio is gone"
    );
    assert_eq!(net.endpoint.stats().tracks, tracks_before - 1);
    assert!(
        net.clients[carol].offers.len() > offers_before,
        "carol is re-offered without it"
    );

    // alice's video still reaches carol; the viewer now hears bob.
    let carol_video = net.received(carol, alice, TrackKind::Video);
    let viewer_before = net.clients[viewer].received_total();
    for _ in 0..20 {
        net.send_rtp(alice, TrackKind::Video, &[0x22; 1000]);
        net.send_rtp(bob, TrackKind::Audio, &[0x11; 80]);
        net.drive_for(Duration::from_millis(20));
    }
    assert_eq!(
        net.received(carol, alice, TrackKind::Video) - carol_video,
        20
    );
    assert!(
        net.clients[viewer].received_total() - viewer_before >= 19,
        "bob's audio fills the viewer's slot"
    );
    assert!(net.clients[viewer]
        .discontinuities
        .values()
        .all(|&n| n == 0));
}

/// A viewer's slots move to another publisher as soon as theirs stops
/// sending (it crashed: no goodbye), not when the SFU declares it gone
/// seconds later.
#[test]
fn a_slot_moves_on_when_its_publisher_goes_quiet() {
    let mut net = Net::new();
    let alice = net.join("alice", true, true);
    net.connect();
    send_rounds(&mut net, &[alice], true, 3);
    let bob = net.join("bob", true, true);
    net.connect();
    send_rounds(&mut net, &[alice, bob], true, 3);
    // This test is about slots; the harness's publishers answer no
    // keyframe request, so a video the allocator paused (its estimate
    // still low after audio alone) would not come back here.
    net.viewer_without_twcc = true;
    let viewer = net.join_viewer("viewer", 1, 1);
    net.connect();
    send_rounds(&mut net, &[alice, bob], true, 10);
    assert_eq!(slot_counts(&net, viewer).len(), 2, "both slots are fed");

    // Alice vanishes; bob goes on. Within 2 s both slots show bob, while
    // alice is still in the room.
    net.clients[alice].online = false;
    send_rounds(&mut net, &[bob], true, 100);
    assert!(
        !net.events
            .iter()
            .any(|e| matches!(e, SfuEvent::ParticipantGone { .. })),
        "alice is not declared gone yet"
    );
    let before = slot_counts(&net, viewer);
    send_rounds(&mut net, &[bob], true, 50);
    let after = slot_counts(&net, viewer);
    for ((slot, b), (_, a)) in before.iter().zip(&after) {
        assert_eq!(a - b, 50, "slot {slot} shows bob's every packet");
    }
    let v = &net.clients[viewer];
    assert!(
        v.discontinuities.values().all(|&n| n == 0),
        "the move is invisible in the RTP streams: {:?}",
        v.discontinuities
    );
    assert!(v.offers.is_empty());
}

/// A WHEP viewer whose offer asks for RFC 8888 congestion control
/// feedback gets it in the answer and its reports drive the estimate.
#[test]
fn a_viewer_offering_rfc8888_feedback_is_answered_with_it() {
    let mut net = Net::new();
    let alice = net.join("alice", true, true);
    net.connect();
    send_rounds(&mut net, &[alice], true, 3);
    net.ccfb_clients = true;
    let viewer = net.join_viewer("viewer", 1, 1);
    net.connect();
    send_rounds(&mut net, &[alice], true, 150);
    let answer = net.clients[viewer]
        .subscriber
        .as_ref()
        .and_then(|s| s.pc.remote_description())
        .map(|d| d.sdp.clone())
        .expect("the SFU answered");
    assert_eq!(
        answer.matches("a=rtcp-fb:* ack ccfb").count(),
        2,
        "{answer}"
    );
    let bw = net
        .endpoint
        .subscriber_bandwidth(&net.clients[viewer].id)
        .expect("the viewer is known");
    assert!(bw.rfc8888, "{bw:?}");
    assert!(bw.feedback_packets >= 10, "{bw:?}");
    assert!(bw.estimate_bps.is_some() && bw.rtt.is_some(), "{bw:?}");
}

/// A publisher of audio and a WHEP viewer of it, connected, media flowing.
fn audio_to_a_viewer() -> (Net, usize, usize) {
    let mut net = Net::new();
    let alice = net.join("alice", true, false);
    net.connect();
    send_rounds(&mut net, &[alice], false, 3);
    let viewer = net.join_viewer("viewer", 1, 0);
    net.connect();
    send_rounds(&mut net, &[alice], false, 5);
    (net, alice, viewer)
}

/// A WHEP viewer and a WHIP-like publisher restart ICE by handing their new
/// credentials over without an offer (RFC 9725 §4.3.2): media goes on,
/// every packet of it, and nothing is left behind.
#[test]
fn a_viewer_and_a_publisher_restart_ice_without_an_offer() {
    let (mut net, alice, viewer) = audio_to_a_viewer();
    let ufrags = net.endpoint.stats().ufrags;

    // The viewer: new SFU credentials, the old ones retired once the
    // client checked with the new ones.
    let (before, after) = net
        .restart_ice_with(viewer, Role::Subscriber)
        .expect("viewer restart");
    assert_ne!(before.0, after.0, "a new SFU ufrag");
    assert_ne!(before.1, after.1, "a new SFU password");
    // The client's agent checks and nominates anew (its timers, not the
    // SFU's, take these few hundred milliseconds).
    net.drive_for(Duration::from_millis(500));
    assert_eq!(net.endpoint.stats().ufrags, ufrags, "the old ufrag retired");
    let got = slot_counts(&net, viewer);
    send_rounds(&mut net, &[alice], false, 50);
    let now = slot_counts(&net, viewer);
    assert_eq!(now[0].1 - got[0].1, 50, "every packet after the restart");

    // The publisher: the client's new credentials; media goes on.
    let (before, after) = net
        .restart_ice_with(alice, Role::Publisher)
        .expect("publisher restart");
    assert_eq!(before, after, "rtc keeps its side's credentials");
    net.drive_for(Duration::from_millis(500));
    let got = slot_counts(&net, viewer);
    send_rounds(&mut net, &[alice], false, 50);
    let now = slot_counts(&net, viewer);
    assert_eq!(now[0].1 - got[0].1, 50, "every packet after the restart");
    assert_eq!(net.endpoint.stats().ufrags, ufrags);

    // Credentials that are not ICE's change nothing.
    let t = net.now;
    let id = net.clients[viewer].id.clone();
    for (ufrag, pwd) in [
        ("ab", "a".repeat(22)),
        ("abcd", "short".into()),
        ("ab\r\nc", "a".repeat(22)),
    ] {
        let e = net
            .endpoint
            .restart_ice_with(t, &id, huddle_proto::PcRole::Subscriber, ufrag, &pwd)
            .expect_err("refused");
        assert!(matches!(e, SfuError::BadIce(_)), "{e}");
    }
    assert_eq!(net.endpoint.stats().ufrags, ufrags);
    // A participant whose subscriber connection the SFU offers restarts by
    // offer, not this way.
    let bob = net.join("bob", false, false);
    net.connect();
    let id = net.clients[bob].id.clone();
    let e = net
        .endpoint
        .restart_ice_with(
            t,
            &id,
            huddle_proto::PcRole::Subscriber,
            "abcd",
            &"a".repeat(22),
        )
        .expect_err("refused");
    assert!(matches!(e, SfuError::NoSubscriberConnection), "{e}");
}

/// A packet that arrives while a publisher's ICE restart is under way
/// (`rtc` has no path until the client checks with its new credentials,
/// and would drop it) is held and forwarded once the path is back: a
/// browser keeps sending on its old path meanwhile, and a lost video
/// packet there froze the picture until the next keyframe.
#[test]
fn media_arriving_during_a_publisher_ice_restart_is_not_lost() {
    let (mut net, alice, viewer) = audio_to_a_viewer();
    let got = slot_counts(&net, viewer)[0].1;

    // The SFU restarts the publisher connection's ICE (as on a WHIP
    // PATCH); the client's checks with its new credentials have not come.
    let captured = net.capture_rtp(alice, TrackKind::Audio, &[0x33; 80]);
    let now = net.now;
    let id = net.clients[alice].id.clone();
    net.endpoint
        .restart_ice_with(
            now,
            &id,
            PcRole::Publisher,
            "NotYetChecked",
            &"p".repeat(24),
        )
        .expect("restart");
    let from = Client::addr(alice, Role::Publisher);
    net.endpoint.handle_datagram(now, from, &captured);
    net.pump();
    assert_eq!(
        slot_counts(&net, viewer)[0].1,
        got,
        "held, not forwarded yet"
    );

    // The client restarts for real and checks: the held packet goes on,
    // then everything after it.
    net.restart_ice_with(alice, Role::Publisher)
        .expect("restart");
    net.drive_for(Duration::from_millis(500));
    assert_eq!(slot_counts(&net, viewer)[0].1, got + 1, "the held packet");
    send_rounds(&mut net, &[alice], false, 20);
    assert_eq!(slot_counts(&net, viewer)[0].1, got + 21);
}
