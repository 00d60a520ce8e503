//! Synthetic VP8 video and its RTP packetization (RFC 7741).

use super::packet::{check_payload_type, RtpPacketOut, DEFAULT_MAX_PAYLOAD, VIDEO_CLOCK_RATE};
use crate::error::{MediaError, Result};
use crate::prng::SplitMix64;

/// Settings for [`SyntheticVideo`]. `Default`: 640x360, 30 fps, 1500-byte
/// interframes, 15000-byte keyframes, a keyframe every 60 frames, seed 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntheticVideoConfig {
    /// Width written into keyframe headers.
    pub width: u16,
    /// Height written into keyframe headers.
    pub height: u16,
    /// Frames per second (> 0); sets the 90 kHz timestamp step.
    pub fps: u32,
    /// Size of each interframe in bytes (at least 3).
    pub frame_bytes: usize,
    /// Size of each keyframe in bytes (at least 10).
    pub keyframe_bytes: usize,
    /// A keyframe every this many frames (> 0); frame 0 is always a keyframe.
    pub keyframe_interval: u32,
    /// Seed of the filler bytes.
    pub seed: u64,
}

impl Default for SyntheticVideoConfig {
    fn default() -> Self {
        SyntheticVideoConfig {
            width: 640,
            height: 360,
            fps: 30,
            frame_bytes: 1500,
            keyframe_bytes: 15_000,
            keyframe_interval: 60,
            seed: 0,
        }
    }
}

/// One synthetic video frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoFrame {
    /// Frame number, from 0.
    pub index: u64,
    /// Whether this is a keyframe.
    pub keyframe: bool,
    /// 90 kHz RTP timestamp offset from frame 0 (`index * 90000 / fps`, wrapping).
    pub timestamp: u32,
    /// The frame bytes, starting with a VP8 frame header.
    pub data: Vec<u8>,
}

/// Fake VP8 video: frames of a configured size at a configured rate, a keyframe
/// every N frames (or on demand, e.g. after a PLI).
///
/// Each frame starts with a syntactically valid VP8 frame tag (RFC 6386 §9.1):
/// bit 0 of byte 0 is 0 for keyframes and 1 for interframes, show_frame is set,
/// and keyframes carry the start code `9d 01 2a` and width/height. The rest is
/// seeded pseudo-random filler, so it will not decode as real VP8, but RTP
/// machinery (packetizers, SFUs, jitter buffers) handles it like the real thing.
#[derive(Debug, Clone)]
pub struct SyntheticVideo {
    config: SyntheticVideoConfig,
    index: u64,
    force_keyframe: bool,
}

impl SyntheticVideo {
    /// Validate `config` and start at frame 0.
    pub fn new(config: SyntheticVideoConfig) -> Result<Self> {
        if config.fps == 0 || config.keyframe_interval == 0 {
            return Err(MediaError::InvalidConfig(
                "fps and keyframe_interval must be > 0".into(),
            ));
        }
        if config.frame_bytes < 3 || config.keyframe_bytes < 10 {
            return Err(MediaError::InvalidConfig(
                "frames need >= 3 bytes, keyframes >= 10".into(),
            ));
        }
        Ok(SyntheticVideo {
            config,
            index: 0,
            force_keyframe: false,
        })
    }

    /// The settings.
    pub fn config(&self) -> &SyntheticVideoConfig {
        &self.config
    }

    /// Make the next frame a keyframe (what a sender does on PLI/FIR).
    pub fn request_keyframe(&mut self) {
        self.force_keyframe = true;
    }

    /// Produce the next frame. Endless.
    pub fn next_frame(&mut self) -> VideoFrame {
        let c = &self.config;
        let index = self.index;
        self.index += 1;
        let keyframe = self.force_keyframe || index.is_multiple_of(u64::from(c.keyframe_interval));
        self.force_keyframe = false;
        let size = if keyframe {
            c.keyframe_bytes
        } else {
            c.frame_bytes
        };
        let mut data = vec![0u8; size];
        let mut rng = SplitMix64::new(c.seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        rng.fill_bytes(&mut data);
        // Frame tag: frame type (bit 0), version 0 (bits 1-3), show_frame (bit 4),
        // first partition size (19 bits) = half the frame, capped.
        let part = ((size / 2) as u32).min((1 << 19) - 1);
        let tag = u32::from(!keyframe) | (1 << 4) | (part << 5);
        data[..3].copy_from_slice(&tag.to_le_bytes()[..3]);
        if keyframe {
            data[3..6].copy_from_slice(&[0x9d, 0x01, 0x2a]);
            data[6..8].copy_from_slice(&(c.width & 0x3fff).to_le_bytes());
            data[8..10].copy_from_slice(&(c.height & 0x3fff).to_le_bytes());
        }
        let ticks = u128::from(index) * u128::from(VIDEO_CLOCK_RATE) / u128::from(c.fps);
        VideoFrame {
            index,
            keyframe,
            timestamp: ticks as u32,
            data,
        }
    }
}

/// Splits VP8 frames into RTP packets (RFC 7741).
///
/// Every payload starts with a VP8 payload descriptor: S=1 on the first packet
/// of a frame, PID=0, N=0; with [`picture_id`](Self::picture_id) on (default), the
/// X and I bits are set and a 15-bit PictureID follows (as libwebrtc sends), which
/// increments per frame. The last packet of a frame carries the RTP marker bit.
/// No payload exceeds [`max_payload`](Self::max_payload) bytes, descriptor included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vp8Packetizer {
    /// SSRC of the video stream.
    pub ssrc: u32,
    /// Payload type (0..=127; 96 is common for VP8).
    pub payload_type: u8,
    /// Sequence number of the next packet.
    pub seq: u16,
    /// Largest payload, descriptor included (default 1200).
    pub max_payload: usize,
    /// Whether to include a 15-bit PictureID in the descriptor.
    pub picture_id: bool,
    /// PictureID of the next frame (15 bits used).
    pub next_picture_id: u16,
}

impl Vp8Packetizer {
    /// A packetizer starting at `seq`, 1200-byte payloads, PictureID on from 0.
    pub fn new(ssrc: u32, payload_type: u8, seq: u16) -> Result<Self> {
        check_payload_type(payload_type)?;
        Ok(Vp8Packetizer {
            ssrc,
            payload_type,
            seq,
            max_payload: DEFAULT_MAX_PAYLOAD,
            picture_id: true,
            next_picture_id: 0,
        })
    }

    fn descriptor_len(&self) -> usize {
        if self.picture_id {
            4
        } else {
            1
        }
    }

    /// Split `frame` (VP8 bitstream bytes) taken at `timestamp` (90 kHz) into RTP
    /// packets. Fails if the frame is empty or `max_payload` leaves no room for data.
    pub fn packetize(&mut self, frame: &[u8], timestamp: u32) -> Result<Vec<RtpPacketOut>> {
        let desc_len = self.descriptor_len();
        if self.max_payload <= desc_len {
            return Err(MediaError::InvalidConfig(format!(
                "max_payload {} leaves no room after a {desc_len}-byte descriptor",
                self.max_payload
            )));
        }
        if frame.is_empty() {
            return Err(MediaError::InvalidVp8("empty frame"));
        }
        let chunk = self.max_payload - desc_len;
        let count = frame.len().div_ceil(chunk);
        let pid = self.next_picture_id & 0x7fff;
        self.next_picture_id = (pid + 1) & 0x7fff;
        let mut out = Vec::with_capacity(count);
        for (i, data) in frame.chunks(chunk).enumerate() {
            let mut payload = Vec::with_capacity(desc_len + data.len());
            let start = if i == 0 { 0x10 } else { 0x00 };
            if self.picture_id {
                payload.push(0x80 | start); // X=1, S, PID=0
                payload.push(0x80); // I=1
                payload.extend_from_slice(&(0x8000 | pid).to_be_bytes()); // M=1, 15-bit ID
            } else {
                payload.push(start);
            }
            payload.extend_from_slice(data);
            out.push(RtpPacketOut {
                payload_type: self.payload_type & 0x7f,
                sequence_number: self.seq,
                timestamp,
                ssrc: self.ssrc,
                marker: i + 1 == count,
                payload,
            });
            self.seq = self.seq.wrapping_add(1);
        }
        Ok(out)
    }
}

/// The fields of a VP8 payload descriptor (RFC 7741 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Descriptor {
    /// N: non-reference frame.
    pub non_reference: bool,
    /// S: start of a VP8 partition.
    pub start_of_partition: bool,
    /// PID: partition index.
    pub partition_id: u8,
    /// PictureID (7 or 15 bits), if present.
    pub picture_id: Option<u16>,
    /// TL0PICIDX, if present.
    pub tl0_pic_idx: Option<u8>,
    /// Temporal layer index, if the T bit was set.
    pub temporal_id: Option<u8>,
    /// Key index, if the K bit was set.
    pub key_idx: Option<u8>,
    /// Descriptor length: the VP8 payload starts at this offset.
    pub len: usize,
}

/// Parse the VP8 payload descriptor at the start of an RTP payload, with all
/// optional fields (X, I, L, T, K). Never panics; truncation is
/// [`MediaError::InvalidVp8`].
pub fn parse_vp8_descriptor(payload: &[u8]) -> Result<Vp8Descriptor> {
    let bad = MediaError::InvalidVp8;
    let b0 = *payload.first().ok_or(bad("empty payload"))?;
    let mut d = Vp8Descriptor {
        non_reference: b0 & 0x20 != 0,
        start_of_partition: b0 & 0x10 != 0,
        partition_id: b0 & 0x0f,
        picture_id: None,
        tl0_pic_idx: None,
        temporal_id: None,
        key_idx: None,
        len: 1,
    };
    if b0 & 0x80 == 0 {
        return Ok(d);
    }
    let truncated = bad("truncated descriptor");
    let x = *payload.get(1).ok_or(truncated)?;
    let mut pos = 2;
    if x & 0x80 != 0 {
        let p0 = *payload.get(pos).ok_or(bad("truncated descriptor"))?;
        if p0 & 0x80 != 0 {
            let p1 = *payload.get(pos + 1).ok_or(bad("truncated descriptor"))?;
            d.picture_id = Some(u16::from_be_bytes([p0 & 0x7f, p1]));
            pos += 2;
        } else {
            d.picture_id = Some(u16::from(p0));
            pos += 1;
        }
    }
    if x & 0x40 != 0 {
        d.tl0_pic_idx = Some(*payload.get(pos).ok_or(bad("truncated descriptor"))?);
        pos += 1;
    }
    if x & 0x30 != 0 {
        let tk = *payload.get(pos).ok_or(bad("truncated descriptor"))?;
        if x & 0x20 != 0 {
            d.temporal_id = Some(tk >> 6);
        }
        if x & 0x10 != 0 {
            d.key_idx = Some(tk & 0x1f);
        }
        pos += 1;
    }
    d.len = pos;
    Ok(d)
}

/// True if this RTP payload starts a VP8 keyframe: the descriptor has S=1 and
/// PID=0, and the first byte of the VP8 payload header has its P bit (bit 0,
/// inverse key frame flag) clear. False for anything else, including malformed
/// input.
pub fn is_vp8_keyframe(payload: &[u8]) -> bool {
    match parse_vp8_descriptor(payload) {
        Ok(d) if d.start_of_partition && d.partition_id == 0 => {
            payload.get(d.len).is_some_and(|b| b & 0x01 == 0)
        }
        _ => false,
    }
}

/// The picture size (width, height) a VP8 keyframe declares, from the RTP
/// payload that starts it (RFC 6386 section 9.1: after the 3-byte frame tag,
/// the start code 9d 01 2a and two 14-bit little-endian dimensions; the top
/// two bits of each are the scaling mode). `None` for anything that does
/// not start a keyframe, or is too short to say.
pub fn vp8_keyframe_size(payload: &[u8]) -> Option<(u16, u16)> {
    if !is_vp8_keyframe(payload) {
        return None;
    }
    let d = parse_vp8_descriptor(payload).ok()?;
    let frame = payload.get(d.len..d.len + 10)?;
    if frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let width = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
    let height = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
    Some((width, height))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::parse::parse_rtp;

    #[test]
    fn keyframe_sizes_are_read_from_the_frame_header() {
        // Descriptor X=0 S=1 PID=0, frame tag (key, shown), start code, 640x360.
        let key = [
            0x10, 0x50, 0x2d, 0x01, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01, 0x00,
        ];
        assert_eq!(vp8_keyframe_size(&key), Some((640, 360)));
        // With the scaling bits set, the size is the low 14 bits.
        let mut scaled = key;
        scaled[8] |= 0xc0;
        assert_eq!(vp8_keyframe_size(&scaled), Some((640, 360)));
        // An inter frame, a bad start code, a truncated header: no size.
        let mut inter = key;
        inter[1] |= 0x01;
        assert_eq!(vp8_keyframe_size(&inter), None);
        let mut bad = key;
        bad[4] = 0;
        assert_eq!(vp8_keyframe_size(&bad), None);
        assert_eq!(vp8_keyframe_size(&key[..9]), None);
        assert_eq!(vp8_keyframe_size(&[]), None);
    }

    #[test]
    fn synthetic_video_keyframes_and_timestamps() {
        let mut v = SyntheticVideo::new(SyntheticVideoConfig {
            keyframe_interval: 3,
            ..Default::default()
        })
        .expect("video");
        let frames: Vec<_> = (0..7).map(|_| v.next_frame()).collect();
        let keys: Vec<bool> = frames.iter().map(|f| f.keyframe).collect();
        assert_eq!(keys, [true, false, false, true, false, false, true]);
        assert_eq!(frames[1].timestamp, 3000);
        assert_eq!(frames[0].data.len(), 15_000);
        assert_eq!(frames[1].data.len(), 1500);
        assert_eq!(frames[0].data[0] & 1, 0);
        assert_eq!(frames[1].data[0] & 1, 1);
        assert_eq!(&frames[0].data[3..6], &[0x9d, 0x01, 0x2a]);
        v.request_keyframe();
        assert!(v.next_frame().keyframe);
        assert!(!v.next_frame().keyframe);
        // Deterministic.
        let mut w = SyntheticVideo::new(v.config().clone()).expect("video");
        assert_eq!(w.next_frame(), frames[0]);
        assert!(SyntheticVideo::new(SyntheticVideoConfig {
            fps: 0,
            ..Default::default()
        })
        .is_err());
    }

    #[test]
    fn vp8_packetize_and_reassemble() {
        let mut video = SyntheticVideo::new(SyntheticVideoConfig::default()).expect("video");
        for picture_id in [true, false] {
            let mut p = Vp8Packetizer::new(99, 96, 65_530).expect("packetizer");
            p.picture_id = picture_id;
            for n in 0..3 {
                let frame = video.next_frame();
                let pkts = p
                    .packetize(&frame.data, frame.timestamp)
                    .expect("packetize");
                let mut rebuilt = Vec::new();
                for (i, pkt) in pkts.iter().enumerate() {
                    assert!(pkt.payload.len() <= DEFAULT_MAX_PAYLOAD);
                    assert_eq!(pkt.marker, i + 1 == pkts.len());
                    assert_eq!(pkt.timestamp, frame.timestamp);
                    let bytes = pkt.marshal();
                    let view = parse_rtp(&bytes).expect("parse");
                    let d = parse_vp8_descriptor(view.payload).expect("descriptor");
                    assert_eq!(d.start_of_partition, i == 0);
                    assert_eq!(d.partition_id, 0);
                    if picture_id {
                        assert_eq!(d.picture_id, Some(n));
                    } else {
                        assert_eq!(d.picture_id, None);
                    }
                    assert_eq!(is_vp8_keyframe(view.payload), i == 0 && frame.keyframe);
                    rebuilt.extend_from_slice(&view.payload[d.len..]);
                }
                assert_eq!(rebuilt, frame.data);
            }
        }
    }

    #[test]
    fn vp8_sequence_wraps_and_descriptor_variants() {
        let mut p = Vp8Packetizer::new(1, 96, 65_535).expect("packetizer");
        let pkts = p.packetize(&[0u8; 3000], 0).expect("packetize");
        let seqs: Vec<u16> = pkts.iter().map(|p| p.sequence_number).collect();
        assert_eq!(seqs, [65_535, 0, 1]);
        assert!(p.packetize(&[], 0).is_err());
        p.max_payload = 4;
        assert!(p.packetize(&[1], 0).is_err());
        // Descriptor with X, I (7-bit), L, T and K, then a keyframe header byte.
        let d = [0x90, 0xf0, 0x05, 0x22, 0xc3, 0x00];
        let parsed = parse_vp8_descriptor(&d).expect("parse");
        assert_eq!(parsed.picture_id, Some(5));
        assert_eq!(parsed.tl0_pic_idx, Some(0x22));
        assert_eq!(parsed.temporal_id, Some(3));
        assert_eq!(parsed.key_idx, Some(3));
        assert_eq!(parsed.len, 5);
        assert!(is_vp8_keyframe(&d));
        assert!(!is_vp8_keyframe(&[0x90, 0xf0, 0x05, 0x22, 0xc3, 0x01]));
        assert!(!is_vp8_keyframe(&[0x90, 0xf0, 0x05, 0x22, 0xc3]));
        assert!(!is_vp8_keyframe(&[0x00, 0x00])); // S=0
    }
}
