//! Reads the fleet and runbook files named on the command line.

use anyhow::{Context, Result};
use baton_core::workload::{Workload, build_workload};
use baton_core::{Fleet, Runbook};
use std::path::Path;

pub struct Loaded {
    pub fleet: Fleet,
    pub runbook: Option<Runbook>,
    pub workload: Workload,
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

pub fn load(
    fleet_path: &Path,
    runbook_path: Option<&Path>,
    params: &[(String, String)],
) -> Result<Loaded> {
    if runbook_path.is_none() && !params.is_empty() {
        anyhow::bail!("--param needs --runbook: parameters fill the runbook's commands");
    }
    let fleet = Fleet::from_toml(&fleet_path.display().to_string(), &read(fleet_path)?)?;
    let runbook = runbook_path
        .map(|path| {
            Runbook::from_toml(&path.display().to_string(), &read(path)?)
                .map_err(anyhow::Error::from)
        })
        .transpose()?;
    let resolved = runbook
        .as_ref()
        .map(|r| r.resolve_params(params, "--param"))
        .transpose()?;
    let workload = build_workload(&fleet, runbook.as_ref().zip(resolved.as_ref()))?;
    Ok(Loaded {
        fleet,
        runbook,
        workload,
    })
}
