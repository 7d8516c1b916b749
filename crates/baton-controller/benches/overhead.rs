//! Coordination overhead: what the controller and its workers add per server, on loopback,
//! when the steps themselves cost (next to) nothing. Run with `cargo bench -p baton-controller`;
//! it prints Markdown for docs/benchmarks.md and exits non-zero if the goal is missed:
//! serial rollout (`max_parallel = 1`, like Ansible's `serial: 1`) of 200 servers with the
//! simulate executor at time scale 0, over the embedded default store (a SQLite file, so every
//! commit's fsync counts): at most 5 ms per server.
//!
//! Everything runs in one tokio runtime: the controller (`baton_controller::start`), 200
//! workers (`baton_worker::run`, each with its own gRPC connection) and the operator client
//! that applies the fleet and follows the event log. Wall time is from the `Apply` call to the
//! receipt of `rollout_finished` on a `StreamEvents` follower.
//!
//! `BATON_BENCH_SERVERS=N` changes the fleet size (default 200); `--test` (as passed by
//! `cargo test --benches`) runs a 10-server smoke run instead.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use baton_proto::v1;
use baton_proto::v1::operator_service_client::OperatorServiceClient;
use baton_store::{NewEvent, NewRollout, Store};
use baton_worker::{Executor, ShellExecutor, SimulateExecutor, WorkerConfig};
use tokio::sync::watch;
use tonic::transport::Channel;

/// The goal, per server, for the serial run on the simulate executor.
const GOAL: Duration = Duration::from_millis(5);
/// Ansible's `serial: 1` per-server cost on this kind of machine, for comparison.
const ANSIBLE_SERIAL_1: Duration = Duration::from_millis(1400);
/// Runs per configuration; the median is reported.
const RUNS: usize = 5;

const RUNBOOK: &str = r#"
[runbook]
name = "noop"
shell = "sh"
expected_duration = "1m"

[[step]]
id = "noop"
run = "true"
timeout = "1m"
"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreKind {
    File,
    Memory,
}

impl StoreKind {
    fn label(self) -> &'static str {
        match self {
            StoreKind::File => "SQLite file (WAL, synchronous=FULL)",
            StoreKind::Memory => "SQLite in memory",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exec {
    /// `SimulateExecutor { time_scale: 0 }`: no process, no sleep.
    Simulate,
    /// `ShellExecutor`: `sh -c true` per step, a real no-op process.
    Shell,
}

impl Exec {
    fn label(self) -> &'static str {
        match self {
            Exec::Simulate => "simulate, scale 0",
            Exec::Shell => "shell, `true`",
        }
    }

    fn executor(self) -> Executor {
        match self {
            Exec::Simulate => Executor::Simulate(SimulateExecutor { time_scale: 0.0 }),
            Exec::Shell => Executor::Shell(ShellExecutor::default()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caps {
    /// `max_parallel = 1`: one server after another.
    Serial,
    /// No caps: every server at once.
    Unlimited,
}

impl Caps {
    fn label(self) -> &'static str {
        match self {
            Caps::Serial => "serial (`max_parallel = 1`)",
            Caps::Unlimited => "no caps",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Config {
    store: StoreKind,
    exec: Exec,
    caps: Caps,
    /// Mutual TLS between the controller and every client (else plain HTTP/2).
    tls: bool,
}

impl Config {
    /// `file-simulate-serial`, `memory-simulate-serial-tls` …, for `BATON_BENCH_ONLY`.
    fn slug(&self) -> String {
        let tls = if self.tls { "-tls" } else { "" };
        format!("{:?}-{:?}-{:?}{tls}", self.store, self.exec, self.caps).to_ascii_lowercase()
    }
}

/// The mutual-TLS runs' certificates: a CA, the controller's (127.0.0.1), one per worker and
/// the operator's, as PEM files.
struct BenchPki {
    dir: PathBuf,
    controller: (Vec<u8>, Vec<u8>),
}

const OPERATOR: &str = "ops.bench.example";

impl BenchPki {
    fn new(dir: &std::path::Path, servers: usize) -> BenchPki {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let dir = dir.join("pki");
        std::fs::create_dir_all(&dir).expect("the PKI folder");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("a key"))
            .expect("a CA");
        std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write the CA");
        let issue = |name: &str| {
            let mut params = CertificateParams::new(vec![name.to_string()]).expect("params");
            if name == "localhost" {
                params.subject_alt_names.push(rcgen::SanType::IpAddress(
                    std::net::Ipv4Addr::LOCALHOST.into(),
                ));
            }
            let key = KeyPair::generate().expect("a key");
            let cert = params.signed_by(&key, &ca).expect("a certificate");
            (cert.pem().into_bytes(), key.serialize_pem().into_bytes())
        };
        let write = |name: &str| {
            let (cert, key) = issue(name);
            std::fs::write(dir.join(format!("{name}.pem")), cert).expect("write");
            std::fs::write(dir.join(format!("{name}-key.pem")), key).expect("write");
        };
        for i in 1..=servers {
            write(&format!("se{i:03}.bench.example"));
        }
        write(OPERATOR);
        BenchPki {
            controller: issue("localhost"),
            dir,
        }
    }

    fn client(&self, name: &str) -> baton_proto::tls::ClientTls {
        baton_proto::tls::ClientTls {
            ca: Some(self.dir.join("ca.pem")),
            cert: Some(self.dir.join(format!("{name}.pem"))),
            key: Some(self.dir.join(format!("{name}-key.pem"))),
        }
    }

    fn server(&self) -> baton_controller::ServerTls {
        baton_controller::ServerTls {
            cert_pem: self.controller.0.clone(),
            key_pem: self.controller.1.clone(),
            client_ca_pem: Some(std::fs::read(self.dir.join("ca.pem")).expect("read the CA")),
            operators: vec![OPERATOR.to_string()],
            viewers: Vec::new(),
        }
    }
}

/// Where the time between two servers goes (serial runs), from the follower's receipt times.
#[derive(Debug, Clone, Default)]
struct Phases {
    /// `server_finished` of one → `server_started` of the next: the controller's hand-off.
    hand_off: Vec<Duration>,
    /// `server_started` → `step_started`: assignment delivered, the worker begins.
    begin: Vec<Duration>,
    /// `step_started` → `step_finished`: the step itself (a process for the shell executor).
    step: Vec<Duration>,
    /// `step_finished` → `server_finished`: the worker reports the end.
    end: Vec<Duration>,
}

struct Outcome {
    wall: Duration,
    events: usize,
    phases: Phases,
}

fn fleet(servers: usize, caps: Caps) -> String {
    let mut toml = String::from("[fleet]\nname = \"bench\"\n");
    if caps == Caps::Serial {
        toml.push_str("max_parallel = 1\n");
    }
    for i in 1..=servers {
        let fqdn = format!("se{i:03}.bench.example");
        toml.push_str(&format!(
            "\n[[pool]]\nfqdn = \"{fqdn}\"\nedition = \"standard\"\n\n  [[pool.server]]\n  fqdn = \"{fqdn}\"\n  role = \"standard\"\n"
        ));
    }
    toml
}

fn scratch_dir() -> PathBuf {
    // Under target/ (a real disk, unlike a tmpfs /tmp), so fsyncs cost what they cost.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("baton-overhead-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the scratch directory");
    dir
}

async fn open_store(kind: StoreKind, dir: &std::path::Path, run: usize) -> Store {
    let url = match kind {
        StoreKind::File => format!("sqlite://{}", dir.join(format!("run{run}.db")).display()),
        StoreKind::Memory => "sqlite::memory:".to_string(),
    };
    Store::connect(&url)
        .await
        .unwrap_or_else(|err| panic!("{url}: {err}"))
}

async fn wait_connected(operator: &mut OperatorServiceClient<Channel>, servers: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let connected = operator
            .list_servers(v1::ListServersRequest {})
            .await
            .expect("ListServers")
            .into_inner()
            .workers
            .iter()
            .filter(|w| w.connected)
            .count();
        if connected == servers {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {connected} of {servers} workers connected within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One rollout from a fresh controller and fresh workers.
async fn run_once(
    config: Config,
    servers: usize,
    dir: &std::path::Path,
    run: usize,
    pki: &BenchPki,
) -> Outcome {
    let store = open_store(config.store, dir, run).await;
    let options = baton_controller::Options {
        tls: config.tls.then(|| pki.server()),
        ..baton_controller::Options::default()
    };
    let controller =
        baton_controller::start_with(store.clone(), "127.0.0.1:0".parse().unwrap(), options)
            .await
            .expect("controller starts");
    let scheme = if config.tls { "https" } else { "http" };
    let url = format!("{scheme}://{}", controller.addr);
    let tls_of = |name: &str| {
        if config.tls {
            pki.client(name)
        } else {
            baton_proto::tls::ClientTls::default()
        }
    };

    let (stop, stopped) = watch::channel(false);
    let workers: Vec<_> = (1..=servers)
        .map(|i| {
            let fqdn = format!("se{i:03}.bench.example");
            let mut worker = WorkerConfig::new(url.clone(), fqdn.clone(), config.exec.executor());
            worker.tls = tls_of(&fqdn);
            let mut stopped = stopped.clone();
            tokio::spawn(baton_worker::run(worker, async move {
                let _ = stopped.wait_for(|&s| s).await;
            }))
        })
        .collect();

    let channel = tls_of(OPERATOR)
        .endpoint(&url)
        .expect("the operator's endpoint")
        .tcp_nodelay(true)
        .connect()
        .await
        .expect("connect to the controller");
    let mut operator = OperatorServiceClient::new(channel);
    wait_connected(&mut operator, servers).await;

    let began = Instant::now();
    let id = operator
        .apply(v1::ApplyRequest {
            fleet_name: "bench.toml".into(),
            fleet_toml: fleet(servers, config.caps),
            runbook_name: "noop.toml".into(),
            runbook_toml: RUNBOOK.into(),
            params: HashMap::new(),
        })
        .await
        .expect("Apply")
        .into_inner()
        .rollout_id;
    let mut events = operator
        .stream_events(v1::EventsRequest {
            rollout_id: id.clone(),
            after_seq: 0,
            follow: true,
        })
        .await
        .expect("StreamEvents")
        .into_inner();
    let mut received: Vec<(Instant, v1::Event)> = Vec::new();
    let wall = loop {
        let event = tokio::time::timeout(Duration::from_secs(120), events.message())
            .await
            .expect("no event for 120 s")
            .expect("StreamEvents failed")
            .expect("the event stream ended before rollout_finished");
        let now = Instant::now();
        let done = event.kind == "rollout_finished";
        if done {
            assert!(
                event
                    .detail
                    .starts_with(&format!("finished: {servers} succeeded")),
                "{}",
                event.detail
            );
        }
        received.push((now, event));
        if done {
            break now - began;
        }
    };
    drop(events);

    let _ = stop.send(true);
    for worker in workers {
        let _ = tokio::time::timeout(Duration::from_secs(10), worker).await;
    }
    drop(operator);
    if tokio::time::timeout(Duration::from_secs(10), controller.shutdown())
        .await
        .is_err()
    {
        eprintln!("warning: the controller took over 10 s to shut down");
    }
    store.close().await;

    Outcome {
        wall,
        events: received.len(),
        phases: phases(&received),
    }
}

/// Per-server phase durations of a serial run. The first server is left out: its events come
/// from the backlog (the follower subscribes after `Apply` returns).
fn phases(received: &[(Instant, v1::Event)]) -> Phases {
    let mut phases = Phases::default();
    let at = |i: usize| received[i].0;
    let kind = |i: usize| received[i].1.kind.as_str();
    for i in 1..received.len() {
        if kind(i) != "server_started" {
            continue;
        }
        let prev = i - 1;
        if kind(prev) != "server_finished" || i + 3 >= received.len() {
            continue;
        }
        let (s, st, sf, f) = (i, i + 1, i + 2, i + 3);
        if (kind(st), kind(sf), kind(f)) != ("step_started", "step_finished", "server_finished") {
            continue;
        }
        phases.hand_off.push(at(s) - at(prev));
        phases.begin.push(at(st) - at(s));
        phases.step.push(at(sf) - at(st));
        phases.end.push(at(f) - at(sf));
    }
    phases
}

fn mean(values: &[Duration]) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    values.iter().sum::<Duration>() / values.len() as u32
}

fn percentile(values: &[Duration], p: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = values.to_vec();
    sorted.sort();
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[rank]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// The store alone: `append_event` one after another, as the controller does.
async fn store_appends(kind: StoreKind, dir: &std::path::Path, count: usize) -> Vec<Duration> {
    let store = open_store(kind, dir, 1000).await;
    let rollout = store
        .create_rollout(&NewRollout {
            fleet_name: "bench".into(),
            fleet_toml: String::new(),
            runbook_name: "noop".into(),
            runbook_toml: String::new(),
            params_json: "{}".into(),
            planned_makespan_ms: 0,
            lower_bound_ms: 0,
        })
        .await
        .expect("create a rollout");
    let mut times = Vec::with_capacity(count);
    for i in 0..count {
        let event = NewEvent {
            rollout_id: rollout.id,
            server: Some(format!("se{i:03}.bench.example")),
            pool: Some(format!("se{i:03}.bench.example")),
            kind: "step_finished".into(),
            detail: "noop attempt 1: exit 0".into(),
        };
        let start = Instant::now();
        store.append_event(&event).await.expect("append");
        times.push(start.elapsed());
    }
    store.close().await;
    times
}

async fn bench(servers: usize, runs: usize, configs: &[Config]) -> Vec<(Config, Outcome)> {
    let dir = scratch_dir();
    let pki = BenchPki::new(&dir, servers);
    let mut results = Vec::new();
    let mut run = 0;
    for &config in configs {
        let mut outcomes = Vec::new();
        for _ in 0..runs {
            run += 1;
            let outcome = run_once(config, servers, &dir, run, &pki).await;
            eprintln!(
                "{}: {} ({} events)",
                config.slug(),
                ms(outcome.wall),
                outcome.events
            );
            outcomes.push(outcome);
        }
        outcomes.sort_by_key(|o| o.wall);
        let median = outcomes.swap_remove(outcomes.len() / 2);
        results.push((config, median));
    }

    println!("## Store alone: `append_event`, one after another\n");
    println!("| store | mean | p50 | p99 |");
    println!("|---|---|---|---|");
    for kind in [StoreKind::File, StoreKind::Memory] {
        let times = store_appends(kind, &dir, 1000).await;
        println!(
            "| {} | {} | {} | {} |",
            kind.label(),
            ms(mean(&times)),
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99))
        );
    }
    println!();
    let _ = std::fs::remove_dir_all(&dir);
    results
}

fn print_results(servers: usize, runs: usize, results: &[(Config, Outcome)]) {
    println!(
        "## Apply → rollout_finished, {servers} servers, one no-op step each (median of {runs})\n"
    );
    println!(
        "| store | executor | caps | transport | wall time | per server | Ansible `serial: 1` (~1.4 s/server) ÷ this |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (config, outcome) in results {
        let per_server = outcome.wall / servers as u32;
        let versus = if config.caps == Caps::Serial {
            format!(
                "{:.0}×",
                ANSIBLE_SERIAL_1.as_secs_f64() / per_server.as_secs_f64()
            )
        } else {
            "—".to_string()
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            config.store.label(),
            config.exec.label(),
            config.caps.label(),
            if config.tls { "mutual TLS" } else { "plain" },
            ms(outcome.wall),
            ms(per_server),
            versus
        );
    }
    println!();
    println!("## Where a serial server's time goes (mean per server, follower's receipt times)\n");
    println!(
        "| store | executor | transport | hand-off: finished → next started | started → step_started | step_started → step_finished | step_finished → server_finished | sum |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (config, outcome) in results.iter().filter(|(c, _)| c.caps == Caps::Serial) {
        let p = &outcome.phases;
        let parts = [
            mean(&p.hand_off),
            mean(&p.begin),
            mean(&p.step),
            mean(&p.end),
        ];
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            config.store.label(),
            config.exec.label(),
            if config.tls { "mutual TLS" } else { "plain" },
            ms(parts[0]),
            ms(parts[1]),
            ms(parts[2]),
            ms(parts[3]),
            ms(parts.iter().sum())
        );
    }
    println!();
}

fn main() -> ExitCode {
    let smoke = std::env::args().any(|a| a == "--test");
    let servers: usize = match std::env::var("BATON_BENCH_SERVERS") {
        Ok(n) => n.parse().expect("BATON_BENCH_SERVERS: a number"),
        Err(_) if smoke => 10,
        Err(_) => 200,
    };
    let runs = if smoke { 1 } else { RUNS };
    let mut configs = Vec::new();
    for caps in [Caps::Serial, Caps::Unlimited] {
        for store in [StoreKind::File, StoreKind::Memory] {
            for exec in [Exec::Simulate, Exec::Shell] {
                configs.push(Config {
                    store,
                    exec,
                    caps,
                    tls: false,
                });
            }
        }
        // What mutual TLS adds, without the disk's fsyncs in the way.
        configs.push(Config {
            store: StoreKind::Memory,
            exec: Exec::Simulate,
            caps,
            tls: true,
        });
    }
    if smoke {
        configs.truncate(1);
    }
    // `BATON_BENCH_ONLY=file-simulate-serial,memory-shell-unlimited`: only these (profiling).
    if let Ok(only) = std::env::var("BATON_BENCH_ONLY") {
        let wanted: Vec<&str> = only.split(',').map(str::trim).collect();
        configs.retain(|c| wanted.contains(&c.slug().as_str()));
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let results = runtime.block_on(bench(servers, runs, &configs));
    print_results(servers, runs, &results);

    let Some(gate) = results
        .iter()
        .find(|(c, _)| {
            c.store == StoreKind::File
                && c.exec == Exec::Simulate
                && c.caps == Caps::Serial
                && !c.tls
        })
        .map(|(_, outcome)| outcome.wall / servers as u32)
    else {
        println!("goal: not judged (the serial simulate run on a SQLite file was left out)");
        return ExitCode::SUCCESS;
    };
    let met = gate <= GOAL;
    println!(
        "goal: serial coordination overhead ≤ {} per server (simulate executor, SQLite file): {} ({})",
        ms(GOAL),
        if met { "met" } else { "MISSED" },
        ms(gate)
    );
    if met || smoke {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
