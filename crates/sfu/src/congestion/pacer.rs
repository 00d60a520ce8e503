//! [`Pacer`]: one subscriber's packets leave at a rate, not in bursts.
//!
//! A leaky bucket: the *media budget* refills at `rate x pacing_factor`
//! (bytes), capped at [`PacerConfig::max_burst`] worth; a queued packet may
//! leave while the budget is not negative, and its size is charged (the
//! budget may go negative by one packet). So over any window `W` the bytes
//! that leave are at most `rate x factor x W + burst + one packet`.
//!
//! Classes leave in priority order: audio, retransmissions, video, padding.
//! **Audio is never held**: it leaves on the next [`Pacer::pop`] whatever
//! the budget (its bytes are still charged, so video slows to make room),
//! which is what libwebrtc does with audio pacing off.
//!
//! **Padding only when asked**: the pacer never invents packets. While
//! padding is enabled ([`Pacer::set_padding`], during a probe) and nothing
//! else is queued, [`Pacer::padding_due`] says how many bytes of padding
//! would keep the wire at `rate` (a second bucket, refilled at `rate`
//! without the factor and charged by everything sent); the caller makes
//! padding packets of those sizes and pushes them.
//!
//! **Bounded**: non-audio packets queue up to
//! [`PacerConfig::max_queue_bytes`]. A packet that does not fit evicts,
//! oldest first, queued packets of lower or equal priority: padding
//! first, then video, then (for a retransmission) older retransmissions.
//! Padding never evicts anything (it is dropped itself), audio is never
//! evicted and never refused. Evicted packets come back through
//! [`Pacer::pop_dropped`] so their buffers can be reused and counted.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// `seconds` as a wait, rounded up to whole microseconds: a wait computed
/// to the last bit can fall a hair short of paying the debt back, and a
/// timer that fires with nothing to do would fire again at once.
fn wait(seconds: f64) -> Duration {
    Duration::from_micros((seconds.max(0.0) * 1e6).ceil() as u64 + 1)
}

/// A queued packet's class, in priority order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketClass {
    /// Audio: never held, never dropped.
    Audio,
    /// A retransmission answering a NACK.
    Retransmission,
    /// Video.
    Video,
    /// Padding (probing): only when asked for.
    Padding,
}

/// Configuration of a [`Pacer`].
#[derive(Debug, Clone, PartialEq)]
pub struct PacerConfig {
    /// The media budget refills at the rate times this: headroom so that a
    /// keyframe burst drains instead of piling up. The SFU forwards what
    /// publishers send, which momentarily exceeds the allocation.
    pub pacing_factor: f64,
    /// Budget that may build up while idle.
    pub max_burst: Duration,
    /// Non-audio bytes that may wait.
    pub max_queue_bytes: usize,
    /// Packets pre-allocated per class queue.
    pub initial_capacity: usize,
    /// Padding is asked for once at least this many bytes are due (not
    /// less than [`MIN_PADDING_BYTES`]): fewer, larger padding packets.
    pub padding_chunk: usize,
}

impl Default for PacerConfig {
    fn default() -> Self {
        Self {
            pacing_factor: 1.25,
            max_burst: Duration::from_millis(5),
            max_queue_bytes: 256 * 1024,
            initial_capacity: 256,
            padding_chunk: 250,
        }
    }
}

/// Smallest padding worth a packet (bytes on the wire).
pub const MIN_PADDING_BYTES: usize = 50;

#[derive(Debug)]
struct Queued<T> {
    enqueued: Instant,
    size: usize,
    item: T,
}

/// One subscriber's pacer over items `T` (the SFU's packets).
#[derive(Debug)]
pub struct Pacer<T> {
    config: PacerConfig,
    queues: [VecDeque<Queued<T>>; 4],
    dropped: VecDeque<(PacketClass, T)>,
    rate_bps: u64,
    /// Media budget (bytes).
    budget: f64,
    /// Padding budget (bytes).
    padding_budget: f64,
    padding: bool,
    updated: Option<Instant>,
    /// Bytes queued outside the audio queue.
    queued_bytes: usize,
    sent_bytes: u64,
    dropped_packets: u64,
}

fn index(class: PacketClass) -> usize {
    match class {
        PacketClass::Audio => 0,
        PacketClass::Retransmission => 1,
        PacketClass::Video => 2,
        PacketClass::Padding => 3,
    }
}

const CLASSES: [PacketClass; 4] = [
    PacketClass::Audio,
    PacketClass::Retransmission,
    PacketClass::Video,
    PacketClass::Padding,
];

impl<T> Pacer<T> {
    /// A pacer at `rate_bps`, empty.
    pub fn new(rate_bps: u64, config: PacerConfig) -> Self {
        let capacity = config.initial_capacity;
        Self {
            queues: [
                VecDeque::with_capacity(capacity),
                VecDeque::with_capacity(capacity),
                VecDeque::with_capacity(capacity),
                VecDeque::with_capacity(capacity),
            ],
            dropped: VecDeque::with_capacity(capacity),
            rate_bps,
            budget: 0.0,
            padding_budget: 0.0,
            padding: false,
            updated: None,
            queued_bytes: 0,
            sent_bytes: 0,
            dropped_packets: 0,
            config,
        }
    }

    fn media_rate(&self) -> f64 {
        self.rate_bps as f64 * self.config.pacing_factor.max(1.0) / 8.0
    }

    fn burst(&self, bytes_per_second: f64) -> f64 {
        bytes_per_second * self.config.max_burst.as_secs_f64()
    }

    /// Brings the budgets up to `now`.
    fn refill(&mut self, now: Instant) {
        let elapsed = self.updated.map_or(0.0, |last| {
            now.saturating_duration_since(last).as_secs_f64()
        });
        if self.updated.is_none_or(|last| now > last) {
            self.updated = Some(now);
        }
        let media = self.media_rate();
        let plain = self.rate_bps as f64 / 8.0;
        self.budget = (self.budget + elapsed * media).min(self.burst(media));
        // Debt is remembered for up to a second's worth: media sent above
        // the rate (the pacing factor) is not followed by padding.
        let cap = self.burst(plain).max(self.padding_chunk() as f64);
        self.padding_budget = (self.padding_budget + elapsed * plain).clamp(-plain, cap);
    }

    /// Sets the rate (bits/s): the estimate, or a probe's target.
    pub fn set_rate(&mut self, now: Instant, rate_bps: u64) {
        self.refill(now);
        self.rate_bps = rate_bps;
        self.budget = self.budget.min(self.burst(self.media_rate()));
    }

    /// The rate (bits/s).
    pub fn rate_bps(&self) -> u64 {
        self.rate_bps
    }

    /// Enables or disables padding (see [`Pacer::padding_due`]).
    pub fn set_padding(&mut self, now: Instant, enabled: bool) {
        self.refill(now);
        if enabled && !self.padding {
            // Start from an empty bucket: no burst of padding, no old debt.
            self.padding_budget = 0.0;
        }
        self.padding = enabled;
    }

    /// Whether a packet of `class` may leave at once instead of being
    /// queued: audio always may; anything else when nothing waits and the
    /// budget is not negative. Charges nothing: the caller reports what
    /// leaves with [`Pacer::charge`]. The fast path of a connection that
    /// is not congested: no queueing, a few arithmetic operations.
    pub fn admits(&mut self, now: Instant, class: PacketClass) -> bool {
        if class == PacketClass::Audio {
            return true;
        }
        self.refill(now);
        self.budget >= 0.0 && self.queues.iter().all(VecDeque::is_empty)
    }

    /// `size` bytes left outside the queue (admitted, or padding): charge
    /// them to the budgets.
    pub fn charge(&mut self, now: Instant, size: usize) {
        self.refill(now);
        self.budget -= size as f64;
        self.padding_budget -= size as f64;
        self.sent_bytes += size as u64;
    }

    /// Bounds the non-audio bytes that may wait (packets already queued
    /// stay; the bound applies to the next push).
    pub fn set_max_queue_bytes(&mut self, bytes: usize) {
        self.config.max_queue_bytes = bytes;
    }

    /// Queues `item`, `size` bytes on the wire, of `class`. Returns how
    /// many packets were dropped to make room (see the module doc); take
    /// them with [`Pacer::pop_dropped`].
    pub fn push(&mut self, now: Instant, class: PacketClass, size: usize, item: T) -> usize {
        self.refill(now);
        let mut dropped = 0;
        if class != PacketClass::Audio {
            if size > self.config.max_queue_bytes {
                self.dropped.push_back((class, item));
                self.dropped_packets += 1;
                return 1;
            }
            while self.queued_bytes + size > self.config.max_queue_bytes {
                let Some(victim) = self.victim(class) else {
                    self.dropped.push_back((class, item));
                    self.dropped_packets += 1;
                    return dropped + 1;
                };
                if let Some(old) = self.queues[index(victim)].pop_front() {
                    self.queued_bytes -= old.size;
                    self.dropped.push_back((victim, old.item));
                    self.dropped_packets += 1;
                    dropped += 1;
                }
            }
            self.queued_bytes += size;
        }
        self.queues[index(class)].push_back(Queued {
            enqueued: now,
            size,
            item,
        });
        dropped
    }

    /// The class to evict from to make room for a packet of `class`.
    fn victim(&self, class: PacketClass) -> Option<PacketClass> {
        let candidates: &[PacketClass] = match class {
            PacketClass::Audio | PacketClass::Padding => &[],
            PacketClass::Video => &[PacketClass::Padding, PacketClass::Video],
            PacketClass::Retransmission => &[
                PacketClass::Padding,
                PacketClass::Video,
                PacketClass::Retransmission,
            ],
        };
        candidates
            .iter()
            .copied()
            .find(|&c| !self.queues[index(c)].is_empty())
    }

    /// The next packet allowed to leave at `now`, if any. Audio always is.
    pub fn pop(&mut self, now: Instant) -> Option<T> {
        self.refill(now);
        let class = if !self.queues[0].is_empty() {
            PacketClass::Audio
        } else if self.budget >= 0.0 {
            CLASSES[1..]
                .iter()
                .copied()
                .find(|&c| !self.queues[index(c)].is_empty())?
        } else {
            return None;
        };
        let queued = self.queues[index(class)].pop_front()?;
        if class != PacketClass::Audio {
            self.queued_bytes -= queued.size;
        }
        self.budget -= queued.size as f64;
        self.padding_budget -= queued.size as f64;
        self.sent_bytes += queued.size as u64;
        Some(queued.item)
    }

    /// A packet dropped to make room, with its class.
    pub fn pop_dropped(&mut self) -> Option<(PacketClass, T)> {
        self.dropped.pop_front()
    }

    /// Bytes of padding to generate now (0 unless padding is enabled,
    /// nothing else waits, and at least [`PacerConfig::padding_chunk`] are
    /// due).
    pub fn padding_due(&mut self, now: Instant) -> usize {
        self.refill(now);
        if !self.padding || self.queued_bytes > 0 || self.budget < 0.0 {
            return 0;
        }
        let due = self.padding_budget.max(0.0) as usize;
        if due < self.padding_chunk() {
            0
        } else {
            due
        }
    }

    fn padding_chunk(&self) -> usize {
        self.config.padding_chunk.max(MIN_PADDING_BYTES)
    }

    /// When [`Pacer::pop`] (or [`Pacer::padding_due`]) next has something.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let updated = self.updated?;
        if !self.queues[0].is_empty() {
            return Some(updated);
        }
        let media = self.media_rate();
        if self.queued_bytes > 0 {
            if self.budget >= 0.0 {
                return Some(updated);
            }
            if media <= 0.0 {
                return None;
            }
            return Some(updated + wait(-self.budget / media));
        }
        if self.padding && self.rate_bps > 0 {
            let plain = self.rate_bps as f64 / 8.0;
            let wait_padding = (self.padding_chunk() as f64 - self.padding_budget).max(0.0) / plain;
            let wait_media = if media > 0.0 {
                (-self.budget).max(0.0) / media
            } else {
                0.0
            };
            return Some(updated + wait(wait_padding.max(wait_media)));
        }
        None
    }

    /// How long the oldest waiting non-audio packet has waited.
    pub fn queue_delay(&self, now: Instant) -> Duration {
        CLASSES[1..]
            .iter()
            .filter_map(|&c| self.queues[index(c)].front())
            .map(|q| now.saturating_duration_since(q.enqueued))
            .max()
            .unwrap_or_default()
    }

    /// How long the queued non-audio bytes take to leave at the current
    /// rate.
    pub fn expected_queue_time(&self) -> Duration {
        let media = self.media_rate();
        if media <= 0.0 {
            return if self.queued_bytes > 0 {
                Duration::MAX
            } else {
                Duration::ZERO
            };
        }
        Duration::from_secs_f64(self.queued_bytes as f64 / media)
    }

    /// Non-audio bytes waiting.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Packets waiting, audio included.
    pub fn queued_packets(&self) -> usize {
        self.queues.iter().map(VecDeque::len).sum()
    }

    /// Bytes that have left.
    pub fn sent_bytes(&self) -> u64 {
        self.sent_bytes
    }

    /// Packets dropped by the queue bound so far.
    pub fn dropped_packets(&self) -> u64 {
        self.dropped_packets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> PacerConfig {
        PacerConfig {
            max_queue_bytes: 60_000,
            ..PacerConfig::default()
        }
    }

    /// Drives `pacer` in 100 us steps for `duration`, popping everything
    /// allowed; returns (time, size, class) of each release.
    fn drain(
        pacer: &mut Pacer<(PacketClass, usize)>,
        start: Instant,
        duration: Duration,
    ) -> Vec<(Instant, usize, PacketClass)> {
        let mut out = Vec::new();
        let mut now = start;
        while now < start + duration {
            while let Some((class, size)) = pacer.pop(now) {
                out.push((now, size, class));
            }
            now += Duration::from_micros(100);
        }
        out
    }

    #[test]
    fn the_fast_path_admits_until_the_budget_runs_out_and_never_overtakes_the_queue() {
        let start = Instant::now();
        let mut pacer: Pacer<(PacketClass, usize)> = Pacer::new(1_000_000, config());
        // Idle: a packet may leave at once; once it is charged the budget
        // is negative and the next waits.
        assert!(pacer.admits(start, PacketClass::Video));
        pacer.charge(start, 1200);
        assert!(!pacer.admits(start, PacketClass::Video));
        // Audio is never held.
        assert!(pacer.admits(start, PacketClass::Audio));
        // 1200 bytes at 1 Mb/s x 1.25 take 7.68 ms to pay back.
        assert!(!pacer.admits(start + Duration::from_millis(7), PacketClass::Video));
        let later = start + Duration::from_millis(8);
        assert!(pacer.admits(later, PacketClass::Video));
        // Something queued: nothing overtakes it, whatever the budget.
        pacer.push(later, PacketClass::Video, 100, (PacketClass::Video, 100));
        assert!(!pacer.admits(later + Duration::from_secs(1), PacketClass::Retransmission));
        assert_eq!(
            pacer.pop(later + Duration::from_secs(1)),
            Some((PacketClass::Video, 100))
        );
        assert!(pacer.admits(later + Duration::from_secs(1), PacketClass::Video));
        assert_eq!(pacer.sent_bytes(), 1300);
    }

    #[test]
    fn packets_leave_no_faster_than_the_rate() {
        let start = Instant::now();
        let rate = 1_000_000;
        let mut pacer = Pacer::new(rate, config());
        for _ in 0..40 {
            pacer.push(start, PacketClass::Video, 1200, (PacketClass::Video, 1200));
        }
        let out = drain(&mut pacer, start, Duration::from_secs(1));
        assert_eq!(out.len(), 40);
        // Any window W: at most rate x factor x W + burst + one packet.
        let bytes_per_s = rate as f64 * config().pacing_factor / 8.0;
        let allowance = bytes_per_s * config().max_burst.as_secs_f64() + 1200.0;
        for (i, &(from, _, _)) in out.iter().enumerate() {
            for window_ms in [5u64, 20, 100, 300] {
                let window = Duration::from_millis(window_ms);
                let bytes: usize = out[i..]
                    .iter()
                    .take_while(|(t, _, _)| *t < from + window)
                    .map(|(_, s, _)| s)
                    .sum();
                let limit = bytes_per_s * window.as_secs_f64() + allowance;
                assert!(bytes as f64 <= limit, "{bytes} in {window_ms} ms > {limit}");
            }
        }
        // And the queue drained at about the paced rate: 48 kB at 156 kB/s.
        let last = out.last().map(|(t, _, _)| *t - start).unwrap_or_default();
        assert!(last > Duration::from_millis(290) && last < Duration::from_millis(320));
    }

    #[test]
    fn audio_is_never_held_behind_video() {
        let start = Instant::now();
        let mut pacer = Pacer::new(500_000, config());
        for _ in 0..30 {
            pacer.push(start, PacketClass::Video, 1200, (PacketClass::Video, 1200));
        }
        // Spend the budget.
        while pacer.pop(start).is_some() {}
        assert!(pacer.queued_bytes() > 0);
        let at = start + Duration::from_millis(1);
        pacer.push(at, PacketClass::Audio, 100, (PacketClass::Audio, 100));
        assert_eq!(pacer.poll_timeout(), Some(at));
        assert_eq!(pacer.pop(at), Some((PacketClass::Audio, 100)));
        // Video still waits for its budget.
        assert_eq!(pacer.pop(at), None);
    }

    #[test]
    fn the_queue_bound_holds_and_only_the_stated_packets_drop() {
        let start = Instant::now();
        let mut pacer = Pacer::new(200_000, config());
        let (mut pushed, mut dropped) = (0usize, Vec::new());
        let mut now = start;
        let mut released = Vec::new();
        for i in 0..2000usize {
            now += Duration::from_millis(1);
            // Retransmissions (20 kB/s) fit the rate (25 kB/s); video does
            // not.
            let class = match (i % 10, i % 50) {
                (0, _) => PacketClass::Audio,
                (_, 1) => PacketClass::Retransmission,
                (2, _) => PacketClass::Padding,
                _ => PacketClass::Video,
            };
            pacer.push(now, class, 1000, (class, i));
            pushed += 1;
            while let Some(item) = pacer.pop_dropped() {
                dropped.push(item);
            }
            assert!(pacer.queued_bytes() <= config().max_queue_bytes);
            while let Some(item) = pacer.pop(now) {
                released.push(item);
            }
        }
        // Nothing lost: every packet was released, dropped, or still waits.
        assert_eq!(
            pushed,
            released.len() + dropped.len() + pacer.queued_packets()
        );
        assert_eq!(pacer.dropped_packets() as usize, dropped.len());
        assert!(!dropped.is_empty(), "200 kb/s cannot carry 8 Mb/s");
        assert!(dropped
            .iter()
            .all(|(class, _)| *class != PacketClass::Audio));
        assert_eq!(
            released
                .iter()
                .filter(|(c, _)| *c == PacketClass::Audio)
                .count(),
            200
        );
        // Video drops take the oldest video: what is still queued is newer
        // than any dropped video packet.
        let newest_dropped_video = dropped
            .iter()
            .filter(|(c, _)| *c == PacketClass::Video)
            .map(|(_, (_, i))| *i)
            .max()
            .unwrap_or(0);
        assert!(pacer.queues[index(PacketClass::Video)]
            .iter()
            .all(|q| q.item.1 > newest_dropped_video));
        // Retransmissions were not evicted: they fit, and video or padding
        // never evicts them.
        assert!(dropped
            .iter()
            .all(|(c, _)| *c != PacketClass::Retransmission));
    }

    #[test]
    fn padding_only_when_asked_and_at_the_rate() {
        let start = Instant::now();
        let mut pacer: Pacer<usize> = Pacer::new(1_000_000, config());
        assert_eq!(pacer.padding_due(start + Duration::from_secs(1)), 0);
        pacer.set_padding(start + Duration::from_secs(1), true);
        let mut now = start + Duration::from_secs(1);
        let mut padded = 0;
        for _ in 0..1000 {
            now += Duration::from_micros(100);
            let due = pacer.padding_due(now);
            if due > 0 {
                pacer.push(now, PacketClass::Padding, due, due);
            }
            while let Some(size) = pacer.pop(now) {
                padded += size;
            }
        }
        // 100 ms at 1 Mb/s: 12.5 kB, within a padding chunk.
        assert!((12_000..=12_800).contains(&padded), "{padded}");
        pacer.set_padding(now, false);
        assert_eq!(pacer.padding_due(now + Duration::from_secs(1)), 0);
    }

    #[test]
    fn an_oversized_packet_is_refused_alone() {
        let start = Instant::now();
        let mut pacer = Pacer::new(1_000_000, config());
        pacer.push(start, PacketClass::Video, 1000, 1);
        assert_eq!(pacer.push(start, PacketClass::Video, 100_000, 2), 1);
        assert_eq!(pacer.pop_dropped(), Some((PacketClass::Video, 2)));
        assert_eq!(pacer.queued_packets(), 1);
    }
}
