//! The delivery service of an end-to-end encrypted room's MLS group
//! (docs/e2ee.md, "The delivery service"), sans-IO.
//!
//! The server relays key packages, commits and welcomes, and orders
//! commits: the first one made in the room's current epoch is taken, the
//! others are refused. It holds no group secret and reads no MLS message:
//! it keeps the epoch, who is in the group, who waits to be added and who
//! left and is not removed yet, from what the members' commits say they
//! do. Each call returns the messages to send, by recipient.

use huddle_proto::{E2eeJoiner, E2eeLeaver, ServerMessage};
use huddle_sfu::ParticipantId;

/// Largest base64 key package taken (an X25519/Ed25519 key package is
/// about 400 bytes; extensions and a long identity stay well under this).
pub(crate) const MAX_KEY_PACKAGE: usize = 8 * 1024;
/// Most joiners waiting to be added at once (as many as a room holds is
/// the natural bound; this one keeps a flood from growing the lists).
const MAX_WAITING: usize = 1024;

/// Messages to send: to whom, what.
pub(crate) type Sends = Vec<(ParticipantId, ServerMessage)>;

/// Why an E2EE message from a client is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A commit from a participant outside the group.
    Membership,
    /// The key package is empty or too large.
    KeyPackageSize,
    /// Too many joiners wait already.
    TooManyWaiting,
}

impl Refusal {
    /// What the client is told.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Refusal::Membership => "commits come from members of the group",
            Refusal::KeyPackageSize => "the key package is empty or larger than 8 KiB",
            Refusal::TooManyWaiting => "too many participants wait to be added",
        }
    }
}

/// A participant waiting to be added.
#[derive(Debug, Clone)]
struct Joiner {
    id: ParticipantId,
    identity: String,
    key_package: String,
}

/// A commit a member made, as it says.
#[derive(Debug, Clone)]
pub(crate) struct CommitIn {
    pub(crate) epoch: u64,
    pub(crate) commit: String,
    pub(crate) welcome: Option<String>,
    pub(crate) added: Vec<String>,
    pub(crate) removed: Vec<String>,
}

/// One room's group, as the delivery service sees it.
#[derive(Debug, Default)]
pub(crate) struct GroupDs {
    /// The current epoch, once someone was asked to create the group.
    epoch: Option<u64>,
    /// Who is in the group, in the order they came in: the first still
    /// here is the one asked to add and remove (the leader).
    members: Vec<(ParticipantId, String)>,
    waiting: Vec<Joiner>,
    /// Members who left and are not removed yet.
    leaving: Vec<(ParticipantId, String)>,
}

impl GroupDs {
    /// The current epoch, if there is a group.
    pub(crate) fn epoch(&self) -> Option<u64> {
        self.epoch
    }

    /// Who is in the group (participant ids), in the order they came in.
    #[cfg(test)]
    pub(crate) fn members(&self) -> impl Iterator<Item = &ParticipantId> {
        self.members.iter().map(|(id, _)| id)
    }

    fn is_member(&self, id: &ParticipantId) -> bool {
        self.members.iter().any(|(m, _)| m == id)
    }

    /// `id` went live in the room. With no group yet, it creates it.
    pub(crate) fn on_live(&mut self, id: &ParticipantId, identity: &str) -> Sends {
        if self.epoch.is_some() {
            return Vec::new();
        }
        self.epoch = Some(0);
        self.members = vec![(id.clone(), identity.to_owned())];
        let mut sends = vec![(id.clone(), ServerMessage::E2eeCreate)];
        sends.extend(self.ask());
        sends
    }

    /// `id` sent its key package. A client sends one after `joined`; the
    /// first one in the room is in the group already by then (it was told
    /// to create it), and its key package changes nothing.
    pub(crate) fn on_key_package(
        &mut self,
        id: &ParticipantId,
        identity: &str,
        key_package: String,
    ) -> Result<Sends, Refusal> {
        if key_package.is_empty() || key_package.len() > MAX_KEY_PACKAGE {
            return Err(Refusal::KeyPackageSize);
        }
        if self.is_member(id) {
            return Ok(Vec::new());
        }
        self.waiting.retain(|j| &j.id != id);
        if self.waiting.len() >= MAX_WAITING {
            return Err(Refusal::TooManyWaiting);
        }
        self.waiting.push(Joiner {
            id: id.clone(),
            identity: identity.to_owned(),
            key_package,
        });
        Ok(self.ask())
    }

    /// `from` sent a commit. Taken if it is a member and the commit was
    /// made in the current epoch: the epoch moves on, the commit goes to
    /// the other members and the welcome to those it adds.
    pub(crate) fn on_commit(
        &mut self,
        from: &ParticipantId,
        c: CommitIn,
    ) -> Result<Sends, Refusal> {
        if !self.is_member(from) {
            return Err(Refusal::Membership);
        }
        let Some(epoch) = self.epoch else {
            return Err(Refusal::Membership);
        };
        if c.epoch != epoch {
            let refused = ServerMessage::E2eeCommitResult {
                epoch,
                accepted: false,
            };
            return Ok(vec![(from.clone(), refused)]);
        }
        self.epoch = Some(epoch + 1);
        let mut sends = Vec::new();
        // Everyone in the group before the commit, the removed ones too
        // (they learn they are out), but its author.
        for (m, _) in &self.members {
            if m != from {
                sends.push((
                    m.clone(),
                    ServerMessage::E2eeCommit {
                        epoch,
                        from: from.0.clone(),
                        commit: c.commit.clone(),
                    },
                ));
            }
        }
        sends.push((
            from.clone(),
            ServerMessage::E2eeCommitResult {
                epoch,
                accepted: true,
            },
        ));
        let removed = |id: &ParticipantId| c.removed.contains(&id.0);
        self.members.retain(|(m, _)| !removed(m));
        self.leaving.retain(|(m, _)| !removed(m));
        for added in &c.added {
            let Some(i) = self.waiting.iter().position(|j| j.id.0 == *added) else {
                continue; // not waiting (left meanwhile): nothing to send
            };
            let joiner = self.waiting.remove(i);
            if let Some(welcome) = &c.welcome {
                sends.push((
                    joiner.id.clone(),
                    ServerMessage::E2eeWelcome {
                        welcome: welcome.clone(),
                    },
                ));
            }
            self.members.push((joiner.id, joiner.identity));
        }
        sends.extend(self.ask());
        Ok(sends)
    }

    /// `id` left the room.
    pub(crate) fn on_left(&mut self, id: &ParticipantId) -> Sends {
        self.waiting.retain(|j| &j.id != id);
        let Some(i) = self.members.iter().position(|(m, _)| m == id) else {
            return Vec::new();
        };
        let gone = self.members.remove(i);
        if self.members.is_empty() {
            // Nobody holds the group any more: the next one starts anew.
            self.epoch = None;
            self.leaving.clear();
            let Some(first) = (!self.waiting.is_empty()).then(|| self.waiting.remove(0)) else {
                return Vec::new();
            };
            return self.on_live(&first.id, &first.identity);
        }
        self.leaving.push(gone);
        self.ask()
    }

    /// Ask the leader to add who waits and remove who left.
    fn ask(&self) -> Sends {
        let Some((leader, _)) = self.members.first() else {
            return Vec::new();
        };
        let mut sends = Vec::new();
        if !self.waiting.is_empty() {
            let joiners = self
                .waiting
                .iter()
                .map(|j| E2eeJoiner {
                    participant_id: j.id.0.clone(),
                    identity: j.identity.clone(),
                    key_package: j.key_package.clone(),
                })
                .collect();
            sends.push((leader.clone(), ServerMessage::E2eeAdd { joiners }));
        }
        if !self.leaving.is_empty() {
            let participants = self
                .leaving
                .iter()
                .map(|(id, identity)| E2eeLeaver {
                    participant_id: id.0.clone(),
                    identity: identity.clone(),
                })
                .collect();
            sends.push((leader.clone(), ServerMessage::E2eeRemove { participants }));
        }
        sends
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(s: &str) -> ParticipantId {
        ParticipantId(s.to_owned())
    }

    fn commit(epoch: u64, added: &[&str], removed: &[&str]) -> CommitIn {
        CommitIn {
            epoch,
            commit: format!("commit@{epoch}"),
            welcome: (!added.is_empty()).then(|| "welcome".to_owned()),
            added: added.iter().map(|s| s.to_string()).collect(),
            removed: removed.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn kinds(sends: &Sends) -> Vec<(String, &'static str)> {
        sends
            .iter()
            .map(|(to, m)| {
                let kind = match m {
                    ServerMessage::E2eeCreate => "create",
                    ServerMessage::E2eeAdd { .. } => "add",
                    ServerMessage::E2eeRemove { .. } => "remove",
                    ServerMessage::E2eeCommit { .. } => "commit",
                    ServerMessage::E2eeCommitResult { accepted: true, .. } => "accepted",
                    ServerMessage::E2eeCommitResult { .. } => "refused",
                    ServerMessage::E2eeWelcome { .. } => "welcome",
                    _ => "other",
                };
                (to.0.clone(), kind)
            })
            .collect()
    }

    fn s(to: &str, kind: &'static str) -> (String, &'static str) {
        (to.to_owned(), kind)
    }

    #[test]
    fn the_first_creates_a_joiner_is_added_by_the_leader() {
        let mut ds = GroupDs::default();
        assert_eq!(kinds(&ds.on_live(&pid("a"), "alice")), [s("a", "create")]);
        assert!(ds.on_live(&pid("b"), "bob").is_empty(), "a group exists");
        let sends = ds
            .on_key_package(&pid("b"), "bob", "kp-b".into())
            .expect("taken");
        assert_eq!(kinds(&sends), [s("a", "add")]);
        let sends = ds
            .on_commit(&pid("a"), commit(0, &["b"], &[]))
            .expect("taken");
        assert_eq!(kinds(&sends), [s("a", "accepted"), s("b", "welcome")]);
        assert_eq!(ds.epoch(), Some(1));
        assert_eq!(
            ds.members().cloned().collect::<Vec<_>>(),
            [pid("a"), pid("b")]
        );
        assert_eq!(
            ds.on_key_package(&pid("b"), "bob", "again".into()),
            Ok(Vec::new()),
            "a member's key package changes nothing"
        );
    }

    /// alice created the group and added bob (epoch 1); carol waits.
    fn alice_bob_and_carol_waiting() -> GroupDs {
        let mut ds = GroupDs::default();
        ds.on_live(&pid("a"), "alice");
        ds.on_key_package(&pid("b"), "bob", "kp".into())
            .expect("taken");
        ds.on_commit(&pid("a"), commit(0, &["b"], &[]))
            .expect("taken");
        ds.on_key_package(&pid("c"), "carol", "kp".into())
            .expect("taken");
        ds
    }

    #[test]
    fn only_the_first_commit_of_an_epoch_is_taken() {
        let mut ds = alice_bob_and_carol_waiting();
        let first = ds
            .on_commit(&pid("b"), commit(1, &["c"], &[]))
            .expect("taken");
        assert_eq!(
            kinds(&first),
            [s("a", "commit"), s("b", "accepted"), s("c", "welcome")]
        );
        let late = ds
            .on_commit(&pid("a"), commit(1, &[], &[]))
            .expect("answered");
        assert_eq!(
            late,
            [(
                pid("a"),
                ServerMessage::E2eeCommitResult {
                    epoch: 2,
                    accepted: false
                }
            )]
        );
        assert_eq!(
            ds.on_commit(&pid("x"), commit(2, &[], &[])).err(),
            Some(Refusal::Membership),
            "not a member"
        );
    }

    #[test]
    fn a_leaver_is_removed_by_the_next_leader_and_an_empty_group_starts_again() {
        let mut ds = alice_bob_and_carol_waiting();
        ds.on_commit(&pid("a"), commit(1, &["c"], &[]))
            .expect("taken");
        // The leader leaves: bob is asked to remove alice.
        assert_eq!(kinds(&ds.on_left(&pid("a"))), [s("b", "remove")]);
        let sends = ds
            .on_commit(&pid("b"), commit(2, &[], &["a"]))
            .expect("taken");
        assert_eq!(kinds(&sends), [s("c", "commit"), s("b", "accepted")]);
        assert_eq!(ds.epoch(), Some(3));
        // A joiner waits; then everyone in the group leaves.
        ds.on_key_package(&pid("d"), "dave", "kp".into())
            .expect("taken");
        ds.on_left(&pid("b"));
        let sends = ds.on_left(&pid("c"));
        assert_eq!(kinds(&sends), [s("d", "create")], "dave starts a new group");
        assert_eq!(ds.epoch(), Some(0));
        assert_eq!(ds.members().cloned().collect::<Vec<_>>(), [pid("d")]);
    }

    #[test]
    fn key_packages_are_bounded() {
        let mut ds = GroupDs::default();
        ds.on_live(&pid("a"), "alice");
        assert_eq!(
            ds.on_key_package(&pid("b"), "bob", String::new()),
            Err(Refusal::KeyPackageSize)
        );
        assert_eq!(
            ds.on_key_package(&pid("b"), "bob", "x".repeat(MAX_KEY_PACKAGE + 1)),
            Err(Refusal::KeyPackageSize)
        );
        for i in 0..MAX_WAITING {
            ds.on_key_package(&pid(&format!("p{i}")), "p", "kp".into())
                .expect("taken");
        }
        assert_eq!(
            ds.on_key_package(&pid("late"), "late", "kp".into()),
            Err(Refusal::TooManyWaiting)
        );
        assert!(
            ds.on_key_package(&pid("p0"), "p", "kp2".into()).is_ok(),
            "a new one replaces the last"
        );
    }
}
