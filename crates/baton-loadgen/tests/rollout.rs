//! The load generator against a real controller, in process: 20 simulated workers carry a
//! 20-server rollout (one Standard Edition pool each, at most 5 at a time) to its end over
//! loopback gRPC; every server must succeed, no stream may drop, and the summary's counts must
//! match what the controller saw.
//!
//! Event-driven: the test waits on the controller's event stream for `rollout_finished` and on
//! the load generator's own end; the timeouts are only a safety net against a hang.

use std::future::Future;
use std::time::Duration;

use baton_loadgen::{Config, ControllerProcess, FqdnPattern, fleet};
use baton_proto::v1;
use baton_proto::v1::operator_service_client::OperatorServiceClient;
use baton_store::Store;
use tokio::sync::oneshot;
use tonic::transport::Endpoint;

const WORKERS: usize = 20;
const STEPS: u32 = 2;
const OUTPUT_LINES: u32 = 3;
const STEP_TIME: Duration = Duration::from_millis(50);

/// Safety bound only.
const BOUND: Duration = Duration::from_secs(20);

async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_simulated_workers_carry_a_rollout_to_its_end() {
    let store = Store::connect("sqlite::memory:").await.expect("store");
    let options = baton_controller::Options {
        http: Some("127.0.0.1:0".parse().unwrap()),
        ..baton_controller::Options::default()
    };
    let controller = baton_controller::start_with(store, "127.0.0.1:0".parse().unwrap(), options)
        .await
        .expect("controller starts");
    let url = format!("http://{}", controller.addr);
    let http = controller.http_addr.expect("a monitoring port");

    let pattern: FqdnPattern = "w{i:02}.load.test".parse().unwrap();
    let mut config = Config::new(url.clone(), WORKERS);
    config.fqdn_pattern = pattern.clone();
    config.step_time = STEP_TIME;
    config.output_lines = OUTPUT_LINES;
    config.connect_rate = 0.0;
    config.controller_process = ControllerProcess::None;
    config.metrics_url = Some(format!("http://{http}/metrics"));
    let (stop, stopped) = oneshot::channel::<()>();
    let loadgen = tokio::spawn(baton_loadgen::run(config, async {
        let _ = stopped.await;
    }));

    // The rollout: workers not yet connected get their assignments when they say hello.
    let channel = Endpoint::from_shared(url)
        .unwrap()
        .connect()
        .await
        .expect("connect to the controller");
    let mut operator = OperatorServiceClient::new(channel);
    let rollout_id = operator
        .apply(v1::ApplyRequest {
            fleet_name: "load.toml".into(),
            fleet_toml: fleet::fleet_toml("load", &pattern, WORKERS, Some(5)),
            runbook_name: "loadgen.toml".into(),
            runbook_toml: fleet::runbook_toml(STEPS, STEP_TIME),
            params: Default::default(),
        })
        .await
        .expect("apply")
        .into_inner()
        .rollout_id;
    let mut events = operator
        .stream_events(v1::EventsRequest {
            rollout_id: rollout_id.clone(),
            after_seq: 0,
            follow: true,
        })
        .await
        .expect("StreamEvents")
        .into_inner();
    bounded("rollout_finished", async {
        loop {
            let event = events
                .message()
                .await
                .expect("StreamEvents failed")
                .expect("the event stream ended before rollout_finished");
            if event.kind == "rollout_finished" {
                break;
            }
        }
    })
    .await;

    let status = operator
        .get_status(v1::RolloutRef {
            rollout_id: rollout_id.clone(),
            ..Default::default()
        })
        .await
        .expect("GetStatus")
        .into_inner();
    assert_eq!(status.state, "finished");
    assert_eq!(status.servers.len(), WORKERS);
    for server in &status.servers {
        assert_eq!(server.state, "succeeded", "{server:?}");
    }

    stop.send(()).expect("the load generator still runs");
    let summary = bounded("the load generator's summary", loadgen)
        .await
        .expect("the load generator task")
        .expect("the load generator ran");
    let c = &summary.counts;
    assert_eq!(summary.ended_by, "stopped");
    assert_eq!(c.welcomed_workers, WORKERS as u64);
    assert!(c.all_welcomed_after_s.is_some());
    assert_eq!(c.assignments_received, WORKERS as u64);
    assert_eq!(c.assignments_finished, WORKERS as u64);
    assert_eq!(c.assignments_failed, 0);
    assert_eq!(c.steps_finished, WORKERS as u64 * u64::from(STEPS));
    assert_eq!(
        c.output_lines_sent,
        WORKERS as u64 * u64::from(STEPS * OUTPUT_LINES)
    );
    assert_eq!(c.drops, 0, "{:?}", c.stream_ends);
    assert_eq!(c.reconnects, 0, "{:?}", c.stream_ends);
    assert_eq!(c.refusals, 0, "{:?}", c.stream_ends);
    assert_eq!(c.discards, 0);
    assert_eq!(c.connected, WORKERS as u64);
    assert_eq!(c.welcome_ms.count, WORKERS);
    // The controller timed its own dispatches; the scrape found them.
    assert_eq!(summary.metrics_error, None);
    let dispatch = summary.dispatch_latency.as_ref().expect("dispatch latency");
    assert!(dispatch.count >= 1.0, "{dispatch:?}");
    assert!(dispatch.p99_ms.is_some());
    eprintln!("{}", summary.human());
    // The summary's two forms.
    assert!(
        summary.human().contains("20 finished"),
        "{}",
        summary.human()
    );
    let json = serde_json::to_value(&summary).unwrap();
    assert_eq!(json["counts"]["assignments_finished"], 20);

    controller.shutdown().await.expect("controller stops");
}
