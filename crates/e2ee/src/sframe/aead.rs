//! The AEADs of RFC 9605's cipher suites: AES-GCM, and AES-CTR with a
//! truncated HMAC-SHA256 tag (§4.5.1, encrypt-then-MAC):
//!
//! ```text
//! enc_key, auth_key = key[..16], key[16..]
//! ct  = AES-CTR(enc_key, nonce || 0x00000000, pt)
//! tag = HMAC(auth_key, len(aad) || len(ct) || Nt || nonce || aad || ct)[..Nt]
//! ```
//!
//! (lengths as 8-byte big-endian). Both write into a caller's buffer.

use crate::sframe::suite::{CipherSuite, NONCE_LEN};
use crate::E2eeError;
use aes::cipher::{KeyIvInit, StreamCipher};
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm, Nonce, Tag};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type Aes128Ctr = ctr::Ctr32BE<aes::Aes128>;
/// `AEAD.Nka` of the counter-mode suites.
const CTR_KEY: usize = 16;

fn check_key(suite: CipherSuite, key: &[u8]) -> Result<(), E2eeError> {
    if key.len() == suite.key_len() {
        Ok(())
    } else {
        Err(key_error(suite, key))
    }
}

/// Append `AEAD.Encrypt(key, nonce, aad, pt)` (ciphertext, then tag) to
/// `out`.
pub fn seal(
    suite: CipherSuite,
    key: &[u8],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    pt: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), E2eeError> {
    check_key(suite, key)?;
    let start = out.len();
    out.extend_from_slice(pt);
    let sealed = match suite {
        CipherSuite::AesGcm128Sha256 => {
            gcm_seal::<Aes128Gcm>(suite, key, nonce, aad, &mut out[start..])
                .map(|tag| out.extend_from_slice(&tag))
        }
        CipherSuite::AesGcm256Sha512 => {
            gcm_seal::<Aes256Gcm>(suite, key, nonce, aad, &mut out[start..])
                .map(|tag| out.extend_from_slice(&tag))
        }
        _ => ctr_apply(suite, key, nonce, &mut out[start..])
            .and_then(|()| ctr_tag(suite, key, nonce, aad, &out[start..]))
            .map(|tag| out.extend_from_slice(&tag[..suite.tag_len()])),
    };
    if sealed.is_err() {
        out.truncate(start);
    }
    sealed
}

/// Append `AEAD.Decrypt(key, nonce, aad, ct)` (the plaintext) to `out`, or
/// an error with `out` as it was when the tag does not match.
pub fn open(
    suite: CipherSuite,
    key: &[u8],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    ct: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), E2eeError> {
    check_key(suite, key)?;
    let split = ct
        .len()
        .checked_sub(suite.tag_len())
        .ok_or(E2eeError::Truncated)?;
    let (body, tag) = ct.split_at(split);
    let start = out.len();
    let opened = match suite {
        CipherSuite::AesGcm128Sha256 => {
            out.extend_from_slice(body);
            gcm_open::<Aes128Gcm>(suite, key, nonce, aad, &mut out[start..], tag)
        }
        CipherSuite::AesGcm256Sha512 => {
            out.extend_from_slice(body);
            gcm_open::<Aes256Gcm>(suite, key, nonce, aad, &mut out[start..], tag)
        }
        _ => {
            let expected = ctr_tag(suite, key, nonce, aad, body)?;
            if bool::from(expected[..suite.tag_len()].ct_eq(tag)) {
                out.extend_from_slice(body);
                ctr_apply(suite, key, nonce, &mut out[start..])
            } else {
                Err(E2eeError::Authentication)
            }
        }
    };
    if opened.is_err() {
        out.truncate(start);
    }
    opened
}

/// The GCM suites' tag length.
const GCM_TAG: usize = 16;

fn key_error(suite: CipherSuite, key: &[u8]) -> E2eeError {
    E2eeError::KeyLength {
        expected: suite.key_len(),
        got: key.len(),
    }
}

fn gcm_seal<C: KeyInit + AeadInPlace>(
    suite: CipherSuite,
    key: &[u8],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    body: &mut [u8],
) -> Result<[u8; GCM_TAG], E2eeError> {
    let cipher = C::new_from_slice(key).map_err(|_| key_error(suite, key))?;
    let tag = cipher
        .encrypt_in_place_detached(Nonce::from_slice(nonce), aad, body)
        .map_err(|_| E2eeError::FrameTooLong)?;
    let mut out = [0; GCM_TAG];
    out.copy_from_slice(&tag);
    Ok(out)
}

fn gcm_open<C: KeyInit + AeadInPlace>(
    suite: CipherSuite,
    key: &[u8],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    body: &mut [u8],
    tag: &[u8],
) -> Result<(), E2eeError> {
    let cipher = C::new_from_slice(key).map_err(|_| key_error(suite, key))?;
    cipher
        .decrypt_in_place_detached(Nonce::from_slice(nonce), aad, body, Tag::from_slice(tag))
        .map_err(|_| E2eeError::Authentication)
}

/// AES-CTR over `data` in place, the counter block `nonce || 0u32`.
fn ctr_apply(
    suite: CipherSuite,
    key: &[u8],
    nonce: &[u8; NONCE_LEN],
    data: &mut [u8],
) -> Result<(), E2eeError> {
    let mut iv = [0u8; 16];
    iv[..NONCE_LEN].copy_from_slice(nonce);
    let enc_key = key.get(..CTR_KEY).ok_or_else(|| key_error(suite, key))?;
    let mut cipher = Aes128Ctr::new_from_slices(enc_key, &iv).map_err(|_| key_error(suite, key))?;
    // 2^32 blocks of 16 bytes (64 GiB): far beyond any frame.
    cipher
        .try_apply_keystream(data)
        .map_err(|_| E2eeError::FrameTooLong)
}

/// The full HMAC-SHA256 of the counter-mode suites (truncate to `Nt`).
fn ctr_tag(
    suite: CipherSuite,
    key: &[u8],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    ct: &[u8],
) -> Result<[u8; 32], E2eeError> {
    let auth_key = key.get(CTR_KEY..).ok_or_else(|| key_error(suite, key))?;
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(auth_key).map_err(|_| key_error(suite, key))?;
    mac.update(&(aad.len() as u64).to_be_bytes());
    mac.update(&(ct.len() as u64).to_be_bytes());
    mac.update(&(suite.tag_len() as u64).to_be_bytes());
    mac.update(nonce);
    mac.update(aad);
    mac.update(ct);
    Ok(mac.finalize().into_bytes().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUITES: [CipherSuite; 5] = [
        CipherSuite::AesCtr128HmacSha256_80,
        CipherSuite::AesCtr128HmacSha256_64,
        CipherSuite::AesCtr128HmacSha256_32,
        CipherSuite::AesGcm128Sha256,
        CipherSuite::AesGcm256Sha512,
    ];

    #[test]
    fn every_suite_round_trips_and_rejects_any_changed_byte() {
        for suite in SUITES {
            let key = vec![0x42; suite.key_len()];
            let nonce = [9; NONCE_LEN];
            let mut ct = b"prefix".to_vec();
            seal(suite, &key, &nonce, b"aad", b"a frame", &mut ct).expect("seals");
            let ct = &ct[6..];
            assert_eq!(ct.len(), 7 + suite.tag_len());
            let mut pt = Vec::new();
            open(suite, &key, &nonce, b"aad", ct, &mut pt).expect("opens");
            assert_eq!(pt, b"a frame");
            for i in 0..ct.len() {
                let mut bad = ct.to_vec();
                bad[i] ^= 1;
                let mut out = b"kept".to_vec();
                assert_eq!(
                    open(suite, &key, &nonce, b"aad", &bad, &mut out),
                    Err(E2eeError::Authentication),
                    "{suite:?} byte {i}"
                );
                assert_eq!(out, b"kept", "nothing written on failure");
            }
            let mut out = Vec::new();
            assert_eq!(
                open(suite, &key, &nonce, b"aae", ct, &mut out),
                Err(E2eeError::Authentication),
                "{suite:?}: other associated data"
            );
            assert_eq!(
                open(
                    suite,
                    &key,
                    &nonce,
                    b"aad",
                    &ct[..suite.tag_len() - 1],
                    &mut out
                ),
                Err(E2eeError::Truncated)
            );
            assert!(matches!(
                seal(suite, &key[1..], &nonce, b"", b"", &mut out),
                Err(E2eeError::KeyLength { .. })
            ));
        }
    }
}
