//! `baton events ID`: the rollout's event log, one line per event, flushed as it comes.

use super::render;
use super::{Controller, write_out};
use crate::Format;
use anyhow::Result;
use baton_proto::v1::EventsRequest;

pub async fn run(
    controller: &mut Controller,
    id: String,
    after: u64,
    follow: bool,
    format: Format,
) -> Result<()> {
    let request = EventsRequest {
        rollout_id: id,
        after_seq: after,
        follow,
    };
    let mut stream = controller
        .client
        .stream_events(request)
        .await
        .map_err(|s| controller.error(&s))?
        .into_inner();
    while let Some(event) = stream.message().await.map_err(|s| controller.error(&s))? {
        let line = match format {
            Format::Json => render::event_json(&event)?,
            Format::Table => render::event_line(&event),
        };
        write_out(&line)?;
    }
    Ok(())
}
