//! Turns a fleet file into a validated [`Fleet`], or one clear [`InputError`].

use super::raw::CountOrPercent;
use super::raw::{RawFleetFile, RawPool, RawServer, RawWindow};
use super::{
    DEFAULT_OUTAGE_BUDGET, Edition, FQDN_SYNTAX, Fleet, NAME_SYNTAX, Pool, PoolId, Role, Server,
    Site, is_valid_fqdn, is_valid_name,
};
use crate::error::{InputError, Source, out_of_range};
use crate::time::{Millis, parse_positive_duration};
use crate::window::{DAY_NAMES, Window, Windows, parse_hhmm};
use std::collections::HashMap;
use toml::Spanned;

/// Parses and validates the text of a fleet file named `file`.
pub fn load_fleet(file: &str, text: &str) -> Result<Fleet, InputError> {
    let src = Source::new(file, text);
    let raw: RawFleetFile = toml::from_str(text).map_err(|e| src.toml_error(&e))?;
    FleetBuilder { src }.build(raw)
}

const NO_CAP: &str = "leave it out for no cap";

struct FleetBuilder<'a> {
    src: Source<'a>,
}

impl FleetBuilder<'_> {
    fn build(&self, raw: RawFleetFile) -> Result<Fleet, InputError> {
        let src = &self.src;
        let fleet_span = raw.fleet.span().start;
        let header = raw.fleet.into_inner();
        let name = header.name;
        if !is_valid_name(name.get_ref()) {
            return Err(src
                .error(Some(name.span().start), "fleet.name")
                .value(name.get_ref())
                .message(NAME_SYNTAX));
        }
        let max_parallel = self.cap(
            header.max_parallel.as_ref(),
            "fleet.max_parallel",
            None,
            NO_CAP,
        )?;
        let canary_pools = self.cap(
            header.canary_pools.as_ref(),
            "fleet.canary_pools",
            None,
            "leave it out for no canary",
        )?;
        // A percentage is turned into a count once the servers are known.
        let max_failures = match &header.max_failures {
            None => FailureLimit::Count(0),
            Some(v) => {
                let err = || src.error(Some(v.span().start), "fleet.max_failures");
                match v.get_ref() {
                    CountOrPercent::Count(n) => match out_of_range(*n, 0) {
                        Some(why) => return Err(err().value(n).message(why)),
                        None => FailureLimit::Count(*n as u32),
                    },
                    CountOrPercent::Percent(text) => FailureLimit::Percent(parse_percent(text).ok_or_else(|| {
                        err().value(text).message(
                            "write a whole number of failures, or a percentage of the fleet's servers like \"10%\" (0% to 100%)",
                        )
                    })?),
                }
            }
        };

        let mut sites = Vec::new();
        let mut site_ids = HashMap::new();
        for raw_site in &raw.site {
            let site = raw_site.get_ref();
            let site_name = site.name.get_ref();
            if !is_valid_name(site_name) {
                return Err(src
                    .error(Some(site.name.span().start), "site.name")
                    .value(site_name)
                    .message(NAME_SYNTAX));
            }
            if site_ids
                .insert(site_name.to_ascii_lowercase(), sites.len())
                .is_some()
            {
                return Err(src
                    .error(Some(site.name.span().start), "site.name")
                    .value(site_name)
                    .message("this site is declared twice"));
            }
            let owner = format!("site {site_name:?}");
            let max_parallel = self.cap(
                site.max_parallel.as_ref(),
                "site.max_parallel",
                Some(&owner),
                NO_CAP,
            )?;
            let windows = self.windows(&site.window, "site.window", Some(&owner))?;
            sites.push(Site {
                name: site_name.clone(),
                max_parallel,
                windows,
            });
        }

        if raw.pool.is_empty() {
            return Err(src.error(Some(fleet_span), "pool").message(
                "the fleet has no pools: add at least one [[pool]] with a [[pool.server]]",
            ));
        }

        let mut pool_ids: HashMap<String, PoolId> = HashMap::new();
        let mut server_lines: HashMap<String, u32> = HashMap::new();
        let mut pools = Vec::new();
        let mut servers = Vec::new();
        for raw_pool in &raw.pool {
            let pool_id = pools.len();
            let pool = self.pool(raw_pool, &site_ids, &sites)?;
            if pool_ids
                .insert(pool.fqdn.to_ascii_lowercase(), pool_id)
                .is_some()
            {
                let fqdn = &raw_pool.get_ref().fqdn;
                return Err(src
                    .error(Some(fqdn.span().start), "pool.fqdn")
                    .value(fqdn.get_ref())
                    .message("this pool is declared twice"));
            }
            let mut pool = pool;
            for raw_server in &raw_pool.get_ref().server {
                let server = self.server(raw_server, pool_id, &pool)?;
                let key = server.fqdn.to_ascii_lowercase();
                let fqdn = &raw_server.get_ref().fqdn;
                // The line of the first `fqdn = ...`, the same kind of line this error points at.
                let line = src.line_of(fqdn.span().start);
                if let Some(first) = server_lines.insert(key, line) {
                    return Err(src
                        .error(Some(fqdn.span().start), "pool.server.fqdn")
                        .value(fqdn.get_ref())
                        .message(format!(
                            "duplicate server: already declared at line {first}; a server belongs to exactly one pool"
                        )));
                }
                pool.servers.push(servers.len());
                servers.push(server);
            }
            self.check_pool_composition(raw_pool, &pool, &servers)?;
            pools.push(pool);
        }

        self.link_pairs(&raw.pool, &pool_ids, &mut pools)?;
        let windows = self.windows(&raw.window, "window", None)?;

        Ok(Fleet {
            file: src.file.to_string(),
            name: name.into_inner(),
            max_parallel,
            max_failures: max_failures.of(servers.len()),
            canary_pools,
            sites,
            pools,
            servers,
            windows,
        })
    }

    /// `[[window]]` (fleet) or `[[site.window]]` entries.
    fn windows(
        &self,
        raw: &[Spanned<RawWindow>],
        field: &str,
        owner: Option<&str>,
    ) -> Result<Windows, InputError> {
        let error = |at: usize, key: &str| {
            let err = self.src.error(Some(at), format!("{field}.{key}"));
            match owner {
                Some(owner) => err.owner(owner),
                None => err,
            }
        };
        let mut windows = Vec::new();
        for entry in raw {
            let entry = entry.get_ref();
            let days = match &entry.days {
                None => [true; 7],
                Some(days) => {
                    let mut set = [false; 7];
                    for day in days.get_ref() {
                        let Some(index) = DAY_NAMES
                            .iter()
                            .position(|name| name.eq_ignore_ascii_case(day))
                        else {
                            return Err(error(days.span().start, "days").value(day).message(
                                "unknown day: write mon, tue, wed, thu, fri, sat or sun",
                            ));
                        };
                        set[index] = true;
                    }
                    if days.get_ref().is_empty() {
                        return Err(error(days.span().start, "days")
                            .message("no days: leave `days` out for every day"));
                    }
                    set
                }
            };
            let time = |value: &Spanned<String>, key: &str| {
                parse_hhmm(value.get_ref())
                    .filter(|&minutes| key == "end" || minutes < 24 * 60)
                    .ok_or_else(|| {
                        error(value.span().start, key)
                            .value(value.get_ref())
                            .message("write a local time as HH:MM, 00:00 to 23:59 (24:00 for an end at midnight)")
                    })
            };
            let start = time(&entry.start, "start")?;
            let end = time(&entry.end, "end")?;
            let zone = entry.time_zone.as_ref();
            let zone_name = zone.map_or("UTC", |z| z.get_ref().as_str());
            let window = Window::new(days, start, end, zone_name).map_err(|why| {
                let at = zone.map_or(entry.start.span().start, |z| z.span().start);
                error(at, "time_zone").value(zone_name).message(why)
            })?;
            windows.push(window);
        }
        Ok(Windows(windows))
    }

    /// A `max_parallel`-like cap: absent, or a whole number of at least one. `if_absent`
    /// tells the user what leaving it out means, which differs between caps.
    fn cap(
        &self,
        value: Option<&Spanned<i64>>,
        field: &str,
        owner: Option<&str>,
        if_absent: &str,
    ) -> Result<Option<u32>, InputError> {
        let Some(value) = value else { return Ok(None) };
        match out_of_range(*value.get_ref(), 1) {
            None => Ok(Some(*value.get_ref() as u32)),
            Some(why) => {
                let err = self
                    .src
                    .error(Some(value.span().start), field)
                    .value(value.get_ref());
                let err = match owner {
                    Some(owner) => err.owner(owner),
                    None => err,
                };
                Err(err.message(format!("{why} ({if_absent})")))
            }
        }
    }

    fn duration(
        &self,
        value: &Spanned<String>,
        field: &str,
        owner: &str,
    ) -> Result<Millis, InputError> {
        parse_positive_duration(value.get_ref()).map_err(|why| {
            self.src
                .error(Some(value.span().start), field)
                .owner(owner)
                .value(value.get_ref())
                .message(why)
        })
    }

    fn pool(
        &self,
        raw_pool: &Spanned<RawPool>,
        site_ids: &HashMap<String, usize>,
        sites: &[Site],
    ) -> Result<Pool, InputError> {
        let src = &self.src;
        let raw = raw_pool.get_ref();
        let fqdn = raw.fqdn.get_ref();
        if !is_valid_fqdn(fqdn) {
            return Err(src
                .error(Some(raw.fqdn.span().start), "pool.fqdn")
                .value(fqdn)
                .message(FQDN_SYNTAX));
        }
        let owner = format!("pool {fqdn:?}");
        let site = match &raw.site {
            None => None,
            Some(site) => Some(
                *site_ids
                    .get(&site.get_ref().to_ascii_lowercase())
                    .ok_or_else(|| {
                        let known: Vec<&str> = sites.iter().map(|s| s.name.as_str()).collect();
                        src.error(Some(site.span().start), "pool.site")
                            .owner(&owner)
                            .value(site.get_ref())
                            .message(if known.is_empty() {
                                "unknown site: the file declares no [[site]]".to_string()
                            } else {
                                format!("unknown site; declared sites: {}", known.join(", "))
                            })
                    })?,
            ),
        };
        let edition = Edition::parse(raw.edition.get_ref()).ok_or_else(|| {
            src.error(Some(raw.edition.span().start), "pool.edition")
                .owner(&owner)
                .value(raw.edition.get_ref())
                .message(Edition::EXPECTED)
        })?;
        let sql_server = match &raw.sql_server {
            None => None,
            Some(sql) if !is_valid_fqdn(sql.get_ref()) => {
                return Err(src
                    .error(Some(sql.span().start), "pool.sql_server")
                    .owner(&owner)
                    .value(sql.get_ref())
                    .message(FQDN_SYNTAX));
            }
            Some(sql) if edition == Edition::Standard => {
                return Err(src
                    .error(Some(sql.span().start), "pool.sql_server")
                    .owner(&owner)
                    .value(sql.get_ref())
                    .message(
                        "a standard-edition pool uses its local databases; remove sql_server",
                    ));
            }
            Some(sql) => Some(sql.get_ref().clone()),
        };
        let outage_budget = match &raw.outage_budget {
            None => DEFAULT_OUTAGE_BUDGET,
            Some(budget) => self.duration(budget, "pool.outage_budget", &owner)?,
        };
        let max_unavailable = self
            .cap(
                raw.max_unavailable.as_ref(),
                "pool.max_unavailable",
                Some(&owner),
                "leave it out for the default, 1",
            )?
            .unwrap_or(1);
        Ok(Pool {
            fqdn: fqdn.clone(),
            site,
            edition,
            sql_server,
            paired_with: None,
            outage_budget,
            max_unavailable,
            backends_last: raw.backends_last.unwrap_or(false),
            servers: Vec::new(),
        })
    }

    fn server(
        &self,
        raw_server: &Spanned<RawServer>,
        pool_id: PoolId,
        pool: &Pool,
    ) -> Result<Server, InputError> {
        let src = &self.src;
        let raw = raw_server.get_ref();
        let fqdn = raw.fqdn.get_ref();
        if !is_valid_fqdn(fqdn) {
            return Err(src
                .error(Some(raw.fqdn.span().start), "pool.server.fqdn")
                .owner(format!("pool {:?}", pool.fqdn))
                .value(fqdn)
                .message(FQDN_SYNTAX));
        }
        let owner = format!("server {fqdn:?}");
        let role = Role::parse(raw.role.get_ref()).ok_or_else(|| {
            let known: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
            src.error(Some(raw.role.span().start), "pool.server.role")
                .owner(&owner)
                .value(raw.role.get_ref())
                .message(format!(
                    "unknown role; expected one of {}",
                    known.join(", ")
                ))
        })?;
        let collocated_databases = raw
            .collocated_databases
            .as_ref()
            .is_some_and(|c| *c.get_ref());
        if collocated_databases && role != Role::Backend {
            let flag = raw.collocated_databases.as_ref().expect("checked above");
            return Err(src
                .error(Some(flag.span().start), "pool.server.collocated_databases")
                .owner(&owner)
                .value(true)
                .message(format!(
                    "only a back end (role \"backend\") hosts collocated databases; this server's role is \"{role}\""
                )));
        }
        let expected_duration = match &raw.expected_duration {
            None => None,
            Some(d) => Some(self.duration(d, "pool.server.expected_duration", &owner)?),
        };
        Ok(Server {
            fqdn: fqdn.clone(),
            pool: pool_id,
            role,
            collocated_databases,
            expected_duration,
            line: Some(src.line_of(raw_server.span().start)),
            duration_line: raw
                .expected_duration
                .as_ref()
                .map(|d| src.line_of(d.span().start)),
        })
    }

    /// Edition rules: a standard-edition pool is exactly one `standard` server; `standard`
    /// servers live only there; an enterprise back end needs the SQL FQDN its runbook targets.
    fn check_pool_composition(
        &self,
        raw_pool: &Spanned<RawPool>,
        pool: &Pool,
        servers: &[Server],
    ) -> Result<(), InputError> {
        let src = &self.src;
        let raw = raw_pool.get_ref();
        let owner = format!("pool {:?}", pool.fqdn);
        let members: Vec<&Server> = pool.servers.iter().map(|&id| &servers[id]).collect();
        if members.is_empty() {
            return Err(src
                .error(Some(raw_pool.span().start), "pool.server")
                .owner(&owner)
                .message("the pool has no servers: add at least one [[pool.server]]"));
        }
        match pool.edition {
            Edition::Standard => {
                if members.len() != 1 || members[0].role != Role::Standard {
                    let roles: Vec<String> = members
                        .iter()
                        .map(|s| format!("{} ({})", s.fqdn, s.role))
                        .collect();
                    return Err(src
                        .error(Some(raw.edition.span().start), "pool.edition")
                        .owner(&owner)
                        .value("standard")
                        .message(format!(
                            "a standard-edition pool has exactly one server, of role \"standard\"; found {}",
                            roles.join(", ")
                        )));
                }
            }
            Edition::Enterprise => {
                for (server, raw_server) in members.iter().zip(&raw.server) {
                    if server.role == Role::Standard {
                        return Err(src
                            .error(Some(raw_server.get_ref().role.span().start), "pool.server.role")
                            .owner(format!("server {:?}", server.fqdn))
                            .value("standard")
                            .message("role \"standard\" is a Standard Edition server; it belongs in a pool with edition = \"standard\""));
                    }
                }
                if pool.sql_server.is_none() && members.iter().any(|s| s.role == Role::Backend) {
                    return Err(src
                        .error(Some(raw.fqdn.span().start), "pool.sql_server")
                        .owner(&owner)
                        .message("required: an enterprise pool with a back end needs the SQL Server FQDN its database update targets"));
                }
            }
        }
        Ok(())
    }

    /// Pairing is symmetric and one-to-one; either side (or both) may declare it.
    fn link_pairs(
        &self,
        raw_pools: &[Spanned<RawPool>],
        pool_ids: &HashMap<String, PoolId>,
        pools: &mut [Pool],
    ) -> Result<(), InputError> {
        let src = &self.src;
        for (id, raw_pool) in raw_pools.iter().enumerate() {
            let Some(partner_name) = &raw_pool.get_ref().paired_with else {
                continue;
            };
            let owner = format!("pool {:?}", pools[id].fqdn);
            let err = || {
                src.error(Some(partner_name.span().start), "pool.paired_with")
                    .owner(&owner)
                    .value(partner_name.get_ref())
            };
            let partner = *pool_ids
                .get(&partner_name.get_ref().to_ascii_lowercase())
                .ok_or_else(|| err().message("unknown pool: no [[pool]] has this fqdn"))?;
            if partner == id {
                return Err(err().message("a pool cannot be paired with itself"));
            }
            for (a, b) in [(id, partner), (partner, id)] {
                match pools[a].paired_with {
                    Some(existing) if existing != b => {
                        return Err(err().message(format!(
                            "pairing is one-to-one, but {} is already paired with {}",
                            pools[a].fqdn, pools[existing].fqdn
                        )));
                    }
                    _ => pools[a].paired_with = Some(b),
                }
            }
        }
        Ok(())
    }
}

/// `max_failures` as written: a count, or a share of the fleet's servers.
enum FailureLimit {
    Count(u32),
    Percent(f64),
}

impl FailureLimit {
    /// The count for a fleet of `servers`: a percentage rounds down, so "10%" of 29 servers
    /// tolerates 2 failures, never more than asked.
    fn of(&self, servers: usize) -> u32 {
        match *self {
            FailureLimit::Count(n) => n,
            FailureLimit::Percent(p) => ((p / 100.0) * servers as f64).floor() as u32,
        }
    }
}

/// "10%", "2.5%": a percentage from 0 to 100.
fn parse_percent(text: &str) -> Option<f64> {
    let number: f64 = text.trim().strip_suffix('%')?.trim().parse().ok()?;
    (0.0..=100.0).contains(&number).then_some(number)
}
