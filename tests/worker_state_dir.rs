//! One worker per state dir, with real processes: a second `baton-worker` started on a state
//! dir a running worker holds exits with status 2 and one line naming the dir and the holder,
//! before it opens the journal or calls the controller; the first one is not disturbed.
//!
//! SQLite only: the lock is the worker's own business, nothing to do with the store.

#![cfg(unix)]

mod support;

use std::process::Command;

use support::{Backend, Cluster, TIMEOUT, bins, run_bounded, stderr};

/// One front end.
const ONE_SERVER_FLEET: &str = r#"
[fleet]
name = "e2e-state-dir"

[[pool]]
fqdn = "pool.lock.e2e.test"
edition = "enterprise"

  [[pool.server]]
  fqdn = "a.lock.e2e.test"
  role = "frontend"
"#;

/// For `--executor simulate`: nothing runs, the server takes 10 s × the worker's time scale.
const SIMULATED_RUNBOOK: &str = r#"
[runbook]
name = "e2e-state-dir"
shell = "sh"
expected_duration = "10s"

[[step]]
id = "patch"
run = "false"
timeout = "1m"
"#;

const FIRST: &str = "a.lock.e2e.test";
const SECOND: &str = "b.lock.e2e.test";

#[test]
fn a_second_worker_on_a_held_state_dir_exits_and_the_first_goes_on() {
    let Some(mut cluster) = Cluster::start("worker_state_dir", Backend::Sqlite) else {
        return;
    };
    let simulate = ["--executor", "simulate", "--time-scale", "0.01"];
    let first = cluster.start_worker(FIRST, &simulate, &[]);
    // Connected: it took the lock before it connected.
    cluster.wait_connected([FIRST]);
    let dir = cluster.dir().join("state").join(FIRST);
    assert!(dir.join("worker.lock").is_file(), "no lock file in {dir:?}");

    // `start_worker` names a state dir of its own and clap takes `--state-dir` only once, so
    // the second worker (another FQDN, the first one's dir) is started here.
    let mut command = Command::new(&bins().worker);
    command
        .args(["--controller", &cluster.url, "--fqdn", SECOND])
        .arg("--state-dir")
        .arg(&dir)
        .args(simulate)
        .current_dir(cluster.dir())
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    let second = run_bounded(&mut command, TIMEOUT, "the second worker");
    let err = stderr(&second);
    assert_eq!(second.status.code(), Some(2), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line on stderr:\n{err}");
    let line = lines[0];
    let prefix = format!(
        "baton-worker: state dir {} is in use by another worker (pid ",
        dir.display()
    );
    let suffix = format!(", fqdn {FIRST}); give each worker its own --state-dir");
    assert!(
        line.starts_with(&prefix) && line.ends_with(&suffix),
        "{line}"
    );
    let pid: u32 = line[prefix.len()..line.len() - suffix.len()]
        .parse()
        .unwrap_or_else(|e| panic!("no pid in {line:?}: {e}"));
    if cfg!(target_os = "linux") {
        // The pid named is the first worker's.
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        assert!(cmdline.contains(FIRST), "pid {pid} runs {cmdline:?}");
    }

    // The first worker is still there and still connected; the second never reached the
    // controller.
    assert!(
        cluster.worker_exited(first).is_none(),
        "the first worker exited:\n{}",
        cluster.worker_stderr(first)
    );
    let servers = cluster.servers();
    assert_eq!(servers[FIRST]["connected"], true, "{servers:#?}");
    assert!(!servers.contains_key(SECOND), "{servers:#?}");

    // And it still works: a one-server rollout on it finishes.
    let fleet_file = cluster.write("fleet.toml", ONE_SERVER_FLEET);
    let runbook_file = cluster.write("runbook.toml", SIMULATED_RUNBOOK);
    let id = cluster.apply(&fleet_file, &runbook_file, &[]);
    cluster.watch(&id);
    let status = cluster.status(&id);
    let servers = status["servers"].as_array().expect("servers");
    let state = servers
        .iter()
        .find(|s| s["fqdn"] == FIRST)
        .map(|s| s["state"].clone());
    assert_eq!(status["state"], "finished", "{status:#}");
    assert_eq!(state, Some("succeeded".into()), "{status:#}");
    assert!(cluster.worker_exited(first).is_none());
}
