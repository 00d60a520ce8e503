//! Helpers of the end-to-end encryption tests: waiting for the group to
//! agree, speaking real Opus on a track and checking what a listener heard.

use super::{decode_in_order, total_packets, within, Inbox, BOTH};
use huddle::media::analysis::normalized_cross_correlation;
use huddle::media::opus_codec::{EncoderConfig, OpusEncoder};
use huddle::proto::{ClientMessage, ServerMessage};
use huddle::{
    AudioFrame, AudioLevel, AudioSource, Call, E2eeEpoch, LocalTrack, SpeechLike, TrackKind,
};
use huddle_e2ee::client::GroupClient;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::time::Instant;

/// Wait until `calls` are all in the same epoch of a group of `members`
/// (by identity), and return it.
pub async fn agreed(calls: &[&Call], members: &[&str]) -> E2eeEpoch {
    within(20, "the group to agree", async {
        loop {
            let infos: Vec<Option<E2eeEpoch>> = calls.iter().map(|c| c.e2ee()).collect();
            if let Some(Some(first)) = infos.first() {
                let mut have: Vec<&str> = first.members.iter().map(String::as_str).collect();
                have.sort_unstable();
                let mut want = members.to_vec();
                want.sort_unstable();
                if have == want && infos.iter().all(|i| i.as_ref() == Some(first)) {
                    return first.clone();
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// What a publisher sent: PCM by sequence number, and every Opus frame.
#[derive(Default)]
pub struct Spoken {
    pub pcm: BTreeMap<u16, Vec<i16>>,
    pub opus: Vec<Vec<u8>>,
}

/// Speak `frames` 20 ms frames of real Opus on `mic`, in real time,
/// recording those that went out.
pub async fn speak(mic: &LocalTrack, source: &mut SpeechLike, frames: usize, spoken: &mut Spoken) {
    let mut encoder = OpusEncoder::new(EncoderConfig::default()).expect("encoder");
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for _ in 0..frames {
        tick.tick().await;
        let Some(pcm) = source.next_frame() else {
            return;
        };
        let opus = encoder.encode(&pcm).expect("encode");
        let seq = mic.next_sequence_number().await;
        let frame = AudioFrame {
            payload: &opus,
            duration: Duration::from_millis(20),
            level: AudioLevel::of_pcm(&pcm),
        };
        if mic.write_audio_frame(frame).await.expect("write") > 0 {
            spoken.pcm.insert(seq.0, pcm);
            spoken.opus.push(opus);
        }
    }
}

/// Speak until `inbox` has audio, then `frames` more frames.
pub async fn speak_until_heard(
    mic: &LocalTrack,
    source: &mut SpeechLike,
    inbox: &Inbox,
    frames: usize,
    spoken: &mut Spoken,
) {
    within(20, "the listener to hear", async {
        while total_packets(inbox) == 0 {
            speak(mic, source, 5, spoken).await;
        }
    })
    .await;
    within(60, "speaking", speak(mic, source, frames, spoken)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// The correlation of the last `n` frames `spoken` with what `inbox` got
/// from `publisher`, after checking that at least 95 % of them came.
pub fn heard(inbox: &Inbox, publisher: &huddle::ParticipantId, spoken: &Spoken, n: usize) -> f64 {
    let inbox = inbox.lock().expect("lock").clone();
    let audio = inbox
        .values()
        .find(|r| r.publisher.as_ref() == Some(publisher) && r.kind == Some(TrackKind::Audio))
        .expect("an audio track from the publisher");
    let first = *spoken.pcm.keys().next().expect("spoke");
    let mut seqs: Vec<u16> = spoken.pcm.keys().copied().collect();
    seqs.sort_by_key(|s| s.wrapping_sub(first));
    let window = &seqs[seqs.len() - n..];
    let got = window
        .iter()
        .filter(|s| audio.packets.contains_key(s))
        .count();
    assert!(got * 100 >= n * 95, "heard {got} of the last {n} frames");
    let decoded = decode_in_order(audio, window);
    let original: Vec<i16> = window.iter().flat_map(|s| spoken.pcm[s].clone()).collect();
    normalized_cross_correlation(&original, &decoded, 4800).0
}

/// A member with no media: the E2EE signaling by hand over the WebSocket
/// (`GroupClient`, as the clients drive it), to try captured frames with
/// its keys.
pub struct KeyHolder {
    pub client: Arc<Mutex<GroupClient>>,
    pub leave: tokio::sync::oneshot::Sender<()>,
    pub task: tokio::task::JoinHandle<()>,
}

pub async fn key_holder(
    server: &huddle_server::RunningServer,
    room: &str,
    identity: &str,
) -> KeyHolder {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .expect("websocket");
    let token = server.mint_e2ee_token(room, identity, BOTH).expect("token");
    let join = ClientMessage::Join { token, e2ee: true };
    let text = serde_json::to_string(&join).expect("json");
    ws.send(Message::text(text)).await.expect("send");
    loop {
        let Some(Ok(Message::Text(text))) = ws.next().await else {
            panic!("no joined");
        };
        if let Ok(ServerMessage::Joined { .. }) = serde_json::from_str(text.as_str()) {
            break;
        }
    }
    let (client, key_package) =
        GroupClient::new(identity, room, Instant::now()).expect("group client");
    let text = serde_json::to_string(&key_package).expect("json");
    ws.send(Message::text(text)).await.expect("send");
    let client = Arc::new(Mutex::new(client));
    let (leave, mut leave_rx) = tokio::sync::oneshot::channel();
    let shared = client.clone();
    let task = tokio::spawn(async move {
        loop {
            let frame = tokio::select! {
                f = ws.next() => f,
                _ = &mut leave_rx => {
                    let text = serde_json::to_string(&ClientMessage::Leave).expect("json");
                    let _ = ws.send(Message::text(text)).await;
                    return;
                }
            };
            let Some(Ok(Message::Text(text))) = frame else {
                return;
            };
            let Ok(msg) = serde_json::from_str::<ServerMessage>(text.as_str()) else {
                continue;
            };
            let out = shared
                .lock()
                .expect("lock")
                .handle(&msg, Instant::now())
                .map(|h| h.send)
                .unwrap_or_default();
            for m in out {
                let text = serde_json::to_string(&m).expect("json");
                let _ = ws.send(Message::text(text)).await;
            }
        }
    });
    KeyHolder {
        client,
        leave,
        task,
    }
}

impl KeyHolder {
    /// Wait (up to 10 s) until it is in `epoch`.
    pub async fn reach(&self, epoch: u64) {
        within(10, "the key holder in the epoch", async {
            while self.epoch() != Some(epoch) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }

    pub fn epoch(&self) -> Option<u64> {
        self.client
            .lock()
            .expect("lock")
            .epoch_info()
            .map(|e| e.epoch)
    }
}
