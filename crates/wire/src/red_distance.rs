//! How many earlier frames a RED packet repeats, chosen from the loss the
//! receiver reports: the rule the calling crate's RED sender follows, and
//! the SFU for the copies it adds on a subscriber's lossy leg.

use crate::feedback::LossReport;

/// Most earlier frames the rule asks a RED packet to repeat (the
/// redundancy distance). At 40 % loss in bursts of 3 packets on average,
/// bursts longer than 3 are common enough that distance 3 leaves PESQ-WB
/// at 1.8; 8 brings it to 3.7 (docs/audio-quality.md, "RED").
/// `huddle_media::rtp::MAX_RED_DISTANCE`, what its encoder can repeat, is
/// the same.
pub const MAX_RED_DISTANCE: u8 = 8;
/// [`MAX_RED_DISTANCE`] as an array length.
const DISTANCES: usize = MAX_RED_DISTANCE as usize;

/// The rule that sets the redundancy distance from measured loss.
///
/// Fed with the fraction of packets lost per report (RTCP receiver reports'
/// `fraction lost`, every second or so):
///
/// - **Up at once**: the distance becomes the highest `k` whose
///   `raise_at[k - 1]` the reported loss reaches, if that is more than the
///   current one. Losses hurt now; more redundancy costs only bandwidth.
///   From `sustained_from` up, only when the report itself calls for at
///   least that, and then as far as the mean of it and the report before
///   calls for: one unlucky second of random loss does not raise the
///   distance, and with it the receiver's delay, for nothing, while
///   heavy bursty loss, whose one-second reports swing between 20 % and
///   55 % around 40 %, reaches the distance of its mean in two reports.
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
/// covered before any report has come); 2 from 4% loss, 3 from 12%, then
/// 4 from 30% and one more for every 2 points (8 from 38%); down from 2
/// below 2%, from 3 below 7%, from 4 and up 8 points below where it was
/// taken, each after 3 reports in a row. A report only says how much was
/// lost, not in what bursts: at 25% and more, losses come in bursts often
/// enough (and each frame is worth enough) to pay for the copies.
#[derive(Debug, Clone, PartialEq)]
pub struct RedDistancePolicy {
    /// Reported loss (0..=1) at which distance k + 1 is taken at once
    /// (index k = 0 ..= 7 for distances 1 ..= 8).
    pub raise_at: [f64; DISTANCES],
    /// Reported loss (0..=1) below which distance k + 1 counts down towards
    /// k (index k as in `raise_at`; each should be below its `raise_at`).
    pub lower_below: [f64; DISTANCES],
    /// Reports in a row below `lower_below` before stepping down one.
    pub lower_after_reports: u32,
    /// Distance before any report, and the lowest the rule goes.
    pub min_distance: u8,
    /// Highest distance the rule goes (at most [`MAX_RED_DISTANCE`]).
    pub max_distance: u8,
    /// Distances from this one up are taken only as far as the mean loss
    /// of the report and the one before calls for.
    pub sustained_from: u8,
    /// Packets an RTCP report ([`RedDistance::on_loss_report`]) must be
    /// about for the rule to take it. Thinner reports are added up until
    /// they reach this many: in a pause with DTX a one-second report is
    /// about 2 or 3 packets, and its 0 % or 50 % says nothing of the link
    /// (without this, every pause over 3 s brought the distance down and
    /// the next talk spurt started with too little redundancy).
    pub min_report_packets: u32,
}

impl Default for RedDistancePolicy {
    fn default() -> Self {
        RedDistancePolicy {
            raise_at: [0.0, 0.04, 0.12, 0.30, 0.32, 0.34, 0.36, 0.38],
            lower_below: [0.0, 0.02, 0.07, 0.22, 0.24, 0.26, 0.28, 0.30],
            lower_after_reports: 3,
            min_distance: 1,
            max_distance: MAX_RED_DISTANCE,
            sustained_from: 4,
            min_report_packets: 20,
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
    /// The loss the previous report gave (0 before any).
    last_loss: f64,
    /// Extended highest sequence number of the last RTCP report.
    last_highest_seq: Option<u32>,
    /// Thin RTCP reports not taken yet: packets lost (estimated from the
    /// fraction) and packets they were about.
    pending: (f64, u32),
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
            last_loss: 0.0,
            last_highest_seq: None,
            pending: (0.0, 0),
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
        let called_for = |loss: f64| {
            (1..=p.max_distance)
                .filter(|k| loss >= p.raise_at[usize::from(k - 1)])
                .max()
                .unwrap_or(0)
                .max(p.min_distance)
        };
        let wanted = called_for(loss);
        let below_sustained = p.sustained_from.saturating_sub(1);
        let wanted = if wanted > below_sustained {
            called_for((loss + self.last_loss) / 2.0).max(below_sustained)
        } else {
            wanted
        };
        self.last_loss = loss;
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
    /// since the previous report (RFC 3550 §6.4.1), however many.
    pub fn on_fraction_lost(&mut self, fraction_lost: u8) -> u8 {
        self.on_report(f64::from(fraction_lost) / 256.0)
    }

    /// An RTCP reception report about the stream. Its extended highest
    /// sequence number, against the previous report's, says how many
    /// packets it is about; reports about fewer than
    /// [`RedDistancePolicy::min_report_packets`] are added up with the
    /// next ones before the rule takes them (the first report is taken as
    /// it is). A report whose sequence number went back is ignored.
    pub fn on_loss_report(&mut self, report: LossReport) -> u8 {
        let fraction = f64::from(report.fraction_lost) / 256.0;
        let Some(last) = self.last_highest_seq.replace(report.highest_seq) else {
            return self.on_report(fraction);
        };
        let covered = report.highest_seq.wrapping_sub(last);
        if covered > u32::from(u16::MAX) {
            self.last_highest_seq = Some(last);
            return self.distance;
        }
        let (lost, packets) = &mut self.pending;
        *lost += fraction * f64::from(covered);
        *packets += covered;
        if *packets < self.policy.min_report_packets {
            return self.distance;
        }
        let (lost, packets) = std::mem::take(&mut self.pending);
        self.on_report(lost / f64::from(packets))
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
        assert_eq!(d.on_report(0.15), 3);
        let mut d = RedDistance::new(RedDistancePolicy::default());
        assert_eq!(d.on_report(0.20), 3, "straight to the level of the loss");
        assert_eq!(d.on_report(0.32), 3, "one noisy report of 20 % random loss");
        assert_eq!(d.on_report(0.40), 7, "the mean of 32 and 40 %: 36 %");
        assert_eq!(d.on_report(0.40), MAX_RED_DISTANCE, "two in a row");
        let mut d = RedDistance::new(RedDistancePolicy::default());
        assert_eq!(d.on_report(0.40), 3, "the first report of heavy loss");
        assert_eq!(d.on_report(0.31), 6, "the mean of 40 and 31 %: 35.5 %");
        // Bursty 40 %: one-second reports swing around the mean.
        let mut d = RedDistance::new(RedDistancePolicy::default());
        d.on_report(0.33);
        assert_eq!(d.on_report(0.48), MAX_RED_DISTANCE, "a mean of 40.5 %");
        let mut d = RedDistance::new(RedDistancePolicy::default());
        assert_eq!(d.on_report(0.60), 4, "the mean of 0 and 60 %");
        assert_eq!(
            d.on_report(0.10),
            4,
            "a calm report does not raise it, whatever the mean"
        );
    }

    #[test]
    fn lowers_one_step_after_calm_reports_in_a_row() {
        let mut d = RedDistance::new(RedDistancePolicy::default());
        d.on_report(0.5);
        d.on_report(0.5);
        for _ in 0..3 {
            assert_eq!(d.on_report(0.32), 8, "above the bound 8 counts down below");
        }
        // 5 steps down, 3 reports each, to 3.
        for _ in 0..15 {
            d.on_report(0.01);
        }
        assert_eq!(d.get(), 3);
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

    /// An RTCP report of `fraction_lost` / 256 up to `highest_seq`.
    fn rtcp(fraction_lost: u8, highest_seq: u32) -> LossReport {
        LossReport {
            ssrc: 9,
            fraction_lost,
            highest_seq,
        }
    }

    #[test]
    fn thin_reports_in_a_pause_are_added_up_not_taken_alone() {
        let mut d = RedDistance::new(RedDistancePolicy::default());
        // Speech at 40 % loss: 50 packets a report.
        assert_eq!(
            d.on_loss_report(rtcp(102, 65_530)),
            3,
            "the first, as it is"
        );
        assert_eq!(d.on_loss_report(rtcp(102, 65_580)), 8, "across the wrap");
        // A pause with DTX, 2-3 packets a second, none lost: 10 reports
        // (more than enough calm ones to step down) add up to 25 packets.
        let mut seq = 65_580;
        for i in 0..10 {
            seq += if i % 2 == 0 { 2 } else { 3 };
            assert_eq!(d.on_loss_report(rtcp(0, seq)), 8, "pause report {i}");
        }
        // Reports with no packet at all (muted) change nothing either.
        assert_eq!(d.on_loss_report(rtcp(0, seq)), 8);
        // Thin reports of 1 lost in 2 add up the same way: a 2-packet
        // pause report of 50 % does not count as one of 50 packets.
        let mut d = RedDistance::new(RedDistancePolicy::default());
        d.on_loss_report(rtcp(0, 1_000));
        for i in 1..=9 {
            assert_eq!(d.on_loss_report(rtcp(128, 1_000 + 2 * i)), 1, "{i}");
        }
        assert_eq!(
            d.on_loss_report(rtcp(0, 1_020)),
            3,
            "9 lost of 20: 45 %, averaged with none before"
        );
        // A sequence number that goes back is ignored, and does not
        // become the new reference.
        assert_eq!(d.on_loss_report(rtcp(255, 900)), 3);
        assert_eq!(
            d.on_loss_report(rtcp(0, 1_040)),
            3,
            "20 packets after 1_020"
        );
    }

    #[test]
    fn rtcp_fraction_and_odd_input() {
        let mut d = RedDistance::new(RedDistancePolicy::default());
        assert_eq!(d.on_fraction_lost(13), 2); // 13/256 = 5.1%
        assert_eq!(d.on_report(f64::NAN), 2);
        d.on_report(7.0);
        assert_eq!(d.on_report(7.0), MAX_RED_DISTANCE, "clamped to 100%");
        let mut fixed = RedDistance::new(RedDistancePolicy::fixed(2));
        assert_eq!(fixed.on_report(0.9), 2);
        assert_eq!(fixed.on_report(0.0), 2);
        let zero = RedDistance::new(RedDistancePolicy::fixed(0));
        assert_eq!(zero.get(), 0);
        let capped = RedDistance::new(RedDistancePolicy::fixed(200));
        assert_eq!(capped.get(), MAX_RED_DISTANCE);
    }
}
