//! Span ids chosen by the caller. The controller knows a step's span id when it hands the step
//! to a worker, long before the step starts: the worker's span must name it as its parent, and a
//! controller that restarts must give the spans it had not finished the same ids again. The SDK
//! always asks its id generator, so this generator answers with the ids reserved for the span
//! being built on this thread, and random ones otherwise.

use std::cell::Cell;

use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};

thread_local! {
    static RESERVED_TRACE: Cell<Option<TraceId>> = const { Cell::new(None) };
    static RESERVED_SPAN: Cell<Option<SpanId>> = const { Cell::new(None) };
}

/// Random ids, except while [`with_ids`] builds a span on this thread.
#[derive(Debug, Default)]
pub struct ReservableIds(RandomIdGenerator);

impl IdGenerator for ReservableIds {
    fn new_trace_id(&self) -> TraceId {
        RESERVED_TRACE
            .take()
            .unwrap_or_else(|| self.0.new_trace_id())
    }

    fn new_span_id(&self) -> SpanId {
        RESERVED_SPAN.take().unwrap_or_else(|| self.0.new_span_id())
    }
}

/// Runs `build` (which starts one span) so that the span gets `span_id`, and `trace_id` if it
/// is a root. Takes effect only with a tracer provider built on [`ReservableIds`], as
/// [`crate::init`] builds it.
pub fn with_ids<T>(trace_id: Option<TraceId>, span_id: SpanId, build: impl FnOnce() -> T) -> T {
    RESERVED_TRACE.set(trace_id);
    RESERVED_SPAN.set(Some(span_id));
    let built = build();
    // A span built with a parent never asked for a trace id: nothing may leak to the next.
    RESERVED_TRACE.set(None);
    RESERVED_SPAN.set(None);
    built
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_ids_are_used_once_then_random() {
        let ids = ReservableIds::default();
        let trace = TraceId::from_bytes([7; 16]);
        let span = SpanId::from_bytes([9; 8]);
        let (t, s) = with_ids(Some(trace), span, || {
            (ids.new_trace_id(), ids.new_span_id())
        });
        assert_eq!((t, s), (trace, span));
        assert_ne!(ids.new_span_id(), span);
        assert_ne!(ids.new_trace_id(), trace);
    }

    #[test]
    fn an_unused_trace_id_does_not_leak_into_the_next_span() {
        let ids = ReservableIds::default();
        let trace = TraceId::from_bytes([7; 16]);
        with_ids(Some(trace), SpanId::from_bytes([9; 8]), || {
            ids.new_span_id()
        });
        assert_ne!(ids.new_trace_id(), trace);
    }
}
