//! Jitter-buffer statistics, in the spirit of WebRTC's `RTCInboundRtpStreamStats`
//! (`jitterBufferDelay`, `jitterBufferEmittedCount`, `jitterBufferTargetDelay`,
//! `concealedSamples`, `fecPacketsReceived`, `packetsLost`, ...).
//!
//! Counts of frames are 20 ms frames (one per `JitterBuffer::pull`);
//! multiply by 960 for samples per channel at 48 kHz.

use super::decision::Operation;

/// Counters and gauges of one `JitterBuffer`.
///
/// All counters start at zero and only grow; they survive SSRC changes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct JitterStats {
    /// Packets handed to `insert` (whatever happened to them).
    pub packets_received: u64,
    /// Packets refused because the same sequence number was buffered or played.
    pub duplicates: u64,
    /// Packets that arrived after their turn (already concealed, recovered or
    /// skipped), and stragglers of a replaced SSRC. Dropped.
    pub late: u64,
    /// Packets that arrived 4 or more sequence numbers behind the newest
    /// (`jitter::FAR_BEHIND`): resends answering a NACK, mostly. Played if
    /// still in time, and left out of the delay estimate.
    pub far_behind: u64,
    /// Sequence numbers whose own packet was missing when their turn came
    /// (played from a RED copy, rebuilt from FEC, or concealed). DTX gaps
    /// (timestamp jumps with contiguous sequence numbers) and SSRC changes
    /// are not loss.
    pub lost: u64,
    /// Packets dropped because the buffer was full.
    pub flushed: u64,
    /// Frames produced by `pull`.
    pub frames_out: u64,
    /// Frames decoded normally from their own packet.
    pub normal_frames: u64,
    /// Concealment (PLC) frames for missing or late packets or an empty buffer.
    pub concealed_frames: u64,
    /// Frames rebuilt from the in-band FEC of the next packet.
    pub fec_recovered_frames: u64,
    /// Frames whose packet was lost, played from a redundant (RED) copy
    /// carried by a later packet. They decode as the packet itself, so they
    /// are also counted in `normal_frames` (or `accelerated_frames`); with
    /// `fec_recovered_frames` and `concealed_frames` this tells how the lost
    /// packets were made up for.
    pub red_recovered_frames: u64,
    /// Redundant (RED) blocks handed to the buffer (placed on the timeline,
    /// of the codec's payload type), whether or not they were needed.
    pub red_received: u64,
    /// RED packets that could not be parsed (dropped whole).
    pub red_malformed: u64,
    /// Accelerate operations (each dropped one frame of delay).
    pub accelerated_frames: u64,
    /// Preemptive-expand operations (each added one frame of delay).
    pub preemptive_expanded_frames: u64,
    /// Comfort-noise frames during DTX.
    pub comfort_noise_frames: u64,
    /// Silence frames (before playout started, or after concealment gave up).
    pub silence_frames: u64,
    /// Payloads the decoder rejected (each replaced by concealment).
    pub decode_errors: u64,
    /// Times a new SSRC replaced the stream.
    pub ssrc_changes: u64,
    /// Times the same SSRC jumped so far in sequence number that the stream
    /// was restarted.
    pub stream_resets: u64,
    /// Time the last played packet spent in the buffer (arrival to playout), ms.
    pub current_delay_ms: f64,
    /// Sum over played packets of their time in the buffer, ms
    /// (WebRTC `jitterBufferDelay`, per packet rather than per sample).
    pub total_delay_ms: f64,
    /// Packets played (WebRTC `jitterBufferEmittedCount`, per packet).
    pub delayed_packets: u64,
    /// Current target delay, ms (WebRTC `jitterBufferTargetDelay`).
    pub target_delay_ms: f64,
    /// Audio buffered ahead of the playout point at the last decision, ms
    /// (the packet about to be played included).
    pub buffer_level_ms: f64,
    /// Filtered playout lag, ms: how far playout runs behind the arrival line
    /// of the best-placed packet of the last 2 s. The buffer keeps it between
    /// the target and the target plus one packet (and 5 ms); a packet waits
    /// this lag minus its own relative arrival delay.
    pub playout_lag_ms: f64,
    /// Relative arrival delay of the last packet, ms.
    pub last_relative_delay_ms: f64,
}

impl JitterStats {
    /// Mean time a played packet spent in the buffer, ms (0 before any).
    pub fn mean_delay_ms(&self) -> f64 {
        if self.delayed_packets == 0 {
            0.0
        } else {
            self.total_delay_ms / self.delayed_packets as f64
        }
    }

    /// Count one output frame produced by `op`.
    pub(crate) fn count(&mut self, op: Operation) {
        match op {
            Operation::Normal => self.normal_frames += 1,
            Operation::Expand => self.concealed_frames += 1,
            Operation::FecRecover => self.fec_recovered_frames += 1,
            Operation::Accelerate => self.accelerated_frames += 1,
            Operation::PreemptiveExpand => self.preemptive_expanded_frames += 1,
            Operation::ComfortNoise => self.comfort_noise_frames += 1,
            Operation::Silence => self.silence_frames += 1,
        }
    }
}
