//! A standalone impairing UDP relay (huddle-netem) to put in front of a
//! huddle server's media port, for trying any client (a browser, aiortc,
//! `huddle-call`) on a bad network.
//!
//! ```text
//! cargo run --release --example netem_relay -- --upstream 127.0.0.1:7882 \
//!     --listen 127.0.0.1:7890 --loss 5 --jitter 30
//! HUDDLE_MEDIA_UDP=127.0.0.1:7882 HUDDLE_MEDIA_PUBLIC=127.0.0.1:7890 HUDDLE_WORKERS=1 \
//!     huddle-server serve --dev
//! ```
//!
//! The server must announce the relay (`media_public`) and run one worker
//! (the relay fronts one port). The impairment applies to what the server
//! sends to the clients (ICE and DTLS included); what the clients send goes
//! through untouched. Runs until Ctrl-C or SIGTERM, then prints what it did.
//! `scripts/neteq_reference.js` uses it to measure Chromium's jitter buffer.

use anyhow::Context;
use clap::Parser;
use huddle_netem::{GilbertElliott, Impairment, Relay, RelayConfig};
use std::net::SocketAddr;
use std::time::Duration;

/// Relay UDP to a huddle server, impairing what it sends back.
#[derive(Debug, Parser)]
#[command(name = "netem_relay")]
struct Args {
    /// The server's media socket (its `media_udp`).
    #[arg(long, value_name = "ADDR")]
    upstream: SocketAddr,
    /// Where clients send (announce it as the server's `media_public`).
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    listen: SocketAddr,
    /// Lose this percentage of the packets toward the clients.
    #[arg(long, default_value_t = 0.0, value_name = "PERCENT")]
    loss: f64,
    /// With --loss: lose in bursts of this many packets on average
    /// (Gilbert-Elliott) instead of independently.
    #[arg(long, value_name = "PACKETS")]
    burst: Option<f64>,
    /// Delay each packet by a further random 0..=MS milliseconds.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    jitter: u64,
    /// Delay every packet by this many milliseconds.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    delay: u64,
    /// Seed of the impairment's random choices.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !(0.0..=100.0).contains(&args.loss) {
        anyhow::bail!("--loss {} is not a percentage", args.loss);
    }
    let rate = args.loss / 100.0;
    let (loss, burst) = match args.burst {
        Some(mean) if mean >= 1.0 => (0.0, Some(GilbertElliott::with_rate(rate, mean))),
        Some(mean) => anyhow::bail!("--burst {mean} is below one packet"),
        None => (rate, None),
    };
    let mut config = RelayConfig::new(args.upstream);
    config.listen = args.listen;
    config.to_client = Impairment {
        loss,
        burst,
        delay: Duration::from_millis(args.delay),
        jitter: Duration::from_millis(args.jitter),
        seed: args.seed,
        ..Default::default()
    };
    let stop = huddle_server::shutdown_signal();
    let relay = Relay::start(config)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    // The first line is the address, for scripts that pass port 0.
    println!("listening {}", relay.local_addr());
    stop.await;
    let s = relay.stats();
    println!(
        "to clients: {} offered, {} lost; to the server: {} offered; {} dropped on overflow",
        s.to_client.offered, s.to_client.lost, s.to_upstream.offered, s.overflow
    );
    Ok(())
}
