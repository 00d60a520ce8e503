//! The probe every media payload carries, so a subscriber can tell which
//! publisher's stream a packet belongs to, detect loss, and compute one-way
//! latency through the SFU (sender and receiver share the host clock).
//!
//! Layout, at [`PROBE_OFFSET`] in the RTP payload, big-endian:
//! `magic u16 | kind u8 | flags u8 | publisher u32 | seq u32 | send_ns u64`.
//! The bytes before it imitate the codec's own header (Opus TOC byte, VP8
//! payload descriptor); the bytes after it are filler up to the packet size.

use huddle_proto::TrackKind;

/// Where the probe starts in the RTP payload.
pub const PROBE_OFFSET: usize = 4;
/// Size of the probe.
pub const PROBE_LEN: usize = 20;
/// Smallest payload that holds a probe.
pub const MIN_PAYLOAD: usize = PROBE_OFFSET + PROBE_LEN;

const MAGIC: u16 = 0x6862; // "hb"
/// Flag bit: the packet belongs to a keyframe.
pub const FLAG_KEYFRAME: u8 = 1;
/// Flag bits 1-2: the simulcast layer (0 for a stream without simulcast).
const LAYER_SHIFT: u8 = 1;
const LAYER_MASK: u8 = 0b11;

/// The flag bits that say a packet is of simulcast layer `layer` (0-3).
pub fn layer_flags(layer: u8) -> u8 {
    (layer & LAYER_MASK) << LAYER_SHIFT
}

/// What a probe says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Audio or video.
    pub kind: TrackKind,
    /// Flags ([`FLAG_KEYFRAME`]).
    pub flags: u8,
    /// Global index of the publishing participant.
    pub publisher: u32,
    /// Per-stream sequence number, from 0, never wrapping in a run.
    pub seq: u32,
    /// Send time, nanoseconds since the run's epoch.
    pub send_ns: u64,
}

impl Probe {
    /// Write the probe into `payload` (at least [`MIN_PAYLOAD`] bytes).
    pub fn write(&self, payload: &mut [u8]) {
        let p = &mut payload[PROBE_OFFSET..PROBE_OFFSET + PROBE_LEN];
        p[0..2].copy_from_slice(&MAGIC.to_be_bytes());
        p[2] = kind_byte(self.kind);
        p[3] = self.flags;
        p[4..8].copy_from_slice(&self.publisher.to_be_bytes());
        p[8..12].copy_from_slice(&self.seq.to_be_bytes());
        p[12..20].copy_from_slice(&self.send_ns.to_be_bytes());
    }

    /// Read a probe from an RTP payload; `None` if it holds none.
    pub fn read(payload: &[u8]) -> Option<Self> {
        let p = payload.get(PROBE_OFFSET..PROBE_OFFSET + PROBE_LEN)?;
        if u16::from_be_bytes([p[0], p[1]]) != MAGIC {
            return None;
        }
        let kind = match p[2] {
            0 => TrackKind::Audio,
            1 => TrackKind::Video,
            _ => return None,
        };
        let u32_at = |i: usize| u32::from_be_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
        let mut ns = [0u8; 8];
        ns.copy_from_slice(&p[12..20]);
        Some(Self {
            kind,
            flags: p[3],
            publisher: u32_at(4),
            seq: u32_at(8),
            send_ns: u64::from_be_bytes(ns),
        })
    }
}

impl Probe {
    /// The simulcast layer the packet belongs to (0 without simulcast).
    pub fn layer(&self) -> u8 {
        (self.flags >> LAYER_SHIFT) & LAYER_MASK
    }
}

/// The probe's byte for a kind.
pub fn kind_byte(kind: TrackKind) -> u8 {
    match kind {
        TrackKind::Audio => 0,
        TrackKind::Video => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let probe = Probe {
            kind: TrackKind::Video,
            flags: FLAG_KEYFRAME,
            publisher: 7,
            seq: 123_456,
            send_ns: 9_876_543_210,
        };
        let mut buf = vec![0u8; 100];
        probe.write(&mut buf);
        assert_eq!(Probe::read(&buf), Some(probe));
        assert_eq!(probe.layer(), 0);
        let layered = Probe {
            flags: FLAG_KEYFRAME | layer_flags(2),
            ..probe
        };
        layered.write(&mut buf);
        let read = Probe::read(&buf).expect("probe");
        assert_eq!(
            (read.layer(), read.flags & FLAG_KEYFRAME),
            (2, FLAG_KEYFRAME)
        );
        assert_eq!(Probe::read(&buf[..MIN_PAYLOAD - 1]), None, "too short");
        buf[PROBE_OFFSET] ^= 0xff;
        assert_eq!(Probe::read(&buf), None, "bad magic");
    }
}
