//! Baton's durable store: rollouts, workers, an append-only event log per rollout, and each
//! step attempt's output (capped, apart from the log: `output.rs`).
//!
//! One API over two backends: SQLite (a file in WAL mode, the embedded default, or
//! `sqlite::memory:` for tests) and PostgreSQL (by URL). [`Store::connect`] picks the backend
//! from the URL and runs that backend's embedded migrations (`migrations/sqlite`,
//! `migrations/postgres`). Queries are runtime `sqlx::query*` calls with `$N` placeholders,
//! which both backends accept, so each query is written once.

mod connect;
mod epoch;
mod error;
mod events;
mod output;
mod rollouts;
mod time;
mod workers;

pub use crate::error::{StoreError, redact_url};
pub use crate::output::{
    DEFAULT_MAX_STEP_OUTPUT, NewStepOutput, OutputCursor, OutputItem, StepOutputAttempt,
    StepOutputChunk, StepOutputFilter, StepOutputKey, dropped_text, human_bytes, thousands,
};
pub use crate::time::{now_ms, rfc3339_ms};

use sqlx::{PgPool, SqlitePool};

/// Handle on the database. Cloning is cheap: clones share one connection pool.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    /// The cap on each step attempt's stored output ([`Store::with_max_step_output`]).
    max_step_output: u64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .finish()
    }
}

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        })
    }
}

#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$p` bound to the concrete pool, whichever backend it is. The body is
/// written once and compiled for each backend, so it must only use SQL both accept.
macro_rules! with_pool {
    ($store:expr, |$p:ident| $body:expr) => {
        match &$store.pool {
            $crate::Pool::Sqlite($p) => $body,
            $crate::Pool::Postgres($p) => $body,
        }
    };
}
pub(crate) use with_pool;

impl Store {
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Closes every connection of the pool (all clones), waiting for those in use to come back.
    /// On SQLite this also checkpoints the WAL into the database file. Calls made after it fail.
    pub async fn close(&self) {
        with_pool!(self, |p| p.close().await)
    }
}

/// What the controller knows when it starts a rollout; the database adds the rest.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRollout {
    pub fleet_name: String,
    pub fleet_toml: String,
    pub runbook_name: String,
    pub runbook_toml: String,
    pub params_json: String,
    pub planned_makespan_ms: i64,
    pub lower_bound_ms: i64,
}

/// One stored rollout.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct RolloutRow {
    /// Assigned by the database: 1, 2, 3 …
    pub id: i64,
    pub fleet_name: String,
    pub fleet_toml: String,
    pub runbook_name: String,
    pub runbook_toml: String,
    pub params_json: String,
    /// `"running"` when created; then whatever [`Store::set_rollout_state`] last wrote.
    pub state: String,
    /// Unix milliseconds (UTC), from the system clock when the rollout was created.
    pub created_at_ms: i64,
    pub planned_makespan_ms: i64,
    pub lower_bound_ms: i64,
}

/// An event to append to a rollout's log; the store assigns `seq` and `at_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub rollout_id: i64,
    pub server: Option<String>,
    pub pool: Option<String>,
    pub kind: String,
    pub detail: String,
}

/// One stored event.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct EventRow {
    pub rollout_id: i64,
    /// 1, 2, 3 … within the rollout, with no gap.
    pub seq: i64,
    /// Unix milliseconds (UTC), from the system clock when the event was appended.
    pub at_ms: i64,
    pub server: Option<String>,
    pub pool: Option<String>,
    pub kind: String,
    pub detail: String,
}

/// One worker the controller has seen.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct WorkerRow {
    pub fqdn: String,
    pub version: String,
    pub platform: String,
    /// Whether the worker's server is in the fleet the controller knows.
    pub known: bool,
    pub connected: bool,
    /// Unix milliseconds (UTC) of the last connect or heartbeat.
    pub last_heartbeat_ms: Option<i64>,
}
