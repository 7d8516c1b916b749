//! The controller's gRPC protocol, in process: a real controller on 127.0.0.1 (port 0) over an
//! in-memory SQLite store, driven with the generated clients. The worker side is played by hand
//! (a tokio mpsc is the request stream), so every message and its order is the test's choice.
//!
//! Deterministic: every wait is on a response or a stream (the event log followed with
//! `StreamEvents` is the sync point for what the controller does on its own); the timeouts are
//! only a safety net against a hang.

use std::future::Future;
use std::time::Duration;

use baton_proto::v1;
use baton_proto::v1::controller_message::Body as ToWorker;
use baton_proto::v1::operator_service_client::OperatorServiceClient;
use baton_proto::v1::worker_message::Body;
use baton_proto::v1::worker_service_client::WorkerServiceClient;
use baton_store::Store;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status, Streaming};

/// Safety bound only: nothing below waits on the clock.
const BOUND: Duration = Duration::from_secs(30);

async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

// ---- inputs ---------------------------------------------------------------------------------

/// Two steps: one rendered with the server's name, one with a retry.
const RUNBOOK: &str = r#"
[runbook]
name = "noop"
shell = "sh"
expected_duration = "1m"

[[step]]
id = "hello"
run = "echo updating {{ server.fqdn }}"
timeout = "1m"

[[step]]
id = "done"
run = "true"
timeout = "30s"
retries = 1
idempotent = true
"#;

/// `se01.NAME.example` … : one Standard Edition pool per server, at most one server at a time.
fn fleet(name: &str, servers: usize) -> (String, Vec<String>) {
    let fqdns: Vec<String> = (1..=servers)
        .map(|i| format!("se{i:02}.{name}.example"))
        .collect();
    (fleet_of(name, &fqdns), fqdns)
}

fn fleet_of(name: &str, fqdns: &[String]) -> String {
    let mut toml = format!("[fleet]\nname = \"{name}\"\nmax_parallel = 1\n");
    for fqdn in fqdns {
        toml.push_str(&format!(
            "\n[[pool]]\nfqdn = \"{fqdn}\"\nedition = \"standard\"\n\n  [[pool.server]]\n  fqdn = \"{fqdn}\"\n  role = \"standard\"\n"
        ));
    }
    toml
}

fn apply_request(fleet_name: &str, fleet_toml: &str) -> v1::ApplyRequest {
    v1::ApplyRequest {
        fleet_name: fleet_name.to_string(),
        fleet_toml: fleet_toml.to_string(),
        runbook_name: "noop.toml".to_string(),
        runbook_toml: RUNBOOK.to_string(),
        params: Default::default(),
    }
}

fn hello(fqdn: &str) -> Body {
    hello_after(fqdn, "")
}

/// Hello from a worker process whose last assignment was `last` ("" for none).
fn hello_after(fqdn: &str, last: &str) -> Body {
    Body::Hello(v1::Hello {
        fqdn: fqdn.to_string(),
        version: "0.0.0-test".to_string(),
        platform: "test".to_string(),
        assignment_id: last.to_string(),
        interrupted: None,
        assignment_store_id: String::new(),
    })
}

/// Hello from a worker that restarted while `last` ran: its journal says where it stopped.
fn hello_interrupted(fqdn: &str, last: &str, step_index: u32, step_started: bool) -> Body {
    let Body::Hello(mut hello) = hello_after(fqdn, last) else {
        unreachable!("hello_after makes a Hello")
    };
    hello.interrupted = Some(v1::Interrupted {
        step_index,
        step_started,
    });
    Body::Hello(hello)
}

fn step_started(assignment: &str, step_index: u32) -> Body {
    Body::StepStarted(v1::StepStarted {
        assignment_id: assignment.to_string(),
        step_index,
        attempt: 1,
    })
}

/// How long the played worker says each step attempt ran.
const STEP_MS: u64 = 1500;

fn step_finished(assignment: &str, step_index: u32) -> Body {
    Body::StepFinished(v1::StepFinished {
        assignment_id: assignment.to_string(),
        step_index,
        attempt: 1,
        exit_code: 0,
        timed_out: false,
        error: String::new(),
        duration_ms: Some(STEP_MS),
    })
}

// ---- the controller and its clients ----------------------------------------------------------

struct Controller {
    channel: Channel,
    handle: baton_controller::ControllerHandle,
}

impl Controller {
    async fn start() -> Controller {
        Controller::start_on("sqlite::memory:").await
    }

    async fn start_on(url: &str) -> Controller {
        Controller::start_with_timeout(url, baton_controller::Options::default().worker_timeout)
            .await
    }

    async fn start_with_timeout(url: &str, worker_timeout: Duration) -> Controller {
        let options = baton_controller::Options {
            worker_timeout,
            http: Some("127.0.0.1:0".parse().unwrap()),
            otlp_metrics: false,
            traces: false,
            ..baton_controller::Options::default()
        };
        Controller::start_with_options(url, options).await
    }

    async fn start_with_options(url: &str, options: baton_controller::Options) -> Controller {
        let store = Store::connect(url).await.expect("store");
        Controller::start_with_store(store, options).await
    }

    async fn start_with_store(store: Store, options: baton_controller::Options) -> Controller {
        let handle = baton_controller::start_with(store, "127.0.0.1:0".parse().unwrap(), options)
            .await
            .expect("controller starts");
        let channel = Endpoint::from_shared(format!("http://{}", handle.addr))
            .unwrap()
            .connect()
            .await
            .expect("connect to the controller");
        Controller { channel, handle }
    }

    fn operator(&self) -> OperatorServiceClient<Channel> {
        OperatorServiceClient::new(self.channel.clone())
    }

    /// Opens a worker stream whose first message is `first`. `Err`: the call was refused.
    async fn open(&self, first: Body) -> Result<Session, Status> {
        let (tx, rx) = mpsc::channel(64);
        tx.send(v1::WorkerMessage { body: Some(first) })
            .await
            .expect("queue the first message");
        let mut client = WorkerServiceClient::new(self.channel.clone());
        let inbound = bounded("the session call", client.session(ReceiverStream::new(rx)))
            .await?
            .into_inner();
        Ok(Session {
            tx: Some(tx),
            inbound,
        })
    }

    /// The status a stream opened with `first` ends with: a refused call, or an error on the
    /// stream before anything else.
    async fn refused(&self, first: Body) -> Status {
        match self.open(first).await {
            Err(status) => status,
            Ok(mut session) => session.refused().await,
        }
    }

    /// A welcomed worker session.
    async fn worker(&self, fqdn: &str) -> (Session, v1::Welcome) {
        let mut session = self
            .open(hello(fqdn))
            .await
            .unwrap_or_else(|status| panic!("session for {fqdn} refused: {status:?}"));
        let welcome = session.welcome().await;
        (session, welcome)
    }

    async fn apply(&self, fleet_name: &str, fleet_toml: &str) -> Result<String, Status> {
        self.operator()
            .apply(apply_request(fleet_name, fleet_toml))
            .await
            .map(|response| response.into_inner().rollout_id)
    }

    async fn status(&self, id: &str) -> v1::RolloutStatus {
        self.operator()
            .get_status(v1::RolloutRef {
                rollout_id: id.to_string(),
                ..Default::default()
            })
            .await
            .expect("GetStatus")
            .into_inner()
    }

    /// The whole log as it is now.
    async fn events(&self, id: &str) -> Vec<v1::Event> {
        let mut stream = self.follow_from(id, false).await;
        let mut events = Vec::new();
        while let Some(event) = bounded("the event log", stream.message())
            .await
            .expect("StreamEvents")
        {
            events.push(event);
        }
        events
    }

    async fn follow(&self, id: &str) -> Follower {
        Follower {
            stream: self.follow_from(id, true).await,
            seen: Vec::new(),
        }
    }

    async fn follow_from(&self, id: &str, follow: bool) -> Streaming<v1::Event> {
        self.operator()
            .stream_events(v1::EventsRequest {
                rollout_id: id.to_string(),
                after_seq: 0,
                follow,
            })
            .await
            .expect("StreamEvents")
            .into_inner()
    }

    /// `StepLogs` (without `follow`) to its end.
    async fn logs(
        &self,
        server: &str,
        rollout: &str,
        step: &str,
    ) -> Result<Vec<v1::LogChunk>, Status> {
        let stream = self.logs_stream(server, rollout, step, false).await?;
        Ok(read_logs(stream).await)
    }

    async fn logs_stream(
        &self,
        server: &str,
        rollout: &str,
        step: &str,
        follow: bool,
    ) -> Result<Streaming<v1::LogChunk>, Status> {
        Ok(self
            .operator()
            .step_logs(v1::LogsRequest {
                server: server.to_string(),
                rollout_id: rollout.to_string(),
                step: step.to_string(),
                follow,
            })
            .await?
            .into_inner())
    }

    async fn workers(&self) -> Vec<v1::WorkerInfo> {
        self.operator()
            .list_servers(v1::ListServersRequest {})
            .await
            .expect("ListServers")
            .into_inner()
            .workers
    }
}

/// One worker stream, played by the test.
struct Session {
    tx: Option<mpsc::Sender<v1::WorkerMessage>>,
    inbound: Streaming<v1::ControllerMessage>,
}

impl Session {
    async fn send(&self, body: Body) {
        self.tx
            .as_ref()
            .expect("stream still open")
            .send(v1::WorkerMessage { body: Some(body) })
            .await
            .expect("the request stream is gone");
    }

    async fn next(&mut self) -> ToWorker {
        bounded("a controller message", self.inbound.message())
            .await
            .expect("stream failed")
            .expect("stream ended")
            .body
            .expect("message without a body")
    }

    async fn welcome(&mut self) -> v1::Welcome {
        match self.next().await {
            ToWorker::Welcome(welcome) => welcome,
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    async fn assignment(&mut self) -> v1::Assignment {
        match self.next().await {
            ToWorker::Assignment(assignment) => assignment,
            other => panic!("expected an Assignment, got {other:?}"),
        }
    }

    /// The next message, which must be a `Discard`.
    async fn discard(&mut self) -> v1::Discard {
        match self.next().await {
            ToWorker::Discard(discard) => discard,
            other => panic!("expected a Discard, got {other:?}"),
        }
    }

    /// Waits for the stream to end with an error, which it returns.
    async fn refused(&mut self) -> Status {
        match bounded("the stream's end", self.inbound.message()).await {
            Err(status) => status,
            Ok(other) => panic!("expected the stream to end with an error, got {other:?}"),
        }
    }

    /// Ends the request stream and waits until the controller has closed its side, which it
    /// does only after forgetting the connection.
    async fn close(mut self) {
        self.tx = None;
        match bounded("the stream's end", self.inbound.message()).await {
            Ok(None) => {}
            other => panic!("expected the stream to end cleanly, got {other:?}"),
        }
    }

    /// Reports every step as started and finished (exit 0), then the assignment's end.
    async fn complete(&self, assignment: &v1::Assignment, succeeded: bool) {
        let id = &assignment.assignment_id;
        for index in (0u32..).take(assignment.steps.len()) {
            self.send(step_started(id, index)).await;
            self.send(step_finished(id, index)).await;
        }
        self.send(Body::AssignmentFinished(v1::AssignmentFinished {
            assignment_id: id.clone(),
            succeeded,
            detail: if succeeded {
                String::new()
            } else {
                "test failure".into()
            },
        }))
        .await;
    }
}

/// A `StreamEvents` follower that remembers what it has read.
struct Follower {
    stream: Streaming<v1::Event>,
    seen: Vec<v1::Event>,
}

impl Follower {
    /// Reads up to and including the next event of `kind` (for `server`, if given).
    async fn until(&mut self, kind: &str, server: Option<&str>) -> v1::Event {
        loop {
            let event = bounded(kind, self.stream.message())
                .await
                .expect("StreamEvents failed")
                .unwrap_or_else(|| panic!("the event stream ended before {kind}"));
            self.seen.push(event.clone());
            if event.kind == kind && server.is_none_or(|s| event.server == s) {
                return event;
            }
        }
    }

    /// Reads until the stream ends by itself.
    async fn until_end(&mut self) {
        while let Some(event) = bounded("the event stream's end", self.stream.message())
            .await
            .expect("StreamEvents failed")
        {
            self.seen.push(event);
        }
    }
}

/// A `StepLogs` stream to its end.
async fn read_logs(mut stream: Streaming<v1::LogChunk>) -> Vec<v1::LogChunk> {
    let mut chunks = Vec::new();
    while let Some(chunk) = bounded("the logs", stream.message())
        .await
        .expect("StepLogs failed")
    {
        chunks.push(chunk);
    }
    chunks
}

/// The output lines of `StepLogs` chunks, drop notes left out.
fn log_lines(chunks: &[v1::LogChunk]) -> Vec<String> {
    chunks
        .iter()
        .filter(|c| c.lines > 0)
        .flat_map(|c| {
            assert_eq!(c.text.split('\n').count(), c.lines as usize, "{c:?}");
            c.text.split('\n').map(str::to_string)
        })
        .collect()
}

/// A batch of output lines, as a worker sends them.
fn output(assignment: &str, step_index: u32, lines: &[String], stderr: bool) -> Body {
    Body::StepOutput(v1::StepOutput {
        assignment_id: assignment.to_string(),
        step_index,
        text: lines.join("\n"),
        lines: lines.len() as u32,
        stderr,
        attempt: 1,
        ..Default::default()
    })
}

fn kinds(events: &[v1::Event]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

fn assert_contiguous(events: &[v1::Event]) {
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    let want: Vec<u64> = (1..=events.len() as u64).collect();
    assert_eq!(
        seqs,
        want,
        "seq is not contiguous from 1: {:?}",
        kinds(events)
    );
}

/// `server_started`'s detail begins "assignment ID, …".
fn assignment_of(event: &v1::Event) -> &str {
    event
        .detail
        .strip_prefix("assignment ")
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no assignment in {:?}", event.detail))
}

fn server<'a>(status: &'a v1::RolloutStatus, fqdn: &str) -> &'a v1::ServerStatus {
    status
        .servers
        .iter()
        .find(|s| s.fqdn == fqdn)
        .unwrap_or_else(|| panic!("{fqdn} not in the status"))
}

fn running(status: &v1::RolloutStatus) -> Vec<&str> {
    status
        .servers
        .iter()
        .filter(|s| s.state == "running")
        .map(|s| s.fqdn.as_str())
        .collect()
}

fn index_of(fqdns: &[String], fqdn: &str) -> usize {
    fqdns
        .iter()
        .position(|f| f == fqdn)
        .unwrap_or_else(|| panic!("{fqdn} is not in the fleet"))
}

// ---- Hello ----------------------------------------------------------------------------------

#[tokio::test]
async fn a_first_message_other_than_hello_is_invalid_argument() {
    let controller = Controller::start().await;
    let status = controller.refused(Body::Heartbeat(v1::Heartbeat {})).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("hello"), "{status:?}");

    let status = controller.refused(step_started("1-1", 0)).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}

#[tokio::test]
async fn an_invalid_fqdn_in_hello_is_invalid_argument() {
    let controller = Controller::start().await;
    for bad in ["", "be01..contoso.com", "be01.contoso.com; rm -rf /"] {
        let status = controller.refused(hello(bad)).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{bad:?}: {status:?}");
        assert!(status.message().contains("not a valid FQDN"), "{status:?}");
    }
    assert!(controller.workers().await.is_empty());
}

#[tokio::test]
async fn a_worker_in_no_rollout_is_welcomed_as_unknown_and_kept_connected() {
    let controller = Controller::start().await;
    let fqdn = "idle01.nowhere.example";
    let (session, welcome) = controller.worker(fqdn).await;
    assert!(!welcome.known);
    assert!(welcome.note.contains(fqdn), "{}", welcome.note);
    assert!(
        welcome.note.contains("no active rollout"),
        "{}",
        welcome.note
    );
    assert!(welcome.heartbeat_interval_ms > 0);

    for _ in 0..3 {
        session.send(Body::Heartbeat(v1::Heartbeat {})).await;
    }
    let workers = controller.workers().await;
    assert_eq!(workers.len(), 1, "{workers:?}");
    assert_eq!(workers[0].fqdn, fqdn);
    assert_eq!(workers[0].version, "0.0.0-test");
    assert!(workers[0].connected && !workers[0].known, "{workers:?}");
    assert!(!workers[0].last_heartbeat.is_empty());

    // Messages are handled in order: the heartbeats were accepted (the stream is still open)
    // when the second Hello is refused as such.
    let mut session = session;
    session.send(hello(fqdn)).await;
    let status = session.refused().await;
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("hello was already received"),
        "{status:?}"
    );
}

#[tokio::test]
async fn a_second_session_for_the_same_fqdn_is_refused_until_the_first_closes() {
    let controller = Controller::start().await;
    let fqdn = "be01.contoso.example";
    let (first, _) = controller.worker(fqdn).await;

    let status = controller.refused(hello(fqdn)).await;
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
    assert!(status.message().contains(fqdn), "{status:?}");
    // FQDNs compare case-insensitively, as in fleet files.
    let status = controller.refused(hello("BE01.Contoso.Example")).await;
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");

    first.close().await;
    let workers = controller.workers().await;
    assert!(workers.iter().all(|w| !w.connected), "{workers:?}");

    let (_again, welcome) = controller.worker(fqdn).await;
    assert!(!welcome.known);
    let workers = controller.workers().await;
    assert!(
        workers.iter().any(|w| w.fqdn == fqdn && w.connected),
        "{workers:?}"
    );
}

// ---- assignments ----------------------------------------------------------------------------

#[tokio::test]
async fn an_assignment_carries_the_rendered_steps_and_stale_reports_are_discarded() {
    let controller = Controller::start().await;
    let (toml, fqdns) = fleet("render", 2);
    let mut sessions = Vec::new();
    for fqdn in &fqdns {
        sessions.push(controller.worker(fqdn).await.0);
    }
    let id = controller.apply("render.toml", &toml).await.expect("apply");
    let status = controller.status(&id).await;
    assert_eq!(status.state, "running");
    let [first] = running(&status)[..] else {
        panic!("expected one running server: {status:?}")
    };
    let first = first.to_string();
    let (i, other) = (index_of(&fqdns, &first), 1 - index_of(&fqdns, &first));

    let assignment = sessions[i].assignment().await;
    assert_eq!(assignment.rollout_id, id);
    assert_eq!(assignment.shell, "sh");
    assert_eq!(assignment.expected_duration_ms, 60_000);
    let steps: Vec<(&str, &str, u64, u32)> = assignment
        .steps
        .iter()
        .map(|s| (s.id.as_str(), s.command.as_str(), s.timeout_ms, s.retries))
        .collect();
    let echo = format!("echo updating {first}");
    assert_eq!(
        steps,
        [
            ("hello", echo.as_str(), 60_000, 0),
            ("done", "true", 30_000, 1)
        ]
    );
    let aid = assignment.assignment_id.clone();

    sessions[i].send(step_started(&aid, 0)).await;
    // One line, as older workers send it (without the attempt).
    sessions[i]
        .send(Body::StepOutput(v1::StepOutput {
            assignment_id: aid.clone(),
            step_index: 0,
            line: "updating".into(),
            stderr: false,
            ..Default::default()
        }))
        .await;
    // Another worker reporting on this assignment: discarded, its stream stays open.
    sessions[other].send(step_started(&aid, 0)).await;
    let discard = sessions[other].discard().await;
    assert_eq!(discard.assignment_id, aid);
    assert!(discard.reason.contains("another server"), "{discard:?}");
    // An assignment that does not exist (another store's, say): discarded too.
    sessions[i]
        .send(step_started("no-such-assignment", 0))
        .await;
    let discard = sessions[i].discard().await;
    assert_eq!(discard.assignment_id, "no-such-assignment");
    assert!(
        discard
            .reason
            .contains("not an assignment of this controller's store"),
        "{discard:?}"
    );
    // A step the assignment does not have.
    sessions[i].send(step_finished(&aid, 7)).await;
    let discard = sessions[i].discard().await;
    assert!(discard.reason.contains("step index 7"), "{discard:?}");
    // A second Hello on a stream still ends it: that is not a stale report but a broken peer.
    sessions[i].send(hello(&first)).await;
    let status = sessions[i].refused().await;
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");

    // Nothing recorded before is lost; the discards recorded nothing, and the one broken
    // stream, one lost worker. The output is not an event: `StepLogs` has it, of the attempt
    // last started.
    let events = controller.events(&id).await;
    assert_contiguous(&events);
    assert_eq!(
        kinds(&events),
        [
            "rollout_started",
            "server_started",
            "step_started",
            "worker_lost",
        ]
    );
    assert!(events[3..].iter().all(|e| e.server == first), "{events:?}");
    assert_eq!(events[1].server, first);
    assert_eq!(assignment_of(&events[1]), aid);
    assert_eq!(events[2].detail, "hello attempt 1");
    let logs = controller.logs(&first, &id, "").await.expect("StepLogs");
    let shown: Vec<(&str, &str, u32, &str, u32, bool)> = logs
        .iter()
        .map(|c| {
            (
                c.assignment_id.as_str(),
                c.step.as_str(),
                c.attempt,
                c.text.as_str(),
                c.lines,
                c.stderr,
            )
        })
        .collect();
    assert_eq!(shown, [(aid.as_str(), "hello", 1, "updating", 1, false)]);
    assert_eq!(
        (logs[0].rollout_id.as_str(), logs[0].server.as_str()),
        (id.as_str(), first.as_str())
    );
    let status = controller.status(&id).await;
    assert_eq!(server(&status, &first).state, "running");
    assert_eq!(server(&status, &first).current_step, "hello");
}

#[tokio::test]
async fn completing_assignments_by_hand_runs_the_rollout_to_its_end() {
    let controller = Controller::start().await;
    let (toml, fqdns) = fleet("serial", 3);
    let mut sessions = Vec::new();
    for fqdn in &fqdns {
        sessions.push(controller.worker(fqdn).await.0);
    }
    let id = controller.apply("serial.toml", &toml).await.expect("apply");
    let mut follower = controller.follow(&id).await;

    let mut order = Vec::new();
    for _ in 0..fqdns.len() {
        let started = follower.until("server_started", None).await;
        let i = index_of(&fqdns, &started.server);
        let assignment = sessions[i].assignment().await;
        assert_eq!(assignment.assignment_id, assignment_of(&started));
        sessions[i].complete(&assignment, true).await;
        let finished = follower
            .until("server_finished", Some(&started.server))
            .await;
        assert_eq!(finished.detail, "succeeded");
        order.push(started.server);
    }
    follower.until("rollout_finished", None).await;
    follower.until_end().await;

    let events = &follower.seen;
    assert_contiguous(events);
    assert_eq!(events.last().unwrap().kind, "rollout_finished");
    assert!(
        events
            .last()
            .unwrap()
            .detail
            .starts_with("finished: 3 succeeded"),
        "{:?}",
        events.last()
    );
    // One server at a time: started, its two steps, finished; then the next.
    let mut want = vec!["rollout_started"];
    for _ in &fqdns {
        want.extend([
            "server_started",
            "step_started",
            "step_finished",
            "step_started",
            "step_finished",
            "server_finished",
        ]);
    }
    want.push("rollout_finished");
    assert_eq!(kinds(events), want);
    for (n, fqdn) in order.iter().enumerate() {
        let per_server = &events[1 + 6 * n..7 + 6 * n];
        assert!(
            per_server.iter().all(|e| &e.server == fqdn),
            "{per_server:?}"
        );
        assert!(per_server.iter().all(|e| e.rollout == id));
    }
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(sorted, fqdns);

    let status = controller.status(&id).await;
    assert_eq!(status.state, "finished");
    assert!(
        status.servers.iter().all(|s| s.state == "succeeded"),
        "{status:?}"
    );
    // A finished rollout takes no more control.
    let refused = controller
        .operator()
        .pause(v1::RolloutRef {
            rollout_id: id.clone(),
            ..Default::default()
        })
        .await
        .expect_err("pausing a finished rollout");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    // Following a finished rollout gives its log and ends.
    let mut late = controller.follow(&id).await;
    late.until_end().await;
    assert_eq!(late.seen, follower.seen);
}

#[tokio::test]
async fn an_assignment_made_while_its_worker_is_away_is_delivered_when_it_connects() {
    let controller = Controller::start().await;
    let (toml, fqdns) = fleet("away", 1);
    let id = controller.apply("away.toml", &toml).await.expect("apply");
    let mut follower = controller.follow(&id).await;
    let started = follower.until("server_started", Some(&fqdns[0])).await;
    let status = controller.status(&id).await;
    assert_eq!(server(&status, &fqdns[0]).state, "running");
    assert!(!server(&status, &fqdns[0]).worker_connected);

    let (mut session, welcome) = controller.worker(&fqdns[0]).await;
    assert!(welcome.known, "{welcome:?}");
    assert!(
        welcome.note.contains(&format!("rollout {id}")),
        "{welcome:?}"
    );
    let assignment = session.assignment().await;
    assert_eq!(assignment.assignment_id, assignment_of(&started));
    assert_eq!(assignment.steps.len(), 2);
    assert!(server(&controller.status(&id).await, &fqdns[0]).worker_connected);

    session.complete(&assignment, true).await;
    follower.until("rollout_finished", None).await;
    follower.until_end().await;
    assert_eq!(controller.status(&id).await.state, "finished");
}

#[tokio::test]
async fn a_worker_back_with_its_assignment_reports_it_and_one_without_needs_attention() {
    let controller = Controller::start().await;
    let (toml, fqdns) = fleet("reconnect", 1);
    let (session, _) = controller.worker(&fqdns[0]).await;
    let id = controller
        .apply("reconnect.toml", &toml)
        .await
        .expect("apply");
    let mut follower = controller.follow(&id).await;
    let mut session = session;
    let assignment = session.assignment().await;

    // A dropped connection: the same worker process comes back naming its assignment, which
    // keeps running and reports on the new stream.
    session.close().await;
    let mut back = controller
        .open(hello_after(&fqdns[0], &assignment.assignment_id))
        .await
        .expect("session");
    back.welcome().await;
    assert_eq!(
        server(&controller.status(&id).await, &fqdns[0]).state,
        "running"
    );
    back.complete(&assignment, true).await;
    follower.until("rollout_finished", None).await;
    assert_eq!(
        server(&controller.status(&id).await, &fqdns[0]).state,
        "succeeded"
    );
    back.close().await;

    // A restarted worker process does not know its assignment: the server's state is
    // unknown, so it needs attention (its pool held) until an operator resolves it.
    let (toml, fqdns) = fleet("restart", 1);
    let (mut session, _) = controller.worker(&fqdns[0]).await;
    let id = controller
        .apply("restart.toml", &toml)
        .await
        .expect("apply");
    let mut follower = controller.follow(&id).await;
    session.assignment().await;
    session.close().await;
    let (mut fresh, _) = controller.worker(&fqdns[0]).await;
    let attention = follower
        .until("server_needs_attention", Some(&fqdns[0]))
        .await;
    assert!(
        attention
            .detail
            .starts_with("its worker reconnected without assignment"),
        "{attention:?}"
    );
    let status = controller.status(&id).await;
    assert_eq!(server(&status, &fqdns[0]).state, "needs_attention");
    assert!(
        server(&status, &fqdns[0])
            .waited_for
            .contains("baton resolve"),
        "{status:?}"
    );
    // The metrics name it, for the BatonServerNeedsAttention alert.
    let http = controller.handle.http_addr.expect("a monitoring port");
    let series = format!(
        "baton_server_needs_attention{{pool=\"{0}\",rollout=\"{id}\",server=\"{0}\"}}",
        fqdns[0]
    );
    let text = scrape_until(http, |text| sample(text, &series) == Some(1.0)).await;
    assert_eq!(sample(&text, &series), Some(1.0), "{series} in\n{text}");

    // Resolving it with a retry sends the runbook again under a new assignment.
    let resolve = |action: &str| v1::ResolveRequest {
        rollout_id: id.clone(),
        server: fqdns[0].clone(),
        action: action.to_string(),
    };
    let wrong = controller
        .operator()
        .resolve(resolve("shrug"))
        .await
        .expect_err("unknown action");
    assert_eq!(wrong.code(), Code::InvalidArgument, "{wrong:?}");
    controller
        .operator()
        .resolve(resolve("retry"))
        .await
        .expect("resolve");
    follower.until("server_resolved", Some(&fqdns[0])).await;
    let again = fresh.assignment().await;
    fresh.complete(&again, true).await;
    follower.until("rollout_finished", None).await;
    assert_eq!(
        server(&controller.status(&id).await, &fqdns[0]).state,
        "succeeded"
    );
    let twice = controller
        .operator()
        .resolve(resolve("retry"))
        .await
        .expect_err("nothing to resolve");
    assert_eq!(twice.code(), Code::FailedPrecondition, "{twice:?}");
}

#[tokio::test]
async fn a_worker_whose_fqdn_differs_in_case_gets_and_reports_its_assignment() {
    let controller = Controller::start().await;
    let (toml, fqdns) = fleet("case", 1);
    let shouting = fqdns[0].to_ascii_uppercase();
    let (mut session, welcome) = controller.worker(&shouting).await;
    assert!(!welcome.known);
    let id = controller.apply("case.toml", &toml).await.expect("apply");
    let mut follower = controller.follow(&id).await;

    let assignment = session.assignment().await;
    assert!(server(&controller.status(&id).await, &fqdns[0]).worker_connected);
    session.complete(&assignment, true).await;
    follower.until("rollout_finished", None).await;
    follower.until_end().await;
    assert_eq!(controller.status(&id).await.state, "finished");
    assert!(
        follower
            .seen
            .iter()
            .filter(|e| !e.server.is_empty())
            .all(|e| e.server == fqdns[0]),
        "events name the server as the fleet does: {:?}",
        follower.seen
    );
}

// ---- Apply ----------------------------------------------------------------------------------

#[tokio::test]
async fn apply_refuses_invalid_and_overlapping_fleets() {
    let controller = Controller::start().await;
    let bad = "[fleet]\nname = \"bad\"\nmax_paralel = 1\n";
    let status = controller
        .apply("bad-fleet.toml", bad)
        .await
        .expect_err("an invalid fleet");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("bad-fleet.toml:3"), "{status:?}");
    assert!(status.message().contains("max_paralel"), "{status:?}");

    let mut request = apply_request("ok.toml", &fleet("ok", 1).0);
    request.runbook_toml = RUNBOOK.replace("timeout = \"30s\"", "timeout = \"soon\"");
    let status = controller
        .operator()
        .apply(request)
        .await
        .expect_err("an invalid runbook");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("noop.toml:15"), "{status:?}");

    let shared = "se02.overlap.example".to_string();
    let first = fleet_of("one", &["se01.overlap.example".into(), shared.clone()]);
    let id = controller.apply("one.toml", &first).await.expect("apply");
    let second = fleet_of("two", &[shared.clone(), "se03.overlap.example".into()]);
    let status = controller
        .apply("two.toml", &second)
        .await
        .expect_err("an overlapping fleet");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains(&shared), "{status:?}");
    assert!(
        status.message().contains(&format!("rollout {id}")),
        "{status:?}"
    );
    // Refused applies leave no rollout behind; a disjoint fleet runs beside the first.
    let third = fleet_of("three", &["se04.overlap.example".into()]);
    let other = controller.apply("three.toml", &third).await.expect("apply");
    assert_ne!(other, id);
    assert_eq!(
        other.parse::<i64>().unwrap(),
        id.parse::<i64>().unwrap() + 1
    );
    assert_eq!(controller.status("").await.rollout_id, other);
}

// ---- Pause, Resume, Abort -------------------------------------------------------------------

#[tokio::test]
async fn pause_holds_new_starts_resume_continues_abort_lets_running_ones_finish() {
    let controller = Controller::start().await;
    let (toml, fqdns) = fleet("control", 3);
    let mut sessions = Vec::new();
    for fqdn in &fqdns {
        sessions.push(controller.worker(fqdn).await.0);
    }
    let id = controller
        .apply("control.toml", &toml)
        .await
        .expect("apply");
    let mut follower = controller.follow(&id).await;
    let rollout = || v1::RolloutRef {
        rollout_id: id.clone(),
        ..Default::default()
    };
    let mut operator = controller.operator();

    let first = follower.until("server_started", None).await.server;
    let a = index_of(&fqdns, &first);
    let assignment = sessions[a].assignment().await;

    let paused = operator.pause(rollout()).await.expect("pause").into_inner();
    assert_eq!(paused.state, "paused");
    // Pausing again changes nothing and records nothing.
    let again = operator.pause(rollout()).await.expect("pause").into_inner();
    assert_eq!(again.state, "paused");

    // The running server finishes; nothing new starts while paused.
    sessions[a].complete(&assignment, true).await;
    follower.until("server_finished", Some(&first)).await;
    let status = controller.status(&id).await;
    assert_eq!(status.state, "paused");
    assert!(running(&status).is_empty(), "{status:?}");
    assert_eq!(
        status
            .servers
            .iter()
            .filter(|s| s.state == "pending")
            .count(),
        2,
        "{status:?}"
    );

    let resumed = operator
        .resume(rollout())
        .await
        .expect("resume")
        .into_inner();
    assert_eq!(resumed.state, "running");
    let second = follower.until("server_started", None).await;
    let b = index_of(&fqdns, &second.server);
    assert_ne!(a, b);
    let assignment = sessions[b].assignment().await;
    assert_eq!(assignment.assignment_id, assignment_of(&second));

    let aborting = operator.abort(rollout()).await.expect("abort").into_inner();
    assert_eq!(aborting.state, "aborting");
    assert_eq!(server(&aborting, &second.server).state, "running");
    sessions[b].complete(&assignment, true).await;
    let finished = follower.until("rollout_finished", None).await;
    assert!(finished.detail.starts_with("aborted: "), "{finished:?}");
    follower.until_end().await;

    let status = controller.status(&id).await;
    assert_eq!(status.state, "aborted");
    let c = 3 - a - b;
    assert_eq!(server(&status, &fqdns[a]).state, "succeeded");
    assert_eq!(server(&status, &fqdns[b]).state, "succeeded");
    assert_eq!(server(&status, &fqdns[c]).state, "not_started");

    let events = &follower.seen;
    assert_contiguous(events);
    let all = kinds(events);
    let at = |kind: &str| all.iter().position(|k| *k == kind).unwrap();
    assert_eq!(all.iter().filter(|k| **k == "rollout_paused").count(), 1);
    let starts: Vec<usize> = (0..all.len())
        .filter(|&i| all[i] == "server_started")
        .collect();
    assert_eq!(starts.len(), 2, "{all:?}");
    // The second start came after Resume, and nothing started after Abort.
    assert!(at("rollout_paused") < at("rollout_resumed"));
    assert!(at("rollout_resumed") < starts[1], "{all:?}");
    assert!(starts[1] < at("rollout_aborted"), "{all:?}");
    let not_started: Vec<&v1::Event> = events
        .iter()
        .filter(|e| e.kind == "server_not_started")
        .collect();
    assert_eq!(not_started.len(), 1, "{all:?}");
    assert_eq!(not_started[0].server, fqdns[c]);
}

// ---- health, reflection, store --------------------------------------------------------------

#[tokio::test]
async fn health_reports_serving_and_reflection_lists_the_services() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let controller = Controller::start().await;
    let mut health = HealthClient::new(controller.channel.clone());
    for service in ["baton.v1.WorkerService", "baton.v1.OperatorService"] {
        let response = health
            .check(HealthCheckRequest {
                service: service.to_string(),
            })
            .await
            .unwrap_or_else(|status| panic!("health of {service}: {status:?}"))
            .into_inner();
        assert_eq!(response.status(), ServingStatus::Serving, "{service}");
    }

    let mut reflection = ServerReflectionClient::new(controller.channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let response = bounded("the reflection answer", responses.message())
        .await
        .expect("reflection stream")
        .expect("a reflection answer");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer {response:?}")
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for service in ["baton.v1.WorkerService", "baton.v1.OperatorService"] {
        assert!(names.contains(&service), "{service} not in {names:?}");
    }
}

#[tokio::test]
async fn an_unreachable_database_is_named_in_the_error() {
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    let url = "postgres://baton:s3cret@127.0.0.1:1/baton";
    let err = Store::connect(url)
        .await
        .expect_err("nothing listens on port 1");
    let text = err.to_string();
    assert!(
        text.contains("cannot connect to database postgres://baton:***@127.0.0.1:1/baton"),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "the password leaked: {text}");

    let missing = std::env::temp_dir()
        .join("baton-no-such-dir-7b1e")
        .join("baton.db");
    let url = format!("sqlite://{}", missing.display());
    let text = Store::connect(&url)
        .await
        .expect_err("a missing directory")
        .to_string();
    assert!(text.contains(&missing.display().to_string()), "{text}");
    assert!(text.contains("does not exist"), "{text}");
}

// ---- Outage-budget watchdog -------------------------------------------------------------------

#[tokio::test]
async fn a_back_end_past_its_outage_budget_stops_new_starts_until_resume() {
    let controller = Controller::start().await;
    let (se01, se02) = ("se01.budget.example", "se02.budget.example");
    let toml = format!(
        "[fleet]\nname = \"budget\"\nmax_parallel = 1\n\
         \n[[pool]]\nfqdn = \"{se01}\"\nedition = \"standard\"\noutage_budget = \"1s\"\n\
         \n  [[pool.server]]\n  fqdn = \"{se01}\"\n  role = \"standard\"\n  expected_duration = \"400ms\"\n\
         \n[[pool]]\nfqdn = \"{se02}\"\nedition = \"standard\"\n\
         \n  [[pool.server]]\n  fqdn = \"{se02}\"\n  role = \"standard\"\n  expected_duration = \"400ms\"\n"
    );
    let (mut first, _) = controller.worker(se01).await;
    let (mut second, _) = controller.worker(se02).await;
    let id = controller.apply("budget.toml", &toml).await.expect("apply");
    let mut follower = controller.follow(&id).await;

    // se01 starts (equal chains: fleet order); its outage is timed from its first step, which
    // then never ends.
    let assignment = first.assignment().await;
    first.send(step_started(&assignment.assignment_id, 0)).await;
    let half = follower.until("budget_warning", Some(se01)).await;
    assert!(half.detail.ends_with("outage budget (50%)"), "{half:?}");
    let most = follower.until("budget_warning", Some(se01)).await;
    assert!(most.detail.ends_with("outage budget (80%)"), "{most:?}");
    let risk = follower.until("resiliency_risk", Some(se01)).await;
    assert!(risk.detail.ends_with("outage budget (100%)"), "{risk:?}");
    let paused = follower.until("rollout_paused", None).await;
    assert!(paused.detail.starts_with("resiliency risk:"), "{paused:?}");
    let status = controller.status(&id).await;
    assert_eq!(status.state, "paused");
    assert!(
        status.note.contains(&format!("baton resume {id}")),
        "{status:?}"
    );

    // se01 comes back; nothing new starts until an operator acknowledges.
    first.complete(&assignment, true).await;
    follower.until("server_finished", Some(se01)).await;
    let status = controller.status(&id).await;
    assert_eq!(
        (status.state.as_str(), server(&status, se02).state.as_str()),
        ("paused", "pending")
    );
    let resumed = controller
        .operator()
        .resume(v1::RolloutRef {
            rollout_id: id.clone(),
            ..Default::default()
        })
        .await
        .expect("resume")
        .into_inner();
    assert_eq!(resumed.state, "running");
    assert!(resumed.note.is_empty(), "{resumed:?}");
    let next = second.assignment().await;
    second.complete(&next, true).await;
    follower.until("rollout_finished", None).await;
    assert_eq!(controller.status(&id).await.state, "finished");
}

// ---- Fencing ----------------------------------------------------------------------------------

#[tokio::test]
async fn each_controller_start_raises_the_epoch_stamped_on_welcomes_and_assignments() {
    let dir = std::env::temp_dir().join(format!("baton-epoch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let url = format!("sqlite://{}", dir.join("baton.db").display());
    let (toml, fqdns) = fleet("epoch", 1);

    let first = Controller::start_on(&url).await;
    let (session, welcome) = first.worker(&fqdns[0]).await;
    assert_eq!(welcome.epoch, 1);
    drop(session);
    first.handle.shutdown().await.expect("shutdown");

    let second = Controller::start_on(&url).await;
    let (mut session, welcome) = second.worker(&fqdns[0]).await;
    assert_eq!(
        welcome.epoch, 2,
        "a restarted controller outranks the one before"
    );
    second.apply("epoch.toml", &toml).await.expect("apply");
    assert_eq!(session.assignment().await.epoch, 2);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- Canary -----------------------------------------------------------------------------------

#[tokio::test]
async fn a_canary_rollout_waits_for_approval_after_its_first_pools() {
    let controller = Controller::start().await;
    let (toml, fqdns) = fleet("canary", 2);
    let toml = toml.replace("max_parallel = 1", "max_parallel = 2\ncanary_pools = 1");
    let (mut first, _) = controller.worker(&fqdns[0]).await;
    let (mut second, _) = controller.worker(&fqdns[1]).await;
    let id = controller.apply("canary.toml", &toml).await.expect("apply");
    let mut follower = controller.follow(&id).await;
    let rollout = || v1::RolloutRef {
        rollout_id: id.clone(),
        ..Default::default()
    };

    // Room for two, but only the canary pool runs.
    let canary = first.assignment().await;
    let status = controller.status(&id).await;
    assert_eq!(server(&status, &fqdns[1]).state, "pending");
    assert!(
        server(&status, &fqdns[1]).waited_for.starts_with("canary:"),
        "{status:?}"
    );
    let early = controller
        .operator()
        .approve(rollout())
        .await
        .expect_err("not waiting yet");
    assert_eq!(early.code(), Code::FailedPrecondition, "{early:?}");

    first.complete(&canary, true).await;
    let gate = follower.until("rollout_awaiting_approval", None).await;
    assert!(
        gate.detail.contains(&format!("baton approve {id}")),
        "{gate:?}"
    );
    let status = controller.status(&id).await;
    assert_eq!(status.state, "awaiting_approval");
    assert!(status.note.starts_with("canary:"), "{status:?}");

    let approved = controller
        .operator()
        .approve(rollout())
        .await
        .expect("approve")
        .into_inner();
    assert_eq!(approved.state, "running");
    assert!(approved.note.is_empty());
    follower.until("rollout_approved", None).await;
    let rest = second.assignment().await;
    second.complete(&rest, true).await;
    follower.until("rollout_finished", None).await;
    assert_eq!(controller.status(&id).await.state, "finished");
}

// ---- Lost workers ----------------------------------------------------------------------------

/// One EE pool with two back ends: while the first one's worker is gone, the second must not
/// start (its pool's back-end state is unknown).
fn two_backends() -> String {
    "[fleet]\nname = \"lost\"\n\
     \n[[pool]]\nfqdn = \"pool01.lost.example\"\nedition = \"enterprise\"\nsql_server = \"sql01.lost.example\"\n\
     \n  [[pool.server]]\n  fqdn = \"be01.lost.example\"\n  role = \"backend\"\n  expected_duration = \"5m\"\n\
     \n  [[pool.server]]\n  fqdn = \"be02.lost.example\"\n  role = \"backend\"\n  expected_duration = \"5m\"\n"
        .to_string()
}

#[tokio::test]
async fn a_worker_gone_mid_update_is_reported_and_its_pool_stays_held() {
    let controller = Controller::start().await;
    let (mut be01, _) = controller.worker("be01.lost.example").await;
    let (_be02, _) = controller.worker("be02.lost.example").await;
    let id = controller
        .apply("lost.toml", &two_backends())
        .await
        .expect("apply");
    let mut follower = controller.follow(&id).await;
    let assignment = be01.assignment().await;
    be01.send(step_started(&assignment.assignment_id, 0)).await;
    follower
        .until("step_started", Some("be01.lost.example"))
        .await;

    be01.close().await;
    let lost = follower
        .until("worker_lost", Some("be01.lost.example"))
        .await;
    assert!(
        lost.detail.starts_with("disconnected while in maintenance"),
        "{lost:?}"
    );
    let status = controller.status(&id).await;
    let be01_status = server(&status, "be01.lost.example");
    assert_eq!(be01_status.state, "running");
    assert!(!be01_status.worker_connected);
    assert!(be01_status.worker_lost_s.is_some(), "{be01_status:?}");
    // be02 stays pending: R1 still holds with be01's state unknown.
    let be02_status = server(&status, "be02.lost.example");
    assert_eq!(be02_status.state, "pending");
    assert!(
        be02_status.waited_for.starts_with("R1: be01"),
        "{be02_status:?}"
    );

    // The metrics name the server, for the BatonWorkerLost alert.
    let http = controller.handle.http_addr.expect("a monitoring port");
    let series = format!(
        "baton_server_worker_lost{{pool=\"pool01.lost.example\",rollout=\"{id}\",server=\"be01.lost.example\"}}"
    );
    let text = scrape_until(http, |text| sample(text, &series) == Some(1.0)).await;
    assert_eq!(sample(&text, &series), Some(1.0), "{series} in\n{text}");
    let count = format!("baton_workers_lost{{rollout=\"{id}\"}}");
    assert_eq!(sample(&text, &count), Some(1.0), "{count} in\n{text}");
    assert!(
        !text.contains("server=\"be02.lost.example\""),
        "only lost workers have a series:\n{text}"
    );
}

#[tokio::test]
async fn a_silent_worker_is_taken_as_lost() {
    let controller =
        Controller::start_with_timeout("sqlite::memory:", Duration::from_secs(1)).await;
    // A session that says hello and then nothing: no heartbeats.
    let (mut silent, _) = controller.worker("be01.lost.example").await;
    let (_be02, _) = controller.worker("be02.lost.example").await;
    let id = controller
        .apply("lost.toml", &two_backends())
        .await
        .expect("apply");
    let mut follower = controller.follow(&id).await;
    silent.assignment().await;
    let lost = follower
        .until("worker_lost", Some("be01.lost.example"))
        .await;
    assert!(
        lost.detail
            .starts_with("silent for over 1s while in maintenance"),
        "{lost:?}"
    );
    let status = silent.refused().await;
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
}

// ---- Forced abort -----------------------------------------------------------------------------

#[tokio::test]
async fn a_forced_abort_cancels_the_running_steps_and_names_their_servers() {
    let controller = Controller::start().await;
    let (toml, fqdns) = fleet("force", 2);
    let (mut first, _) = controller.worker(&fqdns[0]).await;
    let (_second, _) = controller.worker(&fqdns[1]).await;
    let id = controller.apply("force.toml", &toml).await.expect("apply");
    let mut follower = controller.follow(&id).await;
    let assignment = first.assignment().await;
    first.send(step_started(&assignment.assignment_id, 0)).await;
    follower.until("step_started", Some(&fqdns[0])).await;

    let aborted = controller
        .operator()
        .abort(v1::RolloutRef {
            rollout_id: id.clone(),
            force: true,
        })
        .await
        .expect("abort")
        .into_inner();
    assert_eq!(aborted.state, "aborting");
    let event = follower.until("rollout_aborted", None).await;
    assert_eq!(
        event.detail,
        format!(
            "requested by an operator, forced: cancelling the steps running on {} (left mid-runbook)",
            fqdns[0]
        )
    );
    // The worker is told to cancel; it confirms by reporting the assignment failed.
    match first.next().await {
        ToWorker::Cancel(cancel) => assert_eq!(cancel.assignment_id, assignment.assignment_id),
        other => panic!("expected Cancel, got {other:?}"),
    }
    first
        .send(Body::AssignmentFinished(v1::AssignmentFinished {
            assignment_id: assignment.assignment_id.clone(),
            succeeded: false,
            detail: "cancelled by the controller (abort --force), mid-runbook".into(),
        }))
        .await;
    let finished = follower.until("rollout_finished", None).await;
    assert!(finished.detail.starts_with("aborted:"), "{finished:?}");
    let status = controller.status(&id).await;
    assert_eq!(status.state, "aborted");
    assert_eq!(server(&status, &fqdns[0]).state, "failed");
    assert_eq!(server(&status, &fqdns[1]).state, "not_started");
}

#[tokio::test]
async fn a_stream_that_never_says_hello_is_ended() {
    let controller = Controller::start().await;
    // Paused once the store is open (its pool's timeouts must not jump ahead): the
    // controller's 10 s wait for hello then passes as soon as everything idles.
    tokio::time::pause();
    let (_tx, rx) = mpsc::channel::<v1::WorkerMessage>(1);
    let mut client = WorkerServiceClient::new(controller.channel.clone());
    let status = client
        .session(ReceiverStream::new(rx))
        .await
        .expect_err("no hello, no session");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        status.message().contains("no hello within 10s"),
        "{status:?}"
    );
}

// ---- Restart --------------------------------------------------------------------------------

#[tokio::test]
async fn a_stopping_controller_ends_its_workers_streams_without_calling_them_lost() {
    let dir = std::env::temp_dir().join(format!("baton-stop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let url = format!("sqlite://{}", dir.join("baton.db").display());
    let (toml, fqdns) = fleet("stop", 1);
    let first = Controller::start_on(&url).await;
    let (mut worker, _) = first.worker(&fqdns[0]).await;
    let id = first.apply("stop.toml", &toml).await.expect("apply");
    let mut follower = first.follow(&id).await;
    let assignment = worker.assignment().await;
    worker
        .send(step_started(&assignment.assignment_id, 0))
        .await;
    follower.until("step_started", Some(&fqdns[0])).await;
    drop(follower);

    // The worker stays connected, mid-step: a graceful stop must not wait for its stream.
    // The shutdown gives up on open calls after 5 s; one that has to is what this catches
    // (the stop itself takes milliseconds), not a speed.
    tokio::time::timeout(Duration::from_millis(2500), first.handle.shutdown())
        .await
        .expect("the stop waited for the worker's stream")
        .expect("shutdown");
    let ended = worker.refused().await;
    assert_eq!(ended.code(), tonic::Code::Unavailable, "{ended:?}");

    let second = Controller::start_on(&url).await;
    let events = second.events(&id).await;
    assert!(
        events.iter().all(|e| e.kind != "worker_lost"),
        "a controller's own stop is not a lost worker: {events:?}"
    );
    assert_eq!(
        server(&second.status(&id).await, &fqdns[0]).state,
        "running"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_restarted_controller_takes_the_rollout_over_from_its_log() {
    let dir = std::env::temp_dir().join(format!("baton-restart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let url = format!("sqlite://{}", dir.join("baton.db").display());
    let (toml, fqdns) = fleet("restart", 3);

    // The first controller runs se01 to its end and hands se02 out, then dies.
    let first = Controller::start_on(&url).await;
    let (mut w1, _) = first.worker(&fqdns[0]).await;
    let (mut w2, _) = first.worker(&fqdns[1]).await;
    let id = first.apply("restart.toml", &toml).await.expect("apply");
    let mut follower = first.follow(&id).await;
    let a1 = w1.assignment().await;
    w1.complete(&a1, true).await;
    let a2 = w2.assignment().await;
    w2.send(step_started(&a2.assignment_id, 0)).await;
    let before = ["before the restart".to_string()];
    w2.send(output(&a2.assignment_id, 0, &before, false)).await;
    follower.until("step_started", Some(&fqdns[1])).await;
    // Stored (the output is no event to wait for): StepLogs has it.
    while first
        .logs(&fqdns[1], &id, "")
        .await
        .expect("StepLogs")
        .is_empty()
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop((w1, w2, follower));
    first.handle.shutdown().await.expect("shutdown");

    // The second one rebuilds the rollout: se01 done, se02 still running, se03 pending.
    let second = Controller::start_on(&url).await;
    let status = second.status(&id).await;
    assert_eq!(status.state, "running");
    let states: Vec<&str> = fqdns
        .iter()
        .map(|f| server(&status, f).state.as_str())
        .collect();
    assert_eq!(states, ["succeeded", "running", "pending"]);
    // se02's worker comes back naming its assignment, which goes on and ends.
    let mut w2 = second
        .open(hello_after(&fqdns[1], &a2.assignment_id))
        .await
        .expect("session");
    w2.welcome().await;
    let mut follower = second.follow(&id).await;
    w2.complete(&a2, true).await;
    let (mut w3, _) = second.worker(&fqdns[2]).await;
    let a3 = w3.assignment().await;
    w3.complete(&a3, true).await;
    follower.until("rollout_finished", None).await;
    assert_eq!(second.status(&id).await.state, "finished");

    // One log across both controllers: contiguous, and each server started exactly once.
    let events = second.events(&id).await;
    assert_contiguous(&events);
    // The output of an attempt that spanned the restart is counted from the store.
    let finished = events
        .iter()
        .find(|e| e.kind == "step_finished" && e.server == fqdns[1])
        .expect("se02's first result");
    assert_eq!(finished.detail, "hello attempt 1: exit 0 (1 line in 1.5s)");
    let logs = second.logs(&fqdns[1], &id, "").await.expect("StepLogs");
    assert_eq!(log_lines(&logs), before);
    for fqdn in &fqdns {
        let starts = events
            .iter()
            .filter(|e| e.kind == "server_started" && &e.server == fqdn)
            .count();
        assert_eq!(starts, 1, "{fqdn}: {events:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- Step output ----------------------------------------------------------------------------

/// `(step, attempt, "out"|"err"|"note", text or note)` per `StepLogs` chunk.
fn shown(chunks: &[v1::LogChunk]) -> Vec<(String, u32, &'static str, String)> {
    chunks
        .iter()
        .map(|c| {
            let (stream, text) = if c.dropped_lines > 0 {
                ("note", format!("{}/{}", c.dropped_lines, c.dropped_bytes))
            } else if c.stderr {
                ("err", c.text.clone())
            } else {
                ("out", c.text.clone())
            };
            (c.step.clone(), c.attempt, stream, text)
        })
        .collect()
}

#[tokio::test]
async fn twenty_thousand_lines_of_one_step_come_back_in_order_from_step_logs() {
    let controller = Controller::start().await;
    let (toml, fqdns) = fleet("chatty", 1);
    let fqdn = &fqdns[0];
    let (mut session, _) = controller.worker(fqdn).await;
    let id = controller.apply("chatty.toml", &toml).await.expect("apply");
    let mut follower = controller.follow(&id).await;
    let assignment = session.assignment().await;
    let aid = assignment.assignment_id.clone();
    // Following from before the first line, in another case: all of it as it comes, and the
    // stream ends with the assignment.
    let live = controller
        .logs_stream(&fqdn.to_uppercase(), "", "", true)
        .await
        .expect("StepLogs --follow");
    let live = tokio::spawn(read_logs(live));

    session.send(step_started(&aid, 0)).await;
    let numbers: Vec<String> = (1..=20_000).map(|n| n.to_string()).collect();
    for batch in numbers.chunks(500) {
        session.send(output(&aid, 0, batch, false)).await;
    }
    session
        .send(output(&aid, 0, &["counted".to_string()], true))
        .await;
    session.complete(&assignment, true).await;
    follower.until("rollout_finished", None).await;

    let mut want = numbers.clone();
    want.push("counted".to_string());
    let logs = controller.logs(fqdn, &id, "").await.expect("StepLogs");
    assert_eq!(log_lines(&logs), want);
    assert_eq!(logs.len(), 41, "one chunk per batch");
    assert!(logs.iter().all(|c| c.step == "hello"
        && c.step_index == 0
        && c.attempt == 1
        && c.assignment_id == aid
        && c.rollout_id == id
        && &c.server == fqdn
        && c.dropped_lines == 0
        && c.note.is_empty()));
    assert!(logs[..40].iter().all(|c| !c.stderr && c.lines == 500));
    assert!(logs[40].stderr);
    assert!(logs[0].at.ends_with('Z'), "{}", logs[0].at);
    let followed = bounded("the follower's end", live).await.expect("follower");
    assert_eq!(log_lines(&followed), want);

    // No event per line: the result says how many there were.
    let events = controller.events(&id).await;
    assert!(
        !kinds(&events).contains(&"step_output"),
        "{:?}",
        kinds(&events)
    );
    let finished: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == "step_finished")
        .map(|e| e.detail.as_str())
        .collect();
    assert_eq!(
        finished,
        [
            "hello attempt 1: exit 0 (20,001 lines in 1.5s)",
            "done attempt 1: exit 0 (0 lines in 1.5s)"
        ]
    );

    // One step's output; a step the server does not have; a server in no rollout.
    assert_eq!(
        controller.logs(fqdn, &id, "done").await.expect("StepLogs"),
        []
    );
    assert_eq!(
        log_lines(&controller.logs(fqdn, "", "hello").await.expect("StepLogs")),
        want
    );
    let status = controller
        .logs(fqdn, &id, "nope")
        .await
        .expect_err("no such step");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(
        status.message().contains("its steps: hello, done"),
        "{status:?}"
    );
    let status = controller
        .logs("nobody.chatty.example", "", "")
        .await
        .expect_err("no such server");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let status = controller.logs(fqdn, "x", "").await.expect_err("bad id");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}

#[tokio::test]
async fn a_step_over_the_cap_keeps_its_head_and_tail_and_says_what_was_dropped() {
    // 1,000 bytes: the first 500 and the last 500 of each attempt are kept.
    let store = Store::connect("sqlite::memory:")
        .await
        .expect("store")
        .with_max_step_output(1000);
    let controller =
        Controller::start_with_store(store, baton_controller::Options::default()).await;
    let (toml, fqdns) = fleet("capped", 1);
    let fqdn = &fqdns[0];
    let (mut session, _) = controller.worker(fqdn).await;
    let id = controller.apply("capped.toml", &toml).await.expect("apply");
    let mut follower = controller.follow(&id).await;
    let assignment = session.assignment().await;
    let aid = assignment.assignment_id.clone();

    // 500 lines of 10 bytes with their newlines, 100 at a time.
    session.send(step_started(&aid, 0)).await;
    let lines: Vec<String> = (1..=500).map(|n| format!("line-{n:04}")).collect();
    for batch in lines.chunks(100) {
        session.send(output(&aid, 0, batch, false)).await;
    }
    session.complete(&assignment, true).await;
    follower.until("rollout_finished", None).await;

    let logs = controller.logs(fqdn, &id, "").await.expect("StepLogs");
    assert_eq!(
        shown(&logs),
        [
            ("hello".to_string(), 1, "out", lines[..50].join("\n")),
            ("hello".to_string(), 1, "note", "400/4000".to_string()),
            ("hello".to_string(), 1, "out", lines[450..].join("\n")),
        ]
    );
    assert_eq!(
        logs[1].note,
        "… 400 lines (3.9 KiB) dropped here: the controller keeps the first and the last 500 B of each step attempt's output (--max-step-output 1000 B) …"
    );
    assert_eq!((logs[1].text.as_str(), logs[1].lines), ("", 0));
    let events = controller.events(&id).await;
    let finished = events
        .iter()
        .find(|e| e.kind == "step_finished")
        .expect("step_finished");
    assert_eq!(
        finished.detail,
        "hello attempt 1: exit 0 (500 lines in 1.5s; 400 lines (3.9 KiB) dropped over --max-step-output)"
    );
}

/// A rollout recorded before step output had its own table kept it as `step_output` events:
/// `StepLogs` shows them too.
#[tokio::test]
async fn output_recorded_as_events_by_an_older_controller_is_still_shown() {
    let dir = std::env::temp_dir().join(format!("baton-legacy-output-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let url = format!("sqlite://{}", dir.join("baton.db").display());
    let (toml, fqdns) = fleet("legacy", 2);
    let store = Store::connect(&url).await.expect("store");
    let rollout = store
        .create_rollout(&baton_store::NewRollout {
            fleet_name: "legacy.toml".into(),
            fleet_toml: toml.clone(),
            runbook_name: "noop.toml".into(),
            runbook_toml: RUNBOOK.into(),
            params_json: "{}".into(),
            planned_makespan_ms: 1,
            lower_bound_ms: 1,
        })
        .await
        .expect("rollout");
    for (kind, detail) in [
        ("rollout_started", "old"),
        ("step_started", "hello attempt 1"),
        ("step_output", "hello stdout: updating se01"),
        ("step_output", "hello stderr: careful: now"),
        ("step_finished", "hello attempt 1: exit 0"),
        ("step_output", "done stdout: ok"),
    ] {
        store
            .append_event(&baton_store::NewEvent {
                rollout_id: rollout.id,
                server: Some(fqdns[0].clone()),
                pool: Some(fqdns[0].clone()),
                kind: kind.into(),
                detail: detail.into(),
            })
            .await
            .expect("event");
    }
    store
        .set_rollout_state(rollout.id, "finished")
        .await
        .expect("finished");
    store.close().await;

    let controller = Controller::start_on(&url).await;
    let id = rollout.id.to_string();
    let logs = controller.logs(&fqdns[0], &id, "").await.expect("StepLogs");
    assert_eq!(
        shown(&logs),
        [
            ("hello".to_string(), 0, "out", "updating se01".to_string()),
            ("hello".to_string(), 0, "err", "careful: now".to_string()),
            ("done".to_string(), 0, "out", "ok".to_string()),
        ]
    );
    let hello = controller
        .logs(&fqdns[0], &id, "hello")
        .await
        .expect("StepLogs");
    assert_eq!(hello.len(), 2);
    assert_eq!(
        controller.logs(&fqdns[1], &id, "").await.expect("StepLogs"),
        []
    );
    let status = controller
        .logs("se09.legacy.example", &id, "")
        .await
        .expect_err("not in the fleet");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let status = controller
        .logs(&fqdns[0], "99", "")
        .await
        .expect_err("no such rollout");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- Admission by history ---------------------------------------------------------------------

#[tokio::test]
async fn a_back_end_whose_past_runs_outlast_its_budget_is_refused() {
    let controller = Controller::start().await;
    let fqdn = "se01.history.example";
    // Expected to take 100 ms, within its 300 ms budget: admitted the first time.
    let toml = format!(
        "[fleet]\nname = \"history\"\n\n[[pool]]\nfqdn = \"{fqdn}\"\nedition = \"standard\"\noutage_budget = \"300ms\"\n\n  [[pool.server]]\n  fqdn = \"{fqdn}\"\n  role = \"standard\"\n  expected_duration = \"100ms\"\n"
    );
    let (mut worker, _) = controller.worker(fqdn).await;
    let id = controller
        .apply("history.toml", &toml)
        .await
        .expect("apply");
    let mut follower = controller.follow(&id).await;
    let assignment = worker.assignment().await;
    // It really takes longer than its budget.
    tokio::time::sleep(Duration::from_millis(400)).await;
    worker.complete(&assignment, true).await;
    follower.until("rollout_finished", None).await;

    // The same steps again: its history (p95 of 1 run, over 300 ms) does not fit any more.
    let refused = controller
        .apply("history.toml", &toml)
        .await
        .expect_err("refused by history");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(
        refused
            .message()
            .starts_with(&format!("R6: {fqdn}'s past runs of these steps took")),
        "{refused:?}"
    );
    assert!(
        refused.message().contains("(p95 of 1 run(s))"),
        "{refused:?}"
    );
}

// ---- Worker journal: interrupted assignments ------------------------------------------------

/// A one-server rollout whose worker took its assignment and went down: the rollout id, the
/// server, a follower of its events, and the assignment.
async fn assigned_then_gone(
    controller: &Controller,
    name: &str,
) -> (String, String, Follower, v1::Assignment) {
    assigned_then_gone_after(controller, name, 0).await
}

/// [`assigned_then_gone`], its worker having reported its first `reported` steps succeeded.
async fn assigned_then_gone_after(
    controller: &Controller,
    name: &str,
    reported: u32,
) -> (String, String, Follower, v1::Assignment) {
    let (toml, fqdns) = fleet(name, 1);
    let (mut session, _) = controller.worker(&fqdns[0]).await;
    let id = controller
        .apply(&format!("{name}.toml"), &toml)
        .await
        .expect("apply");
    let mut follower = controller.follow(&id).await;
    let assignment = session.assignment().await;
    for index in 0..reported {
        session
            .send(step_started(&assignment.assignment_id, index))
            .await;
        session
            .send(step_finished(&assignment.assignment_id, index))
            .await;
        follower.until("step_finished", Some(&fqdns[0])).await;
    }
    session.close().await;
    let fqdn = fqdns[0].clone();
    (id, fqdn, follower, assignment)
}

#[tokio::test]
async fn an_interrupted_assignment_is_resumed_or_held_as_its_journal_and_runbook_say() {
    let dir = std::env::temp_dir().join(format!("baton-journal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let url = format!("sqlite://{}", dir.join("baton.db").display());
    let controller = Controller::start_on(&url).await;

    // Restarted during `done`, which the runbook marks idempotent: it runs again, from there.
    let (id, fqdn, mut follower, first) = assigned_then_gone_after(&controller, "resume", 1).await;
    let fqdns = [fqdn];
    assert_eq!(first.start_step, 0);
    assert_eq!(
        first.steps.iter().map(|s| s.idempotent).collect::<Vec<_>>(),
        [false, true]
    );
    let mut back = controller
        .open(hello_interrupted(&fqdns[0], &first.assignment_id, 1, true))
        .await
        .expect("session");
    back.welcome().await;
    let resumed = back.assignment().await;
    assert_eq!(resumed.assignment_id, first.assignment_id);
    assert_eq!(resumed.start_step, 1);
    let event = follower.until("server_resumed", Some(&fqdns[0])).await;
    assert!(
        event.detail.starts_with(&format!(
            "assignment {} resumed at step 1 (done): its worker restarted during step done",
            first.assignment_id
        )),
        "{event:?}"
    );
    assert_eq!(
        server(&controller.status(&id).await, &fqdns[0]).state,
        "running"
    );

    // The controller restarts now: the replayed log keeps the resumed server running.
    back.close().await;
    drop(follower);
    controller.handle.shutdown().await.expect("shutdown");
    let controller = Controller::start_on(&url).await;
    assert_eq!(
        server(&controller.status(&id).await, &fqdns[0]).state,
        "running"
    );
    let mut back = controller
        .open(hello_after(&fqdns[0], &first.assignment_id))
        .await
        .expect("session");
    back.welcome().await;
    let mut follower = controller.follow(&id).await;
    back.complete(&resumed, true).await;
    follower.until("rollout_finished", None).await;
    assert_eq!(
        server(&controller.status(&id).await, &fqdns[0]).state,
        "succeeded"
    );
    back.close().await;

    // Restarted before a step began: nothing half done, so it goes on even though `hello`
    // is not idempotent.
    let (id, fqdn, mut follower, first) = assigned_then_gone(&controller, "between").await;
    let fqdns = [fqdn];
    let mut back = controller
        .open(hello_interrupted(&fqdns[0], &first.assignment_id, 0, false))
        .await
        .expect("session");
    back.welcome().await;
    assert_eq!(back.assignment().await.start_step, 0);
    follower.until("server_resumed", Some(&fqdns[0])).await;
    back.complete(&first, true).await;
    follower.until("rollout_finished", None).await;
    back.close().await;

    // Restarted during `hello`, which is not idempotent: held for an operator, pool and all.
    // A step index past the end is as unknown.
    // Each is settled by a different operator action.
    for (name, step_index, expected, action, end_state) in [
        (
            "midstep",
            0,
            "its worker restarted during step hello of assignment",
            "mark_failed",
            "failed",
        ),
        (
            "pastend",
            7,
            "but it has 2 steps",
            "mark_succeeded",
            "succeeded",
        ),
        // Its journal says `hello` succeeded, but that result never reached the controller:
        // not taken on the journal's word.
        (
            "unreported",
            1,
            "but only those before index 0 were reported",
            "mark_failed",
            "failed",
        ),
    ] {
        let (id, fqdn, mut follower, first) = assigned_then_gone(&controller, name).await;
        let fqdns = [fqdn];
        let mut back = controller
            .open(hello_interrupted(
                &fqdns[0],
                &first.assignment_id,
                step_index,
                true,
            ))
            .await
            .expect("session");
        back.welcome().await;
        let event = follower
            .until("server_needs_attention", Some(&fqdns[0]))
            .await;
        assert!(event.detail.contains(expected), "{name}: {event:?}");
        assert!(event.detail.contains("baton resolve"), "{name}: {event:?}");
        let status = controller.status(&id).await;
        assert_eq!(server(&status, &fqdns[0]).state, "needs_attention");
        // Settled by an operator, the rollout ends.
        controller
            .operator()
            .resolve(v1::ResolveRequest {
                rollout_id: id.clone(),
                server: fqdns[0].clone(),
                action: action.to_string(),
            })
            .await
            .expect("resolve");
        follower.until("rollout_finished", None).await;
        assert_eq!(
            server(&controller.status(&id).await, &fqdns[0]).state,
            end_state
        );
        back.close().await;
    }
    let events = controller.events(&id).await;
    assert_contiguous(&events);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- Maintenance windows ---------------------------------------------------------------------

/// `fleet_of` with a fleet-wide window from `start` to `end` minutes after UTC midnight.
fn fleet_with_window(name: &str, fqdns: &[String], start: u64, end: u64) -> String {
    let hhmm = |m: u64| format!("{:02}:{:02}", m % 1440 / 60, m % 60);
    fleet_of(name, fqdns).replacen(
        "max_parallel = 1\n",
        &format!(
            "max_parallel = 1\n\n[[window]]\nstart = \"{}\"\nend = \"{}\"\ntime_zone = \"UTC\"\n",
            hhmm(start),
            hhmm(end)
        ),
        1,
    )
}

#[tokio::test]
async fn a_server_starts_only_inside_its_maintenance_window() {
    let controller = Controller::start().await;
    let minute_now = (baton_store::now_ms() / 60_000 % 1440) as u64;

    // Open from a minute ago for two hours: the 1-minute server starts at once.
    let fqdns = vec!["se01.open.example".to_string()];
    let toml = fleet_with_window("open", &fqdns, minute_now + 1439, minute_now + 119);
    let (mut session, _) = controller.worker(&fqdns[0]).await;
    let id = controller.apply("open.toml", &toml).await.expect("apply");
    let assignment = session.assignment().await;
    session.complete(&assignment, true).await;
    let mut follower = controller.follow(&id).await;
    follower.until("rollout_finished", None).await;

    // Opening in two hours: the server waits, the rollout stays open, and status says why.
    let fqdns = vec!["se01.closed.example".to_string()];
    let toml = fleet_with_window("closed", &fqdns, minute_now + 120, minute_now + 180);
    let (_session, _) = controller.worker(&fqdns[0]).await;
    let id = controller.apply("closed.toml", &toml).await.expect("apply");
    let status = controller.status(&id).await;
    assert_eq!(status.state, "running");
    let waiting = server(&status, &fqdns[0]);
    assert_eq!(waiting.state, "pending");
    assert!(
        waiting
            .waited_for
            .starts_with("window: se01 fits its next window (daily ")
            && waiting.waited_for.contains(" UTC) at "),
        "{waiting:?}"
    );
    // Nothing was started.
    assert!(
        !kinds(&controller.events(&id).await).contains(&"server_started"),
        "a server started outside its window"
    );
}

// ---- Metrics -------------------------------------------------------------------------------

/// `GET path` on the controller's monitoring port (HTTP/1.0: the answer ends with the
/// connection).
async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .expect("request");
    let mut answer = String::new();
    bounded("an HTTP answer", stream.read_to_string(&mut answer))
        .await
        .expect("answer");
    answer
}

/// The value of the sample whose name and labels are exactly `series`.
/// Scrapes `/metrics` until `done` holds for its text (the gauges are refreshed once a second
/// by the watch loop), 10 s at most; returns the last scrape.
async fn scrape_until(http: std::net::SocketAddr, done: impl Fn(&str) -> bool) -> String {
    let mut text = String::new();
    for _ in 0..200 {
        text = http_get(http, "/metrics").await;
        if done(&text) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    text
}

fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

#[tokio::test]
async fn metrics_follow_a_rollout_and_pass_promtool() {
    let controller = Controller::start().await;
    let http = controller.handle.http_addr.expect("a monitoring port");
    assert!(http_get(http, "/healthz").await.starts_with("HTTP/1.0 200"));
    assert!(http_get(http, "/readyz").await.starts_with("HTTP/1.0 200"));

    let (toml, fqdns) = fleet("metrics", 2);
    let (mut w1, _) = controller.worker(&fqdns[0]).await;
    let (mut w2, _) = controller.worker(&fqdns[1]).await;
    let id = controller
        .apply("metrics.toml", &toml)
        .await
        .expect("apply");
    let mut follower = controller.follow(&id).await;
    let a1 = w1.assignment().await;
    w1.complete(&a1, true).await;
    let a2 = w2.assignment().await;
    w2.complete(&a2, false).await;
    follower.until("rollout_finished", None).await;

    // The gauges' snapshot is refreshed by the watch loop (once a second): wait for it.
    let rollout = format!("rollout=\"{id}\"");
    let finished = format!("baton_rollout_state{{{rollout},state=\"finished\"}}");
    let text = scrape_until(http, |text| sample(text, &finished) == Some(1.0)).await;
    assert!(text.starts_with("HTTP/1.0 200"), "{text}");
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let expect = |series: String, value: f64| {
        assert_eq!(sample(&body, &series), Some(value), "{series} in\n{body}");
    };
    expect(
        format!("baton_servers{{{rollout},state=\"succeeded\"}}"),
        1.0,
    );
    expect(format!("baton_servers{{{rollout},state=\"failed\"}}"), 1.0);
    expect(format!("baton_servers{{{rollout},state=\"pending\"}}"), 0.0);
    expect(format!("baton_rollout_progress_ratio{{{rollout}}}"), 1.0);
    expect(format!("baton_rollout_eta_seconds{{{rollout}}}"), 0.0);
    expect(
        format!("baton_rollout_state{{{rollout},state=\"running\"}}"),
        0.0,
    );
    expect("baton_workers_connected".to_string(), 2.0);
    expect(
        format!(
            "baton_server_failures_total{{pool=\"{}\",{rollout}}}",
            fqdns[1]
        ),
        1.0,
    );
    expect(
        format!(
            "baton_server_failures_total{{pool=\"{}\",{rollout}}}",
            fqdns[0]
        ),
        0.0,
    );
    // Two steps per server, each finished once: four step durations.
    let steps: f64 = body
        .lines()
        .filter(|l| l.starts_with("baton_step_duration_seconds_count"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(steps, 4.0, "{body}");
    // Timed by the worker's clock (StepFinished.duration_ms), not by when messages arrived.
    let seconds: f64 = body
        .lines()
        .filter(|l| l.starts_with("baton_step_duration_seconds_sum"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(seconds, 4.0 * STEP_MS as f64 / 1000.0, "{body}");
    assert_eq!(
        sample(&body, "baton_dispatch_latency_seconds_count").unwrap_or(0.0),
        1.0,
        "se02 was dispatched when se01's slot freed: {body}"
    );

    // Lint-clean for Prometheus, when promtool is installed (CI installs it).
    match std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(mut promtool) => {
            use std::io::Write as _;
            promtool
                .stdin
                .take()
                .expect("stdin")
                .write_all(body.as_bytes())
                .expect("feed promtool");
            let out = promtool.wait_with_output().expect("promtool runs");
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                out.status.success() && said.trim().is_empty(),
                "promtool: {said}"
            );
        }
        // CI sets BATON_REQUIRE_PROMETHEUS: there the lint must run.
        Err(err) if std::env::var_os("BATON_REQUIRE_PROMETHEUS").is_some() => {
            panic!("BATON_REQUIRE_PROMETHEUS is set but promtool cannot run: {err}")
        }
        Err(err) => eprintln!("promtool not installed ({err}): lint skipped"),
    }
}

#[tokio::test]
async fn a_finished_rollouts_gauges_go_after_they_have_been_kept() {
    let options = baton_controller::Options {
        http: Some("127.0.0.1:0".parse().unwrap()),
        finished_series_kept: Duration::ZERO,
        ..baton_controller::Options::default()
    };
    let controller = Controller::start_with_options("sqlite::memory:", options).await;
    let http = controller.handle.http_addr.expect("a monitoring port");
    let (toml, fqdns) = fleet("kept", 1);
    let (mut worker, _) = controller.worker(&fqdns[0]).await;
    let id = controller.apply("kept.toml", &toml).await.expect("apply");
    let mut follower = controller.follow(&id).await;
    let series = format!("baton_rollout_state{{rollout=\"{id}\",state=\"running\"}}");
    // While it runs, it is exported.
    let text = scrape_until(http, |text| sample(text, &series).is_some()).await;
    assert_eq!(sample(&text, &series), Some(1.0), "{series} in\n{text}");
    let assignment = worker.assignment().await;
    worker.complete(&assignment, true).await;
    follower.until("rollout_finished", None).await;
    // Kept for zero seconds: its gauges are gone at the next refresh, while the controller
    // still knows it. Counters stay: they are cumulative, and dropping one would read as a
    // reset.
    let rollout = format!("rollout=\"{id}\"");
    let gauges = |text: &str| {
        text.lines()
            .filter(|line| line.contains(&rollout) && !line.contains("_total{"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let text = scrape_until(http, |text| gauges(text).is_empty()).await;
    assert_eq!(gauges(&text), Vec::<String>::new(), "in\n{text}");
    assert_eq!(controller.status(&id).await.state, "finished");
}

#[tokio::test]
async fn status_says_when_the_rollout_is_expected_to_end() {
    let controller = Controller::start().await;
    let (toml, fqdns) = fleet("eta", 2);
    let (mut w1, _) = controller.worker(&fqdns[0]).await;
    let (mut w2, _) = controller.worker(&fqdns[1]).await;
    let id = controller.apply("eta.toml", &toml).await.expect("apply");
    let a1 = w1.assignment().await;
    // The estimate comes from the watch loop's simulation (once a second): wait for it.
    let mut remaining = None;
    for _ in 0..200 {
        remaining = controller.status(&id).await.expected_remaining_s;
        if remaining.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Two servers one after the other (max_parallel 1), each expected to take the runbook's
    // 1m: the rollout is expected to end 2m after it began, and it began moments ago.
    let remaining = remaining.expect("an estimate while the rollout runs");
    assert!(remaining > 100.0 && remaining <= 120.0, "{remaining}");
    let mut follower = controller.follow(&id).await;
    w1.complete(&a1, true).await;
    let a2 = w2.assignment().await;
    w2.complete(&a2, true).await;
    follower.until("rollout_finished", None).await;
    assert_eq!(controller.status(&id).await.expected_remaining_s, None);
}

/// Heartbeats refresh memory only: `baton servers` shows the newest one at once, while the
/// store keeps the connect time until the batched flush (every 10 s, and at shutdown) writes
/// it in one statement.
#[tokio::test]
async fn heartbeats_refresh_memory_and_reach_the_store_in_a_batch() {
    let dir = std::env::temp_dir().join(format!("baton-seen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("baton.db").display());
    let controller = Controller::start_on(&url).await;
    let fqdn = "beat01.nowhere.example";
    let (session, _) = controller.worker(fqdn).await;
    let reader = Store::connect(&url)
        .await
        .expect("a second handle on the store");
    let stored = || async {
        reader
            .workers()
            .await
            .unwrap()
            .first()
            .and_then(|row| row.last_heartbeat_ms)
    };
    // Registrations reach the store in the next batch (every watch round).
    let connected_at = bounded("the registration to be written", async {
        loop {
            if let Some(at) = stored().await {
                break at;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // Wait (on the clock, not a fixed sleep) until a heartbeat's time differs from it.
    while baton_store::now_ms() <= connected_at {
        tokio::task::yield_now().await;
    }
    session.send(Body::Heartbeat(v1::Heartbeat {})).await;
    // `baton servers` shows it from memory as soon as the stream's reader has it...
    let shown = bounded("the heartbeat to show", async {
        loop {
            let shown = controller.workers().await[0].last_heartbeat.clone();
            if shown > baton_store::rfc3339_ms(connected_at) {
                break shown;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    // ...while the store still has the connect time: no write per heartbeat (the batched
    // flush comes every 10 s).
    assert_eq!(
        stored().await,
        Some(connected_at),
        "no write per heartbeat: {shown}"
    );
    drop(session);
    controller.handle.shutdown().await.expect("shutdown");
    assert!(stored().await > Some(connected_at), "flushed at shutdown");
    reader.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fleet that grows past the heartbeat rate the controller aims at: workers welcomed early
/// (told 1 s) are told a longer interval in a second `Welcome`, on the same stream.
#[tokio::test]
async fn workers_welcomed_early_are_told_a_longer_heartbeat_as_the_fleet_grows() {
    let options = baton_controller::Options {
        // Two heartbeats a second fleet-wide: five workers already call for 2.5 s each.
        heartbeats_per_second: 2,
        ..baton_controller::Options::default()
    };
    let controller = Controller::start_with_options("sqlite::memory:", options).await;
    let (mut first, welcome) = controller.worker("early01.grow.example").await;
    assert_eq!(welcome.heartbeat_interval_ms, 1000);
    let mut others = Vec::new();
    for i in 2..=5 {
        others.push(controller.worker(&format!("w{i:02}.grow.example")).await);
    }
    // The last one was told what five connected workers call for.
    assert_eq!(others[3].1.heartbeat_interval_ms, 2000);
    // The first is told again (the controller looks every few seconds), same store and epoch.
    let again = first.welcome().await;
    assert_eq!(again.heartbeat_interval_ms, 2500, "{again:?}");
    assert_eq!(again.epoch, welcome.epoch);
    assert_eq!(again.store_id, welcome.store_id);
}
