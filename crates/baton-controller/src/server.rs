//! Serving the controller: worker and operator services, plus the standard gRPC health and
//! reflection services (reflection in v1 and v1alpha) so generic tools (grpcurl,
//! grpc_health_probe, Postman, Evans) work against it.

use crate::engine::Engine;
use crate::events::EventLog;
use crate::operator_service::OperatorGrpc;
use crate::worker_service::WorkerGrpc;
use baton_proto::v1::operator_service_server::OperatorServiceServer;
use baton_proto::v1::worker_service_server::WorkerServiceServer;
use baton_store::Store;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, oneshot};
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("the server task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("the store: {0}")]
    Store(#[from] baton_store::StoreError),
    #[error("metrics: {0}")]
    Metrics(String),
    #[error("TLS: {0}")]
    Tls(String),
}

/// The controller's TLS: its certificate, and the CA of the client certificates it requires.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// Its certificate chain (PEM), valid for the name clients connect to.
    pub cert_pem: Vec<u8>,
    /// Its private key (PEM).
    pub key_pem: Vec<u8>,
    /// Require client certificates signed by this CA (PEM): mutual TLS. Workers then speak
    /// only for the server their certificate names, and operator calls need a certificate
    /// valid for one of `operators`.
    pub client_ca_pem: Option<Vec<u8>>,
    /// With `client_ca_pem`: the names an operator's certificate may be valid for.
    pub operators: Vec<String>,
    /// With `client_ca_pem`: the names a viewer's certificate may be valid for (status, events
    /// and servers only).
    pub viewers: Vec<String>,
}

/// A running controller.
pub struct ControllerHandle {
    /// Where it listens (useful with port 0).
    pub addr: SocketAddr,
    /// Where `/metrics`, `/healthz` and `/readyz` are served, if they are.
    pub http_addr: Option<SocketAddr>,
    shutdown: oneshot::Sender<()>,
    http_shutdown: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
    watchdog: JoinHandle<()>,
    /// The owner loop: it ends once every stream's reader has (the inbox closes).
    owner: JoinHandle<()>,
    engine: Arc<Mutex<Engine>>,
    telemetry: Arc<crate::metrics::Telemetry>,
}

/// How long a shutdown waits for open calls (an operator's `status --watch`, say) to end.
const STOP_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a shutdown waits for the last OTLP metric push (a collector that never answers
/// must not hold it).
const METRICS_FLUSH_LIMIT: std::time::Duration = std::time::Duration::from_secs(3);

impl ControllerHandle {
    /// Stops accepting work and waits for the server to close.
    pub async fn shutdown(self) -> Result<(), ControllerError> {
        // No new connections or streams first, then the workers' long-lived streams end: a
        // graceful stop waits for every open stream, and theirs never end by themselves.
        let _ = self.shutdown.send(());
        self.watchdog.abort();
        self.engine.lock().await.close_worker_streams();
        if let Some((stop, task)) = self.http_shutdown {
            let _ = stop.send(());
            let _ = task.await;
        }
        let mut task = self.task;
        match tokio::time::timeout(STOP_LIMIT, &mut task).await {
            Ok(joined) => joined??,
            Err(_) => {
                tracing::warn!("streams still open after {STOP_LIMIT:?}: closing them");
                task.abort();
            }
        }
        // What the readers handed over is applied and committed before the final state goes.
        let mut owner = self.owner;
        if tokio::time::timeout(STOP_LIMIT, &mut owner).await.is_err() {
            tracing::warn!("the owner loop is still busy after {STOP_LIMIT:?}: stopping it");
            owner.abort();
        }
        // The final state goes out over OTLP, while the runtime can still drive the export;
        // the last heartbeats reach the store.
        {
            let mut engine = self.engine.lock().await;
            engine.flush_registrations().await;
            engine.flush_last_seen().await;
            engine.publish_metrics();
        }
        let provider = self.telemetry.provider.clone();
        let (done, flushed) = oneshot::channel();
        std::thread::spawn(move || {
            let _ = provider.shutdown_with_timeout(METRICS_FLUSH_LIMIT);
            let _ = done.send(());
        });
        let _ = tokio::time::timeout(METRICS_FLUSH_LIMIT, flushed).await;
        Ok(())
    }
}

/// The default of [`Options::finished_series_kept`].
pub const FINISHED_SERIES_KEPT: std::time::Duration = std::time::Duration::from_secs(3600);

/// Settings of a controller beyond its store and address.
#[derive(Debug, Clone)]
pub struct Options {
    /// A worker silent this long (no heartbeat, no report) is taken as lost.
    pub worker_timeout: std::time::Duration,
    /// Serve `/metrics`, `/healthz` and `/readyz` here (`None`: not at all).
    pub http: Option<SocketAddr>,
    /// Also push metrics over OTLP (when `OTEL_*` names an endpoint).
    pub otlp_metrics: bool,
    /// A finished rollout's gauges stay exported this long (its final state on dashboards),
    /// then go, so series do not pile up over months of rollouts.
    pub finished_series_kept: std::time::Duration,
    /// Serve gRPC over TLS (`None`: plain HTTP/2).
    pub tls: Option<ServerTls>,
    /// Worker messages the streams' readers may queue ahead of the owner loop before they
    /// wait (and HTTP/2 flow control holds the workers back).
    pub owner_inbox: usize,
    /// The fleet-wide heartbeat rate the intervals told to workers aim at (1 s each below
    /// it, up to 5 s each above it).
    pub heartbeats_per_second: u64,
    /// Record each rollout's trace (`rollout` → `server.update` → `step`) on the global
    /// tracer provider, and send each step's trace context to its worker.
    pub traces: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            worker_timeout: crate::engine::DEFAULT_WORKER_TIMEOUT,
            http: None,
            otlp_metrics: false,
            traces: false,
            finished_series_kept: FINISHED_SERIES_KEPT,
            tls: None,
            owner_inbox: crate::owner::INBOX,
            heartbeats_per_second: crate::engine::HEARTBEATS_PER_SECOND,
        }
    }
}

/// Binds `listen` and serves a controller over `store` until shut down.
pub async fn start(store: Store, listen: SocketAddr) -> Result<ControllerHandle, ControllerError> {
    start_with(store, listen, Options::default()).await
}

/// [`start`] with explicit [`Options`].
pub async fn start_with(
    store: Store,
    listen: SocketAddr,
    options: Options,
) -> Result<ControllerHandle, ControllerError> {
    let listener = listen_with_backlog(listen).map_err(|source| ControllerError::Bind {
        addr: listen,
        source,
    })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ControllerError::Bind {
            addr: listen,
            source,
        })?;
    // Fencing: this controller's assignments outrank every earlier controller's.
    let epoch = store.next_epoch().await?;
    let store_id = store.store_id().await?;
    tracing::info!(epoch, store_id, "controller epoch");
    let telemetry = Arc::new(
        crate::metrics::Telemetry::new(options.otlp_metrics).map_err(ControllerError::Metrics)?,
    );
    let engine = Arc::new(Mutex::new(Engine::new(
        EventLog::new(store),
        store_id,
        epoch as u64,
        options.worker_timeout,
        Arc::clone(&telemetry),
    )));
    {
        let mut engine = engine.lock().await;
        engine.set_traces(options.traces);
        engine.set_finished_series_kept(options.finished_series_kept);
        engine.set_heartbeats_per_second(options.heartbeats_per_second);
    }
    // Rollouts a previous controller left unfinished are taken over before anyone connects.
    match engine.lock().await.recover().await {
        Ok(resumed) if !resumed.is_empty() => tracing::info!(?resumed, "rollouts taken over"),
        Ok(_) => {}
        Err(status) => tracing::error!(%status, "taking over unfinished rollouts"),
    }

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<WorkerServiceServer<WorkerGrpc>>()
        .await;
    health
        .set_serving::<OperatorServiceServer<OperatorGrpc>>()
        .await;
    // Reflection in both versions: v1 for current clients, v1alpha for those that speak only
    // it (grpcio's Python reflection, older grpcurl, Postman, Evans). Each lists both.
    let reflection_v1 = reflection_builder().build_v1()?;
    let reflection_v1alpha = reflection_builder().build_v1alpha()?;

    let (http_addr, http_shutdown) = match options.http {
        Some(listen) => {
            let (stop, stopped) = oneshot::channel();
            let (addr, task) =
                crate::http::serve(listen, telemetry.registry.clone(), stopped).await?;
            (Some(addr), Some((stop, task)))
        }
        None => (None, None),
    };
    let watchdog = tokio::spawn(watch_budgets(Arc::clone(&engine)));
    let (inbox, owner) = crate::owner::spawn(
        Arc::clone(&engine),
        Arc::clone(&telemetry),
        options.owner_inbox,
    );
    // HTTP/2 pings find dead connections (a worker host gone, a NAT that forgot the flow)
    // without waiting for heartbeats, which a large fleet sends only every few seconds.
    let mut builder = Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(20)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)));
    let mut client_certificates = false;
    let mut operators = Vec::new();
    let mut viewers = Vec::new();
    if let Some(tls) = &options.tls {
        let mut config =
            ServerTlsConfig::new().identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem));
        if let Some(ca) = &tls.client_ca_pem {
            if tls.operators.is_empty() {
                return Err(ControllerError::Tls(
                    "client certificates are required but no operator name is given: nobody could run `baton`".into(),
                ));
            }
            config = config.client_ca_root(Certificate::from_pem(ca));
            client_certificates = true;
            operators.clone_from(&tls.operators);
            viewers.clone_from(&tls.viewers);
        }
        builder = builder
            .tls_config(config)
            .map_err(|e| ControllerError::Tls(baton_telemetry::error_chain(&e)))?;
    }
    let operator_service = OperatorServiceServer::with_interceptor(
        OperatorGrpc {
            engine: Arc::clone(&engine),
        },
        move |mut request: tonic::Request<()>| {
            if client_certificates {
                let role = crate::peer::operator_role(&request.peer_certs(), &operators, &viewers)?;
                request.extensions_mut().insert(role);
            }
            Ok(request)
        },
    );
    let router = builder
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(WorkerServiceServer::new(WorkerGrpc {
            engine: Arc::clone(&engine),
            inbox,
            telemetry: Arc::clone(&telemetry),
            client_certificates,
        }))
        .add_service(operator_service);
    let (shutdown, stop) = oneshot::channel::<()>();
    // `serve_with_incoming` ignores `Server::tcp_nodelay`: without it set here, Nagle's
    // algorithm holds back small writes (an assignment, an event) on accepted connections.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let task = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
        let _ = stop.await;
    }));
    Ok(ControllerHandle {
        addr,
        http_addr,
        http_shutdown,
        shutdown,
        task,
        watchdog,
        owner,
        engine,
        telemetry,
    })
}

/// What the reflection services describe: Baton's services, health, and reflection itself in
/// both versions (each version's builder adds only its own).
fn reflection_builder() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(baton_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
}

/// Connections the kernel may queue before the controller accepts them: a fleet reconnecting
/// at once after a restart must not overflow it (a full queue costs each late worker a 1 s
/// SYN retransmit). Linux caps it at `net.core.somaxconn`.
const ACCEPT_BACKLOG: u32 = 4096;

fn listen_with_backlog(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does on Unix: a restarted controller can bind at once.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

/// How often back-end outages are checked against their budgets.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Checks every running back end's outage against its pool's budget, a few times a second.
async fn watch_budgets(engine: Arc<Mutex<Engine>>) {
    let mut ticks = tokio::time::interval(WATCH_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(status) = engine.lock().await.watch().await {
            tracing::error!(%status, "outage-budget watchdog");
        }
    }
}
