//! A rollout's trace: `rollout` → `server.update` (one per assignment) → `step`, and under each
//! `step` the worker's own span, which names the step span as its parent through the W3C
//! context sent with the step.
//!
//! Every id is derived from the rollout (its store id, creation time and fleet name) and the
//! assignment, so a step's span id is known when the step is handed to the worker, before it
//! starts; and a controller that takes a rollout over after a restart gives the spans it
//! finishes the ids the workers already hold. A span is therefore built only when it ends, with
//! its recorded start: nothing half-done is exported by a controller that stops mid-rollout.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::global::BoxedTracer;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{
    Event, Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags,
    TraceId, TraceState, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;

/// What a `server.update` span says about its server.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub fqdn: String,
    pub pool: String,
    pub role: &'static str,
}

/// One step attempt's result, as the worker reported it.
#[derive(Debug, Clone, Copy)]
pub struct AttemptResult<'a> {
    pub attempt: u32,
    pub exit_code: i32,
    pub timed_out: bool,
    /// Why the command could not start; empty if it ran.
    pub error: &'a str,
}

impl AttemptResult<'_> {
    fn succeeded(&self) -> bool {
        self.exit_code == 0 && !self.timed_out && self.error.is_empty()
    }
}

struct StepSpan {
    index: u32,
    id: String,
    started: SystemTime,
    attempt: u32,
    exit_code: Option<i32>,
    failure: Option<String>,
    events: Vec<Event>,
}

struct ServerSpan {
    span_id: SpanId,
    started: SystemTime,
    info: ServerInfo,
    step: Option<StepSpan>,
}

pub struct RolloutTrace {
    /// None: traces are not exported, and nothing is recorded.
    tracer: Option<BoxedTracer>,
    trace_id: TraceId,
    rollout_span: SpanId,
    started: SystemTime,
    attributes: Vec<KeyValue>,
    /// Open `server.update` spans by assignment id.
    servers: HashMap<String, ServerSpan>,
    /// When assignments began, from the event log of a rollout taken over after a restart.
    began: HashMap<String, SystemTime>,
    /// What happened to the rollout as a whole (pauses, budget warnings, lost workers...), as
    /// events of its span.
    events: Vec<Event>,
}

/// Events kept on the `rollout` span: the SDK's default limit per span.
const MAX_ROLLOUT_EVENTS: usize = 128;

/// The event-log kinds that become events of the `rollout` span. Step and server starts and
/// results are spans of their own; step output would drown the rest.
const ROLLOUT_EVENT_KINDS: &[&str] = &[
    "rollout_paused",
    "rollout_resumed",
    "rollout_aborted",
    "rollout_awaiting_approval",
    "rollout_approved",
    "budget_warning",
    "resiliency_risk",
    "worker_lost",
    "worker_flapped",
    "window_opened",
    "server_needs_attention",
    "server_resolved",
    "server_retried",
    "server_resumed",
    "server_skipped",
    "server_not_started",
];

/// Unix milliseconds as a time stamp.
pub fn at_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// 64 well-mixed bits of `parts` (FNV-1a, then the SplitMix64 finaliser): stable across
/// builds and platforms, unlike std's hasher, so a restarted controller derives the same ids.
fn mix(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &byte in part.iter().chain(&[0xff]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// A span id from `parts`; never the invalid all-zero id.
fn span_id(parts: &[&[u8]]) -> SpanId {
    SpanId::from(mix(parts).max(1))
}

impl RolloutTrace {
    pub fn new(
        tracer: Option<BoxedTracer>,
        rollout: i64,
        fleet_name: &str,
        servers: usize,
        created_at_ms: i64,
    ) -> Self {
        let (id, created) = (rollout.to_le_bytes(), created_at_ms.to_le_bytes());
        let high = mix(&[b"trace-high", &id, &created, fleet_name.as_bytes()]);
        let low = mix(&[b"trace-low", &id, &created, fleet_name.as_bytes()]).max(1);
        let trace_id = TraceId::from((u128::from(high) << 64) | u128::from(low));
        RolloutTrace {
            tracer,
            trace_id,
            rollout_span: span_id(&[b"rollout", &trace_id.to_bytes()]),
            started: at_ms(created_at_ms),
            attributes: vec![
                KeyValue::new("baton.rollout", rollout),
                KeyValue::new("baton.fleet", fleet_name.to_string()),
                KeyValue::new("baton.servers", i64::try_from(servers).unwrap_or(i64::MAX)),
            ],
            servers: HashMap::new(),
            began: HashMap::new(),
            events: Vec::new(),
        }
    }

    /// An event of the rollout's log: the kinds that tell the rollout's story become events of
    /// its span (the first [`MAX_ROLLOUT_EVENTS`]).
    pub fn note(&mut self, kind: &str, server: Option<&str>, detail: &str, at: SystemTime) {
        if self.tracer.is_none()
            || !ROLLOUT_EVENT_KINDS.contains(&kind)
            || self.events.len() >= MAX_ROLLOUT_EVENTS
        {
            return;
        }
        let mut attributes = vec![KeyValue::new("detail", detail.to_string())];
        if let Some(server) = server {
            attributes.push(KeyValue::new("server.fqdn", server.to_string()));
        }
        self.events
            .push(Event::new(kind.to_string(), at, attributes, 0));
    }

    /// The trace id, for logs (`None` when traces are off).
    pub fn trace_id(&self) -> Option<TraceId> {
        self.tracer.is_some().then_some(self.trace_id)
    }

    fn server_span_id(&self, assignment_id: &str) -> SpanId {
        span_id(&[
            b"server",
            &self.trace_id.to_bytes(),
            assignment_id.as_bytes(),
        ])
    }

    fn step_span_id(&self, assignment_id: &str, index: u32) -> SpanId {
        span_id(&[
            b"step",
            &self.trace_id.to_bytes(),
            assignment_id.as_bytes(),
            &index.to_le_bytes(),
        ])
    }

    /// Replay: `assignment_id` began at `at` (so its span, built later, starts there).
    pub fn assignment_began(&mut self, assignment_id: &str, at: SystemTime) {
        if self.tracer.is_some() {
            self.began.insert(assignment_id.to_string(), at);
        }
    }

    fn server(
        &mut self,
        assignment_id: &str,
        info: &ServerInfo,
        now: SystemTime,
    ) -> &mut ServerSpan {
        let span_id = self.server_span_id(assignment_id);
        let started = self.began.remove(assignment_id).unwrap_or(now);
        self.servers
            .entry(assignment_id.to_string())
            .or_insert_with(|| ServerSpan {
                span_id,
                started,
                info: info.clone(),
                step: None,
            })
    }

    /// The W3C context of each step's span, in step order, to send with the assignment; empty
    /// maps when traces are off.
    pub fn step_contexts(
        &mut self,
        assignment_id: &str,
        info: &ServerInfo,
        steps: usize,
        now: SystemTime,
    ) -> Vec<HashMap<String, String>> {
        if self.tracer.is_none() {
            return vec![HashMap::new(); steps];
        }
        self.server(assignment_id, info, now);
        let propagator = TraceContextPropagator::new();
        (0..steps)
            .map(|index| {
                let index = u32::try_from(index).unwrap_or(u32::MAX);
                let context = self.remote(self.step_span_id(assignment_id, index));
                let mut carrier = HashMap::new();
                propagator.inject_context(&context, &mut carrier);
                carrier
            })
            .collect()
    }

    /// A step attempt began. A new step ends the one before it.
    pub fn step_started(
        &mut self,
        assignment_id: &str,
        info: &ServerInfo,
        (index, step_id): (u32, &str),
        attempt: u32,
        now: SystemTime,
    ) {
        if self.tracer.is_none() {
            return;
        }
        let server = self.server(assignment_id, info, now);
        if server.step.as_ref().is_some_and(|step| step.index == index) {
            return;
        }
        let previous = server.step.replace(StepSpan {
            index,
            id: step_id.to_string(),
            started: now,
            attempt,
            exit_code: None,
            failure: None,
            events: Vec::new(),
        });
        if let Some(previous) = previous {
            self.emit_step(assignment_id, previous, now);
        }
    }

    /// A step attempt ended; a success ends the step's span, a failure waits for a retry or
    /// the assignment's end.
    pub fn step_finished(
        &mut self,
        assignment_id: &str,
        info: &ServerInfo,
        (index, step_id): (u32, &str),
        result: AttemptResult<'_>,
        now: SystemTime,
    ) {
        if self.tracer.is_none() {
            return;
        }
        let server = self.server(assignment_id, info, now);
        if server.step.as_ref().is_none_or(|step| step.index != index) {
            // Its start was seen by a controller that has since restarted.
            self.step_started(assignment_id, info, (index, step_id), result.attempt, now);
        }
        let server = self.servers.get_mut(assignment_id).expect("made above");
        let step = server.step.as_mut().expect("made above");
        step.attempt = result.attempt;
        step.exit_code = Some(result.exit_code);
        step.failure = (!result.succeeded()).then(|| {
            if result.timed_out {
                "timed out".to_string()
            } else if !result.error.is_empty() {
                format!("could not start: {}", result.error)
            } else {
                format!("exit {}", result.exit_code)
            }
        });
        step.events.push(Event::new(
            "attempt finished",
            now,
            vec![
                KeyValue::new("step.attempt", i64::from(result.attempt)),
                KeyValue::new("step.exit_code", i64::from(result.exit_code)),
                KeyValue::new("step.timed_out", result.timed_out),
            ],
            0,
        ));
        if result.succeeded() {
            let step = server.step.take().expect("made above");
            self.emit_step(assignment_id, step, now);
        }
    }

    /// The assignment ended: `outcome` is `succeeded`, `failed`, `needs_attention`, ...;
    /// `failure` says why it did not succeed.
    pub fn assignment_ended(
        &mut self,
        assignment_id: &str,
        outcome: &str,
        failure: Option<&str>,
        now: SystemTime,
    ) {
        self.began.remove(assignment_id);
        let Some(mut server) = self.servers.remove(assignment_id) else {
            return;
        };
        if let Some(step) = server.step.take() {
            self.emit_step(assignment_id, step, now);
        }
        let attributes = vec![
            KeyValue::new("server.fqdn", server.info.fqdn),
            KeyValue::new("pool", server.info.pool),
            KeyValue::new("role", server.info.role),
            KeyValue::new("assignment.id", assignment_id.to_string()),
            KeyValue::new("outcome", outcome.to_string()),
        ];
        self.emit(Emit {
            name: "server.update",
            parent: Some(self.rollout_span),
            id: server.span_id,
            start: server.started,
            end: now,
            attributes,
            events: Vec::new(),
            failure: failure.map(str::to_string),
        });
    }

    /// The rollout ended in `state`: its open assignments (abandoned) and its own span end.
    pub fn end(&mut self, state: &str, now: SystemTime) {
        let open: Vec<String> = self.servers.keys().cloned().collect();
        for assignment_id in open {
            self.assignment_ended(&assignment_id, "unfinished", Some("the rollout ended"), now);
        }
        let mut attributes = self.attributes.clone();
        attributes.push(KeyValue::new("baton.rollout.state", state.to_string()));
        let events = std::mem::take(&mut self.events);
        self.emit(Emit {
            name: "rollout",
            parent: None,
            id: self.rollout_span,
            start: self.started,
            end: now,
            attributes,
            events,
            failure: (state != "finished").then(|| format!("rollout {state}")),
        });
    }

    fn emit_step(&self, assignment_id: &str, step: StepSpan, now: SystemTime) {
        let mut attributes = vec![
            KeyValue::new("step.id", step.id),
            KeyValue::new("step.index", i64::from(step.index)),
            KeyValue::new("step.attempt", i64::from(step.attempt)),
        ];
        if let Some(code) = step.exit_code {
            attributes.push(KeyValue::new("step.exit_code", i64::from(code)));
        }
        let failure = match (step.exit_code, step.failure) {
            (None, _) => Some("ended before the worker reported a result".to_string()),
            (Some(_), failure) => failure,
        };
        self.emit(Emit {
            name: "step",
            parent: Some(self.server_span_id(assignment_id)),
            id: self.step_span_id(assignment_id, step.index),
            start: step.started,
            end: now,
            attributes,
            events: step.events,
            failure,
        });
    }

    /// A context whose (remote) current span is `span` of this trace.
    fn remote(&self, span: SpanId) -> Context {
        Context::new().with_remote_span_context(SpanContext::new(
            self.trace_id,
            span,
            TraceFlags::SAMPLED,
            true,
            TraceState::NONE,
        ))
    }

    fn emit(&self, span: Emit) {
        let Some(tracer) = &self.tracer else {
            return;
        };
        let parent = span.parent.map_or_else(Context::new, |id| self.remote(id));
        let builder = tracer
            .span_builder(span.name)
            .with_kind(SpanKind::Internal)
            .with_start_time(span.start)
            .with_attributes(span.attributes)
            .with_events(span.events);
        let root_trace = span.parent.is_none().then_some(self.trace_id);
        let mut built = baton_telemetry::with_ids(root_trace, span.id, || {
            tracer.build_with_context(builder, &parent)
        });
        if let Some(failure) = span.failure {
            built.set_status(Status::error(failure));
        } else {
            built.set_status(Status::Ok);
        }
        built.end_with_timestamp(span.end.max(span.start));
    }
}

/// A finished span, ready to be built.
struct Emit {
    name: &'static str,
    parent: Option<SpanId>,
    id: SpanId,
    start: SystemTime,
    end: SystemTime,
    attributes: Vec<KeyValue>,
    events: Vec<Event>,
    failure: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};

    struct Recorder {
        provider: SdkTracerProvider,
        exporter: InMemorySpanExporter,
    }

    impl Recorder {
        fn new() -> Self {
            let exporter = InMemorySpanExporter::default();
            let provider = SdkTracerProvider::builder()
                .with_id_generator(baton_telemetry::ReservableIds::default())
                .with_simple_exporter(exporter.clone())
                .build();
            Recorder { provider, exporter }
        }

        fn trace(&self) -> RolloutTrace {
            let tracer = BoxedTracer::new(Box::new(self.provider.tracer("test")));
            RolloutTrace::new(Some(tracer), 7, "contoso", 2, 1_700_000_000_000)
        }

        fn spans(&self) -> Vec<SpanData> {
            self.exporter.get_finished_spans().expect("in-memory spans")
        }
    }

    fn attr(span: &SpanData, key: &str) -> Option<opentelemetry::Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.clone())
    }

    fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
        spans.iter().filter(|s| s.name == name).collect()
    }

    fn be01() -> ServerInfo {
        ServerInfo {
            fqdn: "be01.contoso.com".into(),
            pool: "pool1.contoso.com".into(),
            role: "backend",
        }
    }

    fn t(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seconds)
    }

    fn ok(attempt: u32) -> AttemptResult<'static> {
        AttemptResult {
            attempt,
            exit_code: 0,
            timed_out: false,
            error: "",
        }
    }

    fn exited(attempt: u32, exit_code: i32) -> AttemptResult<'static> {
        AttemptResult {
            exit_code,
            ..ok(attempt)
        }
    }

    /// The span id a `traceparent` names.
    fn parent_in(carrier: &HashMap<String, String>) -> SpanContext {
        TraceContextPropagator::new()
            .extract(carrier)
            .span()
            .span_context()
            .clone()
    }

    #[test]
    fn steps_are_children_of_their_server_and_the_worker_gets_their_ids() {
        let recorder = Recorder::new();
        let mut trace = recorder.trace();
        let contexts = trace.step_contexts("7-1-1", &be01(), 2, t(0));
        assert_eq!(contexts.len(), 2);
        trace.step_started("7-1-1", &be01(), (0, "stop"), 1, t(1));
        trace.step_finished("7-1-1", &be01(), (0, "stop"), ok(1), t(2));
        trace.step_started("7-1-1", &be01(), (1, "install"), 1, t(2));
        trace.step_finished("7-1-1", &be01(), (1, "install"), exited(1, 1603), t(3));
        trace.step_started("7-1-1", &be01(), (1, "install"), 2, t(4));
        trace.step_finished("7-1-1", &be01(), (1, "install"), ok(2), t(5));
        trace.assignment_ended("7-1-1", "succeeded", None, t(6));
        trace.end("finished", t(7));

        let spans = recorder.spans();
        let rollout = named(&spans, "rollout")[0];
        let server = named(&spans, "server.update")[0];
        let steps = named(&spans, "step");
        assert_eq!(spans.len(), 4);
        assert_eq!(rollout.parent_span_id, SpanId::INVALID);
        assert_eq!(rollout.span_context.trace_id(), trace.trace_id);
        assert_eq!(server.parent_span_id, rollout.span_context.span_id());
        assert_eq!(attr(server, "server.fqdn"), Some("be01.contoso.com".into()));
        assert_eq!(attr(server, "pool"), Some("pool1.contoso.com".into()));
        assert_eq!(attr(server, "role"), Some("backend".into()));
        assert_eq!((server.start_time, server.end_time), (t(0), t(6)));
        for (index, step) in steps.iter().enumerate() {
            assert_eq!(step.parent_span_id, server.span_context.span_id());
            // The context sent to the worker names this very span.
            let sent = parent_in(&contexts[index]);
            assert_eq!(sent.span_id(), step.span_context.span_id());
            assert_eq!(sent.trace_id(), trace.trace_id);
            assert!(sent.is_sampled());
            assert_eq!(step.status, Status::Ok);
        }
        let install = steps[1];
        assert_eq!(attr(install, "step.id"), Some("install".into()));
        assert_eq!(attr(install, "step.attempt"), Some(2.into()));
        assert_eq!(attr(install, "step.exit_code"), Some(0.into()));
        assert_eq!((install.start_time, install.end_time), (t(2), t(5)));
        assert_eq!(install.events.len(), 2, "one event per attempt");
    }

    #[test]
    fn a_failed_step_marks_its_span_and_its_server_in_error() {
        let recorder = Recorder::new();
        let mut trace = recorder.trace();
        trace.step_contexts("7-1-1", &be01(), 1, t(0));
        trace.step_started("7-1-1", &be01(), (0, "install"), 1, t(1));
        trace.step_finished("7-1-1", &be01(), (0, "install"), exited(1, 1603), t(2));
        trace.assignment_ended("7-1-1", "failed", Some("step install exited 1603"), t(3));
        trace.end("finished", t(4));
        let spans = recorder.spans();
        let step = named(&spans, "step")[0];
        assert_eq!(step.status, Status::error("exit 1603"));
        assert_eq!(attr(step, "step.exit_code"), Some(1603.into()));
        let server = named(&spans, "server.update")[0];
        assert_eq!(server.status, Status::error("step install exited 1603"));
        assert_eq!(attr(server, "outcome"), Some("failed".into()));
    }

    #[test]
    fn a_step_cut_short_and_an_unfinished_rollout_are_errors() {
        let recorder = Recorder::new();
        let mut trace = recorder.trace();
        trace.step_contexts("7-1-1", &be01(), 2, t(0));
        trace.step_started("7-1-1", &be01(), (0, "install"), 1, t(1));
        trace.end("aborted", t(2));
        let spans = recorder.spans();
        assert_eq!(spans.len(), 3);
        let step = named(&spans, "step")[0];
        assert!(
            matches!(step.status, Status::Error { .. }),
            "{:?}",
            step.status
        );
        assert_eq!(
            attr(named(&spans, "server.update")[0], "outcome"),
            Some("unfinished".into())
        );
        let rollout = named(&spans, "rollout")[0];
        assert_eq!(rollout.status, Status::error("rollout aborted"));
    }

    #[test]
    fn a_restarted_controller_finishes_the_same_spans() {
        let recorder = Recorder::new();
        let mut before = recorder.trace();
        let contexts = before.step_contexts("7-1-1", &be01(), 2, t(0));
        before.step_started("7-1-1", &be01(), (0, "stop"), 1, t(1));
        before.step_finished("7-1-1", &be01(), (0, "stop"), ok(1), t(2));
        before.step_started("7-1-1", &be01(), (1, "install"), 1, t(2));
        // The controller dies here: nothing more of `before` is exported.
        drop(before);

        let mut after = recorder.trace();
        after.assignment_began("7-1-1", t(0));
        after.step_finished("7-1-1", &be01(), (1, "install"), ok(1), t(5));
        after.assignment_ended("7-1-1", "succeeded", None, t(6));
        after.end("finished", t(7));

        let spans = recorder.spans();
        assert_eq!(spans.len(), 4, "nothing unfinished was exported twice");
        let server = named(&spans, "server.update")[0];
        assert_eq!(server.start_time, t(0), "its start comes from the log");
        let install = named(&spans, "step")
            .into_iter()
            .find(|s| attr(s, "step.id") == Some("install".into()))
            .expect("install");
        assert_eq!(install.parent_span_id, server.span_context.span_id());
        assert_eq!(
            parent_in(&contexts[1]).span_id(),
            install.span_context.span_id(),
            "the worker's parent, sent by the first controller, is the span the second ends"
        );
        let traces: std::collections::HashSet<TraceId> =
            spans.iter().map(|s| s.span_context.trace_id()).collect();
        assert_eq!(traces.len(), 1);
    }

    #[test]
    fn the_rollouts_story_is_told_by_events_of_its_span() {
        let recorder = Recorder::new();
        let mut trace = recorder.trace();
        trace.note("rollout_paused", None, "requested by an operator", t(1));
        trace.note("step_started", Some("be01.contoso.com"), "noise", t(2));
        trace.note(
            "worker_lost",
            Some("be01.contoso.com"),
            "disconnected",
            t(3),
        );
        trace.note(
            "server_finished",
            Some("be01.contoso.com"),
            "succeeded",
            t(4),
        );
        trace.end("finished", t(5));
        let spans = recorder.spans();
        let rollout = named(&spans, "rollout")[0];
        let events: Vec<(&str, SystemTime)> = rollout
            .events
            .iter()
            .map(|e| (e.name.as_ref(), e.timestamp))
            .collect();
        assert_eq!(events, [("rollout_paused", t(1)), ("worker_lost", t(3))]);
        let lost = &rollout.events.events[1];
        assert!(
            lost.attributes
                .contains(&KeyValue::new("server.fqdn", "be01.contoso.com"))
        );
    }

    #[test]
    fn without_a_tracer_nothing_is_recorded_or_sent() {
        let mut trace = RolloutTrace::new(None, 7, "contoso", 1, 0);
        let contexts = trace.step_contexts("7-1-1", &be01(), 3, t(0));
        assert_eq!(contexts, vec![HashMap::new(); 3]);
        trace.step_started("7-1-1", &be01(), (0, "stop"), 1, t(1));
        assert!(trace.servers.is_empty());
        assert_eq!(trace.trace_id(), None);
    }

    #[test]
    fn ids_differ_between_rollouts_and_assignments() {
        let a = RolloutTrace::new(None, 1, "contoso", 1, 5);
        let b = RolloutTrace::new(None, 2, "contoso", 1, 5);
        assert_ne!(a.trace_id, b.trace_id);
        assert_ne!(a.server_span_id("1-1-1"), a.server_span_id("1-1-2"));
        assert_ne!(a.step_span_id("1-1-1", 0), a.step_span_id("1-1-1", 1));
        assert_eq!(
            a.step_span_id("1-1-1", 0),
            RolloutTrace::new(None, 1, "contoso", 1, 5).step_span_id("1-1-1", 0)
        );
    }
}
