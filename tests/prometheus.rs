//! A real Prometheus server scrapes the controller during an end-to-end rollout (issue #5): the
//! metrics must arrive in Prometheus, and its HTTP query API must give sensible values for them,
//! mid-rollout and once the rollout is over.
//!
//! Needs a `prometheus` binary on PATH (`.ci/run` installs Debian's `prometheus` package);
//! without one the test says it was skipped and passes, unless `BATON_REQUIRE_PROMETHEUS` is
//! set (as `.ci/run` sets it). One store (SQLite) is enough here: the
//! metrics come from the controller's in-memory state, which is the same on either store, and
//! `tests/e2e.rs` already runs the rollouts themselves on both.

#![cfg(unix)]

mod support;

use std::fs::{self, File};
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Backend, Cluster, TIMEOUT, wait_until};

// ---------------------------------------------------------------------------------------------
// Fixtures

/// 5 servers in 2 Enterprise Edition pools, 2 at a time: each pool's back end goes down once
/// (a finished back-end outage each), and the rollout takes several rounds.
const FLEET: &str = r#"
[fleet]
name = "e2e-prometheus"
max_parallel = 2

[[pool]]
fqdn = "pool1.prom.e2e.test"
edition = "enterprise"
sql_server = "sql1.prom.e2e.test"
max_unavailable = 1

  [[pool.server]]
  fqdn = "be1.prom.e2e.test"
  role = "backend"

  [[pool.server]]
  fqdn = "fe1a.prom.e2e.test"
  role = "frontend"

  [[pool.server]]
  fqdn = "fe1b.prom.e2e.test"
  role = "frontend"

[[pool]]
fqdn = "pool2.prom.e2e.test"
edition = "enterprise"
sql_server = "sql2.prom.e2e.test"
max_unavailable = 1

  [[pool.server]]
  fqdn = "be2.prom.e2e.test"
  role = "backend"

  [[pool.server]]
  fqdn = "fe2a.prom.e2e.test"
  role = "frontend"
"#;

const SERVERS: [&str; 5] = [
    "be1.prom.e2e.test",
    "fe1a.prom.e2e.test",
    "fe1b.prom.e2e.test",
    "be2.prom.e2e.test",
    "fe2a.prom.e2e.test",
];
/// The back-end-class servers (each one finished back-end outage).
const BACKENDS: usize = 2;
const STEPS_PER_SERVER: usize = 2;
/// What each step sleeps: a server is down for at least `STEPS_PER_SERVER × STEP_SLEEP`.
const STEP_SLEEP: f64 = 1.0;

/// Two real `sh` steps of a second each, so the rollout lasts long enough for several 1 s
/// scrapes while servers are running.
const RUNBOOK: &str = r#"
[runbook]
name = "e2e-prometheus"
shell = "sh"
expected_duration = "2s"

[[step]]
id = "prepare"
run = "sleep 1"
timeout = "30s"
idempotent = true

[[step]]
id = "patch"
run = "echo patching {{ server.fqdn }}; sleep 1"
timeout = "30s"
"#;

// ---------------------------------------------------------------------------------------------
// HTTP over a plain TcpStream

/// `GET path` on `addr` (`host:port`): the status code and the body. HTTP/1.0, so the answer
/// ends with the connection; a chunked body is decoded all the same.
fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(
        format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let bad = |what: &str| std::io::Error::other(format!("{what} in the answer to GET {path}"));
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let code = head
        .lines()
        .next()
        .and_then(|status| status.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| bad("no status code"))?;
    let chunked = head.lines().any(|line| {
        line.to_ascii_lowercase()
            .replace(' ', "")
            .starts_with("transfer-encoding:chunked")
    });
    let body = if chunked {
        dechunk(body).ok_or_else(|| bad("a malformed chunked body"))?
    } else {
        body.to_string()
    };
    Ok((code, body))
}

fn dechunk(mut rest: &str) -> Option<String> {
    let mut body = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(body);
        }
        body.push_str(after.get(..size)?);
        rest = after.get(size..)?.strip_prefix("\r\n")?;
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// A Prometheus server

/// A `prometheus` child on a loopback port of its own; killed on drop, its log tail printed if
/// the test failed.
struct Prometheus {
    /// `127.0.0.1:PORT`
    addr: String,
    child: Child,
    log: PathBuf,
}

impl Prometheus {
    /// Starts `prometheus` scraping `target` (`host:port`) every second, with its files in
    /// `dir`, and waits until it is ready.
    fn start(binary: &Path, dir: &Path, target: &str) -> Prometheus {
        let config = dir.join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: baton\n    metrics_path: /metrics\n    \
                 static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .unwrap_or_else(|e| panic!("write {}: {e}", config.display()));
        // The port comes from binding port 0 and letting it go; should another process take it
        // in between, Prometheus says so and exits, and we try another.
        for attempt in 1..=5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free loopback port")
                .port();
            let addr = format!("127.0.0.1:{port}");
            let log = dir.join(format!("prometheus-{attempt}.stderr"));
            let file = |path: &Path| {
                File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()))
            };
            let child = Command::new(binary)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join(format!("tsdb-{attempt}")).display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .current_dir(dir)
                .stdin(Stdio::null())
                .stdout(file(&dir.join(format!("prometheus-{attempt}.stdout"))))
                .stderr(file(&log))
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
            // From here on the guard kills it, whatever happens.
            let mut prometheus = Prometheus { addr, child, log };
            let ready = wait_until("prometheus to answer /-/ready", TIMEOUT, || {
                if let Ok(Some(status)) = prometheus.child.try_wait() {
                    return Some(Err(status));
                }
                matches!(http_get(&prometheus.addr, "/-/ready"), Ok((200, _))).then_some(Ok(()))
            });
            match ready {
                Ok(()) => return prometheus,
                Err(_) if prometheus.log().contains("address already in use") && attempt < 5 => {
                    eprintln!("baton-e2e: port {port} was taken, trying another for prometheus");
                }
                // Its log tail follows, from the guard's drop.
                Err(status) => panic!("prometheus exited ({status}) before it was ready"),
            }
        }
        unreachable!("the loop returns or panics")
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET /api/v1/query?query=QUERY`: the whole JSON answer, which must say `success`.
    fn query(&self, query: &str) -> Value {
        let path = format!("/api/v1/query?query={}", url_encode(query));
        let (code, body) =
            http_get(&self.addr, &path).unwrap_or_else(|e| panic!("query {query}: {e}"));
        let answer: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("query {query}: HTTP {code}, not JSON ({e}): {body}"));
        assert!(
            code == 200 && answer["status"] == "success",
            "query {query}: HTTP {code}: {answer}"
        );
        answer
    }

    /// The samples of an instant-vector query: each series' labels and value.
    fn samples(&self, query: &str) -> (Vec<(Value, f64)>, Value) {
        let answer = self.query(query);
        assert_eq!(
            answer["data"]["resultType"], "vector",
            "query {query}: not a vector: {answer}"
        );
        let samples = answer["data"]["result"]
            .as_array()
            .unwrap_or_else(|| panic!("query {query}: no result array: {answer}"))
            .iter()
            .map(|series| {
                let value = series["value"][1]
                    .as_str()
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or_else(|| panic!("query {query}: a sample without a value: {answer}"));
                (series["metric"].clone(), value)
            })
            .collect();
        (samples, answer)
    }

    /// The value of a query that must give exactly one series.
    fn one(&self, query: &str) -> (f64, Value) {
        let (samples, answer) = self.samples(query);
        assert_eq!(
            samples.len(),
            1,
            "query {query}: wanted exactly one series: {answer}"
        );
        (samples[0].1, answer)
    }

    /// The value of a query that gives one series or none (none yet: `None`), and the answer.
    fn maybe_one(&self, query: &str) -> (Option<f64>, Value) {
        let (samples, answer) = self.samples(query);
        assert!(
            samples.len() <= 1,
            "query {query}: more than one series: {answer}"
        );
        (samples.first().map(|(_, value)| *value), answer)
    }

    /// Polls `query` until it gives one series whose value `accept`s (bounded by TIMEOUT; the
    /// failure shows the last answer). Returns the value and the answer.
    fn wait_for(&self, what: &str, query: &str, accept: impl Fn(f64) -> bool) -> (f64, Value) {
        let deadline = Instant::now() + TIMEOUT;
        wait_until(what, TIMEOUT + Duration::from_secs(10), || {
            let (value, answer) = self.maybe_one(query);
            if let Some(value) = value.filter(|&v| accept(v)) {
                return Some((value, answer));
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {TIMEOUT:?} waiting for {what}: query {query} last answered {answer}"
            );
            None
        })
    }

    /// Asserts that `query` gives one series whose value is `want`.
    fn expect(&self, query: &str, want: f64) {
        let (value, answer) = self.one(query);
        assert!(
            value == want,
            "query {query}: wanted {want}, got {value}: {answer}"
        );
    }

    /// Asserts that `query` gives one series whose value lies in `low..=high`; returns it.
    fn expect_within(&self, query: &str, low: f64, high: f64) -> f64 {
        let (value, answer) = self.one(query);
        assert!(
            (low..=high).contains(&value),
            "query {query}: wanted a value in {low}..={high}, got {value}: {answer}"
        );
        value
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "----- prometheus stderr (tail) -----\n{}\n----- end of prometheus log ({}) -----",
                tail(&self.log(), 40),
                self.log.display()
            );
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The `prometheus` binary on PATH, if any.
fn prometheus_on_path() -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("prometheus"))
        .find(|path| path.is_file())
}

// ---------------------------------------------------------------------------------------------
// The test

#[test]
fn prometheus_scrapes_a_rollout() {
    let Some(binary) = prometheus_on_path() else {
        // CI installs it and says so: there, a missing binary is a failure, not a skip.
        assert!(
            std::env::var_os("BATON_REQUIRE_PROMETHEUS").is_none(),
            "BATON_REQUIRE_PROMETHEUS is set but no prometheus binary is on PATH"
        );
        let _ = writeln!(
            std::io::stderr(),
            "skipped: prometheus not installed (Debian's `prometheus` package has it)"
        );
        return;
    };
    let started = Instant::now();
    let mut cluster = Cluster::start("prometheus", Backend::Sqlite).expect("SQLite needs no setup");
    let fleet_file = cluster.write("fleet.toml", FLEET);
    let runbook_file = cluster.write("runbook.toml", RUNBOOK);
    for fqdn in SERVERS {
        cluster.start_worker(fqdn, &["--executor", "shell"], &[]);
    }
    cluster.wait_connected(SERVERS);

    let metrics_url = cluster.metrics_url();
    let target = metrics_url
        .strip_prefix("http://")
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("not http://HOST:PORT/metrics: {metrics_url}"));
    // Dropped before the cluster: its files live in the cluster's temp dir.
    let prometheus = Prometheus::start(&binary, cluster.dir(), target);
    prometheus.wait_for(
        "prometheus to scrape the controller",
        r#"up{job="baton"}"#,
        |up| up == 1.0,
    );
    // The gauges are refreshed once a second: a first scrape may predate the last worker.
    prometheus.wait_for(
        "prometheus to see every worker",
        r#"baton_workers_connected{job="baton"}"#,
        |connected| connected == SERVERS.len() as f64,
    );

    let id = cluster.apply(&fleet_file, &runbook_file, &[]);
    let applied = Instant::now();
    let rollout = format!(r#"rollout="{id}""#);
    let running = format!(r#"baton_servers{{{rollout},state="running"}}"#);
    let progress = format!("baton_rollout_progress_ratio{{{rollout}}}");

    // Mid-rollout, as Prometheus itself has it: servers running, progress strictly between 0
    // and 1. Seen before the rollout is over, or the test fails (the steps must then be made
    // longer, not this check optional).
    let (mut seen_running, mut seen_progress) = (None, None);
    let (mut last_running, mut last_progress) = (Value::Null, Value::Null);
    wait_until(
        "prometheus to show the rollout in progress",
        TIMEOUT,
        || {
            if seen_running.is_none() {
                let (value, answer) = prometheus.maybe_one(&running);
                if value.is_some_and(|n| n > 0.0) {
                    seen_running = Some(answer);
                } else {
                    last_running = answer;
                }
            }
            if seen_progress.is_none() {
                let (value, answer) = prometheus.maybe_one(&progress);
                if value.is_some_and(|r| r > 0.0 && r < 1.0) {
                    seen_progress = Some(answer);
                } else {
                    last_progress = answer;
                }
            }
            if seen_running.is_some() && seen_progress.is_some() {
                return Some(());
            }
            let state = cluster.status(&id)["state"].clone();
            assert!(
                state == "running",
                "the rollout is {state} before prometheus showed it in progress:\n\
             query {running} answered {}\nquery {progress} answered {}",
                seen_running.as_ref().unwrap_or(&last_running),
                seen_progress.as_ref().unwrap_or(&last_progress),
            );
            None
        },
    );
    eprintln!(
        "baton-e2e: mid-rollout, prometheus answered\n  {running}: {}\n  {progress}: {}",
        seen_running.unwrap_or_default()["data"]["result"],
        seen_progress.unwrap_or_default()["data"]["result"],
    );

    let watched = cluster.watch(&id);
    assert!(
        watched.contains(&format!("rollout {id} of fleet e2e-prometheus: finished")),
        "{watched}"
    );
    let rollout_took = applied.elapsed();

    // The gauges are refreshed once a second; counters and histograms are recorded before the
    // rollout's end. So once a scrape says `finished`, the same scrape holds the final values.
    let finished = format!(r#"baton_rollout_state{{{rollout},state="finished"}}"#);
    prometheus.wait_for(
        "prometheus to scrape the finished rollout",
        &finished,
        |f| f == 1.0,
    );

    let servers = SERVERS.len() as f64;
    prometheus.expect(
        &format!(r#"baton_servers{{{rollout},state="succeeded"}}"#),
        servers,
    );
    for state in ["pending", "running", "failed", "skipped", "not_started"] {
        prometheus.expect(
            &format!(r#"baton_servers{{{rollout},state="{state}"}}"#),
            0.0,
        );
    }
    prometheus.expect(&format!("sum(baton_servers{{{rollout}}})"), servers);
    prometheus.expect(&progress, 1.0);
    prometheus.expect(&format!("baton_rollout_eta_seconds{{{rollout}}}"), 0.0);
    prometheus.expect(
        &format!(r#"baton_rollout_state{{{rollout},state="running"}}"#),
        0.0,
    );
    prometheus.expect("baton_workers_connected", servers);
    prometheus.expect(&format!("baton_workers_lost{{{rollout}}}"), 0.0);

    // Every step of every server, once, `succeeded`; none failed, none retried.
    let steps = (SERVERS.len() * STEPS_PER_SERVER) as f64;
    prometheus.expect(
        r#"sum(baton_step_duration_seconds_count{outcome="succeeded"})"#,
        steps,
    );
    prometheus.expect("sum(baton_step_duration_seconds_count)", steps);
    prometheus.expect(
        r#"count(baton_step_duration_seconds_count{outcome="succeeded"})"#,
        STEPS_PER_SERVER as f64,
    );
    // Each step sleeps a second, timed by the worker's clock: never less than that.
    prometheus.expect_within(
        "sum(baton_step_duration_seconds_sum) / sum(baton_step_duration_seconds_count)",
        STEP_SLEEP,
        STEP_SLEEP * 10.0,
    );
    // Every step's retry counter exists from the rollout's start, at 0.
    prometheus.expect("count(baton_step_retries_total)", STEPS_PER_SERVER as f64);
    prometheus.expect("sum(baton_step_retries_total)", 0.0);

    // One finished outage per back end, each at least as long as its steps, none longer
    // than the whole test so far.
    prometheus.expect("baton_pool_outage_seconds_count", BACKENDS as f64);
    prometheus.expect_within(
        "baton_pool_outage_seconds_sum",
        BACKENDS as f64 * STEPS_PER_SERVER as f64 * STEP_SLEEP * 0.9,
        BACKENDS as f64 * started.elapsed().as_secs_f64(),
    );

    // No failures: the counter exists at 0 for each pool.
    let (failures, answer) =
        prometheus.samples(&format!("baton_server_failures_total{{{rollout}}}"));
    assert!(
        failures.len() == 2 && failures.iter().all(|(_, value)| *value == 0.0),
        "query baton_server_failures_total{{{rollout}}}: wanted 0 for both pools: {answer}"
    );

    // A slot freed and the next server was sent at least once; quickly.
    let dispatches = prometheus.expect_within("baton_dispatch_latency_seconds_count", 1.0, servers);
    prometheus.expect_within("baton_dispatch_latency_seconds_sum", 0.0, dispatches * 1.0);

    // Prometheus' own history has the rollout in progress, and a scrape that never failed.
    prometheus.expect_within(
        &format!("max_over_time({running}[5m])"),
        1.0,
        2.0, // max_parallel
    );
    prometheus.expect_within(
        &format!("count_over_time(({progress} > 0 < 1)[5m:1s])"),
        1.0,
        f64::MAX,
    );
    prometheus.expect_within(
        &format!("max_over_time(baton_rollout_eta_seconds{{{rollout}}}[5m])"),
        // The scheduler's own simulation: 3 rounds of 2 s servers at first.
        f64::MIN_POSITIVE,
        60.0,
    );
    prometheus.expect(r#"min_over_time(up{job="baton"}[5m])"#, 1.0);

    eprintln!(
        "baton-e2e: the rollout took {:.1} s, the whole test {:.1} s",
        rollout_took.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
