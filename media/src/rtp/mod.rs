//! RTP packetization and parsing (RFC 3550), Opus payloads (RFC 7587),
//! redundant audio (RED, RFC 2198) and synthetic VP8 video (RFC 7741).
//!
//! - [`OpusPacketizer`] wraps each encoded 20 ms Opus frame in one RTP packet,
//!   advancing the 48 kHz timestamp by 960 and the sequence number by 1 (wrapping).
//! - [`RtpPacketOut`] is an owned outgoing packet; [`RtpPacketOut::marshal`] gives
//!   the bytes (12-byte header, no CSRC, no extension).
//! - [`parse_rtp`] is a strict, zero-copy, never-panicking parser of any RTP packet.
//! - [`SyntheticVideo`] makes fake VP8 frames (there is no VP8 encoder here) and
//!   [`Vp8Packetizer`] splits them into RTP payloads of at most 1200 bytes with a
//!   valid VP8 payload descriptor; [`is_vp8_keyframe`] and [`parse_vp8_descriptor`]
//!   read them back on the receiving side.
//! - [`write_red`] and [`parse_red`] write and read RED payloads;
//!   [`RedEncoder`] wraps each Opus frame with copies of the frames before
//!   it, at the redundancy distance its caller sets (the calling crate sets
//!   it from the reported loss, by `huddle_wire::red_distance`).

use crate::error::Result;
use crate::format::FRAME_SAMPLES;
use packet::check_payload_type;

mod packet;
mod parse;
mod red;
mod red_encoder;
mod vp8;
pub use crate::error::RedError;
pub use packet::{RtpPacketOut, DEFAULT_MAX_PAYLOAD, RTP_HEADER_LEN, VIDEO_CLOCK_RATE};
pub use parse::{parse_rtp, RtpExtension, RtpView};
pub use red::{
    parse_red, red_len, write_red, RedBlock, RedFrame, RedPayload, MAX_BLOCKS as MAX_RED_BLOCKS,
    MAX_BLOCK_LEN as MAX_RED_BLOCK_LEN, MAX_TIMESTAMP_OFFSET as MAX_RED_TIMESTAMP_OFFSET, RED_PT,
};
pub use red_encoder::{
    RedEncoded, RedEncoder, RedEncoderConfig, DEFAULT_MAX_RED_PAYLOAD, MAX_RED_DISTANCE,
};
pub use vp8::{
    is_vp8_keyframe, parse_vp8_descriptor, vp8_keyframe_size, SyntheticVideo, SyntheticVideoConfig,
    VideoFrame, Vp8Descriptor, Vp8Packetizer,
};

/// Wraps Opus frames in RTP packets (RFC 7587): one frame per packet, 48 kHz
/// timestamps.
///
/// Each [`packetize`](Self::packetize) uses the current `seq` and `timestamp`,
/// then advances `seq` by 1 and `timestamp` by [`frame_samples`](Self::frame_samples)
/// (960 = 20 ms), both wrapping. When a DTX frame is not sent, call
/// [`skip_frame`](Self::skip_frame): the timestamp advances, the sequence number
/// does not, and the next packet carries the marker bit (start of a talkspurt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusPacketizer {
    /// SSRC written into every packet.
    pub ssrc: u32,
    /// Payload type (0..=127; 111 is the common dynamic choice for Opus).
    pub payload_type: u8,
    /// Sequence number of the next packet.
    pub seq: u16,
    /// Timestamp of the next packet.
    pub timestamp: u32,
    /// Timestamp increment per frame (960 for 20 ms at 48 kHz).
    pub frame_samples: u32,
    /// Whether the next packet starts a talkspurt (gets the marker bit).
    pub talkspurt_start: bool,
}

impl OpusPacketizer {
    /// A packetizer starting at `seq` and `timestamp` (pick both at random for a
    /// real session, RFC 3550 §5.1). Fails if `payload_type > 127`.
    pub fn new(ssrc: u32, payload_type: u8, seq: u16, timestamp: u32) -> Result<Self> {
        check_payload_type(payload_type)?;
        Ok(OpusPacketizer {
            ssrc,
            payload_type,
            seq,
            timestamp,
            frame_samples: FRAME_SAMPLES as u32,
            talkspurt_start: true,
        })
    }

    /// Packetize one encoded Opus frame.
    pub fn packetize(&mut self, opus_frame: &[u8]) -> RtpPacketOut {
        let pkt = RtpPacketOut {
            payload_type: self.payload_type & 0x7f,
            sequence_number: self.seq,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
            marker: self.talkspurt_start,
            payload: opus_frame.to_vec(),
        };
        self.talkspurt_start = false;
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(self.frame_samples);
        pkt
    }

    /// Account for a frame that is not sent (DTX silence): advance the timestamp
    /// only, and mark the next packet as the start of a talkspurt.
    pub fn skip_frame(&mut self) {
        self.timestamp = self.timestamp.wrapping_add(self.frame_samples);
        self.talkspurt_start = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prng::SplitMix64;

    fn sample_packet() -> Vec<u8> {
        // V=2 P=1 X=1 CC=2, M=1 PT=111, seq, ts, ssrc, 2 CSRCs, ext (1 word),
        // 5 payload bytes, 3 padding bytes.
        let mut b = vec![0xb2, 0x80 | 111];
        b.extend_from_slice(&0x1234u16.to_be_bytes());
        b.extend_from_slice(&0xdead_beefu32.to_be_bytes());
        b.extend_from_slice(&0x0102_0304u32.to_be_bytes());
        b.extend_from_slice(&7u32.to_be_bytes());
        b.extend_from_slice(&8u32.to_be_bytes());
        b.extend_from_slice(&[0xbe, 0xde, 0x00, 0x01, 0x10, 0xaa, 0x00, 0x00]);
        b.extend_from_slice(&[1, 2, 3, 4, 5]);
        b.extend_from_slice(&[0, 0, 3]);
        b
    }

    #[test]
    fn parse_full_packet() {
        let b = sample_packet();
        let v = parse_rtp(&b).expect("parse");
        assert!(v.marker);
        assert_eq!(v.payload_type, 111);
        assert_eq!(v.sequence_number, 0x1234);
        assert_eq!(v.timestamp, 0xdead_beef);
        assert_eq!(v.ssrc, 0x0102_0304);
        assert_eq!(v.csrcs().collect::<Vec<_>>(), vec![7, 8]);
        let ext = v.extension.expect("extension");
        assert_eq!(ext.profile, 0xbede);
        assert_eq!(ext.data, &[0x10, 0xaa, 0, 0]);
        assert_eq!(v.padding_len, 3);
        assert_eq!(v.payload, &[1, 2, 3, 4, 5]);
        assert_eq!(v.header_len(), 12 + 8 + 8);
    }

    #[test]
    fn every_truncation_is_rejected_without_panic() {
        let b = sample_packet();
        for n in 0..b.len() {
            // Any prefix is either an error or (for prefixes that happen to end on a
            // valid padding count) a consistent view; never a panic.
            if let Ok(v) = parse_rtp(&b[..n]) {
                assert!(v.header_len() + v.payload.len() + usize::from(v.padding_len) == n);
            }
        }
        // A plain packet: every strict prefix shorter than the header fails.
        let p = OpusPacketizer::new(1, 111, 0, 0)
            .expect("packetizer")
            .packetize(&[9; 40])
            .marshal();
        for n in 0..RTP_HEADER_LEN {
            assert!(parse_rtp(&p[..n]).is_err());
        }
        for n in RTP_HEADER_LEN..=p.len() {
            assert_eq!(parse_rtp(&p[..n]).expect("parse").payload, &p[12..n]);
        }
    }

    #[test]
    fn specific_violations() {
        let mut b = sample_packet();
        b[0] = (b[0] & 0x3f) | 0x40; // version 1
        assert!(parse_rtp(&b).is_err());
        let mut b = sample_packet();
        b[0] = (b[0] & 0xf0) | 0x0f; // CC=15: CSRCs run past the end
        assert!(parse_rtp(&b).is_err());
        let mut b = sample_packet();
        b[22] = 0xff; // extension length huge
        assert!(parse_rtp(&b).is_err());
        let mut b = sample_packet();
        let last = b.len() - 1;
        b[last] = 0; // padding count 0
        assert!(parse_rtp(&b).is_err());
        b[last] = 200; // padding longer than payload
        assert!(parse_rtp(&b).is_err());
        b[last] = 8; // exactly payload + padding: empty payload is fine
        assert_eq!(parse_rtp(&b).expect("parse").payload.len(), 0);
        b[last] = 9; // would eat into the extension
        assert!(parse_rtp(&b).is_err());
    }

    #[test]
    fn random_buffers_never_panic() {
        let mut rng = SplitMix64::new(0x5eed);
        let mut ok = 0;
        for i in 0..10_000 {
            let len = (rng.next_u64() % 64) as usize;
            let mut buf = vec![0u8; len];
            rng.fill_bytes(&mut buf);
            if i % 2 == 0 && !buf.is_empty() {
                buf[0] = 0x80 | (buf[0] & 0x3f); // force version 2 half the time
            }
            if let Ok(v) = parse_rtp(&buf) {
                ok += 1;
                assert!(v.header_len() + v.payload.len() + usize::from(v.padding_len) == len);
            }
            let _ = parse_vp8_descriptor(&buf);
            let _ = is_vp8_keyframe(&buf);
        }
        assert!(ok > 0, "some random version-2 buffers should parse");
    }

    #[test]
    fn opus_packetizer_wraps() {
        let mut p = OpusPacketizer::new(0xabcd, 111, 65_534, u32::MAX - 959).expect("new");
        let a = p.packetize(&[1]);
        let b = p.packetize(&[2]);
        let c = p.packetize(&[3]);
        assert_eq!(
            (a.sequence_number, b.sequence_number, c.sequence_number),
            (65_534, 65_535, 0)
        );
        assert_eq!(
            (a.timestamp, b.timestamp, c.timestamp),
            (u32::MAX - 959, 0, 960)
        );
        assert!(a.marker && !b.marker && !c.marker);
        p.skip_frame();
        let d = p.packetize(&[4]);
        assert_eq!(d.sequence_number, 1);
        assert_eq!(d.timestamp, 2880);
        assert!(d.marker);
        assert!(OpusPacketizer::new(1, 128, 0, 0).is_err());
    }

    #[test]
    fn marshal_parse_roundtrip() {
        let pkt = RtpPacketOut {
            payload_type: 96,
            sequence_number: 513,
            timestamp: 123_456,
            ssrc: 42,
            marker: true,
            payload: vec![5; 17],
        };
        let bytes = pkt.marshal();
        assert_eq!(bytes.len(), pkt.len());
        assert_eq!(&bytes[..2], &[0x80, 0x80 | 96]);
        let v = parse_rtp(&bytes).expect("parse");
        assert_eq!(
            (
                v.payload_type,
                v.sequence_number,
                v.timestamp,
                v.ssrc,
                v.marker
            ),
            (96, 513, 123_456, 42, true)
        );
        assert_eq!(v.payload, pkt.payload.as_slice());
        assert!(v.extension.is_none() && v.csrc_bytes.is_empty() && v.padding_len == 0);
    }
}
