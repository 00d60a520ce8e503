//! The tracks a participant publishes: added to its publisher connection,
//! then sent on their schedule, every packet carrying a [`Probe`].

use crate::error::{rtc_err, BenchError};
use crate::media::{payload, Generator, MediaConfig};
use crate::peer::Peer;
use crate::probe::{kind_byte, Probe, FLAG_KEYFRAME};
use crate::stats::{Progress, Shared};
use huddle_proto::TrackKind;
use huddle_sfu::local_track::default_track;
use rtc::rtp;
use rtc::rtp_transceiver::RTCRtpSenderId;
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// Send clock lateness beyond which the schedule skips ahead (the tool is
/// overloaded; the skipped frames are simply not sent, so not expected).
const MAX_CATCH_UP: Duration = Duration::from_millis(200);
/// How soon to look again at a track that cannot be scheduled yet.
const UNSCHEDULED_RETRY: Duration = Duration::from_millis(10);

/// One published track.
struct OutTrack {
    kind: TrackKind,
    sender: RTCRtpSenderId,
    ssrc: u32,
    payload_type: Option<u8>,
    rtp_seq: u16,
    rtp_ts: u32,
    probe_seq: u32,
    schedule: Option<Generator>,
    sent_in_window: u64,
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
            let ssrc = rand::random::<u32>() | 1;
            let track = default_track(
                format!("{name}-stream"),
                format!("{name}-{kind:?}"),
                kind,
                ssrc,
            );
            let sender = peer.pc.add_track(track).map_err(rtc_err)?;
            self.tracks.push(OutTrack {
                kind,
                sender,
                ssrc,
                payload_type: None,
                rtp_seq: rand::random(),
                rtp_ts: rand::random(),
                probe_seq: 0,
                schedule: None,
                sent_in_window: 0,
            });
        }
        Ok(())
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

    /// Packets sent per kind whose send time is in the window.
    pub fn sent_in_window(&self) -> HashMap<u8, u64> {
        self.tracks
            .iter()
            .map(|t| (kind_byte(t.kind), t.sent_in_window))
            .collect()
    }

    /// Send every frame due by `now` on `peer` (connected), then drain it.
    pub fn send_due(
        &mut self,
        peer: &mut Peer,
        now: Instant,
        shared: &Shared,
        progress: &Progress,
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
            let media = &self.media;
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
                        flags: if frame.keyframe { FLAG_KEYFRAME } else { 0 },
                        publisher: self.publisher,
                        seq: track.probe_seq,
                        send_ns,
                    };
                    let packet = rtp::Packet {
                        header: rtp::header::Header {
                            version: 2,
                            payload_type,
                            sequence_number: track.rtp_seq,
                            timestamp: track.rtp_ts,
                            ssrc: track.ssrc,
                            marker: track.kind == TrackKind::Video && i == last,
                            ..Default::default()
                        },
                        payload: payload(size, i == 0, &probe),
                    };
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
