//! The rules R1–R5 (and the optional R7) as a live occupancy check: who is in maintenance now,
//! and whether one more server may join. R6 is a static check, made when the workload is built
//! (see `workload`).

use crate::fleet::{Fleet, PoolId, ServerId, SiteId};
use crate::time::{Millis, clock};
use std::collections::BTreeSet;

/// A rule that kept a server from starting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// R1: one back-end-class server of a pool at a time.
    OneBackendPerPool,
    /// R2: a pool's back-end-class and other servers are never down together.
    BackendApartFromOthers,
    /// R3: at most `max_unavailable` other servers of a pool.
    PoolMaxUnavailable,
    /// R4: paired pools are never degraded together.
    PairedPoolDegraded,
    /// R5: a site's `max_parallel`.
    SiteCap(SiteId),
    /// R5: the fleet's `max_parallel`.
    FleetCap,
    /// R7 (opt-in, `backends_last`): a pool's back-end-class servers wait until all its other
    /// servers are done.
    BackendsLast,
    /// `batches:N`: the server waits for the current batch (numbered from 1) to finish.
    Batch(u32),
    /// Canary: only the first `canary_pools` pools run until an operator approves.
    Canary,
    /// Maintenance window: the server would not end inside an open window of its site (or
    /// fleet). The holder is the server itself.
    Window,
}

impl Rule {
    /// A rule about the server's own pool (or its pair), as opposed to a cap or a batch.
    pub fn is_pool_rule(self) -> bool {
        matches!(
            self,
            Rule::OneBackendPerPool
                | Rule::BackendApartFromOthers
                | Rule::PoolMaxUnavailable
                | Rule::PairedPoolDegraded
                | Rule::BackendsLast
        )
    }

    pub fn code(self) -> &'static str {
        match self {
            Rule::OneBackendPerPool => "R1",
            Rule::BackendApartFromOthers => "R2",
            Rule::PoolMaxUnavailable => "R3",
            Rule::PairedPoolDegraded => "R4",
            Rule::SiteCap(_) | Rule::FleetCap => "R5",
            Rule::BackendsLast => "R7",
            Rule::Batch(_) => "batch",
            Rule::Canary => "canary",
            Rule::Window => "window",
        }
    }
}

/// Why a server could not start: the rule, and the server that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocker {
    pub rule: Rule,
    pub holder: ServerId,
    pub until: Until,
}

/// How long a holder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// It is expected to leave maintenance then.
    At(Millis),
    /// It failed: a failed server stays down until someone repairs it.
    Repaired,
    /// It has not started yet (R7: the back end waits for it to be done).
    Done,
    /// For ever: no maintenance window is long enough for the server.
    Never,
}

impl Blocker {
    /// One line for operators, e.g. `R1: be01 holds pool01 until 00:24`.
    pub fn describe(&self, fleet: &Fleet, names: &crate::report::ShortNames) -> String {
        let holder = names.server(self.holder);
        let pool_id = fleet.servers[self.holder].pool;
        let pool = names.pool(pool_id);
        let until = match self.until {
            Until::At(t) => format!("until {}", clock(t)),
            Until::Repaired => "until its failure is resolved".to_string(),
            Until::Done => "until it is done".to_string(),
            Until::Never => "for ever".to_string(),
        };
        let code = self.rule.code();
        match self.rule {
            Rule::OneBackendPerPool => format!("{code}: {holder} holds {pool} {until}"),
            Rule::BackendApartFromOthers => format!("{code}: {holder} is down in {pool} {until}"),
            Rule::PoolMaxUnavailable => format!(
                "{code}: {pool} is at max_unavailable = {}; {holder} is down {until}",
                fleet.pools[pool_id].max_unavailable
            ),
            Rule::PairedPoolDegraded => {
                format!("{code}: {holder} degrades paired pool {pool} {until}")
            }
            Rule::SiteCap(site) => format!(
                "{code}: site {} is at max_parallel = {}; {holder} is down {until}",
                fleet.sites[site].name,
                fleet.sites[site].max_parallel.unwrap_or(0)
            ),
            Rule::FleetCap => format!(
                "{code}: fleet is at max_parallel = {}; {holder} is down {until}",
                fleet.max_parallel.unwrap_or(0)
            ),
            Rule::BackendsLast => {
                format!("{code}: {pool} updates its back ends last, after {holder}")
            }
            Rule::Batch(n) => format!("{code}: waits for batch {n}; {holder} is down {until}"),
            Rule::Canary => format!(
                "{code}: waits for `baton approve` once the first {} pool(s) are done ({pool} among them)",
                fleet.canary_pools.unwrap_or(0)
            ),
            Rule::Window => match self.until {
                Until::At(t) => format!(
                    "{code}: {holder} fits its next window ({}) at {}",
                    fleet.windows_of(self.holder).describe(),
                    clock(t)
                ),
                _ => format!(
                    "{code}: no window ({}) is long enough for {holder}",
                    fleet.windows_of(self.holder).describe()
                ),
            },
        }
    }
}

/// Who is in maintenance, indexed for the rule checks.
#[derive(Debug, Clone)]
pub struct Occupancy {
    server_pool: Vec<PoolId>,
    server_site: Vec<Option<SiteId>>,
    backend_class: Vec<bool>,
    pool_partner: Vec<Option<PoolId>>,
    pool_max_unavailable: Vec<u32>,
    site_cap: Vec<Option<u32>>,
    fleet_cap: Option<u32>,
    /// Expected end of each server in maintenance; `Millis::MAX` = held until repaired.
    expected_end: Vec<Millis>,
    backends_down: Vec<Vec<ServerId>>,
    others_down: Vec<Vec<ServerId>>,
    /// Per `backends_last` pool, its other servers that have not started yet (R7).
    others_not_started: Vec<BTreeSet<ServerId>>,
    site_down: Vec<BTreeSet<(Millis, ServerId)>>,
    fleet_down: BTreeSet<(Millis, ServerId)>,
}

impl Occupancy {
    pub fn new(fleet: &Fleet) -> Self {
        let servers = fleet.servers.len();
        Occupancy {
            server_pool: fleet.servers.iter().map(|s| s.pool).collect(),
            server_site: (0..servers).map(|s| fleet.site_of(s)).collect(),
            backend_class: fleet
                .servers
                .iter()
                .map(|s| s.role.is_backend_class())
                .collect(),
            pool_partner: fleet.pools.iter().map(|p| p.paired_with).collect(),
            pool_max_unavailable: fleet.pools.iter().map(|p| p.max_unavailable).collect(),
            site_cap: fleet.sites.iter().map(|s| s.max_parallel).collect(),
            fleet_cap: fleet.max_parallel,
            expected_end: vec![0; servers],
            backends_down: vec![Vec::new(); fleet.pools.len()],
            others_down: vec![Vec::new(); fleet.pools.len()],
            others_not_started: fleet
                .pools
                .iter()
                .map(|p| {
                    let others = p
                        .servers
                        .iter()
                        .filter(|&&s| !fleet.servers[s].role.is_backend_class());
                    if p.backends_last {
                        others.copied().collect()
                    } else {
                        BTreeSet::new()
                    }
                })
                .collect(),
            site_down: vec![BTreeSet::new(); fleet.sites.len()],
            fleet_down: BTreeSet::new(),
        }
    }

    fn until(&self, server: ServerId) -> Until {
        match self.expected_end[server] {
            Millis::MAX => Until::Repaired,
            t => Until::At(t),
        }
    }

    fn blocker(&self, rule: Rule, holder: ServerId) -> Blocker {
        Blocker {
            rule,
            holder,
            until: self.until(holder),
        }
    }

    /// The first down server of `set` to come back.
    fn earliest(&self, set: &[ServerId]) -> ServerId {
        *set.iter()
            .min_by_key(|&&s| (self.expected_end[s], s))
            .expect("non-empty holder set")
    }

    /// Whether `server` may enter maintenance now; if not, the rule and its holder.
    /// Pool-local rules come first because they name the most specific cause.
    pub fn check(&self, server: ServerId) -> Result<(), Blocker> {
        let pool = self.server_pool[server];
        let backends = &self.backends_down[pool];
        let others = &self.others_down[pool];
        if self.backend_class[server] {
            if let Some(&holder) = backends.first() {
                return Err(self.blocker(Rule::OneBackendPerPool, holder));
            }
            if !others.is_empty() {
                return Err(self.blocker(Rule::BackendApartFromOthers, self.earliest(others)));
            }
            if let Some(&holder) = self.others_not_started[pool].first() {
                return Err(Blocker {
                    rule: Rule::BackendsLast,
                    holder,
                    until: Until::Done,
                });
            }
            if let Some(partner) = self.pool_partner[pool]
                && let Some(&holder) = self.backends_down[partner].first()
            {
                return Err(self.blocker(Rule::PairedPoolDegraded, holder));
            }
        } else {
            if let Some(&holder) = backends.first() {
                return Err(self.blocker(Rule::BackendApartFromOthers, holder));
            }
            if others.len() >= self.pool_max_unavailable[pool] as usize {
                return Err(self.blocker(Rule::PoolMaxUnavailable, self.earliest(others)));
            }
        }
        if let Some(site) = self.server_site[server] {
            self.site_has_room(site)?;
        }
        self.fleet_has_room()
    }

    /// R5 for a site.
    fn site_has_room(&self, site: SiteId) -> Result<(), Blocker> {
        match (self.site_cap[site], self.site_down[site].first()) {
            (Some(cap), Some(&(_, holder))) if self.site_down[site].len() >= cap as usize => {
                Err(self.blocker(Rule::SiteCap(site), holder))
            }
            _ => Ok(()),
        }
    }

    /// R5 for the fleet alone.
    pub fn fleet_has_room(&self) -> Result<(), Blocker> {
        match (self.fleet_cap, self.fleet_down.first()) {
            (Some(cap), Some(&(_, holder))) if self.fleet_down.len() >= cap as usize => {
                Err(self.blocker(Rule::FleetCap, holder))
            }
            _ => Ok(()),
        }
    }

    pub fn enter(&mut self, server: ServerId, expected_end: Millis) {
        self.expected_end[server] = expected_end;
        let pool = self.server_pool[server];
        if self.backend_class[server] {
            self.backends_down[pool].push(server);
        } else {
            self.others_down[pool].push(server);
            self.others_not_started[pool].remove(&server);
        }
        if let Some(site) = self.server_site[server] {
            self.site_down[site].insert((expected_end, server));
        }
        self.fleet_down.insert((expected_end, server));
    }

    pub fn leave(&mut self, server: ServerId) {
        let pool = self.server_pool[server];
        let end = self.expected_end[server];
        self.backends_down[pool].retain(|&s| s != server);
        self.others_down[pool].retain(|&s| s != server);
        if let Some(site) = self.server_site[server] {
            self.site_down[site].remove(&(end, server));
        }
        self.fleet_down.remove(&(end, server));
    }

    /// A failed server stays down until an operator repairs it, so it keeps holding its pool's
    /// rules: its pool stays degraded and a paired pool stays safe. It gives back its site and
    /// fleet slots: the caps bound the servers Baton works on, and a quarantined server is out
    /// of its hands (else a few failures would stall the rollout long before `max_failures`).
    pub fn hold_until_repaired(&mut self, server: ServerId) {
        let end = self.expected_end[server];
        if let Some(site) = self.server_site[server] {
            self.site_down[site].remove(&(end, server));
        }
        self.fleet_down.remove(&(end, server));
        self.expected_end[server] = Millis::MAX;
    }
}
