//! The scheduler: a deterministic state machine, `(now, event) -> actions`, with no I/O and
//! no clock. The simulator and (later) the live controller drive the same code.

mod priority;
mod state;
mod windows;

pub use state::{Outcome, ServerRecord, StopReason};

use crate::fleet::{Fleet, PoolId, ServerId};
use crate::policy::{Blocker, Occupancy, Rule, Until};
use crate::time::Millis;
use priority::PoolQueue;
use state::{Phase, Records};
use std::cmp::Reverse;
use std::fmt;
use windows::{Gate, WindowGate};

/// How servers are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Pool-aware list scheduling: whenever a server finishes, start every server the rules
    /// allow, most critical pool first.
    Baton,
    /// Ansible's `serial: N`: fixed batches of up to N servers in fleet order (still obeying
    /// R1–R5); a batch starts only when the previous one has fully finished.
    Batches(u32),
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Strategy::Baton => f.write_str("baton"),
            Strategy::Batches(n) => write!(f, "batches:{n}"),
        }
    }
}

impl std::str::FromStr for Strategy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "baton" {
            return Ok(Strategy::Baton);
        }
        let size = text.strip_prefix("batches:").ok_or_else(|| {
            format!("unknown strategy {text:?}; expected \"baton\" or \"batches:N\"")
        })?;
        match size.parse::<u32>() {
            Ok(n) if n >= 1 => Ok(Strategy::Batches(n)),
            _ => Err(format!(
                "batch size in {text:?} must be a whole number of at least 1"
            )),
        }
    }
}

/// What happened, as told to the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Begin the rollout.
    Begin,
    /// A server finished its runbook.
    Succeeded(ServerId),
    /// A server's runbook failed: its pool is quarantined and the server stays down.
    Failed(ServerId),
    /// Start nothing new until `Resume`.
    Pause,
    Resume,
    /// Start nothing new, ever; pending servers become `not_started`.
    Abort,
    /// The canary pools are judged good: the other pools may start.
    Approve,
    /// Time has come (see [`Scheduler::next_opening`]): a maintenance window may have opened.
    Tick,
}

/// What the scheduler wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Put this server into maintenance and run its runbook.
    Start {
        server: ServerId,
        expected_end: Millis,
    },
    /// Nothing is running and nothing more will start: the rollout is over.
    Finished,
}

/// An event that does not fit the rollout's state (a wrong or late message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchedulerError {
    #[error("server #{0} does not exist in this fleet")]
    UnknownServer(ServerId),
    #[error("server #{0} reported a result but is not running")]
    NotRunning(ServerId),
    #[error("time went backwards: event at {now} ms after one at {last} ms")]
    TimeWentBackwards { now: Millis, last: Millis },
}

/// The scheduler of one rollout.
#[derive(Debug, Clone)]
pub struct Scheduler {
    strategy: Strategy,
    expected: Vec<Millis>,
    pools: Vec<PoolInfo>,
    max_failures: u32,
    occupancy: Occupancy,
    records: Records,
    queue: PoolQueue,
    running: usize,
    failures: u32,
    paused: bool,
    stop: Option<StopReason>,
    finished: bool,
    /// Pending servers were already marked `not_started` for `stop`.
    gave_up: bool,
    last_now: Millis,
    /// Batches: members of the batch in flight, and its number.
    batch: Vec<ServerId>,
    batch_number: u32,
    canary: Option<Canary>,
    windows: WindowGate,
    /// The earliest time a server held by its maintenance window may start (last decision).
    next_opening: Option<Millis>,
}

/// The canary gate: the first `size` pools to start are the canary; no other pool starts until
/// an operator approves.
#[derive(Debug, Clone)]
struct Canary {
    size: usize,
    pools: Vec<PoolId>,
    approved: bool,
}

#[derive(Debug, Clone)]
struct PoolInfo {
    servers: Vec<ServerId>,
}

impl Scheduler {
    /// A scheduler for `fleet`, where `expected[s]` is server `s`'s expected duration. Its
    /// time 0 is the unix epoch as far as maintenance windows go: a fleet with windows wants
    /// [`Scheduler::starting_at`].
    pub fn new(fleet: &Fleet, expected: &[Millis], strategy: Strategy) -> Scheduler {
        Scheduler::starting_at(fleet, expected, strategy, 0)
    }

    /// A scheduler whose time 0 is `origin_ms` (unix ms), the instant the rollout begins, so
    /// that maintenance windows (wall-clock times) can be judged.
    pub fn starting_at(
        fleet: &Fleet,
        expected: &[Millis],
        strategy: Strategy,
        origin_ms: i64,
    ) -> Scheduler {
        assert_eq!(
            expected.len(),
            fleet.servers.len(),
            "one expected duration per server"
        );
        Scheduler {
            strategy,
            expected: expected.to_vec(),
            pools: fleet
                .pools
                .iter()
                .map(|p| PoolInfo {
                    servers: p.servers.clone(),
                })
                .collect(),
            max_failures: fleet.max_failures,
            occupancy: Occupancy::new(fleet),
            records: Records::new(fleet),
            queue: PoolQueue::new(fleet, expected),
            running: 0,
            failures: 0,
            paused: false,
            stop: None,
            finished: false,
            gave_up: false,
            last_now: 0,
            batch: Vec::new(),
            batch_number: 0,
            canary: fleet.canary_pools.map(|size| Canary {
                size: size as usize,
                pools: Vec::new(),
                approved: false,
            }),
            windows: WindowGate::new(fleet, origin_ms),
            next_opening: None,
        }
    }

    /// Applies one event at time `now` and returns what to do next.
    pub fn handle(&mut self, now: Millis, event: Event) -> Result<Vec<Action>, SchedulerError> {
        self.handle_all(now, &[event])
    }

    /// Applies events that happened at the same instant, then decides once: simultaneous
    /// completions are all seen before any slot is handed out.
    pub fn handle_all(
        &mut self,
        now: Millis,
        events: &[Event],
    ) -> Result<Vec<Action>, SchedulerError> {
        if now < self.last_now {
            return Err(SchedulerError::TimeWentBackwards {
                now,
                last: self.last_now,
            });
        }
        self.validate(events)?;
        self.last_now = now;
        self.next_opening = None;
        for &event in events {
            self.apply(now, event);
        }
        let mut actions = Vec::new();
        if self.finished {
            return Ok(actions);
        }
        if !self.paused && self.stop.is_none() {
            self.dispatch(now, &mut actions);
        }
        if let Some(reason) = self.stop
            && !self.gave_up
        {
            self.records.give_up_pending(reason);
            self.gave_up = true;
        }
        // A pause keeps an idle rollout open for `Resume`, and the canary gate for `Approve`;
        // an abort or the failure limit does not.
        let waiting = self.paused || self.awaiting_approval() || self.next_opening.is_some();
        if self.running == 0 && actions.is_empty() && (!waiting || self.stop.is_some()) {
            self.records.give_up_pending(StopReason::Stuck);
            self.finished = true;
            actions.push(Action::Finished);
        }
        Ok(actions)
    }

    /// Refuses the whole batch if any event does not fit, so a wrong message changes nothing.
    fn validate(&self, events: &[Event]) -> Result<(), SchedulerError> {
        for (i, &event) in events.iter().enumerate() {
            if let Event::Succeeded(server) | Event::Failed(server) = event {
                if server >= self.expected.len() {
                    return Err(SchedulerError::UnknownServer(server));
                }
                let reported_twice = events[..i]
                    .iter()
                    .any(|&e| matches!(e, Event::Succeeded(s) | Event::Failed(s) if s == server));
                if reported_twice || !matches!(self.records.phase(server), Phase::Running) {
                    return Err(SchedulerError::NotRunning(server));
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, now: Millis, event: Event) {
        match event {
            Event::Begin | Event::Resume => self.paused = false,
            Event::Tick => {}
            Event::Approve => {
                if let Some(canary) = &mut self.canary {
                    canary.approved = true;
                }
            }
            Event::Pause => self.paused = true,
            Event::Abort => {
                self.stop.get_or_insert(StopReason::Aborted { at: now });
            }
            Event::Succeeded(server) | Event::Failed(server) => {
                self.running -= 1;
                if let Event::Succeeded(_) = event {
                    self.occupancy.leave(server);
                    self.records.finish(server, now, Outcome::Succeeded);
                } else {
                    self.occupancy.hold_until_repaired(server);
                    self.records.finish(server, now, Outcome::Failed);
                    self.failures += 1;
                    let pool = self.records.pool_of(server);
                    self.quarantine(pool, server, now);
                    if self.failures > self.max_failures {
                        self.stop.get_or_insert(StopReason::FailureLimit {
                            failures: self.failures,
                            limit: self.max_failures,
                            at: now,
                        });
                    }
                }
            }
        }
    }

    fn quarantine(&mut self, pool: PoolId, failed: ServerId, at: Millis) {
        for &server in &self.pools[pool].servers {
            if matches!(self.records.phase(server), Phase::Pending) {
                self.records.skip(server, failed, at);
            }
        }
        self.queue.drop_pool(pool);
    }

    fn start(&mut self, now: Millis, server: ServerId, actions: &mut Vec<Action>) {
        self.joined(self.records.pool_of(server));
        let expected_end = now.saturating_add(self.expected[server]);
        self.occupancy.enter(server, expected_end);
        self.records.start(server, now);
        self.running += 1;
        actions.push(Action::Start {
            server,
            expected_end,
        });
    }

    fn dispatch(&mut self, now: Millis, actions: &mut Vec<Action>) {
        match self.strategy {
            Strategy::Baton => self.dispatch_by_priority(now, actions),
            Strategy::Batches(size) => self.dispatch_batch(now, size, actions),
        }
    }

    /// List scheduling: walk pools in priority order (see `priority`) and start whatever the
    /// rules allow. Each pool prefers its back end first when free, so a paired partner can
    /// patch its other servers meanwhile.
    fn dispatch_by_priority(&mut self, now: Millis, actions: &mut Vec<Action>) {
        let round = self.records.next_round();
        if let Err(blocker) = self.occupancy.fleet_has_room() {
            self.records.fleet_full(round, blocker, now);
            return;
        }
        for pool in self.queue.dispatch_order() {
            if let Some(blocker) = self.canary_blocks(pool) {
                for candidate in [self.queue.next_backend(pool), self.queue.next_other(pool)]
                    .into_iter()
                    .flatten()
                {
                    self.records.pool_blocked(round, pool, candidate, blocker);
                }
                continue;
            }
            loop {
                let candidate = [self.queue.next_backend(pool), self.queue.next_other(pool)]
                    .into_iter()
                    .flatten()
                    .find(|&s| self.admit(s, now).is_ok());
                let Some(server) = candidate else { break };
                self.queue.take(pool, server);
                self.start(now, server, actions);
                if let Err(blocker) = self.occupancy.fleet_has_room() {
                    self.note_pool_blockers(round, pool, now);
                    self.records.fleet_full(round, blocker, now);
                    return;
                }
            }
            self.note_pool_blockers(round, pool, now);
        }
    }

    /// The rules (R1–R5, R7) and the server's maintenance window: may it start now?
    fn admit(&mut self, server: ServerId, now: Millis) -> Result<(), Blocker> {
        self.occupancy.check(server)?;
        let until = match self.windows.check(server, now, self.expected[server]) {
            Gate::Open => return Ok(()),
            Gate::OpensAt(at) => {
                self.next_opening = Some(self.next_opening.map_or(at, |next| next.min(at)));
                Until::At(at)
            }
            Gate::Never => Until::Never,
        };
        Err(Blocker {
            rule: Rule::Window,
            holder: server,
            until,
        })
    }

    /// When a server held by its maintenance window may start: the driver sends
    /// [`Event::Tick`] then. `None`: no server waits for a window.
    pub fn next_opening(&self) -> Option<Millis> {
        self.next_opening
    }

    fn note_pool_blockers(&mut self, round: u64, pool: PoolId, now: Millis) {
        for candidate in [self.queue.next_backend(pool), self.queue.next_other(pool)]
            .into_iter()
            .flatten()
        {
            if let Err(blocker) = self.admit(candidate, now) {
                self.records.pool_blocked(round, pool, candidate, blocker);
            }
        }
    }

    /// `serial: N`: when the batch in flight is done, fill the next one in fleet order. Every
    /// server left out waits for this batch's slowest member, whatever kept it out.
    fn dispatch_batch(&mut self, now: Millis, size: u32, actions: &mut Vec<Action>) {
        if self
            .batch
            .iter()
            .any(|&s| matches!(self.records.phase(s), Phase::Running))
        {
            return;
        }
        self.batch.clear();
        self.batch_number += 1;
        let round = self.records.next_round();
        let mut left_out = Vec::new();
        for server in 0..self.expected.len() {
            if !matches!(self.records.phase(server), Phase::Pending) {
                continue;
            }
            if self.batch.len() < size as usize
                && self.canary_blocks(self.records.pool_of(server)).is_none()
                && self.admit(server, now).is_ok()
            {
                self.queue.take(self.records.pool_of(server), server);
                self.start(now, server, actions);
                self.batch.push(server);
            } else {
                left_out.push(server);
            }
        }
        let slowest = self
            .batch
            .iter()
            .copied()
            .max_by_key(|&s| (self.expected[s], Reverse(s)));
        for server in left_out {
            let blocker = match slowest {
                Some(holder) => Blocker {
                    rule: Rule::Batch(self.batch_number),
                    holder,
                    until: Until::At(now + self.expected[holder]),
                },
                // Nothing could start: the canary gate or whatever rule holds it (a failed
                // server) is the reason.
                None => match self
                    .canary_blocks(self.records.pool_of(server))
                    .or_else(|| self.admit(server, now).err())
                {
                    Some(blocker) => blocker,
                    None => continue,
                },
            };
            self.records.server_blocked(round, server, blocker);
        }
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The expected duration the scheduler was given for `server`.
    pub fn expected(&self, server: ServerId) -> Millis {
        self.expected[server]
    }

    /// What holds a pending server now (as of the last decision); for a started server, what
    /// it waited for.
    pub fn waiting_for(&self, server: ServerId) -> Option<Blocker> {
        match self.records.phase(server) {
            Phase::Pending => self.records.last_blocker(server),
            _ => self.records.all()[server].waited_for,
        }
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// The canary pools are done and the rest waits for `Event::Approve`.
    pub fn awaiting_approval(&self) -> bool {
        let Some(canary) = &self.canary else {
            return false;
        };
        !canary.approved
            && self.stop.is_none()
            && self.running == 0
            && canary.pools.len() >= canary.size
            && (0..self.expected.len()).any(|s| matches!(self.records.phase(s), Phase::Pending))
    }

    /// Whether the canary gate lets `pool` start a server now; if not, the blocker.
    fn canary_blocks(&self, pool: PoolId) -> Option<Blocker> {
        let canary = self.canary.as_ref()?;
        if canary.approved || canary.pools.contains(&pool) || canary.pools.len() < canary.size {
            return None;
        }
        let holder = self.pools[canary.pools[0]].servers[0];
        Some(Blocker {
            rule: Rule::Canary,
            holder,
            until: Until::Done,
        })
    }

    /// A pool started a server: the first ones to do so make up the canary.
    fn joined(&mut self, pool: PoolId) {
        if let Some(canary) = &mut self.canary
            && !canary.approved
            && !canary.pools.contains(&pool)
        {
            canary.pools.push(pool);
        }
    }

    pub fn records(&self) -> &[ServerRecord] {
        self.records.all()
    }
}
