//! gRPC server reflection in both versions: `grpc.reflection.v1.ServerReflection` (current
//! grpcurl, grpcui) and `grpc.reflection.v1alpha.ServerReflection` (grpcio's Python reflection,
//! older grpcurl, Postman, Evans). A real controller on 127.0.0.1 (port 0) over an in-memory
//! SQLite store, asked the way those tools ask: one `ServerReflectionInfo` stream with a
//! `list_services` request, then the file that defines a service.
//!
//! Deterministic: every wait is on a response; the timeout is only a safety net against a hang.

use std::future::Future;
use std::time::Duration;

use baton_store::Store;
use tonic::transport::{Channel, Endpoint};

/// Safety bound only: nothing below waits on the clock.
const BOUND: Duration = Duration::from_secs(30);

async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// The services every reflection version must list.
const LISTED: [&str; 5] = [
    "baton.v1.WorkerService",
    "baton.v1.OperatorService",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

struct Controller {
    channel: Channel,
    handle: baton_controller::ControllerHandle,
}

impl Controller {
    async fn start() -> Controller {
        let store = Store::connect("sqlite::memory:").await.expect("store");
        let handle = baton_controller::start(store, "127.0.0.1:0".parse().unwrap())
            .await
            .expect("controller starts");
        let channel = Endpoint::from_shared(format!("http://{}", handle.addr))
            .unwrap()
            .connect()
            .await
            .expect("connect to the controller");
        Controller { channel, handle }
    }

    async fn stop(self) {
        drop(self.channel);
        bounded("the controller to stop", self.handle.shutdown())
            .await
            .expect("controller stops");
    }
}

/// What one reflection version answered.
#[derive(Debug)]
struct Answers {
    /// The names in the `list_services` answer.
    services: Vec<String>,
    /// The encoded `FileDescriptorProto`s answered for `baton.v1.WorkerService`.
    worker_service_files: Vec<Vec<u8>>,
}

/// Calls `grpc.reflection.$version.ServerReflection/ServerReflectionInfo` on `$channel` with
/// a `list_services` request and a `file_containing_symbol` one, on one stream, as grpcurl does.
/// A macro because the two versions are distinct generated types with the same shape.
macro_rules! ask_reflection {
    ($version:ident, $channel:expr) => {{
        use tonic_reflection::pb::$version::ServerReflectionRequest;
        use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;

        let version = stringify!($version);
        let mut client = ServerReflectionClient::new($channel);
        let requests = [
            MessageRequest::ListServices(String::new()),
            MessageRequest::FileContainingSymbol("baton.v1.WorkerService".to_string()),
        ]
        .map(|request| ServerReflectionRequest {
            host: String::new(),
            message_request: Some(request),
        });
        let mut responses = bounded(
            "the reflection call",
            client.server_reflection_info(tokio_stream::iter(requests)),
        )
        .await
        .unwrap_or_else(|status| panic!("reflection {version}: {status:?}"))
        .into_inner();

        let mut next = async || {
            bounded("a reflection answer", responses.message())
                .await
                .unwrap_or_else(|status| panic!("reflection {version} stream: {status:?}"))
                .unwrap_or_else(|| panic!("reflection {version}: the stream ended early"))
                .message_response
        };
        let services = match next().await {
            Some(MessageResponse::ListServicesResponse(list)) => {
                list.service.into_iter().map(|s| s.name).collect()
            }
            other => panic!("reflection {version}: list_services answered {other:?}"),
        };
        let worker_service_files = match next().await {
            Some(MessageResponse::FileDescriptorResponse(files)) => files.file_descriptor_proto,
            other => panic!("reflection {version}: file_containing_symbol answered {other:?}"),
        };
        Answers {
            services,
            worker_service_files,
        }
    }};
}

#[track_caller]
fn assert_answers(version: &str, answers: &Answers) {
    for service in LISTED {
        assert!(
            answers.services.iter().any(|name| name == service),
            "reflection {version}: {service} not listed in {:?}",
            answers.services
        );
    }
    // The file that defines the service, so `grpcurl describe` and friends can build calls.
    assert!(
        answers.worker_service_files.iter().any(|file| {
            file.windows(b"WorkerService".len())
                .any(|w| w == b"WorkerService")
        }),
        "reflection {version}: no file defining baton.v1.WorkerService in {} file(s)",
        answers.worker_service_files.len()
    );
}

#[tokio::test]
async fn reflection_v1_lists_the_baton_services() {
    let controller = Controller::start().await;
    let answers = ask_reflection!(v1, controller.channel.clone());
    assert_answers("v1", &answers);
    controller.stop().await;
}

#[tokio::test]
async fn reflection_v1alpha_lists_the_baton_services() {
    let controller = Controller::start().await;
    let answers = ask_reflection!(v1alpha, controller.channel.clone());
    assert_answers("v1alpha", &answers);
    controller.stop().await;
}
