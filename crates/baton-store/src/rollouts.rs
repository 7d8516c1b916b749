//! Rollouts: one row per rollout, with its inputs, state and plan figures.

use crate::{NewRollout, RolloutRow, Store, StoreError, now_ms, with_pool};

/// The columns of a [`RolloutRow`], for `concat!` into `&'static str` queries.
macro_rules! columns {
    () => {
        "id, fleet_name, fleet_toml, runbook_name, runbook_toml, params_json, state, \
         created_at_ms, planned_makespan_ms, lower_bound_ms"
    };
}

impl Store {
    /// Stores a new rollout in state `"running"`, created now; the database assigns its id.
    pub async fn create_rollout(&self, new: &NewRollout) -> Result<RolloutRow, StoreError> {
        const SQL: &str = concat!(
            "INSERT INTO rollouts (fleet_name, fleet_toml, runbook_name, runbook_toml, \
             params_json, state, created_at_ms, planned_makespan_ms, lower_bound_ms) \
             VALUES ($1, $2, $3, $4, $5, 'running', $6, $7, $8) RETURNING ",
            columns!()
        );
        let created_at_ms = now_ms();
        with_pool!(self, |p| {
            sqlx::query_as::<_, RolloutRow>(SQL)
                .bind(&new.fleet_name)
                .bind(&new.fleet_toml)
                .bind(&new.runbook_name)
                .bind(&new.runbook_toml)
                .bind(&new.params_json)
                .bind(created_at_ms)
                .bind(new.planned_makespan_ms)
                .bind(new.lower_bound_ms)
                .fetch_one(p)
                .await
        })
        .map_err(StoreError::query(format!(
            "creating a rollout of fleet {:?}",
            new.fleet_name
        )))
    }

    /// The rollout with this id, if there is one.
    pub async fn rollout(&self, id: i64) -> Result<Option<RolloutRow>, StoreError> {
        const SQL: &str = concat!("SELECT ", columns!(), " FROM rollouts WHERE id = $1");
        with_pool!(self, |p| {
            sqlx::query_as::<_, RolloutRow>(SQL)
                .bind(id)
                .fetch_optional(p)
                .await
        })
        .map_err(StoreError::query(format!("reading rollout {id}")))
    }

    /// Rollouts not in a final state (`finished`, `aborted`), oldest first: what a starting
    /// controller takes over.
    pub async fn unfinished_rollouts(&self) -> Result<Vec<RolloutRow>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            columns!(),
            " FROM rollouts WHERE state NOT IN ('finished', 'aborted') ORDER BY id"
        );
        with_pool!(self, |p| {
            sqlx::query_as::<_, RolloutRow>(SQL).fetch_all(p).await
        })
        .map_err(StoreError::query("reading the unfinished rollouts"))
    }

    /// The rollout with the highest id, if any.
    pub async fn latest_rollout(&self) -> Result<Option<RolloutRow>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            columns!(),
            " FROM rollouts ORDER BY id DESC LIMIT 1"
        );
        with_pool!(self, |p| {
            sqlx::query_as::<_, RolloutRow>(SQL).fetch_optional(p).await
        })
        .map_err(StoreError::query("reading the latest rollout"))
    }

    /// Sets a rollout's state (free text: `"running"`, `"done"`, `"failed"` …).
    /// Fails with [`StoreError::RolloutNotFound`] if there is no such rollout.
    pub async fn set_rollout_state(&self, id: i64, state: &str) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE rollouts SET state = $2 WHERE id = $1";
        let updated = with_pool!(self, |p| {
            sqlx::query(SQL)
                .bind(id)
                .bind(state)
                .execute(p)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(StoreError::query(format!(
            "setting rollout {id}'s state to {state:?}"
        )))?;
        if updated == 0 {
            return Err(StoreError::RolloutNotFound { id });
        }
        Ok(())
    }
}
