//! Appending to a rollout's event log: persisted first, then announced to live followers.

use baton_store::{EventRow, NewEvent, Store, StoreError};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::broadcast;

/// Event kinds written by the controller (the log is append-only; `seq` is contiguous).
pub mod kind {
    pub const ROLLOUT_STARTED: &str = "rollout_started";
    pub const ROLLOUT_PAUSED: &str = "rollout_paused";
    pub const ROLLOUT_RESUMED: &str = "rollout_resumed";
    pub const ROLLOUT_ABORTED: &str = "rollout_aborted";
    pub const ROLLOUT_FINISHED: &str = "rollout_finished";
    /// The canary pools are done: the rollout waits for `baton approve`.
    pub const ROLLOUT_AWAITING_APPROVAL: &str = "rollout_awaiting_approval";
    pub const ROLLOUT_APPROVED: &str = "rollout_approved";
    pub const SERVER_STARTED: &str = "server_started";
    pub const SERVER_FINISHED: &str = "server_finished";
    pub const SERVER_SKIPPED: &str = "server_skipped";
    pub const SERVER_NOT_STARTED: &str = "server_not_started";
    pub const STEP_STARTED: &str = "step_started";
    pub const STEP_OUTPUT: &str = "step_output";
    pub const STEP_FINISHED: &str = "step_finished";
    /// A back end passed 50% or 80% of its pool's outage budget.
    pub const BUDGET_WARNING: &str = "budget_warning";
    /// A back end used up its pool's outage budget: the pool's users may be in resiliency mode.
    pub const RESILIENCY_RISK: &str = "resiliency_risk";
    /// A server's worker came back without its assignment: its state is unknown; it waits for
    /// `baton resolve`, its pool held.
    pub const SERVER_NEEDS_ATTENTION: &str = "server_needs_attention";
    /// An operator settled a server in `needs_attention` (detail: the action).
    pub const SERVER_RESOLVED: &str = "server_resolved";
    /// `baton resolve --retry`: the server's runbook is sent again (detail: the new assignment).
    pub const SERVER_RETRIED: &str = "server_retried";
    /// A server's worker restarted while its assignment ran, and the assignment goes on where
    /// it stopped (detail: `assignment ID resumed at step N (STEP): why`).
    pub const SERVER_RESUMED: &str = "server_resumed";
    /// A maintenance window opened for servers that waited for it: the scheduler was woken
    /// (`Event::Tick`), so a replay wakes it at the same point of the log.
    pub const WINDOW_OPENED: &str = "window_opened";
    /// The worker of a server in maintenance disconnected or fell silent.
    pub const WORKER_LOST: &str = "worker_lost";
    /// A server's maintenance was interrupted by several drops of its worker's stream before
    /// it made progress again (detail: how many, over how long). Written once, when the
    /// interruption ends; the interruption's first drop wrote its one `worker_lost`.
    pub const WORKER_FLAPPED: &str = "worker_flapped";
}

/// The store plus the live feed of appended events, cheap to clone (clones share the batch).
///
/// Outside a batch, [`EventLog::append`] commits each event at once. Inside one (the owner
/// loop applying a batch of worker messages), events wait in memory and [`EventLog::commit`]
/// writes them all in one transaction: group commit. The write-ahead rule holds either way,
/// because the engine commits before anything leaves the controller (an assignment, a
/// discard) and at the end of every batch.
#[derive(Clone)]
pub struct EventLog {
    store: Store,
    feed: broadcast::Sender<EventRow>,
    batch: Arc<Mutex<Batch>>,
}

/// Events appended and not yet committed.
#[derive(Default)]
struct Batch {
    /// A batch is open: appends wait for a commit.
    open: bool,
    /// The events appended since the last commit (outside a batch, only those a failed commit
    /// left: they go first with the next append).
    pending: Vec<NewEvent>,
}

impl EventLog {
    pub fn new(store: Store) -> Self {
        let (feed, _) = broadcast::channel(4096);
        EventLog {
            store,
            feed,
            batch: Arc::default(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn subscribe(&self) -> broadcast::Receiver<EventRow> {
        self.feed.subscribe()
    }

    fn batch(&self) -> std::sync::MutexGuard<'_, Batch> {
        self.batch.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a batch is open.
    pub fn in_batch(&self) -> bool {
        self.batch().open
    }

    /// Opens a batch: appends wait for [`EventLog::commit`] or [`EventLog::end_batch`].
    pub fn begin_batch(&self) {
        self.batch().open = true;
    }

    /// Commits the batch's events and closes it. On failure they stay in memory, in order, and
    /// go first with the next commit or append.
    pub async fn end_batch(&self) -> Result<usize, StoreError> {
        let committed = self.commit().await;
        self.batch().open = false;
        committed
    }

    /// Writes the events waiting in memory in one transaction, then tells followers. Returns
    /// how many were written.
    pub async fn commit(&self) -> Result<usize, StoreError> {
        let events = std::mem::take(&mut self.batch().pending);
        if events.is_empty() {
            return Ok(0);
        }
        match self.store.append_events(&events).await {
            Ok(rows) => {
                for row in rows {
                    let _ = self.feed.send(row);
                }
                Ok(events.len())
            }
            Err(err) => {
                // Kept, ahead of anything appended since, for the next commit.
                let mut batch = self.batch();
                let later = std::mem::replace(&mut batch.pending, events);
                batch.pending.extend(later);
                Err(err)
            }
        }
    }

    /// Commits what waits in the batch, then this event on its own, and returns its row (its
    /// time stamp is needed at once).
    pub async fn append_now(
        &self,
        rollout_id: i64,
        server: Option<&str>,
        pool: Option<&str>,
        kind: &str,
        detail: impl Into<String>,
    ) -> Result<EventRow, StoreError> {
        self.commit().await?;
        let event = new_event(rollout_id, server, pool, kind, detail.into());
        let row = self.store.append_event(&event).await?;
        let _ = self.feed.send(row.clone());
        Ok(row)
    }

    /// Commits the event (or, inside a batch, adds it to the batch), then tells followers.
    /// Outside a batch, callers act only after this returns; inside one, only after a commit.
    pub async fn append(
        &self,
        rollout_id: i64,
        server: Option<&str>,
        pool: Option<&str>,
        kind: &str,
        detail: impl Into<String>,
    ) -> Result<(), StoreError> {
        let event = new_event(rollout_id, server, pool, kind, detail.into());
        {
            let mut batch = self.batch();
            if batch.open {
                batch.pending.push(event);
                return Ok(());
            }
        }
        // Outside a batch: what a failed commit left goes first, then this event, at once.
        self.commit().await?;
        let row = self.store.append_event(&event).await?;
        // No follower listening is fine: the log is in the store.
        let _ = self.feed.send(row);
        Ok(())
    }
}

fn new_event(
    rollout_id: i64,
    server: Option<&str>,
    pool: Option<&str>,
    kind: &str,
    detail: String,
) -> NewEvent {
    NewEvent {
        rollout_id,
        server: server.map(str::to_string),
        pool: pool.map(str::to_string),
        kind: kind.to_string(),
        detail,
    }
}
