//! OTLP/gRPC exporters, configured by the standard `OTEL_*` variables (endpoint, headers,
//! timeout, compression, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_METRIC_EXPORT_INTERVAL`, `OTEL_BSP_*`, `OTEL_TRACES_SAMPLER`).

use opentelemetry_otlp::RetryPolicy;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::PeriodicReader;
use opentelemetry_sdk::trace::SdkTracerProvider;

use crate::TelemetryError;

fn env_set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.trim().is_empty())
}

fn env_is(name: &str, value: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v.trim().eq_ignore_ascii_case(value))
}

/// Which signals go out over OTLP: only those with an endpoint, unless disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OtlpSignals {
    pub traces: bool,
    pub metrics: bool,
}

impl OtlpSignals {
    pub fn from_env() -> Self {
        if env_is("OTEL_SDK_DISABLED", "true") {
            return OtlpSignals {
                traces: false,
                metrics: false,
            };
        }
        let any = env_set("OTEL_EXPORTER_OTLP_ENDPOINT");
        OtlpSignals {
            traces: (any || env_set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
                && !env_is("OTEL_TRACES_EXPORTER", "none"),
            metrics: (any || env_set("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"))
                && !env_is("OTEL_METRICS_EXPORTER", "none"),
        }
    }
}

/// `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES`, or `service` as the name.
pub fn resource(service: &str) -> Resource {
    let detected = Resource::builder().build();
    let named = detected
        .get(&opentelemetry::Key::from_static_str("service.name"))
        .is_some_and(|v| !v.as_str().starts_with("unknown_service"));
    if named {
        detected
    } else {
        Resource::builder()
            .with_service_name(service.to_owned())
            .build()
    }
}

/// One export attempt: retries would hold a shutdown for seconds when no collector answers.
fn retry_policy() -> RetryPolicy {
    RetryPolicy::disabled()
}

pub(crate) fn tracer_provider(resource: Resource) -> Result<SdkTracerProvider, TelemetryError> {
    use opentelemetry_otlp::WithTonicConfig as _;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_retry_policy(retry_policy())
        .build()
        .map_err(|e| TelemetryError(format!("OTLP span exporter: {e}")))?;
    Ok(SdkTracerProvider::builder()
        .with_resource(resource)
        .with_id_generator(crate::ReservableIds::default())
        .with_batch_exporter(exporter)
        .build())
}

/// A reader that pushes metrics over OTLP every `OTEL_METRIC_EXPORT_INTERVAL` ms, when the
/// environment names an endpoint; `None` otherwise.
pub fn metric_reader()
-> Result<Option<PeriodicReader<opentelemetry_otlp::MetricExporter>>, TelemetryError> {
    use opentelemetry_otlp::WithTonicConfig as _;
    if !OtlpSignals::from_env().metrics {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .with_retry_policy(retry_policy())
        .build()
        .map_err(|e| TelemetryError(format!("OTLP metric exporter: {e}")))?;
    Ok(Some(PeriodicReader::builder(exporter).build()))
}
