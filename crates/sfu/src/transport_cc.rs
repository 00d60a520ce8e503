//! Transport-wide congestion control on one subscriber connection: the
//! sequence number every packet the SFU sends carries
//! (draft-holmer-rmcat-transport-wide-cc-extensions-01) or, for a client
//! that reports with RFC 8888 feedback, the RTP stream and sequence number
//! of each, the estimator the client's feedback drives
//! ([`crate::congestion::SendSideBwe`]), and the probes the stream
//! allocator asks for before it moves the subscriber
//! up ([`crate::congestion::ProbeController`]): while one runs, the
//! endpoint pads the connection up to the probe's rate
//! ([`TransportCc::padding_due`]). And the pacer
//! ([`crate::congestion::Pacer`]): packets leave at the estimated rate
//! (times its pacing factor), not in the bursts publishers send (a
//! keyframe), so the queue builds in the SFU, where video can wait or be
//! dropped and audio overtakes it, rather than at the subscriber's
//! bottleneck, where everything waits alike.

use crate::congestion::{
    BweConfig, BweStats, Pacer, PacerConfig, PacketClass, PacketKind, ProbeConfig, ProbeController,
    ProbeOutcome, SendSideBwe,
};
use crate::payload_head::PayloadHead;
use bytes::Bytes;
use rtc::rtcp::transport_feedbacks::cc_feedback_report::CcFeedbackReport;
use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
use std::time::{Duration, Instant};
use tracing::debug;

/// How long the estimate is trusted without any feedback from the client
/// (it negotiated TWCC but may never send it): after that, until feedback
/// comes, nothing limits what it is sent.
pub(crate) const FIRST_FEEDBACK_WITHIN: Duration = Duration::from_secs(3);

/// How long after the first feedback a connection's estimate counts as
/// still being found, unless a probe settles it sooner.
pub(crate) const SETTLING: Duration = Duration::from_secs(2);

/// How often padding goes out while a probe runs: its packets spread over
/// the cluster instead of leaving in one burst.
pub(crate) const PADDING_TICK: Duration = Duration::from_millis(5);

/// The pacing rate while nothing limits the subscriber (no feedback).
const UNLIMITED_BPS: u64 = 1_000_000_000;

/// The most video a subscriber's pacer holds: this long at its rate
/// (older video is dropped, oldest first: a subscriber whose estimate fell
/// is about to get a lower layer from its keyframe on, and video that
/// waited longer is late anyway; audio is never held)...
const MAX_QUEUE_TIME: Duration = Duration::from_millis(500);
/// ...but never less than this (a small layer's keyframe), bytes.
const MIN_QUEUE_BYTES: usize = 30_000;
/// No probe for this long after the estimate fell: the bottleneck is
/// draining the queue that made it fall, and a probe would fill it again
/// (on a thin link, with the audio behind it).
const NO_PROBE_AFTER_DECREASE: Duration = Duration::from_secs(2);

/// A packet waiting in the pacer: not yet stamped or protected (its
/// transport-wide sequence number is the one current when it leaves).
pub(crate) struct Paced {
    /// Media or retransmission.
    pub kind: PacketKind,
    /// Its header, rewritten for the subscriber.
    pub header: rtc::rtp::Header,
    /// Its payload (shared with the publisher's packet).
    pub payload: Bytes,
    /// The payload's first bytes as this subscriber gets them, if they
    /// differ (a rewritten VP8 descriptor).
    pub head: Option<PayloadHead>,
}

/// How a subscriber reports what arrived, as negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Reports {
    /// TWCC feedback: the id of the transport-wide sequence number
    /// extension every packet carries (`a=extmap`).
    pub twcc: Option<u8>,
    /// RFC 8888 feedback (`a=rtcp-fb:* ack ccfb`): by RTP stream and
    /// sequence number, so nothing is stamped.
    pub ccfb: bool,
}

impl Reports {
    /// Neither: nothing to estimate from.
    pub fn none(&self) -> bool {
        self.twcc.is_none() && !self.ccfb
    }
}

/// A feedback packet from the subscriber.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Feedback<'a> {
    /// TWCC (draft-holmer-rmcat-transport-wide-cc-extensions-01).
    Twcc(&'a TransportLayerCc),
    /// RFC 8888 congestion control feedback.
    Ccfb(&'a CcFeedbackReport),
}

/// One RTP packet as it left for the subscriber.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SentRtp {
    /// Octets on the wire (after SRTP).
    pub size: usize,
    /// What it carried.
    pub kind: PacketKind,
    /// Its RTP stream and sequence number, as the subscriber sees them.
    pub ssrc: u32,
    pub seq: u16,
}

/// One subscriber connection's congestion control.
pub(crate) struct TransportCc {
    /// How the subscriber reports arrivals.
    reports: Reports,
    bwe: SendSideBwe,
    probe: ProbeController,
    /// When the first packet left.
    first_sent: Option<Instant>,
    /// Octets sent in all.
    sent_bytes: u64,
    /// The probe being sent: when it started and `sent_bytes` then.
    cluster: Option<(Instant, u64)>,
    /// When padding is next due while a probe runs.
    next_padding: Option<Instant>,
    /// When the first feedback came.
    first_feedback: Option<Instant>,
    /// A probe finished: the estimate has been tried against the path.
    probed: bool,
    /// When a probe last succeeded: the path carried its rate.
    probe_succeeded_at: Option<Instant>,
    /// The estimate the allocator last saw.
    allocated_at_bps: Option<u64>,
    /// Packets stamped so far.
    sent: u64,
    /// Feedback packets read so far.
    feedback: u64,
    /// What waits to leave at the estimated rate.
    pacer: Pacer<Paced>,
}

impl TransportCc {
    /// Estimating from `reports` from `now` on.
    pub fn new(now: Instant, reports: Reports) -> Self {
        Self {
            reports,
            bwe: SendSideBwe::new(now, BweConfig::default()),
            probe: ProbeController::new(ProbeConfig::default()),
            first_sent: None,
            sent_bytes: 0,
            cluster: None,
            next_padding: None,
            first_feedback: None,
            probed: false,
            probe_succeeded_at: None,
            allocated_at_bps: None,
            sent: 0,
            feedback: 0,
            pacer: Pacer::new(UNLIMITED_BPS, PacerConfig::default()),
        }
    }

    /// Whether a packet of `class` may leave now rather than wait in the
    /// pacer (see [`Pacer::admits`]).
    pub fn admits(&mut self, now: Instant, class: PacketClass) -> bool {
        self.pacer.admits(now, class)
    }

    /// Queue a packet of `class`, about `size` octets on the wire. True
    /// when the queue was empty (the caller's timer must now include
    /// [`TransportCc::poll_timeout`]). Packets the bound drops are counted.
    pub fn queue(&mut self, now: Instant, class: PacketClass, size: usize, packet: Paced) -> bool {
        let was_empty = self.pacer.queued_packets() == 0;
        self.pacer.push(now, class, size, packet);
        while self.pacer.pop_dropped().is_some() {}
        was_empty
    }

    /// The next queued packet allowed to leave at `now`.
    pub fn pop_paced(&mut self, now: Instant) -> Option<Paced> {
        self.pacer.pop(now)
    }

    /// The rate packets are paced at; `None` while unlimited.
    pub fn pacing_bps(&self) -> Option<u64> {
        Some(self.pacer.rate_bps()).filter(|&r| r != UNLIMITED_BPS)
    }

    /// Packets waiting in the pacer, and packets it dropped (its queue
    /// was full) so far.
    pub fn paced_counts(&self) -> (usize, u64) {
        (self.pacer.queued_packets(), self.pacer.dropped_packets())
    }

    /// Follow the estimate (or the running probe's rate, when higher).
    fn update_pacing(&mut self, now: Instant) {
        let probe = self
            .probe
            .current()
            .filter(|_| self.probe.is_probing())
            .map(|c| c.target_bps);
        // Only a found estimate paces: while it settles (the initial guess,
        // before the first probe) it would hold back, and drop, what a
        // fast link carries.
        let found = !self.settling(now);
        let rate = match self.estimate_bps().filter(|_| found) {
            Some(bps) => bps.max(probe.unwrap_or(0)),
            None => UNLIMITED_BPS,
        };
        if rate != self.pacer.rate_bps() {
            self.pacer.set_rate(now, rate);
            let queue = (rate as f64 / 8.0 * MAX_QUEUE_TIME.as_secs_f64()) as usize;
            self.pacer.set_max_queue_bytes(queue.max(MIN_QUEUE_BYTES));
        }
    }

    /// The id of the transport-wide sequence number extension each packet
    /// carries; `None` when only RFC 8888 feedback was negotiated.
    pub fn extension_id(&self) -> Option<u8> {
        self.reports.twcc
    }

    /// How the subscriber reports arrivals.
    pub fn reports(&self) -> Reports {
        self.reports
    }

    /// A renegotiation changed how arrivals are reported (numbering and
    /// the estimate go on).
    pub fn set_reports(&mut self, reports: Reports) {
        self.reports = reports;
    }

    /// The sequence number for the packet about to be sent; the call that
    /// follows ([`TransportCc::on_sent`]) records it.
    pub fn next_sequence_number(&self) -> u16 {
        self.bwe.next_sequence()
    }

    /// The packet stamped with [`TransportCc::next_sequence_number`] left
    /// at `now`.
    pub fn on_sent(&mut self, now: Instant, sent: SentRtp) {
        self.stamped(now, sent);
        self.pacer.charge(now, sent.size);
    }

    /// [`TransportCc::on_sent`] for a packet the pacer let out (and
    /// charged already).
    pub fn on_paced_sent(&mut self, now: Instant, sent: SentRtp) {
        self.stamped(now, sent);
    }

    fn stamped(&mut self, now: Instant, sent: SentRtp) {
        if self.reports.ccfb {
            self.bwe
                .on_sent_rtp(now, sent.size, sent.kind, sent.ssrc, sent.seq);
        } else {
            self.bwe.on_sent(now, sent.size, sent.kind);
        }
        self.first_sent.get_or_insert(now);
        self.sent_bytes += sent.size as u64;
        self.sent += 1;
    }

    /// Feedback from the client (of a kind it negotiated).
    pub fn on_feedback(&mut self, now: Instant, feedback: Feedback<'_>) {
        match feedback {
            Feedback::Twcc(twcc) if self.reports.twcc.is_some() => self.bwe.on_twcc(now, twcc),
            Feedback::Ccfb(ccfb) if self.reports.ccfb => self.bwe.on_ccfb(now, ccfb),
            _ => return,
        }
        self.feedback += 1;
        self.first_feedback.get_or_insert(now);
        self.poll_probe(now);
        self.update_pacing(now);
    }

    /// The bandwidth estimate toward the client, bits per second: `None`
    /// when the client sent no feedback within [`FIRST_FEEDBACK_WITHIN`]
    /// of the first packet (nothing to estimate from).
    pub fn estimate_bps(&self) -> Option<u64> {
        let trusted = self.feedback > 0 || self.first_sent.is_none();
        trusted.then(|| self.bwe.estimate_bps())
    }

    /// [`TransportCc::estimate_bps`] at `now`, for the allocator: the
    /// initial estimate stands while the first feedback may still come.
    pub fn budget_bps(&self, now: Instant) -> Option<u64> {
        let waiting = self
            .first_sent
            .is_some_and(|t| now.saturating_duration_since(t) < FIRST_FEEDBACK_WITHIN);
        match self.estimate_bps() {
            Some(bps) => Some(bps),
            None if waiting => Some(self.bwe.estimate_bps()),
            None => None,
        }
    }

    /// Whether the estimate is still being found: no feedback yet, or
    /// neither a probe nor [`SETTLING`] since the first.
    pub fn settling(&self, now: Instant) -> bool {
        !self.probed
            && self
                .first_feedback
                .is_none_or(|t| now.saturating_duration_since(t) < SETTLING)
    }

    /// Whether the estimate moved enough since the allocator last looked
    /// (a tenth, or a probe finished) that it should look again now rather
    /// than at its next round; looking is what this records.
    pub fn take_reallocate(&mut self) -> bool {
        let now = self.bwe.estimate_bps();
        let moved = match self.allocated_at_bps {
            None => self.feedback > 0,
            Some(then) => now.abs_diff(then) * 10 > then,
        };
        if moved {
            self.allocated_at_bps = Some(now);
        }
        moved
    }

    /// When a probe last succeeded (the path carried the probe's rate).
    pub fn probe_succeeded_at(&self) -> Option<Instant> {
        self.probe_succeeded_at
    }

    /// The allocator looked at the estimate.
    pub fn allocated(&mut self) {
        self.allocated_at_bps = Some(self.bwe.estimate_bps());
    }

    /// What the estimator knows.
    pub fn stats(&self) -> BweStats {
        self.bwe.stats()
    }

    /// The allocator would move the subscriber up if the path carried
    /// `target_bps` in all: probe it, unless a probe runs, is not needed,
    /// waits after a failure, or the estimate fell within
    /// [`NO_PROBE_AFTER_DECREASE`].
    pub fn want_probe(&mut self, now: Instant, target_bps: u64) {
        if self.feedback == 0 {
            return; // nothing would judge it
        }
        if self.bwe.decreased_within(now, NO_PROBE_AFTER_DECREASE) {
            return;
        }
        if let Ok(cluster) = self.probe.start(now, target_bps, &mut self.bwe) {
            debug!(target_bps, id = cluster.id, "probe");
            self.cluster = Some((now, self.sent_bytes));
            self.next_padding = Some(now);
            self.update_pacing(now);
        }
    }

    /// Octets of padding to send now to keep a running probe at its rate
    /// (what media left of it); zero when no probe runs.
    pub fn padding_due(&mut self, now: Instant) -> usize {
        let (Some((start, bytes_then)), Some(cluster)) = (self.cluster, self.probe.current())
        else {
            return 0;
        };
        if !self.probe.is_probing() || now >= cluster.ends {
            return 0;
        }
        if self.pacer.queued_packets() > 0 {
            // Media waits: it fills the probe; padding would only delay it.
            self.next_padding = Some(now + PADDING_TICK);
            return 0;
        }
        self.next_padding = Some(now + PADDING_TICK);
        // What the probe should have sent by the end of this tick.
        let until = (now + PADDING_TICK).min(cluster.ends);
        let due = cluster.target_bps as u128 * until.saturating_duration_since(start).as_micros()
            / 8_000_000;
        let sent = u128::from(self.sent_bytes - bytes_then);
        usize::try_from(due.saturating_sub(sent)).unwrap_or(usize::MAX)
    }

    /// When [`TransportCc::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let padding = self.next_padding.filter(|_| self.probe.is_probing());
        let paced = self
            .pacer
            .poll_timeout()
            .filter(|_| self.pacer.queued_packets() > 0);
        [
            self.bwe.poll_timeout(),
            self.probe.poll_timeout(),
            padding,
            paced,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Run the estimator's and the probe's timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.bwe.poll_timeout().is_some_and(|t| t <= now) {
            self.bwe.handle_timeout(now);
        }
        self.poll_probe(now);
        self.update_pacing(now);
    }

    fn poll_probe(&mut self, now: Instant) {
        if let Some(outcome) = self.probe.poll(now, &mut self.bwe) {
            debug!(?outcome, "probe done");
            self.probed = true;
            if matches!(outcome, ProbeOutcome::Succeeded { .. }) {
                self.probe_succeeded_at = Some(now);
            }
        }
        if !self.probe.is_probing() {
            self.cluster = None;
            self.next_padding = None;
        }
    }

    /// Packets stamped and feedback packets read so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.sent, self.feedback)
    }
}
