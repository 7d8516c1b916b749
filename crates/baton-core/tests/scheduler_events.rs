//! The scheduler as a state machine: events in, actions out, and the reasons it gives.

use baton_core::fleet::Fleet;
use baton_core::policy::{Blocker, Rule, Until};
use baton_core::report::Report;
use baton_core::report::ShortNames;
use baton_core::rollout::plan;
use baton_core::scheduler::{Action, Event, Outcome, Scheduler, SchedulerError, Strategy};
use baton_core::simulator::{SimConfig, simulate};
use baton_core::workload::{Workload, build_workload};

const MIN: u64 = 60_000;

fn fleet(text: &str) -> Fleet {
    Fleet::from_toml("test.toml", text).expect("valid fleet")
}

fn workload(fleet: &Fleet) -> Workload {
    build_workload(fleet, None).expect("every server has a duration")
}

fn baton_scheduler(fleet: &Fleet) -> Scheduler {
    Scheduler::new(fleet, &workload(fleet).expected, Strategy::Baton)
}

fn plan_of(text: &str, strategy: Strategy) -> (Fleet, Report) {
    let fleet = fleet(text);
    let report = plan(&fleet, &workload(&fleet), strategy).expect("audited");
    (fleet, report)
}

fn server<'a>(report: &'a Report, fqdn: &str) -> &'a baton_core::report::ServerReport {
    report
        .servers
        .iter()
        .find(|s| s.fqdn == fqdn)
        .expect("server in report")
}

fn starts(actions: &[Action]) -> Vec<usize> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Start { server, .. } => Some(*server),
            Action::Finished => None,
        })
        .collect()
}

const PAIR: &str = r#"
[fleet]
name = "pair"

[[pool]]
fqdn = "pool01.contoso.com"
edition = "enterprise"
sql_server = "sql01.contoso.com"
paired_with = "pool02.contoso.com"
  [[pool.server]]
  fqdn = "be01.contoso.com"
  role = "backend"
  expected_duration = "12m"
  [[pool.server]]
  fqdn = "be02.contoso.com"
  role = "backend"
  expected_duration = "12m"
  [[pool.server]]
  fqdn = "fe01.contoso.com"
  role = "frontend"
  expected_duration = "15m"

[[pool]]
fqdn = "pool02.contoso.com"
edition = "enterprise"
sql_server = "sql02.contoso.com"
  [[pool.server]]
  fqdn = "be03.contoso.com"
  role = "backend"
  expected_duration = "10m"
  [[pool.server]]
  fqdn = "fe02.contoso.com"
  role = "frontend"
  expected_duration = "15m"
  [[pool.server]]
  fqdn = "fe03.contoso.com"
  role = "frontend"
  expected_duration = "15m"
"#;

#[test]
fn waiting_servers_name_the_rule_and_holder() {
    let (_, report) = plan_of(PAIR, Strategy::Baton);
    let waited = |fqdn: &str| server(&report, fqdn).waited_for.clone();
    // pool02 has the longer chain, so its back end goes first; pool01 patches its front end
    // meanwhile (R4 keeps its back ends out while pool02 is degraded).
    assert_eq!(waited("be03.contoso.com"), None);
    assert_eq!(waited("fe01.contoso.com"), None);
    assert_eq!(
        waited("fe02.contoso.com").as_deref(),
        Some("R2: be03 is down in pool02 until 00:10")
    );
    assert_eq!(
        waited("be01.contoso.com").as_deref(),
        Some("R2: fe01 is down in pool01 until 00:15")
    );
    assert_eq!(
        waited("be02.contoso.com").as_deref(),
        Some("R1: be01 holds pool01 until 00:27")
    );
    assert_eq!(
        waited("fe03.contoso.com").as_deref(),
        Some("R3: pool02 is at max_unavailable = 1; fe02 is down until 00:25")
    );
    // pool02's chain (10m back end + two 15m front ends in a row) is the bound, and it is met.
    assert_eq!(report.makespan_s, 40.0 * 60.0);
    assert_eq!(report.lower_bound_s, 40.0 * 60.0);
}

#[test]
fn a_paired_back_end_waits_for_its_partner() {
    let (_, report) = plan_of(
        &PAIR.replace("expected_duration = \"15m\"", "expected_duration = \"5m\""),
        Strategy::Baton,
    );
    // With short front ends the pair's back ends are the critical chain: pool02's back end
    // waits for pool01's two, and the rollout meets the pair bound (12 + 12 + 10 minutes).
    assert_eq!(
        server(&report, "be03.contoso.com").waited_for.as_deref(),
        Some("R4: be02 degrades paired pool pool01 until 00:24")
    );
    assert_eq!(report.makespan_s, 34.0 * 60.0);
    assert_eq!(report.lower_bound_s, 34.0 * 60.0);
}

#[test]
fn paired_pools_are_never_degraded_together() {
    let (_, report) = plan_of(PAIR, Strategy::Baton);
    let window = |fqdn: &str| {
        let s = server(&report, fqdn);
        (s.start_s.unwrap(), s.end_s.unwrap())
    };
    let be03 = window("be03.contoso.com");
    for be in ["be01.contoso.com", "be02.contoso.com"] {
        let other = window(be);
        assert!(
            other.1 <= be03.0 || be03.1 <= other.0,
            "{be} {other:?} overlaps be03 {be03:?}"
        );
    }
}

#[test]
fn fleet_and_site_caps_are_reasons_too() {
    let (_, report) = plan_of(
        r#"
[fleet]
name = "caps"
max_parallel = 2
[[site]]
name = "emea"
max_parallel = 1
[[pool]]
fqdn = "se01.contoso.com"
site = "emea"
edition = "standard"
  [[pool.server]]
  fqdn = "se01.contoso.com"
  role = "standard"
  expected_duration = "20m"
[[pool]]
fqdn = "se02.contoso.com"
site = "emea"
edition = "standard"
  [[pool.server]]
  fqdn = "se02.contoso.com"
  role = "standard"
  expected_duration = "20m"
[[pool]]
fqdn = "se03.contoso.com"
edition = "standard"
  [[pool.server]]
  fqdn = "se03.contoso.com"
  role = "standard"
  expected_duration = "10m"
[[pool]]
fqdn = "se04.contoso.com"
edition = "standard"
  [[pool.server]]
  fqdn = "se04.contoso.com"
  role = "standard"
  expected_duration = "10m"
"#,
        Strategy::Baton,
    );
    assert_eq!(
        server(&report, "se02.contoso.com").waited_for.as_deref(),
        Some("R5: site emea is at max_parallel = 1; se01 is down until 00:20")
    );
    assert_eq!(
        server(&report, "se04.contoso.com").waited_for.as_deref(),
        Some("R5: fleet is at max_parallel = 2; se03 is down until 00:10")
    );
    assert_eq!(report.makespan_s, 40.0 * 60.0);
}

const BACKENDS_LAST: &str = r#"
[fleet]
name = "order"
max_parallel = 1
[[pool]]
fqdn = "pool01.contoso.com"
edition = "enterprise"
sql_server = "sql01.contoso.com"
backends_last = true
  [[pool.server]]
  fqdn = "be01.contoso.com"
  role = "backend"
  expected_duration = "10m"
  [[pool.server]]
  fqdn = "fe01.contoso.com"
  role = "frontend"
  expected_duration = "15m"
"#;

#[test]
fn backends_last_puts_the_database_update_after_the_front_ends() {
    let (fleet, report) = plan_of(BACKENDS_LAST, Strategy::Baton);
    assert_eq!(server(&report, "fe01.contoso.com").start_s, Some(0.0));
    let be01 = server(&report, "be01.contoso.com");
    assert_eq!(be01.start_s, Some(15.0 * 60.0));
    // Once fe01 runs, R2 is what holds be01; R7 is what kept be01 from going first.
    assert_eq!(
        be01.waited_for.as_deref(),
        Some("R2: fe01 is down in pool01 until 00:15")
    );
    let r7 = Blocker {
        rule: Rule::BackendsLast,
        holder: fleet.server_by_fqdn("fe01.contoso.com").unwrap(),
        until: Until::Done,
    };
    assert_eq!(
        r7.describe(&fleet, &ShortNames::new(&fleet)),
        "R7: pool01 updates its back ends last, after fe01"
    );
}

const CANARY: &str = r#"
[fleet]
name = "canary"
max_parallel = 3
canary_pools = 1
[[pool]]
fqdn = "se01.contoso.com"
edition = "standard"
  [[pool.server]]
  fqdn = "se01.contoso.com"
  role = "standard"
  expected_duration = "20m"
[[pool]]
fqdn = "se02.contoso.com"
edition = "standard"
  [[pool.server]]
  fqdn = "se02.contoso.com"
  role = "standard"
  expected_duration = "10m"
[[pool]]
fqdn = "se03.contoso.com"
edition = "standard"
  [[pool.server]]
  fqdn = "se03.contoso.com"
  role = "standard"
  expected_duration = "10m"
"#;

#[test]
fn the_canary_pools_run_alone_until_approved() {
    let fleet = fleet(CANARY);
    let mut scheduler = baton_scheduler(&fleet);
    let id = |fqdn: &str| fleet.server_by_fqdn(fqdn).unwrap();
    // Room for three, but only the canary pool starts.
    assert_eq!(
        starts(&scheduler.handle(0, Event::Begin).unwrap()),
        vec![id("se01.contoso.com")]
    );
    assert!(
        !scheduler.awaiting_approval(),
        "the canary is still running"
    );
    let blocker = scheduler
        .waiting_for(id("se02.contoso.com"))
        .expect("a reason");
    assert_eq!(blocker.rule, Rule::Canary);
    // The canary is done: the rollout waits (it does not finish) until approved.
    assert!(
        scheduler
            .handle(20 * MIN, Event::Succeeded(id("se01.contoso.com")))
            .unwrap()
            .is_empty()
    );
    assert!(scheduler.awaiting_approval());
    assert!(!scheduler.is_finished());
    let next = starts(&scheduler.handle(25 * MIN, Event::Approve).unwrap());
    assert_eq!(next, vec![id("se02.contoso.com"), id("se03.contoso.com")]);
    assert!(!scheduler.awaiting_approval());
}

#[test]
fn a_plan_takes_the_canary_as_approved_when_it_is_done() {
    let (_, report) = plan_of(CANARY, Strategy::Baton);
    assert_eq!(
        server(&report, "se02.contoso.com").start_s,
        Some(20.0 * 60.0)
    );
    assert_eq!(
        server(&report, "se02.contoso.com").waited_for.as_deref(),
        Some(
            "canary: waits for `baton approve` once the first 1 pool(s) are done (se01 among them)"
        )
    );
    assert_eq!(report.makespan_s, 30.0 * 60.0);
}

#[test]
fn abort_ends_a_rollout_waiting_for_approval() {
    let fleet = fleet(CANARY);
    let mut scheduler = baton_scheduler(&fleet);
    let se01 = fleet.server_by_fqdn("se01.contoso.com").unwrap();
    scheduler.handle(0, Event::Begin).unwrap();
    scheduler.handle(MIN, Event::Succeeded(se01)).unwrap();
    assert_eq!(
        scheduler.handle(2 * MIN, Event::Abort).unwrap(),
        vec![Action::Finished]
    );
}

#[test]
fn batches_wait_for_their_slowest_server() {
    let (_, report) = plan_of(
        r#"
[fleet]
name = "batches"
[[pool]]
fqdn = "pool01.contoso.com"
edition = "enterprise"
max_unavailable = 4
  [[pool.server]]
  fqdn = "fe01.contoso.com"
  role = "frontend"
  expected_duration = "10m"
  [[pool.server]]
  fqdn = "fe02.contoso.com"
  role = "frontend"
  expected_duration = "20m"
  [[pool.server]]
  fqdn = "fe03.contoso.com"
  role = "frontend"
  expected_duration = "10m"
"#,
        Strategy::Batches(2),
    );
    assert_eq!(
        server(&report, "fe03.contoso.com").start_s,
        Some(20.0 * 60.0)
    );
    assert_eq!(
        server(&report, "fe03.contoso.com").waited_for.as_deref(),
        Some("batch: waits for batch 1; fe02 is down until 00:20")
    );
    assert_eq!(report.makespan_s, 30.0 * 60.0);
}

#[test]
fn a_failed_back_end_quarantines_its_pool_and_keeps_its_pair_safe() {
    let mut fleet = fleet(PAIR);
    fleet.max_failures = 5;
    let mut scheduler = baton_scheduler(&fleet);
    let id = |fqdn: &str| fleet.server_by_fqdn(fqdn).unwrap();
    let (be03, fe01) = (id("be03.contoso.com"), id("fe01.contoso.com"));

    assert_eq!(
        starts(&scheduler.handle(0, Event::Begin).unwrap()),
        vec![be03, fe01]
    );
    assert!(starts(&scheduler.handle(5 * MIN, Event::Failed(be03)).unwrap()).is_empty());
    assert_eq!(
        scheduler.handle(15 * MIN, Event::Succeeded(fe01)).unwrap(),
        vec![Action::Finished]
    );

    let records = scheduler.records();
    assert_eq!(records[be03].outcome, Some(Outcome::Failed));
    for fqdn in ["fe02.contoso.com", "fe03.contoso.com"] {
        let r = &records[id(fqdn)];
        assert_eq!(r.outcome, Some(Outcome::Skipped), "{fqdn}");
        assert_eq!(r.quarantined_by, Some((be03, 5 * MIN)));
    }
    // pool01's back ends must not go down while pool02's failed back end is still down.
    for fqdn in ["be01.contoso.com", "be02.contoso.com"] {
        let r = &records[id(fqdn)];
        assert_eq!(r.outcome, Some(Outcome::NotStarted), "{fqdn}");
        let blocker = r.waited_for.expect("a reason");
        assert_eq!(
            (blocker.holder, blocker.until),
            (be03, Until::Repaired),
            "{fqdn}"
        );
    }
}

#[test]
fn a_failure_gives_its_cap_slot_back_below_max_failures() {
    let fleet = fleet(
        r#"
[fleet]
name = "slots"
max_parallel = 1
max_failures = 5
[[pool]]
fqdn = "se01.contoso.com"
edition = "standard"
  [[pool.server]]
  fqdn = "se01.contoso.com"
  role = "standard"
  expected_duration = "20m"
[[pool]]
fqdn = "se02.contoso.com"
edition = "standard"
  [[pool.server]]
  fqdn = "se02.contoso.com"
  role = "standard"
  expected_duration = "20m"
"#,
    );
    let mut scheduler = baton_scheduler(&fleet);
    let (se01, se02) = (0, 1);
    assert_eq!(
        starts(&scheduler.handle(0, Event::Begin).unwrap()),
        vec![se01]
    );
    assert_eq!(
        starts(&scheduler.handle(3 * MIN, Event::Failed(se01)).unwrap()),
        vec![se02],
        "one failure out of five tolerated: the rollout goes on"
    );
}

#[test]
fn past_max_failures_nothing_new_starts() {
    let fleet = fleet(PAIR); // max_failures defaults to 0
    let mut scheduler = baton_scheduler(&fleet);
    let id = |fqdn: &str| fleet.server_by_fqdn(fqdn).unwrap();
    scheduler.handle(0, Event::Begin).unwrap();
    assert!(
        starts(
            &scheduler
                .handle(MIN, Event::Failed(id("fe01.contoso.com")))
                .unwrap()
        )
        .is_empty()
    );
    assert_eq!(
        scheduler
            .handle(10 * MIN, Event::Succeeded(id("be03.contoso.com")))
            .unwrap(),
        vec![Action::Finished]
    );
    let records = scheduler.records();
    // pool01 is quarantined by its own failure; pool02's front ends are stopped by the limit.
    assert_eq!(
        records[id("be01.contoso.com")].outcome,
        Some(Outcome::Skipped)
    );
    for fqdn in ["fe02.contoso.com", "fe03.contoso.com"] {
        assert_eq!(
            records[id(fqdn)].outcome,
            Some(Outcome::NotStarted),
            "{fqdn}"
        );
        assert!(records[id(fqdn)].stopped.is_some());
    }
}

#[test]
fn pause_holds_new_starts_until_resume() {
    let fleet = fleet(PAIR);
    let mut scheduler = baton_scheduler(&fleet);
    let id = |fqdn: &str| fleet.server_by_fqdn(fqdn).unwrap();
    scheduler.handle(0, Event::Begin).unwrap();
    scheduler.handle(MIN, Event::Pause).unwrap();
    assert!(
        scheduler
            .handle(10 * MIN, Event::Succeeded(id("be03.contoso.com")))
            .unwrap()
            .is_empty()
    );
    assert!(!scheduler.is_finished());
    assert_eq!(
        starts(&scheduler.handle(11 * MIN, Event::Resume).unwrap()),
        vec![id("fe02.contoso.com")]
    );
}

#[test]
fn abort_drains_running_servers_and_starts_nothing() {
    let fleet = fleet(PAIR);
    let mut scheduler = baton_scheduler(&fleet);
    let id = |fqdn: &str| fleet.server_by_fqdn(fqdn).unwrap();
    scheduler.handle(0, Event::Begin).unwrap();
    assert!(scheduler.handle(MIN, Event::Abort).unwrap().is_empty());
    assert!(
        scheduler
            .handle(10 * MIN, Event::Succeeded(id("be03.contoso.com")))
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        scheduler
            .handle(15 * MIN, Event::Succeeded(id("fe01.contoso.com")))
            .unwrap(),
        vec![Action::Finished]
    );
    let records = scheduler.records();
    assert_eq!(
        records
            .iter()
            .filter(|r| r.outcome == Some(Outcome::Succeeded))
            .count(),
        2
    );
    assert_eq!(
        records
            .iter()
            .filter(|r| r.outcome == Some(Outcome::NotStarted))
            .count(),
        4
    );
}

#[test]
fn abort_ends_a_paused_rollout() {
    let fleet = fleet(PAIR);
    let mut scheduler = baton_scheduler(&fleet);
    let id = |fqdn: &str| fleet.server_by_fqdn(fqdn).unwrap();
    scheduler.handle(0, Event::Begin).unwrap();
    scheduler.handle(MIN, Event::Pause).unwrap();
    scheduler
        .handle(10 * MIN, Event::Succeeded(id("be03.contoso.com")))
        .unwrap();
    scheduler
        .handle(15 * MIN, Event::Succeeded(id("fe01.contoso.com")))
        .unwrap();
    assert!(
        !scheduler.is_finished(),
        "paused and idle: waits for Resume"
    );
    assert_eq!(
        scheduler.handle(16 * MIN, Event::Abort).unwrap(),
        vec![Action::Finished]
    );
    assert!(scheduler.is_finished());
}

#[test]
fn wrong_events_are_refused_without_losing_state() {
    let fleet = fleet(PAIR);
    let mut scheduler = baton_scheduler(&fleet);
    let be02 = fleet.server_by_fqdn("be02.contoso.com").unwrap();
    scheduler.handle(10, Event::Begin).unwrap();
    assert!(matches!(
        scheduler.handle(20, Event::Succeeded(be02)),
        Err(SchedulerError::NotRunning(_))
    ));
    assert_eq!(
        scheduler.handle(20, Event::Succeeded(99)),
        Err(SchedulerError::UnknownServer(99))
    );
    // Refused events change nothing, not even the clock.
    assert_eq!(
        scheduler.handle(5, Event::Pause),
        Err(SchedulerError::TimeWentBackwards { now: 5, last: 10 })
    );
    assert_eq!(
        scheduler
            .records()
            .iter()
            .filter(|r| r.start.is_some())
            .count(),
        2
    );
    // A batch with one wrong event is refused whole: be03's success is not half-applied.
    let be03 = fleet.server_by_fqdn("be03.contoso.com").unwrap();
    assert_eq!(
        scheduler.handle_all(30, &[Event::Succeeded(be03), Event::Succeeded(be02)]),
        Err(SchedulerError::NotRunning(be02))
    );
    assert_eq!(
        scheduler.handle_all(30, &[Event::Succeeded(be03), Event::Failed(be03)]),
        Err(SchedulerError::NotRunning(be03))
    );
    assert!(scheduler.records()[be03].outcome.is_none(), "still running");
    assert!(
        !scheduler
            .handle(30, Event::Succeeded(be03))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn simulated_failures_show_in_the_report() {
    let mut fleet = fleet(PAIR);
    fleet.max_failures = 10;
    let durations = workload(&fleet).expected;
    let run = simulate(
        &fleet,
        &durations,
        &SimConfig {
            failure_rate: 1.0,
            ..SimConfig::plan(Strategy::Baton)
        },
    );
    assert!(
        run.records
            .iter()
            .all(|r| r.outcome != Some(Outcome::Succeeded))
    );
    assert!(
        run.records
            .iter()
            .any(|r| r.outcome == Some(Outcome::Failed))
    );
}

// ---- Maintenance windows ----------------------------------------------------------------------

/// Two Standard Edition pools in a site whose window is 22:00–04:00 UTC every night.
const NIGHTLY: &str = r#"
[fleet]
name = "nightly"

[[site]]
name = "emea"

[[site.window]]
start = "22:00"
end = "04:00"
time_zone = "UTC"

[[pool]]
fqdn = "a.nightly.example"
edition = "standard"
site = "emea"
outage_budget = "8h"

  [[pool.server]]
  fqdn = "a.nightly.example"
  role = "standard"
  expected_duration = "1h"

[[pool]]
fqdn = "b.nightly.example"
edition = "standard"
site = "emea"
outage_budget = "8h"

  [[pool.server]]
  fqdn = "b.nightly.example"
  role = "standard"
  expected_duration = "5h"
"#;

#[test]
fn servers_wait_for_a_window_they_fit_and_the_driver_is_told_when() {
    let fleet = fleet(NIGHTLY);
    let expected = workload(&fleet).expected;
    // Monday 2026-11-30 21:00 UTC.
    let origin = 1_796_072_400_000;
    let mut scheduler = Scheduler::starting_at(&fleet, &expected, Strategy::Baton, origin);
    let actions = scheduler.handle(0, Event::Begin).unwrap();
    assert!(actions.is_empty(), "{actions:?}");
    assert_eq!(scheduler.next_opening(), Some(60 * MIN));
    let blocker = scheduler.waiting_for(0).expect("waits");
    assert_eq!(
        (blocker.rule, blocker.until),
        (Rule::Window, Until::At(60 * MIN))
    );
    assert_eq!(
        blocker.describe(&fleet, &ShortNames::new(&fleet)),
        "window: a fits its next window (daily 22:00-04:00 UTC) at 01:00"
    );

    // 22:00: both fit (b ends at 03:00).
    let actions = scheduler.handle(60 * MIN, Event::Tick).unwrap();
    assert_eq!(starts(&actions), [1, 0]);
    assert_eq!(scheduler.next_opening(), None);
    scheduler.handle(120 * MIN, Event::Succeeded(0)).unwrap();
    let actions = scheduler.handle(360 * MIN, Event::Succeeded(1)).unwrap();
    assert_eq!(actions, [Action::Finished]);
}

#[test]
fn a_server_that_no_longer_fits_tonight_waits_for_tomorrow_night() {
    let fleet = fleet(NIGHTLY);
    let expected = workload(&fleet).expected;
    // Tuesday 2026-12-01 00:30 UTC: 3 h 30 left tonight: a (1 h) fits, b (5 h) does not.
    let origin = 1_796_085_000_000;
    let mut scheduler = Scheduler::starting_at(&fleet, &expected, Strategy::Baton, origin);
    let actions = scheduler.handle(0, Event::Begin).unwrap();
    assert_eq!(starts(&actions), [0]);
    // Tuesday 22:00 is 21 h 30 after the origin.
    let tomorrow = (21 * 60 + 30) * MIN;
    assert_eq!(scheduler.next_opening(), Some(tomorrow));
    assert!(
        scheduler
            .handle(60 * MIN, Event::Succeeded(0))
            .unwrap()
            .is_empty()
    );
    assert!(!scheduler.is_finished(), "b still waits for its window");
    let actions = scheduler.handle(tomorrow, Event::Tick).unwrap();
    assert_eq!(starts(&actions), [1]);
}

#[test]
fn a_server_longer_than_every_window_is_refused_before_anything_runs() {
    let text = NIGHTLY.replace("expected_duration = \"5h\"", "expected_duration = \"7h\"");
    let fleet = fleet(&text);
    let err = build_workload(&fleet, None).unwrap_err().to_string();
    assert!(
        err.starts_with("test.toml:33: server \"b.nightly.example\": `pool.server.expected_duration` = \"7h\": longer than every maintenance window it may use (the longest is 6h: daily 22:00-04:00 UTC)"),
        "{err}"
    );
}
