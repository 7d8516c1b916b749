//! A whole planned or simulated rollout: scheduled, audited against R1–R5, bounded, reported.

use crate::audit::{Violation, audit_schedule};
use crate::bounds::lower_bound;
use crate::fleet::Fleet;
use crate::report::{Report, build_report};
use crate::scheduler::Strategy;
use crate::simulator::{SimConfig, SimRun, simulate};
use crate::workload::Workload;

/// The expected schedule: expected durations, no failures.
pub fn plan(fleet: &Fleet, workload: &Workload, strategy: Strategy) -> Result<Report, Violation> {
    simulate_rollout(fleet, workload, &SimConfig::plan(strategy)).map(|(report, _)| report)
}

/// A simulated rollout. The lower bound is computed over the work that actually ran, with the
/// durations it actually took, so it stays a true bound under jitter and failures.
pub fn simulate_rollout(
    fleet: &Fleet,
    workload: &Workload,
    config: &SimConfig,
) -> Result<(Report, SimRun), Violation> {
    let run = simulate(fleet, &workload.expected, config);
    audit_schedule(fleet, &run.records)?;
    let bound = lower_bound(fleet, &run.executed_work());
    let report = build_report(fleet, workload, &run.records, run.makespan, bound);
    Ok((report, run))
}
