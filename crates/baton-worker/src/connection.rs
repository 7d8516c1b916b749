//! The stream to the controller: connect out, say `Hello`, send heartbeats, take assignments,
//! forward what the executor reports; when anything fails, reconnect with backoff, forever.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::error::Error;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use baton_proto::v1::worker_message::Body;
use baton_proto::v1::worker_service_client::WorkerServiceClient;
use baton_proto::v1::{ControllerMessage, WorkerMessage, controller_message};
use tokio::sync::mpsc;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;
use tonic::{Code, Status};

use crate::WorkerError;
use crate::backoff::{Backoff, BackoffPolicy};
use crate::executor::Executor;
use crate::journal::{Journal, Recovered};
use crate::replay::{self, Replay};
use crate::report::{self, Reporter};
use crate::runner::{Runner, Started};
use baton_proto::tls::ClientTls;
use baton_telemetry::error_chain;

/// Heartbeat period until the controller's `Welcome` says otherwise.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);

/// Messages queued for the current stream. Small on purpose: what sits here when a stream
/// breaks is lost (the replay says it again), while the executor's backlog waits safely in
/// its own channel.
const STREAM_BUFFER: usize = 4;

/// Assignments a controller discarded, remembered so that nothing more about them is sent.
const DISCARDED_KEPT: usize = 32;

/// Everything the worker needs to run.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// `http://host:port` of the controller.
    pub controller: String,
    /// This server's name, as in the fleet file.
    pub fqdn: String,
    pub executor: Executor,
    pub backoff: BackoffPolicy,
    /// Per connection attempt.
    pub connect_timeout: Duration,
    /// Where the journal lives; `None` keeps none (a restart then cannot tell the controller
    /// where an assignment stopped, and its server waits for an operator).
    pub state_dir: Option<PathBuf>,
    /// TLS to the controller (an `https://` URL): its CA, and this worker's certificate when
    /// the controller requires one.
    pub tls: ClientTls,
}

impl WorkerConfig {
    pub fn new(controller: impl Into<String>, fqdn: impl Into<String>, executor: Executor) -> Self {
        Self {
            controller: controller.into(),
            fqdn: fqdn.into(),
            executor,
            backoff: BackoffPolicy::default(),
            connect_timeout: Duration::from_secs(5),
            state_dir: None,
            tls: ClientTls::default(),
        }
    }
}

/// Checks that `url` is a controller address the worker can use (`http://host:port`, or
/// `https://host:port` with TLS settings).
pub fn validate_controller_url(url: &str) -> Result<(), WorkerError> {
    address(url).map(drop)
}

/// The endpoint for `url` with `tls`: files read and checked, scheme and settings agreeing.
pub fn endpoint(url: &str, tls: &ClientTls) -> Result<Endpoint, WorkerError> {
    address(url)?;
    Ok(tls.endpoint(url)?)
}

fn address(url: &str) -> Result<Endpoint, WorkerError> {
    let invalid = |reason: String| WorkerError::InvalidControllerUrl {
        url: url.to_owned(),
        reason,
    };
    let endpoint = Endpoint::from_shared(url.to_owned()).map_err(|e| invalid(error_chain(&e)))?;
    let uri = endpoint.uri();
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(invalid(
                "expected http://HOST:PORT or https://HOST:PORT".into(),
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("no host".into()));
    }
    Ok(endpoint)
}

/// Runs the worker until `shutdown` completes; then stops a running assignment (killing its
/// process) and returns. Connection failures are logged and retried, never returned.
pub async fn run(
    config: WorkerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WorkerError> {
    let endpoint = endpoint(&config.controller, &config.tls)?
        .connect_timeout(config.connect_timeout)
        .tcp_nodelay(true)
        // Pings find a dead connection (controller host gone, NAT dropped) within ~25 s,
        // even when there is little to send.
        .http2_keep_alive_interval(Duration::from_secs(15))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    let (mut report, outbox) = Reporter::channel();
    let mut recovered = Recovered::Nothing;
    if let Some(state_dir) = &config.state_dir {
        let (journal, found) = Journal::open(state_dir)?;
        tracing::info!(journal = %journal.path().display(), ?found, "journal opened");
        report = report.with_journal(Arc::new(journal));
        recovered = found;
    }
    let mut runner = Runner::new(config.executor, report.clone());
    let mut replay = None;
    match recovered {
        Recovered::Nothing => {}
        Recovered::Finished {
            result,
            store_id,
            succeeded_steps,
        } => {
            runner = runner.recovered(result.assignment_id.clone(), store_id.clone(), None);
            replay = Some(Replay::from_journal(result, store_id, &succeeded_steps));
        }
        Recovered::Interrupted {
            assignment_id,
            store_id,
            at,
        } => {
            runner = runner.recovered(assignment_id, store_id, Some(at));
        }
    }
    let mut worker = Connection {
        endpoint,
        controller: config.controller,
        fqdn: config.fqdn,
        backoff: Backoff::new(config.backoff),
        attempt: 0,
        runner,
        report,
        outbox,
        pending: None,
        highest_epoch: 0,
        replay,
        other_finished: None,
        discarded: VecDeque::new(),
        session_store: None,
        resend: VecDeque::new(),
    };
    tokio::select! {
        never = worker.run_forever() => match never {},
        () = shutdown => tracing::info!("shutting down"),
    }
    worker.runner.shutdown().await;
    Ok(())
}

struct Connection {
    endpoint: Endpoint,
    controller: String,
    fqdn: String,
    backoff: Backoff,
    /// Connection attempts since the last `Welcome`.
    attempt: u64,
    runner: Runner,
    /// The runner's reporter: archives journal entries a controller discarded.
    report: Reporter,
    /// Everything the executor reports, kept across streams.
    outbox: mpsc::UnboundedReceiver<WorkerMessage>,
    /// Taken from `outbox`, not yet handed to a stream (kept across streams too).
    pending: Option<WorkerMessage>,
    /// The highest controller epoch seen (fencing): assignments from a lower one are refused.
    highest_epoch: u64,
    /// The current (or last) assignment's reports, said again on every new stream to the
    /// store that issued it: a stream (or controller) that broke may have lost them, and the
    /// controller counts each once.
    replay: Option<Replay>,
    /// The last result of another assignment (one refused: busy, stale epoch), with the store
    /// of the controller it was for, said again likewise.
    other_finished: Option<(WorkerMessage, String)>,
    /// Assignments a controller discarded: nothing more is said about them.
    discarded: VecDeque<String>,
    /// The store of the controller on the current stream, once it has welcomed us.
    session_store: Option<String>,
    /// The replay, queued for the current stream ahead of new reports.
    resend: VecDeque<WorkerMessage>,
}

/// Whether an assignment issued by `issuer` belongs to a controller on `store`; an empty id
/// (an older controller or journal) cannot tell, and is taken as the same.
fn same_store(issuer: &str, store: &str) -> bool {
    issuer.is_empty() || store.is_empty() || issuer == store
}

/// Why a stream ended.
enum SessionEnd {
    Unreachable(tonic::transport::Error),
    /// The controller refused the call (e.g. ALREADY_EXISTS).
    Refused(Status),
    /// The controller ended the stream without an error.
    Closed,
    /// The stream broke or the controller ended it with an error.
    Failed(Status),
}

impl Connection {
    async fn run_forever(&mut self) -> Infallible {
        loop {
            self.attempt += 1;
            tracing::info!(controller = %self.controller, fqdn = %self.fqdn, attempt = self.attempt, "connecting to the controller");
            let began = Instant::now();
            let end = self.session().await;
            // Only a session that stayed up a while starts the delays over: one that a
            // controller or network ends at once, however it ends, backs off further.
            if self.session_store.is_some() && began.elapsed() >= self.backoff.healthy_after() {
                self.backoff.reset();
            }
            match end {
                SessionEnd::Unreachable(err) => {
                    tracing::warn!(controller = %self.controller, error = %error_chain(&err), "cannot reach the controller");
                }
                SessionEnd::Refused(status) => {
                    self.log_status("controller refused the stream", &status)
                }
                SessionEnd::Closed => tracing::warn!("controller closed the stream"),
                SessionEnd::Failed(status) => {
                    self.log_status("stream to the controller failed", &status)
                }
            }
            if let Some(running) = self.runner.running() {
                tracing::info!(assignment = %running, "assignment keeps running; its messages wait for the next stream");
            }
            let delay = self.backoff.next_delay();
            tracing::info!(
                delay_ms = delay.as_millis() as u64,
                "reconnecting after a delay"
            );
            tokio::time::sleep(delay).await;
        }
    }

    fn log_status(&self, what: &str, status: &Status) {
        // A transport failure (a TLS handshake refused, say) says why only in its sources.
        let message = match Error::source(status) {
            Some(source) => format!("{}: {}", status.message(), error_chain(source)),
            None => status.message().to_string(),
        };
        match status.code() {
            Code::AlreadyExists => tracing::error!(
                fqdn = %self.fqdn,
                "{what}: another worker is already connected as {}: {message}",
                self.fqdn
            ),
            Code::InvalidArgument | Code::FailedPrecondition => {
                tracing::error!(code = ?status.code(), "{what}: {message}");
            }
            code => tracing::warn!(?code, "{what}: {message}"),
        }
    }

    /// One stream, from connecting to its end.
    async fn session(&mut self) -> SessionEnd {
        let channel = match self.endpoint.connect().await {
            Ok(channel) => channel,
            Err(err) => return SessionEnd::Unreachable(err),
        };
        let mut client = WorkerServiceClient::new(channel);
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        // Queued before the stream starts, so Hello is always its first message.
        let _ = tx.try_send(report::hello(
            &self.fqdn,
            self.runner.last(),
            self.runner.interrupted(),
        ));
        // Reports wait for the controller's Welcome: it says which store it runs on.
        self.session_store = None;
        self.resend.clear();
        let mut inbound = match client.session(ReceiverStream::new(rx)).await {
            Ok(response) => response.into_inner(),
            Err(status) => return SessionEnd::Refused(status),
        };
        tracing::info!("stream open; Hello sent");
        let mut heartbeat = heartbeat_interval(DEFAULT_HEARTBEAT);
        loop {
            tokio::select! {
                message = inbound.message() => match message {
                    Ok(Some(message)) => self.handle(message, &mut heartbeat).await,
                    Ok(None) => return SessionEnd::Closed,
                    Err(status) => return SessionEnd::Failed(status),
                },
                _ = heartbeat.tick() => {
                    // A full buffer means the stream is backed up: a heartbeat adds nothing.
                    let _ = tx.try_send(report::heartbeat());
                }
                // Take one message at a time and hand it over only when the stream has room,
                // so a breaking stream loses at most what its small buffer holds.
                Some(message) = self.outbox.recv(), if self.pending.is_none() => {
                    self.pending = self.keep_unless_discarded(message);
                }
                permit = tx.reserve(), if self.session_store.is_some()
                    && (!self.resend.is_empty() || self.pending.is_some()) => match permit {
                    Ok(permit) => {
                        if let Some(message) = self.resend.pop_front() {
                            permit.send(message);
                        } else if let Some(message) = self.pending.take() {
                            self.remember(&message);
                            permit.send(message);
                        }
                    }
                    // tonic dropped the request stream: the call is over.
                    Err(_) => return SessionEnd::Closed,
                },
            }
        }
    }

    async fn handle(&mut self, message: ControllerMessage, heartbeat: &mut Interval) {
        match message.body {
            Some(controller_message::Body::Welcome(welcome)) => {
                let period = match welcome.heartbeat_interval_ms {
                    0 => DEFAULT_HEARTBEAT,
                    ms => Duration::from_millis(ms.into()),
                };
                *heartbeat = heartbeat_interval(period);
                if self.session_store.is_some() {
                    // A later Welcome on the same stream only changes the heartbeat interval
                    // (the fleet grew): nothing to say again.
                    tracing::info!(
                        heartbeat_ms = period.as_millis() as u64,
                        "heartbeat interval changed by the controller"
                    );
                    return;
                }
                self.attempt = 0;
                self.welcomed(welcome.store_id.clone());
                if welcome.epoch < self.highest_epoch {
                    tracing::error!(
                        epoch = welcome.epoch,
                        highest = self.highest_epoch,
                        "this controller's epoch is older than one seen before: it has been replaced; its assignments will be refused"
                    );
                } else {
                    self.highest_epoch = welcome.epoch;
                }
                if welcome.known {
                    tracing::info!(note = %welcome.note, heartbeat_ms = period.as_millis() as u64, "welcomed by the controller");
                } else {
                    let note = if welcome.note.is_empty() {
                        format!("{} is not in any fleet", self.fqdn)
                    } else {
                        welcome.note
                    };
                    // The usual state between rollouts: not worth a warning.
                    tracing::info!(
                        "no rollout includes this worker yet: {note}; staying connected, idle"
                    );
                }
            }
            Some(controller_message::Body::Assignment(mut assignment)) => {
                tracing::info!(assignment = %assignment.assignment_id, rollout = %assignment.rollout_id, "assignment received");
                if assignment.store_id.is_empty() {
                    assignment.store_id = self.session_store.clone().unwrap_or_default();
                }
                if assignment.epoch < self.highest_epoch {
                    let detail = format!(
                        "stale assignment from controller epoch {} (epoch {} seen since)",
                        assignment.epoch, self.highest_epoch
                    );
                    tracing::warn!(assignment = %assignment.assignment_id, "{detail}; refused");
                    self.runner.refuse(&assignment.assignment_id, detail);
                    return;
                }
                self.highest_epoch = assignment.epoch;
                let (id, store) = (
                    assignment.assignment_id.clone(),
                    assignment.store_id.clone(),
                );
                if self.runner.start(assignment) == Started::Running {
                    self.replay = Some(Replay::new(id, store));
                }
            }
            Some(controller_message::Body::Discard(discard)) => self.discard(discard),
            Some(controller_message::Body::Cancel(cancel)) => {
                if self.runner.cancel(&cancel.assignment_id).await {
                    tracing::warn!(assignment = %cancel.assignment_id, "assignment cancelled by the controller");
                } else {
                    tracing::info!(assignment = %cancel.assignment_id, "cancel for an assignment not running here; ignored");
                }
            }
            None => tracing::debug!("empty message from the controller ignored"),
        }
    }
}

impl Connection {
    /// The controller welcomed us and runs on `store`: what it may have missed of our
    /// reports is said again, if its store issued them; another store's are archived unsent.
    fn welcomed(&mut self, store: String) {
        if let Some(replay) = self.replay.take() {
            if same_store(&replay.store_id, &store) {
                self.resend.extend(replay.messages());
                self.replay = Some(replay);
            } else if self.runner.running() == Some(replay.assignment_id.as_str()) {
                // Still running: its reports go on (the controller discards them).
                self.replay = Some(replay);
            } else {
                let reason = format!(
                    "issued by store {}; the controller at {} runs on store {store}",
                    replay.store_id, self.controller
                );
                tracing::warn!(assignment = %replay.assignment_id, "discarding the journaled result of assignment {}: {reason}; it is archived, not sent", replay.assignment_id);
                self.archive(&replay.assignment_id, &reason);
            }
        }
        if let Some((message, issuer)) = self.other_finished.take()
            && same_store(&issuer, &store)
        {
            self.resend.push_back(message.clone());
            self.other_finished = Some((message, issuer));
        }
        self.session_store = Some(store);
    }

    /// The controller will never count anything about this assignment: forget it, archive its
    /// journal entry (once it has stopped running), and say nothing more about it.
    fn discard(&mut self, discard: baton_proto::v1::Discard) {
        let id = discard.assignment_id;
        if self.discarded.contains(&id) {
            return;
        }
        tracing::warn!(assignment = %id, reason = %discard.reason, "the controller discarded an assignment's reports; archiving its journal entry");
        if self.discarded.len() == DISCARDED_KEPT {
            self.discarded.pop_front();
        }
        self.discarded.push_back(id.clone());
        if self.replay.as_ref().is_some_and(|r| r.assignment_id == id) {
            self.replay = None;
        }
        if self
            .other_finished
            .as_ref()
            .is_some_and(|(m, _)| replay::assignment_of(m) == Some(id.as_str()))
        {
            self.other_finished = None;
        }
        self.resend
            .retain(|m| replay::assignment_of(m) != Some(id.as_str()));
        if self
            .pending
            .as_ref()
            .is_some_and(|m| replay::assignment_of(m) == Some(id.as_str()))
        {
            self.pending = None;
        }
        if self.runner.running() == Some(id.as_str()) {
            tracing::warn!(assignment = %id, "it keeps running here; its reports are not sent");
        } else {
            self.archive(&id, &discard.reason);
        }
    }

    fn archive(&mut self, assignment_id: &str, reason: &str) {
        self.runner.forget(assignment_id);
        if self
            .replay
            .as_ref()
            .is_some_and(|r| r.assignment_id == assignment_id)
        {
            self.replay = None;
        }
        match self.report.archive(assignment_id, reason) {
            Ok(true) => {
                tracing::info!(assignment = %assignment_id, "journal entry archived; the journal is clean")
            }
            Ok(false) => {}
            Err(err) => tracing::error!(%err, "could not archive a journal entry"),
        }
    }

    /// `message` unless it is about a discarded assignment (whose end archives it).
    fn keep_unless_discarded(&mut self, message: WorkerMessage) -> Option<WorkerMessage> {
        let Some(id) = replay::assignment_of(&message).map(str::to_string) else {
            return Some(message);
        };
        if !self.discarded.contains(&id) {
            return Some(message);
        }
        if matches!(message.body, Some(Body::AssignmentFinished(_))) {
            self.archive(&id, "discarded by the controller while it ran");
        }
        None
    }

    /// Keeps what is handed to a stream for the replay.
    fn remember(&mut self, message: &WorkerMessage) {
        match (&mut self.replay, replay::assignment_of(message)) {
            (Some(replay), Some(id)) if replay.assignment_id == id => replay.record(message),
            (_, Some(_)) if matches!(message.body, Some(Body::AssignmentFinished(_))) => {
                let store = self.session_store.clone().unwrap_or_default();
                self.other_finished = Some((message.clone(), store));
            }
            _ => {}
        }
    }
}

/// Ticks every `period`, the first after one period (not at once: Hello just went out).
fn heartbeat_interval(period: Duration) -> Interval {
    let mut interval = tokio::time::interval_at(Instant::now() + period, period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_urls() {
        assert!(validate_controller_url("http://127.0.0.1:7411").is_ok());
        assert!(validate_controller_url("http://controller.contoso.com:7411").is_ok());
        assert!(validate_controller_url("https://controller.contoso.com:7411").is_ok());
        for bad in ["127.0.0.1:7411", "ftp://c", "http://", "not a url"] {
            assert!(validate_controller_url(bad).is_err(), "{bad}");
        }
    }
}
