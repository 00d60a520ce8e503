//! The impairment model: what happens to each packet, decided by a seeded
//! random generator so every run with the same seed and the same arrivals
//! gives the same fates. Sans-IO: time comes in as a parameter.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;

/// Bursty loss as a two-state Markov chain (Gilbert-Elliott): in the good
/// state packets are lost with `loss_good`, in the bad state with `loss_bad`;
/// before each packet the state changes with the given probabilities.
///
/// The mean burst (bad-state) length is `1 / p_bad_to_good` packets and the
/// share of time in the bad state is `p_good_to_bad / (p_good_to_bad + p_bad_to_good)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GilbertElliott {
    /// Probability of going from good to bad, per packet.
    pub p_good_to_bad: f64,
    /// Probability of going from bad to good, per packet.
    pub p_bad_to_good: f64,
    /// Loss probability in the good state.
    pub loss_good: f64,
    /// Loss probability in the bad state.
    pub loss_bad: f64,
}

impl GilbertElliott {
    /// A chain with average loss `rate` in bursts of `mean_burst` packets
    /// (everything lost in the bad state, nothing in the good one).
    pub fn with_rate(rate: f64, mean_burst: f64) -> Self {
        let rate = rate.clamp(0.0, 0.99);
        let p_bad_to_good = 1.0 / mean_burst.max(1.0);
        // rate = p_gb / (p_gb + p_bg)  =>  p_gb = rate * p_bg / (1 - rate)
        let p_good_to_bad = (rate * p_bad_to_good / (1.0 - rate)).min(1.0);
        Self {
            p_good_to_bad,
            p_bad_to_good,
            loss_good: 0.0,
            loss_bad: 1.0,
        }
    }
}

/// What to do to the packets going one way.
#[derive(Debug, Clone, PartialEq)]
pub struct Impairment {
    /// Independent random loss probability (0..=1), on top of `burst`.
    pub loss: f64,
    /// Bursty loss, if any.
    pub burst: Option<GilbertElliott>,
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Extra delay drawn uniformly from `[0, jitter]` per packet. Jitter larger
    /// than the packet interval reorders packets by itself.
    pub jitter: Duration,
    /// Probability that a packet is held back by `reorder_delay` more.
    pub reorder: f64,
    /// How long a reordered packet is held back.
    pub reorder_delay: Duration,
    /// Probability that a packet is delivered twice.
    pub duplicate: f64,
    /// Seed of the random generator.
    pub seed: u64,
}

impl Default for Impairment {
    /// No impairment at all.
    fn default() -> Self {
        Self {
            loss: 0.0,
            burst: None,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(40),
            duplicate: 0.0,
            seed: 1,
        }
    }
}

impl Impairment {
    /// Random loss of `rate` (0..=1).
    pub fn random_loss(rate: f64, seed: u64) -> Self {
        Self {
            loss: rate,
            seed,
            ..Self::default()
        }
    }
}

/// Counts of what the model did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets offered.
    pub offered: u64,
    /// Packets dropped.
    pub lost: u64,
    /// Extra copies made.
    pub duplicated: u64,
    /// Packets held back for reordering.
    pub reordered: u64,
}

/// The seeded model for one direction.
#[derive(Debug)]
pub struct Model {
    config: Impairment,
    rng: StdRng,
    bad: bool,
    counters: Counters,
}

impl Model {
    /// A model in the good state.
    pub fn new(config: Impairment) -> Self {
        let rng = StdRng::seed_from_u64(config.seed);
        Self {
            config,
            rng,
            bad: false,
            counters: Counters::default(),
        }
    }

    /// The fate of a packet that arrives at `now`: the times at which it is
    /// delivered (none if lost, two if duplicated).
    pub fn fate(&mut self, now: Duration) -> Vec<Duration> {
        self.counters.offered += 1;
        if self.lost() {
            self.counters.lost += 1;
            return Vec::new();
        }
        let mut out = vec![now + self.one_way_delay()];
        if self.chance(self.config.duplicate) {
            self.counters.duplicated += 1;
            out.push(now + self.one_way_delay());
        }
        out
    }

    /// What the model did so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    fn lost(&mut self) -> bool {
        let mut lost = false;
        if let Some(ge) = self.config.burst {
            let flip = if self.bad {
                ge.p_bad_to_good
            } else {
                ge.p_good_to_bad
            };
            if self.chance(flip) {
                self.bad = !self.bad;
            }
            lost = self.chance(if self.bad { ge.loss_bad } else { ge.loss_good });
        }
        // Draw even when already lost, so one setting does not shift the
        // random sequence of the other.
        let random = self.chance(self.config.loss);
        lost || random
    }

    fn one_way_delay(&mut self) -> Duration {
        let mut d = self.config.delay;
        if !self.config.jitter.is_zero() {
            let j = self
                .rng
                .random_range(0..=self.config.jitter.as_micros() as u64);
            d += Duration::from_micros(j);
        }
        if self.chance(self.config.reorder) {
            self.counters.reordered += 1;
            d += self.config.reorder_delay;
        }
        d
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.random::<f64>() < p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: u64 = 100_000;

    fn run(config: Impairment) -> (Model, Vec<Vec<Duration>>) {
        let mut m = Model::new(config);
        let fates = (0..N)
            .map(|i| m.fate(Duration::from_millis(20 * i)))
            .collect();
        (m, fates)
    }

    #[test]
    fn no_impairment_delivers_everything_at_once() {
        let (m, fates) = run(Impairment::default());
        assert_eq!(m.counters().lost, 0);
        for (i, f) in fates.iter().enumerate() {
            assert_eq!(f, &vec![Duration::from_millis(20 * i as u64)]);
        }
    }

    #[test]
    fn random_loss_matches_its_rate() {
        for rate in [0.02, 0.05, 0.2] {
            let (m, _) = run(Impairment::random_loss(rate, 7));
            let got = m.counters().lost as f64 / N as f64;
            assert!((got - rate).abs() < 0.005, "rate {rate}: got {got}");
        }
    }

    #[test]
    fn gilbert_elliott_loses_in_bursts_at_its_rate() {
        let (m, fates) = run(Impairment {
            burst: Some(GilbertElliott::with_rate(0.05, 4.0)),
            seed: 3,
            ..Impairment::default()
        });
        let rate = m.counters().lost as f64 / N as f64;
        assert!((rate - 0.05).abs() < 0.01, "rate {rate}");
        // Mean length of runs of consecutive losses is about the mean burst.
        let (mut runs, mut in_run, mut lost) = (0u64, false, 0u64);
        for f in &fates {
            if f.is_empty() {
                lost += 1;
                if !in_run {
                    runs += 1;
                }
                in_run = true;
            } else {
                in_run = false;
            }
        }
        let mean = lost as f64 / runs as f64;
        assert!((3.0..5.0).contains(&mean), "mean burst {mean}");
    }

    #[test]
    fn jitter_stays_in_range_and_reorders() {
        let (_, fates) = run(Impairment {
            delay: Duration::from_millis(10),
            jitter: Duration::from_millis(50),
            seed: 5,
            ..Impairment::default()
        });
        let mut reordered = 0;
        let mut last = Duration::ZERO;
        for (i, f) in fates.iter().enumerate() {
            let sent = Duration::from_millis(20 * i as u64);
            let d = f[0] - sent;
            assert!(d >= Duration::from_millis(10) && d <= Duration::from_millis(60));
            if f[0] < last {
                reordered += 1;
            }
            last = last.max(f[0]);
        }
        assert!(
            reordered > N / 10,
            "50 ms jitter on 20 ms packets reorders: {reordered}"
        );
    }

    #[test]
    fn duplicates_and_reorders_at_their_rates() {
        let (m, fates) = run(Impairment {
            duplicate: 0.01,
            reorder: 0.02,
            seed: 9,
            ..Impairment::default()
        });
        let c = m.counters();
        assert!((c.duplicated as f64 / N as f64 - 0.01).abs() < 0.003);
        assert!((c.reordered as f64 / N as f64 - 0.02).abs() < 0.004);
        assert_eq!(
            fates.iter().map(Vec::len).sum::<usize>() as u64,
            N + c.duplicated
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_fates() {
        let config = Impairment {
            loss: 0.1,
            jitter: Duration::from_millis(30),
            duplicate: 0.05,
            seed: 42,
            ..Impairment::default()
        };
        assert_eq!(run(config.clone()).1, run(config).1);
    }
}
