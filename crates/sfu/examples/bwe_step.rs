//! The bandwidth estimator on the step scenario, as data and a picture.
//!
//! Capacity 2 Mb/s, 1 Mb/s from 10 s, 2 Mb/s again from 20 s, 30 s in all,
//! on the simulated link of `tests/bwe_sim` (200 ms drop-tail queue, 30 ms
//! one way, TWCC feedback every 50 ms) with a sender whose allocator probes
//! up to 2.5 Mb/s (`--no-probe`: the delay- and loss-based estimate
//! alone). Writes `bwe_step.csv` and `bwe_step.svg` (estimate, capacity and
//! send rate over time) into the directory given as the first argument
//! (default: the current one), then times `SendSideBwe::on_sent` and a
//! pacer push + pop per packet (run with `--release` for numbers that
//! mean anything).
//!
//! `cargo run -p huddle-sfu --release --example bwe_step -- docs/img`

#[path = "../tests/bwe_sim/mod.rs"]
mod bwe_sim;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bwe_sim::{Sample, Sim, SimConfig};
use huddle_sfu::congestion::{BweConfig, Pacer, PacerConfig, PacketClass, PacketKind, SendSideBwe};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut dir = PathBuf::from(".");
    let mut probe = true;
    for arg in std::env::args().skip(1) {
        if arg == "--no-probe" {
            probe = false;
        } else {
            dir = PathBuf::from(arg);
        }
    }
    std::fs::create_dir_all(&dir)?;

    let mut sim = Sim::new(SimConfig {
        goal_bps: probe.then_some(2_500_000),
        sample_every: Duration::from_millis(50),
        ..SimConfig::default()
    });
    sim.schedule_capacity(Duration::from_secs(10), 1_000_000);
    sim.schedule_capacity(Duration::from_secs(20), 2_000_000);
    sim.run_until(Duration::from_secs(30));

    let mut csv = String::from(
        "t_s,capacity_bps,estimate_bps,delay_based_bps,loss_based_bps,send_bps,recv_bps,bottleneck_delay_ms,rtt_ms,loss_fraction\n",
    );
    for s in &sim.samples {
        writeln!(
            csv,
            "{:.3},{},{},{},{},{},{},{:.2},{:.2},{:.4}",
            s.t,
            s.capacity_bps,
            s.estimate_bps,
            s.delay_based_bps,
            s.loss_based_bps.map_or(String::new(), |b| b.to_string()),
            s.send_bps,
            s.recv_bps,
            s.bottleneck_delay_ms,
            s.rtt_ms,
            s.loss_fraction
        )?;
    }
    std::fs::write(dir.join("bwe_step.csv"), csv)?;
    std::fs::write(dir.join("bwe_step.svg"), svg(&sim.samples, probe))?;

    let below = sim
        .first_sample(10.0, |s| s.estimate_bps < 1_000_000)
        .map(|s| s.t - 10.0);
    let above = sim
        .first_sample(20.0, |s| s.estimate_bps >= 1_800_000)
        .map(|s| s.t - 20.0);
    println!("wrote {}", dir.join("bwe_step.{csv,svg}").display());
    println!(
        "step down: below 1 Mb/s {below:?} s after it; step up: >= 1.8 Mb/s {above:?} s after it"
    );
    println!("probe outcomes: {}", sim.outcomes.len());

    time_hot_path();
    Ok(())
}

/// Times `on_sent` and a pacer push + pop, per packet.
fn time_hot_path() {
    const N: u32 = 2_000_000;
    let start = Instant::now();
    let mut bwe = SendSideBwe::new(start, BweConfig::default());
    let mut sink = 0u64;
    let began = Instant::now();
    for i in 0..N {
        let now = start + Duration::from_micros(u64::from(i));
        sink = sink.wrapping_add(u64::from(bwe.on_sent(now, 1200, PacketKind::Media)));
    }
    let per_sent = began.elapsed() / N;

    let mut pacer: Pacer<u32> = Pacer::new(
        10_000_000_000,
        PacerConfig {
            max_queue_bytes: 1 << 30,
            ..PacerConfig::default()
        },
    );
    let began = Instant::now();
    for i in 0..N {
        let now = start + Duration::from_micros(u64::from(i));
        pacer.push(now, PacketClass::Video, 1200, i);
        if let Some(item) = pacer.pop(now) {
            sink = sink.wrapping_add(u64::from(item));
        }
    }
    let per_paced = began.elapsed() / N;
    println!(
        "per packet: SendSideBwe::on_sent {per_sent:?}, Pacer push + pop {per_paced:?} ({} packets each; checksum {sink})",
        N
    );
}

/// Estimate, capacity and send rate against time.
fn svg(samples: &[Sample], probe: bool) -> String {
    let (width, height) = (900.0, 420.0);
    let (left, right, top, bottom) = (70.0, 20.0, 40.0, 50.0);
    let t_max = 30.0;
    let y_max = 2_600_000.0;
    let x = |t: f64| left + t / t_max * (width - left - right);
    let y = |bps: f64| height - bottom - bps.min(y_max) / y_max * (height - top - bottom);
    let line = |f: &dyn Fn(&Sample) -> f64| {
        samples
            .iter()
            .map(|s| format!("{:.1},{:.1}", x(s.t), y(f(s))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" font-size="15">Send-side BWE, capacity step 2 → 1 → 2 Mb/s ({})</text>
"#,
        left,
        if probe { "with probing" } else { "no probing" }
    );
    for mbps in [0.0, 0.5, 1.0, 1.5, 2.0, 2.5] {
        let yy = y(mbps * 1e6);
        let _ = writeln!(
            out,
            r##"<line x1="{left}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{mbps:.1} Mb/s</text>"##,
            width - right,
            left - 6.0,
            yy + 4.0
        );
    }
    for t in (0..=30).step_by(5) {
        let xx = x(f64::from(t));
        let _ = writeln!(
            out,
            r##"<line x1="{xx:.1}" y1="{top}" x2="{xx:.1}" y2="{:.1}" stroke="#eee"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{t} s</text>"##,
            height - bottom,
            height - bottom + 18.0
        );
    }
    for (color, dash, points) in [
        ("#999", "6,4", line(&|s| s.capacity_bps as f64)),
        ("#2a7", "", line(&|s| s.send_bps as f64)),
        ("#c22", "", line(&|s| s.estimate_bps as f64)),
    ] {
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}" points="{points}"/>"#
        );
    }
    for (i, (color, name)) in [
        ("#999", "capacity"),
        ("#2a7", "send rate (200 ms window)"),
        ("#c22", "estimate"),
    ]
    .iter()
    .enumerate()
    {
        let lx = left + 10.0 + i as f64 * 220.0;
        let ly = height - 12.0;
        let _ = writeln!(
            out,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="3"/><text x="{}" y="{}">{name}</text>"#,
            lx + 24.0,
            lx + 30.0,
            ly + 4.0
        );
    }
    out.push_str("</svg>\n");
    out
}
