//! Seeded generator of Skype-for-Business-like fleets, for property tests and benchmarks:
//! Enterprise pools with one or two back ends and several front ends (some collocated
//! databases), Standard Edition servers, Edge/Director/Mediation pools, pairs, site and fleet
//! caps. Same spec and seed, same fleet.

use crate::fleet::{DEFAULT_OUTAGE_BUDGET, Edition, Fleet, Pool, Role, Server, Site};
use crate::time::Millis;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Clone, PartialEq)]
pub struct FleetSpec {
    pub servers: usize,
    pub pools: usize,
    pub sites: usize,
    pub site_cap: Option<u32>,
    pub fleet_cap: Option<u32>,
    /// Share of pools that are Standard Edition servers.
    pub standard_share: f64,
    /// Share of pools that are paired with a neighbour of the same edition.
    pub paired_share: f64,
    /// Most non-back-end servers of a pool down at once is drawn from `1..=max_unavailable`.
    pub max_unavailable: u32,
    /// Share of pools that update their back ends last (R7).
    pub backends_last_share: f64,
    pub seed: u64,
}

impl FleetSpec {
    /// The benchmark's fleet: 10,000 servers in 2,500 pools over 8 capped sites.
    pub fn large(seed: u64) -> Self {
        FleetSpec {
            servers: 10_000,
            pools: 2_500,
            sites: 8,
            site_cap: Some(40),
            fleet_cap: Some(250),
            standard_share: 0.3,
            paired_share: 0.4,
            max_unavailable: 2,
            backends_last_share: 0.0,
            seed,
        }
    }
}

const MINUTE: Millis = 60_000;

fn minutes(rng: &mut ChaCha8Rng, low: u64, high: u64) -> Millis {
    rng.random_range(low * MINUTE..=high * MINUTE) / 1000 * 1000
}

/// Generates a fleet matching `spec`. The server count is exact when `servers >= pools` and the
/// Enterprise pools can hold the surplus (at most 18 servers each).
pub fn generate(spec: &FleetSpec) -> Fleet {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let sites: Vec<Site> = (0..spec.sites)
        .map(|i| Site {
            name: format!("site{i:02}"),
            max_parallel: spec.site_cap,
            windows: Default::default(),
        })
        .collect();
    let pool_count = spec.pools.max(1);
    let standard: Vec<bool> = (0..pool_count)
        .map(|_| rng.random::<f64>() < spec.standard_share)
        .collect();

    // Every pool gets its minimum (SE: one server; EE: one server), then the remaining
    // servers are dealt to random Enterprise pools.
    let mut sizes: Vec<usize> = vec![1; pool_count];
    let enterprise: Vec<usize> = (0..pool_count).filter(|&p| !standard[p]).collect();
    const MAX_POOL_SIZE: usize = 18;
    let room = enterprise.len() * (MAX_POOL_SIZE - 1);
    let mut left = spec.servers.saturating_sub(pool_count).min(room);
    while left > 0 {
        let p = enterprise[rng.random_range(0..enterprise.len())];
        if sizes[p] < MAX_POOL_SIZE {
            sizes[p] += 1;
            left -= 1;
        }
    }

    let mut pools = Vec::with_capacity(pool_count);
    let mut servers = Vec::with_capacity(spec.servers);
    for (p, &size) in sizes.iter().enumerate() {
        let fqdn = format!("pool{p:05}.contoso.com");
        let site = (!sites.is_empty()).then(|| p % sites.len());
        let edition = if standard[p] {
            Edition::Standard
        } else {
            Edition::Enterprise
        };
        // Enterprise pools: front-end pools with 1–2 back ends, or Edge/Director/Mediation pools.
        let kind: f64 = rng.random();
        let backends = match (edition, kind) {
            (Edition::Standard, _) => 0,
            (_, k) if k < 0.15 => 0,
            (_, k) if k < 0.55 || size < 3 => 1,
            _ => 2,
        };
        let other_role = match kind {
            k if k < 0.05 => Role::Edge,
            k if k < 0.10 => Role::Director,
            k if k < 0.15 => Role::Mediation,
            _ => Role::Frontend,
        };
        let collocated = rng.random::<f64>() < 0.3;
        let mut members = Vec::with_capacity(size);
        for i in 0..size {
            let (role, duration, name) = if edition == Edition::Standard {
                (
                    Role::Standard,
                    minutes(&mut rng, 18, 26),
                    format!("se{p:05}"),
                )
            } else if i < backends.min(size) {
                (
                    Role::Backend,
                    minutes(&mut rng, 10, 24),
                    format!("be{p:05}-{i}"),
                )
            } else {
                (
                    other_role,
                    minutes(&mut rng, 10, 20),
                    format!("fe{p:05}-{i}"),
                )
            };
            members.push(servers.len());
            servers.push(Server {
                fqdn: format!("{name}.contoso.com"),
                pool: p,
                role,
                collocated_databases: role == Role::Backend && collocated,
                expected_duration: Some(duration),
                line: None,
                duration_line: None,
            });
        }
        pools.push(Pool {
            fqdn,
            site,
            edition,
            sql_server: (backends > 0).then(|| format!("sql{p:05}.contoso.com")),
            paired_with: None,
            outage_budget: DEFAULT_OUTAGE_BUDGET,
            max_unavailable: rng.random_range(1..=spec.max_unavailable.max(1)),
            // Drawn only when asked for, so fleets generated without it stay as they were.
            backends_last: spec.backends_last_share > 0.0
                && rng.random::<f64>() < spec.backends_last_share,
            servers: members,
        });
    }

    // Pair neighbours of the same edition, as DR pairs usually mirror each other.
    let mut p = 0;
    while p + 1 < pools.len() {
        if pools[p].edition == pools[p + 1].edition && rng.random::<f64>() < spec.paired_share {
            pools[p].paired_with = Some(p + 1);
            pools[p + 1].paired_with = Some(p);
            p += 2;
        } else {
            p += 1;
        }
    }

    Fleet {
        file: format!("(generated, seed {})", spec.seed),
        name: format!("generated-{}", spec.seed),
        max_parallel: spec.fleet_cap,
        max_failures: u32::MAX,
        canary_pools: None,
        sites,
        pools,
        servers,
        windows: Default::default(),
    }
}

/// Writes a fleet as a fleet file (the format of docs/fleet.md), so generated fleets can be
/// fed to `baton` and the loader can be measured and checked on them.
fn write_windows(out: &mut String, table: &str, windows: &crate::window::Windows) {
    use std::fmt::Write;
    for w in &windows.0 {
        let days: Vec<String> = crate::window::DAY_NAMES
            .iter()
            .zip(w.days)
            .filter(|(_, on)| *on)
            .map(|(name, _)| format!("\"{name}\""))
            .collect();
        let hhmm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        let _ = writeln!(
            out,
            "\n[[{table}]]\ndays = [{}]\nstart = \"{}\"\nend = \"{}\"\ntime_zone = \"{}\"",
            days.join(", "),
            hhmm(w.start),
            hhmm(w.end),
            w.time_zone
        );
    }
}

pub fn to_toml(fleet: &Fleet) -> String {
    use crate::time::human;
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "[fleet]\nname = \"{}\"", fleet.name);
    if let Some(cap) = fleet.max_parallel {
        let _ = writeln!(out, "max_parallel = {cap}");
    }
    let _ = writeln!(out, "max_failures = {}", fleet.max_failures);
    if let Some(canary) = fleet.canary_pools {
        let _ = writeln!(out, "canary_pools = {canary}");
    }
    write_windows(&mut out, "window", &fleet.windows);
    for site in &fleet.sites {
        let _ = writeln!(out, "\n[[site]]\nname = \"{}\"", site.name);
        if let Some(cap) = site.max_parallel {
            let _ = writeln!(out, "max_parallel = {cap}");
        }
        write_windows(&mut out, "site.window", &site.windows);
    }
    for pool in &fleet.pools {
        let _ = writeln!(
            out,
            "\n[[pool]]\nfqdn = \"{}\"\nedition = \"{}\"",
            pool.fqdn, pool.edition
        );
        if let Some(site) = pool.site {
            let _ = writeln!(out, "site = \"{}\"", fleet.sites[site].name);
        }
        if let Some(sql) = &pool.sql_server {
            let _ = writeln!(out, "sql_server = \"{sql}\"");
        }
        if let Some(partner) = pool.paired_with {
            let _ = writeln!(out, "paired_with = \"{}\"", fleet.pools[partner].fqdn);
        }
        let _ = writeln!(out, "outage_budget = \"{}\"", human(pool.outage_budget));
        let _ = writeln!(out, "max_unavailable = {}", pool.max_unavailable);
        if pool.backends_last {
            let _ = writeln!(out, "backends_last = true");
        }
        for &id in &pool.servers {
            let server = &fleet.servers[id];
            let _ = writeln!(
                out,
                "\n  [[pool.server]]\n  fqdn = \"{}\"\n  role = \"{}\"",
                server.fqdn, server.role
            );
            if server.collocated_databases {
                let _ = writeln!(out, "  collocated_databases = true");
            }
            if let Some(duration) = server.expected_duration {
                let _ = writeln!(out, "  expected_duration = \"{}\"", human(duration));
            }
        }
    }
    out
}
