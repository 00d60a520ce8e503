//! A load participant's end-to-end encryption (`--e2ee`): it is a member
//! of its room's MLS group through the signaling, as the calling crate and
//! the web client are (`huddle_e2ee::client::GroupClient`), and every
//! payload it sends is SFrame under its key of the current epoch; every
//! payload it receives is decrypted before its probe is read.
//!
//! The unit is the packet, not the frame: the first [`PROBE_OFFSET`]
//! bytes (the Opus TOC byte, the VP8 descriptor and the byte the SFU reads
//! a keyframe from) stay in clear, authenticated as the frame's metadata,
//! and the rest (the probe and the filler) is the ciphertext. What the SFU
//! gets is what it gets from real E2EE clients: bytes it cannot read, an
//! SFrame header and tag longer than the plaintext, and the same
//! descriptors in clear.

use crate::error::BenchError;
use crate::probe::PROBE_OFFSET;
use bytes::Bytes;
use huddle_e2ee::client::GroupClient;
use huddle_e2ee::session::Stream;
use huddle_proto::{ClientMessage, ServerMessage, TrackKind};
use std::time::Instant;

/// One participant's member state and its scratch buffer.
pub struct E2eeMember {
    client: GroupClient,
    /// The key package, sent once the server says `joined`.
    key_package: Option<ClientMessage>,
    /// Where [`E2eeMember::open`] writes.
    plain: Vec<u8>,
    /// Payloads that did not decrypt.
    failed: u64,
}

fn e2ee_err(e: impl std::fmt::Display) -> BenchError {
    BenchError::Signaling(format!("e2ee: {e}"))
}

impl E2eeMember {
    /// The member `identity` of `room`'s group, not joined yet.
    pub fn new(identity: &str, room: &str) -> Result<Self, BenchError> {
        let (client, key_package) =
            GroupClient::new(identity, room, Instant::now()).map_err(e2ee_err)?;
        Ok(Self {
            client,
            key_package: Some(key_package),
            plain: Vec::new(),
            failed: 0,
        })
    }

    /// The key package, once (to send after `joined`).
    pub fn take_key_package(&mut self) -> Option<ClientMessage> {
        self.key_package.take()
    }

    /// Handle a server message (those not about E2EE change nothing): what
    /// to send back.
    pub fn on_message(&mut self, msg: &ServerMessage) -> Result<Vec<ClientMessage>, BenchError> {
        let handled = self.client.handle(msg, Instant::now()).map_err(e2ee_err)?;
        if handled.removed {
            return Err(e2ee_err("removed from the group"));
        }
        // Frames that came ahead of their epoch were counted as failed
        // when held; what the new epoch opens of them is let go (media
        // during the ramp-up, never in the window).
        drop(self.client.session().take_released());
        Ok(handled.send)
    }

    /// `payload` sealed for the group; `None` before the first epoch.
    pub fn seal(&mut self, kind: TrackKind, payload: &[u8]) -> Option<Bytes> {
        let stream = match kind {
            TrackKind::Audio => Stream::Audio,
            TrackKind::Video => Stream::Camera,
        };
        let (clear, secret) = payload.split_at(PROBE_OFFSET.min(payload.len()));
        let mut out = Vec::with_capacity(payload.len() + 32);
        out.extend_from_slice(clear);
        self.client
            .session()
            .encrypt(stream, clear, secret, &mut out)
            .ok()?;
        Some(Bytes::from(out))
    }

    /// The plaintext of a received `payload`, if it decrypts.
    pub fn open(&mut self, now: Instant, payload: &[u8]) -> Option<&[u8]> {
        if payload.len() < PROBE_OFFSET {
            self.failed += 1;
            return None;
        }
        let (clear, sframe) = payload.split_at(PROBE_OFFSET);
        self.plain.clear();
        self.plain.extend_from_slice(clear);
        if self
            .client
            .session()
            .decrypt(now, clear, sframe, &mut self.plain)
            .is_err()
        {
            self.failed += 1;
            return None;
        }
        Some(&self.plain)
    }

    /// Payloads that did not decrypt so far (during the ramp-up, frames of
    /// an epoch a member has not reached yet, or left).
    pub fn failed(&self) -> u64 {
        self.failed
    }
}

/// A received `payload` as its probe is read: opened by `member` in an
/// E2EE room (`None` if it does not decrypt), as it came otherwise.
pub fn readable<'a>(
    member: Option<&'a mut E2eeMember>,
    now: Instant,
    payload: &'a [u8],
) -> Option<&'a [u8]> {
    match member {
        Some(member) => member.open(now, payload),
        None => Some(payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use huddle_proto::E2eeJoiner;

    /// Alice and bob in one group, messages passed by hand.
    fn pair() -> (E2eeMember, E2eeMember) {
        let mut alice = E2eeMember::new("alice", "r").expect("alice");
        let mut bob = E2eeMember::new("bob", "r").expect("bob");
        alice
            .on_message(&ServerMessage::E2eeCreate)
            .expect("create");
        let Some(ClientMessage::E2eeKeyPackage { key_package }) = bob.take_key_package() else {
            panic!("no key package");
        };
        let add = ServerMessage::E2eeAdd {
            joiners: vec![E2eeJoiner {
                participant_id: "PA_bob".into(),
                identity: "bob".into(),
                key_package,
            }],
        };
        let sent = alice.on_message(&add).expect("add");
        let [ClientMessage::E2eeCommit { welcome, .. }] = sent.as_slice() else {
            panic!("no commit: {sent:?}");
        };
        let welcome = welcome.clone().expect("a welcome");
        alice
            .on_message(&ServerMessage::E2eeCommitResult {
                epoch: 0,
                accepted: true,
            })
            .expect("accepted");
        bob.on_message(&ServerMessage::E2eeWelcome { welcome })
            .expect("welcome");
        (alice, bob)
    }

    #[test]
    fn a_payload_goes_through_and_keeps_its_clear_head() {
        let (mut alice, mut bob) = pair();
        let payload: Vec<u8> = (0..100u8).collect();
        let sealed = alice.seal(TrackKind::Video, &payload).expect("sealed");
        assert_eq!(sealed[..PROBE_OFFSET], payload[..PROBE_OFFSET]);
        assert!(sealed.len() > payload.len(), "header and tag added");
        assert!(!sealed.windows(20).any(|w| w == &payload[10..30]));
        let opened = bob.open(Instant::now(), &sealed).expect("opens");
        assert_eq!(opened, payload.as_slice());
        // Changed in its clear head: dropped and counted.
        let mut changed = sealed.to_vec();
        changed[0] ^= 1;
        assert!(bob.open(Instant::now(), &changed).is_none());
        assert_eq!(bob.failed(), 1);
    }

    #[test]
    fn nothing_is_sealed_before_the_group() {
        let mut alone = E2eeMember::new("carol", "r").expect("carol");
        assert!(alone.seal(TrackKind::Audio, &[0; 40]).is_none());
    }
}
