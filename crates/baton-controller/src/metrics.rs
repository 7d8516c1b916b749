//! The controller's metrics (docs/telemetry.md) on the OpenTelemetry metrics API: rendered
//! for Prometheus on `/metrics`, and pushed over OTLP too when `OTEL_*` names an endpoint.
//! Counters and histograms are recorded as things happen; gauges read a snapshot the engine
//! refreshes every second (their callbacks run inside a scrape and must not wait on the engine).

use std::sync::{Arc, PoisonError, RwLock};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, ObservableGauge};

pub const SERVER_STATES: [&str; 7] = [
    "pending",
    "running",
    "succeeded",
    "failed",
    "skipped",
    "not_started",
    "needs_attention",
];
pub const ROLLOUT_STATES: [&str; 6] = [
    "running",
    "paused",
    "awaiting_approval",
    "resiliency_risk",
    "finished",
    "aborted",
];

/// What the scheduler publishes for the gauges; the callbacks only read it.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub workers_connected: u64,
    pub rollouts: Vec<RolloutView>,
}

#[derive(Debug, Default, Clone)]
pub struct RolloutView {
    pub id: String,
    /// One of ROLLOUT_STATES.
    pub state: &'static str,
    /// Indexed like SERVER_STATES.
    pub servers: [u64; 7],
    pub eta_seconds: f64,
    pub last_progress_unix_seconds: f64,
    /// Servers in maintenance whose worker is lost: (server, pool).
    pub lost_workers: Vec<(String, String)>,
    /// Servers in needs_attention: (server, pool).
    pub needing_attention: Vec<(String, String)>,
    /// Only pools whose back end is in maintenance.
    pub pools_in_maintenance: Vec<PoolOutage>,
    /// Pools marked resiliency_risk and not yet acknowledged.
    pub pools_at_risk: Vec<String>,
}

#[derive(Debug, Default, Clone)]
pub struct PoolOutage {
    pub pool: String,
    pub elapsed_seconds: f64,
    pub budget_seconds: f64,
}

pub type SharedSnapshot = Arc<RwLock<Snapshot>>;

/// Synchronous instruments; the observable gauges are kept only to keep them alive.
#[derive(Debug, Clone)]
pub struct ControllerMetrics {
    pub pool_outage: Histogram<f64>,
    pub step_duration: Histogram<f64>,
    pub dispatch_latency: Histogram<f64>,
    pub server_failures: Counter<u64>,
    pub step_retries: Counter<u64>,
    pub watchdog_events: Counter<u64>,
    pub worker_drops: Counter<u64>,
    pub reports_discarded: Counter<u64>,
    pub batch_messages: Histogram<u64>,
    pub inbox_full: Counter<u64>,
    pub batch_events: Histogram<u64>,
    pub commit_seconds: Histogram<f64>,
    _gauges: Arc<Gauges>,
}

/// Kept with the instruments they belong to (never read).
#[derive(Debug)]
#[allow(dead_code)]
struct Gauges {
    f64s: Vec<ObservableGauge<f64>>,
    u64s: Vec<ObservableGauge<u64>>,
}

/// One series at 1 per (server, pool) of a rollout.
fn per_server(rollout: &str, servers: &[(String, String)], obs: &mut dyn FnMut(u64, &[KeyValue])) {
    for (server, pool) in servers {
        obs(
            1,
            &[
                kv("rollout", rollout),
                kv("server", server),
                kv("pool", pool),
            ],
        );
    }
}

fn kv(k: &'static str, v: &str) -> KeyValue {
    KeyValue::new(k, v.to_owned())
}

/// Registers an observable f64 gauge whose callback reads the shared snapshot.
/// A label set not reported in a collection is absent from that scrape (a pool that left
/// maintenance disappears).
fn f64_gauge<F>(
    meter: &Meter,
    state: &SharedSnapshot,
    name: &'static str,
    unit: &'static str,
    help: &'static str,
    report: F,
) -> ObservableGauge<f64>
where
    F: Fn(&Snapshot, &mut dyn FnMut(f64, &[KeyValue])) + Send + Sync + 'static,
{
    let state = Arc::clone(state);
    meter
        .f64_observable_gauge(name)
        .with_unit(unit)
        .with_description(help)
        .with_callback(move |obs| {
            // std lock, never tokio's: the callback runs synchronously inside the
            // scrape (an async handler) or on the PeriodicReader's thread.
            let snap = state.read().unwrap_or_else(PoisonError::into_inner);
            report(&snap, &mut |v, attrs| obs.observe(v, attrs));
        })
        .build()
}

fn u64_gauge<F>(
    meter: &Meter,
    state: &SharedSnapshot,
    name: &'static str,
    help: &'static str,
    report: F,
) -> ObservableGauge<u64>
where
    F: Fn(&Snapshot, &mut dyn FnMut(u64, &[KeyValue])) + Send + Sync + 'static,
{
    let state = Arc::clone(state);
    meter
        .u64_observable_gauge(name)
        .with_description(help)
        .with_callback(move |obs| {
            let snap = state.read().unwrap_or_else(PoisonError::into_inner);
            report(&snap, &mut |v, attrs| obs.observe(v, attrs));
        })
        .build()
}

impl ControllerMetrics {
    /// Instrument names are the exposed Prometheus names, except counters, which are
    /// named without `_total` (the exporter appends it). Units are set for OTLP
    /// consumers; the Prometheus exporter is built `.without_units()` so it does not
    /// append `_seconds`/`_ratio` a second time.
    pub fn new(meter: &Meter, state: &SharedSnapshot) -> Self {
        let f64s = vec![
            f64_gauge(
                meter,
                state,
                "baton_rollout_progress_ratio",
                "1",
                "Finished servers / servers of the rollout (0..1).",
                |s, obs| {
                    for r in &s.rollouts {
                        let total: u64 = r.servers.iter().sum();
                        // Settled: succeeded, failed, skipped, not_started.
                        let done = r.servers[2] + r.servers[3] + r.servers[4] + r.servers[5];
                        let ratio = if total == 0 {
                            0.0
                        } else {
                            done as f64 / total as f64
                        };
                        obs(ratio, &[kv("rollout", &r.id)]);
                    }
                },
            ),
            f64_gauge(
                meter,
                state,
                "baton_rollout_eta_seconds",
                "s",
                "Seconds until the rollout is expected to end; 0 once finished.",
                |s, obs| {
                    for r in &s.rollouts {
                        obs(r.eta_seconds, &[kv("rollout", &r.id)]);
                    }
                },
            ),
            f64_gauge(
                meter,
                state,
                "baton_rollout_last_progress_timestamp_seconds",
                "s",
                "Unix time of the rollout's last progress: a server started or finished, or the rollout began, resumed or was approved.",
                |s, obs| {
                    for r in &s.rollouts {
                        obs(r.last_progress_unix_seconds, &[kv("rollout", &r.id)]);
                    }
                },
            ),
            f64_gauge(
                meter,
                state,
                "baton_pool_outage_elapsed_seconds",
                "s",
                "How long the pool's back end has been in maintenance (pools in maintenance only).",
                |s, obs| {
                    for r in &s.rollouts {
                        for p in &r.pools_in_maintenance {
                            obs(
                                p.elapsed_seconds,
                                &[kv("rollout", &r.id), kv("pool", &p.pool)],
                            );
                        }
                    }
                },
            ),
            f64_gauge(
                meter,
                state,
                "baton_pool_outage_budget_seconds",
                "s",
                "The pool's outage budget (pools in maintenance only).",
                |s, obs| {
                    for r in &s.rollouts {
                        for p in &r.pools_in_maintenance {
                            obs(
                                p.budget_seconds,
                                &[kv("rollout", &r.id), kv("pool", &p.pool)],
                            );
                        }
                    }
                },
            ),
            f64_gauge(
                meter,
                state,
                "baton_pool_outage_budget_remaining_seconds",
                "s",
                "Budget minus elapsed (pools in maintenance only; negative past the budget).",
                |s, obs| {
                    for r in &s.rollouts {
                        for p in &r.pools_in_maintenance {
                            obs(
                                p.budget_seconds - p.elapsed_seconds,
                                &[kv("rollout", &r.id), kv("pool", &p.pool)],
                            );
                        }
                    }
                },
            ),
        ];
        let u64s = vec![
            u64_gauge(
                meter,
                state,
                "baton_servers",
                "Servers of a rollout by state.",
                |s, obs| {
                    for r in &s.rollouts {
                        for (state, n) in SERVER_STATES.iter().zip(r.servers) {
                            obs(n, &[kv("rollout", &r.id), kv("state", state)]);
                        }
                    }
                },
            ),
            u64_gauge(
                meter,
                state,
                "baton_rollout_state",
                "1 for the rollout's current state, 0 for the others.",
                |s, obs| {
                    for r in &s.rollouts {
                        for state in ROLLOUT_STATES {
                            obs(
                                u64::from(state == r.state),
                                &[kv("rollout", &r.id), kv("state", state)],
                            );
                        }
                    }
                },
            ),
            u64_gauge(
                meter,
                state,
                "baton_pool_resiliency_risk",
                "1 while the pool is marked resiliency_risk and not yet acknowledged.",
                |s, obs| {
                    for r in &s.rollouts {
                        for pool in &r.pools_at_risk {
                            obs(1, &[kv("rollout", &r.id), kv("pool", pool)]);
                        }
                    }
                },
            ),
            u64_gauge(
                meter,
                state,
                "baton_workers_connected",
                "Workers with an open session.",
                |s, obs| obs(s.workers_connected, &[]),
            ),
            u64_gauge(
                meter,
                state,
                "baton_workers_lost",
                "Servers in maintenance whose worker is lost (disconnected or silent).",
                |s, obs| {
                    for r in &s.rollouts {
                        obs(r.lost_workers.len() as u64, &[kv("rollout", &r.id)]);
                    }
                },
            ),
            u64_gauge(
                meter,
                state,
                "baton_server_worker_lost",
                "1 for each server in maintenance whose worker is lost, so an alert can name it.",
                |s, obs| {
                    for r in &s.rollouts {
                        per_server(&r.id, &r.lost_workers, obs);
                    }
                },
            ),
            u64_gauge(
                meter,
                state,
                "baton_server_needs_attention",
                "1 for each server waiting for `baton resolve`, so an alert can name it.",
                |s, obs| {
                    for r in &s.rollouts {
                        per_server(&r.id, &r.needing_attention, obs);
                    }
                },
            ),
        ];

        Self {
            pool_outage: meter
                .f64_histogram("baton_pool_outage_seconds")
                .with_unit("s")
                .with_description("Finished back-end outages.")
                .with_boundaries(vec![
                    60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1500.0, 1800.0, 2400.0, 3600.0,
                ])
                .build(),
            step_duration: meter
                .f64_histogram("baton_step_duration_seconds")
                .with_unit("s")
                .with_description("Step run time.")
                .with_boundaries(vec![
                    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0,
                ])
                .build(),
            dispatch_latency: meter
                .f64_histogram("baton_dispatch_latency_seconds")
                .with_unit("s")
                .with_description("From a slot freeing to the next assignment sent.")
                .with_boundaries(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                ])
                .build(),
            server_failures: meter
                .u64_counter("baton_server_failures")
                .with_description("Servers that failed.")
                .build(),
            step_retries: meter
                .u64_counter("baton_step_retries")
                .with_description("Step attempts after the first.")
                .build(),
            watchdog_events: meter
                .u64_counter("baton_watchdog_events")
                .with_description("Watchdog thresholds crossed.")
                .build(),
            worker_drops: meter
                .u64_counter("baton_worker_drops")
                .with_description("Worker streams that ended without the controller stopping.")
                .build(),
            reports_discarded: meter
                .u64_counter("baton_reports_discarded")
                .with_description("Worker reports about an assignment that can never count.")
                .build(),
            inbox_full: meter
                .u64_counter("baton_owner_inbox_full")
                .with_description(
                    "Times a stream's reader found the owner's inbox full and waited (backpressure).",
                )
                .build(),
            batch_messages: meter
                .u64_histogram("baton_owner_batch_messages")
                .with_description("Worker messages applied per batch by the owner loop.")
                .with_boundaries(vec![
                    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
                ])
                .build(),
            batch_events: meter
                .u64_histogram("baton_owner_batch_events")
                .with_description("Events committed per transaction by the owner loop.")
                .with_boundaries(vec![
                    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
                ])
                .build(),
            commit_seconds: meter
                .f64_histogram("baton_owner_commit_seconds")
                .with_unit("s")
                .with_description("How long the owner loop's commit of one batch took.")
                .with_boundaries(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                ])
                .build(),
            _gauges: Arc::new(Gauges { f64s, u64s }),
        }
    }
}

/// The Prometheus side of the meter provider: a reader that renders into `registry`.
pub fn prometheus_reader(
    registry: &prometheus::Registry,
) -> Result<opentelemetry_prometheus::PrometheusExporter, opentelemetry_sdk::error::OTelSdkError> {
    opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .without_units() // names already carry _seconds/_ratio
        .without_target_info() // no target_info{service_name=..} series
        .scope_info_enabled(false) // no otel_scope_name="baton-controller" label on every series
        .build()
}

/// Text exposition of everything in the registry.
pub fn render(registry: &prometheus::Registry) -> Result<String, prometheus::Error> {
    let mut out = String::new();
    prometheus::TextEncoder::new().encode_utf8(&registry.gather(), &mut out)?;
    Ok(out)
}

/// `GET /metrics`.
pub async fn metrics_handler(State(registry): State<prometheus::Registry>) -> Response {
    match render(&registry) {
        Ok(body) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// The controller's meter provider: Prometheus always, OTLP when configured.
pub struct Telemetry {
    pub registry: prometheus::Registry,
    pub provider: opentelemetry_sdk::metrics::SdkMeterProvider,
    pub metrics: ControllerMetrics,
    pub snapshot: SharedSnapshot,
}

impl Telemetry {
    /// `otlp`: also push over OTLP (the binary asks for it when `OTEL_*` names an endpoint).
    pub fn new(otlp: bool) -> Result<Self, String> {
        use opentelemetry::metrics::MeterProvider as _;
        let registry = prometheus::Registry::new();
        let mut builder = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
            .with_resource(baton_telemetry::resource("baton-controller"))
            .with_reader(prometheus_reader(&registry).map_err(|e| e.to_string())?);
        if otlp && let Some(reader) = baton_telemetry::metric_reader().map_err(|e| e.to_string())? {
            builder = builder.with_reader(reader);
        }
        let provider = builder.build();
        let snapshot = SharedSnapshot::default();
        let metrics = ControllerMetrics::new(&provider.meter("baton-controller"), &snapshot);
        Ok(Telemetry {
            registry,
            provider,
            metrics,
            snapshot,
        })
    }

    pub fn publish(&self, snapshot: Snapshot) {
        *self
            .snapshot
            .write()
            .unwrap_or_else(PoisonError::into_inner) = snapshot;
    }
}
