//! The fleet: sites, pools and servers, validated and indexed for the scheduler.

mod load;
mod names;
mod raw;

pub use load::load_fleet;
pub use names::{FQDN_SYNTAX, NAME_SYNTAX, is_valid_fqdn, is_valid_name};

use crate::time::Millis;
use crate::window::Windows;
use serde::Serialize;
use std::fmt;

pub type SiteId = usize;
pub type PoolId = usize;
pub type ServerId = usize;

/// Default resiliency-mode threshold of a pool (Skype for Business: 30 minutes).
pub const DEFAULT_OUTAGE_BUDGET: Millis = 30 * 60 * 1000;

/// A validated fleet. Servers are stored flat, in the order the file lists them ("fleet order").
#[derive(Debug, Clone, PartialEq)]
pub struct Fleet {
    /// The file the fleet was read from, for error messages raised later (R6).
    pub file: String,
    pub name: String,
    pub max_parallel: Option<u32>,
    pub max_failures: u32,
    /// Canary: the first this-many pools run, then the rollout waits for an operator's
    /// approval before any other pool starts.
    pub canary_pools: Option<u32>,
    pub sites: Vec<Site>,
    pub pools: Vec<Pool>,
    pub servers: Vec<Server>,
    /// Fleet-wide maintenance windows; empty: always open.
    pub windows: Windows,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    pub name: String,
    pub max_parallel: Option<u32>,
    /// This site's maintenance windows; they replace the fleet's when there are any.
    pub windows: Windows,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub fqdn: String,
    pub site: Option<SiteId>,
    pub edition: Edition,
    pub sql_server: Option<String>,
    pub paired_with: Option<PoolId>,
    pub outage_budget: Millis,
    pub max_unavailable: u32,
    /// R7 (opt-in): back-end-class servers only after all other servers of the pool are done,
    /// e.g. Skype for Business front-end binaries before the back end's database update.
    pub backends_last: bool,
    /// Members in fleet order.
    pub servers: Vec<ServerId>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub fqdn: String,
    pub pool: PoolId,
    pub role: Role,
    pub collocated_databases: bool,
    pub expected_duration: Option<Millis>,
    /// Line of the server's `[[pool.server]]` header, for later errors.
    pub line: Option<u32>,
    /// Line of its `expected_duration`, for R6 errors about it.
    pub duration_line: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Edition {
    Enterprise,
    Standard,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Backend,
    Standard,
    Frontend,
    Edge,
    Mediation,
    Director,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Backend,
        Role::Standard,
        Role::Frontend,
        Role::Edge,
        Role::Mediation,
        Role::Director,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Backend => "backend",
            Role::Standard => "standard",
            Role::Frontend => "frontend",
            Role::Edge => "edge",
            Role::Mediation => "mediation",
            Role::Director => "director",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// `backend` and `standard` servers hold a pool's databases: taking one down degrades the
    /// pool and spends its outage budget.
    pub fn is_backend_class(self) -> bool {
        matches!(self, Role::Backend | Role::Standard)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Edition {
    /// The error message for a value `parse` refuses.
    pub const EXPECTED: &'static str = "unknown edition; expected \"enterprise\" or \"standard\"";

    pub fn parse(text: &str) -> Option<Edition> {
        [Edition::Enterprise, Edition::Standard]
            .into_iter()
            .find(|e| e.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Edition::Enterprise => "enterprise",
            Edition::Standard => "standard",
        }
    }
}

impl fmt::Display for Edition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Fleet {
    /// Parses and validates a fleet file's text; `file` is only used to name it in errors.
    pub fn from_toml(file: &str, text: &str) -> Result<Fleet, crate::InputError> {
        load_fleet(file, text)
    }

    pub fn server_by_fqdn(&self, fqdn: &str) -> Option<ServerId> {
        self.servers
            .iter()
            .position(|s| s.fqdn.eq_ignore_ascii_case(fqdn))
    }

    /// The site of a server, if its pool has one.
    pub fn site_of(&self, server: ServerId) -> Option<SiteId> {
        self.pools[self.servers[server].pool].site
    }

    /// The maintenance windows a server keeps: its site's, or else the fleet's (empty: always
    /// open).
    pub fn windows_of(&self, server: ServerId) -> &Windows {
        match self.site_of(server).map(|site| &self.sites[site].windows) {
            Some(site) if !site.is_empty() => site,
            _ => &self.windows,
        }
    }

    /// Whether any server keeps a maintenance window.
    pub fn has_windows(&self) -> bool {
        !self.windows.is_empty() || self.sites.iter().any(|site| !site.windows.is_empty())
    }
}
