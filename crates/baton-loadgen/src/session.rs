//! One simulated worker: its own TCP connection and `WorkerService/Session` stream, as a real
//! `baton-worker` has (crates/baton-worker/src/connection.rs), with the same protocol:
//! `Hello` first, `Welcome`, heartbeats, and for each `Assignment`: `AssignmentAccepted`, then
//! per step `StepStarted`, output lines, a pause of `--step-time`, `StepFinished` (exit 0), and
//! `AssignmentFinished`. When its stream ends it reconnects with the worker's backoff and its
//! `Hello` names its last assignment and the store that issued it; after a `Welcome` from that
//! store it says that assignment's reports again (the replay), as a real worker does.

// baton.v1 messages only ever gain fields: every message is built with `..Default::default()`
// so that a field added to the contract does not break the load generator.
#![allow(clippy::needless_update)]

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use baton_proto::v1::worker_message::Body;
use baton_proto::v1::worker_service_client::WorkerServiceClient;
use baton_proto::v1::{
    Assignment, AssignmentAccepted, AssignmentFinished, ControllerMessage, Heartbeat, Hello,
    StepFinished, StepOutput, StepStarted, WorkerMessage, controller_message,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

use crate::stats::Stats;
// The real worker's pieces: what it says again after a reconnect, and its reconnect delays.
use baton_telemetry::error_chain;
use baton_worker::replay::{Replay, assignment_of};
use baton_worker::report::message;
use baton_worker::{Backoff, BackoffPolicy};

/// Messages queued for the current stream, as in the real worker: what sits here when a stream
/// breaks is lost, and the replay says it again.
const STREAM_BUFFER: usize = 4;
/// What the simulated executor may have queued ahead of the stream. Bounded, so output lines go
/// as fast as the stream takes them and no faster.
const OUTBOX: usize = 16;
/// Heartbeat period until a Welcome says otherwise (the worker's default).
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);
/// Discarded assignments remembered.
const DISCARDED_KEPT: usize = 8;

/// How every simulated worker behaves.
#[derive(Debug, Clone)]
pub struct Behaviour {
    pub step_time: Duration,
    pub output_lines: u32,
    /// `None`: `Welcome.heartbeat_interval_ms`.
    pub heartbeat: Option<Duration>,
    pub backoff: BackoffPolicy,
}

/// Runs worker `fqdn` until the task is aborted.
pub async fn run(fqdn: String, endpoint: Endpoint, behaviour: Arc<Behaviour>, stats: Arc<Stats>) {
    let (outbox_tx, outbox) = mpsc::channel(OUTBOX);
    let mut worker = Worker {
        fqdn,
        endpoint,
        behaviour,
        stats,
        outbox_tx,
        outbox,
        pending: None,
        local: VecDeque::new(),
        running: None,
        last: None,
        replay: None,
        discarded: VecDeque::new(),
        session_store: None,
        resend: VecDeque::new(),
        ever_welcomed: false,
    };
    // The real worker's reconnect delays.
    let mut backoff = Backoff::new(worker.behaviour.backoff);
    let mut attempts = 0u64;
    loop {
        attempts += 1;
        if attempts > 1 {
            worker.stats.reconnects.fetch_add(1, Relaxed);
        }
        let began = Instant::now();
        let (kind, detail, welcomed) = worker.session().await;
        if welcomed && began.elapsed() >= backoff.healthy_after() {
            backoff.reset();
        }
        worker.stats.ended(&kind, &worker.fqdn, &detail);
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

struct Worker {
    fqdn: String,
    endpoint: Endpoint,
    behaviour: Arc<Behaviour>,
    stats: Arc<Stats>,
    /// The simulated executor's side of `outbox`.
    outbox_tx: mpsc::Sender<WorkerMessage>,
    /// What the executor reports, kept across streams.
    outbox: mpsc::Receiver<WorkerMessage>,
    /// Taken from `outbox`, not yet handed to a stream.
    pending: Option<WorkerMessage>,
    /// Results this worker makes itself (a refused or cancelled assignment), ahead of `pending`.
    local: VecDeque<WorkerMessage>,
    /// The assignment being run, and its task.
    running: Option<(String, JoinHandle<()>)>,
    /// The last assignment received and the store that issued it: named in every Hello.
    last: Option<(String, String)>,
    /// The last assignment's reports, said again after a Welcome from its store.
    replay: Option<Replay>,
    discarded: VecDeque<String>,
    /// The store of the current stream's controller, once it has welcomed us.
    session_store: Option<String>,
    /// The replay, queued for the current stream ahead of everything else.
    resend: VecDeque<WorkerMessage>,
    ever_welcomed: bool,
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some((_, task)) = &self.running {
            task.abort();
        }
    }
}

/// Decrements the open-stream gauge when a welcomed stream ends, however it ends.
struct Open(Arc<Stats>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.connected.fetch_sub(1, Relaxed);
    }
}

impl Worker {
    /// One connection and stream, to its end: (kind of end, detail, whether it was welcomed).
    async fn session(&mut self) -> (String, String, bool) {
        let stats = Arc::clone(&self.stats);
        stats.connect_attempts.fetch_add(1, Relaxed);
        let connecting = Instant::now();
        let channel = match self.endpoint.connect().await {
            Ok(channel) => channel,
            Err(err) => {
                stats.connect_failures.fetch_add(1, Relaxed);
                return ("unreachable".into(), error_chain(&err), false);
            }
        };
        stats.connected(connecting.elapsed());
        let mut client = WorkerServiceClient::new(channel);
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let (assignment_id, assignment_store_id) = self.last.clone().unwrap_or_default();
        let _ = tx.try_send(message(Body::Hello(Hello {
            fqdn: self.fqdn.clone(),
            version: "loadgen".into(),
            platform: "loadgen".into(),
            assignment_id,
            assignment_store_id,
            ..Default::default()
        })));
        stats.sent(1);
        self.session_store = None;
        self.resend.clear();
        let calling = Instant::now();
        let mut inbound = match client.session(ReceiverStream::new(rx)).await {
            Ok(response) => response.into_inner(),
            Err(status) => {
                stats.refusals.fetch_add(1, Relaxed);
                return (
                    format!("refused: {:?}", status.code()),
                    status.message().to_owned(),
                    false,
                );
            }
        };
        let mut open = None;
        let mut heartbeat = interval(self.behaviour.heartbeat.unwrap_or(DEFAULT_HEARTBEAT));
        loop {
            tokio::select! {
                received = inbound.message() => {
                    let message = match received {
                        Ok(Some(message)) => message,
                        Ok(None) => return self.end(open.is_some(), "closed by the controller".into(), String::new()),
                        Err(status) => return self.end(
                            open.is_some(),
                            format!("{:?}", status.code()),
                            status.message().to_owned(),
                        ),
                    };
                    if let Some(welcome) = self.handle(message, &mut heartbeat) {
                        let (known, first) = welcome;
                        stats.welcomed(calling.elapsed(), known, first);
                        open = Some(Open(Arc::clone(&stats)));
                    }
                }
                _ = heartbeat.tick() => {
                    // A full buffer means the stream is backed up: a heartbeat adds nothing.
                    if tx.try_send(message(Body::Heartbeat(Heartbeat {}))).is_ok() {
                        stats.sent(1);
                        stats.heartbeats_sent.fetch_add(1, Relaxed);
                    }
                }
                Some(message) = self.outbox.recv(), if self.pending.is_none() => {
                    self.pending = self.keep_unless_discarded(message);
                }
                permit = tx.reserve(), if self.session_store.is_some()
                    && (!self.resend.is_empty() || !self.local.is_empty() || self.pending.is_some()) => {
                    let Ok(permit) = permit else {
                        return self.end(open.is_some(), "request stream closed".into(), String::new());
                    };
                    if let Some(message) = self.resend.pop_front() {
                        permit.send(message);
                    } else if let Some(message) = self.local.pop_front().or_else(|| self.pending.take()) {
                        self.count(&message);
                        if let Some(replay) = &mut self.replay {
                            replay.record(&message);
                        }
                        permit.send(message);
                    }
                    stats.sent(1);
                }
            }
        }
    }

    /// The kind and detail of a stream's end, counted as a drop if it had been welcomed.
    fn end(&mut self, welcomed: bool, kind: String, detail: String) -> (String, String, bool) {
        self.session_store = None;
        if welcomed {
            self.stats.drops.fetch_add(1, Relaxed);
            (format!("dropped: {kind}"), detail, true)
        } else {
            self.stats.refusals.fetch_add(1, Relaxed);
            (format!("ended before Welcome: {kind}"), detail, false)
        }
    }

    fn count(&self, message: &WorkerMessage) {
        match &message.body {
            Some(Body::StepOutput(_)) => {
                self.stats.output_lines_sent.fetch_add(1, Relaxed);
            }
            Some(Body::StepFinished(_)) => {
                self.stats.steps_finished.fetch_add(1, Relaxed);
            }
            Some(Body::AssignmentFinished(m)) => self.stats.assignment_finished(m.succeeded),
            _ => {}
        }
    }

    /// Acts on a controller message; for a Welcome, returns (known, first welcome ever).
    fn handle(
        &mut self,
        message: ControllerMessage,
        heartbeat: &mut Interval,
    ) -> Option<(bool, bool)> {
        match message.body? {
            controller_message::Body::Welcome(welcome) => {
                if self.behaviour.heartbeat.is_none() {
                    let period = match welcome.heartbeat_interval_ms {
                        0 => DEFAULT_HEARTBEAT,
                        ms => Duration::from_millis(ms.into()),
                    };
                    *heartbeat = interval(period);
                }
                self.welcomed(welcome.store_id);
                let first = !self.ever_welcomed;
                self.ever_welcomed = true;
                return Some((welcome.known, first));
            }
            controller_message::Body::Assignment(mut assignment) => {
                self.stats.assignment_received();
                if assignment.store_id.is_empty() {
                    assignment.store_id = self.session_store.clone().unwrap_or_default();
                }
                let id = assignment.assignment_id.clone();
                if let Some((running, task)) = &self.running
                    && !task.is_finished()
                {
                    tracing::warn!(fqdn = %self.fqdn, assignment = %id, %running, "a second assignment while one runs; refused");
                    self.local.push_back(message_finished(
                        &id,
                        false,
                        format!("busy: assignment {running} is running"),
                    ));
                    return None;
                }
                self.last = Some((id.clone(), assignment.store_id.clone()));
                self.replay = Some(Replay::new(id.clone(), assignment.store_id.clone()));
                let task = tokio::spawn(execute(
                    assignment,
                    self.outbox_tx.clone(),
                    Arc::clone(&self.behaviour),
                ));
                self.running = Some((id, task));
            }
            controller_message::Body::Discard(discard) => {
                self.stats.discards.fetch_add(1, Relaxed);
                let id = discard.assignment_id;
                tracing::debug!(fqdn = %self.fqdn, assignment = %id, reason = %discard.reason, "discarded");
                if !self.discarded.contains(&id) {
                    if self.discarded.len() == DISCARDED_KEPT {
                        self.discarded.pop_front();
                    }
                    self.discarded.push_back(id.clone());
                }
                if self.replay.as_ref().is_some_and(|r| r.assignment_id == id) {
                    self.replay = None;
                }
                self.resend
                    .retain(|m| assignment_of(m) != Some(id.as_str()));
                if self.pending.as_ref().and_then(assignment_of) == Some(id.as_str()) {
                    self.pending = None;
                }
            }
            controller_message::Body::Cancel(cancel) => {
                self.stats.cancels.fetch_add(1, Relaxed);
                if let Some((id, task)) = &self.running
                    && *id == cancel.assignment_id
                    && !task.is_finished()
                {
                    task.abort();
                    // What it had queued is dropped with it; its result says why.
                    while self.outbox.try_recv().is_ok() {}
                    self.pending = None;
                    self.local.push_back(message_finished(
                        id,
                        false,
                        "cancelled by the controller".into(),
                    ));
                }
            }
        }
        None
    }

    /// A controller on `store` welcomed us: the last assignment's reports are said again if
    /// that store issued it.
    fn welcomed(&mut self, store: String) {
        if let Some(replay) = &self.replay
            && (replay.store_id.is_empty() || replay.store_id == store)
            && self.ever_welcomed
        {
            let messages = replay.messages();
            self.stats.replays.fetch_add(1, Relaxed);
            self.stats
                .replayed_messages
                .fetch_add(messages.len() as u64, Relaxed);
            self.resend.extend(messages);
        }
        self.session_store = Some(store);
    }

    fn keep_unless_discarded(&self, message: WorkerMessage) -> Option<WorkerMessage> {
        match assignment_of(&message) {
            Some(id) if self.discarded.iter().any(|d| d == id) => None,
            _ => Some(message),
        }
    }
}

fn message_finished(id: &str, succeeded: bool, detail: String) -> WorkerMessage {
    message(Body::AssignmentFinished(AssignmentFinished {
        assignment_id: id.to_owned(),
        succeeded,
        detail,
        ..Default::default()
    }))
}

/// Ticks every `period`, the first after one period (Hello just went out).
fn interval(period: Duration) -> Interval {
    let mut interval = tokio::time::interval_at(Instant::now() + period, period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

/// The simulated executor: every step from `start_step` succeeds after `step_time`, writing
/// `output_lines` lines first.
async fn execute(
    assignment: Assignment,
    out: mpsc::Sender<WorkerMessage>,
    behaviour: Arc<Behaviour>,
) {
    let id = assignment.assignment_id;
    let send = |body| out.send(message(body));
    if send(Body::AssignmentAccepted(AssignmentAccepted {
        assignment_id: id.clone(),
        ..Default::default()
    }))
    .await
    .is_err()
    {
        return;
    }
    let steps = u32::try_from(assignment.steps.len()).unwrap_or(u32::MAX);
    for step_index in assignment.start_step..steps {
        let began = Instant::now();
        let mut sent = send(Body::StepStarted(StepStarted {
            assignment_id: id.clone(),
            step_index,
            attempt: 1,
            ..Default::default()
        }))
        .await;
        for line in 0..behaviour.output_lines {
            if sent.is_err() {
                break;
            }
            sent = send(Body::StepOutput(StepOutput {
                assignment_id: id.clone(),
                step_index,
                line: format!("loadgen step {step_index} line {}", line + 1),
                ..Default::default()
            }))
            .await;
        }
        if sent.is_err() {
            return;
        }
        tokio::time::sleep_until(began + behaviour.step_time).await;
        let duration_ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
        if send(Body::StepFinished(StepFinished {
            assignment_id: id.clone(),
            step_index,
            attempt: 1,
            exit_code: 0,
            timed_out: false,
            duration_ms: Some(duration_ms),
            ..Default::default()
        }))
        .await
        .is_err()
        {
            return;
        }
    }
    let _ = out.send(message_finished(&id, true, String::new())).await;
}
