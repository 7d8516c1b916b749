//! Taking over after a restart: every rollout the store says is unfinished is rebuilt from its
//! fleet, runbook and event log. The scheduler is deterministic, so replaying the logged events
//! in `seq` order makes it decide exactly the starts the log records; a start it decides that
//! the log lacks was never sent (write-ahead) and is made now. A log the replay cannot explain
//! is left alone and reported, never guessed at.

use super::{Engine, prepare, store_error};
use crate::events::kind;
use crate::run::{RolloutRun, RunState};
use crate::spans::at_ms;
use baton_core::fleet::ServerId;
use baton_core::scheduler::{Action, Event, Scheduler, Strategy};
use baton_core::time::Millis;
use baton_core::watchdog::BudgetLevel;
use baton_store::{EventRow, RolloutRow};
use std::collections::{BTreeMap, BTreeSet};
use tonic::Status;

/// Why a rollout could not be taken over.
#[derive(Debug)]
struct Unexplained(String);

impl Engine {
    /// Takes over the store's unfinished rollouts. Returns the ids resumed.
    pub async fn recover(&mut self) -> Result<Vec<i64>, Status> {
        let rows = self
            .log
            .store()
            .unfinished_rollouts()
            .await
            .map_err(store_error)?;
        let mut resumed = Vec::new();
        for row in rows {
            let events = self
                .log
                .store()
                .events(row.id, 0, None)
                .await
                .map_err(store_error)?;
            match self.rebuild(&row, &events) {
                Ok((run, pending_starts, finished)) => {
                    let id = row.id;
                    self.rollouts.insert(id, run);
                    for (server, expected_end) in pending_starts {
                        self.start(id, server, expected_end).await?;
                    }
                    self.settle(id).await?;
                    if finished {
                        self.finish(id).await?;
                    }
                    let trace_id = self.rollouts[&id]
                        .trace
                        .trace_id()
                        .map(tracing::field::display);
                    tracing::info!(rollout = id, trace_id, "rollout taken over after a restart");
                    resumed.push(id);
                }
                Err(Unexplained(why)) => {
                    tracing::error!(rollout = row.id, %why, "cannot take the rollout over; leaving it untouched");
                }
            }
        }
        Ok(resumed)
    }

    /// Replays a rollout's log into a fresh scheduler. Also returns the starts the scheduler
    /// decided that the log does not record, and whether it has finished.
    #[allow(clippy::type_complexity)]
    fn rebuild(
        &self,
        row: &RolloutRow,
        events: &[EventRow],
    ) -> Result<(RolloutRun, Vec<(ServerId, Millis)>, bool), Unexplained> {
        let params: BTreeMap<String, String> = serde_json::from_str(&row.params_json)
            .map_err(|e| Unexplained(format!("stored params: {e}")))?;
        let overrides: Vec<(String, String)> = params.into_iter().collect();
        let (fleet, runbook, workload) = prepare(
            &row.fleet_name,
            &row.fleet_toml,
            &row.runbook_name,
            &row.runbook_toml,
            &overrides,
        )
        .map_err(|status| Unexplained(format!("stored fleet or runbook: {}", status.message())))?;
        let start = events
            .iter()
            .find(|e| e.kind == kind::ROLLOUT_STARTED)
            .map(|e| e.at_ms)
            .ok_or_else(|| Unexplained("no rollout_started event".into()))?;
        let scheduler = Scheduler::starting_at(&fleet, &workload.expected, Strategy::Baton, start);
        let mut run = RolloutRun::new(
            row.id,
            fleet,
            workload,
            runbook.shell,
            scheduler,
            row.created_at_ms,
            u64::try_from(row.planned_makespan_ms).unwrap_or(0),
            u64::try_from(row.lower_bound_ms).unwrap_or(0),
            self.tracer(),
        );
        // Decided by the scheduler, not yet found in the log: server -> expected end.
        let mut decided: BTreeMap<ServerId, Millis> = BTreeMap::new();
        let mut finished = false;
        let mut clock: Millis = 0;
        let server_of = |run: &RolloutRun, e: &EventRow| -> Result<ServerId, Unexplained> {
            let fqdn = e.server.as_deref().unwrap_or_default();
            run.server_by_fqdn(fqdn).ok_or_else(|| {
                Unexplained(format!("event {} names {fqdn:?}, not in the fleet", e.seq))
            })
        };
        let feed = |run: &mut RolloutRun,
                    now: Millis,
                    event: Event,
                    decided: &mut BTreeMap<ServerId, Millis>| {
            let actions = run
                .scheduler
                .handle(now, event)
                .map_err(|e| Unexplained(format!("replaying {event:?}: {e}")))?;
            for action in actions {
                match action {
                    Action::Start {
                        server,
                        expected_end,
                    } => {
                        decided.insert(server, expected_end);
                    }
                    Action::Finished => return Ok(true),
                }
            }
            Ok(false)
        };
        let mut outage_seen: BTreeSet<ServerId> = BTreeSet::new();
        for e in events {
            clock = clock.max(u64::try_from(e.at_ms - start).unwrap_or(0));
            run.trace
                .note(&e.kind, e.server.as_deref(), &e.detail, at_ms(e.at_ms));
            match e.kind.as_str() {
                kind::ROLLOUT_STARTED => {
                    finished |= feed(&mut run, clock, Event::Begin, &mut decided)?
                }
                kind::SERVER_STARTED => {
                    let server = server_of(&run, e)?;
                    if decided.remove(&server).is_none() {
                        return Err(Unexplained(format!(
                            "event {} starts {} but the replayed scheduler did not",
                            e.seq,
                            run.fqdn(server)
                        )));
                    }
                    let assignment = e
                        .detail
                        .strip_prefix("assignment ")
                        .and_then(|rest| rest.split(',').next())
                        .ok_or_else(|| Unexplained(format!("event {}: no assignment id", e.seq)))?;
                    issue_replayed(&mut run, assignment, server);
                    run.trace.assignment_began(assignment, at_ms(e.at_ms));
                }
                kind::STEP_FINISHED => {
                    // "STEP attempt N: exit 0 (…)": the step succeeded (counted for the
                    // acceptance rule; a worker's replay after it reconnects would count it too).
                    let server = server_of(&run, e)?;
                    if crate::run::step_finished_succeeded(&e.detail)
                        && let Some(assignment) = run.ledger.open_on(server).map(str::to_string)
                    {
                        let step = e.detail.split(' ').next().unwrap_or_default();
                        let from = run.ledger.next_step(&assignment).unwrap_or(0) as usize;
                        if let Some(index) = run.workload.steps[server]
                            .iter()
                            .skip(from)
                            .position(|s| s.id == step)
                        {
                            let index = u32::try_from(from + index).unwrap_or(u32::MAX);
                            run.ledger.step_succeeded(&assignment, index);
                        }
                    }
                }
                kind::STEP_STARTED => {
                    let server = server_of(&run, e)?;
                    let step = e.detail.split(' ').next().unwrap_or_default().to_string();
                    run.current_step.insert(server, step);
                    if outage_seen.insert(server) {
                        run.watchdog.outage_started(server, clock);
                    }
                }
                kind::BUDGET_WARNING | kind::RESILIENCY_RISK => {
                    let server = server_of(&run, e)?;
                    let level = if e.detail.ends_with("(50%)") {
                        BudgetLevel::Half
                    } else if e.detail.ends_with("(80%)") {
                        BudgetLevel::Most
                    } else {
                        BudgetLevel::Exhausted
                    };
                    run.watchdog.already_reported(server, level);
                }
                kind::SERVER_FINISHED => {
                    let server = server_of(&run, e)?;
                    if let Some(assignment) = run.ledger.open_on(server).map(str::to_string) {
                        run.trace
                            .assignment_ended(&assignment, "replayed", None, at_ms(e.at_ms));
                        run.ledger.end(&assignment);
                    }
                    let event = run.server_finished(server, e.detail == "succeeded");
                    finished |= feed(&mut run, clock, event, &mut decided)?;
                }
                kind::SERVER_NEEDS_ATTENTION => {
                    let server = server_of(&run, e)?;
                    if let Some(assignment) = run.ledger.open_on(server).map(str::to_string) {
                        run.trace
                            .assignment_ended(&assignment, "replayed", None, at_ms(e.at_ms));
                        run.ledger.end(&assignment);
                    }
                    run.current_step.remove(&server);
                    run.resume_from.remove(&server);
                    run.attention
                        .insert(server, format!("needs attention: {}", e.detail));
                }
                kind::SERVER_RESOLVED => {
                    let server = server_of(&run, e)?;
                    run.attention.remove(&server);
                }
                kind::SERVER_RETRIED => {
                    let server = server_of(&run, e)?;
                    let assignment = e
                        .detail
                        .strip_prefix("assignment ")
                        .ok_or_else(|| Unexplained(format!("event {}: no assignment id", e.seq)))?;
                    issue_replayed(&mut run, assignment, server);
                    run.trace.assignment_began(assignment, at_ms(e.at_ms));
                }
                kind::SERVER_RESUMED => {
                    let server = server_of(&run, e)?;
                    let index = e
                        .detail
                        .split_once(" resumed at step ")
                        .and_then(|(_, rest)| rest.split(' ').next())
                        .and_then(|index| index.parse::<u32>().ok())
                        .ok_or_else(|| Unexplained(format!("event {}: no step index", e.seq)))?;
                    run.resume_from.insert(server, index);
                    if let Some(assignment) = run.ledger.open_on(server).map(str::to_string) {
                        // Checked against the reported steps when it was decided.
                        run.ledger.resume(&assignment, index);
                    }
                }
                kind::SERVER_SKIPPED | kind::SERVER_NOT_STARTED => {
                    let server = server_of(&run, e)?;
                    run.settled[server] = true;
                }
                kind::ROLLOUT_PAUSED => {
                    run.state = RunState::Paused;
                    if e.detail.starts_with("resiliency risk") {
                        run.note = Some(e.detail.clone());
                    }
                    finished |= feed(&mut run, clock, Event::Pause, &mut decided)?;
                }
                kind::ROLLOUT_RESUMED => {
                    run.state = RunState::Running;
                    run.note = None;
                    finished |= feed(&mut run, clock, Event::Resume, &mut decided)?;
                }
                kind::ROLLOUT_ABORTED => {
                    run.state = RunState::Aborting;
                    finished |= feed(&mut run, clock, Event::Abort, &mut decided)?;
                }
                kind::ROLLOUT_AWAITING_APPROVAL => {
                    run.state = RunState::AwaitingApproval;
                    run.note = Some(e.detail.clone());
                }
                kind::WINDOW_OPENED => {
                    finished |= feed(&mut run, clock, Event::Tick, &mut decided)?
                }
                kind::ROLLOUT_APPROVED => {
                    run.state = RunState::Running;
                    run.note = None;
                    finished |= feed(&mut run, clock, Event::Approve, &mut decided)?;
                }
                _ => {}
            }
        }
        let elapsed = u64::try_from(baton_store::now_ms() - start)
            .unwrap_or(0)
            .max(clock);
        run.set_elapsed(elapsed);
        // Their step running now may have written output before the restart: its counters
        // are the store's, not memory's.
        let running: Vec<ServerId> = run.ledger.open().map(|(_, server)| server).collect();
        run.output_before_takeover.extend(running);
        Ok((run, decided.into_iter().collect(), finished))
    }
}

/// An assignment the log says was started: open again, and taken as delivered (it was sent
/// right after its event was written; if the send was lost, its worker's `Hello` will not name
/// it, and the server is held).
fn issue_replayed(run: &mut RolloutRun, assignment: &str, server: ServerId) {
    let steps = u32::try_from(run.workload.steps[server].len()).unwrap_or(u32::MAX);
    run.ledger.issue(assignment, server, steps, 0);
    run.ledger.delivered(assignment);
}
