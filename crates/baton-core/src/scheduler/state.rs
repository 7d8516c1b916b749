//! What the scheduler remembers about each server: when it ran, how it ended, and what made
//! it wait. Blockers are stored as compact facts per decision round and turned into text only
//! when a report is written, so recording them costs nothing on the hot path.

use crate::fleet::{Fleet, PoolId, ServerId};
use crate::policy::Blocker;
use crate::time::Millis;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
    /// Its pool was quarantined by a failure before it started.
    Skipped,
    /// The rollout stopped (failure limit, abort, or nothing left that may start).
    NotStarted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
            Outcome::NotStarted => "not_started",
        }
    }
}

/// Why no new server starts any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    FailureLimit {
        failures: u32,
        limit: u32,
        at: Millis,
    },
    Aborted {
        at: Millis,
    },
    /// Nothing runs and the rules let nothing start (a failed server holds them).
    Stuck,
}

/// The life of one server in a rollout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerRecord {
    pub start: Option<Millis>,
    pub end: Option<Millis>,
    pub outcome: Option<Outcome>,
    /// The last thing that kept it from starting (for `not_started`: what still does).
    pub waited_for: Option<Blocker>,
    /// For `skipped`: the server whose failure quarantined the pool, and when.
    pub quarantined_by: Option<(ServerId, Millis)>,
    /// For `not_started`: why the rollout stopped starting servers.
    pub stopped: Option<StopReason>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Running,
    Done,
}

type Stamped = Option<(u64, Blocker)>;

#[derive(Debug, Clone)]
pub struct Records {
    records: Vec<ServerRecord>,
    server_pool: Vec<PoolId>,
    backend_class: Vec<bool>,
    round: u64,
    /// Per pool, the last blocker of its next back-end-class [0] and other [1] server.
    pool_blocks: Vec<[Stamped; 2]>,
    server_blocks: Vec<Stamped>,
    /// The last round that found the fleet cap full, and when.
    fleet_full: Option<(u64, Blocker, Millis)>,
}

fn later(a: Stamped, b: Stamped) -> Stamped {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y.0 > x.0 { y } else { x }),
        (x, y) => x.or(y),
    }
}

impl Records {
    pub fn new(fleet: &Fleet) -> Self {
        let servers = fleet.servers.len();
        Records {
            records: vec![ServerRecord::default(); servers],
            server_pool: fleet.servers.iter().map(|s| s.pool).collect(),
            backend_class: fleet
                .servers
                .iter()
                .map(|s| s.role.is_backend_class())
                .collect(),
            round: 0,
            pool_blocks: vec![[None, None]; fleet.pools.len()],
            server_blocks: vec![None; servers],
            fleet_full: None,
        }
    }

    pub fn all(&self) -> &[ServerRecord] {
        &self.records
    }

    pub fn pool_of(&self, server: ServerId) -> PoolId {
        self.server_pool[server]
    }

    pub fn phase(&self, server: ServerId) -> Phase {
        let r = &self.records[server];
        match (r.start, r.outcome) {
            (_, Some(_)) => Phase::Done,
            (Some(_), None) => Phase::Running,
            (None, None) => Phase::Pending,
        }
    }

    pub fn next_round(&mut self) -> u64 {
        self.round += 1;
        self.round
    }

    pub fn fleet_full(&mut self, round: u64, blocker: Blocker, now: Millis) {
        self.fleet_full = Some((round, blocker, now));
    }

    pub fn pool_blocked(
        &mut self,
        round: u64,
        pool: PoolId,
        candidate: ServerId,
        blocker: Blocker,
    ) {
        let class = usize::from(!self.backend_class[candidate]);
        self.pool_blocks[pool][class] = Some((round, blocker));
    }

    pub fn server_blocked(&mut self, round: u64, server: ServerId, blocker: Blocker) {
        self.server_blocks[server] = Some((round, blocker));
    }

    /// The most recent blocker that applied to `server`: its own or its pool class's, or the
    /// fleet cap when a later scan stopped before reaching it. Even then a pool rule whose
    /// holder was still down is the better answer: raising the cap would not have helped.
    pub fn last_blocker(&self, server: ServerId) -> Option<Blocker> {
        let class = usize::from(!self.backend_class[server]);
        let pool = self.pool_blocks[self.server_pool[server]][class];
        let own = later(self.server_blocks[server], pool);
        match (own, self.fleet_full) {
            (Some((round, blocker)), Some((full_round, full, at))) if full_round > round => {
                let still_held = self.records[blocker.holder].end.is_none_or(|end| end > at);
                Some(if blocker.rule.is_pool_rule() && still_held {
                    blocker
                } else {
                    full
                })
            }
            (Some((_, blocker)), _) => Some(blocker),
            (None, full) => full.map(|(_, blocker, _)| blocker),
        }
    }

    pub fn start(&mut self, server: ServerId, now: Millis) {
        let waited = self.last_blocker(server);
        let record = &mut self.records[server];
        record.start = Some(now);
        record.waited_for = waited;
    }

    pub fn finish(&mut self, server: ServerId, now: Millis, outcome: Outcome) {
        let record = &mut self.records[server];
        record.end = Some(now);
        record.outcome = Some(outcome);
    }

    pub fn skip(&mut self, server: ServerId, failed: ServerId, at: Millis) {
        let record = &mut self.records[server];
        record.outcome = Some(Outcome::Skipped);
        record.quarantined_by = Some((failed, at));
    }

    /// Marks every still-pending server `not_started`, keeping what blocked it.
    pub fn give_up_pending(&mut self, reason: StopReason) {
        for server in 0..self.records.len() {
            if self.phase(server) == Phase::Pending {
                let blocker = self.last_blocker(server);
                let record = &mut self.records[server];
                record.outcome = Some(Outcome::NotStarted);
                record.waited_for = blocker;
                record.stopped = Some(reason);
            }
        }
    }
}
