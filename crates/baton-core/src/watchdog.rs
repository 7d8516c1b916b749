//! The outage-budget watchdog: times each back-end outage from its first step and says when it
//! crosses 50%, 80% and 100% of its pool's budget (the resiliency-mode threshold). Pure: the
//! caller supplies the time, so thresholds are tested with an injected clock.

use crate::fleet::{Fleet, PoolId, ServerId};
use crate::time::Millis;

/// How far into its pool's outage budget a back end is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BudgetLevel {
    /// 50% used: worth a look.
    Half,
    /// 80% used: act now.
    Most,
    /// 100% used: the pool's users may be in resiliency mode; the rollout stops starting
    /// servers until an operator acknowledges.
    Exhausted,
}

impl BudgetLevel {
    const ALL: [BudgetLevel; 3] = [BudgetLevel::Half, BudgetLevel::Most, BudgetLevel::Exhausted];

    pub fn percent(self) -> u64 {
        match self {
            BudgetLevel::Half => 50,
            BudgetLevel::Most => 80,
            BudgetLevel::Exhausted => 100,
        }
    }

    fn at(self, budget: Millis) -> Millis {
        budget.saturating_mul(self.percent()).div_ceil(100)
    }
}

/// A back end that just crossed a level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetAlert {
    pub server: ServerId,
    pub pool: PoolId,
    pub level: BudgetLevel,
    /// How long the outage has lasted, and the pool's budget.
    pub elapsed: Millis,
    pub budget: Millis,
}

/// Watches every back-end-class server of a fleet while it is down.
#[derive(Debug, Clone)]
pub struct Watchdog {
    budget: Vec<Option<Millis>>,
    pool: Vec<PoolId>,
    /// Outage start and the highest level already reported, per server being watched.
    watching: Vec<Option<(Millis, Option<BudgetLevel>)>>,
}

impl Watchdog {
    pub fn new(fleet: &Fleet) -> Self {
        Watchdog {
            budget: fleet
                .servers
                .iter()
                .map(|s| {
                    s.role
                        .is_backend_class()
                        .then(|| fleet.pools[s.pool].outage_budget)
                })
                .collect(),
            pool: fleet.servers.iter().map(|s| s.pool).collect(),
            watching: vec![None; fleet.servers.len()],
        }
    }

    /// The outage of `server` began at `at` (its first step). Other roles are ignored.
    pub fn outage_started(&mut self, server: ServerId, at: Millis) {
        if self.budget[server].is_some() && self.watching[server].is_none() {
            self.watching[server] = Some((at, None));
        }
    }

    /// The server is back (or its result is in): stop timing it.
    pub fn outage_ended(&mut self, server: ServerId) {
        self.watching[server] = None;
    }

    /// How long `server`'s outage has lasted, and its budget, if it is being timed.
    pub fn outage(&self, server: ServerId, now: Millis) -> Option<(Millis, Millis)> {
        let (start, _) = self.watching[server]?;
        Some((now.saturating_sub(start), self.budget[server]?))
    }

    /// The back ends being timed now: server, pool, how long it has been down, the budget.
    pub fn outages(&self, now: Millis) -> Vec<(ServerId, PoolId, Millis, Millis)> {
        (0..self.watching.len())
            .filter_map(|server| {
                let (elapsed, budget) = self.outage(server, now)?;
                Some((server, self.pool[server], elapsed, budget))
            })
            .collect()
    }

    /// Notes that `level` was already reported for this outage (a restarted controller
    /// replaying its log must not report it again).
    pub fn already_reported(&mut self, server: ServerId, level: BudgetLevel) {
        if let Some((_, reported)) = self.watching[server].as_mut()
            && reported.is_none_or(|done| level > done)
        {
            *reported = Some(level);
        }
    }

    /// Levels crossed since the last check, each reported once per outage.
    pub fn check(&mut self, now: Millis) -> Vec<BudgetAlert> {
        let mut alerts = Vec::new();
        for (server, watch) in self.watching.iter_mut().enumerate() {
            let (Some((start, reported)), Some(budget)) = (watch.as_mut(), self.budget[server])
            else {
                continue;
            };
            let elapsed = now.saturating_sub(*start);
            let crossed = BudgetLevel::ALL
                .into_iter()
                .rfind(|level| elapsed >= level.at(budget));
            if let Some(level) = crossed
                && reported.is_none_or(|done| level > done)
            {
                *reported = Some(level);
                alerts.push(BudgetAlert {
                    server,
                    pool: self.pool[server],
                    level,
                    elapsed,
                    budget,
                });
            }
        }
        alerts
    }

    /// When the next level will be crossed, to schedule the next check.
    pub fn next_check(&self) -> Option<Millis> {
        self.watching
            .iter()
            .enumerate()
            .filter_map(|(server, watch)| {
                let (start, reported) = (*watch)?;
                let budget = self.budget[server]?;
                BudgetLevel::ALL
                    .into_iter()
                    .find(|level| reported.is_none_or(|done| *level > done))
                    .map(|level| start + level.at(budget))
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLEET: &str = r#"
[fleet]
name = "watch"
[[pool]]
fqdn = "pool01.lab.test"
edition = "enterprise"
sql_server = "sql01.lab.test"
outage_budget = "10m"
  [[pool.server]]
  fqdn = "be01.lab.test"
  role = "backend"
  expected_duration = "5m"
  [[pool.server]]
  fqdn = "fe01.lab.test"
  role = "frontend"
  expected_duration = "5m"
"#;

    const MIN: Millis = 60_000;

    fn levels(alerts: &[BudgetAlert]) -> Vec<BudgetLevel> {
        alerts.iter().map(|a| a.level).collect()
    }

    #[test]
    fn reports_each_level_once_as_time_passes() {
        let fleet = Fleet::from_toml("w.toml", FLEET).unwrap();
        let mut dog = Watchdog::new(&fleet);
        dog.outage_started(0, 2 * MIN);
        assert_eq!(dog.next_check(), Some(7 * MIN));
        assert!(dog.check(6 * MIN).is_empty());
        assert_eq!(levels(&dog.check(7 * MIN)), [BudgetLevel::Half]);
        assert!(dog.check(8 * MIN).is_empty(), "once per level");
        assert_eq!(dog.next_check(), Some(10 * MIN));
        let alerts = dog.check(12 * MIN);
        assert_eq!(
            levels(&alerts),
            [BudgetLevel::Exhausted],
            "a late check reports the highest level crossed"
        );
        assert_eq!((alerts[0].elapsed, alerts[0].budget), (10 * MIN, 10 * MIN));
        assert_eq!(dog.next_check(), None);
        assert!(dog.check(60 * MIN).is_empty());
    }

    #[test]
    fn only_back_ends_are_watched_and_an_ended_outage_is_forgotten() {
        let fleet = Fleet::from_toml("w.toml", FLEET).unwrap();
        let mut dog = Watchdog::new(&fleet);
        dog.outage_started(1, 0);
        assert_eq!(dog.next_check(), None, "front ends spend no budget");
        dog.outage_started(0, 0);
        assert_eq!(levels(&dog.check(8 * MIN)), [BudgetLevel::Most]);
        dog.outage_ended(0);
        assert!(dog.check(20 * MIN).is_empty());
        dog.outage_started(0, 30 * MIN);
        assert_eq!(
            levels(&dog.check(35 * MIN)),
            [BudgetLevel::Half],
            "a new outage starts over"
        );
    }
}
