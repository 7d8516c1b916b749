//! The runbook file as written, positions kept for error messages.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRunbookFile {
    pub runbook: RawHeader,
    #[serde(default)]
    pub params: BTreeMap<String, Spanned<RawParam>>,
    #[serde(default)]
    pub step: Vec<Spanned<RawStep>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeader {
    pub name: Spanned<String>,
    pub description: Option<String>,
    pub shell: Spanned<String>,
    pub expected_duration: Option<Spanned<String>>,
    #[serde(default)]
    pub expected_duration_by_role: BTreeMap<String, Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawParam {
    pub default: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    pub id: Spanned<String>,
    pub timeout: Spanned<String>,
    pub retries: Option<Spanned<i64>>,
    /// `"command"` (default) or `"gate"`.
    pub kind: Option<Spanned<String>>,
    /// For a gate: the wait between tries.
    pub interval: Option<Spanned<String>>,
    /// Safe to run again after an interruption (a worker restart mid-step).
    pub idempotent: Option<bool>,
    /// Spanned so that `when` misplaced on a step with variants can be pointed at.
    pub when: Option<Spanned<RawCondition>>,
    pub run: Option<Spanned<String>>,
    #[serde(default)]
    pub variant: Vec<Spanned<RawVariant>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVariant {
    pub name: Option<String>,
    pub when: Option<RawCondition>,
    pub run: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCondition {
    pub role: Option<Spanned<OneOrMany>>,
    pub edition: Option<Spanned<String>>,
    pub collocated_databases: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "expected a role name or an array of role names")]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn items(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(one) => vec![one.as_str()],
            OneOrMany::Many(many) => many.iter().map(String::as_str).collect(),
        }
    }
}
