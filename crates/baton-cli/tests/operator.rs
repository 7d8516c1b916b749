//! The operator commands end to end: the real `baton` binary against a fake controller (an
//! in-process `OperatorService` on 127.0.0.1, port 0) that serves canned answers and records
//! what it was asked.

use baton_proto::v1::operator_service_server::{OperatorService, OperatorServiceServer};
use baton_proto::v1::{
    ApplyRequest, ApplyResponse, Event, EventsRequest, ListServersRequest, ListServersResponse,
    LogChunk, LogsRequest, RolloutRef, RolloutStatus, ServerStatus, WorkerInfo,
};
use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use tokio_stream::Stream;
use tonic::{Code, Request, Response, Status};

/// What the fake controller answers.
#[derive(Clone, Default)]
struct Canned {
    /// `Apply`: the new id, or an error.
    apply: Option<Result<String, (Code, String)>>,
    /// `GetStatus`: served in turn, the last one repeated; none means NOT_FOUND.
    statuses: Vec<RolloutStatus>,
    workers: Vec<WorkerInfo>,
    events: Vec<Event>,
    /// `StepLogs`: served as they are (filtered by step when one is asked for); a server
    /// named `nobody.contoso.com` is NOT_FOUND.
    logs: Vec<LogChunk>,
}

/// What the fake controller was asked, in order.
#[derive(Default)]
struct Recorded {
    apply: Vec<ApplyRequest>,
    /// (rpc, rollout id) for GetStatus, Pause, Resume, Abort.
    calls: Vec<(&'static str, String)>,
    events: Vec<EventsRequest>,
    logs: Vec<LogsRequest>,
    list_servers: usize,
}

struct Fake {
    canned: Canned,
    recorded: Arc<Mutex<Recorded>>,
}

impl Fake {
    fn record(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.recorded.lock().expect("recorder lock")
    }

    fn control(
        &self,
        rpc: &'static str,
        id: String,
        state: &str,
    ) -> Result<Response<RolloutStatus>, Status> {
        self.record().calls.push((rpc, id.clone()));
        if id == "nope" {
            return Err(Status::not_found("no rollout nope"));
        }
        Ok(Response::new(RolloutStatus {
            rollout_id: id,
            state: state.to_string(),
            ..RolloutStatus::default()
        }))
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<Event, Status>> + Send>>;
type LogStream = Pin<Box<dyn Stream<Item = Result<LogChunk, Status>> + Send>>;

#[tonic::async_trait]
impl OperatorService for Fake {
    async fn apply(
        &self,
        request: Request<ApplyRequest>,
    ) -> Result<Response<ApplyResponse>, Status> {
        self.record().apply.push(request.into_inner());
        match self.canned.apply.clone().expect("no canned Apply") {
            Ok(rollout_id) => Ok(Response::new(ApplyResponse { rollout_id })),
            Err((code, message)) => Err(Status::new(code, message)),
        }
    }

    async fn get_status(
        &self,
        request: Request<RolloutRef>,
    ) -> Result<Response<RolloutStatus>, Status> {
        let id = request.into_inner().rollout_id;
        let served = {
            let mut recorded = self.record();
            recorded.calls.push(("get_status", id.clone()));
            recorded
                .calls
                .iter()
                .filter(|(rpc, _)| *rpc == "get_status")
                .count()
                - 1
        };
        let statuses = &self.canned.statuses;
        match statuses.get(served).or(statuses.last()) {
            Some(status) => Ok(Response::new(status.clone())),
            None => Err(Status::not_found(format!("no rollout {id:?}"))),
        }
    }

    async fn pause(&self, request: Request<RolloutRef>) -> Result<Response<RolloutStatus>, Status> {
        self.control("pause", request.into_inner().rollout_id, "paused")
    }

    async fn resume(
        &self,
        request: Request<RolloutRef>,
    ) -> Result<Response<RolloutStatus>, Status> {
        self.control("resume", request.into_inner().rollout_id, "running")
    }

    async fn abort(&self, request: Request<RolloutRef>) -> Result<Response<RolloutStatus>, Status> {
        self.control("abort", request.into_inner().rollout_id, "aborting")
    }

    async fn approve(
        &self,
        request: Request<RolloutRef>,
    ) -> Result<Response<RolloutStatus>, Status> {
        self.control("approve", request.into_inner().rollout_id, "running")
    }

    async fn resolve(
        &self,
        request: Request<baton_proto::v1::ResolveRequest>,
    ) -> Result<Response<RolloutStatus>, Status> {
        let request = request.into_inner();
        let rpc = match request.action.as_str() {
            "retry" => "resolve --retry",
            "mark_succeeded" => "resolve --mark-succeeded",
            _ => "resolve --mark-failed",
        };
        self.control(
            rpc,
            format!("{} {}", request.rollout_id, request.server),
            "running",
        )
    }

    async fn list_servers(
        &self,
        _request: Request<ListServersRequest>,
    ) -> Result<Response<ListServersResponse>, Status> {
        self.record().list_servers += 1;
        Ok(Response::new(ListServersResponse {
            workers: self.canned.workers.clone(),
        }))
    }

    type StepLogsStream = LogStream;

    async fn step_logs(
        &self,
        request: Request<LogsRequest>,
    ) -> Result<Response<LogStream>, Status> {
        let request = request.into_inner();
        let step = request.step.clone();
        let unknown = request.server == "nobody.contoso.com";
        self.record().logs.push(request);
        if unknown {
            return Err(Status::not_found(
                "no rollout includes nobody.contoso.com, and none has output from it",
            ));
        }
        let chunks: Vec<Result<LogChunk, Status>> = self
            .canned
            .logs
            .iter()
            .filter(|c| step.is_empty() || c.step == step)
            .cloned()
            .map(Ok)
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    type StreamEventsStream = EventStream;

    async fn stream_events(
        &self,
        request: Request<EventsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let request = request.into_inner();
        let after = request.after_seq;
        self.record().events.push(request);
        let events: Vec<Result<Event, Status>> = self
            .canned
            .events
            .iter()
            .filter(|e| e.seq > after)
            .cloned()
            .map(Ok)
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(events))))
    }
}

/// A running fake controller; stops when dropped (with its runtime).
struct Controller {
    url: String,
    recorded: Arc<Mutex<Recorded>>,
    _runtime: tokio::runtime::Runtime,
}

impl Controller {
    fn start(canned: Canned) -> Controller {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("test runtime");
        // Bound before the binary runs, so it never races the server's start.
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local addr").port();
        let recorded = Arc::new(Mutex::new(Recorded::default()));
        let fake = Fake {
            canned,
            recorded: Arc::clone(&recorded),
        };
        runtime.spawn(
            tonic::transport::Server::builder()
                .add_service(OperatorServiceServer::new(fake))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        Controller {
            url: format!("http://127.0.0.1:{port}"),
            recorded,
            _runtime: runtime,
        }
    }

    fn recorded(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.recorded.lock().expect("recorder lock")
    }

    fn baton(&self, args: &[&str]) -> Output {
        let mut all = vec!["--controller", self.url.as_str()];
        all.extend_from_slice(args);
        baton(&all)
    }
}

fn baton(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(args)
        .env_remove("BATON_CONTROLLER")
        .output()
        .expect("run baton")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[track_caller]
fn assert_ok(out: &Output) {
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(out));
    assert!(stderr(out).is_empty(), "stderr: {}", stderr(out));
}

/// Exit 1, nothing on stdout, and exactly one line on stderr: `error: ` + `says`.
#[track_caller]
fn assert_error(out: &Output, says: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(stdout(out).is_empty(), "stdout: {}", stdout(out));
    assert!(err.starts_with("error: "), "stderr: {err}");
    assert!(err.contains(says), "stderr should contain {says:?}: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// A fresh directory per test, removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("baton-op-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        fs::write(&path, text).expect("write fixture");
        path.to_str().expect("UTF-8 temp path").to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn server(fqdn: &str, pool: &str, state: &str) -> ServerStatus {
    ServerStatus {
        fqdn: fqdn.into(),
        pool: pool.into(),
        role: "FrontEnd".into(),
        state: state.into(),
        worker_connected: true,
        ..ServerStatus::default()
    }
}

fn rollout(state: &str, elapsed_s: f64, servers: Vec<ServerStatus>) -> RolloutStatus {
    RolloutStatus {
        rollout_id: "r-1".into(),
        fleet: "contoso".into(),
        state: state.into(),
        created_at: "2026-11-03T10:00:00Z".into(),
        elapsed_s,
        planned_makespan_s: 1200.0,
        lower_bound_s: 1000.0,
        servers,
        note: String::new(),
        trace_id: String::new(),
        expected_remaining_s: None,
    }
}

fn event(seq: u64, server: &str, kind: &str, detail: &str) -> Event {
    Event {
        seq,
        at: format!("2026-11-03T10:00:{seq:02}.000Z"),
        rollout: "r-1".into(),
        server: server.into(),
        pool: if server.is_empty() {
            String::new()
        } else {
            "fe".into()
        },
        kind: kind.into(),
        detail: detail.into(),
    }
}

fn keys(value: &serde_json::Value) -> BTreeSet<&str> {
    value
        .as_object()
        .expect("a JSON object")
        .keys()
        .map(String::as_str)
        .collect()
}

#[test]
fn apply_sends_both_files_and_params_and_prints_the_id() {
    let controller = Controller::start(Canned {
        apply: Some(Ok("r-7".into())),
        ..Canned::default()
    });
    let dir = TempDir::new("apply");
    let fleet = dir.write("fleet.toml", "name = \"contoso\"\n# fleet\n");
    let runbook = dir.write("runbook.toml", "name = \"cu\"\n# runbook\n");
    let out = controller.baton(&[
        "apply",
        &fleet,
        "--runbook",
        &runbook,
        "--param",
        "package_path=D:\\CU\\a=b.exe",
        "--param",
        "reboot=yes",
    ]);
    assert_ok(&out);
    assert_eq!(stdout(&out), "r-7\n");
    let recorded = controller.recorded();
    assert_eq!(recorded.apply.len(), 1);
    let request = &recorded.apply[0];
    assert_eq!(request.fleet_name, fleet);
    assert_eq!(request.fleet_toml, "name = \"contoso\"\n# fleet\n");
    assert_eq!(request.runbook_name, runbook);
    assert_eq!(request.runbook_toml, "name = \"cu\"\n# runbook\n");
    let expected: HashMap<String, String> = [
        ("package_path".to_string(), "D:\\CU\\a=b.exe".to_string()),
        ("reboot".to_string(), "yes".to_string()),
    ]
    .into();
    assert_eq!(request.params, expected);
}

#[test]
fn apply_invalid_argument_is_one_error_line() {
    let message = "fleet.toml line 3: pool.max_down = 0: must be at least 1";
    let controller = Controller::start(Canned {
        apply: Some(Err((Code::InvalidArgument, message.into()))),
        ..Canned::default()
    });
    let dir = TempDir::new("apply_invalid");
    let fleet = dir.write("fleet.toml", "x");
    let runbook = dir.write("runbook.toml", "y");
    let out = controller.baton(&["apply", &fleet, "--runbook", &runbook]);
    assert_error(&out, message);
    assert_eq!(stderr(&out), format!("error: {message}\n"));
}

#[test]
fn apply_with_a_missing_file_says_so_before_connecting() {
    let controller = Controller::start(Canned::default());
    let dir = TempDir::new("apply_missing");
    let runbook = dir.write("runbook.toml", "y");
    let out = controller.baton(&["apply", "no-such-fleet.toml", "--runbook", &runbook]);
    assert_error(&out, "cannot read no-such-fleet.toml");
    assert!(controller.recorded().apply.is_empty());
}

fn sample_status() -> RolloutStatus {
    rollout(
        "running",
        75.0,
        vec![
            ServerStatus {
                start_s: Some(0.0),
                end_s: Some(60.0),
                ..server("fe1.contoso.com", "fe", "succeeded")
            },
            ServerStatus {
                start_s: Some(60.0),
                current_step: "install_cu".into(),
                ..server("fe2.contoso.com", "fe", "running")
            },
            ServerStatus {
                waited_for: "pool fe: at most 1 server down".into(),
                ..server("fe3.contoso.com", "fe", "pending")
            },
        ],
    )
}

#[test]
fn status_json_has_exactly_the_documented_keys() {
    let controller = Controller::start(Canned {
        statuses: vec![sample_status()],
        ..Canned::default()
    });
    let out = controller.baton(&["status", "--format", "json"]);
    assert_ok(&out);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("status JSON");
    assert_eq!(
        keys(&json),
        BTreeSet::from([
            "rollout_id",
            "fleet",
            "state",
            "created_at",
            "elapsed_s",
            "planned_makespan_s",
            "lower_bound_s",
            "note",
            "trace_id",
            "expected_remaining_s",
            "servers",
        ])
    );
    assert_eq!(json["rollout_id"], "r-1");
    assert_eq!(json["state"], "running");
    assert_eq!(json["elapsed_s"], 75.0);
    let servers = json["servers"].as_array().expect("servers array");
    assert_eq!(servers.len(), 3);
    for s in servers {
        assert_eq!(
            keys(s),
            BTreeSet::from([
                "fqdn",
                "pool",
                "role",
                "state",
                "start_s",
                "end_s",
                "waited_for",
                "current_step",
                "worker_connected",
                "worker_lost_s",
            ])
        );
    }
    // The controller's order, and absent times as null.
    assert_eq!(servers[0]["fqdn"], "fe1.contoso.com");
    assert_eq!(servers[1]["current_step"], "install_cu");
    assert_eq!(servers[2]["start_s"], serde_json::Value::Null);
    assert_eq!(servers[2]["waited_for"], "pool fe: at most 1 server down");
    // No id given: the newest rollout, asked for with an empty id.
    assert_eq!(
        controller.recorded().calls,
        vec![("get_status", String::new())]
    );
}

#[test]
fn status_table_shows_heading_pools_and_servers() {
    let controller = Controller::start(Canned {
        statuses: vec![sample_status()],
        ..Canned::default()
    });
    let out = controller.baton(&["status", "r-1"]);
    assert_ok(&out);
    let text = stdout(&out);
    assert!(
        text.starts_with("Rollout r-1 of fleet contoso: running, elapsed 00:01:15"),
        "{text}"
    );
    assert!(
        text.contains("planned makespan 00:20, lower bound 00:16:40"),
        "{text}"
    );
    assert!(text.contains("pool fe  1/3 done, 1 running"), "{text}");
    for needle in [
        "fe1.contoso.com",
        "install_cu",
        "pool fe: at most 1 server down",
        "waited for",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    assert_eq!(
        controller.recorded().calls,
        vec![("get_status", "r-1".to_string())]
    );
}

#[test]
fn status_of_an_unknown_rollout_is_the_controllers_error() {
    let controller = Controller::start(Canned::default());
    let out = controller.baton(&["status", "r-404"]);
    assert_error(&out, "no rollout \"r-404\"");
}

#[test]
fn events_are_json_lines_with_exactly_seven_keys() {
    let controller = Controller::start(Canned {
        events: vec![
            event(1, "", "rollout_started", ""),
            event(2, "fe1.contoso.com", "server_started", ""),
            event(3, "fe1.contoso.com", "step_started", "install_cu"),
            event(4, "fe1.contoso.com", "step_finished", "install_cu exit 0"),
            event(5, "fe1.contoso.com", "server_finished", "succeeded"),
            event(6, "", "rollout_finished", ""),
        ],
        ..Canned::default()
    });
    let out = controller.baton(&["events", "r-1", "--after", "2", "--follow"]);
    assert_ok(&out);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    let mut seqs = Vec::new();
    for line in &lines {
        let json: serde_json::Value = serde_json::from_str(line).expect("one JSON object per line");
        assert_eq!(
            keys(&json),
            BTreeSet::from(["seq", "at", "rollout", "server", "pool", "kind", "detail"])
        );
        seqs.push(json["seq"].as_u64().expect("seq is a number"));
    }
    assert_eq!(seqs, vec![3, 4, 5, 6]);
    let last: serde_json::Value = serde_json::from_str(lines[3]).expect("JSON");
    assert_eq!(last["server"], "");
    assert_eq!(last["pool"], "");
    assert_eq!(last["kind"], "rollout_finished");
    let first: serde_json::Value = serde_json::from_str(lines[0]).expect("JSON");
    assert_eq!(first["server"], "fe1.contoso.com");
    assert_eq!(first["pool"], "fe");
    assert_eq!(first["detail"], "install_cu");
    assert_eq!(first["at"], "2026-11-03T10:00:03.000Z");
    let recorded = controller.recorded();
    assert_eq!(recorded.events.len(), 1);
    assert_eq!(recorded.events[0].rollout_id, "r-1");
    assert_eq!(recorded.events[0].after_seq, 2);
    assert!(recorded.events[0].follow);
}

#[test]
fn events_table_format_is_one_line_each() {
    let controller = Controller::start(Canned {
        events: vec![
            event(1, "", "rollout_started", ""),
            event(2, "fe1.contoso.com", "server_started", ""),
        ],
        ..Canned::default()
    });
    let out = controller.baton(&["events", "r-1", "--format", "table"]);
    assert_ok(&out);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].contains("rollout_started") && lines[0].ends_with(" -"),
        "{text}"
    );
    assert!(lines[1].contains("fe1.contoso.com"), "{text}");
    assert!(!controller.recorded().events[0].follow);
}

#[test]
fn pause_resume_abort_approve_call_their_rpc_and_print_the_state() {
    let controller = Controller::start(Canned::default());
    for (command, state) in [
        ("pause", "paused"),
        ("resume", "running"),
        ("abort", "aborting"),
        ("approve", "running"),
    ] {
        let out = controller.baton(&[command, "r-1"]);
        assert_ok(&out);
        assert_eq!(stdout(&out), format!("rollout r-1: {state}\n"));
    }
    assert_eq!(
        controller.recorded().calls,
        vec![
            ("pause", "r-1".to_string()),
            ("resume", "r-1".to_string()),
            ("abort", "r-1".to_string()),
            ("approve", "r-1".to_string()),
        ]
    );
    let out = controller.baton(&["abort", "nope"]);
    assert_error(&out, "no rollout nope");

    let out = controller.baton(&["resolve", "be01.contoso.com", "--rollout", "r-1", "--retry"]);
    assert_ok(&out);
    let out = controller.baton(&["resolve", "be01.contoso.com", "--mark-failed"]);
    assert_ok(&out);
    let calls = controller.recorded().calls.clone();
    assert_eq!(
        calls[calls.len() - 2..],
        [
            ("resolve --retry", "r-1 be01.contoso.com".to_string()),
            ("resolve --mark-failed", " be01.contoso.com".to_string()),
        ]
    );
    // Exactly one way to resolve.
    let out = controller.baton(&["resolve", "be01.contoso.com"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn workers() -> Vec<WorkerInfo> {
    vec![
        WorkerInfo {
            fqdn: "fe1.contoso.com".into(),
            version: "0.1.0".into(),
            platform: "windows-x86_64".into(),
            connected: true,
            last_heartbeat: "2026-11-03T10:00:05Z".into(),
            known: true,
            drops: 3,
            last_drop: "2026-11-03T10:00:01Z".into(),
        },
        WorkerInfo {
            fqdn: "stray.contoso.com".into(),
            version: "0.1.0".into(),
            platform: "linux-x86_64".into(),
            connected: false,
            last_heartbeat: String::new(),
            known: false,
            ..WorkerInfo::default()
        },
    ]
}

#[test]
fn servers_lists_workers_as_table_and_json() {
    let controller = Controller::start(Canned {
        workers: workers(),
        ..Canned::default()
    });
    let out = controller.baton(&["servers"]);
    assert_ok(&out);
    let text = stdout(&out);
    for needle in [
        "fe1.contoso.com",
        "stray.contoso.com",
        "windows-x86_64",
        "2026-11-03T10:00:05Z",
        "never",
        "last heartbeat",
        "known",
        "drops",
        "3 (last 2026-11-03T10:00:01Z)",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }

    let out = controller.baton(&["servers", "--format", "json"]);
    assert_ok(&out);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("servers JSON");
    let servers = json["servers"].as_array().expect("servers array");
    assert_eq!(servers.len(), 2);
    assert_eq!(
        keys(&servers[1]),
        BTreeSet::from([
            "fqdn",
            "version",
            "platform",
            "connected",
            "last_heartbeat",
            "known",
            "drops"
        ])
    );
    assert_eq!(servers[0]["drops"], 3);
    assert_eq!(servers[0]["last_drop"], "2026-11-03T10:00:01Z");
    assert_eq!(servers[1]["connected"], false);
    assert_eq!(servers[1]["known"], false);
    assert_eq!(controller.recorded().list_servers, 2);
}

/// A port nothing listens on: bind one, then let it go.
fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[test]
fn an_unreachable_controller_is_a_clear_error() {
    let url = format!("http://127.0.0.1:{}", dead_port());
    for args in [
        vec!["status"],
        vec!["pause", "r-1"],
        vec!["servers"],
        vec!["events", "r-1", "--follow"],
    ] {
        let mut all = vec!["--controller", url.as_str()];
        all.extend(args);
        let out = baton(&all);
        assert_error(&out, &format!("cannot reach the controller at {url}: "));
    }
}

#[test]
fn the_controller_comes_from_the_environment_too() {
    let controller = Controller::start(Canned {
        statuses: vec![sample_status()],
        ..Canned::default()
    });
    let out = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["status", "--format", "json"])
        .env("BATON_CONTROLLER", &controller.url)
        .output()
        .expect("run baton");
    assert_ok(&out);
    assert_eq!(controller.recorded().calls.len(), 1);
}

/// Three polls (500 ms apart): pending, running, then finished.
fn watched(last_state: &str) -> Vec<RolloutStatus> {
    vec![
        rollout(
            "running",
            1.0,
            vec![
                ServerStatus {
                    waited_for: "pool fe: at most 1 server down".into(),
                    ..server("fe1.contoso.com", "fe", "pending")
                },
                ServerStatus {
                    start_s: Some(0.0),
                    current_step: "drain".into(),
                    ..server("be1.contoso.com", "be", "running")
                },
            ],
        ),
        rollout(
            "running",
            2.0,
            vec![
                ServerStatus {
                    waited_for: "pool fe: at most 1 server down".into(),
                    ..server("fe1.contoso.com", "fe", "pending")
                },
                ServerStatus {
                    start_s: Some(0.0),
                    current_step: "drain".into(),
                    ..server("be1.contoso.com", "be", "running")
                },
            ],
        ),
        rollout(
            "finished",
            65.0,
            vec![
                ServerStatus {
                    start_s: Some(5.0),
                    end_s: Some(65.0),
                    ..server("fe1.contoso.com", "fe", last_state)
                },
                ServerStatus {
                    start_s: Some(0.0),
                    end_s: Some(5.0),
                    ..server("be1.contoso.com", "be", "succeeded")
                },
            ],
        ),
    ]
}

#[test]
fn watch_without_a_terminal_prints_changes_then_the_table() {
    let controller = Controller::start(Canned {
        statuses: watched("succeeded"),
        ..Canned::default()
    });
    let out = controller.baton(&["status", "--watch"]);
    assert_ok(&out);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[..3],
        [
            "00:00:01 rollout r-1 of fleet contoso: running",
            "00:00:01 fe1.contoso.com (fe): pending, waiting for pool fe: at most 1 server down",
            "00:00:01 be1.contoso.com (be): running, step drain",
        ],
        "{text}"
    );
    // The second poll changed nothing: no lines for it.
    assert_eq!(
        lines[3..6],
        [
            "00:01:05 rollout r-1 of fleet contoso: finished",
            "00:01:05 fe1.contoso.com (fe): succeeded",
            "00:01:05 be1.contoso.com (be): succeeded",
        ],
        "{text}"
    );
    assert!(
        lines[6].starts_with("Rollout r-1 of fleet contoso: finished, elapsed 00:01:05"),
        "{text}"
    );
    // The newest rollout is resolved once, then followed by id.
    assert_eq!(
        controller.recorded().calls,
        vec![
            ("get_status", String::new()),
            ("get_status", "r-1".to_string()),
            ("get_status", "r-1".to_string()),
        ]
    );
}

#[test]
fn watch_exits_1_when_a_server_failed() {
    let controller = Controller::start(Canned {
        statuses: watched("failed"),
        ..Canned::default()
    });
    let out = controller.baton(&["status", "r-1", "--watch", "--format", "json"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err,
        "error: rollout r-1 finished with 1 failed server: fe1.contoso.com\n"
    );
    // JSON mode prints just the final status, one document.
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("final status JSON");
    assert_eq!(json["state"], "finished");
    assert_eq!(json["servers"][0]["state"], "failed");
}

#[test]
fn events_to_a_closed_pipe_exit_quietly() {
    let controller = Controller::start(Canned {
        events: (1..=200)
            .map(|seq| event(seq, "fe1.contoso.com", "step_finished", "exit 0"))
            .collect(),
        ..Canned::default()
    });
    let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["--controller", &controller.url, "events", "r-1"])
        .env_remove("BATON_CONTROLLER")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("baton runs");
    drop(child.stdout.take()); // close the pipe before baton writes
    let out = child.wait_with_output().expect("baton exits");
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "{err}");
}

fn log_chunk(step: &str, attempt: u32, stderr: bool, text: &str) -> LogChunk {
    LogChunk {
        rollout_id: "r-1".into(),
        server: "fe1.contoso.com".into(),
        assignment_id: "s-1-1-1".into(),
        step: step.into(),
        attempt,
        stderr,
        text: text.into(),
        lines: text.split('\n').count() as u32,
        at: "2026-11-03T10:00:00.000Z".into(),
        ..LogChunk::default()
    }
}

fn canned_logs() -> Vec<LogChunk> {
    vec![
        log_chunk("prepare", 1, false, "stopping services\nstopped"),
        log_chunk("install_cu", 1, true, "error 1603"),
        log_chunk("install_cu", 2, false, "installing"),
        LogChunk {
            dropped_lines: 12_345,
            dropped_bytes: 1_258_291,
            note: "… 12,345 lines (1.2 MiB) dropped here: the controller keeps the first and the last 5.0 MiB of each step attempt's output (--max-step-output 10.0 MiB) …".into(),
            ..log_chunk("install_cu", 2, false, "")
        },
        log_chunk("install_cu", 2, false, "installed"),
    ]
}

#[test]
fn logs_print_one_line_per_output_line_with_its_step_and_the_drop_note() {
    let controller = Controller::start(Canned {
        logs: canned_logs(),
        ..Canned::default()
    });
    let out = controller.baton(&["logs", "fe1.contoso.com", "--rollout", "r-1", "--follow"]);
    assert_ok(&out);
    assert_eq!(
        stdout(&out),
        "prepare: stopping services\n\
         prepare: stopped\n\
         install_cu: [stderr] error 1603\n\
         install_cu (attempt 2): installing\n\
         install_cu (attempt 2): … 12,345 lines (1.2 MiB) dropped here: the controller keeps the first and the last 5.0 MiB of each step attempt's output (--max-step-output 10.0 MiB) …\n\
         install_cu (attempt 2): installed\n"
    );
    let recorded = controller.recorded();
    assert_eq!(recorded.logs.len(), 1);
    let asked = &recorded.logs[0];
    assert_eq!(
        (
            asked.server.as_str(),
            asked.rollout_id.as_str(),
            asked.step.as_str(),
            asked.follow
        ),
        ("fe1.contoso.com", "r-1", "", true)
    );
}

#[test]
fn logs_of_one_step_are_its_lines_as_they_are() {
    let controller = Controller::start(Canned {
        logs: canned_logs(),
        ..Canned::default()
    });
    let out = controller.baton(&["logs", "fe1.contoso.com", "--step", "prepare"]);
    assert_ok(&out);
    assert_eq!(stdout(&out), "stopping services\nstopped\n");
    let out = controller.baton(&["logs", "fe1.contoso.com", "--step", "install_cu"]);
    assert_ok(&out);
    assert_eq!(
        stdout(&out).lines().collect::<Vec<_>>(),
        [
            "[stderr] error 1603",
            "attempt 2: installing",
            "attempt 2: … 12,345 lines (1.2 MiB) dropped here: the controller keeps the first and the last 5.0 MiB of each step attempt's output (--max-step-output 10.0 MiB) …",
            "attempt 2: installed",
        ]
    );
    let recorded = controller.recorded();
    assert_eq!(
        (
            recorded.logs[0].rollout_id.as_str(),
            recorded.logs[0].follow
        ),
        ("", false),
        "the newest rollout, no follow"
    );
}

#[test]
fn logs_of_a_server_in_no_rollout_is_the_controllers_error() {
    let controller = Controller::start(Canned::default());
    let out = controller.baton(&["logs", "nobody.contoso.com"]);
    assert_error(&out, "no rollout includes nobody.contoso.com");
}
