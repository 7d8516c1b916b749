//! Runbooks: the ordered steps a worker runs on one server, with variants picked by the
//! server's role, its pool's edition and database collocation.

mod load;
mod raw;
mod render;
pub mod template;

pub use render::{Params, RenderError, RenderedStep};
pub use template::{Template, Var};

use crate::fleet::{Edition, Role};
use crate::time::Millis;
use std::collections::BTreeMap;

/// A validated runbook.
#[derive(Debug, Clone, PartialEq)]
pub struct Runbook {
    pub file: String,
    pub name: String,
    pub description: Option<String>,
    pub shell: Shell,
    /// Default expected duration of a server without its own `expected_duration`.
    pub expected_duration: Option<Millis>,
    /// Per-role defaults, which win over `expected_duration`.
    pub expected_duration_by_role: BTreeMap<Role, Millis>,
    pub params: Vec<Param>,
    pub steps: Vec<Step>,
}

/// The interpreter a worker starts, fresh and non-interactive, for every step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shell {
    PowerShell,
    Sh,
}

impl Shell {
    pub fn as_str(self) -> &'static str {
        match self {
            Shell::PowerShell => "powershell",
            Shell::Sh => "sh",
        }
    }
}

/// A value the operator supplies for the whole rollout (e.g. the update package path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub default: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub id: String,
    pub timeout: Millis,
    pub retries: u32,
    /// A health gate: the command is tried every `interval` until it succeeds, within
    /// `timeout`. The server leaves maintenance only after its gates pass.
    pub gate_interval: Option<Millis>,
    /// Safe to run again when a worker restarted in the middle of it (`idempotent = true`;
    /// gates are, unless they say otherwise). A step that is not puts its server in
    /// `needs_attention` after such an interruption.
    pub idempotent: bool,
    /// Tried in order; the first whose condition matches runs. None matching: the step is
    /// left out for that server.
    pub variants: Vec<Variant>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub name: Option<String>,
    pub when: Condition,
    pub run: Template,
}

/// What a server must be for a variant to apply; an absent field matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Condition {
    pub roles: Option<Vec<Role>>,
    pub edition: Option<Edition>,
    pub collocated_databases: Option<bool>,
}

/// The facts a condition is evaluated against.
#[derive(Debug, Clone, Copy)]
pub struct ServerFacts {
    pub role: Role,
    pub edition: Edition,
    pub collocated_databases: bool,
}

impl Condition {
    pub fn matches(&self, facts: ServerFacts) -> bool {
        self.roles
            .as_ref()
            .is_none_or(|roles| roles.contains(&facts.role))
            && self.edition.is_none_or(|e| e == facts.edition)
            && self
                .collocated_databases
                .is_none_or(|c| c == facts.collocated_databases)
    }
}

impl Step {
    /// The variant this server runs, if any.
    pub fn variant_for(&self, facts: ServerFacts) -> Option<&Variant> {
        self.variants.iter().find(|v| v.when.matches(facts))
    }
}

impl Runbook {
    /// Parses and validates a runbook file's text; `file` names it in errors.
    pub fn from_toml(file: &str, text: &str) -> Result<Runbook, crate::InputError> {
        load::load_runbook(file, text)
    }

    /// The expected duration the runbook gives a server of `role`, if any.
    pub fn default_duration(&self, role: Role) -> Option<Millis> {
        self.expected_duration_by_role
            .get(&role)
            .copied()
            .or(self.expected_duration)
    }
}
