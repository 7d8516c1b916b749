//! Workers: the agents that have connected to the controller, and their liveness.

use crate::{Store, StoreError, WorkerRow, now_ms, with_pool};

impl Store {
    /// Registers a worker, or updates it if its fqdn is known: version, platform, `known`,
    /// connected, last heartbeat now. A batch of one (see [`Store::workers_upsert`]).
    pub async fn worker_connected(
        &self,
        fqdn: &str,
        version: &str,
        platform: &str,
        known: bool,
    ) -> Result<(), StoreError> {
        self.workers_upsert(&[WorkerRow {
            fqdn: fqdn.to_string(),
            version: version.to_string(),
            platform: platform.to_string(),
            known,
            connected: true,
            last_heartbeat_ms: Some(now_ms()),
        }])
        .await
    }

    /// Registers or updates many workers at once (their version, platform, `known`,
    /// connected flag and last-seen time): one statement per few hundred workers, so that a
    /// fleet connecting or disconnecting together costs a handful of writes, not one each.
    pub async fn workers_upsert(&self, workers: &[WorkerRow]) -> Result<(), StoreError> {
        /// Rows per statement: 6 parameters each, far below both backends' limits.
        const CHUNK: usize = 500;
        for chunk in workers.chunks(CHUNK) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let p = 6 * i;
                    format!(
                        "(${}, ${}, ${}, ${}, ${}, ${})",
                        p + 1,
                        p + 2,
                        p + 3,
                        p + 4,
                        p + 5,
                        p + 6
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO workers (fqdn, version, platform, known, connected, last_heartbeat_ms) \
                 VALUES {} ON CONFLICT (fqdn) DO UPDATE SET version = excluded.version, \
                 platform = excluded.platform, known = excluded.known, \
                 connected = excluded.connected, last_heartbeat_ms = excluded.last_heartbeat_ms",
                rows.join(", ")
            );
            with_pool!(self, |p| {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
                for worker in chunk {
                    query = query
                        .bind(&worker.fqdn)
                        .bind(&worker.version)
                        .bind(&worker.platform)
                        .bind(worker.known)
                        .bind(worker.connected)
                        .bind(worker.last_heartbeat_ms);
                }
                query.execute(p).await.map(|_| ())
            })
            .map_err(StoreError::query(format!(
                "registering {} workers",
                chunk.len()
            )))?;
        }
        Ok(())
    }

    /// Records many workers' last-seen times (Unix ms) at once: one statement per few hundred
    /// workers, instead of one write per heartbeat. Unknown FQDNs are ignored; a time older
    /// than the one stored does not replace it.
    pub async fn workers_seen(&self, seen: &[(String, i64)]) -> Result<(), StoreError> {
        /// Rows per statement: 2 parameters each, far below both backends' limits.
        const CHUNK: usize = 500;
        for chunk in seen.chunks(CHUNK) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
                .collect();
            // Both SQLite (3.33+) and PostgreSQL take a CTE of VALUES and UPDATE ... FROM.
            let sql = format!(
                "WITH seen (fqdn, at_ms) AS (VALUES {}) \
                 UPDATE workers SET last_heartbeat_ms = seen.at_ms FROM seen \
                 WHERE workers.fqdn = seen.fqdn \
                 AND (workers.last_heartbeat_ms IS NULL OR workers.last_heartbeat_ms < seen.at_ms)",
                rows.join(", ")
            );
            with_pool!(self, |p| {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.clone()));
                for (fqdn, at_ms) in chunk {
                    query = query.bind(fqdn).bind(*at_ms);
                }
                query.execute(p).await.map(|_| ())
            })
            .map_err(StoreError::query(format!(
                "recording the last-seen times of {} workers",
                chunk.len()
            )))?;
        }
        Ok(())
    }

    /// Every worker ever registered, ordered by fqdn (byte order on both backends).
    pub async fn workers(&self) -> Result<Vec<WorkerRow>, StoreError> {
        const SQL: &str = "SELECT fqdn, version, platform, known, connected, last_heartbeat_ms \
             FROM workers ORDER BY fqdn";
        with_pool!(self, |p| {
            sqlx::query_as::<_, WorkerRow>(SQL).fetch_all(p).await
        })
        .map_err(StoreError::query("listing workers"))
    }
}
