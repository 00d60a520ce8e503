//! Garbage sent to the SFU's media port during a call changes nothing and
//! crashes nothing: random bytes, truncated STUN, DTLS and RTP, and STUN
//! binding requests naming ICE ufrags that do not exist.

mod common;

use common::*;
use huddle::proto::TrackKind;
use rand::{Rng, SeedableRng};
use std::time::Duration;

/// A STUN binding request (RFC 8489) with a USERNAME attribute.
fn stun_request(rng: &mut impl Rng, username: &str) -> Vec<u8> {
    let mut attr = Vec::new();
    attr.extend_from_slice(&0x0006u16.to_be_bytes());
    attr.extend_from_slice(&(username.len() as u16).to_be_bytes());
    attr.extend_from_slice(username.as_bytes());
    while attr.len() % 4 != 0 {
        attr.push(0);
    }
    let mut m = vec![0x00, 0x01];
    m.extend_from_slice(&(attr.len() as u16).to_be_bytes());
    m.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
    m.extend((0..12).map(|_| rng.random::<u8>()));
    m.extend_from_slice(&attr);
    m
}

fn garbage(rng: &mut impl Rng, i: usize) -> Vec<u8> {
    let len = rng.random_range(0..1500);
    let mut buf: Vec<u8> = (0..len).map(|_| rng.random()).collect();
    match i % 5 {
        // Random bytes.
        0 => buf,
        // A STUN request for a made-up ufrag, whole or truncated.
        1 => {
            let ufrag: String = (0..rng.random_range(1..40))
                .map(|_| rng.random_range(b'a'..=b'z') as char)
                .collect();
            let m = stun_request(rng, &format!("{ufrag}:x"));
            let cut = rng.random_range(0..=m.len());
            m[..cut].to_vec()
        }
        // A DTLS handshake record header and a truncated body.
        2 => {
            let mut d = vec![22, 0xFE, 0xFD, 0, 0];
            d.extend((0..6).map(|_| rng.random::<u8>()));
            d.extend_from_slice(&(buf.len() as u16).to_be_bytes());
            d.truncate(rng.random_range(0..d.len()));
            d.extend(buf.drain(..buf.len().min(40)));
            d
        }
        // RTP and RTCP headers with random contents, truncated anywhere.
        3 => {
            if !buf.is_empty() {
                buf[0] = 0x80 | (buf[0] & 0x3F);
            }
            buf.truncate(rng.random_range(0..=buf.len().min(64)));
            buf
        }
        // Empty and one-byte datagrams of every class boundary.
        _ => vec![
            *[0u8, 3, 19, 20, 63, 64, 127, 128, 191, 192, 255]
                .get(i % 11)
                .unwrap_or(&0);
            i % 2
        ],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_media_port_changes_nothing() {
    init_tracing();
    let server = huddle_server::start(huddle_server::ServerConfig::ephemeral(
        "fuzz-secret-padded-to-32-bytes-or-more",
    ))
    .await
    .expect("server");
    let (alice, _ae) = join(&server, "r", "alice", BOTH).await;
    let (bob, be) = join(&server, "r", "bob", BOTH).await;
    let (inbox, _rest) = collect(be);
    let mic = within(20, "publish", alice.publish_audio())
        .await
        .expect("audio");

    // Media flows before the attack...
    let sent = SentAudio::default();
    within(20, "warm-up", send_speech(mic.clone(), 1, 50, sent.clone())).await;
    let before = server.sfu().stats().await.expect("stats");

    // ...the attack, from a socket the SFU has never seen...
    let attacker = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    // Every worker's port: the room's and the idle ones.
    let targets = server.sfu().local_addrs();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    for i in 0..20_000 {
        let d = garbage(&mut rng, i);
        let _ = attacker.send_to(&d, targets[i % targets.len()]).await;
        if i % 50 == 0 {
            // Pace it so the kernel's socket buffer does not drop it for us.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    // ...and media still flows, untouched.
    let after_attack = SentAudio::default();
    within(
        20,
        "media after",
        send_speech(mic.clone(), 2, 100, after_attack.clone()),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = server.sfu().stats().await.expect("stats");
    println!("before: {before:?}\nafter:  {stats:?}");
    assert_eq!(stats.participants, before.participants);
    assert_eq!(stats.connections, before.connections);
    assert_eq!(stats.tracks, before.tracks);
    assert_eq!(
        stats.addresses, before.addresses,
        "the attacker got an address mapping"
    );
    assert!(
        stats.dropped_datagrams >= before.dropped_datagrams + 18_000,
        "garbage was not dropped at the door: {stats:?}"
    );

    let seqs: Vec<u16> = after_attack
        .0
        .lock()
        .expect("lock")
        .keys()
        .copied()
        .collect();
    let got = {
        let inbox = inbox.lock().expect("lock");
        let audio = inbox
            .values()
            .find(|r| r.kind == Some(TrackKind::Audio))
            .expect("bob receives alice");
        seqs.iter()
            .filter(|s| audio.packets.contains_key(s))
            .count()
    };
    println!("after the attack bob got {got}/{} packets", seqs.len());
    assert!(
        got * 100 >= seqs.len() * 95,
        "media suffered: {got}/{}",
        seqs.len()
    );
    alice.leave().await.expect("leave");
    bob.leave().await.expect("leave");
    server.shutdown().await.expect("shutdown");
}
