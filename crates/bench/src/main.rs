//! `huddle-bench`: see `docs/benchmarks.md`, "Load tool".

use anyhow::Context;
use clap::Parser;
use huddle_bench::media::MediaConfig;
use huddle_bench::server::default_server_bin;
use huddle_bench::{run, Plan, Receiver, Report, RunConfig, Scenario, Server};
use std::path::PathBuf;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

/// Load the huddle SFU with many WebRTC participants and report throughput,
/// loss, latency and the server's CPU per forwarded packet.
#[derive(Debug, Parser)]
#[command(name = "huddle-bench", version, about)]
struct Cli {
    /// Load shape.
    #[arg(long, value_enum, default_value = "audio")]
    scenario: Scenario,
    /// audio: publishers per room.
    #[arg(long, default_value_t = 10)]
    publishers: usize,
    /// audio: subscribe-only participants per room.
    #[arg(long, default_value_t = 10)]
    subscribers: usize,
    /// meeting: participants per room (each publishes audio + video and subscribes).
    #[arg(long, default_value_t = 4)]
    participants: usize,
    /// livestream: viewers per room.
    #[arg(long, default_value_t = 10)]
    viewers: usize,
    /// Rooms, each with the scenario's participants.
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// Measured window, seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Warm-up after every participant is ready, excluded from the window, seconds.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Worker threads for the participants.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Milliseconds between two joins.
    #[arg(long, default_value_t = 20)]
    join_interval_ms: u64,
    /// Longest wait for every participant to be ready, seconds.
    #[arg(long, default_value_t = 60)]
    setup_timeout: u64,
    /// RTP payload bytes per audio packet (50 packets/s).
    #[arg(long, default_value_t = 100)]
    audio_bytes: usize,
    /// Video bitrate of inter frames, kbit/s.
    #[arg(long, default_value_t = 800)]
    video_kbps: u32,
    /// Video frames per second.
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Seconds between video keyframes.
    #[arg(long, default_value_t = 2.0)]
    keyframe_secs: f64,
    /// Keyframe size as a multiple of an inter frame.
    #[arg(long, default_value_t = 4)]
    keyframe_factor: u32,
    /// Send video as three simulcast layers (RIDs q, h, f at 1/16, 1/4 and
    /// all of --video-kbps); each subscriber gets the one the SFU picks.
    #[arg(long)]
    simulcast: bool,
    /// End-to-end encrypted rooms: every participant joins its room's MLS
    /// group through the signaling, seals each payload with SFrame and
    /// opens what it receives (docs/e2ee.md). The SFU's work should not
    /// change.
    #[arg(long)]
    e2ee: bool,
    /// Milliseconds between the ICE connectivity checks of the
    /// participants' rtc connections [default: rtc-ice's 200] (the fast
    /// receiver checks every 200 ms until answered).
    #[arg(long)]
    ice_check_interval_ms: Option<u64>,
    /// How every participant's subscriber connection receives. `rtc`:
    /// webrtc-rs's receive pipeline (NACKs, receiver reports, ~6 µs per
    /// packet). `fast`: the tool's own transport (batched reads, ICE
    /// consent checks, DTLS-SRTP, every packet authenticated) with no
    /// NACKs, receiver reports or keyframe requests, so loss is measured
    /// before retransmission. Publishers always use rtc.
    #[arg(long, value_enum, default_value = "rtc")]
    receiver: Receiver,
    /// SFU workers of the server this tool starts (HUDDLE_WORKERS).
    #[arg(long, default_value_t = 1)]
    server_workers: usize,
    /// The huddle-server binary to start [default: next to this executable].
    #[arg(long, value_name = "PATH")]
    server_bin: Option<PathBuf>,
    /// Log file of the started server [default: huddle-bench-server-<pid>.log
    /// in the temp dir]. Its log filter is HUDDLE_BENCH_SERVER_LOG (default warn).
    #[arg(long, value_name = "PATH")]
    server_log: Option<PathBuf>,
    /// Target a running server instead (ws://host:port/ws); needs --secret.
    #[arg(long, requires = "secret")]
    url: Option<String>,
    /// Token secret of the running server.
    #[arg(long, env = "HUDDLE_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// Process id of the running server, to measure its CPU and memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Ramp: after each run, add this many subscribers (audio), viewers
    /// (livestream) or participants (meeting) and run again, until loss
    /// exceeds --ramp-loss or --ramp-max is reached.
    #[arg(long)]
    ramp_step: Option<usize>,
    /// Ramp: largest size tried.
    #[arg(long, default_value_t = 1000)]
    ramp_max: usize,
    /// Ramp: loss (percent) that ends it.
    #[arg(long, default_value_t = 0.5)]
    ramp_loss: f64,
    /// Write the report (an array of reports for a ramp) as JSON here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write the report as a Markdown table here.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Write a plot of the run (of the last run for a ramp) as SVG here.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
}

impl Cli {
    /// The size the ramp grows.
    fn size(&self) -> usize {
        match self.scenario {
            Scenario::Audio => self.subscribers,
            Scenario::Meeting => self.participants,
            Scenario::Livestream => self.viewers,
        }
    }

    fn config(&self, size: usize) -> RunConfig {
        let plan = match self.scenario {
            Scenario::Audio => Plan::audio(self.publishers, size, self.rooms),
            Scenario::Meeting => Plan::meeting(size, self.rooms),
            Scenario::Livestream => Plan::livestream(size, self.rooms),
        };
        let mut c = RunConfig::new(self.scenario, plan);
        c.media = MediaConfig {
            audio_bytes: self.audio_bytes,
            video_kbps: self.video_kbps,
            fps: self.fps,
            keyframe_secs: self.keyframe_secs,
            keyframe_factor: self.keyframe_factor,
            simulcast: self.simulcast,
        };
        c.seconds = self.seconds;
        c.warmup = self.warmup;
        c.threads = self.threads;
        c.join_interval = Duration::from_millis(self.join_interval_ms);
        c.setup_timeout = Duration::from_secs(self.setup_timeout);
        c.progress = !self.quiet;
        c.ice_check_interval = self.ice_check_interval_ms.map(Duration::from_millis);
        c.receiver = self.receiver;
        c.e2ee = self.e2ee;
        c
    }

    fn server(&self) -> anyhow::Result<Server> {
        if let Some(url) = &self.url {
            let secret = self.secret.clone().context("--url needs --secret")?;
            return Ok(Server::external(url.clone(), secret, self.server_pid));
        }
        let bin = match &self.server_bin {
            Some(b) => b.clone(),
            None => default_server_bin().context(
                "no huddle-server next to huddle-bench: build it \
                 (cargo build --release -p huddle-rtc-server) or pass --server-bin",
            )?,
        };
        let log = self.server_log.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!("huddle-bench-server-{}.log", std::process::id()))
        });
        tracing::info!(bin = %bin.display(), log = %log.display(), "starting the server");
        Ok(Server::spawn(&bin, log, self.server_workers)?)
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("warn,rtc=error,huddle_bench=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let mut reports: Vec<Report> = Vec::new();
    let mut size = cli.size();
    loop {
        let mut server = cli.server()?;
        let report = run(&cli.config(size), &server)?;
        server.stop();
        eprintln!("{}", report.summary());
        let over = report.loss * 100.0 > cli.ramp_loss || report.failed > 0;
        reports.push(report);
        match cli.ramp_step {
            Some(step) if !over && size + step <= cli.ramp_max => size += step,
            _ => break,
        }
    }
    if let Some(path) = &cli.json {
        let text = if cli.ramp_step.is_some() {
            serde_json::to_string_pretty(&reports)?
        } else {
            serde_json::to_string_pretty(&reports[0])?
        };
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let markdown = if cli.ramp_step.is_some() {
        ramp_table(&reports)
    } else {
        reports[0].markdown()
    };
    if let Some(path) = &cli.markdown {
        std::fs::write(path, &markdown).with_context(|| format!("writing {}", path.display()))?;
    }
    if let (Some(path), Some(last)) = (&cli.svg, reports.last()) {
        std::fs::write(path, huddle_bench::plot::svg(last))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{markdown}");
    Ok(())
}

/// One row per ramp step.
fn ramp_table(reports: &[Report]) -> String {
    let mut out = String::from(
        "| publishers | subscribers | streams | forwarded pkt/s | Mbit/s | loss | worst sub | p50 / p99 latency (ms) | server CPU % | server µs/pkt | client CPU % | rest of host CPU % | UDP drops server / other |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in reports {
        let opt = |v: Option<f64>, d: usize| v.map_or("n/a".to_owned(), |v| format!("{v:.d$}"));
        out.push_str(&format!(
            "| {} | {} | {} | {:.0} | {:.2} | {:.3}% | {:.3}% | {:.2} / {:.2} | {} | {} | {:.0} | {} | {} / {} |\n",
            r.publishers,
            r.subscribers,
            r.forwarded_streams,
            r.forwarded_pps,
            r.forwarded_bps / 1e6,
            r.loss * 100.0,
            r.loss_max * 100.0,
            r.latency_ms.p50,
            r.latency_ms.p99,
            opt(r.server_cpu_percent, 0),
            opt(r.server_cpu_us_per_packet, 2),
            r.client_cpu_percent,
            opt(r.other_cpu_percent, 0),
            r.server_socket_drops
                .map_or("n/a".to_owned(), |v| v.to_string()),
            r.other_socket_drops
                .map_or("n/a".to_owned(), |v| v.to_string()),
        ));
    }
    out
}
