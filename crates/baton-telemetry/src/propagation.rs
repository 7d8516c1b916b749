//! W3C trace context in a `map<string,string>` of a protobuf message: the controller puts a
//! step span's context in each `Step` it assigns; the worker makes its own span a child of it.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// `span`'s context as `{"traceparent": "00-…-…-01"}`; empty when no trace is recorded.
pub fn inject(span: &tracing::Span) -> HashMap<String, String> {
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier
}

/// Makes `span` a child of the context in `carrier` (no-op for an empty one). Call before the
/// span is first entered.
pub fn set_parent(span: &tracing::Span, carrier: &HashMap<String, String>) {
    if carrier.is_empty() {
        return;
    }
    let context = TraceContextPropagator::new().extract(carrier);
    if let Err(err) = span.set_parent(context) {
        tracing::debug!(%err, "trace context not applied");
    }
}
