//! The SFrame header (RFC 9605 §4.3): a config byte, then the KID and the
//! counter in as few big-endian bytes as they need.
//!
//! ```text
//! +-+-+-+-+-+-+-+-+
//! |X|  K  |Y|  C  |  then KID (if X) and CTR (if Y)
//! +-+-+-+-+-+-+-+-+
//! ```
//!
//! X = 0: K is the KID (0-7); X = 1: K + 1 bytes of KID follow. The same
//! for Y, C and the counter.

use crate::E2eeError;

/// A frame's key ID and counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// Key ID: which key encrypted the frame.
    pub kid: u64,
    /// Counter: with the key's salt, the frame's nonce.
    pub ctr: u64,
}

/// Bytes `v` takes big-endian with no leading zero byte (at least 1).
fn byte_len(v: u64) -> usize {
    (8 - v.leading_zeros() as usize / 8).max(1)
}

/// A value below 8 goes in the config byte's 3 bits.
const INLINE: u64 = 8;

impl Header {
    /// Bytes of the encoded header (1 to 17).
    pub fn encoded_len(&self) -> usize {
        let field = |v: u64| if v < INLINE { 0 } else { byte_len(v) };
        1 + field(self.kid) + field(self.ctr)
    }

    /// Append the encoded header to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        let mut config = 0u8;
        if self.kid < INLINE {
            config |= (self.kid as u8) << 4;
        } else {
            config |= 0x80 | ((byte_len(self.kid) as u8 - 1) << 4);
        }
        if self.ctr < INLINE {
            config |= self.ctr as u8;
        } else {
            config |= 0x08 | (byte_len(self.ctr) as u8 - 1);
        }
        out.push(config);
        for v in [self.kid, self.ctr] {
            if v >= INLINE {
                out.extend_from_slice(&v.to_be_bytes()[8 - byte_len(v)..]);
            }
        }
    }

    /// The header at the start of `data`, and its length in bytes.
    pub fn parse(data: &[u8]) -> Result<(Header, usize), E2eeError> {
        let &config = data.first().ok_or(E2eeError::MalformedHeader)?;
        let mut at = 1;
        let mut field = |extended: bool, bits: u8| -> Result<u64, E2eeError> {
            if !extended {
                return Ok(u64::from(bits));
            }
            let len = usize::from(bits) + 1;
            let bytes = data.get(at..at + len).ok_or(E2eeError::MalformedHeader)?;
            at += len;
            Ok(bytes.iter().fold(0u64, |v, &b| (v << 8) | u64::from(b)))
        };
        let kid = field(config & 0x80 != 0, (config >> 4) & 0x07)?;
        let ctr = field(config & 0x08 != 0, config & 0x07)?;
        Ok((Header { kid, ctr }, at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(kid: u64, ctr: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let h = Header { kid, ctr };
        h.write(&mut out);
        assert_eq!(out.len(), h.encoded_len());
        out
    }

    #[test]
    fn the_four_forms() {
        assert_eq!(encode(3, 5), [0x35]);
        assert_eq!(encode(3, 0x1234), [0x39, 0x12, 0x34]);
        assert_eq!(encode(0x1ff, 2), [0x92, 0x01, 0xff]);
        assert_eq!(encode(8, 8), [0x88, 0x08, 0x08]);
        assert_eq!(encode(u64::MAX, 0).len(), 9);
    }

    #[test]
    fn round_trips_and_says_how_long_it_was() {
        for kid in [0, 7, 8, 255, 256, 1 << 40, u64::MAX] {
            for ctr in [0, 7, 8, 65_535, 1 << 56, u64::MAX] {
                let mut data = encode(kid, ctr);
                let len = data.len();
                data.extend_from_slice(b"ciphertext");
                assert_eq!(Header::parse(&data), Ok((Header { kid, ctr }, len)));
            }
        }
    }

    #[test]
    fn truncated_headers_are_errors() {
        assert_eq!(Header::parse(&[]), Err(E2eeError::MalformedHeader));
        let full = encode(0x1_0000, 0x1_0000_0000);
        for cut in 0..full.len() {
            assert_eq!(
                Header::parse(&full[..cut]),
                Err(E2eeError::MalformedHeader),
                "{cut} bytes"
            );
        }
    }
}
