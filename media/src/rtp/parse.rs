//! A strict, zero-copy parser of received RTP packets (RFC 3550).

use super::packet::RTP_HEADER_LEN;
use crate::error::{MediaError, Result};

/// A header extension block (RFC 3550 §5.3.1), undecoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpExtension<'a> {
    /// The 16-bit "defined by profile" field (0xBEDE for RFC 8285 one-byte
    /// extensions, 0x100x for two-byte ones).
    pub profile: u16,
    /// Extension data (a multiple of 4 bytes).
    pub data: &'a [u8],
}

/// A parsed, borrowed view of an RTP packet. See [`parse_rtp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpView<'a> {
    /// Marker bit.
    pub marker: bool,
    /// Payload type (7 bits).
    pub payload_type: u8,
    /// Sequence number.
    pub sequence_number: u16,
    /// Timestamp.
    pub timestamp: u32,
    /// SSRC.
    pub ssrc: u32,
    /// CSRC list as raw bytes, 4 per entry; see [`RtpView::csrcs`].
    pub csrc_bytes: &'a [u8],
    /// The header extension, if the X bit was set.
    pub extension: Option<RtpExtension<'a>>,
    /// Number of padding bytes removed from the end (0 if the P bit was clear).
    pub padding_len: u8,
    /// The payload, without header, CSRCs, extension or padding.
    pub payload: &'a [u8],
}

impl RtpView<'_> {
    /// The contributing sources.
    pub fn csrcs(&self) -> impl Iterator<Item = u32> + '_ {
        self.csrc_bytes
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }

    /// Length of everything before the payload (header + CSRCs + extension).
    pub fn header_len(&self) -> usize {
        RTP_HEADER_LEN + self.csrc_bytes.len() + self.extension.map_or(0, |e| 4 + e.data.len())
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at + 2)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Parse and validate an RTP packet without copying.
///
/// Checks, in order: at least 12 bytes; version 2; the CSRC list (4 × CC bytes)
/// fits; if X is set, the 4-byte extension header and its `length × 4` bytes fit;
/// if P is set, the last byte (padding count) is non-zero and padding does not
/// overlap the headers. Any violation is [`MediaError::InvalidRtp`]; the function
/// never panics, whatever the input. It does not reject RTCP-range payload types:
/// demultiplex RTP from RTCP (RFC 5761) before calling it.
pub fn parse_rtp(buf: &[u8]) -> Result<RtpView<'_>> {
    let bad = MediaError::InvalidRtp;
    if buf.len() < RTP_HEADER_LEN {
        return Err(bad("shorter than the 12-byte header"));
    }
    let b0 = buf[0];
    if b0 >> 6 != 2 {
        return Err(bad("version is not 2"));
    }
    let has_padding = b0 & 0x20 != 0;
    let has_extension = b0 & 0x10 != 0;
    let csrc_count = usize::from(b0 & 0x0f);
    let b1 = buf[1];
    let sequence_number = be16(buf, 2).ok_or(bad("truncated header"))?;
    let timestamp = be32(buf, 4).ok_or(bad("truncated header"))?;
    let ssrc = be32(buf, 8).ok_or(bad("truncated header"))?;

    let mut pos = RTP_HEADER_LEN;
    let csrc_end = pos + 4 * csrc_count;
    let csrc_bytes = buf
        .get(pos..csrc_end)
        .ok_or(bad("CSRC list runs past the end"))?;
    pos = csrc_end;

    let extension = if has_extension {
        let profile = be16(buf, pos).ok_or(bad("extension header runs past the end"))?;
        let words = be16(buf, pos + 2).ok_or(bad("extension header runs past the end"))?;
        let start = pos + 4;
        let end = start + 4 * usize::from(words);
        let data = buf
            .get(start..end)
            .ok_or(bad("extension length runs past the end"))?;
        pos = end;
        Some(RtpExtension { profile, data })
    } else {
        None
    };

    let mut end = buf.len();
    let mut padding_len = 0u8;
    if has_padding {
        padding_len = buf[buf.len() - 1];
        if padding_len == 0 {
            return Err(bad("padding bit set but padding count is 0"));
        }
        let p = usize::from(padding_len);
        if p > buf.len() - pos {
            return Err(bad("padding longer than the payload"));
        }
        end -= p;
    }
    let payload = buf.get(pos..end).ok_or(bad("headers run past the end"))?;

    Ok(RtpView {
        marker: b1 & 0x80 != 0,
        payload_type: b1 & 0x7f,
        sequence_number,
        timestamp,
        ssrc,
        csrc_bytes,
        extension,
        padding_len,
        payload,
    })
}
