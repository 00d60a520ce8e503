//! A member's E2EE state in a call, sans-IO: its MLS group ([`Member`])
//! and the SFrame keys of the group's current epoch, kept in step.
//!
//! Each time the epoch changes (a join, a commit of its own the delivery
//! service accepted, another member's commit), the session takes the new
//! epoch's base key from the MLS exporter and:
//!
//! - encrypts from then on under the new epoch's KIDs (one per stream
//!   context: audio, camera, screen; [`KidLayout`] with E = 8, S = 16);
//! - adds keys for every other member's KIDs of the new epoch;
//! - retires the previous epoch's keys: they still decrypt frames in flight
//!   for [`RETIRE_AFTER`] (2 s), then they are deleted.
//!
//! Frames can come before the commit that makes their keys: the SFU's
//! media path is faster than the signaling that relays the commit, and a
//! newcomer gets media before its welcome. A frame under a KID of the
//! epoch after the current one (or any frame, before the first epoch) is
//! held, at most [`HOLD_FRAMES`] for [`HOLD_FOR`], and decrypted when its
//! epoch's keys come ([`Session::take_released`]).
//!
//! A decrypted frame says which member sent it (its leaf index in the KID,
//! and the identity of that leaf): the application checks that it came on
//! a track of that participant, so that the SFU cannot pass one member's
//! frames off as another's.

use crate::group::{Commit, GroupError, Member, Processed};
use crate::kid::KidLayout;
use crate::sframe::{CipherSuite, Header, ReceiverStats, SframeReceiver, SframeSender};
use crate::E2eeError;
use std::time::Duration;
use web_time::Instant;
use zeroize::Zeroizing;

/// How long the previous epoch's keys still decrypt after a new epoch.
pub const RETIRE_AFTER: Duration = Duration::from_secs(2);
/// How long a frame waits for the commit of its epoch.
pub const HOLD_FOR: Duration = Duration::from_secs(1);
/// Most frames held waiting for their epoch (a second of audio from a
/// few senders); the oldest go first.
pub const HOLD_FRAMES: usize = 128;
/// The SFrame cipher suite of huddle calls.
pub const SUITE: CipherSuite = CipherSuite::AesGcm128Sha256;
/// Low bits of the epoch in a KID (`E`).
pub const EPOCH_BITS: u8 = 8;
/// Bits of the sender's leaf index in a KID (`S`): groups of up to 65,536.
pub const INDEX_BITS: u8 = 16;

/// Which of a member's streams a frame belongs to: its KID's context, so
/// that two streams of one sender never share a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// The microphone.
    Audio,
    /// The camera.
    Camera,
    /// A shared screen or window.
    Screen,
}

impl Stream {
    /// Every stream a member may send.
    pub const ALL: [Stream; 3] = [Stream::Audio, Stream::Camera, Stream::Screen];

    /// Its KID context.
    pub fn context(self) -> u64 {
        match self {
            Stream::Audio => 0,
            Stream::Camera => 1,
            Stream::Screen => 2,
        }
    }
}

/// What went wrong in a session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The MLS side.
    #[error(transparent)]
    Group(#[from] GroupError),
    /// The SFrame side.
    #[error(transparent)]
    Frame(#[from] E2eeError),
    /// The frame's epoch has not begun here yet: it is held, and comes out
    /// of [`Session::take_released`] once it has (or goes after
    /// [`HOLD_FOR`]).
    #[error("held until its epoch begins")]
    Held,
}

/// A frame waiting for its epoch's keys.
#[derive(Debug)]
struct HeldFrame {
    at: Instant,
    metadata: Vec<u8>,
    sframe: Vec<u8>,
}

/// A decrypted frame's sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    /// Its leaf index in the group.
    pub leaf: u32,
    /// Its identity (the token's), if it is a member of the current epoch.
    pub identity: Option<String>,
    /// The stream the frame belongs to (its KID's context), if known.
    pub stream: Option<Stream>,
    /// The frame's SFrame header.
    pub header: Header,
}

/// One member's E2EE state in a call.
#[derive(Debug)]
pub struct Session {
    member: Member,
    layout: KidLayout,
    /// The current epoch and its base key, once in a group.
    epoch: Option<(u64, Zeroizing<Vec<u8>>)>,
    senders: Vec<(Stream, SframeSender)>,
    receiver: SframeReceiver,
    /// The KIDs of the current epoch's keys (the other members').
    current_kids: Vec<u64>,
    members: Vec<(u32, String)>,
    held: std::collections::VecDeque<HeldFrame>,
    released: Vec<(Sender, Vec<u8>)>,
}

impl Session {
    /// A session for `member` (not in a group yet, or in one: the keys of
    /// its current epoch are set up).
    pub fn new(member: Member, now: Instant) -> Result<Self, SessionError> {
        let layout = KidLayout::new(EPOCH_BITS, INDEX_BITS)?;
        let mut session = Session {
            member,
            layout,
            epoch: None,
            senders: Vec::new(),
            receiver: SframeReceiver::new(SUITE),
            current_kids: Vec::new(),
            members: Vec::new(),
            held: std::collections::VecDeque::new(),
            released: Vec::new(),
        };
        session.rekey(now)?;
        Ok(session)
    }

    /// The MLS member (its identity, epoch, members, safety code).
    pub fn member(&self) -> &Member {
        &self.member
    }

    /// A key package to publish (see [`Member::key_package`]).
    pub fn key_package(&mut self) -> Result<Vec<u8>, SessionError> {
        Ok(self.member.key_package()?)
    }

    /// Start the room's group alone (see [`Member::create`]).
    pub fn create(&mut self, room: &str, now: Instant) -> Result<(), SessionError> {
        self.member.create(room)?;
        self.rekey(now)
    }

    /// Commit adding members (see [`Member::add`]).
    pub fn add(&mut self, joiners: &[(&str, &[u8])]) -> Result<Commit, SessionError> {
        Ok(self.member.add(joiners)?)
    }

    /// Commit removing members (see [`Member::remove`]).
    pub fn remove(&mut self, identities: &[&str]) -> Result<Commit, SessionError> {
        Ok(self.member.remove(identities)?)
    }

    /// The delivery service accepted this member's commit: the new epoch's
    /// keys are in use from now on.
    pub fn commit_accepted(&mut self, now: Instant) -> Result<u64, SessionError> {
        let epoch = self.member.commit_accepted()?;
        self.rekey(now)?;
        Ok(epoch)
    }

    /// The delivery service took another commit (see
    /// [`Member::commit_rejected`]).
    pub fn commit_rejected(&mut self) -> Result<(), SessionError> {
        Ok(self.member.commit_rejected()?)
    }

    /// Join from a welcome; the epoch's keys are in use from now on.
    pub fn join(&mut self, welcome: &[u8], now: Instant) -> Result<u64, SessionError> {
        let epoch = self.member.join(welcome)?;
        self.rekey(now)?;
        Ok(epoch)
    }

    /// Read a relayed group message; on a new epoch, its keys are in use
    /// from now on. Removed: nothing more is encrypted, and the keys held
    /// go at once.
    pub fn process(&mut self, message: &[u8], now: Instant) -> Result<Processed, SessionError> {
        let processed = self.member.process(message)?;
        match processed {
            Processed::NewEpoch(_) => self.rekey(now)?,
            Processed::Removed => {
                self.epoch = None;
                self.senders.clear();
                self.current_kids.clear();
                self.members.clear();
                self.held.clear();
                self.released.clear();
                self.receiver = SframeReceiver::new(SUITE);
            }
            Processed::Nothing => {}
        }
        Ok(processed)
    }

    /// Set up the keys of the member's current epoch, retiring the
    /// previous epoch's.
    fn rekey(&mut self, now: Instant) -> Result<(), SessionError> {
        let (Some(epoch), Some(own)) = (self.member.epoch(), self.member.leaf_index()) else {
            return Ok(());
        };
        if self.epoch.as_ref().is_some_and(|(e, _)| *e == epoch) {
            return Ok(());
        }
        let base = Zeroizing::new(self.member.base_key(SUITE.key_len())?);
        for kid in self.current_kids.drain(..) {
            self.receiver.retire_key(kid, now + RETIRE_AFTER);
        }
        self.members = self.member.members();
        for &(leaf, _) in self.members.iter().filter(|(leaf, _)| *leaf != own) {
            for stream in Stream::ALL {
                let kid = self.layout.kid(stream.context(), u64::from(leaf), epoch)?;
                self.receiver.add_key(kid, &base)?;
                self.current_kids.push(kid);
            }
        }
        self.senders.clear();
        self.epoch = Some((epoch, base));
        // Frames that waited for this epoch.
        let held = std::mem::take(&mut self.held);
        for f in held {
            if now.duration_since(f.at) >= HOLD_FOR {
                continue;
            }
            let mut pt = Vec::new();
            if let Ok(sender) = self.open(now, &f.metadata, &f.sframe, &mut pt) {
                self.released.push((sender, pt));
            }
        }
        Ok(())
    }

    /// Frames held for an epoch that has now begun, decrypted, in the
    /// order they came. Call after each group message that may start one.
    pub fn take_released(&mut self) -> Vec<(Sender, Vec<u8>)> {
        std::mem::take(&mut self.released)
    }

    /// Whether a frame under `kid` belongs to an epoch that has not begun
    /// here yet (the next one, or any before the first).
    fn ahead(&self, kid: u64) -> bool {
        if self.receiver.has_key(kid) {
            return false;
        }
        match &self.epoch {
            None => true,
            Some((epoch, _)) => {
                self.layout.parts(kid).epoch_low == (epoch + 1) % (1u64 << EPOCH_BITS)
            }
        }
    }

    /// Whether the frame `sframe` is under a key of an epoch that has not
    /// begun here yet (the next one, or any before the first): what
    /// [`Session::decrypt`] would hold. A caller that keeps such frames
    /// itself (to hand them on in order) asks first.
    pub fn is_ahead(&self, sframe: &[u8]) -> bool {
        Header::parse(sframe).is_ok_and(|(h, _)| self.ahead(h.kid))
    }

    /// Whether the frame `sframe` would be new: not a copy (RED, a resend)
    /// of a frame already taken (see [`SframeReceiver::is_fresh`]). One
    /// whose header does not parse is no copy: [`Session::decrypt`] says
    /// what is wrong with it.
    pub fn is_fresh(&self, sframe: &[u8]) -> bool {
        Header::parse(sframe).map_or(true, |(h, _)| self.receiver.is_fresh(&h))
    }

    /// Append the SFrame ciphertext of `frame` of `stream` to `out` under
    /// the current epoch's key (see [`SframeSender::encrypt`]).
    pub fn encrypt(
        &mut self,
        stream: Stream,
        metadata: &[u8],
        frame: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Header, SessionError> {
        let Some((epoch, base)) = &self.epoch else {
            return Err(GroupError::NoGroup.into());
        };
        let i = match self.senders.iter().position(|(s, _)| *s == stream) {
            Some(i) => i,
            None => {
                let own = self.member.leaf_index().ok_or(GroupError::NoGroup)?;
                let kid = self.layout.kid(stream.context(), u64::from(own), *epoch)?;
                self.senders
                    .push((stream, SframeSender::new(SUITE, kid, base)?));
                self.senders.len() - 1
            }
        };
        Ok(self.senders[i].1.encrypt(metadata, frame, out)?)
    }

    /// Append the plaintext of the SFrame ciphertext `sframe` to `out` and
    /// say who sent it (see [`SframeReceiver::decrypt`]).
    pub fn decrypt(
        &mut self,
        now: Instant,
        metadata: &[u8],
        sframe: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Sender, SessionError> {
        if let Ok((header, _)) = Header::parse(sframe) {
            if self.ahead(header.kid) {
                self.held.retain(|f| now.duration_since(f.at) < HOLD_FOR);
                if self.held.len() >= HOLD_FRAMES {
                    self.held.pop_front();
                }
                self.held.push_back(HeldFrame {
                    at: now,
                    metadata: metadata.to_vec(),
                    sframe: sframe.to_vec(),
                });
                return Err(SessionError::Held);
            }
        }
        self.open(now, metadata, sframe, out)
    }

    fn open(
        &mut self,
        now: Instant,
        metadata: &[u8],
        sframe: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Sender, SessionError> {
        let header = self.receiver.decrypt(now, metadata, sframe, out)?;
        let parts = self.layout.parts(header.kid);
        let leaf = u32::try_from(parts.index).unwrap_or(u32::MAX);
        Ok(Sender {
            leaf,
            identity: self
                .members
                .iter()
                .find(|(l, _)| *l == leaf)
                .map(|(_, id)| id.clone()),
            stream: Stream::ALL
                .into_iter()
                .find(|s| s.context() == parts.context),
            header,
        })
    }

    /// What the receiver did so far (frames dropped, by reason).
    pub fn stats(&self) -> ReceiverStats {
        self.receiver.stats()
    }

    /// The current epoch's safety code.
    pub fn safety_code(&self) -> Result<String, SessionError> {
        Ok(self.member.safety_code()?)
    }
}

#[cfg(test)]
mod tests;
