use super::*;
use crate::session::Stream;
use huddle_proto::{E2eeJoiner, E2eeLeaver};

const ROOM: &str = "room";

fn joiner(id: &str, key_package: &ClientMessage) -> E2eeJoiner {
    let ClientMessage::E2eeKeyPackage { key_package } = key_package else {
        panic!("not a key package: {key_package:?}");
    };
    E2eeJoiner {
        participant_id: format!("PA_{id}"),
        identity: id.to_owned(),
        key_package: key_package.clone(),
    }
}

/// The `e2ee_commit` in `handled`, as the server relays it to the others
/// (`e2ee_commit`) and to the joiners (`e2ee_welcome`).
fn relayed(handled: &Handled) -> (ServerMessage, Option<ServerMessage>) {
    let [ClientMessage::E2eeCommit {
        epoch,
        commit,
        welcome,
        ..
    }] = handled.send.as_slice()
    else {
        panic!("expected one commit, got {:?}", handled.send);
    };
    (
        ServerMessage::E2eeCommit {
            epoch: *epoch,
            from: "PA_leader".into(),
            commit: commit.clone(),
        },
        welcome
            .clone()
            .map(|welcome| ServerMessage::E2eeWelcome { welcome }),
    )
}

const ACCEPTED: ServerMessage = ServerMessage::E2eeCommitResult {
    epoch: 0,
    accepted: true,
};

#[test]
fn members_join_agree_and_one_is_removed() {
    let now = Instant::now();
    let (mut alice, _) = GroupClient::new("alice", ROOM, now).expect("alice");
    let created = alice
        .handle(&ServerMessage::E2eeCreate, now)
        .expect("create");
    assert_eq!(created.epoch.map(|e| e.epoch), Some(0));
    assert!(created.send.is_empty());

    // Bob joins: alice commits, the server takes it, bob gets the welcome.
    let (mut bob, bob_kp) = GroupClient::new("bob", ROOM, now).expect("bob");
    let add = ServerMessage::E2eeAdd {
        joiners: vec![joiner("bob", &bob_kp)],
    };
    let committed = alice.handle(&add, now).expect("add");
    assert!(committed.epoch.is_none(), "not applied before it is taken");
    let (_, welcome) = relayed(&committed);
    // Asked again while its commit is in flight: nothing more to send.
    assert!(alice.handle(&add, now).expect("again").send.is_empty());
    let a1 = alice.handle(&ACCEPTED, now).expect("accepted").epoch;
    let b1 = bob
        .handle(&welcome.expect("a welcome"), now)
        .expect("welcome")
        .epoch;
    assert_eq!(a1, b1);
    let e1 = a1.expect("a new epoch");
    assert_eq!(e1.epoch, 1);
    assert_eq!(e1.members, ["alice", "bob"]);
    let digits = e1.safety_code.chars().filter(char::is_ascii_digit).count();
    assert_eq!(digits, 30, "{}", e1.safety_code);

    // Frames go both ways under the epoch's keys.
    let mut ct = Vec::new();
    alice
        .session()
        .encrypt(Stream::Audio, b"", b"opus frame", &mut ct)
        .expect("encrypt");
    let mut pt = Vec::new();
    let sender = bob
        .session()
        .decrypt(now, b"", &ct, &mut pt)
        .expect("decrypt");
    assert_eq!(pt, b"opus frame");
    assert_eq!(sender.identity.as_deref(), Some("alice"));

    // Carol joins; bob applies alice's commit.
    let (mut carol, carol_kp) = GroupClient::new("carol", ROOM, now).expect("carol");
    let committed = alice
        .handle(
            &ServerMessage::E2eeAdd {
                joiners: vec![joiner("carol", &carol_kp)],
            },
            now,
        )
        .expect("add carol");
    let (commit, welcome) = relayed(&committed);
    let a2 = alice.handle(&ACCEPTED, now).expect("accepted").epoch;
    let b2 = bob.handle(&commit, now).expect("commit").epoch;
    let c2 = carol
        .handle(&welcome.expect("a welcome"), now)
        .expect("welcome")
        .epoch;
    assert_eq!(a2, b2);
    assert_eq!(b2, c2);
    assert_ne!(a2.as_ref().map(|e| &e.safety_code), Some(&e1.safety_code));

    // Bob leaves: alice removes him; carol moves on, bob learns he is out.
    let committed = alice
        .handle(
            &ServerMessage::E2eeRemove {
                participants: vec![E2eeLeaver {
                    participant_id: "PA_bob".into(),
                    identity: "bob".into(),
                }],
            },
            now,
        )
        .expect("remove");
    let (commit, welcome) = relayed(&committed);
    assert!(welcome.is_none());
    let a3 = alice.handle(&ACCEPTED, now).expect("accepted").epoch;
    let c3 = carol.handle(&commit, now).expect("commit").epoch;
    assert_eq!(a3, c3);
    assert_eq!(a3.expect("epoch").members, ["alice", "carol"]);
    let out = bob.handle(&commit, now).expect("bob reads his removal");
    assert!(out.removed);
    let mut ct = Vec::new();
    assert!(bob
        .session()
        .encrypt(Stream::Audio, b"", b"x", &mut ct)
        .is_err());
}

#[test]
fn a_rejected_commit_is_dropped_and_the_winner_applied() {
    let now = Instant::now();
    let (mut alice, _) = GroupClient::new("alice", ROOM, now).expect("alice");
    alice
        .handle(&ServerMessage::E2eeCreate, now)
        .expect("create");
    let (mut bob, bob_kp) = GroupClient::new("bob", ROOM, now).expect("bob");
    let (_, welcome) = relayed(
        &alice
            .handle(
                &ServerMessage::E2eeAdd {
                    joiners: vec![joiner("bob", &bob_kp)],
                },
                now,
            )
            .expect("add"),
    );
    alice.handle(&ACCEPTED, now).expect("accepted");
    bob.handle(&welcome.expect("welcome"), now).expect("joined");

    // Both are asked to add carol (the server asks one; say it asked
    // again after a timeout): bob's commit is taken, alice's is not.
    let (mut carol, carol_kp) = GroupClient::new("carol", ROOM, now).expect("carol");
    let add = ServerMessage::E2eeAdd {
        joiners: vec![joiner("carol", &carol_kp)],
    };
    alice.handle(&add, now).expect("alice's commit");
    let (commit, welcome) = relayed(&bob.handle(&add, now).expect("bob's commit"));
    let b2 = bob.handle(&ACCEPTED, now).expect("taken").epoch;
    let rejected = ServerMessage::E2eeCommitResult {
        epoch: 1,
        accepted: false,
    };
    assert!(alice
        .handle(&rejected, now)
        .expect("dropped")
        .epoch
        .is_none());
    let a2 = alice.handle(&commit, now).expect("winner").epoch;
    let c2 = carol
        .handle(&welcome.expect("welcome"), now)
        .expect("joined")
        .epoch;
    assert_eq!(a2, b2);
    assert_eq!(a2, c2);
    assert_eq!(a2.map(|e| e.epoch), Some(2));
}

#[test]
fn bad_input_is_an_error_and_changes_nothing() {
    let now = Instant::now();
    let (mut alice, _) = GroupClient::new("alice", ROOM, now).expect("alice");
    alice
        .handle(&ServerMessage::E2eeCreate, now)
        .expect("create");
    let before = alice.epoch_info();
    for msg in [
        ServerMessage::E2eeCommit {
            epoch: 0,
            from: "PA_x".into(),
            commit: "not base64!".into(),
        },
        ServerMessage::E2eeCommit {
            epoch: 0,
            from: "PA_x".into(),
            commit: B64.encode([0u8; 40]),
        },
        ServerMessage::E2eeWelcome {
            welcome: B64.encode(b"hello"),
        },
        ServerMessage::E2eeAdd {
            joiners: vec![E2eeJoiner {
                participant_id: "PA_m".into(),
                identity: "mallory".into(),
                key_package: "%%%".into(),
            }],
        },
        ServerMessage::E2eeCreate,
    ] {
        assert!(alice.handle(&msg, now).is_err(), "{msg:?} refused");
        assert_eq!(alice.epoch_info(), before, "{msg:?} changed nothing");
    }
    // A message about something else is no business of the group's.
    let out = alice.handle(&ServerMessage::Pong, now).expect("ignored");
    assert!(out.send.is_empty() && out.epoch.is_none() && !out.removed);
}

#[test]
fn a_key_package_for_someone_else_is_refused() {
    let now = Instant::now();
    let (mut alice, _) = GroupClient::new("alice", ROOM, now).expect("alice");
    alice
        .handle(&ServerMessage::E2eeCreate, now)
        .expect("create");
    let (_, mallory_kp) = GroupClient::new("mallory", ROOM, now).expect("mallory");
    // The server says "bob", the credential says "mallory".
    let mut j = joiner("mallory", &mallory_kp);
    j.identity = "bob".into();
    let err = alice
        .handle(&ServerMessage::E2eeAdd { joiners: vec![j] }, now)
        .expect_err("refused");
    assert!(err.to_string().contains("mallory"), "{err}");
    assert_eq!(alice.epoch_info().map(|e| e.epoch), Some(0));
}

/// The delivery service turns against the room: it hands the leader a key
/// package of its own making (a "ghost" it announces to nobody) and
/// relays the leader's commit to the others as any other. The ghost is in
/// the group, but every member's safety code changes, the same for all
/// (ghost included), and every member's list of the epoch names it:
/// people comparing codes, or reading the list, see it.
#[test]
fn a_member_the_server_adds_silently_changes_every_code() {
    let now = Instant::now();
    let (mut alice, _) = GroupClient::new("alice", ROOM, now).expect("alice");
    alice
        .handle(&ServerMessage::E2eeCreate, now)
        .expect("create");
    let (mut bob, bob_kp) = GroupClient::new("bob", ROOM, now).expect("bob");
    let committed = alice
        .handle(
            &ServerMessage::E2eeAdd {
                joiners: vec![joiner("bob", &bob_kp)],
            },
            now,
        )
        .expect("add bob");
    let (_, welcome) = relayed(&committed);
    let before = alice.handle(&ACCEPTED, now).expect("accepted").epoch;
    bob.handle(&welcome.expect("a welcome"), now)
        .expect("welcome");
    let before = before.expect("an epoch");
    assert_eq!(bob.epoch_info(), Some(before.clone()));

    // The ghost: made by the server, joining under a name of its choice.
    let (mut ghost, ghost_kp) = GroupClient::new("support", ROOM, now).expect("ghost");
    let committed = alice
        .handle(
            &ServerMessage::E2eeAdd {
                joiners: vec![joiner("support", &ghost_kp)],
            },
            now,
        )
        .expect("the leader adds whom the server names");
    let (commit, welcome) = relayed(&committed);
    let a = alice.handle(&ACCEPTED, now).expect("accepted").epoch;
    let b = bob.handle(&commit, now).expect("commit").epoch;
    let g = ghost
        .handle(&welcome.expect("a welcome"), now)
        .expect("welcome")
        .epoch;
    let (a, b, g) = (a.expect("alice"), b.expect("bob"), g.expect("ghost"));
    assert_ne!(a.safety_code, before.safety_code, "alice's code changed");
    assert_ne!(b.safety_code, before.safety_code, "bob's code changed");
    assert_eq!(a, b, "alice and bob see the same epoch and code");
    assert_eq!(g, a, "the ghost cannot show a code of the old group");
    assert!(b.members.iter().any(|m| m == "support"), "{:?}", b.members);
}
