//! `huddle-server`: see `docs/operations.md`.

use clap::Parser;
use huddle_server::cli::{Cli, Command};
use huddle_server::shutdown_signal;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new(huddle_server::default_log_filter())),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let config = cli.resolve()?;
    match cli.command {
        Some(Command::Token(args)) => {
            if config.uses_dev_secret() {
                tracing::warn!("signing with the embedded development secret");
            }
            println!("{}", args.mint_for(&config)?);
            Ok(())
        }
        None | Some(Command::Serve(_)) => {
            // Listen before `start` logs "started": a SIGTERM sent as soon
            // as that line appears must stop the server cleanly.
            let stop = shutdown_signal();
            let server = huddle_server::start(config).await?;
            server.run_until(stop).await
        }
    }
}
