//! The operator commands: talk to a Baton controller over gRPC (`baton.v1.OperatorService`).
//!
//! `plan` and `simulate` stay synchronous; only these commands build a tokio runtime.

mod apply;
mod events;
mod logs;
mod render;
mod servers;
pub(crate) mod status;

use crate::Format;
use anyhow::{Context, Result, anyhow};
use baton_proto::tls::ClientTls;
use baton_proto::v1::operator_service_client::OperatorServiceClient;
use clap::Subcommand;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;
use tonic::transport::Channel;

/// Where `--controller` points when neither the flag nor `BATON_CONTROLLER` is given.
pub const DEFAULT_CONTROLLER: &str = "http://127.0.0.1:7411";

/// How long to wait for the TCP (and HTTP/2) connection to the controller.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a call may wait for the controller's answer (for `events`, its first response).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Subcommand)]
pub enum OperatorCommand {
    /// Validate a fleet and runbook on the controller and start a rollout; prints its id.
    Apply {
        /// The fleet file (TOML).
        fleet: PathBuf,
        /// The runbook (TOML).
        #[arg(long)]
        runbook: PathBuf,
        /// A runbook parameter, e.g. `--param package_path='D:\CU\SkypeServerUpdateInstaller.exe'`.
        #[arg(long = "param", value_name = "NAME=VALUE", value_parser = crate::parse_param)]
        params: Vec<(String, String)>,
    },
    /// Show a rollout: its state, each pool's progress and every server.
    Status {
        /// The rollout id; the newest rollout if left out.
        id: Option<String>,
        /// Follow the rollout live until it finishes or is aborted (exit 1 if a server failed).
        #[arg(long)]
        watch: bool,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Pause a rollout: nothing new starts until `resume`; running servers finish.
    Pause {
        /// The rollout id.
        id: String,
    },
    /// Resume a paused rollout.
    Resume {
        /// The rollout id.
        id: String,
    },
    /// Abort a rollout for good: nothing new starts; running servers finish.
    Abort {
        /// The rollout id.
        id: String,
        /// Also cancel the steps running now (their servers end failed, mid-runbook).
        #[arg(long)]
        force: bool,
    },
    /// Let a rollout waiting at its canary gate (`canary_pools`) go on to the other pools.
    Approve {
        /// The rollout id.
        id: String,
    },
    /// Settle a server in `needs_attention` (its worker came back without its assignment).
    Resolve {
        /// The server's FQDN.
        server: String,
        /// The rollout id (default: the newest rollout).
        #[arg(long, default_value = "")]
        rollout: String,
        /// Run its runbook again.
        #[arg(long, group = "resolution", required = true)]
        retry: bool,
        /// It was checked by hand and is updated.
        #[arg(long, group = "resolution")]
        mark_succeeded: bool,
        /// It was checked by hand and failed (its pool is quarantined).
        #[arg(long, group = "resolution")]
        mark_failed: bool,
    },
    /// List the workers that have registered with the controller, connected or not.
    Servers {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Print a rollout's event log, one JSON object per line (or `--format table`).
    Events {
        /// The rollout id.
        id: String,
        /// Only events after this sequence number.
        #[arg(long, value_name = "SEQ", default_value_t = 0)]
        after: u64,
        /// Keep printing new events until the rollout ends.
        #[arg(long)]
        follow: bool,
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
    },
    /// Print what a server's steps wrote to stdout and stderr, one line per output line
    /// (`STEP: ` before each when several steps are shown, `[stderr] ` on stderr lines), with
    /// the controller's note where it dropped lines over its --max-step-output.
    Logs {
        /// The server's FQDN.
        server: String,
        /// The rollout id (default: the newest rollout that includes the server).
        #[arg(long, value_name = "ID")]
        rollout: Option<String>,
        /// Only this step's output (every attempt).
        #[arg(long, value_name = "ID")]
        step: Option<String>,
        /// Keep printing new output until the server's assignment (or the step) ends.
        #[arg(long)]
        follow: bool,
    },
}

/// Runs one operator command against the controller at `controller`.
pub fn run(controller: &str, tls: &ClientTls, command: OperatorCommand) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(dispatch(controller, tls, command))
}

async fn dispatch(url: &str, tls: &ClientTls, command: OperatorCommand) -> Result<()> {
    let connect = || Controller::connect_with(url, tls);
    match command {
        OperatorCommand::Apply {
            fleet,
            runbook,
            params,
        } => {
            // Read the files first, so a typo in a path is reported as such.
            let request = apply::request(&fleet, &runbook, &params)?;
            apply::run(&mut connect().await?, request).await
        }
        OperatorCommand::Status { id, watch, format } => {
            let id = id.unwrap_or_default();
            if watch {
                status::watch(&mut connect().await?, id, format).await
            } else {
                status::show(&mut connect().await?, id, format).await
            }
        }
        OperatorCommand::Pause { id } => {
            status::control(&mut connect().await?, status::Control::Pause, id).await
        }
        OperatorCommand::Resume { id } => {
            status::control(&mut connect().await?, status::Control::Resume, id).await
        }
        OperatorCommand::Abort { id, force } => {
            status::control(&mut connect().await?, status::Control::Abort { force }, id).await
        }
        OperatorCommand::Resolve {
            server,
            rollout,
            retry,
            mark_succeeded,
            mark_failed: _,
        } => {
            let action = if retry {
                "retry"
            } else if mark_succeeded {
                "mark_succeeded"
            } else {
                "mark_failed"
            };
            status::resolve(&mut connect().await?, rollout, server, action).await
        }
        OperatorCommand::Approve { id } => {
            status::control(&mut connect().await?, status::Control::Approve, id).await
        }
        OperatorCommand::Servers { format } => servers::run(&mut connect().await?, format).await,
        OperatorCommand::Events {
            id,
            after,
            follow,
            format,
        } => events::run(&mut connect().await?, id, after, follow, format).await,
        OperatorCommand::Logs {
            server,
            rollout,
            step,
            follow,
        } => logs::run(&mut connect().await?, server, rollout, step, follow).await,
    }
}

/// A connected client plus the URL it was reached at, for error messages.
pub struct Controller {
    pub client: OperatorServiceClient<Channel>,
    url: String,
}

impl Controller {
    pub(crate) async fn connect(url: &str) -> Result<Controller> {
        Controller::connect_with(url, &ClientTls::default()).await
    }

    /// Connects over TLS when `tls` is set (then the URL is https://).
    pub(crate) async fn connect_with(url: &str, tls: &ClientTls) -> Result<Controller> {
        // `127.0.0.1:7411` is what people type; gRPC needs a scheme.
        let full = if url.contains("://") {
            url.to_string()
        } else if tls.is_set() {
            format!("https://{url}")
        } else {
            format!("http://{url}")
        };
        let endpoint = tls
            .endpoint(&full)?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT);
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| anyhow!("cannot reach the controller at {full}: {}", chain(&e)))?;
        Ok(Controller {
            client: OperatorServiceClient::new(channel),
            url: full,
        })
    }

    /// Turns a failed call into the error the operator sees: the controller's own message, or
    /// "cannot reach" when the call never got an answer from it.
    pub fn error(&self, status: &tonic::Status) -> anyhow::Error {
        let url = &self.url;
        if is_unreachable(status) {
            let mut parts = vec![status.message().to_string()];
            let mut next = std::error::Error::source(status);
            while let Some(e) = next {
                parts.push(e.to_string());
                next = e.source();
            }
            return anyhow!(
                "cannot reach the controller at {url}: {}",
                join_causes(parts)
            );
        }
        let message = status.message();
        // Something answered HTTP, but not gRPC (a metrics port, a web server, a proxy).
        if message.starts_with("grpc-status header missing") {
            return anyhow!("{url} did not answer as a gRPC server: {message}");
        }
        // A gRPC server without the operator service (a worker port?).
        if status.code() == tonic::Code::Unimplemented && message.is_empty() {
            return anyhow!("{url} does not serve baton.v1.OperatorService: is it the controller?");
        }
        if message.is_empty() {
            anyhow!("{} ({:?})", status.code().description(), status.code())
        } else {
            anyhow!("{message}")
        }
    }
}

/// A status made on our side from a transport or protocol error (connection refused, reset,
/// timed out, not HTTP/2) rather than sent by the controller: tonic keeps that error as the
/// status's source, which a status decoded from the controller's answer never has.
pub fn is_unreachable(status: &tonic::Status) -> bool {
    std::error::Error::source(status).is_some()
}

/// An error and its causes as one line, skipping repeats ("transport error: tcp connect
/// error: Connection refused (os error 111)").
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        parts.push(e.to_string());
        next = e.source();
    }
    join_causes(parts)
}

fn join_causes(parts: Vec<String>) -> String {
    let mut kept: Vec<String> = Vec::new();
    for part in parts {
        if !part.is_empty() && !kept.iter().any(|k| k.contains(&part)) {
            kept.push(part);
        }
    }
    kept.join(": ")
}

/// Writes to stdout through a lock and flushes, so each line reaches a pipe at once. Errors
/// (a closed pipe included) are returned, never panicked on; `main` exits quietly on
/// `BrokenPipe`.
pub fn write_out(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        stdout.write_all(b"\n")?;
    }
    stdout.flush()?;
    Ok(())
}
