//! The SFU's own transport for subscriber connections (ICE-lite, DTLS-SRTP,
//! RTCP), against `rtc` clients on the harness: sender reports, the
//! AES-CM profile, and a client whose DTLS certificate does not match its
//! SDP. Deterministic: simulated time, no sockets.

mod harness;

use harness::{Client, Net, Role};
use huddle_proto::TrackKind;
use huddle_sfu::SfuEvent;
use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use std::time::Duration;

/// RTCP packet type of a sender report (RFC 3550 §6.4.1).
const SR: u8 = 200;

#[test]
fn subscribers_get_a_sender_report_about_every_second() {
    let mut net = Net::new();
    let a = net.join("a", true, false);
    let b = net.join("b", false, false);
    net.connect();
    net.start_media(a, TrackKind::Audio, &[b]);
    let b_sub = Client::addr(b, Role::Subscriber);
    let before = net.rtcp_to.get(&b_sub).map_or(0, Vec::len);
    net.send_audio(a, 250); // 5 s
    let srs = net.rtcp_to.get(&b_sub).map_or(&[][..], |v| &v[before..]);
    assert!(
        (4..=6).contains(&srs.len()) && srs.iter().all(|&pt| pt == SR),
        "RTCP to B over 5 s: {srs:?}"
    );
}

#[test]
fn a_subscriber_offering_only_aes_cm_gets_media() {
    let mut net = Net::new();
    net.subscriber_srtp = vec![SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80];
    let a = net.join("a", true, false);
    let b = net.join("b", false, false);
    net.connect();
    net.start_media(a, TrackKind::Audio, &[b]);
    let got = net.received(b, a, TrackKind::Audio);
    net.send_audio(a, 100);
    assert_eq!(net.received(b, a, TrackKind::Audio) - got, 100);
}

/// Flip the first hex digit of every SHA-256 fingerprint in `sdp`.
fn wrong_fingerprint(sdp: &str) -> String {
    sdp.lines()
        .map(|l| match l.strip_prefix("a=fingerprint:sha-256 ") {
            Some(v) => {
                let first = if v.starts_with('0') { '1' } else { '0' };
                format!("a=fingerprint:sha-256 {first}{}", &v[1..])
            }
            None => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\r\n")
        + "\r\n"
}

#[test]
fn a_client_whose_certificate_does_not_match_its_answer_gets_nothing() {
    let mut net = Net::new();
    net.tamper_answer = Some(wrong_fingerprint);
    net.client_errors_expected = true;
    let a = net.join("a", true, false);
    let b = net.join("b", false, false);
    net.drive_for(Duration::from_secs(1));
    net.send_audio(a, 150);
    assert!(net.track_id(a, TrackKind::Audio).is_some(), "A published");
    assert!(!net.clients[b].offers.is_empty(), "B was offered A's track");
    assert_eq!(net.received(b, a, TrackKind::Audio), 0, "no media to B");
    let sub_connected = net.clients[b]
        .pc(Role::Subscriber)
        .is_some_and(|pc| pc.connected);
    assert!(!sub_connected, "B's subscriber connection never came up");

    // The SFU gives up on B once its connection had time to come up.
    net.drive_for(Duration::from_secs(30));
    let gone = net.events.iter().any(|e| {
        matches!(e, SfuEvent::ParticipantGone { participant, reason, .. }
            if participant.0 == "b" && reason.contains("never came up"))
    });
    assert!(gone, "B is removed: {:?}", net.events);
}

/// Transport-wide congestion control is negotiated with an `rtc` client
/// (its default interceptors include the TWCC receiver): every packet the
/// SFU sends it carries a transport-wide sequence number, and the client's
/// feedback on them comes back and is read.
#[test]
fn a_subscriber_reports_arrivals_of_the_packets_the_sfu_numbers() {
    let mut net = Net::new();
    let a = net.join("a", true, true);
    let b = net.join("b", false, false);
    net.connect();
    net.start_media(a, TrackKind::Audio, &[b]);
    net.send_audio(a, 100); // 2 s
    let b_id = net.clients[b].id.clone();
    let bw = net
        .endpoint
        .subscriber_bandwidth(&b_id)
        .expect("b is known");
    assert!(bw.feedback_negotiated, "{bw:?}");
    let sent = net.received(b, a, TrackKind::Audio);
    assert!(bw.packets_stamped >= sent, "{bw:?}, {sent} received");
    assert!(bw.feedback_packets >= 5, "{bw:?}");
    // a itself subscribes to nothing: no subscriber connection to estimate.
    let a_id = net.clients[a].id.clone();
    let bw = net
        .endpoint
        .subscriber_bandwidth(&a_id)
        .expect("a is known");
    assert!(!bw.feedback_negotiated);
}

/// A subscriber that reports with RFC 8888 congestion control feedback
/// (`rtc`'s recorder, as Chromium does with its field trial) answers the
/// SFU's `a=rtcp-fb:* ack ccfb` and drops TWCC: nothing is stamped with a
/// transport-wide sequence number, its RFC 8888 reports drive the
/// estimate, and the probes the allocator asks for are measured from them
/// (the estimate climbs from its start toward a 2.4 Mb/s video).
#[test]
fn a_subscriber_reporting_with_rfc8888_feedback_gets_an_estimate_from_it() {
    let mut net = Net::new();
    net.ccfb_clients = true;
    let a = net.join("a", true, true);
    let b = net.join("b", false, false);
    net.connect();
    net.start_media(a, TrackKind::Audio, &[b]);
    net.start_media(a, TrackKind::Video, &[b]);
    let offer = net.clients[b].offers.last().expect("an offer").clone();
    assert!(offer.contains("a=rtcp-fb:* ack ccfb"), "{offer}");
    let answer = net.clients[b]
        .subscriber
        .as_ref()
        .and_then(|s| s.pc.local_description())
        .expect("b answered")
        .sdp;
    assert!(answer.contains(" ack ccfb"), "{answer}");
    assert!(!answer.contains("transport-wide-cc"), "{answer}");
    // 5 s of audio and 2.4 Mb/s of video (30 frames/s of 10 packets).
    for i in 0..250 {
        net.send_rtp(a, TrackKind::Audio, &[0x11; 80]);
        if i % 2 == 0 {
            for _ in 0..10 {
                net.send_rtp(a, TrackKind::Video, &[0x22; 1000]);
            }
        }
        net.drive_for(Duration::from_millis(20));
    }
    let bw = net
        .endpoint
        .subscriber_bandwidth(&net.clients[b].id)
        .expect("b is known");
    assert!(bw.feedback_negotiated && bw.rfc8888, "{bw:?}");
    assert!(bw.feedback_packets >= 20, "{bw:?}");
    let estimate = bw.estimate_bps.expect("an estimate");
    assert!(
        estimate > 1_500_000,
        "the estimate climbed from 300 kb/s: {bw:?}"
    );
    assert!(bw.rtt.is_some(), "{bw:?}");
}
