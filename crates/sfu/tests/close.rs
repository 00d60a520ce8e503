//! Closing every connection at once (the server stopping), on simulated
//! time (see `harness`): every client is told.

mod harness;

use harness::{Client, Net, Role};
use huddle_proto::TrackKind;
use std::time::Duration;

/// After `close_all`, every client's connections are told at once: each
/// subscriber connection gets one RTCP datagram, its BYE (a compound
/// packet led by a sender report; what is in it is unit-tested in
/// `transport`), and every connection a DTLS alert (close_notify: the only
/// alert the SFU sends after a handshake); the SFU holds nothing. Before, a WHEP viewer of a stopped server stayed
/// `connected` with frozen media until its consent timeout (30 s).
///
/// rtc 0.21, the client here, takes the close_notify (its DTLS transport
/// closes) but does not change its peer connection state for it, so the
/// test looks at the wire; browsers, aiortc and pion close on it.
#[test]
fn close_all_tells_every_client() {
    let mut net = Net::new();
    let a = net.join("a", true, false);
    let b = net.join("b", false, false);
    net.connect();
    net.start_media(a, TrackKind::Audio, &[b]);
    let c = net.join_viewer("c", 1, 0);
    net.connect();
    net.send_audio(a, 50);
    assert!(net.clients[c].received_total() > 0, "the viewer gets audio");

    let rtcp_before: Vec<usize> = (0..net.clients.len())
        .map(|i| {
            net.rtcp_to
                .get(&Client::addr(i, Role::Subscriber))
                .map_or(0, Vec::len)
        })
        .collect();
    let now = net.now;
    net.endpoint.close_all(now);
    net.pump();

    for (i, client) in net.clients.iter().enumerate() {
        for pc in [client.publisher.as_ref(), client.subscriber.as_ref()]
            .into_iter()
            .flatten()
        {
            assert_eq!(
                net.dtls_alerts_to.get(&pc.addr),
                Some(&1),
                "client {i}'s connection at {} got close_notify",
                pc.addr
            );
        }
    }
    for sub in [b, c] {
        let rtcp = &net.rtcp_to[&Client::addr(sub, Role::Subscriber)][rtcp_before[sub]..];
        assert_eq!(rtcp, &[200], "client {sub} got its BYE (led by an SR)");
    }
    let s = net.endpoint.stats();
    assert_eq!(
        (s.participants, s.connections, s.tracks, s.addresses),
        (0, 0, 0, 0),
        "nothing is left"
    );
    // And nothing more is sent: the clients' own traffic finds no one.
    let dropped = net.endpoint.stats().dropped_datagrams;
    net.drive_for(Duration::from_secs(2));
    assert!(net.endpoint.stats().dropped_datagrams >= dropped);
    assert_eq!(net.endpoint.stats().rtp_out, s.rtp_out);
}
