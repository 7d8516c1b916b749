//! Which pool goes first. A pool's remaining work is a chain the rules force to run mostly in
//! sequence (its back ends one by one, apart from its other servers; a pair's back ends one by
//! one), so the pool with the longest remaining chain is the most critical: start it first.

use crate::fleet::{Fleet, PoolId, ServerId};
use crate::time::Millis;
use std::cmp::Reverse;
use std::collections::{BTreeSet, VecDeque};

#[derive(Debug, Clone)]
pub struct PoolQueue {
    partner: Vec<Option<PoolId>>,
    max_unavailable: Vec<u32>,
    expected: Vec<Millis>,
    /// Pending back-end-class servers, in fleet order (admins expect e.g. principal first).
    backends: Vec<VecDeque<ServerId>>,
    /// Pending other servers, longest first: with `max_unavailable > 1` that shortens the pool.
    others: Vec<VecDeque<ServerId>>,
    backend_work: Vec<Millis>,
    other_work: Vec<Millis>,
    keys: Vec<Option<Millis>>,
    order: BTreeSet<(Reverse<Millis>, PoolId)>,
}

impl PoolQueue {
    pub fn new(fleet: &Fleet, expected: &[Millis]) -> Self {
        let pools = fleet.pools.len();
        let mut queue = PoolQueue {
            partner: fleet.pools.iter().map(|p| p.paired_with).collect(),
            max_unavailable: fleet.pools.iter().map(|p| p.max_unavailable).collect(),
            expected: expected.to_vec(),
            backends: vec![VecDeque::new(); pools],
            others: vec![VecDeque::new(); pools],
            backend_work: vec![0; pools],
            other_work: vec![0; pools],
            keys: vec![None; pools],
            order: BTreeSet::new(),
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
            }
            others.sort_by_key(|&s| (Reverse(expected[s]), s));
            queue.others[pool_id] = others.into();
        }
        for pool in 0..pools {
            queue.reprioritize(pool);
        }
        queue
    }

    /// Lower bound on the time the pool still needs, counting its pair's back-end chain.
    fn criticality(&self, pool: PoolId) -> Millis {
        let longest_other = self.others[pool].front().map_or(0, |&s| self.expected[s]);
        let spread = self.other_work[pool].div_ceil(u64::from(self.max_unavailable[pool]));
        let own = self.backend_work[pool] + longest_other.max(spread);
        let pair = self.partner[pool].map_or(0, |p| self.backend_work[pool] + self.backend_work[p]);
        own.max(pair)
    }

    fn rekey(&mut self, pool: PoolId) {
        if let Some(old) = self.keys[pool].take() {
            self.order.remove(&(Reverse(old), pool));
        }
        if !self.backends[pool].is_empty() || !self.others[pool].is_empty() {
            let key = self.criticality(pool);
            self.keys[pool] = Some(key);
            self.order.insert((Reverse(key), pool));
        }
    }

    /// Recomputes the pool's place (and its partner's, whose pair chain shrank too).
    pub fn reprioritize(&mut self, pool: PoolId) {
        self.rekey(pool);
        if let Some(partner) = self.partner[pool] {
            self.rekey(partner);
        }
    }

    /// Pools with pending servers, most critical first (ties: fleet order).
    pub fn in_priority_order(&self) -> impl Iterator<Item = PoolId> + '_ {
        self.order.iter().map(|&(_, pool)| pool)
    }

    pub fn next_backend(&self, pool: PoolId) -> Option<ServerId> {
        self.backends[pool].front().copied()
    }

    pub fn next_other(&self, pool: PoolId) -> Option<ServerId> {
        self.others[pool].front().copied()
    }

    /// Removes a server that starts now.
    pub fn take(&mut self, pool: PoolId, server: ServerId) {
        for (queue, work) in [
            (&mut self.backends[pool], &mut self.backend_work[pool]),
            (&mut self.others[pool], &mut self.other_work[pool]),
        ] {
            if let Some(at) = queue.iter().position(|&s| s == server) {
                queue.remove(at);
                *work -= self.expected[server];
            }
        }
        self.reprioritize(pool);
    }

    /// Forgets a quarantined pool's pending servers.
    pub fn drop_pool(&mut self, pool: PoolId) {
        self.backends[pool].clear();
        self.others[pool].clear();
        self.backend_work[pool] = 0;
        self.other_work[pool] = 0;
        self.reprioritize(pool);
    }
}
