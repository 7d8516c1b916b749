//! `baton-controller`: serves workers and operators on one gRPC port, over a durable store.

use anyhow::{Context, Result};
use baton_telemetry::LogFormat;
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
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
    /// The most output kept of each step attempt (stdout and stderr together): its first half
    /// and its last half; lines in between are dropped and counted, and `baton logs` says
    /// where. Bytes, or with a unit: "10MiB", "512K", "1G" (K, M, G are 1024-based).
    #[arg(long, default_value = "10MiB", env = "BATON_MAX_STEP_OUTPUT", value_parser = parse_size)]
    max_step_output: u64,
    /// Address of the monitoring port: `/metrics` (Prometheus), `/healthz`, `/readyz`.
    #[arg(long, default_value = "127.0.0.1:9411", env = "BATON_HTTP")]
    http: SocketAddr,
    /// Log lines on stderr as text or JSON (filter with RUST_LOG; default info). Traces go
    /// over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set.
    #[arg(long, value_enum, env = "BATON_LOG_FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Append log lines to this file instead of stderr (moved to FILE.1 at start past 10 MB).
    #[arg(long, env = "BATON_LOG_FILE", value_name = "FILE")]
    log_file: Option<PathBuf>,
    /// Serve gRPC over TLS with this certificate (PEM, valid for the name clients use).
    #[arg(long, env = "BATON_TLS_CERT", value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "BATON_TLS_KEY", value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM): mutual TLS. A worker then speaks
    /// only for the server its certificate names.
    #[arg(
        long,
        env = "BATON_TLS_CLIENT_CA",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    tls_client_ca: Option<PathBuf>,
    /// With --tls-client-ca: a name an operator's certificate must be valid for to use
    /// `baton` (repeat, or comma-separate in the variable). Workers' certificates name
    /// servers, so they cannot start or stop rollouts.
    #[arg(
        long = "tls-operator",
        env = "BATON_TLS_OPERATORS",
        value_name = "NAME",
        value_delimiter = ',',
        requires = "tls_client_ca"
    )]
    tls_operators: Vec<String>,
    /// With --tls-client-ca: a name a viewer's certificate may be valid for, to read status,
    /// events and servers only (repeat, or comma-separate in the variable).
    #[arg(
        long = "tls-viewer",
        env = "BATON_TLS_VIEWERS",
        value_name = "NAME",
        value_delimiter = ',',
        requires = "tls_client_ca"
    )]
    tls_viewers: Vec<String>,
}

/// The TLS settings, files read and checked; a usage error names the flag and the file.
fn server_tls(args: &Args) -> Result<Option<baton_controller::ServerTls>, String> {
    use baton_proto::tls::{read_certificates, read_private_key};
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(None);
    };
    let client_ca_pem = match &args.tls_client_ca {
        Some(ca) => {
            if args.tls_operators.is_empty() {
                return Err(
                    "--tls-client-ca needs at least one --tls-operator NAME: the names operators' certificates are valid for"
                        .into(),
                );
            }
            Some(read_certificates("--tls-client-ca", ca).map_err(|e| e.to_string())?)
        }
        None => None,
    };
    Ok(Some(baton_controller::ServerTls {
        cert_pem: read_certificates("--tls-cert", cert).map_err(|e| e.to_string())?,
        key_pem: read_private_key("--tls-key", key).map_err(|e| e.to_string())?,
        client_ca_pem,
        operators: args.tls_operators.clone(),
        viewers: args.tls_viewers.clone(),
    }))
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    baton_core::time::parse_positive_duration(text).map(std::time::Duration::from_millis)
}

/// A size in bytes: "1048576", "512K", "10MiB", "1 GB" (K, M, G, T and their KB/KiB forms all
/// count in 1024s), at least 2 bytes (one for the head, one for the tail).
fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit = unit.trim().to_ascii_lowercase();
    let shift = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" if unit.is_empty() || unit == "b" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => {
            return Err(format!(
                "{text:?} is not a size: write bytes, or a number with K, M or G (\"10MiB\", \"512K\")"
            ));
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size: no number before the unit"))?;
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("{text:?} is too large"));
    }
    let bytes = bytes.round() as u64;
    if bytes < 2 {
        return Err(format!(
            "{text:?} is too small: at least 2 bytes (half for the head, half for the tail)"
        ));
    }
    Ok(bytes)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let tls = match server_tls(&args) {
        Ok(tls) => tls,
        Err(why) => {
            use clap::CommandFactory as _;
            Args::command()
                .error(clap::error::ErrorKind::ValueValidation, why)
                .exit()
        }
    };
    let telemetry = match baton_telemetry::init(
        "baton-controller",
        baton_telemetry::Logs {
            format: args.log_format,
            default_filter: "info",
            file: args.log_file.as_deref(),
        },
    ) {
        Ok(telemetry) => telemetry,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = run(args, tls, telemetry.traces()).await;
    telemetry.shutdown(std::time::Duration::from_secs(3)).await;
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args, tls: Option<baton_controller::ServerTls>, traces: bool) -> Result<()> {
    let store = baton_store::Store::connect(&args.db)
        .await
        .context("cannot open the store")?
        .with_max_step_output(args.max_step_output);
    let security = match &tls {
        None => "plain HTTP/2, no TLS",
        Some(tls) if tls.client_ca_pem.is_some() => "TLS, client certificates required",
        Some(_) => "TLS",
    };
    let options = baton_controller::Options {
        worker_timeout: args.worker_timeout,
        http: Some(args.http),
        otlp_metrics: true,
        traces,
        tls,
        ..baton_controller::Options::default()
    };
    let controller = baton_controller::start_with(store, args.listen, options).await?;
    if let Some(http) = controller.http_addr {
        tracing::info!(addr = %http, "baton-controller metrics on http://{http}/metrics");
    }
    tracing::info!(addr = %controller.addr, security, "baton-controller listening");
    baton_telemetry::shutdown_signal().await;
    tracing::info!("shutting down");
    controller.shutdown().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_are_bytes_or_binary_units() {
        assert_eq!(parse_size("1048576"), Ok(1_048_576));
        assert_eq!(parse_size("100b"), Ok(100));
        assert_eq!(parse_size("512K"), Ok(512 * 1024));
        assert_eq!(parse_size("512KiB"), Ok(512 * 1024));
        assert_eq!(parse_size("10MiB"), Ok(10 * 1024 * 1024));
        assert_eq!(parse_size("10 MB"), Ok(10 * 1024 * 1024));
        assert_eq!(parse_size("1.5m"), Ok(3 * 512 * 1024));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        for bad in ["", "MiB", "ten", "10 parsecs", "1", "0", "-5K"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }
}
