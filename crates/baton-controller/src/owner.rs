//! The owner loop: one task applies what every worker stream says, in batches.
//!
//! Each stream's reader decodes its messages and hands them over through one bounded channel;
//! it never touches the state. The owner takes everything waiting (up to [`MAX_BATCH`]),
//! applies it to the engine in order, and commits the batch's events in one transaction
//! (group commit), so the cost per event falls as load rises. Anything that leaves the
//! controller because of the batch (an assignment, a discard) commits what came before it
//! first: the write-ahead rule holds. When the owner is behind, the channel fills, readers
//! wait, and HTTP/2 flow control slows the workers down: a busy controller slows its fleet,
//! it does not drop it.

use std::sync::Arc;
use std::time::Instant;

use baton_proto::v1;
use tokio::sync::{Mutex, mpsc};

use crate::engine::{Engine, WorkerTx};
use crate::metrics::Telemetry;

/// Messages the readers may queue ahead of the owner before they wait (the default of
/// `Options::owner_inbox`).
pub const INBOX: usize = 4096;
/// Messages applied per batch (and per transaction) at most.
pub const MAX_BATCH: usize = 1024;

/// One worker message, as a stream's reader hands it over.
pub struct Inbound {
    pub fqdn: Arc<str>,
    pub connection: u64,
    pub body: v1::worker_message::Body,
    /// The stream's outbound side: a refusal ends the stream through it.
    pub tx: WorkerTx,
}

pub type Inbox = mpsc::Sender<Inbound>;

/// The channel the readers send on, and the owner task draining it.
pub fn spawn(
    engine: Arc<Mutex<Engine>>,
    telemetry: Arc<Telemetry>,
    capacity: usize,
) -> (Inbox, tokio::task::JoinHandle<()>) {
    let (inbox, messages) = mpsc::channel(capacity.max(1));
    let task = tokio::spawn(own(engine, telemetry, messages));
    (inbox, task)
}

async fn own(
    engine: Arc<Mutex<Engine>>,
    telemetry: Arc<Telemetry>,
    mut messages: mpsc::Receiver<Inbound>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while messages.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let size = batch.len();
        let mut engine = engine.lock().await;
        engine.log().begin_batch();
        let mut refused = Vec::new();
        for message in batch.drain(..) {
            let Inbound {
                fqdn,
                connection,
                body,
                tx,
            } = message;
            // What a stream already ended still had in flight (a refused or replaced stream):
            // nothing to apply, and nobody to tell.
            if !engine.is_current_connection(&fqdn, connection) {
                tracing::debug!(%fqdn, connection, "message of an ended stream dropped");
                continue;
            }
            if let Err(status) = engine.worker_message(&fqdn, connection, body).await {
                refused.push((fqdn, connection, tx, status));
            }
        }
        // The batch's step output, in one transaction of its own.
        if let Err(status) = engine.flush_output().await {
            tracing::error!(%status, "storing a batch of step output");
        }
        let began = Instant::now();
        match engine.log().end_batch().await {
            Ok(events) => {
                // Write-ahead: what the batch decided leaves only now.
                engine.flush_deferred();
                let metrics = &telemetry.metrics;
                metrics.batch_messages.record(size as u64, &[]);
                if events > 0 {
                    metrics.batch_events.record(events as u64, &[]);
                    metrics
                        .commit_seconds
                        .record(began.elapsed().as_secs_f64(), &[]);
                }
            }
            // Kept in memory for the next commit, and what depends on them waits with them.
            Err(err) => tracing::error!(%err, "committing a batch of events"),
        }
        for (fqdn, connection, tx, status) in refused {
            tracing::warn!(%fqdn, %status, "refused a worker message; ending its stream");
            // Forgotten before the worker hears of the refusal, so that it can reconnect at
            // once without being refused as a second stream for its FQDN.
            engine.gone(&fqdn, connection).await;
            let _ = tx.send(Err(status));
        }
    }
}

/// Hands a message to the owner, waiting while its inbox is full (backpressure: the reader
/// stops reading, and HTTP/2 flow control holds the worker). False once the owner has stopped.
pub async fn hand_over(inbox: &Inbox, message: Inbound, telemetry: &Telemetry) -> bool {
    match inbox.try_send(message) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(message)) => {
            telemetry.metrics.inbox_full.add(1, &[]);
            inbox.send(message).await.is_ok()
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}
