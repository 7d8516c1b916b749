//! Counters shared by every simulated worker: plain atomics (thousands of tasks bump them),
//! plus a few latency samples kept whole (one per session: small).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use serde::Serialize;

/// How many times each kind of stream end is logged (with its worker and detail) before only
/// its count goes on.
const LOGGED_PER_KIND: u64 = 3;

#[derive(Debug)]
pub struct Stats {
    started: Instant,
    /// How many workers the run opens.
    pub workers: u64,
    pub spawned: AtomicU64,
    /// Streams welcomed and still open.
    pub connected: AtomicI64,
    /// Workers welcomed at least once.
    pub welcomed_workers: AtomicU64,
    pub welcomes: AtomicU64,
    /// Welcomes saying the worker's server is in an active rollout.
    pub welcomes_known: AtomicU64,
    pub connect_attempts: AtomicU64,
    /// Connection attempts after a worker's first.
    pub reconnects: AtomicU64,
    /// TCP or HTTP/2 connection failed.
    pub connect_failures: AtomicU64,
    /// The session call was refused (ALREADY_EXISTS, ...), or its stream ended before Welcome.
    pub refusals: AtomicU64,
    /// Welcomed streams that ended while the run went on.
    pub drops: AtomicU64,
    pub messages_sent: AtomicU64,
    pub heartbeats_sent: AtomicU64,
    pub output_lines_sent: AtomicU64,
    pub assignments_received: AtomicU64,
    /// AssignmentFinished(succeeded) handed to a stream (first time, not replays).
    pub assignments_finished: AtomicU64,
    /// Assignments refused (one already running) or cancelled: reported failed.
    pub assignments_failed: AtomicU64,
    pub steps_finished: AtomicU64,
    pub discards: AtomicU64,
    pub cancels: AtomicU64,
    /// Sessions on which an assignment's reports were said again after a reconnect.
    pub replays: AtomicU64,
    pub replayed_messages: AtomicU64,
    /// Microseconds since the start (u64::MAX: not yet) of the first assignment received, the
    /// last assignment received, and the last assignment finished.
    first_assignment_us: AtomicU64,
    last_assignment_us: AtomicU64,
    last_finished_us: AtomicU64,
    /// When the last of `workers` was first welcomed.
    all_welcomed_us: AtomicU64,
    ends: Mutex<BTreeMap<String, u64>>,
    connect_us: Mutex<Vec<u32>>,
    welcome_us: Mutex<Vec<u32>>,
}

impl Stats {
    pub fn new(workers: u64) -> Self {
        Stats {
            started: Instant::now(),
            workers,
            spawned: AtomicU64::new(0),
            connected: AtomicI64::new(0),
            welcomed_workers: AtomicU64::new(0),
            welcomes: AtomicU64::new(0),
            welcomes_known: AtomicU64::new(0),
            connect_attempts: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
            drops: AtomicU64::new(0),
            messages_sent: AtomicU64::new(0),
            heartbeats_sent: AtomicU64::new(0),
            output_lines_sent: AtomicU64::new(0),
            assignments_received: AtomicU64::new(0),
            assignments_finished: AtomicU64::new(0),
            assignments_failed: AtomicU64::new(0),
            steps_finished: AtomicU64::new(0),
            discards: AtomicU64::new(0),
            cancels: AtomicU64::new(0),
            replays: AtomicU64::new(0),
            replayed_messages: AtomicU64::new(0),
            first_assignment_us: AtomicU64::new(u64::MAX),
            last_assignment_us: AtomicU64::new(u64::MAX),
            last_finished_us: AtomicU64::new(u64::MAX),
            all_welcomed_us: AtomicU64::new(u64::MAX),
            ends: Mutex::default(),
            connect_us: Mutex::default(),
            welcome_us: Mutex::default(),
        }
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX - 1)
    }

    pub fn connected(&self, took: Duration) {
        push_us(&self.connect_us, took);
    }

    /// A Welcome arrived `took` after the session call began; `first` if this worker had
    /// never been welcomed before.
    pub fn welcomed(&self, took: Duration, known: bool, first: bool) {
        push_us(&self.welcome_us, took);
        self.welcomes.fetch_add(1, Relaxed);
        self.connected.fetch_add(1, Relaxed);
        if known {
            self.welcomes_known.fetch_add(1, Relaxed);
        }
        if first && self.welcomed_workers.fetch_add(1, Relaxed) + 1 == self.workers {
            self.all_welcomed_us.store(self.now_us(), Relaxed);
        }
    }

    pub fn assignment_received(&self) {
        let now = self.now_us();
        self.assignments_received.fetch_add(1, Relaxed);
        self.first_assignment_us.fetch_min(now, Relaxed);
        self.last_assignment_us.store(now, Relaxed);
    }

    pub fn assignment_finished(&self, succeeded: bool) {
        if succeeded {
            self.assignments_finished.fetch_add(1, Relaxed);
        } else {
            self.assignments_failed.fetch_add(1, Relaxed);
        }
        self.last_finished_us.store(self.now_us(), Relaxed);
    }

    pub fn sent(&self, messages: u64) {
        self.messages_sent.fetch_add(messages, Relaxed);
    }

    /// A stream ended (or never opened): counted by kind, the first few logged.
    pub fn ended(&self, kind: &str, fqdn: &str, detail: &str) {
        let seen = {
            let mut ends = self.ends.lock().unwrap_or_else(|e| e.into_inner());
            let n = ends.entry(kind.to_owned()).or_default();
            *n += 1;
            *n
        };
        if seen <= LOGGED_PER_KIND {
            tracing::warn!(%fqdn, "{kind}: {detail}");
            if seen == LOGGED_PER_KIND {
                tracing::warn!("{kind}: further ones are only counted");
            }
        }
    }

    /// Since the start, when the last worker was first welcomed.
    pub fn all_welcomed_after(&self) -> Option<Duration> {
        micros(self.all_welcomed_us.load(Relaxed))
    }

    /// Since the start: the last assignment received or finished, whichever is later.
    pub fn last_assignment_activity(&self) -> Option<Duration> {
        let received = self.last_assignment_us.load(Relaxed);
        let finished = self.last_finished_us.load(Relaxed);
        let latest = match (received, finished) {
            (u64::MAX, u64::MAX) => u64::MAX,
            (u64::MAX, f) => f,
            (r, u64::MAX) => r,
            (r, f) => r.max(f),
        };
        micros(latest)
    }

    pub fn snapshot(&self) -> Snapshot {
        let get = |a: &AtomicU64| a.load(Relaxed);
        Snapshot {
            elapsed_s: self.started.elapsed().as_secs_f64(),
            workers: self.workers,
            spawned: get(&self.spawned),
            connected: self.connected.load(Relaxed).max(0) as u64,
            welcomed_workers: get(&self.welcomed_workers),
            welcomes: get(&self.welcomes),
            welcomes_known: get(&self.welcomes_known),
            connect_attempts: get(&self.connect_attempts),
            reconnects: get(&self.reconnects),
            connect_failures: get(&self.connect_failures),
            refusals: get(&self.refusals),
            drops: get(&self.drops),
            messages_sent: get(&self.messages_sent),
            heartbeats_sent: get(&self.heartbeats_sent),
            output_lines_sent: get(&self.output_lines_sent),
            assignments_received: get(&self.assignments_received),
            assignments_finished: get(&self.assignments_finished),
            assignments_failed: get(&self.assignments_failed),
            steps_finished: get(&self.steps_finished),
            discards: get(&self.discards),
            cancels: get(&self.cancels),
            replays: get(&self.replays),
            replayed_messages: get(&self.replayed_messages),
            all_welcomed_after_s: self.all_welcomed_after().map(|d| d.as_secs_f64()),
            first_assignment_after_s: micros(get(&self.first_assignment_us))
                .map(|d| d.as_secs_f64()),
            last_assignment_finished_after_s: micros(get(&self.last_finished_us))
                .map(|d| d.as_secs_f64()),
            stream_ends: self.ends.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            connect_ms: Latency::of(&self.connect_us),
            welcome_ms: Latency::of(&self.welcome_us),
        }
    }
}

fn micros(us: u64) -> Option<Duration> {
    (us != u64::MAX).then(|| Duration::from_micros(us))
}

fn push_us(samples: &Mutex<Vec<u32>>, took: Duration) {
    let us = u32::try_from(took.as_micros()).unwrap_or(u32::MAX);
    samples.lock().unwrap_or_else(|e| e.into_inner()).push(us);
}

/// The counters at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub elapsed_s: f64,
    pub workers: u64,
    pub spawned: u64,
    pub connected: u64,
    pub welcomed_workers: u64,
    pub welcomes: u64,
    pub welcomes_known: u64,
    pub connect_attempts: u64,
    pub reconnects: u64,
    pub connect_failures: u64,
    pub refusals: u64,
    pub drops: u64,
    pub messages_sent: u64,
    pub heartbeats_sent: u64,
    pub output_lines_sent: u64,
    pub assignments_received: u64,
    pub assignments_finished: u64,
    pub assignments_failed: u64,
    pub steps_finished: u64,
    pub discards: u64,
    pub cancels: u64,
    pub replays: u64,
    pub replayed_messages: u64,
    pub all_welcomed_after_s: Option<f64>,
    pub first_assignment_after_s: Option<f64>,
    pub last_assignment_finished_after_s: Option<f64>,
    /// Stream ends and refusals by kind ("dropped: Unavailable", "refused: AlreadyExists", ...).
    pub stream_ends: BTreeMap<String, u64>,
    /// TCP + HTTP/2 connection set-up.
    pub connect_ms: Latency,
    /// From the session call to its Welcome (the controller's hello path).
    pub welcome_ms: Latency,
}

impl Snapshot {
    /// Assignments received and not yet reported finished.
    pub fn running(&self) -> u64 {
        self.assignments_received
            .saturating_sub(self.assignments_finished + self.assignments_failed)
    }
}

/// Percentiles of a latency, in milliseconds (nearest rank).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Latency {
    pub count: usize,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl Latency {
    fn of(samples: &Mutex<Vec<u32>>) -> Latency {
        let mut us = samples.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Latency::from_micros(&mut us)
    }

    pub fn from_micros(us: &mut [u32]) -> Latency {
        us.sort_unstable();
        let rank = |q: f64| -> Option<f64> {
            if us.is_empty() {
                return None;
            }
            let i = ((q * us.len() as f64).ceil() as usize).clamp(1, us.len()) - 1;
            Some(f64::from(us[i]) / 1000.0)
        };
        Latency {
            count: us.len(),
            p50: rank(0.5),
            p99: rank(0.99),
            max: us.last().map(|&m| f64::from(m) / 1000.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut us: Vec<u32> = (1..=100).rev().map(|ms| ms * 1000).collect();
        let l = Latency::from_micros(&mut us);
        assert_eq!(l.count, 100);
        assert_eq!(l.p50, Some(50.0));
        assert_eq!(l.p99, Some(99.0));
        assert_eq!(l.max, Some(100.0));
        assert_eq!(Latency::from_micros(&mut []), Latency::default());
        assert_eq!(Latency::from_micros(&mut [1500]).p99, Some(1.5));
    }

    #[test]
    fn the_last_first_welcome_marks_all_welcomed() {
        let stats = Stats::new(2);
        stats.welcomed(Duration::from_millis(1), false, true);
        stats.welcomed(Duration::from_millis(1), false, false);
        assert!(stats.all_welcomed_after().is_none());
        stats.welcomed(Duration::from_millis(1), true, true);
        assert!(stats.all_welcomed_after().is_some());
        let s = stats.snapshot();
        assert_eq!((s.welcomes, s.welcomes_known, s.connected), (3, 1, 3));
        assert_eq!(s.welcome_ms.count, 3);
    }

    #[test]
    fn running_is_received_minus_reported() {
        let stats = Stats::new(1);
        assert!(stats.last_assignment_activity().is_none());
        stats.assignment_received();
        stats.assignment_received();
        stats.assignment_finished(true);
        let s = stats.snapshot();
        assert_eq!(s.running(), 1);
        assert!(s.first_assignment_after_s.is_some());
        assert!(stats.last_assignment_activity().is_some());
    }
}
