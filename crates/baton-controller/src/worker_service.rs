//! `WorkerService/Session`: one bidirectional stream per worker. The first message must be
//! `Hello`; after that the stream's reader hands each message to the owner loop (`owner.rs`),
//! which applies them in order, in batches; the first one that does not fit ends the stream
//! with a gRPC error (nothing already recorded is undone). The reader waits when the owner is
//! behind, and HTTP/2 flow control passes that on to the worker.

use crate::engine::Engine;
use baton_proto::v1;
use baton_proto::v1::worker_message::Body;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{Mutex, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// How long a new stream may take to send its `Hello`.
const HELLO_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

pub struct WorkerGrpc {
    pub engine: Arc<Mutex<Engine>>,
    /// The owner loop's inbox.
    pub inbox: crate::owner::Inbox,
    pub telemetry: Arc<crate::metrics::Telemetry>,
    /// Client certificates are required: a worker speaks only for the server its names.
    pub client_certificates: bool,
}

type Outbound = Pin<Box<dyn Stream<Item = Result<v1::ControllerMessage, Status>> + Send>>;

#[tonic::async_trait]
impl v1::worker_service_server::WorkerService for WorkerGrpc {
    type SessionStream = Outbound;

    async fn session(
        &self,
        request: Request<Streaming<v1::WorkerMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let peer = request.peer_certs();
        let mut inbound = request.into_inner();
        // A stream that never says hello must not hold a handler for ever.
        let first = tokio::time::timeout(HELLO_WITHIN, inbound.message())
            .await
            .map_err(|_| {
                Status::deadline_exceeded(format!("no hello within {}s", HELLO_WITHIN.as_secs()))
            })?;
        let hello = match first? {
            Some(v1::WorkerMessage {
                body: Some(Body::Hello(hello)),
            }) => hello,
            Some(_) => {
                return Err(Status::invalid_argument(
                    "the first message of a session must be hello",
                ));
            }
            None => return Err(Status::invalid_argument("the session ended before hello")),
        };
        if self.client_certificates {
            crate::peer::check_worker(&peer, &hello.fqdn)?;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let (connection, seen) = self.engine.lock().await.hello(&hello, tx.clone()).await?;
        let engine = Arc::clone(&self.engine);
        let inbox = self.inbox.clone();
        let telemetry = Arc::clone(&self.telemetry);
        let fqdn: Arc<str> = hello.fqdn.into();
        tokio::spawn(async move {
            loop {
                // The response side may end first (the controller stopping ends every worker's
                // stream, a refusal ends it): then this side is dropped too, or the stream
                // would stay half open.
                let received = tokio::select! {
                    received = inbound.message() => received,
                    () = tx.closed() => break,
                };
                let message = match received {
                    Ok(Some(message)) => message,
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(%fqdn, %status, "worker stream ended");
                        break;
                    }
                };
                // Liveness is stamped here, without the engine; a heartbeat says nothing else,
                // so it never takes the owner's time.
                seen.store(baton_store::now_ms(), std::sync::atomic::Ordering::Relaxed);
                if matches!(message.body, Some(Body::Heartbeat(_))) {
                    continue;
                }
                let Some(body) = message.body else {
                    let status = Status::invalid_argument("empty message");
                    tracing::warn!(%fqdn, %status, "refused a worker message; ending its stream");
                    engine.lock().await.gone(&fqdn, connection).await;
                    let _ = tx.send(Err(status));
                    break;
                };
                let message = crate::owner::Inbound {
                    fqdn: Arc::clone(&fqdn),
                    connection,
                    body,
                    tx: tx.clone(),
                };
                if !crate::owner::hand_over(&inbox, message, &telemetry).await {
                    // The owner has stopped: the controller is shutting down.
                    break;
                }
            }
            engine.lock().await.gone(&fqdn, connection).await;
        });
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(rx))))
    }
}
