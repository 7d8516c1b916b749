//! OpenTelemetry end to end: a real controller and real workers export over OTLP/gRPC to a
//! receiver in this test process, and one rollout must come out as one trace: `rollout` →
//! `server.update` → `step` from the controller, and under each `step` the worker's own
//! `step.execute`, its parent carried across processes by the W3C context sent with the step.
//! The controller's OTLP metrics are checked to arrive at the same receiver.

#![cfg(unix)]

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span, status::StatusCode};
use support::pki::{Pair, Pki};
use support::{Backend, Cluster, TIMEOUT, wait_until};
use tonic::{Request, Response, Status};

// ---------------------------------------------------------------------------------------------
// An OTLP/gRPC receiver on loopback

#[derive(Default, Clone)]
struct Received {
    traces: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    metrics: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.traces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(request.into_inner());
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Received {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        self.metrics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(request.into_inner());
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// One exported span and the `service.name` of the process that sent it.
#[derive(Debug, Clone)]
struct Exported {
    service: String,
    span: Span,
}

impl Exported {
    fn attr(&self, key: &str) -> Option<String> {
        attribute(&self.span.attributes, key)
    }

    fn int(&self, key: &str) -> Option<i64> {
        self.span
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::IntValue(i) => Some(*i),
                _ => None,
            })
    }

    fn describe(&self) -> String {
        format!(
            "{} {} (span {}, parent {}) {:?}",
            self.service,
            self.span.name,
            hex(&self.span.span_id),
            hex(&self.span.parent_span_id),
            self.span
                .attributes
                .iter()
                .map(|kv| format!("{}={}", kv.key, value_text(kv.value.as_ref())))
                .collect::<Vec<_>>()
        )
    }
}

fn value_text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| value_text(kv.value.as_ref()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Received {
    fn spans(&self) -> Vec<Exported> {
        let requests = self.traces.lock().unwrap_or_else(PoisonError::into_inner);
        let mut spans = Vec::new();
        for resource_spans in requests.iter().flat_map(|r| &r.resource_spans) {
            let service = resource_spans
                .resource
                .as_ref()
                .and_then(|r| attribute(&r.attributes, "service.name"))
                .unwrap_or_default();
            for scope in &resource_spans.scope_spans {
                for span in &scope.spans {
                    spans.push(Exported {
                        service: service.clone(),
                        span: span.clone(),
                    });
                }
            }
        }
        spans
    }

    fn metric_names(&self) -> BTreeSet<String> {
        let requests = self.metrics.lock().unwrap_or_else(PoisonError::into_inner);
        requests
            .iter()
            .flat_map(|r| &r.resource_metrics)
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| s.metrics.iter().map(|m| m.name.clone()))
            .collect()
    }
}

/// Serves OTLP trace and metric export on 127.0.0.1:0 until the runtime is dropped.
fn start_receiver(runtime: &tokio::runtime::Runtime, tls: Option<&Pair>) -> (SocketAddr, Received) {
    let received = Received::default();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind a loopback port for the OTLP receiver");
    let addr = listener.local_addr().expect("the receiver's address");
    let mut builder = tonic::transport::Server::builder();
    if let Some(pair) = tls {
        let read = |path: &std::path::Path| std::fs::read(path).expect("read a test PEM file");
        let identity = tonic::transport::Identity::from_pem(read(&pair.cert), read(&pair.key));
        builder = builder
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
            .expect("the receiver's TLS");
    }
    let server = builder
        .add_service(TraceServiceServer::new(received.clone()))
        .add_service(MetricsServiceServer::new(received.clone()))
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
    runtime.spawn(server);
    (addr, received)
}

// ---------------------------------------------------------------------------------------------
// The rollout

const FLEET: &str = r#"
[fleet]
name = "e2e-traces"
max_parallel = 2

[[site]]
name = "east"

[[pool]]
fqdn = "pool1.traces.test"
site = "east"
edition = "enterprise"
sql_server = "sql1.traces.test"

  [[pool.server]]
  fqdn = "be1.traces.test"
  role = "backend"

  [[pool.server]]
  fqdn = "fe1.traces.test"
  role = "frontend"

[[pool]]
fqdn = "pool2.traces.test"
site = "east"
edition = "standard"

  [[pool.server]]
  fqdn = "se1.traces.test"
  role = "standard"
"#;

/// `flaky` fails its first attempt on every server (exit 3) and passes its retry, so both
/// sides must report attempt 2.
const RUNBOOK: &str = r#"
[runbook]
name = "e2e-traces"
shell = "sh"
expected_duration = "1s"

[[step]]
id = "prepare"
# Long enough for the test to pause and resume the rollout while it runs.
run = "sleep 1"
timeout = "30s"

[[step]]
id = "flaky"
run = "f=flaky-{{ server.fqdn }}; if [ -e \"$f\" ]; then exit 0; fi; touch \"$f\"; exit 3"
timeout = "30s"
retries = 1

[[step]]
id = "patch"
run = "echo patching {{ server.fqdn }}"
timeout = "30s"
"#;

const STEPS: [&str; 3] = ["prepare", "flaky", "patch"];

/// `OTEL_SERVICE_NAME`s other than the defaults, to see that the variable is honoured.
const CONTROLLER_SERVICE: &str = "baton-controller-e2e";
const WORKER_SERVICE: &str = "baton-worker-e2e";

/// What a rollout traced end to end left behind.
struct TracedRollout {
    id: String,
    fleet: baton_core::Fleet,
    /// The controller's `rollout started` log line.
    trace_line: String,
    /// `trace_id` of `baton status --format json`, and the table of `baton status`.
    status_trace_id: String,
    status_table: String,
    spans: Vec<Exported>,
    received: Received,
    /// Keeps the receiver serving.
    _runtime: tokio::runtime::Runtime,
}

/// A real controller and workers exporting to a receiver here (over TLS with `tls`: the
/// receiver's certificate and the CA that signed it), a rollout with a pause and a resume,
/// then a clean stop of every process; returns once every expected span has arrived.
fn traced_rollout(test: &str, tls: Option<(&Pki, &Pair)>) -> TracedRollout {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime for the receiver");
    let (addr, received) = start_receiver(&runtime, tls.map(|(_, pair)| pair));
    let scheme = if tls.is_some() { "https" } else { "http" };
    let endpoint = format!("{scheme}://{addr}");
    // The collector's CA, for an https:// endpoint (the standard variable).
    let ca = tls.map_or_else(String::new, |(pki, _)| pki.ca_file().display().to_string());
    let otel_env = |service: &'static str| {
        let mut env = vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.clone()),
            ("OTEL_SERVICE_NAME", service.to_string()),
            // Export soon after each span ends, so a lost flush would show.
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_string()),
            ("OTEL_METRIC_EXPORT_INTERVAL", "200".to_string()),
        ];
        if tls.is_some() {
            env.push(("OTEL_EXPORTER_OTLP_CERTIFICATE", ca.clone()));
        }
        env
    };
    let controller_env = otel_env(CONTROLLER_SERVICE);
    let controller_env: Vec<(&str, &str)> = controller_env
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    let mut cluster = Cluster::start_with_env(test, Backend::Sqlite, &controller_env)
        .expect("SQLite needs no server");
    let fleet = baton_core::Fleet::from_toml("fleet.toml", FLEET).expect("the test fleet");
    let fleet_file = cluster.write("fleet.toml", FLEET);
    let runbook_file = cluster.write("runbook.toml", RUNBOOK);
    let worker_env = otel_env(WORKER_SERVICE);
    let worker_env: Vec<(&str, &str)> = worker_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let workers: Vec<usize> = fleet
        .servers
        .iter()
        .map(|s| cluster.start_worker(&s.fqdn, &["--executor", "shell"], &worker_env))
        .collect();
    cluster.wait_connected(fleet.servers.iter().map(|s| s.fqdn.as_str()));

    let id = cluster.apply(&fleet_file, &runbook_file, &[]);
    // A pause and a resume: events of the rollout's span.
    cluster.baton_ok(&["pause", &id]);
    cluster.baton_ok(&["resume", &id]);
    let watched = cluster.watch(&id);
    assert!(watched.contains("finished"), "{watched}");
    // The controller logs the trace id an operator looks the rollout up by.
    let logged = cluster.controller_stderr();
    let trace_line = logged
        .lines()
        .find(|line| line.contains("rollout started"))
        .unwrap_or_else(|| panic!("no 'rollout started' line:\n{logged}"))
        .to_string();

    let status_trace_id = cluster.status(&id)["trace_id"]
        .as_str()
        .expect("a trace id in the status")
        .to_string();
    let status_table = cluster.baton_ok(&["status", &id]);

    // A clean stop flushes what is still queued.
    for worker in workers {
        assert!(cluster.stop_worker(worker).success());
    }
    assert!(cluster.stop_controller().success());

    let servers = fleet.servers.len();
    let expected_spans = 1 + servers + 2 * servers * STEPS.len();
    let spans = wait_until("every span to arrive", TIMEOUT, || {
        let spans = received.spans();
        (spans.len() >= expected_spans).then_some(spans)
    });
    TracedRollout {
        id,
        fleet,
        trace_line,
        status_trace_id,
        status_table,
        spans,
        received,
        _runtime: runtime,
    }
}

#[test]
fn one_trace_spans_the_controller_and_its_workers() {
    let TracedRollout {
        id,
        fleet,
        trace_line,
        status_trace_id,
        status_table,
        spans,
        received,
        _runtime,
    } = traced_rollout("traces", None);
    let servers = fleet.servers.len();
    let expected_spans = 1 + servers + 2 * servers * STEPS.len();
    let listing = || {
        spans
            .iter()
            .map(Exported::describe)
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(spans.len(), expected_spans, "spans:\n{}", listing());

    // One trace, its id the one logged.
    let traces: BTreeSet<String> = spans.iter().map(|s| hex(&s.span.trace_id)).collect();
    assert_eq!(traces.len(), 1, "spans:\n{}", listing());
    let trace_id = traces.into_iter().next().expect("one");
    assert!(
        trace_line.contains(&format!("trace_id={trace_id}")),
        "{trace_line} should name trace {trace_id}"
    );
    // ...and the one `baton status` shows.
    assert_eq!(status_trace_id, trace_id);
    assert!(
        status_table.contains(&format!("trace {trace_id}")),
        "{status_table}"
    );
    let by_id: HashMap<Vec<u8>, &Exported> =
        spans.iter().map(|s| (s.span.span_id.clone(), s)).collect();
    assert_eq!(
        by_id.len(),
        spans.len(),
        "span ids are unique:\n{}",
        listing()
    );
    let named =
        |name: &str| -> Vec<&Exported> { spans.iter().filter(|s| s.span.name == name).collect() };
    let parent_of = |span: &Exported| -> &Exported {
        by_id
            .get(&span.span.parent_span_id)
            .unwrap_or_else(|| panic!("the parent of {} was not exported", span.describe()))
    };

    // rollout: the root, from the controller.
    let rollout = named("rollout");
    assert_eq!(rollout.len(), 1, "spans:\n{}", listing());
    let rollout = rollout[0];
    assert!(
        rollout.span.parent_span_id.is_empty(),
        "{}",
        rollout.describe()
    );
    assert_eq!(rollout.service, CONTROLLER_SERVICE);
    assert_eq!(rollout.attr("baton.rollout"), Some(id.clone()));
    assert_eq!(
        rollout.attr("baton.rollout.state").as_deref(),
        Some("finished")
    );
    let story: Vec<&str> = rollout
        .span
        .events
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(
        story,
        ["rollout_paused", "rollout_resumed"],
        "{}",
        rollout.describe()
    );

    // server.update: one per server, children of the rollout, named as in the fleet.
    let updates = named("server.update");
    let mut seen = BTreeMap::new();
    for update in &updates {
        assert_eq!(update.service, CONTROLLER_SERVICE);
        assert_eq!(
            update.span.parent_span_id,
            rollout.span.span_id,
            "{}",
            update.describe()
        );
        let fqdn = update.attr("server.fqdn").expect("server.fqdn");
        let server = fleet
            .server_by_fqdn(&fqdn)
            .map(|s| &fleet.servers[s])
            .unwrap_or_else(|| panic!("{fqdn} is not in the fleet"));
        assert_eq!(
            update.attr("pool").as_deref(),
            Some(fleet.pools[server.pool].fqdn.as_str())
        );
        assert_eq!(update.attr("role").as_deref(), Some(server.role.as_str()));
        assert_eq!(update.attr("outcome").as_deref(), Some("succeeded"));
        assert!(
            within(update, rollout),
            "{} outside the rollout",
            update.describe()
        );
        seen.insert(fqdn, update.span.span_id.clone());
    }
    assert_eq!(seen.len(), servers, "spans:\n{}", listing());

    // step: one per server and step, children of their server's update, in runbook order.
    for step in named("step") {
        assert_eq!(step.service, CONTROLLER_SERVICE);
        let update = parent_of(step);
        assert_eq!(update.span.name, "server.update", "{}", step.describe());
        assert!(
            within(step, update),
            "{} outside its server",
            step.describe()
        );
        let step_id = step.attr("step.id").expect("step.id");
        let attempts = if step_id == "flaky" { 2 } else { 1 };
        assert_eq!(
            step.int("step.attempt"),
            Some(attempts),
            "{}",
            step.describe()
        );
        assert_eq!(step.int("step.exit_code"), Some(0), "{}", step.describe());
        assert_eq!(status(step), StatusCode::Ok, "{}", step.describe());
    }
    for (fqdn, update) in &seen {
        let mut steps: Vec<&Exported> = named("step")
            .into_iter()
            .filter(|s| &s.span.parent_span_id == update)
            .collect();
        steps.sort_by_key(|s| s.span.start_time_unix_nano);
        let ids: Vec<String> = steps.iter().filter_map(|s| s.attr("step.id")).collect();
        assert_eq!(ids, STEPS, "{fqdn}'s steps");
    }

    // step.execute: the worker's side, a child of the controller's step of the same id.
    let executions = named("step.execute");
    assert_eq!(
        executions.len(),
        servers * STEPS.len(),
        "spans:\n{}",
        listing()
    );
    let mut executed = BTreeSet::new();
    for execution in executions {
        assert_eq!(
            execution.service,
            WORKER_SERVICE,
            "{}",
            execution.describe()
        );
        let step = parent_of(execution);
        assert_eq!(step.span.name, "step", "{}", execution.describe());
        assert_eq!(execution.attr("step.id"), step.attr("step.id"));
        assert_eq!(
            execution.int("step.attempt"),
            step.int("step.attempt"),
            "{}",
            execution.describe()
        );
        assert_eq!(execution.int("step.exit_code"), Some(0));
        // Inside its server's update (one machine's clock). Not necessarily inside the step's
        // span: the controller times a step from the worker's report that it began.
        let update = parent_of(step);
        assert!(
            within(execution, update),
            "{} outside {}",
            execution.describe(),
            update.describe()
        );
        executed.insert(step.span.span_id.clone());
    }
    assert_eq!(
        executed.len(),
        servers * STEPS.len(),
        "one execution per step"
    );

    // The controller's metrics went to the same collector.
    let names = wait_until("the controller's OTLP metrics", TIMEOUT, || {
        let names = received.metric_names();
        names.contains("baton_servers").then_some(names)
    });
    for metric in [
        "baton_workers_connected",
        "baton_step_duration_seconds",
        "baton_server_failures",
        "baton_rollout_progress_ratio",
    ] {
        assert!(names.contains(metric), "{metric} not in {names:?}");
    }
}

fn within(inner: &Exported, outer: &Exported) -> bool {
    inner.span.start_time_unix_nano >= outer.span.start_time_unix_nano
        && inner.span.end_time_unix_nano <= outer.span.end_time_unix_nano
}

fn status(span: &Exported) -> StatusCode {
    span.span
        .status
        .as_ref()
        .map_or(StatusCode::Unset, |s| s.code())
}

/// `https://` collectors: the standard `OTEL_EXPORTER_OTLP_CERTIFICATE` names their CA, and
/// both the controller and the workers deliver the same one trace over TLS.
#[test]
fn spans_reach_a_collector_over_tls() {
    let pki = Pki::new();
    let collector = pki.issue("collector", &["localhost"], false);
    let traced = traced_rollout("traces-tls", Some((&pki, &collector)));
    let servers = traced.fleet.servers.len();
    assert_eq!(traced.spans.len(), 1 + servers + 2 * servers * STEPS.len());
    let traces: BTreeSet<String> = traced.spans.iter().map(|s| hex(&s.span.trace_id)).collect();
    assert_eq!(traces.len(), 1);
    let services: BTreeSet<&str> = traced.spans.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(
        services,
        BTreeSet::from([CONTROLLER_SERVICE, WORKER_SERVICE])
    );
}

/// Two standalone servers, one long step each: both run across the controller's crash.
const CRASH_FLEET: &str = r#"
[fleet]
name = "e2e-traces-crash"

[[pool]]
fqdn = "pool1.crash.test"
edition = "standard"

  [[pool.server]]
  fqdn = "se1.crash.test"
  role = "standard"

[[pool]]
fqdn = "pool2.crash.test"
edition = "standard"

  [[pool.server]]
  fqdn = "se2.crash.test"
  role = "standard"
"#;

const CRASH_RUNBOOK: &str = r#"
[runbook]
name = "e2e-traces-crash"
shell = "sh"
expected_duration = "3s"

[[step]]
id = "long"
run = "sleep 2"
timeout = "30s"
"#;

/// A controller killed (SIGKILL) while both servers run, and started again: the new one ends
/// the spans its predecessor began, under the same ids and from the logged starts, so the
/// rollout is still one trace with one root, and the workers' spans (parented before the
/// crash) hang under the steps the new controller ends.
#[test]
fn a_crashed_controller_leaves_one_whole_trace() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime for the receiver");
    let (addr, received) = start_receiver(&runtime, None);
    let endpoint = format!("http://{addr}");
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let mut cluster = Cluster::start_with_env("traces-crash", Backend::Sqlite, &env)
        .expect("SQLite needs no server");
    let servers = ["se1.crash.test", "se2.crash.test"];
    let workers: Vec<usize> = servers
        .iter()
        .map(|fqdn| cluster.start_worker(fqdn, &["--executor", "shell"], &env))
        .collect();
    cluster.wait_connected(servers);
    let fleet_file = cluster.write("fleet.toml", CRASH_FLEET);
    let runbook_file = cluster.write("runbook.toml", CRASH_RUNBOOK);
    let id = cluster.apply(&fleet_file, &runbook_file, &[]);
    cluster.wait_events(&id, "both steps to start", |events| {
        events.iter().filter(|e| e.kind == "step_started").count() == 2
    });
    let crashed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos() as u64;
    cluster.crash_and_restart_controller(1);
    let watched = cluster.watch(&id);
    assert!(watched.contains("finished"), "{watched}");
    for worker in workers {
        assert!(cluster.stop_worker(worker).success());
    }
    assert!(cluster.stop_controller().success());

    // Nothing had ended under the first controller: every span comes out once, 7 in all.
    let spans = wait_until("the whole trace", TIMEOUT, || {
        let spans = received.spans();
        (spans.len() >= 7).then_some(spans)
    });
    let listing = spans
        .iter()
        .map(Exported::describe)
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(spans.len(), 7, "spans:\n{listing}");
    let traces: BTreeSet<String> = spans.iter().map(|s| hex(&s.span.trace_id)).collect();
    assert_eq!(traces.len(), 1, "one trace:\n{listing}");
    let named =
        |name: &str| -> Vec<&Exported> { spans.iter().filter(|s| s.span.name == name).collect() };
    let rollout = named("rollout");
    assert_eq!(rollout.len(), 1, "one root:\n{listing}");
    assert!(rollout[0].span.start_time_unix_nano < crashed_at);
    for update in named("server.update") {
        assert_eq!(update.span.parent_span_id, rollout[0].span.span_id);
        // Its start is the logged one, before the crash.
        assert!(
            update.span.start_time_unix_nano < crashed_at,
            "{}",
            update.describe()
        );
    }
    let steps = named("step");
    for execution in named("step.execute") {
        assert!(
            steps
                .iter()
                .any(|step| step.span.span_id == execution.span.parent_span_id),
            "the worker's span, parented before the crash, hangs under a step span of the new controller:\n{listing}"
        );
    }
}
