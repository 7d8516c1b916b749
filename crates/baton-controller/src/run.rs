//! One rollout in flight: its fleet, rendered workload and scheduler, plus what the controller
//! tracks around them (assignments, delivery, the step each server is on).

use crate::spans::{RolloutTrace, ServerInfo};
use baton_core::Fleet;
use baton_core::assignment::Ledger;
use baton_core::fleet::ServerId;
use baton_core::report::{ShortNames, explain};
use baton_core::runbook::Shell;
use baton_core::scheduler::{Event, Outcome, Scheduler};
use baton_core::time::{Millis, seconds};
use baton_core::watchdog::Watchdog;
use baton_core::workload::Workload;
use baton_proto::v1;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Running,
    Paused,
    /// The canary pools are done; the rest waits for `baton approve`.
    AwaitingApproval,
    /// Abort requested: nothing new starts; running servers finish.
    Aborting,
    Finished,
    Aborted,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Paused => "paused",
            RunState::AwaitingApproval => "awaiting_approval",
            RunState::Aborting => "aborting",
            RunState::Finished => "finished",
            RunState::Aborted => "aborted",
        }
    }

    pub fn is_over(self) -> bool {
        matches!(self, RunState::Finished | RunState::Aborted)
    }
}

/// The ETA is simulated again at most this often...
pub const ETA_REFRESH: Duration = Duration::from_secs(5);
/// ...and at least this often while the rollout runs (servers overrunning their expected end
/// push it back).
pub const ETA_MAX_AGE: Duration = Duration::from_secs(30);

struct EtaCache {
    computed: Instant,
    version: u64,
    end: Option<Millis>,
}

/// A server's maintenance interrupted by its worker's stream dropping.
#[derive(Debug, Clone, Copy)]
pub struct Interruption {
    /// When the first drop of this interruption happened.
    pub since: Instant,
    /// Drops in this interruption (1 for the one `worker_lost` records).
    pub drops: u64,
}

/// What one step attempt has written: counted by the store as it keeps the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputTally {
    pub assignment_id: String,
    pub step_index: u32,
    pub attempt: u32,
    /// Lines and bytes written (each line with its newline), kept or not.
    pub lines: u64,
    pub bytes: u64,
    /// Dropped to keep the attempt within `--max-step-output`.
    pub dropped_lines: u64,
    pub dropped_bytes: u64,
}

impl OutputTally {
    pub fn of(attempt: &baton_store::StepOutputAttempt) -> Self {
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        OutputTally {
            assignment_id: attempt.assignment_id.clone(),
            step_index: u32::try_from(attempt.step_index).unwrap_or(u32::MAX),
            attempt: u32::try_from(attempt.attempt).unwrap_or(u32::MAX),
            lines: count(attempt.lines),
            bytes: count(attempt.bytes),
            dropped_lines: count(attempt.dropped_lines),
            dropped_bytes: count(attempt.dropped_bytes),
        }
    }
}

/// What a `step_finished` event says after the result: `(12,345 lines in 1.2s)`, with what
/// was dropped over the cap, without the duration when the worker did not measure it.
pub fn attempt_summary(output: Option<&OutputTally>, duration_ms: Option<u64>) -> String {
    let lines = output.map_or(0, |o| o.lines);
    let noun = if lines == 1 { "line" } else { "lines" };
    let mut summary = format!("({} {noun}", baton_store::thousands(lines as i64));
    if let Some(ms) = duration_ms {
        summary.push_str(&format!(" in {}", short_duration(ms)));
    }
    if let Some(o) = output.filter(|o| o.dropped_lines > 0) {
        summary.push_str(&format!(
            "; {} dropped over --max-step-output",
            baton_store::dropped_text(o.dropped_lines as i64, o.dropped_bytes as i64)
        ));
    }
    summary.push(')');
    summary
}

/// `250ms`, `1.2s`, `4m05s`, `2h03m`.
fn short_duration(ms: u64) -> String {
    match ms {
        0..1000 => format!("{ms}ms"),
        1000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

/// Whether a `step_finished` event's detail (`STEP attempt N: RESULT`, since issue #11 with
/// ` (LINES lines …)` after the result) records a success: crash recovery counts the step.
pub fn step_finished_succeeded(detail: &str) -> bool {
    detail
        .split_once(": ")
        .is_some_and(|(_, result)| result == "exit 0" || result.starts_with("exit 0 ("))
}

pub struct RolloutRun {
    pub id: i64,
    pub fleet: Fleet,
    pub workload: Workload,
    pub shell: Shell,
    pub scheduler: Scheduler,
    pub state: RunState,
    pub created_at_ms: i64,
    pub planned_makespan_ms: Millis,
    pub lower_bound_ms: Millis,
    started: Instant,
    ended_at_ms: Option<Millis>,
    /// Its assignments, open and ended, and which worker reports about them count.
    pub ledger: Ledger,
    /// Servers in maintenance whose state is unknown, waiting for `baton resolve`, and why.
    pub attention: HashMap<ServerId, String>,
    /// Servers in maintenance whose worker's stream dropped, until the server makes progress
    /// again: one `worker_lost` per interruption, however often the stream drops in it.
    pub interruptions: HashMap<ServerId, Interruption>,
    /// Assigned servers whose worker was not connected: delivered when it connects.
    pub undelivered: BTreeSet<ServerId>,
    /// Running server -> the step it is on.
    pub current_step: HashMap<ServerId, String>,
    /// Running server -> what its current step attempt has written so far (the output itself
    /// is in the store), for the attempt's `step_finished` event.
    pub output: HashMap<ServerId, OutputTally>,
    /// Servers that were running when this controller took the rollout over: the output of
    /// their step attempt then running is counted by the store, not in `output`.
    pub output_before_takeover: BTreeSet<ServerId>,
    /// Running servers resumed after their worker restarted: the step their assignment goes on
    /// from (sent again as is if it could not be delivered).
    pub resume_from: HashMap<ServerId, u32>,
    /// Servers whose `skipped` / `not_started` event is written.
    pub settled: Vec<bool>,
    /// Times back-end outages against their pools' budgets.
    pub watchdog: Watchdog,
    /// Pools whose back end used up its budget, until an operator resumes (metrics).
    pub at_risk: BTreeSet<baton_core::fleet::PoolId>,
    /// Unix ms of the last progress: a start, a result, begin, resume, approve (metrics).
    pub last_progress_ms: i64,
    /// Why the controller paused the rollout by itself (a budget used up), until resumed.
    pub note: Option<String>,
    /// Its trace: spans recorded as its servers and steps go.
    pub trace: RolloutTrace,
    /// Bumped each time the scheduler is fed events (the ETA is recomputed only then).
    pub scheduler_version: u64,
    eta: Option<EtaCache>,
    names: ShortNames,
}

impl RolloutRun {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: i64,
        fleet: Fleet,
        workload: Workload,
        shell: Shell,
        scheduler: Scheduler,
        created_at_ms: i64,
        planned_makespan_ms: Millis,
        lower_bound_ms: Millis,
        tracer: Option<opentelemetry::global::BoxedTracer>,
    ) -> Self {
        let servers = fleet.servers.len();
        let trace = RolloutTrace::new(tracer, id, &fleet.name, servers, created_at_ms);
        let names = ShortNames::new(&fleet);
        let watchdog = Watchdog::new(&fleet);
        RolloutRun {
            id,
            fleet,
            workload,
            shell,
            scheduler,
            state: RunState::Running,
            created_at_ms,
            planned_makespan_ms,
            lower_bound_ms,
            started: Instant::now(),
            ended_at_ms: None,
            ledger: Ledger::new(),
            attention: HashMap::new(),
            interruptions: HashMap::new(),
            resume_from: HashMap::new(),
            at_risk: BTreeSet::new(),
            last_progress_ms: baton_store::now_ms(),
            undelivered: BTreeSet::new(),
            current_step: HashMap::new(),
            output: HashMap::new(),
            output_before_takeover: BTreeSet::new(),
            settled: vec![false; servers],
            watchdog,
            note: None,
            trace,
            scheduler_version: 0,
            eta: None,
            names,
        }
    }

    /// Milliseconds since the rollout started: the scheduler's clock.
    pub fn now(&self) -> Millis {
        self.ended_at_ms.unwrap_or_else(|| {
            u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
        })
    }

    /// Sets the clock as if the rollout had started `elapsed` ms ago (a restarted controller
    /// taking a rollout over).
    pub fn set_elapsed(&mut self, elapsed: Millis) {
        self.started = Instant::now()
            .checked_sub(std::time::Duration::from_millis(elapsed))
            .unwrap_or_else(Instant::now);
    }

    /// How long ago it ended, if it has.
    pub fn ended_ago(&self) -> Option<Duration> {
        self.ended_at_ms.map(|ended| {
            self.started
                .elapsed()
                .saturating_sub(Duration::from_millis(ended))
        })
    }

    pub fn mark_ended(&mut self, state: RunState) {
        self.ended_at_ms = Some(self.now());
        self.state = state;
    }

    /// A server's maintenance is over: the event for the scheduler. The live path and the
    /// replay share this so they cannot drift. A failed back end stays down, so its outage
    /// goes on being timed.
    pub fn server_finished(&mut self, server: ServerId, succeeded: bool) -> Event {
        self.current_step.remove(&server);
        self.interruptions.remove(&server);
        self.resume_from.remove(&server);
        if succeeded {
            self.watchdog.outage_ended(server);
            Event::Succeeded(server)
        } else {
            Event::Failed(server)
        }
    }

    pub fn fqdn(&self, server: ServerId) -> &str {
        &self.fleet.servers[server].fqdn
    }

    pub fn pool_fqdn(&self, server: ServerId) -> &str {
        &self.fleet.pools[self.fleet.servers[server].pool].fqdn
    }

    pub fn server_by_fqdn(&self, fqdn: &str) -> Option<ServerId> {
        self.fleet.server_by_fqdn(fqdn)
    }

    /// When the rollout is expected to end, by the scheduler's own simulation of what remains
    /// (`None` once over, or if it cannot tell). The simulation takes tens of milliseconds on
    /// a 10,000-server fleet (docs/benchmarks.md), under the engine's lock: it is run again
    /// only when the scheduler has moved on, at most every [`ETA_REFRESH`], or when the last
    /// answer is overdue or old.
    pub fn expected_end(&mut self) -> Option<Millis> {
        if self.state.is_over() {
            return None;
        }
        let now = self.now();
        let stale = self.eta.as_ref().is_none_or(|eta| {
            let age = eta.computed.elapsed();
            age >= ETA_REFRESH
                && (eta.version != self.scheduler_version
                    || eta.end.is_none_or(|end| end <= now)
                    || age >= ETA_MAX_AGE)
        });
        if stale {
            self.eta = Some(EtaCache {
                computed: Instant::now(),
                version: self.scheduler_version,
                end: baton_core::simulator::expected_end(&self.scheduler, now),
            });
        }
        self.last_expected_end()
    }

    /// The last [`RolloutRun::expected_end`], without simulating again (for `status`).
    pub fn last_expected_end(&self) -> Option<Millis> {
        if self.state.is_over() {
            return None;
        }
        self.eta.as_ref().and_then(|eta| eta.end)
    }

    /// What the trace says about a server.
    pub fn server_info(&self, server: ServerId) -> ServerInfo {
        ServerInfo {
            fqdn: self.fqdn(server).to_string(),
            pool: self.pool_fqdn(server).to_string(),
            role: self.fleet.servers[server].role.as_str(),
        }
    }

    /// The message that hands a server's steps to its worker, each with its span's context.
    pub fn assignment(
        &mut self,
        assignment_id: &str,
        server: ServerId,
        epoch: u64,
        store_id: &str,
    ) -> v1::Assignment {
        let info = self.server_info(server);
        let contexts = self.trace.step_contexts(
            assignment_id,
            &info,
            self.workload.steps[server].len(),
            SystemTime::now(),
        );
        v1::Assignment {
            assignment_id: assignment_id.to_string(),
            rollout_id: self.id.to_string(),
            shell: self.shell.as_str().to_string(),
            steps: self.workload.steps[server]
                .iter()
                .zip(contexts)
                .map(|(step, trace_context)| v1::Step {
                    id: step.id.clone(),
                    command: step.command.clone(),
                    timeout_ms: step.timeout,
                    retries: step.retries,
                    gate_interval_ms: step.gate_interval.unwrap_or(0),
                    idempotent: step.idempotent,
                    trace_context,
                })
                .collect(),
            expected_duration_ms: self.workload.expected[server],
            epoch,
            start_step: self.resume_from.get(&server).copied().unwrap_or(0),
            store_id: store_id.to_string(),
        }
    }

    /// A short fingerprint of the steps a server runs, so durations of past runs are compared
    /// only with runs of the same step list (FNV-1a over ids, commands and limits).
    pub fn steps_fingerprint(&self, server: ServerId) -> String {
        steps_fingerprint(&self.workload.steps[server])
    }

    /// Servers the scheduler has given up on (skipped or not started) whose event is not
    /// written yet, with the reason.
    pub fn newly_settled(&self) -> Vec<(ServerId, Outcome, String)> {
        self.scheduler
            .records()
            .iter()
            .enumerate()
            .filter(|(id, _)| !self.settled[*id])
            .filter_map(|(id, record)| match record.outcome {
                Some(outcome @ (Outcome::Skipped | Outcome::NotStarted)) => Some((
                    id,
                    outcome,
                    explain(&self.fleet, &self.names, record).unwrap_or_default(),
                )),
                _ => None,
            })
            .collect()
    }

    /// `connected(fqdn)`: whether its worker is connected; `lost_for(fqdn)`: for how long it
    /// has been gone, if it was connected before.
    /// A server's state, as `baton status` and the metrics name it.
    pub fn server_state(&self, server: ServerId) -> &'static str {
        let record = &self.scheduler.records()[server];
        match (record.start, record.outcome) {
            (_, Some(outcome)) => outcome.as_str(),
            (Some(_), None) if self.attention.contains_key(&server) => "needs_attention",
            (Some(_), None) => "running",
            (None, None) => "pending",
        }
    }

    pub fn status(
        &self,
        connected: &dyn Fn(&str) -> bool,
        lost_for: &dyn Fn(&str) -> Option<f64>,
    ) -> v1::RolloutStatus {
        let records = self.scheduler.records();
        let servers = self
            .fleet
            .servers
            .iter()
            .enumerate()
            .map(|(id, server)| {
                let record = &records[id];
                let state = self.server_state(id);
                let waited_for = match record.outcome {
                    None if self.attention.contains_key(&id) => self.attention.get(&id).cloned(),
                    Some(_) => explain(&self.fleet, &self.names, record),
                    None => self
                        .scheduler
                        .waiting_for(id)
                        .map(|b| b.describe(&self.fleet, &self.names)),
                };
                v1::ServerStatus {
                    fqdn: server.fqdn.clone(),
                    pool: self.fleet.pools[server.pool].fqdn.clone(),
                    role: server.role.as_str().to_string(),
                    state: state.to_string(),
                    start_s: record.start.map(seconds),
                    end_s: record.end.map(seconds),
                    waited_for: waited_for.unwrap_or_default(),
                    current_step: self.current_step.get(&id).cloned().unwrap_or_default(),
                    worker_connected: connected(&server.fqdn),
                    worker_lost_s: (state == "running" && !connected(&server.fqdn))
                        .then(|| lost_for(&server.fqdn))
                        .flatten(),
                }
            })
            .collect();
        v1::RolloutStatus {
            rollout_id: self.id.to_string(),
            fleet: self.fleet.name.clone(),
            state: self.state.as_str().to_string(),
            created_at: baton_store::rfc3339_ms(self.created_at_ms),
            elapsed_s: seconds(self.now()),
            planned_makespan_s: seconds(self.planned_makespan_ms),
            lower_bound_s: seconds(self.lower_bound_ms),
            servers,
            note: self.note.clone().unwrap_or_default(),
            trace_id: self
                .trace
                .trace_id()
                .map(|id| id.to_string())
                .unwrap_or_default(),
            expected_remaining_s: self
                .last_expected_end()
                .map(|end| seconds(end.saturating_sub(self.now()))),
        }
    }
}

/// See [`RolloutRun::steps_fingerprint`].
pub fn steps_fingerprint(steps: &[baton_core::runbook::RenderedStep]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for step in steps {
        eat(step.id.as_bytes());
        eat(&[0]);
        eat(step.command.as_bytes());
        eat(&[0]);
        eat(&step.timeout.to_le_bytes());
        eat(&step.retries.to_le_bytes());
        eat(&step.gate_interval.unwrap_or(0).to_le_bytes());
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(lines: u64, dropped_lines: u64, dropped_bytes: u64) -> OutputTally {
        OutputTally {
            assignment_id: "a".into(),
            step_index: 0,
            attempt: 1,
            lines,
            bytes: lines * 10,
            dropped_lines,
            dropped_bytes,
        }
    }

    #[test]
    fn a_step_result_says_how_much_it_wrote_and_how_long_it_took() {
        assert_eq!(attempt_summary(None, Some(250)), "(0 lines in 250ms)");
        assert_eq!(
            attempt_summary(Some(&tally(1, 0, 0)), Some(1234)),
            "(1 line in 1.2s)"
        );
        assert_eq!(
            attempt_summary(Some(&tally(20_000, 0, 0)), Some(245_000)),
            "(20,000 lines in 4m05s)"
        );
        assert_eq!(attempt_summary(Some(&tally(3, 0, 0)), None), "(3 lines)");
        assert_eq!(
            attempt_summary(Some(&tally(2_000_000, 12_345, 1_258_291)), Some(7_380_000)),
            "(2,000,000 lines in 2h03m; 12,345 lines (1.2 MiB) dropped over --max-step-output)"
        );
    }

    #[test]
    fn recovery_reads_the_result_with_or_without_the_summary() {
        assert!(step_finished_succeeded("install attempt 1: exit 0"));
        assert!(step_finished_succeeded(
            "install attempt 2: exit 0 (3 lines in 1.2s)"
        ));
        assert!(!step_finished_succeeded(
            "install attempt 1: exit 3 (0 lines in 1.2s)"
        ));
        assert!(!step_finished_succeeded("install attempt 1: exit 0123"));
        assert!(!step_finished_succeeded(
            "install attempt 1: timed out (2 lines in 30.0s)"
        ));
        assert!(!step_finished_succeeded(
            "install attempt 1: could not start: exit 0 (x) (0 lines)"
        ));
    }
}
