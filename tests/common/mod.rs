//! Helpers shared by the end-to-end tests: a server in process, media senders
//! and receivers built from real Opus and synthetic VP8.
#![allow(dead_code)]

pub mod e2ee;
pub mod relay;
pub mod spy;

use huddle::proto::TrackKind;
use huddle::{AudioFrame, AudioLevel, Call, CallEvent, CallEvents, LocalTrack, RemoteTrack};
use huddle_media::opus_codec::{EncoderConfig, OpusDecoder, OpusEncoder};
use huddle_media::rtp::{parse_red, SyntheticVideo, SyntheticVideoConfig, Vp8Packetizer, RED_PT};
use huddle_media::source::{AudioSource, SpeechLike};
use huddle_media::Channels;
use huddle_sfu::Rights;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const BOTH: Rights = Rights {
    publish: true,
    subscribe: true,
};

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}

/// Bound every wait of a test.
pub async fn within<T>(secs: u64, what: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {secs} s waiting for {what}"),
    }
}

/// Audio a sender produced: per RTP sequence number, the PCM frame it encoded.
#[derive(Default, Clone)]
pub struct SentAudio(pub Arc<Mutex<BTreeMap<u16, Vec<i16>>>>);

/// Send `frames` 20 ms frames of a speech-like signal (seeded) as real Opus,
/// paced in real time. Records which PCM went out under which sequence number.
pub async fn send_speech(track: Arc<LocalTrack>, seed: u64, frames: usize, sent: SentAudio) {
    let mut source = SpeechLike::new(seed);
    let mut encoder = OpusEncoder::new(EncoderConfig::default()).expect("opus encoder");
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for _ in 0..frames {
        tick.tick().await;
        let Some(pcm) = source.next_frame() else {
            break;
        };
        let opus = encoder.encode(&pcm).expect("encode");
        let seq = track.next_sequence_number().await;
        let frame = AudioFrame {
            payload: &opus,
            duration: Duration::from_millis(20),
            level: AudioLevel::of_pcm(&pcm),
        };
        if track.write_audio_frame(frame).await.is_err() {
            break;
        }
        sent.0.lock().expect("lock").insert(seq.0, pcm);
    }
}

/// Send synthetic VP8 at 15 fps for `frames` frames; returns the frames
/// that went out.
pub async fn send_video(track: Arc<LocalTrack>, frames: usize) -> Vec<Vec<u8>> {
    let mut video = SyntheticVideo::new(SyntheticVideoConfig {
        fps: 15,
        keyframe_interval: 15,
        ..Default::default()
    })
    .expect("video");
    let mut packetizer = Vp8Packetizer::new(1, 96, 0).expect("packetizer");
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / 15));
    let mut sent = Vec::new();
    for _ in 0..frames {
        tick.tick().await;
        let frame = video.next_frame();
        let packets = packetizer
            .packetize(&frame.data, frame.timestamp)
            .expect("packetize");
        let payloads: Vec<&[u8]> = packets.iter().map(|p| p.payload.as_slice()).collect();
        let frame_time = Duration::from_secs(1) / 15;
        match track.write_frame(&payloads, frame_time).await {
            Ok(0) => {}
            Ok(_) => sent.push(frame.data),
            Err(_) => break,
        }
    }
    sent
}

/// What one participant received from one remote track.
#[derive(Default, Debug, Clone)]
pub struct Received {
    pub publisher: Option<huddle::ParticipantId>,
    pub kind: Option<TrackKind>,
    /// Payload per sequence number; of a RED audio packet, its primary
    /// block (the packet's own Opus frame).
    pub packets: BTreeMap<u16, Vec<u8>>,
    pub keyframes: usize,
}

pub type Inbox = Arc<Mutex<BTreeMap<huddle::TrackId, Received>>>;

/// Packets received from anyone, over all of a participant's tracks.
pub fn total_packets(inbox: &Inbox) -> usize {
    inbox
        .lock()
        .expect("lock")
        .values()
        .map(|r| r.packets.len())
        .sum()
}

/// Two participants speak (`a` on `a_mic`, `b` on `b_mic`), 100 ms at a
/// time, until each has heard 50 packets from the other (`a_inbox` is what
/// `a` received), within 30 s.
pub async fn speak_until_both_hear(
    a_mic: &Arc<LocalTrack>,
    a_inbox: &Inbox,
    b_mic: &Arc<LocalTrack>,
    b_inbox: &Inbox,
) {
    within(30, "audio both ways", async {
        let mut seed = 0;
        while total_packets(a_inbox) < 50 || total_packets(b_inbox) < 50 {
            seed += 1;
            let x = send_speech(a_mic.clone(), seed, 5, SentAudio::default());
            let y = send_speech(b_mic.clone(), seed + 1000, 5, SentAudio::default());
            tokio::join!(x, y);
        }
    })
    .await;
}

/// Read every remote track of a call into an [`Inbox`] keyed by track id,
/// and forward the other events to `rest`.
pub fn collect(events: CallEvents) -> (Inbox, tokio::sync::mpsc::UnboundedReceiver<CallEvent>) {
    collect_as(events, false)
}

/// [`collect`], with the frames RED copies bring in recorded too, under
/// the sequence number of the packet that lost them (what a jitter buffer
/// gets).
pub fn collect_recovering(
    events: CallEvents,
) -> (Inbox, tokio::sync::mpsc::UnboundedReceiver<CallEvent>) {
    collect_as(events, true)
}

fn collect_as(
    mut events: CallEvents,
    recover: bool,
) -> (Inbox, tokio::sync::mpsc::UnboundedReceiver<CallEvent>) {
    let inbox: Inbox = Default::default();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let ib = inbox.clone();
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            match ev {
                CallEvent::TrackSubscribed(track) => {
                    tokio::spawn(read_track(track, ib.clone(), recover));
                }
                other => {
                    let _ = tx.send(other);
                }
            }
        }
    });
    (inbox, rx)
}

async fn read_track(track: RemoteTrack, inbox: Inbox, recover: bool) {
    let id = track.track_id().clone();
    {
        let mut ib = inbox.lock().expect("lock");
        let r = ib.entry(id.clone()).or_default();
        r.publisher = Some(track.participant_id().clone());
        r.kind = Some(track.kind());
    }
    while let Some(p) = track.recv().await {
        let key =
            huddle_media::rtp::is_vp8_keyframe(&p.payload) && track.kind() == TrackKind::Video;
        // RED (the SFU forwards it as it is; the calling crate takes it):
        // the primary block is this packet's own Opus frame.
        let red = (track.kind() == TrackKind::Audio && p.payload_type == RED_PT)
            .then(|| parse_red(&p.payload).ok())
            .flatten();
        let payload = match &red {
            Some(red) => red.primary.payload.to_vec(),
            None => p.payload.to_vec(),
        };
        let mut ib = inbox.lock().expect("lock");
        let r = ib.entry(id.clone()).or_default();
        if key {
            r.keyframes += 1;
        }
        r.packets.insert(p.sequence_number.0, payload);
        if let (true, Some(red)) = (recover, &red) {
            for f in red.frames(p.sequence_number.0, p.timestamp, 960).skip(1) {
                r.packets.entry(f.seq).or_insert_with(|| f.payload.to_vec());
            }
        }
    }
}

/// Decode received Opus packets for the given sequence numbers in order,
/// concealing the missing ones.
pub fn decode_in_order(received: &Received, seqs: &[u16]) -> Vec<i16> {
    let mut dec = OpusDecoder::new(Channels::Mono).expect("decoder");
    let mut out = Vec::new();
    for s in seqs {
        let frame = match received.packets.get(s) {
            Some(p) => dec.decode(p).expect("decode"),
            None => dec.conceal().expect("plc"),
        };
        out.extend(frame);
    }
    out
}

/// Join `room` as `identity`.
pub async fn join(
    server: &huddle_server::RunningServer,
    room: &str,
    identity: &str,
    rights: Rights,
) -> (Call, CallEvents) {
    let token = server.mint_token(room, identity, rights).expect("token");
    within(20, "join", Call::join(&server.ws_url(), &token))
        .await
        .expect("join")
}

/// Join `room` as `identity` in an end-to-end encrypted room
/// (`CallOptions::e2ee`).
pub async fn join_e2ee(
    server: &huddle_server::RunningServer,
    room: &str,
    identity: &str,
) -> (Call, CallEvents) {
    let token = server.mint_e2ee_token(room, identity, BOTH).expect("token");
    let options = huddle::CallOptions {
        e2ee: true,
        ..Default::default()
    };
    within(
        20,
        "join",
        Call::join_with(&server.ws_url(), &token, options),
    )
    .await
    .expect("join")
}

/// The first event `pick` accepts (others are skipped), within `secs`.
/// Panics if the call ends first.
pub async fn next_event<T>(
    events: &mut CallEvents,
    secs: u64,
    what: &str,
    mut pick: impl FnMut(CallEvent) -> Option<T>,
) -> T {
    within(secs, what, async {
        loop {
            match events.recv().await {
                Some(ev) => {
                    if let Some(v) = pick(ev) {
                        break v;
                    }
                }
                None => panic!("the call ended while waiting for {what}"),
            }
        }
    })
    .await
}

/// A server on loopback whose media port is reached through a huddle-netem
/// relay impairing what the SFU sends with `to_client` (the relay fronts
/// one media port: one SFU worker).
pub async fn server_behind_relay(
    secret: &str,
    to_client: huddle_netem::Impairment,
) -> (huddle_netem::Relay, huddle_server::RunningServer) {
    let (relay, media) = huddle_netem::Relay::in_front_of_local_sfu(to_client)
        .await
        .expect("media relay");
    let mut config = huddle_server::ServerConfig::ephemeral(secret);
    config.media_udp = media;
    config.media_public = Some(relay.local_addr());
    config.workers = 1;
    let server = huddle_server::start(config).await.expect("server");
    (relay, server)
}
