//! [`Call`]: one participant in one room.

mod restart;

use crate::e2ee::E2ee;
use crate::endpoint;
use crate::error::CallError;
use crate::event::{CallEvent, CallEvents};
use crate::ice::{IceConfig, IceServer};
use crate::ids::{ParticipantId, TrackId};
use crate::loss_reports::follow_loss_reports;
use crate::media_path;
use crate::participant::Participant;
use crate::pcm_send::PcmSender;
use crate::peer::{self, Peer};
use crate::red::negotiated_red;
use crate::red_recv::remote_red;
use crate::red_send::RedSender;
use crate::sender::AudioSender;
use crate::signal::{self, Inbound, Outbox};
use crate::simulcast::{LayerExtensions, LayerSwitches, SimulcastTrack};
use crate::track::{as_local, remote_track, LocalTrack};
use crate::turn_doorway::Doorways;
use bytes::Bytes;
use huddle_media::opus_codec::EncoderConfig;
use huddle_media::source::AudioSource;
use huddle_proto::{
    ClientMessage, ErrorCode, IceCandidate, ParticipantInfo, PcRole, ServerMessage, TrackKind,
};
use huddle_wire::codecs;
use huddle_wire::local_track::{simulcast_track, single_ssrc_track};
use rtc::rtp_transceiver::rtp_sender::RTCRtpCodec;
use rtc::sdp::extmap::{SDES_MID_URI, SDES_RTP_STREAM_ID_URI};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{PeerConnection, RTCIceCandidateInit, RTCSessionDescription};
use webrtc::rtp_transceiver::RtpSender;

/// How long to wait for the server or the media connection, unless
/// [`CallOptions::timeout`] says otherwise.
const WAIT: Duration = Duration::from_secs(15);

/// Options for [`Call::join_with`].
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// Local UDP address the peer connections bind. `None` picks `127.0.0.1:0`
    /// when the server is on a loopback address, else every interface of
    /// the server's address family (`0.0.0.0:0` or `[::]:0`), listed again
    /// at each ICE restart: when the network changes (a new address, a
    /// handover from Wi-Fi to LTE) the call restarts ICE from the
    /// interfaces there are now. An address given here is bound as given,
    /// after a restart too.
    pub bind: Option<String>,
    /// STUN and TURN servers for the media connections, besides those the
    /// huddle server hands out with the join (TURN with credentials of this
    /// participant's own, when its operator set one up). None by default:
    /// the server's own candidates (UDP, and TCP as a fallback) are enough
    /// wherever its ports can be reached.
    pub ice_servers: Vec<IceServer>,
    /// Use relayed paths only (WebRTC's `iceTransportPolicy: "relay"`):
    /// media goes through a TURN server, of `ice_servers` or of those the
    /// huddle server hands out with the join, and it needs one. For testing
    /// a relay, or to keep the local address from the server.
    pub relay_only: bool,
    /// How long to wait for each of the server's answers and for a media
    /// connection to come up. `None`: 15 s.
    pub timeout: Option<Duration>,
    /// Certificates (DER) trusted for `turns:` servers besides the web's
    /// root certificates (webpki-roots): a private CA, or a test server's
    /// own certificate.
    pub tls_roots: Vec<Vec<u8>>,
    /// Take part in end-to-end encryption, which a room whose tokens say
    /// `e2ee` requires (it refuses a call without it with
    /// [`ErrorCode::E2eeRequired`]). A call with it does not go on in a
    /// room without it: the join fails with [`CallError::E2ee`]. The call
    /// joins the room's MLS group and encrypts every audio and video frame
    /// with SFrame under its current epoch's key; see the crate
    /// documentation, "End-to-end encryption".
    pub e2ee: bool,
}

/// One of this call's published tracks.
struct OwnTrack {
    /// Its sender on the publisher connection (to unpublish).
    sender: Arc<dyn RtpSender>,
    /// The server's id, once it announced the track.
    server_id: Option<TrackId>,
    /// A mute state set before the server knew the track, to send then.
    pending_mute: Option<bool>,
    /// A simulcast track's layers, switched by the server (dynacast).
    layers: Option<Arc<LayerSwitches>>,
    /// Publication order, to publish again in the same order after a
    /// rejoin.
    order: u32,
    /// The mute state the app last set.
    muted: bool,
    /// The SSRC whose loss reports drive its RED redundancy, if it sends RED.
    red_ssrc: Option<u32>,
    /// Set while the call joins again (shared with the track's handle).
    suspended: Arc<AtomicBool>,
}

/// Everything about the call that changes, behind one lock (never held
/// across an await).
struct State {
    /// This participant (a rejoin gives it a new id).
    me: Participant,
    /// The local address new peer connections bind (chosen again when the
    /// call joins again: the network may have changed).
    bind: String,
    publisher: Option<Peer>,
    subscriber: Option<Peer>,
    /// The answer to the publisher offer in flight.
    pending_answer: Option<oneshot::Sender<Result<String, CallError>>>,
    /// Own tracks by local track id.
    own: HashMap<String, OwnTrack>,
    /// The other participants, in join order.
    others: Vec<Participant>,
    /// Number for the next local track id.
    next_track: u32,
}

impl State {
    /// A call just joined as `me`, with `others` in the room, its
    /// connections bound to `bind`.
    fn new(me: Participant, others: Vec<Participant>, bind: String) -> Self {
        Self {
            me,
            bind,
            publisher: None,
            subscriber: None,
            pending_answer: None,
            own: HashMap::new(),
            others,
            next_track: 0,
        }
    }
}

struct Inner {
    outbox: Outbox,
    /// The server's signaling endpoint.
    endpoint: endpoint::Endpoint,
    /// The bind address the app gave, if it did.
    bind_given: Option<String>,
    /// The server's address, when its name resolved at join: the route to
    /// it is watched for a change of local address (see `media_path`).
    server: Option<std::net::SocketAddr>,
    /// Tells the signaling link the local network changed.
    network_changed: signal::NetworkChanged,
    /// ICE servers and policy of the media connections: the app's servers,
    /// then the server's with the latest credentials it sent.
    ice: std::sync::Mutex<IceConfig>,
    /// Where webrtc-rs reaches TURN servers over TCP and TLS.
    doorways: std::sync::Mutex<Doorways>,
    /// The app's own ICE servers (`CallOptions::ice_servers`).
    app_ice_servers: Vec<IceServer>,
    /// How long to wait for the server or a media connection.
    timeout: Duration,
    /// End-to-end encryption, in an E2EE call.
    e2ee: Option<Arc<E2ee>>,
    can_publish: bool,
    /// One publisher negotiation at a time (held across its awaits).
    negotiation: tokio::sync::Mutex<()>,
    state: std::sync::Mutex<State>,
    events: mpsc::UnboundedSender<CallEvent>,
    remote_tracks: mpsc::UnboundedSender<Arc<dyn TrackRemote>>,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; go on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The ICE servers and policy media connections use now.
    fn ice(&self) -> IceConfig {
        self.ice.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The participant with this id (this one included); an id the call
    /// has not heard of keeps its id as its name.
    fn who(&self, id: &ParticipantId) -> Participant {
        let st = self.state();
        if *id == st.me.id {
            return st.me.clone();
        }
        st.others
            .iter()
            .find(|p| p.id == *id)
            .cloned()
            .unwrap_or_else(|| Participant::new(id.clone(), id.to_string()))
    }

    /// The publisher connection (built on first use) and its state watch.
    /// Call with the negotiation lock held.
    async fn publisher(
        &self,
    ) -> Result<
        (
            Arc<dyn PeerConnection>,
            tokio::sync::watch::Receiver<webrtc::peer_connection::RTCPeerConnectionState>,
        ),
        CallError,
    > {
        if let Some(p) = self.state().publisher.as_ref() {
            return Ok((p.pc.clone(), p.state.clone()));
        }
        let bind = self.state().bind.clone();
        let built = peer::build(
            PcRole::Publisher,
            &bind,
            &self.ice(),
            self.outbox.clone(),
            None,
        )
        .await?;
        let handles = (built.pc.clone(), built.state.clone());
        self.state().publisher = Some(built);
        Ok(handles)
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
        {
            let mut st = self.state();
            st.pending_answer = Some(tx);
            self.outbox
                .send(ClientMessage::Offer { sdp })
                .map_err(|_| CallError::Closed)?;
            if let Some(p) = st.publisher.as_ref() {
                p.open_trickle();
            }
        }
        let answer = tokio::time::timeout(self.timeout, rx)
            .await
            .map_err(|_| CallError::Timeout("the publisher answer"))?
            .map_err(|_| CallError::Closed)??;
        pc.set_remote_description(RTCSessionDescription::answer(answer.clone())?)
            .await?;
        let tcp = self.state().publisher.as_ref().map(|p| p.tcp.clone());
        if let Some(tcp) = tcp {
            tcp.after_remote_description(&answer);
        }
        Ok(())
    }

    /// The MID of `sender`'s transceiver on the publisher connection.
    async fn mid_of(&self, sender: &Arc<dyn RtpSender>) -> Result<Option<String>, CallError> {
        let Some(pc) = self.state().publisher.as_ref().map(|p| p.pc.clone()) else {
            return Err(CallError::Closed);
        };
        for t in pc.get_transceivers().await {
            if let Some(s) = t.sender().await? {
                if s.id() == sender.id() {
                    return Ok(t.mid().await?);
                }
            }
        }
        Ok(None)
    }
}

/// A participant in a room: publishes local tracks, receives everyone else's.
///
/// ```no_run
/// # async fn demo() -> Result<(), huddle::CallError> {
/// use huddle::{Call, CallEvent};
/// // The server's address; `http://host:7880` or `ws://host:7880/ws` alike.
/// let (call, mut events) = Call::join("http://127.0.0.1:7880", "TOKEN").await?;
/// println!("in {} as {}", call.room(), call.local_participant().name());
/// for p in call.participants() {
///     println!("already here: {}", p.name());
/// }
/// let mic = call.publish_pcm(Default::default()).await?;
/// mic.write(&[0i16; 960]).await?; // one 20 ms frame of 48 kHz mono
/// while let Some(ev) = events.recv().await {
///     if let CallEvent::Disconnected = ev {
///         break;
///     }
/// }
/// call.leave().await?;
/// # Ok(()) }
/// ```
pub struct Call {
    inner: Arc<Inner>,
    room: String,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("room", &self.room)
            .field("participant", &self.inner.state().me)
            .finish()
    }
}

impl Call {
    /// Join the room the token grants on the server at `url`: its base
    /// address (`http://host:7880`, `https://calls.example.org`) or its
    /// signaling WebSocket (`ws://host:7880/ws`).
    pub async fn join(url: &str, token: &str) -> Result<(Call, CallEvents), CallError> {
        Self::join_with(url, token, CallOptions::default()).await
    }

    /// [`Call::join`] with options.
    pub async fn join_with(
        url: &str,
        token: &str,
        options: CallOptions,
    ) -> Result<(Call, CallEvents), CallError> {
        // The app's servers are checked before anything starts; relay-only
        // once the server's own TURN servers (in `joined`) are known.
        IceConfig::new(&options.ice_servers, false, &mut |_| None)?;
        let mut doorways = Doorways::new(&options.tls_roots)?;
        let timeout = options.timeout.unwrap_or(WAIT);
        let endpoint = endpoint::resolve(url)?;
        let server = endpoint::server_addr(&endpoint).await;
        let bind = choose_bind(&endpoint, options.bind.as_deref(), server);
        let (outbox, mut inbox, network_changed) = signal::connect(&endpoint.ws_url, token).await?;
        outbox
            .send(ClientMessage::Join {
                token: token.to_owned(),
                e2ee: options.e2ee,
            })
            .map_err(|_| CallError::Closed)?;
        let first = tokio::time::timeout(timeout, inbox.recv())
            .await
            .map_err(|_| CallError::Timeout("the join answer"))?
            .ok_or(CallError::Closed)?;
        let Inbound::Msg(first) = first else {
            return Err(CallError::Closed);
        };
        let (room, me, others, can_publish, ice_servers, e2ee) = match *first {
            ServerMessage::Joined {
                room,
                participant,
                others,
                can_publish,
                ice_servers,
                e2ee,
                ..
            } => (room, participant, others, can_publish, ice_servers, e2ee),
            ServerMessage::Error { code, message } => {
                return Err(CallError::Refused { code, message })
            }
            other => {
                return Err(CallError::Protocol(format!(
                    "expected joined, got {other:?}"
                )))
            }
        };
        if options.e2ee && !e2ee {
            // Asked for encryption: never go on without it.
            let _ = outbox.send(ClientMessage::Leave);
            return Err(CallError::E2ee(format!(
                "room {room:?} is not end-to-end encrypted (its tokens do not say e2ee): left it"
            )));
        }
        if e2ee && !options.e2ee {
            let _ = outbox.send(ClientMessage::Leave);
            return Err(CallError::Protocol(
                "the server joined a call without E2EE to an E2EE room".into(),
            ));
        }
        let e2ee = match e2ee.then(|| E2ee::start(&me.identity, &room)).transpose() {
            Ok(Some((e2ee, key_package))) => {
                outbox.send(key_package).map_err(|_| CallError::Closed)?;
                Some(Arc::new(e2ee))
            }
            Ok(None) => None,
            Err(e) => {
                let _ = outbox.send(ClientMessage::Leave);
                return Err(e);
            }
        };
        // The server's TURN servers (with this participant's credentials)
        // after the app's own.
        let mut servers = options.ice_servers.clone();
        servers.extend(ice_servers.into_iter().map(IceServer::from));
        let ice = match IceConfig::new(&servers, options.relay_only, &mut |s| doorways.local_url(s))
        {
            Ok(ice) => ice,
            Err(e) => {
                let _ = outbox.send(ClientMessage::Leave);
                return Err(e);
            }
        };
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (tracks_tx, tracks_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            outbox,
            can_publish,
            negotiation: tokio::sync::Mutex::new(()),
            state: std::sync::Mutex::new(State::new(
                Participant::from(&me),
                others.iter().map(Participant::from).collect(),
                bind,
            )),
            endpoint,
            bind_given: options.bind,
            server,
            network_changed,
            ice: std::sync::Mutex::new(ice),
            doorways: std::sync::Mutex::new(doorways),
            app_ice_servers: options.ice_servers.clone(),
            timeout,
            e2ee,
            events: events_tx,
            remote_tracks: tracks_tx,
        });
        tokio::spawn(session(inner.clone(), inbox));
        tokio::spawn(announce_tracks(inner.clone(), tracks_rx));
        // The route is watched only when the call chose the bind itself (an
        // address the app gave is bound again as given) and the server is
        // not on loopback (whose route never changes).
        let watched = server.filter(|_| inner.bind_given.is_none() && !inner.endpoint.loopback);
        tokio::spawn(restart::watch_media_path(Arc::downgrade(&inner), watched));
        Ok((Call { inner, room }, events_rx))
    }

    /// The room joined.
    pub fn room(&self) -> &str {
        &self.room
    }

    /// This participant's server-assigned id (a new one after the call
    /// joined again: [`CallEvent::Reconnected`] with `rejoined`).
    pub fn participant_id(&self) -> ParticipantId {
        self.inner.state().me.id.clone()
    }

    /// This participant: id, the identity of its token and its display name.
    pub fn local_participant(&self) -> Participant {
        self.inner.state().me.clone()
    }

    /// The end-to-end encryption of an E2EE call (see
    /// [`CallOptions::e2ee`]): the group's epoch, its safety code (equal
    /// for every member of the epoch: people compare it to know nobody
    /// else listens) and its members. `None` outside an E2EE call, and
    /// until this participant is in the group (its first
    /// [`CallEvent::E2eeEpoch`]).
    pub fn e2ee(&self) -> Option<huddle_e2ee::client::EpochInfo> {
        self.inner.e2ee.as_ref().and_then(|e| e.info())
    }

    /// In an E2EE call, the frames received so far that decrypted, and
    /// those dropped, by reason (not authentic, unknown key, replayed, on
    /// another member's track, ...).
    pub fn e2ee_stats(&self) -> Option<crate::E2eeStats> {
        self.inner.e2ee.as_ref().map(|e| e.stats())
    }

    /// Who else is in the room now, in join order. Up to date with the
    /// events: after a [`CallEvent::ParticipantJoined`] or
    /// [`CallEvent::ParticipantLeft`] has been received, this list shows it.
    pub fn participants(&self) -> Vec<Participant> {
        self.inner.state().others.clone()
    }

    /// Publish an Opus audio track to write encoded frames into (see
    /// [`LocalTrack::write_audio_frame`]). [`Call::publish_pcm`] and
    /// [`Call::send_audio`] encode for you.
    pub async fn publish_audio(&self) -> Result<Arc<LocalTrack>, CallError> {
        self.publish(TrackKind::Audio, codecs::opus(), codecs::OPUS_PT)
            .await
    }

    /// Publish an audio track fed with PCM frames by the app: each
    /// [`PcmSender::write`] encodes one 20 ms frame with `config` (in-band
    /// FEC and DTX on by default) and sends it.
    pub async fn publish_pcm(&self, config: EncoderConfig) -> Result<PcmSender, CallError> {
        let track = self.publish_audio().await?;
        PcmSender::new(track, config)
    }

    /// Publish an audio track and send `source` on it (a microphone, a WAV
    /// file, a synthetic signal: any [`AudioSource`]), Opus-encoded with
    /// `config` (in-band FEC and DTX on by default). Stops when the source
    /// ends or the returned sender is dropped; the track stays published
    /// (silent) until [`Call::unpublish`]`(sender.track())`.
    ///
    /// ```no_run
    /// # #[cfg(feature = "devices")]
    /// # async fn demo(call: &huddle::Call) -> Result<(), huddle::CallError> {
    /// use huddle::Microphone; // feature `devices`
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
    /// (VP8 payload descriptor included) with `write_frame(&payloads, 1 s / fps)`.
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
        let n = {
            let mut st = self.inner.state();
            st.next_track += 1;
            st.next_track - 1
        };
        let label = match kind {
            TrackKind::Audio => "audio",
            TrackKind::Video => "video",
        };
        let track_id = format!("{label}-{n}");
        let ssrc: u32 = rand::random();
        let rtp = Arc::new(TrackLocalStaticRTP::new(single_ssrc_track(
            self.inner.state().me.id.to_string(),
            track_id.clone(),
            kind,
            codec.clone(),
            ssrc,
        )));
        let suspended = Arc::new(AtomicBool::new(false));
        let sender = self
            .add_and_negotiate(&track_id, n, &rtp, None, &suspended)
            .await?;
        let codecs = sender.get_parameters().await?.rtp_parameters.codecs;
        let mut payload_type = codecs
            .iter()
            .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(&codec.mime_type))
            .map(|c| c.payload_type)
            .unwrap_or(default_pt);
        // The answer took RED: send the Opus frames wrapped in it.
        let red = match negotiated_red(&codecs).filter(|_| kind == TrackKind::Audio) {
            Some(format) => {
                debug!(track = %track_id, red_pt = format.red_pt, "sending RED");
                payload_type = format.red_pt;
                Some(RedSender::new(format)?)
            }
            None => None,
        };
        let uses_red = red.is_some();
        let track = Arc::new(
            LocalTrack::new(rtp, track_id, kind, ssrc, payload_type, red, suspended)
                .with_e2ee(self.inner.e2ee.clone()),
        );
        if uses_red {
            let mut st = self.inner.state();
            if let Some(own) = st.own.get_mut(track.local_id()) {
                own.red_ssrc = Some(ssrc);
            }
            if let Some(p) = st.publisher.as_ref() {
                if let Ok(mut watched) = p.loss_reports.lock() {
                    watched.insert(ssrc);
                }
            }
            drop(st);
            follow_loss_reports(&track);
        }
        Ok(track)
    }

    /// Publish a VP8 video track as simulcast layers, one per RID in
    /// `rids`, lowest first (`["q", "h", "f"]`, the names browsers use).
    /// The SFU sends each subscriber the layer that fits its tile and its
    /// bandwidth, and tells this participant which layers nobody receives
    /// (dynacast): see [`SimulcastTrack::is_active`].
    pub async fn publish_simulcast_video(
        &self,
        rids: &[&str],
    ) -> Result<Arc<SimulcastTrack>, CallError> {
        if !self.inner.can_publish {
            return Err(CallError::CannotPublish);
        }
        let valid = |r: &&str| {
            !r.is_empty() && r.len() <= 16 && r.bytes().all(|b| b.is_ascii_alphanumeric())
        };
        if rids.is_empty() || rids.len() > 4 || !rids.iter().all(valid) {
            return Err(CallError::InvalidInput(format!(
                "simulcast layers must be 1 to 4 RIDs of 1 to 16 letters or digits, not {rids:?}"
            )));
        }
        let _one_at_a_time = self.inner.negotiation.lock().await;
        let n = {
            let mut st = self.inner.state();
            st.next_track += 1;
            st.next_track - 1
        };
        let track_id = format!("video-{n}");
        let layers: Vec<(&str, u32)> = rids.iter().map(|&r| (r, rand::random())).collect();
        let rtp = Arc::new(TrackLocalStaticRTP::new(simulcast_track(
            self.inner.state().me.id.to_string(),
            track_id.clone(),
            codecs::vp8(),
            &layers,
        )));
        let switches = Arc::new(LayerSwitches::new(rids));
        let suspended = Arc::new(AtomicBool::new(false));
        let sender = self
            .add_and_negotiate(&track_id, n, &rtp, Some(switches.clone()), &suspended)
            .await?;
        let params = sender.get_parameters().await?.rtp_parameters;
        let vp8 = codecs::vp8();
        let payload_type = params
            .codecs
            .iter()
            .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(&vp8.mime_type))
            .map_or(codecs::VP8_PT, |c| c.payload_type);
        let ext_id = |uri| codecs::extension_id(&params, uri);
        let mid = self.inner.mid_of(&sender).await?;
        let extensions = match (ext_id(SDES_MID_URI), ext_id(SDES_RTP_STREAM_ID_URI), mid) {
            (Some(mid_id), Some(rid_id), Some(mid)) => LayerExtensions {
                mid_id,
                mid: Bytes::from(mid.into_bytes()),
                rid_id,
            },
            _ => {
                return Err(CallError::Protocol(
                    "the server's answer has no MID and RID header extensions for simulcast".into(),
                ))
            }
        };
        Ok(Arc::new(
            SimulcastTrack::new(
                rtp,
                track_id,
                payload_type,
                extensions,
                &layers,
                switches,
                suspended,
            )
            .with_e2ee(self.inner.e2ee.clone()),
        ))
    }

    /// Add `rtp` as track `track_id` to the publisher connection, offer,
    /// and wait until it is connected. Call with the negotiation lock held.
    async fn add_and_negotiate(
        &self,
        track_id: &str,
        order: u32,
        rtp: &Arc<TrackLocalStaticRTP>,
        layers: Option<Arc<LayerSwitches>>,
        suspended: &Arc<AtomicBool>,
    ) -> Result<Arc<dyn RtpSender>, CallError> {
        let (pc, mut state) = self.inner.publisher().await?;
        let sender = pc.add_track(as_local(rtp)).await?;
        self.inner.state().own.insert(
            track_id.to_owned(),
            OwnTrack {
                sender: sender.clone(),
                server_id: None,
                pending_mute: None,
                layers,
                order,
                muted: false,
                red_ssrc: None,
                suspended: suspended.clone(),
            },
        );
        let negotiated = async {
            self.inner.offer_publisher(&pc).await?;
            peer::wait_connected(&mut state, self.inner.timeout).await
        };
        if let Err(e) = negotiated.await {
            self.inner.state().own.remove(track_id);
            return Err(e);
        }
        Ok(sender)
    }

    /// Stop publishing a track: it is renegotiated away, the room is told
    /// (`track_unpublished`) and everyone stops receiving it. Writing to it
    /// afterwards sends nothing. Stop its [`crate::AudioSender`] first if it
    /// has one (a sender whose source ended leaves its track published until
    /// this is called).
    pub async fn unpublish(&self, track: &LocalTrack) -> Result<(), CallError> {
        let _one_at_a_time = self.inner.negotiation.lock().await;
        let (own, pc) = {
            let mut st = self.inner.state();
            let own = st
                .own
                .remove(track.local_id())
                .ok_or_else(|| CallError::Refused {
                    code: ErrorCode::UnknownTrack,
                    message: "not a published track of this call".into(),
                })?;
            match st.publisher.as_ref() {
                Some(p) => (own, p.pc.clone()),
                None => return Err(CallError::Closed),
            }
        };
        pc.remove_track(&own.sender).await?;
        self.inner.offer_publisher(&pc).await
    }

    /// Mute or unmute a published track: nothing is sent while muted, and the
    /// room is told ([`CallEvent::MuteChanged`]). Takes effect at once
    /// locally; if the server has not announced the track yet (it does so
    /// on the track's first packet), the room is told when it does.
    pub async fn set_muted(&self, track: &LocalTrack, muted: bool) -> Result<(), CallError> {
        let mut st = self.inner.state();
        let own = st
            .own
            .get_mut(track.local_id())
            .ok_or_else(|| CallError::Refused {
                code: ErrorCode::UnknownTrack,
                message: "not a published track of this call".into(),
            })?;
        track.set_muted(muted);
        own.muted = muted;
        match &own.server_id {
            Some(id) => self
                .inner
                .outbox
                .send(ClientMessage::Mute {
                    track_id: id.to_string(),
                    muted,
                })
                .map_err(|_| CallError::Closed),
            None => {
                own.pending_mute = Some(muted);
                Ok(())
            }
        }
    }

    /// Say how this app shows another participant's video: whether at all
    /// (`visible`), and its size on screen in pixels, if known. The
    /// server sends the smallest simulcast layer that fills it, and
    /// nothing of a hidden video. By default a video is shown, its layer
    /// chosen by how many videos this participant receives.
    pub fn set_track_view(
        &self,
        track_id: &TrackId,
        visible: bool,
        size: Option<(u32, u32)>,
    ) -> Result<(), CallError> {
        self.inner
            .outbox
            .send(ClientMessage::TrackSettings {
                track_id: track_id.to_string(),
                visible,
                width: size.map(|(w, _)| w),
                height: size.map(|(_, h)| h),
            })
            .map_err(|_| CallError::Closed)
    }

    /// Restart ICE on both media connections now (RFC 8445 §9), with the
    /// latest ICE servers and credentials: for an app that learns of a
    /// network change from its platform. The call restarts ICE by itself
    /// when a connection goes down or its route changes.
    pub async fn restart_ice(&self) -> Result<(), CallError> {
        restart::Restartable::restart_ice(&*self.inner).await
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
    let peers = {
        let mut st = inner.state();
        [st.publisher.take(), st.subscriber.take()]
    };
    for p in peers.into_iter().flatten() {
        if let Err(e) = p.pc.close().await {
            debug!("close: {e}");
        }
    }
}

/// Turn remote tracks from the subscriber connection into events.
async fn announce_tracks(
    inner: Arc<Inner>,
    mut tracks: mpsc::UnboundedReceiver<Arc<dyn TrackRemote>>,
) {
    while let Some(t) = tracks.recv().await {
        let subscriber = inner.state().subscriber.as_ref().map(|s| s.pc.clone());
        let red = match subscriber {
            Some(pc) => remote_red(&pc, &t).await,
            None => None,
        };
        let track = remote_track(t, |id| inner.who(id), red, inner.e2ee.clone()).await;
        let _ = inner.events.send(CallEvent::TrackSubscribed(track));
    }
}

/// Keep the participant list and the own tracks' ids up to date with what
/// the server says, and turn it into events.
fn apply(inner: &Inner, msg: ServerMessage) -> Vec<CallEvent> {
    match msg {
        ServerMessage::ParticipantJoined { participant } => {
            vec![joined(inner, Participant::from(&participant))]
        }
        ServerMessage::ParticipantLeft { participant_id } => {
            vec![left(inner, participant_id.into())]
        }
        ServerMessage::ParticipantsChanged { joined: j, left: l } => {
            // A batch: one event per change, joins first.
            let mut events: Vec<CallEvent> = j
                .iter()
                .map(|p| joined(inner, Participant::from(p)))
                .collect();
            events.extend(l.into_iter().map(|id| left(inner, id.into())));
            events
        }
        ServerMessage::TrackPublished {
            participant_id,
            track,
        } => {
            let track_id = TrackId::from(track.id);
            if let Some(src) = &track.source_track_id {
                announced(inner, src, &track_id, track.muted);
            }
            vec![CallEvent::TrackPublished {
                participant: inner.who(&participant_id.into()),
                track_id,
                kind: track.kind,
                muted: track.muted,
            }]
        }
        ServerMessage::TrackUnpublished {
            participant_id,
            track_id,
        } => vec![CallEvent::TrackUnpublished {
            participant: inner.who(&participant_id.into()),
            track_id: track_id.into(),
        }],
        ServerMessage::MuteChanged {
            participant_id,
            track_id,
            muted,
        } => vec![CallEvent::MuteChanged {
            participant: inner.who(&participant_id.into()),
            track_id: track_id.into(),
            muted,
        }],
        ServerMessage::ActiveSpeaker { participant_id } => vec![CallEvent::ActiveSpeaker {
            speaker: participant_id.map(|id| inner.who(&id.into())),
        }],
        ServerMessage::TrackPaused { track_id, reason } => vec![CallEvent::TrackPaused {
            track_id: track_id.into(),
            reason,
        }],
        ServerMessage::TrackResumed { track_id } => vec![CallEvent::TrackResumed {
            track_id: track_id.into(),
        }],
        ServerMessage::PublishLayers { track_id, layers } => {
            let track_id = TrackId::from(track_id);
            let switches = inner
                .state()
                .own
                .values()
                .find(|o| o.server_id.as_ref() == Some(&track_id))
                .and_then(|o| o.layers.clone());
            let layers: Vec<(String, bool)> =
                layers.into_iter().map(|l| (l.rid, l.active)).collect();
            match switches {
                Some(s) if s.apply(&layers) => vec![CallEvent::LayersChanged {
                    track_id,
                    active: layers
                        .into_iter()
                        .filter(|(_, a)| *a)
                        .map(|(r, _)| r)
                        .collect(),
                }],
                _ => Vec::new(),
            }
        }
        _ => Vec::new(),
    }
}

fn joined(inner: &Inner, p: Participant) -> CallEvent {
    let mut st = inner.state();
    if !st.others.iter().any(|o| o.id == p.id) && p.id != st.me.id {
        st.others.push(p.clone());
    }
    CallEvent::ParticipantJoined(p)
}

fn left(inner: &Inner, id: ParticipantId) -> CallEvent {
    let mut st = inner.state();
    let gone = match st.others.iter().position(|o| o.id == id) {
        Some(i) => st.others.remove(i),
        None => Participant::new(id.clone(), id.to_string()),
    };
    CallEvent::ParticipantLeft(gone)
}

/// The server announced one of this call's tracks: remember its id and send
/// a mute set before then.
fn announced(inner: &Inner, local_id: &str, server_id: &TrackId, muted: bool) {
    let mut st = inner.state();
    let Some(own) = st.own.get_mut(local_id) else {
        return;
    };
    own.server_id = Some(server_id.clone());
    if let Some(want) = own.pending_mute.take() {
        if want != muted {
            let _ = inner.outbox.send(ClientMessage::Mute {
                track_id: server_id.to_string(),
                muted: want,
            });
        }
    }
}

/// Handle what the server sends for the life of the call.
async fn session(inner: Arc<Inner>, mut inbox: mpsc::UnboundedReceiver<Inbound>) {
    while let Some(inbound) = inbox.recv().await {
        let msg = match inbound {
            Inbound::Msg(msg) => *msg,
            Inbound::Reconnecting => {
                let _ = inner.events.send(CallEvent::Reconnecting);
                continue;
            }
            Inbound::Resumed => {
                let _ = inner
                    .events
                    .send(CallEvent::Reconnected { rejoined: false });
                continue;
            }
            // `joined` follows when it works.
            Inbound::Rejoining => continue,
        };
        let events = match msg {
            ServerMessage::Answer { sdp } => {
                if let Some(tx) = inner.state().pending_answer.take() {
                    let _ = tx.send(Ok(sdp));
                }
                Vec::new()
            }
            ServerMessage::Offer { sdp } => match answer_subscriber(&inner, sdp).await {
                // Left meanwhile: nothing to answer for.
                Err(CallError::Closed) => Vec::new(),
                Err(e) => {
                    warn!("cannot answer the subscriber offer: {e}");
                    vec![CallEvent::Error {
                        code: ErrorCode::BadSdp,
                        message: e.to_string(),
                    }]
                }
                Ok(()) => Vec::new(),
            },
            ServerMessage::Candidate { pc, candidate } => {
                add_candidate(&inner, pc, candidate).await;
                Vec::new()
            }
            ServerMessage::Joined {
                participant,
                others,
                ice_servers,
                ..
            } => {
                renew_ice_servers(&inner, ice_servers).await;
                rejoined(&inner, participant, others).await
            }
            ServerMessage::IceServers { ice_servers } => {
                renew_ice_servers(&inner, ice_servers).await;
                Vec::new()
            }
            ServerMessage::Error { code, message } => {
                // A refused offer fails the publish waiting for its answer.
                if matches!(code, ErrorCode::BadSdp | ErrorCode::Forbidden) {
                    if let Some(tx) = inner.state().pending_answer.take() {
                        let _ = tx.send(Err(CallError::Refused {
                            code,
                            message: message.clone(),
                        }));
                    }
                }
                vec![CallEvent::Error { code, message }]
            }
            ServerMessage::E2eeCreate
            | ServerMessage::E2eeAdd { .. }
            | ServerMessage::E2eeRemove { .. }
            | ServerMessage::E2eeCommitResult { .. }
            | ServerMessage::E2eeCommit { .. }
            | ServerMessage::E2eeWelcome { .. } => group_message(&inner, &msg),
            other => apply(&inner, other),
        };
        for ev in events {
            let _ = inner.events.send(ev);
        }
    }
    close_all(&inner).await;
    let _ = inner.events.send(CallEvent::Disconnected);
}

/// A message of the room's MLS group: handled, its answers sent, a new
/// epoch told to the app.
fn group_message(inner: &Inner, msg: &ServerMessage) -> Vec<CallEvent> {
    let Some(e2ee) = &inner.e2ee else {
        debug!("an E2EE message outside an E2EE call, ignored");
        return Vec::new();
    };
    let handled = match e2ee.handle(msg) {
        Ok(handled) => handled,
        Err(e) => {
            warn!("E2EE message not taken: {e}");
            return vec![CallEvent::Error {
                code: ErrorCode::E2eeRefused,
                message: e.to_string(),
            }];
        }
    };
    for m in handled.send {
        let _ = inner.outbox.send(m);
    }
    let mut events = Vec::new();
    if let Some(epoch) = handled.epoch {
        debug!(
            epoch = epoch.epoch,
            members = epoch.members.len(),
            "E2EE epoch"
        );
        events.push(CallEvent::E2eeEpoch(epoch));
    }
    if handled.removed {
        warn!("removed from the room's E2EE group: nothing more is sent");
        events.push(CallEvent::Error {
            code: ErrorCode::E2eeRefused,
            message: "removed from the room's end-to-end encryption group".into(),
        });
    }
    events
}

#[async_trait::async_trait]
impl restart::Restartable for Inner {
    fn ended(&self) -> bool {
        self.outbox.is_closed()
    }

    fn health(&self) -> media_path::Health {
        let st = self.state();
        restart::health_of(
            [st.publisher.as_ref(), st.subscriber.as_ref()]
                .into_iter()
                .flatten()
                .map(|p| *p.state.borrow()),
        )
    }

    fn network_changed(&self) {
        self.network_changed.send_modify(|n| *n += 1);
    }

    fn event(&self, event: CallEvent) {
        let _ = self.events.send(event);
    }

    /// Ask the server for a subscriber offer with new credentials, and
    /// renegotiate the publisher connection with an ICE-restart offer (its
    /// sockets bound again on the interfaces there are now).
    async fn restart_ice(&self) -> Result<(), CallError> {
        if self.state().subscriber.is_some() {
            self.outbox
                .send(ClientMessage::RestartIce)
                .map_err(|_| CallError::Closed)?;
        }
        let _one_at_a_time = self.negotiation.lock().await;
        let publisher = self.state().publisher.as_ref().map(|p| p.pc.clone());
        if let Some(pc) = publisher {
            pc.restart_ice().await?;
            self.offer_publisher(&pc).await?;
        }
        Ok(())
    }
}

/// The server sent new TURN credentials (`ice_servers`, or those of a new
/// `joined`): the media connections use them from their next gathering on
/// (an ICE restart). Relays in use stay: the TURN server refreshes an
/// allocation with the credentials it was made with.
async fn renew_ice_servers(inner: &Arc<Inner>, servers: Vec<huddle_proto::IceServerInfo>) {
    let relay_only = inner.ice().relay_only;
    let mut all = inner.app_ice_servers.clone();
    all.extend(servers.into_iter().map(IceServer::from));
    let ice = {
        let mut doorways = inner.doorways.lock().unwrap_or_else(|e| e.into_inner());
        IceConfig::new(&all, relay_only, &mut |s| doorways.local_url(s))
    };
    let ice = match ice {
        Ok(ice) => ice,
        Err(e) => {
            warn!("new ICE servers from the server refused: {e}");
            return;
        }
    };
    *inner.ice.lock().unwrap_or_else(|e| e.into_inner()) = ice.clone();
    let pcs: Vec<Arc<dyn PeerConnection>> = {
        let st = inner.state();
        [st.publisher.as_ref(), st.subscriber.as_ref()]
            .into_iter()
            .flatten()
            .map(|p| p.pc.clone())
            .collect()
    };
    for pc in pcs {
        if let Err(e) = pc.set_configuration(peer::configuration(&ice)).await {
            warn!("cannot apply new ICE servers: {e}");
        }
    }
    debug!("new TURN credentials applied");
}

/// The local address for peer connections: the app's, else 127.0.0.1:0
/// toward a loopback server, else every interface of the server's family
/// (see [`CallOptions::bind`]).
fn choose_bind(
    endpoint: &endpoint::Endpoint,
    given: Option<&str>,
    server: Option<std::net::SocketAddr>,
) -> String {
    match given {
        Some(bind) => bind.to_owned(),
        None if endpoint.loopback => "127.0.0.1:0".to_owned(),
        None if server.is_some_and(|s| s.is_ipv6()) => "[::]:0".to_owned(),
        None => "0.0.0.0:0".to_owned(),
    }
}

/// The call joined again after its session was lost (the server
/// restarted): a new id and roster, new media connections, and its tracks
/// published again (in the background: the answer comes through this
/// session's loop).
async fn rejoined(
    inner: &Arc<Inner>,
    me: ParticipantInfo,
    others: Vec<ParticipantInfo>,
) -> Vec<CallEvent> {
    let bind = choose_bind(&inner.endpoint, inner.bind_given.as_deref(), inner.server);
    let (gone, peers) = {
        let mut st = inner.state();
        st.me = Participant::from(&me);
        st.bind = bind;
        let now: Vec<Participant> = others.iter().map(Participant::from).collect();
        let gone = std::mem::replace(&mut st.others, now);
        if let Some(tx) = st.pending_answer.take() {
            let _ = tx.send(Err(CallError::Closed));
        }
        for own in st.own.values_mut() {
            own.server_id = None;
            own.pending_mute = own.muted.then_some(true);
            // Frames written until the tracks are on the new connection
            // are dropped, not failed.
            own.suspended.store(true, Ordering::Release);
        }
        (gone, [st.publisher.take(), st.subscriber.take()])
    };
    for p in peers.into_iter().flatten() {
        if let Err(e) = p.pc.close().await {
            debug!("close: {e}");
        }
    }
    // A new session, a new group: join it as a new member.
    if let Some(e2ee) = &inner.e2ee {
        match e2ee.restart(&me.identity) {
            Ok(key_package) => {
                let _ = inner.outbox.send(key_package);
            }
            Err(e) => warn!("cannot take part in E2EE after joining again: {e}"),
        }
    }
    let mut events: Vec<CallEvent> = gone.into_iter().map(CallEvent::ParticipantLeft).collect();
    let now = inner.state().others.clone();
    events.extend(now.into_iter().map(CallEvent::ParticipantJoined));
    events.push(CallEvent::Reconnected { rejoined: true });
    let again = inner.clone();
    tokio::spawn(async move {
        let published = publish_again(&again).await;
        for own in again.state().own.values() {
            own.suspended.store(false, Ordering::Release);
        }
        if let Err(e) = published {
            warn!("publishing again after joining again failed: {e}");
            let _ = again.events.send(CallEvent::Error {
                code: ErrorCode::Internal,
                message: format!("publishing again after joining again: {e}"),
            });
        }
    });
    events
}

/// Put every published track on a new publisher connection, in the order
/// they were first published, and negotiate it.
async fn publish_again(inner: &Inner) -> Result<(), CallError> {
    let _one_at_a_time = inner.negotiation.lock().await;
    let mut tracks: Vec<(u32, String, Arc<dyn TrackLocal>)> = inner
        .state()
        .own
        .iter()
        .map(|(id, o)| (o.order, id.clone(), o.sender.track().clone()))
        .collect();
    if tracks.is_empty() {
        return Ok(());
    }
    tracks.sort_by_key(|t| t.0);
    let (pc, mut state) = inner.publisher().await?;
    for (_, id, track) in tracks {
        let sender = pc.add_track(track).await?;
        let st = &mut *inner.state();
        let red_ssrc = st.own.get_mut(&id).and_then(|o| {
            o.sender = sender;
            o.red_ssrc
        });
        if let (Some(ssrc), Some(p)) = (red_ssrc, st.publisher.as_ref()) {
            if let Ok(mut watched) = p.loss_reports.lock() {
                watched.insert(ssrc);
            }
        }
    }
    inner.offer_publisher(&pc).await?;
    peer::wait_connected(&mut state, inner.timeout).await?;
    // Simulcast layers carry their transceiver's MID, which may differ now.
    let simulcast: Vec<(Arc<dyn RtpSender>, Arc<LayerSwitches>)> = inner
        .state()
        .own
        .values()
        .filter_map(|o| o.layers.clone().map(|l| (o.sender.clone(), l)))
        .collect();
    for (sender, layers) in simulcast {
        if let Some(mid) = inner.mid_of(&sender).await? {
            layers.set_mid(Bytes::from(mid.into_bytes()));
        }
    }
    Ok(())
}

async fn answer_subscriber(inner: &Inner, sdp: String) -> Result<(), CallError> {
    // Only this task touches the subscriber slot after join, so building
    // outside the lock cannot race.
    let existing = inner.state().subscriber.as_ref().map(|s| s.pc.clone());
    let pc = match existing {
        Some(pc) => pc,
        None => {
            let bind = inner.state().bind.clone();
            let built = peer::build(
                PcRole::Subscriber,
                &bind,
                &inner.ice(),
                inner.outbox.clone(),
                Some(inner.remote_tracks.clone()),
            )
            .await?;
            let pc = built.pc.clone();
            inner.state().subscriber = Some(built);
            pc
        }
    };
    pc.set_remote_description(RTCSessionDescription::offer(sdp.clone())?)
        .await?;
    let tcp = inner.state().subscriber.as_ref().map(|p| p.tcp.clone());
    if let Some(tcp) = tcp {
        tcp.after_remote_description(&sdp);
    }
    let answer = pc.create_answer(None).await?;
    pc.set_local_description(answer).await?;
    let sdp = pc
        .local_description()
        .await
        .ok_or_else(|| CallError::WebRtc("no local description".into()))?
        .sdp;
    inner
        .outbox
        .send(ClientMessage::Answer { sdp })
        .map_err(|_| CallError::Closed)?;
    if let Some(sub) = inner.state().subscriber.as_ref() {
        sub.open_trickle();
    }
    Ok(())
}

async fn add_candidate(inner: &Inner, role: PcRole, c: IceCandidate) {
    let pc = {
        let st = inner.state();
        let slot = match role {
            PcRole::Publisher => &st.publisher,
            PcRole::Subscriber => &st.subscriber,
        };
        slot.as_ref().map(|p| p.pc.clone())
    };
    if let Some(pc) = pc {
        let init = RTCIceCandidateInit {
            candidate: c.candidate,
            sdp_mid: c.sdp_mid,
            sdp_mline_index: c.sdp_mline_index,
            username_fragment: c.username_fragment,
            ..Default::default()
        };
        if let Err(e) = pc.add_ice_candidate(init).await {
            debug!("server candidate rejected: {e}");
        }
    }
}
