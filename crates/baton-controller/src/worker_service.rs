//! `WorkerService/Session`: one bidirectional stream per worker. The first message must be
//! `Hello`; after that each message is applied to the engine in order, and the first one that
//! does not fit ends the stream with a gRPC error (nothing already recorded is undone).

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
        let connection = self.engine.lock().await.hello(&hello, tx.clone()).await?;
        let engine = Arc::clone(&self.engine);
        let fqdn = hello.fqdn;
        tokio::spawn(async move {
            let mut refused = None;
            loop {
                // The response side may end first (the controller stopping ends every worker's
                // stream): then this side is dropped too, or the stream would stay half open.
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
                let result = match message.body {
                    Some(body) => {
                        engine
                            .lock()
                            .await
                            .worker_message(&fqdn, connection, body)
                            .await
                    }
                    None => Err(Status::invalid_argument("empty message")),
                };
                if let Err(status) = result {
                    tracing::warn!(%fqdn, %status, "refused a worker message; ending its stream");
                    refused = Some(status);
                    break;
                }
            }
            // Forgotten before the worker hears of the refusal, so that it can reconnect at
            // once without being refused as a second stream for its FQDN.
            engine.lock().await.gone(&fqdn, connection).await;
            if let Some(status) = refused {
                let _ = tx.send(Err(status));
            }
        });
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(rx))))
    }
}
