//! Baton end to end: a real `baton-controller` on SQLite or PostgreSQL, one real `baton-worker`
//! process per server, and the real `baton` CLI, over loopback gRPC.
//!
//! Every test runs on both stores (`<test>::sqlite`, `<test>::postgres`); the PostgreSQL
//! variants need `BATON_TEST_POSTGRES_URL` (`.ci/postgres.sh` prints one) and otherwise say they
//! were skipped and pass. The binaries are built once per test process by `support::bins()`.

#![cfg(unix)]

#[macro_use]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use baton_core::Fleet;
use baton_core::audit::{audit_schedule, rule_peaks};
use baton_core::scheduler::{Outcome, ServerRecord};
use serde_json::Value;
use support::{Backend, Cluster, Event, run_bounded, stderr, stdout, wait_until};

on_both_stores!(
    full_rollout_obeys_every_rule,
    pause_resume_and_abort,
    sfb_runbook_on_real_workers,
    bad_input_over_the_wire,
    a_failing_server_stops_the_rollout,
    controller_crashes_break_no_rule,
);

// ---------------------------------------------------------------------------------------------
// Fixtures

/// 12 servers in 5 pools over two sites, with caps low enough that servers wait for every
/// rule: an EE pool with one back end (paired), an EE pool with two back ends that go last, a
/// paired Standard Edition pair, and an Edge pool.
const MAIN_FLEET: &str = r#"
[fleet]
name = "e2e-main"
max_parallel = 4

[[site]]
name = "east"
max_parallel = 3

[[site]]
name = "west"
max_parallel = 2

[[pool]]
fqdn = "pool1.east.e2e.test"
site = "east"
edition = "enterprise"
sql_server = "sql1.east.e2e.test"
paired_with = "pool2.east.e2e.test"
max_unavailable = 2

  [[pool.server]]
  fqdn = "be1.east.e2e.test"
  role = "backend"

  [[pool.server]]
  fqdn = "fe1a.east.e2e.test"
  role = "frontend"

  [[pool.server]]
  fqdn = "fe1b.east.e2e.test"
  role = "frontend"

  [[pool.server]]
  fqdn = "fe1c.east.e2e.test"
  role = "frontend"

[[pool]]
fqdn = "pool2.east.e2e.test"
site = "east"
edition = "enterprise"
sql_server = "sql2.east.e2e.test"
max_unavailable = 1
backends_last = true

  [[pool.server]]
  fqdn = "be2a.east.e2e.test"
  role = "backend"

  [[pool.server]]
  fqdn = "be2b.east.e2e.test"
  role = "backend"

  [[pool.server]]
  fqdn = "fe2a.east.e2e.test"
  role = "frontend"

  [[pool.server]]
  fqdn = "fe2b.east.e2e.test"
  role = "frontend"

[[pool]]
fqdn = "se1.west.e2e.test"
site = "west"
edition = "standard"
paired_with = "se2.west.e2e.test"

  [[pool.server]]
  fqdn = "se1.west.e2e.test"
  role = "standard"

[[pool]]
fqdn = "se2.west.e2e.test"
site = "west"
edition = "standard"

  [[pool.server]]
  fqdn = "se2.west.e2e.test"
  role = "standard"

[[pool]]
fqdn = "edge.west.e2e.test"
site = "west"
edition = "enterprise"
max_unavailable = 2

  [[pool.server]]
  fqdn = "edge1.west.e2e.test"
  role = "edge"

  [[pool.server]]
  fqdn = "edge2.west.e2e.test"
  role = "edge"
"#;

/// Two real `sh` steps of a short sleep each; the second one prints a line.
const SLEEP_RUNBOOK: &str = r#"
[runbook]
name = "e2e-sleep"
shell = "sh"
expected_duration = "1s"

[runbook.expected_duration_by_role]
backend = "2s"

[[step]]
id = "prepare"
run = "sleep 0.2"
timeout = "30s"
idempotent = true

[[step]]
id = "patch"
run = "echo patching {{ server.fqdn }} in {{ pool.fqdn }}; sleep 0.2"
timeout = "30s"
"#;

/// For `--executor simulate`: the commands are never run, each server takes its expected
/// duration times the worker's `--time-scale`.
const SIMULATED_RUNBOOK: &str = r#"
[runbook]
name = "e2e-simulated"
shell = "sh"
expected_duration = "10s"

[[step]]
id = "drain"
run = "false"
timeout = "1m"

[[step]]
id = "patch"
run = "false"
timeout = "1m"
"#;

/// Four front ends, one at a time (fleet cap 1).
const ONE_AT_A_TIME_FLEET: &str = r#"
[fleet]
name = "e2e-pause"
max_parallel = 1

[[pool]]
fqdn = "web.pause.e2e.test"
edition = "enterprise"

  [[pool.server]]
  fqdn = "web1.pause.e2e.test"
  role = "frontend"

  [[pool.server]]
  fqdn = "web2.pause.e2e.test"
  role = "frontend"

  [[pool.server]]
  fqdn = "web3.pause.e2e.test"
  role = "frontend"

  [[pool.server]]
  fqdn = "web4.pause.e2e.test"
  role = "frontend"
"#;

/// One kind of server per command list of the Skype for Business runbook.
const SFB_FLEET: &str = r#"
[fleet]
name = "e2e-sfb"

[[pool]]
fqdn = "pool01.sfb.e2e.test"
edition = "enterprise"
sql_server = "sql01.sfb.e2e.test"

  [[pool.server]]
  fqdn = "be01.sfb.e2e.test"
  role = "backend"

  [[pool.server]]
  fqdn = "fe01.sfb.e2e.test"
  role = "frontend"

[[pool]]
fqdn = "pool02.sfb.e2e.test"
edition = "enterprise"
sql_server = "sql02.sfb.e2e.test"

  [[pool.server]]
  fqdn = "be02.sfb.e2e.test"
  role = "backend"
  collocated_databases = true

[[pool]]
fqdn = "se01.sfb.e2e.test"
edition = "standard"

  [[pool.server]]
  fqdn = "se01.sfb.e2e.test"
  role = "standard"

[[pool]]
fqdn = "edge.sfb.e2e.test"
edition = "enterprise"

  [[pool.server]]
  fqdn = "edge01.sfb.e2e.test"
  role = "edge"
"#;

/// A stand-in for PowerShell: checks it was called as `-NoProfile -NonInteractive -Command
/// COMMAND`, appends COMMAND (its last argument) to `commands/$BATON_E2E_FQDN.log` next to
/// itself, and succeeds.
const FAKE_POWERSHELL: &str = r#"#!/bin/sh
if [ "$#" -ne 4 ] || [ "$1" != "-NoProfile" ] || [ "$2" != "-NonInteractive" ] || [ "$3" != "-Command" ]; then
    echo "fake powershell: unexpected arguments: $*" >&2
    exit 97
fi
printf '%s\n' "$4" >> "$(dirname "$0")/commands/$BATON_E2E_FQDN.log"
printf 'fake powershell ran: %s\n' "$4"
"#;

/// Two front ends, for the bad-input tests.
const WIRE_FLEET: &str = r#"
[fleet]
name = "e2e-wire"

[[pool]]
fqdn = "pool.wire.e2e.test"
edition = "enterprise"

  [[pool.server]]
  fqdn = "a.wire.e2e.test"
  role = "frontend"

  [[pool.server]]
  fqdn = "b.wire.e2e.test"
  role = "frontend"
"#;

/// `role` on line 10 is not a role.
const UNKNOWN_ROLE_FLEET: &str = r#"[fleet]
name = "e2e-wire"

[[pool]]
fqdn = "pool.wire.e2e.test"
edition = "enterprise"

  [[pool.server]]
  fqdn = "a.wire.e2e.test"
  role = "frontdoor"
"#;

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn fleet(text: &str) -> Fleet {
    Fleet::from_toml("fleet.toml", text).expect("the test fleet is valid")
}

fn fqdns(fleet: &Fleet) -> Vec<&str> {
    fleet.servers.iter().map(|s| s.fqdn.as_str()).collect()
}

// ---------------------------------------------------------------------------------------------
// Reading the event log and the status

fn kinds(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

fn count(events: &[Event], kind: &str) -> usize {
    events.iter().filter(|e| e.kind == kind).count()
}

/// The seq of the only event of `kind`.
fn only(events: &[Event], kind: &str) -> u64 {
    let found: Vec<u64> = events
        .iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.seq)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {kind} event expected: {:#?}",
        kinds(events)
    );
    found[0]
}

/// The whole log's shape: seqs 1, 2, 3…; exactly the seven documented keys; one rollout;
/// rollout-wide events without server and pool, server events with the server's own pool;
/// timestamps in commit order.
fn assert_log_shape(events: &[Event], id: &str, fleet: &Fleet) {
    assert!(!events.is_empty(), "rollout {id} has no events");
    for (index, event) in events.iter().enumerate() {
        assert_eq!(
            event.seq,
            index as u64 + 1,
            "seqs are contiguous from 1: {event:?}"
        );
        assert_eq!(
            event.keys,
            ["at", "detail", "kind", "pool", "rollout", "seq", "server"],
            "exactly the seven keys: {event:?}"
        );
        assert_eq!(event.rollout, id, "{event:?}");
        assert!(
            event.at.len() == 24 && event.at.ends_with('Z') && event.at.as_bytes()[10] == b'T',
            "RFC 3339 with milliseconds: {event:?}"
        );
        if event.kind.starts_with("rollout_") {
            assert_eq!(
                (event.server.as_str(), event.pool.as_str()),
                ("", ""),
                "{event:?}"
            );
        } else {
            let server = fleet
                .server_by_fqdn(&event.server)
                .unwrap_or_else(|| panic!("event for a server not in the fleet: {event:?}"));
            assert_eq!(
                event.pool, fleet.pools[fleet.servers[server].pool].fqdn,
                "{event:?}"
            );
        }
    }
    assert!(
        events.windows(2).all(|w| w[0].at <= w[1].at),
        "timestamps follow the seqs"
    );
    assert_eq!(events[0].kind, "rollout_started");
    assert_eq!(
        events.last().map(|e| e.kind.as_str()),
        Some("rollout_finished")
    );
}

/// Each server's maintenance window from its `server_started` and `server_finished` events,
/// with seqs as the clock: the controller commits the events one after the other, each before
/// it acts on it, so seq order is the order things happened in.
fn records_from_events(fleet: &Fleet, events: &[Event]) -> Vec<ServerRecord> {
    let mut records = vec![ServerRecord::default(); fleet.servers.len()];
    for event in events {
        let Some(server) = fleet.server_by_fqdn(&event.server) else {
            continue;
        };
        let record = &mut records[server];
        match event.kind.as_str() {
            "server_started" => {
                assert_eq!(record.start, None, "started twice: {event:?}");
                record.start = Some(event.seq);
            }
            "server_finished" => {
                assert!(
                    record.start.is_some(),
                    "finished before it started: {event:?}"
                );
                assert_eq!(record.end, None, "finished twice: {event:?}");
                record.end = Some(event.seq);
                record.outcome = Some(if event.detail == "succeeded" {
                    Outcome::Succeeded
                } else {
                    Outcome::Failed
                });
            }
            _ => {}
        }
    }
    records
}

/// A `step_finished` detail without the summary after its result: `patch attempt 1: exit 0`
/// of `patch attempt 1: exit 0 (1 line in 0.2s)`.
fn step_result(detail: &str) -> &str {
    match detail.rsplit_once(" (") {
        Some((result, summary)) if summary.contains(" line") => result,
        _ => detail,
    }
}

/// How many output lines a `step_finished` detail says the attempt wrote.
fn lines_of(detail: &str) -> usize {
    let summary = detail
        .rsplit_once(" (")
        .unwrap_or_else(|| panic!("no summary in {detail:?}"))
        .1;
    let count = summary
        .split(' ')
        .next()
        .unwrap_or_default()
        .replace(',', "");
    count
        .parse()
        .unwrap_or_else(|_| panic!("no line count in {detail:?}"))
}

/// `baton status --format json`'s servers: fqdn -> state.
fn server_states(status: &Value) -> BTreeMap<String, String> {
    status["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .map(|s| {
            (
                s["fqdn"].as_str().expect("fqdn").to_string(),
                s["state"].as_str().expect("state").to_string(),
            )
        })
        .collect()
}

fn assert_all_succeeded(status: &Value, fleet: &Fleet) {
    assert_eq!(status["state"], "finished", "{status:#}");
    let states = server_states(status);
    let want: BTreeMap<String, String> = fleet
        .servers
        .iter()
        .map(|s| (s.fqdn.clone(), "succeeded".to_string()))
        .collect();
    assert_eq!(states, want, "{status:#}");
}

// ---------------------------------------------------------------------------------------------
// 1. A full rollout, checked against the rules over its event log

fn full_rollout_obeys_every_rule(backend: Backend) {
    let Some(mut cluster) = Cluster::start("full_rollout", backend) else {
        return;
    };
    let fleet = fleet(MAIN_FLEET);
    assert_eq!((fleet.servers.len(), fleet.pools.len()), (12, 5));
    let fleet_file = cluster.write("fleet.toml", MAIN_FLEET);
    let runbook_file = cluster.write("runbook.toml", SLEEP_RUNBOOK);
    for fqdn in fqdns(&fleet) {
        cluster.start_worker(fqdn, &["--executor", "shell"], &[]);
    }
    cluster.wait_connected(fqdns(&fleet));

    let id = cluster.apply(&fleet_file, &runbook_file, &[]);
    let watched = cluster.watch(&id);
    assert!(
        watched.contains(&format!("rollout {id} of fleet e2e-main: finished")),
        "{watched}"
    );

    let events = cluster.events(&id);
    assert_log_shape(&events, &id, &fleet);
    let seen: BTreeSet<&str> = kinds(&events).into_iter().collect();
    for kind in [
        "rollout_started",
        "server_started",
        "step_started",
        "step_finished",
        "server_finished",
        "rollout_finished",
    ] {
        assert!(seen.contains(kind), "no {kind} event: {seen:?}");
    }
    assert_eq!(only(&events, "rollout_started"), 1);
    assert_eq!(only(&events, "rollout_finished"), events.len() as u64);
    let finished = &events[events.len() - 1].detail;
    assert!(
        finished.starts_with("finished: 12 succeeded in "),
        "{finished}"
    );

    // Every server: started once, ran both steps for real (the output line, in its step
    // output, is rendered from its own fqdn and pool), finished once with `succeeded`, all
    // inside its window.
    for server in &fleet.servers {
        let pool = &fleet.pools[server.pool].fqdn;
        let own: Vec<(&str, &str)> = events
            .iter()
            .filter(|e| e.server == server.fqdn)
            .map(|e| (e.kind.as_str(), step_result(&e.detail)))
            .collect();
        let want = [
            ("step_started", "prepare attempt 1"),
            ("step_finished", "prepare attempt 1: exit 0"),
            ("step_started", "patch attempt 1"),
            ("step_finished", "patch attempt 1: exit 0"),
            ("server_finished", "succeeded"),
        ];
        assert!(
            own.len() == 6 && own[0].0 == "server_started" && own[0].1.starts_with("assignment "),
            "{}: {own:#?}",
            server.fqdn
        );
        assert_eq!(own[1..], want, "{}", server.fqdn);
        let lines: Vec<usize> = events
            .iter()
            .filter(|e| e.server == server.fqdn && e.kind == "step_finished")
            .map(|e| lines_of(&e.detail))
            .collect();
        assert_eq!(lines, [0, 1], "{}", server.fqdn);
        assert_eq!(
            cluster.logs(&server.fqdn, &id),
            format!("patch: patching {} in {pool}\n", server.fqdn),
            "{}",
            server.fqdn
        );
    }

    // The rules, re-checked by the independent auditor over what really happened.
    let records = records_from_events(&fleet, &events);
    for (record, server) in records.iter().zip(&fleet.servers) {
        assert_eq!(
            record.outcome,
            Some(Outcome::Succeeded),
            "{} did not finish exactly once with succeeded",
            server.fqdn
        );
    }
    if let Err(violation) = audit_schedule(&fleet, &records) {
        panic!("the live rollout broke a rule: {violation}\nevents: {events:#?}");
    }
    // The check has teeth: the same servers all at once break the rules.
    let all_at_once: Vec<ServerRecord> = records
        .iter()
        .map(|r| ServerRecord {
            start: Some(1),
            end: Some(2),
            ..r.clone()
        })
        .collect();
    assert!(audit_schedule(&fleet, &all_at_once).is_err());
    // And the caps were reached, so servers did wait for them.
    let peaks = rule_peaks(&fleet, &records);
    assert_eq!(peaks.backends_in_a_pool, 1, "{peaks:?}");
    assert_eq!(peaks.pools_mixed, 0, "{peaks:?}");
    assert_eq!(peaks.pairs_degraded, 0, "{peaks:?}");
    assert_eq!(peaks.fleet, 4, "the fleet cap is reached: {peaks:?}");
    assert!(peaks.sites[0] <= 3 && peaks.sites[1] <= 2, "{peaks:?}");
    assert!(
        peaks.others_in_a_pool.0 <= peaks.others_in_a_pool.1,
        "{peaks:?}"
    );

    let status = cluster.status(&id);
    assert_all_succeeded(&status, &fleet);
    let servers = status["servers"].as_array().expect("servers");
    assert!(
        servers.iter().all(|s| {
            s["worker_connected"] == true && s["start_s"].is_number() && s["end_s"].is_number()
        }),
        "{status:#}"
    );
    assert!(
        servers.iter().any(|s| s["waited_for"] != ""),
        "some server waited for a rule: {status:#}"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Pause, resume, abort

fn pause_resume_and_abort(backend: Backend) {
    let Some(mut cluster) = Cluster::start("pause_resume_abort", backend) else {
        return;
    };
    let fleet = fleet(ONE_AT_A_TIME_FLEET);
    let fleet_file = cluster.write("fleet.toml", ONE_AT_A_TIME_FLEET);
    let runbook_file = cluster.write("runbook.toml", SIMULATED_RUNBOOK);
    // 10 s expected × 0.1: each server takes about a second.
    for fqdn in fqdns(&fleet) {
        cluster.start_worker(
            fqdn,
            &["--executor", "simulate", "--time-scale", "0.1"],
            &[],
        );
    }
    cluster.wait_connected(fqdns(&fleet));

    // --- pause, then resume
    let id = cluster.apply(&fleet_file, &runbook_file, &[]);
    assert_eq!(
        cluster.baton_ok(&["pause", &id]),
        format!("rollout {id}: paused\n")
    );
    assert_eq!(cluster.status(&id)["state"], "paused");

    // Who was running when it paused finishes; nothing new starts.
    let events = cluster.events(&id);
    let paused = only(&events, "rollout_paused");
    let running_at_pause: Vec<String> = events
        .iter()
        .filter(|e| e.kind == "server_started" && e.seq < paused)
        .map(|e| e.server.clone())
        .collect();
    assert!(!running_at_pause.is_empty(), "apply starts a server");
    cluster.wait_events(&id, "the running server to finish while paused", |events| {
        running_at_pause.iter().all(|server| {
            events
                .iter()
                .any(|e| e.kind == "server_finished" && &e.server == server)
        })
    });
    // The controller handles a finish (and would start the next server) under the lock a
    // status call waits for: after this call the log holds whatever that finish led to.
    let status = cluster.status(&id);
    assert_eq!(status["state"], "paused", "{status:#}");
    let events = cluster.events(&id);
    let started_while_paused: Vec<&Event> = events
        .iter()
        .filter(|e| e.kind == "server_started" && e.seq > paused)
        .collect();
    assert!(
        started_while_paused.is_empty(),
        "started while paused: {started_while_paused:#?}"
    );
    let states = server_states(&status);
    assert!(
        states.values().all(|s| s == "succeeded" || s == "pending"),
        "{states:?}"
    );
    assert_eq!(
        states.values().filter(|s| *s == "pending").count(),
        fleet.servers.len() - running_at_pause.len(),
        "{states:?}"
    );

    assert_eq!(
        cluster.baton_ok(&["resume", &id]),
        format!("rollout {id}: running\n")
    );
    let watched = cluster.watch(&id);
    assert!(watched.contains("finished"), "{watched}");
    assert_all_succeeded(&cluster.status(&id), &fleet);
    let events = cluster.events(&id);
    assert_log_shape(&events, &id, &fleet);
    let resumed = only(&events, "rollout_resumed");
    assert!(paused < resumed);
    for event in events.iter().filter(|e| e.kind == "server_started") {
        assert!(
            event.seq < paused || event.seq > resumed,
            "started while paused: {event:?}"
        );
    }
    assert_eq!(count(&events, "server_started"), 4);
    assert_eq!(count(&events, "server_finished"), 4);

    // --- abort a second rollout mid-way
    let id = cluster.apply(&fleet_file, &runbook_file, &[]);
    cluster.wait_events(&id, "the second server to start", |events| {
        count(events, "server_started") >= 2
    });
    // A server is running, so the rollout is aborting until it finishes.
    assert_eq!(
        cluster.baton_ok(&["abort", &id]),
        format!("rollout {id}: aborting\n")
    );
    let state = cluster.status(&id)["state"].clone();
    assert!(state == "aborting" || state == "aborted", "{state}");
    let watched = cluster.watch(&id);
    assert!(watched.contains("aborted"), "{watched}");

    let status = cluster.status(&id);
    assert_eq!(status["state"], "aborted", "{status:#}");
    let events = cluster.events(&id);
    assert_log_shape(&events, &id, &fleet);
    let aborted = only(&events, "rollout_aborted");
    let finished = only(&events, "rollout_finished");
    assert!(aborted < finished);
    assert!(
        events[finished as usize - 1]
            .detail
            .starts_with("aborted: "),
        "{:?}",
        events[finished as usize - 1]
    );
    let started: BTreeSet<&str> = events
        .iter()
        .filter(|e| e.kind == "server_started")
        .inspect(|e| assert!(e.seq < aborted, "started after the abort: {e:?}"))
        .map(|e| e.server.as_str())
        .collect();
    let states = server_states(&status);
    for server in &fleet.servers {
        let state = &states[&server.fqdn];
        if started.contains(server.fqdn.as_str()) {
            assert_eq!(state, "succeeded", "{}", server.fqdn);
        } else {
            assert_eq!(state, "not_started", "{}", server.fqdn);
            assert!(
                events.iter().any(|e| e.kind == "server_not_started"
                    && e.server == server.fqdn
                    && e.seq > aborted),
                "no server_not_started event for {}",
                server.fqdn
            );
        }
    }
    assert!(
        (2..fleet.servers.len()).contains(&started.len()),
        "aborted mid-way: {started:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. The Skype for Business runbook, run by real workers against a fake PowerShell

const INSTALL: &str = r"$p = Start-Process -FilePath 'D:\CU\2024-09\SkypeServerUpdateInstaller.exe' -ArgumentList '/silentmode' -Wait -PassThru; exit $p.ExitCode";

const GATE_SERVICES: &str = r#"$down = @(Get-CsWindowsService | Where-Object { $_.Status -ne 'Running' }); if ($down.Count -gt 0) { $down | ForEach-Object { Write-Output "$($_.Name) is $($_.Status)" }; exit 1 }"#;
const GATE_DATABASES_SQL01: &str = "$r = @(Test-CsDatabase -ConfiguredDatabases -SqlServerFqdn sql01.sfb.e2e.test); if ($r.Count -eq 0 -or @($r | Where-Object { -not $_.Succeed }).Count -gt 0) { exit 1 }";
const GATE_DATABASES_SQL02: &str = "$r = @(Test-CsDatabase -ConfiguredDatabases -SqlServerFqdn sql02.sfb.e2e.test); if ($r.Count -eq 0 -or @($r | Where-Object { -not $_.Succeed }).Count -gt 0) { exit 1 }";

/// What each server must have been given, in order (the lists of
/// crates/baton-core/tests/sfb_runbook_golden.rs, with this fleet's SQL servers).
fn expected_sfb_commands() -> BTreeMap<&'static str, Vec<&'static str>> {
    BTreeMap::from([
        (
            "be01.sfb.e2e.test",
            vec![
                "Stop-CsWindowsService",
                "net stop w3svc",
                INSTALL,
                "Stop-CsWindowsService",
                "net start w3svc",
                "Install-CsDatabase -Update -ConfiguredDatabases -SqlServerFqdn sql01.sfb.e2e.test",
                GATE_DATABASES_SQL01,
            ],
        ),
        (
            "be02.sfb.e2e.test",
            vec![
                "Stop-CsWindowsService",
                "net stop w3svc",
                INSTALL,
                "Stop-CsWindowsService",
                "net start w3svc",
                "Install-CsDatabase -Update -ConfiguredDatabases -SqlServerFqdn sql02.sfb.e2e.test -ExcludeCollocatedStores",
                GATE_DATABASES_SQL02,
            ],
        ),
        (
            "se01.sfb.e2e.test",
            vec![
                "Stop-CsWindowsService",
                "net stop w3svc",
                INSTALL,
                "Stop-CsWindowsService",
                "net start w3svc",
                "Install-CsDatabase -Update -LocalDatabases",
                "Start-CsWindowsService",
                GATE_SERVICES,
            ],
        ),
        (
            "fe01.sfb.e2e.test",
            vec![
                "Stop-CsWindowsService",
                "net stop w3svc",
                INSTALL,
                "Stop-CsWindowsService",
                "net start w3svc",
                "Start-CsWindowsService",
                GATE_SERVICES,
            ],
        ),
        (
            "edge01.sfb.e2e.test",
            vec![
                "Stop-CsWindowsService",
                INSTALL,
                "Stop-CsWindowsService",
                "Start-CsWindowsService",
                GATE_SERVICES,
            ],
        ),
    ])
}

fn sfb_runbook_on_real_workers(backend: Backend) {
    let Some(mut cluster) = Cluster::start("sfb_runbook", backend) else {
        return;
    };
    let fleet = fleet(SFB_FLEET);
    let fleet_file = cluster.write("fleet.toml", SFB_FLEET);
    let shim = cluster.write("fake-powershell", FAKE_POWERSHELL);
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let logs = cluster.dir().join("commands");
    std::fs::create_dir(&logs).expect("mkdir commands");
    let shim = shim.to_str().expect("UTF-8 path").to_string();
    for fqdn in fqdns(&fleet) {
        cluster.start_worker(
            fqdn,
            &["--executor", "shell", "--shell", &shim],
            &[("BATON_E2E_FQDN", fqdn)],
        );
    }
    cluster.wait_connected(fqdns(&fleet));

    let id = cluster.apply(
        &fleet_file,
        &repo_file("runbooks/sfb-server-update.toml"),
        &[r"package_path=D:\CU\2024-09\SkypeServerUpdateInstaller.exe"],
    );
    cluster.watch(&id);
    assert_all_succeeded(&cluster.status(&id), &fleet);

    let expected = expected_sfb_commands();
    let in_fleet: BTreeSet<&str> = fqdns(&fleet).into_iter().collect();
    assert_eq!(expected.keys().copied().collect::<BTreeSet<_>>(), in_fleet);
    for (fqdn, want) in &expected {
        let log = logs.join(format!("{fqdn}.log"));
        let text = std::fs::read_to_string(&log)
            .unwrap_or_else(|e| panic!("{fqdn} ran no command ({}: {e})", log.display()));
        assert_eq!(text.lines().collect::<Vec<_>>(), *want, "{fqdn}");
    }
    // What the shim printed came back as each step's output (`baton logs`), and every step
    // exited 0 having written its one line.
    let events = cluster.events(&id);
    assert_log_shape(&events, &id, &fleet);
    for (fqdn, want) in &expected {
        let logs = cluster.logs(fqdn, &id);
        let outputs: Vec<&str> = logs
            .lines()
            .map(|line| {
                line.split_once(": fake powershell ran: ")
                    .map_or(line, |p| p.1)
            })
            .collect();
        assert_eq!(outputs, *want, "{fqdn}: {logs}");
        let finished = events
            .iter()
            .filter(|e| e.kind == "step_finished" && e.server == *fqdn)
            .inspect(|e| {
                assert!(step_result(&e.detail).ends_with(": exit 0"), "{e:?}");
                assert_eq!(lines_of(&e.detail), 1, "{e:?}");
            })
            .count();
        assert_eq!(finished, want.len(), "{fqdn}");
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Bad input over the wire

fn bad_input_over_the_wire(backend: Backend) {
    let Some(mut cluster) = Cluster::start("bad_input", backend) else {
        return;
    };
    let runbook_file = cluster.write("runbook.toml", SIMULATED_RUNBOOK);

    // An invalid fleet: one error line naming the file and the line, exit 1, nothing started.
    let bad = cluster.write("unknown-role.toml", UNKNOWN_ROLE_FLEET);
    let out = cluster.baton(&[
        "apply",
        bad.to_str().expect("UTF-8 path"),
        "--runbook",
        runbook_file.to_str().expect("UTF-8 path"),
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(stdout(&out), "");
    assert!(
        err.starts_with(&format!("error: {}:10: ", bad.display())),
        "names the file and line: {err}"
    );
    assert!(
        err.contains(r#"`pool.server.role` = "frontdoor": unknown role"#),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let none = cluster.baton(&["status"]);
    assert!(
        !none.status.success(),
        "no rollout was started: {}",
        stdout(&none)
    );

    // A worker for a server in no fleet: registered, known = no, idle.
    let fleet = fleet(WIRE_FLEET);
    let fleet_file = cluster.write("fleet.toml", WIRE_FLEET);
    let simulate = ["--executor", "simulate", "--time-scale", "0.01"];
    let stranger = "stranger.wire.e2e.test";
    let stranger_worker = cluster.start_worker(stranger, &simulate, &[]);
    let mut workers = BTreeMap::new();
    for fqdn in fqdns(&fleet) {
        workers.insert(fqdn, cluster.start_worker(fqdn, &simulate, &[]));
    }
    cluster.wait_connected(fqdns(&fleet).into_iter().chain([stranger]));
    let servers = cluster.servers();
    assert_eq!(servers[stranger]["known"], false, "{servers:#?}");
    let table = cluster.baton_ok(&["servers"]);
    let row = table
        .lines()
        .find(|l| l.contains(stranger))
        .unwrap_or_else(|| panic!("{table}"));
    // Columns: server, version, platform, connected, last heartbeat, known, drops.
    let cells: Vec<&str> = row
        .trim()
        .trim_matches('│')
        .split('┆')
        .map(str::trim)
        .collect();
    assert_eq!(cells.get(5), Some(&"no"), "known: {row}");
    wait_until(
        "the stranger to be told it is unknown",
        support::TIMEOUT,
        || {
            cluster
                .worker_stderr(stranger_worker)
                .contains("no rollout includes this worker yet")
                .then_some(())
        },
    );

    // A second worker for a connected FQDN is refused with ALREADY_EXISTS (the worker logs
    // that code as "another worker is already connected") and keeps retrying, harmlessly.
    let first = workers["a.wire.e2e.test"];
    // Its own state dir: on the first one's, it would exit at once (one worker per state dir).
    let second_dir = cluster.dir().join("state").join("a.wire.e2e.test-second");
    let url = cluster.url.clone();
    let second = cluster.start_worker_at("a.wire.e2e.test", &url, &second_dir, &simulate, &[]);
    wait_until("the second worker to be refused", support::TIMEOUT, || {
        let log = cluster.worker_stderr(second);
        (log.contains(
            "controller refused the stream: another worker is already connected as a.wire.e2e.test",
        ) && log.contains("a second one is refused"))
        .then_some(())
    });
    assert!(cluster.worker_exited(second).is_none(), "it keeps retrying");
    let servers = cluster.servers();
    assert_eq!(servers.len(), 3, "{servers:#?}");
    assert_eq!(servers["a.wire.e2e.test"]["connected"], true);

    // The first one keeps working: it runs its server's assignment, the stranger gets none.
    let id = cluster.apply(&fleet_file, &runbook_file, &[]);
    cluster.watch(&id);
    assert_all_succeeded(&cluster.status(&id), &fleet);
    let events = cluster.events(&id);
    assert_log_shape(&events, &id, &fleet);
    assert!(
        events.iter().all(|e| e.server != stranger),
        "the stranger got events: {events:#?}"
    );
    for (index, runs) in [(first, true), (second, false), (stranger_worker, false)] {
        assert_eq!(
            cluster.worker_stderr(index).contains("assignment received"),
            runs,
            "worker {index}:\n{}",
            cluster.worker_stderr(index)
        );
    }
    let servers = cluster.servers();
    assert_eq!(servers[stranger]["known"], false, "{servers:#?}");
    assert_eq!(servers[stranger]["connected"], true, "{servers:#?}");

    // A database the controller cannot use: it exits non-zero, naming it (password hidden).
    let missing = cluster.dir().join("missing").join("baton.db");
    let mut unusable = vec![(
        format!("sqlite://{}", missing.display()),
        format!(
            "error: cannot open the store: cannot create SQLite database {}: directory {} does not exist",
            missing.display(),
            missing.parent().expect("parent").display()
        ),
    )];
    unusable.push((
        "postgres://baton:wrong@127.0.0.1:1/x".to_string(),
        "error: cannot open the store: cannot connect to database postgres://baton:***@127.0.0.1:1/x: "
            .to_string(),
    ));
    if backend == Backend::Postgres
        && let Some((user, host)) = postgres_user_and_host(&cluster.db_url)
    {
        unusable.push((
            format!("postgres://{user}:wrong-password@{host}"),
            format!("error: cannot open the store: cannot connect to database postgres://{user}:***@{host}"),
        ));
    }
    for (url, says) in unusable {
        let out = run_bounded(
            Command::new(&support::bins().controller)
                .args(["--listen", "127.0.0.1:0", "--db", &url])
                .env("RUST_LOG", "warn"),
            Duration::from_secs(30),
            "baton-controller with an unusable database",
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{url}: {err}");
        assert!(err.contains(&says), "{url}: wanted {says:?} in:\n{err}");
        assert!(!err.contains("wrong"), "the password is shown: {err}");
    }
}

/// `("baton", "127.0.0.1:5432/baton_test")` from `postgres://baton:PASSWORD@127.0.0.1:5432/baton_test?…`.
fn postgres_user_and_host(url: &str) -> Option<(String, String)> {
    let rest = url.split_once("://")?.1;
    let (userinfo, host) = rest.split_once('@')?;
    let user = userinfo.split(':').next()?;
    let host = host.split('?').next()?;
    Some((user.to_string(), host.to_string()))
}

// ---------------------------------------------------------------------------------------------
// 5. A failing step, for real: retried, then the server fails, its pool is quarantined and,
// past max_failures = 0, nothing else starts

/// Two pools of two front ends, one server at a time.
const FAILING_FLEET: &str = r#"
[fleet]
name = "e2e-failing"
max_parallel = 1

[[pool]]
fqdn = "x.fail.e2e.test"
edition = "enterprise"

  [[pool.server]]
  fqdn = "x1.fail.e2e.test"
  role = "frontend"

  [[pool.server]]
  fqdn = "x2.fail.e2e.test"
  role = "frontend"

[[pool]]
fqdn = "y.fail.e2e.test"
edition = "enterprise"

  [[pool.server]]
  fqdn = "y1.fail.e2e.test"
  role = "frontend"

  [[pool.server]]
  fqdn = "y2.fail.e2e.test"
  role = "frontend"
"#;

/// Every server's `patch` step fails, its retry too.
const FAILING_RUNBOOK: &str = r#"
[runbook]
name = "e2e-failing"
shell = "sh"
expected_duration = "1s"

[[step]]
id = "prepare"
run = "true"
timeout = "30s"

[[step]]
id = "patch"
run = "echo cannot patch {{ server.fqdn }} >&2; exit 3"
timeout = "30s"
retries = 1

[[step]]
id = "never"
run = "true"
timeout = "30s"
"#;

fn a_failing_server_stops_the_rollout(backend: Backend) {
    let Some(mut cluster) = Cluster::start("failing_server", backend) else {
        return;
    };
    let fleet = fleet(FAILING_FLEET);
    let fleet_file = cluster.write("fleet.toml", FAILING_FLEET);
    let runbook_file = cluster.write("runbook.toml", FAILING_RUNBOOK);
    for fqdn in fqdns(&fleet) {
        cluster.start_worker(fqdn, &["--executor", "shell"], &[]);
    }
    cluster.wait_connected(fqdns(&fleet));
    let id = cluster.apply(&fleet_file, &runbook_file, &[]);

    // Whichever server goes first fails: its pool partner is skipped, the other pool never starts.
    let watch = cluster.baton(&["status", &id, "--watch"]);
    let events = cluster.events(&id);
    assert_log_shape(&events, &id, &fleet);
    let started: Vec<&Event> = events
        .iter()
        .filter(|e| e.kind == "server_started")
        .collect();
    assert_eq!(started.len(), 1, "{:#?}", kinds(&events));
    let failed = started[0].server.as_str();
    let err = stderr(&watch);
    assert_eq!(watch.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "rollout {id} finished with 1 failed server: {failed}"
        )),
        "{err}"
    );

    let own: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e.server == failed && e.kind != "server_started")
        .map(|e| (e.kind.as_str(), step_result(&e.detail)))
        .collect();
    assert_eq!(
        own,
        [
            ("step_started", "prepare attempt 1"),
            ("step_finished", "prepare attempt 1: exit 0"),
            ("step_started", "patch attempt 1"),
            ("step_finished", "patch attempt 1: exit 3"),
            ("step_started", "patch attempt 2"),
            ("step_finished", "patch attempt 2: exit 3"),
            ("server_finished", "failed: step patch exited 3"),
        ]
    );
    // Each attempt's stderr line, in its step output.
    assert_eq!(
        cluster.logs(failed, &id),
        format!(
            "patch: [stderr] cannot patch {failed}\npatch (attempt 2): [stderr] cannot patch {failed}\n"
        )
    );
    let failed_id = fleet.server_by_fqdn(failed).expect("in the fleet");
    let pool = fleet.servers[failed_id].pool;
    let status = cluster.status(&id);
    assert_eq!(status["state"], "finished", "{status:#}");
    for (fqdn, state) in server_states(&status) {
        let server = fleet.server_by_fqdn(&fqdn).expect("in the fleet");
        let (want, event) = if fqdn == failed {
            ("failed", "server_finished")
        } else if fleet.servers[server].pool == pool {
            ("skipped", "server_skipped")
        } else {
            ("not_started", "server_not_started")
        };
        assert_eq!(state, want, "{fqdn}");
        assert!(
            events.iter().any(|e| e.kind == event && e.server == fqdn),
            "no {event} event for {fqdn}"
        );
    }
    let skipped = events
        .iter()
        .find(|e| e.kind == "server_skipped")
        .expect("a skipped server");
    assert!(skipped.detail.starts_with("quarantined: "), "{skipped:?}");
    let finished = &events[events.len() - 1].detail;
    assert!(
        finished.starts_with("finished: 1 failed, 2 not_started, 1 skipped in "),
        "{finished}"
    );
    let records = records_from_events(&fleet, &events);
    if let Err(violation) = audit_schedule(&fleet, &records) {
        panic!("{violation}");
    }
}

// ---------------------------------------------------------------------------------------------
// Known product bugs: these fail today and are ignored until the fix lands
// (`cargo test --test e2e -- --ignored` runs them).

/// A one-server-at-a-time fleet of two.
const PAIR_FLEET: &str = r#"
[fleet]
name = "e2e-pair"
max_parallel = 1

[[pool]]
fqdn = "pool.pair.e2e.test"
edition = "enterprise"

  [[pool.server]]
  fqdn = "a.pair.e2e.test"
  role = "frontend"

  [[pool.server]]
  fqdn = "b.pair.e2e.test"
  role = "frontend"
"#;

/// `baton servers` says whether a worker is "in a known fleet" (`WorkerInfo.known`). Two workers
/// of the same fleet, after the same finished rollout, should say the same. Today the answer
/// depends on when each connected: the controller stores `known` once, at hello (true only if an
/// active rollout had the FQDN then), and never updates it when a rollout that includes the
/// worker is applied.
#[test]
fn known_does_not_depend_on_when_the_worker_connected() {
    let Some(mut cluster) = Cluster::start("known_consistency", Backend::Sqlite) else {
        return;
    };
    let fleet_file = cluster.write("fleet.toml", PAIR_FLEET);
    let runbook_file = cluster.write("runbook.toml", SIMULATED_RUNBOOK);
    let simulate = ["--executor", "simulate", "--time-scale", "0.01"];
    cluster.start_worker("a.pair.e2e.test", &simulate, &[]);
    cluster.wait_connected(["a.pair.e2e.test"]);
    let id = cluster.apply(&fleet_file, &runbook_file, &[]);
    // b's worker comes up once the rollout runs (its assignment waits for it if need be).
    cluster.start_worker("b.pair.e2e.test", &simulate, &[]);
    cluster.watch(&id);
    assert_all_succeeded(&cluster.status(&id), &fleet(PAIR_FLEET));
    let servers = cluster.servers();
    assert_eq!(
        servers["a.pair.e2e.test"]["known"], servers["b.pair.e2e.test"]["known"],
        "same fleet, same finished rollout, different `known`: {servers:#?}"
    );
}

/// `--log-file`: a worker's lines go to its file (as on Windows, where a scheduled task keeps
/// no stderr), and its stderr stays empty.
#[test]
fn a_worker_logs_to_its_log_file() {
    let Some(mut cluster) = Cluster::start("log_file", Backend::Sqlite) else {
        return;
    };
    let log = cluster.dir().join("worker.log");
    let log_arg = log.display().to_string();
    let worker = cluster.start_worker(
        "a.pair.e2e.test",
        &["--executor", "simulate", "--log-file", &log_arg],
        &[],
    );
    cluster.wait_connected(["a.pair.e2e.test"]);
    let text = wait_until("the log file to show the session", support::TIMEOUT, || {
        let text = std::fs::read_to_string(&log).ok()?;
        text.contains("stream open").then_some(text)
    });
    assert!(text.contains("baton-worker starting"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "no colour codes in a file: {text}"
    );
    assert_eq!(cluster.worker_stderr(worker), "", "nothing on stderr");
}

/// A worker that dies mid-assignment (crash, reboot) and comes back must not leave its server
/// "running" for ever. The new worker process does not name the assignment in its `Hello`, so
/// the server needs attention (its state is unknown: its pool stays held, nothing runs twice
/// by itself); `baton resolve --retry` runs it again and the rollout ends.
#[test]
fn a_worker_restarted_mid_assignment_does_not_stall_the_rollout() {
    let Some(mut cluster) = Cluster::start("worker_restart", Backend::Sqlite) else {
        return;
    };
    let fleet_file = cluster.write("fleet.toml", PAIR_FLEET);
    let runbook = SIMULATED_RUNBOOK.replace("timeout = \"1m\"", "timeout = \"2s\"");
    let runbook_file = cluster.write("runbook.toml", &runbook);
    // 10 s expected × 0.5: the first server is still running when its worker dies.
    let slow = ["--executor", "simulate", "--time-scale", "0.5"];
    let first_a = cluster.start_worker("a.pair.e2e.test", &slow, &[]);
    let first_b = cluster.start_worker("b.pair.e2e.test", &slow, &[]);
    cluster.wait_connected(["a.pair.e2e.test", "b.pair.e2e.test"]);
    let id = cluster.apply(&fleet_file, &runbook_file, &[]);
    let events = cluster.wait_events(&id, "the first step to start", |events| {
        count(events, "step_started") >= 1
    });
    let running = events
        .iter()
        .find(|e| e.kind == "server_started")
        .expect("a server started")
        .server
        .clone();
    let index = if running == "a.pair.e2e.test" {
        first_a
    } else {
        first_b
    };
    cluster.kill_worker(index);
    let fast = ["--executor", "simulate", "--time-scale", "0.01"];
    cluster.start_worker(&running, &fast, &[]);
    // The new process does not know the assignment: the server needs attention, its pool held.
    let state_of = |cluster: &Cluster| -> String {
        let status = cluster.status(&id);
        status["servers"]
            .as_array()
            .expect("servers")
            .iter()
            .find(|s| s["fqdn"] == running.as_str())
            .expect("the restarted server")["state"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    wait_until(
        "the server to need attention",
        Duration::from_secs(30),
        || (state_of(&cluster) == "needs_attention").then_some(()),
    );
    // An operator retries it; its runbook runs again and the rollout ends.
    cluster.baton_ok(&["resolve", &running, "--rollout", &id, "--retry"]);
    let state = wait_until(
        "the rollout to end after the retry",
        Duration::from_secs(30),
        || {
            let state = cluster.status(&id)["state"].clone();
            (state == "finished" || state == "aborted").then_some(state)
        },
    );
    assert_eq!(state, "finished");
    assert_eq!(state_of(&cluster), "succeeded");
}

// ---------------------------------------------------------------------------------------------
// Faults: the controller SIGKILLed at seeded moments, a worker killed mid-update

/// The fault-injection run: a 40-server, 10-pool rollout with real `sh` steps while the controller is
/// SIGKILLed and restarted 5 times at moments drawn from a seed (printed; `BATON_FAULT_SEED`
/// replays it), and the worker of a server in maintenance is killed and restarted once. The
/// rollout still ends; no server starts twice; every server is accounted for exactly once
/// (finished, skipped or not started); R1–R5 hold over the whole log; `seq` stays contiguous.
/// 40 servers in 10 pools for the fault run: six Enterprise pools (a back end and five front
/// ends, two of them paired) and four Standard Edition servers (two pairs), capped.
fn fault_fleet() -> String {
    let mut toml = String::from("[fleet]\nname = \"e2e-faults\"\nmax_parallel = 10\n");
    for p in 1..=6 {
        let paired = match p {
            1 => "paired_with = \"pool2.faults.e2e.test\"\n",
            _ => "",
        };
        toml.push_str(&format!(
            "\n[[pool]]\nfqdn = \"pool{p}.faults.e2e.test\"\nedition = \"enterprise\"\nsql_server = \"sql{p}.faults.e2e.test\"\nmax_unavailable = 2\n{paired}\n  [[pool.server]]\n  fqdn = \"be{p}.faults.e2e.test\"\n  role = \"backend\"\n"
        ));
        for f in 1..=5 {
            toml.push_str(&format!(
                "\n  [[pool.server]]\n  fqdn = \"fe{p}{f}.faults.e2e.test\"\n  role = \"frontend\"\n"
            ));
        }
    }
    for s in 1..=4 {
        let paired = match s {
            1 => "paired_with = \"se2.faults.e2e.test\"\n",
            3 => "paired_with = \"se4.faults.e2e.test\"\n",
            _ => "",
        };
        toml.push_str(&format!(
            "\n[[pool]]\nfqdn = \"se{s}.faults.e2e.test\"\nedition = \"standard\"\n{paired}\n  [[pool.server]]\n  fqdn = \"se{s}.faults.e2e.test\"\n  role = \"standard\"\n"
        ));
    }
    toml
}

fn controller_crashes_break_no_rule(backend: Backend) {
    let seed: u64 = std::env::var("BATON_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64 | 1)
        });
    eprintln!("baton-e2e: fault seed {seed}; BATON_FAULT_SEED={seed} replays these crash moments");
    let Some(mut cluster) = Cluster::start("faults", backend) else {
        return;
    };
    let fleet_text = fault_fleet();
    let fleet = fleet(&fleet_text);
    assert_eq!((fleet.servers.len(), fleet.pools.len()), (40, 10));
    let fleet_file = cluster.write("fleet.toml", &fleet_text);
    let runbook_file = cluster.write("runbook.toml", SLEEP_RUNBOOK);
    let mut workers: BTreeMap<String, usize> = BTreeMap::new();
    for fqdn in fqdns(&fleet) {
        workers.insert(
            fqdn.to_string(),
            cluster.start_worker(fqdn, &["--executor", "shell"], &[]),
        );
    }
    cluster.wait_connected(fqdns(&fleet));
    let id = cluster.apply(&fleet_file, &runbook_file, &[]);

    // Crash moments: after this many events (the whole rollout logs about 300: early enough
    // that all five land before the end).
    let mut state = seed;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut moments: Vec<usize> = (0..5).map(|_| 2 + (next() % 150) as usize).collect();
    moments.sort_unstable();
    let over = |events: &[Event]| events.iter().any(|e| e.kind == "rollout_finished");
    let mut crashes = 0;
    let mut worker_kills = 0;
    for (round, at) in moments.iter().enumerate() {
        let events = cluster.wait_events(&id, "progress before the next crash", |e| {
            e.len() >= *at || over(e)
        });
        assert!(
            !over(&events),
            "the rollout ended after {crashes} crashes, before all {} (seed {seed})",
            moments.len()
        );
        if (1..=3).contains(&round) {
            // A server in maintenance loses its worker process (SIGKILL), which comes back with
            // its journal: resumed if it stopped between steps or in the idempotent `prepare`,
            // held for an operator if it stopped inside `patch`.
            let running: Vec<String> = events
                .iter()
                .filter(|e| e.kind == "server_started")
                .map(|e| e.server.clone())
                .filter(|s| {
                    !events
                        .iter()
                        .any(|e| e.server == *s && e.kind == "server_finished")
                })
                .collect();
            if !running.is_empty() {
                let server = running[next() as usize % running.len()].clone();
                cluster.kill_worker(workers[&server]);
                let index = cluster.start_worker(&server, &["--executor", "shell"], &[]);
                workers.insert(server, index);
                worker_kills += 1;
            }
        }
        cluster.crash_and_restart_controller(round);
        crashes += 1;
    }
    assert_eq!(crashes, 5, "seed {seed}");

    // Servers whose worker came back without their assignment wait for an operator: retry them.
    let mut retried = 0;
    let state = wait_until(
        "the rollout to end after the crashes",
        Duration::from_secs(120),
        || {
            let status = cluster.status(&id);
            for server in status["servers"].as_array().into_iter().flatten() {
                if server["state"] == "needs_attention" {
                    let fqdn = server["fqdn"].as_str().unwrap_or_default();
                    cluster.baton_ok(&["resolve", fqdn, "--rollout", &id, "--retry"]);
                    retried += 1;
                }
            }
            let state = status["state"].as_str().unwrap_or_default().to_string();
            (state == "finished" || state == "aborted").then_some(state)
        },
    );
    assert_eq!(state, "finished", "seed {seed}");
    let events = cluster.events(&id);
    eprintln!(
        "baton-e2e: {crashes} controller crashes, {worker_kills} worker kills, {} resumed from their journal, {retried} servers retried, {} events, {} servers failed (seed {seed})",
        events.iter().filter(|e| e.kind == "server_resumed").count(),
        events.len(),
        events
            .iter()
            .filter(|e| e.kind == "server_finished" && e.detail != "succeeded")
            .count()
    );
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.seq, i as u64 + 1, "seq contiguous (seed {seed})");
    }
    for fqdn in fqdns(&fleet) {
        let ends = events
            .iter()
            .filter(|e| e.server == fqdn)
            .filter(|e| {
                matches!(
                    e.kind.as_str(),
                    "server_finished" | "server_skipped" | "server_not_started"
                )
            })
            .count();
        assert_eq!(ends, 1, "{fqdn} accounted for exactly once (seed {seed})");
    }
    // Panics if a server started (or finished) twice.
    let records = records_from_events(&fleet, &events);
    if let Err(violation) = audit_schedule(&fleet, &records) {
        panic!("seed {seed}: {violation}");
    }
}
