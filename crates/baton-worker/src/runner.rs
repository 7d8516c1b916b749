//! At most one assignment at a time. Runs it in its own task so it outlives a dropped
//! connection; refuses a second assignment while one runs.

use std::sync::Arc;

use baton_proto::v1::{Assignment, Interrupted};
use tokio::task::JoinHandle;

use crate::executor::Executor;
use crate::report::Reporter;

/// What [`Runner::start`] did with an assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    Running,
    /// Another assignment runs: this one was finished at once as failed.
    RejectedBusy {
        running: String,
    },
    /// This very assignment already runs (sent again, e.g. after a reconnect): ignored; the
    /// running one reports as usual.
    AlreadyRunning,
    /// The journal could not record it: finished at once as failed, nothing run.
    RefusedJournal,
}

pub struct Runner {
    executor: Arc<Executor>,
    report: Reporter,
    current: Option<Running>,
    /// The last assignment of an earlier run of this worker, from its journal (id, issuing
    /// store), and where a restart interrupted it, until a new assignment is taken.
    recovered: Option<(String, String, Option<Interrupted>)>,
}

struct Running {
    id: String,
    store_id: String,
    /// `None` once a cancel has awaited it.
    task: Option<JoinHandle<bool>>,
}

impl Runner {
    pub fn new(executor: Executor, report: Reporter) -> Self {
        Self {
            executor: Arc::new(executor),
            report,
            current: None,
            recovered: None,
        }
    }

    /// Names `assignment_id` (from the journal of an earlier run, issued by `store_id`) as
    /// the last assignment, and where it was interrupted, until a new one arrives.
    pub fn recovered(
        mut self,
        assignment_id: String,
        store_id: String,
        interrupted: Option<Interrupted>,
    ) -> Self {
        self.recovered = Some((assignment_id, store_id, interrupted));
        self
    }

    /// Where the journal of an earlier run says the last assignment stopped, until a new
    /// assignment starts.
    pub fn interrupted(&self) -> Option<Interrupted> {
        self.recovered.as_ref().and_then(|(_, _, at)| *at)
    }

    /// Forgets `assignment_id` as the last assignment (a controller discarded it): `Hello`
    /// names it no more. A running assignment is not stopped.
    pub fn forget(&mut self, assignment_id: &str) {
        if self
            .recovered
            .as_ref()
            .is_some_and(|(id, _, _)| id == assignment_id)
        {
            self.recovered = None;
        }
        if self.current.as_ref().is_some_and(|running| {
            running.id == assignment_id && running.task.as_ref().is_none_or(JoinHandle::is_finished)
        }) {
            self.current = None;
        }
    }

    /// The id of the assignment now running, if any.
    pub fn running(&self) -> Option<&str> {
        self.current
            .as_ref()
            .filter(|running| {
                running
                    .task
                    .as_ref()
                    .is_some_and(|task| !task.is_finished())
            })
            .map(|running| running.id.as_str())
    }

    /// Refuses an assignment without running anything (e.g. a stale epoch).
    pub fn refuse(&self, assignment_id: &str, detail: String) {
        self.report
            .assignment_finished(assignment_id, false, detail);
    }

    /// The last assignment this worker took on, running or finished (before a restart too,
    /// when it keeps a journal), and the store that issued it.
    pub fn last(&self) -> Option<(&str, &str)> {
        self.current
            .as_ref()
            .map(|running| (running.id.as_str(), running.store_id.as_str()))
            .or(self
                .recovered
                .as_ref()
                .map(|(id, store, _)| (id.as_str(), store.as_str())))
    }

    /// Starts `assignment` in the background, unless one already runs.
    pub fn start(&mut self, assignment: Assignment) -> Started {
        if let Some(running) = self.running() {
            if running == assignment.assignment_id {
                tracing::warn!(assignment = %running, "assignment sent again while it runs; ignored");
                return Started::AlreadyRunning;
            }
            let running = running.to_owned();
            tracing::warn!(
                assignment = %assignment.assignment_id,
                %running,
                "refusing a second assignment while one runs"
            );
            self.report.assignment_finished(
                &assignment.assignment_id,
                false,
                format!("worker busy with assignment {running}"),
            );
            return Started::RejectedBusy { running };
        }
        if let Err(err) = self.report.begin(&assignment) {
            tracing::error!(assignment = %assignment.assignment_id, %err, "cannot journal the assignment; refused");
            self.report.assignment_finished(
                &assignment.assignment_id,
                false,
                format!("not started: {err}"),
            );
            return Started::RefusedJournal;
        }
        self.recovered = None;
        self.report.accepted(&assignment.assignment_id);
        let executor = Arc::clone(&self.executor);
        let report = self.report.clone();
        let id = assignment.assignment_id.clone();
        let store_id = assignment.store_id.clone();
        let task = tokio::spawn(async move { executor.run(&assignment, &report).await });
        self.current = Some(Running {
            id,
            store_id,
            task: Some(task),
        });
        Started::Running
    }

    /// Cancels `assignment_id` if it is the one running: its task is stopped (which kills the
    /// step's process group), then the assignment is reported failed. False if it is not
    /// running here.
    pub async fn cancel(&mut self, assignment_id: &str) -> bool {
        let Some(running) = self.current.as_mut() else {
            return false;
        };
        if running.id != assignment_id {
            return false;
        }
        let Some(task) = running.task.take_if(|task| !task.is_finished()) else {
            return false;
        };
        task.abort();
        // Nothing more from the task may follow the failure report; and a task that finished
        // in the meantime has reported its own result.
        if task.await.is_ok() {
            return false;
        }
        self.report.assignment_finished(
            assignment_id,
            false,
            "cancelled by the controller (abort --force), mid-runbook".to_string(),
        );
        true
    }

    /// Stops the running assignment, if any: its task is dropped, which kills the step's
    /// process (group). Returns once that is done.
    pub async fn shutdown(&mut self) {
        if let Some(running) = self.current.take() {
            let Some(task) = running.task else { return };
            if !task.is_finished() {
                tracing::info!(assignment = %running.id, "stopping the running assignment");
            }
            task.abort();
            let _ = task.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::SimulateExecutor;
    use baton_proto::v1::Step;
    use baton_proto::v1::worker_message::Body;

    fn assignment(id: &str) -> Assignment {
        Assignment {
            assignment_id: id.into(),
            rollout_id: "r1".into(),
            shell: "sh".into(),
            steps: vec![Step {
                id: "s1".into(),
                command: "true".into(),
                timeout_ms: 0,
                retries: 0,
                gate_interval_ms: 0,
                idempotent: false,
                ..Default::default()
            }],
            expected_duration_ms: 60_000,
            epoch: 0,
            start_step: 0,
            store_id: String::new(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_assignment_is_refused_while_one_runs() {
        let (report, mut rx) = Reporter::channel();
        let mut runner = Runner::new(Executor::Simulate(SimulateExecutor::default()), report);

        assert_eq!(runner.start(assignment("a1")), Started::Running);
        let accepted = rx.recv().await.unwrap().body.unwrap();
        assert!(matches!(accepted, Body::AssignmentAccepted(a) if a.assignment_id == "a1"));
        // a1 has begun its (simulated, minute-long) step.
        let first = rx.recv().await.unwrap().body.unwrap();
        assert!(matches!(first, Body::StepStarted(s) if s.assignment_id == "a1"));

        assert_eq!(
            runner.start(assignment("a2")),
            Started::RejectedBusy {
                running: "a1".into()
            }
        );
        match rx.recv().await.unwrap().body.unwrap() {
            Body::AssignmentFinished(f) => {
                assert_eq!(f.assignment_id, "a2");
                assert!(!f.succeeded);
                assert_eq!(f.detail, "worker busy with assignment a1");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(runner.start(assignment("a1")), Started::AlreadyRunning);

        // a1 carries on and finishes; then a new one is taken.
        assert!(matches!(
            rx.recv().await.unwrap().body.unwrap(),
            Body::StepFinished(_)
        ));
        assert!(matches!(
            rx.recv().await.unwrap().body.unwrap(),
            Body::AssignmentFinished(f) if f.assignment_id == "a1" && f.succeeded
        ));
        // The task may still be returning; wait for it rather than racing it.
        if let Some(running) = runner.current.as_mut() {
            running.task.as_mut().expect("a task").await.unwrap();
        }
        assert_eq!(runner.running(), None);
        assert_eq!(runner.start(assignment("a3")), Started::Running);
        assert!(matches!(
            rx.recv().await.unwrap().body.unwrap(),
            Body::AssignmentAccepted(a) if a.assignment_id == "a3"
        ));
        runner.shutdown().await;
        assert_eq!(runner.running(), None);
    }
}
