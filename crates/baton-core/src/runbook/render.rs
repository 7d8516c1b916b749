//! Renders a runbook for one server of a fleet: the exact commands its worker will run.

use super::{Runbook, ServerFacts, Var};
use crate::error::InputError;
use crate::fleet::{Fleet, ServerId};
use crate::time::Millis;
use std::collections::BTreeMap;

/// Characters that open or close a string in PowerShell or sh (PowerShell also honours the
/// typographic quotes).
const QUOTES: [char; 9] = [
    '\'', '"', '`', '\u{2018}', '\u{2019}', '\u{201A}', '\u{201B}', '\u{201C}', '\u{201D}',
];

/// Parameter values for a rollout: the runbook's defaults overridden by the operator's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(BTreeMap<String, String>);

/// One step as a server will run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedStep {
    pub id: String,
    pub command: String,
    pub timeout: Millis,
    pub retries: u32,
    /// `Some(interval)` for a health gate (see [`super::Step::gate_interval`]).
    pub gate_interval: Option<Millis>,
    /// See [`super::Step::idempotent`].
    pub idempotent: bool,
}

/// A template needed a value this server's fleet entry does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{runbook}: step {step:?} needs `{var}`, which server {server:?} does not have{hint}")]
pub struct RenderError {
    pub runbook: String,
    pub step: String,
    pub server: String,
    pub var: String,
    hint: String,
}

impl Runbook {
    /// Resolves parameter values from `overrides` (`name`, `value`) and the runbook's defaults.
    /// `origin` names where the overrides came from (e.g. "--param") in errors.
    pub fn resolve_params(
        &self,
        overrides: &[(String, String)],
        origin: &str,
    ) -> Result<Params, InputError> {
        let mut values = BTreeMap::new();
        for (name, value) in overrides {
            let error = || InputError {
                file: origin.to_string(),
                line: None,
                owner: None,
                field: format!("params.{name}"),
                value: Some(format!("{value:?}")),
                message: String::new(),
            };
            if !self.params.iter().any(|p| &p.name == name) {
                let known: Vec<&str> = self.params.iter().map(|p| p.name.as_str()).collect();
                let message = if known.is_empty() {
                    format!("runbook {} declares no parameters", self.name)
                } else {
                    format!(
                        "runbook {} has no such parameter; it has: {}",
                        self.name,
                        known.join(", ")
                    )
                };
                return Err(InputError { message, ..error() });
            }
            if value.trim().is_empty() {
                return Err(InputError {
                    message: "empty: give a value, or leave the parameter out to use its default"
                        .into(),
                    ..error()
                });
            }
            if value.chars().any(char::is_control) {
                return Err(InputError {
                    message: "control characters (such as newlines) are not allowed in a parameter"
                        .into(),
                    ..error()
                });
            }
            // Runbooks quote parameters in their commands; a value that carries a quote could
            // close that quoting and append a command of its own.
            if let Some(quote) = value.chars().find(|c| QUOTES.contains(c)) {
                return Err(InputError {
                    message: format!(
                        "quote characters ({quote}) are not allowed in a parameter: runbooks put values inside quotes"
                    ),
                    ..error()
                });
            }
            if values.contains_key(name) {
                return Err(InputError {
                    message: "given twice; pass each parameter once".into(),
                    ..error()
                });
            }
            values.insert(name.clone(), value.clone());
        }
        for param in &self.params {
            if values.contains_key(&param.name) {
                continue;
            }
            let default = param.default.clone().ok_or_else(|| InputError {
                file: origin.to_string(),
                line: None,
                owner: None,
                field: format!("params.{}", param.name),
                value: None,
                message: format!(
                    "runbook {} requires this parameter; pass it as --param {}=VALUE",
                    self.file, param.name
                ),
            })?;
            values.insert(param.name.clone(), default);
        }
        Ok(Params(values))
    }

    /// The steps `server` runs, with commands filled in from the fleet and `params`.
    pub fn render_for(
        &self,
        fleet: &Fleet,
        server: ServerId,
        params: &Params,
    ) -> Result<Vec<RenderedStep>, RenderError> {
        let srv = &fleet.servers[server];
        let pool = &fleet.pools[srv.pool];
        let facts = ServerFacts {
            role: srv.role,
            edition: pool.edition,
            collocated_databases: srv.collocated_databases,
        };
        let site = pool.site.map(|s| fleet.sites[s].name.as_str());
        let lookup = |var: &Var| -> Option<&str> {
            match var {
                Var::FleetName => Some(&fleet.name),
                Var::ServerFqdn => Some(&srv.fqdn),
                Var::ServerRole => Some(srv.role.as_str()),
                Var::PoolFqdn => Some(&pool.fqdn),
                Var::PoolEdition => Some(pool.edition.as_str()),
                Var::PoolSqlServer => pool.sql_server.as_deref(),
                Var::PoolSite => site,
                Var::Param(name) => params.0.get(name).map(String::as_str),
            }
        };
        self.steps
            .iter()
            .filter_map(|step| step.variant_for(facts).map(|variant| (step, variant)))
            .map(|(step, variant)| {
                let command = variant.run.render(lookup).map_err(|var| RenderError {
                    runbook: self.file.clone(),
                    step: step.id.clone(),
                    server: srv.fqdn.clone(),
                    hint: match var {
                        Var::PoolSqlServer => format!(": set sql_server on pool {}", pool.fqdn),
                        Var::PoolSite => format!(": set site on pool {}", pool.fqdn),
                        _ => String::new(),
                    },
                    var: var.to_string(),
                })?;
                Ok(RenderedStep {
                    id: step.id.clone(),
                    command,
                    timeout: step.timeout,
                    retries: step.retries,
                    gate_interval: step.gate_interval,
                    idempotent: step.idempotent,
                })
            })
            .collect()
    }
}
