//! Logs and traces for Baton's binaries, in one place:
//! - logs on stderr as text or JSON lines (`--log-format`), filtered by `RUST_LOG`;
//! - OpenTelemetry traces (and the controller's metrics) exported over OTLP/gRPC only when
//!   the standard `OTEL_EXPORTER_OTLP_*ENDPOINT` variables say where; nothing otherwise.

mod ids;
mod otlp;
mod signal;

pub use ids::{ReservableIds, with_ids};
pub use otlp::{OtlpSignals, metric_reader, resource};
pub use signal::shutdown_signal;

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

/// Why telemetry could not start (an OTLP endpoint that is not a valid URL, say).
#[derive(Debug, thiserror::Error)]
#[error("telemetry: {0}")]
pub struct TelemetryError(String);

/// How log lines are written on stderr (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Keeps the trace exporter alive; [`Telemetry::shutdown`] flushes it.
#[derive(Debug)]
pub struct Telemetry {
    tracer_provider: Option<SdkTracerProvider>,
}

/// Installs the global subscriber: logs on stderr in `format`, filtered by `RUST_LOG` or else
/// `default_filter` (`"info"`), and, when `OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT` is set,
/// spans over OTLP with `service` as the default `service.name` (`OTEL_SERVICE_NAME` wins).
/// Call inside a Tokio runtime.
pub fn init(
    service: &str,
    format: LogFormat,
    default_filter: &str,
) -> Result<Telemetry, TelemetryError> {
    let tracer_provider = if OtlpSignals::from_env().traces {
        let provider = otlp::tracer_provider(resource(service))?;
        // Also the global one: spans built with the OpenTelemetry API (the controller's, which
        // outlive any tracing span) go to the same exporter.
        opentelemetry::global::set_tracer_provider(provider.clone());
        Some(provider)
    } else {
        None
    };
    let otel = tracer_provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("baton"))
            .with_filter(otel_filter())
    });
    let filter =
        || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // Colour only for a person at a terminal, never in a log file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = if format == LogFormat::Json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter())
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .with_filter(filter())
            .boxed()
    };
    tracing_subscriber::registry()
        .with(logs)
        .with(otel)
        .try_init()
        .map_err(|e| TelemetryError(e.to_string()))?;
    Ok(Telemetry { tracer_provider })
}

impl Telemetry {
    /// Whether spans are exported (an OTLP traces endpoint is configured).
    pub fn traces(&self) -> bool {
        self.tracer_provider.is_some()
    }

    /// Flushes the spans still queued, giving up after `limit` (a collector that accepts
    /// connections but never answers must not hold a shutdown).
    pub async fn shutdown(self, limit: Duration) {
        let Some(provider) = self.tracer_provider else {
            return;
        };
        let (done, finished) = tokio::sync::oneshot::channel();
        // Blocking: on its own thread, so the runtime keeps driving the export meanwhile.
        std::thread::spawn(move || {
            let _ = provider.shutdown_with_timeout(limit);
            let _ = done.send(());
        });
        if tokio::time::timeout(limit, finished).await.is_err() {
            eprintln!("telemetry: spans not flushed within {limit:?}");
        }
    }
}

/// Our own spans only: the transport's (h2, tonic, hyper) would feed back into the exporter.
fn otel_filter() -> EnvFilter {
    EnvFilter::new(
        "info,h2=off,hyper=off,hyper_util=off,tonic=off,tower=off,opentelemetry=off,opentelemetry_sdk=off,opentelemetry_otlp=off",
    )
}

/// Makes `span` a child of the W3C trace context in `carrier` (`traceparent`, `tracestate`), as
/// received from another process. Call before the span is first entered. Without a valid
/// context, or without trace export, the span stays as it was.
pub fn set_parent_from_map(
    span: &tracing::Span,
    carrier: &std::collections::HashMap<String, String>,
) {
    use opentelemetry::propagation::TextMapPropagator as _;
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let parent = opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(carrier);
    if parent.span().span_context().is_valid()
        && let Err(err) = span.set_parent(parent)
    {
        tracing::debug!(%err, "trace context not applied");
    }
}
