//! [`ProbeController`]: find out whether the path has room before the
//! allocator spends it.
//!
//! When the allocator wants to move a subscriber up and the estimate does
//! not allow it yet, it asks for a probe at the rate it wants
//! ([`ProbeController::start`]). For [`ProbeConfig::duration`] the pacer
//! runs at that rate and fills what media leaves of it with padding
//! ([`ProbeController::pacing_rate`], [`ProbeController::is_probing`]);
//! every packet sent meanwhile forms a *cluster*, which the estimator
//! measures from the feedback ([`crate::congestion::cluster`]). If the
//! path carried the cluster at (nearly) its rate, the estimate jumps there
//! and the probe succeeded: the allocator commits. If the receive rate fell
//! short (the bottleneck filled), the probe failed: the estimate moves at
//! most to 95 % of the rate the bottleneck drained at (never above the
//! path's capacity), and further probes wait [`ProbeConfig::backoff`] (doubling after
//! each consecutive probe that filled the path, up to
//! [`ProbeConfig::max_backoff`]): the allocator's hysteresis. A probe that
//! failed otherwise (too few packets measured, a rate a little short)
//! says little of the path: the wait after it does not grow, so that a
//! path that opened up again is found within seconds.
//!
//! A probe costs at most `duration x (target - capacity)` bits of extra
//! queue at the bottleneck when it fails: with the defaults (50 ms) a
//! probe at twice the capacity delays what follows, audio included, by
//! about 50 ms more, once.

use std::time::{Duration, Instant};

use crate::congestion::cluster::ProbeResult;
use crate::congestion::estimator::SendSideBwe;

/// Configuration of a [`ProbeController`].
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeConfig {
    /// How long a cluster is sent, at least: longer at low rates, until
    /// it carries [`ProbeConfig::min_bytes`] (so that a bottleneck's burst
    /// allowance, a few packets, does not read as capacity), up to
    /// [`ProbeConfig::max_duration`].
    pub duration: Duration,
    /// What a cluster carries at least, bytes (see `duration`).
    pub min_bytes: u64,
    /// The longest cluster.
    pub max_duration: Duration,
    /// How long after the cluster ends its feedback may take.
    pub result_timeout: Duration,
    /// Share of the target the probe must carry (and the estimate reach).
    pub success_ratio: f64,
    /// Wait after a failed probe before the next.
    pub backoff: Duration,
    /// Longest wait after repeated failures.
    pub max_backoff: Duration,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            duration: Duration::from_millis(50),
            min_bytes: 12_000,
            max_duration: Duration::from_millis(400),
            result_timeout: Duration::from_secs(1),
            success_ratio: 0.9,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(3),
        }
    }
}

/// A probe being sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeCluster {
    /// Its id.
    pub id: u32,
    /// The rate it sends at (bits/s).
    pub target_bps: u64,
    /// When it stops sending.
    pub ends: Instant,
}

/// Why a probe failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeFailure {
    /// The receive rate fell short of the send rate: the path is full.
    Saturated,
    /// The path carried it, but below the target (or the estimate stayed
    /// below it, held by loss or overuse).
    BelowTarget,
    /// Too few of its packets came back to measure.
    TooFewPackets,
    /// No feedback covered it in time.
    NoFeedback,
}

/// What a probe showed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ProbeOutcome {
    /// The path has room: the estimate is now at least
    /// `success_ratio x target`.
    Succeeded {
        /// The cluster's id.
        id: u32,
        /// Its target (bits/s).
        target_bps: u64,
        /// What it measured (bits/s).
        measured_bps: u64,
        /// The estimate after it (bits/s).
        estimate_bps: u64,
    },
    /// The path has no room for the target; the allocator stays.
    Failed {
        /// The cluster's id.
        id: u32,
        /// Its target (bits/s).
        target_bps: u64,
        /// What it measured (bits/s; 0 if nothing).
        measured_bps: u64,
        /// The estimate after it (bits/s).
        estimate_bps: u64,
        /// Why.
        reason: ProbeFailure,
    },
}

/// Why a probe was not started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// One is being sent or awaits its feedback.
    #[error("a probe is already in progress")]
    Busy,
    /// The estimate already allows the target.
    #[error("the estimate already allows the target")]
    NotNeeded,
    /// A recent probe failed: not before this instant.
    #[error("backing off after a failed probe")]
    BackingOff(Instant),
}

#[derive(Debug, Clone, Copy)]
enum State {
    Idle,
    Sending(ProbeCluster),
    Awaiting(ProbeCluster, Instant),
}

/// Probing for one subscriber connection. Sans-IO.
#[derive(Debug)]
pub struct ProbeController {
    config: ProbeConfig,
    state: State,
    next_id: u32,
    failures: u32,
    backoff_until: Option<Instant>,
}

impl ProbeController {
    /// An idle controller.
    pub fn new(config: ProbeConfig) -> Self {
        Self {
            config,
            state: State::Idle,
            next_id: 1,
            failures: 0,
            backoff_until: None,
        }
    }

    /// How long a cluster at `target_bps` is sent (see [`ProbeConfig::duration`]).
    fn cluster_duration(&self, target_bps: u64) -> Duration {
        let c = &self.config;
        let for_bytes =
            Duration::from_secs_f64(c.min_bytes as f64 * 8.0 / target_bps.max(1) as f64);
        for_bytes.clamp(c.duration, c.max_duration.max(c.duration))
    }

    /// Starts a probe at `target_bps` now.
    pub fn start(
        &mut self,
        now: Instant,
        target_bps: u64,
        bwe: &mut SendSideBwe,
    ) -> Result<ProbeCluster, ProbeError> {
        if !matches!(self.state, State::Idle) {
            return Err(ProbeError::Busy);
        }
        if target_bps as f64 * self.config.success_ratio <= bwe.estimate_bps() as f64 {
            return Err(ProbeError::NotNeeded);
        }
        if let Some(until) = self.backoff_until.filter(|&until| now < until) {
            return Err(ProbeError::BackingOff(until));
        }
        let cluster = ProbeCluster {
            id: self.next_id,
            target_bps,
            ends: now + self.cluster_duration(target_bps),
        };
        self.next_id = self.next_id.wrapping_add(1).max(1);
        bwe.start_probe(now, cluster.id, target_bps);
        self.state = State::Sending(cluster);
        Ok(cluster)
    }

    /// Whether a cluster is being sent: the pacer pads up to
    /// [`ProbeController::pacing_rate`].
    pub fn is_probing(&self) -> bool {
        matches!(self.state, State::Sending(_))
    }

    /// The rate the pacer should run at: the probe's target while one is
    /// sent, else the estimate.
    pub fn pacing_rate(&self, estimate_bps: u64) -> u64 {
        match self.state {
            State::Sending(cluster) => cluster.target_bps.max(estimate_bps),
            _ => estimate_bps,
        }
    }

    /// The cluster being sent or awaiting feedback.
    pub fn current(&self) -> Option<ProbeCluster> {
        match self.state {
            State::Idle => None,
            State::Sending(cluster) | State::Awaiting(cluster, _) => Some(cluster),
        }
    }

    /// When [`ProbeController::poll`] has something to do by time alone.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Idle => None,
            State::Sending(cluster) => Some(cluster.ends),
            State::Awaiting(_, deadline) => Some(deadline),
        }
    }

    /// Advances: ends the cluster when its time is up, and reports the
    /// outcome once its feedback is in (call after feedback and on
    /// timeouts).
    pub fn poll(&mut self, now: Instant, bwe: &mut SendSideBwe) -> Option<ProbeOutcome> {
        if let State::Sending(cluster) = self.state {
            if now < cluster.ends {
                return None;
            }
            bwe.end_probe(now);
            self.state = State::Awaiting(cluster, now + self.config.result_timeout);
        }
        let State::Awaiting(cluster, deadline) = self.state else {
            return None;
        };
        let outcome = match bwe.probe_result(cluster.id) {
            Some(result) => self.judge(cluster, result, bwe.estimate_bps()),
            None if now >= deadline => {
                bwe.cancel_probe();
                ProbeOutcome::Failed {
                    id: cluster.id,
                    target_bps: cluster.target_bps,
                    measured_bps: 0,
                    estimate_bps: bwe.estimate_bps(),
                    reason: ProbeFailure::NoFeedback,
                }
            }
            None => return None,
        };
        self.state = State::Idle;
        match outcome {
            ProbeOutcome::Succeeded { .. } => {
                self.failures = 0;
                self.backoff_until = None;
            }
            ProbeOutcome::Failed { reason, .. } => {
                let saturated = reason == ProbeFailure::Saturated;
                self.backoff_until = Some(now + backoff(&self.config, self.failures, saturated));
                if saturated {
                    self.failures += 1;
                }
            }
        }
        Some(outcome)
    }

    fn judge(&self, cluster: ProbeCluster, result: ProbeResult, estimate_bps: u64) -> ProbeOutcome {
        let wanted = cluster.target_bps as f64 * self.config.success_ratio;
        let reason = if result.measured_bps == 0 {
            Some(ProbeFailure::TooFewPackets)
        } else if result.saturated {
            Some(ProbeFailure::Saturated)
        } else if (result.measured_bps as f64) < wanted || (estimate_bps as f64) < wanted {
            Some(ProbeFailure::BelowTarget)
        } else {
            None
        };
        match reason {
            None => ProbeOutcome::Succeeded {
                id: cluster.id,
                target_bps: cluster.target_bps,
                measured_bps: result.measured_bps,
                estimate_bps,
            },
            Some(reason) => ProbeOutcome::Failed {
                id: cluster.id,
                target_bps: cluster.target_bps,
                measured_bps: result.measured_bps,
                estimate_bps,
                reason,
            },
        }
    }
}

/// The wait after a failed probe, the `failures`-th probe in a row to fill
/// the path (`saturated`) or any other failure (the base wait).
fn backoff(config: &ProbeConfig, failures: u32, saturated: bool) -> Duration {
    if !saturated {
        return config.backoff;
    }
    config
        .backoff
        .saturating_mul(1 << failures.min(16))
        .min(config.max_backoff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_grows_only_after_probes_that_filled_the_path() {
        let c = ProbeConfig::default();
        assert_eq!(backoff(&c, 0, true), Duration::from_secs(1));
        assert_eq!(backoff(&c, 1, true), Duration::from_secs(2));
        assert_eq!(backoff(&c, 5, true), c.max_backoff);
        assert_eq!(backoff(&c, 5, false), c.backoff);
    }
}
