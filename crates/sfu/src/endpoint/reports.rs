//! RTCP sender reports to every connected subscriber, for the legs it gets.

use super::Endpoint;
use crate::connection::Liveness;
use crate::forward::sender_report::{self};
use crate::ids::ParticipantId;
use crate::transmit::Transmit;
use std::collections::HashMap;
use std::time::Instant;
use tracing::debug;

/// Sender reports per RTCP datagram: 28 bytes each, so one datagram stays
/// well under an MTU.
const SRS_PER_PACKET: usize = 32;

impl Endpoint {
    /// Send every connected subscriber the sender reports of the legs it
    /// gets, as compound RTCP packets of at most [`SRS_PER_PACKET`] reports.
    pub(super) fn send_sender_reports(&mut self, now: Instant) {
        self.next_sender_reports = Some(now + sender_report::INTERVAL);
        let Some(wall) = self.wall_clock else {
            return;
        };
        let mut reports: HashMap<&ParticipantId, Vec<Box<dyn rtc::rtcp::Packet>>> = HashMap::new();
        for t in self.table.tracks.values() {
            for (sub, leg) in &t.legs {
                if let Some(sr) =
                    sender_report::report(leg.ssrc, &leg.sent, t.codec.clock_rate, now, &wall)
                {
                    reports.entry(sub).or_default().push(Box::new(sr));
                }
            }
        }
        for (sub, reports) in reports {
            let Some(wire) = self
                .participants
                .get_mut(sub)
                .and_then(|p| p.subscriber.as_mut())
                .filter(|c| c.liveness == Liveness::Up)
                .and_then(|c| c.wire.as_mut())
            else {
                continue;
            };
            for chunk in reports.chunks(SRS_PER_PACKET) {
                let sent = rtc::rtcp::packet::marshal(chunk)
                    .map_err(|e| e.to_string())
                    .and_then(|plain| wire.protect_rtcp(&plain).map_err(|e| e.to_string()));
                match sent {
                    Ok((dst, payload)) => self.transmits.push_back(Transmit { dst, payload }),
                    Err(e) => debug!(participant = %sub, "sender report: {e}"),
                }
            }
        }
    }
}
