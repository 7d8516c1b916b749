//! `baton-loadgen`: opens N simulated worker sessions against a controller and measures it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use baton_loadgen::{Config, ControllerProcess, FqdnPattern, fleet, pattern};
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "baton-loadgen",
    version,
    about = "Opens N worker sessions from one process, speaking baton.v1 like baton-worker, to measure a controller at fleet scale",
    after_help = "Reproduce a measurement: docs/benchmarks.md, \"Load generator (baton-loadgen)\"."
)]
struct Args {
    /// The controller's gRPC address (plain http://).
    #[arg(long, default_value = "http://127.0.0.1:7411", value_name = "URL")]
    controller: String,
    /// How many workers to simulate (one TCP connection and stream each).
    #[arg(long, value_name = "N")]
    workers: usize,
    /// Each worker's FQDN; `{i}` is its number from 1 (`{i:05}`: zero-padded to 5 digits).
    #[arg(long, default_value = pattern::DEFAULT_PATTERN, value_name = "PATTERN")]
    fqdn_pattern: FqdnPattern,
    /// How long each step of an assignment "runs" (humantime).
    #[arg(long, default_value = "300ms", value_parser = parse_duration, value_name = "DURATION")]
    step_time: Duration,
    /// StepOutput lines per step, one line per message, sent as fast as the stream takes them
    /// (each one a write to the controller's store).
    #[arg(long, default_value_t = 2, value_name = "N")]
    output_lines: u32,
    /// Heartbeat period: `auto` (what the controller's Welcome says) or a duration.
    #[arg(long, default_value = "auto", value_parser = parse_heartbeat, value_name = "auto|DURATION")]
    heartbeat: Heartbeat,
    /// New workers per second while ramping up (`500` or `500/s`; `0`: all at once).
    #[arg(long, default_value = "500/s", value_parser = parse_rate, value_name = "N/s")]
    connect_rate: f64,
    /// Stop after this long (default: at Ctrl-C, or --until-idle).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    duration: Option<Duration>,
    /// Stop once every assignment received has finished and none has come for this long.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    until_idle: Option<Duration>,
    /// Print a progress line this often (`off`: only the summary).
    #[arg(long, default_value = "5s", value_parser = parse_optional_duration, value_name = "DURATION|off")]
    report_every: OptionalDuration,
    /// The controller's process, for its CPU (/proc/PID/stat) and memory (/proc/PID/status)
    /// (default: the one local `baton-controller` process, if there is exactly one). Read
    /// until it exits: a controller restarted during the run is not followed.
    #[arg(long, value_name = "PID")]
    controller_pid: Option<u32>,
    /// The controller's Prometheus endpoint, scraped at the start and the end for
    /// `baton_dispatch_latency_seconds` (e.g. http://127.0.0.1:9411/metrics).
    #[arg(long = "metrics", value_name = "URL")]
    metrics: Option<String>,
    /// Also write the summary as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Per connection attempt.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    connect_timeout: Duration,
    /// Write a fleet of --workers single-server Standard Edition pools named by
    /// --fqdn-pattern to FILE, and exit (with --write-runbook: both).
    #[arg(long, value_name = "FILE")]
    write_fleet: Option<PathBuf>,
    /// Write a runbook of --runbook-steps trivial steps whose expected duration matches
    /// --step-time to FILE, and exit.
    #[arg(long, value_name = "FILE")]
    write_runbook: Option<PathBuf>,
    /// The written fleet's name.
    #[arg(long, default_value = "load", value_name = "NAME")]
    fleet_name: String,
    /// The written fleet's `max_parallel` (default: no fleet cap).
    #[arg(long, value_name = "N")]
    fleet_max_parallel: Option<u32>,
    /// Steps in the written runbook.
    #[arg(long, default_value_t = 2, value_name = "N")]
    runbook_steps: u32,
}

#[derive(Debug, Clone, Copy)]
enum Heartbeat {
    Auto,
    Every(Duration),
}

#[derive(Debug, Clone, Copy)]
struct OptionalDuration(Option<Duration>);

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| e.to_string())
}

fn parse_heartbeat(text: &str) -> Result<Heartbeat, String> {
    if text.trim() == "auto" {
        return Ok(Heartbeat::Auto);
    }
    match parse_duration(text)? {
        d if d.is_zero() => Err("a heartbeat period must be longer than zero".into()),
        d => Ok(Heartbeat::Every(d)),
    }
}

fn parse_optional_duration(text: &str) -> Result<OptionalDuration, String> {
    match text.trim() {
        "off" | "0" => Ok(OptionalDuration(None)),
        other => parse_duration(other).map(|d| OptionalDuration(Some(d))),
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches("/s").trim();
    let rate: f64 = number.parse().map_err(|_| {
        format!("{text:?}: expected a number of connections per second, like 500/s")
    })?;
    if !rate.is_finite() || rate < 0.0 {
        return Err(format!("{text:?}: must be 0 (all at once) or more"));
    }
    Ok(rate)
}

fn write(path: &PathBuf, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// `--write-fleet` / `--write-runbook`.
fn write_files(args: &Args) -> Result<(), String> {
    args.fqdn_pattern.check(args.workers)?;
    let fleet = fleet::fleet_toml(
        &args.fleet_name,
        &args.fqdn_pattern,
        args.workers,
        args.fleet_max_parallel,
    );
    let runbook = fleet::runbook_toml(args.runbook_steps, args.step_time);
    if let Some(path) = &args.write_fleet {
        write(path, &fleet)?;
        eprintln!(
            "wrote {}: {} Standard Edition pools ({} … {}){}",
            path.display(),
            args.workers,
            args.fqdn_pattern.fqdn(1),
            args.fqdn_pattern.fqdn(args.workers),
            args.fleet_max_parallel
                .map(|m| format!(", max_parallel = {m}"))
                .unwrap_or_default()
        );
    }
    if let Some(path) = &args.write_runbook {
        write(path, &runbook)?;
        eprintln!(
            "wrote {}: {} steps of {}",
            path.display(),
            args.runbook_steps.max(1),
            humantime::format_duration(args.step_time)
        );
    }
    match fleet::planned_makespan_s(&fleet, &runbook) {
        Ok(makespan) => eprintln!("planned makespan with this runbook: {makespan:.2} s"),
        Err(err) => eprintln!("note: baton plan would refuse this fleet: {err}"),
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,baton_loadgen=info".into()),
        )
        .init();
    if args.write_fleet.is_some() || args.write_runbook.is_some() {
        return match write_files(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("error: {err}");
                ExitCode::FAILURE
            }
        };
    }

    // One session is one connection: raise the open-files limit as far as allowed.
    #[cfg(unix)]
    match baton_loadgen::procfs::raise_file_limit() {
        Ok(limit) => {
            if limit.soft > limit.before {
                eprintln!(
                    "open files: soft limit raised from {} to {} (the hard limit)",
                    limit.before, limit.soft
                );
            }
            // A few for stdio, the runtime, the metrics scrape and /proc readings.
            let needed = args.workers as u64 + 32;
            if needed > limit.soft {
                eprintln!(
                    "warning: {} workers need about {needed} open files but the limit is {} (hard {}): expect connection failures; raise it (ulimit -Hn, LimitNOFILE) first",
                    args.workers, limit.soft, limit.hard
                );
            }
        }
        Err(err) => eprintln!("warning: cannot raise the open-files limit: {err}"),
    }

    let mut config = Config::new(args.controller.clone(), args.workers);
    config.fqdn_pattern = args.fqdn_pattern.clone();
    config.step_time = args.step_time;
    config.output_lines = args.output_lines;
    config.heartbeat = match args.heartbeat {
        Heartbeat::Auto => None,
        Heartbeat::Every(d) => Some(d),
    };
    config.connect_rate = args.connect_rate;
    config.duration = args.duration;
    config.until_idle = args.until_idle;
    config.report_every = args.report_every.0;
    config.controller_process = match args.controller_pid {
        Some(pid) => ControllerProcess::Pid(pid),
        None => ControllerProcess::Find,
    };
    config.metrics_url = args.metrics.clone();
    config.connect_timeout = args.connect_timeout;

    let summary = match baton_loadgen::run(config, shutdown_signal()).await {
        Ok(summary) => summary,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", summary.human());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&summary).expect("the summary serializes");
        if let Err(err) = write(path, &(json + "\n")) {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse() {
        use clap::CommandFactory as _;
        Args::command().debug_assert();
        assert_eq!(parse_rate("500/s").unwrap(), 500.0);
        assert_eq!(parse_rate("2.5").unwrap(), 2.5);
        assert!(parse_rate("-1").is_err() && parse_rate("fast").is_err());
        assert!(matches!(parse_heartbeat("auto").unwrap(), Heartbeat::Auto));
        assert!(matches!(
            parse_heartbeat("250ms").unwrap(),
            Heartbeat::Every(d) if d == Duration::from_millis(250)
        ));
        assert!(parse_heartbeat("0s").is_err());
        assert!(parse_optional_duration("off").unwrap().0.is_none());
        let args = Args::try_parse_from([
            "baton-loadgen",
            "--workers",
            "3",
            "--fqdn-pattern",
            "x{i:03}.t",
        ])
        .unwrap();
        assert_eq!(args.fqdn_pattern.fqdn(2), "x002.t");
        assert!(
            Args::try_parse_from(["baton-loadgen", "--workers", "3", "--fqdn-pattern", "x.t"])
                .is_err()
        );
    }
}
