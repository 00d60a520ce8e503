//! [`SendSideBwe`]: one subscriber connection's send-side bandwidth
//! estimate, from transport-wide congestion control feedback.
//!
//! # Why not `rtc`'s `Gcc`
//!
//! `rtc::interceptor::Gcc` (rtc-interceptor 0.21.1) cannot meet the
//! simulated links of `crates/sfu/tests/congestion.rs`, by its own
//! arithmetic: it climbs 8 % a second and nothing (no probe result) can
//! set it, so from 300 kb/s it needs about 26 s to reach 2.25 Mb/s; after
//! a backoff it climbs additively, 12 kb per 200 ms, for as long as it is
//! above 85 % of the rate of that backoff, so going from 0.85 to 1.8 Mb/s
//! after a capacity step up takes about 16 s (the test allows 8 s); its
//! loss half only ever climbs while loss is under 2 %, so with 5 % random
//! loss the estimate (the smaller of the two halves) stays at its start
//! rate; and its history costs three `HashMap` inserts per packet. Its
//! delay half is the older Kalman filter, not the trendline libwebrtc
//! uses today.
//!
//! So this is GoogCC as libwebrtc runs it, written for the SFU's hot path:
//! a ring buffer of what was sent ([`crate::congestion::history`]), the
//! trendline overuse detector ([`crate::congestion::delay`]), AIMD rate
//! control with a link capacity estimate ([`crate::congestion::aimd`]), a
//! loss-based bound that only random loss above 10 % engages
//! ([`crate::congestion::loss`]), and probe clusters measured from the
//! feedback ([`crate::congestion::cluster`]) that move the estimate up at
//! once when the path had room.
//!
//! The estimate is `min(delay-based, loss-based bound)`, clamped to the
//! configured range.

use std::time::{Duration, Instant};

use rtc::rtcp::transport_feedbacks::cc_feedback_report::CcFeedbackReport;
use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;

use crate::congestion::aimd::RateControl;
use crate::congestion::ccfb::{self, RtpSeqMap};
use crate::congestion::cluster::{Cluster, ProbeResult};
use crate::congestion::delay::{DelayDetector, Usage};
use crate::congestion::feedback::{Status, Statuses, Unwrapper, REFERENCE_TICK_US};
use crate::congestion::history::{Fate, PacketKind, SendHistory};
use crate::congestion::loss::{LossControl, Rates};
use crate::congestion::rate::RateWindow;

/// Window of the delivered (acknowledged) rate.
const DELIVERED_WINDOW_US: i64 = 300_000;
/// Window of the send rate.
const SEND_WINDOW_US: i64 = 500_000;
/// Share of a saturated probe's measured (bottleneck) rate the estimate
/// may rise to.
const SATURATED_PROBE_SHARE: f64 = 0.95;
/// Backoff per feedback timeout.
const TIMEOUT_BACKOFF: f64 = 0.8;
/// A fall of the estimate below this share of what it was is noted
/// ([`SendSideBwe::decreased_within`]).
const DECREASE_NOTED: f64 = 0.95;

/// Capacity of the RFC 8888 scratch list kept between feedbacks (entries
/// of 16 bytes); a larger feedback's is given back.
const CCFB_SCRATCH_KEPT: usize = 1024;

/// What one feedback said, packet by packet, summed up.
#[derive(Debug, Default)]
struct Batch {
    /// Packets newly reported lost.
    lost: u32,
    /// Packets newly reported received.
    received: u32,
    /// Overuse detections among them (outside probes).
    triggers: u64,
    /// Send time of the newest packet reported received.
    newest_send_us: Option<u64>,
}

/// Configuration of a [`SendSideBwe`].
#[derive(Debug, Clone, PartialEq)]
pub struct BweConfig {
    /// Where the estimate starts (bits/s).
    pub initial_bps: u64,
    /// The estimate never goes below this (bits/s).
    pub min_bps: u64,
    /// ... nor above this (bits/s). High (100 Mb/s by default): the
    /// allocator only probes toward what a subscriber wants, so a high
    /// ceiling costs nothing, and a low one pauses videos on a fast path
    /// (at 10 Mb/s, a 12-person meeting of 800 kb/s cameras lost one or two
    /// videos per subscriber for good).
    pub max_bps: u64,
    /// Packets remembered for feedback (rounded up to a power of two,
    /// 64..=32768): feedback about a packet older than this many packets is
    /// ignored. 16 bytes each.
    pub history_len: usize,
    /// The transport-wide sequence number of the first packet.
    pub first_sequence: u16,
    /// No feedback for this long while sending: the estimate drops by a
    /// fifth, and again after each further such period.
    pub feedback_timeout: Duration,
}

impl Default for BweConfig {
    fn default() -> Self {
        Self {
            initial_bps: 300_000,
            min_bps: 50_000,
            max_bps: 100_000_000,
            history_len: 2048,
            first_sequence: 0,
            feedback_timeout: Duration::from_secs(1),
        }
    }
}

/// A snapshot of what the estimator knows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BweStats {
    /// The estimate (bits/s): what the allocator may spend.
    pub estimate_bps: u64,
    /// The delay-based half (bits/s).
    pub delay_based_bps: u64,
    /// The loss-based bound (bits/s), while loss has been high.
    pub loss_based_bps: Option<u64>,
    /// Loss fraction of the last complete loss window (0..=1).
    pub loss_fraction: f64,
    /// Smoothed round trip, from feedback (includes the receiver's
    /// feedback delay).
    pub rtt: Option<Duration>,
    /// Rate of the packets feedback covered, on this side's clock (bits/s).
    pub send_bps: Option<u64>,
    /// Rate the receiver got them at, on its clock (bits/s).
    pub acked_bps: Option<u64>,
    /// The delay detector's latest conclusion.
    pub usage: Usage,
    /// The delay detector's scaled trend (ms) and its adaptive threshold:
    /// overuse when the trend stays above the threshold.
    pub delay_trend: (f64, f64),
    /// Rate of padding among the packets feedback covered (bits/s).
    pub padding_bps: Option<u64>,
    /// The bottleneck capacity estimate from past backoffs (bits/s).
    pub link_capacity_bps: Option<u64>,
    /// Feedback packets handled.
    pub feedbacks: u64,
    /// Fed-back packet statuses that matched no packet in the history
    /// (never sent, or too old).
    pub unknown_statuses: u64,
    /// Feedback packets that were inconsistent (statuses without deltas).
    pub malformed_feedbacks: u64,
}

/// One subscriber connection's send-side bandwidth estimation. Sans-IO:
/// every call takes the time; nothing reads a clock.
#[derive(Debug)]
pub struct SendSideBwe {
    epoch: Instant,
    config: BweConfig,
    history: SendHistory,
    reference: Unwrapper,
    /// RFC 8888's report timestamps, unwrapped.
    report_clock: Unwrapper,
    /// Which packet carried which RTP sequence number: only for a peer
    /// that sends RFC 8888 feedback.
    rtp: Option<Box<RtpSeqMap>>,
    /// Reused by each RFC 8888 feedback: its statuses in send order.
    ccfb_scratch: Vec<(u64, Status)>,
    /// History packets before this one were swept for RFC 8888 losses.
    ccfb_swept: u64,
    delay: DelayDetector,
    rate: RateControl,
    loss: LossControl,
    delivered: RateWindow,
    sent: RateWindow,
    sent_padding: RateWindow,
    rtt_us: Option<u64>,
    /// First send since the last feedback (microseconds).
    awaiting_since_us: Option<u64>,
    last_backoff_us: Option<u64>,
    cluster: Option<Cluster>,
    /// Send times (microseconds) whose packets' overuse is the probe's own
    /// doing: from a cluster's start to its end plus its length.
    probe_window: Option<(u64, Option<u64>)>,
    last_probe: Option<ProbeResult>,
    /// When the estimate last fell (µs since the epoch).
    decreased_us: Option<u64>,
    estimate: f64,
    feedbacks: u64,
    unknown: u64,
    malformed: u64,
}

impl SendSideBwe {
    /// An estimator starting at `config.initial_bps`; `now` is its epoch.
    pub fn new(now: Instant, config: BweConfig) -> Self {
        let min = config.min_bps as f64;
        let max = (config.max_bps.max(config.min_bps)) as f64;
        let initial = (config.initial_bps as f64).clamp(min, max);
        Self {
            epoch: now,
            history: SendHistory::new(config.history_len, config.first_sequence),
            reference: Unwrapper::twcc_reference(),
            report_clock: Unwrapper::new(32),
            rtp: None,
            ccfb_scratch: Vec::new(),
            ccfb_swept: 0,
            delay: DelayDetector::default(),
            rate: RateControl::new(initial, min, max),
            loss: LossControl::default(),
            delivered: RateWindow::new(DELIVERED_WINDOW_US),
            sent: RateWindow::new(SEND_WINDOW_US),
            sent_padding: RateWindow::new(SEND_WINDOW_US),
            rtt_us: None,
            awaiting_since_us: None,
            last_backoff_us: None,
            cluster: None,
            probe_window: None,
            last_probe: None,
            decreased_us: None,
            estimate: initial,
            feedbacks: 0,
            unknown: 0,
            malformed: 0,
            config,
        }
    }

    #[inline]
    fn micros(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_micros() as u64
    }

    /// Records a packet leaving at `now`, `size` bytes on the wire (after
    /// SRTP), and returns the transport-wide sequence number to stamp on
    /// it. O(1), no allocation.
    #[inline]
    pub fn on_sent(&mut self, now: Instant, size: usize, kind: PacketKind) -> u16 {
        let now_us = self.micros(now);
        let seq = self.history.record(now_us, size, kind);
        if self.awaiting_since_us.is_none() {
            self.awaiting_since_us = Some(now_us);
        }
        if let Some(cluster) = self.cluster.as_mut() {
            if cluster.open {
                cluster.on_sent(seq);
            }
        }
        seq as u16
    }

    /// [`SendSideBwe::on_sent`] for a peer that reports arrivals with RFC
    /// 8888 feedback: also remembers that the packet was RTP packet
    /// `rtp_seq` of stream `ssrc` ([`SendSideBwe::on_ccfb`]).
    pub fn on_sent_rtp(
        &mut self,
        now: Instant,
        size: usize,
        kind: PacketKind,
        ssrc: u32,
        rtp_seq: u16,
    ) -> u16 {
        let wire = self.on_sent(now, size, kind);
        let seq = self.history.next_sequence() - 1;
        let horizon = self.history.capacity() as u64;
        self.rtp
            .get_or_insert_with(Box::default)
            .record(ssrc, rtp_seq, seq, horizon);
        wire
    }

    /// TWCC feedback from the subscriber. Statuses for packets this side
    /// does not remember, repeated statuses and malformed feedback are
    /// ignored; a feedback with nothing usable changes nothing.
    pub fn on_twcc(&mut self, now: Instant, feedback: &TransportLayerCc) {
        self.feedbacks += 1;
        let reference = self.reference.peek(feedback.reference_time);
        let reference_us = reference.saturating_mul(REFERENCE_TICK_US);
        let mut statuses = Statuses::new(feedback, reference_us);
        let mut batch = Batch::default();
        for (wire_seq, status) in &mut statuses {
            let seq = self.history.unwrap(wire_seq);
            self.absorb(seq, status, &mut batch);
        }
        if statuses.malformed() {
            self.malformed += 1;
        }
        if batch.lost == 0 && batch.received == 0 {
            return;
        }
        self.reference.commit(feedback.reference_time, reference);
        self.conclude(now, batch);
    }

    /// RFC 8888 congestion control feedback from the subscriber, about the
    /// packets recorded with [`SendSideBwe::on_sent_rtp`]: the same
    /// estimate as from TWCC (arrival times at 1/1024 s rather than
    /// 1/4000 s). Statuses of streams and packets this side does not
    /// remember and repeated statuses are ignored; a feedback with
    /// nothing usable changes nothing.
    pub fn on_ccfb(&mut self, now: Instant, feedback: &CcFeedbackReport) {
        self.feedbacks += 1;
        let units = self.report_clock.peek(feedback.report_timestamp);
        let report_us = ccfb::report_us(units);
        let next = self.history.next_sequence();
        // In send order, as TWCC gives them: the delay detector groups
        // packets by when they were sent.
        let mut found = std::mem::take(&mut self.ccfb_scratch);
        found.clear();
        for block in &feedback.report_blocks {
            for (i, metric) in block.metric_blocks.iter().enumerate() {
                let rtp_seq = block.begin_sequence.wrapping_add(i as u16);
                let seq = self
                    .rtp
                    .as_ref()
                    .and_then(|map| map.lookup(block.media_ssrc, rtp_seq, next));
                match seq {
                    Some(seq) => found.push((seq, ccfb::status(metric, report_us))),
                    None => self.unknown += 1,
                }
            }
        }
        found.sort_unstable_by_key(|&(seq, _)| seq);
        let mut batch = Batch::default();
        let mut newest_received = None;
        for &(seq, status) in &found {
            self.absorb(Some(seq), status, &mut batch);
            if matches!(status, Status::Received(_)) {
                newest_received = Some(seq);
            }
        }
        if let Some(newest) = newest_received {
            self.sweep_lost(newest, &mut batch);
        }
        found.truncate(0);
        found.shrink_to(CCFB_SCRATCH_KEPT);
        self.ccfb_scratch = found;
        if batch.lost == 0 && batch.received == 0 {
            return;
        }
        self.report_clock.commit(feedback.report_timestamp, units);
        self.conclude(now, batch);
    }

    /// RFC 8888 feedback names each RTP stream only up to its last packet
    /// received, so a stream's lost last packets (a probe's padding, a
    /// frame's end) are not named until that stream sends again, if ever.
    /// But the path keeps order: a packet sent before `newest`, which was
    /// reported received, and not reported itself, was lost. Each packet
    /// is swept once.
    fn sweep_lost(&mut self, newest: u64, batch: &mut Batch) {
        let oldest = self
            .history
            .next_sequence()
            .saturating_sub(self.history.capacity() as u64);
        let from = self.ccfb_swept.max(oldest);
        for seq in from..newest {
            let unreported = self
                .history
                .get_mut(seq)
                .is_some_and(|slot| slot.fate == Fate::Unreported);
            if unreported {
                self.absorb(Some(seq), Status::Lost, batch);
            }
        }
        self.ccfb_swept = self.ccfb_swept.max(newest);
    }

    /// Takes what one status says about history packet `seq` (`None`: a
    /// packet this side does not know) into `batch`.
    fn absorb(&mut self, seq: Option<u64>, status: Status, batch: &mut Batch) {
        let Some((seq, slot)) = seq.and_then(|seq| Some((seq, self.history.get_mut(seq)?))) else {
            self.unknown += 1;
            return;
        };
        let previous = slot.fate;
        let (send_us, size) = (slot.sent_us, u64::from(slot.size));
        let padding = slot.kind == PacketKind::Padding;
        match status {
            Status::Lost => {
                if previous != Fate::Unreported {
                    return;
                }
                slot.fate = Fate::Lost;
                batch.lost += 1;
                self.count_sent(send_us, size, padding);
                if let Some(cluster) = self.cluster.as_mut().filter(|c| c.contains(seq)) {
                    cluster.on_feedback(seq, send_us, size, None, true);
                }
            }
            Status::Received(arrival) => {
                if previous == Fate::Received {
                    return;
                }
                slot.fate = Fate::Received;
                if previous == Fate::Unreported {
                    batch.received += 1;
                    self.count_sent(send_us, size, padding);
                } else {
                    // Reported lost before, received after all.
                    batch.lost = batch.lost.saturating_sub(1);
                    batch.received += 1;
                }
                batch.newest_send_us =
                    Some(batch.newest_send_us.map_or(send_us, |n| n.max(send_us)));
                if let Some(arrival) = arrival {
                    self.delivered.add(arrival, size as usize);
                    let before = self.delay.overuse_triggers();
                    self.delay.on_packet(send_us, arrival);
                    if self.delay.overuse_triggers() > before && !self.probing_at(send_us) {
                        batch.triggers += 1;
                    }
                }
                if previous == Fate::Unreported {
                    if let Some(cluster) = self.cluster.as_mut().filter(|c| c.contains(seq)) {
                        cluster.on_feedback(seq, send_us, size, arrival, false);
                    }
                }
            }
        }
    }

    /// Updates the estimate from a feedback's `batch` (which said something).
    fn conclude(&mut self, now: Instant, batch: Batch) {
        let now_us = self.micros(now);
        let Batch {
            lost,
            received,
            triggers,
            newest_send_us,
        } = batch;
        self.awaiting_since_us = None;
        self.last_backoff_us = None;
        if let Some(send_us) = newest_send_us {
            let sample = now_us.saturating_sub(send_us);
            self.rtt_us = Some(match self.rtt_us {
                None => sample,
                Some(rtt) => (rtt * 7 + sample) / 8,
            });
        }
        let rtt_us = self.rtt_us.unwrap_or(100_000);
        let delivered = self.delivered.bps();
        // Back off when overuse was (re)detected in this feedback (outside
        // a probe's own packets). Still
        // above the threshold without a new trigger (the queue stopped
        // growing, the trend lags) holds: libwebrtc backs off again every
        // round trip in that state, which after a short overshoot (a
        // failed probe) cascades the rate far below the capacity.
        let usage = match (triggers > 0, self.delay.usage()) {
            (true, _) => Usage::Over,
            (false, Usage::Over) => Usage::Under,
            (false, usage) => usage,
        };
        let sent = self.sent.bps();
        if received > 0 {
            self.rate.update(now_us, usage, delivered, sent, rtt_us);
        }
        let rates = Rates {
            delivered,
            sent,
            delay_based: self.rate.bps(),
        };
        self.loss.update(now_us, lost, received, rates, rtt_us);
        self.finish_probe(now_us, usage);
        self.refresh(now_us);
    }

    /// Whether a packet sent at `send_us` went out during a probe or
    /// right after it: overuse it shows is the probe's own queue (a probe
    /// on a full path fails; the estimate does not pay for it).
    fn probing_at(&self, send_us: u64) -> bool {
        match self.probe_window {
            Some((start, None)) => send_us >= start,
            Some((start, Some(end))) => (start..=end).contains(&send_us),
            None => false,
        }
    }

    /// Counts a fed-back packet into the send rates.
    fn count_sent(&mut self, send_us: u64, size: u64, padding: bool) {
        self.sent.add(send_us as i64, size as usize);
        // Keep both windows on the same buckets, so they read alike.
        self.sent_padding
            .add(send_us as i64, if padding { size as usize } else { 0 });
    }

    /// Applies a complete probe cluster's measurement.
    fn finish_probe(&mut self, now_us: u64, usage: Usage) {
        let Some(cluster) = self.cluster.filter(Cluster::complete) else {
            return;
        };
        self.cluster = None;
        let result = cluster.result();
        self.last_probe = Some(result);
        // An unsaturated probe proves its rate. A saturated one measured
        // the bottleneck (the rate it drained at while the probe's queue
        // grew): as libwebrtc does, the estimate may rise to 95 % of that,
        // never above the path's capacity; the probe still failed.
        let measured = result.measured_bps as f64;
        let candidate = if result.saturated {
            SATURATED_PROBE_SHARE * measured
        } else {
            measured
        };
        if result.measured_bps > 0 && usage != Usage::Over {
            // The path carried it: neither half of the estimate stays
            // below (a loss-based bound left from a burst of loss, say,
            // while the delay-based rate is already higher).
            if candidate > self.rate.bps() {
                self.rate.set(candidate, now_us);
            }
            self.loss.raise_to(candidate);
        }
    }

    fn refresh(&mut self, now_us: u64) {
        let before = self.estimate;
        let mut estimate = self.rate.bps();
        if let Some(bound) = self.loss.bound() {
            estimate = estimate.min(bound);
        }
        self.estimate = estimate.clamp(
            self.config.min_bps as f64,
            self.config.max_bps.max(self.config.min_bps) as f64,
        );
        if self.estimate < before * DECREASE_NOTED {
            self.decreased_us = Some(now_us);
        }
    }

    /// Whether the estimate fell (overuse, heavy loss, feedback lost)
    /// within `within` of `now`: the path is draining a queue, and a probe
    /// now would fill it again.
    pub fn decreased_within(&self, now: Instant, within: Duration) -> bool {
        let now_us = self.micros(now);
        self.decreased_us
            .is_some_and(|at| now_us.saturating_sub(at) < within.as_micros() as u64)
    }

    /// The estimate (bits/s): what the allocator may spend on this
    /// subscriber, padding and retransmissions included.
    pub fn estimate_bps(&self) -> u64 {
        self.estimate as u64
    }

    /// What the estimator knows.
    pub fn stats(&self) -> BweStats {
        BweStats {
            estimate_bps: self.estimate_bps(),
            delay_based_bps: self.rate.bps() as u64,
            loss_based_bps: self.loss.bound().map(|b| b as u64),
            loss_fraction: self.loss.fraction(),
            rtt: self.rtt_us.map(Duration::from_micros),
            send_bps: self.sent.bps().map(|b| b as u64),
            acked_bps: self.delivered.bps().map(|b| b as u64),
            usage: self.delay.usage(),
            delay_trend: self.delay.trend_and_threshold(),
            padding_bps: self.sent_padding.bps().map(|b| b as u64),
            link_capacity_bps: self.rate.link_capacity_bps().map(|b| b as u64),
            feedbacks: self.feedbacks,
            unknown_statuses: self.unknown,
            malformed_feedbacks: self.malformed,
        }
    }

    /// When [`SendSideBwe::handle_timeout`] wants to run: the feedback
    /// timeout, while packets are going out unanswered.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let since = self.awaiting_since_us?;
        let anchor = self.last_backoff_us.map_or(since, |b| b.max(since));
        let timeout = self.config.feedback_timeout.as_micros() as u64;
        Some(self.epoch + Duration::from_micros(anchor.saturating_add(timeout)))
    }

    /// Runs timers: without feedback for `feedback_timeout` while sending,
    /// the estimate drops by a fifth (once per timeout period).
    pub fn handle_timeout(&mut self, now: Instant) {
        let now_us = self.micros(now);
        let Some(since) = self.awaiting_since_us else {
            return;
        };
        let anchor = self.last_backoff_us.map_or(since, |b| b.max(since));
        if now_us.saturating_sub(anchor) >= self.config.feedback_timeout.as_micros() as u64 {
            self.rate.scale(TIMEOUT_BACKOFF, now_us);
            self.last_backoff_us = Some(now_us);
            self.refresh(now_us);
        }
    }

    /// Opens probe cluster `id` aimed at `target_bps`: every packet sent
    /// from now until [`SendSideBwe::end_probe`] belongs to it. An earlier
    /// cluster still awaiting feedback is abandoned.
    pub fn start_probe(&mut self, now: Instant, id: u32, target_bps: u64) {
        self.cluster = Some(Cluster::new(id, target_bps));
        self.probe_window = Some((self.micros(now), None));
    }

    /// Closes the open probe cluster; its result comes with the feedback
    /// on its last packet.
    pub fn end_probe(&mut self, now: Instant) {
        let now_us = self.micros(now);
        if let Some((start, end)) = self.probe_window.as_mut() {
            if end.is_none() {
                *end = Some(now_us + now_us.saturating_sub(*start));
            }
        }
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.open = false;
            if cluster.last_seq.is_none() {
                // Nothing was sent: nothing to measure.
                self.last_probe = Some(cluster.result());
                self.cluster = None;
            }
        }
    }

    /// Forgets the probe cluster in progress (its feedback is not coming).
    pub fn cancel_probe(&mut self) {
        self.cluster = None;
        self.probe_window = None;
    }

    /// The result of probe cluster `id`, once feedback covered it.
    pub fn probe_result(&self, id: u32) -> Option<ProbeResult> {
        self.last_probe.filter(|r| r.id == id)
    }

    /// The transport-wide sequence number (wrapping) the next packet gets.
    pub fn next_sequence(&self) -> u16 {
        self.history.next_sequence() as u16
    }

    /// How many packets the history remembers.
    pub fn history_len(&self) -> usize {
        self.history.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_start_where_configured_and_wrap() {
        let now = Instant::now();
        let mut bwe = SendSideBwe::new(
            now,
            BweConfig {
                first_sequence: 65_535,
                ..BweConfig::default()
            },
        );
        assert_eq!(bwe.on_sent(now, 100, PacketKind::Media), 65_535);
        assert_eq!(bwe.on_sent(now, 100, PacketKind::Media), 0);
        assert_eq!(bwe.next_sequence(), 1);
    }

    fn ccfb(timestamp: u32, blocks: &[(u32, u16, &[Option<u16>])]) -> CcFeedbackReport {
        use rtc::rtcp::transport_feedbacks::cc_feedback_report::{
            CcFeedbackMetricBlock, CcFeedbackReportBlock, Ecn,
        };
        CcFeedbackReport {
            sender_ssrc: 1,
            report_timestamp: timestamp,
            report_blocks: blocks
                .iter()
                .map(|&(ssrc, begin, metrics)| CcFeedbackReportBlock {
                    media_ssrc: ssrc,
                    begin_sequence: begin,
                    metric_blocks: metrics
                        .iter()
                        .map(|ato| CcFeedbackMetricBlock {
                            received: ato.is_some(),
                            ecn: Ecn::NotEct,
                            arrival_time_offset: ato.unwrap_or(0),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn rfc8888_feedback_names_packets_by_stream_and_garbage_changes_nothing() {
        let start = Instant::now();
        let ms = |n: u64| start + Duration::from_millis(n);
        let mut bwe = SendSideBwe::new(start, BweConfig::default());
        // Before anything was sent, and about streams never sent: ignored.
        bwe.on_ccfb(start, &ccfb(0xFFFF_FF00, &[(7, 0, &[Some(1), None])]));
        assert_eq!(bwe.stats().unknown_statuses, 2);
        assert_eq!(bwe.stats().rtt, None);
        // Two streams, their sequence numbers wrapping.
        for i in 0..4u16 {
            bwe.on_sent_rtp(
                ms(u64::from(i) * 10),
                1000,
                PacketKind::Media,
                7,
                65_534u16.wrapping_add(i),
            );
            bwe.on_sent_rtp(ms(u64::from(i) * 10 + 5), 100, PacketKind::Media, 9, 10 + i);
        }
        let estimate = bwe.estimate_bps();
        // Garbage: an unknown stream, numbers never sent, a block far ahead.
        bwe.on_ccfb(
            ms(50),
            &ccfb(0x10, &[(8, 65_534, &[Some(3); 4]), (7, 40_000, &[None; 3])]),
        );
        assert_eq!(bwe.stats().unknown_statuses, 2 + 7);
        assert_eq!(bwe.stats().rtt, None, "nothing usable: nothing learnt");
        assert_eq!(bwe.estimate_bps(), estimate);
        // Stream 7 all received (the report timestamp wrapped since), 9 up
        // to its second packet: its third, sent before stream 7's last, was
        // lost though no report names it; its fourth, sent after, may be
        // on its way.
        bwe.on_ccfb(
            ms(80),
            &ccfb(
                0x20,
                &[
                    (7, 65_534, &[Some(60), Some(50), Some(40), Some(30)]),
                    (9, 10, &[Some(55), Some(45)]),
                ],
            ),
        );
        let stats = bwe.stats();
        assert_eq!(stats.unknown_statuses, 9);
        assert!(stats.rtt.is_some());
        let fate = |bwe: &mut SendSideBwe, seq: u64| bwe.history.get_mut(seq).map(|s| s.fate);
        assert_eq!(fate(&mut bwe, 0), Some(Fate::Received));
        assert_eq!(fate(&mut bwe, 3), Some(Fate::Received));
        assert_eq!(fate(&mut bwe, 5), Some(Fate::Lost));
        assert_eq!(fate(&mut bwe, 7), Some(Fate::Unreported));
        // Reported after all (reordered): received.
        bwe.on_ccfb(ms(90), &ccfb(0x30, &[(9, 12, &[Some(500), Some(400)])]));
        assert_eq!(fate(&mut bwe, 5), Some(Fate::Received));
        assert_eq!(fate(&mut bwe, 7), Some(Fate::Received));
    }

    /// A xorshift generator, seeded, for the random-feedback walks.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Feedback is whatever a peer sends: reports about streams and numbers
    /// never sent, reordered, repeated, with timestamps that jump and wrap,
    /// times that say a packet arrived before it was sent. None of it may
    /// panic, and the estimate stays within its bounds.
    #[test]
    fn random_feedback_never_panics_and_the_estimate_stays_bounded() {
        use rtc::rtcp::transport_feedbacks::transport_layer_cc::{
            PacketStatusChunk, RecvDelta, RunLengthChunk, SymbolTypeTcc,
        };
        let config = BweConfig::default();
        for seed in 1..=32u64 {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ seed);
            let start = Instant::now();
            let mut now = start;
            let mut ccfb_bwe = SendSideBwe::new(start, config.clone());
            let mut twcc_bwe = SendSideBwe::new(start, config.clone());
            let mut seqs = [0u16; 3];
            let mut report_ts: u32 = rng.next() as u32;
            let mut reference: u32 = 0;
            let mut twcc_sent: u16 = 0;
            for _ in 0..10_000 {
                now += Duration::from_micros(rng.below(20_000));
                match rng.below(10) {
                    0..=4 => {
                        let stream = rng.below(3) as usize;
                        seqs[stream] = match rng.below(20) {
                            0 => rng.next() as u16,
                            _ => seqs[stream].wrapping_add(1),
                        };
                        let size = 50 + rng.below(1_200) as usize;
                        let kind = if rng.below(8) == 0 {
                            PacketKind::Padding
                        } else {
                            PacketKind::Media
                        };
                        ccfb_bwe.on_sent_rtp(now, size, kind, stream as u32 + 1, seqs[stream]);
                        twcc_sent = twcc_bwe.on_sent(now, size, kind);
                    }
                    5..=7 => {
                        report_ts = match rng.below(10) {
                            0 => rng.next() as u32,
                            1 => report_ts.wrapping_sub(rng.below(70_000) as u32),
                            _ => report_ts.wrapping_add(rng.below(70_000) as u32),
                        };
                        let blocks: Vec<(u32, u16, Vec<Option<u16>>)> = (0..1 + rng.below(3))
                            .map(|_| {
                                let ssrc = 1 + rng.below(4) as u32;
                                let near = seqs[(ssrc as usize - 1) % 3];
                                let begin = near.wrapping_sub(rng.below(40) as u16);
                                let metrics = (0..rng.below(40))
                                    .map(|_| (rng.below(4) > 0).then(|| rng.below(0x2000) as u16))
                                    .collect();
                                (ssrc, begin, metrics)
                            })
                            .collect();
                        let blocks: Vec<(u32, u16, &[Option<u16>])> = blocks
                            .iter()
                            .map(|(a, b, m)| (*a, *b, m.as_slice()))
                            .collect();
                        ccfb_bwe.on_ccfb(now, &ccfb(report_ts, &blocks));
                    }
                    _ => {
                        reference = match rng.below(10) {
                            0 => rng.below(1 << 24) as u32,
                            _ => (reference + rng.below(3) as u32) & 0xFF_FFFF,
                        };
                        let count = rng.below(60) as u16;
                        let deltas = (0..count)
                            .map(|_| RecvDelta {
                                type_tcc_packet: if rng.below(2) == 0 {
                                    SymbolTypeTcc::PacketReceivedSmallDelta
                                } else {
                                    SymbolTypeTcc::PacketReceivedLargeDelta
                                },
                                delta: rng.below(200_000) as i64 - 100_000,
                            })
                            .collect();
                        let feedback = TransportLayerCc {
                            base_sequence_number: twcc_sent.wrapping_sub(rng.below(80) as u16),
                            packet_status_count: count,
                            reference_time: reference,
                            fb_pkt_count: rng.next() as u8,
                            packet_chunks: vec![PacketStatusChunk::RunLengthChunk(
                                RunLengthChunk {
                                    packet_status_symbol: SymbolTypeTcc::PacketReceivedSmallDelta,
                                    run_length: count,
                                    ..Default::default()
                                },
                            )],
                            recv_deltas: deltas,
                            ..Default::default()
                        };
                        twcc_bwe.on_twcc(now, &feedback);
                    }
                }
                for bwe in [&mut ccfb_bwe, &mut twcc_bwe] {
                    let estimate = bwe.estimate_bps();
                    assert!(
                        (config.min_bps..=config.max_bps).contains(&estimate),
                        "seed {seed}: estimate {estimate} out of bounds"
                    );
                }
            }
        }
    }

    #[test]
    fn state_beside_the_history_stays_small() {
        // The module doc promises this much per subscriber.
        let size = std::mem::size_of::<SendSideBwe>();
        println!("SendSideBwe: {size} bytes + the history ring");
        assert!(size <= 3 * 1024, "{size}");
    }

    #[test]
    fn empty_feedback_changes_nothing() {
        let now = Instant::now();
        let mut bwe = SendSideBwe::new(now, BweConfig::default());
        bwe.on_twcc(now, &TransportLayerCc::default());
        assert_eq!(bwe.estimate_bps(), 300_000);
        assert_eq!(bwe.stats().feedbacks, 1);
    }

    #[test]
    fn feedback_silence_backs_off_once_per_timeout() {
        let now = Instant::now();
        let mut bwe = SendSideBwe::new(now, BweConfig::default());
        assert_eq!(bwe.poll_timeout(), None);
        bwe.on_sent(now, 1200, PacketKind::Media);
        let deadline = bwe.poll_timeout().expect("armed");
        assert_eq!(deadline, now + Duration::from_secs(1));
        bwe.handle_timeout(deadline - Duration::from_millis(1));
        assert_eq!(bwe.estimate_bps(), 300_000);
        bwe.handle_timeout(deadline);
        assert_eq!(bwe.estimate_bps(), 240_000);
        bwe.handle_timeout(deadline + Duration::from_millis(10));
        assert_eq!(bwe.estimate_bps(), 240_000);
        assert_eq!(bwe.poll_timeout(), Some(deadline + Duration::from_secs(1)));
    }
}
