//! `baton-loadgen`: many simulated workers in one process, each with its own TCP connection
//! and `WorkerService/Session` stream, speaking `baton.v1` exactly as `baton-worker` does, to
//! measure a controller at fleet scale (issue #11: one controller holds 10,000 workers).
//!
//! What it measures: how long until every worker is welcomed, what the workers send per
//! second, assignments received and finished, streams that dropped and reconnects, Discards
//! and refusals, the Hello → Welcome round trip, the controller's own
//! `baton_dispatch_latency_seconds` (scraped from its `/metrics`), and the controller
//! process' CPU and memory (from `/proc`).
//!
//! Layout: [`session`] is one worker; [`stats`] its counters; [`prom`] the metrics scrape;
//! [`procfs`] the process readings; [`pattern`] the FQDNs; [`fleet`] a matching fleet and
//! runbook for `baton apply`; this module runs them all and sums up.

pub mod fleet;
pub mod pattern;
pub mod procfs;
pub mod prom;
pub mod session;
pub mod stats;

use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tonic::transport::Endpoint;

pub use baton_worker::BackoffPolicy as Backoff;
pub use pattern::FqdnPattern;
pub use stats::{Latency, Snapshot, Stats};

/// The controller's program name, looked for in `/proc` when no pid is given.
pub const CONTROLLER_PROGRAM: &str = "baton-controller";

/// Which process is the controller, for its CPU and memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControllerProcess {
    /// Not measured (it runs elsewhere, or in this process).
    None,
    Pid(u32),
    /// The one local process running `baton-controller`, if there is exactly one.
    Find,
}

/// A load generator run.
#[derive(Debug, Clone)]
pub struct Config {
    /// `http://HOST:PORT` of the controller's gRPC port.
    pub controller: String,
    pub workers: usize,
    pub fqdn_pattern: FqdnPattern,
    /// How long each step "runs".
    pub step_time: Duration,
    /// `StepOutput` lines per step, sent as fast as the stream takes them.
    pub output_lines: u32,
    /// `None`: the period the controller's Welcome gives.
    pub heartbeat: Option<Duration>,
    /// New workers per second while ramping up; 0 or less: all at once.
    pub connect_rate: f64,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Stop once some assignment has been received, every assignment received has been
    /// reported finished, and none has been received or finished for this long.
    pub until_idle: Option<Duration>,
    /// Print a progress line this often.
    pub report_every: Option<Duration>,
    pub controller_process: ControllerProcess,
    /// The controller's Prometheus endpoint (`http://127.0.0.1:9411/metrics`).
    pub metrics_url: Option<String>,
    pub connect_timeout: Duration,
    pub backoff: Backoff,
}

impl Config {
    pub fn new(controller: impl Into<String>, workers: usize) -> Self {
        Config {
            controller: controller.into(),
            workers,
            fqdn_pattern: pattern::DEFAULT_PATTERN
                .parse()
                .expect("the default pattern"),
            step_time: Duration::from_millis(300),
            output_lines: 2,
            heartbeat: None,
            connect_rate: 500.0,
            duration: None,
            until_idle: None,
            report_every: None,
            controller_process: ControllerProcess::None,
            metrics_url: None,
            connect_timeout: Duration::from_secs(10),
            backoff: Backoff::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    #[error("invalid controller URL {url:?}: {reason}")]
    ControllerUrl { url: String, reason: String },
    #[error("--fqdn-pattern: {0}")]
    Pattern(String),
    #[error("--workers must be at least 1")]
    NoWorkers,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub controller_url: String,
    /// When the run began (UTC, RFC 3339).
    pub started_at: String,
    /// "stopped" (Ctrl-C or the caller), "duration", or "idle".
    pub ended_by: String,
    pub step_time_ms: u64,
    pub output_lines: u32,
    /// `null`: the controller's (Welcome).
    pub heartbeat_ms: Option<u64>,
    pub connect_rate: f64,
    /// Every counter at the end.
    pub counts: Snapshot,
    /// All messages sent, over the whole run.
    pub messages_per_s: f64,
    /// `baton_dispatch_latency_seconds` observed during the run (the difference of two
    /// scrapes), in milliseconds.
    pub dispatch_latency: Option<DispatchLatency>,
    /// Why the metrics could not be scraped, if they could not.
    pub metrics_error: Option<String>,
    pub controller_process: Option<ProcessCost>,
    pub loadgen_process: Option<ProcessCost>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DispatchLatency {
    pub count: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub mean_ms: Option<f64>,
}

/// A process' CPU (percent of one core) and memory over the run.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessCost {
    pub pid: u32,
    /// Over the whole run.
    pub cpu_pct: f64,
    /// From the start until every worker was welcomed.
    pub cpu_pct_ramp: Option<f64>,
    /// From every worker welcomed to the end.
    pub cpu_pct_after_ramp: Option<f64>,
    /// The busiest second.
    pub cpu_pct_peak_1s: f64,
    pub rss_mib_end: f64,
    /// `VmHWM`: the peak resident set.
    pub rss_mib_peak: f64,
    /// Open file descriptors at the end, and the soft limit (controller only).
    pub open_fds: Option<u64>,
    pub fd_limit: Option<u64>,
    /// Set if the process could no longer be read (it exited: crashed or was stopped).
    pub error: Option<String>,
}

/// Runs the load until `stop` completes, `duration` passes, or the run is idle (see
/// [`Config::until_idle`]); then ends every session and sums up.
pub async fn run(config: Config, stop: impl Future<Output = ()>) -> Result<Summary, LoadgenError> {
    if config.workers == 0 {
        return Err(LoadgenError::NoWorkers);
    }
    config
        .fqdn_pattern
        .check(config.workers)
        .map_err(LoadgenError::Pattern)?;
    let endpoint = endpoint(&config)?;
    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let stats = Arc::new(Stats::new(config.workers as u64));
    let behaviour = Arc::new(session::Behaviour {
        step_time: config.step_time,
        output_lines: config.output_lines,
        heartbeat: config.heartbeat,
        backoff: config.backoff,
    });

    let mut metrics_error = None;
    let metrics_before = match &config.metrics_url {
        Some(url) => match scrape(url).await {
            Ok(h) => Some(h),
            Err(err) => {
                tracing::warn!("metrics: {err}");
                metrics_error = Some(err);
                None
            }
        },
        None => None,
    };
    let controller_pid = match config.controller_process {
        ControllerProcess::None => None,
        ControllerProcess::Pid(pid) => Some(pid),
        ControllerProcess::Find => {
            let found = procfs::find_processes(CONTROLLER_PROGRAM);
            match found.as_slice() {
                [pid] => {
                    tracing::info!(pid, "measuring the local {CONTROLLER_PROGRAM} process");
                    Some(*pid)
                }
                [] => {
                    tracing::info!(
                        "no local {CONTROLLER_PROGRAM} process: its CPU and memory are not measured (--controller-pid)"
                    );
                    None
                }
                many => {
                    tracing::warn!(
                        ?many,
                        "several {CONTROLLER_PROGRAM} processes: name one with --controller-pid; not measuring"
                    );
                    None
                }
            }
        }
    };
    let ticks = procfs::clock_ticks_per_second();
    let mut controller_watch = controller_pid.map(|pid| ProcessWatch::new(Some(pid), ticks));
    if let Some(limit) = controller_pid.and_then(procfs::open_files_limit)
        && limit < config.workers as u64 + 64
    {
        tracing::warn!(
            limit,
            workers = config.workers,
            "the controller's open-files limit is below the number of workers: expect refused connections"
        );
    }
    let mut loadgen_watch = ProcessWatch::new(None, ticks);

    let start = Instant::now();
    let deadline = config.duration.map(|d| start + d);
    let mut tasks = JoinSet::new();
    let mut spawned = 0usize;
    let mut ramp = tokio::time::interval(Duration::from_millis(10));
    ramp.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut second = tokio::time::interval(Duration::from_secs(1));
    second.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut report = config.report_every.map(|every| {
        let mut report = tokio::time::interval_at(start + every, every);
        report.set_missed_tick_behavior(MissedTickBehavior::Delay);
        report
    });
    let mut last_report = (start, 0u64);
    let mut ramp_marked = false;
    tokio::pin!(stop);
    let ended_by = loop {
        tokio::select! {
            () = &mut stop => break "stopped",
            () = sleep_until(deadline) => break "duration",
            _ = ramp.tick() => {
                let due = if config.connect_rate > 0.0 {
                    let due = (config.connect_rate * start.elapsed().as_secs_f64()).floor() as usize + 1;
                    due.min(config.workers)
                } else {
                    config.workers
                };
                while spawned < due {
                    spawned += 1;
                    let fqdn = config.fqdn_pattern.fqdn(spawned);
                    stats.spawned.fetch_add(1, Relaxed);
                    tasks.spawn(session::run(fqdn, endpoint.clone(), Arc::clone(&behaviour), Arc::clone(&stats)));
                }
                if !ramp_marked && stats.all_welcomed_after().is_some() {
                    ramp_marked = true;
                    if let Some(watch) = &mut controller_watch {
                        watch.mark_ramp_done();
                    }
                    loadgen_watch.mark_ramp_done();
                    if config.report_every.is_some() {
                        let s = stats.snapshot();
                        println!(
                            "all {} workers welcomed after {:.2} s (Hello → Welcome p50 {} ms, p99 {} ms)",
                            config.workers,
                            s.all_welcomed_after_s.unwrap_or_default(),
                            ms(s.welcome_ms.p50),
                            ms(s.welcome_ms.p99),
                        );
                    }
                }
                if let Some(quiet) = config.until_idle && is_idle(&stats, quiet) {
                    break "idle";
                }
            }
            _ = second.tick() => {
                if let Some(watch) = &mut controller_watch {
                    watch.tick();
                }
                loadgen_watch.tick();
            }
            _ = tick(&mut report) => {
                let s = stats.snapshot();
                let now = Instant::now();
                let rate = (s.messages_sent - last_report.1) as f64
                    / now.duration_since(last_report.0).as_secs_f64().max(1e-9);
                last_report = (now, s.messages_sent);
                println!("{}", progress_line(&s, rate, controller_watch.as_mut(), &mut loadgen_watch));
            }
        }
    };
    // The counters before the sessions go (their ends are not drops).
    let counts = stats.snapshot();
    let controller_cost = controller_watch.map(ProcessWatch::finish);
    let loadgen_cost = loadgen_watch.finish();
    tasks.shutdown().await;

    let dispatch_latency = match (&config.metrics_url, metrics_before) {
        (Some(url), before) if metrics_error.is_none() => match scrape(url).await {
            Ok(after) => {
                let run = match before {
                    Some(before) => after.since(&before),
                    None => after,
                };
                Some(DispatchLatency {
                    count: run.count,
                    p50_ms: run.quantile(0.5).map(|s| s * 1000.0),
                    p99_ms: run.quantile(0.99).map(|s| s * 1000.0),
                    mean_ms: run.mean().map(|s| s * 1000.0),
                })
            }
            Err(err) => {
                metrics_error = Some(err);
                None
            }
        },
        _ => None,
    };
    Ok(Summary {
        controller_url: config.controller.clone(),
        started_at,
        ended_by: ended_by.to_owned(),
        step_time_ms: u64::try_from(config.step_time.as_millis()).unwrap_or(u64::MAX),
        output_lines: config.output_lines,
        heartbeat_ms: config
            .heartbeat
            .map(|h| u64::try_from(h.as_millis()).unwrap_or(u64::MAX)),
        connect_rate: config.connect_rate,
        messages_per_s: counts.messages_sent as f64 / counts.elapsed_s.max(1e-9),
        counts,
        dispatch_latency,
        metrics_error,
        controller_process: controller_cost,
        loadgen_process: Some(loadgen_cost),
    })
}

fn endpoint(config: &Config) -> Result<Endpoint, LoadgenError> {
    let invalid = |reason: String| LoadgenError::ControllerUrl {
        url: config.controller.clone(),
        reason,
    };
    let endpoint = Endpoint::from_shared(config.controller.clone())
        .map_err(|e| invalid(baton_telemetry::error_chain(&e)))?;
    match endpoint.uri().scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(invalid(
                "https is not supported by the load generator; use a plain http:// controller port"
                    .into(),
            ));
        }
        _ => return Err(invalid("expected http://HOST:PORT".into())),
    }
    if endpoint.uri().host().is_none_or(str::is_empty) {
        return Err(invalid("no host".into()));
    }
    // As a real worker: its own connection, Nagle off, HTTP/2 pings to find a dead peer.
    Ok(endpoint
        .connect_timeout(config.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(15))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true))
}

async fn scrape(url: &str) -> Result<prom::Histogram, String> {
    let text = prom::fetch(url, Duration::from_secs(10)).await?;
    Ok(prom::parse_histogram(&text, prom::DISPATCH_LATENCY).unwrap_or_default())
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Some assignment came, all came back, and nothing moved for `quiet`.
fn is_idle(stats: &Stats, quiet: Duration) -> bool {
    let received = stats.assignments_received.load(Relaxed);
    let reported =
        stats.assignments_finished.load(Relaxed) + stats.assignments_failed.load(Relaxed);
    received > 0
        && reported >= received
        && stats
            .last_assignment_activity()
            .is_some_and(|last| stats.started().elapsed().saturating_sub(last) >= quiet)
}

fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

fn progress_line(
    s: &Snapshot,
    rate: f64,
    controller: Option<&mut ProcessWatch>,
    loadgen: &mut ProcessWatch,
) -> String {
    let mut line = format!(
        "[{:>7.1}s] sessions {}/{} (welcomed once {}) | {:.0} msg/s | assignments {} received, {} finished, {} running | drops {} reconnects {} refusals {} discards {}",
        s.elapsed_s,
        s.connected,
        s.workers,
        s.welcomed_workers,
        rate,
        s.assignments_received,
        s.assignments_finished,
        s.running(),
        s.drops,
        s.reconnects,
        s.refusals,
        s.discards,
    );
    if let Some(watch) = controller {
        let (cpu, rss) = watch.since_last_report();
        match &watch.error {
            Some(err) => {
                let _ = write!(line, " | controller: {err}");
            }
            None => {
                let _ = write!(line, " | controller {cpu:.0}% CPU {rss:.0} MiB");
            }
        }
    }
    let (cpu, _) = loadgen.since_last_report();
    let _ = write!(line, " | loadgen {cpu:.0}% CPU");
    line
}

/// Readings of one process (`pid` `None`: this one) over the run.
struct ProcessWatch {
    pid: Option<u32>,
    ticks: u64,
    first: Option<procfs::Reading>,
    ramp_done: Option<procfs::Reading>,
    last_tick: Option<procfs::Reading>,
    last_report: Option<procfs::Reading>,
    latest: Option<procfs::Reading>,
    peak_pct: f64,
    error: Option<String>,
}

impl ProcessWatch {
    fn new(pid: Option<u32>, ticks: u64) -> Self {
        let mut watch = ProcessWatch {
            pid,
            ticks,
            first: None,
            ramp_done: None,
            last_tick: None,
            last_report: None,
            latest: None,
            peak_pct: 0.0,
            error: None,
        };
        watch.read();
        watch.first = watch.latest;
        watch.last_tick = watch.latest;
        watch.last_report = watch.latest;
        watch
    }

    fn read(&mut self) -> Option<procfs::Reading> {
        if self.error.is_some() {
            return None;
        }
        match procfs::read(self.pid) {
            Ok(reading) => {
                self.latest = Some(reading);
                Some(reading)
            }
            Err(err) => {
                let err = match self.pid {
                    Some(pid) => format!("process {pid} can no longer be read (gone?): {err}"),
                    None => err,
                };
                tracing::error!("{err}");
                self.error = Some(err);
                None
            }
        }
    }

    fn tick(&mut self) {
        if let Some(now) = self.read() {
            if let Some(last) = &self.last_tick {
                self.peak_pct = self
                    .peak_pct
                    .max(procfs::cpu_percent(last, &now, self.ticks));
            }
            self.last_tick = Some(now);
        }
    }

    fn mark_ramp_done(&mut self) {
        self.read();
        self.ramp_done = self.latest;
    }

    /// CPU % since the last report, and RSS (MiB) now.
    fn since_last_report(&mut self) -> (f64, f64) {
        self.read();
        let (Some(last), Some(now)) = (self.last_report, self.latest) else {
            return (0.0, 0.0);
        };
        self.last_report = Some(now);
        (
            procfs::cpu_percent(&last, &now, self.ticks),
            now.rss_kib as f64 / 1024.0,
        )
    }

    fn finish(mut self) -> ProcessCost {
        self.tick();
        let pct = |a: Option<procfs::Reading>, b: Option<procfs::Reading>| {
            Some(procfs::cpu_percent(&a?, &b?, self.ticks))
        };
        let latest = self.latest;
        ProcessCost {
            pid: self.pid.unwrap_or_else(std::process::id),
            cpu_pct: pct(self.first, latest).unwrap_or(0.0),
            cpu_pct_ramp: pct(self.first, self.ramp_done),
            cpu_pct_after_ramp: pct(self.ramp_done, latest),
            cpu_pct_peak_1s: self.peak_pct,
            rss_mib_end: latest.map_or(0.0, |r| r.rss_kib as f64 / 1024.0),
            rss_mib_peak: latest.map_or(0.0, |r| r.hwm_kib as f64 / 1024.0),
            open_fds: self.pid.and_then(procfs::open_fds),
            fd_limit: self.pid.and_then(procfs::open_files_limit),
            error: self.error,
        }
    }
}

impl Summary {
    /// The summary as text, for people.
    pub fn human(&self) -> String {
        let c = &self.counts;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "baton-loadgen: {} workers against {} for {:.1} s (ended by {})",
            c.workers, self.controller_url, c.elapsed_s, self.ended_by
        );
        let _ = writeln!(
            out,
            "  sessions: {} open at the end, {} workers welcomed at least once, {} welcomes ({} in an active rollout)",
            c.connected, c.welcomed_workers, c.welcomes, c.welcomes_known
        );
        let _ = writeln!(
            out,
            "  all welcomed after: {}",
            c.all_welcomed_after_s
                .map_or_else(|| "never".to_owned(), |s| format!("{s:.2} s"))
        );
        let _ = writeln!(
            out,
            "  connect (TCP + HTTP/2): p50 {} ms, p99 {} ms, max {} ms; Hello → Welcome: p50 {} ms, p99 {} ms, max {} ms ({} samples)",
            ms(c.connect_ms.p50),
            ms(c.connect_ms.p99),
            ms(c.connect_ms.max),
            ms(c.welcome_ms.p50),
            ms(c.welcome_ms.p99),
            ms(c.welcome_ms.max),
            c.welcome_ms.count
        );
        let _ = writeln!(
            out,
            "  messages sent: {} ({:.0}/s): {} heartbeats, {} output lines",
            c.messages_sent, self.messages_per_s, c.heartbeats_sent, c.output_lines_sent
        );
        let _ = writeln!(
            out,
            "  assignments: {} received, {} finished, {} failed (refused or cancelled), {} steps",
            c.assignments_received, c.assignments_finished, c.assignments_failed, c.steps_finished
        );
        if let (Some(first), Some(last)) = (
            c.first_assignment_after_s,
            c.last_assignment_finished_after_s,
        ) {
            let _ = writeln!(
                out,
                "  first assignment at {first:.2} s, last finished at {last:.2} s: {:.2} s of rollout",
                last - first
            );
        }
        let _ = writeln!(
            out,
            "  drops: {}, reconnects: {}, connect failures: {}, refusals: {}, discards: {}, cancels: {}, replays: {} ({} messages)",
            c.drops,
            c.reconnects,
            c.connect_failures,
            c.refusals,
            c.discards,
            c.cancels,
            c.replays,
            c.replayed_messages
        );
        for (kind, n) in &c.stream_ends {
            let _ = writeln!(out, "    {n} × {kind}");
        }
        match (&self.dispatch_latency, &self.metrics_error) {
            (Some(d), _) if d.count == 0.0 => {
                let _ = writeln!(
                    out,
                    "  controller dispatch latency (baton_dispatch_latency_seconds): no dispatch during the run"
                );
            }
            (Some(d), _) => {
                let _ = writeln!(
                    out,
                    "  controller dispatch latency (baton_dispatch_latency_seconds, this run): {} observations, p50 {} ms, p99 {} ms, mean {} ms",
                    d.count,
                    ms(d.p50_ms),
                    ms(d.p99_ms),
                    ms(d.mean_ms)
                );
            }
            (None, Some(err)) => {
                let _ = writeln!(out, "  controller metrics: {err}");
            }
            (None, None) => {}
        }
        for (who, cost) in [
            ("controller", &self.controller_process),
            ("loadgen", &self.loadgen_process),
        ] {
            let Some(cost) = cost else { continue };
            let _ = write!(
                out,
                "  {who} (pid {}): CPU {:.1}% of one core over the run (ramp {}%, after {}%, busiest second {:.0}%), RSS {:.1} MiB at the end, peak {:.1} MiB",
                cost.pid,
                cost.cpu_pct,
                ms(cost.cpu_pct_ramp),
                ms(cost.cpu_pct_after_ramp),
                cost.cpu_pct_peak_1s,
                cost.rss_mib_end,
                cost.rss_mib_peak
            );
            if let (Some(fds), Some(limit)) = (cost.open_fds, cost.fd_limit) {
                let _ = write!(out, ", {fds} open files (limit {limit})");
            }
            let _ = writeln!(out);
            if let Some(err) = &cost.error {
                let _ = writeln!(out, "    {err}");
            }
        }
        out
    }
}
