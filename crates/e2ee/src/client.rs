//! A client's side of the E2EE signaling (docs/signaling.md, "End-to-end
//! encryption"), sans-IO: the server's `e2ee_*` messages in, the client's
//! answers out, the [`Session`] kept in step.
//!
//! The server is the group's delivery service. It tells one member to
//! create the group, asks a member to add those who join and remove those
//! who leave, orders the commits (the first for each epoch is taken), and
//! relays commits and welcomes. A [`GroupClient`] does what it is told:
//!
//! - after `joined`, it publishes a key package ([`GroupClient::new`]);
//! - `e2ee_create`: it starts the group alone (epoch 0);
//! - `e2ee_add` / `e2ee_remove`: it commits and sends `e2ee_commit`;
//! - `e2ee_commit_result`: it applies its commit, or drops it;
//! - `e2ee_commit` (another member's) and `e2ee_welcome`: it applies them.
//!
//! Whatever the outcome, the caller learns of a new epoch from
//! [`Handled::epoch`], to show the new safety code.

use crate::group::{Commit, GroupError, Member, Processed};
use crate::session::{Session, SessionError};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use huddle_proto::{ClientMessage, ServerMessage};
use web_time::Instant;

/// The group's state after an epoch change, for the app to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochInfo {
    /// The MLS epoch.
    pub epoch: u64,
    /// The epoch's safety code: equal at every member of the same epoch.
    pub safety_code: String,
    /// The identities of the group's members, this one included.
    pub members: Vec<String>,
}

/// What handling one server message did.
#[derive(Debug, Default)]
pub struct Handled {
    /// Messages to send to the server, in order.
    pub send: Vec<ClientMessage>,
    /// The group moved to a new epoch (its keys are in use now).
    pub epoch: Option<EpochInfo>,
    /// This member was removed from the group: nothing more is encrypted.
    pub removed: bool,
}

/// What went wrong with a server message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// A field that should be base64 is not.
    #[error("{field} is not base64: {reason}")]
    Base64 {
        /// Which field.
        field: &'static str,
        /// The decoder's complaint.
        reason: String,
    },
    /// MLS or SFrame refused it.
    #[error(transparent)]
    Session(#[from] SessionError),
}

/// One client's E2EE state in a room: its [`Session`] and the signaling
/// around it.
#[derive(Debug)]
pub struct GroupClient {
    room: String,
    session: Session,
}

impl GroupClient {
    /// A client for `identity` (the token's) in `room`, and the
    /// `e2ee_key_package` message to send first.
    pub fn new(
        identity: &str,
        room: &str,
        now: Instant,
    ) -> Result<(Self, ClientMessage), ClientError> {
        let mut session = Session::new(Member::new(identity).map_err(SessionError::from)?, now)?;
        let key_package = B64.encode(session.key_package()?);
        let client = GroupClient {
            room: room.to_owned(),
            session,
        };
        Ok((client, ClientMessage::E2eeKeyPackage { key_package }))
    }

    /// The session (to encrypt and decrypt frames).
    pub fn session(&mut self) -> &mut Session {
        &mut self.session
    }

    /// The session, read-only.
    pub fn session_ref(&self) -> &Session {
        &self.session
    }

    /// The current epoch, if in a group.
    pub fn epoch_info(&self) -> Option<EpochInfo> {
        let member = self.session.member();
        let epoch = member.epoch()?;
        let safety_code = member.safety_code().ok()?;
        Some(EpochInfo {
            epoch,
            safety_code,
            members: member.members().into_iter().map(|(_, id)| id).collect(),
        })
    }

    /// Handle `msg` from the server at `now`. Messages that are not about
    /// E2EE are ignored. On an error nothing changed (a commit in flight
    /// stays in flight).
    pub fn handle(&mut self, msg: &ServerMessage, now: Instant) -> Result<Handled, ClientError> {
        let before = self.session.member().epoch();
        let mut out = Handled::default();
        match msg {
            ServerMessage::E2eeCreate => self.session.create(&self.room, now)?,
            ServerMessage::E2eeAdd { joiners } => {
                let packages = joiners
                    .iter()
                    .map(|j| Ok((j.identity.as_str(), unb64("key_package", &j.key_package)?)))
                    .collect::<Result<Vec<_>, ClientError>>()?;
                let refs: Vec<(&str, &[u8])> =
                    packages.iter().map(|(i, k)| (*i, k.as_slice())).collect();
                // A commit of ours in flight: the server asks again after it.
                let Some(commit) = unless_pending(self.session.add(&refs))? else {
                    return Ok(out);
                };
                out.send.push(ClientMessage::E2eeCommit {
                    epoch: commit.epoch,
                    commit: B64.encode(&commit.commit),
                    welcome: commit.welcome.as_deref().map(|w| B64.encode(w)),
                    added: joiners.iter().map(|j| j.participant_id.clone()).collect(),
                    removed: Vec::new(),
                });
            }
            ServerMessage::E2eeRemove { participants } => {
                let identities: Vec<&str> =
                    participants.iter().map(|p| p.identity.as_str()).collect();
                let Some(commit) = unless_pending(self.session.remove(&identities))? else {
                    return Ok(out);
                };
                out.send.push(ClientMessage::E2eeCommit {
                    epoch: commit.epoch,
                    commit: B64.encode(&commit.commit),
                    welcome: None,
                    added: Vec::new(),
                    removed: participants
                        .iter()
                        .map(|p| p.participant_id.clone())
                        .collect(),
                });
            }
            ServerMessage::E2eeCommitResult { accepted: true, .. } => {
                self.session.commit_accepted(now)?;
            }
            ServerMessage::E2eeCommitResult {
                accepted: false, ..
            } => self.session.commit_rejected()?,
            ServerMessage::E2eeCommit { commit, .. } => {
                let commit = unb64("commit", commit)?;
                if self.session.process(&commit, now)? == Processed::Removed {
                    out.removed = true;
                }
            }
            ServerMessage::E2eeWelcome { welcome } => {
                let welcome = unb64("welcome", welcome)?;
                self.session.join(&welcome, now)?;
            }
            _ => {}
        }
        let after = self.session.member().epoch();
        if after.is_some() && after != before {
            out.epoch = self.epoch_info();
        }
        Ok(out)
    }
}

/// A commit, or none because one of this member's is in flight.
fn unless_pending(made: Result<Commit, SessionError>) -> Result<Option<Commit>, ClientError> {
    match made {
        Ok(commit) => Ok(Some(commit)),
        Err(SessionError::Group(GroupError::CommitPending)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn unb64(field: &'static str, text: &str) -> Result<Vec<u8>, ClientError> {
    B64.decode(text).map_err(|e| ClientError::Base64 {
        field,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests;
