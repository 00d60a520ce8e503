//! Measuring a probe cluster from the feedback on its packets (libwebrtc's
//! `ProbeBitrateEstimator`).
//!
//! A cluster is every packet sent while it was open (media, padding and
//! retransmissions alike: the pacer sends all of them at the probe rate).
//! Its *send span* runs from its first to its last send, its *receive
//! span* from its first to its last arrival.
//!
//! If the path had room, arrivals mirror sends and the spans match; if the
//! probe filled the bottleneck, a queue grows through the cluster and the
//! receive span is longer. So the cluster is *saturated* when the receive
//! span exceeds the send span / 0.9 plus [`BURST_SLACK_US`] (what one
//! burst of the pacer can queue, whatever the cluster's length). This
//! compares spans, not rates: libwebrtc's rates (sent bytes less the
//! last packet's, received bytes less the first's) are biased by the size
//! difference of the first and last packets, which with a 1200-byte media
//! packet first and 50-300-byte padding last reads a path with room as
//! full.
//!
//! What the path is known to carry: unsaturated, the cluster's bytes
//! (less the last packet's) over the longer span; saturated, the received
//! bytes (less the first packet's, which arrived at the span's start) over
//! the receive span: the bottleneck's rate.

/// Fewer received packets than this measure nothing.
pub(crate) const MIN_PACKETS: u32 = 5;
/// Send span below this share of the receive span: the link was full.
const SATURATED_RATIO: f64 = 0.9;
/// Receive span slack for the pacer's bursts (microseconds).
pub(crate) const BURST_SLACK_US: f64 = 3_000.0;
/// A receive rate above twice the send rate is a measuring artefact.
const MAX_RATIO: f64 = 2.0;

/// What a probe cluster showed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeResult {
    /// The cluster's id.
    pub id: u32,
    /// The rate it was meant to send at (bits/s).
    pub target_bps: u64,
    /// The rate it did send at (bits/s).
    pub sent_bps: u64,
    /// The rate the receiver got it at (bits/s): bytes less the first
    /// packet's over the receive span.
    pub received_bps: u64,
    /// Packets of the cluster reported received.
    pub received_packets: u32,
    /// Packets of the cluster reported lost.
    pub lost_packets: u32,
    /// The receive span outgrew the send span: the path is full.
    pub saturated: bool,
    /// What the path is known to carry from this probe (bits/s; see the
    /// module doc); 0 when too few packets came back.
    pub measured_bps: u64,
}

/// A cluster being sent and fed back.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cluster {
    pub id: u32,
    pub target_bps: u64,
    /// Unwrapped sequence numbers of its first and last packets.
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Whether packets are still being added.
    pub open: bool,
    first_send_us: u64,
    last_send_us: u64,
    last_send_size: u64,
    send_bytes: u64,
    first_arrival_us: i64,
    last_arrival_us: i64,
    first_arrival_size: u64,
    receive_bytes: u64,
    received: u32,
    lost: u32,
    /// Highest sequence number of the cluster that feedback covered.
    covered: Option<u64>,
}

impl Cluster {
    /// A new, open cluster.
    pub fn new(id: u32, target_bps: u64) -> Self {
        Self {
            id,
            target_bps,
            first_seq: None,
            last_seq: None,
            open: true,
            first_send_us: u64::MAX,
            last_send_us: 0,
            last_send_size: 0,
            send_bytes: 0,
            first_arrival_us: i64::MAX,
            last_arrival_us: i64::MIN,
            first_arrival_size: 0,
            receive_bytes: 0,
            received: 0,
            lost: 0,
            covered: None,
        }
    }

    /// A packet was sent while the cluster was open. O(1).
    #[inline]
    pub fn on_sent(&mut self, seq: u64) {
        if self.first_seq.is_none() {
            self.first_seq = Some(seq);
        }
        self.last_seq = Some(seq);
    }

    /// Whether `seq` belongs to the cluster.
    pub fn contains(&self, seq: u64) -> bool {
        match (self.first_seq, self.last_seq) {
            (Some(first), Some(last)) => (first..=last).contains(&seq),
            _ => false,
        }
    }

    /// Feedback on one of its packets (first report of that packet).
    pub fn on_feedback(
        &mut self,
        seq: u64,
        send_us: u64,
        size: u64,
        arrival_us: Option<i64>,
        lost: bool,
    ) {
        self.covered = Some(self.covered.map_or(seq, |c| c.max(seq)));
        if send_us < self.first_send_us {
            self.first_send_us = send_us;
        }
        if send_us >= self.last_send_us {
            self.last_send_us = send_us;
            self.last_send_size = size;
        }
        self.send_bytes += size;
        if lost {
            self.lost += 1;
            return;
        }
        self.received += 1;
        if let Some(arrival) = arrival_us {
            if arrival < self.first_arrival_us {
                self.first_arrival_us = arrival;
                self.first_arrival_size = size;
            }
            self.last_arrival_us = self.last_arrival_us.max(arrival);
            self.receive_bytes += size;
        }
    }

    /// Whether feedback has covered the cluster's last packet.
    pub fn complete(&self) -> bool {
        !self.open && matches!((self.covered, self.last_seq), (Some(c), Some(l)) if c >= l)
    }

    /// What the cluster showed so far.
    pub fn result(&self) -> ProbeResult {
        let mut result = ProbeResult {
            id: self.id,
            target_bps: self.target_bps,
            sent_bps: 0,
            received_bps: 0,
            received_packets: self.received,
            lost_packets: self.lost,
            saturated: false,
            measured_bps: 0,
        };
        let send_span = self.last_send_us.saturating_sub(self.first_send_us);
        let receive_span = self.last_arrival_us.saturating_sub(self.first_arrival_us);
        if self.received < MIN_PACKETS || send_span == 0 || receive_span <= 0 {
            return result;
        }
        let send_span = send_span as f64;
        let receive_span = receive_span as f64;
        let sent = (self.send_bytes - self.last_send_size) as f64 * 8.0 * 1e6 / send_span;
        let received =
            self.receive_bytes.saturating_sub(self.first_arrival_size) as f64 * 8.0 * 1e6
                / receive_span;
        result.sent_bps = sent as u64;
        result.received_bps = received as u64;
        if received > MAX_RATIO * sent {
            return result;
        }
        result.saturated = receive_span > send_span / SATURATED_RATIO + BURST_SLACK_US;
        result.measured_bps = if result.saturated {
            received as u64
        } else {
            ((self.send_bytes - self.last_send_size) as f64 * 8.0 * 1e6
                / send_span.max(receive_span)) as u64
        };
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_the_smaller_rate_and_flags_saturation() {
        // 20 packets of 1000 bytes sent 4 ms apart (2 Mb/s), arriving 8 ms
        // apart (1 Mb/s).
        let mut cluster = Cluster::new(1, 2_000_000);
        for i in 0..20u64 {
            cluster.on_sent(i);
        }
        cluster.open = false;
        for i in 0..20u64 {
            cluster.on_feedback(i, i * 4_000, 1000, Some(50_000 + i as i64 * 8_000), false);
        }
        assert!(cluster.complete());
        let result = cluster.result();
        assert!(result.saturated);
        assert!((result.measured_bps as f64 - 1e6).abs() < 1e4, "{result:?}");
    }

    #[test]
    fn too_few_packets_measure_nothing() {
        let mut cluster = Cluster::new(1, 2_000_000);
        for i in 0..3u64 {
            cluster.on_sent(i);
            cluster.on_feedback(i, i * 1000, 1000, Some(i as i64 * 1000), false);
        }
        assert_eq!(cluster.result().measured_bps, 0);
    }
}
