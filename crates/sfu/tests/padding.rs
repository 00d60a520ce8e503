//! RTP padding through the SFU: a publisher's padding-only packets
//! (bandwidth probes) are not forwarded and leave no gap in what
//! subscribers receive; a media packet that carried padding arrives whole,
//! with the P bit clear. For ordinary subscribers (audio and video legs),
//! WHEP viewers (slot legs) and retransmissions alike.

mod harness;

use harness::{Client, ClientId, Net, Role};
use huddle_proto::TrackKind;
use std::time::Duration;

/// `publisher` sends `n` media packets of `kind` (payload `[i; 301]`, an
/// odd size so that a padded one gets 3 bytes of padding); before every
/// third it sends two padding-only probes, and every fifth is itself padded.
/// Returns the last payload sent.
fn send_with_padding(net: &mut Net, publisher: ClientId, kind: TrackKind, n: u8) -> Vec<u8> {
    let mut last = Vec::new();
    for i in 0..n {
        if i % 3 == 0 {
            net.send_padded(publisher, kind, &[]);
            net.send_padded(publisher, kind, &[]);
        }
        last = vec![i; 301];
        if i % 5 == 0 {
            net.send_padded(publisher, kind, &last);
        } else {
            net.send_rtp(publisher, kind, &last);
        }
        net.drive_for(Duration::from_millis(20));
    }
    last
}

/// What `subscriber` holds of track `track`: packets received,
/// discontinuities, last payload.
fn seen(net: &Net, subscriber: ClientId, track: &str) -> (u64, u64, Vec<u8>) {
    let c = &net.clients[subscriber];
    (
        c.received.get(track).copied().unwrap_or(0),
        c.discontinuities.get(track).copied().unwrap_or(0),
        c.last_payload
            .get(track)
            .map(|p| p.to_vec())
            .unwrap_or_default(),
    )
}

fn one_to_one(kind: TrackKind) -> (Net, ClientId, ClientId, String) {
    let (net, a, b) = Net::one_to_one(kind);
    let track = net.track_id(a, kind).expect("a's track");
    (net, a, b, track)
}

#[test]
fn video_padding_is_dropped_without_a_gap() {
    let (mut net, a, b, track) = one_to_one(TrackKind::Video);
    let (got0, gaps0, _) = seen(&net, b, &track);
    let rtp_in0 = net.endpoint.stats().rtp_in;

    let last = send_with_padding(&mut net, a, TrackKind::Video, 60);
    net.drive_for(Duration::from_millis(200));

    let (got, gaps, payload) = seen(&net, b, &track);
    assert_eq!(
        net.endpoint.stats().rtp_in - rtp_in0,
        100,
        "60 media + 40 probes reached the SFU"
    );
    assert_eq!(got - got0, 60, "every media packet and no probe arrived");
    assert_eq!(gaps, gaps0, "sequence numbers stay contiguous");
    assert_eq!(payload, last, "the padded packet arrived whole");
    assert_eq!(net.endpoint.stats().rtx_sent, 0, "no gap was asked for");
}

#[test]
fn audio_padding_is_dropped_without_a_gap() {
    let (mut net, a, b, track) = one_to_one(TrackKind::Audio);
    let (got0, gaps0, _) = seen(&net, b, &track);

    let last = send_with_padding(&mut net, a, TrackKind::Audio, 60);
    net.drive_for(Duration::from_millis(200));

    let (got, gaps, payload) = seen(&net, b, &track);
    assert_eq!(got - got0, 60, "every media packet and no probe arrived");
    assert_eq!(gaps, gaps0, "sequence numbers stay contiguous");
    assert_eq!(payload, last, "the padded packet arrived whole");
}

/// Packets lost toward the subscriber right after probes are resent from
/// the track's store under the numbers the subscriber knows.
#[test]
fn a_packet_lost_after_probes_is_resent_whole() {
    let (mut net, a, b, track) = one_to_one(TrackKind::Video);
    send_with_padding(&mut net, a, TrackKind::Video, 10);
    let (got0, _, _) = seen(&net, b, &track);

    net.send_padded(a, TrackKind::Video, &[]);
    net.send_padded(a, TrackKind::Video, &[]);
    net.lose_rtp_to = Some((Client::addr(b, Role::Subscriber), 2));
    let last = send_with_padding(&mut net, a, TrackKind::Video, 30);
    net.drive_for(Duration::from_secs(1));

    assert_eq!(
        net.lose_rtp_to.map(|(_, n)| n),
        Some(0),
        "two packets were lost"
    );
    let (got, _, payload) = seen(&net, b, &track);
    assert_eq!(got - got0, 30, "both lost packets came back");
    assert!(net.endpoint.stats().rtx_sent >= 2, "the SFU resent them");
    assert_eq!(payload, last);
}

/// A WHEP viewer's slot renumbers its stream itself (its source can
/// change); padding must not show in it either.
#[test]
fn a_viewer_gets_no_padding_and_no_gap() {
    let mut net = Net::new();
    let a = net.join("a", false, true);
    net.connect();
    net.send_rtp(a, TrackKind::Video, &[1; 100]);
    net.drive_for(Duration::from_millis(20));
    let viewer = net.join_viewer("viewer", 0, 1);
    net.connect();
    send_with_padding(&mut net, a, TrackKind::Video, 6);
    let slot = net.clients[viewer]
        .received
        .keys()
        .next()
        .cloned()
        .expect("the viewer's slot receives");
    let (got0, gaps0, _) = seen(&net, viewer, &slot);

    let last = send_with_padding(&mut net, a, TrackKind::Video, 60);
    net.drive_for(Duration::from_millis(200));

    let (got, gaps, payload) = seen(&net, viewer, &slot);
    assert_eq!(got - got0, 60, "every media packet and no probe arrived");
    assert_eq!(gaps, gaps0, "sequence numbers stay contiguous");
    assert_eq!(payload, last, "the padded packet arrived whole");
}
