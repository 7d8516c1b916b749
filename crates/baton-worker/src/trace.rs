//! The worker's span for running one step: a child of the controller's `step` span, whose
//! context came with the step, so one trace shows both sides.

use baton_proto::v1::Step;
use tracing::field::Empty;

use crate::process::AttemptOutcome;

/// A `step.execute` span for step `index` of `assignment_id`, parented by the step's context.
pub fn step_span(assignment_id: &str, index: u32, step: &Step) -> tracing::Span {
    let span = tracing::info_span!(
        "step.execute",
        step.id = %step.id,
        step.index = i64::from(index),
        assignment.id = %assignment_id,
        step.attempt = Empty,
        step.exit_code = Empty,
        otel.status_code = Empty,
        otel.status_message = Empty,
    );
    baton_telemetry::set_parent_from_map(&span, &step.trace_context);
    span
}

/// The last attempt of a step, recorded on its span once the step ends (recording each
/// attempt would repeat the fields in text logs).
#[derive(Debug, Default)]
pub struct LastAttempt {
    attempt: u32,
    exit_code: Option<i32>,
}

impl LastAttempt {
    pub fn set(&mut self, attempt: u32, outcome: &AttemptOutcome) {
        self.attempt = attempt;
        self.exit_code = Some(outcome.exit_code());
    }
}

/// Records how the step ended.
pub fn record_end(span: &tracing::Span, last: &LastAttempt, result: &Result<(), String>) {
    if last.attempt > 0 {
        span.record("step.attempt", i64::from(last.attempt));
    }
    if let Some(code) = last.exit_code {
        span.record("step.exit_code", i64::from(code));
    }
    match result {
        Ok(()) => span.record("otel.status_code", "OK"),
        Err(detail) => {
            span.record("otel.status_code", "ERROR");
            span.record("otel.status_message", detail.as_str())
        }
    };
}
