//! An outgoing RTP packet and the constants shared by the packetizers.

use crate::error::{MediaError, Result};

/// RTP header length without CSRCs or extension.
pub const RTP_HEADER_LEN: usize = 12;

/// Default largest RTP payload produced by the VP8 packetizer, descriptor included.
pub const DEFAULT_MAX_PAYLOAD: usize = 1200;

/// RTP clock rate of video payloads (Hz).
pub const VIDEO_CLOCK_RATE: u32 = 90_000;

/// An outgoing RTP packet: header fields plus payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacketOut {
    /// Payload type, 0..=127.
    pub payload_type: u8,
    /// Sequence number (wraps at 2^16).
    pub sequence_number: u16,
    /// Media timestamp in the payload's clock (48 kHz for Opus, 90 kHz for video).
    pub timestamp: u32,
    /// Synchronization source.
    pub ssrc: u32,
    /// Marker bit: Opus sets it on the first packet of a talkspurt; video on the
    /// last packet of a frame.
    pub marker: bool,
    /// The payload bytes.
    pub payload: Vec<u8>,
}

impl RtpPacketOut {
    /// Serialized length in bytes.
    pub fn len(&self) -> usize {
        RTP_HEADER_LEN + self.payload.len()
    }

    /// True if the payload is empty (the header is always there).
    pub fn is_empty(&self) -> bool {
        self.payload.is_empty()
    }

    /// Serialize: RFC 3550 fixed header (V=2, P=0, X=0, CC=0), then the payload.
    /// The payload type is masked to 7 bits.
    pub fn marshal(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        self.marshal_into(&mut out);
        out
    }

    /// Like [`marshal`](Self::marshal) but appends to `out`.
    pub fn marshal_into(&self, out: &mut Vec<u8>) {
        out.reserve(self.len());
        out.push(0x80);
        out.push((u8::from(self.marker) << 7) | (self.payload_type & 0x7f));
        out.extend_from_slice(&self.sequence_number.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(&self.payload);
    }
}

pub(crate) fn check_payload_type(payload_type: u8) -> Result<()> {
    if payload_type > 127 {
        return Err(MediaError::InvalidConfig(format!(
            "payload type {payload_type} is not 0..=127"
        )));
    }
    Ok(())
}
