//! OTLP/gRPC exporters, configured by the standard `OTEL_*` variables (endpoint, headers,
//! timeout, compression, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_METRIC_EXPORT_INTERVAL`, `OTEL_BSP_*`, `OTEL_TRACES_SAMPLER`).

use opentelemetry_otlp::RetryPolicy;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::PeriodicReader;
use opentelemetry_sdk::trace::SdkTracerProvider;

use crate::TelemetryError;

/// Which signals go out over OTLP: only those with an endpoint, unless disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OtlpSignals {
    pub traces: bool,
    pub metrics: bool,
}

impl OtlpSignals {
    /// From the process environment.
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// From `var`, which answers an environment variable's value.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        let set = |name: &str| var(name).is_some_and(|v| !v.trim().is_empty());
        let is = |name: &str, value: &str| {
            var(name).is_some_and(|v| v.trim().eq_ignore_ascii_case(value))
        };
        if is("OTEL_SDK_DISABLED", "true") {
            return OtlpSignals {
                traces: false,
                metrics: false,
            };
        }
        let any = set("OTEL_EXPORTER_OTLP_ENDPOINT");
        OtlpSignals {
            traces: (any || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
                && !is("OTEL_TRACES_EXPORTER", "none"),
            metrics: (any || set("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"))
                && !is("OTEL_METRICS_EXPORTER", "none"),
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

/// The TLS of an `https://` OTLP endpoint for `signal` (`TRACES`, `METRICS`), from the
/// standard variables: `OTEL_EXPORTER_OTLP_[SIGNAL_]CERTIFICATE` (the collector's CA; public
/// CAs otherwise) and `…_CLIENT_CERTIFICATE` / `…_CLIENT_KEY` (mutual TLS). `None` for an
/// `http://` endpoint.
fn tls_config(signal: &str) -> Result<Option<tonic::transport::ClientTlsConfig>, TelemetryError> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let var = |name: &str| {
        std::env::var(format!("OTEL_EXPORTER_OTLP_{signal}_{name}"))
            .or_else(|_| std::env::var(format!("OTEL_EXPORTER_OTLP_{name}")))
            .ok()
            .filter(|v| !v.trim().is_empty())
    };
    let https =
        var("ENDPOINT").is_some_and(|e| e.trim().to_ascii_lowercase().starts_with("https://"));
    if !https {
        return Ok(None);
    }
    let read = |name: &str, path: &str| {
        std::fs::read(path)
            .map_err(|e| TelemetryError(format!("OTEL_EXPORTER_OTLP_{name} {path}: {e}")))
    };
    let mut config = match var("CERTIFICATE") {
        Some(ca) => {
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("CERTIFICATE", &ca)?))
        }
        None => ClientTlsConfig::new().with_webpki_roots(),
    };
    match (var("CLIENT_CERTIFICATE"), var("CLIENT_KEY")) {
        (Some(cert), Some(key)) => {
            config = config.identity(Identity::from_pem(
                read("CLIENT_CERTIFICATE", &cert)?,
                read("CLIENT_KEY", &key)?,
            ));
        }
        (None, None) => {}
        _ => {
            return Err(TelemetryError(
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY go together"
                    .into(),
            ));
        }
    }
    Ok(Some(config))
}

/// One export attempt: retries would hold a shutdown for seconds when no collector answers.
fn retry_policy() -> RetryPolicy {
    RetryPolicy::disabled()
}

pub(crate) fn tracer_provider(resource: Resource) -> Result<SdkTracerProvider, TelemetryError> {
    use opentelemetry_otlp::WithTonicConfig as _;
    let mut builder = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_retry_policy(retry_policy());
    if let Some(tls) = tls_config("TRACES")? {
        builder = builder.with_tls_config(tls);
    }
    let exporter = builder
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
    let mut builder = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .with_retry_policy(retry_policy());
    if let Some(tls) = tls_config("METRICS")? {
        builder = builder.with_tls_config(tls);
    }
    let exporter = builder
        .build()
        .map_err(|e| TelemetryError(format!("OTLP metric exporter: {e}")))?;
    Ok(Some(PeriodicReader::builder(exporter).build()))
}

#[cfg(test)]
mod tests {
    use super::OtlpSignals;

    fn signals(vars: &[(&str, &str)]) -> (bool, bool) {
        let found = OtlpSignals::from_vars(|name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        });
        (found.traces, found.metrics)
    }

    #[test]
    fn nothing_goes_out_without_an_endpoint() {
        assert_eq!(signals(&[]), (false, false));
        assert_eq!(
            signals(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]),
            (false, false)
        );
        assert_eq!(signals(&[("OTEL_SERVICE_NAME", "baton")]), (false, false));
    }

    #[test]
    fn an_endpoint_sends_both_signals_unless_one_is_turned_off() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317");
        assert_eq!(signals(&[endpoint]), (true, true));
        assert_eq!(
            signals(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")]),
            (false, true)
        );
        assert_eq!(
            signals(&[endpoint, ("OTEL_METRICS_EXPORTER", "NONE")]),
            (true, false)
        );
        assert_eq!(
            signals(&[endpoint, ("OTEL_SDK_DISABLED", "true")]),
            (false, false)
        );
    }

    #[test]
    fn a_signal_endpoint_sends_that_signal_only() {
        let traces = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://tempo:4317");
        let metrics = ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://mimir:4317");
        assert_eq!(signals(&[traces]), (true, false));
        assert_eq!(signals(&[metrics]), (false, true));
    }
}
