//! A whole planned or simulated rollout: scheduled, audited against R1–R5, bounded, reported.

use crate::audit::{Violation, audit_schedule};
use crate::bounds::lower_bound;
use crate::fleet::Fleet;
use crate::report::{Report, build_report};
use crate::scheduler::Strategy;
use crate::simulator::{SimConfig, SimRun, simulate_from};
use crate::workload::Workload;

/// The expected schedule: expected durations, no failures.
pub fn plan(fleet: &Fleet, workload: &Workload, strategy: Strategy) -> Result<Report, Violation> {
    plan_at(fleet, workload, strategy, 0)
}

/// [`plan`] for a rollout that begins at `origin_ms` (unix ms), which maintenance windows need.
pub fn plan_at(
    fleet: &Fleet,
    workload: &Workload,
    strategy: Strategy,
    origin_ms: i64,
) -> Result<Report, Violation> {
    simulate_rollout_at(fleet, workload, &SimConfig::plan(strategy), origin_ms)
        .map(|(report, _)| report)
}

/// A simulated rollout. The lower bound is computed over the work that actually ran, with the
/// durations it actually took, so it stays a true bound under jitter and failures.
pub fn simulate_rollout(
    fleet: &Fleet,
    workload: &Workload,
    config: &SimConfig,
) -> Result<(Report, SimRun), Violation> {
    simulate_rollout_at(fleet, workload, config, 0)
}

/// [`simulate_rollout`] for a rollout that begins at `origin_ms` (unix ms).
pub fn simulate_rollout_at(
    fleet: &Fleet,
    workload: &Workload,
    config: &SimConfig,
    origin_ms: i64,
) -> Result<(Report, SimRun), Violation> {
    let run = simulate_from(fleet, &workload.expected, config, origin_ms);
    audit_schedule(fleet, &run.records)?;
    let bound = lower_bound(fleet, &run.executed_work());
    let report = build_report(fleet, workload, &run.records, run.makespan, bound);
    Ok((report, run))
}
