//! Runs the scheduler against virtual time: each started server "finishes" after its drawn
//! duration, or fails part-way with the configured probability. Draws are made per server up
//! front from the seed, so every strategy sees the same luck and a seed reproduces a run.

use crate::fleet::{Fleet, ServerId};
use crate::scheduler::{Action, Event, Scheduler, ServerRecord, Strategy};
use crate::time::Millis;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Knobs of one simulated rollout.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimConfig {
    pub strategy: Strategy,
    pub seed: u64,
    /// Each actual duration is the expected one times a factor drawn uniformly from
    /// `[1 - jitter, 1 + jitter]`; 0 reproduces the plan.
    pub jitter: f64,
    /// Probability that a server's runbook fails (at a uniformly drawn point of its run).
    pub failure_rate: f64,
}

impl SimConfig {
    /// The plan: expected durations, no failures.
    pub fn plan(strategy: Strategy) -> Self {
        SimConfig {
            strategy,
            seed: 0,
            jitter: 0.0,
            failure_rate: 0.0,
        }
    }
}

/// What one server does when started, drawn before the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fate {
    /// How long it runs before it reports.
    pub runs_for: Millis,
    pub fails: bool,
}

/// The result of a simulated rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct SimRun {
    pub records: Vec<ServerRecord>,
    pub fates: Vec<Fate>,
    pub makespan: Millis,
}

impl SimRun {
    /// Each server's time in maintenance as it ran (`None` if it never started), for the bound.
    pub fn executed_work(&self) -> Vec<Option<Millis>> {
        self.records
            .iter()
            .map(|r| Some(r.end? - r.start?))
            .collect()
    }
}

/// Draws every server's fate from the seed.
pub fn draw_fates(expected: &[Millis], config: &SimConfig) -> Vec<Fate> {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let jitter = config.jitter.clamp(0.0, 1.0);
    let failure_rate = config.failure_rate.clamp(0.0, 1.0);
    expected
        .iter()
        .map(|&expected| {
            let factor = 1.0 + jitter * (2.0 * rng.random::<f64>() - 1.0);
            let actual = ((expected as f64 * factor).round() as Millis).max(1);
            let fails = rng.random::<f64>() < failure_rate;
            let failure_point: f64 = rng.random();
            let runs_for = if fails {
                ((actual as f64 * failure_point).round() as Millis).max(1)
            } else {
                actual
            };
            Fate { runs_for, fails }
        })
        .collect()
}

/// Simulates a rollout of `fleet` where `expected[s]` is what the scheduler is told.
pub fn simulate(fleet: &Fleet, expected: &[Millis], config: &SimConfig) -> SimRun {
    simulate_from(fleet, expected, config, 0)
}

/// [`simulate`] for a rollout that begins at `origin_ms` (unix ms): maintenance windows are
/// wall-clock times.
pub fn simulate_from(
    fleet: &Fleet,
    expected: &[Millis],
    config: &SimConfig,
    origin_ms: i64,
) -> SimRun {
    let fates = draw_fates(expected, config);
    let mut scheduler = Scheduler::starting_at(fleet, expected, config.strategy, origin_ms);
    let mut reports: BinaryHeap<Reverse<(Millis, ServerId)>> = BinaryHeap::new();
    let mut now = 0;
    let mut events = vec![Event::Begin];
    let mut makespan = 0;
    loop {
        let actions = scheduler
            .handle_all(now, &events)
            .expect("the simulator only reports servers the scheduler started");
        for action in actions {
            match action {
                Action::Start { server, .. } => {
                    reports.push(Reverse((now + fates[server].runs_for, server)))
                }
                Action::Finished => {
                    return SimRun {
                        records: scheduler.records().to_vec(),
                        fates,
                        makespan,
                    };
                }
            }
        }
        // A window opens before the next report: wake the scheduler then.
        if let Some(opening) = scheduler.next_opening()
            && reports.peek().is_none_or(|&Reverse((at, _))| opening < at)
        {
            now = opening;
            events = vec![Event::Tick];
            continue;
        }
        let Some(Reverse((at, _))) = reports.peek().copied() else {
            // A plan assumes the canary is approved the moment it is done.
            if scheduler.awaiting_approval() {
                events = vec![Event::Approve];
                continue;
            }
            // Only a pause leaves the scheduler idle but unfinished; the simulator never pauses.
            return SimRun {
                records: scheduler.records().to_vec(),
                fates,
                makespan,
            };
        };
        now = at;
        makespan = makespan.max(at);
        events.clear();
        while let Some(&Reverse((t, server))) = reports.peek() {
            if t != now {
                break;
            }
            reports.pop();
            events.push(if fates[server].fails {
                Event::Failed(server)
            } else {
                Event::Succeeded(server)
            });
        }
    }
}

/// When a rollout under way is expected to end, by the scheduler's own simulation of what
/// remains: running servers end at their expected end (or now, if overdue), the rest start as
/// the rules and windows allow, a pause is taken as lifted and a canary as approved now.
/// `None` when the scheduler refuses its own replay (it cannot, but no panic for metrics).
pub fn expected_end(scheduler: &Scheduler, now: Millis) -> Option<Millis> {
    if scheduler.is_finished() {
        return Some(now);
    }
    let mut scheduler = scheduler.clone();
    let mut reports: BinaryHeap<Reverse<(Millis, ServerId)>> = BinaryHeap::new();
    for (server, record) in scheduler.records().iter().enumerate() {
        if let (Some(start), None) = (record.start, record.outcome) {
            let end = start.saturating_add(scheduler.expected(server)).max(now);
            reports.push(Reverse((end, server)));
        }
    }
    let mut at = now;
    let mut events = vec![Event::Resume];
    // Each round finishes or starts at least one server, or approves once.
    for _ in 0..=(4 * scheduler.records().len() + 8) {
        for action in scheduler.handle_all(at, &events).ok()? {
            match action {
                Action::Start {
                    server,
                    expected_end,
                } => reports.push(Reverse((expected_end, server))),
                Action::Finished => return Some(at),
            }
        }
        events.clear();
        if let Some(opening) = scheduler.next_opening()
            && reports
                .peek()
                .is_none_or(|&Reverse((end, _))| opening < end)
        {
            at = opening;
            events.push(Event::Tick);
            continue;
        }
        let Some(Reverse((end, _))) = reports.peek().copied() else {
            if scheduler.awaiting_approval() {
                events.push(Event::Approve);
                continue;
            }
            return Some(at);
        };
        at = end;
        while let Some(&Reverse((t, server))) = reports.peek() {
            if t != at {
                break;
            }
            reports.pop();
            events.push(Event::Succeeded(server));
        }
    }
    None
}
