//! [`Call`]: one participant in one room.

use crate::error::CallError;
use crate::peer::{self, Peer};
use crate::sender::AudioSender;
use crate::signal::{self, Outbox};
use crate::track::{as_local, remote_track, LocalTrack, RemoteTrack};
use huddle_media::opus_codec::EncoderConfig;
use huddle_media::source::AudioSource;
use huddle_proto::{
    ClientMessage, ErrorCode, IceCandidate, ParticipantInfo, PcRole, ServerMessage, TrackInfo,
    TrackKind,
};
use huddle_wire::codecs;
use huddle_wire::local_track::single_ssrc_track;
use rtc::rtp_transceiver::rtp_sender::RTCRtpCodec;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Mutex};
use tracing::{debug, warn};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{PeerConnection, RTCIceCandidateInit, RTCSessionDescription};
use webrtc::rtp_transceiver::RtpSender;

/// How long to wait for the server or the media connection.
const WAIT: Duration = Duration::from_secs(15);

/// Options for [`Call::join_with`].
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// Local UDP address the peer connections bind. `None` picks `127.0.0.1:0`
    /// when the server is on a loopback address, else `0.0.0.0:0`.
    pub bind: Option<String>,
}

/// What happens in the room, in order.
#[derive(Debug)]
#[non_exhaustive]
pub enum CallEvent {
    /// Someone joined.
    ParticipantJoined(ParticipantInfo),
    /// Someone left, was removed or timed out.
    ParticipantLeft {
        /// Who.
        participant_id: String,
    },
    /// A participant (this one included) published a track.
    TrackPublished {
        /// Publisher.
        participant_id: String,
        /// The track.
        track: TrackInfo,
    },
    /// A track went away.
    TrackUnpublished {
        /// Publisher.
        participant_id: String,
        /// Track id.
        track_id: String,
    },
    /// A track was muted or unmuted.
    MuteChanged {
        /// Publisher.
        participant_id: String,
        /// Track id.
        track_id: String,
        /// New state.
        muted: bool,
    },
    /// The room's active speaker changed (`None`: the last one left).
    ActiveSpeaker {
        /// The participant speaking now.
        participant_id: Option<String>,
    },
    /// Media of another participant's track started arriving.
    TrackSubscribed(RemoteTrack),
    /// The server reported an error not tied to a pending request.
    Error {
        /// Code.
        code: ErrorCode,
        /// Explanation.
        message: String,
    },
    /// The signaling connection closed; the call is over.
    Disconnected,
}

/// The receiving end of a call's events.
pub type CallEvents = mpsc::UnboundedReceiver<CallEvent>;

struct Inner {
    outbox: Outbox,
    bind: String,
    can_publish: bool,
    publisher: Mutex<Option<Peer>>,
    subscriber: Mutex<Option<Peer>>,
    /// The answer to the publisher offer in flight.
    pending_answer: Mutex<Option<oneshot::Sender<Result<String, CallError>>>>,
    /// One publisher negotiation at a time.
    negotiation: Mutex<()>,
    /// Own tracks: local track id -> server track id.
    own_tracks: Mutex<HashMap<String, String>>,
    /// Senders of the published tracks, by local track id (to unpublish).
    senders: Mutex<HashMap<String, Arc<dyn RtpSender>>>,
    events: mpsc::UnboundedSender<CallEvent>,
    remote_tracks: mpsc::UnboundedSender<Arc<dyn TrackRemote>>,
}

/// A participant in a room: publishes local tracks, receives everyone else's.
pub struct Call {
    inner: Arc<Inner>,
    room: String,
    me: ParticipantInfo,
    others: Vec<ParticipantInfo>,
    next_track: std::sync::atomic::AtomicU32,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("room", &self.room)
            .field("participant", &self.me.id)
            .finish()
    }
}

fn default_bind(url: &str) -> Result<String, CallError> {
    let parsed = url::Url::parse(url).map_err(|e| CallError::BadUrl {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    if !matches!(parsed.scheme(), "ws" | "wss") {
        return Err(CallError::BadUrl {
            url: url.to_owned(),
            reason: "the scheme must be ws or wss".into(),
        });
    }
    let loopback = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    Ok(if loopback { "127.0.0.1:0" } else { "0.0.0.0:0" }.to_owned())
}

impl Call {
    /// Join the room the token grants, through the signaling WebSocket at
    /// `url` (e.g. `ws://127.0.0.1:7880/ws`).
    pub async fn join(url: &str, token: &str) -> Result<(Call, CallEvents), CallError> {
        Self::join_with(url, token, CallOptions::default()).await
    }

    /// [`Call::join`] with options.
    pub async fn join_with(
        url: &str,
        token: &str,
        options: CallOptions,
    ) -> Result<(Call, CallEvents), CallError> {
        let bind = match options.bind {
            Some(b) => b,
            None => default_bind(url)?,
        };
        let (outbox, mut inbox) = signal::connect(url).await?;
        outbox
            .send(ClientMessage::Join {
                token: token.to_owned(),
            })
            .map_err(|_| CallError::Closed)?;
        let first = tokio::time::timeout(WAIT, inbox.recv())
            .await
            .map_err(|_| CallError::Timeout("the join answer"))?
            .ok_or(CallError::Closed)?;
        let (room, me, others, can_publish) = match first {
            ServerMessage::Joined {
                room,
                participant,
                others,
                can_publish,
                ..
            } => (room, participant, others, can_publish),
            ServerMessage::Error { code, message } => {
                return Err(CallError::Refused { code, message })
            }
            other => {
                return Err(CallError::Protocol(format!(
                    "expected joined, got {other:?}"
                )))
            }
        };
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (tracks_tx, tracks_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            outbox,
            bind,
            can_publish,
            publisher: Mutex::new(None),
            subscriber: Mutex::new(None),
            pending_answer: Mutex::new(None),
            negotiation: Mutex::new(()),
            own_tracks: Mutex::new(HashMap::new()),
            senders: Mutex::new(HashMap::new()),
            events: events_tx,
            remote_tracks: tracks_tx,
        });
        tokio::spawn(session(inner.clone(), inbox));
        tokio::spawn(announce_tracks(inner.events.clone(), tracks_rx));
        Ok((
            Call {
                inner,
                room,
                me,
                others,
                next_track: Default::default(),
            },
            events_rx,
        ))
    }

    /// The room joined.
    pub fn room(&self) -> &str {
        &self.room
    }

    /// This participant's server-assigned id.
    pub fn participant_id(&self) -> &str {
        &self.me.id
    }

    /// Who was in the room at join time.
    pub fn others_at_join(&self) -> &[ParticipantInfo] {
        &self.others
    }

    /// Publish an Opus audio track. Write 20 ms Opus frames into it with
    /// `write_frame(&[frame], 960)`.
    pub async fn publish_audio(&self) -> Result<Arc<LocalTrack>, CallError> {
        self.publish(TrackKind::Audio, codecs::opus(), codecs::OPUS_PT)
            .await
    }

    /// Publish an audio track and send `source` on it (a microphone, a WAV
    /// file, a synthetic signal: any [`AudioSource`]), Opus-encoded with
    /// `config` (in-band FEC and DTX on by default). Stops when the source
    /// ends or the returned sender is dropped; the track stays published
    /// (silent) until [`Call::unpublish`]`(sender.track())`.
    ///
    /// ```no_run
    /// # async fn demo(call: &huddle::Call) -> Result<(), huddle::CallError> {
    /// use huddle_media::device::Microphone;
    /// let mic = Microphone::open(None)?; // a clear error on a machine without one
    /// let sending = call.send_audio(Box::new(mic), Default::default()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn send_audio(
        &self,
        source: Box<dyn AudioSource + Send>,
        config: EncoderConfig,
    ) -> Result<AudioSender, CallError> {
        let track = self.publish_audio().await?;
        crate::sender::start(track, source, config)
    }

    /// Publish a VP8 video track. Write each encoded frame as its RTP payloads
    /// (VP8 payload descriptor included) with `write_frame(&payloads, 90000 / fps)`.
    pub async fn publish_video(&self) -> Result<Arc<LocalTrack>, CallError> {
        self.publish(TrackKind::Video, codecs::vp8(), codecs::VP8_PT)
            .await
    }

    async fn publish(
        &self,
        kind: TrackKind,
        codec: RTCRtpCodec,
        default_pt: u8,
    ) -> Result<Arc<LocalTrack>, CallError> {
        if !self.inner.can_publish {
            return Err(CallError::CannotPublish);
        }
        let _one_at_a_time = self.inner.negotiation.lock().await;
        let n = self
            .next_track
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let label = match kind {
            TrackKind::Audio => "audio",
            TrackKind::Video => "video",
        };
        let track_id = format!("{label}-{n}");
        let ssrc: u32 = rand::random();
        let rtp = Arc::new(TrackLocalStaticRTP::new(single_ssrc_track(
            self.me.id.clone(),
            track_id.clone(),
            kind,
            codec.clone(),
            ssrc,
        )));
        let (pc, mut state) = {
            let mut guard = self.inner.publisher.lock().await;
            if guard.is_none() {
                *guard = Some(
                    peer::build(
                        PcRole::Publisher,
                        &self.inner.bind,
                        self.inner.outbox.clone(),
                        None,
                    )
                    .await?,
                );
            }
            let Some(publisher) = guard.as_ref() else {
                return Err(CallError::Closed);
            };
            (publisher.pc.clone(), publisher.state.clone())
        };
        let sender = pc.add_track(as_local(&rtp)).await?;
        self.offer_publisher(&pc).await?;
        peer::wait_connected(&mut state, WAIT).await?;
        let payload_type = sender
            .get_parameters()
            .await?
            .rtp_parameters
            .codecs
            .iter()
            .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(&codec.mime_type))
            .map(|c| c.payload_type)
            .unwrap_or(default_pt);
        self.inner
            .senders
            .lock()
            .await
            .insert(track_id.clone(), sender);
        Ok(Arc::new(LocalTrack::new(
            rtp,
            track_id,
            kind,
            ssrc,
            payload_type,
        )))
    }

    /// Offer the publisher connection's current state and apply the answer.
    /// Call with the negotiation lock held.
    async fn offer_publisher(&self, pc: &Arc<dyn PeerConnection>) -> Result<(), CallError> {
        let offer = pc.create_offer(None).await?;
        pc.set_local_description(offer).await?;
        let sdp = pc
            .local_description()
            .await
            .ok_or_else(|| CallError::WebRtc("no local description".into()))?
            .sdp;
        let (tx, rx) = oneshot::channel();
        *self.inner.pending_answer.lock().await = Some(tx);
        self.inner
            .outbox
            .send(ClientMessage::Offer { sdp })
            .map_err(|_| CallError::Closed)?;
        if let Some(p) = self.inner.publisher.lock().await.as_ref() {
            p.open_trickle();
        }
        let answer = tokio::time::timeout(WAIT, rx)
            .await
            .map_err(|_| CallError::Timeout("the publisher answer"))?
            .map_err(|_| CallError::Closed)??;
        pc.set_remote_description(RTCSessionDescription::answer(answer)?)
            .await?;
        Ok(())
    }

    /// Stop publishing a track: it is renegotiated away, the room is told
    /// (`track_unpublished`) and everyone stops receiving it. Writing to it
    /// afterwards sends nothing. Stop its [`crate::AudioSender`] first if it
    /// has one (a sender whose source ended leaves its track published until
    /// this is called).
    pub async fn unpublish(&self, track: &LocalTrack) -> Result<(), CallError> {
        let _one_at_a_time = self.inner.negotiation.lock().await;
        let sender = self
            .inner
            .senders
            .lock()
            .await
            .remove(track.id())
            .ok_or_else(|| CallError::Refused {
                code: ErrorCode::UnknownTrack,
                message: "not a published track of this call".into(),
            })?;
        let pc = match self.inner.publisher.lock().await.as_ref() {
            Some(p) => p.pc.clone(),
            None => return Err(CallError::Closed),
        };
        pc.remove_track(&sender).await?;
        self.offer_publisher(&pc).await?;
        self.inner.own_tracks.lock().await.remove(track.id());
        Ok(())
    }

    /// Mute or unmute a published track: nothing is sent while muted, and the
    /// room is told. Fails with `unknown_track` until the SFU has seen the
    /// track's first packet.
    pub async fn set_muted(&self, track: &LocalTrack, muted: bool) -> Result<(), CallError> {
        let server_id = self
            .inner
            .own_tracks
            .lock()
            .await
            .get(track.id())
            .cloned()
            .ok_or_else(|| CallError::Refused {
                code: ErrorCode::UnknownTrack,
                message: "the server has not announced this track yet".into(),
            })?;
        track.set_muted(muted);
        self.inner
            .outbox
            .send(ClientMessage::Mute {
                track_id: server_id,
                muted,
            })
            .map_err(|_| CallError::Closed)
    }

    /// The server's id of one of this participant's tracks, once announced.
    pub async fn server_track_id(&self, track: &LocalTrack) -> Option<String> {
        self.inner.own_tracks.lock().await.get(track.id()).cloned()
    }

    /// Leave the room: tell the server, close the media connections.
    pub async fn leave(self) -> Result<(), CallError> {
        let _ = self.inner.outbox.send(ClientMessage::Leave);
        close_all(&self.inner).await;
        Ok(())
    }
}

impl Drop for Call {
    /// Dropping a call leaves the room: the server is told at once and the
    /// media connections close when the signaling session ends.
    fn drop(&mut self) {
        let _ = self.inner.outbox.send(ClientMessage::Leave);
    }
}

async fn close_all(inner: &Inner) {
    for slot in [&inner.publisher, &inner.subscriber] {
        if let Some(p) = slot.lock().await.take() {
            if let Err(e) = p.pc.close().await {
                debug!("close: {e}");
            }
        }
    }
}

/// Turn remote tracks from the subscriber connection into events.
async fn announce_tracks(
    events: mpsc::UnboundedSender<CallEvent>,
    mut tracks: mpsc::UnboundedReceiver<Arc<dyn TrackRemote>>,
) {
    while let Some(t) = tracks.recv().await {
        let _ = events.send(CallEvent::TrackSubscribed(remote_track(t).await));
    }
}

/// Handle what the server sends for the life of the call.
async fn session(inner: Arc<Inner>, mut inbox: mpsc::UnboundedReceiver<ServerMessage>) {
    while let Some(msg) = inbox.recv().await {
        let event = match msg {
            ServerMessage::Answer { sdp } => {
                if let Some(tx) = inner.pending_answer.lock().await.take() {
                    let _ = tx.send(Ok(sdp));
                }
                None
            }
            ServerMessage::Offer { sdp } => {
                if let Err(e) = answer_subscriber(&inner, sdp).await {
                    warn!("cannot answer the subscriber offer: {e}");
                    Some(CallEvent::Error {
                        code: ErrorCode::BadSdp,
                        message: e.to_string(),
                    })
                } else {
                    None
                }
            }
            ServerMessage::Candidate { pc, candidate } => {
                add_candidate(&inner, pc, candidate).await;
                None
            }
            ServerMessage::ParticipantJoined { participant } => {
                Some(CallEvent::ParticipantJoined(participant))
            }
            ServerMessage::ParticipantLeft { participant_id } => {
                Some(CallEvent::ParticipantLeft { participant_id })
            }
            ServerMessage::ParticipantsChanged { joined, left } => {
                // A batch: one event per change, joins first.
                for participant in joined {
                    let _ = inner.events.send(CallEvent::ParticipantJoined(participant));
                }
                for participant_id in left {
                    let _ = inner
                        .events
                        .send(CallEvent::ParticipantLeft { participant_id });
                }
                None
            }
            ServerMessage::TrackPublished {
                participant_id,
                track,
            } => {
                if let Some(src) = &track.source_track_id {
                    inner
                        .own_tracks
                        .lock()
                        .await
                        .insert(src.clone(), track.id.clone());
                }
                Some(CallEvent::TrackPublished {
                    participant_id,
                    track,
                })
            }
            ServerMessage::TrackUnpublished {
                participant_id,
                track_id,
            } => Some(CallEvent::TrackUnpublished {
                participant_id,
                track_id,
            }),
            ServerMessage::MuteChanged {
                participant_id,
                track_id,
                muted,
            } => Some(CallEvent::MuteChanged {
                participant_id,
                track_id,
                muted,
            }),
            ServerMessage::ActiveSpeaker { participant_id } => {
                Some(CallEvent::ActiveSpeaker { participant_id })
            }
            ServerMessage::Error { code, message } => {
                // A refused offer fails the publish waiting for its answer.
                if matches!(code, ErrorCode::BadSdp | ErrorCode::Forbidden) {
                    if let Some(tx) = inner.pending_answer.lock().await.take() {
                        let _ = tx.send(Err(CallError::Refused {
                            code,
                            message: message.clone(),
                        }));
                    }
                }
                Some(CallEvent::Error { code, message })
            }
            ServerMessage::Pong | ServerMessage::Joined { .. } => None,
        };
        if let Some(ev) = event {
            let _ = inner.events.send(ev);
        }
    }
    close_all(&inner).await;
    let _ = inner.events.send(CallEvent::Disconnected);
}

async fn answer_subscriber(inner: &Inner, sdp: String) -> Result<(), CallError> {
    let mut guard = inner.subscriber.lock().await;
    if guard.is_none() {
        *guard = Some(
            peer::build(
                PcRole::Subscriber,
                &inner.bind,
                inner.outbox.clone(),
                Some(inner.remote_tracks.clone()),
            )
            .await?,
        );
    }
    let Some(sub) = guard.as_ref() else {
        return Err(CallError::Closed);
    };
    sub.pc
        .set_remote_description(RTCSessionDescription::offer(sdp)?)
        .await?;
    let answer = sub.pc.create_answer(None).await?;
    sub.pc.set_local_description(answer).await?;
    let sdp = sub
        .pc
        .local_description()
        .await
        .ok_or_else(|| CallError::WebRtc("no local description".into()))?
        .sdp;
    inner
        .outbox
        .send(ClientMessage::Answer { sdp })
        .map_err(|_| CallError::Closed)?;
    sub.open_trickle();
    Ok(())
}

async fn add_candidate(inner: &Inner, role: PcRole, c: IceCandidate) {
    let slot = match role {
        PcRole::Publisher => &inner.publisher,
        PcRole::Subscriber => &inner.subscriber,
    };
    if let Some(p) = slot.lock().await.as_ref() {
        let init = RTCIceCandidateInit {
            candidate: c.candidate,
            sdp_mid: c.sdp_mid,
            sdp_mline_index: c.sdp_mline_index,
            username_fragment: c.username_fragment,
            ..Default::default()
        };
        if let Err(e) = p.pc.add_ice_candidate(init).await {
            debug!("server candidate rejected: {e}");
        }
    }
}
