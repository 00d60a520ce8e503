//! AIMD rate control driven by the delay detector, as libwebrtc's
//! `AimdRateControl` does it.
//!
//! On overuse the rate drops to 0.85 x what the receiver actually got (not
//! what was aimed for), at most once per round trip, and the rate at which
//! that happened feeds a *link capacity* estimate. While the path is
//! normal the rate climbs: multiplicatively (8 % a second) when no link
//! capacity is known or the path now delivers well above it, additively
//! (about one packet per response time) when near it, so a known ceiling
//! is approached rather than hammered. The rate never climbs above 1.5 x
//! the delivered rate + 10 kb/s: an estimate that was never exercised is
//! not evidence.
//!
//! An SFU is often *application-limited*, as libwebrtc's encoder rarely
//! is: a subscriber whose videos are paused gets only audio, far below its
//! estimate. Overuse then says little about the path's capacity (the
//! delivered rate is what was sent, not what the path could carry), and
//! 0.85 x delivered would drop the estimate to a fraction of the audio
//! rate plus padding, from which only probes climb back. So while the send
//! rate is under half the rate, overuse backs off from the rate itself
//! (0.85 x, each round trip that overuse is seen again), never below
//! 0.85 x delivered: a path that really filled still comes down within a
//! second or so, and the loss-based bound acts on heavy loss meanwhile.

use crate::congestion::delay::Usage;

/// Multiplicative increase per second.
const INCREASE_PER_SECOND: f64 = 1.08;
/// Backoff, as a fraction of the delivered rate.
const BETA: f64 = 0.85;
/// Increase cap relative to the delivered rate.
const THROUGHPUT_CAP_FACTOR: f64 = 1.5;
const THROUGHPUT_CAP_EXTRA_BPS: f64 = 10_000.0;
/// Added to the round trip for the additive increase's response time.
const RESPONSE_EXTRA_US: u64 = 100_000;
/// Additive increase never slower than this (bits/s per second).
const MIN_ADDITIVE_BPS_PER_S: f64 = 4_000.0;
/// Packet size the additive increase counts in (bytes).
const PACKET_BYTES: f64 = 1200.0;
/// Below this share of the rate, the send rate is application-limited.
pub(crate) const APP_LIMITED_SHARE: f64 = 0.5;

/// What the controller is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Hold,
    Increase,
    Decrease,
}

/// An estimate of the bottleneck's capacity from the rates at which
/// overuse was seen (libwebrtc's `LinkCapacityEstimator`), in kb/s.
#[derive(Debug, Default, Clone, Copy)]
struct LinkCapacity {
    estimate_kbps: Option<f64>,
    variance: f64,
}

impl LinkCapacity {
    fn on_overuse(&mut self, delivered_bps: f64) {
        let sample = delivered_bps / 1000.0;
        let alpha = 0.05;
        let estimate = match self.estimate_kbps {
            None => sample,
            Some(e) => (1.0 - alpha) * e + alpha * sample,
        };
        let error = estimate - sample;
        let norm = estimate.max(1.0);
        self.variance =
            ((1.0 - alpha) * self.variance + alpha * error * error / norm).clamp(0.4, 2.5);
        self.estimate_kbps = Some(estimate);
    }

    fn upper_bps(&self) -> Option<f64> {
        self.estimate_kbps
            .map(|e| (e + 3.0 * (self.variance * e).sqrt()) * 1000.0)
    }

    fn lower_bps(&self) -> Option<f64> {
        self.estimate_kbps
            .map(|e| (e - 3.0 * (self.variance * e).sqrt()).max(0.0) * 1000.0)
    }
}

/// The delay-based rate.
#[derive(Debug)]
pub(crate) struct RateControl {
    bps: f64,
    min_bps: f64,
    max_bps: f64,
    state: State,
    link: LinkCapacity,
    last_change_us: Option<u64>,
    last_decrease_us: Option<u64>,
}

impl RateControl {
    /// Starts at `initial`, held within `min..=max` (bits/s).
    pub fn new(initial: f64, min: f64, max: f64) -> Self {
        Self {
            bps: initial.clamp(min, max),
            min_bps: min,
            max_bps: max,
            state: State::Hold,
            link: LinkCapacity::default(),
            last_change_us: None,
            last_decrease_us: None,
        }
    }

    /// The current delay-based rate (bits/s).
    pub fn bps(&self) -> f64 {
        self.bps
    }

    /// The link capacity estimate (bits/s), once overuse has been seen.
    pub fn link_capacity_bps(&self) -> Option<f64> {
        self.link.estimate_kbps.map(|e| e * 1000.0)
    }

    /// Sets the rate outright (a probe measured the path); the link
    /// capacity estimate is forgotten when the new rate is above it.
    pub fn set(&mut self, bps: f64, now_us: u64) {
        self.bps = bps.clamp(self.min_bps, self.max_bps);
        if self.link.upper_bps().is_some_and(|upper| self.bps > upper) {
            self.link = LinkCapacity::default();
        }
        self.last_change_us = Some(now_us);
    }

    /// Scales the rate down (feedback lost), keeping it within bounds.
    pub fn scale(&mut self, factor: f64, now_us: u64) {
        self.bps = (self.bps * factor).clamp(self.min_bps, self.max_bps);
        self.last_change_us = Some(now_us);
    }

    /// One step: the detector says `usage`, the receiver gets `delivered`
    /// bits/s (if known) of the `sent` bits/s sent (if known), the round
    /// trip is `rtt_us`.
    pub fn update(
        &mut self,
        now_us: u64,
        usage: Usage,
        delivered: Option<f64>,
        sent: Option<f64>,
        rtt_us: u64,
    ) -> f64 {
        self.state = match (usage, self.state) {
            (Usage::Over, _) => State::Decrease,
            (Usage::Under, _) => State::Hold,
            (Usage::Normal, State::Hold) => State::Increase,
            (Usage::Normal, state) => state,
        };
        match self.state {
            State::Hold => {
                self.last_change_us = Some(now_us);
            }
            State::Increase => self.increase(now_us, delivered, rtt_us),
            State::Decrease => self.decrease(now_us, delivered, sent, rtt_us),
        }
        self.bps
    }

    fn increase(&mut self, now_us: u64, delivered: Option<f64>, rtt_us: u64) {
        let last = self.last_change_us.unwrap_or(now_us);
        let elapsed_s = (now_us.saturating_sub(last) as f64 / 1e6).min(1.0);
        self.last_change_us = Some(now_us);
        if let (Some(delivered), Some(upper)) = (delivered, self.link.upper_bps()) {
            if delivered > upper {
                // The path delivers more than the old ceiling: it moved.
                self.link = LinkCapacity::default();
            }
        }
        let cap = delivered.map(|d| THROUGHPUT_CAP_FACTOR * d + THROUGHPUT_CAP_EXTRA_BPS);
        if cap.is_some_and(|cap| self.bps >= cap) {
            return;
        }
        let step = if self.link.estimate_kbps.is_some() {
            let response_s = (rtt_us + RESPONSE_EXTRA_US) as f64 / 1e6;
            // libwebrtc counts the packets of a 30 fps frame at this rate.
            let frame_bytes = self.bps / 8.0 / 30.0;
            let packets = (frame_bytes / PACKET_BYTES).ceil().max(1.0);
            let packet_bits = frame_bytes / packets * 8.0;
            (packet_bits / response_s).max(MIN_ADDITIVE_BPS_PER_S) * elapsed_s
        } else {
            (self.bps * (INCREASE_PER_SECOND.powf(elapsed_s) - 1.0)).max(1000.0 * elapsed_s)
        };
        let mut next = self.bps + step;
        if let Some(cap) = cap {
            next = next.min(cap);
        }
        self.bps = next.clamp(self.min_bps, self.max_bps);
    }

    fn decrease(&mut self, now_us: u64, delivered: Option<f64>, sent: Option<f64>, rtt_us: u64) {
        let Some(delivered) = delivered else {
            // Nothing to back off from: hold rather than guess.
            self.state = State::Hold;
            return;
        };
        // At most one decrease per round trip (10..=200 ms), unless the
        // path delivers less than half the rate: the earlier decrease has
        // not shown in the feedback yet.
        // Sending little, delivering little says nothing of that.
        let app_limited = sent.is_some_and(|sent| sent < APP_LIMITED_SHARE * self.bps);
        let spacing = rtt_us.clamp(10_000, 200_000);
        let too_soon = self
            .last_decrease_us
            .is_some_and(|last| now_us.saturating_sub(last) < spacing);
        if too_soon && (app_limited || delivered >= self.bps / 2.0) {
            self.state = State::Hold;
            return;
        }
        let mut next = if app_limited {
            // What was sent is no measure of the path: back off from the
            // rate (see the module doc), and the link capacity keeps what
            // loaded moments taught it.
            BETA * self.bps.max(delivered)
        } else {
            BETA * delivered
        };
        if next > self.bps {
            // Delivered more than aimed for (a burst): use the capacity
            // estimate if below, never increase on overuse.
            if let Some(lower) = self.link.lower_bps() {
                next = (BETA * lower).min(self.bps);
            } else {
                next = self.bps;
            }
        }
        if !app_limited {
            if self.link.lower_bps().is_some_and(|lower| delivered < lower) {
                // Far below the old capacity: the path changed.
                self.link = LinkCapacity::default();
            }
            self.link.on_overuse(delivered);
        }
        tracing::debug!(
            from = self.bps as u64,
            to = next as u64,
            delivered = delivered as u64,
            sent = sent.map(|s| s as u64),
            app_limited,
            "delay-based backoff"
        );
        self.bps = next.clamp(self.min_bps, self.max_bps);
        self.state = State::Hold;
        self.last_decrease_us = Some(now_us);
        self.last_change_us = Some(now_us);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overuse_backs_off_from_the_delivered_rate() {
        let mut control = RateControl::new(2_000_000.0, 100_000.0, 10_000_000.0);
        let bps = control.update(0, Usage::Over, Some(1_000_000.0), Some(1_200_000.0), 50_000);
        assert!((bps - 850_000.0).abs() < 1.0, "{bps}");
        // Again right away: too soon, held.
        let again = control.update(
            10_000,
            Usage::Over,
            Some(900_000.0),
            Some(1_200_000.0),
            50_000,
        );
        assert_eq!(again, bps);
    }

    #[test]
    fn overuse_while_sending_little_backs_off_from_the_rate() {
        // 1 Mb/s estimate, only 100 kb/s of audio sent and delivered (the
        // videos are paused): overuse takes 15 % off the rate, not the
        // rate down to 85 kb/s.
        let mut control = RateControl::new(1_000_000.0, 30_000.0, 10_000_000.0);
        let bps = control.update(0, Usage::Over, Some(100_000.0), Some(100_000.0), 50_000);
        assert!((bps - 850_000.0).abs() < 1.0, "{bps}");
        assert_eq!(
            control.link_capacity_bps(),
            None,
            "nothing learnt of the link"
        );
        // Not again within the round trip.
        let again = control.update(
            20_000,
            Usage::Over,
            Some(100_000.0),
            Some(100_000.0),
            50_000,
        );
        assert_eq!(again, bps);
        // Overuse that goes on keeps taking 15 % a round trip.
        let mut now = 20_000;
        for _ in 0..10 {
            now += 60_000;
            control.update(now, Usage::Over, Some(100_000.0), Some(100_000.0), 50_000);
        }
        let bps = control.bps();
        assert!(bps < 200_000.0, "{bps}");
        // Sending at the rate, overuse backs off from what was delivered.
        let mut control = RateControl::new(1_000_000.0, 30_000.0, 10_000_000.0);
        let bps = control.update(0, Usage::Over, Some(600_000.0), Some(900_000.0), 50_000);
        assert!((bps - 510_000.0).abs() < 1.0, "{bps}");
    }

    #[test]
    fn normal_climbs_multiplicatively_without_a_known_ceiling() {
        let mut control = RateControl::new(1_000_000.0, 100_000.0, 10_000_000.0);
        let mut now = 0;
        control.update(now, Usage::Normal, Some(1_000_000.0), None, 50_000);
        for _ in 0..10 {
            now += 100_000;
            control.update(now, Usage::Normal, Some(1_000_000.0), None, 50_000);
        }
        let bps = control.bps();
        assert!((1_070_000.0..1_090_000.0).contains(&bps), "{bps}");
    }

    #[test]
    fn never_above_one_and_a_half_times_delivered() {
        let mut control = RateControl::new(1_000_000.0, 100_000.0, 10_000_000.0);
        let mut now = 0;
        for _ in 0..1000 {
            now += 100_000;
            control.update(now, Usage::Normal, Some(500_000.0), None, 50_000);
        }
        assert!(control.bps() <= 1_000_000.0 + 1.0);
    }

    #[test]
    fn stays_within_bounds() {
        let mut control = RateControl::new(50_000.0, 100_000.0, 1_000_000.0);
        assert_eq!(control.bps(), 100_000.0);
        control.update(0, Usage::Over, Some(10.0), None, 50_000);
        assert_eq!(control.bps(), 100_000.0);
        control.set(5_000_000.0, 1);
        assert_eq!(control.bps(), 1_000_000.0);
    }
}
