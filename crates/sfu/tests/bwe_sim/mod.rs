//! A simulated bottleneck link and receiver for the congestion-control
//! core, on simulated time: no sleeps, no sockets.
//!
//! The sender is what an SFU subscriber connection will be: a media source
//! (30 fps video frames of 1200-byte packets at the current estimate less
//! audio, plus 50 audio packets of 100 bytes a second) feeding a [`Pacer`]
//! at the estimate; every packet leaving the pacer gets its transport-wide
//! sequence number from [`SendSideBwe::on_sent`] and enters the link. The
//! link is a bottleneck of a capacity (changeable over time) with a
//! drop-tail queue (a byte limit), a one-way propagation delay and
//! optional random loss (seeded xorshift). The receiver records arrivals
//! and every `feedback_interval` builds a real TWCC feedback packet
//! ([`TransportLayerCc`]), marshals it, and after the propagation delay the
//! sender unmarshals it and hands it to [`SendSideBwe::on_twcc`]: the same
//! bytes the SFU will read off the wire. With `SimConfig::ccfb` the
//! receiver reports RFC 8888 feedback instead ([`CcFeedbackReport`], per
//! RTP stream: audio, video and padding each have their own SSRC and
//! sequence numbers), which goes to [`SendSideBwe::on_ccfb`].
//!
//! Optionally an allocator with a goal probes ([`ProbeController`]) while
//! the estimate is below the goal: at `min(goal, 2 x estimate)`.
//!
//! Shared by `tests/congestion.rs` and `examples/bwe_step.rs`
//! (`#[path = "../tests/bwe_sim/mod.rs"]`), so not every item is used by
//! each.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use huddle_sfu::congestion::{
    padding_sizes, BweConfig, Pacer, PacerConfig, PacketClass, PacketKind, ProbeConfig,
    ProbeController, ProbeOutcome, SendSideBwe, MAX_PADDING_ONLY_PACKET, MIN_PADDING_BYTES,
};
use rtc::rtcp::transport_feedbacks::cc_feedback_report::{
    CcFeedbackMetricBlock, CcFeedbackReport, CcFeedbackReportBlock, Ecn,
};
use rtc::rtcp::transport_feedbacks::transport_layer_cc::{
    PacketStatusChunk, RecvDelta, StatusVectorChunk, SymbolSizeTypeTcc, SymbolTypeTcc,
    TransportLayerCc,
};
use rtc::shared::marshal::{Marshal, Unmarshal};

/// A tiny seeded PRNG (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded (0 is replaced by a constant).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A packet on its way.
#[derive(Debug, Clone, Copy)]
pub struct Packet {
    /// Transport-wide sequence number.
    pub seq: u16,
    /// RTP stream and sequence number (what RFC 8888 feedback names).
    pub ssrc: u32,
    pub rtp_seq: u16,
    pub size: usize,
    pub class: PacketClass,
    pub sent: Instant,
}

/// The bottleneck: capacity, drop-tail queue, propagation delay, loss.
#[derive(Debug)]
pub struct Link {
    pub capacity_bps: u64,
    pub queue_limit_bytes: usize,
    pub delay: Duration,
    pub loss: f64,
    rng: Rng,
    /// When the link finishes sending what is queued.
    free_at: Option<Instant>,
    in_flight: VecDeque<(Instant, Packet)>,
    pub dropped_queue: u64,
    pub dropped_random: u64,
}

impl Link {
    pub fn new(capacity_bps: u64, queue: Duration, delay: Duration, loss: f64, seed: u64) -> Self {
        Self {
            capacity_bps,
            queue_limit_bytes: (capacity_bps as f64 / 8.0 * queue.as_secs_f64()) as usize,
            delay,
            loss,
            rng: Rng::new(seed),
            free_at: None,
            in_flight: VecDeque::new(),
            dropped_queue: 0,
            dropped_random: 0,
        }
    }

    /// Bytes waiting at the bottleneck at `now`.
    pub fn backlog_bytes(&self, now: Instant) -> usize {
        match self.free_at {
            Some(free) if free > now => {
                ((free - now).as_secs_f64() * self.capacity_bps as f64 / 8.0) as usize
            }
            _ => 0,
        }
    }

    /// Queueing delay at the bottleneck at `now`.
    pub fn queue_delay(&self, now: Instant) -> Duration {
        self.free_at
            .map_or(Duration::ZERO, |free| free.saturating_duration_since(now))
    }

    pub fn send(&mut self, now: Instant, packet: Packet) {
        if self.backlog_bytes(now) + packet.size > self.queue_limit_bytes {
            self.dropped_queue += 1;
            return;
        }
        let start = self.free_at.map_or(now, |free| free.max(now));
        let serialization =
            Duration::from_secs_f64(packet.size as f64 * 8.0 / self.capacity_bps.max(1) as f64);
        let done = start + serialization;
        self.free_at = Some(done);
        if self.loss > 0.0 && self.rng.next_f64() < self.loss {
            self.dropped_random += 1;
            return;
        }
        self.in_flight.push_back((done + self.delay, packet));
    }

    /// Changes the capacity (the queue limit keeps its byte size).
    pub fn set_capacity(&mut self, capacity_bps: u64) {
        self.capacity_bps = capacity_bps;
    }

    pub fn next_arrival(&self) -> Option<Instant> {
        self.in_flight.front().map(|(at, _)| *at)
    }

    pub fn pop_arrival(&mut self, now: Instant) -> Option<(Instant, Packet)> {
        if self.in_flight.front()?.0 <= now {
            self.in_flight.pop_front()
        } else {
            None
        }
    }
}

/// The subscriber: records arrivals, builds TWCC feedback.
#[derive(Debug)]
pub struct Receiver {
    /// The receiver's clock reads this at the simulation's start (its
    /// clock is not ours).
    clock_offset: Duration,
    start: Instant,
    arrivals: BTreeMap<u64, Instant>,
    highest: Option<u64>,
    next_base: Option<u64>,
    fb_count: u8,
}

impl Receiver {
    pub fn new(start: Instant, clock_offset: Duration) -> Self {
        Self {
            clock_offset,
            start,
            arrivals: BTreeMap::new(),
            highest: None,
            next_base: None,
            fb_count: 0,
        }
    }

    fn unwrap(&self, seq: u16) -> u64 {
        match self.highest {
            None => u64::from(seq) + (1 << 20),
            Some(highest) => {
                let diff = seq.wrapping_sub(highest as u16) as i16 as i64;
                (highest as i64 + diff) as u64
            }
        }
    }

    pub fn on_packet(&mut self, at: Instant, seq: u16) {
        let unwrapped = self.unwrap(seq);
        self.arrivals.entry(unwrapped).or_insert(at);
        if self.highest.is_none_or(|h| unwrapped > h) {
            self.highest = Some(unwrapped);
        }
        if self.next_base.is_none() {
            self.next_base = Some(unwrapped);
        }
    }

    fn clock_us(&self, at: Instant) -> i64 {
        ((at - self.start) + self.clock_offset).as_micros() as i64
    }

    /// Feedback on everything from the last reported to the highest
    /// received, or `None` if nothing new arrived.
    pub fn feedback(&mut self) -> Option<TransportLayerCc> {
        let base = self.next_base?;
        let highest = self.highest?;
        if highest < base {
            return None;
        }
        let first_arrival = self.arrivals.range(base..=highest).next()?.1;
        let reference_ticks = self.clock_us(*first_arrival) / 64_000;
        let mut previous_ticks = reference_ticks * 64_000 / 250;
        let mut symbols = Vec::new();
        let mut deltas = Vec::new();
        let mut end = base;
        for seq in base..=highest {
            if seq - base >= 0x7FFF {
                break;
            }
            match self.arrivals.get(&seq) {
                None => symbols.push(SymbolTypeTcc::PacketNotReceived),
                Some(at) => {
                    let ticks = self.clock_us(*at) / 250;
                    let delta = ticks - previous_ticks;
                    let symbol = if (0..=255).contains(&delta) {
                        SymbolTypeTcc::PacketReceivedSmallDelta
                    } else if (i16::MIN as i64..=i16::MAX as i64).contains(&delta) {
                        SymbolTypeTcc::PacketReceivedLargeDelta
                    } else {
                        break;
                    };
                    previous_ticks = ticks;
                    symbols.push(symbol);
                    deltas.push(RecvDelta {
                        type_tcc_packet: symbol,
                        delta: delta * 250,
                    });
                }
            }
            end = seq + 1;
        }
        let count = symbols.len();
        let chunks = symbols
            .chunks(7)
            .map(|chunk| {
                let mut list = chunk.to_vec();
                list.resize(7, SymbolTypeTcc::PacketNotReceived);
                PacketStatusChunk::StatusVectorChunk(StatusVectorChunk {
                    symbol_size: SymbolSizeTypeTcc::TwoBit,
                    symbol_list: list,
                    ..Default::default()
                })
            })
            .collect();
        // Forget what is reported.
        self.arrivals = self.arrivals.split_off(&end);
        self.next_base = Some(end);
        let feedback = TransportLayerCc {
            sender_ssrc: 1,
            media_ssrc: 2,
            base_sequence_number: base as u16,
            packet_status_count: count as u16,
            reference_time: (reference_ticks as u32) & 0x00FF_FFFF,
            fb_pkt_count: self.fb_count,
            packet_chunks: chunks,
            recv_deltas: deltas,
        };
        self.fb_count = self.fb_count.wrapping_add(1);
        Some(feedback)
    }
}

/// The subscriber when it reports with RFC 8888 feedback: arrivals per
/// RTP stream, reported by sequence number with arrival time offsets
/// before the report's timestamp.
#[derive(Debug)]
pub struct CcfbReceiver {
    clock_offset: Duration,
    start: Instant,
    /// Per SSRC: arrivals by unwrapped RTP sequence number, the highest
    /// seen and the first not reported yet.
    streams: BTreeMap<u32, (BTreeMap<u64, Instant>, u64, u64)>,
}

impl CcfbReceiver {
    pub fn new(start: Instant, clock_offset: Duration) -> Self {
        Self {
            clock_offset,
            start,
            streams: BTreeMap::new(),
        }
    }

    pub fn on_packet(&mut self, at: Instant, ssrc: u32, rtp_seq: u16) {
        let first = u64::from(rtp_seq) + (1 << 20);
        let (arrivals, highest, _) = self
            .streams
            .entry(ssrc)
            .or_insert_with(|| (BTreeMap::new(), first, first));
        let diff = rtp_seq.wrapping_sub(*highest as u16) as i16 as i64;
        let unwrapped = (*highest as i64 + diff) as u64;
        arrivals.entry(unwrapped).or_insert(at);
        *highest = (*highest).max(unwrapped);
    }

    fn clock_us(&self, at: Instant) -> i64 {
        ((at - self.start) + self.clock_offset).as_micros() as i64
    }

    /// A report on every stream from its first unreported packet to its
    /// highest received, timestamped `now`; `None` if nothing new arrived.
    pub fn feedback(&mut self, now: Instant) -> Option<CcFeedbackReport> {
        let units = self.clock_us(now) * 65_536 / 1_000_000;
        let report_us = units * 1_000_000 / 65_536;
        let mut blocks = Vec::new();
        for (&ssrc, (arrivals, highest, next)) in &mut self.streams {
            if *highest < *next {
                continue;
            }
            let end = (*highest + 1).min(*next + 16_384);
            let metric_blocks = (*next..end)
                .map(|seq| match arrivals.get(&seq) {
                    None => CcFeedbackMetricBlock::default(),
                    Some(at) => {
                        let arrival_us =
                            ((*at - self.start) + self.clock_offset).as_micros() as i64;
                        let ato = ((report_us - arrival_us).max(0) * 1024 + 500_000) / 1_000_000;
                        CcFeedbackMetricBlock {
                            received: true,
                            ecn: Ecn::NotEct,
                            arrival_time_offset: ato.min(0x1FFE) as u16,
                        }
                    }
                })
                .collect();
            blocks.push(CcFeedbackReportBlock {
                media_ssrc: ssrc,
                begin_sequence: *next as u16,
                metric_blocks,
            });
            *arrivals = arrivals.split_off(&end);
            *next = end;
        }
        (!blocks.is_empty()).then_some(CcFeedbackReport {
            sender_ssrc: 1,
            report_blocks: blocks,
            report_timestamp: units as u32,
        })
    }
}

/// What the sender and the link looked like at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Seconds since the start.
    pub t: f64,
    pub capacity_bps: u64,
    pub estimate_bps: u64,
    pub delay_based_bps: u64,
    pub loss_based_bps: Option<u64>,
    /// Bytes that entered the link over the last 200 ms, as bits/s.
    pub send_bps: u64,
    /// Bytes the receiver got over the last 200 ms, as bits/s.
    pub recv_bps: u64,
    pub bottleneck_delay_ms: f64,
    pub rtt_ms: f64,
    pub loss_fraction: f64,
    pub pacer_queue_ms: f64,
}

/// Scenario parameters.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub capacity_bps: u64,
    pub queue: Duration,
    pub delay: Duration,
    pub loss: f64,
    pub seed: u64,
    pub feedback_interval: Duration,
    pub bwe: BweConfig,
    pub pacer: PacerConfig,
    pub probe: ProbeConfig,
    /// The allocator's goal: probe while the estimate is below it.
    pub goal_bps: Option<u64>,
    /// Send audio (50 x 100 bytes a second).
    pub audio: bool,
    pub sample_every: Duration,
    /// The receiver reports with RFC 8888 feedback instead of TWCC.
    pub ccfb: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            capacity_bps: 2_000_000,
            queue: Duration::from_millis(200),
            delay: Duration::from_millis(30),
            loss: 0.0,
            seed: 7,
            feedback_interval: Duration::from_millis(50),
            bwe: BweConfig {
                initial_bps: 300_000,
                min_bps: 50_000,
                max_bps: 2_500_000,
                ..BweConfig::default()
            },
            pacer: PacerConfig::default(),
            probe: ProbeConfig::default(),
            goal_bps: None,
            audio: true,
            sample_every: Duration::from_millis(100),
            ccfb: false,
        }
    }
}

const AUDIO_INTERVAL: Duration = Duration::from_millis(20);
const AUDIO_BYTES: usize = 100;
const FRAME_INTERVAL: Duration = Duration::from_micros(33_333);
const VIDEO_PACKET: usize = 1200;

/// Runs on each feedback before the estimator sees it.
pub type FeedbackHook = Box<dyn FnMut(&mut SendSideBwe, Instant, &TransportLayerCc)>;

/// The whole loop on simulated time.
pub struct Sim {
    pub config: SimConfig,
    pub start: Instant,
    pub now: Instant,
    pub link: Link,
    pub receiver: Receiver,
    pub ccfb_receiver: CcfbReceiver,
    /// The next RTP sequence number of each stream (audio, video, padding).
    rtp_seqs: [u16; 3],
    pub bwe: SendSideBwe,
    pub pacer: Pacer<Packet>,
    pub probe: ProbeController,
    /// Feedback on its way back: (due, marshalled bytes).
    returning: VecDeque<(Instant, Bytes)>,
    next_audio: Instant,
    next_frame: Instant,
    video_credit: f64,
    next_feedback: Instant,
    next_sample: Instant,
    capacity_changes: VecDeque<(Instant, u64)>,
    sent_window: VecDeque<(Instant, usize)>,
    recv_window: VecDeque<(Instant, usize)>,
    pub samples: Vec<Sample>,
    pub outcomes: Vec<(f64, ProbeOutcome)>,
    /// (sent at, one-way delay) of every audio packet received.
    pub audio_delays: Vec<(f64, Duration)>,
    /// Every packet the pacer released: (when, size).
    pub releases: Vec<(Instant, usize, PacketClass)>,
    pub record_releases: bool,
    pub pacer_drops: u64,
    pub feedbacks: u64,
    /// Packets the pacer released.
    pub sent_packets: u64,
    /// A hook run on each feedback before the estimator sees it (tests
    /// corrupt or duplicate feedback with it).
    pub feedback_hook: Option<FeedbackHook>,
}

impl Sim {
    pub fn new(config: SimConfig) -> Self {
        let start = Instant::now();
        let bwe = SendSideBwe::new(start, config.bwe.clone());
        let pacer = Pacer::new(bwe.estimate_bps(), config.pacer.clone());
        Self {
            link: Link::new(
                config.capacity_bps,
                config.queue,
                config.delay,
                config.loss,
                config.seed,
            ),
            receiver: Receiver::new(start, Duration::from_secs(4242)),
            ccfb_receiver: CcfbReceiver::new(start, Duration::from_secs(65_530)),
            rtp_seqs: [65_000, 100, 30_000],
            bwe,
            pacer,
            probe: ProbeController::new(config.probe.clone()),
            returning: VecDeque::new(),
            next_audio: start,
            next_frame: start,
            video_credit: 0.0,
            next_feedback: start + config.feedback_interval,
            next_sample: start,
            capacity_changes: VecDeque::new(),
            sent_window: VecDeque::new(),
            recv_window: VecDeque::new(),
            samples: Vec::new(),
            outcomes: Vec::new(),
            audio_delays: Vec::new(),
            releases: Vec::new(),
            record_releases: false,
            pacer_drops: 0,
            feedbacks: 0,
            sent_packets: 0,
            feedback_hook: None,
            start,
            now: start,
            config,
        }
    }

    /// Seconds since the start.
    pub fn t(&self) -> f64 {
        (self.now - self.start).as_secs_f64()
    }

    /// The capacity becomes `bps` at `at` (since the start).
    pub fn schedule_capacity(&mut self, at: Duration, bps: u64) {
        self.capacity_changes.push_back((self.start + at, bps));
    }

    fn window_bps(window: &mut VecDeque<(Instant, usize)>, now: Instant) -> u64 {
        let span = Duration::from_millis(200);
        while window
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > span)
        {
            window.pop_front();
        }
        let bytes: usize = window.iter().map(|(_, b)| b).sum();
        (bytes as f64 * 8.0 / span.as_secs_f64()) as u64
    }

    fn step(&mut self) {
        let now = self.now;
        while let Some(&(at, bps)) = self.capacity_changes.front() {
            if at > now {
                break;
            }
            self.link.set_capacity(bps);
            self.capacity_changes.pop_front();
        }
        // Media.
        if self.config.audio && now >= self.next_audio {
            self.push(PacketClass::Audio, AUDIO_BYTES);
            self.next_audio += AUDIO_INTERVAL;
        }
        if now >= self.next_frame {
            let audio_bps = if self.config.audio { 40_000.0 } else { 0.0 };
            let rate = (self.bwe.estimate_bps() as f64 - audio_bps).max(0.0);
            self.video_credit += rate / 8.0 * FRAME_INTERVAL.as_secs_f64();
            while self.video_credit >= VIDEO_PACKET as f64 {
                self.video_credit -= VIDEO_PACKET as f64;
                self.push(PacketClass::Video, VIDEO_PACKET);
            }
            self.next_frame += FRAME_INTERVAL;
        }
        // The allocator.
        if let Some(goal) = self.config.goal_bps {
            let estimate = self.bwe.estimate_bps();
            if self.probe.current().is_none() && (estimate as f64) < goal as f64 * 0.95 {
                let target = goal.min(estimate * 2);
                let _ = self.probe.start(now, target, &mut self.bwe);
            }
        }
        if let Some(outcome) = self.probe.poll(now, &mut self.bwe) {
            self.outcomes.push((self.t(), outcome));
        }
        self.pacer
            .set_rate(now, self.probe.pacing_rate(self.bwe.estimate_bps()));
        self.pacer.set_padding(now, self.probe.is_probing());
        let due = self.pacer.padding_due(now);
        for size in padding_sizes(due, MAX_PADDING_ONLY_PACKET, MIN_PADDING_BYTES) {
            self.push(PacketClass::Padding, size);
        }
        // Send.
        while let Some(packet) = self.pacer.pop(now) {
            let kind = match packet.class {
                PacketClass::Padding => PacketKind::Padding,
                PacketClass::Retransmission => PacketKind::Retransmission,
                _ => PacketKind::Media,
            };
            let stream = match packet.class {
                PacketClass::Audio => 0,
                PacketClass::Padding => 2,
                _ => 1,
            };
            let ssrc = 0x5000 + stream as u32;
            let rtp_seq = self.rtp_seqs[stream];
            self.rtp_seqs[stream] = rtp_seq.wrapping_add(1);
            let seq = if self.config.ccfb {
                self.bwe.on_sent_rtp(now, packet.size, kind, ssrc, rtp_seq)
            } else {
                self.bwe.on_sent(now, packet.size, kind)
            };
            self.sent_packets += 1;
            if self.record_releases {
                self.releases.push((now, packet.size, packet.class));
            }
            self.sent_window.push_back((now, packet.size));
            self.link.send(
                now,
                Packet {
                    seq,
                    ssrc,
                    rtp_seq,
                    sent: now,
                    ..packet
                },
            );
        }
        // Arrivals.
        while let Some((at, packet)) = self.link.pop_arrival(now) {
            if self.config.ccfb {
                self.ccfb_receiver
                    .on_packet(at, packet.ssrc, packet.rtp_seq);
            } else {
                self.receiver.on_packet(at, packet.seq);
            }
            self.recv_window.push_back((at, packet.size));
            if packet.class == PacketClass::Audio {
                let sent = (packet.sent - self.start).as_secs_f64();
                self.audio_delays.push((sent, at - packet.sent));
            }
        }
        // Feedback.
        if now >= self.next_feedback {
            let bytes = if self.config.ccfb {
                self.ccfb_receiver
                    .feedback(now)
                    .map(|f| f.marshal().expect("feedback marshals"))
            } else {
                self.receiver
                    .feedback()
                    .map(|f| f.marshal().expect("feedback marshals"))
            };
            if let Some(bytes) = bytes {
                self.returning
                    .push_back((now + self.config.delay, bytes.freeze()));
            }
            self.next_feedback += self.config.feedback_interval;
        }
        while self.returning.front().is_some_and(|(at, _)| *at <= now) {
            let Some((_, mut bytes)) = self.returning.pop_front() else {
                break;
            };
            self.feedbacks += 1;
            if self.config.ccfb {
                let feedback =
                    CcFeedbackReport::unmarshal(&mut bytes).expect("feedback unmarshals");
                self.bwe.on_ccfb(now, &feedback);
            } else {
                let feedback =
                    TransportLayerCc::unmarshal(&mut bytes).expect("feedback unmarshals");
                if let Some(hook) = self.feedback_hook.as_mut() {
                    hook(&mut self.bwe, now, &feedback);
                }
                self.bwe.on_twcc(now, &feedback);
            }
            if let Some(outcome) = self.probe.poll(now, &mut self.bwe) {
                self.outcomes.push((self.t(), outcome));
            }
        }
        if self.bwe.poll_timeout().is_some_and(|at| at <= now) {
            self.bwe.handle_timeout(now);
        }
        while let Some(_dropped) = self.pacer.pop_dropped() {
            self.pacer_drops += 1;
        }
        if now >= self.next_sample {
            self.sample();
            self.next_sample += self.config.sample_every;
        }
    }

    fn push(&mut self, class: PacketClass, size: usize) {
        let now = self.now;
        self.pacer.push(
            now,
            class,
            size,
            Packet {
                seq: 0,
                ssrc: 0,
                rtp_seq: 0,
                size,
                class,
                sent: now,
            },
        );
    }

    fn sample(&mut self) {
        let now = self.now;
        let stats = self.bwe.stats();
        let sample = Sample {
            t: self.t(),
            capacity_bps: self.link.capacity_bps,
            estimate_bps: stats.estimate_bps,
            delay_based_bps: stats.delay_based_bps,
            loss_based_bps: stats.loss_based_bps,
            send_bps: Self::window_bps(&mut self.sent_window, now),
            recv_bps: Self::window_bps(&mut self.recv_window, now),
            bottleneck_delay_ms: self.link.queue_delay(now).as_secs_f64() * 1e3,
            rtt_ms: stats.rtt.map_or(0.0, |r| r.as_secs_f64() * 1e3),
            loss_fraction: stats.loss_fraction,
            pacer_queue_ms: self.pacer.queue_delay(now).as_secs_f64() * 1e3,
        };
        self.samples.push(sample);
    }

    fn next_event(&self) -> Instant {
        let mut next = self
            .next_frame
            .min(self.next_feedback)
            .min(self.next_sample);
        if self.config.audio {
            next = next.min(self.next_audio);
        }
        let candidates = [
            self.pacer.poll_timeout(),
            self.link.next_arrival(),
            self.returning.front().map(|(at, _)| *at),
            self.bwe.poll_timeout(),
            self.probe.poll_timeout(),
            self.capacity_changes.front().map(|(at, _)| *at),
        ];
        for at in candidates.into_iter().flatten() {
            next = next.min(at);
        }
        next.max(self.now + Duration::from_micros(20))
    }

    /// Runs until `t` since the start.
    pub fn run_until(&mut self, t: Duration) {
        let end = self.start + t;
        while self.now < end {
            self.step();
            self.now = self.next_event().min(end);
        }
        self.step();
    }

    /// Runs until `t`, calling `check` after every step; stops early when
    /// it returns `true`. Returns whether it did.
    pub fn run_until_or(&mut self, t: Duration, mut check: impl FnMut(&Sim) -> bool) -> bool {
        let end = self.start + t;
        while self.now < end {
            self.step();
            if check(self) {
                return true;
            }
            self.now = self.next_event().min(end);
        }
        false
    }

    /// The first sample at or after `from` seconds that satisfies `f`.
    pub fn first_sample(&self, from: f64, f: impl Fn(&Sample) -> bool) -> Option<Sample> {
        self.samples.iter().find(|s| s.t >= from && f(s)).copied()
    }
}
