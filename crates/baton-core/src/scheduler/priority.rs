//! Which pool goes first.
//!
//! Two pressures compete. A pool's remaining work is a chain the rules force to run mostly in
//! sequence (its back ends one by one, apart from its other servers; a pair's back ends one by
//! one), so a pool whose chain is as long as the time the caps still need (the *horizon*) is
//! critical and must go first. Every other pool only has to keep the capped slots busy, and
//! the rollout ends with the least idle tail when the longest servers go first (LPT).
//! Dispatch therefore walks the critical pools by chain length, then the rest by longest next
//! server.

use crate::fleet::{Fleet, PoolId, ServerId, SiteId};
use crate::time::Millis;
use std::cmp::Reverse;
use std::collections::{BTreeSet, VecDeque};

type Order = BTreeSet<(Reverse<Millis>, PoolId)>;

#[derive(Debug, Clone)]
pub struct PoolQueue {
    partner: Vec<Option<PoolId>>,
    max_unavailable: Vec<u32>,
    backends_last: Vec<bool>,
    pool_site: Vec<Option<SiteId>>,
    expected: Vec<Millis>,
    /// Pending back-end-class servers, in fleet order (admins expect e.g. principal first).
    backends: Vec<VecDeque<ServerId>>,
    /// Pending other servers, longest first: with `max_unavailable > 1` that shortens the pool.
    others: Vec<VecDeque<ServerId>>,
    backend_work: Vec<Millis>,
    other_work: Vec<Millis>,
    /// Pending work per capped resource, to estimate the horizon.
    fleet_cap: Option<u32>,
    fleet_work: Millis,
    site_caps: Vec<Option<u32>>,
    site_work: Vec<Millis>,
    keys: Vec<Option<(Millis, Millis)>>,
    by_chain: Order,
    /// Per site (the last entry: pools without a site), pools by longest next server.
    by_longest: Vec<Order>,
}

impl PoolQueue {
    pub fn new(fleet: &Fleet, expected: &[Millis]) -> Self {
        let pools = fleet.pools.len();
        let mut queue = PoolQueue {
            partner: fleet.pools.iter().map(|p| p.paired_with).collect(),
            max_unavailable: fleet.pools.iter().map(|p| p.max_unavailable).collect(),
            backends_last: fleet.pools.iter().map(|p| p.backends_last).collect(),
            pool_site: fleet.pools.iter().map(|p| p.site).collect(),
            expected: expected.to_vec(),
            backends: vec![VecDeque::new(); pools],
            others: vec![VecDeque::new(); pools],
            backend_work: vec![0; pools],
            other_work: vec![0; pools],
            fleet_cap: fleet.max_parallel,
            fleet_work: 0,
            site_caps: fleet.sites.iter().map(|s| s.max_parallel).collect(),
            site_work: vec![0; fleet.sites.len()],
            keys: vec![None; pools],
            by_chain: BTreeSet::new(),
            by_longest: vec![BTreeSet::new(); fleet.sites.len() + 1],
        };
        for (pool_id, pool) in fleet.pools.iter().enumerate() {
            let mut others = Vec::new();
            for &server in &pool.servers {
                if fleet.servers[server].role.is_backend_class() {
                    queue.backends[pool_id].push_back(server);
                    queue.backend_work[pool_id] += expected[server];
                } else {
                    others.push(server);
                    queue.other_work[pool_id] += expected[server];
                }
                queue.add_work(pool_id, expected[server] as i128);
            }
            others.sort_by_key(|&s| (Reverse(expected[s]), s));
            queue.others[pool_id] = others.into();
        }
        for pool in 0..pools {
            queue.rekey(pool);
        }
        queue
    }

    fn add_work(&mut self, pool: PoolId, delta: i128) {
        let apply = |total: &mut Millis| *total = (*total as i128 + delta) as Millis;
        apply(&mut self.fleet_work);
        if let Some(site) = self.pool_site[pool] {
            apply(&mut self.site_work[site]);
        }
    }

    /// Lower bound on the time the pool still needs, counting its pair's back-end chain.
    fn chain(&self, pool: PoolId) -> Millis {
        let own = self.backend_work[pool] + self.others_span(pool);
        let pair = self.partner[pool].map_or(0, |p| {
            let backends = self.backend_work[pool] + self.backend_work[p];
            // When both pools keep their back ends for last (R7), the pair's back-end chain
            // cannot begin before one of them has finished its other servers.
            let lead = if self.backends_last[pool] && self.backends_last[p] {
                self.others_span(pool).min(self.others_span(p))
            } else {
                0
            };
            lead + backends
        });
        own.max(pair)
    }

    /// Least time the pool's pending other servers need under its `max_unavailable`.
    fn others_span(&self, pool: PoolId) -> Millis {
        let longest = self.others[pool].front().map_or(0, |&s| self.expected[s]);
        longest.max(self.other_work[pool].div_ceil(u64::from(self.max_unavailable[pool])))
    }

    /// The pool's longest next server, for LPT.
    fn longest_next(&self, pool: PoolId) -> Millis {
        let next = |queue: &VecDeque<ServerId>| queue.front().map_or(0, |&s| self.expected[s]);
        next(&self.backends[pool]).max(next(&self.others[pool]))
    }

    fn lpt_bucket(&self, pool: PoolId) -> usize {
        self.pool_site[pool].unwrap_or(self.site_caps.len())
    }

    /// How long each site still needs at its cap (uncapped sites and site-less pools: at the
    /// fleet cap; zero without one).
    fn site_pressure(&self, site: usize) -> Millis {
        let fleet_share = |work: Millis| self.fleet_cap.map_or(0, |cap| work / u64::from(cap));
        match self.site_caps.get(site) {
            Some(Some(cap)) => self.site_work[site] / u64::from(*cap),
            Some(None) => fleet_share(self.site_work[site]),
            None => 0,
        }
    }

    /// How long the capped fleet and sites still need for the pending work: pools whose chain
    /// reaches this far are critical. Zero without caps: then every chain is critical.
    fn horizon(&self) -> Millis {
        let fleet = self
            .fleet_cap
            .map_or(0, |cap| self.fleet_work / u64::from(cap));
        let sites = (0..self.site_caps.len())
            .map(|s| self.site_pressure(s))
            .max()
            .unwrap_or(0);
        fleet.max(sites)
    }

    fn rekey(&mut self, pool: PoolId) {
        if let Some((chain, longest)) = self.keys[pool].take() {
            self.by_chain.remove(&(Reverse(chain), pool));
            let bucket = self.lpt_bucket(pool);
            self.by_longest[bucket].remove(&(Reverse(longest), pool));
        }
        if !self.backends[pool].is_empty() || !self.others[pool].is_empty() {
            let key = (self.chain(pool), self.longest_next(pool));
            self.keys[pool] = Some(key);
            self.by_chain.insert((Reverse(key.0), pool));
            let bucket = self.lpt_bucket(pool);
            self.by_longest[bucket].insert((Reverse(key.1), pool));
        }
    }

    /// Recomputes the pool's place (and its partner's, whose pair chain shrank too).
    fn reprioritize(&mut self, pool: PoolId) {
        self.rekey(pool);
        if let Some(partner) = self.partner[pool] {
            self.rekey(partner);
        }
    }

    /// Pools with pending servers in dispatch order: critical chains first (longest first),
    /// then the rest site by site, the site that needs its cap longest first (it is the one
    /// that must never idle), each site's pools by longest next server. Ties: fleet order.
    pub fn dispatch_order(&self) -> Vec<PoolId> {
        // The horizon assumes perfectly packed caps, which no real schedule reaches, so a chain
        // a little shorter still ends up setting the makespan: 90% was the best threshold on
        // random fleets (mean and worst makespan / bound) without costing the large ones.
        let horizon = self.horizon() / 10 * 9;
        let mut order = Vec::with_capacity(self.by_chain.len());
        for &(Reverse(chain), pool) in &self.by_chain {
            if chain < horizon {
                break;
            }
            order.push(pool);
        }
        if order.len() < self.by_chain.len() {
            let is_critical =
                |pool: PoolId| self.keys[pool].is_some_and(|(chain, _)| chain >= horizon);
            let mut buckets: Vec<usize> = (0..self.by_longest.len()).collect();
            buckets.sort_by_key(|&b| (Reverse(self.site_pressure(b)), b));
            for bucket in buckets {
                order.extend(
                    self.by_longest[bucket]
                        .iter()
                        .map(|&(_, pool)| pool)
                        .filter(|&p| !is_critical(p)),
                );
            }
        }
        order
    }

    pub fn next_backend(&self, pool: PoolId) -> Option<ServerId> {
        self.backends[pool].front().copied()
    }

    pub fn next_other(&self, pool: PoolId) -> Option<ServerId> {
        self.others[pool].front().copied()
    }

    /// Removes a server that starts now.
    pub fn take(&mut self, pool: PoolId, server: ServerId) {
        let mut taken = false;
        for (queue, work) in [
            (&mut self.backends[pool], &mut self.backend_work[pool]),
            (&mut self.others[pool], &mut self.other_work[pool]),
        ] {
            if let Some(at) = queue.iter().position(|&s| s == server) {
                queue.remove(at);
                *work -= self.expected[server];
                taken = true;
            }
        }
        if taken {
            self.add_work(pool, -(self.expected[server] as i128));
        }
        self.reprioritize(pool);
    }

    /// Forgets a quarantined pool's pending servers.
    pub fn drop_pool(&mut self, pool: PoolId) {
        let pending = self.backend_work[pool] + self.other_work[pool];
        self.add_work(pool, -(pending as i128));
        self.backends[pool].clear();
        self.others[pool].clear();
        self.backend_work[pool] = 0;
        self.other_work[pool] = 0;
        self.reprioritize(pool);
    }
}
