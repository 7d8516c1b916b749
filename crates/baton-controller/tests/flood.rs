//! A busy controller slows its workers down instead of dropping them (issue #11), in process:
//! 40 played workers run their assignments at once and each floods the controller with
//! repeated step reports as fast as the stream takes them. Every worker stays connected, every
//! server succeeds, no event is lost (`seq` contiguous, each server's reports all recorded),
//! and the owner loop applied messages in batches (its histogram says more than one message per
//! batch on average), one transaction per batch. The owner's inbox is kept small, so the flood
//! fills it: the readers wait (backpressure, counted) and no worker is dropped for it.
//!
//! Deterministic in outcome: every wait is on a response or a stream; the timeouts are only a
//! safety net against a hang.

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

const BOUND: Duration = Duration::from_secs(60);

async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

const SERVERS: usize = 40;
/// Failed attempts of the gate step each worker reports before its success: the flood.
const ATTEMPTS: u32 = 100;

const RUNBOOK: &str = r#"
[runbook]
name = "flood"
shell = "sh"
expected_duration = "1m"

[[step]]
id = "prepare"
run = "true"
timeout = "1m"

[[step]]
id = "gate"
run = "true"
timeout = "1h"
retries = 1000
"#;

fn fleet() -> (String, Vec<String>) {
    let fqdns: Vec<String> = (1..=SERVERS)
        .map(|i| format!("se{i:02}.flood.example"))
        .collect();
    let mut toml = format!("[fleet]\nname = \"flood\"\nmax_parallel = {SERVERS}\n");
    for fqdn in &fqdns {
        toml.push_str(&format!(
            "\n[[pool]]\nfqdn = \"{fqdn}\"\nedition = \"standard\"\n\n  [[pool.server]]\n  fqdn = \"{fqdn}\"\n  role = \"standard\"\n"
        ));
    }
    (toml, fqdns)
}

fn message(body: Body) -> v1::WorkerMessage {
    v1::WorkerMessage { body: Some(body) }
}

/// Plays one worker: hello, its assignment, then every report as fast as the stream takes it.
/// Returns what the controller said after the assignment (it must be nothing: no refusal, no
/// discard), once the controller has closed the stream at shutdown or the test ends.
async fn play_worker(channel: Channel, fqdn: String) {
    let (tx, rx) = mpsc::channel(16);
    tx.send(message(Body::Hello(v1::Hello {
        fqdn: fqdn.clone(),
        version: "flood".into(),
        platform: "test".into(),
        ..Default::default()
    })))
    .await
    .unwrap();
    let mut inbound = WorkerServiceClient::new(channel)
        .session(ReceiverStream::new(rx))
        .await
        .expect("session")
        .into_inner();
    let mut assignment = None;
    while assignment.is_none() {
        match bounded("an assignment", inbound.message())
            .await
            .expect("stream")
            .and_then(|m| m.body)
        {
            Some(ToWorker::Assignment(a)) => assignment = Some(a),
            Some(ToWorker::Welcome(_)) => {}
            other => panic!("{fqdn}: unexpected {other:?}"),
        }
    }
    let assignment = assignment.unwrap();
    let id = assignment.assignment_id.clone();
    let send = |body| {
        let tx = tx.clone();
        async move { tx.send(message(body)).await.expect("the stream is open") }
    };
    send(Body::AssignmentAccepted(v1::AssignmentAccepted {
        assignment_id: id.clone(),
    }))
    .await;
    let finished = |index, attempt, exit_code| {
        Body::StepFinished(v1::StepFinished {
            assignment_id: id.clone(),
            step_index: index,
            attempt,
            exit_code,
            ..Default::default()
        })
    };
    let started = |index, attempt| {
        Body::StepStarted(v1::StepStarted {
            assignment_id: id.clone(),
            step_index: index,
            attempt,
        })
    };
    send(started(0, 1)).await;
    send(finished(0, 1, 0)).await;
    for attempt in 1..=ATTEMPTS {
        send(started(1, attempt)).await;
        let exit = if attempt == ATTEMPTS { 0 } else { 1 };
        send(finished(1, attempt, exit)).await;
    }
    send(Body::AssignmentFinished(v1::AssignmentFinished {
        assignment_id: id,
        succeeded: true,
        detail: String::new(),
    }))
    .await;
    // Kept open until the test is done with it: a closed stream would be a lost worker.
    let _ = bounded("the controller to end the stream", async {
        while let Ok(Some(m)) = inbound.message().await {
            assert!(
                !matches!(m.body, Some(ToWorker::Discard(_))),
                "{fqdn}: {m:?}"
            );
        }
    })
    .await;
    drop(tx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_reports_is_applied_in_batches_and_drops_no_worker() {
    let store = Store::connect("sqlite::memory:").await.expect("store");
    let options = baton_controller::Options {
        http: Some("127.0.0.1:0".parse().unwrap()),
        // A small inbox, so the flood fills it and the readers must wait.
        owner_inbox: 16,
        ..baton_controller::Options::default()
    };
    let handle = baton_controller::start_with(store, "127.0.0.1:0".parse().unwrap(), options)
        .await
        .expect("controller");
    let channel = Endpoint::from_shared(format!("http://{}", handle.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut operator = OperatorServiceClient::new(channel.clone());
    let (toml, fqdns) = fleet();

    let mut workers = Vec::new();
    for fqdn in &fqdns {
        // Each worker its own connection, as real ones have.
        let channel = Endpoint::from_shared(format!("http://{}", handle.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        workers.push(tokio::spawn(play_worker(channel, fqdn.clone())));
    }
    // Every worker registered before the rollout starts, so all are assigned at once.
    bounded("the workers to connect", async {
        loop {
            let listed = operator
                .list_servers(v1::ListServersRequest {})
                .await
                .unwrap()
                .into_inner();
            if listed.workers.iter().filter(|w| w.connected).count() == SERVERS {
                break;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    let id = operator
        .apply(v1::ApplyRequest {
            fleet_name: "flood.toml".into(),
            fleet_toml: toml,
            runbook_name: "flood.toml".into(),
            runbook_toml: RUNBOOK.into(),
            params: Default::default(),
        })
        .await
        .expect("apply")
        .into_inner()
        .rollout_id;
    let mut follow = operator
        .stream_events(v1::EventsRequest {
            rollout_id: id.clone(),
            after_seq: 0,
            follow: true,
        })
        .await
        .unwrap()
        .into_inner();
    let mut events = Vec::new();
    while let Some(event) = bounded("the rollout's events", follow.message())
        .await
        .expect("events")
    {
        let done = event.kind == "rollout_finished";
        events.push(event);
        if done {
            break;
        }
    }

    // Nothing lost, nobody dropped.
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    let want: Vec<u64> = (1..=events.len() as u64).collect();
    assert_eq!(seqs, want, "seq is contiguous");
    assert!(
        events.iter().all(|e| e.kind != "worker_lost"),
        "a busy controller drops nobody"
    );
    for fqdn in &fqdns {
        let mine = |kind: &str| {
            events
                .iter()
                .filter(|e| e.server == *fqdn && e.kind == kind)
                .count()
        };
        assert_eq!(mine("step_started"), 1 + ATTEMPTS as usize, "{fqdn}");
        assert_eq!(mine("step_finished"), 1 + ATTEMPTS as usize, "{fqdn}");
        assert_eq!(mine("server_finished"), 1, "{fqdn}");
    }
    let finished = events.last().expect("the end");
    assert!(
        finished
            .detail
            .starts_with(&format!("finished: {SERVERS} succeeded")),
        "{finished:?}"
    );

    // The owner applied the flood in batches: more messages than batches.
    let http = handle.http_addr.expect("a monitoring port");
    let text = http_get(http, "/metrics").await;
    let batches = sample(&text, "baton_owner_batch_messages_count").expect("batches");
    let messages = sample(&text, "baton_owner_batch_messages_sum").expect("messages");
    assert!(
        messages >= (SERVERS as f64) * f64::from(2 * ATTEMPTS),
        "every report went through the owner: {messages}"
    );
    assert!(
        messages > batches,
        "{messages} messages in {batches} batches"
    );
    let commits = sample(&text, "baton_owner_commit_seconds_count").expect("commits");
    assert!(commits <= batches, "one commit per batch at most");
    // Backpressure engaged: readers found the inbox full and waited, and nobody was dropped.
    let waits = sample(&text, "baton_owner_inbox_full_total").expect("inbox waits");
    assert!(waits > 0.0, "the readers never had to wait");

    handle.shutdown().await.expect("shutdown");
    for worker in workers {
        worker.await.expect("the played worker saw no discard");
    }
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    text
}

fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}
