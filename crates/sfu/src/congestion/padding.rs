//! How to cut a padding budget into packets.
//!
//! A padding-only RTP packet carries at most 255 bytes of padding (the
//! count is one byte): with header, extensions and the SRTP tag about 300
//! bytes on the wire. Over RTX a padding packet can instead resend an old
//! media packet, up to the MTU. Either way the SFU asks how many packets
//! of which sizes make up the bytes the pacer wants ([`padding_sizes`]).

/// Wire size of a padding-only RTP packet with a full 255-byte padding
/// (12-byte header, 8 bytes of header extensions, 10-byte SRTP tag).
pub const MAX_PADDING_ONLY_PACKET: usize = 12 + 8 + 255 + 10;

/// Sizes of the padding packets that make up about `bytes` (rounded up to
/// whole packets): as few as packets of at most `max_packet` bytes allow,
/// all of about the same size, none smaller than `min_packet`.
pub fn padding_sizes(bytes: usize, max_packet: usize, min_packet: usize) -> PaddingSizes {
    let max_packet = max_packet.max(1);
    let min_packet = min_packet.clamp(1, max_packet);
    let bytes = bytes.max(if bytes == 0 { 0 } else { min_packet });
    let count = bytes.div_ceil(max_packet);
    PaddingSizes {
        left: count,
        size: if count == 0 {
            0
        } else {
            bytes.div_ceil(count).clamp(min_packet, max_packet)
        },
    }
}

/// Iterator of padding packet sizes; see [`padding_sizes`].
#[derive(Debug, Clone)]
pub struct PaddingSizes {
    left: usize,
    size: usize,
}

impl Iterator for PaddingSizes {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        Some(self.size)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for PaddingSizes {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_evenly_and_covers_the_budget() {
        let sizes: Vec<_> = padding_sizes(1000, MAX_PADDING_ONLY_PACKET, 50).collect();
        assert_eq!(sizes.len(), 4);
        assert!(sizes.iter().all(|&s| s == 250));
        assert_eq!(padding_sizes(0, 285, 50).count(), 0);
        assert_eq!(padding_sizes(10, 285, 50).collect::<Vec<_>>(), vec![50]);
        let big: usize = padding_sizes(10_001, 1200, 50).sum();
        assert!((10_001..10_001 + 9).contains(&big));
    }
}
