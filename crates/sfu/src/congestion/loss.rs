//! The loss-based bound: back off when a large share of packets vanishes.
//!
//! Classic GoogCC (libwebrtc's `SendSideBandwidthEstimation`) holds its
//! whole estimate while loss is between 2 % and 10 % and only climbs below
//! 2 %: on a link with 5 % random loss and no congestion it never climbs
//! from its start rate at all. Here loss is a *bound* on the delay-based
//! rate that exists only once loss has been high:
//!
//! - loss above 10 % over a window: the bound drops to (1 - loss / 2) x the
//!   smaller of itself and the delivered rate, at most once per
//!   300 ms + round trip. While the sender is app-limited (it sent less
//!   than half the bound: its videos paused, say) what was delivered is no
//!   measure of the path, and the bound drops from itself: else audio
//!   alone, delivered after a pause, dragged it far below the link;
//! - between 2 % and 10 %: the bound (if any) holds;
//! - below 2 %: the bound climbs 8 % a second and goes away once it is
//!   above the delay-based rate.
//!
//! So random loss below 10 % never lowers the estimate (the delay-based
//! half governs: a queue that overflows also grows first, which the delay
//! detector sees), and loss above it does, whatever the delay says (a
//! policer, a shallow buffer).
//!
//! Loss is counted over windows of at least [`WINDOW_PACKETS`] packets (or
//! [`WINDOW_MAX_US`] with at least [`WINDOW_MIN_PACKETS`]): with 5 %
//! random loss, a 200-packet window reads above 10 % with a probability
//! near 2 x 10^-4 (3.6 standard deviations), so random loss does not
//! trigger backoffs by chance as short windows would.

use crate::congestion::aimd::APP_LIMITED_SHARE;

/// Loss above which the bound drops.
const HIGH: f64 = 0.10;
/// Loss below which the bound climbs.
const LOW: f64 = 0.02;
/// A window closes after this many fed-back packets...
pub(crate) const WINDOW_PACKETS: u32 = 200;
/// ... or after this long, if it holds at least `WINDOW_MIN_PACKETS`.
pub(crate) const WINDOW_MAX_US: u64 = 2_000_000;
pub(crate) const WINDOW_MIN_PACKETS: u32 = 20;
/// Minimum spacing of decreases beyond the round trip.
const DECREASE_SPACING_US: u64 = 300_000;
/// Increase of the bound per second under low loss.
const INCREASE_PER_SECOND: f64 = 1.08;

/// The rates a loss update weighs (bits/s).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rates {
    /// What the receiver gets, once measured.
    pub delivered: Option<f64>,
    /// What was sent, once measured.
    pub sent: Option<f64>,
    /// The delay-based half of the estimate.
    pub delay_based: f64,
}

/// The loss-based bound and the loss fraction behind it.
#[derive(Debug, Default)]
pub(crate) struct LossControl {
    bound: Option<f64>,
    window_start_us: Option<u64>,
    lost: u32,
    total: u32,
    fraction: f64,
    last_decrease_us: Option<u64>,
    last_update_us: Option<u64>,
}

impl LossControl {
    /// The bound (bits/s), if loss has been high.
    pub fn bound(&self) -> Option<f64> {
        self.bound
    }

    /// Loss fraction of the last complete window.
    pub fn fraction(&self) -> f64 {
        self.fraction
    }

    /// Raises the bound to at least `bps` (a probe delivered it).
    pub fn raise_to(&mut self, bps: f64) {
        if let Some(bound) = self.bound.as_mut() {
            *bound = bound.max(bps);
        }
    }

    /// Feedback said `lost` of `lost + received` packets vanished. Updates
    /// the bound when a window closes, from `rates`.
    pub fn update(&mut self, now_us: u64, lost: u32, received: u32, rates: Rates, rtt_us: u64) {
        let Rates {
            delivered,
            sent,
            delay_based,
        } = rates;
        let start = *self.window_start_us.get_or_insert(now_us);
        self.lost = self.lost.saturating_add(lost);
        self.total = self.total.saturating_add(lost.saturating_add(received));
        let long = now_us.saturating_sub(start) >= WINDOW_MAX_US;
        if self.total < WINDOW_PACKETS && !(long && self.total >= WINDOW_MIN_PACKETS) {
            return;
        }
        self.fraction = f64::from(self.lost) / f64::from(self.total.max(1));
        self.lost = 0;
        self.total = 0;
        self.window_start_us = Some(now_us);
        let elapsed_s = self
            .last_update_us
            .map_or(0.0, |last| now_us.saturating_sub(last) as f64 / 1e6)
            .min(1.0);
        self.last_update_us = Some(now_us);

        if self.fraction > HIGH {
            let spacing = DECREASE_SPACING_US + rtt_us;
            if self
                .last_decrease_us
                .is_some_and(|last| now_us.saturating_sub(last) < spacing)
            {
                return;
            }
            let base = self.bound.unwrap_or(delay_based);
            let app_limited = sent.is_some_and(|sent| sent < APP_LIMITED_SHARE * base);
            let from = match delivered {
                Some(d) if !app_limited => base.min(d),
                _ => base,
            };
            self.bound = Some(from * (1.0 - 0.5 * self.fraction));
            self.last_decrease_us = Some(now_us);
        } else if self.fraction < LOW {
            if let Some(bound) = self.bound {
                let next = bound * INCREASE_PER_SECOND.powf(elapsed_s) + 1000.0;
                self.bound = (next < delay_based).then_some(next);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates(delivered: Option<f64>, sent: Option<f64>, delay_based: f64) -> Rates {
        Rates {
            delivered,
            sent,
            delay_based,
        }
    }

    #[test]
    fn moderate_loss_sets_no_bound() {
        let mut control = LossControl::default();
        for i in 0..100u64 {
            control.update(i * 100_000, 5, 95, rates(Some(1e6), Some(1e6), 1e6), 50_000);
        }
        assert_eq!(control.bound(), None);
        assert!((control.fraction() - 0.05).abs() < 1e-9);
    }

    #[test]
    fn heavy_loss_bounds_then_low_loss_releases() {
        let mut control = LossControl::default();
        let mut now = 0;
        for _ in 0..10 {
            now += 100_000;
            control.update(now, 30, 70, rates(Some(1e6), Some(1.4e6), 2e6), 50_000);
        }
        let bound = control.bound().expect("bounded");
        assert!(bound < 1e6 * 0.9, "{bound}");
        for _ in 0..400 {
            now += 100_000;
            control.update(now, 0, 100, rates(Some(1e6), Some(1e6), 2e6), 50_000);
        }
        assert_eq!(control.bound(), None);
    }

    #[test]
    fn an_app_limited_sender_backs_off_from_the_bound_not_from_what_it_sent() {
        let mut control = LossControl::default();
        // Heavy loss while sending at the link: bound from the delivered
        // rate.
        control.update(0, 60, 140, rates(Some(250e3), Some(800e3), 800e3), 50_000);
        let bound = control.bound().expect("bounded");
        assert!((bound - 250e3 * 0.85).abs() < 1.0, "{bound}");
        // The videos paused: audio alone goes out (60 kb/s) while the loss
        // of the queue left behind is still fed back. The bound falls from
        // itself, not to a fraction of the audio.
        control.update(
            400_000,
            40,
            160,
            rates(Some(55e3), Some(60e3), 800e3),
            50_000,
        );
        let next = control.bound().expect("bounded");
        assert!((next - bound * 0.9).abs() < 1.0, "{next}");
    }

    #[test]
    fn small_windows_wait() {
        let mut control = LossControl::default();
        control.update(0, 10, 0, rates(None, None, 1e6), 0);
        assert_eq!(control.fraction(), 0.0);
        assert_eq!(control.bound(), None);
    }
}
