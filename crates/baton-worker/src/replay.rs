//! What the worker says again on every new stream: its current assignment's acknowledgement,
//! each step's last start and result, and the assignment's result. A stream that breaks loses
//! whatever was in flight, and only the controller knows what it received; it counts each
//! report once (the acceptance rule), so saying everything again is safe, and a handful of
//! messages per step is cheap. Replayed only to a controller whose store issued the assignment.

use std::collections::BTreeMap;

use baton_proto::v1::worker_message::Body;
use baton_proto::v1::{
    AssignmentAccepted, AssignmentFinished, StepFinished, StepStarted, WorkerMessage,
};

use crate::report::message;

/// The reports of one assignment, as handed to streams.
#[derive(Debug, Clone, PartialEq)]
pub struct Replay {
    pub assignment_id: String,
    /// The store that issued it (empty: unknown, an older controller or journal).
    pub store_id: String,
    /// Per step index: its last start and its last result.
    steps: BTreeMap<u32, (Option<StepStarted>, Option<StepFinished>)>,
    finished: Option<AssignmentFinished>,
}

impl Replay {
    pub fn new(assignment_id: impl Into<String>, store_id: impl Into<String>) -> Self {
        Self {
            assignment_id: assignment_id.into(),
            store_id: store_id.into(),
            steps: BTreeMap::new(),
            finished: None,
        }
    }

    /// Rebuilt from a journal whose assignment finished: its successful steps and its result.
    pub fn from_journal(
        result: AssignmentFinished,
        store_id: String,
        succeeded_steps: &[(u32, u32)],
    ) -> Self {
        let mut replay = Replay::new(result.assignment_id.clone(), store_id);
        for &(step_index, attempt) in succeeded_steps {
            let assignment_id = result.assignment_id.clone();
            replay.steps.insert(
                step_index,
                (
                    Some(StepStarted {
                        assignment_id: assignment_id.clone(),
                        step_index,
                        attempt,
                    }),
                    // The journal records success only when the command exited 0 in time.
                    Some(StepFinished {
                        assignment_id,
                        step_index,
                        attempt,
                        exit_code: 0,
                        ..StepFinished::default()
                    }),
                ),
            );
        }
        replay.finished = Some(result);
        replay
    }

    /// Whether it holds the assignment's result.
    pub fn finished(&self) -> bool {
        self.finished.is_some()
    }

    /// Keeps `message` if it is one of this assignment's reports worth saying again.
    pub fn record(&mut self, message: &WorkerMessage) {
        match &message.body {
            Some(Body::StepStarted(m)) if m.assignment_id == self.assignment_id => {
                self.steps.entry(m.step_index).or_default().0 = Some(m.clone());
            }
            Some(Body::StepFinished(m)) if m.assignment_id == self.assignment_id => {
                self.steps.entry(m.step_index).or_default().1 = Some(m.clone());
            }
            Some(Body::AssignmentFinished(m)) if m.assignment_id == self.assignment_id => {
                self.finished = Some(m.clone());
            }
            _ => {}
        }
    }

    /// Everything to say again, in the order it was first said.
    pub fn messages(&self) -> Vec<WorkerMessage> {
        let mut out = vec![message(Body::AssignmentAccepted(AssignmentAccepted {
            assignment_id: self.assignment_id.clone(),
        }))];
        for (started, finished) in self.steps.values() {
            // A retried step: its last result (of an earlier attempt) came before its last start.
            let result_first =
                matches!((started, finished), (Some(s), Some(f)) if f.attempt < s.attempt);
            let started = started.clone().map(|m| message(Body::StepStarted(m)));
            let finished = finished.clone().map(|m| message(Body::StepFinished(m)));
            if result_first {
                out.extend(finished.into_iter().chain(started));
            } else {
                out.extend(started.into_iter().chain(finished));
            }
        }
        out.extend(
            self.finished
                .clone()
                .map(|m| message(Body::AssignmentFinished(m))),
        );
        out
    }
}

/// The assignment a report is about, if it is about one.
pub fn assignment_of(message: &WorkerMessage) -> Option<&str> {
    match message.body.as_ref()? {
        Body::AssignmentAccepted(m) => Some(&m.assignment_id),
        Body::StepStarted(m) => Some(&m.assignment_id),
        Body::StepOutput(m) => Some(&m.assignment_id),
        Body::StepFinished(m) => Some(&m.assignment_id),
        Body::AssignmentFinished(m) => Some(&m.assignment_id),
        Body::Hello(_) | Body::Heartbeat(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(index: u32, attempt: u32) -> WorkerMessage {
        message(Body::StepStarted(StepStarted {
            assignment_id: "a".into(),
            step_index: index,
            attempt,
        }))
    }

    fn finished(index: u32, attempt: u32, exit_code: i32) -> WorkerMessage {
        message(Body::StepFinished(StepFinished {
            assignment_id: "a".into(),
            step_index: index,
            attempt,
            exit_code,
            ..StepFinished::default()
        }))
    }

    fn kinds(replay: &Replay) -> Vec<String> {
        replay
            .messages()
            .iter()
            .map(|m| match m.body.as_ref().unwrap() {
                Body::AssignmentAccepted(_) => "accepted".to_string(),
                Body::StepStarted(s) => format!("started {} {}", s.step_index, s.attempt),
                Body::StepFinished(s) => format!("finished {} {}", s.step_index, s.attempt),
                Body::AssignmentFinished(_) => "done".to_string(),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn keeps_each_steps_last_start_and_result_in_order() {
        let mut replay = Replay::new("a", "s");
        for m in [
            started(0, 1),
            finished(0, 1, 0),
            started(1, 1),
            finished(1, 1, 3),
            started(1, 2),
        ] {
            replay.record(&m);
        }
        // Another assignment's report is not this replay's.
        replay.record(&message(Body::StepStarted(StepStarted {
            assignment_id: "b".into(),
            step_index: 5,
            attempt: 1,
        })));
        assert_eq!(
            kinds(&replay),
            [
                "accepted",
                "started 0 1",
                "finished 0 1",
                "finished 1 1",
                "started 1 2"
            ]
        );
        replay.record(&finished(1, 2, 0));
        replay.record(&message(Body::AssignmentFinished(AssignmentFinished {
            assignment_id: "a".into(),
            succeeded: true,
            detail: String::new(),
        })));
        assert!(replay.finished());
        assert_eq!(
            kinds(&replay),
            [
                "accepted",
                "started 0 1",
                "finished 0 1",
                "started 1 2",
                "finished 1 2",
                "done"
            ]
        );
    }

    #[test]
    fn rebuilt_from_a_journal() {
        let result = AssignmentFinished {
            assignment_id: "a".into(),
            succeeded: true,
            detail: String::new(),
        };
        let replay = Replay::from_journal(result, "s".into(), &[(0, 1), (1, 2)]);
        assert_eq!(replay.store_id, "s");
        assert_eq!(
            kinds(&replay),
            [
                "accepted",
                "started 0 1",
                "finished 0 1",
                "started 1 2",
                "finished 1 2",
                "done"
            ]
        );
    }
}
