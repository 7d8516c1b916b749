//! `OperatorService`: what the `baton` CLI calls.

use crate::engine::Engine;
use crate::events::kind;
use crate::peer::require_operator;
use baton_core::scheduler::Event;
use baton_proto::v1;
use baton_store::EventRow;
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
        Ok(Response::new(self.engine.lock().await.servers().await?))
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
