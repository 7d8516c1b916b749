//! A result counts only for the assignment it answers (issue #10), with real controller and
//! worker processes:
//! - workers whose journals hold finished assignments of another store (an earlier database,
//!   SQLite then PostgreSQL) are assigned again: every step runs again, the stale results are
//!   archived unsent, reported once in each worker's log, and no session loop follows;
//! - a worker whose stream is cut 20 times during one step: one `worker_lost`, the rollout
//!   finishes, nothing runs twice.
//!
//! Each test runs on both stores as the second controller's (`::sqlite`, `::postgres`); the
//! PostgreSQL variants need `BATON_TEST_POSTGRES_URL` and otherwise say they were skipped.

#![cfg(unix)]

#[macro_use]
mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::proxy::CuttingProxy;
use support::{Backend, Cluster, Event, TempDir, wait_until};

on_both_stores!(
    a_result_from_another_store_never_counts,
    a_stream_cut_twenty_times_during_one_step,
);

const FLEET: &str = r#"
[fleet]
name = "e2e-identity"
max_parallel = 1

[[pool]]
fqdn = "pool.identity.e2e.test"
edition = "enterprise"

  [[pool.server]]
  fqdn = "a.identity.e2e.test"
  role = "frontend"

  [[pool.server]]
  fqdn = "b.identity.e2e.test"
  role = "frontend"
"#;

const SERVERS: [&str; 2] = ["a.identity.e2e.test", "b.identity.e2e.test"];

/// Each step writes its name to the server's command log (`BATON_E2E_LOG`, set per worker), so
/// the test sees exactly what ran, and how often.
const RUNBOOK: &str = r#"
[runbook]
name = "e2e-identity"
shell = "sh"
expected_duration = "1s"

[[step]]
id = "prepare"
run = "echo prepare >> \"$BATON_E2E_LOG\""
timeout = "30s"

[[step]]
id = "patch"
run = "echo patch >> \"$BATON_E2E_LOG\""
timeout = "30s"
"#;

/// Quick reconnects keep the tests short; the backoff itself is unit-tested in the worker.
const QUICK_RECONNECTS: [&str; 4] = ["--reconnect-initial", "20ms", "--reconnect-max", "100ms"];

fn commands(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn count(events: &[Event], kind: &str) -> usize {
    events.iter().filter(|e| e.kind == kind).count()
}

fn assert_all_succeeded(status: &Value) {
    assert_eq!(status["state"], "finished", "{status:#}");
    for server in status["servers"].as_array().expect("servers") {
        assert_eq!(server["state"], "succeeded", "{server:#}");
    }
}

/// Rolls the fleet out on `cluster` with one worker per server keeping its journal under
/// `state`, and returns the worker indices.
fn roll_out(cluster: &mut Cluster, state: &Path) -> Vec<usize> {
    let fleet = cluster.write("fleet.toml", FLEET);
    let runbook = cluster.write("runbook.toml", RUNBOOK);
    let url = cluster.url.clone();
    let mut workers = Vec::new();
    // One worker before the rollout (assigned while connected), one after (its assignment
    // waits for it and is delivered when it says hello).
    let first = state.join(SERVERS[0]);
    let log = state.join(format!("{}.log", SERVERS[0]));
    let log = log.to_str().expect("UTF-8");
    workers.push(cluster.start_worker_at(
        SERVERS[0],
        &url,
        &first,
        &QUICK_RECONNECTS,
        &[("BATON_E2E_LOG", log)],
    ));
    cluster.wait_connected([SERVERS[0]]);
    let id = cluster.apply(&fleet, &runbook, &[]);
    let second = state.join(SERVERS[1]);
    let log = state.join(format!("{}.log", SERVERS[1]));
    let log = log.to_str().expect("UTF-8");
    workers.push(cluster.start_worker_at(
        SERVERS[1],
        &url,
        &second,
        &QUICK_RECONNECTS,
        &[("BATON_E2E_LOG", log)],
    ));
    cluster.watch(&id);
    assert_all_succeeded(&cluster.status(&id));
    // Every server's steps were reported, each once, before its success.
    let events = cluster.events(&id);
    for fqdn in SERVERS {
        let mine: Vec<&Event> = events.iter().filter(|e| e.server == fqdn).collect();
        let finished_steps = mine.iter().filter(|e| e.kind == "step_finished").count();
        assert_eq!(finished_steps, 2, "{fqdn}: {mine:#?}");
        let last = mine.last().expect("events");
        assert_eq!(
            (last.kind.as_str(), last.detail.as_str()),
            ("server_finished", "succeeded"),
            "{fqdn}"
        );
    }
    workers
}

/// The bug report's sequence: a rollout on one store; the team moves the controller to a new
/// database (a recreated SQLite file, or PostgreSQL) and rolls out again with the same worker
/// state dirs. Assignment numbers start again, and each worker's journal holds a finished
/// result of the old store: it must never count for the new store's assignment.
fn a_result_from_another_store_never_counts(backend: Backend) {
    let state = TempDir::new("identity-state");
    {
        let Some(mut first) = Cluster::start("identity_first", Backend::Sqlite) else {
            return;
        };
        let workers = roll_out(&mut first, state.path());
        for worker in workers {
            first.stop_worker(worker);
        }
        first.stop_controller();
    }
    for fqdn in SERVERS {
        let journal = state.path().join(fqdn).join("journal.jsonl");
        let text = std::fs::read_to_string(&journal).expect("a journal");
        assert!(text.contains("\"finished\""), "{fqdn}: {text}");
        assert_eq!(
            commands(&state.path().join(format!("{fqdn}.log"))),
            ["prepare", "patch"]
        );
    }

    let Some(mut second) = Cluster::start("identity_second", backend) else {
        return;
    };
    let workers = roll_out(&mut second, state.path());
    for (worker, fqdn) in workers.into_iter().zip(SERVERS) {
        // Every step ran again on this store's assignment.
        assert_eq!(
            commands(&state.path().join(format!("{fqdn}.log"))),
            ["prepare", "patch", "prepare", "patch"],
            "{fqdn}"
        );
        let log = second.worker_stderr(worker);
        assert_eq!(
            log.matches("discarding the journaled result").count(),
            1,
            "{fqdn}: the stale result is reported once:\n{log}"
        );
        let sessions = log.matches("connecting to the controller").count();
        assert!(
            (1..=3).contains(&sessions),
            "{fqdn}: {sessions} sessions:\n{log}"
        );
        let archive = state.path().join(fqdn).join("journal.archive.jsonl");
        let archive = std::fs::read_to_string(&archive).expect("an archive");
        assert!(archive.contains("issued by store"), "{archive}");
    }
}

/// A step that waits for the test's go-ahead while a proxy between the worker and the
/// controller cuts the stream 20 times: the interruption is recorded once, the rollout
/// finishes, and no step runs twice.
fn a_stream_cut_twenty_times_during_one_step(backend: Backend) {
    let Some(mut cluster) = Cluster::start("identity_cuts", backend) else {
        return;
    };
    let fleet = cluster.write(
        "fleet.toml",
        &FLEET.replace(
            "\n  [[pool.server]]\n  fqdn = \"b.identity.e2e.test\"\n  role = \"frontend\"\n",
            "",
        ),
    );
    let go = cluster.dir().join("go");
    let runbook = RUNBOOK.replace(
        "run = \"echo patch >> \\\"$BATON_E2E_LOG\\\"\"",
        &format!(
            "run = \"while [ ! -e '{}' ]; do sleep 0.02; done; echo patch >> \\\"$BATON_E2E_LOG\\\"\"",
            go.display()
        ),
    );
    assert_ne!(runbook, RUNBOOK, "the patch step waits for the go-ahead");
    let runbook = cluster.write("runbook.toml", &runbook);
    let target = cluster
        .url
        .trim_start_matches("http://")
        .parse()
        .expect("the controller's address");
    let proxy = CuttingProxy::start(target);
    let fqdn = SERVERS[0];
    let log = cluster.dir().join("commands.log");
    let state = cluster.dir().join("state").join(fqdn);
    let worker = cluster.start_worker_at(
        fqdn,
        &proxy.url(),
        &state,
        &QUICK_RECONNECTS,
        &[("BATON_E2E_LOG", log.to_str().expect("UTF-8"))],
    );
    cluster.wait_connected([fqdn]);
    let id = cluster.apply(&fleet, &runbook, &[]);
    cluster.wait_events(&id, "the patch step to start", |events| {
        events
            .iter()
            .any(|e| e.kind == "step_started" && e.detail.starts_with("patch"))
    });

    let connected = |cluster: &Cluster| cluster.servers()[fqdn]["connected"] == true;
    for cut in 1..=20 {
        let accepted = proxy.accepted();
        assert!(proxy.cut_all() >= 1, "cut {cut}: a stream to cut");
        // Back through the proxy, and known to the controller again.
        wait_until("the worker to reconnect", Duration::from_secs(30), || {
            (proxy.accepted() > accepted && proxy.open() >= 1 && connected(&cluster)).then_some(())
        });
    }
    std::fs::write(&go, "").expect("the go-ahead");
    cluster.watch(&id);
    assert_all_succeeded(&cluster.status(&id));

    assert_eq!(commands(&log), ["prepare", "patch"], "nothing ran twice");
    let events = cluster.events(&id);
    assert_eq!(count(&events, "worker_lost"), 1, "{events:#?}");
    let flapped: Vec<&Event> = events
        .iter()
        .filter(|e| e.kind == "worker_flapped")
        .collect();
    assert_eq!(flapped.len(), 1, "{events:#?}");
    let drops: u64 = flapped[0]
        .detail
        .split_once("dropped ")
        .and_then(|(_, rest)| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("a drop count");
    assert!(drops >= 20, "{}", flapped[0].detail);
    assert_eq!(count(&events, "step_started"), 2, "each step started once");
    // The drops show in `baton servers`.
    let servers = cluster.servers();
    assert!(
        servers[fqdn]["drops"].as_u64().expect("drops") >= 20,
        "{servers:#?}"
    );
    assert!(
        cluster.worker_exited(worker).is_none(),
        "the worker runs on"
    );
}
