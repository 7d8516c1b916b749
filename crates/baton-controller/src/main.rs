//! `baton-controller`: serves workers and operators on one gRPC port, over a durable store.

use anyhow::{Context, Result};
use clap::Parser;
use std::net::SocketAddr;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "baton-controller",
    version,
    about = "Baton's controller: schedules rollouts and drives the workers"
)]
struct Args {
    /// Address to serve gRPC on (workers and operators).
    #[arg(long, default_value = "127.0.0.1:7411", env = "BATON_LISTEN")]
    listen: SocketAddr,
    /// The store: `sqlite://FILE` (embedded default) or `postgres://USER:PASS@HOST/DB`.
    #[arg(long, default_value = "sqlite://baton.db", env = "BATON_DB")]
    db: String,
    /// A worker silent this long (no heartbeat, no report) while its server is in maintenance
    /// is recorded as lost. Humantime: "15s", "1m".
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    worker_timeout: std::time::Duration,
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    baton_core::time::parse_positive_duration(text).map(std::time::Duration::from_millis)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, not in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<()> {
    let store = baton_store::Store::connect(&args.db)
        .await
        .context("cannot open the store")?;
    let options = baton_controller::Options {
        worker_timeout: args.worker_timeout,
    };
    let controller = baton_controller::start_with(store, args.listen, options).await?;
    tracing::info!(addr = %controller.addr, "baton-controller listening");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    tracing::info!("shutting down");
    controller.shutdown().await?;
    Ok(())
}
