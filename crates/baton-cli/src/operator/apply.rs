//! `baton apply`: send the fleet and runbook to the controller; print the new rollout's id.

use super::{Controller, write_out};
use anyhow::{Context, Result};
use baton_proto::v1::ApplyRequest;
use std::collections::HashMap;
use std::path::Path;

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Builds the request from the files as named on the command line (the names come back in
/// the controller's error messages). A repeated `--param` keeps its last value, as in `plan`.
pub fn request(fleet: &Path, runbook: &Path, params: &[(String, String)]) -> Result<ApplyRequest> {
    Ok(ApplyRequest {
        fleet_name: fleet.display().to_string(),
        fleet_toml: read(fleet)?,
        runbook_name: runbook.display().to_string(),
        runbook_toml: read(runbook)?,
        params: params.iter().cloned().collect::<HashMap<_, _>>(),
    })
}

/// Starts the rollout and prints only its id, so scripts can capture it.
pub async fn run(controller: &mut Controller, request: ApplyRequest) -> Result<()> {
    let response = controller
        .client
        .apply(request)
        .await
        .map_err(|s| controller.error(&s))?
        .into_inner();
    write_out(&response.rollout_id)
}
