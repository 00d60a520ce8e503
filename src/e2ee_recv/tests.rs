use super::*;
use crate::ids::{SeqNum, Ssrc};
use huddle_proto::{ClientMessage, E2eeJoiner, ServerMessage};

const RED: RedFormat = RedFormat {
    red_pt: 63,
    primary_pt: 111,
};

const ACCEPTED: ServerMessage = ServerMessage::E2eeCommitResult {
    epoch: 0,
    accepted: true,
};

/// Alice in a group of her own, and bob with the welcome to join it (not
/// read yet) and alice's commit accepted.
fn alice_and_bob() -> (Arc<E2ee>, Arc<E2ee>, ServerMessage) {
    let (alice, _) = E2ee::start("alice", "room").expect("alice");
    alice.handle(&ServerMessage::E2eeCreate).expect("create");
    let (bob, kp) = E2ee::start("bob", "room").expect("bob");
    let ClientMessage::E2eeKeyPackage { key_package } = kp else {
        panic!("a key package first");
    };
    let added = alice
        .handle(&ServerMessage::E2eeAdd {
            joiners: vec![E2eeJoiner {
                participant_id: "PA_bob".into(),
                identity: "bob".into(),
                key_package,
            }],
        })
        .expect("add");
    let [ClientMessage::E2eeCommit {
        welcome: Some(welcome),
        ..
    }] = added.send.as_slice()
    else {
        panic!("a commit with a welcome: {:?}", added.send);
    };
    let welcome = ServerMessage::E2eeWelcome {
        welcome: welcome.clone(),
    };
    alice.handle(&ACCEPTED).expect("accepted");
    (Arc::new(alice), Arc::new(bob), welcome)
}

fn in_group() -> (Arc<E2ee>, Arc<E2ee>) {
    let (alice, bob, welcome) = alice_and_bob();
    bob.handle(&welcome).expect("joined");
    assert_eq!(alice.info(), bob.info());
    (alice, bob)
}

/// `frame` sealed as the one sent under sequence number `seq` (its RTP
/// timestamp `seq * 960`, as `packet` gives it).
fn sealed(e2ee: &E2ee, stream: Stream, seq: u16, frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let ts = u32::from(seq) * 960;
    assert!(
        e2ee.seal(stream, &ts.to_be_bytes(), frame, &mut out),
        "in a group"
    );
    out
}

fn packet(seq: u16, payload_type: u8, payload: Vec<u8>) -> MediaPacket {
    MediaPacket {
        payload: Bytes::from(payload),
        sequence_number: SeqNum(seq),
        timestamp: u32::from(seq) * 960,
        marker: false,
        ssrc: Ssrc(7),
        payload_type,
    }
}

fn red(redundant: &[&[u8]], primary: &[u8]) -> Vec<u8> {
    let n = redundant.len() as u32;
    let blocks: Vec<RedBlock<'_>> = redundant
        .iter()
        .enumerate()
        .map(|(i, b)| RedBlock {
            payload_type: 111,
            timestamp_offset: (n - i as u32) * 960,
            payload: b,
        })
        .collect();
    let mut out = Vec::new();
    write_red(&blocks, 111, primary, &mut out).expect("RED");
    out
}

fn drain(rx: &E2eeRecv) -> Vec<MediaPacket> {
    std::iter::from_fn(|| rx.pop()).collect()
}

#[test]
fn a_frame_from_the_tracks_member_decrypts() {
    let (alice, bob) = in_group();
    let rx = E2eeRecv::new(bob, "alice".into(), Stream::Audio, None);
    rx.take(packet(
        1,
        111,
        sealed(&alice, Stream::Audio, 1, b"opus one"),
    ));
    let got = drain(&rx);
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].payload[..], b"opus one");
    assert_eq!(got[0].sequence_number, SeqNum(1));
}

#[test]
fn red_blocks_decrypt_and_copies_are_left_empty() {
    let (alice, bob) = in_group();
    let rx = E2eeRecv::new(bob, "alice".into(), Stream::Audio, Some(RED));
    let f: Vec<Vec<u8>> = (1..=3u8)
        .map(|i| sealed(&alice, Stream::Audio, u16::from(i), &[i; 30]))
        .collect();
    rx.take(packet(1, 63, red(&[], &f[0])));
    // Packet 2 is lost; packet 3 carries frame 2 as a copy.
    rx.take(packet(3, 63, red(&[&f[0], &f[1]], &f[2])));
    let got = drain(&rx);
    assert_eq!(got.len(), 2);
    let third = parse_red(&got[1].payload).expect("RED again");
    assert_eq!(third.primary.payload, &[3u8; 30]);
    assert_eq!(third.redundant.len(), 2, "the blocks keep their places");
    assert!(third.redundant[0].payload.is_empty(), "frame 1 was taken");
    assert_eq!(third.redundant[1].payload, &[2u8; 30], "frame 2 recovered");
    assert_eq!(third.redundant[1].timestamp_offset, 960);
    // Packet 2 comes late: its frame was taken from the copy.
    rx.take(packet(2, 63, red(&[&f[0]], &f[1])));
    assert!(drain(&rx).is_empty(), "a replay is dropped");
}

#[test]
fn frames_of_another_member_or_stream_changed_or_moved_are_dropped() {
    let (alice, bob) = in_group();
    // Bob's track of carol's: alice's frames are not carol's.
    let carol = E2eeRecv::new(bob.clone(), "carol".into(), Stream::Audio, None);
    carol.take(packet(1, 111, sealed(&alice, Stream::Audio, 1, b"x")));
    assert!(drain(&carol).is_empty());
    // Alice's screen frames on her audio track.
    let rx = E2eeRecv::new(bob.clone(), "alice".into(), Stream::Audio, Some(RED));
    rx.take(packet(2, 111, sealed(&alice, Stream::Screen, 2, b"x")));
    // A frame changed on the way, and one in clear (silence injected).
    let mut changed = sealed(&alice, Stream::Audio, 3, b"opus");
    let last = changed.len() - 1;
    changed[last] ^= 1;
    rx.take(packet(3, 111, changed));
    rx.take(packet(4, 111, vec![0xF8, 0xFF, 0xFE]));
    rx.take(packet(5, 63, red(&[], &[0xF8, 0xFF, 0xFE])));
    rx.take(packet(6, 63, vec![0xFF, 0x01]));
    // A frame moved in time: sent at 8, delivered as 9.
    rx.take(packet(9, 111, sealed(&alice, Stream::Audio, 8, b"later")));
    assert!(drain(&rx).is_empty());
    // Each counted by its reason; nothing decrypted for the app.
    let stats = bob.stats();
    assert_eq!(stats.decrypted, 0, "{stats:?}");
    assert_eq!(stats.misattributed, 2, "{stats:?}");
    assert_eq!(stats.authentication_failed, 2, "{stats:?}");
    assert_eq!(stats.unreadable, 1, "{stats:?}");
    assert_eq!(stats.malformed, 2, "frames in clear: {stats:?}");
    assert_eq!(stats.duplicates, 0, "{stats:?}");
    // The track still takes alice's next frame.
    rx.take(packet(7, 111, sealed(&alice, Stream::Audio, 7, b"next")));
    assert_eq!(&drain(&rx)[0].payload[..], b"next");
}

#[test]
fn frames_before_the_welcome_wait_for_it_in_order() {
    let (alice, bob, welcome) = alice_and_bob();
    let rx = E2eeRecv::new(bob.clone(), "alice".into(), Stream::Audio, None);
    rx.take(packet(1, 111, sealed(&alice, Stream::Audio, 1, b"one")));
    rx.take(packet(2, 111, sealed(&alice, Stream::Audio, 2, b"two")));
    assert!(drain(&rx).is_empty(), "no keys yet");
    bob.handle(&welcome).expect("joined");
    rx.take(packet(3, 111, sealed(&alice, Stream::Audio, 3, b"three")));
    let got: Vec<Vec<u8>> = drain(&rx).iter().map(|p| p.payload.to_vec()).collect();
    assert_eq!(got, [b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]);
}

#[test]
fn no_group_no_frame_sent() {
    let (alone, _) = E2ee::start("alice", "room").expect("alice");
    let mut out = Vec::new();
    assert!(!alone.seal(Stream::Audio, &[0; 4], b"opus", &mut out));
    assert!(out.is_empty());
}

/// A keyframe of the synthetic video, 320x180, as VP8 payloads of up to
/// 1000 bytes, sealed by `from` as a frame of `stream`: packets from `seq`
/// at `ts`.
fn sealed_keyframe(from: &E2ee, stream: Stream, seq: u16, ts: u32) -> (Vec<u8>, Vec<MediaPacket>) {
    use huddle_media::rtp::Vp8Packetizer;
    let (frame, _) = crate::e2ee_video::tests::synthetic_frames(u64::from(seq));
    let mut p = Vp8Packetizer::new(1, 96, 0).expect("packetizer");
    p.max_payload = 1000;
    let out = p.packetize(&frame, 0).expect("packetize");
    let payloads: Vec<&[u8]> = out.iter().map(|o| o.payload.as_slice()).collect();
    let sealed = crate::e2ee_video::seal(from, stream, &payloads)
        .expect("VP8")
        .expect("in a group");
    let n = sealed.len();
    let packets = sealed
        .into_iter()
        .enumerate()
        .map(|(i, payload)| MediaPacket {
            payload: Bytes::from(payload),
            sequence_number: SeqNum(seq.wrapping_add(i as u16)),
            timestamp: ts,
            marker: i + 1 == n,
            ssrc: Ssrc(9),
            payload_type: 96,
        })
        .collect();
    (frame, packets)
}

#[test]
fn a_video_frame_decrypts_whole_in_its_packets() {
    use huddle_media::rtp::{is_vp8_keyframe, vp8_keyframe_size};
    let (alice, bob) = in_group();
    let rx = E2eeRecv::new(bob, "alice".into(), Stream::Camera, None);
    let (frame, packets) = sealed_keyframe(&alice, Stream::Camera, 100, 9000);
    // What the SFU sees: a keyframe, and its size.
    assert!(is_vp8_keyframe(&packets[0].payload));
    assert_eq!(vp8_keyframe_size(&packets[0].payload), Some((320, 180)));
    let sent = crate::e2ee_video::frame_of(&packets).expect("VP8");
    assert!(
        !sent.windows(40).any(|w| frame.windows(40).any(|f| f == w)),
        "encrypted"
    );
    for p in packets.iter().rev() {
        rx.take(p.clone());
    }
    let got = drain(&rx);
    assert_eq!(got.len(), packets.len());
    assert_eq!(crate::e2ee_video::frame_of(&got).expect("VP8"), frame);
    assert_eq!(vp8_keyframe_size(&got[0].payload), Some((320, 180)));
    // A resend of the frame's packets: taken already.
    for p in &packets {
        rx.take(p.clone());
    }
    assert!(drain(&rx).is_empty());
}

#[test]
fn a_video_frame_whose_clear_bytes_changed_is_dropped() {
    let (alice, bob) = in_group();
    let rx = E2eeRecv::new(bob, "alice".into(), Stream::Camera, None);
    let (_, mut packets) = sealed_keyframe(&alice, Stream::Camera, 7, 3000);
    // The SFU says the keyframe is bigger than it is.
    let mut first = packets[0].payload.to_vec();
    first[4 + 6] ^= 0x01;
    packets[0].payload = Bytes::from(first);
    for p in packets {
        rx.take(p);
    }
    assert!(drain(&rx).is_empty());
    // A frame of alice's screen on her camera track.
    let (_, packets) = sealed_keyframe(&alice, Stream::Screen, 20, 6000);
    for p in packets {
        rx.take(p);
    }
    assert!(drain(&rx).is_empty());
    // Her next camera frame is taken.
    let (frame, packets) = sealed_keyframe(&alice, Stream::Camera, 30, 9000);
    for p in packets {
        rx.take(p);
    }
    assert_eq!(
        crate::e2ee_video::frame_of(&drain(&rx)).expect("VP8"),
        frame
    );
}
