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
}

impl Default for PacerConfig {
    fn default() -> Self {
        Self {
            pacing_factor: 1.25,
            max_burst: Duration::from_millis(5),
            max_queue_bytes: 256 * 1024,
            initial_capacity: 256,
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
        let cap = self.burst(plain).max(MIN_PADDING_BYTES as f64);
        self.padding_budget = (self.padding_budget + elapsed * plain).clamp(-cap, cap);
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
            // Start from an empty bucket: no burst of padding.
            self.padding_budget = self.padding_budget.min(0.0);
        }
        self.padding = enabled;
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
    /// nothing else waits, and at least [`MIN_PADDING_BYTES`] are due).
    pub fn padding_due(&mut self, now: Instant) -> usize {
        self.refill(now);
        if !self.padding || self.queued_bytes > 0 || self.budget < 0.0 {
            return 0;
        }
        let due = self.padding_budget.max(0.0) as usize;
        if due < MIN_PADDING_BYTES {
            0
        } else {
            due
        }
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
            return Some(updated + Duration::from_secs_f64(-self.budget / media));
        }
        if self.padding && self.rate_bps > 0 {
            let plain = self.rate_bps as f64 / 8.0;
            let wait_padding = (MIN_PADDING_BYTES as f64 - self.padding_budget).max(0.0) / plain;
            let wait_media = if media > 0.0 {
                (-self.budget).max(0.0) / media
            } else {
                0.0
            };
            return Some(updated + Duration::from_secs_f64(wait_padding.max(wait_media)));
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
