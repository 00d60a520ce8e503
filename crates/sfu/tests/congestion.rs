//! The congestion-control core on simulated links (`bwe_sim`): capacity
//! steps, random loss, ramp-up, probing, sequence wraparound and garbage
//! feedback. Simulated time only; every TWCC feedback is a real
//! `TransportLayerCc` marshalled by the receiver and unmarshalled by the
//! sender.
//!
//! Unless a test says otherwise the sender has an allocator whose goal is
//! the configured maximum (2.5 Mb/s) and which probes (`ProbeController`)
//! at `min(goal, 2 x estimate)` while the estimate is below 95 % of it: the
//! SFU's stream allocator will probe before moving a subscriber up.

mod bwe_sim;

use std::time::Duration;

use bwe_sim::{Sim, SimConfig};
use huddle_sfu::congestion::{
    BweConfig, ProbeFailure, ProbeOutcome, SendSideBwe, MAX_PADDING_ONLY_PACKET,
};
use rtc::rtcp::transport_feedbacks::transport_layer_cc::{
    PacketStatusChunk, RunLengthChunk, SymbolTypeTcc, TransportLayerCc,
};

/// An estimator starting at `initial_bps`, between 50 kb/s and `max_bps`.
fn bwe(initial_bps: u64, max_bps: u64) -> BweConfig {
    BweConfig {
        initial_bps,
        min_bps: 50_000,
        max_bps,
        ..BweConfig::default()
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// How the simulated receiver reports arrivals, and the name to print.
const FEEDBACK: [(bool, &str); 2] = [(false, "TWCC"), (true, "RFC 8888")];

/// The step scenario: 2 Mb/s, 1 Mb/s from 10 s, 2 Mb/s from 20 s; the
/// receiver reports with RFC 8888 feedback if `ccfb`, else TWCC.
fn step_sim(goal: Option<u64>, ccfb: bool) -> Sim {
    let mut sim = Sim::new(SimConfig {
        goal_bps: goal,
        sample_every: Duration::from_millis(10),
        ccfb,
        ..SimConfig::default()
    });
    sim.schedule_capacity(secs(10.0), 1_000_000);
    sim.schedule_capacity(secs(20.0), 2_000_000);
    sim
}

/// Seconds after `from` until the estimate first satisfies `f`.
fn first_time(sim: &Sim, from: f64, f: impl Fn(u64) -> bool) -> Option<f64> {
    sim.first_sample(from, |s| f(s.estimate_bps))
        .map(|s| s.t - from)
}

#[test]
fn capacity_halved_estimate_below_it_within_2_s() {
    for (ccfb, name) in FEEDBACK {
        let mut sim = step_sim(Some(2_500_000), ccfb);
        sim.run_until(secs(10.0));
        let before = sim.bwe.estimate_bps();
        assert!(
            before > 1_200_000,
            "{name}: converged near 2 Mb/s first: {before}"
        );
        sim.run_until(secs(14.0));
        let took = first_time(&sim, 10.0, |e| e < 1_000_000).expect("went below 1 Mb/s");
        println!(
            "{name}: step down 2 -> 1 Mb/s: estimate {before} -> below 1 Mb/s after {took:.2} s"
        );
        assert!(took <= 2.0, "{name}: took {took} s");
        assert_eq!(sim.bwe.stats().unknown_statuses, 0, "{name}");
    }
}

#[test]
fn capacity_restored_estimate_at_90_percent_within_8_s() {
    for (ccfb, name) in FEEDBACK {
        let mut sim = step_sim(Some(2_500_000), ccfb);
        sim.run_until(secs(30.0));
        let took = first_time(&sim, 20.0, |e| e >= 1_800_000).expect("reached 1.8 Mb/s");
        println!("{name}: step up 1 -> 2 Mb/s: estimate >= 1.8 Mb/s after {took:.2} s");
        assert!(took <= 8.0, "{name}: took {took} s");
        // And it does not sit above the capacity: the average over the last
        // 5 s is within [70 %, 105 %] of it.
        let tail: Vec<u64> = sim
            .samples
            .iter()
            .filter(|s| s.t >= 25.0)
            .map(|s| s.estimate_bps)
            .collect();
        let mean = tail.iter().sum::<u64>() as f64 / tail.len() as f64;
        println!("{name}: step up: mean estimate 25-30 s {mean:.0}");
        assert!(
            (1_400_000.0..=2_100_000.0).contains(&mean),
            "{name}: {mean}"
        );
    }
}

#[test]
fn without_probing_the_delay_based_estimate_follows_the_steps_down() {
    // AIMD alone, started at the capacity: the step down still shows
    // within 2 s (recovery upwards without probing is 8 % a second).
    let mut sim = Sim::new(SimConfig {
        bwe: bwe(2_000_000, 2_500_000),
        sample_every: Duration::from_millis(10),
        ..SimConfig::default()
    });
    sim.schedule_capacity(secs(10.0), 1_000_000);
    sim.run_until(secs(14.0));
    let took = first_time(&sim, 10.0, |e| e < 1_000_000).expect("went below 1 Mb/s");
    println!("step down without probing: below 1 Mb/s after {took:.2} s");
    assert!(took <= 2.0, "took {took} s");
}

/// Mean estimate over `[from, to)` seconds.
fn mean_estimate(sim: &Sim, from: f64, to: f64) -> f64 {
    let values: Vec<u64> = sim
        .samples
        .iter()
        .filter(|s| s.t >= from && s.t < to)
        .map(|s| s.estimate_bps)
        .collect();
    values.iter().sum::<u64>() as f64 / values.len().max(1) as f64
}

fn lossy_sim(loss: f64, goal: Option<u64>, seed: u64, ccfb: bool) -> Sim {
    Sim::new(SimConfig {
        capacity_bps: 5_000_000,
        loss,
        seed,
        goal_bps: goal,
        bwe: bwe(300_000, 2_000_000),
        ccfb,
        ..SimConfig::default()
    })
}

/// 5 % random loss on a link with room (5 Mb/s, at most 2 Mb/s sent) does
/// not collapse the estimate. The bound: at least 90 % of the lossless
/// run's estimate, averaged over every second of the run. 5 % loss takes
/// 5 % of the delivered rate away, and the delivered rate caps the climb
/// at 1.5 x (not binding); random loss below 10 % is not a congestion
/// signal here (see `congestion/loss.rs`), so nothing else should differ.
/// The brief asked for 70 %; 90 % is what the design allows to promise.
#[test]
fn random_loss_without_congestion_does_not_collapse_the_estimate() {
    for (ccfb, name) in FEEDBACK {
        for goal in [None, Some(2_000_000)] {
            for seed in [1, 2, 3] {
                let mut clean = lossy_sim(0.0, goal, seed, ccfb);
                let mut lossy = lossy_sim(0.05, goal, seed, ccfb);
                let end = if goal.is_some() { 20.0 } else { 40.0 };
                clean.run_until(secs(end));
                lossy.run_until(secs(end));
                let mut worst: f64 = 1.0;
                let mut second = 1.0;
                while second < end {
                    let ratio = mean_estimate(&lossy, second - 1.0, second)
                        / mean_estimate(&clean, second - 1.0, second);
                    worst = worst.min(ratio);
                    second += 1.0;
                }
                let stats = lossy.bwe.stats();
                println!(
                    "{name}: 5 % loss, probing {}, seed {seed}: estimate {} vs {} lossless; worst 1 s ratio {worst:.3}; \
                     measured loss {:.3}; loss-based bound {:?}",
                    goal.is_some(),
                    lossy.bwe.estimate_bps(),
                    clean.bwe.estimate_bps(),
                    stats.loss_fraction,
                    stats.loss_based_bps,
                );
                assert!(worst >= 0.9, "{name}: worst ratio {worst}");
                assert!((0.03..0.08).contains(&stats.loss_fraction), "{name}");
            }
        }
    }
}

#[test]
fn ramp_up_from_the_initial_estimate() {
    let target = 2_250_000; // 90 % of 2.5 Mb/s
    let config = |goal| SimConfig {
        capacity_bps: 2_500_000,
        goal_bps: goal,
        bwe: bwe(300_000, 3_000_000),
        sample_every: Duration::from_millis(10),
        ..SimConfig::default()
    };
    let mut probing = Sim::new(config(Some(3_000_000)));
    probing.run_until(secs(10.0));
    let with = first_time(&probing, 0.0, |e| e >= target).expect("ramped up with probing");
    let mut aimd = Sim::new(config(None));
    aimd.run_until(secs(60.0));
    let without = first_time(&aimd, 0.0, |e| e >= target);
    println!(
        "ramp-up 300 kb/s -> 2.25 Mb/s on 2.5 Mb/s: {with:.2} s with probing, {without:?} s without"
    );
    assert!(with <= 3.0, "{with}");
}

/// Runs the step scenario, feeding `garbage` to the estimator before every
/// real feedback.
fn step_with_garbage(
    garbage: impl Fn(&SendSideBwe, &TransportLayerCc) -> Vec<TransportLayerCc> + 'static,
) -> Sim {
    let mut sim = Sim::new(SimConfig {
        bwe: BweConfig {
            // Starts 1000 before the wrap; the run wraps the 16-bit space
            // about twice more.
            first_sequence: 64_536,
            initial_bps: 300_000,
            min_bps: 50_000,
            max_bps: 5_000_000,
            ..BweConfig::default()
        },
        capacity_bps: 5_000_000,
        goal_bps: Some(5_000_000),
        ..SimConfig::default()
    });
    sim.schedule_capacity(secs(60.0), 2_500_000);
    sim.schedule_capacity(secs(120.0), 5_000_000);
    sim.feedback_hook = Some(Box::new(move |bwe, now, feedback| {
        for junk in garbage(bwe, feedback) {
            bwe.on_twcc(now, &junk);
        }
    }));
    sim
}

#[test]
fn wraparound_and_garbage_feedback_change_nothing() {
    let previous = std::cell::RefCell::new(None::<TransportLayerCc>);
    let mut clean = step_with_garbage(|_, _| Vec::new());
    let mut dirty = step_with_garbage(move |bwe, feedback| {
        let next = bwe.next_sequence();
        let received = |base: u16, count: u16| TransportLayerCc {
            base_sequence_number: base,
            packet_status_count: count,
            reference_time: feedback.reference_time ^ 0x80_0000,
            packet_chunks: vec![PacketStatusChunk::RunLengthChunk(RunLengthChunk {
                packet_status_symbol: SymbolTypeTcc::PacketReceivedLargeDelta,
                run_length: count,
                ..Default::default()
            })],
            recv_deltas: Vec::new(),
            ..Default::default()
        };
        let mut junk = vec![
            // Never sent: ahead of the newest.
            received(next.wrapping_add(10), 100),
            // Long gone: half the sequence space back.
            received(next.wrapping_sub(30_000), 100),
            // Empty, and a count without chunks.
            TransportLayerCc::default(),
            TransportLayerCc {
                packet_status_count: 500,
                base_sequence_number: next.wrapping_sub(5),
                ..Default::default()
            },
        ];
        // The previous real feedback again (a duplicate).
        if let Some(old) = previous.borrow().clone() {
            junk.push(old);
        }
        *previous.borrow_mut() = Some(feedback.clone());
        junk
    });
    clean.run_until(secs(180.0));
    dirty.run_until(secs(180.0));
    let stats = dirty.bwe.stats();
    println!(
        "wraparound: {} packets from sequence 64536 to {}, {} feedbacks, {} unknown statuses, {} malformed feedbacks ignored",
        dirty.sent_packets,
        dirty.bwe.next_sequence(),
        stats.feedbacks,
        stats.unknown_statuses,
        stats.malformed_feedbacks
    );
    // Crossed 65535 -> 0 twice.
    assert!(
        64_536 + dirty.sent_packets > 2 * 65_536,
        "{}",
        dirty.sent_packets
    );
    assert!(stats.unknown_statuses > 0 && stats.malformed_feedbacks > 0);
    // Garbage changed nothing: the same trajectory, sample for sample.
    let trajectory = |sim: &Sim| {
        sim.samples
            .iter()
            .map(|s| s.estimate_bps)
            .collect::<Vec<_>>()
    };
    assert_eq!(trajectory(&clean), trajectory(&dirty));
    // And the estimate tracked the link across the wraps.
    for (from, to, capacity) in [(30.0, 60.0, 5e6), (90.0, 120.0, 2.5e6), (150.0, 180.0, 5e6)] {
        let mean = mean_estimate(&clean, from, to);
        println!("wraparound: mean estimate {from}-{to} s: {mean:.0} on {capacity}");
        assert!(mean > 0.6 * capacity && mean < 1.05 * capacity, "{mean}");
    }
}

#[test]
fn probe_with_room_succeeds_and_moves_the_estimate() {
    let mut sim = Sim::new(SimConfig {
        capacity_bps: 3_000_000,
        bwe: bwe(1_000_000, 5_000_000),
        ..SimConfig::default()
    });
    sim.run_until(secs(2.0));
    let before = sim.bwe.estimate_bps();
    let now = sim.now;
    sim.probe
        .start(now, 2_000_000, &mut sim.bwe)
        .expect("probe starts");
    let done = sim.run_until_or(secs(3.0), |sim| !sim.outcomes.is_empty());
    assert!(done, "an outcome within a second");
    let (t, outcome) = sim.outcomes[0];
    println!("probe with room: estimate {before} -> {outcome:?} at {t:.2} s");
    let ProbeOutcome::Succeeded { estimate_bps, .. } = outcome else {
        panic!("{outcome:?}");
    };
    assert!(estimate_bps >= 1_800_000, "{estimate_bps}");
    assert_eq!(sim.bwe.estimate_bps(), estimate_bps);
}

#[test]
fn probe_without_room_fails_keeps_the_estimate_and_audio_flowing() {
    let mut sim = Sim::new(SimConfig {
        capacity_bps: 1_000_000,
        bwe: bwe(800_000, 5_000_000),
        ..SimConfig::default()
    });
    sim.run_until(secs(10.0));
    let before = sim.bwe.estimate_bps();
    let start = sim.t();
    let audio_before = sim
        .audio_delays
        .iter()
        .filter(|(t, _)| *t > start - 5.0)
        .map(|(_, d)| *d)
        .max()
        .unwrap_or_default();
    let now = sim.now;
    sim.probe
        .start(now, 2_000_000, &mut sim.bwe)
        .expect("probe starts");
    assert!(sim.run_until_or(secs(12.0), |sim| !sim.outcomes.is_empty()));
    let (t, outcome) = sim.outcomes[0];
    let after = sim.bwe.estimate_bps();
    // No further probe is allowed for the backoff.
    let now = sim.now;
    assert!(sim.probe.start(now, 2_000_000, &mut sim.bwe).is_err());
    sim.run_until(secs(t + 1.0));
    let audio_during = sim
        .audio_delays
        .iter()
        .filter(|(sent, _)| *sent >= start)
        .map(|(_, d)| *d)
        .max()
        .unwrap_or_default();
    println!(
        "probe without room: estimate {before} -> {after}, {outcome:?}; audio one-way max {audio_before:?} before, {audio_during:?} during"
    );
    assert!(
        matches!(
            outcome,
            ProbeOutcome::Failed {
                reason: ProbeFailure::Saturated,
                ..
            }
        ),
        "{outcome:?}"
    );
    // Does not rise above what the link carries: at most to 95 % of the
    // bottleneck rate the failed probe measured (libwebrtc's rule), which
    // is below the capacity.
    assert!(after <= before.max(960_000), "{before} -> {after}");
    // Audio: 30 ms of propagation, the queue already there, and the
    // probe's 50 ms at twice the capacity, which adds 50 ms of queue.
    assert!(
        audio_during <= audio_before + Duration::from_millis(60),
        "{audio_during:?}"
    );
}

#[test]
fn padding_packets_fit_padding_only_rtp() {
    // The sim pads with `padding_sizes(.., MAX_PADDING_ONLY_PACKET, ..)`;
    // a probing run sent some.
    let mut sim = Sim::new(SimConfig {
        goal_bps: Some(2_500_000),
        ..SimConfig::default()
    });
    sim.record_releases = true;
    sim.run_until(secs(3.0));
    let padding: Vec<usize> = sim
        .releases
        .iter()
        .filter(|(_, _, class)| *class == huddle_sfu::congestion::PacketClass::Padding)
        .map(|(_, size, _)| *size)
        .collect();
    assert!(!padding.is_empty());
    assert!(padding.iter().all(|&s| s <= MAX_PADDING_ONLY_PACKET));
}

/// A burst of heavy loss leaves a loss-based bound well below what the
/// path carries once the loss is gone; a probe the path carries lifts it
/// at once (before, only the delay-based half moved, and the bound kept
/// the estimate down, climbing 8 % a second).
#[test]
fn a_probe_the_path_carries_lifts_a_loss_based_bound() {
    let mut sim = Sim::new(SimConfig {
        capacity_bps: 2_000_000,
        loss: 0.3,
        bwe: bwe(1_000_000, 5_000_000),
        ..SimConfig::default()
    });
    sim.run_until(secs(4.0));
    sim.link.loss = 0.0;
    sim.run_until(secs(5.0));
    let stats = sim.bwe.stats();
    let bound = stats.loss_based_bps.expect("heavy loss left a bound");
    // The delay-based half saw no queue: it stays well above the bound,
    // and the probe aims between the two.
    let delay_based = stats.delay_based_bps;
    assert!(
        bound * 3 / 2 < delay_based,
        "bound {bound}, delay-based {delay_based}"
    );
    let target = (bound + delay_based) / 2;
    let now = sim.now;
    sim.probe
        .start(now, target, &mut sim.bwe)
        .expect("probe starts");
    assert!(sim.run_until_or(secs(7.0), |sim| !sim.outcomes.is_empty()));
    let (_, outcome) = sim.outcomes[0];
    println!("loss bound {bound}, delay-based {delay_based}: probe to {target} -> {outcome:?}");
    assert!(
        matches!(outcome, ProbeOutcome::Succeeded { .. }),
        "{outcome:?}"
    );
    assert!(sim.bwe.estimate_bps() as f64 >= 0.9 * target as f64);
}

/// The estimate's fall is noted (probes wait after it, see
/// `TransportCc::want_probe`): right after the capacity halves, and not
/// before anything happened.
#[test]
fn a_fall_of_the_estimate_is_noted() {
    let mut sim = step_sim(Some(2_500_000), false);
    let start = sim.now;
    assert!(!sim.bwe.decreased_within(start, secs(2.0)));
    sim.run_until(secs(10.0));
    let noted = sim.run_until_or(secs(14.0), |sim| sim.bwe.estimate_bps() < 1_000_000);
    assert!(noted, "went below 1 Mb/s");
    let now = sim.now;
    assert!(sim.bwe.decreased_within(now, secs(0.2)));
}
