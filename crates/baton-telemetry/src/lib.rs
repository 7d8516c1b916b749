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
use tracing_subscriber::fmt::writer::BoxMakeWriter;
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

/// Where log lines go and how they look.
#[derive(Debug, Clone, Copy)]
pub struct Logs<'a> {
    pub format: LogFormat,
    /// Used when `RUST_LOG` is not set (`"info"`, `"warn"`...).
    pub default_filter: &'a str,
    /// Append to this file instead of stderr (a Windows scheduled task keeps no stderr).
    pub file: Option<&'a std::path::Path>,
}

/// A log file over this size at start is moved to `NAME.1` (one old file kept).
const LOG_FILE_ROTATE_BYTES: u64 = 10 * 1024 * 1024;

/// Opens the log file for appending, first moving it to `NAME.1` when it has grown past
/// `rotate_bytes`.
fn open_log_file(
    path: &std::path::Path,
    rotate_bytes: u64,
) -> Result<std::fs::File, TelemetryError> {
    let named = |e: std::io::Error| TelemetryError(format!("log file {}: {e}", path.display()));
    if std::fs::metadata(path).is_ok_and(|m| m.len() > rotate_bytes) {
        let mut old = path.as_os_str().to_owned();
        old.push(".1");
        std::fs::rename(path, old).map_err(named)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(named)
}

/// Installs the global subscriber: log lines as `logs` says, filtered by `RUST_LOG` or else
/// its default filter, and, when `OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT` is set, spans over
/// OTLP with `service` as the default `service.name` (`OTEL_SERVICE_NAME` wins). Call inside a
/// Tokio runtime.
pub fn init(service: &str, logs: Logs<'_>) -> Result<Telemetry, TelemetryError> {
    let Logs {
        format,
        default_filter,
        file,
    } = logs;
    let file = file
        .map(|path| open_log_file(path, LOG_FILE_ROTATE_BYTES))
        .transpose()?;
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
    let ansi = file.is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let writer = match file {
        Some(file) => BoxMakeWriter::new(std::sync::Mutex::new(file)),
        None => BoxMakeWriter::new(std::io::stderr),
    };
    let logs = if format == LogFormat::Json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(writer)
            .with_filter(filter())
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(writer)
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

/// An error and its causes on one line: tonic's transport errors say little at the top
/// ("transport error") and the useful part ("Connection refused", a TLS alert) below. A cause
/// already in the text is not repeated.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
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

#[cfg(test)]
mod tests {
    use super::open_log_file;
    use std::io::Write as _;

    #[test]
    fn a_log_file_is_appended_to_and_moved_aside_when_large() {
        let dir = std::env::temp_dir().join(format!("baton-logfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("worker.log");
        let _ = std::fs::remove_file(&path);
        writeln!(open_log_file(&path, 100).expect("open"), "first").expect("write");
        writeln!(open_log_file(&path, 100).expect("open"), "second").expect("write");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "first\nsecond\n");
        // Past the limit at start: moved to worker.log.1, a fresh file begins.
        writeln!(open_log_file(&path, 5).expect("open"), "third").expect("write");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "third\n");
        assert_eq!(
            std::fs::read_to_string(dir.join("worker.log.1")).unwrap(),
            "first\nsecond\n"
        );
        let err = open_log_file(&dir.join("missing-folder").join("x.log"), 100)
            .expect_err("no such folder");
        assert!(err.to_string().contains("missing-folder"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
