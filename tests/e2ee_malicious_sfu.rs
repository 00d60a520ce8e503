//! The server turns against an end-to-end encrypted call. The test plays a
//! compromised SFU (`huddle_sfu::fault`: a hook on every packet a
//! publisher sends, after the SFU removed its SRTP, before it stores and
//! forwards it), and with it, on alice's audio track:
//!
//! - flips a bit of a frame (its tag);
//! - puts a frame of its own in clear in place of one of hers (silence, as
//!   DAVE's clear frames let a server do);
//! - puts a frame carol made, with carol's real key (a member working with
//!   the server), in place of one of alice's, under alice's timestamp;
//! - replays a frame alice sent earlier, timestamp and all.
//!
//! Bob drops each of them and counts it by its reason; what he hears is
//! alice's speech and nothing else (the copies RED carries bring back the
//! frames the SFU took out).

mod common;

use bytes::Bytes;
use common::e2ee::{agreed, heard, key_holder, speak_until_heard, Spoken};
use common::*;
use huddle::media::rtp::{parse_red, write_red, RedBlock};
use huddle::{SpeechLike, TrackKind, RED_PT};
use huddle_e2ee::client::GroupClient;
use huddle_e2ee::session::Stream;
use huddle_sfu::fault::{Seen, Tamper};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

const ROOM: &str = "secret-room";
const SECRET: &str = "e2ee-malicious-sfu-secret-padded-to-32-bytes";

/// The Opus frame of 20 ms of silence the SFU would slip in.
const SILENCE: &[u8] = &[0xF8, 0xFF, 0xFE];
/// What carol's frames in alice's name say (never to reach bob's app).
const IMPOSTOR: &[u8] = b"carol speaking as alice";

/// What the compromised SFU did to alice's packets.
#[derive(Debug, Default, Clone, Copy)]
struct Done {
    flipped: u64,
    forged: u64,
    impersonated: u64,
    replayed: u64,
}

/// The compromised SFU's state, shared with its hook.
struct Attacker {
    alice: String,
    carol: Arc<Mutex<GroupClient>>,
    seen: u64,
    /// Alice's last packets as she sent them: (timestamp, payload).
    history: VecDeque<(u32, Bytes)>,
    done: Done,
}

/// `payload` (RED or not) with its own frame (RED's primary block)
/// replaced by `frame`, the copies of earlier frames kept.
fn with_primary(payload_type: u8, payload: &[u8], frame: &[u8]) -> Bytes {
    if payload_type != RED_PT {
        return Bytes::copy_from_slice(frame);
    }
    let Ok(red) = parse_red(payload) else {
        return Bytes::copy_from_slice(frame);
    };
    let blocks: Vec<RedBlock<'_>> = red.redundant.clone();
    let mut out = Vec::new();
    write_red(&blocks, red.primary.payload_type, frame, &mut out).expect("RED");
    Bytes::from(out)
}

impl Attacker {
    /// Each tenth packet of alice's from the fourth on: a bit flipped, a
    /// forged frame, carol's frame, an old frame of alice's.
    fn on_packet(&mut self, seen: &Seen<'_>, packet: &mut rtc::rtp::Packet) {
        if seen.kind != TrackKind::Audio || seen.publisher.0 != self.alice {
            return;
        }
        self.seen += 1;
        let original = (packet.header.timestamp, packet.payload.clone());
        let pt = packet.header.payload_type;
        match self.seen % 10 {
            3 => {
                // The last byte is the end of the primary block's tag.
                let mut bytes = packet.payload.to_vec();
                if let Some(last) = bytes.last_mut() {
                    *last ^= 0x01;
                    packet.payload = Bytes::from(bytes);
                    self.done.flipped += 1;
                }
            }
            5 => {
                packet.payload = with_primary(pt, &packet.payload, SILENCE);
                self.done.forged += 1;
            }
            7 => {
                let mut client = self.carol.lock().expect("lock");
                let mut sealed = Vec::new();
                let metadata = packet.header.timestamp.to_be_bytes();
                if client
                    .session()
                    .encrypt(Stream::Audio, &metadata, IMPOSTOR, &mut sealed)
                    .is_ok()
                {
                    packet.payload = with_primary(pt, &packet.payload, &sealed);
                    self.done.impersonated += 1;
                }
            }
            9 if self.history.len() >= 20 => {
                let (ts, payload) = self.history[self.history.len() - 20].clone();
                packet.header.timestamp = ts;
                packet.payload = payload;
                self.done.replayed += 1;
            }
            _ => {}
        }
        self.history.push_back(original);
        if self.history.len() > 50 {
            self.history.pop_front();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compromised_sfu_cannot_change_forge_move_or_replay_frames() {
    init_tracing();
    let server = huddle_server::start(huddle_server::ServerConfig::ephemeral(SECRET))
        .await
        .expect("server");
    let (alice, _alice_events) = join_e2ee(&server, ROOM, "alice").await;
    let (bob, bob_events) = join_e2ee(&server, ROOM, "bob").await;
    let (inbox, _bob_rest) = collect_recovering(bob_events);
    // Carol is a member (keys, no media) who works with the server.
    let carol = key_holder(&server, ROOM, "carol").await;
    let epoch = agreed(&[&alice, &bob], &["alice", "bob", "carol"]).await;
    carol.reach(epoch.epoch).await;

    let attacker = Arc::new(Mutex::new(Attacker {
        alice: alice.participant_id().as_str().to_owned(),
        carol: carol.client.clone(),
        seen: 0,
        history: VecDeque::new(),
        done: Done::default(),
    }));
    let hook = attacker.clone();
    let tamper: Tamper = Arc::new(move |seen, packet| {
        hook.lock().expect("lock").on_packet(seen, packet);
    });
    server
        .sfu()
        .set_tamper(Some(tamper))
        .await
        .expect("tamper hook");

    let mic = within(20, "publish", alice.publish_audio())
        .await
        .expect("audio");
    let mut source = SpeechLike::new(13);
    let mut spoken = Spoken::default();
    speak_until_heard(&mic, &mut source, &inbox, 250, &mut spoken).await;
    server.sfu().set_tamper(None).await.expect("hook off");

    let done = attacker.lock().expect("lock").done;
    let stats = bob.e2ee_stats().expect("an E2EE call");
    println!("the SFU did {done:?}; bob's receiver: {stats:?}");
    assert!(
        done.flipped >= 20 && done.forged >= 20 && done.impersonated >= 20 && done.replayed >= 20,
        "the attacks ran: {done:?}"
    );
    // Every one reached bob, and was dropped for what it was.
    assert!(stats.authentication_failed >= done.flipped, "{stats:?}");
    assert!(stats.malformed >= done.forged, "{stats:?}");
    assert!(stats.misattributed >= done.impersonated, "{stats:?}");
    assert!(stats.duplicates >= done.replayed, "{stats:?}");

    // What bob's app got from alice's track is alice's speech, whole.
    let corr = heard(&inbox, &alice.participant_id(), &spoken, 200);
    println!("bob <- alice through the compromised SFU: correlation {corr:.3}");
    assert!(corr > 0.8, "bob does not hear alice: {corr}");
    let received = inbox.lock().expect("lock").clone();
    let from_alice = received
        .values()
        .find(|r| r.publisher.as_ref() == Some(&alice.participant_id()))
        .expect("alice's track");
    assert!(
        !from_alice
            .packets
            .values()
            .any(|p| p.as_slice() == IMPOSTOR || p.as_slice() == SILENCE),
        "a frame the SFU put in reached bob's app"
    );
    drop(carol);
}
