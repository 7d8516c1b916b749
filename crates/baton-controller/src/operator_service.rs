//! `OperatorService`: what the `baton` CLI calls.

use crate::engine::Engine;
use crate::events::kind;
use crate::peer::require_operator;
use baton_core::scheduler::Event;
use baton_proto::v1;
use baton_store::{EventRow, OutputCursor, OutputItem, StepOutputFilter};
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{Mutex, broadcast, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

pub struct OperatorGrpc {
    pub engine: Arc<Mutex<Engine>>,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<v1::Event, Status>> + Send>>;
type LogStream = Pin<Box<dyn Stream<Item = Result<v1::LogChunk, Status>> + Send>>;

/// How often a `StepLogs` follower looks for new output.
const LOGS_POLL: std::time::Duration = std::time::Duration::from_millis(250);
/// Chunks (of up to 64 KiB each) read from the store at a time.
const LOGS_PAGE: usize = 32;

fn to_proto(row: &EventRow) -> v1::Event {
    v1::Event {
        seq: row.seq as u64,
        at: baton_store::rfc3339_ms(row.at_ms),
        rollout: row.rollout_id.to_string(),
        server: row.server.clone().unwrap_or_default(),
        pool: row.pool.clone().unwrap_or_default(),
        kind: row.kind.clone(),
        detail: row.detail.clone(),
    }
}

/// `cap`: the controller's `--max-step-output`, for the note where lines were dropped.
fn log_chunk(rollout_id: i64, cap: u64, item: OutputItem) -> v1::LogChunk {
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    match item {
        OutputItem::Chunk { step_id, chunk } => v1::LogChunk {
            rollout_id: rollout_id.to_string(),
            server: chunk.server,
            assignment_id: chunk.assignment_id,
            step: step_id,
            step_index: u32::try_from(chunk.step_index).unwrap_or(u32::MAX),
            attempt: u32::try_from(chunk.attempt).unwrap_or(u32::MAX),
            stderr: chunk.stderr,
            text: chunk.text,
            lines: u32::try_from(chunk.lines).unwrap_or(u32::MAX),
            at: baton_store::rfc3339_ms(chunk.at_ms),
            ..v1::LogChunk::default()
        },
        OutputItem::Dropped {
            key,
            step_id,
            lines,
            bytes,
        } => v1::LogChunk {
            rollout_id: rollout_id.to_string(),
            note: format!(
                "… {} dropped here: the controller keeps the first and the last {} of each step attempt's output (--max-step-output {}) …",
                baton_store::dropped_text(lines, bytes),
                baton_store::human_bytes(i64::try_from(cap / 2).unwrap_or(i64::MAX)),
                baton_store::human_bytes(i64::try_from(cap).unwrap_or(i64::MAX)),
            ),
            server: key.server,
            assignment_id: key.assignment_id,
            step: step_id,
            step_index: u32::try_from(key.step_index).unwrap_or(u32::MAX),
            attempt: u32::try_from(key.attempt).unwrap_or(u32::MAX),
            dropped_lines: count(lines),
            dropped_bytes: count(bytes),
            ..v1::LogChunk::default()
        },
    }
}

fn parse_rollout_id(text: &str) -> Result<Option<i64>, Status> {
    if text.is_empty() {
        return Ok(None);
    }
    text.parse::<i64>()
        .map(Some)
        .map_err(|_| Status::invalid_argument(format!("rollout id {text:?} is not a number")))
}

/// The rollout whose output `StepLogs` reads and the server's name in its fleet, for what the
/// engine did not know: a rollout asked for that this controller does not run, or, when none
/// was asked for, the newest rollout with output from the server if it is newer than the
/// engine's.
async fn logs_rollout(
    store: &baton_store::Store,
    server: &str,
    asked: Option<i64>,
    known: (Option<i64>, Option<String>),
) -> Result<(i64, String), Status> {
    let unavailable = |e: baton_store::StoreError| Status::unavailable(e.to_string());
    let id = match (asked, known) {
        (Some(_), (Some(id), Some(fqdn))) => return Ok((id, fqdn)),
        (Some(id), _) => id,
        (None, (known_id, known_fqdn)) => {
            let with_output = store
                .latest_step_output_rollout(server)
                .await
                .map_err(unavailable)?;
            match (known_id.zip(known_fqdn), with_output) {
                (Some((id, fqdn)), None) => return Ok((id, fqdn)),
                (Some((id, fqdn)), Some(newest)) if newest <= id => return Ok((id, fqdn)),
                (_, Some(newest)) => newest,
                (None, None) => {
                    return Err(Status::not_found(format!(
                        "no rollout includes {server}, and none has output from it"
                    )));
                }
            }
        }
    };
    let row = store
        .rollout(id)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| Status::not_found(format!("rollout {id} does not exist")))?;
    // The name as the fleet writes it, which the output is stored under.
    let fleet = baton_core::Fleet::from_toml(&row.fleet_name, &row.fleet_toml)
        .map_err(|e| Status::internal(format!("rollout {id}'s stored fleet: {e}")))?;
    let server = fleet
        .server_by_fqdn(server)
        .map(|s| fleet.servers[s].fqdn.clone())
        .ok_or_else(|| Status::not_found(format!("{server} is not in rollout {id}")))?;
    Ok((id, server))
}

/// The output of a rollout recorded before step output had a table of its own (issue #11):
/// one `step_output` event per line (`STEP stdout: LINE`), without assignment or attempt.
async fn legacy_output(
    store: &baton_store::Store,
    id: i64,
    server: &str,
    step: Option<&str>,
) -> Vec<Result<v1::LogChunk, Status>> {
    let events = match store.events(id, 0, None).await {
        Ok(events) => events,
        Err(err) => return vec![Err(Status::unavailable(err.to_string()))],
    };
    events
        .iter()
        .filter(|e| e.kind == kind::STEP_OUTPUT && e.server.as_deref() == Some(server))
        .filter_map(|e| {
            let (step_id, rest) = e.detail.split_once(' ')?;
            let (stderr, line) = match rest.split_once(": ")? {
                ("stdout", line) => (false, line),
                ("stderr", line) => (true, line),
                _ => return None,
            };
            step.is_none_or(|step| step == step_id).then(|| {
                Ok(v1::LogChunk {
                    rollout_id: id.to_string(),
                    server: server.to_string(),
                    step: step_id.to_string(),
                    stderr,
                    text: line.to_string(),
                    lines: 1,
                    at: baton_store::rfc3339_ms(e.at_ms),
                    ..v1::LogChunk::default()
                })
            })
        })
        .collect()
}

impl OperatorGrpc {
    /// Pause, resume, abort (`force` only counts there) or approve a rollout.
    async fn control(
        &self,
        request: Request<v1::RolloutRef>,
        event: Event,
    ) -> Result<Response<v1::RolloutStatus>, Status> {
        require_operator(&request)?;
        let request = request.into_inner();
        let force = event == Event::Abort && request.force;
        let status = self
            .engine
            .lock()
            .await
            .control(&request.rollout_id, event, force)
            .await?;
        Ok(Response::new(status))
    }
}

#[tonic::async_trait]
impl v1::operator_service_server::OperatorService for OperatorGrpc {
    async fn apply(
        &self,
        request: Request<v1::ApplyRequest>,
    ) -> Result<Response<v1::ApplyResponse>, Status> {
        require_operator(&request)?;
        let id = self.engine.lock().await.apply(request.into_inner()).await?;
        Ok(Response::new(v1::ApplyResponse {
            rollout_id: id.to_string(),
        }))
    }

    async fn get_status(
        &self,
        request: Request<v1::RolloutRef>,
    ) -> Result<Response<v1::RolloutStatus>, Status> {
        Ok(Response::new(
            self.engine
                .lock()
                .await
                .status(&request.into_inner().rollout_id)?,
        ))
    }

    async fn pause(
        &self,
        request: Request<v1::RolloutRef>,
    ) -> Result<Response<v1::RolloutStatus>, Status> {
        self.control(request, Event::Pause).await
    }

    async fn resume(
        &self,
        request: Request<v1::RolloutRef>,
    ) -> Result<Response<v1::RolloutStatus>, Status> {
        self.control(request, Event::Resume).await
    }

    async fn abort(
        &self,
        request: Request<v1::RolloutRef>,
    ) -> Result<Response<v1::RolloutStatus>, Status> {
        self.control(request, Event::Abort).await
    }

    async fn resolve(
        &self,
        request: Request<v1::ResolveRequest>,
    ) -> Result<Response<v1::RolloutStatus>, Status> {
        require_operator(&request)?;
        let status = self
            .engine
            .lock()
            .await
            .resolve(request.into_inner())
            .await?;
        Ok(Response::new(status))
    }

    async fn approve(
        &self,
        request: Request<v1::RolloutRef>,
    ) -> Result<Response<v1::RolloutStatus>, Status> {
        self.control(request, Event::Approve).await
    }

    async fn list_servers(
        &self,
        _request: Request<v1::ListServersRequest>,
    ) -> Result<Response<v1::ListServersResponse>, Status> {
        let store = self.engine.lock().await.log().store().clone();
        let rows = store.workers().await.map_err(|err| {
            tracing::error!(%err, "store");
            Status::unavailable(format!("the controller's store failed: {err}"))
        })?;
        Ok(Response::new(self.engine.lock().await.servers_from(rows)))
    }

    type StepLogsStream = LogStream;

    /// A server's step output from the store, then (with `follow`) what comes until its
    /// assignment ends. The engine is asked only which rollout and whether more can come;
    /// the store is read outside its lock. A viewer may read it.
    async fn step_logs(
        &self,
        request: Request<v1::LogsRequest>,
    ) -> Result<Response<Self::StepLogsStream>, Status> {
        let request = request.into_inner();
        let server = request.server.trim().to_string();
        if server.is_empty() {
            return Err(Status::invalid_argument(
                "which server's output? (no server given)",
            ));
        }
        let asked = parse_rollout_id(&request.rollout_id)?;
        let step = (!request.step.is_empty()).then(|| request.step.clone());
        let (store, known) = {
            let engine = self.engine.lock().await;
            let known = engine.logs_target(&server, asked, step.as_deref())?;
            (engine.log().store().clone(), known)
        };
        // A rollout this controller does not run may be older than the output table.
        let maybe_legacy = known.1.is_none();
        let (id, fqdn) = logs_rollout(&store, &server, asked, known).await?;
        let cap = store.max_step_output();
        let engine = Arc::clone(&self.engine);
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let filter = StepOutputFilter {
                assignment_id: None,
                step_id: step.clone(),
            };
            let mut cursor = OutputCursor::default();
            let mut any = false;
            loop {
                // Asked before reading: whatever was written before the end is read after.
                let over =
                    !request.follow || engine.lock().await.logs_over(id, &fqdn, step.as_deref());
                loop {
                    let items = match store
                        .read_step_output(id, &fqdn, &filter, &mut cursor, LOGS_PAGE)
                        .await
                    {
                        Ok(items) => items,
                        Err(err) => {
                            let _ = tx.send(Err(Status::unavailable(err.to_string()))).await;
                            return;
                        }
                    };
                    if items.is_empty() {
                        break;
                    }
                    any = true;
                    for item in items {
                        if tx.send(Ok(log_chunk(id, cap, item))).await.is_err() {
                            return;
                        }
                    }
                }
                if over {
                    if !any && maybe_legacy {
                        let legacy = legacy_output(&store, id, &fqdn, step.as_deref()).await;
                        for chunk in legacy {
                            if tx.send(chunk).await.is_err() {
                                return;
                            }
                        }
                    }
                    return;
                }
                tokio::select! {
                    () = tokio::time::sleep(LOGS_POLL) => {}
                    () = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type StreamEventsStream = EventStream;

    /// The backlog from the store, then (with `follow`) the live feed until the rollout ends.
    /// The feed is subscribed before the backlog is read, so nothing falls between the two.
    async fn stream_events(
        &self,
        request: Request<v1::EventsRequest>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        let request = request.into_inner();
        let (log, mut feed) = {
            let engine = self.engine.lock().await;
            (engine.log().clone(), engine.log().subscribe())
        };
        let store = log.store().clone();
        let id = if request.rollout_id.is_empty() {
            store
                .latest_rollout()
                .await
                .map_err(|e| Status::unavailable(e.to_string()))?
                .ok_or_else(|| Status::not_found("no rollout yet"))?
                .id
        } else {
            request.rollout_id.parse::<i64>().map_err(|_| {
                Status::invalid_argument(format!(
                    "rollout id {:?} is not a number",
                    request.rollout_id
                ))
            })?
        };
        let known = store
            .rollout(id)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        if known.is_none() {
            return Err(Status::not_found(format!("rollout {id} does not exist")));
        }
        let engine = Arc::clone(&self.engine);
        let (tx, rx) = mpsc::channel(256);
        let after = i64::try_from(request.after_seq).unwrap_or(i64::MAX);
        tokio::spawn(async move {
            let mut last = after;
            // A rollout this controller is not running (finished, or from an earlier process)
            // gets no new events: the backlog is all there is.
            let mut ended = engine.lock().await.is_over(id).unwrap_or(true);
            let backlog = match store.events(id, last, None).await {
                Ok(rows) => rows,
                Err(err) => {
                    let _ = tx.send(Err(Status::unavailable(err.to_string()))).await;
                    return;
                }
            };
            for event in &backlog {
                ended |= event.kind == kind::ROLLOUT_FINISHED;
                last = event.seq;
                if tx.send(Ok(to_proto(event))).await.is_err() {
                    return;
                }
            }
            if !request.follow || ended {
                return;
            }
            loop {
                match feed.recv().await {
                    Ok(event) if event.rollout_id == id && event.seq > last => {
                        last = event.seq;
                        let done = event.kind == kind::ROLLOUT_FINISHED;
                        if tx.send(Ok(to_proto(&event))).await.is_err() || done {
                            return;
                        }
                    }
                    Ok(_) => {}
                    // Fell behind the live feed: catch up from the store.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        match store.events(id, last, None).await {
                            Ok(rows) => {
                                for event in rows {
                                    last = event.seq;
                                    let done = event.kind == kind::ROLLOUT_FINISHED;
                                    if tx.send(Ok(to_proto(&event))).await.is_err() || done {
                                        return;
                                    }
                                }
                            }
                            Err(err) => {
                                let _ = tx.send(Err(Status::unavailable(err.to_string()))).await;
                                return;
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
