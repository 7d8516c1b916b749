//! Step output as a stream, not as events (issue #11), with real controller, worker and CLI
//! processes: ten servers each print 20,000 lines in one step at the same time. No worker is
//! lost, the event log holds no line of it, each step's result says how many lines it wrote,
//! and `baton logs` gives every line of each server back, in order, also to a follower that
//! started before the lines came.
//!
//! On both stores (`::sqlite`, `::postgres`); the PostgreSQL variant needs
//! `BATON_TEST_POSTGRES_URL` and otherwise says it was skipped.

#![cfg(unix)]

#[macro_use]
mod support;

use support::{Backend, Cluster};

on_both_stores!(twenty_thousand_lines_on_ten_servers_at_once);

const SERVERS: usize = 10;
const LINES: usize = 20_000;

/// Ten front ends of one pool, all updated at once.
fn fleet() -> (String, Vec<String>) {
    let fqdns: Vec<String> = (1..=SERVERS)
        .map(|i| format!("fe{i:02}.output.e2e.test"))
        .collect();
    let mut toml = format!(
        "[fleet]\nname = \"e2e-output\"\nmax_parallel = {SERVERS}\n\n[[pool]]\nfqdn = \"pool.output.e2e.test\"\nedition = \"enterprise\"\nmax_unavailable = {SERVERS}\n"
    );
    for fqdn in &fqdns {
        toml.push_str(&format!(
            "\n  [[pool.server]]\n  fqdn = \"{fqdn}\"\n  role = \"frontend\"\n"
        ));
    }
    (toml, fqdns)
}

/// 20,000 lines, with a pause in the middle so that a follower sees them come.
const RUNBOOK: &str = r#"
[runbook]
name = "e2e-output"
shell = "sh"
expected_duration = "2s"

[[step]]
id = "count"
run = "seq 1 10000; sleep 0.5; seq 10001 20000"
timeout = "60s"
"#;

fn twenty_thousand_lines_on_ten_servers_at_once(backend: Backend) {
    let Some(mut cluster) = Cluster::start("step_output", backend) else {
        return;
    };
    let (fleet, fqdns) = fleet();
    let fleet_file = cluster.write("fleet.toml", &fleet);
    let runbook_file = cluster.write("runbook.toml", RUNBOOK);
    for fqdn in &fqdns {
        cluster.start_worker(fqdn, &["--executor", "shell"], &[]);
    }
    cluster.wait_connected(fqdns.iter().map(String::as_str));

    let id = cluster.apply(&fleet_file, &runbook_file, &[]);
    let want: String = (1..=LINES).map(|n| format!("{n}\n")).collect();
    let cluster = &cluster;
    let followed = std::thread::scope(|scope| {
        let follower =
            scope.spawn(|| cluster.baton_ok(&["logs", &fqdns[0], "--step", "count", "--follow"]));
        let watched = cluster.watch(&id);
        assert!(watched.contains("finished"), "{watched}");
        follower.join().expect("the follower")
    });
    assert!(
        followed == want,
        "the follower's lines differ: {} bytes",
        followed.len()
    );

    let events = cluster.events(&id);
    let kinds = |kind: &str| events.iter().filter(|e| e.kind == kind).count();
    assert_eq!(kinds("worker_lost"), 0, "{events:#?}");
    assert_eq!(kinds("step_output"), 0);
    assert_eq!(kinds("server_finished"), SERVERS);
    for fqdn in &fqdns {
        let finished: Vec<&str> = events
            .iter()
            .filter(|e| e.kind == "step_finished" && &e.server == fqdn)
            .map(|e| e.detail.as_str())
            .collect();
        assert_eq!(finished.len(), 1, "{fqdn}: {finished:?}");
        assert!(
            finished[0].starts_with("count attempt 1: exit 0 (20,000 lines in "),
            "{fqdn}: {finished:?}"
        );
        // One step asked for: its lines as they are, every one, in order.
        let logs = cluster.baton_ok(&["logs", fqdn, "--rollout", &id, "--step", "count"]);
        assert!(
            logs == want,
            "{fqdn}: the lines differ ({} bytes)",
            logs.len()
        );
        // Every step: each line says its step.
        let all = cluster.logs(fqdn, &id);
        assert_eq!(all.lines().count(), LINES, "{fqdn}");
        assert!(all.lines().all(|l| l.starts_with("count: ")), "{fqdn}");
        assert_eq!(all.lines().last(), Some("count: 20000"), "{fqdn}");
    }
}
