//! How many earlier frames a RED packet repeats, chosen from the loss the
//! receiver reports.

/// Most earlier frames a RED packet repeats (the redundancy distance).
pub const MAX_RED_DISTANCE: u8 = 3;

/// The rule that sets the redundancy distance from measured loss.
///
/// Fed with the fraction of packets lost per report (RTCP receiver reports'
/// `fraction lost`, every second or so):
///
/// - **Up at once**: the distance becomes the highest `k` whose
///   `raise_at[k - 1]` the reported loss reaches, if that is more than the
///   current one. Losses hurt now; more redundancy costs only bandwidth.
/// - **Down slowly, one step at a time**: from `k`, after
///   `lower_after_reports` reports in a row below `lower_below[k - 1]`, the
///   distance becomes `k - 1`. The gap between `raise_at` and `lower_below`
///   is the hysteresis: a loss rate sitting on a threshold does not make
///   the distance flap.
/// - Never below `min_distance` nor above `max_distance`.
///
/// The defaults (see `docs/audio-quality.md`, "RED", for the measurements
/// behind them): start at 1 and never go below it (as Chromium, which
/// always sends distance 1 when RED is negotiated: the first losses are
/// covered before any report has come); 2 from 4% loss, 3 from 12%; down
/// from 2 below 2%, from 3 below 7%, each after 3 reports in a row.
#[derive(Debug, Clone, PartialEq)]
pub struct RedDistancePolicy {
    /// Reported loss (0..=1) at which distance k + 1 is taken at once
    /// (index k = 0, 1, 2 for distances 1, 2, 3).
    pub raise_at: [f64; 3],
    /// Reported loss (0..=1) below which distance k + 1 counts down towards
    /// k (index k as in `raise_at`; each should be below its `raise_at`).
    pub lower_below: [f64; 3],
    /// Reports in a row below `lower_below` before stepping down one.
    pub lower_after_reports: u32,
    /// Distance before any report, and the lowest the rule goes.
    pub min_distance: u8,
    /// Highest distance the rule goes (at most [`MAX_RED_DISTANCE`]).
    pub max_distance: u8,
}

impl Default for RedDistancePolicy {
    fn default() -> Self {
        RedDistancePolicy {
            raise_at: [0.0, 0.04, 0.12],
            lower_below: [0.0, 0.02, 0.07],
            lower_after_reports: 3,
            min_distance: 1,
            max_distance: MAX_RED_DISTANCE,
        }
    }
}

impl RedDistancePolicy {
    /// The same rule held at one distance, whatever the reports say.
    pub fn fixed(distance: u8) -> Self {
        let d = distance.min(MAX_RED_DISTANCE);
        RedDistancePolicy {
            min_distance: d,
            max_distance: d,
            ..RedDistancePolicy::default()
        }
    }
}

/// The current redundancy distance under a [`RedDistancePolicy`].
#[derive(Debug, Clone, PartialEq)]
pub struct RedDistance {
    policy: RedDistancePolicy,
    distance: u8,
    calm_reports: u32,
}

impl RedDistance {
    /// Start at the policy's minimum distance.
    pub fn new(mut policy: RedDistancePolicy) -> Self {
        policy.max_distance = policy.max_distance.min(MAX_RED_DISTANCE);
        policy.min_distance = policy.min_distance.min(policy.max_distance);
        RedDistance {
            distance: policy.min_distance,
            policy,
            calm_reports: 0,
        }
    }

    /// The distance to use now.
    pub fn get(&self) -> u8 {
        self.distance
    }

    /// The policy in use.
    pub fn policy(&self) -> &RedDistancePolicy {
        &self.policy
    }

    /// A report of `loss` (fraction of packets lost, 0..=1; anything else is
    /// clamped, NaN ignored). Returns the distance to use from now on.
    pub fn on_report(&mut self, loss: f64) -> u8 {
        if loss.is_nan() {
            return self.distance;
        }
        let loss = loss.clamp(0.0, 1.0);
        let p = &self.policy;
        let wanted = (1..=p.max_distance)
            .filter(|k| loss >= p.raise_at[usize::from(k - 1)])
            .max()
            .unwrap_or(0)
            .max(p.min_distance);
        if wanted > self.distance {
            self.distance = wanted;
            self.calm_reports = 0;
        } else if self.distance > p.min_distance
            && loss < p.lower_below[usize::from(self.distance - 1)]
        {
            self.calm_reports += 1;
            if self.calm_reports >= p.lower_after_reports {
                self.distance -= 1;
                self.calm_reports = 0;
            }
        } else {
            self.calm_reports = 0;
        }
        self.distance
    }

    /// A report as RTCP carries it: `fraction_lost / 256` of the packets
    /// since the previous report (RFC 3550 §6.4.1).
    pub fn on_fraction_lost(&mut self, fraction_lost: u8) -> u8 {
        self.on_report(f64::from(fraction_lost) / 256.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_one_and_rises_at_once() {
        let mut d = RedDistance::new(RedDistancePolicy::default());
        assert_eq!(d.get(), 1);
        assert_eq!(d.on_report(0.0), 1, "never below the minimum");
        assert_eq!(d.on_report(0.05), 2);
        assert_eq!(d.on_report(0.30), 3);
        let mut d = RedDistance::new(RedDistancePolicy::default());
        assert_eq!(d.on_report(0.20), 3, "straight to the level of the loss");
    }

    #[test]
    fn lowers_one_step_after_calm_reports_in_a_row() {
        let mut d = RedDistance::new(RedDistancePolicy::default());
        d.on_report(0.5);
        // Between 7% and 12%: neither up nor down, and it resets the count.
        assert_eq!(d.on_report(0.01), 3);
        assert_eq!(d.on_report(0.01), 3);
        assert_eq!(d.on_report(0.09), 3);
        assert_eq!(d.on_report(0.01), 3);
        assert_eq!(d.on_report(0.01), 3);
        assert_eq!(d.on_report(0.01), 2, "third calm report in a row");
        assert_eq!(d.on_report(0.01), 2);
        assert_eq!(d.on_report(0.01), 2);
        assert_eq!(d.on_report(0.01), 1);
        assert_eq!(d.on_report(0.0), 1);
    }

    #[test]
    fn hysteresis_holds_a_loss_on_a_threshold() {
        let mut d = RedDistance::new(RedDistancePolicy::default());
        let mut seen = Vec::new();
        for i in 0..40 {
            // 3% to 5% around the 4% threshold.
            let loss = if i % 2 == 0 { 0.05 } else { 0.03 };
            seen.push(d.on_report(loss));
        }
        assert!(seen.iter().all(|&x| x == 2), "{seen:?}");
    }

    #[test]
    fn rtcp_fraction_and_odd_input() {
        let mut d = RedDistance::new(RedDistancePolicy::default());
        assert_eq!(d.on_fraction_lost(13), 2); // 13/256 = 5.1%
        assert_eq!(d.on_report(f64::NAN), 2);
        assert_eq!(d.on_report(7.0), 3, "clamped to 100%");
        let mut fixed = RedDistance::new(RedDistancePolicy::fixed(2));
        assert_eq!(fixed.on_report(0.9), 2);
        assert_eq!(fixed.on_report(0.0), 2);
        let zero = RedDistance::new(RedDistancePolicy::fixed(0));
        assert_eq!(zero.get(), 0);
        let capped = RedDistance::new(RedDistancePolicy::fixed(9));
        assert_eq!(capped.get(), MAX_RED_DISTANCE);
    }
}
