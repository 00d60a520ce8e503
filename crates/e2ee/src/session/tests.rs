//! Sessions of real members, group messages passed by hand, frames
//! encrypted and decrypted as the calling crate will.

use super::*;

const ROOM: &str = "room-e2ee";

fn session(id: &str, now: Instant) -> Session {
    Session::new(Member::new(id).expect("member"), now).expect("session")
}

/// `adder` adds `who` (a fresh session); everyone in `others` reads the
/// commit.
fn add(adder: &mut Session, others: &mut [&mut Session], who: &str, now: Instant) -> Session {
    let mut joiner = session(who, now);
    let kp = joiner.key_package().expect("kp");
    let c = adder.add(&[(who, &kp)]).expect("adds");
    adder.commit_accepted(now).expect("applies");
    for o in others.iter_mut() {
        o.process(&c.commit, now).expect("follows");
    }
    joiner
        .join(c.welcome.as_deref().expect("welcome"), now)
        .expect("joins");
    joiner
}

fn seal(s: &mut Session, stream: Stream, frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    s.encrypt(stream, b"meta", frame, &mut out)
        .expect("encrypts");
    out
}

fn open(s: &mut Session, now: Instant, ct: &[u8]) -> Result<(Sender, Vec<u8>), SessionError> {
    let mut out = Vec::new();
    let sender = s.decrypt(now, b"meta", ct, &mut out)?;
    Ok((sender, out))
}

#[test]
fn frames_say_who_sent_them_and_on_which_stream() {
    let t0 = Instant::now();
    let mut alice = session("alice", t0);
    assert!(matches!(
        alice.encrypt(Stream::Audio, b"", b"x", &mut Vec::new()),
        Err(SessionError::Group(GroupError::NoGroup))
    ));
    alice.create(ROOM, t0).expect("creates");
    let mut bob = add(&mut alice, &mut [], "bob", t0);
    let ct = seal(&mut alice, Stream::Camera, b"a video frame");
    let (sender, pt) = open(&mut bob, t0, &ct).expect("decrypts");
    assert_eq!(pt, b"a video frame");
    assert_eq!(sender.identity.as_deref(), Some("alice"));
    assert_eq!(sender.stream, Some(Stream::Camera));
    assert_eq!(sender.leaf, 0);
    let ct = seal(&mut bob, Stream::Audio, b"an opus frame");
    let (sender, _) = open(&mut alice, t0, &ct).expect("decrypts");
    assert_eq!(sender.identity.as_deref(), Some("bob"));
    assert!(open(&mut alice, t0, &ct).is_err(), "once only");
    assert_eq!(alice.stats().replayed, 1);
    let own = seal(&mut alice, Stream::Audio, b"x");
    assert!(
        open(&mut alice, t0, &own).is_err(),
        "no key for its own frames"
    );
}

#[test]
fn a_new_epoch_keeps_old_frames_readable_for_two_seconds_only() {
    let t0 = Instant::now();
    let mut alice = session("alice", t0);
    alice.create(ROOM, t0).expect("creates");
    let mut bob = add(&mut alice, &mut [], "bob", t0);
    let in_flight = seal(&mut bob, Stream::Audio, b"sent in epoch 1");
    let late = seal(&mut bob, Stream::Audio, b"arrives 2 s after epoch 2");
    let mut carol = add(&mut alice, &mut [&mut bob], "carol", t0);
    assert_eq!(alice.member().epoch(), Some(2));
    assert_eq!(carol.safety_code(), alice.safety_code());
    assert_eq!(bob.safety_code(), alice.safety_code());

    let t1 = t0 + Duration::from_millis(1900);
    assert!(open(&mut alice, t1, &in_flight).is_ok(), "within 2 s");
    assert!(
        open(&mut carol, t1, &in_flight).is_err(),
        "a newcomer reads nothing from before it joined"
    );
    let t2 = t0 + RETIRE_AFTER;
    assert!(matches!(
        open(&mut alice, t2, &late),
        Err(SessionError::Frame(E2eeError::UnknownKid(_)))
    ));
    // Epoch 2 frames: everyone reads them.
    let now = seal(&mut bob, Stream::Audio, b"epoch 2");
    assert!(open(&mut alice, t2, &now).is_ok());
    assert!(open(&mut carol, t2, &now).is_ok());
}

#[test]
fn a_removed_member_reads_nothing_sent_after() {
    let t0 = Instant::now();
    let mut alice = session("alice", t0);
    alice.create(ROOM, t0).expect("creates");
    let mut bob = add(&mut alice, &mut [], "bob", t0);
    let mut carol = add(&mut alice, &mut [&mut bob], "carol", t0);
    // Bob leaves: alice commits his removal; carol and bob read it.
    let r = alice.remove(&["bob"]).expect("removes");
    alice.commit_accepted(t0).expect("applies");
    carol.process(&r.commit, t0).expect("follows");
    assert_eq!(bob.process(&r.commit, t0), Ok(Processed::Removed));
    let after = seal(&mut alice, Stream::Audio, b"after bob left");
    assert!(open(&mut carol, t0, &after).is_ok());
    assert!(open(&mut bob, t0, &after).is_err(), "bob has no key for it");
    assert!(bob
        .encrypt(Stream::Audio, b"", b"x", &mut Vec::new())
        .is_err());
}

#[test]
fn frames_of_the_next_epoch_wait_for_its_commit() {
    let t0 = Instant::now();
    let mut alice = session("alice", t0);
    alice.create(ROOM, t0).expect("creates");
    let mut bob = add(&mut alice, &mut [], "bob", t0);
    // alice adds carol; her commit is accepted and she sends under epoch 2
    // before bob has read the commit.
    let mut carol = session("carol", t0);
    let kp = carol.key_package().expect("kp");
    let c = alice.add(&[("carol", &kp)]).expect("adds");
    alice.commit_accepted(t0).expect("applies");
    let early = seal(
        &mut alice,
        Stream::Audio,
        b"epoch 2, before bob read the commit",
    );
    assert!(matches!(
        open(&mut bob, t0, &early),
        Err(SessionError::Held)
    ));
    // carol, too, gets media before her welcome.
    assert!(matches!(
        open(&mut carol, t0, &early),
        Err(SessionError::Held)
    ));
    assert!(bob.take_released().is_empty());
    let t1 = t0 + Duration::from_millis(300);
    bob.process(&c.commit, t1).expect("follows");
    let released = bob.take_released();
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].0.identity.as_deref(), Some("alice"));
    assert_eq!(released[0].1, b"epoch 2, before bob read the commit");
    carol
        .join(c.welcome.as_deref().expect("welcome"), t1)
        .expect("joins");
    assert_eq!(carol.take_released().len(), 1);
    assert_eq!(bob.stats().unknown_kid, 0, "held, not dropped");
    // Held too long: gone.
    let later = seal(&mut alice, Stream::Audio, b"epoch 2");
    let mut dave = session("dave", t1);
    assert!(matches!(
        open(&mut dave, t1, &later),
        Err(SessionError::Held)
    ));
    let kp = dave.key_package().expect("kp");
    let d = alice.add(&[("dave", &kp)]).expect("adds");
    alice.commit_accepted(t1).expect("applies");
    dave.join(d.welcome.as_deref().expect("welcome"), t1 + HOLD_FOR)
        .expect("joins");
    assert!(dave.take_released().is_empty(), "held past HOLD_FOR");
    // A copy of a frame taken (RED, a resend) is not fresh.
    bob.process(&d.commit, t1).expect("follows");
    let frame = seal(&mut alice, Stream::Audio, b"epoch 3");
    assert!(bob.is_fresh(&frame));
    open(&mut bob, t1, &frame).expect("decrypts");
    assert!(!bob.is_fresh(&frame));
    assert_eq!(bob.stats().replayed, 0);
}
