//! Log throttling: let a repeated log line through at most once per period
//! and count what was held back, so a flood of one event (thousands of slow
//! clients at once, a stream of bad packets) costs one line per period.
//!
//! ```
//! use huddle_proto::throttle::LogThrottle;
//! static SLOW_CLIENT: LogThrottle = LogThrottle::per_second();
//! if let Some(suppressed) = SLOW_CLIENT.check() {
//!     // log here, e.g. tracing::warn!(suppressed, "outbound queue full");
//!     let _ = suppressed;
//! }
//! ```
//!
//! It lives here, in the crate every huddle crate depends on, so that the
//! signaling service and the SFU share one implementation; it needs no
//! logging crate itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Milliseconds since the first use of any throttle in the process.
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Lets one event through per period and counts the others. Lock-free and
/// usable as a `static`.
#[derive(Debug)]
pub struct LogThrottle {
    period_ms: u64,
    /// When the next event may be logged (ms since the process epoch), plus
    /// one so that 0 means "never logged".
    next_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl LogThrottle {
    /// At most one event per `period` (rounded down to milliseconds).
    pub const fn new(period: Duration) -> Self {
        Self {
            period_ms: period.as_millis() as u64,
            next_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// At most one event per second.
    pub const fn per_second() -> Self {
        Self::new(Duration::from_secs(1))
    }

    /// Whether to log this event: `Some(n)` when it may be logged, `n` being
    /// how many events were held back since the last one logged; `None` when
    /// it is held back (and counted).
    pub fn check(&self) -> Option<u64> {
        self.check_at(now_ms())
    }

    fn check_at(&self, now_ms: u64) -> Option<u64> {
        let next = self.next_ms.load(Ordering::Relaxed);
        if next != 0 && now_ms + 1 < next {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let due = now_ms + 1 + self.period_ms;
        match self
            .next_ms
            .compare_exchange(next, due, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => Some(self.suppressed.swap(0, Ordering::Relaxed)),
            Err(_) => {
                // Another thread logged this very moment.
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_per_period_with_the_count_of_the_rest() {
        let t = LogThrottle::per_second();
        assert_eq!(t.check_at(10), Some(0));
        assert!((0..500).all(|i| t.check_at(10 + i).is_none()));
        assert_eq!(t.check_at(1_009), None);
        assert_eq!(t.check_at(1_010), Some(501));
        assert_eq!(t.check_at(5_000), Some(0));
    }

    #[test]
    fn works_as_a_static() {
        static T: LogThrottle = LogThrottle::new(Duration::from_secs(3600));
        assert!(T.check().is_some());
        assert!(T.check().is_none());
    }
}
