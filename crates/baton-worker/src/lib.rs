//! Baton's worker: connects out to the controller over one gRPC stream and runs the runbook
//! steps it is assigned, one assignment at a time.
//!
//! Layout, one job per module:
//! - [`connection`]: the reconnecting stream to the controller (Hello, heartbeats, dispatch).
//! - [`runner`]: at most one assignment at a time; refuses a second one.
//! - [`executor`]: runs an assignment's steps, for real ([`ShellExecutor`]) or pretend
//!   ([`SimulateExecutor`]), with retries.
//! - [`journal`]: the current assignment's progress on disk, read back after a restart.
//! - [`process`]: one attempt of one step: a child process, its output lines, its timeout.
//! - [`shell`]: the command line for a runbook shell (`sh`, `powershell`).
//! - [`report`]: builds the messages the worker sends.
//! - [`replay`]: what is said again on every new stream (reports a broken one may have lost).
//! - [`backoff`]: reconnect delays.
//! - [`state_lock`]: one worker per state folder (an OS lock on `worker.lock`, taken at start).
//! - `trace`: each step's span, a child of the controller's.

pub mod backoff;
pub mod connection;
pub mod executor;
pub mod journal;
pub mod process;
pub mod replay;
pub mod report;
pub mod runner;
pub mod shell;
pub mod state_lock;
mod trace;

#[cfg(test)]
pub(crate) mod test_support;

pub use backoff::{Backoff, BackoffPolicy};
pub use connection::{WorkerConfig, endpoint, run, validate_controller_url};
pub use executor::{Executor, ShellExecutor, SimulateExecutor};
pub use journal::{Journal, JournalError, Recovered};
pub use report::Reporter;

/// This worker's version, sent in `Hello`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What can stop the worker from starting at all. Everything after start-up (an unreachable
/// controller, a failing step) is logged and retried or reported, never returned.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("invalid controller URL {url:?}: {reason}")]
    InvalidControllerUrl { url: String, reason: String },
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Tls(#[from] baton_proto::tls::TlsError),
}
