//! The messages the worker sends, built in one place. Everything the executor says goes
//! through one unbounded channel to whichever stream to the controller is current, so an
//! assignment keeps running (and its messages queue) while the worker reconnects. With a
//! journal, each step start and result is on disk before it is sent.

use std::sync::{Arc, Mutex, PoisonError};

use baton_proto::v1::{
    Assignment, AssignmentAccepted, AssignmentFinished, Heartbeat, Hello, Interrupted,
    StepFinished, StepOutput, StepStarted, WorkerMessage, worker_message::Body,
};
use tokio::sync::mpsc;
// Tokio's clock, so tests with paused time measure their virtual durations.
use tokio::time::Instant;

use crate::journal::{Journal, JournalError};
use crate::process::{AttemptOutcome, OutputBatch};

/// Sends the executor's messages towards the controller.
#[derive(Debug, Clone)]
pub struct Reporter {
    tx: mpsc::UnboundedSender<WorkerMessage>,
    journal: Option<Arc<Journal>>,
    /// When the running attempt began (one at a time), for `StepFinished.duration_ms`.
    attempt_began: Arc<Mutex<Option<Instant>>>,
}

impl Reporter {
    pub fn new(tx: mpsc::UnboundedSender<WorkerMessage>) -> Self {
        Self {
            tx,
            journal: None,
            attempt_began: Arc::default(),
        }
    }

    /// A reporter and the receiving end that the connection drains.
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<WorkerMessage>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self::new(tx), rx)
    }

    /// Records every step start and result in `journal` before sending it.
    pub fn with_journal(mut self, journal: Arc<Journal>) -> Self {
        self.journal = Some(journal);
        self
    }

    /// Opens the journal of a new assignment (nothing to do without a journal).
    pub fn begin(&self, assignment: &Assignment) -> Result<(), JournalError> {
        match &self.journal {
            Some(journal) => journal.begin(assignment),
            None => Ok(()),
        }
    }

    /// Moves the journal's entry for `assignment_id` to its archive (a controller said it can
    /// never count). False if the journal held something else, or there is no journal.
    pub fn archive(&self, assignment_id: &str, reason: &str) -> Result<bool, JournalError> {
        match &self.journal {
            Some(journal) => journal.archive(assignment_id, reason),
            None => Ok(false),
        }
    }

    /// The assignment is journaled and its first step is about to run.
    pub fn accepted(&self, assignment_id: &str) {
        self.send(Body::AssignmentAccepted(AssignmentAccepted {
            assignment_id: assignment_id.to_owned(),
        }));
    }

    fn send(&self, body: Body) {
        // The receiver is gone only while the worker shuts down: nothing left to tell.
        let _ = self.tx.send(message(body));
    }

    /// An error means the start could not be journaled: the step must not run, since a restart
    /// would not know it had.
    pub fn step_started(
        &self,
        assignment_id: &str,
        step_index: u32,
        attempt: u32,
    ) -> Result<(), JournalError> {
        if let Some(journal) = &self.journal {
            journal.step_started(assignment_id, step_index, attempt)?;
        }
        *self
            .attempt_began
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        self.send(Body::StepStarted(StepStarted {
            assignment_id: assignment_id.to_owned(),
            step_index,
            attempt,
        }));
        Ok(())
    }

    /// A batch of an attempt's output lines (sent before the attempt's `StepFinished`).
    pub fn step_output(
        &self,
        assignment_id: &str,
        step_index: u32,
        attempt: u32,
        batch: OutputBatch,
    ) {
        self.send(Body::StepOutput(StepOutput {
            assignment_id: assignment_id.to_owned(),
            step_index,
            line: String::new(),
            stderr: batch.stderr,
            text: batch.text,
            lines: batch.lines,
            attempt,
        }));
    }

    pub fn step_finished(
        &self,
        assignment_id: &str,
        step_index: u32,
        attempt: u32,
        outcome: &AttemptOutcome,
    ) {
        // The step has run: its result goes to the controller even if the disk failed.
        if let Some(Err(err)) = self.journal.as_ref().map(|journal| {
            journal.step_finished(assignment_id, step_index, attempt, outcome.succeeded())
        }) {
            tracing::error!(%err, "could not journal a step result");
        }
        self.send(Body::StepFinished(StepFinished {
            assignment_id: assignment_id.to_owned(),
            step_index,
            attempt,
            exit_code: outcome.exit_code(),
            timed_out: *outcome == AttemptOutcome::TimedOut,
            error: match outcome {
                AttemptOutcome::CouldNotStart(error) => error.clone(),
                _ => String::new(),
            },
            duration_ms: self
                .attempt_began
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
                .map(|began| u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX)),
        }));
    }

    pub fn assignment_finished(&self, assignment_id: &str, succeeded: bool, detail: String) {
        if let Some(Err(err)) = self
            .journal
            .as_ref()
            .map(|journal| journal.finished(assignment_id, succeeded, &detail))
        {
            tracing::error!(%err, "could not journal an assignment result");
        }
        self.send(Body::AssignmentFinished(AssignmentFinished {
            assignment_id: assignment_id.to_owned(),
            succeeded,
            detail,
        }));
    }
}

pub fn message(body: Body) -> WorkerMessage {
    WorkerMessage { body: Some(body) }
}

/// The first message of every stream, naming the last assignment this worker received (in
/// this process, or before a restart by its journal), and where it stopped if a restart
/// interrupted it.
pub fn hello(
    fqdn: &str,
    last_assignment: Option<(&str, &str)>,
    interrupted: Option<Interrupted>,
) -> WorkerMessage {
    let (assignment_id, store_id) = last_assignment.unwrap_or_default();
    message(Body::Hello(Hello {
        fqdn: fqdn.to_owned(),
        version: crate::VERSION.to_owned(),
        platform: std::env::consts::OS.to_owned(),
        assignment_id: assignment_id.to_owned(),
        interrupted,
        assignment_store_id: store_id.to_owned(),
    }))
}

pub fn heartbeat() -> WorkerMessage {
    message(Body::Heartbeat(Heartbeat {}))
}
