//! The controller's state and every transition of it. One instance behind a mutex: gRPC
//! handlers take turns, and each change is committed to the event log before it is acted on.

use crate::events::{EventLog, kind};
use crate::metrics::Telemetry;
use crate::run::{RolloutRun, RunState};
use crate::spans::AttemptResult;
use baton_core::assignment::{Ignored, Refusal, Report, Verdict};
use baton_core::fleet::{ServerId, is_valid_fqdn};
use baton_core::rollout::plan_at;
use baton_core::scheduler::{Action, Event, Outcome, Scheduler, Strategy};
use baton_core::time::clock;
use baton_core::watchdog::BudgetLevel;
use baton_core::workload::build_workload;
use baton_core::{Fleet, Runbook};
use baton_proto::v1;
use baton_store::{NewRollout, StoreError};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;
use tonic::Status;

#[path = "observe.rs"]
mod observe;
#[path = "recover.rs"]
mod recover;

/// How often workers send heartbeats, in a small fleet (see [`heartbeat_interval`]).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// The longest heartbeat interval a large fleet is told.
pub const MAX_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// Heartbeats the controller is willing to take per second, fleet-wide, by default: past this
/// many connected workers, each is told to beat less often.
pub const HEARTBEATS_PER_SECOND: u64 = 1000;
/// How often connected workers' heartbeat intervals are looked at again.
const RETUNE_EVERY: Duration = Duration::from_secs(5);
/// Last-seen times are written to the store in one batch at most this often: heartbeats only
/// refresh memory.
pub const LAST_SEEN_FLUSH_EVERY: Duration = Duration::from_secs(10);
/// Silent workers are looked for this often.
const REAP_EVERY: Duration = Duration::from_secs(1);

/// The heartbeat interval told to a worker when `connected` workers are connected: 1 s up to
/// `per_second` workers (a thousand by default), then longer so that the fleet's heartbeats
/// stay near `per_second` (Nomad scales its heartbeat TTL the same way), at most 5 s.
pub fn heartbeat_interval_for(connected: usize, per_second: u64) -> Duration {
    let per_worker_ms = (connected as u64).saturating_mul(1000) / per_second.max(1);
    Duration::from_millis(per_worker_ms).clamp(HEARTBEAT_INTERVAL, MAX_HEARTBEAT_INTERVAL)
}

pub type WorkerTx = mpsc::UnboundedSender<Result<v1::ControllerMessage, Status>>;

struct WorkerLink {
    connection: u64,
    tx: WorkerTx,
    /// The heartbeat interval it was told in its Welcome.
    heartbeat: Duration,
    /// What it said in its Hello, as registered.
    registration: baton_store::WorkerRow,
    /// When its last message of any kind arrived (Unix ms), stamped by its stream's reader
    /// without taking the engine: heartbeats never reach the owner loop.
    seen: Arc<AtomicI64>,
    /// The last-seen time last written to the store.
    seen_flushed: i64,
}

/// A worker silent this long (no heartbeat, no report) is taken as lost, by default.
pub const DEFAULT_WORKER_TIMEOUT: Duration = Duration::from_secs(15);

/// Something that leaves the controller once the owner's batch is committed.
enum Deferred {
    /// An assignment to its server's worker: rollout, server, assignment id.
    Deliver(i64, ServerId, String),
    /// Any other message to one stream.
    Send(WorkerTx, v1::controller_message::Body),
}

pub struct Engine {
    log: EventLog,
    /// The store's identity: part of every assignment id, and told to workers in `Welcome`.
    store_id: String,
    /// This controller's fencing epoch, stamped on every Welcome and Assignment.
    epoch: u64,
    /// A worker silent this long is taken as lost.
    worker_timeout: Duration,
    /// Connected workers by [`worker_key`]: FQDNs compare case-insensitively, as in fleets.
    workers: HashMap<String, WorkerLink>,
    /// Workers gone since (by [`worker_key`]), until they say hello again.
    lost: HashMap<String, Instant>,
    /// How often each worker's stream has dropped since this controller started, and when it
    /// last did (by [`worker_key`]): `baton servers` shows flapping workers.
    drops: HashMap<String, (u64, i64)>,
    next_connection: u64,
    rollouts: BTreeMap<i64, RolloutRun>,
    next_assignment: u64,
    telemetry: Arc<Telemetry>,
    /// When a server's result came in, while the starts it allows are sent (dispatch
    /// latency).
    slot_freed: Option<Instant>,
    /// When each running step began, by rollout and server (step durations).
    step_clock: HashMap<(i64, ServerId), Instant>,
    /// When the gauges' snapshot was last rebuilt (once a second).
    published: Option<Instant>,
    /// How long a finished rollout's gauges stay exported.
    finished_series_kept: Duration,
    /// The event log's live feed, while traces are on (OTLP traces are exported): the
    /// rollout-level events become events of the `rollout` span.
    trace_feed: Option<tokio::sync::broadcast::Receiver<baton_store::EventRow>>,
    /// Set when the controller stops: workers' streams ending then are not lost workers.
    stopping: bool,
    /// Registrations (Hello) and disconnects not yet written to the store, by
    /// [`worker_key`]: written in one batch every watch round.
    unsaved_workers: HashMap<String, baton_store::WorkerRow>,
    /// What the owner's open batch will send once its events are committed.
    deferred: Vec<Deferred>,
    /// Step output the owner's open batch gathered: rollout, server, chunk.
    pending_output: Vec<(i64, ServerId, baton_store::NewStepOutput)>,
    last_seen_flushed: Instant,
    last_reaped: Instant,
    last_retuned: Instant,
    /// See [`Engine::set_heartbeats_per_second`].
    heartbeats_per_second: u64,
}

/// The key of a worker in `Engine::workers`: FQDNs are case-insensitive (a Windows host often
/// names itself in capitals while the fleet file has it in lower case).
fn worker_key(fqdn: &str) -> String {
    fqdn.to_ascii_lowercase()
}

fn store_error(err: StoreError) -> Status {
    tracing::error!(%err, "store");
    Status::unavailable(format!("the controller's store failed: {err}"))
}

impl Engine {
    pub fn new(
        log: EventLog,
        store_id: String,
        epoch: u64,
        worker_timeout: Duration,
        telemetry: Arc<Telemetry>,
    ) -> Self {
        Engine {
            telemetry,
            slot_freed: None,
            step_clock: HashMap::new(),
            published: None,
            finished_series_kept: crate::server::FINISHED_SERIES_KEPT,
            trace_feed: None,
            stopping: false,
            log,
            store_id,
            epoch,
            worker_timeout,
            workers: HashMap::new(),
            lost: HashMap::new(),
            drops: HashMap::new(),
            deferred: Vec::new(),
            pending_output: Vec::new(),
            unsaved_workers: HashMap::new(),
            last_seen_flushed: Instant::now(),
            last_reaped: Instant::now(),
            last_retuned: Instant::now(),
            heartbeats_per_second: HEARTBEATS_PER_SECOND,
            next_connection: 1,
            rollouts: BTreeMap::new(),
            next_assignment: 1,
        }
    }

    pub fn log(&self) -> &EventLog {
        &self.log
    }

    /// Record each rollout's trace from now on (rollouts taken over included).
    pub fn set_traces(&mut self, traces: bool) {
        self.trace_feed = traces.then(|| self.log.subscribe());
    }

    /// Hands the events logged since the last call to their rollouts' traces.
    fn drain_trace_feed(&mut self) {
        use tokio::sync::broadcast::error::TryRecvError;
        let Some(feed) = self.trace_feed.as_mut() else {
            return;
        };
        loop {
            match feed.try_recv() {
                Ok(row) => {
                    if let Some(run) = self.rollouts.get_mut(&row.rollout_id) {
                        let at = crate::spans::at_ms(row.at_ms);
                        run.trace
                            .note(&row.kind, row.server.as_deref(), &row.detail, at);
                    }
                }
                Err(TryRecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "events not added to the traces");
                }
                Err(TryRecvError::Empty | TryRecvError::Closed) => return,
            }
        }
    }

    pub fn set_finished_series_kept(&mut self, kept: Duration) {
        self.finished_series_kept = kept;
    }

    /// The fleet-wide heartbeat rate the intervals told to workers aim at.
    pub fn set_heartbeats_per_second(&mut self, per_second: u64) {
        self.heartbeats_per_second = per_second.max(1);
    }

    /// Workers told a heartbeat interval when the fleet was smaller are told a longer one (in
    /// a new `Welcome`) once the right interval is at least twice theirs: a fleet that grew
    /// keeps near its heartbeat rate, and each worker hears of it only a few times.
    fn retune_heartbeats(&mut self) {
        let connected = self.workers.len();
        let target = heartbeat_interval_for(connected, self.heartbeats_per_second);
        let mut retuned = 0;
        for link in self.workers.values_mut() {
            if target < link.heartbeat * 2 && target != MAX_HEARTBEAT_INTERVAL {
                continue;
            }
            if target <= link.heartbeat {
                continue;
            }
            link.heartbeat = target;
            retuned += 1;
            send(
                &link.tx,
                v1::controller_message::Body::Welcome(v1::Welcome {
                    known: link.registration.known,
                    note: format!(
                        "{} workers connected: heartbeat every {} ms",
                        connected,
                        target.as_millis()
                    ),
                    heartbeat_interval_ms: u32::try_from(target.as_millis()).unwrap_or(u32::MAX),
                    epoch: self.epoch,
                    store_id: self.store_id.clone(),
                }),
            );
        }
        if retuned > 0 {
            tracing::info!(
                retuned,
                interval_ms = target.as_millis() as u64,
                "longer heartbeat interval told to workers"
            );
        }
    }

    /// The tracer a new rollout's trace is built with, if traces are on.
    fn tracer(&self) -> Option<opentelemetry::global::BoxedTracer> {
        self.trace_feed
            .is_some()
            .then(|| opentelemetry::global::tracer("baton-controller"))
    }

    fn active_rollout_of(&self, fqdn: &str) -> Option<(i64, ServerId)> {
        self.rollouts
            .values()
            .filter(|run| !run.state.is_over())
            .find_map(|run| run.server_by_fqdn(fqdn).map(|server| (run.id, server)))
    }

    // ---- operator side -------------------------------------------------------------------

    pub async fn apply(&mut self, request: v1::ApplyRequest) -> Result<i64, Status> {
        let overrides: Vec<(String, String)> = request.params.clone().into_iter().collect();
        let (fleet, runbook, mut workload) = prepare(
            &request.fleet_name,
            &request.fleet_toml,
            &request.runbook_name,
            &request.runbook_toml,
            &overrides,
        )?;
        self.admit_by_history(&fleet, &mut workload).await?;
        for server in &fleet.servers {
            if let Some((other, _)) = self.active_rollout_of(&server.fqdn) {
                return Err(Status::failed_precondition(format!(
                    "server {} is already in rollout {other}, which has not finished",
                    server.fqdn
                )));
            }
        }
        let planned = plan_at(&fleet, &workload, Strategy::Baton, baton_store::now_ms())
            .map_err(|e| Status::internal(e.to_string()))?;
        let as_ms = |s: f64| (s * 1000.0).round() as u64;
        let (makespan, bound) = (as_ms(planned.makespan_s), as_ms(planned.lower_bound_s));
        let row = self
            .log
            .store()
            .create_rollout(&NewRollout {
                fleet_name: request.fleet_name.clone(),
                fleet_toml: request.fleet_toml.clone(),
                runbook_name: request.runbook_name.clone(),
                runbook_toml: request.runbook_toml.clone(),
                params_json: params_json(&request.params),
                planned_makespan_ms: makespan as i64,
                lower_bound_ms: bound as i64,
            })
            .await
            .map_err(store_error)?;
        let started = self
            .log
            .append_now(
                row.id,
                None,
                None,
                kind::ROLLOUT_STARTED,
                format!(
                    "fleet {}: {} servers in {} pools, runbook {}; planned {} (lower bound {})",
                    fleet.name,
                    fleet.servers.len(),
                    fleet.pools.len(),
                    runbook.name,
                    clock(makespan),
                    clock(bound)
                ),
            )
            .await
            .map_err(store_error)?;
        // Time 0 is the logged start, so a replay after a restart judges windows the same.
        let scheduler =
            Scheduler::starting_at(&fleet, &workload.expected, Strategy::Baton, started.at_ms);
        let run = RolloutRun::new(
            row.id,
            fleet,
            workload,
            runbook.shell,
            scheduler,
            row.created_at_ms,
            makespan,
            bound,
            self.tracer(),
        );
        let trace_id = run.trace.trace_id().map(tracing::field::display);
        self.rollouts.insert(row.id, run);
        self.observe_rollout_started(row.id);
        tracing::info!(rollout = row.id, trace_id, "rollout started");
        self.drive(row.id, &[Event::Begin]).await?;
        Ok(row.id)
    }

    /// Admission by history: a back end that has run these very steps before is expected to
    /// take the p95 of its past runs (when longer than its `expected_duration`); if that does
    /// not fit its pool's outage budget, the rollout is refused (R6), naming it.
    async fn admit_by_history(
        &self,
        fleet: &Fleet,
        workload: &mut baton_core::workload::Workload,
    ) -> Result<(), Status> {
        for (server, srv) in fleet.servers.iter().enumerate() {
            if !srv.role.is_backend_class() {
                continue;
            }
            let fingerprint = format!(
                "steps {}",
                crate::run::steps_fingerprint(&workload.steps[server])
            );
            let history = self
                .log
                .store()
                .server_history(&srv.fqdn)
                .await
                .map_err(store_error)?;
            let mut durations: Vec<u64> = Vec::new();
            let mut open: Option<(i64, i64, bool)> = None;
            for event in history {
                if event.kind == kind::SERVER_STARTED {
                    open = Some((
                        event.rollout_id,
                        event.at_ms,
                        event.detail.ends_with(&fingerprint),
                    ));
                } else if let Some((rollout, started, same_steps)) = open.take()
                    && rollout == event.rollout_id
                    && same_steps
                    && event.detail == "succeeded"
                {
                    durations.push(u64::try_from(event.at_ms - started).unwrap_or(0));
                }
            }
            if durations.is_empty() {
                continue;
            }
            durations.sort_unstable();
            let p95 = durations[(durations.len() * 95).div_ceil(100).max(1) - 1];
            let pool = &fleet.pools[srv.pool];
            if p95 >= pool.outage_budget {
                return Err(Status::invalid_argument(format!(
                    "R6: {}'s past runs of these steps took {} (p95 of {} run(s)), which does not fit {}'s outage_budget of {}; it would not be started",
                    srv.fqdn,
                    baton_core::time::human(p95),
                    durations.len(),
                    pool.fqdn,
                    baton_core::time::human(pool.outage_budget)
                )));
            }
            workload.expected[server] = workload.expected[server].max(p95);
        }
        Ok(())
    }

    fn resolve_rollout(&self, rollout_id: &str) -> Result<i64, Status> {
        if rollout_id.is_empty() {
            return self
                .rollouts
                .keys()
                .next_back()
                .copied()
                .ok_or_else(|| Status::not_found("no rollout yet: start one with `baton apply`"));
        }
        let id: i64 = rollout_id.parse().map_err(|_| {
            Status::invalid_argument(format!("rollout id {rollout_id:?} is not a number"))
        })?;
        if self.rollouts.contains_key(&id) {
            Ok(id)
        } else {
            Err(Status::not_found(format!(
                "rollout {id} is not known to this controller (its events, if any, are in `baton events {id}`)"
            )))
        }
    }

    pub fn status(&self, rollout_id: &str) -> Result<v1::RolloutStatus, Status> {
        let id = self.resolve_rollout(rollout_id)?;
        let connected = |fqdn: &str| self.workers.contains_key(&worker_key(fqdn));
        let lost_for = |fqdn: &str| {
            self.lost
                .get(&worker_key(fqdn))
                .map(|since| since.elapsed().as_secs_f64())
        };
        Ok(self.rollouts[&id].status(&connected, &lost_for))
    }

    /// Pause, resume or abort: the event is committed, then the scheduler told.
    pub async fn control(
        &mut self,
        rollout_id: &str,
        event: Event,
        force: bool,
    ) -> Result<v1::RolloutStatus, Status> {
        let id = self.resolve_rollout(rollout_id)?;
        let state = self.rollouts[&id].state;
        if state.is_over() {
            return Err(Status::failed_precondition(format!(
                "rollout {id} is already {}",
                state.as_str()
            )));
        }
        if event == Event::Abort && force {
            return self.force_abort(id).await;
        }
        let (event_kind, next) = match (event, state) {
            (Event::Pause, RunState::Running) => (kind::ROLLOUT_PAUSED, RunState::Paused),
            (Event::Resume, RunState::Paused) => (kind::ROLLOUT_RESUMED, RunState::Running),
            (Event::Approve, RunState::AwaitingApproval) => {
                (kind::ROLLOUT_APPROVED, RunState::Running)
            }
            (Event::Approve, _) => {
                return Err(Status::failed_precondition(format!(
                    "rollout {id} is not waiting for approval (it is {})",
                    state.as_str()
                )));
            }
            (Event::Abort, RunState::Running | RunState::Paused | RunState::AwaitingApproval) => {
                (kind::ROLLOUT_ABORTED, RunState::Aborting)
            }
            // Already in the asked-for state: nothing to record.
            _ => return self.status(&id.to_string()),
        };
        self.log
            .append(id, None, None, event_kind, "requested by an operator")
            .await
            .map_err(store_error)?;
        let run = self.rollouts.get_mut(&id).expect("resolved");
        run.state = next;
        if matches!(event, Event::Resume | Event::Approve) {
            // The operator has seen why it stopped (a budget used up, the canary) and goes on.
            run.note = None;
            run.at_risk.clear();
        }
        self.drive(id, &[event]).await?;
        self.status(&id.to_string())
    }

    /// `abort --force`: starts nothing more and cancels the steps running now. The event names
    /// the servers left mid-runbook; each then ends `failed` when its worker confirms.
    async fn force_abort(&mut self, id: i64) -> Result<v1::RolloutStatus, Status> {
        let run = &self.rollouts[&id];
        let mut running: Vec<(String, ServerId)> = run
            .ledger
            .open()
            .filter(|(_, server)| !run.undelivered.contains(server))
            .map(|(assignment, server)| (assignment.to_string(), server))
            .collect();
        running.sort_by_key(|&(_, server)| server);
        let names: Vec<String> = running
            .iter()
            .map(|&(_, s)| run.fqdn(s).to_string())
            .collect();
        let detail = if names.is_empty() {
            "requested by an operator, forced: no step was running".to_string()
        } else {
            format!(
                "requested by an operator, forced: cancelling the steps running on {} (left mid-runbook)",
                names.join(", ")
            )
        };
        self.log
            .append(id, None, None, kind::ROLLOUT_ABORTED, detail)
            .await
            .map_err(store_error)?;
        let was = self.rollouts[&id].state;
        self.rollouts.get_mut(&id).expect("resolved").state = RunState::Aborting;
        for (assignment_id, server) in &running {
            let fqdn = self.rollouts[&id].fqdn(*server).to_string();
            if let Some(link) = self.workers.get(&worker_key(&fqdn)) {
                send(
                    &link.tx,
                    v1::controller_message::Body::Cancel(v1::Cancel {
                        assignment_id: assignment_id.clone(),
                    }),
                );
            }
        }
        // The scheduler hears of the abort once (a second, forced abort only cancels).
        if was != RunState::Aborting {
            self.drive(id, &[Event::Abort]).await?;
        }
        self.status(&id.to_string())
    }

    /// `baton servers`: the store's worker rows (read without the engine's lock, so a fleet's
    /// worth of rows does not hold up the owner loop), completed from memory.
    pub fn servers_from(&self, rows: Vec<baton_store::WorkerRow>) -> v1::ListServersResponse {
        // Registrations not yet written replace or complete the store's rows.
        let mut rows: BTreeMap<String, baton_store::WorkerRow> = rows
            .into_iter()
            .map(|row| (worker_key(&row.fqdn), row))
            .collect();
        for (key, row) in &self.unsaved_workers {
            rows.insert(key.clone(), row.clone());
        }
        let mut rows: Vec<baton_store::WorkerRow> = rows.into_values().collect();
        rows.sort_by(|a, b| a.fqdn.cmp(&b.fqdn));
        v1::ListServersResponse {
            workers: rows
                .into_iter()
                .map(|row| {
                    let (drops, last_drop) = self
                        .drops
                        .get(&worker_key(&row.fqdn))
                        .map_or((0, String::new()), |&(drops, at)| {
                            (drops, baton_store::rfc3339_ms(at))
                        });
                    v1::WorkerInfo {
                        connected: self.workers.contains_key(&worker_key(&row.fqdn)),
                        drops,
                        last_drop,
                        // In any fleet this controller has run, whenever the worker connected.
                        known: row.known
                            || self
                                .rollouts
                                .values()
                                .any(|run| run.server_by_fqdn(&row.fqdn).is_some()),
                        last_heartbeat: row
                            .last_heartbeat_ms
                            .max(self.link_seen(&row.fqdn))
                            .map(baton_store::rfc3339_ms)
                            .unwrap_or_default(),
                        fqdn: row.fqdn,
                        version: row.version,
                        platform: row.platform,
                    }
                })
                .collect(),
        }
    }

    /// Whether the rollout has ended (for event followers).
    pub fn is_over(&self, rollout_id: i64) -> Option<bool> {
        self.rollouts
            .get(&rollout_id)
            .map(|run| run.state.is_over())
    }

    /// The watchdog's round: records each back end crossing 50%, 80% or 100% of its pool's
    /// outage budget; at 100% the rollout stops starting servers until an operator resumes it.
    pub async fn watch(&mut self) -> Result<(), Status> {
        self.drain_trace_feed();
        if self.last_retuned.elapsed() >= RETUNE_EVERY {
            self.last_retuned = Instant::now();
            self.retune_heartbeats();
        }
        if self.last_reaped.elapsed() >= REAP_EVERY {
            self.last_reaped = Instant::now();
            self.reap_silent_workers().await;
        }
        self.flush_registrations().await;
        if self.last_seen_flushed.elapsed() >= LAST_SEEN_FLUSH_EVERY {
            self.flush_last_seen().await;
        }
        // A batch whose commit failed left its assignments and discards waiting.
        if !self.deferred.is_empty() && self.commit_before_acting().await {
            self.flush_deferred();
        }
        let ids: Vec<i64> = self
            .rollouts
            .values()
            .filter(|run| !run.state.is_over())
            .map(|run| run.id)
            .collect();
        for id in ids {
            self.wake_for_windows(id).await?;
            let run = self.rollouts.get_mut(&id).expect("listed");
            let now = run.now();
            let alerts = run.watchdog.check(now);
            for alert in alerts {
                let (name, pool) = self.names(id, alert.server);
                let text = format!(
                    "{name} has been down {} of {pool}'s {} outage budget ({}%)",
                    clock(alert.elapsed),
                    clock(alert.budget),
                    alert.level.percent()
                );
                let exhausted = alert.level == BudgetLevel::Exhausted;
                tracing::warn!(rollout = id, server = %name, "{text}");
                let level = match alert.level {
                    BudgetLevel::Half => "budget_50",
                    BudgetLevel::Most => "budget_80",
                    BudgetLevel::Exhausted => "resiliency_risk",
                };
                self.observe_watchdog(id, &pool, level);
                if exhausted {
                    let run = self.rollouts.get_mut(&id).expect("listed");
                    run.at_risk.insert(alert.pool);
                }
                let event_kind = if exhausted {
                    kind::RESILIENCY_RISK
                } else {
                    kind::BUDGET_WARNING
                };
                self.log
                    .append(id, Some(&name), Some(&pool), event_kind, text.clone())
                    .await
                    .map_err(store_error)?;
                let run = self.rollouts.get_mut(&id).expect("listed");
                if exhausted && run.state == RunState::Running {
                    let note = format!(
                        "resiliency risk: {text}; no server starts until `baton resume {id}`"
                    );
                    self.log
                        .append(id, None, None, kind::ROLLOUT_PAUSED, note.clone())
                        .await
                        .map_err(store_error)?;
                    let run = self.rollouts.get_mut(&id).expect("listed");
                    run.state = RunState::Paused;
                    run.note = Some(note);
                    self.drive(id, &[Event::Pause]).await?;
                }
            }
        }
        // Each rebuild walks every rollout under the engine's lock (the ETA's simulation is
        // cached in each run): once a second is plenty for a 15 s scrape.
        if self
            .published
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(1))
        {
            self.published = Some(Instant::now());
            self.publish_metrics();
        }
        Ok(())
    }

    /// Servers waiting for a maintenance window that has now opened get their chance: the
    /// wake-up is logged first, so a replay makes the same decision at the same point.
    async fn wake_for_windows(&mut self, id: i64) -> Result<(), Status> {
        let run = &self.rollouts[&id];
        let due = run
            .scheduler
            .next_opening()
            .is_some_and(|opening| opening <= run.now());
        if !due || run.state != RunState::Running {
            return Ok(());
        }
        self.log
            .append(
                id,
                None,
                None,
                kind::WINDOW_OPENED,
                "a maintenance window opened: servers that fit it may start",
            )
            .await
            .map_err(store_error)?;
        self.drive(id, &[Event::Tick]).await
    }

    // ---- scheduler ---------------------------------------------------------------------

    /// Feeds events to a rollout's scheduler and carries out what it decides: each start is
    /// committed as `server_started` before its assignment is sent.
    async fn drive(&mut self, id: i64, events: &[Event]) -> Result<(), Status> {
        let driven = self.drive_once(id, events).await;
        // A freed slot times only the starts it allows right away (dispatch latency): one that
        // waits for a rule is the schedule, not the controller being slow.
        self.slot_freed = None;
        driven
    }

    async fn drive_once(&mut self, id: i64, events: &[Event]) -> Result<(), Status> {
        let run = self.rollouts.get_mut(&id).expect("known rollout");
        run.last_progress_ms = baton_store::now_ms();
        run.scheduler_version += 1;
        let now = run.now();
        let actions = run
            .scheduler
            .handle_all(now, events)
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        let mut finished = false;
        for action in actions {
            match action {
                Action::Start {
                    server,
                    expected_end,
                } => self.start(id, server, expected_end).await?,
                Action::Finished => finished = true,
            }
        }
        self.settle(id).await?;
        if finished {
            self.finish(id).await?;
        }
        let run = self.rollouts.get_mut(&id).expect("known rollout");
        if run.state == RunState::Running && run.scheduler.awaiting_approval() {
            let canary = run.fleet.canary_pools.unwrap_or(0);
            let note = format!(
                "canary: the first {canary} pool(s) are done; `baton approve {id}` lets the other pools start"
            );
            self.log
                .append(
                    id,
                    None,
                    None,
                    kind::ROLLOUT_AWAITING_APPROVAL,
                    note.clone(),
                )
                .await
                .map_err(store_error)?;
            let run = self.rollouts.get_mut(&id).expect("known rollout");
            run.state = RunState::AwaitingApproval;
            run.note = Some(note);
        }
        Ok(())
    }

    /// A new assignment id: unique across stores (their identity), controller restarts (the
    /// epoch) and rollouts.
    fn new_assignment_id(&mut self, rollout: i64) -> String {
        let assignment_id = baton_core::assignment::assignment_id(
            &self.store_id,
            rollout,
            self.epoch,
            self.next_assignment,
        );
        self.next_assignment += 1;
        assignment_id
    }

    async fn start(&mut self, id: i64, server: ServerId, expected_end: u64) -> Result<(), Status> {
        if self.stopping {
            // Its worker's stream is closed: the next controller replays the log, decides
            // this start again and makes it.
            tracing::debug!(
                rollout = id,
                server,
                "stopping: start left to the next controller"
            );
            return Ok(());
        }
        let assignment_id = self.new_assignment_id(id);
        let run = self.rollouts.get_mut(&id).expect("known rollout");
        let (fqdn, pool) = (
            run.fqdn(server).to_string(),
            run.pool_fqdn(server).to_string(),
        );
        self.log
            .append(
                id,
                Some(&fqdn),
                Some(&pool),
                kind::SERVER_STARTED,
                format!(
                    "assignment {assignment_id}, expected to end at {}, steps {}",
                    clock(expected_end),
                    run.steps_fingerprint(server)
                ),
            )
            .await
            .map_err(store_error)?;
        let steps = run.workload.steps[server].len();
        run.ledger.issue(
            &assignment_id,
            server,
            u32::try_from(steps).unwrap_or(u32::MAX),
            0,
        );
        if self.deliver(id, server, &assignment_id).await {
            self.observe_dispatch();
        } else {
            tracing::warn!(%fqdn, "no worker connected: the assignment waits for it");
        }
        Ok(())
    }

    /// Records servers the scheduler gave up on: skipped by a quarantine, or never started.
    async fn settle(&mut self, id: i64) -> Result<(), Status> {
        let run = self.rollouts.get_mut(&id).expect("known rollout");
        for (server, outcome, reason) in run.newly_settled() {
            let event_kind = if outcome == Outcome::Skipped {
                kind::SERVER_SKIPPED
            } else {
                kind::SERVER_NOT_STARTED
            };
            let (fqdn, pool) = (
                run.fqdn(server).to_string(),
                run.pool_fqdn(server).to_string(),
            );
            self.log
                .append(id, Some(&fqdn), Some(&pool), event_kind, reason)
                .await
                .map_err(store_error)?;
            run.settled[server] = true;
        }
        Ok(())
    }

    async fn finish(&mut self, id: i64) -> Result<(), Status> {
        let run = self.rollouts.get_mut(&id).expect("known rollout");
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for record in run.scheduler.records() {
            *counts
                .entry(record.outcome.map_or("not_started", Outcome::as_str))
                .or_default() += 1;
        }
        let summary: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let end_state = if run.state == RunState::Aborting {
            RunState::Aborted
        } else {
            RunState::Finished
        };
        let detail = format!(
            "{}: {} in {}",
            end_state.as_str(),
            summary.join(", "),
            clock(run.now())
        );
        self.log
            .append(id, None, None, kind::ROLLOUT_FINISHED, detail)
            .await
            .map_err(store_error)?;
        self.log
            .store()
            .set_rollout_state(id, end_state.as_str())
            .await
            .map_err(store_error)?;
        run.mark_ended(end_state);
        self.drain_trace_feed();
        let run = self.rollouts.get_mut(&id).expect("known rollout");
        run.trace.end(end_state.as_str(), SystemTime::now());
        tracing::info!(rollout = id, state = end_state.as_str(), "rollout ended");
        Ok(())
    }

    // ---- worker side -----------------------------------------------------------------------

    /// A worker said hello: register it (one stream per FQDN) and welcome it.
    /// Returns the connection's number and the clock its reader stamps each message on.
    pub async fn hello(
        &mut self,
        hello: &v1::Hello,
        tx: WorkerTx,
    ) -> Result<(u64, Arc<AtomicI64>), Status> {
        if !is_valid_fqdn(&hello.fqdn) {
            return Err(Status::invalid_argument(format!(
                "hello: {:?} is not a valid FQDN",
                hello.fqdn
            )));
        }
        if self.workers.contains_key(&worker_key(&hello.fqdn)) {
            return Err(Status::already_exists(format!(
                "a worker for {} is already connected; a second one is refused",
                hello.fqdn
            )));
        }
        let active = self.active_rollout_of(&hello.fqdn);
        // Registered in memory; the store hears of it with the next batch of registrations
        // (every quarter second), so a fleet connecting at once is a few writes, not one each.
        let registration = baton_store::WorkerRow {
            fqdn: hello.fqdn.clone(),
            version: hello.version.clone(),
            platform: hello.platform.clone(),
            known: active.is_some(),
            connected: true,
            last_heartbeat_ms: Some(baton_store::now_ms()),
        };
        let connection = self.next_connection;
        self.next_connection += 1;
        let heartbeat = heartbeat_interval_for(self.workers.len(), self.heartbeats_per_second);
        let seen = Arc::new(AtomicI64::new(baton_store::now_ms()));
        let note = match active {
            Some((id, _)) => format!("{} is in rollout {id}", hello.fqdn),
            None => format!(
                "{} is in no active rollout's fleet: staying idle until one includes it",
                hello.fqdn
            ),
        };
        send(
            &tx,
            v1::controller_message::Body::Welcome(v1::Welcome {
                known: active.is_some(),
                note,
                heartbeat_interval_ms: u32::try_from(heartbeat.as_millis()).unwrap_or(u32::MAX),
                epoch: self.epoch,
                store_id: self.store_id.clone(),
            }),
        );
        // What the worker holds counts only if this store issued it: an id from another store
        // (an earlier database, another controller) is not ours, whatever it looks like.
        let named = if hello.assignment_store_id.is_empty()
            || hello.assignment_store_id == self.store_id
        {
            hello.assignment_id.as_str()
        } else {
            tracing::info!(fqdn = %hello.fqdn, assignment = %hello.assignment_id, store = %hello.assignment_store_id, "the worker's last assignment is another store's; not ours to judge");
            ""
        };
        // Assignments made while it was away are delivered now. A delivered one the worker
        // does not know (it restarted mid-run, or the assignment was lost in flight) is failed:
        // running its steps again could repeat a half-done update, and waiting would hold the
        // rollout for ever.
        let mut unknown_to_worker = Vec::new();
        let mut interrupted = Vec::new();
        let mut undelivered = Vec::new();
        for run in self
            .rollouts
            .values_mut()
            .filter(|run| !run.state.is_over())
        {
            let Some(server) = run.server_by_fqdn(&hello.fqdn) else {
                continue;
            };
            let Some(assignment_id) = run.ledger.open_on(server).map(str::to_string) else {
                continue;
            };
            if run.undelivered.remove(&server) {
                undelivered.push((run.id, server, assignment_id));
            } else if named != assignment_id {
                unknown_to_worker.push((run.id, server, assignment_id));
            } else {
                // It holds the assignment: as good as its acknowledgement.
                run.ledger.named_by_worker(&assignment_id, server);
                if let Some(at) = hello.interrupted {
                    interrupted.push((run.id, server, assignment_id, at));
                }
            }
        }
        tracing::info!(fqdn = %hello.fqdn, version = %hello.version, "worker connected");
        self.workers.insert(
            worker_key(&hello.fqdn),
            WorkerLink {
                connection,
                tx,
                heartbeat,
                seen: Arc::clone(&seen),
                seen_flushed: 0,
                registration: registration.clone(),
            },
        );
        self.unsaved_workers
            .insert(worker_key(&hello.fqdn), registration);
        self.lost.remove(&worker_key(&hello.fqdn));
        for (id, server, assignment_id) in undelivered {
            self.deliver(id, server, &assignment_id).await;
        }
        for (id, server, assignment_id) in unknown_to_worker {
            tracing::warn!(fqdn = %hello.fqdn, %assignment_id, "worker reconnected without its assignment");
            // The worker is registered either way; a store failure here is logged, not
            // turned into a refused session that would leave its link behind.
            let (_, pool) = self.names(id, server);
            let why = format!(
                "its worker reconnected without assignment {assignment_id} (restarted without its journal, or the assignment was lost in flight): its state is unknown and {pool} stays held"
            );
            if let Err(status) = self
                .hold_for_operator(id, server, &assignment_id, why)
                .await
            {
                tracing::error!(%status, "could not fail a lost assignment");
            }
        }
        for (id, server, assignment_id, at) in interrupted {
            if let Err(status) = self
                .assignment_interrupted(id, server, &assignment_id, at)
                .await
            {
                tracing::error!(%status, "could not settle an interrupted assignment");
            }
        }
        Ok((connection, seen))
    }

    /// A worker restarted while `assignment_id` ran and its journal says where it stopped. A
    /// step that had not started, or one the runbook marks idempotent, is run again and the
    /// assignment goes on from there; a step cut in the middle of its work is not repeated
    /// without an operator.
    async fn assignment_interrupted(
        &mut self,
        id: i64,
        server: ServerId,
        assignment_id: &str,
        at: v1::Interrupted,
    ) -> Result<(), Status> {
        let (name, pool) = self.names(id, server);
        let steps = &self.rollouts[&id].workload.steps[server];
        let index = at.step_index as usize;
        let step = steps
            .get(index)
            .map_or("end", |step| step.id.as_str())
            .to_string();
        let reported = self.rollouts[&id]
            .ledger
            .next_step(assignment_id)
            .unwrap_or(0);
        let verdict = match steps.get(index) {
            None if index > steps.len() => Err(format!(
                "its worker restarted and reported assignment {assignment_id} stopped at step index {index}, but it has {} steps: its state is unknown and {pool} stays held",
                steps.len()
            )),
            // Its journal says more steps succeeded than it reported: their results never
            // reached this controller, so they are not taken on the journal's word.
            _ if at.step_index > reported => Err(format!(
                "its worker restarted and its journal says the steps of assignment {assignment_id} before index {index} succeeded, but only those before index {reported} were reported: {pool} stays held"
            )),
            // Every step had succeeded; only the result was not recorded.
            None => Ok(format!(
                "its worker restarted after the last step of assignment {assignment_id} succeeded"
            )),
            Some(_) if !at.step_started => Ok(format!(
                "its worker restarted before step {step} of assignment {assignment_id} began"
            )),
            Some(s) if s.idempotent => Ok(format!(
                "its worker restarted during step {step} of assignment {assignment_id}, which is idempotent: it runs again"
            )),
            Some(_) => Err(format!(
                "its worker restarted during step {step} of assignment {assignment_id}, which is not idempotent: the step may have done part of its work, so {pool} stays held"
            )),
        };
        let why = match verdict {
            Ok(why) => why,
            Err(why) => return self.hold_for_operator(id, server, assignment_id, why).await,
        };
        self.log
            .append(
                id,
                Some(&name),
                Some(&pool),
                kind::SERVER_RESUMED,
                format!("assignment {assignment_id} resumed at step {index} ({step}): {why}"),
            )
            .await
            .map_err(store_error)?;
        tracing::info!(fqdn = %name, %assignment_id, index, "interrupted assignment resumed");
        let run = self.rollouts.get_mut(&id).expect("known rollout");
        run.resume_from.insert(server, at.step_index);
        run.ledger.resume(assignment_id, at.step_index);
        debug_assert_eq!(run.ledger.next_step(assignment_id), Some(at.step_index));
        self.deliver(id, server, assignment_id).await;
        Ok(())
    }

    /// A server whose worker cannot go on with its assignment (it restarted without it, or in
    /// the middle of a step that is not idempotent, or the assignment was lost in flight) is in
    /// an unknown state: it stays in maintenance, its pool held, the rest of the fleet going
    /// on, until an operator resolves it. Its steps are not run again by themselves: that
    /// could repeat a half-done update.
    async fn hold_for_operator(
        &mut self,
        id: i64,
        server: ServerId,
        assignment_id: &str,
        why: String,
    ) -> Result<(), Status> {
        let (name, pool) = self.names(id, server);
        let detail =
            format!("{why}; `baton resolve {name} --retry | --mark-succeeded | --mark-failed`");
        self.log
            .append(
                id,
                Some(&name),
                Some(&pool),
                kind::SERVER_NEEDS_ATTENTION,
                detail.clone(),
            )
            .await
            .map_err(store_error)?;
        let run = self.rollouts.get_mut(&id).expect("known rollout");
        run.trace.assignment_ended(
            assignment_id,
            "needs_attention",
            Some(&detail),
            SystemTime::now(),
        );
        run.ledger.end(assignment_id);
        run.current_step.remove(&server);
        run.resume_from.remove(&server);
        run.interruptions.remove(&server);
        run.attention
            .insert(server, format!("needs attention: {detail}"));
        Ok(())
    }

    /// Settles a server in `needs_attention`: run its runbook again, or record what an
    /// operator found by hand.
    pub async fn resolve(
        &mut self,
        request: v1::ResolveRequest,
    ) -> Result<v1::RolloutStatus, Status> {
        let id = self.resolve_rollout(&request.rollout_id)?;
        let run = &self.rollouts[&id];
        let server = run.server_by_fqdn(&request.server).ok_or_else(|| {
            Status::not_found(format!("{} is not in rollout {id}", request.server))
        })?;
        if !run.attention.contains_key(&server) {
            return Err(Status::failed_precondition(format!(
                "{} does not need attention in rollout {id}",
                request.server
            )));
        }
        let (name, pool) = self.names(id, server);
        let action = request.action.as_str();
        if !matches!(action, "retry" | "mark_succeeded" | "mark_failed") {
            return Err(Status::invalid_argument(format!(
                "unknown action {action:?}: retry, mark_succeeded or mark_failed"
            )));
        }
        self.log
            .append(
                id,
                Some(&name),
                Some(&pool),
                kind::SERVER_RESOLVED,
                format!("{action} (by an operator)"),
            )
            .await
            .map_err(store_error)?;
        self.rollouts
            .get_mut(&id)
            .expect("known")
            .attention
            .remove(&server);
        match action {
            "retry" => self.retry(id, server).await?,
            "mark_succeeded" | "mark_failed" => {
                let succeeded = action == "mark_succeeded";
                let detail = if succeeded {
                    "succeeded".to_string()
                } else {
                    "failed: marked failed by an operator".to_string()
                };
                self.log
                    .append(id, Some(&name), Some(&pool), kind::SERVER_FINISHED, detail)
                    .await
                    .map_err(store_error)?;
                self.observe_server_finished(id, server, succeeded);
                let run = self.rollouts.get_mut(&id).expect("known");
                let event = run.server_finished(server, succeeded);
                self.drive(id, &[event]).await?;
            }
            _ => unreachable!("checked above"),
        }
        self.status(&id.to_string())
    }

    /// Sends a server's runbook again under a new assignment (it is still in maintenance).
    async fn retry(&mut self, id: i64, server: ServerId) -> Result<(), Status> {
        let assignment_id = self.new_assignment_id(id);
        let (name, pool) = self.names(id, server);
        self.log
            .append(
                id,
                Some(&name),
                Some(&pool),
                kind::SERVER_RETRIED,
                format!("assignment {assignment_id}"),
            )
            .await
            .map_err(store_error)?;
        let run = self.rollouts.get_mut(&id).expect("known");
        let steps = run.workload.steps[server].len();
        run.ledger.issue(
            &assignment_id,
            server,
            u32::try_from(steps).unwrap_or(u32::MAX),
            0,
        );
        self.deliver(id, server, &assignment_id).await;
        Ok(())
    }

    /// Sends a server's assignment to its worker, or keeps it for when the worker connects.
    /// True if it was sent.
    async fn deliver(&mut self, id: i64, server: ServerId, assignment_id: &str) -> bool {
        if self.log.in_batch() {
            // Sent once the owner's batch is committed: one commit for the batch, and
            // write-ahead all the same.
            let run = self.rollouts.get_mut(&id).expect("known rollout");
            if self.workers.contains_key(&worker_key(run.fqdn(server))) {
                self.deferred
                    .push(Deferred::Deliver(id, server, assignment_id.to_string()));
                return true;
            }
            run.undelivered.insert(server);
            return false;
        }
        // Write-ahead: what led to this assignment is committed before it leaves.
        let committed = self.commit_before_acting().await;
        let run = self.rollouts.get_mut(&id).expect("known rollout");
        if !committed {
            run.undelivered.insert(server);
            return false;
        }
        let message = run.assignment(assignment_id, server, self.epoch, &self.store_id);
        let sent = self
            .workers
            .get(&worker_key(run.fqdn(server)))
            .is_some_and(|link| send(&link.tx, v1::controller_message::Body::Assignment(message)));
        if sent {
            run.ledger.delivered(assignment_id);
        } else {
            run.undelivered.insert(server);
        }
        sent
    }

    /// Sends what the owner's batch deferred (assignments, discards), now that its events are
    /// committed. Call only after a successful commit.
    pub fn flush_deferred(&mut self) {
        for deferred in std::mem::take(&mut self.deferred) {
            match deferred {
                Deferred::Deliver(id, server, assignment_id) => {
                    let Some(run) = self.rollouts.get_mut(&id) else {
                        continue;
                    };
                    let message =
                        run.assignment(&assignment_id, server, self.epoch, &self.store_id);
                    let sent =
                        self.workers
                            .get(&worker_key(run.fqdn(server)))
                            .is_some_and(|link| {
                                send(&link.tx, v1::controller_message::Body::Assignment(message))
                            });
                    if sent {
                        run.ledger.delivered(&assignment_id);
                    } else {
                        // Its worker went meanwhile: delivered when it says hello again.
                        run.undelivered.insert(server);
                    }
                }
                Deferred::Send(tx, body) => {
                    send(&tx, body);
                }
            }
        }
    }

    /// Whether `connection` is still `fqdn`'s current stream.
    pub fn is_current_connection(&self, fqdn: &str, connection: u64) -> bool {
        self.workers
            .get(&worker_key(fqdn))
            .is_some_and(|link| link.connection == connection)
    }

    /// Writes the step output the owner's batch gathered, in one transaction, and counts it.
    pub async fn flush_output(&mut self) -> Result<(), Status> {
        if self.pending_output.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending_output);
        let outputs: Vec<baton_store::NewStepOutput> = pending
            .iter()
            .map(|(_, _, output)| output.clone())
            .collect();
        let counted = match self.log.store().append_step_outputs(&outputs).await {
            Ok(counted) => counted,
            Err(err) => {
                // Kept, ahead of anything gathered since, for the next flush.
                let later = std::mem::replace(&mut self.pending_output, pending);
                self.pending_output.extend(later);
                return Err(store_error(err));
            }
        };
        for ((id, server, _), counted) in pending.into_iter().zip(counted) {
            if let Some(run) = self.rollouts.get_mut(&id) {
                run.output
                    .insert(server, crate::run::OutputTally::of(&counted));
            }
        }
        Ok(())
    }

    /// Commits the events of the open batch, if any, before something leaves the controller.
    /// False if they could not be written (they stay pending; nothing may be acted on).
    async fn commit_before_acting(&self) -> bool {
        match self.log.commit().await {
            Ok(_) => true,
            Err(err) => {
                tracing::error!(%err, "could not commit the batch's events; holding back what depends on them");
                false
            }
        }
    }

    /// The controller is stopping: every worker's stream is ended (they reconnect to the next
    /// controller, as after any restart), and nothing is recorded of it.
    pub fn close_worker_streams(&mut self) {
        self.stopping = true;
        for link in self.workers.values() {
            let _ = link.tx.send(Err(Status::unavailable(
                "the controller is stopping; reconnect to the next one",
            )));
        }
    }

    pub async fn gone(&mut self, fqdn: &str, connection: u64) {
        if self.stopping {
            return;
        }
        let key = worker_key(fqdn);
        if self
            .workers
            .get(&key)
            .is_some_and(|link| link.connection == connection)
        {
            self.lose(fqdn, "disconnected").await;
        }
    }

    /// A worker is gone (its stream ended, or it fell silent): forget its link, and if its
    /// server is in maintenance, record that its state is now unknown. The pool stays held.
    /// A server's maintenance interrupted again before it made progress (a flapping stream)
    /// is the same interruption: counted, not recorded again.
    async fn lose(&mut self, fqdn: &str, how: &str) {
        let key = worker_key(fqdn);
        if let Some(link) = self.workers.remove(&key) {
            let registration = baton_store::WorkerRow {
                connected: false,
                last_heartbeat_ms: Some(link.seen.load(Ordering::Relaxed))
                    .max(link.registration.last_heartbeat_ms),
                ..link.registration
            };
            self.unsaved_workers.insert(key.clone(), registration);
        }
        self.lost.insert(key.clone(), Instant::now());
        let drops = self.drops.entry(key).or_insert((0, 0));
        *drops = (drops.0 + 1, baton_store::now_ms());
        self.telemetry.metrics.worker_drops.add(1, &[]);
        tracing::info!(%fqdn, how, "worker gone");
        let mut first_drops = Vec::new();
        for run in self
            .rollouts
            .values_mut()
            .filter(|run| !run.state.is_over())
        {
            let Some(server) = run.server_by_fqdn(fqdn) else {
                continue;
            };
            let busy = run.ledger.open_on(server).is_some() && !run.undelivered.contains(&server);
            if !busy {
                continue;
            }
            match run.interruptions.get_mut(&server) {
                Some(interruption) => interruption.drops += 1,
                None => {
                    run.interruptions.insert(
                        server,
                        crate::run::Interruption {
                            since: Instant::now(),
                            drops: 1,
                        },
                    );
                    first_drops.push((run.id, server));
                }
            }
        }
        for (id, server) in first_drops {
            let (name, pool) = self.names(id, server);
            let detail =
                format!("{how} while in maintenance: its state is unknown and {pool} stays held");
            if let Err(err) = self
                .log
                .append(id, Some(&name), Some(&pool), kind::WORKER_LOST, detail)
                .await
            {
                tracing::error!(%err, "could not record a lost worker");
            }
        }
    }

    /// The server made progress (a step or its result counted): an interruption of its
    /// maintenance is over. One that took several drops is recorded with their count.
    async fn progressed(&mut self, id: i64, server: ServerId) -> Result<(), Status> {
        let run = self.rollouts.get_mut(&id).expect("known rollout");
        let Some(interruption) = run.interruptions.remove(&server) else {
            return Ok(());
        };
        if interruption.drops < 2 {
            return Ok(());
        }
        let (name, pool) = self.names(id, server);
        let detail = format!(
            "its stream dropped {} times in {:.1}s while in maintenance, recorded as one worker_lost; it is back and its server goes on",
            interruption.drops,
            interruption.since.elapsed().as_secs_f64()
        );
        self.log
            .append(id, Some(&name), Some(&pool), kind::WORKER_FLAPPED, detail)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// Writes the registrations and disconnects gathered since the last flush, in one batch.
    pub async fn flush_registrations(&mut self) {
        if self.unsaved_workers.is_empty() {
            return;
        }
        let rows: Vec<baton_store::WorkerRow> = self.unsaved_workers.values().cloned().collect();
        match self.log.store().workers_upsert(&rows).await {
            Ok(()) => self.unsaved_workers.clear(),
            // Kept for the next round; `baton servers` shows them from memory meanwhile.
            Err(err) => tracing::warn!(%err, workers = rows.len(), "could not record workers"),
        }
    }

    /// Writes the last-seen times gathered since the last flush, in one batch.
    pub async fn flush_last_seen(&mut self) {
        self.last_seen_flushed = Instant::now();
        let mut seen: Vec<(String, i64)> = Vec::new();
        for link in self.workers.values_mut() {
            let at = link.seen.load(Ordering::Relaxed);
            if at > link.seen_flushed {
                link.seen_flushed = at;
                seen.push((link.registration.fqdn.clone(), at));
            }
        }
        if seen.is_empty() {
            return;
        }
        if let Err(err) = self.log.store().workers_seen(&seen).await {
            // Liveness lives in memory; the store's copy is for `baton servers` after a
            // restart. The next flush tries again with newer times.
            tracing::warn!(%err, workers = seen.len(), "could not record last-seen times");
        }
    }

    /// When a connected worker was last heard from (memory knows better than the store).
    fn link_seen(&self, fqdn: &str) -> Option<i64> {
        self.workers
            .get(&worker_key(fqdn))
            .map(|link| link.seen.load(Ordering::Relaxed))
    }

    /// Workers silent for longer than the heartbeat timeout (or three of their heartbeat
    /// intervals, if longer) are taken as lost; their streams are ended (they reconnect if
    /// they can).
    async fn reap_silent_workers(&mut self) {
        let timeout = self.worker_timeout;
        let silent: Vec<String> = self
            .workers
            .iter()
            .filter(|(_, link)| {
                let silent_ms = baton_store::now_ms() - link.seen.load(Ordering::Relaxed);
                let limit = timeout.max(link.heartbeat * 3);
                u128::try_from(silent_ms).is_ok_and(|ms| ms > limit.as_millis())
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in silent {
            if let Some(link) = self.workers.get(&key) {
                let _ = link.tx.send(Err(Status::deadline_exceeded(format!(
                    "no heartbeat for {}s",
                    self.worker_timeout.as_secs_f64()
                ))));
            }
            self.lose(
                &key,
                &format!("silent for over {}s", self.worker_timeout.as_secs_f64()),
            )
            .await;
        }
    }

    /// Judges a worker's report about an assignment by the acceptance rule
    /// ([`baton_core::assignment`]). `Some`: it counts, for this rollout and server. `None`: it
    /// was a repeat or out of order (nothing to do), or it can never count (the worker is told
    /// to discard it), or it claimed a success without every step (the server is held).
    async fn judge(
        &mut self,
        fqdn: &str,
        assignment_id: &str,
        report: Report,
    ) -> Result<Option<(i64, ServerId)>, Status> {
        let owner = self.rollouts.values_mut().find(|run| {
            run.ledger.server_of(assignment_id).is_some() || run.ledger.has_ended(assignment_id)
        });
        let (id, server, verdict) = match owner {
            None => (None, None, Verdict::Discard(Refusal::Unknown)),
            Some(run) => match run.server_by_fqdn(fqdn) {
                None => (Some(run.id), None, Verdict::Discard(Refusal::OtherServer)),
                Some(server) => (
                    Some(run.id),
                    Some(server),
                    run.ledger.judge(server, assignment_id, report),
                ),
            },
        };
        match verdict {
            Verdict::Accept => Ok(id.zip(server)),
            Verdict::Ignore(Ignored::Repeat) => {
                tracing::debug!(%fqdn, assignment = %assignment_id, ?report, "repeated report ignored");
                Ok(None)
            }
            Verdict::Ignore(Ignored::Gap { next_step }) => {
                tracing::warn!(%fqdn, assignment = %assignment_id, ?report, next_step, "report past a step not yet reported; waiting for the worker's replay");
                Ok(None)
            }
            Verdict::Discard(refusal) => {
                self.discard(fqdn, assignment_id, &refusal).await;
                Ok(None)
            }
            Verdict::Incomplete { next_step, steps } => {
                let (id, server) = id.zip(server).expect("only a judged report is incomplete");
                let (_, pool) = self.names(id, server);
                let why = format!(
                    "its worker reported assignment {assignment_id} succeeded, but only steps before index {next_step} of {steps} were reported succeeded: the server is not counted as patched and {pool} stays held"
                );
                tracing::error!(%fqdn, assignment = %assignment_id, next_step, steps, "success without every step");
                self.hold_for_operator(id, server, assignment_id, why)
                    .await?;
                Ok(None)
            }
        }
    }

    /// Tells a worker that nothing it says about `assignment_id` will ever count: it archives
    /// the assignment's journal entry and stops sending it. The stream stays open.
    async fn discard(&mut self, fqdn: &str, assignment_id: &str, refusal: &Refusal) {
        let reason = format!("assignment {assignment_id}: {refusal}");
        if *refusal == Refusal::Settled {
            // Every replay after a reconnect ends so: routine, and many at fleet scale.
            tracing::debug!(%fqdn, "{reason}: its worker is told to archive it");
        } else {
            tracing::warn!(%fqdn, "report discarded: {reason}");
        }
        self.telemetry
            .metrics
            .reports_discarded
            .add(1, &[opentelemetry::KeyValue::new("reason", refusal.code())]);
        let Some(link) = self.workers.get(&worker_key(fqdn)) else {
            return;
        };
        let body = v1::controller_message::Body::Discard(v1::Discard {
            assignment_id: assignment_id.to_string(),
            reason,
        });
        // A discard of a settled assignment makes the worker archive its result: the result
        // is committed first (with the owner's batch, or now).
        if self.log.in_batch() {
            self.deferred.push(Deferred::Send(link.tx.clone(), body));
        } else if self.commit_before_acting().await {
            send(&link.tx, body);
        }
    }

    /// A server's and its pool's FQDNs as the fleet writes them (events name servers so,
    /// whatever case their worker used).
    fn names(&self, id: i64, server: ServerId) -> (String, String) {
        let run = &self.rollouts[&id];
        (
            run.fqdn(server).to_string(),
            run.pool_fqdn(server).to_string(),
        )
    }

    fn step_id(&self, id: i64, server: ServerId, index: u32) -> Result<String, Status> {
        self.rollouts[&id].workload.steps[server]
            .get(index as usize)
            .map(|step| step.id.clone())
            .ok_or_else(|| Status::invalid_argument(format!("step index {index} is out of range")))
    }

    pub async fn worker_message(
        &mut self,
        fqdn: &str,
        connection: u64,
        body: v1::worker_message::Body,
    ) -> Result<(), Status> {
        use v1::worker_message::Body;
        if self
            .workers
            .get(&worker_key(fqdn))
            .is_none_or(|link| link.connection != connection)
        {
            return Err(Status::failed_precondition(
                "this stream is no longer the worker's connection",
            ));
        }
        match body {
            Body::Hello(_) => Err(Status::failed_precondition(
                "hello was already received on this stream",
            )),
            // Its stream's reader stamped the time; the store hears of it in the next batch
            // of last-seen times.
            Body::Heartbeat(_) => Ok(()),
            Body::AssignmentAccepted(m) => {
                if let Some((id, server)) =
                    self.judge(fqdn, &m.assignment_id, Report::Accepted).await?
                {
                    tracing::debug!(%fqdn, assignment = %m.assignment_id, rollout = id, server, "assignment acknowledged");
                }
                Ok(())
            }
            Body::StepStarted(m) => {
                let report = Report::StepStarted {
                    index: m.step_index,
                    attempt: m.attempt,
                };
                let Some((id, server)) = self.judge(fqdn, &m.assignment_id, report).await? else {
                    return Ok(());
                };
                let step = self.step_id(id, server, m.step_index)?;
                let (name, pool) = self.names(id, server);
                let detail = format!("{step} attempt {}", m.attempt);
                self.log
                    .append(id, Some(&name), Some(&pool), kind::STEP_STARTED, detail)
                    .await
                    .map_err(store_error)?;
                self.observe_step_started(id, server, &step, m.attempt);
                let run = self.rollouts.get_mut(&id).expect("known");
                let info = run.server_info(server);
                run.trace.step_started(
                    &m.assignment_id,
                    &info,
                    (m.step_index, &step),
                    m.attempt,
                    SystemTime::now(),
                );
                run.current_step.insert(server, step);
                // A back end's outage is timed from its first step.
                let now = run.now();
                run.watchdog.outage_started(server, now);
                self.progressed(id, server).await
            }
            Body::StepOutput(m) => {
                let report = Report::StepOutput {
                    index: m.step_index,
                };
                let Some((id, server)) = self.judge(fqdn, &m.assignment_id, report).await? else {
                    return Ok(());
                };
                // Into the store's output table (`StepLogs` reads it), not the event log.
                self.store_step_output(id, server, m).await
            }
            Body::StepFinished(m) => {
                let report = Report::StepFinished {
                    index: m.step_index,
                    attempt: m.attempt,
                    succeeded: m.exit_code == 0 && !m.timed_out && m.error.is_empty(),
                };
                let Some((id, server)) = self.judge(fqdn, &m.assignment_id, report).await? else {
                    return Ok(());
                };
                let step = self.step_id(id, server, m.step_index)?;
                let (name, pool) = self.names(id, server);
                let result = if m.timed_out {
                    "timed out".to_string()
                } else if !m.error.is_empty() {
                    format!("could not start: {}", m.error)
                } else {
                    format!("exit {}", m.exit_code)
                };
                // "STEP attempt N: RESULT (LINES lines in DURATION)": recovery reads the result.
                let output = self.attempt_output(id, server, &m).await;
                let summary = crate::run::attempt_summary(output.as_ref(), m.duration_ms);
                let detail = format!("{step} attempt {}: {result} {summary}", m.attempt);
                self.log
                    .append(id, Some(&name), Some(&pool), kind::STEP_FINISHED, detail)
                    .await
                    .map_err(store_error)?;
                let succeeded = m.exit_code == 0 && !m.timed_out && m.error.is_empty();
                self.observe_step_finished(id, server, &step, succeeded, m.duration_ms);
                let run = self.rollouts.get_mut(&id).expect("known");
                let info = run.server_info(server);
                let result = AttemptResult {
                    attempt: m.attempt,
                    exit_code: m.exit_code,
                    timed_out: m.timed_out,
                    error: &m.error,
                };
                run.trace.step_finished(
                    &m.assignment_id,
                    &info,
                    (m.step_index, &step),
                    result,
                    SystemTime::now(),
                );
                self.progressed(id, server).await
            }
            Body::AssignmentFinished(m) => {
                let report = Report::Finished {
                    succeeded: m.succeeded,
                };
                let Some((id, server)) = self.judge(fqdn, &m.assignment_id, report).await? else {
                    return Ok(());
                };
                let (name, pool) = self.names(id, server);
                let detail = if m.succeeded {
                    "succeeded".to_string()
                } else {
                    format!("failed: {}", m.detail)
                };
                self.log
                    .append(id, Some(&name), Some(&pool), kind::SERVER_FINISHED, detail)
                    .await
                    .map_err(store_error)?;
                self.observe_server_finished(id, server, m.succeeded);
                let run = self.rollouts.get_mut(&id).expect("known");
                let (outcome, failure) = if m.succeeded {
                    ("succeeded", None)
                } else {
                    ("failed", Some(m.detail.as_str()))
                };
                run.trace
                    .assignment_ended(&m.assignment_id, outcome, failure, SystemTime::now());
                let event = run.server_finished(server, m.succeeded);
                self.drive(id, &[event]).await
            }
        }
    }

    // ---- step output -----------------------------------------------------------------------

    /// A batch of a step attempt's output (a report that counts): into the store's output
    /// table, which keeps at most `--max-step-output` of each attempt (its head and its tail).
    /// Memory keeps only the attempt's counters.
    async fn store_step_output(
        &mut self,
        id: i64,
        server: ServerId,
        m: v1::StepOutput,
    ) -> Result<(), Status> {
        let step_id = self.step_id(id, server, m.step_index)?;
        let (name, _) = self.names(id, server);
        // Older workers say neither the attempt nor more than one line.
        let attempt = match m.attempt {
            0 => self.rollouts[&id]
                .ledger
                .started_attempt(&m.assignment_id)
                .unwrap_or(1),
            attempt => attempt,
        };
        let text = if m.lines > 0 { m.text } else { m.line };
        let output = baton_store::NewStepOutput {
            key: baton_store::StepOutputKey {
                rollout_id: id,
                server: name,
                assignment_id: m.assignment_id,
                step_index: i64::from(m.step_index),
                attempt: i64::from(attempt),
            },
            step_id,
            stderr: m.stderr,
            text,
        };
        if self.log.in_batch() {
            // With the rest of the owner's batch (or before this attempt's result).
            self.pending_output.push((id, server, output));
            return Ok(());
        }
        let counted = self
            .log
            .store()
            .append_step_output(&output)
            .await
            .map_err(store_error)?;
        let tally = crate::run::OutputTally::of(&counted);
        let run = self.rollouts.get_mut(&id).expect("known");
        run.output.insert(server, tally);
        Ok(())
    }

    /// What the step attempt that `m` ends wrote: counted in memory, or by the store when
    /// this controller took the rollout over during the attempt. `None`: nothing.
    async fn attempt_output(
        &mut self,
        id: i64,
        server: ServerId,
        m: &v1::StepFinished,
    ) -> Option<crate::run::OutputTally> {
        // Output still waiting in the owner's batch is counted first.
        if self
            .pending_output
            .iter()
            .any(|(r, s, _)| (*r, *s) == (id, server))
            && let Err(status) = self.flush_output().await
        {
            tracing::error!(%status, "storing a batch of step output");
        }
        let run = self.rollouts.get_mut(&id)?;
        let fqdn = run.fqdn(server).to_string();
        let tally = run.output.remove(&server).filter(|tally| {
            tally.assignment_id == m.assignment_id
                && (tally.step_index, tally.attempt) == (m.step_index, m.attempt)
        });
        // The counters come from the store, so any output since a takeover made them whole;
        // only an attempt that began before one may have written what memory has not seen.
        let spanned_takeover = run.output_before_takeover.remove(&server);
        if tally.is_some() || !spanned_takeover {
            return tally;
        }
        let key = baton_store::StepOutputKey {
            rollout_id: id,
            server: fqdn,
            assignment_id: m.assignment_id.clone(),
            step_index: i64::from(m.step_index),
            attempt: i64::from(m.attempt),
        };
        match self.log.store().step_output_attempt(&key).await {
            Ok(counted) => counted.as_ref().map(crate::run::OutputTally::of),
            Err(err) => {
                tracing::warn!(%err, "could not count a step attempt's output");
                None
            }
        }
    }

    /// For `StepLogs`, quickly under the lock: the rollout to read `server`'s output from (the
    /// one asked for, or else the newest of this controller's rollouts that includes the
    /// server) and the server's name as that rollout's fleet writes it. Both `None` when this
    /// controller does not run such a rollout (the store may know it). A server not in a
    /// rollout asked for, or a step it does not have: an error.
    pub fn logs_target(
        &self,
        server: &str,
        rollout: Option<i64>,
        step: Option<&str>,
    ) -> Result<(Option<i64>, Option<String>), Status> {
        let run = match rollout {
            Some(id) => match self.rollouts.get(&id) {
                Some(run) => run,
                None => return Ok((Some(id), None)),
            },
            None => match self
                .rollouts
                .values()
                .rev()
                .find(|run| run.server_by_fqdn(server).is_some())
            {
                Some(run) => run,
                None => return Ok((None, None)),
            },
        };
        let Some(id) = run.server_by_fqdn(server) else {
            return Err(Status::not_found(format!(
                "{server} is not in rollout {}",
                run.id
            )));
        };
        if let Some(step) = step {
            let steps = &run.workload.steps[id];
            if !steps.iter().any(|s| s.id == step) {
                let ids: Vec<&str> = steps.iter().map(|s| s.id.as_str()).collect();
                return Err(Status::not_found(format!(
                    "{} has no step {step:?} in rollout {} (its steps: {})",
                    run.fqdn(id),
                    run.id,
                    ids.join(", ")
                )));
            }
        }
        Ok((Some(run.id), Some(run.fqdn(id).to_string())))
    }

    /// For a `StepLogs` follower: whether `server` will write no more output in `rollout`.
    /// True once the rollout is over (or not run by this controller), once the server's
    /// assignment has ended (finished, or held for an operator), or, with `step`, once that
    /// step has succeeded. A server still waiting to start is not over.
    pub fn logs_over(&self, rollout: i64, server: &str, step: Option<&str>) -> bool {
        let Some(run) = self.rollouts.get(&rollout) else {
            return true;
        };
        let Some(id) = run.server_by_fqdn(server) else {
            return true;
        };
        if run.state.is_over()
            || run.scheduler.records()[id].outcome.is_some()
            || run.attention.contains_key(&id)
        {
            return true;
        }
        let Some(step) = step else {
            return false;
        };
        let Some(index) = run.workload.steps[id].iter().position(|s| s.id == step) else {
            return true;
        };
        run.ledger
            .open_on(id)
            .and_then(|assignment| run.ledger.next_step(assignment))
            .is_some_and(|next| next as usize > index)
    }
}

/// Validates a fleet and runbook and renders the workload, exactly as `baton plan` does.
fn prepare(
    fleet_name: &str,
    fleet_toml: &str,
    runbook_name: &str,
    runbook_toml: &str,
    params: &[(String, String)],
) -> Result<(Fleet, Runbook, baton_core::workload::Workload), Status> {
    let invalid = |e: &dyn std::fmt::Display| Status::invalid_argument(e.to_string());
    let fleet = Fleet::from_toml(fleet_name, fleet_toml).map_err(|e| invalid(&e))?;
    let runbook = Runbook::from_toml(runbook_name, runbook_toml).map_err(|e| invalid(&e))?;
    let params = runbook
        .resolve_params(params, "params")
        .map_err(|e| invalid(&e))?;
    let workload = build_workload(&fleet, Some((&runbook, &params))).map_err(|e| invalid(&e))?;
    Ok((fleet, runbook, workload))
}

/// Sends to a worker; false if its stream is gone.
fn send(tx: &WorkerTx, body: v1::controller_message::Body) -> bool {
    tx.send(Ok(v1::ControllerMessage { body: Some(body) }))
        .is_ok()
}

fn params_json(params: &HashMap<String, String>) -> String {
    let sorted: BTreeMap<&String, &String> = params.iter().collect();
    serde_json::to_string(&sorted).unwrap_or_else(|_| "{}".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heartbeat_interval(connected: usize) -> Duration {
        heartbeat_interval_for(connected, HEARTBEATS_PER_SECOND)
    }

    #[test]
    fn large_fleets_beat_less_often_so_the_fleet_rate_stays_bounded() {
        assert_eq!(heartbeat_interval(0), Duration::from_secs(1));
        assert_eq!(heartbeat_interval(1000), Duration::from_secs(1));
        assert_eq!(heartbeat_interval(2500), Duration::from_millis(2500));
        assert_eq!(heartbeat_interval(10_000), MAX_HEARTBEAT_INTERVAL);
        assert_eq!(heartbeat_interval(usize::MAX), MAX_HEARTBEAT_INTERVAL);
        for connected in [1usize, 999, 1500, 4000, 5000] {
            let per_second = connected as f64 / heartbeat_interval(connected).as_secs_f64();
            assert!(per_second <= 1000.0, "{connected}: {per_second}/s");
        }
    }
}
