//! `baton servers`: the workers the controller knows, connected or not.

use super::render;
use super::{Controller, write_out};
use crate::Format;
use anyhow::Result;
use baton_proto::v1::ListServersRequest;

pub async fn run(controller: &mut Controller, format: Format) -> Result<()> {
    let workers = controller
        .client
        .list_servers(ListServersRequest {})
        .await
        .map_err(|s| controller.error(&s))?
        .into_inner()
        .workers;
    match format {
        Format::Table => write_out(&render::servers_table(&workers)),
        Format::Json => write_out(&render::servers_json(&workers)?),
    }
}
