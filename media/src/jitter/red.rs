//! RED (RFC 2198) packets into the jitter buffer: the primary block as the
//! packet, each redundant block as a copy of the earlier packet it repeats.

use super::{InsertOutcome, JitterBuffer, RtpAudioPacket};
use crate::error::RedError;
use crate::rtp::parse_red;
use std::time::Duration;

/// Packets after which a RED depth not seen again is forgotten (5 s of
/// 20 ms packets): the sender lowered its distance, or stopped RED.
const RED_DEPTH_MEMORY: u64 = 250;

impl JitterBuffer {
    /// Hand over a received RED packet (`packet.payload` is the RED
    /// payload; `seq`, `timestamp`, `ssrc` and `marker` are the RTP
    /// header's) that arrived at `arrival`. `primary_pt` is the codec's
    /// payload type inside the RED blocks (111 for Opus in Chromium's
    /// `a=fmtp:63 111/111`).
    ///
    /// The primary block goes in as the packet itself ([`insert`](Self::insert));
    /// each redundant block of `primary_pt`, placed k packets back
    /// ([`RedPayload::frames`](crate::rtp::RedPayload::frames), with the
    /// packet duration of the stream), goes in with
    /// [`insert_redundant`](Self::insert_redundant): used only for a packet
    /// that is missing. Returns what happened to the primary block
    /// ([`InsertOutcome::OtherPayloadType`] if it is not `primary_pt`; its
    /// redundant blocks are still used). A payload that is not valid RED is
    /// dropped whole with the [`RedError`] (counted in
    /// [`JitterStats::red_malformed`](super::JitterStats::red_malformed)).
    ///
    /// How far back the copies reach also sets how many packets the FEC
    /// hold keeps while packets are lost ([`JitterConfig::red_hold_packets`](super::JitterConfig::red_hold_packets)).
    pub fn insert_red(
        &mut self,
        packet: RtpAudioPacket,
        primary_pt: u8,
        arrival: Duration,
    ) -> Result<InsertOutcome, RedError> {
        let parsed = match parse_red(&packet.payload) {
            Ok(parsed) => parsed,
            Err(e) => {
                self.stats.packets_received += 1;
                self.stats.red_malformed += 1;
                return Err(e);
            }
        };
        let frame_ticks = u32::try_from(self.packet_ticks).unwrap_or(960);
        let mut outcome = InsertOutcome::OtherPayloadType;
        let mut depth = 0;
        for frame in parsed.frames(packet.seq, packet.timestamp, frame_ticks) {
            if frame.payload_type != primary_pt {
                if frame.distance == 0 {
                    self.stats.packets_received += 1;
                }
                continue;
            }
            let one = RtpAudioPacket {
                seq: frame.seq,
                timestamp: frame.timestamp,
                ssrc: packet.ssrc,
                payload: frame.payload.to_vec(),
                marker: packet.marker && frame.distance == 0,
            };
            if frame.distance == 0 {
                outcome = self.insert(one, arrival);
            } else {
                depth = depth.max(frame.distance);
                self.insert_redundant(one, arrival);
            }
        }
        self.note_red_depth(depth);
        Ok(outcome)
    }

    /// Track how far back the sender's RED copies reach: the deepest seen
    /// within the last [`RED_DEPTH_MEMORY`] packets.
    fn note_red_depth(&mut self, depth: u16) {
        let now = self.stats.packets_received;
        let forgotten = now.saturating_sub(self.red_depth_seen_at) > RED_DEPTH_MEMORY;
        if depth >= self.red_depth || forgotten {
            self.red_depth = depth;
            self.red_depth_seen_at = now;
        }
    }
}

#[cfg(test)]
#[path = "red_tests.rs"]
mod tests;
