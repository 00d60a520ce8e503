//! SDP and ICE with the clients: publisher offers, subscriber answers,
//! trickled candidates, and the subscriber offers the SFU sends when what a
//! subscriber gets changes.

use super::sdp::{answer_offer, bad_sdp, ended_tracks, make_offer, start_wire};
use super::Endpoint;
use crate::connection::{ice_token, Connection};
use crate::error::SfuError;
use crate::events::SfuEvent;
use crate::ids::ParticipantId;
use crate::transport::Wire;
use huddle_proto::{IceCandidate, PcRole};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::transport::RTCIceCandidateInit;
use std::time::Instant;
use tracing::{debug, warn};

impl Endpoint {
    /// Apply a publisher-connection offer; returns the answer SDP.
    pub fn publisher_offer(
        &mut self,
        now: Instant,
        id: &ParticipantId,
        sdp: String,
    ) -> Result<String, SfuError> {
        let host = self.host();
        let p = self
            .participants
            .get_mut(id)
            .ok_or_else(|| SfuError::UnknownParticipant(id.0.clone()))?;
        if !p.rights.publish {
            return Err(SfuError::PublishForbidden);
        }
        let offer = RTCSessionDescription::offer(sdp).map_err(bad_sdp)?;
        let fresh = p.publisher.is_none();
        if fresh {
            let ufrag = ice_token(16);
            p.publisher = Some(Connection::new(
                now,
                &self.config,
                PcRole::Publisher,
                ufrag,
                self.local_addr,
            )?);
        }
        let result = match p.publisher.as_mut() {
            Some(conn) => answer_offer(now, conn, offer, host),
            None => Err(SfuError::Rtc("publisher connection missing".into())),
        };
        match result {
            Ok(answer) => {
                if let Some(conn) = p.publisher.as_mut() {
                    if let Some(offer) = conn.pc.remote_description().map(|d| d.sdp.clone()) {
                        conn.set_remote_ice(&offer);
                    }
                    if fresh {
                        self.demux
                            .insert_ufrag(conn.ufrag.clone(), (id.clone(), PcRole::Publisher));
                    }
                }
                for track_id in ended_tracks(p) {
                    self.end_incoming(now, id, track_id);
                }
                self.dirty.push((id.clone(), PcRole::Publisher));
                self.flush(now);
                Ok(answer)
            }
            Err(e) => {
                if fresh {
                    p.publisher = None;
                }
                Err(e)
            }
        }
    }

    /// Apply the answer to the last subscriber offer.
    pub fn subscriber_answer(
        &mut self,
        now: Instant,
        id: &ParticipantId,
        sdp: String,
    ) -> Result<(), SfuError> {
        let p = self
            .participants
            .get_mut(id)
            .ok_or_else(|| SfuError::UnknownParticipant(id.0.clone()))?;
        let conn = match (&mut p.subscriber, p.offer_pending) {
            (Some(conn), true) => conn,
            _ => return Err(SfuError::NoPendingOffer),
        };
        Wire::check_remote(&sdp).map_err(bad_sdp)?;
        let answer = RTCSessionDescription::answer(sdp.clone()).map_err(bad_sdp)?;
        conn.pc
            .set_remote_description(now, answer)
            .map_err(bad_sdp)?;
        // A ufrag this answer retires leaves the demultiplexer when the
        // connection is drained (`drain_wire`).
        start_wire(now, conn, &sdp)?;
        p.offer_pending = false;
        // Payload types (and whether RED was taken) may differ per
        // negotiation; look them up again, and
        // ask publishers of video for a keyframe so the new legs can decode.
        for t in self.table.tracks.values_mut() {
            if let Some(leg) = t.legs.get_mut(id) {
                leg.payload_types = None;
            }
        }
        self.keyframes_for(now, id);
        self.dirty.push((id.clone(), PcRole::Subscriber));
        self.flush(now);
        Ok(())
    }

    /// Add a client's trickled ICE candidate.
    pub fn remote_candidate(
        &mut self,
        now: Instant,
        id: &ParticipantId,
        role: PcRole,
        candidate: IceCandidate,
    ) -> Result<(), SfuError> {
        let p = self
            .participants
            .get_mut(id)
            .ok_or_else(|| SfuError::UnknownParticipant(id.0.clone()))?;
        let conn = p.conn_mut(role).ok_or_else(|| {
            SfuError::BadCandidate(format!("no {role:?} connection to add it to"))
        })?;
        if candidate.candidate.trim().is_empty() {
            return Ok(()); // end-of-candidates
        }
        debug!(participant = %id, ?role, candidate = %candidate.candidate, "remote candidate");
        if !component_in_range(&candidate.candidate) {
            // `rtc` computes a priority from it that overflows past 256.
            return Err(SfuError::BadCandidate(
                "the component ID must be a number from 1 to 256 (RFC 8445 §5.1.2.1)".into(),
            ));
        }
        if is_tcp(&candidate.candidate) {
            // The SFU never connects out (ICE lite, passive TCP only): a
            // client's TCP candidates are of no use to it.
            return Ok(());
        }
        conn.pc
            .add_remote_candidate(RTCIceCandidateInit {
                candidate: candidate.candidate,
                sdp_mid: candidate.sdp_mid,
                sdp_mline_index: candidate.sdp_mline_index,
                username_fragment: candidate.username_fragment,
                ..Default::default()
            })
            .map_err(|e| SfuError::BadCandidate(e.to_string()))?;
        self.dirty.push((id.clone(), role));
        self.flush(now);
        Ok(())
    }

    /// Send a subscriber offer to everyone whose tracks changed and who has no
    /// offer outstanding.
    pub(super) fn send_offers(&mut self, now: Instant) {
        let host = self.host();
        for (id, p) in self.participants.iter_mut() {
            if !p.needs_offer || p.offer_pending {
                continue;
            }
            let Some(conn) = p.subscriber.as_mut() else {
                continue;
            };
            if std::mem::take(&mut p.ice_restart) {
                if let Some((ufrag, forget)) = conn.restart_ice() {
                    if let Some(old) = forget {
                        self.demux.remove_ufrag(&old);
                    }
                    self.demux
                        .insert_ufrag(ufrag, (id.clone(), PcRole::Subscriber));
                }
            }
            match make_offer(now, conn, host) {
                Ok(sdp) => {
                    p.needs_offer = false;
                    p.offer_pending = true;
                    self.events.push_back(SfuEvent::SubscriberOffer {
                        participant: id.clone(),
                        sdp,
                    });
                    self.dirty.push((id.clone(), PcRole::Subscriber));
                }
                Err(e) => warn!(participant = %id, "subscriber offer failed: {e}"),
            }
        }
    }
}

/// Whether an ICE candidate line is a TCP one (its transport field,
/// RFC 8839 §5.1).
fn is_tcp(candidate: &str) -> bool {
    candidate
        .split_whitespace()
        .nth(2)
        .is_some_and(|t| t.eq_ignore_ascii_case("tcp"))
}

/// Whether an ICE candidate line's component ID (its second field,
/// RFC 8839 §5.1) is one ICE allows: 1 to 256.
fn component_in_range(candidate: &str) -> bool {
    candidate
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .is_some_and(|c| (1..=256).contains(&c))
}

#[cfg(test)]
mod tests {
    #[test]
    fn component_ids_past_256_are_refused() {
        let line = |c: &str| format!("candidate:1 {c} udp 2122260223 198.18.0.2 5000 typ host");
        for ok in ["1", "2", "256"] {
            assert!(super::component_in_range(&line(ok)), "{ok}");
        }
        for bad in ["0", "257", "51615", "65536", "-1", "x", ""] {
            assert!(!super::component_in_range(&line(bad)), "{bad}");
        }
        assert!(!super::component_in_range("candidate:1"));
    }

    #[test]
    fn tcp_candidates_are_told_apart() {
        assert!(super::is_tcp(
            "candidate:1 1 TCP 1518280447 198.18.0.2 9 typ host tcptype active"
        ));
        assert!(!super::is_tcp(
            "candidate:1 1 udp 2122260223 198.18.0.2 5000 typ host"
        ));
        assert!(!super::is_tcp("candidate:"));
    }
}
