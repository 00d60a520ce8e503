//! Rate limiting: a token bucket (per connection, per session), the same
//! keyed by client address or identity, and a once-per-window notice for
//! telling a client it is being limited.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Token bucket: `burst` tokens, refilled at `rate` per second.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64) -> Self {
        Self::new_at(rate, burst, Instant::now())
    }

    fn new_at(rate: f64, burst: f64, now: Instant) -> Self {
        let burst = burst.max(1.0);
        Self {
            rate: rate.max(0.0),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Take one token if there is one.
    pub fn try_take(&mut self) -> bool {
        self.try_take_at(Instant::now())
    }

    fn try_take_at(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Token buckets by key (a client address, an identity), created full on
/// first use. Buckets that have refilled completely are forgotten now and
/// then, so the map holds only keys active within the last `burst / rate`
/// seconds.
#[derive(Debug)]
pub struct KeyedLimiter<K> {
    rate: f64,
    burst: f64,
    buckets: HashMap<K, TokenBucket>,
    /// Sweep again when the map reaches this size.
    sweep_at: usize,
}

impl<K: Hash + Eq> KeyedLimiter<K> {
    /// Buckets of `burst` tokens refilled at `rate` per second.
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            buckets: HashMap::new(),
            sweep_at: 64,
        }
    }

    /// Take a token from `key`'s bucket if there is one.
    pub fn try_take(&mut self, key: K) -> bool {
        self.try_take_at(key, Instant::now())
    }

    fn try_take_at(&mut self, key: K, now: Instant) -> bool {
        if self.buckets.len() >= self.sweep_at {
            self.buckets.retain(|_, b| !b.is_full_at(now));
            self.sweep_at = (self.buckets.len() * 2).max(64);
        }
        let (rate, burst) = (self.rate, self.burst);
        self.buckets
            .entry(key)
            .or_insert_with(|| TokenBucket::new_at(rate, burst, now))
            .try_take_at(now)
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

impl TokenBucket {
    fn is_full_at(&self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + dt * self.rate >= self.burst
    }
}

/// Tells a client it is rate limited at most once per window: the first
/// refusal is reported at once, the ones that follow within the window are
/// only counted, and the next report carries the count.
#[derive(Debug, Clone)]
pub struct LimitNotice {
    window: Duration,
    last: Option<Instant>,
    held: u64,
}

impl LimitNotice {
    /// At most one report per `window`.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            last: None,
            held: 0,
        }
    }

    /// One more refusal. `Some(n)` when it is to be reported, `n` being the
    /// refusals since the last report (this one included); `None` to stay
    /// quiet.
    pub fn refused(&mut self) -> Option<u64> {
        self.refused_at(Instant::now())
    }

    fn refused_at(&mut self, now: Instant) -> Option<u64> {
        self.held += 1;
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < self.window)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_buckets_are_independent_and_forgotten_when_full() {
        let t0 = Instant::now();
        let mut l = KeyedLimiter::new(1.0, 2.0);
        assert!(l.try_take_at("a".to_owned(), t0) && l.try_take_at("a".to_owned(), t0));
        assert!(!l.try_take_at("a".to_owned(), t0));
        assert!(l.try_take_at("b".to_owned(), t0));
        for i in 0..100 {
            l.try_take_at(format!("k{i}"), t0);
        }
        // Much later every bucket is full again: the next sweep drops them.
        let later = t0 + Duration::from_secs(10);
        for i in 0..200 {
            l.try_take_at(format!("m{i}"), later);
        }
        assert!(!l.buckets.contains_key("a") && !l.buckets.contains_key("k0"));
        assert_eq!(l.len(), 200);
    }

    #[test]
    fn notice_once_per_window_with_count() {
        let t0 = Instant::now();
        let mut n = LimitNotice::new(Duration::from_secs(1));
        assert_eq!(n.refused_at(t0), Some(1));
        assert!((0..999).all(|_| n.refused_at(t0).is_none()));
        assert_eq!(n.refused_at(t0 + Duration::from_secs(1)), Some(1000));
    }

    #[test]
    fn burst_then_refill() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new_at(50.0, 100.0, t0);
        assert!((0..100).all(|_| b.try_take_at(t0)));
        assert!(!b.try_take_at(t0));
        // 100 ms later: 5 more.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!((0..10).filter(|_| b.try_take_at(t1)).count(), 5);
    }
}
