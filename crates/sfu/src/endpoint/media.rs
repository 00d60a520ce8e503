//! The media path's entry points: RTP from a publisher fanned out to every
//! leg (through [`crate::forward`]) and NACKs answered from the track's
//! store. Which layer each leg gets is `allocation`'s.

use super::Endpoint;
use crate::forward::keyframe::starts_keyframe;
use crate::forward::red::arrive;
use crate::forward::red_send::{resend_red_on_leg, send_red_on_leg};
use crate::forward::send::{send_on_leg, Body, Out};
use crate::forward::simulcast::Verdict;
use crate::forward::track::add_layer;
use crate::ids::ParticipantId;
use huddle_proto::{PcRole, TrackKind};
use rtc::rtp::extension::audio_level_extension::AudioLevelExtension;
use rtc::shared::marshal::Unmarshal;
use std::time::Instant;
use tracing::debug;

/// Octets of an RTP header without CSRCs or extensions: counted with the
/// payload in a layer's rate, as what a subscriber receives carries it.
const RTP_HEADER: usize = 12;

impl Endpoint {
    /// RTP from a publisher: publish the track on its first packet, then
    /// forward to every leg.
    pub(super) fn on_rtp(
        &mut self,
        now: Instant,
        publisher: &ParticipantId,
        remote: String,
        packet: rtc::rtp::Packet,
    ) {
        self.rtp_in += 1;
        let key = (publisher.clone(), remote);
        let track_id = match self.table.by_remote.get(&key) {
            Some(id) => id.clone(),
            None => match self.publish(now, publisher, &key.1, &packet) {
                Some(id) => id,
                None => return,
            },
        };
        let Some(track) = self.table.tracks.get_mut(&track_id) else {
            return;
        };
        let (layer, track) = match track
            .layers
            .iter()
            .position(|l| l.ssrc == packet.header.ssrc)
        {
            Some(i) => (i, track),
            None => {
                // A simulcast layer's first packet (or a new SSRC).
                let rid = self
                    .participants
                    .get_mut(publisher)
                    .and_then(|p| p.publisher.as_mut())
                    .and_then(|c| c.pc.rtp_receiver(track.receiver_id))
                    .and_then(|r| r.track().rid(packet.header.ssrc).cloned());
                let Some(i) = add_layer(now, track, rid, packet.header.ssrc) else {
                    return;
                };
                self.choose_layers(now);
                let Some(track) = self.table.tracks.get_mut(&track_id) else {
                    return;
                };
                (i, track)
            }
        };
        // Padding-only packets (bandwidth probes) are not forwarded (see
        // `padding`), and they keep coming on a layer the browser stopped
        // encoding: they do not make it active either.
        let padding_only = packet.payload.is_empty();
        let Some(seq) = track.layers[layer]
            .padding
            .admit(packet.header.sequence_number, padding_only)
        else {
            return;
        };
        let video = track.kind == TrackKind::Video;
        let l = &mut track.layers[layer];
        l.last_rx = now;
        let codec = &track.codec.mime_type;
        let in_keyframe = video
            && l.keyframes.in_keyframe(packet.header.timestamp, || {
                starts_keyframe(codec, &packet.payload)
            });
        let bytes = RTP_HEADER + packet.payload.len();
        if in_keyframe {
            l.keyframe_rate.on_packet(now, bytes);
        } else {
            l.rate.on_packet(now, bytes);
        }
        if track.muted {
            if track.red.is_some() {
                // Not forwarded: not to be recovered after the unmute either.
                let ts = packet.header.timestamp;
                track.layers[layer].red_strip.skip(seq, ts);
            }
            return;
        }
        if let Some(id) = track.audio_level_id {
            if let Some(mut raw) = packet.header.get_extension(id) {
                if let Ok(al) = AudioLevelExtension::unmarshal(&mut raw) {
                    track.audio_level = Some((al.level, al.voice));
                    self.speakers
                        .observe(now, &track.room, &track.publisher, al.level);
                }
            }
        }
        // Extension ids are per connection: drop the publisher's. The
        // padding went with parsing; the P bit must go too.
        let mut packet = packet;
        #[cfg(feature = "fault-injection")]
        if let Some(tamper) = &self.tamper {
            let seen = crate::fault::Seen {
                room: &track.room,
                publisher: &track.publisher,
                kind: track.kind,
            };
            tamper(&seen, &mut packet);
        }
        packet.header.sequence_number = seq;
        packet.header.padding = false;
        packet.header.extension = false;
        packet.header.extensions.clear();
        packet.header.extension_profile = 0;
        // RED: read once here, for every leg; malformed, it goes nowhere.
        let red = match track.red {
            Some(format) => {
                let h = &packet.header;
                let strip = &mut track.layers[layer].red_strip;
                match arrive(
                    format,
                    strip,
                    h.payload_type,
                    seq,
                    h.timestamp,
                    &packet.payload,
                ) {
                    Ok(arrival) => Some((format, arrival)),
                    Err(e) => {
                        self.red_malformed += 1;
                        debug!(track = %track_id, seq, "RED packet dropped: {e}");
                        return;
                    }
                }
            }
            None => None,
        };
        track.layers[layer].rtx.insert(&packet);
        // Video legs forward the layer they get, and switch (or resume
        // after a pause) at a keyframe; audio legs forward everything.
        let mut keyframe = None;
        // Bit i: piece i of the RED plan went to some leg.
        let mut pieces_sent = 0u32;
        let store = &track.layers[layer].rtx;
        for (sub, leg) in track.legs.iter_mut() {
            if video {
                let keyframe = leg.choice.waits_for(layer)
                    && *keyframe.get_or_insert_with(|| {
                        starts_keyframe(&track.codec.mime_type, &packet.payload)
                    });
                match leg.choice.on_packet(layer, keyframe) {
                    Verdict::Forward => {}
                    Verdict::Switch => {
                        debug!(subscriber = %sub, track = %track_id, layer, "simulcast layer switched");
                        leg.resync();
                    }
                    Verdict::Drop => continue,
                }
                if packet.header.marker {
                    leg.choice.frame_ended(layer);
                }
            }
            let out = Out {
                participants: &mut self.participants,
                transmits: &mut self.transmits,
                buf: &mut self.out_buf,
                paced: &mut self.paced,
            };
            match &red {
                None => {
                    let body = Body::of(&packet);
                    if send_on_leg(now, out, &track.codec, sub, leg, body, None) {
                        self.rtp_out += 1;
                    }
                }
                Some((format, arrival)) => {
                    let sent = send_red_on_leg(
                        now,
                        out,
                        &track.codec,
                        sub,
                        leg,
                        &packet,
                        *format,
                        arrival,
                        store,
                    );
                    self.rtp_out += sent.copies;
                    self.red_boosted += u64::from(sent.boosted);
                    pieces_sent |= sent.pieces;
                }
            }
        }
        if let Some((_, arrival)) = &red {
            // Recovered frames that reached at least one subscriber.
            self.red_recovered += arrival
                .plan
                .pieces()
                .iter()
                .enumerate()
                .filter(|(i, p)| p.recovered && pieces_sent & (1 << i) != 0)
                .count() as u64;
        }
        self.reschedule_paced();
    }

    /// Subscribers whose pacer started holding packets: their connection
    /// deadlines moved.
    fn reschedule_paced(&mut self) {
        for sub in self.paced.drain(..) {
            self.deadlines.touch((sub, PcRole::Subscriber));
        }
    }

    /// A subscriber reported packets of a track lost: resend what the track's
    /// store still has, on that subscriber's leg only, each packet a bounded
    /// number of times ([`crate::forward::resend`]).
    pub(super) fn on_nack(
        &mut self,
        now: Instant,
        sub: &ParticipantId,
        track_id: &str,
        lost: Vec<(u32, u16)>,
    ) {
        let Some(track) = self.table.tracks.get_mut(track_id) else {
            return;
        };
        let Some(leg) = track.legs.get_mut(sub) else {
            return;
        };
        let Some(layer) = leg.choice.current.and_then(|l| track.layers.get(l)) else {
            return;
        };
        for (ssrc, seq) in lost {
            if ssrc != leg.ssrc {
                continue;
            }
            leg.nack_loss.on_nack(seq);
            // Too old, or from before a switch: the subscriber will ask for
            // a keyframe.
            let Some(packet) = leg.source_seq(seq).and_then(|s| layer.rtx.get(s)) else {
                continue;
            };
            // Asked again before the last resend could arrive, or too often.
            if !leg.resent.allow(now, seq) {
                continue;
            }
            let out = Out {
                participants: &mut self.participants,
                transmits: &mut self.transmits,
                buf: &mut self.out_buf,
                paced: &mut self.paced,
            };
            let sent = match track.red {
                // In the leg's form: RED as it is, or plain Opus.
                Some(format) => {
                    resend_red_on_leg(now, out, &track.codec, sub, leg, packet, format, seq)
                }
                None => send_on_leg(
                    now,
                    out,
                    &track.codec,
                    sub,
                    leg,
                    Body::of(packet),
                    Some(seq),
                ),
            };
            if sent {
                self.rtx_sent += 1;
            }
        }
        self.reschedule_paced();
    }
}
