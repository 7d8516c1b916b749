//! Property tests over random SfB-like fleets: every simulated schedule obeys R1–R5 (checked
//! by the independent auditor), the lower bound never exceeds the makespan, the outcome of
//! every server is explained, and a seed reproduces its run exactly.

use baton_core::audit::audit_schedule;
use baton_core::bounds::lower_bound;
use baton_core::fleet::Fleet;
use baton_core::fleetgen::{FleetSpec, generate, to_toml};
use baton_core::policy::Until;
use baton_core::rollout::simulate_rollout;
use baton_core::scheduler::{Outcome, ServerRecord, Strategy as Order};
use baton_core::simulator::{SimConfig, simulate, simulate_from};
use baton_core::window::{Fit, Window, Windows};
use baton_core::workload::Workload;
use proptest::prelude::*;

fn fleet_spec() -> impl Strategy<Value = FleetSpec> {
    (
        1usize..40,
        0usize..80,
        0usize..4,
        proptest::option::of(1u32..6),
        proptest::option::of(1u32..12),
        0.0f64..0.6,
        0.0f64..0.9,
        1u32..4,
        prop_oneof![Just(0.0), 0.0f64..1.0],
        any::<u64>(),
    )
        .prop_map(
            |(
                pools,
                extra,
                sites,
                site_cap,
                fleet_cap,
                standard_share,
                paired_share,
                max_unavailable,
                backends_last_share,
                seed,
            )| FleetSpec {
                servers: pools + extra,
                pools,
                sites,
                site_cap,
                fleet_cap,
                standard_share,
                paired_share,
                max_unavailable,
                backends_last_share,
                seed,
            },
        )
}

fn sim_config() -> impl Strategy<Value = SimConfig> {
    (
        prop_oneof![Just(Order::Baton), (1u32..8).prop_map(Order::Batches)],
        any::<u64>(),
        0.0f64..0.6,
        prop_oneof![Just(0.0), 0.0f64..0.3],
    )
        .prop_map(|(strategy, seed, jitter, failure_rate)| SimConfig {
            strategy,
            seed,
            jitter,
            failure_rate,
        })
}

/// Follows a not-started server's blockers to a failed server.
fn held_by_a_failure(records: &[ServerRecord], server: usize) -> bool {
    let mut current = server;
    for _ in 0..records.len() {
        let Some(blocker) = records[current].waited_for else {
            return false;
        };
        if records[blocker.holder].outcome == Some(Outcome::Failed)
            || blocker.until == Until::Repaired
        {
            return true;
        }
        if blocker.until != Until::Done
            || records[blocker.holder].outcome != Some(Outcome::NotStarted)
        {
            return false;
        }
        current = blocker.holder;
    }
    false
}

fn fleet_with_failure_limit(spec: &FleetSpec, max_failures: u32) -> Fleet {
    let mut fleet = generate(spec);
    fleet.max_failures = max_failures;
    // Some fleets get a canary gate (the simulator approves it when it is done).
    fleet.canary_pools = spec
        .seed
        .is_multiple_of(3)
        .then_some(1 + (spec.seed / 3 % 3) as u32);
    // Some get maintenance windows, fleet-wide and for some sites.
    if spec.seed % 4 == 1 {
        add_windows(&mut fleet, spec.seed);
    }
    fleet
}

/// Windows of 2 to 24 hours (every server fits one), in a few time zones, drawn from `seed`.
fn add_windows(fleet: &mut Fleet, seed: u64) {
    const ZONES: [&str; 4] = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata"];
    let window = |n: u64| {
        let mut days = [false; 7];
        for (i, day) in days.iter_mut().enumerate() {
            *day = (n >> i) & 1 == 1 || i == (n % 7) as usize;
        }
        let start = ((n / 7) % 96 * 15) as u16;
        let hours = 2 + (n / 11) % 23;
        let end = ((start as u64 + hours * 60) % (24 * 60)) as u16;
        Window::new(days, start, end, ZONES[(n / 13 % 4) as usize]).expect("known zone")
    };
    let mut n = seed;
    let mut next = || {
        n = n
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        n >> 17
    };
    fleet.windows = Windows(vec![window(next())]);
    for site in &mut fleet.sites {
        if next() % 2 == 0 {
            site.windows = Windows(vec![window(next()), window(next())]);
        }
    }
}

fn expected(fleet: &Fleet) -> Vec<u64> {
    fleet
        .servers
        .iter()
        .map(|s| s.expected_duration.expect("generated fleets set durations"))
        .collect()
}

proptest! {
    // 256 cases each by default; PROPTEST_CASES=N runs more.

    #[test]
    fn every_schedule_obeys_the_rules(spec in fleet_spec(), config in sim_config(), max_failures in 0u32..4) {
        let fleet = fleet_with_failure_limit(&spec, max_failures);
        let run = simulate(&fleet, &expected(&fleet), &config);
        if let Err(violation) = audit_schedule(&fleet, &run.records) {
            prop_assert!(false, "{violation}");
        }
    }

    #[test]
    fn lower_bound_never_exceeds_makespan(spec in fleet_spec(), config in sim_config(), max_failures in 0u32..4) {
        let fleet = fleet_with_failure_limit(&spec, max_failures);
        let run = simulate(&fleet, &expected(&fleet), &config);
        let bound = lower_bound(&fleet, &run.executed_work());
        prop_assert!(bound <= run.makespan, "bound {} > makespan {}", bound, run.makespan);
    }

    #[test]
    fn same_seed_same_output(spec in fleet_spec(), config in sim_config()) {
        let fleet = generate(&spec);
        let workload = Workload { expected: expected(&fleet), steps: vec![Vec::new(); fleet.servers.len()] };
        let first = simulate_rollout(&fleet, &workload, &config).expect("audited");
        let second = simulate_rollout(&generate(&spec), &workload, &config).expect("audited");
        prop_assert_eq!(&first.0, &second.0);
        prop_assert_eq!(first.1, second.1);
    }

    #[test]
    fn without_failures_every_server_succeeds(spec in fleet_spec(), mut config in sim_config()) {
        config.failure_rate = 0.0;
        let fleet = generate(&spec);
        let run = simulate(&fleet, &expected(&fleet), &config);
        for (server, record) in run.records.iter().enumerate() {
            prop_assert_eq!(record.outcome, Some(Outcome::Succeeded), "server {}", &fleet.servers[server].fqdn);
        }
    }

    #[test]
    fn every_outcome_is_explained(spec in fleet_spec(), mut config in sim_config(), max_failures in 0u32..3) {
        config.failure_rate = config.failure_rate.max(0.05);
        let fleet = fleet_with_failure_limit(&spec, max_failures);
        let run = simulate(&fleet, &expected(&fleet), &config);
        let failures = run.records.iter().filter(|r| r.outcome == Some(Outcome::Failed)).count() as u32;
        for (server, record) in run.records.iter().enumerate() {
            let pool = fleet.servers[server].pool;
            match record.outcome {
                Some(Outcome::Skipped) => {
                    let (failed, _) = record.quarantined_by.expect("skipped names the failure");
                    prop_assert_eq!(fleet.servers[failed].pool, pool);
                    prop_assert_eq!(run.records[failed].outcome, Some(Outcome::Failed));
                }
                Some(Outcome::NotStarted) => {
                    // Only the failure limit, or a rule held by a failed server (directly, or
                    // through R7's wait for a server that is itself held), stops a server.
                    let held_by_failure = held_by_a_failure(&run.records, server);
                    prop_assert!(failures > max_failures || held_by_failure, "server {} not started without cause", server);
                }
                Some(Outcome::Succeeded | Outcome::Failed) => {
                    prop_assert!(record.start.is_some() && record.end.is_some());
                }
                None => prop_assert!(false, "server {} has no outcome", server),
            }
        }
    }

    #[test]
    fn every_server_starts_inside_a_window_it_fits(spec in fleet_spec(), config in sim_config(), origin in 1_700_000_000_000i64..1_900_000_000_000) {
        let mut fleet = generate(&spec);
        add_windows(&mut fleet, spec.seed);
        let durations = expected(&fleet);
        let run = simulate_from(&fleet, &durations, &config, origin);
        if let Err(violation) = audit_schedule(&fleet, &run.records) {
            prop_assert!(false, "{violation}");
        }
        for (server, record) in run.records.iter().enumerate() {
            if let Some(start) = record.start {
                let at = origin + start as i64;
                prop_assert_eq!(fleet.windows_of(server).fit(at, durations[server]), Fit::Now, "server {} at {}", server, at);
            } else if config.failure_rate == 0.0 {
                prop_assert!(false, "server {} never started though every window fits it", server);
            }
        }
    }

    #[test]
    fn plan_equals_a_simulation_without_jitter(spec in fleet_spec(), seed in any::<u64>()) {
        let fleet = generate(&spec);
        let durations = expected(&fleet);
        let plan = simulate(&fleet, &durations, &SimConfig::plan(Order::Baton));
        let sim = simulate(&fleet, &durations, &SimConfig { seed, ..SimConfig::plan(Order::Baton) });
        prop_assert_eq!(plan.records, sim.records);
    }

    #[test]
    fn generated_fleets_survive_a_trip_through_the_file_format(spec in fleet_spec(), max_failures in 0u32..4) {
        let fleet = fleet_with_failure_limit(&spec, max_failures);
        let text = to_toml(&fleet);
        let mut loaded = match Fleet::from_toml("generated.toml", &text) {
            Ok(loaded) => loaded,
            Err(err) => return Err(TestCaseError::fail(format!("{err}\n{text}"))),
        };
        loaded.file.clone_from(&fleet.file);
        for server in &mut loaded.servers {
            (server.line, server.duration_line) = (None, None);
        }
        prop_assert_eq!(loaded, fleet);
    }
}
