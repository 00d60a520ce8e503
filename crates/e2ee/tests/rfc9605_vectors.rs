//! The test vectors of RFC 9605 (Appendix C), from the JSON file the RFC
//! points to (`tests/data/rfc9605-test-vectors.json`, sframe-wg/sframe at
//! 025d568): header encodings, the AES-CTR + HMAC AEAD, and whole SFrame
//! encryptions for all five cipher suites.

use huddle_e2ee::sframe::aead::{open, seal};
use huddle_e2ee::sframe::keys::KeyMaterial;
use huddle_e2ee::sframe::{CipherSuite, Header, SframeReceiver, SframeSender};
use serde::Deserialize;
use std::time::Instant;

#[derive(Deserialize)]
struct Vectors {
    header: Vec<HeaderVector>,
    aes_ctr_hmac: Vec<AeadVector>,
    sframe: Vec<SframeVector>,
}

#[derive(Deserialize)]
struct HeaderVector {
    kid: u64,
    ctr: u64,
    encoded: String,
}

#[derive(Deserialize)]
struct AeadVector {
    cipher_suite: u16,
    key: String,
    nonce: String,
    aad: String,
    pt: String,
    ct: String,
}

#[derive(Deserialize)]
struct SframeVector {
    cipher_suite: u16,
    kid: u64,
    ctr: u64,
    base_key: String,
    sframe_key: String,
    sframe_salt: String,
    metadata: String,
    nonce: String,
    pt: String,
    ct: String,
}

fn vectors() -> Vectors {
    let text = include_str!("data/rfc9605-test-vectors.json");
    serde_json::from_str(text).expect("the vectors parse")
}

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn nonce(s: &str) -> [u8; 12] {
    hex(s).try_into().expect("a 12-byte nonce")
}

#[test]
fn header_encodings() {
    let v = vectors().header;
    assert_eq!(v.len(), 289);
    for t in v {
        let header = Header {
            kid: t.kid,
            ctr: t.ctr,
        };
        let encoded = hex(&t.encoded);
        let mut out = Vec::new();
        header.write(&mut out);
        assert_eq!(out, encoded, "kid {} ctr {}", t.kid, t.ctr);
        assert_eq!(header.encoded_len(), encoded.len());
        assert_eq!(Header::parse(&encoded), Ok((header, encoded.len())));
    }
}

#[test]
fn aes_ctr_hmac_aead() {
    let v = vectors().aes_ctr_hmac;
    assert_eq!(v.len(), 3);
    for t in v {
        let suite = CipherSuite::from_id(t.cipher_suite).expect("suite");
        let (key, n, aad, pt, ct) = (
            hex(&t.key),
            nonce(&t.nonce),
            hex(&t.aad),
            hex(&t.pt),
            hex(&t.ct),
        );
        let mut sealed = Vec::new();
        seal(suite, &key, &n, &aad, &pt, &mut sealed).expect("seals");
        assert_eq!(sealed, ct, "suite {}", t.cipher_suite);
        let mut opened = Vec::new();
        open(suite, &key, &n, &aad, &ct, &mut opened).expect("opens");
        assert_eq!(opened, pt);
    }
}

#[test]
fn sframe_encryption_and_decryption() {
    let v = vectors().sframe;
    let suites: Vec<u16> = v.iter().map(|t| t.cipher_suite).collect();
    assert_eq!(suites, [1, 2, 3, 4, 5], "every suite of the RFC");
    for t in v {
        let suite = CipherSuite::from_id(t.cipher_suite).expect("suite");
        let base = hex(&t.base_key);
        let keys = KeyMaterial::derive(suite, t.kid, &base).expect("derives");
        assert_eq!(
            keys.key(),
            hex(&t.sframe_key),
            "suite {} key",
            t.cipher_suite
        );
        assert_eq!(keys.salt()[..], hex(&t.sframe_salt)[..], "salt");
        assert_eq!(keys.nonce(t.ctr), nonce(&t.nonce), "nonce");

        let mut tx = SframeSender::new(suite, t.kid, &base).expect("sender");
        tx.set_counter(t.ctr);
        let mut ct = Vec::new();
        tx.encrypt(&hex(&t.metadata), &hex(&t.pt), &mut ct)
            .expect("encrypts");
        assert_eq!(ct, hex(&t.ct), "suite {} ciphertext", t.cipher_suite);

        let mut rx = SframeReceiver::new(suite);
        rx.add_key(t.kid, &base).expect("key");
        let mut pt = Vec::new();
        let header = rx
            .decrypt(Instant::now(), &hex(&t.metadata), &hex(&t.ct), &mut pt)
            .expect("decrypts");
        assert_eq!((header.kid, header.ctr), (t.kid, t.ctr));
        assert_eq!(pt, hex(&t.pt));
    }
}
