//! Rate-limited logging: at most one line per key per interval, with the
//! number of lines held back since the last one.
//!
//! Sans-IO like the rest of the SFU core: the caller passes `now`. Keys are
//! the caller's (a connection, a reason); the table is pruned when it grows
//! past [`LogLimit::MAX_KEYS`], so keys an attacker can choose never grow it
//! without bound.
//!
//! ```
//! use huddle_sfu::log_limit::LogLimit;
//! use std::time::{Duration, Instant};
//!
//! let mut limit = LogLimit::new(Duration::from_secs(1));
//! let t0 = Instant::now();
//! assert_eq!(limit.allow(t0, "bad check"), Some(0)); // log it
//! assert_eq!(limit.allow(t0, "bad check"), None); // held back
//! assert_eq!(limit.allow(t0, "garbage"), Some(0)); // another key
//! // A second later: log again, saying one line was held back.
//! assert_eq!(limit.allow(t0 + Duration::from_secs(1), "bad check"), Some(1));
//! ```

/// Log filter directives for the `rtc` crates, to add to a process's
/// filter (`huddle-server`'s default is `info,` and these). Each of those
/// targets logs at WARN once per datagram or connection, for what the SFU
/// handles itself:
///
/// - `rtc::peer_connection::handler`: "…handle_read got error" for every
///   datagram its pipeline refuses on a publisher connection (an SRTP
///   packet that fails authentication, a replayed one, a bad DTLS record):
///   anyone who learns a client's address and port can make it log.
/// - `rtc_dtls::config`: "conn.remote_addr is empty" for every publisher
///   connection (rtc 0.21 builds its DTLS client without a server name and
///   has no setting for one; the SFU's own DTLS sets one).
pub const RTC_LOG_FILTER: &str = "rtc::peer_connection::handler=error,rtc_dtls::config=error";

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// One key's state: when its last line went out and how many were held
/// back since.
#[derive(Debug, Clone, Copy)]
struct Entry {
    last: Instant,
    suppressed: u64,
}

/// Decides which log lines go out. See the module docs.
#[derive(Debug)]
pub struct LogLimit<K> {
    interval: Duration,
    entries: HashMap<K, Entry>,
}

impl<K: Hash + Eq> LogLimit<K> {
    /// Keys kept before idle ones are forgotten.
    pub const MAX_KEYS: usize = 1024;

    /// At most one line per key per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            entries: HashMap::new(),
        }
    }

    /// Whether a line for `key` may go out at `now`: `Some(n)` when it may,
    /// `n` being how many lines of that key were held back since the last
    /// one (say so in the line); `None` when it is held back (and counted).
    pub fn allow(&mut self, now: Instant, key: K) -> Option<u64> {
        if let Some(e) = self.entries.get_mut(&key) {
            if now.saturating_duration_since(e.last) < self.interval {
                e.suppressed += 1;
                return None;
            }
            let held = e.suppressed;
            *e = Entry {
                last: now,
                suppressed: 0,
            };
            return Some(held);
        }
        if self.entries.len() >= Self::MAX_KEYS {
            self.prune(now);
        }
        self.entries.insert(
            key,
            Entry {
                last: now,
                suppressed: 0,
            },
        );
        Some(0)
    }

    /// Forget keys idle for an interval; if that is not enough (a flood of
    /// distinct keys), forget them all: a few held-back counts are lost,
    /// never a line that should go out.
    fn prune(&mut self, now: Instant) {
        let interval = self.interval;
        self.entries
            .retain(|_, e| now.saturating_duration_since(e.last) < interval);
        if self.entries.len() >= Self::MAX_KEYS {
            self.entries.clear();
        }
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_key_per_interval_with_the_count_held_back() {
        let mut l = LogLimit::new(Duration::from_secs(1));
        let t0 = Instant::now();
        let mut lines = Vec::new();
        // 10,000 events over 10 s (one per ms) of one key.
        for i in 0..10_000u64 {
            if let Some(held) = l.allow(t0 + Duration::from_millis(i), 7u32) {
                lines.push(held);
            }
        }
        assert_eq!(lines.len(), 10, "one line a second");
        assert_eq!(lines[0], 0);
        assert!(lines[1..].iter().all(|&h| h == 999), "{lines:?}");
        assert_eq!(
            lines.len() as u64 + lines.iter().sum::<u64>(),
            10_000 - 999,
            "every event is a line or counted (the last second's 999 wait for the next line)"
        );
    }

    #[test]
    fn keys_are_independent() {
        let mut l = LogLimit::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(l.allow(t0, "a"), Some(0));
        assert_eq!(l.allow(t0, "b"), Some(0));
        assert_eq!(l.allow(t0, "a"), None);
        assert_eq!(l.allow(t0 + Duration::from_millis(999), "a"), None);
        assert_eq!(l.allow(t0 + Duration::from_secs(1), "a"), Some(2));
        assert_eq!(l.allow(t0 + Duration::from_secs(1), "b"), Some(0));
    }

    #[test]
    fn distinct_keys_never_grow_the_table_without_bound() {
        let mut l = LogLimit::new(Duration::from_secs(1));
        let t0 = Instant::now();
        for k in 0..100_000u32 {
            assert_eq!(l.allow(t0, k), Some(0), "a new key always logs");
        }
        assert!(l.len() <= LogLimit::<u32>::MAX_KEYS);
    }
}
