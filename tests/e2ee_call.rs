//! End-to-end encrypted calls through the calling crate and the real
//! server: the participants form the room's MLS group through the
//! signaling (`CallOptions::e2ee`), every Opus frame goes out as SFrame
//! under the sender's key of the current epoch, and:
//!
//! - the members hear each other (real Opus, decoded, correlated with what
//!   was sent) and agree on the epoch's safety code;
//! - what the SFU forwards (taken by a viewer attached to the SFU itself,
//!   past the signaling: the operator's view) holds none of the Opus frames
//!   sent and decodes to nothing like them;
//! - a join and a leave each start a new epoch with a new code, and the
//!   audio goes on across them;
//! - video frames are encrypted whole, and reach the members intact;
//! - a call without E2EE is refused in an E2EE room, and the reverse.

mod common;

use common::e2ee::{agreed, heard, key_holder, speak, speak_until_heard, KeyHolder, Spoken};
use common::spy::{spy_on, Captured, Spied};
use common::*;
use huddle::media::analysis::normalized_cross_correlation;
use huddle::media::opus_codec::OpusDecoder;
use huddle::media::rtp::{parse_red, parse_vp8_descriptor};
use huddle::{
    Call, CallError, CallOptions, Channels, E2eeEpoch, ErrorCode, SpeechLike, TrackKind, RED_PT,
};
use huddle_e2ee::client::GroupClient;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::time::Instant;

const ROOM: &str = "secret-room";
const SECRET: &str = "e2ee-call-secret-padded-to-32-bytes-or-more";

async fn server() -> huddle_server::RunningServer {
    huddle_server::start(huddle_server::ServerConfig::ephemeral(SECRET))
        .await
        .expect("server")
}

/// Alice and bob in one group of an E2EE room, what bob receives, and a
/// spy on what the SFU forwards.
struct Pair {
    server: huddle_server::RunningServer,
    alice: Call,
    _alice_events: huddle::CallEvents,
    bob: Call,
    /// Bob's remote tracks.
    inbox: Inbox,
    /// Bob's other events.
    bob_rest: tokio::sync::mpsc::UnboundedReceiver<huddle::CallEvent>,
    /// The group's epoch once both were in.
    epoch: E2eeEpoch,
    _spy: Arc<dyn webrtc::peer_connection::PeerConnection>,
    captured: Captured,
}

async fn encrypted_pair() -> Pair {
    let server = server().await;
    let (alice, _alice_events) = join_e2ee(&server, ROOM, "alice").await;
    let (bob, bob_events) = join_e2ee(&server, ROOM, "bob").await;
    let (inbox, bob_rest) = collect(bob_events);
    let epoch = agreed(&[&alice, &bob], &["alice", "bob"]).await;
    let (_spy, captured) = spy_on(&server, ROOM).await;
    Pair {
        server,
        alice,
        _alice_events,
        bob,
        inbox,
        bob_rest,
        epoch,
        _spy,
        captured,
    }
}

/// What the operator's spy holds: how many payloads, how many of the
/// Opus frames sent appear in them, and how what decodes of them (the
/// primary block of a RED payload) correlates with the speech.
fn spied(captured: &Captured, spoken: &Spoken) -> (usize, usize, f64) {
    let packets = captured.lock().expect("lock").clone();
    // Frames of a few bytes (DTX, silence) turn up in any random bytes;
    // from 8 bytes on, a match by chance is as good as impossible.
    let leaked = spoken
        .opus
        .iter()
        .filter(|opus| opus.len() >= 8)
        .filter(|opus| {
            packets
                .iter()
                .any(|p| p.payload.windows(opus.len()).any(|w| w == opus.as_slice()))
        })
        .count();
    let mut decoder = OpusDecoder::new(Channels::Mono).expect("decoder");
    let decoded: Vec<i16> = packets
        .iter()
        .flat_map(|p| {
            let frame = match parse_red(&p.payload) {
                Ok(red) if p.payload_type == RED_PT => red.primary.payload,
                _ => p.payload.as_slice(),
            };
            decoder
                .decode(frame)
                .or_else(|_| decoder.conceal())
                .unwrap_or_default()
        })
        .collect();
    let original: Vec<i16> = spoken.pcm.values().flatten().copied().collect();
    let n = decoded.len().min(original.len());
    let corr = if n == 0 {
        0.0
    } else {
        normalized_cross_correlation(&original[..n], &decoded[..n], 4800).0
    };
    (packets.len(), leaked, corr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_hear_each_other_and_the_server_hears_nothing() {
    init_tracing();
    let Pair {
        server: _server,
        alice,
        _alice_events,
        bob,
        inbox,
        mut bob_rest,
        epoch,
        _spy,
        captured,
    } = encrypted_pair().await;
    println!("epoch {} safety code {}", epoch.epoch, epoch.safety_code);
    assert!(epoch.epoch >= 1, "bob's join started an epoch");
    let digits = epoch
        .safety_code
        .chars()
        .filter(char::is_ascii_digit)
        .count();
    assert_eq!(digits, 30);
    // Bob was told of it (the event the app shows the code from).
    let told = next_event(&mut bob_rest, 10, "bob's E2EE epoch event", |ev| match ev {
        huddle::CallEvent::E2eeEpoch(e) => Some(e),
        _ => None,
    })
    .await;
    assert_eq!(told, epoch);

    let mic = within(20, "publish", alice.publish_audio())
        .await
        .expect("audio");
    let mut source = SpeechLike::new(7);
    let mut spoken = Spoken::default();
    speak_until_heard(&mic, &mut source, &inbox, 150, &mut spoken).await;

    let corr = heard(&inbox, &alice.participant_id(), &spoken, 100);
    println!("bob <- alice: correlation {corr:.3}");
    assert!(corr > 0.8, "bob does not hear what alice said: {corr}");
    let stats = bob.e2ee_stats().expect("an E2EE call");
    println!("bob's E2EE receiver: {stats:?}");
    assert!(stats.decrypted >= 100);
    assert_eq!(stats.authentication_failed, 0);

    let (count, leaked, corr) = spied(&captured, &spoken);
    println!(
        "the SFU's view: {count} payloads, {leaked} Opus frames in clear, correlation {corr:.3}"
    );
    assert!(count >= 100, "the spy got what the SFU forwards: {count}");
    assert_eq!(
        leaked, 0,
        "no Opus frame alice sent crossed the SFU in clear"
    );
    assert!(
        corr.abs() < 0.3,
        "what the SFU forwards sounds like the speech: {corr}"
    );
}

/// The control: the same spy on a room without E2EE hears the speech (so
/// the checks above can fail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_e2ee_the_server_hears_everything() {
    init_tracing();
    let server = server().await;
    let (alice, _ae) = join(&server, ROOM, "alice", BOTH).await;
    let (_bob, bob_events) = join(&server, ROOM, "bob", BOTH).await;
    let (inbox, _rest) = collect(bob_events);
    let (_spy_pc, captured) = spy_on(&server, ROOM).await;
    let mic = within(20, "publish", alice.publish_audio())
        .await
        .expect("audio");
    assert!(alice.e2ee().is_none() && alice.e2ee_stats().is_none());
    let mut source = SpeechLike::new(7);
    let mut spoken = Spoken::default();
    speak_until_heard(&mic, &mut source, &inbox, 150, &mut spoken).await;
    let (count, leaked, corr) = spied(&captured, &spoken);
    let long = spoken.opus.iter().filter(|o| o.len() >= 8).count();
    println!("the SFU's view: {count} payloads, {leaked} of {long} Opus frames in clear, correlation {corr:.3}");
    assert!(
        leaked * 10 >= long * 9,
        "the spy sees the frames: {leaked} of {long}"
    );
    assert!(corr > 0.5, "and hears the speech: {corr}");
    // And sees the video.
    let camera = within(20, "publish", alice.publish_video())
        .await
        .expect("video");
    let sent = within(30, "sending", send_video(camera.clone(), 30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let spied = spied_video(&captured);
    let leaked = sent.iter().filter(|f| contains(&spied, &f[10..74])).count();
    println!(
        "the SFU's view: {leaked} of {} video frames found",
        sent.len()
    );
    assert!(leaked * 2 >= sent.len(), "{leaked} of {}", sent.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_and_leaves_start_epochs_and_the_audio_goes_on() {
    init_tracing();
    let server = server().await;
    let (alice, _ae) = join_e2ee(&server, ROOM, "alice").await;
    let (bob, _be) = join_e2ee(&server, ROOM, "bob").await;
    let first = agreed(&[&alice, &bob], &["alice", "bob"]).await;

    let (carol, carol_events) = join_e2ee(&server, ROOM, "carol").await;
    let (inbox, _rest) = collect(carol_events);
    let second = agreed(&[&alice, &bob, &carol], &["alice", "bob", "carol"]).await;
    println!(
        "epochs {} -> {}: {} -> {}",
        first.epoch, second.epoch, first.safety_code, second.safety_code
    );
    assert!(second.epoch > first.epoch);
    assert_ne!(second.safety_code, first.safety_code);

    let mic = within(20, "publish", alice.publish_audio())
        .await
        .expect("audio");
    let mut source = SpeechLike::new(3);
    let mut spoken = Spoken::default();
    speak_until_heard(&mic, &mut source, &inbox, 50, &mut spoken).await;

    // Bob leaves: the server has a member remove him, a new epoch begins
    // without him, and alice's audio reaches carol through the change.
    within(10, "bob leaves", bob.leave()).await.expect("leave");
    let speaking = async {
        speak(&mic, &mut source, 100, &mut spoken).await;
    };
    let remaining = [&alice, &carol];
    let (third, ()) = tokio::join!(agreed(&remaining, &["alice", "carol"]), speaking);
    println!("epoch {}: {}", third.epoch, third.safety_code);
    assert!(third.epoch > second.epoch);
    assert_ne!(third.safety_code, second.safety_code);
    speak(&mic, &mut source, 50, &mut spoken).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let corr = heard(&inbox, &alice.participant_id(), &spoken, 150);
    println!("carol <- alice across the leave: correlation {corr:.3}");
    assert!(corr > 0.8, "carol lost alice across the new epoch: {corr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2ee_and_plain_calls_do_not_mix() {
    init_tracing();
    let server = server().await;
    let (alice, _ae) = join_e2ee(&server, ROOM, "alice").await;
    // A call without E2EE, with an E2EE token or a plain one.
    for token in [
        server.mint_e2ee_token(ROOM, "bob", BOTH).expect("token"),
        server.mint_token(ROOM, "bob", BOTH).expect("token"),
    ] {
        let refused = within(20, "join", Call::join(&server.ws_url(), &token)).await;
        match refused {
            Err(CallError::Refused {
                code: ErrorCode::E2eeRequired,
                ..
            }) => {}
            other => panic!("expected e2ee_required, got {other:?}"),
        }
    }
    // An E2EE call does not go on in a room without it (and leaves it).
    let (plain, _pe) = join(&server, "plain", "dave", BOTH).await;
    let token = server.mint_token("plain", "carol", BOTH).expect("token");
    let options = CallOptions {
        e2ee: true,
        ..Default::default()
    };
    match within(
        20,
        "join",
        Call::join_with(&server.ws_url(), &token, options),
    )
    .await
    {
        Err(CallError::E2ee(message)) => println!("{message}"),
        other => panic!("expected an E2EE error, got {other:?}"),
    }
    // Alice and dave remain.
    within(10, "carol to be gone", async {
        while server.sfu().stats().await.expect("stats").participants != 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    drop(plain);
    // Raw payloads may not go out in clear on an audio track.
    let mic = within(20, "publish", alice.publish_audio())
        .await
        .expect("audio");
    match mic
        .write_frame(&[&[0xF8, 0xFF, 0xFE]], Duration::from_millis(20))
        .await
    {
        Err(CallError::E2ee(_)) => {}
        other => panic!("expected an E2EE error, got {other:?}"),
    }
}

/// On a link that loses a fifth of what the SFU sends, the copies RED
/// carries and the SFU's resends make up for it, encrypted as they are:
/// copies of frames already taken are skipped, not counted as replays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_call_holds_up_on_a_lossy_link() {
    init_tracing();
    let (relay, server) = server_behind_relay(
        SECRET,
        huddle_netem::Impairment {
            loss: 0.2,
            jitter: Duration::from_millis(10),
            seed: 2026,
            ..huddle_netem::Impairment::default()
        },
    )
    .await;
    let (alice, _ae) = join_e2ee(&server, ROOM, "alice").await;
    let (bob, bob_events) = join_e2ee(&server, ROOM, "bob").await;
    let (inbox, _rest) = collect_recovering(bob_events);
    agreed(&[&alice, &bob], &["alice", "bob"]).await;
    let mic = within(20, "publish", alice.publish_audio())
        .await
        .expect("audio");
    let mut source = SpeechLike::new(11);
    let mut spoken = Spoken::default();
    speak_until_heard(&mic, &mut source, &inbox, 250, &mut spoken).await;
    let stats = bob.e2ee_stats().expect("an E2EE call");
    let relayed = relay.stats();
    println!("relay: {relayed:?}; bob's E2EE receiver: {stats:?}");
    let corr = heard(&inbox, &alice.participant_id(), &spoken, 200);
    println!("bob <- alice at 20 % loss: correlation {corr:.3}");
    assert!(corr > 0.8, "{corr}");
    assert_eq!(stats.authentication_failed, 0);
    assert_eq!(stats.unknown_kid + stats.malformed + stats.replayed, 0);
}

/// The video data of `packets` (payloads by sequence number), descriptors
/// taken off, in sequence order.
fn video_data<'a>(packets: impl Iterator<Item = (u16, &'a [u8])>) -> Vec<u8> {
    let mut packets: Vec<(u16, &[u8])> = packets.collect();
    let Some(first) = packets.iter().map(|p| p.0).min() else {
        return Vec::new();
    };
    packets.sort_by_key(|p| p.0.wrapping_sub(first));
    let mut data = Vec::new();
    for (_, p) in packets {
        if let Ok(d) = parse_vp8_descriptor(p) {
            data.extend_from_slice(&p[d.len..]);
        }
    }
    data
}

/// The video data the spy got (VP8, payload type 96), in order.
fn spied_video(captured: &Captured) -> Vec<u8> {
    let spied = captured.lock().expect("lock").clone();
    video_data(
        spied
            .iter()
            .filter(|p| p.payload_type == 96)
            .enumerate()
            .map(|(i, p)| (i as u16, p.payload.as_slice())),
    )
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_frames_are_encrypted_whole_and_arrive_intact() {
    init_tracing();
    let Pair {
        server: _server,
        alice,
        _alice_events,
        bob: _bob,
        inbox,
        bob_rest: _bob_rest,
        _spy,
        captured,
        ..
    } = encrypted_pair().await;
    let camera = within(20, "publish", alice.publish_video())
        .await
        .expect("video");
    let sent = within(30, "sending", send_video(camera.clone(), 45)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let inbox = inbox.lock().expect("lock").clone();
    let video = inbox
        .values()
        .find(|r| r.kind == Some(TrackKind::Video))
        .expect("bob gets alice's video");
    let data = video_data(video.packets.iter().map(|(s, p)| (*s, p.as_slice())));
    let whole = sent.iter().filter(|f| contains(&data, f)).count();
    println!(
        "bob: {} packets, {} keyframes, {whole} of {} frames sent found whole",
        video.packets.len(),
        video.keyframes,
        sent.len()
    );
    assert!(video.keyframes >= 1, "keyframes still show as keyframes");
    assert!(
        whole * 10 >= sent.len() * 7,
        "{whole} of {} frames",
        sent.len()
    );

    let spied = spied_video(&captured);
    // Past the clear bytes (10 of a keyframe), 64 bytes of any frame.
    let leaked = sent.iter().filter(|f| contains(&spied, &f[10..74])).count();
    println!(
        "the SFU's view: {} bytes of video, {leaked} frames found",
        spied.len()
    );
    assert!(spied.len() > 10_000, "the spy got the video");
    assert_eq!(leaked, 0);
}

/// The keys a member kept after it left.
struct Kept(Arc<Mutex<GroupClient>>);

impl Kept {
    /// How many of `packets` (audio, as the SFU forwards it) its keys open.
    fn opens(&self, packets: &[Spied]) -> usize {
        let mut client = self.0.lock().expect("lock");
        let session = client.session();
        packets
            .iter()
            .filter(|p| {
                let frame = match parse_red(&p.payload) {
                    Ok(red) if p.payload_type == RED_PT => red.primary.payload,
                    _ => p.payload.as_slice(),
                };
                let mut out = Vec::new();
                let metadata = p.timestamp.to_be_bytes();
                session
                    .decrypt(Instant::now(), &metadata, frame, &mut out)
                    .is_ok()
            })
            .count()
    }
}

/// Audio packets the spy holds from `from` on.
fn audio_since(captured: &Captured, from: usize) -> Vec<Spied> {
    captured.lock().expect("lock")[from..]
        .iter()
        .filter(|p| p.payload_type != 96)
        .cloned()
        .collect()
}

/// Frames captured at the SFU before someone joined stay closed to it, and
/// so do those sent after it left; what was sent while it was a member it
/// opens (the control).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_and_a_leaver_cannot_open_what_was_sent_without_them() {
    init_tracing();
    let Pair {
        server,
        alice,
        _alice_events,
        bob,
        inbox,
        bob_rest: _bob_rest,
        _spy,
        captured,
        ..
    } = encrypted_pair().await;
    let mic = within(20, "publish", alice.publish_audio())
        .await
        .expect("audio");
    let mut source = SpeechLike::new(5);
    let mut spoken = Spoken::default();
    speak_until_heard(&mic, &mut source, &inbox, 50, &mut spoken).await;
    let before = audio_since(&captured, 0);

    // Carol joins: a new epoch; she opens none of what came before.
    let carol = key_holder(&server, ROOM, "carol").await;
    let with_carol = agreed(&[&alice, &bob], &["alice", "bob", "carol"]).await;
    carol.reach(with_carol.epoch).await;
    let mark = captured.lock().expect("lock").len();
    speak(&mic, &mut source, 50, &mut spoken).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let during = audio_since(&captured, mark);

    // Carol leaves: the rest move on without her, and what alice sends
    // from then on stays closed to her keys.
    let KeyHolder {
        client,
        leave,
        task,
    } = carol;
    let _ = leave.send(());
    let _ = task.await;
    let carol = Kept(client);
    agreed(&[&alice, &bob], &["alice", "bob"]).await;
    let mark = captured.lock().expect("lock").len();
    speak(&mic, &mut source, 50, &mut spoken).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = audio_since(&captured, mark);

    let (b, d, a) = (
        carol.opens(&before),
        carol.opens(&during),
        carol.opens(&after),
    );
    println!(
        "carol opens {b} of {} frames from before her join, {d} of {} while a member, {a} of {} after her leave",
        before.len(),
        during.len(),
        after.len()
    );
    assert!(before.len() >= 40 && during.len() >= 40 && after.len() >= 40);
    assert_eq!(b, 0, "a late joiner opens nothing sent before");
    assert!(
        d * 10 >= during.len() * 9,
        "the control: she opens what came while she was in"
    );
    assert_eq!(a, 0, "a leaver opens nothing sent after the next epoch");
}
