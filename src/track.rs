//! Local tracks the app writes media into, and remote tracks it reads from.

use crate::error::CallError;
use bytes::Bytes;
use huddle_proto::TrackKind;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp::extension::audio_level_extension::AudioLevelExtension;
use rtc::rtp::extension::HeaderExtension;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::Mutex;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

/// RTP sequence and timestamp state of a local track.
struct Clock {
    seq: u16,
    ts: u32,
}

/// A track this participant publishes. Write encoded frames into it.
pub struct LocalTrack {
    pub(crate) rtp: Arc<TrackLocalStaticRTP>,
    pub(crate) id: String,
    pub(crate) kind: TrackKind,
    pub(crate) ssrc: u32,
    pub(crate) payload_type: u8,
    clock: Mutex<Clock>,
    muted: AtomicBool,
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
    ) -> Self {
        Self {
            rtp,
            id,
            kind,
            ssrc,
            payload_type,
            clock: Mutex::new(Clock {
                seq: rand::random(),
                ts: rand::random(),
            }),
            muted: AtomicBool::new(false),
        }
    }

    /// The track id in this participant's SDP (`TrackInfo::source_track_id`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Audio or video.
    pub fn kind(&self) -> TrackKind {
        self.kind
    }

    /// The SSRC the track is sent with.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Send one encoded audio frame carrying its RFC 6464 audio level
    /// (`level` in -dBov, 0 loudest to 127 silence; `voice` from the sender's
    /// voice activity detection), so the SFU can tell who is speaking.
    pub async fn write_audio_frame(
        &self,
        payload: &[u8],
        duration: u32,
        level: u8,
        voice: bool,
    ) -> Result<usize, CallError> {
        let level = HeaderExtension::AudioLevel(AudioLevelExtension {
            level: level.min(127),
            voice,
        });
        self.send(&[payload], duration, false, Some(level)).await
    }

    /// The next RTP packet of this track (takes a sequence number).
    fn packet(&self, clock: &mut Clock, ts: u32, marker: bool, payload: &[u8]) -> rtc::rtp::Packet {
        let packet = rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                marker,
                payload_type: self.payload_type,
                sequence_number: clock.seq,
                timestamp: ts,
                ssrc: self.ssrc,
                ..Default::default()
            },
            payload: Bytes::copy_from_slice(payload),
        };
        clock.seq = clock.seq.wrapping_add(1);
        packet
    }

    /// Wait for the next keyframe request (PLI or FIR) for this track, which the
    /// SFU relays from subscribers, merged. Returns `false` once the track is
    /// no longer sent. A video publisher answers by sending a keyframe.
    pub async fn keyframe_requested(&self) -> bool {
        while let Some(ev) = self.rtp.poll().await {
            if let TrackLocalEvent::OnRtcpPacket(packets) = ev {
                if huddle_wire::feedback::is_keyframe_request(&packets) {
                    return true;
                }
            }
        }
        false
    }

    /// The RTP sequence number the next packet will carry.
    pub async fn next_sequence_number(&self) -> u16 {
        self.clock.lock().await.seq
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
    /// on by `duration` clock ticks (960 for a 20 ms Opus frame, 90000/fps for
    /// video). Returns the number of packets sent (0 while muted).
    pub async fn write_frame(&self, payloads: &[&[u8]], duration: u32) -> Result<usize, CallError> {
        self.send(payloads, duration, true, None).await
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
        let ts = clock.ts;
        clock.ts = clock.ts.wrapping_add(duration);
        if self.is_muted() {
            return Ok(0);
        }
        let last = payloads.len().saturating_sub(1);
        for (i, payload) in payloads.iter().enumerate() {
            let packet = self.packet(&mut clock, ts, marker && i == last, payload);
            match &extension {
                Some(ext) => {
                    self.rtp
                        .write_rtp_with_extensions(packet, std::slice::from_ref(ext))
                        .await?
                }
                None => self.rtp.write_rtp(packet).await?,
            }
        }
        Ok(payloads.len())
    }
}

/// A track received from another participant through the SFU.
///
/// Dropping it discards the rest of its packets (an app that only wants
/// audio can drop the video tracks it gets).
pub struct RemoteTrack {
    pub(crate) track: Arc<dyn TrackRemote>,
    pub(crate) participant_id: String,
    pub(crate) track_id: String,
    pub(crate) kind: TrackKind,
}

impl std::fmt::Debug for RemoteTrack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteTrack")
            .field("participant_id", &self.participant_id)
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
    /// Id of the participant who publishes it.
    pub fn participant_id(&self) -> &str {
        &self.participant_id
    }

    /// The room-wide track id (as in `track_published`).
    pub fn track_id(&self) -> &str {
        &self.track_id
    }

    /// Audio or video.
    pub fn kind(&self) -> TrackKind {
        self.kind
    }

    /// Next RTP packet, or `None` once the track has ended.
    pub async fn recv(&self) -> Option<rtc::rtp::Packet> {
        loop {
            match self.track.poll().await? {
                TrackRemoteEvent::OnRtpPacket(p) => return Some(p),
                TrackRemoteEvent::OnEnded => return None,
                _ => continue,
            }
        }
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

pub(crate) async fn remote_track(track: Arc<dyn TrackRemote>) -> RemoteTrack {
    let kind = match track.kind().await {
        rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Video => TrackKind::Video,
        _ => TrackKind::Audio,
    };
    RemoteTrack {
        participant_id: track.stream_id().await.to_string(),
        track_id: track.track_id().await.to_string(),
        kind,
        track,
    }
}

pub(crate) fn as_local(t: &Arc<TrackLocalStaticRTP>) -> Arc<dyn TrackLocal> {
    t.clone()
}
