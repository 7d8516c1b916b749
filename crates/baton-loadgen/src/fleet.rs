//! A fleet and a runbook to go with the simulated workers (`--write-fleet`, `--write-runbook`):
//! one Standard Edition pool per worker, named by the same FQDN pattern, so that `baton apply`
//! starts a rollout the load generator's workers carry out.

use std::fmt::Write as _;
use std::time::Duration;

use crate::pattern::FqdnPattern;

/// `count` single-server Standard Edition pools (`pattern` numbered from 1), at most
/// `max_parallel` servers in maintenance at once (`None`: no fleet cap).
pub fn fleet_toml(
    name: &str,
    pattern: &FqdnPattern,
    count: usize,
    max_parallel: Option<u32>,
) -> String {
    let mut toml = format!(
        "# {count} simulated servers for baton-loadgen (--fqdn-pattern {pattern:?}): one\n# Standard Edition pool each.\n[fleet]\nname = \"{name}\"\n"
    );
    if let Some(max) = max_parallel {
        let _ = writeln!(toml, "max_parallel = {max}");
    }
    for i in 1..=count {
        let fqdn = pattern.fqdn(i);
        let _ = write!(
            toml,
            "\n[[pool]]\nfqdn = \"{fqdn}\"\nedition = \"standard\"\n\n  [[pool.server]]\n  fqdn = \"{fqdn}\"\n  role = \"standard\"\n"
        );
    }
    toml
}

/// A runbook of `steps` trivial steps (`true`); its expected duration is what the load
/// generator's workers take with `--step-time step_time`, so `baton plan` gives the makespan
/// to compare the live rollout with.
pub fn runbook_toml(steps: u32, step_time: Duration) -> String {
    let expected = (step_time * steps.max(1)).max(Duration::from_millis(1));
    let expected = humantime::format_duration(Duration::from_millis(
        u64::try_from(expected.as_millis()).unwrap_or(u64::MAX),
    ));
    let mut toml = format!(
        "# For baton-loadgen: its workers do not run the commands; each step takes --step-time.\n[runbook]\nname = \"loadgen\"\nshell = \"sh\"\nexpected_duration = \"{expected}\"\n"
    );
    for step in 1..=steps.max(1) {
        let _ = write!(
            toml,
            "\n[[step]]\nid = \"step{step}\"\nrun = \"true\"\ntimeout = \"1m\"\n"
        );
    }
    toml
}

/// The makespan `baton plan` gives for `fleet_toml` with `runbook_toml`, in seconds: what a
/// live rollout of the load generator's workers is compared with.
pub fn planned_makespan_s(fleet_toml: &str, runbook_toml: &str) -> Result<f64, String> {
    use baton_core::{Fleet, Runbook, Strategy};
    let fleet = Fleet::from_toml("fleet", fleet_toml).map_err(|e| e.to_string())?;
    let runbook = Runbook::from_toml("runbook", runbook_toml).map_err(|e| e.to_string())?;
    let params = runbook
        .resolve_params(&[], "params")
        .map_err(|e| e.to_string())?;
    let workload = baton_core::workload::build_workload(&fleet, Some((&runbook, &params)))
        .map_err(|e| e.to_string())?;
    baton_core::rollout::plan(&fleet, &workload, Strategy::Baton)
        .map(|report| report.makespan_s)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fleet_and_runbook_pass_baton_core_validation() {
        let pattern: FqdnPattern = "w{i}.load.test".parse().unwrap();
        let fleet = fleet_toml("load", &pattern, 3, Some(2));
        assert!(fleet.contains("max_parallel = 2"));
        assert!(fleet.contains("fqdn = \"w3.load.test\""));
        let runbook = runbook_toml(3, Duration::from_millis(300));
        assert!(
            runbook.contains("expected_duration = \"900ms\""),
            "{runbook}"
        );
        // 3 servers, 2 at a time, 0.9 s each: two waves.
        let makespan = planned_makespan_s(&fleet, &runbook).unwrap();
        assert!((makespan - 1.8).abs() < 1e-9, "{makespan}");
    }
}
