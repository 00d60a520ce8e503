//! Key and salt from a base key (RFC 9605 §4.4.2):
//!
//! ```text
//! sframe_secret = HKDF-Extract("", base_key)
//! sframe_key    = HKDF-Expand(sframe_secret, "SFrame 1.0 Secret key "  + KID + suite, Nk)
//! sframe_salt   = HKDF-Expand(sframe_secret, "SFrame 1.0 Secret salt " + KID + suite, Nn)
//! ```
//!
//! KID as 8 bytes and the suite as 2 bytes, big-endian.

use crate::sframe::suite::{CipherSuite, NONCE_LEN};
use crate::E2eeError;
use hkdf::Hkdf;
use sha2::{Sha256, Sha512};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Largest `AEAD.Nk` of the RFC's suites.
const MAX_KEY: usize = 48;

/// The key and salt one KID encrypts or decrypts with. Wiped when dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct KeyMaterial {
    key: [u8; MAX_KEY],
    key_len: usize,
    salt: [u8; NONCE_LEN],
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyMaterial(..)") // never the secret
    }
}

impl KeyMaterial {
    /// Derive the key and salt of `kid` under `suite` from `base_key`.
    pub fn derive(suite: CipherSuite, kid: u64, base_key: &[u8]) -> Result<Self, E2eeError> {
        if base_key.is_empty() {
            return Err(E2eeError::EmptyKey);
        }
        let mut m = KeyMaterial {
            key: [0; MAX_KEY],
            key_len: suite.key_len(),
            salt: [0; NONCE_LEN],
        };
        let label = |what: &[u8]| {
            let mut l = Vec::with_capacity(what.len() + 10);
            l.extend_from_slice(what);
            l.extend_from_slice(&kid.to_be_bytes());
            l.extend_from_slice(&suite.id().to_be_bytes());
            l
        };
        let key_label = label(b"SFrame 1.0 Secret key ");
        let salt_label = label(b"SFrame 1.0 Secret salt ");
        let key = &mut m.key[..m.key_len];
        // Expand cannot fail: at most 48 bytes, far under 255 hash lengths.
        let expanded = if suite.sha512() {
            let h = Hkdf::<Sha512>::new(None, base_key);
            h.expand(&key_label, key)
                .and_then(|()| h.expand(&salt_label, &mut m.salt))
        } else {
            let h = Hkdf::<Sha256>::new(None, base_key);
            h.expand(&key_label, key)
                .and_then(|()| h.expand(&salt_label, &mut m.salt))
        };
        expanded.map_err(|_| E2eeError::KeyLength {
            expected: suite.key_len(),
            got: 0,
        })?;
        Ok(m)
    }

    /// `sframe_key`.
    pub fn key(&self) -> &[u8] {
        &self.key[..self.key_len]
    }

    /// `sframe_salt`.
    pub fn salt(&self) -> &[u8; NONCE_LEN] {
        &self.salt
    }

    /// The nonce of counter `ctr`: the salt XOR the counter, big-endian.
    pub fn nonce(&self, ctr: u64) -> [u8; NONCE_LEN] {
        let mut nonce = self.salt;
        for (n, c) in nonce[NONCE_LEN - 8..].iter_mut().zip(ctr.to_be_bytes()) {
            *n ^= c;
        }
        nonce
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kid_and_suite_gets_its_own_key_and_salt() {
        let base = [7u8; 16];
        let a = KeyMaterial::derive(CipherSuite::AesGcm128Sha256, 1, &base).expect("derives");
        let b = KeyMaterial::derive(CipherSuite::AesGcm128Sha256, 2, &base).expect("derives");
        let c = KeyMaterial::derive(CipherSuite::AesGcm256Sha512, 1, &base).expect("derives");
        assert_ne!(a.key(), b.key());
        assert_ne!(a.salt(), b.salt());
        assert_eq!(a.key().len(), 16);
        assert_eq!(c.key().len(), 32);
        assert_eq!(
            KeyMaterial::derive(CipherSuite::AesGcm128Sha256, 1, &[]).err(),
            Some(E2eeError::EmptyKey)
        );
        assert_eq!(format!("{a:?}"), "KeyMaterial(..)");
    }

    #[test]
    fn the_nonce_is_the_salt_xor_the_counter() {
        let m = KeyMaterial::derive(CipherSuite::AesGcm128Sha256, 1, &[1; 16]).expect("derives");
        assert_eq!(m.nonce(0), *m.salt());
        let n = m.nonce(0x0102);
        assert_eq!(n[..10], m.salt()[..10]);
        assert_eq!(n[10], m.salt()[10] ^ 0x01);
        assert_eq!(n[11], m.salt()[11] ^ 0x02);
    }
}
