//! Does an RTP payload start a keyframe? A subscriber switching simulcast
//! layers may only start the new layer there: the frames before it refer to
//! pictures the subscriber never got.
//!
//! Only the payload descriptors are read (RFC 7741 for VP8, RFC 6184 for
//! H.264), never the media; every read is bounds-checked, and anything that
//! does not parse is "not a keyframe".

use crate::forward::vp8::layout;

/// Which of a layer's packets carry a keyframe: those with the RTP
/// timestamp of a frame whose first packet started one. A layer's cost
/// counts them apart (`Layer::cost_bps`): keyframes come when asked for
/// (every layer switch asks), so counted with the rest over a second they
/// made a layer's measured rate swing to twice its steady one, and the
/// allocator moved layers on the swing, asking for more keyframes. Spread
/// over a few seconds they still count: a layer asked for keyframe after
/// keyframe costs what they weigh.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct KeyframeBytes {
    /// Timestamp of the frame seen last, and whether it is a keyframe.
    frame: Option<(u32, bool)>,
}

impl KeyframeBytes {
    /// Whether a packet with RTP timestamp `timestamp` belongs to a
    /// keyframe; `starts` tells whether it starts one, and is asked only
    /// for the first packet seen of a frame.
    pub fn in_keyframe(&mut self, timestamp: u32, starts: impl FnOnce() -> bool) -> bool {
        match self.frame {
            Some((ts, key)) if ts == timestamp => key,
            _ => {
                let key = starts();
                self.frame = Some((timestamp, key));
                key
            }
        }
    }
}

/// Whether `payload` (of a codec with MIME type `mime`) is the first packet
/// of a keyframe. False for codecs this does not know.
pub fn starts_keyframe(mime: &str, payload: &[u8]) -> bool {
    if mime.eq_ignore_ascii_case("video/VP8") {
        vp8(payload)
    } else if mime.eq_ignore_ascii_case("video/H264") {
        h264(payload)
    } else {
        false
    }
}

/// VP8 (RFC 7741 §4.2-4.3): the start of partition 0 (S = 1, PID = 0) whose
/// payload header has P = 0 (a key frame).
fn vp8(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else {
        return false;
    };
    let start = b0 & 0x10 != 0;
    let partition = b0 & 0x07;
    if !start || partition != 0 {
        return false;
    }
    layout(p)
        .and_then(|l| p.get(l.header))
        .is_some_and(|h| h & 0x01 == 0)
}

/// H.264 (RFC 6184): an IDR slice (NAL type 5) or a sequence parameter set
/// (7, which precedes an IDR) in a single NAL unit packet, in a STAP-A, or at
/// the start of an FU-A.
fn h264(p: &[u8]) -> bool {
    const IDR: u8 = 5;
    const SPS: u8 = 7;
    const STAP_A: u8 = 24;
    const FU_A: u8 = 28;
    let key = |nal_type: u8| nal_type == IDR || nal_type == SPS;
    let Some(&b0) = p.first() else {
        return false;
    };
    match b0 & 0x1f {
        STAP_A => {
            let mut i = 1;
            while let (Some(&hi), Some(&lo)) = (p.get(i), p.get(i + 1)) {
                let size = usize::from(u16::from_be_bytes([hi, lo]));
                let Some(&nal) = p.get(i + 2) else {
                    return false;
                };
                if size == 0 {
                    return false;
                }
                if key(nal & 0x1f) {
                    return true;
                }
                i += 2 + size;
            }
            false
        }
        FU_A => p.get(1).is_some_and(|&fu| fu & 0x80 != 0 && key(fu & 0x1f)),
        t => key(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyframes_packets_are_told_apart_by_its_timestamp() {
        let mut k = KeyframeBytes::default();
        assert!(!k.in_keyframe(100, || false), "a delta frame");
        assert!(k.in_keyframe(200, || true), "a keyframe's first packet");
        assert!(k.in_keyframe(200, || unreachable!()), "and the rest of it");
        assert!(!k.in_keyframe(300, || false), "the next frame");
        assert!(!k.in_keyframe(300, || unreachable!()));
    }

    #[test]
    fn vp8_keyframes_and_others() {
        // S=1, PID=0, no extension; payload header P=0: keyframe.
        assert!(vp8(&[0x10, 0x00, 0x9d, 0x01, 0x2a]));
        // Same, P=1: an inter frame.
        assert!(!vp8(&[0x10, 0x01]));
        // Not the start of the partition.
        assert!(!vp8(&[0x00, 0x00]));
        // Partition 1.
        assert!(!vp8(&[0x11, 0x00]));
        // X with I (15-bit PictureID), L and T, then P=0 (what Chromium sends).
        assert!(vp8(&[0x90, 0xe0, 0x80, 0x01, 0x05, 0x20, 0x50]));
        // X with a 7-bit PictureID, then P=1.
        assert!(!vp8(&[0x90, 0x80, 0x05, 0x01]));
        assert!(vp8(&[0x90, 0x80, 0x05, 0x00]));
        assert!(starts_keyframe("video/vp8", &[0x10, 0x00]));
        assert!(!starts_keyframe("audio/opus", &[0x10, 0x00]));
    }

    #[test]
    fn h264_keyframes_and_others() {
        assert!(h264(&[0x65, 0x88])); // IDR slice
        assert!(h264(&[0x67, 0x42])); // SPS
        assert!(!h264(&[0x41, 0x9a])); // non-IDR slice
                                       // STAP-A: SPS (2 bytes) then PPS.
        assert!(h264(&[0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x01, 0x68]));
        // STAP-A of two non-IDR NALs.
        assert!(!h264(&[0x78, 0x00, 0x01, 0x41, 0x00, 0x01, 0x41]));
        // FU-A start of an IDR, and a middle fragment of one.
        assert!(h264(&[0x7c, 0x85, 0x00]));
        assert!(!h264(&[0x7c, 0x05, 0x00]));
        assert!(starts_keyframe("video/H264", &[0x65]));
    }

    #[test]
    fn truncated_and_random_input_never_panics() {
        let samples: [&[u8]; 8] = [
            &[],
            &[0x90],
            &[0x90, 0x80],
            &[0x90, 0xff, 0xff],
            &[0x78],
            &[0x78, 0x00],
            &[0x78, 0xff, 0xff, 0x67],
            &[0x7c],
        ];
        for s in samples {
            let _ = vp8(s);
            let _ = h264(s);
        }
        let mut x: u32 = 1;
        for _ in 0..10_000 {
            let mut buf = [0u8; 12];
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
            let len = (x as usize) % 13;
            let _ = vp8(&buf[..len]);
            let _ = h264(&buf[..len]);
        }
    }
}
