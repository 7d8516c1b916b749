//! Assignments and the rule that decides which worker reports count.
//!
//! An assignment is one server's runbook handed to its worker. Its id names the store that
//! issued it (a random identity made once per database), the rollout, the controller epoch and
//! a counter, so no two stores, controllers or rollouts ever issue the same id.
//!
//! The acceptance rule, applied to every report a worker sends about an assignment:
//! - it must be an open assignment of this store, for the server the worker speaks for, that
//!   was delivered to that worker; otherwise it is *discarded* (the worker is told to archive
//!   it and stop sending it);
//! - step reports and a success count only once the worker has acknowledged the assignment
//!   (`AssignmentAccepted`, its first `StepStarted`, or a `Hello` naming it after a
//!   reconnect); a failure may come before (a worker refusing it: busy, stale epoch);
//! - steps succeed in order: a step result counts only for the step after the last one that
//!   succeeded; earlier ones are repeats (a worker replays its reports after a reconnect) and
//!   are ignored;
//! - success counts only when every step of *that* assignment has been reported succeeded.
//!   A success without them is never recorded: the server is held for an operator.
//!
//! Pure state, no I/O: the controller feeds it and acts on its verdicts, and the property test
//! in `tests/assignment_model.rs` drives it through random interleavings of delivery,
//! reconnects, controller restarts and store changes.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::fleet::ServerId;

/// Builds an assignment id: `STORE-ROLLOUT-EPOCH-N`.
pub fn assignment_id(store_id: &str, rollout: i64, epoch: u64, n: u64) -> String {
    format!("{store_id}-{rollout}-{epoch}-{n}")
}

/// The store that issued an assignment, read from its id; `None` for ids made before stores
/// had an identity (`ROLLOUT-EPOCH-N`).
pub fn store_of(assignment_id: &str) -> Option<&str> {
    let mut parts = assignment_id.split('-');
    let first = parts.next()?;
    (parts.count() == 3 && first.len() == 16 && first.bytes().all(|b| b.is_ascii_hexdigit()))
        .then_some(first)
}

/// What a worker says about an assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// It took the assignment on (journaled it).
    Accepted,
    StepStarted {
        index: u32,
        attempt: u32,
    },
    StepOutput {
        index: u32,
    },
    StepFinished {
        index: u32,
        attempt: u32,
        succeeded: bool,
    },
    Finished {
        succeeded: bool,
    },
}

/// What the controller does with a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It counts: record it and act on it.
    Accept,
    /// Already counted, or out of order within a live assignment: nothing to record or say.
    Ignore(Ignored),
    /// It will never count: tell the worker to archive the assignment's journal entry.
    Discard(Refusal),
    /// A success without every step reported: not recorded; the server is held for an
    /// operator.
    Incomplete { next_step: u32, steps: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Counted before (replayed after a reconnect).
    Repeat,
    /// A step past the next one: a report before it was lost. The worker's replay after its
    /// next reconnect fills the gap; the success is refused until it does.
    Gap { next_step: u32 },
}

/// Why a report is discarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No assignment of this store has that id (another store, or a forgotten one).
    Unknown,
    /// Issued to another server than the one the worker speaks for.
    OtherServer,
    /// Issued, but never delivered to the worker.
    NotDelivered,
    /// Delivered, but the worker has not acknowledged it: no step or success counts yet.
    NotAcknowledged,
    /// It has ended (its result recorded, or the server held for an operator).
    Settled,
    /// A step index the assignment does not have.
    NoSuchStep { index: u32, steps: u32 },
}

impl Refusal {
    /// A short code (metrics labels, logs).
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Unknown => "unknown",
            Refusal::OtherServer => "other_server",
            Refusal::NotDelivered => "not_delivered",
            Refusal::NotAcknowledged => "not_acknowledged",
            Refusal::Settled => "settled",
            Refusal::NoSuchStep { .. } => "no_such_step",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Unknown => f.write_str("not an assignment of this controller's store"),
            Refusal::OtherServer => f.write_str("issued to another server"),
            Refusal::NotDelivered => f.write_str("never delivered to this worker"),
            Refusal::NotAcknowledged => f.write_str("not acknowledged by this worker"),
            Refusal::Settled => f.write_str("already settled"),
            Refusal::NoSuchStep { index, steps } => {
                write!(f, "step index {index} is out of range ({steps} steps)")
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Issued,
    Delivered,
    Acknowledged,
}

#[derive(Debug, Clone)]
struct Open {
    server: ServerId,
    steps: u32,
    stage: Stage,
    /// Every step before it has been reported succeeded.
    next_step: u32,
    /// The last attempt of `next_step` reported started, and finished.
    started: Option<u32>,
    finished: Option<u32>,
}

/// The assignments of one rollout and what their workers have reported.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    open: HashMap<String, Open>,
    ended: HashSet<String>,
}

impl Ledger {
    pub fn new() -> Self {
        Self::default()
    }

    /// A new assignment for `server` with `steps` steps, the first `start_step` of which have
    /// already succeeded (a resumed assignment).
    pub fn issue(&mut self, id: &str, server: ServerId, steps: u32, start_step: u32) {
        self.open.insert(
            id.to_owned(),
            Open {
                server,
                steps,
                stage: Stage::Issued,
                next_step: start_step.min(steps),
                started: None,
                finished: None,
            },
        );
    }

    /// It was sent to the server's worker.
    pub fn delivered(&mut self, id: &str) {
        if let Some(open) = self.open.get_mut(id)
            && open.stage == Stage::Issued
        {
            open.stage = Stage::Delivered;
        }
    }

    /// The worker named it in its `Hello` (it holds it in its journal or memory): as good as
    /// an acknowledgement, if it was delivered. True if it is open and delivered.
    pub fn named_by_worker(&mut self, id: &str, server: ServerId) -> bool {
        match self.open.get_mut(id) {
            Some(open) if open.server == server && open.stage != Stage::Issued => {
                open.stage = Stage::Acknowledged;
                true
            }
            _ => false,
        }
    }

    /// The worker restarted inside it and it goes on from `step`. Refused (false, nothing
    /// changed) past the next step the controller has seen every earlier one succeed for: a
    /// journal's word that more steps succeeded does not count as their reports.
    pub fn resume(&mut self, id: &str, step: u32) -> bool {
        match self.open.get_mut(id) {
            Some(open) if step <= open.next_step => {
                open.next_step = step;
                open.started = None;
                open.finished = None;
                true
            }
            _ => false,
        }
    }

    /// Its step `index` is known to have succeeded (replaying the event log after a restart).
    pub fn step_succeeded(&mut self, id: &str, index: u32) {
        if let Some(open) = self.open.get_mut(id)
            && index >= open.next_step
        {
            open.next_step = (index + 1).min(open.steps);
            open.started = None;
            open.finished = None;
        }
    }

    /// It is over (its result recorded, or its server held or settled by an operator): every
    /// later report about it is discarded.
    pub fn end(&mut self, id: &str) {
        if self.open.remove(id).is_some() {
            self.ended.insert(id.to_owned());
        }
    }

    /// The last attempt of its next step reported started, if any: the attempt that output
    /// from an older worker (which does not say) belongs to.
    pub fn started_attempt(&self, id: &str) -> Option<u32> {
        self.open.get(id).and_then(|open| open.started)
    }

    /// The open assignment of `server`, if any.
    pub fn open_on(&self, server: ServerId) -> Option<&str> {
        self.open
            .iter()
            .find(|(_, open)| open.server == server)
            .map(|(id, _)| id.as_str())
    }

    /// The server an open assignment is for.
    pub fn server_of(&self, id: &str) -> Option<ServerId> {
        self.open.get(id).map(|open| open.server)
    }

    /// Open assignments and their servers.
    pub fn open(&self) -> impl Iterator<Item = (&str, ServerId)> {
        self.open
            .iter()
            .map(|(id, open)| (id.as_str(), open.server))
    }

    /// Whether it has ended.
    pub fn has_ended(&self, id: &str) -> bool {
        self.ended.contains(id)
    }

    /// The step every earlier one of which has succeeded.
    pub fn next_step(&self, id: &str) -> Option<u32> {
        self.open.get(id).map(|open| open.next_step)
    }

    /// Judges a report from the worker of `server` about assignment `id`, and counts it if it
    /// is accepted. A success that is accepted (or found incomplete) ends the assignment; a
    /// failure that is accepted ends it too.
    pub fn judge(&mut self, server: ServerId, id: &str, report: Report) -> Verdict {
        if self.ended.contains(id) {
            return Verdict::Discard(Refusal::Settled);
        }
        let Some(open) = self.open.get_mut(id) else {
            return Verdict::Discard(Refusal::Unknown);
        };
        if open.server != server {
            return Verdict::Discard(Refusal::OtherServer);
        }
        if open.stage == Stage::Issued {
            return Verdict::Discard(Refusal::NotDelivered);
        }
        if let Report::StepStarted { index, .. }
        | Report::StepOutput { index }
        | Report::StepFinished { index, .. } = report
            && index >= open.steps
        {
            return Verdict::Discard(Refusal::NoSuchStep {
                index,
                steps: open.steps,
            });
        }
        let acknowledged = open.stage == Stage::Acknowledged;
        let verdict = match report {
            Report::Accepted => {
                if acknowledged {
                    Verdict::Ignore(Ignored::Repeat)
                } else {
                    open.stage = Stage::Acknowledged;
                    Verdict::Accept
                }
            }
            // A refusal (busy, stale epoch, journal failure) or a failed step: it never makes
            // a server succeeded, and waiting for more would hold the rollout for ever.
            Report::Finished { succeeded: false } => Verdict::Accept,
            // An older worker acknowledges by starting its first step.
            Report::StepStarted { index, attempt } if !acknowledged => {
                if index == open.next_step {
                    open.stage = Stage::Acknowledged;
                    open.started = Some(attempt);
                    Verdict::Accept
                } else {
                    Verdict::Discard(Refusal::NotAcknowledged)
                }
            }
            _ if !acknowledged => Verdict::Discard(Refusal::NotAcknowledged),
            Report::StepStarted { index, attempt } => step_report(open, index, attempt, false),
            Report::StepFinished {
                index,
                attempt,
                succeeded,
            } => {
                let verdict = step_report(open, index, attempt, true);
                if verdict == Verdict::Accept && succeeded {
                    open.next_step += 1;
                    open.started = None;
                    open.finished = None;
                }
                verdict
            }
            Report::StepOutput { index } if index == open.next_step => Verdict::Accept,
            Report::StepOutput { .. } => Verdict::Ignore(Ignored::Repeat),
            Report::Finished { succeeded: true } if open.next_step < open.steps => {
                Verdict::Incomplete {
                    next_step: open.next_step,
                    steps: open.steps,
                }
            }
            Report::Finished { succeeded: true } => Verdict::Accept,
        };
        if matches!(
            (&verdict, report),
            (Verdict::Accept, Report::Finished { .. }) | (Verdict::Incomplete { .. }, _)
        ) {
            self.end(id);
        }
        verdict
    }
}

/// A step start (`finished == false`) or result for an acknowledged assignment: it counts for
/// the next step, once per attempt, in order.
fn step_report(open: &mut Open, index: u32, attempt: u32, finished: bool) -> Verdict {
    if index < open.next_step {
        return Verdict::Ignore(Ignored::Repeat);
    }
    if index > open.next_step {
        return Verdict::Ignore(Ignored::Gap {
            next_step: open.next_step,
        });
    }
    let last = if finished {
        &mut open.finished
    } else {
        &mut open.started
    };
    if last.is_some_and(|last| attempt <= last) {
        return Verdict::Ignore(Ignored::Repeat);
    }
    *last = Some(attempt);
    Verdict::Accept
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "00112233aabbccdd-1-1-1";

    fn delivered(steps: u32) -> Ledger {
        let mut ledger = Ledger::new();
        ledger.issue(A, 0, steps, 0);
        ledger.delivered(A);
        ledger
    }

    fn run_steps(ledger: &mut Ledger, steps: std::ops::Range<u32>) {
        for index in steps {
            let started = Report::StepStarted { index, attempt: 1 };
            assert_eq!(ledger.judge(0, A, started), Verdict::Accept);
            let finished = Report::StepFinished {
                index,
                attempt: 1,
                succeeded: true,
            };
            assert_eq!(ledger.judge(0, A, finished), Verdict::Accept);
        }
    }

    #[test]
    fn ids_name_their_store() {
        let id = assignment_id("00112233aabbccdd", 7, 3, 12);
        assert_eq!(id, "00112233aabbccdd-7-3-12");
        assert_eq!(store_of(&id), Some("00112233aabbccdd"));
        assert_eq!(
            store_of("1-1-28"),
            None,
            "an id from before store identities"
        );
    }

    #[test]
    fn a_success_counts_after_every_step() {
        let mut ledger = delivered(2);
        assert_eq!(ledger.judge(0, A, Report::Accepted), Verdict::Accept);
        run_steps(&mut ledger, 0..2);
        assert_eq!(
            ledger.judge(0, A, Report::Finished { succeeded: true }),
            Verdict::Accept
        );
        assert!(ledger.has_ended(A));
        assert_eq!(
            ledger.judge(0, A, Report::Finished { succeeded: true }),
            Verdict::Discard(Refusal::Settled)
        );
    }

    #[test]
    fn a_success_without_its_steps_is_incomplete() {
        let mut ledger = delivered(3);
        assert_eq!(ledger.judge(0, A, Report::Accepted), Verdict::Accept);
        run_steps(&mut ledger, 0..1);
        assert_eq!(
            ledger.judge(0, A, Report::Finished { succeeded: true }),
            Verdict::Incomplete {
                next_step: 1,
                steps: 3
            }
        );
        assert!(ledger.has_ended(A));
    }

    #[test]
    fn nothing_counts_before_delivery_or_acknowledgement() {
        let mut ledger = Ledger::new();
        ledger.issue(A, 0, 1, 0);
        let success = Report::Finished { succeeded: true };
        assert_eq!(
            ledger.judge(0, A, success),
            Verdict::Discard(Refusal::NotDelivered)
        );
        ledger.delivered(A);
        assert_eq!(
            ledger.judge(0, A, success),
            Verdict::Discard(Refusal::NotAcknowledged)
        );
        let finished = Report::StepFinished {
            index: 0,
            attempt: 1,
            succeeded: true,
        };
        assert_eq!(
            ledger.judge(0, A, finished),
            Verdict::Discard(Refusal::NotAcknowledged)
        );
        // A refusal counts before any acknowledgement: it never makes a server succeeded.
        assert_eq!(
            ledger.judge(0, A, Report::Finished { succeeded: false }),
            Verdict::Accept
        );
    }

    #[test]
    fn other_stores_and_servers_are_discarded() {
        let mut ledger = delivered(1);
        assert_eq!(
            ledger.judge(0, "ffffffffffffffff-1-1-1", Report::Accepted),
            Verdict::Discard(Refusal::Unknown)
        );
        assert_eq!(
            ledger.judge(1, A, Report::Accepted),
            Verdict::Discard(Refusal::OtherServer)
        );
        assert_eq!(
            ledger.judge(0, A, Report::StepOutput { index: 5 }),
            Verdict::Discard(Refusal::NoSuchStep { index: 5, steps: 1 })
        );
    }

    #[test]
    fn replayed_reports_are_repeats_and_gaps_wait() {
        let mut ledger = delivered(3);
        assert_eq!(ledger.judge(0, A, Report::Accepted), Verdict::Accept);
        assert_eq!(
            ledger.judge(0, A, Report::Accepted),
            Verdict::Ignore(Ignored::Repeat)
        );
        run_steps(&mut ledger, 0..1);
        // The whole history again, after a reconnect.
        let start0 = Report::StepStarted {
            index: 0,
            attempt: 1,
        };
        assert_eq!(ledger.judge(0, A, start0), Verdict::Ignore(Ignored::Repeat));
        // Step 1's first attempt failed and was retried.
        let start1 = |attempt| Report::StepStarted { index: 1, attempt };
        let done1 = |attempt, succeeded| Report::StepFinished {
            index: 1,
            attempt,
            succeeded,
        };
        assert_eq!(ledger.judge(0, A, start1(1)), Verdict::Accept);
        assert_eq!(ledger.judge(0, A, done1(1, false)), Verdict::Accept);
        assert_eq!(
            ledger.judge(0, A, done1(1, false)),
            Verdict::Ignore(Ignored::Repeat)
        );
        assert_eq!(ledger.judge(0, A, start1(2)), Verdict::Accept);
        // Step 2 reported before step 1's result: a lost message.
        let done2 = Report::StepFinished {
            index: 2,
            attempt: 1,
            succeeded: true,
        };
        assert_eq!(
            ledger.judge(0, A, done2),
            Verdict::Ignore(Ignored::Gap { next_step: 1 })
        );
        assert_eq!(ledger.judge(0, A, done1(2, true)), Verdict::Accept);
        assert_eq!(ledger.judge(0, A, done2), Verdict::Accept);
        assert_eq!(
            ledger.judge(0, A, Report::Finished { succeeded: true }),
            Verdict::Accept
        );
    }

    #[test]
    fn a_worker_naming_it_acknowledges_and_resume_skips_done_steps() {
        let mut ledger = Ledger::new();
        ledger.issue(A, 0, 3, 0);
        assert!(!ledger.named_by_worker(A, 0), "never delivered");
        ledger.delivered(A);
        assert!(!ledger.named_by_worker(A, 1), "another server");
        assert!(ledger.named_by_worker(A, 0));
        assert!(!ledger.resume(A, 2), "no step was reported succeeded");
        run_steps(&mut ledger, 0..2);
        assert!(ledger.resume(A, 2));
        run_steps(&mut ledger, 2..3);
        assert_eq!(
            ledger.judge(0, A, Report::Finished { succeeded: true }),
            Verdict::Accept
        );
    }
}
