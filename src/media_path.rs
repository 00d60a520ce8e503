//! When the call restarts ICE on its media connections (RFC 8445 §9).
//!
//! Two things say the path to the SFU is gone: the local address that
//! routes to the server changed (a Wi-Fi/LTE handover, a new DHCP lease:
//! the old one may not even exist any more), or a connection went
//! `disconnected`/`failed`. The first is seen within one look (the driver
//! looks every [`LOOK_EVERY`]) and restarts at once; the second restarts
//! at once too, then again with backoff while the connections stay down.
//! Sans-IO: the driver in `call.rs` brings the time, the route and the
//! connection states, and does the restart.

use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How often the driver looks at the route and the connection states.
pub(crate) const LOOK_EVERY: Duration = Duration::from_millis(200);

/// The wait before a restart that did not bring the connections back is
/// tried again; it doubles each time, up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(2);
const MAX_RETRY: Duration = Duration::from_secs(16);

/// How the media connections are doing, taken together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Health {
    /// Every connection that exists is connected (or none exists).
    Up,
    /// At least one is `disconnected` or `failed`.
    Down,
    /// Neither: a connection is still being set up.
    Starting,
}

/// Why a restart starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// The local address toward the server changed.
    AddressChanged,
    /// A connection went `disconnected` or `failed`.
    ConnectionDown,
}

/// What one look decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Nothing to do.
    Wait,
    /// Restart ICE on both connections now.
    Restart(Cause),
    /// The connections are up again after a restart.
    Recovered,
}

/// The decision core. See the module docs.
#[derive(Debug)]
pub(crate) struct PathWatch {
    /// The local address toward the server, as of the last look that had
    /// a route.
    local: Option<IpAddr>,
    /// Since when a restart is in flight, and when to try again.
    restarting: Option<(Instant, Instant)>,
    /// The wait before the next retry.
    retry: Duration,
}

impl PathWatch {
    /// A watch for a call whose connections use `local` toward the server
    /// (`None`: not known yet, or not watched: a loopback server or an
    /// address the app chose).
    pub fn new(local: Option<IpAddr>) -> Self {
        Self {
            local,
            restarting: None,
            retry: FIRST_RETRY,
        }
    }

    /// Whether a restart is in flight (started, connections not up yet).
    pub fn restarting(&self) -> bool {
        self.restarting.is_some()
    }

    /// One look at `now`: the local address toward the server now
    /// (`None`: no route, or not watched) and the connections' health.
    pub fn look(&mut self, now: Instant, route: Option<IpAddr>, health: Health) -> Decision {
        let moved = match (self.local, route) {
            (Some(old), Some(new)) => old != new,
            _ => false,
        };
        if route.is_some() {
            self.local = route;
        }
        if moved {
            // A new address makes the old path useless whatever the
            // connections say yet: restart now, and count backoff afresh.
            self.retry = FIRST_RETRY;
            return self.start(now, Cause::AddressChanged);
        }
        match (health, self.restarting) {
            (Health::Up, Some(_)) => {
                self.restarting = None;
                self.retry = FIRST_RETRY;
                Decision::Recovered
            }
            (Health::Down, None) => self.start(now, Cause::ConnectionDown),
            (Health::Down | Health::Starting, Some((_, again))) if now >= again => {
                self.retry = (self.retry * 2).min(MAX_RETRY);
                self.start(now, Cause::ConnectionDown)
            }
            _ => Decision::Wait,
        }
    }

    fn start(&mut self, now: Instant, cause: Cause) -> Decision {
        let since = self.restarting.map_or(now, |(since, _)| since);
        self.restarting = Some((since, now + self.retry));
        Decision::Restart(cause)
    }

    /// When the restart in flight started, if one is.
    pub fn restarting_since(&self) -> Option<Instant> {
        self.restarting.map(|(since, _)| since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([198, 18, 0, last]))
    }

    #[test]
    fn nothing_happens_while_the_path_holds() {
        let t0 = Instant::now();
        let mut w = PathWatch::new(ip(2));
        for i in 0..100 {
            let now = t0 + LOOK_EVERY * i;
            assert_eq!(w.look(now, ip(2), Health::Up), Decision::Wait);
        }
        // Starting connections are not down, and a lost route alone is no
        // new address.
        assert_eq!(w.look(t0, ip(2), Health::Starting), Decision::Wait);
        assert_eq!(w.look(t0, None, Health::Up), Decision::Wait);
        assert!(!w.restarting());
    }

    #[test]
    fn a_new_address_restarts_at_once_even_while_connected() {
        let t0 = Instant::now();
        let mut w = PathWatch::new(ip(2));
        assert_eq!(
            w.look(t0, ip(3), Health::Up),
            Decision::Restart(Cause::AddressChanged)
        );
        assert_eq!(w.restarting_since(), Some(t0));
        // The driver looks again only once its restart offer was answered:
        // connected then is connected again.
        assert_eq!(
            w.look(t0 + LOOK_EVERY, ip(3), Health::Up),
            Decision::Recovered
        );
        assert!(!w.restarting());
    }

    #[test]
    fn an_address_gone_and_back_as_another_restarts_once_it_is_back() {
        let t0 = Instant::now();
        let mut w = PathWatch::new(ip(2));
        // The interface went away: no route, connections go down.
        assert_eq!(w.look(t0, None, Health::Up), Decision::Wait);
        assert_eq!(
            w.look(t0 + LOOK_EVERY, None, Health::Down),
            Decision::Restart(Cause::ConnectionDown)
        );
        // Another address comes up: restart again at once.
        assert_eq!(
            w.look(t0 + LOOK_EVERY * 2, ip(9), Health::Down),
            Decision::Restart(Cause::AddressChanged)
        );
        assert_eq!(w.restarting_since(), Some(t0 + LOOK_EVERY), "one outage");
    }

    #[test]
    fn a_connection_that_stays_down_is_restarted_with_backoff() {
        let t0 = Instant::now();
        let mut w = PathWatch::new(None);
        assert_eq!(
            w.look(t0, None, Health::Down),
            Decision::Restart(Cause::ConnectionDown)
        );
        let mut restarts = vec![];
        let mut now = t0;
        while now < t0 + Duration::from_secs(60) {
            now += LOOK_EVERY;
            if let Decision::Restart(_) = w.look(now, None, Health::Down) {
                restarts.push(now - t0);
            }
        }
        let secs: Vec<u64> = restarts.iter().map(|d| d.as_secs()).collect();
        // 2, then 4, 8, 16, 16... seconds apart.
        assert_eq!(secs, vec![2, 6, 14, 30, 46]);
        assert_eq!(w.look(now, None, Health::Up), Decision::Recovered);
        assert_eq!(
            w.look(now, None, Health::Down),
            Decision::Restart(Cause::ConnectionDown)
        );
    }
}
