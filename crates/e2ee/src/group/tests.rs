//! Groups of real openmls members, messages passed by hand as the
//! delivery service would.

use super::*;
use crate::sframe::{CipherSuite, SframeReceiver, SframeSender};
use std::time::Instant;

const ROOM: &str = "room-1";
const NK: usize = 16;

fn member(id: &str) -> Member {
    Member::new(id).expect("member")
}

/// alice creates, adds bob; both in epoch 1.
fn alice_and_bob() -> (Member, Member) {
    let mut alice = member("alice");
    let mut bob = member("bob");
    alice.create(ROOM).expect("creates");
    let kp = bob.key_package().expect("key package");
    let c = alice.add(&[("bob", &kp)]).expect("adds");
    assert_eq!(c.epoch, 0);
    assert_eq!(alice.commit_accepted(), Ok(1));
    assert_eq!(bob.join(c.welcome.as_deref().expect("welcome")), Ok(1));
    (alice, bob)
}

#[test]
fn members_of_an_epoch_share_its_base_key_and_safety_code() {
    let (alice, bob) = alice_and_bob();
    assert_eq!(alice.base_key(NK), bob.base_key(NK));
    assert_eq!(alice.base_key(NK).map(|k| k.len()), Ok(NK));
    assert_eq!(alice.safety_code(), bob.safety_code());
    assert_eq!(
        alice.members(),
        vec![(0, "alice".to_owned()), (1, "bob".to_owned())]
    );
    assert_eq!(bob.leaf_index(), Some(1));
}

#[test]
fn a_new_member_makes_a_new_epoch_everyone_sees() {
    let (mut alice, mut bob) = alice_and_bob();
    let before = alice.safety_code().expect("code");
    let key_before = alice.base_key(NK).expect("key");
    let mut carol = member("carol");
    let kp = carol.key_package().expect("key package");
    let c = bob.add(&[("carol", &kp)]).expect("adds");
    bob.commit_accepted().expect("applies");
    assert_eq!(alice.process(&c.commit), Ok(Processed::NewEpoch(2)));
    carol
        .join(c.welcome.as_deref().expect("welcome"))
        .expect("joins");
    let code = alice.safety_code().expect("code");
    assert_ne!(code, before, "a member added: a new code");
    assert_eq!(bob.safety_code(), Ok(code.clone()));
    assert_eq!(carol.safety_code(), Ok(code));
    let key = carol.base_key(NK).expect("key");
    assert_eq!(alice.base_key(NK), Ok(key.clone()));
    assert_ne!(key, key_before, "the newcomer's key is not the old epoch's");
}

#[test]
fn a_removed_member_is_out_and_cannot_follow() {
    let (mut alice, mut bob) = alice_and_bob();
    let mut carol = member("carol");
    let kp = carol.key_package().expect("key package");
    let c = alice.add(&[("carol", &kp)]).expect("adds");
    alice.commit_accepted().expect("applies");
    bob.process(&c.commit).expect("bob follows");
    carol
        .join(c.welcome.as_deref().expect("welcome"))
        .expect("joins");

    // bob leaves: carol commits his removal.
    let bobs_last_key = bob.base_key(NK).expect("key");
    let r = carol.remove(&["bob"]).expect("removes");
    carol.commit_accepted().expect("applies");
    assert_eq!(alice.process(&r.commit), Ok(Processed::NewEpoch(3)));
    assert_eq!(bob.process(&r.commit), Ok(Processed::Removed));
    assert_eq!(bob.epoch(), None);
    assert_eq!(bob.base_key(NK), Err(GroupError::NoGroup));
    assert_eq!(alice.base_key(NK), carol.base_key(NK));
    assert_eq!(
        alice
            .members()
            .into_iter()
            .map(|(_, id)| id)
            .collect::<Vec<_>>(),
        ["alice", "carol"]
    );

    // A frame under the new epoch's key: alice reads it, and no key bob
    // held (epoch 2's, the last he had) opens it.
    let key = alice.base_key(NK).expect("key");
    let suite = CipherSuite::AesGcm128Sha256;
    let mut tx = SframeSender::new(suite, 0x100, &key).expect("sender");
    let mut frame = Vec::new();
    tx.encrypt(b"", b"after bob left", &mut frame)
        .expect("encrypts");
    let mut rx = SframeReceiver::new(suite);
    rx.add_key(0x100, &key).expect("key");
    let mut pt = Vec::new();
    assert!(rx.decrypt(Instant::now(), b"", &frame, &mut pt).is_ok());
    let mut bobs = SframeReceiver::new(suite);
    bobs.add_key(0x100, &bobs_last_key).expect("key");
    assert_eq!(
        bobs.decrypt(Instant::now(), b"", &frame, &mut pt),
        Err(crate::E2eeError::Authentication)
    );
}

#[test]
fn the_first_commit_for_an_epoch_wins_and_the_other_member_follows_it() {
    let (mut alice, mut bob) = alice_and_bob();
    let mut carol = member("carol");
    let mut dave = member("dave");
    let kc = carol.key_package().expect("kp");
    let kd = dave.key_package().expect("kp");
    // Both commit in epoch 1; the delivery service takes alice's.
    let a = alice.add(&[("carol", &kc)]).expect("alice adds carol");
    let b = bob.add(&[("dave", &kd)]).expect("bob adds dave");
    assert_eq!((a.epoch, b.epoch), (1, 1));
    assert_eq!(bob.add(&[("dave", &kd)]), Err(GroupError::CommitPending));
    alice.commit_accepted().expect("applies");
    bob.commit_rejected().expect("drops his");
    assert_eq!(bob.process(&a.commit), Ok(Processed::NewEpoch(2)));
    carol
        .join(a.welcome.as_deref().expect("welcome"))
        .expect("joins");
    // The losing commit's welcome leads into a fork no one else is in
    // (the delivery service relays only the winner's).
    if dave.join(b.welcome.as_deref().expect("welcome")).is_ok() {
        assert_ne!(dave.base_key(NK), alice.base_key(NK));
    }
    // bob adds dave again, in the new epoch, with a fresh key package.
    let mut dave = member("dave");
    let kd = dave.key_package().expect("kp");
    let b2 = bob.add(&[("dave", &kd)]).expect("adds");
    assert_eq!(b2.epoch, 2);
    bob.commit_accepted().expect("applies");
    assert_eq!(alice.process(&b2.commit), Ok(Processed::NewEpoch(3)));
    assert_eq!(carol.process(&b2.commit), Ok(Processed::NewEpoch(3)));
    dave.join(b2.welcome.as_deref().expect("welcome"))
        .expect("joins");
    let code = alice.safety_code().expect("code");
    for m in [&bob, &carol, &dave] {
        assert_eq!(m.safety_code(), Ok(code.clone()), "{}", m.identity());
        assert_eq!(m.base_key(NK), alice.base_key(NK));
    }
}

#[test]
fn a_key_package_for_someone_else_is_refused() {
    let (mut alice, _bob) = alice_and_bob();
    let mut mallory = member("mallory");
    let kp = mallory.key_package().expect("kp");
    assert_eq!(
        alice.add(&[("carol", &kp)]),
        Err(GroupError::IdentityMismatch {
            expected: "carol".into(),
            got: "mallory".into()
        })
    );
    assert!(matches!(
        alice.add(&[("carol", b"not mls")]),
        Err(GroupError::Malformed(_))
    ));
    assert!(matches!(alice.process(&kp), Err(GroupError::Malformed(_))));
    assert!(matches!(alice.join(&kp), Err(GroupError::AlreadyInGroup)));
    assert_eq!(alice.epoch(), Some(1), "nothing changed");
}
