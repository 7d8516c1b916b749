//! `baton-controller`: serves workers and operators on one gRPC port, over a durable store.

use anyhow::{Context, Result};
use baton_telemetry::LogFormat;
use clap::Parser;
use std::net::SocketAddr;
use std::process::ExitCode;

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
    #[arg(long, default_value = "15s", env = "BATON_WORKER_TIMEOUT", value_parser = parse_duration)]
    worker_timeout: std::time::Duration,
    /// Address of the monitoring port: `/metrics` (Prometheus), `/healthz`, `/readyz`.
    #[arg(long, default_value = "127.0.0.1:9411", env = "BATON_HTTP")]
    http: SocketAddr,
    /// Log lines on stderr as text or JSON (filter with RUST_LOG; default info). Traces go
    /// over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set.
    #[arg(long, value_enum, env = "BATON_LOG_FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    baton_core::time::parse_positive_duration(text).map(std::time::Duration::from_millis)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let telemetry = match baton_telemetry::init("baton-controller", args.log_format, "info") {
        Ok(telemetry) => telemetry,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = run(args, telemetry.traces()).await;
    telemetry.shutdown(std::time::Duration::from_secs(3)).await;
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args, traces: bool) -> Result<()> {
    let store = baton_store::Store::connect(&args.db)
        .await
        .context("cannot open the store")?;
    let options = baton_controller::Options {
        worker_timeout: args.worker_timeout,
        http: Some(args.http),
        otlp_metrics: true,
        traces,
        ..baton_controller::Options::default()
    };
    let controller = baton_controller::start_with(store, args.listen, options).await?;
    if let Some(http) = controller.http_addr {
        tracing::info!(addr = %http, "baton-controller metrics on http://{http}/metrics");
    }
    tracing::info!(addr = %controller.addr, "baton-controller listening");
    baton_telemetry::shutdown_signal().await;
    tracing::info!("shutting down");
    controller.shutdown().await?;
    Ok(())
}
