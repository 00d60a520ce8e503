//! The cipher suites of RFC 9605 §4.5 and their sizes.

use crate::E2eeError;

/// An SFrame cipher suite: the AEAD and the hash for key derivation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CipherSuite {
    /// 0x0001: AES-128 in counter mode, HMAC-SHA256 tag of 10 bytes.
    AesCtr128HmacSha256_80,
    /// 0x0002: AES-128 in counter mode, HMAC-SHA256 tag of 8 bytes.
    AesCtr128HmacSha256_64,
    /// 0x0003: AES-128 in counter mode, HMAC-SHA256 tag of 4 bytes.
    AesCtr128HmacSha256_32,
    /// 0x0004: AES-128-GCM, SHA-256 for key derivation. huddle's choice:
    /// browsers' WebCrypto has AES-GCM, and the 16-byte tag is the
    /// strongest.
    AesGcm128Sha256,
    /// 0x0005: AES-256-GCM, SHA-512 for key derivation.
    AesGcm256Sha512,
}

impl CipherSuite {
    /// The suite with IANA identifier `id`.
    pub fn from_id(id: u16) -> Result<Self, E2eeError> {
        Ok(match id {
            1 => Self::AesCtr128HmacSha256_80,
            2 => Self::AesCtr128HmacSha256_64,
            3 => Self::AesCtr128HmacSha256_32,
            4 => Self::AesGcm128Sha256,
            5 => Self::AesGcm256Sha512,
            other => return Err(E2eeError::UnknownSuite(other)),
        })
    }

    /// Its IANA identifier.
    pub fn id(self) -> u16 {
        match self {
            Self::AesCtr128HmacSha256_80 => 1,
            Self::AesCtr128HmacSha256_64 => 2,
            Self::AesCtr128HmacSha256_32 => 3,
            Self::AesGcm128Sha256 => 4,
            Self::AesGcm256Sha512 => 5,
        }
    }

    /// `AEAD.Nk`: bytes of the AEAD key (for the counter-mode suites, the
    /// AES key and the HMAC key together).
    pub fn key_len(self) -> usize {
        match self {
            Self::AesCtr128HmacSha256_80
            | Self::AesCtr128HmacSha256_64
            | Self::AesCtr128HmacSha256_32 => 48,
            Self::AesGcm128Sha256 => 16,
            Self::AesGcm256Sha512 => 32,
        }
    }

    /// `AEAD.Nn`: bytes of the nonce (and of the salt).
    pub const fn nonce_len(self) -> usize {
        NONCE_LEN
    }

    /// `AEAD.Nt`: bytes the AEAD adds to a frame (its tag).
    pub fn tag_len(self) -> usize {
        match self {
            Self::AesCtr128HmacSha256_80 => 10,
            Self::AesCtr128HmacSha256_64 => 8,
            Self::AesCtr128HmacSha256_32 => 4,
            Self::AesGcm128Sha256 | Self::AesGcm256Sha512 => 16,
        }
    }

    /// Whether key derivation uses SHA-512 (else SHA-256).
    pub(crate) fn sha512(self) -> bool {
        self == Self::AesGcm256Sha512
    }
}

/// `AEAD.Nn` of every suite of RFC 9605.
pub const NONCE_LEN: usize = 12;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_round_trip_and_unknown_ones_are_errors() {
        for id in 1..=5 {
            assert_eq!(CipherSuite::from_id(id).map(CipherSuite::id), Ok(id));
        }
        assert_eq!(CipherSuite::from_id(0), Err(E2eeError::UnknownSuite(0)));
        assert_eq!(CipherSuite::from_id(6), Err(E2eeError::UnknownSuite(6)));
    }
}
