use super::*;
use crate::ids::{SeqNum, Ssrc};
use huddle_media::rtp::{SyntheticVideo, SyntheticVideoConfig, Vp8Packetizer};

/// A keyframe and an interframe of the synthetic video (320x180).
pub(crate) fn synthetic_frames(seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut video = SyntheticVideo::new(SyntheticVideoConfig {
        width: 320,
        height: 180,
        fps: 15,
        frame_bytes: 1500,
        keyframe_bytes: 3000,
        keyframe_interval: 15,
        seed,
    })
    .expect("video");
    let key = video.next_frame().data;
    let inter = video.next_frame().data;
    (key, inter)
}

/// `frame` as RTP packets from `seq` at `ts`, 1000-byte payloads.
fn packets(frame: &[u8], seq: u16, ts: u32) -> Vec<MediaPacket> {
    let mut p = Vp8Packetizer::new(1, 96, seq).expect("packetizer");
    p.max_payload = 1000;
    p.packetize(frame, ts)
        .expect("packetize")
        .into_iter()
        .map(|o| MediaPacket {
            payload: Bytes::from(o.payload),
            sequence_number: SeqNum(o.sequence_number),
            timestamp: o.timestamp,
            marker: o.marker,
            ssrc: Ssrc(1),
            payload_type: 96,
        })
        .collect()
}

#[test]
fn a_keyframe_keeps_ten_bytes_in_clear_an_interframe_three() {
    let (key, inter) = synthetic_frames(1);
    assert_eq!(key[0] & 1, 0, "a keyframe");
    assert_eq!(clear_len(&key), 10);
    assert_eq!(clear_len(&inter), 3);
    assert_eq!(clear_len(&[0x00, 0x01]), 2);
    assert_eq!(clear_len(&[]), 0);
}

#[test]
fn a_frame_comes_out_of_its_payloads_and_goes_back_longer() {
    let (key, _) = synthetic_frames(1);
    let sent = packets(&key, 10, 0);
    assert_eq!(sent.len(), 4, "3000 bytes in pieces of 996");
    let payloads: Vec<&[u8]> = sent.iter().map(|p| &p.payload[..]).collect();
    let unpacked = Unpacked::new(&payloads).expect("VP8");
    assert_eq!(unpacked.frame(), &key[..]);
    // The same frame goes back in the same payloads.
    let same = unpacked.repack(&key);
    assert_eq!(same, payloads);
    // 26 bytes more (an SFrame header and tag) need no packet more here;
    // 1,000 more do, behind the last descriptor without its start bit.
    assert_eq!(
        unpacked.repack(&[key.clone(), vec![0; 26]].concat()).len(),
        4
    );
    let longer = unpacked.repack(&[key.clone(), vec![0; 1000]].concat());
    assert_eq!(longer.len(), 5);
    assert_eq!(longer[4][..4], payloads[3][..4]);
    assert!(starts_frame(&longer[0]) && !starts_frame(&longer[4]));
    // Not VP8, or not the start of a frame: refused.
    assert!(Unpacked::new(&payloads[1..]).is_none());
    assert!(Unpacked::new(&[]).is_none());
    assert!(Unpacked::new(&[&[0x80][..]]).is_none());
}

#[test]
fn frames_are_put_together_whatever_the_order() {
    let (key, inter) = synthetic_frames(1);
    let a = packets(&key, 65_534, 90_000); // wraps: 65534, 65535, 0, 1
    let b = packets(&inter, 2, 93_000);
    let mut r = Reassembly::default();
    // Frame b's packets around a's, a duplicate, a's last one first.
    assert!(r.push(a[3].clone()).is_none());
    assert!(r.push(b[0].clone()).is_none());
    assert!(r.push(a[0].clone()).is_none());
    assert!(r.push(a[0].clone()).is_none(), "a copy");
    assert!(r.push(a[2].clone()).is_none());
    let whole = r.push(a[1].clone()).expect("frame a is whole");
    let seqs: Vec<u16> = whole.iter().map(|p| p.sequence_number.0).collect();
    assert_eq!(seqs, [65_534, 65_535, 0, 1]);
    assert_eq!(frame_of(&whole).expect("VP8"), key);
    // Frame b began after a: still gathered.
    let whole = r.push(b[1].clone()).expect("frame b is whole");
    assert_eq!(frame_of(&whole).expect("VP8"), inter);
}

#[test]
fn a_frame_missing_a_packet_never_comes_and_is_given_up() {
    let (key, inter) = synthetic_frames(1);
    let mut r = Reassembly::default();
    let a = packets(&key, 0, 0);
    for p in a.iter().filter(|p| p.sequence_number.0 != 1) {
        assert!(r.push(p.clone()).is_none());
    }
    // The next frame, whole: the one before it is dropped.
    let b = packets(&inter, 4, 6000);
    assert!(r.push(b[0].clone()).is_none());
    assert!(r.push(b[1].clone()).is_some());
    assert!(r.push(a[1].clone()).is_none(), "too late");
    assert!(r.frames.len() <= 1);
    // Never more than MAX_PENDING_FRAMES gathered.
    for i in 0..100u16 {
        r.push(packets(&key, 100 + i * 10, u32::from(i) * 3000)[0].clone());
    }
    assert!(r.frames.len() <= MAX_PENDING_FRAMES);
    // Nor more than MAX_FRAME_PACKETS of one frame.
    let mut r = Reassembly::default();
    let first = packets(&key, 0, 7)[0].clone();
    for i in 0..3000u16 {
        let mut p = first.clone();
        p.sequence_number = SeqNum(i);
        p.payload = Bytes::from_static(&[0x00, 0x00]);
        r.push(p);
    }
    assert!(r.frames.iter().all(|(_, f)| f.len() <= MAX_FRAME_PACKETS));
}

#[test]
fn a_shorter_frame_is_spread_over_the_same_packets() {
    let (key, _) = synthetic_frames(1);
    let sent = packets(&[key.clone(), vec![7; 26]].concat(), 0, 0);
    let out = spread(sent.clone(), &key).expect("fits");
    assert_eq!(out.len(), sent.len());
    assert_eq!(frame_of(&out).expect("VP8"), key);
    for (a, b) in out.iter().zip(&sent) {
        assert_eq!(a.sequence_number, b.sequence_number);
        assert_eq!(a.marker, b.marker);
        assert_eq!(a.payload[..4], b.payload[..4], "same descriptor");
    }
    // A frame longer than what came: refused.
    assert!(spread(sent, &[key.clone(), vec![0; 100]].concat()).is_none());
}
