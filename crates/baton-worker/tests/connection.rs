//! The connection loop against a fake controller on loopback: Hello first, Welcome, an
//! assignment's messages in order, heartbeats, refusal and reconnects, a busy worker, and an
//! assignment that outlives its stream.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use baton_proto::v1::worker_message::Body;
use baton_proto::v1::worker_service_server::{WorkerService, WorkerServiceServer};
use baton_proto::v1::{
    Assignment, Cancel, ControllerMessage, Step, Welcome, WorkerMessage, controller_message,
};
use baton_worker::{BackoffPolicy, Executor, ShellExecutor, WorkerConfig};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
use tonic::{Request, Response, Status, Streaming};

#[path = "../src/test_support.rs"]
mod test_support;
use test_support::{TempDir, still_running};

/// Safety bound only: every wait below is on a channel.
const BOUND: Duration = Duration::from_secs(20);

async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// One accepted stream, as the test sees it.
struct Conn {
    inbound: mpsc::UnboundedReceiver<WorkerMessage>,
    outbound: mpsc::UnboundedSender<Result<ControllerMessage, Status>>,
}

impl Conn {
    /// The next message that is not a heartbeat.
    async fn next(&mut self) -> Body {
        loop {
            let message = bounded("a worker message", self.inbound.recv())
                .await
                .expect("stream from the worker ended");
            match message.body.expect("message without body") {
                Body::Heartbeat(_) => continue,
                body => return body,
            }
        }
    }

    /// The next message, which must be a heartbeat: nothing else was said before it.
    async fn only_heartbeat(&mut self) {
        let message = bounded("a heartbeat", self.inbound.recv())
            .await
            .expect("stream from the worker ended");
        assert!(
            matches!(message.body, Some(Body::Heartbeat(_))),
            "expected only a heartbeat, got {message:?}"
        );
    }

    async fn next_heartbeat(&mut self) {
        loop {
            let message = bounded("a heartbeat", self.inbound.recv())
                .await
                .expect("stream from the worker ended");
            if let Some(Body::Heartbeat(_)) = message.body {
                return;
            }
        }
    }

    async fn expect_hello(&mut self, fqdn: &str) {
        self.expect_hello_after(fqdn, "").await;
    }

    /// Hello, naming the last assignment this worker process received ("" for none).
    async fn expect_hello_after(&mut self, fqdn: &str, last_assignment: &str) {
        match self.next().await {
            Body::Hello(hello) => {
                assert_eq!(hello.fqdn, fqdn);
                assert_eq!(hello.version, env!("CARGO_PKG_VERSION"));
                assert_eq!(hello.platform, std::env::consts::OS);
                assert_eq!(hello.assignment_id, last_assignment);
            }
            other => panic!("first message is not Hello: {other:?}"),
        }
    }

    /// The worker took `id` on.
    async fn expect_accepted(&mut self, id: &str) {
        match self.next().await {
            Body::AssignmentAccepted(a) => assert_eq!(a.assignment_id, id),
            other => panic!("expected {id} accepted: {other:?}"),
        }
    }

    /// Hello from a worker that restarted: its journal's last assignment, and where it stopped.
    async fn expect_hello_interrupted(&mut self, last: &str, at: Option<(u32, bool)>) {
        match self.next().await {
            Body::Hello(hello) => {
                assert_eq!(hello.assignment_id, last);
                let got = hello.interrupted.map(|i| (i.step_index, i.step_started));
                assert_eq!(got, at);
            }
            other => panic!("first message is not Hello: {other:?}"),
        }
    }

    fn send(&self, body: controller_message::Body) {
        self.outbound
            .send(Ok(ControllerMessage { body: Some(body) }))
            .expect("stream to the worker is gone");
    }

    fn welcome(&self, known: bool, heartbeat_interval_ms: u32) {
        self.send(controller_message::Body::Welcome(Welcome {
            known,
            note: if known {
                String::new()
            } else {
                "be01 is not in any fleet".into()
            },
            heartbeat_interval_ms,
            epoch: 0,
            store_id: STORE.into(),
        }));
    }

    fn assign(&self, assignment: Assignment) {
        self.send(controller_message::Body::Assignment(assignment));
    }
}

/// A `WorkerService` that hands every accepted stream to the test, after refusing the first
/// few calls with the statuses in `refusals`.
struct FakeController {
    conns: mpsc::UnboundedSender<Conn>,
    refusals: Mutex<VecDeque<Status>>,
}

#[tonic::async_trait]
impl WorkerService for FakeController {
    type SessionStream = UnboundedReceiverStream<Result<ControllerMessage, Status>>;

    async fn session(
        &self,
        request: Request<Streaming<WorkerMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        if let Some(status) = self.refusals.lock().unwrap().pop_front() {
            return Err(status);
        }
        let mut stream = request.into_inner();
        let (in_tx, inbound) = mpsc::unbounded_channel();
        let (outbound, out_rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(message)) = stream.message().await {
                if in_tx.send(message).is_err() {
                    break;
                }
            }
        });
        let _ = self.conns.send(Conn { inbound, outbound });
        Ok(Response::new(UnboundedReceiverStream::new(out_rx)))
    }
}

struct Harness {
    conns: mpsc::UnboundedReceiver<Conn>,
    stop_worker: Option<oneshot::Sender<()>>,
    worker: JoinHandle<Result<(), baton_worker::WorkerError>>,
    server: JoinHandle<()>,
}

impl Harness {
    async fn start(fqdn: &str, refusals: Vec<Status>) -> Self {
        Self::start_with(fqdn, refusals, None).await
    }

    /// A worker that keeps its journal in `state_dir`.
    async fn start_with(
        fqdn: &str,
        refusals: Vec<Status>,
        state_dir: Option<&std::path::Path>,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (conns_tx, conns) = mpsc::unbounded_channel();
        let fake = FakeController {
            conns: conns_tx,
            refusals: Mutex::new(refusals.into()),
        };
        let server = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(WorkerServiceServer::new(fake))
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await
                .unwrap();
        });

        let mut config = WorkerConfig::new(
            format!("http://{addr}"),
            fqdn,
            Executor::Shell(ShellExecutor::default()),
        );
        // Quick reconnects keep the test fast; the policy itself is unit-tested.
        config.backoff = BackoffPolicy {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(50),
            healthy_after: Duration::from_millis(50),
        };
        config.state_dir = state_dir.map(std::path::Path::to_path_buf);
        let (stop_worker, stopped) = oneshot::channel::<()>();
        let worker = tokio::spawn(baton_worker::run(config, async move {
            let _ = stopped.await;
        }));
        Self {
            conns,
            stop_worker: Some(stop_worker),
            worker,
            server,
        }
    }

    async fn next_conn(&mut self) -> Conn {
        bounded("a connection", self.conns.recv())
            .await
            .expect("fake controller gone")
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop_worker.take() {
            let _ = stop.send(());
        }
        bounded("the worker to stop", &mut self.worker)
            .await
            .expect("worker task panicked")
            .expect("worker returned an error");
        self.server.abort();
    }
}

fn sh_step(id: &str, command: &str) -> Step {
    Step {
        id: id.into(),
        command: command.into(),
        timeout_ms: 30_000,
        retries: 0,
        gate_interval_ms: 0,
        idempotent: false,
        trace_context: Default::default(),
    }
}

/// The played controller's store.
const STORE: &str = "00000000000000aa";

fn assignment(id: &str, steps: Vec<Step>) -> Assignment {
    Assignment {
        assignment_id: id.into(),
        rollout_id: "r1".into(),
        shell: "sh".into(),
        steps,
        expected_duration_ms: 1000,
        epoch: 0,
        start_step: 0,
        store_id: STORE.into(),
    }
}

#[tokio::test]
async fn runs_an_assignment_and_reconnects_when_the_stream_ends() {
    let mut h = Harness::start("web01.contoso.com", vec![]).await;
    let mut conn = h.next_conn().await;
    conn.expect_hello("web01.contoso.com").await;
    conn.welcome(true, 50);
    conn.assign(assignment(
        "a1",
        vec![
            sh_step("prepare", "echo one; echo oops >&2"),
            sh_step("install", "echo two"),
        ],
    ));
    conn.expect_accepted("a1").await;

    // Step 0: started, its two lines (stdout and stderr may interleave), finished.
    match conn.next().await {
        Body::StepStarted(s) => {
            assert_eq!(
                (s.assignment_id.as_str(), s.step_index, s.attempt),
                ("a1", 0, 1)
            )
        }
        other => panic!("expected StepStarted: {other:?}"),
    }
    let mut lines = Vec::new();
    for _ in 0..2 {
        match conn.next().await {
            Body::StepOutput(o) => {
                assert_eq!((o.assignment_id.as_str(), o.step_index), ("a1", 0));
                lines.push((o.text, o.stderr));
            }
            other => panic!("expected StepOutput: {other:?}"),
        }
    }
    lines.sort();
    assert_eq!(
        lines,
        [("one".to_owned(), false), ("oops".to_owned(), true)]
    );
    match conn.next().await {
        Body::StepFinished(f) => {
            assert_eq!((f.step_index, f.attempt, f.exit_code), (0, 1, 0));
            assert!(!f.timed_out);
            assert!(f.error.is_empty());
        }
        other => panic!("expected StepFinished: {other:?}"),
    }

    // Step 1.
    assert!(
        matches!(conn.next().await, Body::StepStarted(s) if s.step_index == 1 && s.attempt == 1)
    );
    assert!(
        matches!(conn.next().await, Body::StepOutput(o) if o.step_index == 1 && o.text == "two" && !o.stderr)
    );
    assert!(
        matches!(conn.next().await, Body::StepFinished(f) if f.step_index == 1 && f.exit_code == 0)
    );
    match conn.next().await {
        Body::AssignmentFinished(f) => {
            assert_eq!(f.assignment_id, "a1");
            assert!(f.succeeded, "{}", f.detail);
        }
        other => panic!("expected AssignmentFinished: {other:?}"),
    }

    // The controller ends the stream: the worker comes back with a new Hello, which names
    // the assignment it ran so the controller knows nothing was lost.
    drop(conn);
    let mut again = h.next_conn().await;
    again.expect_hello_after("web01.contoso.com", "a1").await;
    // Once welcomed by a controller of the same store, it says again what the broken stream
    // may have lost: the acknowledgement, each step's start and result, the result.
    again.welcome(true, 1000);
    again.expect_accepted("a1").await;
    let mut replayed = Vec::new();
    loop {
        match again.next().await {
            Body::StepStarted(s) => replayed.push(format!("started {}", s.step_index)),
            Body::StepFinished(f) => replayed.push(format!("finished {}", f.step_index)),
            Body::AssignmentFinished(f) => {
                assert!(f.succeeded && f.assignment_id == "a1", "{f:?}");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        replayed,
        ["started 0", "finished 0", "started 1", "finished 1"]
    );
    h.stop().await;
}

#[tokio::test]
async fn an_unknown_worker_stays_connected_and_sends_heartbeats() {
    let mut h = Harness::start("be01", vec![]).await;
    let mut conn = h.next_conn().await;
    conn.expect_hello("be01").await;
    conn.welcome(false, 10);
    for _ in 0..3 {
        conn.next_heartbeat().await;
    }
    // Still the same stream: no reconnect happened.
    assert!(h.conns.try_recv().is_err());
    h.stop().await;
}

#[tokio::test]
async fn a_refused_stream_is_retried() {
    let refusals = vec![
        Status::already_exists("web01 already has a stream"),
        Status::invalid_argument("try again"),
    ];
    let mut h = Harness::start("web01", refusals).await;
    let mut conn = h.next_conn().await;
    conn.expect_hello("web01").await;
    h.stop().await;
}

#[tokio::test]
async fn a_busy_worker_refuses_and_its_assignment_outlives_the_stream() {
    let dir = TempDir::new();
    let go = dir.path().join("go");
    let mut h = Harness::start("web02", vec![]).await;
    let mut conn = h.next_conn().await;
    conn.expect_hello("web02").await;
    conn.welcome(true, 1000);
    // Waits for the test to create `go` (polling inside the shell, not in the test).
    let wait = format!(
        "while [ ! -e '{}' ]; do sleep 0.01; done; echo went",
        go.display()
    );
    conn.assign(assignment("a1", vec![sh_step("wait", &wait)]));
    conn.expect_accepted("a1").await;
    assert!(matches!(conn.next().await, Body::StepStarted(s) if s.assignment_id == "a1"));

    conn.assign(assignment("a2", vec![sh_step("other", "true")]));
    match conn.next().await {
        Body::AssignmentFinished(f) => {
            assert_eq!(f.assignment_id, "a2");
            assert!(!f.succeeded);
            assert_eq!(f.detail, "worker busy with assignment a1");
        }
        other => panic!("expected a2 refused: {other:?}"),
    }

    // The stream ends while a1 runs; the next Hello names a1, which finishes and reports on
    // the next stream. After the Welcome, what the broken stream may have lost is said
    // again: a1's reports so far, and the last other result (a2's refusal).
    drop(conn);
    let mut conn = h.next_conn().await;
    conn.expect_hello_after("web02", "a1").await;
    conn.welcome(true, 1000);
    conn.expect_accepted("a1").await;
    assert!(matches!(conn.next().await, Body::StepStarted(s) if s.assignment_id == "a1"));
    assert!(
        matches!(conn.next().await, Body::AssignmentFinished(f) if f.assignment_id == "a2" && !f.succeeded)
    );
    std::fs::write(&go, "").unwrap();
    assert!(
        matches!(conn.next().await, Body::StepOutput(o) if o.assignment_id == "a1" && o.text == "went")
    );
    assert!(
        matches!(conn.next().await, Body::StepFinished(f) if f.assignment_id == "a1" && f.exit_code == 0)
    );
    assert!(
        matches!(conn.next().await, Body::AssignmentFinished(f) if f.assignment_id == "a1" && f.succeeded)
    );
    h.stop().await;
}

#[tokio::test]
async fn stopping_the_worker_kills_the_running_step() {
    let dir = TempDir::new();
    let pid_file = dir.path().join("sleep.pid");
    let mut h = Harness::start("web03", vec![]).await;
    let mut conn = h.next_conn().await;
    conn.expect_hello("web03").await;
    conn.welcome(true, 1000);
    let command = format!(
        "sleep 30 & echo $! > '{}'; echo started; wait",
        pid_file.display()
    );
    conn.assign(assignment("a1", vec![sh_step("long", &command)]));
    conn.expect_accepted("a1").await;
    assert!(matches!(conn.next().await, Body::StepStarted(_)));
    assert!(matches!(conn.next().await, Body::StepOutput(o) if o.text == "started"));

    h.stop().await;
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        !still_running(pid),
        "step process {pid} survived the worker"
    );
}

#[tokio::test]
async fn an_assignment_from_an_older_controller_epoch_is_refused() {
    let mut h = Harness::start("web04", vec![]).await;
    let mut conn = h.next_conn().await;
    conn.expect_hello("web04").await;
    conn.send(controller_message::Body::Welcome(Welcome {
        known: true,
        note: String::new(),
        heartbeat_interval_ms: 1000,
        epoch: 5,
        store_id: STORE.into(),
    }));
    // Made by a controller that has since been replaced: refused without running anything.
    conn.assign(Assignment {
        epoch: 4,
        ..assignment("old", vec![sh_step("s", "true")])
    });
    match conn.next().await {
        Body::AssignmentFinished(f) => {
            assert_eq!(f.assignment_id, "old");
            assert!(!f.succeeded);
            assert_eq!(
                f.detail,
                "stale assignment from controller epoch 4 (epoch 5 seen since)"
            );
        }
        other => panic!("expected the stale assignment refused: {other:?}"),
    }
    // The current epoch's assignment runs.
    conn.assign(Assignment {
        epoch: 5,
        ..assignment("new", vec![sh_step("s", "true")])
    });
    conn.expect_accepted("new").await;
    assert!(matches!(conn.next().await, Body::StepStarted(s) if s.assignment_id == "new"));
    h.stop().await;
}

#[tokio::test]
async fn a_cancel_kills_the_running_step_and_reports_the_assignment_failed() {
    let mut h = Harness::start("web05", vec![]).await;
    let mut conn = h.next_conn().await;
    conn.expect_hello("web05").await;
    conn.welcome(true, 1000);
    conn.send(controller_message::Body::Cancel(Cancel {
        assignment_id: "nothing-here".into(),
    }));
    conn.assign(assignment("a1", vec![sh_step("long", "sleep 30")]));
    conn.expect_accepted("a1").await;
    assert!(matches!(conn.next().await, Body::StepStarted(s) if s.assignment_id == "a1"));
    conn.send(controller_message::Body::Cancel(Cancel {
        assignment_id: "a1".into(),
    }));
    match conn.next().await {
        Body::AssignmentFinished(f) => {
            assert_eq!(f.assignment_id, "a1");
            assert!(!f.succeeded);
            assert_eq!(
                f.detail,
                "cancelled by the controller (abort --force), mid-runbook"
            );
        }
        other => panic!("expected a1 cancelled: {other:?}"),
    }
    h.stop().await;
}

#[tokio::test]
async fn a_restarted_worker_tells_where_its_assignment_stopped_and_resumes_from_there() {
    let dir = TempDir::new();
    let state = dir.path().join("state");
    let mut h = Harness::start_with("web05", vec![], Some(&state)).await;
    let mut conn = h.next_conn().await;
    conn.expect_hello("web05").await;
    conn.welcome(true, 1000);
    conn.assign(assignment(
        "a1",
        vec![
            sh_step("quick", "true"),
            sh_step("long", "echo started; sleep 30"),
            sh_step("last", "echo last"),
        ],
    ));
    conn.expect_accepted("a1").await;
    assert!(matches!(conn.next().await, Body::StepStarted(s) if s.step_index == 0));
    assert!(matches!(conn.next().await, Body::StepFinished(f) if f.step_index == 0));
    assert!(matches!(conn.next().await, Body::StepStarted(s) if s.step_index == 1));
    assert!(matches!(conn.next().await, Body::StepOutput(o) if o.text == "started"));
    // The process goes down in the middle of step 1.
    h.stop().await;

    let mut h = Harness::start_with("web05", vec![], Some(&state)).await;
    let mut conn = h.next_conn().await;
    conn.expect_hello_interrupted("a1", Some((1, true))).await;
    conn.welcome(true, 1000);
    // The controller resumes it at step 1 (say the step is idempotent).
    let mut resumed = assignment(
        "a1",
        vec![
            sh_step("quick", "true"),
            sh_step("long", "echo again"),
            sh_step("last", "echo last"),
        ],
    );
    resumed.start_step = 1;
    conn.assign(resumed);
    let mut started = Vec::new();
    loop {
        match conn.next().await {
            Body::StepStarted(s) => started.push(s.step_index),
            Body::AssignmentFinished(f) => {
                assert_eq!(f.assignment_id, "a1");
                assert!(f.succeeded, "{}", f.detail);
                break;
            }
            _ => {}
        }
    }
    assert_eq!(started, [1, 2], "steps before start_step are not run again");
    h.stop().await;

    // Restarted once more: the result and its steps are on disk and are said again to a
    // controller of the store that issued them, after its Welcome.
    let mut h = Harness::start_with("web05", vec![], Some(&state)).await;
    let mut conn = h.next_conn().await;
    conn.expect_hello_interrupted("a1", None).await;
    conn.welcome(true, 1000);
    conn.expect_accepted("a1").await;
    let mut finished = Vec::new();
    loop {
        match conn.next().await {
            Body::StepFinished(f) => finished.push((f.step_index, f.exit_code)),
            Body::AssignmentFinished(f) => {
                assert!(f.assignment_id == "a1" && f.succeeded, "{f:?}");
                break;
            }
            _ => {}
        }
    }
    assert_eq!(finished, [(1, 0), (2, 0)]);
    h.stop().await;
}

/// A Welcome from a controller on `store`.
fn welcome_from(store: &str) -> controller_message::Body {
    controller_message::Body::Welcome(Welcome {
        known: true,
        note: String::new(),
        heartbeat_interval_ms: 1000,
        epoch: 1,
        store_id: store.into(),
    })
}

/// Runs `a1` (one quick step) to its end with a worker keeping its journal in `state`.
async fn finish_one_assignment(fqdn: &str, state: &std::path::Path) {
    let mut h = Harness::start_with(fqdn, vec![], Some(state)).await;
    let mut conn = h.next_conn().await;
    conn.expect_hello(fqdn).await;
    conn.welcome(true, 1000);
    conn.assign(assignment("a1", vec![sh_step("quick", "true")]));
    conn.expect_accepted("a1").await;
    while !matches!(conn.next().await, Body::AssignmentFinished(_)) {}
    h.stop().await;
}

#[tokio::test]
async fn a_result_from_another_store_is_archived_not_sent() {
    let dir = TempDir::new();
    let state = dir.path().join("state");
    finish_one_assignment("web06", &state).await;

    // The team moved the controller to another database: its store differs.
    let mut h = Harness::start_with("web06", vec![], Some(&state)).await;
    let mut conn = h.next_conn().await;
    match conn.next().await {
        Body::Hello(hello) => {
            assert_eq!(hello.assignment_id, "a1");
            assert_eq!(
                hello.assignment_store_id, STORE,
                "the journal names its store"
            );
        }
        other => panic!("{other:?}"),
    }
    conn.send(welcome_from("00000000000000bb"));
    // Nothing about a1 is sent: the next message is a heartbeat.
    conn.only_heartbeat().await;
    let archive = std::fs::read_to_string(state.join("journal.archive.jsonl")).unwrap();
    assert!(archive.contains("00000000000000bb"), "{archive}");
    assert!(
        !state.join("journal.jsonl").exists(),
        "the journal is clean"
    );
    // The next stream's Hello names nothing.
    drop(conn);
    let mut conn = h.next_conn().await;
    conn.expect_hello("web06").await;
    h.stop().await;
}

#[tokio::test]
async fn a_discarded_assignment_is_archived_and_never_said_again() {
    let dir = TempDir::new();
    let state = dir.path().join("state");
    finish_one_assignment("web07", &state).await;

    let mut h = Harness::start_with("web07", vec![], Some(&state)).await;
    let mut conn = h.next_conn().await;
    conn.expect_hello_after("web07", "a1").await;
    conn.welcome(true, 1000);
    conn.expect_accepted("a1").await;
    // The controller (same store) answers that it can never count.
    conn.send(controller_message::Body::Discard(
        baton_proto::v1::Discard {
            assignment_id: "a1".into(),
            reason: "assignment a1: already settled".into(),
        },
    ));
    // What was queued before the Discard arrived may still come; then only heartbeats.
    loop {
        let message = bounded("a message", conn.inbound.recv()).await.unwrap();
        match message.body.unwrap() {
            Body::Heartbeat(_) => break,
            Body::StepStarted(_) | Body::StepFinished(_) | Body::AssignmentFinished(_) => {}
            other => panic!("{other:?}"),
        }
    }
    let archive = std::fs::read_to_string(state.join("journal.archive.jsonl")).unwrap();
    assert!(archive.contains("already settled"), "{archive}");
    drop(conn);
    let mut conn = h.next_conn().await;
    conn.expect_hello("web07").await;
    conn.welcome(true, 1000);
    conn.only_heartbeat().await;
    h.stop().await;
}

#[tokio::test]
async fn an_assignment_the_journal_cannot_record_is_refused_without_running() {
    let dir = TempDir::new();
    let state = dir.path().join("state");
    let marker = dir.path().join("ran");
    let mut h = Harness::start_with("web06", vec![], Some(&state)).await;
    let mut conn = h.next_conn().await;
    conn.expect_hello("web06").await;
    conn.welcome(true, 1000);
    // The state folder is gone and a file sits in its place: nothing can be written there.
    std::fs::remove_dir_all(&state).unwrap();
    std::fs::write(&state, "").unwrap();
    let command = format!("touch '{}'", marker.display());
    conn.assign(assignment("a1", vec![sh_step("touch", &command)]));
    match conn.next().await {
        Body::AssignmentFinished(f) => {
            assert_eq!(f.assignment_id, "a1");
            assert!(!f.succeeded);
            assert!(f.detail.starts_with("not started: journal"), "{}", f.detail);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(
        !marker.exists(),
        "the step ran although it was not journaled"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_second_welcome_only_changes_the_heartbeat_interval() {
    let mut h = Harness::start("web08", vec![]).await;
    let mut conn = h.next_conn().await;
    conn.expect_hello("web08").await;
    conn.welcome(true, 60_000);
    conn.assign(assignment("a1", vec![sh_step("quick", "true")]));
    conn.expect_accepted("a1").await;
    while !matches!(conn.next().await, Body::AssignmentFinished(_)) {}
    // The fleet grew: the controller tells a new interval on the same stream. Nothing is said
    // again (no replay); heartbeats come at the new pace.
    conn.welcome(true, 20);
    conn.only_heartbeat().await;
    conn.only_heartbeat().await;
    assert!(h.conns.try_recv().is_err(), "still the same stream");
    h.stop().await;
}
