//! The receive-side jitter buffer: a sans-IO core in the spirit of libwebrtc's
//! NetEQ.
//!
//! # Rules of use
//!
//! - **Time is a parameter.** Every call takes the caller's clock as a
//!   [`Duration`] since an arbitrary fixed origin (e.g. the call start); it must
//!   not go backwards (a backwards step is treated as no time passing). The
//!   buffer never reads a clock, so tests drive it with a fake one.
//! - **Packets in:** [`JitterBuffer::insert`] for every RTP audio packet, with
//!   its arrival time; [`JitterBuffer::insert_red`] for a RED (RFC 2198)
//!   packet, whose redundant copies stand in for packets that went missing.
//! - **Audio out:** [`JitterBuffer::pull`] once every 20 ms of playout. Each
//!   pull returns exactly one 20 ms frame (`decoder.channels().frame_len()`
//!   interleaved samples at 48 kHz). The pulls *are* the playout clock: the
//!   buffer decides on each one which [`Operation`] makes the frame, and asks
//!   the [`FrameDecoder`] for it.
//!
//! # Parts
//!
//! - a packet buffer ordering packets by extended (64-bit) sequence number,
//!   refusing duplicates and packets whose turn has passed, bounded in size;
//! - a [`DelayEstimator`]: relative arrival delay of every packet, a forgetting
//!   histogram, and from its 95th percentile the target delay;
//! - the decision logic (see [`Operation`]; the full rule table is in
//!   `docs/audio-pipeline.md`): the *playout lag* (how far playout runs behind
//!   the arrival line of the best-placed recent packet, filtered) is kept
//!   between the target and target + one packet + 5 ms while the audio is
//!   quiet, in a wider band while speech plays (stretches are audible), and
//!   set to the target at the start of a talkspurt after DTX;
//! - concealment through the codec: [`FrameDecoder::decode_fec`] when the next
//!   packet is there, [`FrameDecoder::conceal`] (PLC) when not;
//! - time stretching: `Accelerate` cross-fades two frames into one,
//!   `PreemptiveExpand` inserts a concealment frame; they keep the playout lag
//!   near the target, which also absorbs sender clock drift;
//! - [`JitterStats`].
//!
//! # Playout timeline
//!
//! The buffer tracks the next sequence number to play and the RTP timestamp
//! the next decoded sample will have. A packet is *due* when its timestamp (or,
//! for a missing packet, the timestamp it would have had) has been reached.
//! A packet whose timestamp is ahead of the timeline — the first packet after
//! a DTX gap — waits, with comfort noise played meanwhile, so a silence gap
//! neither counts as loss nor changes the delay. If the buffer runs dry, the
//! timeline keeps moving (concealment); a packet that then turns up behind
//! the timeline is played at once (the delay grows by what was concealed, and
//! the level control takes it back down), and a missing packet whose time was
//! already concealed is skipped, counted lost.
//!
//! # Example
//!
//! ```
//! use huddle_media::jitter::{JitterBuffer, JitterConfig, RtpAudioPacket};
//! use huddle_media::opus_codec::{EncoderConfig, OpusDecoder, OpusEncoder};
//! use huddle_media::source::{AudioSource, Tone};
//! use huddle_media::Channels;
//! use std::time::Duration;
//!
//! # fn main() -> huddle_media::Result<()> {
//! let mut enc = OpusEncoder::new(EncoderConfig::default())?;
//! let mut dec = OpusDecoder::new(Channels::Mono)?;
//! let mut jb = JitterBuffer::new(JitterConfig::default())?;
//! let mut tone = Tone::new(440.0, 8000).with_frames(50);
//! let mut seq = 0u16;
//! let mut now = Duration::ZERO;
//! while let Some(frame) = tone.next_frame() {
//!     let payload = enc.encode(&frame)?;
//!     let packet = RtpAudioPacket {
//!         seq,
//!         timestamp: u32::from(seq) * 960,
//!         ssrc: 7,
//!         payload,
//!         marker: seq == 0,
//!     };
//!     jb.insert(packet, now + Duration::from_millis(5)); // 5 ms network delay
//!     now += Duration::from_millis(20);
//!     let pcm = jb.pull(now, &mut dec);
//!     assert_eq!(pcm.len(), 960);
//!     seq += 1;
//! }
//! assert_eq!(jb.stats().lost, 0);
//! # Ok(())
//! # }
//! ```

mod decision;
mod decoder;
mod delay;
mod packet_buffer;
mod red;
mod reorder;
mod seq;
mod stats;
mod stretch;

pub use decision::Operation;
pub use decoder::FrameDecoder;
pub use delay::{DelayConfig, DelayEstimator};
pub use stats::JitterStats;

use crate::error::{MediaError, Result};
use crate::format::FRAME_SAMPLES;
use crate::rtp::RtpView;
use decision::{band_for, decide, DecisionInput, Head};
use packet_buffer::{BufferInsert, PacketBuffer, StoredPacket};
use reorder::ReorderOptimizer;
use seq::{SeqUnwrapper, TsUnwrapper};
use std::time::Duration;

/// A packet this many sequence numbers behind the newest (80 ms of 20 ms
/// packets) was not reordered by jitter but resent after a NACK, a round
/// trip and the receiver's asking interval late: it is played if still in
/// time, but its delay says nothing about the network's jitter, and fed to
/// the delay estimate it held the target up (docs/audio-quality.md,
/// "NACK").
pub const FAR_BEHIND: i64 = 4;

/// RTP clock ticks per millisecond (Opus always uses a 48 kHz RTP clock).
const TICKS_PER_MS: f64 = 48.0;
/// A sequence-number jump larger than this (about 60 s of 20 ms packets) on the
/// same SSRC restarts the stream instead of being played through.
const MAX_SEQ_JUMP: i64 = 3000;
/// Most decisions per pull (a pull needs several only when packets decode to
/// less than 20 ms).
const MAX_STEPS_PER_PULL: usize = 8;
/// A decoded frame whose mean absolute sample is below this (about -44 dBFS)
/// is quiet: time stretching there is inaudible.
const QUIET_MEAN_ABS: f64 = 200.0;
/// Plausible packet durations, in 48 kHz ticks (2.5 ms to 120 ms).
const MIN_PACKET_TICKS: i64 = 120;
const MAX_PACKET_TICKS: i64 = 5760;

/// One received RTP audio packet: the header fields the jitter buffer uses and
/// the codec payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpAudioPacket {
    /// RTP sequence number (wraps at 65535).
    pub seq: u16,
    /// RTP timestamp, 48 kHz clock (wraps at 2^32).
    pub timestamp: u32,
    /// Synchronization source; a new value starts a new stream.
    pub ssrc: u32,
    /// Codec payload (one Opus packet).
    pub payload: Vec<u8>,
    /// RTP marker bit (set on the first packet of a talkspurt).
    pub marker: bool,
}

impl RtpAudioPacket {
    /// Copy the fields out of a parsed RTP packet.
    pub fn from_view(view: &RtpView<'_>) -> Self {
        RtpAudioPacket {
            seq: view.sequence_number,
            timestamp: view.timestamp,
            ssrc: view.ssrc,
            payload: view.payload.to_vec(),
            marker: view.marker,
        }
    }
}

/// What [`JitterBuffer::insert`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InsertOutcome {
    /// Buffered for playout.
    Accepted,
    /// Dropped: the same sequence number is buffered or was just played.
    Duplicate,
    /// Dropped: its turn has passed (it was concealed or recovered already).
    Late,
    /// Dropped: it belongs to the SSRC this stream replaced.
    StaleSsrc,
    /// Dropped: a RED packet whose primary block is not the codec's
    /// payload type (comfort noise, DTMF, ...).
    OtherPayloadType,
}

/// Settings of a [`JitterBuffer`].
#[derive(Debug, Clone, PartialEq)]
pub struct JitterConfig {
    /// Target-delay estimation (quantile, forget factor, margin, min and max
    /// target: 95%, 0.983, 0 ms, 0 ms, 500 ms by default).
    pub delay: DelayConfig,
    /// Most packets held; beyond it the oldest are dropped (default 50, 1 s of
    /// 20 ms packets).
    pub max_packets: usize,
    /// Most concealment frames in a row before switching to silence (default 10,
    /// 200 ms; Opus PLC has faded out by then).
    pub max_expands: u32,
    /// Smoothing of the playout lag compared with the target: each pull,
    /// `lag = s * lag + (1 - s) * measured` (default 0.9, ~200 ms); the known
    /// jumps (a stretch, a packet played behind a concealment frame, the
    /// start of a talkspurt) are taken at once.
    pub level_smoothing: f64,
    /// For this many packets after a loss, the target is at least one packet
    /// plus the median relative delay, so that the packet after a missing one
    /// has usually arrived when the missing one is due and its in-band FEC
    /// can rebuild it (default 500, 10 s; 0: never, FEC is then used only
    /// when jitter already keeps the next packet waiting).
    pub fec_hold_packets: u32,
    /// While the FEC hold is on and the sender's RED packets repeat frames
    /// up to k packets back, the hold keeps min(k, this) packets instead of
    /// one, so that a burst of up to k lost packets is rebuilt from the
    /// copies in the packet after it (default 8, the most a huddle sender
    /// repeats, at 37 % loss and more; 1: never more than the FEC hold; 0
    /// counts as 1). See [`JitterBuffer::insert_red`].
    pub red_hold_packets: u32,
}

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig {
            delay: DelayConfig::default(),
            max_packets: 50,
            max_expands: 10,
            level_smoothing: 0.9,
            fec_hold_packets: 500,
            red_hold_packets: 8,
        }
    }
}

impl JitterConfig {
    /// The default settings without the FEC hold (`fec_hold_packets: 0`):
    /// while packets are lost and nothing else delays them, playout keeps
    /// no packet in hand, so a lost packet is concealed with PLC unless the
    /// next one happens to be there already. About 20 ms less delay in that
    /// case and nothing else changes; the price is the quality of those
    /// losses (PESQ at 5% random loss: 3.17 instead of 4.17 on recorded
    /// speech, `docs/audio-quality.md`).
    pub fn low_latency() -> Self {
        JitterConfig {
            fec_hold_packets: 0,
            ..JitterConfig::default()
        }
    }

    /// Check every value is in range; [`MediaError::InvalidConfig`] if not.
    pub fn validate(&self) -> Result<()> {
        let d = &self.delay;
        let bad = |what: String| Err(MediaError::InvalidConfig(what));
        if !(d.quantile > 0.0 && d.quantile <= 1.0) {
            return bad(format!("quantile {} outside (0, 1]", d.quantile));
        }
        if !(d.forget_factor > 0.0 && d.forget_factor < 1.0) {
            return bad(format!("forget factor {} outside (0, 1)", d.forget_factor));
        }
        if !(d.reorder_forget_factor > 0.0 && d.reorder_forget_factor < 1.0) {
            return bad(format!(
                "reorder forget factor {} outside (0, 1)",
                d.reorder_forget_factor
            ));
        }
        if !(d.reorder_ms_per_loss_percent.is_finite() && d.reorder_ms_per_loss_percent >= 0.0) {
            return bad(format!(
                "reorder cost {} ms per loss percent negative or not finite",
                d.reorder_ms_per_loss_percent
            ));
        }
        if !(d.bucket_ms.is_finite() && d.bucket_ms >= 0.5) {
            return bad(format!("bucket width {} ms below 0.5 ms", d.bucket_ms));
        }
        if d.min_delay > d.max_delay || d.max_delay > Duration::from_secs(10) {
            return bad(format!(
                "delay bounds {:?}..{:?} not ordered or above 10 s",
                d.min_delay, d.max_delay
            ));
        }
        if self.max_packets < 2 {
            return bad(format!("max_packets {} below 2", self.max_packets));
        }
        if !(0.0..1.0).contains(&self.level_smoothing) {
            return bad(format!(
                "level smoothing {} outside [0, 1)",
                self.level_smoothing
            ));
        }
        Ok(())
    }
}

/// Where playout stands once it has started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Playout {
    /// Extended sequence number of the next packet to play.
    next_seq: i64,
    /// Extended RTP timestamp of the next sample to be decoded.
    play_ts: i64,
}

/// The adaptive jitter buffer. See the [module docs](self) for the rules of use.
#[derive(Debug)]
pub struct JitterBuffer {
    config: JitterConfig,
    buffer: PacketBuffer,
    delay: DelayEstimator,
    /// How long reordered packets are worth waiting for.
    reorder: ReorderOptimizer,
    stats: JitterStats,
    ssrc: Option<u32>,
    previous_ssrc: Option<u32>,
    seq_unwrap: SeqUnwrapper,
    ts_unwrap: TsUnwrapper,
    playout: Option<Playout>,
    /// Decoded samples not yet handed out.
    sync: Vec<i16>,
    /// Audio buffered ahead of playout at the last decision (ms, unfiltered).
    level_ms: f64,
    /// Filtered playout lag (ms), `None` until measured for this stream.
    lag_ms: Option<f64>,
    /// Duration of the last decoded packet, in 48 kHz ticks.
    packet_ticks: i64,
    in_dtx: bool,
    consecutive_expands: u32,
    /// Packets played since the last loss (saturating; starts saturated).
    since_loss: u32,
    /// The last decoded frame was quiet (see [`QUIET_MEAN_ABS`]).
    quiet: bool,
    /// Ticks of the current underrun that a missing packet may still claim:
    /// the first concealment frame of an underrun does not give up on the
    /// packet it stood in for (its successor's FEC may still rebuild it).
    held_ticks: i64,
    last_op: Operation,
    decoder_reset_pending: bool,
    /// How many frames back the sender's RED packets reach (the largest
    /// distance of a placed redundant block lately; 0 without RED).
    red_depth: u16,
    /// `stats.packets_received` when `red_depth` was last reached.
    red_depth_seen_at: u64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl JitterBuffer {
    /// An empty buffer. Fails with [`MediaError::InvalidConfig`] on a bad config.
    pub fn new(config: JitterConfig) -> Result<Self> {
        config.validate()?;
        Ok(JitterBuffer {
            buffer: PacketBuffer::new(config.max_packets),
            delay: DelayEstimator::new(config.delay.clone()),
            reorder: ReorderOptimizer::new(
                ms(config.delay.max_delay),
                config.delay.reorder_forget_factor,
                config.delay.reorder_ms_per_loss_percent,
            ),
            config,
            stats: JitterStats::default(),
            ssrc: None,
            previous_ssrc: None,
            seq_unwrap: SeqUnwrapper::default(),
            ts_unwrap: TsUnwrapper::default(),
            playout: None,
            sync: Vec::with_capacity(2 * FRAME_SAMPLES),
            level_ms: 0.0,
            lag_ms: None,
            packet_ticks: FRAME_SAMPLES as i64,
            in_dtx: false,
            consecutive_expands: 0,
            since_loss: u32::MAX,
            quiet: true,
            held_ticks: 0,
            last_op: Operation::Silence,
            decoder_reset_pending: false,
            red_depth: 0,
            red_depth_seen_at: 0,
        })
    }

    /// The settings in use.
    pub fn config(&self) -> &JitterConfig {
        &self.config
    }

    /// Statistics so far (gauges as of the last call).
    pub fn stats(&self) -> JitterStats {
        let mut s = self.stats;
        s.target_delay_ms = self.target_ms();
        s.buffer_level_ms = self.level_ms;
        s.playout_lag_ms = self.lag_ms.unwrap_or(0.0);
        s.last_relative_delay_ms = self.delay.last_relative_ms();
        s
    }

    /// The current target delay.
    pub fn target_delay(&self) -> Duration {
        Duration::from_secs_f64(self.target_ms() / 1000.0)
    }

    /// The target playout lag in ms: the delay estimator's target; while
    /// packets are being lost (see [`JitterConfig::fec_hold_packets`]) at
    /// least one packet plus the median relative delay, so that the packet
    /// after a missing one has usually arrived when the missing one is due
    /// (k packets when the sender's RED reaches k back, up to
    /// [`JitterConfig::red_hold_packets`]).
    fn target_ms(&self) -> f64 {
        let base = self.delay.target_ms().max(
            self.reorder
                .optimal_ms()
                .min(ms(self.config.delay.max_delay)),
        );
        if self.since_loss < self.config.fec_hold_packets {
            let held = u32::from(self.red_depth)
                .min(self.config.red_hold_packets)
                .max(1);
            let fec = (f64::from(held) * self.packet_ms() + self.delay.median_ms())
                .min(ms(self.config.delay.max_delay));
            base.max(fec)
        } else {
            base
        }
    }

    /// A packet was found missing when its turn came.
    fn note_loss(&mut self) {
        self.stats.lost += 1;
        self.since_loss = 0;
    }

    /// Number of packets waiting in the buffer.
    pub fn buffered_packets(&self) -> usize {
        self.buffer.len()
    }

    /// Whether playout has started for the current stream.
    pub fn is_playing(&self) -> bool {
        self.playout.is_some()
    }

    /// The SSRC of the current stream, once a packet has arrived.
    pub fn ssrc(&self) -> Option<u32> {
        self.ssrc
    }

    /// Hand over one received packet that arrived at `arrival` (caller's clock).
    ///
    /// Never fails and never panics, whatever the packet holds: bad payloads
    /// surface later as decode errors (concealed), odd headers as late,
    /// duplicate or stale packets, or a stream restart.
    pub fn insert(&mut self, packet: RtpAudioPacket, arrival: Duration) -> InsertOutcome {
        self.stats.packets_received += 1;
        self.insert_packet(packet, arrival, false)
    }

    /// Hand over a redundant copy of an earlier packet (a RED block placed
    /// on the timeline: `seq` and `timestamp` are the packet's it stands
    /// for), carried by a packet that arrived at `arrival`.
    ///
    /// It is stored only if that packet is missing and its turn has not
    /// passed; it never replaces a packet that arrived, and the packet
    /// replaces it if it still arrives in time. It is played as the packet
    /// itself (counted in [`JitterStats::red_recovered_frames`]). It does not
    /// feed the delay estimate (its arrival says nothing about the delay of
    /// the packet it stands for), and a copy from another SSRC than the
    /// current stream's, or from far outside the current sequence range, is
    /// dropped rather than restarting the stream. [`insert_red`](Self::insert_red)
    /// splits a RED packet and calls this for each redundant block.
    pub fn insert_redundant(&mut self, packet: RtpAudioPacket, arrival: Duration) -> InsertOutcome {
        self.stats.red_received += 1;
        if self.ssrc != Some(packet.ssrc) {
            return InsertOutcome::StaleSsrc;
        }
        self.insert_packet(packet, arrival, true)
    }

    fn insert_packet(
        &mut self,
        packet: RtpAudioPacket,
        arrival: Duration,
        redundant: bool,
    ) -> InsertOutcome {
        match self.ssrc {
            None => self.ssrc = Some(packet.ssrc),
            Some(current) if current != packet.ssrc => {
                if self.previous_ssrc == Some(packet.ssrc) {
                    self.stats.late += 1;
                    return InsertOutcome::StaleSsrc;
                }
                self.previous_ssrc = Some(current);
                self.ssrc = Some(packet.ssrc);
                self.restart_stream();
                self.stats.ssrc_changes += 1;
                self.decoder_reset_pending = true;
            }
            Some(_) => {}
        }
        let mut seq = self.seq_unwrap.unwrap(u32::from(packet.seq));
        let mut ts = self.ts_unwrap.unwrap(packet.timestamp);
        let reference = self
            .playout
            .map(|p| p.next_seq)
            .or_else(|| self.buffer.first().map(|(s, _)| s));
        if reference.is_some_and(|r| (seq - r).abs() > MAX_SEQ_JUMP) {
            if redundant {
                return InsertOutcome::Late;
            }
            self.restart_stream();
            self.stats.stream_resets += 1;
            seq = self.seq_unwrap.unwrap(u32::from(packet.seq));
            ts = self.ts_unwrap.unwrap(packet.timestamp);
        }
        // Against the stream as it now is: a packet that restarted it is
        // its first, not a resend.
        let newest = self.seq_unwrap.highest();
        let far_behind = newest.is_some_and(|newest| newest - seq >= FAR_BEHIND);
        let overtaken = redundant || newest.is_some_and(|newest| newest > seq);
        let stored = StoredPacket {
            ts,
            payload: packet.payload,
            arrival,
            redundant,
            overtaken,
        };
        let outcome = self
            .buffer
            .insert(seq, stored, self.playout.map(|p| p.next_seq));
        if redundant {
            // Counted apart; a copy's arrival is not its packet's.
            return match outcome {
                BufferInsert::Stored { flushed } => {
                    self.stats.flushed += flushed as u64;
                    InsertOutcome::Accepted
                }
                BufferInsert::Duplicate => InsertOutcome::Duplicate,
                BufferInsert::Late => InsertOutcome::Late,
            };
        }
        if far_behind {
            // A resend (NACK) arrives a round trip or more after its
            // successors: its delay is the retransmission's, not the
            // network's jitter, and would hold the target up for nothing.
            self.stats.far_behind += 1;
        }
        let outcome = match outcome {
            BufferInsert::Stored { flushed } => {
                self.stats.flushed += flushed as u64;
                InsertOutcome::Accepted
            }
            BufferInsert::Duplicate => {
                self.stats.duplicates += 1;
                return InsertOutcome::Duplicate;
            }
            BufferInsert::Late => {
                self.stats.late += 1;
                InsertOutcome::Late
            }
        };
        // A late packet is exactly what the delay estimates must see; one
        // overtaken by its successors goes to the reorder optimizer
        // instead of the delay histogram, and a resend far behind to
        // neither.
        if overtaken {
            if !far_behind {
                let relative = self.delay.observe_reordered(ts, arrival);
                self.reorder.update(Some(relative));
            }
        } else {
            self.delay.update(ts, arrival);
            self.reorder.update(None);
        }
        outcome
    }

    /// Produce the next 20 ms of audio at `now` (caller's clock): exactly
    /// `decoder.channels().frame_len()` interleaved samples. Call once per
    /// 20 ms of playout.
    pub fn pull<D: FrameDecoder + ?Sized>(&mut self, now: Duration, decoder: &mut D) -> Vec<i16> {
        let mut out = Vec::with_capacity(decoder.channels().frame_len());
        self.pull_into(now, decoder, &mut out);
        out
    }

    /// Like [`pull`](Self::pull), writing into `out` (cleared first), and
    /// returning the operation that made the frame (`Normal` when it came
    /// from the rest of a longer packet decoded earlier).
    pub fn pull_into<D: FrameDecoder + ?Sized>(
        &mut self,
        now: Duration,
        decoder: &mut D,
        out: &mut Vec<i16>,
    ) -> Operation {
        out.clear();
        if self.decoder_reset_pending {
            self.decoder_reset_pending = false;
            if decoder.reset().is_err() {
                self.stats.decode_errors += 1;
            }
        }
        let channels = decoder.channels().count();
        let frame_len = decoder.channels().frame_len();
        let mut first = None;
        for _ in 0..MAX_STEPS_PER_PULL {
            if self.sync.len() >= frame_len {
                break;
            }
            let op = self.step(now, decoder, frame_len, channels);
            self.stats.count(op);
            self.last_op = op;
            first.get_or_insert(op);
        }
        let take = frame_len.min(self.sync.len());
        out.extend(self.sync.drain(..take));
        out.resize(frame_len, 0);
        self.stats.frames_out += 1;
        first.unwrap_or(Operation::Normal)
    }

    /// Forget the current stream (new SSRC or a wild sequence jump): buffered
    /// packets, timeline and arrival reference. Statistics and the delay
    /// histogram stay.
    fn restart_stream(&mut self) {
        self.stats.flushed += self.buffer.len() as u64;
        self.buffer.clear();
        self.seq_unwrap = SeqUnwrapper::default();
        self.ts_unwrap = TsUnwrapper::default();
        self.playout = None;
        self.sync.clear();
        self.delay.reset_reference();
        self.level_ms = 0.0;
        self.lag_ms = None;
        self.in_dtx = false;
        self.consecutive_expands = 0;
        self.held_ticks = 0;
        self.last_op = Operation::Silence;
    }

    fn packet_ms(&self) -> f64 {
        self.packet_ticks as f64 / TICKS_PER_MS
    }

    /// Audio buffered ahead of the playout point, in ms: buffered packets
    /// (nominal duration each) plus decoded samples not yet handed out.
    fn measured_level_ms(&self, channels: usize) -> f64 {
        self.buffer.len() as f64 * self.packet_ms()
            + (self.sync.len() / channels.max(1)) as f64 / TICKS_PER_MS
    }

    /// How far the playout of timestamp `ts` at `now` runs behind the arrival
    /// line of the best-placed packet of the delay window, in ms: packets whose
    /// relative delay is at most this are in time.
    fn lag_at(&self, now: Duration, ts: i64) -> Option<f64> {
        let reference = self.delay.reference_transit_ms()?;
        Some(ms(now) - ts as f64 / TICKS_PER_MS - reference)
    }

    /// Start playout once the first buffered packet is late enough behind the
    /// arrival line that the target lag is reached, or the buffer already
    /// holds more than the target.
    fn try_start(&mut self, now: Duration) {
        if self.playout.is_some() {
            return;
        }
        let Some((seq, pkt)) = self.buffer.first() else {
            return;
        };
        let target = self.target_ms();
        let level = self.buffer.len() as f64 * self.packet_ms();
        let lag = self
            .lag_at(now, pkt.ts)
            .unwrap_or_else(|| ms(now.saturating_sub(pkt.arrival)));
        if lag >= target || level > target + self.packet_ms() {
            self.playout = Some(Playout {
                next_seq: seq,
                play_ts: pkt.ts,
            });
            self.level_ms = level;
            self.lag_ms = Some(lag);
        }
    }

    /// Update the filtered playout lag with a measurement.
    fn filter_lag(&mut self, measured: f64) -> f64 {
        let s = self.config.level_smoothing;
        let lag = match self.lag_ms {
            Some(old) => s * old + (1.0 - s) * measured,
            None => measured,
        };
        self.lag_ms = Some(lag);
        lag
    }

    /// Make one decision and carry it out, appending its samples to `sync`.
    fn step<D: FrameDecoder + ?Sized>(
        &mut self,
        now: Duration,
        decoder: &mut D,
        frame_len: usize,
        channels: usize,
    ) -> Operation {
        self.try_start(now);
        let Some(mut playout) = self.playout else {
            self.sync.resize(self.sync.len() + frame_len, 0);
            return Operation::Silence;
        };
        let head = self.classify_head(now, &mut playout);
        // The timestamp the head stands for (for a missing packet, the one it
        // would have had), and the lag measured on it.
        let head_ts = match head {
            Head::Due => self.buffer.get(playout.next_seq).map(|p| p.ts),
            Head::MissingNextPresent => self
                .buffer
                .get(playout.next_seq + 1)
                .map(|p| p.ts.saturating_sub(self.packet_ticks)),
            _ => None,
        }
        .unwrap_or(playout.play_ts);
        let mut lag = self.lag_ms.unwrap_or(0.0);
        if matches!(
            head,
            Head::Due | Head::MissingNextPresent | Head::MissingLaterPresent
        ) {
            self.level_ms = self.measured_level_ms(channels);
            if head_ts < playout.play_ts {
                // Played behind the timeline (after an underrun frame): the
                // lag grew by what was concealed, all at once.
                self.shift_lag((playout.play_ts - head_ts) as f64 / TICKS_PER_MS);
            }
            if let Some(measured) = self.lag_at(now, head_ts) {
                lag = self.filter_lag(measured);
            }
        }
        let next_contiguous = match (
            self.buffer.get(playout.next_seq),
            self.buffer.get(playout.next_seq + 1),
        ) {
            (Some(a), Some(b)) => b.ts == a.ts.saturating_add(self.packet_ticks),
            _ => false,
        };
        let op = decide(&DecisionInput {
            head,
            lag_ms: lag,
            target_ms: self.target_ms(),
            packet_ms: self.packet_ms(),
            quiet: self.quiet,
            next_contiguous,
            in_dtx: self.in_dtx,
            consecutive_expands: self.consecutive_expands,
            max_expands: self.config.max_expands,
            last: self.last_op,
        });
        let frame_ticks = (frame_len / channels.max(1)) as i64;
        match op {
            Operation::Normal => {
                self.play_packet(now, &mut playout, decoder, channels);
                self.consecutive_expands = 0;
            }
            Operation::Accelerate => {
                self.accelerate(now, &mut playout, decoder, channels);
                self.consecutive_expands = 0;
            }
            Operation::PreemptiveExpand => {
                self.conceal(decoder, frame_len);
                self.shift_lag(self.packet_ms());
            }
            Operation::FecRecover => {
                let pcm = match self.buffer.get(playout.next_seq + 1) {
                    Some(next) => decoder.decode_fec(&next.payload),
                    None => decoder.conceal(),
                };
                let pcm = pcm.unwrap_or_else(|_| {
                    self.stats.decode_errors += 1;
                    vec![0; frame_len]
                });
                let ticks = (pcm.len() / channels.max(1)) as i64;
                self.sync.extend_from_slice(&pcm);
                self.note_loss();
                self.held_ticks = 0;
                playout.next_seq += 1;
                // From the rebuilt packet's own timestamp: after an underrun
                // frame the timeline had already moved past it.
                playout.play_ts =
                    head_ts.saturating_add(if ticks > 0 { ticks } else { frame_ticks });
                self.consecutive_expands = 0;
                self.in_dtx = false;
            }
            Operation::Expand | Operation::ComfortNoise | Operation::Silence => {
                if op == Operation::Expand {
                    if head == Head::Empty && self.consecutive_expands == 0 {
                        self.held_ticks = frame_ticks;
                    }
                    self.conceal(decoder, frame_len);
                    self.consecutive_expands = self.consecutive_expands.saturating_add(1);
                } else {
                    self.sync.resize(self.sync.len() + frame_len, 0);
                }
                if head == Head::MissingLaterPresent {
                    self.note_loss();
                    playout.next_seq += 1;
                }
                playout.play_ts = playout.play_ts.saturating_add(frame_ticks);
            }
        }
        self.playout = Some(playout);
        op
    }

    /// Skip missing packets whose time was already concealed, re-anchor the
    /// timeline if the head packet has waited implausibly long, and say where
    /// the head stands.
    fn classify_head(&mut self, now: Duration, playout: &mut Playout) -> Head {
        let max_wait_ms = ms(self.config.delay.max_delay);
        loop {
            let Some((seq, pkt)) = self.buffer.first() else {
                return Head::Empty;
            };
            if seq < playout.next_seq {
                // Cannot be stored (insert refuses it), but never trust that.
                self.buffer.remove(seq);
                continue;
            }
            let gap = seq - playout.next_seq;
            let expected = pkt.ts.saturating_sub(gap.saturating_mul(self.packet_ticks));
            // An underrun frame is given back to the missing packet only if
            // the packet after it is here to rebuild it from FEC, and only
            // while playout wants more lag anyway: otherwise the
            // concealment frame stands for the packet, rather than playout
            // stretching twice (the rebuilt packet played one frame late
            // now, an accelerate to take that frame back later).
            let held = if gap == 1 && self.lag_below_band() {
                self.held_ticks
            } else {
                0
            };
            let filled_up_to = playout.play_ts.saturating_sub(held);
            if gap > 0 && expected.saturating_add(self.packet_ticks) <= filled_up_to {
                // The missing packet's time has been filled by concealment.
                self.note_loss();
                playout.next_seq += 1;
                continue;
            }
            if gap == 0 && pkt.overtaken && self.too_late_to_play_behind(playout, expected) {
                // It came after its successors (a resend, a RED copy), so
                // the stream has moved on; playing it now would put playout
                // behind by more than it wants, to be taken back by
                // accelerating through speech. It is late, as if it had
                // come after its turn.
                self.buffer.remove(seq);
                self.stats.late += 1;
                self.note_loss();
                playout.next_seq += 1;
                continue;
            }
            let waited_ms = ms(now.saturating_sub(pkt.arrival));
            if gap == 0 && self.in_dtx && self.last_op == Operation::ComfortNoise {
                // A talkspurt starts after DTX: start it at the target lag,
                // whatever the lag before the pause (a free re-target: the
                // gap of silence is just longer or shorter).
                let lag = self.lag_at(now, pkt.ts).unwrap_or(0.0);
                if lag < self.target_ms() && waited_ms <= max_wait_ms {
                    return Head::Early;
                }
                playout.play_ts = expected;
                self.lag_ms = Some(lag);
            } else if expected > playout.play_ts.saturating_add(self.packet_ticks / 2) {
                if waited_ms <= max_wait_ms {
                    return Head::Early;
                }
                // Far ahead of a timeline that has fallen behind: jump to it.
                playout.play_ts = expected;
            }
            return match gap {
                0 => Head::Due,
                1 => Head::MissingNextPresent,
                _ => Head::MissingLaterPresent,
            };
        }
    }

    /// Whether a packet due at `expected`, whose time concealment has
    /// already filled, would put the lag above the band if played now
    /// (behind the timeline by what was concealed). Below that it is
    /// played: the lag it adds is one playout can keep without stretching
    /// through speech to take it back.
    fn too_late_to_play_behind(&self, playout: &Playout, expected: i64) -> bool {
        let behind = playout.play_ts.saturating_sub(expected);
        if behind < self.packet_ticks {
            return false;
        }
        let lag = self.lag_ms.unwrap_or(0.0) + behind as f64 / TICKS_PER_MS;
        let (_, high) = band_for(self.target_ms(), self.packet_ms(), self.quiet);
        lag > high
    }

    /// Whether the filtered playout lag is below the band it is kept in (a
    /// lag not measured yet counts as below).
    fn lag_below_band(&self) -> bool {
        let (low, _) = band_for(self.target_ms(), self.packet_ms(), self.quiet);
        self.lag_ms.is_none_or(|lag| lag < low)
    }

    /// A stretch moved playout by `delta_ms`: the lag moves with it at once.
    fn shift_lag(&mut self, delta_ms: f64) {
        if let Some(lag) = self.lag_ms.as_mut() {
            *lag += delta_ms;
        }
    }

    /// Conceal one frame with the codec's PLC (silence if the codec fails).
    fn conceal<D: FrameDecoder + ?Sized>(&mut self, decoder: &mut D, frame_len: usize) {
        match decoder.conceal() {
            Ok(pcm) => self.sync.extend_from_slice(&pcm),
            Err(_) => {
                self.stats.decode_errors += 1;
                self.sync.resize(self.sync.len() + frame_len, 0);
            }
        }
    }

    /// Take the packet `next_seq` out of the buffer and decode it (concealing
    /// if it does not decode). Returns its PCM and timestamp.
    fn take_and_decode<D: FrameDecoder + ?Sized>(
        &mut self,
        now: Duration,
        playout: &mut Playout,
        decoder: &mut D,
        channels: usize,
    ) -> Option<(Vec<i16>, i64)> {
        let seq = playout.next_seq;
        let pkt = self.buffer.remove(seq)?;
        let pcm = match decoder.decode(&pkt.payload) {
            Ok(pcm) => pcm,
            Err(_) => {
                self.stats.decode_errors += 1;
                decoder
                    .conceal()
                    .unwrap_or_else(|_| vec![0; FRAME_SAMPLES * channels])
            }
        };
        self.in_dtx = decoder.is_dtx(&pkt.payload);
        // Integer sum: vectorises, and 120 ms of i16 cannot overflow a u64.
        let sum_abs: u64 = pcm.iter().map(|x| u64::from(x.unsigned_abs())).sum();
        let mean_abs = sum_abs as f64 / pcm.len().max(1) as f64;
        self.quiet = mean_abs < QUIET_MEAN_ABS;
        let ticks = (pcm.len() / channels.max(1)) as i64;
        if ticks > 0 {
            self.packet_ticks = ticks.clamp(MIN_PACKET_TICKS, MAX_PACKET_TICKS);
        }
        playout.next_seq += 1;
        playout.play_ts = pkt.ts.saturating_add(self.packet_ticks);
        self.buffer.mark_played(seq);
        self.held_ticks = 0;
        self.since_loss = self.since_loss.saturating_add(1);
        if pkt.redundant {
            // Its own packet was lost: a loss like one FEC rebuilds.
            self.stats.red_recovered_frames += 1;
            self.note_loss();
        }
        let waited = ms(now.saturating_sub(pkt.arrival));
        self.stats.current_delay_ms = waited;
        self.stats.total_delay_ms += waited;
        self.stats.delayed_packets += 1;
        Some((pcm, pkt.ts))
    }

    fn play_packet<D: FrameDecoder + ?Sized>(
        &mut self,
        now: Duration,
        playout: &mut Playout,
        decoder: &mut D,
        channels: usize,
    ) {
        match self.take_and_decode(now, playout, decoder, channels) {
            Some((pcm, _)) => self.sync.extend_from_slice(&pcm),
            None => self
                .sync
                .resize(self.sync.len() + FRAME_SAMPLES * channels, 0),
        }
    }

    fn accelerate<D: FrameDecoder + ?Sized>(
        &mut self,
        now: Duration,
        playout: &mut Playout,
        decoder: &mut D,
        channels: usize,
    ) {
        let Some((a, _)) = self.take_and_decode(now, playout, decoder, channels) else {
            self.sync
                .resize(self.sync.len() + FRAME_SAMPLES * channels, 0);
            return;
        };
        match self.take_and_decode(now, playout, decoder, channels) {
            Some((b, _)) if !a.is_empty() && a.len() == b.len() => {
                stretch::crossfade_into(&a, &b, channels, &mut self.sync);
                self.shift_lag(-self.packet_ms());
            }
            Some((b, _)) => {
                self.sync.extend_from_slice(&a);
                self.sync.extend_from_slice(&b);
            }
            None => self.sync.extend_from_slice(&a),
        }
    }
}

#[cfg(test)]
mod tests;
