//! One member's side of a room's MLS group (RFC 9420), sans-IO.
//!
//! The signaling server is MLS's delivery service: it relays key
//! packages, commits and welcomes, and takes the first commit for each
//! epoch. It never holds a group secret. A [`Member`] makes and reads
//! those messages (bytes, as `MlsMessage` in TLS encoding):
//!
//! - A joining client publishes a key package ([`Member::key_package`]).
//! - A member adds it ([`Member::add`]): a commit for everyone, and a
//!   welcome for the newcomer. The member applies its own commit only
//!   when the delivery service accepted it ([`Member::commit_accepted`]).
//!   If another member's commit for the same epoch won, it drops its own
//!   ([`Member::commit_rejected`]) and reads the winner's
//!   ([`Member::process`]).
//! - The newcomer joins from the welcome ([`Member::join`]).
//! - When someone leaves, a member commits the removal ([`Member::remove`]).
//!
//! Each commit starts a new epoch. [`Member::base_key`] gives the epoch's
//! SFrame base key (the MLS exporter, RFC 9605 §5.2), and
//! [`Member::safety_code`] gives the code people compare.
//!
//! Identities in credentials are the token identities. A member adds a key
//! package only if its credential names the identity the server announced
//! ([`Member::add`] takes both). Each device makes its own signature key.

mod safety_code;

pub use safety_code::safety_code;

use crate::kid::MLS_EXPORTER_LABEL;
use openmls::prelude::tls_codec::{Deserialize, Serialize};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;

/// The MLS cipher suite: RFC 9420's mandatory one (X25519, AES-128-GCM,
/// SHA-256, Ed25519).
pub const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// What went wrong with an MLS message or operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// The bytes are not the MLS message expected.
    #[error("malformed MLS message: {0}")]
    Malformed(String),
    /// openmls refused the operation or the message (signature, epoch,
    /// membership...).
    #[error("MLS: {0}")]
    Mls(String),
    /// The member is not in a group yet.
    #[error("not in a group")]
    NoGroup,
    /// The member is in a group already.
    #[error("already in a group")]
    AlreadyInGroup,
    /// A key package's credential names someone else than the server said.
    #[error("key package is for {got:?}, not {expected:?}")]
    IdentityMismatch {
        /// The identity the server announced.
        expected: String,
        /// The identity in the credential.
        got: String,
    },
    /// No member of the group has this identity.
    #[error("no member {0:?} in the group")]
    UnknownMember(String),
    /// A commit of this member waits for the delivery service's answer.
    #[error("a commit is pending")]
    CommitPending,
    /// Nothing to do (no key package, no one to remove).
    #[error("empty input")]
    Empty,
}

fn mls(e: impl std::fmt::Display) -> GroupError {
    GroupError::Mls(e.to_string())
}

/// A commit this member made, for the delivery service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The epoch the commit was made in (it starts `epoch + 1`).
    pub epoch: u64,
    /// The commit, for every member.
    pub commit: Vec<u8>,
    /// The welcome, for the members it adds.
    pub welcome: Option<Vec<u8>>,
}

/// What [`Member::process`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Processed {
    /// A commit was applied: the group is in a new epoch.
    NewEpoch(u64),
    /// This member was removed by the commit: the group is gone.
    Removed,
    /// A message that changes nothing here (a proposal, application data).
    Nothing,
}

/// One member (one device) of a room's group.
pub struct Member {
    identity: String,
    provider: OpenMlsRustCrypto,
    signer: SignatureKeyPair,
    credential: CredentialWithKey,
    group: Option<MlsGroup>,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("identity", &self.identity)
            .field("epoch", &self.epoch())
            .finish_non_exhaustive()
    }
}

impl Member {
    /// A member with identity `identity` (the token's) and a new signature
    /// key.
    pub fn new(identity: &str) -> Result<Self, GroupError> {
        let provider = OpenMlsRustCrypto::default();
        let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).map_err(mls)?;
        signer.store(provider.storage()).map_err(mls)?;
        let credential = CredentialWithKey {
            credential: BasicCredential::new(identity.as_bytes().to_vec()).into(),
            signature_key: signer.to_public_vec().into(),
        };
        Ok(Member {
            identity: identity.to_owned(),
            provider,
            signer,
            credential,
            group: None,
        })
    }

    /// Its identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// A new key package, for others to add it with.
    pub fn key_package(&mut self) -> Result<Vec<u8>, GroupError> {
        let bundle = KeyPackage::builder()
            .build(
                CIPHERSUITE,
                &self.provider,
                &self.signer,
                self.credential.clone(),
            )
            .map_err(mls)?;
        MlsMessageOut::from(bundle.key_package().clone())
            .tls_serialize_detached()
            .map_err(mls)
    }

    /// Start the room's group, alone in it (epoch 0).
    pub fn create(&mut self, room: &str) -> Result<(), GroupError> {
        if self.group.is_some() {
            return Err(GroupError::AlreadyInGroup);
        }
        let config = MlsGroupCreateConfig::builder()
            .ciphersuite(CIPHERSUITE)
            .use_ratchet_tree_extension(true)
            .build();
        let group = MlsGroup::new_with_group_id(
            &self.provider,
            &self.signer,
            &config,
            GroupId::from_slice(room.as_bytes()),
            self.credential.clone(),
        )
        .map_err(mls)?;
        self.group = Some(group);
        Ok(())
    }

    fn group(&self) -> Result<&MlsGroup, GroupError> {
        self.group.as_ref().ok_or(GroupError::NoGroup)
    }

    fn ready_to_commit(&self) -> Result<(), GroupError> {
        if self.group()?.pending_commit().is_some() {
            return Err(GroupError::CommitPending);
        }
        Ok(())
    }

    /// Commit adding the members whose key packages are given, each with
    /// the identity the server announced for it. Applied once the
    /// delivery service accepts it ([`Member::commit_accepted`]).
    pub fn add(&mut self, joiners: &[(&str, &[u8])]) -> Result<Commit, GroupError> {
        self.ready_to_commit()?;
        if joiners.is_empty() {
            return Err(GroupError::Empty);
        }
        let mut packages = Vec::with_capacity(joiners.len());
        for &(identity, bytes) in joiners {
            let package = match read(bytes)? {
                MlsMessageBodyIn::KeyPackage(kp) => kp
                    .validate(self.provider.crypto(), ProtocolVersion::Mls10)
                    .map_err(mls)?,
                _ => return Err(GroupError::Malformed("not a key package".into())),
            };
            let named = identity_of(package.leaf_node().credential())?;
            if named != identity {
                return Err(GroupError::IdentityMismatch {
                    expected: identity.to_owned(),
                    got: named,
                });
            }
            packages.push(package);
        }
        self.commit(|provider, signer, group| {
            let (commit, welcome, _info) = group
                .add_members(provider, signer, &packages)
                .map_err(mls)?;
            Ok((commit, Some(welcome)))
        })
    }

    /// Commit removing the members with these identities (those still in
    /// the group; an error if none is).
    pub fn remove(&mut self, identities: &[&str]) -> Result<Commit, GroupError> {
        self.ready_to_commit()?;
        let group = self.group()?;
        let mut leaves = Vec::new();
        for &who in identities {
            let found: Vec<LeafNodeIndex> = group
                .members()
                .filter(|m| identity_of(&m.credential).is_ok_and(|id| id == who))
                .map(|m| m.index)
                .collect();
            leaves.extend(found);
        }
        if leaves.is_empty() {
            return Err(GroupError::UnknownMember(identities.join(", ")));
        }
        self.commit(|provider, signer, group| {
            let (commit, welcome, _info) = group
                .remove_members(provider, signer, &leaves)
                .map_err(mls)?;
            Ok((commit, welcome))
        })
    }

    /// Make a commit with `make` (given the group in its current epoch),
    /// serialized for the delivery service.
    fn commit(
        &mut self,
        make: impl FnOnce(
            &OpenMlsRustCrypto,
            &SignatureKeyPair,
            &mut MlsGroup,
        ) -> Result<(MlsMessageOut, Option<MlsMessageOut>), GroupError>,
    ) -> Result<Commit, GroupError> {
        let Member {
            provider,
            signer,
            group,
            ..
        } = self;
        let group = group.as_mut().ok_or(GroupError::NoGroup)?;
        let epoch = group.epoch().as_u64();
        let (commit, welcome) = make(provider, signer, group)?;
        Ok(Commit {
            epoch,
            commit: commit.tls_serialize_detached().map_err(mls)?,
            welcome: welcome
                .map(|w| w.tls_serialize_detached())
                .transpose()
                .map_err(mls)?,
        })
    }

    /// The delivery service took this member's pending commit: apply it.
    /// Returns the new epoch.
    pub fn commit_accepted(&mut self) -> Result<u64, GroupError> {
        let Member {
            provider, group, ..
        } = self;
        let group = group.as_mut().ok_or(GroupError::NoGroup)?;
        group.merge_pending_commit(provider).map_err(mls)?;
        Ok(group.epoch().as_u64())
    }

    /// The delivery service took another member's commit for this epoch:
    /// drop this member's own.
    pub fn commit_rejected(&mut self) -> Result<(), GroupError> {
        let Member {
            provider, group, ..
        } = self;
        let group = group.as_mut().ok_or(GroupError::NoGroup)?;
        group.clear_pending_commit(provider.storage()).map_err(mls)
    }

    /// Join the group from a welcome addressed to one of this member's key
    /// packages. Returns the epoch joined.
    pub fn join(&mut self, welcome: &[u8]) -> Result<u64, GroupError> {
        if self.group.is_some() {
            return Err(GroupError::AlreadyInGroup);
        }
        let MlsMessageBodyIn::Welcome(welcome) = read(welcome)? else {
            return Err(GroupError::Malformed("not a welcome".into()));
        };
        let config = MlsGroupJoinConfig::builder()
            .use_ratchet_tree_extension(true)
            .build();
        let group = StagedWelcome::new_from_welcome(&self.provider, &config, welcome, None)
            .map_err(mls)?
            .into_group(&self.provider)
            .map_err(mls)?;
        let epoch = group.epoch().as_u64();
        self.group = Some(group);
        Ok(epoch)
    }

    /// Read a message the delivery service relayed (another member's
    /// commit, which it accepted).
    pub fn process(&mut self, message: &[u8]) -> Result<Processed, GroupError> {
        let protocol = match read(message)? {
            MlsMessageBodyIn::PublicMessage(m) => ProtocolMessage::from(m),
            MlsMessageBodyIn::PrivateMessage(m) => ProtocolMessage::from(m),
            _ => return Err(GroupError::Malformed("not a group message".into())),
        };
        let Member {
            provider, group, ..
        } = self;
        let group = group.as_mut().ok_or(GroupError::NoGroup)?;
        let processed = group.process_message(provider, protocol).map_err(mls)?;
        match processed.into_content() {
            ProcessedMessageContent::StagedCommitMessage(staged) => {
                let removed = staged.self_removed();
                group.merge_staged_commit(provider, *staged).map_err(mls)?;
                if removed {
                    self.group = None;
                    return Ok(Processed::Removed);
                }
                Ok(Processed::NewEpoch(group.epoch().as_u64()))
            }
            _ => Ok(Processed::Nothing),
        }
    }

    /// The current epoch, once in a group.
    pub fn epoch(&self) -> Option<u64> {
        self.group.as_ref().map(|g| g.epoch().as_u64())
    }

    /// This member's leaf index, once in a group.
    pub fn leaf_index(&self) -> Option<u32> {
        self.group.as_ref().map(|g| g.own_leaf_index().u32())
    }

    /// The group's members: leaf index and identity.
    pub fn members(&self) -> Vec<(u32, String)> {
        let Some(group) = &self.group else {
            return Vec::new();
        };
        group
            .members()
            .map(|m| {
                let id = identity_of(&m.credential).unwrap_or_default();
                (m.index.u32(), id)
            })
            .collect()
    }

    /// The current epoch's SFrame base key: `MLS-Exporter("SFrame 1.0
    /// Base Key", "", len)` (RFC 9605 §5.2), `len` the SFrame suite's key
    /// length.
    pub fn base_key(&self, len: usize) -> Result<Vec<u8>, GroupError> {
        self.group()?
            .export_secret(self.provider.crypto(), MLS_EXPORTER_LABEL, &[], len)
            .map_err(mls)
    }

    /// The current epoch's safety code ([`safety_code`] of its epoch
    /// authenticator): equal for every member of the same epoch.
    pub fn safety_code(&self) -> Result<String, GroupError> {
        Ok(safety_code(self.group()?.epoch_authenticator().as_slice()))
    }
}

/// Parse an `MlsMessage`, the whole of `bytes`.
fn read(bytes: &[u8]) -> Result<MlsMessageBodyIn, GroupError> {
    MlsMessageIn::tls_deserialize_exact(bytes)
        .map(MlsMessageIn::extract)
        .map_err(|e| GroupError::Malformed(e.to_string()))
}

/// The identity a (basic) credential names.
fn identity_of(credential: &Credential) -> Result<String, GroupError> {
    let basic = BasicCredential::try_from(credential.clone()).map_err(mls)?;
    String::from_utf8(basic.identity().to_vec())
        .map_err(|_| GroupError::Malformed("identity is not UTF-8".into()))
}

#[cfg(test)]
mod tests;
