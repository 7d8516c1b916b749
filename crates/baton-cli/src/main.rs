//! `baton`: plan and simulate pool-aware rolling updates, and drive them on a controller.

mod demo;
mod inputs;
mod operator;
mod table;

use anyhow::Result;
use baton_core::Strategy;
use baton_core::report::Report;
use baton_core::rollout;
use baton_core::simulator::SimConfig;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "baton",
    version,
    about = "Pool-aware rolling updates for server fleets"
)]
struct Cli {
    /// The controller's gRPC address, for the commands that talk to it (not plan, simulate).
    #[arg(
        long,
        global = true,
        env = "BATON_CONTROLLER",
        value_name = "URL",
        default_value = operator::DEFAULT_CONTROLLER
    )]
    controller: String,
    /// Log lines on stderr as text or JSON: the warnings of `baton demo`'s in-process
    /// controller and workers (RUST_LOG for more). Other commands print results, not logs.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "BATON_LOG_FORMAT",
        default_value_t = baton_telemetry::LogFormat::Text
    )]
    log_format: baton_telemetry::LogFormat,
    /// With an https:// controller: the CA (PEM) that signed its certificate.
    #[arg(long, global = true, env = "BATON_TLS_CA", value_name = "PEM")]
    tls_ca: Option<std::path::PathBuf>,
    /// Your operator certificate (PEM), for a controller that requires client certificates.
    #[arg(long, global = true, env = "BATON_TLS_CERT", value_name = "PEM")]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, global = true, env = "BATON_TLS_KEY", value_name = "PEM")]
    tls_key: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the schedule: who goes when, why each server waits, makespan and lower bound.
    Plan {
        #[command(flatten)]
        input: InputArgs,
        /// How servers are chosen: `baton`, or `batches:N` (Ansible's `serial: N`).
        #[arg(long, default_value = "baton", value_parser = parse_strategy)]
        strategy: Strategy,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Run the scheduler against virtual time, with jitter and failures.
    Simulate {
        #[command(flatten)]
        input: InputArgs,
        /// Seed of the random draws: the same seed gives the same run.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Each duration varies uniformly by ± this fraction (0 to 1).
        #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
        jitter: f64,
        /// Probability that a server's update fails (0 to 1).
        #[arg(long, default_value_t = 0.0, value_parser = parse_fraction)]
        failure_rate: f64,
        /// How servers are chosen: `baton`, or `batches:N` (Ansible's `serial: N`).
        #[arg(long, default_value = "baton", value_parser = parse_strategy)]
        strategy: Strategy,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// A whole rollout on this machine: controller, one simulated worker per server of the
    /// example fleet over loopback gRPC, the SfB runbook; about 30 seconds.
    Demo(demo::DemoArgs),
    #[command(flatten)]
    Operator(operator::OperatorCommand),
}

#[derive(Args)]
struct InputArgs {
    /// The fleet file (TOML).
    fleet: PathBuf,
    /// The runbook (TOML): renders each server's commands and gives default durations.
    #[arg(long)]
    runbook: Option<PathBuf>,
    /// A runbook parameter, e.g. `--param package_path='D:\CU\SkypeServerUpdateInstaller.exe'`.
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
    params: Vec<(String, String)>,
    /// When the rollout would begin, for maintenance windows: an RFC 3339 time such as
    /// 2026-11-30T21:00:00Z or 2026-11-30T22:00:00+01:00. Default: now.
    #[arg(long, value_name = "TIME")]
    start: Option<jiff::Timestamp>,
}

impl InputArgs {
    /// The rollout's time 0, unix ms.
    fn origin_ms(&self) -> i64 {
        self.start
            .unwrap_or_else(jiff::Timestamp::now)
            .as_millisecond()
    }
}

#[derive(Args)]
struct OutputArgs {
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// With `--format table`: also print each server's rendered commands.
    #[arg(long)]
    steps: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
}

fn parse_strategy(text: &str) -> Result<Strategy, String> {
    text.parse()
}

fn parse_fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("{text:?} is not a fraction between 0 and 1")),
    }
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not NAME=VALUE"))?;
    Ok((name.trim().to_string(), value.to_string()))
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`baton plan … | head`): nothing left to tell anyone.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Plan {
            input,
            strategy,
            output,
        } => {
            let loaded = inputs::load(&input.fleet, input.runbook.as_deref(), &input.params)?;
            let report =
                rollout::plan_at(&loaded.fleet, &loaded.workload, strategy, input.origin_ms())?;
            print(&report, &output, &table::Heading::plan(&loaded, strategy))
        }
        Command::Simulate {
            input,
            seed,
            jitter,
            failure_rate,
            strategy,
            output,
        } => {
            let loaded = inputs::load(&input.fleet, input.runbook.as_deref(), &input.params)?;
            let config = SimConfig {
                strategy,
                seed,
                jitter,
                failure_rate,
            };
            let (report, _) = rollout::simulate_rollout_at(
                &loaded.fleet,
                &loaded.workload,
                &config,
                input.origin_ms(),
            )?;
            print(
                &report,
                &output,
                &table::Heading::simulate(&loaded, &config),
            )
        }
        Command::Demo(args) => demo::run(args, cli.log_format),
        Command::Operator(command) => {
            let tls = baton_proto::tls::ClientTls {
                ca: cli.tls_ca,
                cert: cli.tls_cert,
                key: cli.tls_key,
            };
            operator::run(&cli.controller, &tls, command)
        }
    }
}

/// Writes the report to stdout. Write errors are returned, not panicked on as `print!` would.
fn print(report: &Report, output: &OutputArgs, heading: &table::Heading) -> Result<()> {
    let mut text = match output.format {
        Format::Json => serde_json::to_string_pretty(report)?,
        Format::Table => table::render(report, heading, output.steps),
    };
    if !text.ends_with('\n') {
        text.push('\n');
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()?;
    Ok(())
}
