//! The plan/simulation report: the JSON contract of `baton plan` and `baton simulate`, and
//! the one-line reasons shown to operators.

use crate::fleet::{Fleet, PoolId, ServerId};
use crate::scheduler::{Outcome, ServerRecord, StopReason};
use crate::time::{Millis, clock, seconds};
use crate::workload::Workload;
use serde::Serialize;
use std::collections::{HashMap, HashSet};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub fleet: String,
    pub makespan_s: f64,
    pub lower_bound_s: f64,
    pub servers: Vec<ServerReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerReport {
    pub fqdn: String,
    pub pool: String,
    pub role: String,
    /// `null` when the server never started.
    pub start_s: Option<f64>,
    pub end_s: Option<f64>,
    pub outcome: &'static str,
    pub steps: Vec<StepReport>,
    /// Why it waited (or, if it never ran, why not); `null` if it started at once.
    pub waited_for: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepReport {
    pub id: String,
    pub command: String,
}

/// Display names: a server's or pool's first DNS label when it is unique in the fleet (as
/// operators say "be01"), else the full FQDN.
#[derive(Debug, Clone)]
pub struct ShortNames {
    servers: Vec<String>,
    pools: Vec<String>,
}

impl ShortNames {
    pub fn new(fleet: &Fleet) -> Self {
        let label = |fqdn: &str| fqdn.split('.').next().unwrap_or(fqdn).to_ascii_lowercase();
        // A Standard Edition pool and its server share one FQDN: count each name once.
        let distinct: HashSet<String> = fleet
            .servers
            .iter()
            .map(|s| &s.fqdn)
            .chain(fleet.pools.iter().map(|p| &p.fqdn))
            .map(|fqdn| fqdn.to_ascii_lowercase())
            .collect();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for fqdn in &distinct {
            *seen.entry(label(fqdn)).or_default() += 1;
        }
        let short = |fqdn: &String| {
            let l = label(fqdn);
            if seen[&l] == 1 {
                fqdn.split('.').next().unwrap_or(fqdn).to_string()
            } else {
                fqdn.clone()
            }
        };
        ShortNames {
            servers: fleet.servers.iter().map(|s| short(&s.fqdn)).collect(),
            pools: fleet.pools.iter().map(|p| short(&p.fqdn)).collect(),
        }
    }

    pub fn server(&self, id: ServerId) -> &str {
        &self.servers[id]
    }

    pub fn pool(&self, id: PoolId) -> &str {
        &self.pools[id]
    }
}

/// Why a server waited, or why it never ran.
pub fn explain(fleet: &Fleet, names: &ShortNames, record: &ServerRecord) -> Option<String> {
    match record.outcome {
        Some(Outcome::Skipped) => record.quarantined_by.map(|(failed, at)| {
            format!(
                "quarantined: {} failed at {}, so {} starts nothing more",
                names.server(failed),
                clock(at),
                names.pool(fleet.servers[failed].pool)
            )
        }),
        Some(Outcome::NotStarted) => Some(match record.stopped {
            Some(StopReason::FailureLimit {
                failures,
                limit,
                at,
            }) => format!(
                "stopped: {failures} failure(s) at {} exceed max_failures = {limit}",
                clock(at)
            ),
            Some(StopReason::Aborted { at }) => {
                format!("stopped: rollout aborted at {}", clock(at))
            }
            Some(StopReason::Stuck) | None => match record.waited_for {
                Some(blocker) => blocker.describe(fleet, names),
                None => "stopped: nothing more may start".to_string(),
            },
        }),
        _ => record.waited_for.map(|b| b.describe(fleet, names)),
    }
}

/// Builds the report of a finished (planned or simulated) rollout.
pub fn build_report(
    fleet: &Fleet,
    workload: &Workload,
    records: &[ServerRecord],
    makespan: Millis,
    lower_bound: Millis,
) -> Report {
    let names = ShortNames::new(fleet);
    let servers = fleet
        .servers
        .iter()
        .zip(records)
        .enumerate()
        .map(|(id, (server, record))| ServerReport {
            fqdn: server.fqdn.clone(),
            pool: fleet.pools[server.pool].fqdn.clone(),
            role: server.role.as_str().to_string(),
            start_s: record.start.map(seconds),
            end_s: record.end.map(seconds),
            outcome: record.outcome.map_or("not_started", Outcome::as_str),
            steps: workload.steps[id]
                .iter()
                .map(|s| StepReport {
                    id: s.id.clone(),
                    command: s.command.clone(),
                })
                .collect(),
            waited_for: explain(fleet, &names, record),
        })
        .collect();
    Report {
        fleet: fleet.name.clone(),
        makespan_s: seconds(makespan),
        lower_bound_s: seconds(lower_bound),
        servers,
    }
}
