//! The append-only event log: per rollout, events numbered 1, 2, 3 … with no gap.
//!
//! Appending (one event, or a batch: group commit) bumps each rollout's `last_seq` by the
//! number of its events and inserts them, in one transaction. The `UPDATE` takes the rollout
//! row's lock (PostgreSQL) or the database's write lock (SQLite) before it reads `last_seq`, so
//! concurrent appenders, from any connection or process, queue up and each gets the next
//! numbers. The primary key (rollout_id, seq) backs this up: should two appends ever pick the
//! same seq, one fails and is retried (as are PostgreSQL deadlocks and serialization
//! failures), up to 20 attempts.

use std::time::Duration;

use crate::{Backend, EventRow, NewEvent, Store, StoreError, now_ms, with_pool};

/// Attempts per append before a conflict is reported as an error.
const MAX_ATTEMPTS: u32 = 20;

macro_rules! columns {
    () => {
        "rollout_id, seq, at_ms, server, pool, kind, detail"
    };
}

/// Events per INSERT statement: 7 parameters each, far below both backends' limits.
const INSERT_CHUNK: usize = 400;

/// `INSERT INTO events (…) VALUES (…), (…) …` for `rows` rows.
fn insert_rows(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|i| {
            let p = 7 * i;
            format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, ${})",
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5,
                p + 6,
                p + 7
            )
        })
        .collect();
    format!(
        concat!("INSERT INTO events (", columns!(), ") VALUES {}"),
        values.join(", ")
    )
}

impl Store {
    /// Appends one event to its rollout's log, numbered one past the rollout's last event and
    /// stamped with the system clock: a batch of one (see [`Store::append_events`]). Fails
    /// with [`StoreError::RolloutNotFound`] if the rollout does not exist.
    pub async fn append_event(&self, event: &NewEvent) -> Result<EventRow, StoreError> {
        let mut rows = self.append_events(std::slice::from_ref(event)).await?;
        Ok(rows.pop().expect("one row per event"))
    }

    /// Appends several events in ONE transaction (group commit: one fsync for the lot), each
    /// numbered one past the previous event of its rollout, in the order given. All or none
    /// are written. Fails with [`StoreError::RolloutNotFound`] if a rollout does not exist.
    pub async fn append_events(&self, events: &[NewEvent]) -> Result<Vec<EventRow>, StoreError> {
        const BUMP: &str =
            "UPDATE rollouts SET last_seq = last_seq + $2 WHERE id = $1 RETURNING last_seq";
        if events.is_empty() {
            return Ok(Vec::new());
        }
        // How many events each rollout gets, in the order rollouts first appear.
        let mut counts: Vec<(i64, i64)> = Vec::new();
        for event in events {
            match counts.iter_mut().find(|(id, _)| *id == event.rollout_id) {
                Some((_, n)) => *n += 1,
                None => counts.push((event.rollout_id, 1)),
            }
        }
        let mut attempt = 1;
        loop {
            let at_ms = now_ms();
            let appended = with_pool!(self, |p| {
                async {
                    let mut tx = p.begin().await?;
                    // The first seq of each rollout's share of the batch.
                    let mut next: Vec<(i64, i64)> = Vec::with_capacity(counts.len());
                    for &(id, n) in &counts {
                        let last: Option<i64> = sqlx::query_scalar(BUMP)
                            .bind(id)
                            .bind(n)
                            .fetch_optional(&mut *tx)
                            .await?;
                        match last {
                            Some(last) => next.push((id, last - n + 1)),
                            None => return Ok(Err(id)),
                        }
                    }
                    let mut rows = Vec::with_capacity(events.len());
                    for event in events {
                        let slot = next
                            .iter_mut()
                            .find(|(id, _)| *id == event.rollout_id)
                            .expect("counted above");
                        rows.push(EventRow {
                            rollout_id: event.rollout_id,
                            seq: slot.1,
                            at_ms,
                            server: event.server.clone(),
                            pool: event.pool.clone(),
                            kind: event.kind.clone(),
                            detail: event.detail.clone(),
                        });
                        slot.1 += 1;
                    }
                    // Many rows per statement: one round trip per few hundred events, which
                    // is what a batch costs on PostgreSQL over the network.
                    for chunk in rows.chunks(INSERT_CHUNK) {
                        let sql = insert_rows(chunk.len());
                        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                        for row in chunk {
                            query = query
                                .bind(row.rollout_id)
                                .bind(row.seq)
                                .bind(row.at_ms)
                                .bind(&row.server)
                                .bind(&row.pool)
                                .bind(&row.kind)
                                .bind(&row.detail);
                        }
                        query.execute(&mut *tx).await?;
                    }
                    tx.commit().await?;
                    Ok::<_, sqlx::Error>(Ok(rows))
                }
                .await
            });
            match appended {
                Ok(Ok(rows)) => return Ok(rows),
                Ok(Err(id)) => return Err(StoreError::RolloutNotFound { id }),
                Err(cause) if attempt < MAX_ATTEMPTS && is_conflict(self.backend(), &cause) => {
                    tokio::time::sleep(Duration::from_millis(u64::from(attempt) * 5)).await;
                    attempt += 1;
                }
                Err(cause) => {
                    let what = match events {
                        [event] => format!(
                            "appending a {:?} event to rollout {}",
                            event.kind, event.rollout_id
                        ),
                        _ => format!("appending {} events in one transaction", events.len()),
                    };
                    let what = if attempt > 1 {
                        format!("{what} (attempt {attempt})")
                    } else {
                        what
                    };
                    return Err(StoreError::Query { what, cause });
                }
            }
        }
    }

    /// Every `server_started` and `server_finished` event of one server, across all rollouts,
    /// in order: its history, from which past durations are read.
    pub async fn server_history(&self, server: &str) -> Result<Vec<EventRow>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            columns!(),
            " FROM events WHERE server = $1 AND kind IN ('server_started', 'server_finished') ORDER BY rollout_id, seq"
        );
        with_pool!(self, |p| {
            sqlx::query_as::<_, EventRow>(SQL)
                .bind(server)
                .fetch_all(p)
                .await
        })
        .map_err(StoreError::query(format!(
            "reading the history of {server}"
        )))
    }

    /// A rollout's events with `seq > after_seq`, in ascending seq order, at most `limit` of them
    /// when given (`Some(0)` or less: none). `after_seq = 0` starts from the first event.
    pub async fn events(
        &self,
        rollout_id: i64,
        after_seq: i64,
        limit: Option<i64>,
    ) -> Result<Vec<EventRow>, StoreError> {
        const ALL: &str = concat!(
            "SELECT ",
            columns!(),
            " FROM events WHERE rollout_id = $1 AND seq > $2 ORDER BY seq"
        );
        const SOME: &str = concat!(
            "SELECT ",
            columns!(),
            " FROM events WHERE rollout_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        );
        let what = || format!("reading the events of rollout {rollout_id} after seq {after_seq}");
        match limit {
            Some(limit) if limit <= 0 => Ok(Vec::new()),
            Some(limit) => with_pool!(self, |p| {
                sqlx::query_as::<_, EventRow>(SOME)
                    .bind(rollout_id)
                    .bind(after_seq)
                    .bind(limit)
                    .fetch_all(p)
                    .await
            })
            .map_err(StoreError::query(what())),
            None => with_pool!(self, |p| {
                sqlx::query_as::<_, EventRow>(ALL)
                    .bind(rollout_id)
                    .bind(after_seq)
                    .fetch_all(p)
                    .await
            })
            .map_err(StoreError::query(what())),
        }
    }
}

/// Whether an append failed only because another one got in its way, so trying again can work.
/// (SQLite's "database is locked" is not among them: the connection already waited its busy
/// timeout for the lock.)
fn is_conflict(backend: Backend, error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = error else {
        return false;
    };
    if db.is_unique_violation() {
        return true;
    }
    match backend {
        // serialization_failure, deadlock_detected, lock_not_available
        Backend::Postgres => matches!(db.code().as_deref(), Some("40001" | "40P01" | "55P03")),
        Backend::Sqlite => false,
    }
}
