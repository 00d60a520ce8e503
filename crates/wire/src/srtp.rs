//! SRTP protection of the RTP the SFU sends (RFC 3711, RFC 7714), written
//! once into the caller's buffer and encrypted there: no allocation and one
//! copy of the payload per forwarded packet.
//!
//! `rtc-srtp` 0.21 encrypts into a fresh `BytesMut` per packet, after the
//! caller has marshalled the packet into a buffer of its own; at tens of
//! copies per input packet that allocation and the extra copy were a fifth
//! of the SFU's user-space time (docs/benchmarks.md). The primitives are the
//! same: `rtc`'s crypto provider (AES-GCM, AES-CTR, HMAC-SHA1), keyed once.
//! `rtc-srtp` still protects the SFU's RTCP (a few reports a second) and
//! unprotects the client's.

use crate::WireError;
use bytes::BytesMut;
use rtc::crypto::{
    AeadAlgorithm, AeadCipher, BlockCipherAlgorithm, HmacAlgorithm, Mac, RTCCrypto, StreamCipher,
    StreamCipherAlgorithm,
};
use rtc::shared::marshal::{Marshal, MarshalSize};
use rtc::srtp::protection_profile::ProtectionProfile;
use rustc_hash::FxHashMap;

/// RFC 3711 §4.3.1 key derivation labels for SRTP (not SRTCP).
const LABEL_ENCRYPTION: u8 = 0x00;
const LABEL_AUTHENTICATION: u8 = 0x01;
const LABEL_SALT: u8 = 0x02;
/// HMAC-SHA1 session authentication key length (RFC 3711 §4.2).
const AUTH_KEY_LEN: usize = 20;
/// AES-GCM tag length (RFC 7714 §7: 16 octets).
const GCM_TAG_LEN: usize = 16;

fn crypto_err(e: impl std::fmt::Display) -> WireError {
    WireError::Srtp(e.to_string())
}

/// The cipher of one profile, keyed for the SRTP (RTP) direction.
enum Cipher {
    /// AEAD_AES_128_GCM / AEAD_AES_256_GCM (RFC 7714).
    Gcm {
        aead: Box<dyn AeadCipher>,
        /// 12-octet session salt.
        salt: [u8; 12],
    },
    /// AES_CM with HMAC-SHA1 (RFC 3711 §4.1.1, §4.2).
    Cm {
        stream: Box<dyn StreamCipher>,
        auth: Box<dyn Mac>,
        /// 14-octet session salt.
        salt: [u8; 14],
        /// Truncated tag: 10 octets (`_80`) or 4 (`_32`).
        tag_len: usize,
    },
}

/// One element of a one-byte-header RTP extension block (RFC 8285 §4.2):
/// an id of 1 to 14 and 1 to 16 octets of data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OneByteExtension<'a> {
    /// The id negotiated for the extension (`a=extmap`).
    pub id: u8,
    /// Its value.
    pub data: &'a [u8],
}

impl OneByteExtension<'_> {
    fn checked(self) -> Result<Self, WireError> {
        if !(1..=14).contains(&self.id) || !(1..=16).contains(&self.data.len()) {
            return Err(WireError::Srtp(format!(
                "one-byte extension id {} with {} octets",
                self.id,
                self.data.len()
            )));
        }
        Ok(self)
    }

    /// Octets of the whole block: the 0xBEDE profile and length word, the
    /// element, zero padding to a 32-bit boundary.
    fn block_len(self) -> usize {
        4 + (1 + self.data.len()).div_ceil(4) * 4
    }

    /// Write the block into `into` (exactly [`Self::block_len`] octets).
    fn write(self, into: &mut [u8]) {
        let words = (into.len() - 4) / 4;
        into[0] = 0xBE;
        into[1] = 0xDE;
        into[2..4].copy_from_slice(&(words as u16).to_be_bytes());
        into[4] = (self.id << 4) | (self.data.len() as u8 - 1);
        into[5..5 + self.data.len()].copy_from_slice(self.data);
        into[5 + self.data.len()..].fill(0);
    }
}

/// Rollover counter of one outgoing SSRC (RFC 3711 §3.3.1).
#[derive(Clone, Copy)]
struct Roc {
    roc: u32,
    highest: u16,
}

impl Roc {
    /// The ROC for `seq`, moving on when the sequence number wraps. An older
    /// sequence number (a retransmission) from before the wrap keeps the
    /// previous cycle.
    fn for_seq(&mut self, seq: u16) -> u32 {
        let ahead = seq.wrapping_sub(self.highest) as i16;
        if ahead > 0 {
            if seq < self.highest {
                self.roc = self.roc.wrapping_add(1);
            }
            self.highest = seq;
            self.roc
        } else if seq > self.highest {
            self.roc.saturating_sub(1)
        } else {
            self.roc
        }
    }
}

/// SRTP protection of one connection's outgoing RTP. See the module docs.
pub struct SrtpSender {
    cipher: Cipher,
    rocs: FxHashMap<u32, Roc>,
}

impl SrtpSender {
    /// Key the sender from the master key and salt DTLS exported for the
    /// SFU's side (RFC 5764 §4.2).
    pub fn new(
        crypto: &dyn RTCCrypto,
        profile: ProtectionProfile,
        master_key: &[u8],
        master_salt: &[u8],
    ) -> Result<Self, WireError> {
        if master_key.len() != profile.key_len() || master_salt.len() != profile.salt_len() {
            return Err(WireError::Srtp(format!(
                "{profile:?}: master key/salt of {}/{} octets",
                master_key.len(),
                master_salt.len()
            )));
        }
        let kdf = |label, len| derive(crypto, master_key, master_salt, label, len);
        let cipher = match profile {
            ProtectionProfile::AeadAes128Gcm | ProtectionProfile::AeadAes256Gcm => {
                let algorithm = if master_key.len() == 16 {
                    AeadAlgorithm::Aes128Gcm
                } else {
                    AeadAlgorithm::Aes256Gcm
                };
                let key = kdf(LABEL_ENCRYPTION, master_key.len())?;
                let aead = crypto.new_aead(algorithm, &key).map_err(crypto_err)?;
                if aead.tag_len() != GCM_TAG_LEN {
                    return Err(WireError::Srtp("AES-GCM tag is not 16 octets".into()));
                }
                let mut salt = [0u8; 12];
                salt.copy_from_slice(&kdf(LABEL_SALT, 12)?);
                Cipher::Gcm { aead, salt }
            }
            ProtectionProfile::Aes128CmHmacSha1_80
            | ProtectionProfile::Aes128CmHmacSha1_32
            | ProtectionProfile::Aes256CmHmacSha1_80
            | ProtectionProfile::Aes256CmHmacSha1_32 => {
                let algorithm = if master_key.len() == 16 {
                    StreamCipherAlgorithm::Aes128Ctr
                } else {
                    StreamCipherAlgorithm::Aes256Ctr
                };
                let key = kdf(LABEL_ENCRYPTION, master_key.len())?;
                let stream = crypto
                    .new_stream_cipher(algorithm, &key)
                    .map_err(crypto_err)?;
                let auth_key = kdf(LABEL_AUTHENTICATION, AUTH_KEY_LEN)?;
                let auth = crypto
                    .new_hmac(HmacAlgorithm::Sha1, &auth_key)
                    .map_err(crypto_err)?;
                let mut salt = [0u8; 14];
                salt.copy_from_slice(&kdf(LABEL_SALT, 14)?);
                Cipher::Cm {
                    stream,
                    auth,
                    salt,
                    tag_len: profile.rtp_auth_tag_len(),
                }
            }
            other => return Err(WireError::Srtp(format!("{other:?}: not supported"))),
        };
        Ok(Self {
            cipher,
            rocs: FxHashMap::default(),
        })
    }

    /// Octets the protection adds after the payload.
    pub fn overhead(&self) -> usize {
        match &self.cipher {
            Cipher::Gcm { .. } => GCM_TAG_LEN,
            Cipher::Cm { tag_len, .. } => *tag_len,
        }
    }

    /// Append the SRTP packet for `header` and `payload` to `out`. On error
    /// `out` is as it was.
    pub fn protect(
        &mut self,
        header: &rtc::rtp::Header,
        payload: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), WireError> {
        self.protect_with(header, None, payload, out)
    }

    /// [`SrtpSender::protect`], adding one header extension element
    /// `extension` (the transport-wide sequence number, written per packet
    /// without allocating) to a header that carries no extensions.
    pub fn protect_with(
        &mut self,
        header: &rtc::rtp::Header,
        extension: Option<OneByteExtension<'_>>,
        payload: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), WireError> {
        self.protect_split(header, extension, &[], payload, out)
    }

    /// [`SrtpSender::protect_with`] of a payload given in two parts, `head`
    /// then `rest` (a forwarder that rewrites a payload's first bytes per
    /// subscriber, without copying the rest).
    pub fn protect_split(
        &mut self,
        header: &rtc::rtp::Header,
        extension: Option<OneByteExtension<'_>>,
        head: &[u8],
        rest: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), WireError> {
        let start = out.len();
        let result = self.protect_at(start, header, extension, head, rest, out);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn protect_at(
        &mut self,
        start: usize,
        header: &rtc::rtp::Header,
        extension: Option<OneByteExtension<'_>>,
        head: &[u8],
        rest: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), WireError> {
        let base_len = header.marshal_size();
        let extension = match extension {
            Some(e) if header.extension => {
                return Err(WireError::Srtp(format!(
                    "extension {} on a header that has extensions",
                    e.id
                )))
            }
            Some(e) => Some(e.checked()?),
            None => None,
        };
        let header_len = base_len + extension.map_or(0, |e| e.block_len());
        out.reserve(header_len + head.len() + rest.len() + self.overhead());
        out.resize(start + header_len, 0);
        header
            .marshal_to(&mut out[start..start + base_len])
            .map_err(crypto_err)?;
        if let Some(e) = extension {
            out[start] |= 0x10; // X: a header extension follows the CSRCs
            e.write(&mut out[start + base_len..start + header_len]);
        }
        out.extend_from_slice(head);
        out.extend_from_slice(rest);
        let (ssrc, seq) = (header.ssrc, header.sequence_number);
        let roc = self
            .rocs
            .entry(ssrc)
            .or_insert(Roc {
                roc: 0,
                highest: seq,
            })
            .for_seq(seq);
        match &mut self.cipher {
            Cipher::Gcm { aead, salt } => {
                // RFC 7714 §8.1: 00 00 || SSRC || ROC || SEQ, XOR the salt.
                let mut iv = [0u8; 12];
                iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
                iv[6..10].copy_from_slice(&roc.to_be_bytes());
                iv[10..12].copy_from_slice(&seq.to_be_bytes());
                xor(&mut iv, salt);
                let (aad, body) = out[start..].split_at_mut(header_len);
                let mut tag = [0u8; GCM_TAG_LEN];
                aead.seal_in_place(&iv, aad, body, &mut tag)
                    .map_err(crypto_err)?;
                out.extend_from_slice(&tag);
            }
            Cipher::Cm {
                stream,
                auth,
                salt,
                tag_len,
            } => {
                // RFC 3711 §4.1.1: salt * 2^16 XOR SSRC * 2^64 XOR index * 2^16.
                let mut iv = [0u8; 16];
                iv[4..8].copy_from_slice(&ssrc.to_be_bytes());
                iv[8..12].copy_from_slice(&roc.to_be_bytes());
                iv[12..14].copy_from_slice(&seq.to_be_bytes());
                xor(&mut iv[..14], salt);
                stream
                    .apply_keystream(&iv, &mut out[start + header_len..])
                    .map_err(crypto_err)?;
                // RFC 3711 §4.2: HMAC over the packet and the ROC, truncated.
                let mut tag = [0u8; AUTH_KEY_LEN];
                auth.sign(&[&out[start..], &roc.to_be_bytes()], &mut tag)
                    .map_err(crypto_err)?;
                out.extend_from_slice(&tag[..*tag_len]);
            }
        }
        Ok(())
    }
}

fn xor(into: &mut [u8], with: &[u8]) {
    for (a, b) in into.iter_mut().zip(with) {
        *a ^= b;
    }
}

/// The AES-CM PRF of RFC 3711 §4.3.1-4.3.3 with a key derivation rate of
/// zero (RFC 5764 §4.1.2), AES-128 or AES-256 by the master key's length
/// (RFC 6188 §7): the input block is the master salt (padded with zeros to
/// 14 octets; RFC 7714 §11 for the 12-octet AES-GCM salt) with `label` XORed
/// into its eighth octet, followed by a 16-bit block counter.
fn derive(
    crypto: &dyn RTCCrypto,
    master_key: &[u8],
    master_salt: &[u8],
    label: u8,
    len: usize,
) -> Result<Vec<u8>, WireError> {
    let algorithm = match master_key.len() {
        16 => BlockCipherAlgorithm::Aes128,
        32 => BlockCipherAlgorithm::Aes256,
        n => return Err(WireError::Srtp(format!("master key of {n} octets"))),
    };
    if master_salt.len() > 14 {
        return Err(WireError::Srtp("master salt over 14 octets".into()));
    }
    let mut out = Vec::with_capacity(len + 16);
    let mut counter: u16 = 0;
    while out.len() < len {
        let mut block = [0u8; 16];
        block[..master_salt.len()].copy_from_slice(master_salt);
        block[7] ^= label;
        block[14..].copy_from_slice(&counter.to_be_bytes());
        crypto
            .block_encrypt(algorithm, master_key, &mut block)
            .map_err(crypto_err)?;
        out.extend_from_slice(&block);
        counter += 1;
    }
    out.truncate(len);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::srtp::context::Context;

    fn crypto() -> std::sync::Arc<dyn rtc::crypto::RTCCryptoProvider> {
        rtc::crypto::default_provider().expect("crypto provider")
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// RFC 3711 Appendix B.3, the key derivation test vectors.
    #[test]
    fn key_derivation_matches_rfc_3711() {
        let provider = crypto();
        let key = hex("E1F97A0D3E018BE0D64FA32C06DE4139");
        let salt = hex("0EC675AD498AFEEBB6960B3AABE6");
        let d = |label, len| derive(provider.crypto(), &key, &salt, label, len).expect("derive");
        assert_eq!(d(0, 16), hex("C61E7A93744F39EE10734AFE3FF7A087"));
        assert_eq!(d(2, 14), hex("30CBBC08863D8C85D49DB34A9AE1"));
        assert_eq!(d(1, 20), hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4"));
    }

    const PROFILES: [ProtectionProfile; 4] = [
        ProtectionProfile::AeadAes128Gcm,
        ProtectionProfile::AeadAes256Gcm,
        ProtectionProfile::Aes128CmHmacSha1_80,
        ProtectionProfile::Aes128CmHmacSha1_32,
    ];

    fn keys(profile: ProtectionProfile) -> (Vec<u8>, Vec<u8>) {
        let key = (0..profile.key_len() as u8).map(|i| i * 7 + 1).collect();
        let salt = (0..profile.salt_len() as u8).map(|i| i * 13 + 5).collect();
        (key, salt)
    }

    /// Our sender and `rtc-srtp`'s receiver, on the same keys.
    fn pair(profile: ProtectionProfile) -> (SrtpSender, Context) {
        let provider = crypto();
        let (key, salt) = keys(profile);
        let sender = SrtpSender::new(provider.crypto(), profile, &key, &salt).expect("sender");
        let receiver =
            Context::new(&key, &salt, profile, None, None, provider.crypto()).expect("rx");
        (sender, receiver)
    }

    fn header(ssrc: u32, seq: u16) -> rtc::rtp::Header {
        rtc::rtp::Header {
            version: 2,
            payload_type: 111,
            sequence_number: seq,
            timestamp: u32::from(seq) * 960,
            ssrc,
            marker: seq.is_multiple_of(2),
            ..Default::default()
        }
    }

    /// Every profile, two SSRCs, across a sequence number wrap (the ROC
    /// moves on) and with a late retransmission from before it: what
    /// `rtc-srtp` (the client side's implementation) unprotects.
    #[test]
    fn rtc_srtp_unprotects_every_profile_across_a_wrap() {
        for profile in PROFILES {
            let (mut sender, mut receiver) = pair(profile);
            let mut out = BytesMut::new();
            let seqs = [65_533u16, 65_534, 65_535, 0, 1, 65_535, 2, 3];
            for (i, &seq) in seqs.iter().enumerate() {
                for ssrc in [0x1234_5678, 0x0bad_cafe] {
                    let payload: Vec<u8> = (0..100u8).map(|b| b ^ i as u8).collect();
                    sender
                        .protect(&header(ssrc, seq), &payload, &mut out)
                        .expect("protect");
                    let datagram = out.split();
                    assert_eq!(
                        datagram.len(),
                        12 + payload.len() + sender.overhead(),
                        "{profile:?}"
                    );
                    assert_ne!(&datagram[12..112], &payload[..], "{profile:?}: encrypted");
                    let plain = receiver
                        .decrypt_rtp(&datagram)
                        .unwrap_or_else(|e| panic!("{profile:?} seq {seq}: {e}"));
                    assert_eq!(&plain[12..], &payload[..], "{profile:?} seq {seq}");
                    assert_eq!(u16::from_be_bytes([plain[2], plain[3]]), seq);
                }
            }
        }
    }

    #[test]
    fn a_tampered_packet_fails_authentication() {
        for profile in PROFILES {
            let (mut sender, mut receiver) = pair(profile);
            let mut out = BytesMut::new();
            sender
                .protect(&header(1, 10), &[7u8; 50], &mut out)
                .expect("protect");
            out[20] ^= 1;
            assert!(receiver.decrypt_rtp(&out).is_err(), "{profile:?}");
        }
    }

    #[test]
    fn packets_are_appended_without_touching_what_is_there() {
        let provider = crypto();
        let profile = ProtectionProfile::AeadAes128Gcm;
        let (key, salt) = keys(profile);
        let mut sender = SrtpSender::new(provider.crypto(), profile, &key, &salt).expect("sender");
        let mut out = BytesMut::from(&b"kept"[..]);
        sender
            .protect(&header(1, 1), &[1u8; 20], &mut out)
            .expect("protect");
        assert_eq!(&out[..4], b"kept");
        assert_eq!(out.len(), 4 + 12 + 20 + 16);
    }

    /// The transport-wide sequence number written as a one-byte extension:
    /// `rtc-srtp` unprotects it and `rtc`'s parser reads it back.
    #[test]
    fn an_extension_is_added_and_read_back() {
        use rtc::shared::marshal::Unmarshal;
        for profile in PROFILES {
            let (mut sender, mut receiver) = pair(profile);
            let mut out = BytesMut::new();
            let mut h = header(7, 300);
            h.csrc = vec![11, 12];
            let seq = 0xABCDu16.to_be_bytes();
            let ext = OneByteExtension { id: 5, data: &seq };
            sender
                .protect_with(&h, Some(ext), &[9u8; 40], &mut out)
                .expect("protect");
            let plain = receiver.decrypt_rtp(&out).expect("decrypt");
            let mut buf = &plain[..];
            let parsed = rtc::rtp::Packet::unmarshal(&mut buf).expect("parses");
            assert_eq!(parsed.header.csrc, vec![11, 12]);
            assert_eq!(parsed.header.extension_profile, 0xBEDE);
            assert_eq!(
                parsed.header.get_extension(5).as_deref(),
                Some(&seq[..]),
                "{profile:?}"
            );
            assert_eq!(&parsed.payload[..], &[9u8; 40]);
        }
        // Refused, and nothing appended: a bad id, no data, a header that
        // has extensions already.
        let (mut sender, _) = pair(ProtectionProfile::AeadAes128Gcm);
        let mut out = BytesMut::new();
        for (id, data) in [(0u8, &[1u8][..]), (15, &[1]), (3, &[])] {
            let ext = OneByteExtension { id, data };
            assert!(sender
                .protect_with(&header(1, 1), Some(ext), &[1], &mut out)
                .is_err());
        }
        let mut h = header(1, 1);
        h.extension = true;
        let ext = OneByteExtension { id: 1, data: &[1] };
        assert!(sender.protect_with(&h, Some(ext), &[1], &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn wrong_key_lengths_are_refused() {
        let provider = crypto();
        let profile = ProtectionProfile::AeadAes128Gcm;
        assert!(SrtpSender::new(provider.crypto(), profile, &[0; 15], &[0; 12]).is_err());
        assert!(SrtpSender::new(provider.crypto(), profile, &[0; 16], &[0; 14]).is_err());
    }

    #[test]
    fn the_rollover_counter_follows_wraps_and_late_packets() {
        let mut r = Roc {
            roc: 0,
            highest: 65_000,
        };
        assert_eq!(r.for_seq(65_500), 0);
        assert_eq!(r.for_seq(10), 1, "wrapped");
        assert_eq!(r.for_seq(65_400), 0, "late, from before the wrap");
        assert_eq!(r.for_seq(11), 1);
        assert_eq!(r.for_seq(11), 1, "a repeat");
    }
}
