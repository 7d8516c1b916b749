//! The fleet file exactly as written: every key kept with its position so validation can point
//! at the line. Unknown keys are refused here (`deny_unknown_fields`) to catch typos.

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFleetFile {
    pub fleet: Spanned<RawFleet>,
    #[serde(default)]
    pub site: Vec<Spanned<RawSite>>,
    #[serde(default)]
    pub pool: Vec<Spanned<RawPool>>,
    /// Fleet-wide maintenance windows (a site's own windows replace them).
    #[serde(default)]
    pub window: Vec<Spanned<RawWindow>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWindow {
    /// `["mon", "tue", ...]`; absent: every day.
    pub days: Option<Spanned<Vec<String>>>,
    pub start: Spanned<String>,
    pub end: Spanned<String>,
    /// IANA name; absent: UTC.
    pub time_zone: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFleet {
    pub name: Spanned<String>,
    pub max_parallel: Option<Spanned<i64>>,
    pub max_failures: Option<Spanned<CountOrPercent>>,
    pub canary_pools: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSite {
    pub name: Spanned<String>,
    pub max_parallel: Option<Spanned<i64>>,
    #[serde(default)]
    pub window: Vec<Spanned<RawWindow>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    pub fqdn: Spanned<String>,
    pub site: Option<Spanned<String>>,
    pub edition: Spanned<String>,
    pub sql_server: Option<Spanned<String>>,
    pub paired_with: Option<Spanned<String>>,
    pub outage_budget: Option<Spanned<String>>,
    pub max_unavailable: Option<Spanned<i64>>,
    pub backends_last: Option<bool>,
    #[serde(default)]
    pub server: Vec<Spanned<RawServer>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub fqdn: Spanned<String>,
    pub role: Spanned<String>,
    pub collocated_databases: Option<Spanned<bool>>,
    pub expected_duration: Option<Spanned<String>>,
}

/// `max_failures = 3` or `max_failures = "5%"` (of the fleet's servers).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum CountOrPercent {
    Count(i64),
    Percent(String),
}
