//! What the engine tells the metrics: the gauges' snapshot (refreshed every watch round) and
//! the event-driven counters and histograms.

use super::Engine;
use crate::metrics::{PoolOutage, RolloutView, SERVER_STATES, Snapshot};
use crate::run::RunState;
use baton_core::fleet::ServerId;
use opentelemetry::KeyValue;
use std::collections::BTreeMap;

impl Engine {
    /// Rebuilds the gauges' snapshot from the engine's state.
    pub(crate) fn publish_metrics(&mut self) {
        let kept = self.finished_series_kept;
        // Decided once, with each shown rollout's expected end (which needs `&mut`).
        let ends: BTreeMap<i64, Option<u64>> = self
            .rollouts
            .values_mut()
            .filter(|run| run.ended_ago().is_none_or(|ago| ago < kept))
            .map(|run| (run.id, run.expected_end()))
            .collect();
        let rollouts = ends
            .iter()
            .map(|(id, end)| (&self.rollouts[id], *end))
            .map(|(run, end)| {
                // States are counted straight from the scheduler: `status` would also explain
                // every waiting server, which is costly at fleet scale and unused here.
                let mut servers = [0u64; 7];
                let mut lost_workers = Vec::new();
                let mut needing_attention = Vec::new();
                for server in 0..run.fleet.servers.len() {
                    let state = run.server_state(server);
                    if let Some(i) = SERVER_STATES.iter().position(|s| *s == state) {
                        servers[i] += 1;
                    }
                    let fqdn = run.fqdn(server);
                    let named = || (fqdn.to_string(), run.pool_fqdn(server).to_string());
                    if state == "running" && !self.workers.contains_key(&super::worker_key(fqdn)) {
                        lost_workers.push(named());
                    } else if state == "needs_attention" {
                        needing_attention.push(named());
                    }
                }
                let now = run.now();
                let eta_seconds = end.map_or(0.0, |end| end.saturating_sub(now) as f64 / 1000.0);
                let pools_in_maintenance = run
                    .watchdog
                    .outages(now)
                    .into_iter()
                    .map(|(_, pool, elapsed, budget)| PoolOutage {
                        pool: run.fleet.pools[pool].fqdn.clone(),
                        elapsed_seconds: elapsed as f64 / 1000.0,
                        budget_seconds: budget as f64 / 1000.0,
                    })
                    .collect();
                let state = match run.state {
                    RunState::Paused if !run.at_risk.is_empty() => "resiliency_risk",
                    RunState::Aborting => "aborted",
                    other => other.as_str(),
                };
                RolloutView {
                    id: run.id.to_string(),
                    state,
                    servers,
                    eta_seconds,
                    last_progress_unix_seconds: run.last_progress_ms as f64 / 1000.0,
                    lost_workers,
                    needing_attention,
                    pools_in_maintenance,
                    pools_at_risk: run
                        .at_risk
                        .iter()
                        .map(|&pool| run.fleet.pools[pool].fqdn.clone())
                        .collect(),
                }
            })
            .collect();
        self.telemetry.publish(Snapshot {
            workers_connected: self.workers.len() as u64,
            rollouts,
        });
    }

    /// A step attempt began: time it; a retry is counted.
    pub(crate) fn observe_step_started(
        &mut self,
        id: i64,
        server: ServerId,
        step: &str,
        attempt: u32,
    ) {
        self.step_clock
            .insert((id, server), std::time::Instant::now());
        if attempt > 1 {
            self.telemetry
                .metrics
                .step_retries
                .add(1, &[KeyValue::new("step", step.to_string())]);
        }
    }

    /// A step attempt ended: its duration by the worker's clock when it says
    /// (`StepFinished.duration_ms`), else from when its start reached the controller.
    pub(crate) fn observe_step_finished(
        &mut self,
        id: i64,
        server: ServerId,
        step: &str,
        succeeded: bool,
        worker_ms: Option<u64>,
    ) {
        let began = self.step_clock.remove(&(id, server));
        let seconds = match (worker_ms, began) {
            (Some(ms), _) => Some(ms as f64 / 1000.0),
            (None, Some(began)) => Some(began.elapsed().as_secs_f64()),
            (None, None) => None,
        };
        if let Some(seconds) = seconds {
            let outcome = if succeeded { "succeeded" } else { "failed" };
            self.telemetry.metrics.step_duration.record(
                seconds,
                &[
                    KeyValue::new("step", step.to_string()),
                    KeyValue::new("outcome", outcome),
                ],
            );
        }
    }

    /// A server's result is in: failures are counted, a back end's outage is measured (before
    /// the watchdog stops timing it), and the slot it frees starts the dispatch clock.
    pub(crate) fn observe_server_finished(&mut self, id: i64, server: ServerId, succeeded: bool) {
        let run = &self.rollouts[&id];
        let pool = run.pool_fqdn(server).to_string();
        if !succeeded {
            self.telemetry.metrics.server_failures.add(
                1,
                &[
                    KeyValue::new("rollout", id.to_string()),
                    KeyValue::new("pool", pool),
                ],
            );
        } else if let Some((elapsed, _)) = run.watchdog.outage(server, run.now()) {
            self.telemetry
                .metrics
                .pool_outage
                .record(elapsed as f64 / 1000.0, &[]);
        }
        self.slot_freed = Some(std::time::Instant::now());
    }

    /// An assignment was sent: how long since a slot freed.
    pub(crate) fn observe_dispatch(&mut self) {
        if let Some(freed) = self.slot_freed {
            self.telemetry
                .metrics
                .dispatch_latency
                .record(freed.elapsed().as_secs_f64(), &[]);
        }
    }

    pub(crate) fn observe_watchdog(&self, id: i64, pool: &str, level: &str) {
        self.telemetry.metrics.watchdog_events.add(
            1,
            &[
                KeyValue::new("rollout", id.to_string()),
                KeyValue::new("pool", pool.to_string()),
                KeyValue::new("kind", level.to_string()),
            ],
        );
    }

    /// Counters exist at 0 from the start, so a first failure shows as an increase.
    pub(crate) fn observe_rollout_started(&self, id: i64) {
        let run = &self.rollouts[&id];
        for pool in &run.fleet.pools {
            let labels = [
                KeyValue::new("rollout", id.to_string()),
                KeyValue::new("pool", pool.fqdn.clone()),
            ];
            self.telemetry.metrics.server_failures.add(0, &labels);
        }
        let steps: std::collections::BTreeSet<&str> = run
            .workload
            .steps
            .iter()
            .flatten()
            .map(|step| step.id.as_str())
            .collect();
        for step in steps {
            let labels = [KeyValue::new("step", step.to_string())];
            self.telemetry.metrics.step_retries.add(0, &labels);
        }
    }
}
