//! A sender's and a receiver's SFrame state (RFC 9605 §4.4).
//!
//! A sender encrypts under one KID with a counter that never repeats. A
//! receiver holds the keys of every KID it may get frames under, takes
//! each (KID, counter) once, and forgets a retired key at the time it was
//! given (the previous epoch's keys, kept a moment for frames in flight).

use crate::sframe::aead::{open, seal};
use crate::sframe::header::Header;
use crate::sframe::keys::KeyMaterial;
use crate::sframe::replay::ReplayWindow;
use crate::sframe::suite::CipherSuite;
use crate::E2eeError;
use web_time::Instant;

/// Encrypts one sender's frames under one KID.
#[derive(Debug)]
pub struct SframeSender {
    suite: CipherSuite,
    kid: u64,
    keys: KeyMaterial,
    /// The next counter; `None` once every value was used.
    next_ctr: Option<u64>,
    /// Header and metadata of the frame being encrypted.
    aad: Vec<u8>,
}

impl SframeSender {
    /// A sender for `kid` with the key and salt derived from `base_key`,
    /// counting from 0.
    pub fn new(suite: CipherSuite, kid: u64, base_key: &[u8]) -> Result<Self, E2eeError> {
        Ok(SframeSender {
            suite,
            kid,
            keys: KeyMaterial::derive(suite, kid, base_key)?,
            next_ctr: Some(0),
            aad: Vec::new(),
        })
    }

    /// The KID it encrypts under.
    pub fn kid(&self) -> u64 {
        self.kid
    }

    /// The cipher suite.
    pub fn suite(&self) -> CipherSuite {
        self.suite
    }

    /// Go on from counter `ctr` (a counter must never be used twice with
    /// the same key: only for a key whose earlier counters are known).
    pub fn set_counter(&mut self, ctr: u64) {
        self.next_ctr = Some(ctr);
    }

    /// Append the SFrame ciphertext of `frame` (header, then the AEAD's
    /// output) to `out`, authenticating `metadata` with it (the bytes that
    /// travel in clear beside the frame; the receiver must pass the same).
    /// Returns the header used.
    pub fn encrypt(
        &mut self,
        metadata: &[u8],
        frame: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Header, E2eeError> {
        let ctr = self.next_ctr.ok_or(E2eeError::CounterExhausted(self.kid))?;
        let header = Header { kid: self.kid, ctr };
        self.aad.clear();
        header.write(&mut self.aad);
        self.aad.extend_from_slice(metadata);
        let start = out.len();
        out.extend_from_slice(&self.aad[..header.encoded_len()]);
        let nonce = self.keys.nonce(ctr);
        if let Err(e) = seal(self.suite, self.keys.key(), &nonce, &self.aad, frame, out) {
            out.truncate(start);
            return Err(e);
        }
        self.next_ctr = ctr.checked_add(1);
        Ok(header)
    }
}

/// What a receiver did with the frames it was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    /// Frames decrypted.
    pub decrypted: u64,
    /// Frames whose header could not be read.
    pub malformed: u64,
    /// Frames under a KID with no key (never given, removed, expired).
    pub unknown_kid: u64,
    /// Frames whose tag did not match (changed, or made with another key).
    pub authentication_failed: u64,
    /// Frames whose (KID, counter) was taken already or is too old.
    pub replayed: u64,
}

/// One KID a receiver can decrypt.
#[derive(Debug)]
struct ReceiverKey {
    kid: u64,
    keys: KeyMaterial,
    replay: ReplayWindow,
    /// Deleted at this time (a previous epoch's key).
    retire_at: Option<Instant>,
}

/// Decrypts frames under the KIDs it has keys for.
#[derive(Debug)]
pub struct SframeReceiver {
    suite: CipherSuite,
    keys: Vec<ReceiverKey>,
    /// The earliest `retire_at` among the keys (or earlier, for a key since
    /// removed): before it, [`SframeReceiver::expire`] has nothing to do,
    /// and every decryption calls it.
    next_retire: Option<Instant>,
    stats: ReceiverStats,
    aad: Vec<u8>,
}

impl SframeReceiver {
    /// A receiver with no keys yet.
    pub fn new(suite: CipherSuite) -> Self {
        SframeReceiver {
            suite,
            keys: Vec::new(),
            next_retire: None,
            stats: ReceiverStats::default(),
            aad: Vec::new(),
        }
    }

    /// Decrypt frames under `kid` with the key and salt derived from
    /// `base_key` (replacing any key it had for `kid`, with a fresh replay
    /// window).
    pub fn add_key(&mut self, kid: u64, base_key: &[u8]) -> Result<(), E2eeError> {
        let keys = KeyMaterial::derive(self.suite, kid, base_key)?;
        self.keys.retain(|k| k.kid != kid);
        self.keys.push(ReceiverKey {
            kid,
            keys,
            replay: ReplayWindow::default(),
            retire_at: None,
        });
        Ok(())
    }

    /// Keep the key of `kid` only until `at` (for frames still in flight
    /// after a new epoch). False when there is no such key.
    pub fn retire_key(&mut self, kid: u64, at: Instant) -> bool {
        match self.keys.iter_mut().find(|k| k.kid == kid) {
            Some(k) => {
                k.retire_at = Some(k.retire_at.map_or(at, |t| t.min(at)));
                self.next_retire = Some(self.next_retire.map_or(at, |t| t.min(at)));
                true
            }
            None => false,
        }
    }

    /// Delete the key of `kid` now. False when there was none.
    pub fn remove_key(&mut self, kid: u64) -> bool {
        let before = self.keys.len();
        self.keys.retain(|k| k.kid != kid);
        self.keys.len() != before
    }

    /// Delete every retired key whose time has come; how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        if self.next_retire.is_none_or(|t| now < t) {
            return 0;
        }
        let before = self.keys.len();
        self.keys.retain(|k| k.retire_at.is_none_or(|t| now < t));
        self.next_retire = self.keys.iter().filter_map(|k| k.retire_at).min();
        before - self.keys.len()
    }

    /// Whether it holds a key for `kid` (retired ones included, until they
    /// are deleted).
    pub fn has_key(&self, kid: u64) -> bool {
        self.keys.iter().any(|k| k.kid == kid)
    }

    /// Whether a frame with `header` would be new to it: no key for its
    /// KID (decrypting will say so), or a counter the replay window has
    /// not taken. A RED copy of a frame already taken is not: the caller
    /// can skip it without decrypting, and without it counting as a
    /// replay.
    pub fn is_fresh(&self, header: &Header) -> bool {
        self.keys
            .iter()
            .find(|k| k.kid == header.kid)
            .is_none_or(|k| k.replay.fresh(header.ctr))
    }

    /// The KIDs it holds keys for now.
    pub fn kids(&self) -> impl Iterator<Item = u64> + '_ {
        self.keys.iter().map(|k| k.kid)
    }

    /// What it did so far.
    pub fn stats(&self) -> ReceiverStats {
        self.stats
    }

    /// Append the plaintext of the SFrame ciphertext `sframe` to `out`,
    /// checking `metadata` (as the sender passed it) with it. Retired keys
    /// past their time are deleted first. A frame that fails is counted
    /// and nothing is written.
    pub fn decrypt(
        &mut self,
        now: Instant,
        metadata: &[u8],
        sframe: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Header, E2eeError> {
        self.expire(now);
        let result = self.try_decrypt(metadata, sframe, out);
        let s = &mut self.stats;
        match &result {
            Ok(_) => s.decrypted += 1,
            Err(E2eeError::MalformedHeader) => s.malformed += 1,
            Err(E2eeError::UnknownKid(_)) => s.unknown_kid += 1,
            Err(E2eeError::Replay { .. }) => s.replayed += 1,
            Err(_) => s.authentication_failed += 1,
        }
        result
    }

    fn try_decrypt(
        &mut self,
        metadata: &[u8],
        sframe: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Header, E2eeError> {
        let (header, len) = Header::parse(sframe)?;
        let key = self
            .keys
            .iter_mut()
            .find(|k| k.kid == header.kid)
            .ok_or(E2eeError::UnknownKid(header.kid))?;
        if !key.replay.fresh(header.ctr) {
            return Err(E2eeError::Replay {
                kid: header.kid,
                ctr: header.ctr,
            });
        }
        self.aad.clear();
        self.aad.extend_from_slice(&sframe[..len]);
        self.aad.extend_from_slice(metadata);
        let nonce = key.keys.nonce(header.ctr);
        open(
            self.suite,
            key.keys.key(),
            &nonce,
            &self.aad,
            &sframe[len..],
            out,
        )?;
        key.replay.mark(header.ctr);
        Ok(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const SUITE: CipherSuite = CipherSuite::AesGcm128Sha256;

    fn pair(kid: u64) -> (SframeSender, SframeReceiver) {
        let base = [kid as u8 + 1; 16];
        let tx = SframeSender::new(SUITE, kid, &base).expect("sender");
        let mut rx = SframeReceiver::new(SUITE);
        rx.add_key(kid, &base).expect("key");
        (tx, rx)
    }

    #[test]
    fn frames_go_through_once_with_their_metadata() {
        let (mut tx, mut rx) = pair(3);
        let now = Instant::now();
        let mut ct = Vec::new();
        let h = tx
            .encrypt(b"rtp", b"opus frame", &mut ct)
            .expect("encrypts");
        assert_eq!(h, Header { kid: 3, ctr: 0 });
        let mut pt = Vec::new();
        assert_eq!(rx.decrypt(now, b"rtp", &ct, &mut pt), Ok(h));
        assert_eq!(pt, b"opus frame");
        pt.clear();
        assert_eq!(
            rx.decrypt(now, b"rtp", &ct, &mut pt),
            Err(E2eeError::Replay { kid: 3, ctr: 0 }),
            "the same frame again"
        );
        let mut second = Vec::new();
        tx.encrypt(b"rtp", b"next", &mut second).expect("encrypts");
        assert_eq!(
            rx.decrypt(now, b"RTP", &second, &mut pt),
            Err(E2eeError::Authentication),
            "changed metadata"
        );
        assert!(pt.is_empty());
        assert_eq!(
            rx.decrypt(now, b"rtp", &second, &mut pt).map(|h| h.ctr),
            Ok(1)
        );
        assert_eq!(
            rx.decrypt(now, b"", &[], &mut pt),
            Err(E2eeError::MalformedHeader)
        );
        let (mut other, _) = pair(9);
        let mut foreign = Vec::new();
        other.encrypt(b"", b"x", &mut foreign).expect("encrypts");
        assert_eq!(
            rx.decrypt(now, b"", &foreign, &mut pt),
            Err(E2eeError::UnknownKid(9))
        );
        assert_eq!(
            rx.stats(),
            ReceiverStats {
                decrypted: 2,
                malformed: 1,
                unknown_kid: 1,
                authentication_failed: 1,
                replayed: 1,
            }
        );
    }

    #[test]
    fn a_retired_key_works_until_its_time_then_is_gone() {
        let (mut tx, mut rx) = pair(1);
        let t0 = Instant::now();
        let mut ct = Vec::new();
        tx.encrypt(b"", b"a", &mut ct).expect("encrypts");
        let mut late = Vec::new();
        tx.encrypt(b"", b"b", &mut late).expect("encrypts");
        assert!(rx.retire_key(1, t0 + Duration::from_secs(2)));
        assert!(!rx.retire_key(7, t0), "no such key");
        let mut pt = Vec::new();
        assert!(rx
            .decrypt(t0 + Duration::from_millis(1999), b"", &ct, &mut pt)
            .is_ok());
        assert_eq!(
            rx.decrypt(t0 + Duration::from_secs(2), b"", &late, &mut pt),
            Err(E2eeError::UnknownKid(1))
        );
        assert_eq!(rx.kids().count(), 0, "deleted, not kept");
    }

    #[test]
    fn an_exhausted_counter_refuses_to_encrypt() {
        let (mut tx, _) = pair(2);
        tx.set_counter(u64::MAX);
        let mut out = Vec::new();
        assert!(tx.encrypt(b"", b"last", &mut out).is_ok());
        let len = out.len();
        assert_eq!(
            tx.encrypt(b"", b"one more", &mut out),
            Err(E2eeError::CounterExhausted(2))
        );
        assert_eq!(out.len(), len);
    }

    #[test]
    fn a_copy_of_a_frame_taken_is_not_fresh() {
        let (mut tx, mut rx) = pair(5);
        let mut ct = Vec::new();
        let h = tx.encrypt(b"", b"a", &mut ct).expect("encrypts");
        assert!(rx.is_fresh(&h));
        rx.decrypt(Instant::now(), b"", &ct, &mut Vec::new())
            .expect("decrypts");
        assert!(!rx.is_fresh(&h), "taken");
        assert!(rx.is_fresh(&Header { kid: 5, ctr: 1 }));
        assert!(
            rx.is_fresh(&Header { kid: 99, ctr: 0 }),
            "no key: not for this check"
        );
        assert!(rx.has_key(5) && !rx.has_key(99));
        assert_eq!(rx.stats().replayed, 0);
    }

    #[test]
    fn a_removed_key_decrypts_nothing() {
        let (mut tx, mut rx) = pair(4);
        let mut ct = Vec::new();
        tx.encrypt(b"", b"a", &mut ct).expect("encrypts");
        assert!(rx.remove_key(4));
        assert!(!rx.remove_key(4));
        let mut pt = Vec::new();
        assert_eq!(
            rx.decrypt(Instant::now(), b"", &ct, &mut pt),
            Err(E2eeError::UnknownKid(4))
        );
    }
}
