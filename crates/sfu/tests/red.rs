//! RED audio (RFC 2198, `audio/red`) through the SFU, sans-IO, with real
//! `rtc` clients: a publisher that offers RED gets it; a subscriber that
//! takes RED gets the publisher's RED packets as they are, one that does
//! not gets plain Opus, including packets lost on the publisher's link
//! that the redundancy brings back; malformed RED goes nowhere.

mod harness;

use harness::{Client, ClientId, Net, ReceivedRtp, Role};
use huddle_proto::TrackKind;
use std::time::Duration;

const OPUS: u8 = huddle_wire::codecs::OPUS_PT;
const RED: u8 = huddle_wire::codecs::RED_PT;
/// 20 ms at 48 kHz.
const FRAME: u32 = 960;

/// Frame `n` of the publisher's stream: 30 bytes that say which it is.
fn frame(n: u16) -> Vec<u8> {
    let [hi, lo] = n.to_be_bytes();
    let mut f = vec![0x7c; 30];
    f[0] = hi;
    f[1] = lo;
    f
}

/// [`harness::red_payload`] with Opus blocks.
fn red_payload(redundant: &[(u8, u32, &[u8])], primary: &[u8]) -> Vec<u8> {
    harness::red_payload(redundant, OPUS, primary)
}

/// What a RED publisher sent: per packet, its sequence number, timestamp,
/// RED payload and primary frame.
#[derive(Default)]
struct Sent {
    packets: Vec<(u16, u32, Vec<u8>, Vec<u8>)>,
}

impl Sent {
    fn by_seq(&self, seq: u16) -> &(u16, u32, Vec<u8>, Vec<u8>) {
        self.packets
            .iter()
            .find(|p| p.0 == seq)
            .expect("a packet sent")
    }
}

/// A room for RED: `alice` publishes audio with RED, `bob` subscribes
/// with RED, `carol` with Opus only; all connected, alice's track flowing
/// to both. Alice's frame of each packet is `frame(its sequence number)`.
struct Room {
    net: Net,
    alice: ClientId,
    /// Takes RED.
    red_sub: ClientId,
    /// Takes Opus only.
    opus_sub: ClientId,
    track: String,
}

impl Room {
    fn new() -> Self {
        Self::with_nack(false)
    }

    /// [`Room::new`], every client negotiating NACK for audio when `nack`
    /// (as the calling crate does).
    fn with_nack(nack: bool) -> Self {
        let mut net = Net::new();
        net.nack_audio_clients = nack;
        net.red_clients = true;
        let alice = net.join("alice", true, false);
        let bob = net.join("bob", false, false);
        net.red_clients = false;
        let carol = net.join("carol", false, false);
        net.connect();
        assert_eq!(
            net.red_payload_type(alice),
            Some(RED),
            "the SFU's answer takes RED"
        );
        let mut room = Room {
            net,
            alice,
            red_sub: bob,
            opus_sub: carol,
            track: String::new(),
        };
        let mut sent = Sent::default();
        let end = room.net.now + Duration::from_secs(10);
        while room.net.received(bob, alice, TrackKind::Audio) == 0
            || room.net.received(carol, alice, TrackKind::Audio) == 0
        {
            assert!(room.net.now < end, "alice's audio did not start");
            room.send(&mut sent, 1);
            room.net.drive_for(Duration::from_millis(20));
        }
        room.net.drive_for(Duration::from_millis(100));
        room.track = room
            .net
            .track_id(alice, TrackKind::Audio)
            .expect("published");
        room.net.log_rtp = true;
        room
    }

    /// Send alice's next packet, RED with `distance` earlier frames,
    /// without delivering it.
    fn send(&mut self, sent: &mut Sent, distance: u16) {
        let t = &self.net.clients[self.alice].tracks[&TrackKind::Audio];
        let (seq, ts) = (t.seq, t.ts);
        let olds: Vec<(u32, Vec<u8>)> = (1..=distance)
            .rev()
            .map(|k| (u32::from(k) * FRAME, frame(seq.wrapping_sub(k))))
            .collect();
        let blocks: Vec<(u8, u32, &[u8])> =
            olds.iter().map(|(o, f)| (OPUS, *o, f.as_slice())).collect();
        let payload = red_payload(&blocks, &frame(seq));
        self.net.send_red(self.alice, &payload);
        sent.packets.push((seq, ts, payload, frame(seq)));
    }

    /// Send `n` packets 20 ms apart.
    fn send_for(&mut self, sent: &mut Sent, n: usize, distance: u16) {
        for _ in 0..n {
            self.send(sent, distance);
            self.net.drive_for(Duration::from_millis(20));
        }
    }

    fn log(&self, client: ClientId) -> &[ReceivedRtp] {
        self.net.clients[client]
            .rtp_log
            .get(&self.track)
            .map_or(&[], Vec::as_slice)
    }

    fn seqs(&self, client: ClientId) -> Vec<u16> {
        self.log(client).iter().map(|p| p.seq).collect()
    }
}

/// The payload types of the first `m=audio` line of `sdp`, in order.
fn audio_payload_types(sdp: &str) -> Vec<u8> {
    sdp.lines()
        .find(|l| l.starts_with("m=audio"))
        .map(|l| {
            l.split(' ')
                .skip(3)
                .filter_map(|p| p.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn red_goes_as_it_is_to_red_subscribers_and_as_opus_to_the_others() {
    let mut room = Room::new();
    // Both subscribers were offered RED after Opus.
    for sub in [room.red_sub, room.opus_sub] {
        let offer = room.net.clients[sub].offers.last().expect("an offer");
        assert_eq!(audio_payload_types(offer), [OPUS, RED], "{offer}");
        assert!(offer.contains("a=rtpmap:63 red/48000/2"), "{offer}");
    }
    let mut sent = Sent::default();
    room.send_for(&mut sent, 50, 1);
    room.net.drive_for(Duration::from_millis(100));

    let bob = room.log(room.red_sub);
    assert_eq!(bob.len(), 50, "every packet reached bob");
    for (got, (seq, ts, payload, _)) in bob.iter().zip(&sent.packets) {
        assert_eq!((got.seq, got.ts, got.pt), (*seq, *ts, RED));
        assert_eq!(got.payload, payload[..], "RED as the publisher sent it");
    }
    let carol = room.log(room.opus_sub);
    assert_eq!(carol.len(), 50, "every packet reached carol");
    for (got, (seq, ts, _, primary)) in carol.iter().zip(&sent.packets) {
        assert_eq!((got.seq, got.ts, got.pt), (*seq, *ts, OPUS));
        assert_eq!(got.payload, primary[..], "the primary frame, as plain Opus");
    }
    let stats = room.net.endpoint.stats();
    assert_eq!((stats.red_recovered, stats.red_malformed), (0, 0));
    for sub in [room.red_sub, room.opus_sub] {
        assert_eq!(
            room.net.clients[sub].discontinuities.get(&room.track),
            None,
            "no gap, nothing out of order"
        );
    }
}

#[test]
fn packets_lost_on_the_publishers_link_reach_opus_subscribers_from_the_redundancy() {
    let mut room = Room::new();
    let from = Client::addr(room.alice, Role::Publisher);
    let mut sent = Sent::default();
    room.send_for(&mut sent, 5, 1);
    // One packet lost, distance 1 brings it back.
    room.net.lose_packet_from = Some((from, None));
    room.send_for(&mut sent, 5, 1);
    let lost_one = sent.packets[5].0;
    // Two in a row lost, distance 2 brings both back.
    room.net.lose_packet_from = Some((from, None));
    room.send(&mut sent, 2);
    room.net.pump();
    room.net.lose_packet_from = Some((from, None));
    room.send(&mut sent, 2);
    room.net.pump();
    room.net.lose_packet_from = None;
    let lost_two = [sent.packets[10].0, sent.packets[11].0];
    room.send_for(&mut sent, 5, 2);
    room.net.drive_for(Duration::from_millis(100));
    assert_eq!(
        room.net.lost_packet_sends, 3,
        "three packets never reached the SFU"
    );

    // Carol (Opus only) has every packet, once each, in order, the lost
    // ones with their own numbers, timestamps and frames.
    let carol = room.log(room.opus_sub);
    let all: Vec<u16> = sent.packets.iter().map(|p| p.0).collect();
    assert_eq!(room.seqs(room.opus_sub), all);
    for got in carol {
        let (_, ts, _, primary) = sent.by_seq(got.seq);
        assert_eq!((got.ts, got.pt), (*ts, OPUS), "packet {}", got.seq);
        assert_eq!(got.payload, primary[..], "packet {}", got.seq);
    }
    assert_eq!(room.net.endpoint.stats().red_recovered, 3);

    // Bob (RED) gets what arrived, as it is: his own client recovers.
    let bob = room.seqs(room.red_sub);
    assert_eq!(bob.len(), all.len() - 3);
    assert!(!bob.contains(&lost_one) && !lost_two.iter().any(|s| bob.contains(s)));
    let after_lost = room
        .log(room.red_sub)
        .iter()
        .find(|p| p.seq == lost_one.wrapping_add(1));
    assert_eq!(
        after_lost.map(|p| p.payload.to_vec()),
        Some(sent.by_seq(lost_one.wrapping_add(1)).2.clone()),
        "the next RED packet, carrying the lost frame"
    );
}

/// Subscribers that negotiated NACK for audio get a packet lost on their
/// own link again, each in its form: RED as the publisher sent it, or the
/// primary frame as plain Opus.
#[test]
fn audio_lost_toward_a_subscriber_is_resent_in_its_form() {
    let mut room = Room::with_nack(true);
    let mut sent = Sent::default();
    room.send_for(&mut sent, 5, 1);
    for sub in [room.red_sub, room.opus_sub] {
        room.net.lose_rtp_to = Some((Client::addr(sub, Role::Subscriber), 2));
        room.send_for(&mut sent, 10, 1);
        assert_eq!(room.net.lose_rtp_to.map(|(_, n)| n), Some(0), "two lost");
    }
    room.send_for(&mut sent, 10, 1);
    room.net.drive_for(Duration::from_millis(500));
    assert!(room.net.endpoint.stats().rtx_sent >= 4);
    let all: Vec<u16> = sent.packets.iter().map(|p| p.0).collect();
    for (sub, pt) in [(room.red_sub, RED), (room.opus_sub, OPUS)] {
        let mut got = room.seqs(sub);
        got.sort_by_key(|s| s.wrapping_sub(all[0]));
        got.dedup();
        assert_eq!(got, all, "every packet reached the subscriber");
        for p in room.log(sub) {
            let (_, ts, payload, primary) = sent.by_seq(p.seq);
            let want = if pt == RED { payload } else { primary };
            assert_eq!((p.ts, p.pt), (*ts, pt), "packet {}", p.seq);
            assert_eq!(p.payload, want[..], "packet {}", p.seq);
        }
    }
}

#[test]
fn an_original_arriving_after_its_frame_was_recovered_is_not_sent_twice() {
    let mut room = Room::new();
    let mut sent = Sent::default();
    room.send_for(&mut sent, 5, 1);
    room.net.hold_packet_from = Some((Client::addr(room.alice, Role::Publisher), None));
    room.send_for(&mut sent, 3, 1);
    room.net.hold_packet_from = None;
    let late = sent.packets[5].0;
    room.net.release_held();
    room.net.drive_for(Duration::from_millis(100));

    let carol = room.seqs(room.opus_sub);
    assert_eq!(
        carol.iter().filter(|&&s| s == late).count(),
        1,
        "recovered once, the late original dropped: {carol:?}"
    );
    let all: Vec<u16> = sent.packets.iter().map(|p| p.0).collect();
    assert_eq!(carol, all, "in order: the recovered copy went first");
    assert_eq!(room.net.endpoint.stats().red_recovered, 1);
    // Bob gets the late original as it is, after the packets past it.
    let bob = room.seqs(room.red_sub);
    assert_eq!(bob.last(), Some(&late));
    assert_eq!(bob.len(), all.len());
}

#[test]
fn malformed_red_is_dropped_and_counted_and_nothing_else_suffers() {
    let mut room = Room::new();
    // Eve publishes plain Opus meanwhile; bob takes RED, but hers is Opus.
    let eve = room.net.join("eve", true, false);
    room.net.connect();
    room.net
        .start_media(eve, TrackKind::Audio, &[room.red_sub, room.opus_sub]);
    let eve_before =
        [room.red_sub, room.opus_sub].map(|s| room.net.received(s, eve, TrackKind::Audio));
    let thirty_three: Vec<u8> = {
        let empty: [(u8, u32, &[u8]); 32] = [(OPUS, 0, &[]); 32];
        red_payload(&empty, &[1, 2, 3])
    };
    let malformed: [&[u8]; 5] = [
        &[0xef, 0x0f, 0x00],                         // header cut short
        &[0xef, 0x0f, 0x00, 0x05, OPUS, 1, 2],       // block past the end
        &[0xef, 0x0f, 0x00, 0x00],                   // no primary header
        &thirty_three,                               // too many blocks
        &red_payload(&[(0, FRAME, &[9; 10])], &[1]), // a block that is not Opus
    ];
    let first_bad = room.net.clients[room.alice].tracks[&TrackKind::Audio].seq;
    for payload in malformed {
        room.net.send_red(room.alice, payload);
        room.net.send_rtp(eve, TrackKind::Audio, &[0x42; 60]);
        room.net.drive_for(Duration::from_millis(20));
    }
    let mut sent = Sent::default();
    for _ in 0..10 {
        room.send(&mut sent, 1);
        room.net.send_rtp(eve, TrackKind::Audio, &[0x43; 60]);
        room.net.drive_for(Duration::from_millis(20));
    }
    room.net.drive_for(Duration::from_millis(100));

    assert_eq!(room.net.endpoint.stats().red_malformed, 5);
    let bad: Vec<u16> = (0..5).map(|i| first_bad.wrapping_add(i)).collect();
    let good: Vec<u16> = sent.packets.iter().map(|p| p.0).collect();
    // Bob (RED) got none of the malformed packets, and every good one.
    let bob = room.seqs(room.red_sub);
    assert!(!bob.iter().any(|s| bad.contains(s)), "{bob:?}");
    assert!(good.iter().all(|s| bob.contains(s)), "{bob:?}");
    // Carol (Opus) too; a malformed packet counts as lost, so the last
    // one's number carries the frame the next good packet repeats.
    let carol = room.seqs(room.opus_sub);
    assert!(!carol.iter().any(|s| bad[..4].contains(s)), "{carol:?}");
    assert!(good.iter().all(|s| carol.contains(s)), "{carol:?}");
    let recovered = room.log(room.opus_sub).iter().find(|p| p.seq == bad[4]);
    assert_eq!(
        recovered.map(|p| p.payload.to_vec()),
        Some(frame(bad[4])),
        "the frame of the last malformed packet's number, from the next packet"
    );
    assert_eq!(room.net.endpoint.stats().red_recovered, 1);
    // Eve's packets reached both, as Opus, none lost.
    for (i, sub) in [room.red_sub, room.opus_sub].into_iter().enumerate() {
        let got = room.net.received(sub, eve, TrackKind::Audio) - eve_before[i];
        assert_eq!(got, 15, "eve's packets at subscriber {sub}");
        let eve_track = room
            .net
            .track_id(eve, TrackKind::Audio)
            .expect("eve's track");
        let log = &room.net.clients[sub].rtp_log[&eve_track];
        assert!(log.iter().all(|p| p.pt == OPUS));
    }
}

#[test]
fn whep_viewers_get_red_or_opus_as_their_offer_asked() {
    let mut net = Net::new();
    net.red_clients = true;
    let alice = net.join("alice", true, false);
    let red_viewer = net.join_viewer("red-viewer", 1, 0);
    net.red_clients = false;
    let opus_viewer = net.join_viewer("opus-viewer", 1, 0);
    net.connect();
    let mut room = Room {
        net,
        alice,
        red_sub: red_viewer,
        opus_sub: opus_viewer,
        track: String::new(),
    };
    let mut sent = Sent::default();
    let end = room.net.now + Duration::from_secs(10);
    while [red_viewer, opus_viewer]
        .iter()
        .any(|&v| room.net.clients[v].received_total() == 0)
    {
        assert!(room.net.now < end, "the viewers got nothing");
        room.send(&mut sent, 1);
        room.net.drive_for(Duration::from_millis(20));
    }
    room.net.drive_for(Duration::from_millis(100));
    room.net.log_rtp = true;
    let mut sent = Sent::default();
    room.send_for(&mut sent, 5, 1);
    room.net.lose_packet_from = Some((Client::addr(alice, Role::Publisher), None));
    room.send_for(&mut sent, 5, 1);
    room.net.drive_for(Duration::from_millis(100));

    let log = |v: ClientId| -> Vec<ReceivedRtp> {
        let logs = &room.net.clients[v].rtp_log;
        assert_eq!(logs.len(), 1, "one slot");
        logs.values().next().cloned().unwrap_or_default()
    };
    let red = log(red_viewer);
    assert_eq!(red.len(), 9, "all but the lost one");
    assert!(red.iter().all(|p| p.pt == RED));
    let sent_red: Vec<&[u8]> = sent
        .packets
        .iter()
        .filter(|p| p.0 != sent.packets[5].0)
        .map(|p| p.2.as_slice())
        .collect();
    assert_eq!(
        red.iter().map(|p| &p.payload[..]).collect::<Vec<_>>(),
        sent_red
    );
    let opus = log(opus_viewer);
    assert!(opus.iter().all(|p| p.pt == OPUS));
    let primaries: Vec<&[u8]> = sent.packets.iter().map(|p| p.3.as_slice()).collect();
    assert_eq!(
        opus.iter().map(|p| &p.payload[..]).collect::<Vec<_>>(),
        primaries,
        "every frame, the lost one recovered, in order"
    );
    assert!(opus
        .windows(2)
        .all(|w| w[1].seq == w[0].seq.wrapping_add(1)));
    assert_eq!(room.net.endpoint.stats().red_recovered, 1);
}

/// A RED payload read back: (timestamp offset, data) of each redundant
/// block, oldest first, and the primary's data.
type Blocks = (Vec<(u32, Vec<u8>)>, Vec<u8>);

/// The blocks of a RED payload; `None` if it does not parse.
fn blocks(payload: &[u8]) -> Option<Blocks> {
    let mut heads = Vec::new();
    let mut pos = 0;
    while payload.get(pos)? & 0x80 != 0 {
        let h = payload.get(pos..pos + 4)?;
        let bits = u32::from_be_bytes([0, h[1], h[2], h[3]]);
        heads.push((bits >> 10, (bits & 0x3ff) as usize));
        pos += 4;
    }
    pos += 1;
    let mut out = Vec::new();
    for (offset, len) in heads {
        out.push((offset, payload.get(pos..pos + len)?.to_vec()));
        pos += len;
    }
    Some((out, payload.get(pos..)?.to_vec()))
}

/// A subscriber whose link loses packets heavily gets more copies than
/// the publisher sends: its reception reports raise the distance toward
/// it (the rule the calling crate's sender follows: 4 from 30 % loss, 8
/// from 38 %; the SFU adds copies from 4), and the SFU adds the frames of
/// the packets before from its store. The subscriber without RED, and the RED subscriber
/// once its link is clean again, get what they got before.
#[test]
fn a_subscriber_on_a_lossy_link_gets_copies_the_sfu_adds() {
    let mut room = Room::new();
    let mut sent = Sent::default();
    room.send_for(&mut sent, 10, 1);
    let bob = Client::addr(room.red_sub, Role::Subscriber);
    // 20 % lost: the publisher's copy and NACK are left to it.
    room.net.lose_rtp_pattern = Some((bob, 5, 1, 0));
    room.send_for(&mut sent, 250, 1);
    assert_eq!(room.net.endpoint.stats().red_boosted, 0, "moderate loss");
    room.net.lose_rtp_pattern = Some((bob, 5, 4, 0));
    // Receiver reports come every second or so.
    room.send_for(&mut sent, 250, 1);
    assert!(room.net.endpoint.stats().red_boosted > 0);
    let got = room.log(room.red_sub);
    let last = got.last().expect("bob got packets");
    assert_eq!(last.pt, RED);
    let (copies, primary) = blocks(&last.payload).expect("RED");
    // Of the datagrams toward bob 80 % are lost, padding included; his
    // reports say 40-80 % of the audio: distance 8 (from 38 %).
    assert_eq!(copies.len(), 8, "8 where alice sends 1");
    assert_eq!(primary, frame(last.seq));
    for (i, (offset, data)) in copies.iter().enumerate() {
        let back = (copies.len() - i) as u16;
        assert_eq!(*offset, u32::from(back) * FRAME, "block {i}");
        assert_eq!(*data, frame(last.seq.wrapping_sub(back)), "block {i}");
    }
    // Carol's plain Opus is as it was.
    let carol = room.log(room.opus_sub).last().expect("carol got packets");
    assert_eq!(
        (carol.pt, &carol.payload[..]),
        (OPUS, &frame(carol.seq)[..])
    );
    // Clean again: the distance comes down a step every three reports.
    room.net.lose_rtp_pattern = None;
    room.send_for(&mut sent, 1_500, 1);
    let last = room.log(room.red_sub).last().expect("bob got packets");
    let (_, _, payload, _) = sent.by_seq(last.seq);
    assert_eq!(last.payload, payload[..], "as alice sent it");
}
