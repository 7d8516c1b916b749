//! The messages the worker sends, built in one place. Everything the executor says goes
//! through one unbounded channel to whichever stream to the controller is current, so an
//! assignment keeps running (and its messages queue) while the worker reconnects.

use baton_proto::v1::{
    AssignmentFinished, Heartbeat, Hello, StepFinished, StepOutput, StepStarted, WorkerMessage,
    worker_message::Body,
};
use tokio::sync::mpsc;

use crate::process::AttemptOutcome;

/// Sends the executor's messages towards the controller.
#[derive(Debug, Clone)]
pub struct Reporter {
    tx: mpsc::UnboundedSender<WorkerMessage>,
}

impl Reporter {
    pub fn new(tx: mpsc::UnboundedSender<WorkerMessage>) -> Self {
        Self { tx }
    }

    /// A reporter and the receiving end that the connection drains.
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<WorkerMessage>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self::new(tx), rx)
    }

    fn send(&self, body: Body) {
        // The receiver is gone only while the worker shuts down: nothing left to tell.
        let _ = self.tx.send(message(body));
    }

    pub fn step_started(&self, assignment_id: &str, step_index: u32, attempt: u32) {
        self.send(Body::StepStarted(StepStarted {
            assignment_id: assignment_id.to_owned(),
            step_index,
            attempt,
        }));
    }

    pub fn step_output(&self, assignment_id: &str, step_index: u32, line: String, stderr: bool) {
        self.send(Body::StepOutput(StepOutput {
            assignment_id: assignment_id.to_owned(),
            step_index,
            line,
            stderr,
        }));
    }

    pub fn step_finished(
        &self,
        assignment_id: &str,
        step_index: u32,
        attempt: u32,
        outcome: &AttemptOutcome,
    ) {
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
        }));
    }

    pub fn assignment_finished(&self, assignment_id: &str, succeeded: bool, detail: String) {
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

/// The first message of every stream, naming the last assignment this process received.
pub fn hello(fqdn: &str, last_assignment: Option<&str>) -> WorkerMessage {
    message(Body::Hello(Hello {
        fqdn: fqdn.to_owned(),
        version: crate::VERSION.to_owned(),
        platform: std::env::consts::OS.to_owned(),
        assignment_id: last_assignment.unwrap_or_default().to_owned(),
    }))
}

pub fn heartbeat() -> WorkerMessage {
    message(Body::Heartbeat(Heartbeat {}))
}
