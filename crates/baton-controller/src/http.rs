//! The controller's HTTP port for monitoring: `GET /metrics` (Prometheus text format),
//! `/healthz` (the process answers) and `/readyz` (it has taken over its store's rollouts and
//! serves gRPC: true once `start` has returned).

use axum::Router;
use axum::routing::get;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::metrics::metrics_handler;
use crate::server::ControllerError;

/// Binds `listen` and serves until `stop` fires. Returns the bound address.
pub async fn serve(
    listen: SocketAddr,
    registry: prometheus::Registry,
    stop: oneshot::Receiver<()>,
) -> Result<(SocketAddr, JoinHandle<()>), ControllerError> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| ControllerError::Bind {
            addr: listen,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ControllerError::Bind {
            addr: listen,
            source,
        })?;
    let router = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ready\n" }))
        .with_state(registry);
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stop.await;
            })
            .await;
        if let Err(err) = served {
            tracing::error!(%err, "the metrics port stopped");
        }
    });
    Ok((addr, task))
}
