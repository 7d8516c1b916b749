//! `baton-worker`: runs on every server, connects out to the Baton controller, runs the steps
//! it is assigned.

use std::path::PathBuf;

use anyhow::Context as _;
use baton_worker::state_lock::{StateDirLock, StateLockError};
use baton_worker::{Executor, ShellExecutor, SimulateExecutor, WorkerConfig};
use clap::{Parser, ValueEnum, builder::NonEmptyStringValueParser};

#[derive(Debug, Parser)]
#[command(name = "baton-worker", version, about)]
struct Args {
    /// The controller's worker endpoint, e.g. http://controller:7411, or https://… with
    /// --tls-ca.
    #[arg(long, env = "BATON_CONTROLLER", value_parser = parse_controller)]
    controller: String,

    /// This server's name, exactly as written in the fleet file.
    #[arg(long, env = "BATON_FQDN", value_parser = NonEmptyStringValueParser::new())]
    fqdn: String,

    /// Folder for the worker's journal (each step's start and result, on disk before it is
    /// reported), read back after a restart to tell the controller where an assignment stopped.
    #[arg(long, env = "BATON_STATE_DIR", value_name = "DIR", default_value_os_t = default_state_dir())]
    state_dir: PathBuf,

    /// With an https:// controller: the CA (PEM) that signed the controller's certificate.
    #[arg(long, env = "BATON_TLS_CA", value_name = "PEM")]
    tls_ca: Option<PathBuf>,

    /// This worker's certificate (PEM), for a controller that requires client certificates:
    /// it must name this server's FQDN.
    #[arg(long, env = "BATON_TLS_CERT", value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "BATON_TLS_KEY", value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// Program to run instead of `sh` / PowerShell (given the same arguments).
    #[arg(long, value_name = "PATH")]
    shell: Option<PathBuf>,

    /// `shell` runs steps for real; `simulate` only waits (demos, tests).
    #[arg(long, value_enum, env = "BATON_EXECUTOR", default_value_t = ExecutorKind::Shell)]
    executor: ExecutorKind,

    /// For `--executor simulate`: multiplies the plan's expected durations (0.01 = 100× faster).
    #[arg(long, default_value_t = 1.0, value_parser = parse_time_scale)]
    time_scale: f64,

    /// Log line format on stderr (filter with RUST_LOG; default info).
    #[arg(
        long,
        value_enum,
        env = "BATON_LOG_FORMAT",
        default_value_t = baton_telemetry::LogFormat::Text
    )]
    log_format: baton_telemetry::LogFormat,

    /// Append log lines to this file instead of stderr (moved to FILE.1 at start past 10 MB).
    #[arg(long, env = "BATON_LOG_FILE", value_name = "FILE")]
    log_file: Option<PathBuf>,

    /// The first delay before reconnecting after a session ends; it doubles (with jitter) up
    /// to --reconnect-max, and starts over only after a session stayed up for 10 s.
    #[arg(long, env = "BATON_RECONNECT_INITIAL", value_name = "DURATION", default_value = "500ms", value_parser = humantime::parse_duration)]
    reconnect_initial: std::time::Duration,

    /// The longest delay between reconnects.
    #[arg(long, env = "BATON_RECONNECT_MAX", value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    reconnect_max: std::time::Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ExecutorKind {
    Shell,
    Simulate,
}

/// `/var/lib/baton-worker` on Unix, `%ProgramData%\Baton\worker` on Windows.
fn default_state_dir() -> PathBuf {
    if cfg!(windows) {
        let program_data =
            std::env::var_os("ProgramData").unwrap_or_else(|| r"C:\ProgramData".into());
        PathBuf::from(program_data).join("Baton").join("worker")
    } else {
        PathBuf::from("/var/lib/baton-worker")
    }
}

fn parse_controller(url: &str) -> Result<String, String> {
    baton_worker::validate_controller_url(url)
        .map(|()| url.to_owned())
        .map_err(|e| e.to_string())
}

fn parse_time_scale(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(scale) if scale.is_finite() && scale >= 0.0 => Ok(scale),
        _ => Err(format!("{text:?} is not a non-negative number")),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tls = baton_proto::tls::ClientTls {
        ca: args.tls_ca.clone(),
        cert: args.tls_cert.clone(),
        key: args.tls_key.clone(),
    };
    // Settings that cannot work are a usage error (exit status 2), before anything starts.
    if let Err(err) = baton_worker::endpoint(&args.controller, &tls) {
        use clap::CommandFactory as _;
        Args::command()
            .error(clap::error::ErrorKind::ValueValidation, err)
            .exit();
    }
    let telemetry = baton_telemetry::init(
        "baton-worker",
        baton_telemetry::Logs {
            format: args.log_format,
            default_filter: "info",
            file: args.log_file.as_deref(),
        },
    )
    .context("baton-worker")?;
    // One worker per state dir, before its journal is opened or the controller is called: held
    // until main returns (the OS lets it go however the process ends).
    let state_lock = match StateDirLock::acquire(&args.state_dir, &args.fqdn) {
        Ok(lock) => lock,
        Err(err) => {
            // Another worker on the dir is a configuration error, like a bad flag: exit status
            // 2, which the systemd unit does not retry (RestartPreventExitStatus=2). A dir that
            // cannot be created or locked is a run-time failure (a read-only file system, say):
            // status 1, retried like any other.
            let code = match err {
                StateLockError::InUse { .. } => 2,
                StateLockError::Io { .. } => 1,
            };
            let message = baton_telemetry::error_chain(&err);
            if args.log_file.is_some() {
                // Where a service's output is read (a scheduled task keeps no stderr).
                tracing::error!(state_dir = %args.state_dir.display(), "{message}");
            }
            eprintln!("baton-worker: {message}");
            std::process::exit(code);
        }
    };

    let executor = match args.executor {
        ExecutorKind::Shell => Executor::Shell(ShellExecutor {
            program: args.shell,
        }),
        ExecutorKind::Simulate => Executor::Simulate(SimulateExecutor {
            time_scale: args.time_scale,
        }),
    };
    tracing::info!(
        version = baton_worker::VERSION,
        controller = %args.controller,
        fqdn = %args.fqdn,
        executor = ?args.executor,
        state_dir = %args.state_dir.display(),
        "baton-worker starting"
    );
    let mut config = WorkerConfig::new(args.controller, args.fqdn, executor);
    config.state_dir = Some(args.state_dir);
    config.tls = tls;
    config.backoff.initial = args.reconnect_initial;
    config.backoff.max = args.reconnect_max.max(args.reconnect_initial);
    let outcome = baton_worker::run(config, baton_telemetry::shutdown_signal()).await;
    tracing::info!("baton-worker stopped");
    telemetry.shutdown(std::time::Duration::from_secs(3)).await;
    drop(state_lock);
    outcome.context("baton-worker")?;
    Ok(())
}
