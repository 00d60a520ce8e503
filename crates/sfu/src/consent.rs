//! When the SFU checks that a client is still there (RFC 7675 consent
//! freshness, as the SFU runs it), sans-IO.
//!
//! Two clocks per connection:
//!
//! - Life: every datagram the connection takes from its client (an
//!   authenticated STUN message, DTLS, SRTP or SRTCP that decrypts) is life
//!   ([`Consent::heard`]). A connection quiet for `SfuConfig::consent_interval`
//!   gets a consent check from the SFU (a STUN binding request the client
//!   must answer), and another every interval (randomized by ±20 %, RFC 7675
//!   §5.1) while it stays quiet. When `SfuConfig::consent_misses` checks in
//!   a row went unanswered and the next one is due, the connection is down:
//!   media to it stops, and it is removed `SfuConfig::disconnect_timeout`
//!   later unless it speaks again.
//! - Consent: only ICE proves that the client still wants the SFU's
//!   datagrams ([`Consent::proved`]): an answer to one of the SFU's checks,
//!   or a valid check of its own. A connection with no proof for
//!   [`FRESH`] gets a check even while it sends (every [`FRESH`], ±20 %);
//!   with no proof for `SfuConfig::consent_timeout` (30 s, RFC 7675 §5.1)
//!   consent has expired and the connection is closed.
//!
//! So a receive-only client that sends little (libnice: an RTCP report
//! every ~5 s, a keepalive every 25 s, no checks of its own) answers the
//! checks and keeps its media; a publisher that sends media but no checks
//! answers one every 5 s; a client that vanished is down
//! `consent_interval * (consent_misses + 1)` (±20 %) after its last
//! datagram; one that keeps sending but answers nothing is closed after
//! `consent_timeout`. A browser, which checks every few seconds itself,
//! gets no checks from the SFU while it sends.

use std::time::{Duration, Instant};

/// How old the last proof of consent may grow before the SFU checks a
/// connection that is not quiet (RFC 7675 §5.1: every 5 s, randomized).
pub(crate) const FRESH: Duration = Duration::from_secs(5);

/// The consent timers of one connection. See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct Consent {
    /// Quiet time before a check, and between checks (randomized).
    interval: Duration,
    /// Unanswered checks in a row that make the connection down.
    misses: u32,
    /// No proof for this long: consent expired.
    timeout: Duration,
    /// When the client was last heard.
    last_rx: Instant,
    /// When the client last proved consent.
    last_proof: Instant,
    /// No check before this (the last one's interval).
    next_check: Instant,
    /// Checks sent since the client was last heard.
    unanswered: u32,
}

/// What a due consent timer asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// Send a check; `down` when `consent_misses` checks went unanswered
    /// (the connection is down).
    Check { down: bool },
    /// No proof for `consent_timeout`: close the connection.
    Expired,
}

impl Consent {
    /// Timers that heard the client at `now`: a check after `interval` of
    /// quiet, down after `misses` checks unanswered, expired after
    /// `timeout` without proof.
    pub fn new(now: Instant, interval: Duration, misses: u32, timeout: Duration) -> Self {
        Self {
            interval,
            misses,
            timeout,
            last_rx: now,
            last_proof: now,
            next_check: now,
            unanswered: 0,
        }
    }

    /// The client was heard at `now`.
    pub fn heard(&mut self, now: Instant) {
        self.last_rx = self.last_rx.max(now);
        self.unanswered = 0;
    }

    /// The client proved consent at `now` (it is heard too).
    pub fn proved(&mut self, now: Instant) {
        self.heard(now);
        self.last_proof = self.last_proof.max(now);
    }

    /// When [`Consent::poll`] has work next.
    pub fn deadline(&self) -> Instant {
        let check = (self.last_rx + self.interval).min(self.last_proof + FRESH);
        self.next_check
            .max(check)
            .min(self.last_proof + self.timeout)
    }

    /// Time passed: what is due now, if anything. `jitter` in [0, 1)
    /// randomizes the next interval to 0.8..1.2 of it.
    #[must_use = "what is due must be done"]
    pub fn poll(&mut self, now: Instant, jitter: f64) -> Option<Due> {
        if now >= self.last_proof + self.timeout {
            return Some(Due::Expired);
        }
        if now < self.deadline() {
            return None;
        }
        let quiet = now >= self.last_rx + self.interval;
        let down = self.unanswered >= self.misses;
        self.unanswered = self.unanswered.saturating_add(1);
        let every = if quiet { self.interval } else { FRESH };
        self.next_check = now + every.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0));
        Some(Due::Check { down })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);
    const TIMEOUT: Duration = Duration::from_secs(30);

    fn consent(t0: Instant) -> Consent {
        Consent::new(t0, SECOND, 3, TIMEOUT)
    }

    /// What a client gets from `t0` until `until`, polling every 10 ms:
    /// the checks, when it went down, when consent expired. `answer`: it
    /// answers each check 30 ms later; `sends`: it sends a datagram every
    /// 20 ms.
    fn run(
        c: &mut Consent,
        t0: Instant,
        until: Duration,
        answer: bool,
        sends: bool,
    ) -> (Vec<Duration>, Option<Duration>, Option<Duration>) {
        let (mut checks, mut down, mut expired) = (Vec::new(), None, None);
        let mut t = t0;
        while t < t0 + until {
            if sends && (t - t0).as_millis().is_multiple_of(20) {
                c.heard(t);
            }
            match c.poll(t, 0.5) {
                Some(Due::Check { down: d }) => {
                    checks.push(t - t0);
                    if d && down.is_none() {
                        down = Some(t - t0);
                    }
                    if answer {
                        c.proved(t + Duration::from_millis(30));
                    }
                }
                Some(Due::Expired) => {
                    expired = Some(t - t0);
                    break;
                }
                None => {}
            }
            t += Duration::from_millis(10);
        }
        (checks, down, expired)
    }

    #[test]
    fn a_sender_that_proves_consent_itself_gets_no_check() {
        let t0 = Instant::now();
        let mut c = consent(t0);
        for i in 0..3000 {
            let t = t0 + Duration::from_millis(20 * i);
            c.heard(t);
            if i % 125 == 0 {
                c.proved(t); // its own check every 2.5 s, as browsers send
            }
            assert_eq!(c.poll(t, 0.5), None);
        }
    }

    #[test]
    fn a_sender_that_never_checks_is_checked_every_5s() {
        let t0 = Instant::now();
        let mut c = consent(t0);
        let (checks, down, expired) = run(&mut c, t0, Duration::from_secs(60), true, true);
        assert_eq!((down, expired), (None, None));
        assert_eq!(checks.first(), Some(&FRESH));
        assert!((10..=12).contains(&checks.len()), "{checks:?}");
    }

    #[test]
    fn a_quiet_client_that_answers_is_checked_every_second_and_never_down() {
        let t0 = Instant::now();
        let mut c = consent(t0);
        let (checks, down, expired) = run(&mut c, t0, Duration::from_secs(60), true, false);
        assert_eq!((down, expired), (None, None));
        assert!((55..=61).contains(&checks.len()), "{} checks", checks.len());
        assert_eq!(checks[0], SECOND, "first check after a quiet second");
    }

    #[test]
    fn a_vanished_client_is_down_after_the_misses() {
        let t0 = Instant::now();
        let mut c = consent(t0);
        let (checks, down, _) = run(&mut c, t0, Duration::from_secs(10), false, false);
        // Checks at 1, 2, 3 s go unanswered; the one due at 4 s finds it down.
        assert_eq!(down, Some(Duration::from_secs(4)));
        assert_eq!(&checks[..4], &[SECOND, 2 * SECOND, 3 * SECOND, 4 * SECOND]);
    }

    #[test]
    fn a_sender_that_answers_nothing_loses_consent_after_30s() {
        let t0 = Instant::now();
        let mut c = consent(t0);
        let (_, down, expired) = run(&mut c, t0, Duration::from_secs(60), false, true);
        assert_eq!(down, None, "it is heard");
        assert_eq!(expired, Some(TIMEOUT));
    }

    #[test]
    fn the_interval_is_randomized_by_a_fifth() {
        let t0 = Instant::now();
        for (jitter, next) in [(0.0, 800), (0.999_999, 1200)] {
            let mut c = consent(t0);
            assert!(c.poll(t0 + SECOND, jitter).is_some());
            let d = c.deadline() - (t0 + SECOND);
            assert!(d.as_millis().abs_diff(next) <= 1, "{d:?}");
        }
    }
}
