//! Local tracks the app writes media into, and remote tracks it reads from.

use crate::e2ee::E2ee;
use crate::e2ee_recv::E2eeRecv;
use crate::error::CallError;
use crate::ids::{ParticipantId, SeqNum, Ssrc, TrackId};
use crate::packet::{AudioFrame, MediaPacket};
use crate::participant::Participant;
use crate::red::RedFormat;
use crate::red_recv::AudioPacket;
use crate::red_send::RedSender;
use crate::rtp_clock::{self, RtpClock};
use bytes::Bytes;
use huddle_e2ee::session::Stream;
use huddle_proto::TrackKind;
use huddle_wire::feedback::LossReport;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp::extension::audio_level_extension::AudioLevelExtension;
use rtc::rtp::extension::HeaderExtension;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

/// RTP sequence and timestamp state of a local track, and its RED state
/// when RED was negotiated for it.
struct Clock {
    rtp: RtpClock,
    red: Option<RedSender>,
}

/// How often a track waiting for keyframe requests looks again while the
/// call joins the room again.
pub(crate) const SUSPENDED_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// A track this participant publishes. Write encoded frames into it.
///
/// The handle is the track's identity for this call: mute it with
/// `Call::set_muted` and remove it with `Call::unpublish`
/// at any time, whether or not the server has announced it yet.
///
/// What is written before a listener's subscription is up (see
/// `CallEvent::TrackSubscribed`) does not reach that listener: the
/// server forwards media, it does not store it.
///
/// ```no_run
/// # async fn demo(call: &huddle::Call) -> Result<(), huddle::CallError> {
/// use huddle::{AudioFrame, AudioLevel};
/// use std::time::Duration;
/// let mic = call.publish_audio().await?;
/// let opus = [0xF8, 0xFF, 0xFE]; // one 20 ms Opus frame (silence)
/// mic.write_audio_frame(AudioFrame {
///     payload: &opus,
///     duration: Duration::from_millis(20),
///     level: AudioLevel::SILENCE,
/// })
/// .await?;
/// call.set_muted(&mic, true).await?; // nothing is sent while muted
/// # Ok(()) }
/// ```
pub struct LocalTrack {
    pub(crate) rtp: Arc<TrackLocalStaticRTP>,
    pub(crate) id: String,
    pub(crate) kind: TrackKind,
    pub(crate) ssrc: u32,
    pub(crate) payload_type: u8,
    clock: Mutex<Clock>,
    muted: AtomicBool,
    /// Set while the call joins the room again and publishes its tracks
    /// on a new connection: frames written meanwhile are dropped, not
    /// failed (shared with the call).
    pub(crate) suspended: Arc<AtomicBool>,
    /// The call's end-to-end encryption, in an E2EE call: each frame is
    /// encrypted before it is packetized (and before RED wraps it).
    e2ee: Option<Arc<E2ee>>,
}

impl std::fmt::Debug for LocalTrack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalTrack")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("ssrc", &self.ssrc)
            .finish()
    }
}

impl LocalTrack {
    pub(crate) fn new(
        rtp: Arc<TrackLocalStaticRTP>,
        id: String,
        kind: TrackKind,
        ssrc: u32,
        payload_type: u8,
        red: Option<RedSender>,
        suspended: Arc<AtomicBool>,
    ) -> Self {
        Self {
            suspended,
            e2ee: None,
            rtp,
            id,
            kind,
            ssrc,
            payload_type,
            clock: Mutex::new(Clock {
                rtp: RtpClock::random(),
                red,
            }),
            muted: AtomicBool::new(false),
        }
    }

    /// The track encrypting its frames with `e2ee` (in an E2EE call).
    pub(crate) fn with_e2ee(mut self, e2ee: Option<Arc<E2ee>>) -> Self {
        self.e2ee = e2ee;
        self
    }

    /// The track id in this participant's SDP (the crate maps it to the
    /// server's id).
    pub(crate) fn local_id(&self) -> &str {
        &self.id
    }

    /// Audio or video.
    pub fn kind(&self) -> TrackKind {
        self.kind
    }

    /// The SSRC the track is sent with.
    pub fn ssrc(&self) -> Ssrc {
        Ssrc(self.ssrc)
    }

    /// Send one encoded audio frame carrying its RFC 6464 audio level, so
    /// the server can tell who is speaking. Returns the number of packets
    /// sent (0 while muted).
    ///
    /// When the peer took RED (RFC 2198) for this track, the frame goes out
    /// wrapped in a RED packet with copies of the frames before it (see
    /// [`uses_red`](Self::uses_red)); write one frame per 20 ms as always.
    ///
    /// In an end-to-end encrypted call the frame is encrypted first (the
    /// copies RED repeats are the encrypted frames); until this participant
    /// is in the room's group it is not sent (0 packets).
    pub async fn write_audio_frame(&self, frame: AudioFrame<'_>) -> Result<usize, CallError> {
        let level = HeaderExtension::AudioLevel(AudioLevelExtension {
            level: frame.level.dbov.min(127),
            voice: frame.level.voice,
        });
        let ticks = rtp_clock::ticks(self.kind, frame.duration);
        let mut clock = self.clock.lock().await;
        let ts = clock.rtp.ts();
        let mut sealed = Vec::new();
        let unsendable = match &self.e2ee {
            // The RTP timestamp is bound to the frame (SFrame metadata):
            // an SFU that moves a frame in time makes it fail.
            Some(e2ee) if !self.is_muted() => {
                !e2ee.seal(Stream::Audio, &ts.to_be_bytes(), frame.payload, &mut sealed)
            }
            _ => false,
        };
        let frame_payload = if self.e2ee.is_some() {
            &sealed[..]
        } else {
            frame.payload
        };
        let red = match clock.red.as_mut() {
            // Not sent: the next packet must not repeat frames across it.
            Some(red) if self.is_muted() || unsendable => {
                red.skip();
                None
            }
            Some(red) => Some(red.wrap(ts, frame_payload)?),
            None => None,
        };
        if unsendable {
            // No key yet: the frame's time passes, nothing goes out.
            clock.rtp.start_frame(ticks);
            return Ok(0);
        }
        let payload = red.as_deref().unwrap_or(frame_payload);
        self.send_locked(&mut clock, &[payload], ticks, false, Some(level))
            .await
    }

    /// Whether the frames go out as RED (the peer's answer took
    /// `audio/red`), and at which redundancy distance now.
    pub async fn uses_red(&self) -> Option<u8> {
        self.clock
            .lock()
            .await
            .red
            .as_ref()
            .map(RedSender::distance)
    }

    /// The peer reported what it lost of this track.
    pub(crate) async fn on_loss_report(&self, report: LossReport) {
        if let Some(red) = self.clock.lock().await.red.as_mut() {
            let distance = red.on_loss_report(report);
            tracing::trace!(
                ssrc = self.ssrc,
                fraction_lost = report.fraction_lost,
                highest_seq = report.highest_seq,
                distance,
                "loss report"
            );
        }
    }

    /// The next RTP packet of this track (takes a sequence number).
    fn packet(&self, clock: &mut Clock, ts: u32, marker: bool, payload: &[u8]) -> rtc::rtp::Packet {
        rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                marker,
                payload_type: self.payload_type,
                sequence_number: clock.rtp.next_seq(),
                timestamp: ts,
                ssrc: self.ssrc,
                ..Default::default()
            },
            payload: Bytes::copy_from_slice(payload),
        }
    }

    /// Wait for the next keyframe request (PLI or FIR) for this track, which the
    /// SFU relays from subscribers, merged. Returns `false` once the track is
    /// no longer sent. A video publisher answers by sending a keyframe.
    /// While the call joins the room again it waits for the new
    /// connection's requests.
    pub async fn keyframe_requested(&self) -> bool {
        loop {
            match self.rtp.poll().await {
                Some(TrackLocalEvent::OnRtcpPacket(packets))
                    if huddle_wire::feedback::is_keyframe_request(&packets) =>
                {
                    return true
                }
                Some(_) => {}
                None if self.suspended.load(Ordering::Acquire) => {
                    tokio::time::sleep(SUSPENDED_POLL).await
                }
                None => return false,
            }
        }
    }

    /// The RTP sequence number the next packet will carry.
    pub async fn next_sequence_number(&self) -> SeqNum {
        SeqNum(self.clock.lock().await.rtp.seq())
    }

    pub(crate) fn set_muted(&self, muted: bool) {
        self.muted.store(muted, Ordering::Relaxed);
    }

    /// Whether the track is muted (nothing is sent while it is).
    pub fn is_muted(&self) -> bool {
        self.muted.load(Ordering::Relaxed)
    }

    /// Send one encoded frame as RTP: each payload is one packet, all with the
    /// frame's timestamp, the marker bit on the last; then the timestamp moves
    /// on by `duration` (20 ms for an Opus frame, 1/fps for video). Returns
    /// the number of packets sent (0 while muted). Audio frames should go
    /// through [`write_audio_frame`](Self::write_audio_frame), which carries
    /// their level.
    ///
    /// In an end-to-end encrypted call, a video frame's payloads must be
    /// VP8 (each a payload descriptor and a piece of the frame, the first
    /// starting it): the frame is encrypted whole and sent in pieces as
    /// long, behind the same descriptors (a packet more when needed; the
    /// return value counts those sent). Nothing is sent until this
    /// participant is in the room's group. Audio goes through
    /// `write_audio_frame` only.
    pub async fn write_frame(
        &self,
        payloads: &[&[u8]],
        duration: Duration,
    ) -> Result<usize, CallError> {
        let ticks = rtp_clock::ticks(self.kind, duration);
        self.send(payloads, ticks, true, None).await
    }

    /// One frame: one packet per payload, all with the frame's timestamp
    /// (marker on the last one if `marker`), `extension` on each; then the
    /// timestamp moves on by `duration`.
    async fn send(
        &self,
        payloads: &[&[u8]],
        duration: u32,
        marker: bool,
        extension: Option<HeaderExtension>,
    ) -> Result<usize, CallError> {
        let mut clock = self.clock.lock().await;
        let Some(e2ee) = &self.e2ee else {
            return self
                .send_locked(&mut clock, payloads, duration, marker, extension)
                .await;
        };
        if self.kind == TrackKind::Audio {
            // Payloads as they are would go out in clear.
            return Err(CallError::E2ee(
                "an end-to-end encrypted call sends audio through write_audio_frame \
                 (or publish_pcm, send_audio), which encrypts each frame"
                    .into(),
            ));
        }
        let Some(sealed) = crate::e2ee_video::seal(e2ee, Stream::Camera, payloads)? else {
            // No key yet: the frame's time passes, nothing goes out.
            clock.rtp.start_frame(duration);
            return Ok(0);
        };
        let sealed: Vec<&[u8]> = sealed.iter().map(Vec::as_slice).collect();
        self.send_locked(&mut clock, &sealed, duration, marker, extension)
            .await
    }

    /// [`send`](Self::send) with the clock already locked.
    async fn send_locked(
        &self,
        clock: &mut Clock,
        payloads: &[&[u8]],
        duration: u32,
        marker: bool,
        extension: Option<HeaderExtension>,
    ) -> Result<usize, CallError> {
        let ts = clock.rtp.start_frame(duration);
        if self.is_muted() || self.suspended.load(Ordering::Acquire) {
            return Ok(0);
        }
        let last = payloads.len().saturating_sub(1);
        for (i, payload) in payloads.iter().enumerate() {
            let packet = self.packet(clock, ts, marker && i == last, payload);
            let written = match &extension {
                Some(ext) => {
                    self.rtp
                        .write_rtp_with_extensions(packet, std::slice::from_ref(ext))
                        .await
                }
                None => self.rtp.write_rtp(packet).await,
            };
            if let Err(e) = written {
                // The call began joining again meanwhile: dropped, not failed.
                if self.suspended.load(Ordering::Acquire) {
                    return Ok(0);
                }
                return Err(e.into());
            }
        }
        Ok(payloads.len())
    }
}

/// A track received from another participant through the SFU.
///
/// Read its packets with [`recv`](Self::recv), hand it to a
/// `Playout`, or turn it into decoded PCM with
/// [`into_pcm`](Self::into_pcm). Read each track in a task of its own, so
/// the call's other events keep being handled:
///
/// ```no_run
/// # async fn demo(mut events: huddle::CallEvents) {
/// use huddle::CallEvent;
/// while let Some(ev) = events.recv().await {
///     if let CallEvent::TrackSubscribed(track) = ev {
///         tokio::spawn(async move {
///             while let Some(packet) = track.recv().await {
///                 println!("{}: {} bytes", track.participant().name(), packet.payload.len());
///             }
///         });
///     }
/// }
/// # }
/// ```
///
/// Dropping it discards the rest of its packets (an app that only wants
/// audio can drop the video tracks it gets).
pub struct RemoteTrack {
    pub(crate) track: Arc<dyn TrackRemote>,
    pub(crate) participant: Participant,
    pub(crate) track_id: TrackId,
    pub(crate) kind: TrackKind,
    /// RED as negotiated for it (audio), if at all.
    pub(crate) red: Option<RedFormat>,
    /// In an end-to-end encrypted call: what decrypts its packets.
    e2ee: Option<E2eeRecv>,
}

impl std::fmt::Debug for RemoteTrack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteTrack")
            .field("participant", &self.participant)
            .field("track_id", &self.track_id)
            .field("kind", &self.kind)
            .finish()
    }
}

impl Drop for RemoteTrack {
    fn drop(&mut self) {
        // webrtc-rs keeps delivering into the track's bounded queue whoever
        // reads it; unread, every packet becomes an error in its log. Drain
        // it until the track ends.
        let track = self.track.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { while track.poll().await.is_some() {} });
        }
    }
}

impl RemoteTrack {
    /// Who publishes it.
    pub fn participant(&self) -> &Participant {
        &self.participant
    }

    /// Id of the participant who publishes it.
    pub fn participant_id(&self) -> &ParticipantId {
        &self.participant.id
    }

    /// The room-wide track id (as in `CallEvent::TrackPublished`).
    pub fn track_id(&self) -> &TrackId {
        &self.track_id
    }

    /// Audio or video.
    pub fn kind(&self) -> TrackKind {
        self.kind
    }

    /// Next packet, as it arrived, or `None` once the track has ended.
    /// Audio comes as RED (RFC 2198, payload type
    /// [`RED_PT`](huddle_wire::codecs::RED_PT)) when the connection
    /// negotiated it, as it does with the SFU when the publisher sends RED;
    /// its primary block (`huddle::media::rtp::parse_red`) is the Opus
    /// frame.
    ///
    /// In an end-to-end encrypted call the packets come decrypted (a RED
    /// packet's blocks each), and only those that authenticate as the
    /// publisher's: see `CallOptions::e2ee`.
    pub async fn recv(&self) -> Option<MediaPacket> {
        loop {
            if let Some(p) = self.e2ee.as_ref().and_then(E2eeRecv::pop) {
                return Some(p);
            }
            match self.track.poll().await? {
                TrackRemoteEvent::OnRtpPacket(p) => match &self.e2ee {
                    None => return Some(p.into()),
                    Some(rx) => rx.take(p.into()),
                },
                TrackRemoteEvent::OnEnded => return None,
                _ => continue,
            }
        }
    }

    /// The packet as the jitter buffer takes it (RED split before it, when
    /// RED was negotiated and the packet is RED).
    pub(crate) fn audio_packet(&self, p: &MediaPacket) -> AudioPacket {
        AudioPacket::new(p, self.red)
    }

    /// Ask the publisher for a keyframe (video); the SFU merges requests.
    pub async fn request_keyframe(&self) -> Result<(), CallError> {
        let ssrc = self.track.ssrcs().await.first().copied().unwrap_or(0);
        self.track
            .write_rtcp(vec![Box::new(PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc: ssrc,
            })])
            .await?;
        Ok(())
    }
}

/// A remote track, its publisher looked up with `who`, with RED as
/// negotiated for it (`red`), decrypted with `e2ee` in an E2EE call.
pub(crate) async fn remote_track(
    track: Arc<dyn TrackRemote>,
    who: impl FnOnce(&ParticipantId) -> Participant,
    red: Option<RedFormat>,
    e2ee: Option<Arc<E2ee>>,
) -> RemoteTrack {
    let kind = match track.kind().await {
        rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Video => TrackKind::Video,
        _ => TrackKind::Audio,
    };
    let participant_id = ParticipantId::from(track.stream_id().await.to_string());
    let participant = who(&participant_id);
    let red = red.filter(|_| kind == TrackKind::Audio);
    let stream = match kind {
        TrackKind::Audio => Stream::Audio,
        TrackKind::Video => Stream::Camera,
    };
    let e2ee = e2ee.map(|e| E2eeRecv::new(e, participant.identity.clone(), stream, red));
    RemoteTrack {
        participant,
        track_id: TrackId::from(track.track_id().await.to_string()),
        red,
        kind,
        track,
        e2ee,
    }
}

pub(crate) fn as_local(t: &Arc<TrackLocalStaticRTP>) -> Arc<dyn TrackLocal> {
    t.clone()
}
