//! The tracks a participant publishes: added to its publisher connection,
//! then sent on their schedule, every packet carrying a [`Probe`]. With
//! simulcast a video track is three streams on one sender, each with its own
//! SSRC, RID, bitrate and numbering, and the MID and RID header extensions
//! on every packet (how the SFU tells the layers apart).

use crate::e2ee::E2eeMember;
use crate::error::{rtc_err, BenchError};
use crate::media::{payload, Generator, MediaConfig, SIMULCAST_LAYERS};
use crate::peer::Peer;
use crate::probe::{kind_byte, layer_flags, Probe, FLAG_KEYFRAME};
use crate::stats::{Progress, Shared};
use bytes::Bytes;
use huddle_proto::TrackKind;
use huddle_wire::codecs::extension_id;
use huddle_wire::local_track::{default_track, simulcast_track};
use rtc::rtp;
use rtc::rtp_transceiver::{RTCRtpSenderId, RTCRtpTransceiverId};
use rtc::sdp::extmap::{SDES_MID_URI, SDES_RTP_STREAM_ID_URI};
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// Send clock lateness beyond which the schedule skips ahead (the tool is
/// overloaded; the skipped frames are simply not sent, so not expected).
const MAX_CATCH_UP: Duration = Duration::from_millis(200);
/// How soon to look again at a track that cannot be scheduled yet.
const UNSCHEDULED_RETRY: Duration = Duration::from_millis(10);

/// One published stream: a track, or one simulcast layer of a track.
struct OutTrack {
    kind: TrackKind,
    sender: RTCRtpSenderId,
    ssrc: u32,
    /// Simulcast layer (0 without simulcast) and its RID.
    layer: u8,
    rid: Option<&'static str>,
    /// The media this stream sends (a lower layer's bitrate is lower).
    media: MediaConfig,
    payload_type: Option<u8>,
    /// A simulcast layer's header extensions, once negotiated: `None` until
    /// then; `Some(None)` when there are none to add.
    extensions: Option<Option<Extensions>>,
    rtp_seq: u16,
    rtp_ts: u32,
    probe_seq: u32,
    schedule: Option<Generator>,
    sent_in_window: u64,
}

/// The MID and RID header extensions a simulcast layer's packets carry.
struct Extensions {
    mid_id: u8,
    mid: Bytes,
    rid_id: u8,
}

/// Every track one participant publishes.
pub struct Outgoing {
    publisher: u32,
    media: MediaConfig,
    tracks: Vec<OutTrack>,
}

impl Outgoing {
    /// No tracks yet, for participant `publisher`.
    pub fn new(publisher: u32, media: MediaConfig) -> Self {
        Self {
            publisher,
            media,
            tracks: Vec::new(),
        }
    }

    /// Add one track per kind to `peer` (before its offer is created).
    pub fn add_tracks(
        &mut self,
        peer: &mut Peer,
        name: &str,
        kinds: &[TrackKind],
    ) -> Result<(), BenchError> {
        for &kind in kinds {
            let simulcast = kind == TrackKind::Video && self.media.simulcast;
            let stream = format!("{name}-stream");
            let track_id = format!("{name}-{kind:?}");
            if !simulcast {
                let ssrc = rand::random::<u32>() | 1;
                let track = default_track(stream, track_id, kind, ssrc);
                let sender = peer.pc.add_track(track).map_err(rtc_err)?;
                self.push(kind, sender, ssrc, 0, None, self.media.clone());
                continue;
            }
            let layers: Vec<(&'static str, u32, u32)> = SIMULCAST_LAYERS
                .iter()
                .map(|&(rid, divisor)| (rid, rand::random::<u32>() | 1, divisor))
                .collect();
            let encodings: Vec<(&str, u32)> = layers.iter().map(|&(r, s, _)| (r, s)).collect();
            let track = simulcast_track(stream, track_id, huddle_wire::codecs::vp8(), &encodings);
            let sender = peer.pc.add_track(track).map_err(rtc_err)?;
            for (layer, &(rid, ssrc, divisor)) in (0u8..).zip(&layers) {
                let media = self.media.scaled_video(divisor);
                self.push(kind, sender, ssrc, layer, Some(rid), media);
            }
        }
        Ok(())
    }

    fn push(
        &mut self,
        kind: TrackKind,
        sender: RTCRtpSenderId,
        ssrc: u32,
        layer: u8,
        rid: Option<&'static str>,
        media: MediaConfig,
    ) {
        self.tracks.push(OutTrack {
            kind,
            sender,
            ssrc,
            layer,
            rid,
            media,
            payload_type: None,
            extensions: rid.is_none().then_some(None),
            rtp_seq: rand::random(),
            rtp_ts: rand::random(),
            probe_seq: 0,
            schedule: None,
            sent_in_window: 0,
        });
    }

    /// Whether every track has sent at least one packet.
    pub fn all_sending(&self) -> bool {
        self.tracks.iter().all(|t| t.probe_seq > 0)
    }

    /// When the next frame of any track is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.tracks
            .iter()
            .map(|t| {
                t.schedule.as_ref().map_or_else(
                    // Not scheduled yet (no payload type known): retry soon.
                    || Instant::now() + UNSCHEDULED_RETRY,
                    Generator::next_due,
                )
            })
            .min()
    }

    /// Packets sent per (kind, simulcast layer) whose send time is in the
    /// window.
    pub fn sent_in_window(&self) -> HashMap<(u8, u8), u64> {
        self.tracks
            .iter()
            .map(|t| ((kind_byte(t.kind), t.layer), t.sent_in_window))
            .collect()
    }

    /// Send every frame due by `now` on `peer` (connected), then drain it;
    /// in an E2EE room each payload sealed by `e2ee` (none before the
    /// member's first epoch).
    pub fn send_due(
        &mut self,
        peer: &mut Peer,
        now: Instant,
        shared: &Shared,
        progress: &Progress,
        mut e2ee: Option<&mut E2eeMember>,
    ) {
        // Spread the publishers over the 20 ms audio period.
        let phase = Duration::from_micros(u64::from(self.publisher) * 1_733 % 20_000);
        for track in &mut self.tracks {
            if track.payload_type.is_none() {
                track.payload_type = peer.pc.rtp_sender(track.sender).and_then(|mut s| {
                    s.get_parameters()
                        .rtp_parameters
                        .codecs
                        .first()
                        .map(|c| c.payload_type)
                });
            }
            let Some(payload_type) = track.payload_type else {
                continue;
            };
            if track.extensions.is_none() {
                track.extensions = layer_extensions(peer, track.sender).map(Some);
            }
            let Some(extensions) = &track.extensions else {
                continue;
            };
            let media = &track.media;
            let schedule = track
                .schedule
                .get_or_insert_with(|| Generator::new(track.kind, media.clone(), now + phase));
            let lag = now.saturating_duration_since(schedule.next_due());
            if lag > MAX_CATCH_UP {
                *schedule = Generator::new(track.kind, media.clone(), now);
            }
            if shared.in_window(shared.ns(now)) {
                progress
                    .max_send_lag_us
                    .fetch_max(lag.as_micros() as u64, Relaxed);
            }
            while schedule.next_due() <= now {
                let frame = schedule.next_frame();
                let send_ns = shared.ns(Instant::now());
                let in_window = shared.in_window(send_ns);
                let Some(mut sender) = peer.pc.rtp_sender(track.sender) else {
                    break;
                };
                let last = frame.sizes.len().saturating_sub(1);
                for (i, &size) in frame.sizes.iter().enumerate() {
                    let probe = Probe {
                        kind: track.kind,
                        flags: layer_flags(track.layer)
                            | if frame.keyframe { FLAG_KEYFRAME } else { 0 },
                        publisher: self.publisher,
                        seq: track.probe_seq,
                        send_ns,
                    };
                    let mut header = rtp::header::Header {
                        version: 2,
                        payload_type,
                        sequence_number: track.rtp_seq,
                        timestamp: track.rtp_ts,
                        ssrc: track.ssrc,
                        marker: track.kind == TrackKind::Video && i == last,
                        ..Default::default()
                    };
                    if let (Some(ext), Some(rid)) = (extensions, track.rid) {
                        // Both fit a one-byte extension: they cannot fail.
                        let _ = header.set_extension(ext.mid_id, ext.mid.clone());
                        let _ =
                            header.set_extension(ext.rid_id, Bytes::from_static(rid.as_bytes()));
                    }
                    let mut payload = payload(size, i == 0, &probe);
                    if let Some(member) = e2ee.as_deref_mut() {
                        let Some(sealed) = member.seal(track.kind, &payload) else {
                            continue;
                        };
                        payload = sealed;
                    }
                    let packet = rtp::Packet { header, payload };
                    if let Err(e) = sender.write_rtp(now, packet) {
                        tracing::debug!(error = %e, "write_rtp");
                        continue;
                    }
                    track.rtp_seq = track.rtp_seq.wrapping_add(1);
                    track.probe_seq += 1;
                    if in_window {
                        track.sent_in_window += 1;
                    }
                    Progress::add(&progress.tx_packets, 1);
                }
                track.rtp_ts = track.rtp_ts.wrapping_add(frame.rtp_ticks);
            }
        }
        peer.drain(now, &mut |_, _| {});
    }
}

/// The negotiated MID of `sender`'s transceiver and the ids of the MID and
/// RID header extensions, once the answer is applied.
fn layer_extensions(peer: &mut Peer, sender: RTCRtpSenderId) -> Option<Extensions> {
    let mid = peer
        .pc
        .rtp_transceiver(RTCRtpTransceiverId::from(sender))?
        .mid()
        .clone()?;
    let mut rtp_sender = peer.pc.rtp_sender(sender)?;
    let params = &rtp_sender.get_parameters().rtp_parameters;
    Some(Extensions {
        mid_id: extension_id(params, SDES_MID_URI)?,
        mid: Bytes::from(mid.into_bytes()),
        rid_id: extension_id(params, SDES_RTP_STREAM_ID_URI)?,
    })
}
