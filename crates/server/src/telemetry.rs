//! Logs, traces and metrics. Logs are structured `tracing` events on stderr: pretty for a
//! terminal, JSON lines for production. With `[telemetry] otlp_endpoint` set, `serve`
//! also exports over OTLP/HTTP: a span per HTTP request (its trace id is the request id)
//! with a child per SQL statement, and the live metrics of `conclave-metrics` every
//! `metrics_interval_seconds`. Unset, no exporter, no OpenTelemetry layer and no
//! propagator exist, so there is nothing to pay.
//! Never logged or exported (see docs/security.md): passwords, session tokens, message
//! content, key material, SQL bind values.

use crate::settings::{LogFormat, LogSettings, TelemetrySettings};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{MetricExporter, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use std::time::Duration;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How long one OTLP request may take before the batch is dropped (the collector is
/// down): export never holds up serving.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
#[error("cannot start OpenTelemetry export to {endpoint}: {reason}")]
pub struct TelemetryError {
    endpoint: String,
    reason: String,
}

/// The OTLP pipelines `serve` runs; [`Exporting::shutdown`] flushes what is pending.
pub struct Exporting {
    traces: SdkTracerProvider,
    metrics: SdkMeterProvider,
}

impl Exporting {
    /// Sends what is buffered and stops the exporters (at the end of `serve`, outside
    /// the async runtime: the exporters' HTTP client blocks).
    pub fn shutdown(self) {
        if let Err(err) = self.traces.shutdown() {
            tracing::warn!(error = %err, "could not flush the last traces");
        }
        if let Err(err) = self.metrics.shutdown() {
            tracing::warn!(error = %err, "could not flush the last metrics");
        }
    }
}

/// Installs logging only (every command but `serve`).
pub fn init(settings: &LogSettings) {
    install(settings, None);
}

/// Installs logging and, when an endpoint is configured, OTLP export of traces and
/// metrics.
pub fn init_serving(
    log: &LogSettings,
    telemetry: &TelemetrySettings,
) -> Result<Option<Exporting>, TelemetryError> {
    let Some(endpoint) = telemetry.otlp_endpoint.as_deref() else {
        install(log, None);
        return Ok(None);
    };
    let base = endpoint.trim_end_matches('/');
    let failed = |reason: String| TelemetryError {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let resource = Resource::builder()
        .with_service_name(telemetry.service_name.clone())
        .build();
    let span_exporter = SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{base}/v1/traces"))
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|err| failed(err.to_string()))?;
    let traces = SdkTracerProvider::builder()
        .with_batch_exporter(span_exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            telemetry.trace_sample_ratio,
        ))))
        .with_resource(resource.clone())
        .build();
    let metric_exporter = MetricExporter::builder()
        .with_http()
        .with_endpoint(format!("{base}/v1/metrics"))
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|err| failed(err.to_string()))?;
    let reader = PeriodicReader::builder(metric_exporter)
        .with_interval(Duration::from_secs(telemetry.metrics_interval_seconds))
        .build();
    let metrics = SdkMeterProvider::builder()
        .with_reader(reader)
        .with_resource(resource)
        .build();
    conclave_metrics::export_with(&opentelemetry::metrics::MeterProvider::meter(
        &metrics, "conclave",
    ));
    // A caller's `traceparent` (an ingress, a gateway) makes a request part of its trace.
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    install(log, Some(traces.tracer("conclave")));
    tracing::info!(endpoint = %base, "exporting traces and metrics over OTLP/HTTP");
    Ok(Some(Exporting { traces, metrics }))
}

/// The subscriber: the log layer filtered by `log.level`, and the OpenTelemetry layer
/// (when exporting) by its own filter, so traces keep their database spans whatever the
/// log level.
fn install(settings: &LogSettings, tracer: Option<opentelemetry_sdk::trace::Tracer>) {
    let filter = EnvFilter::try_new(&settings.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let log = match settings.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .compact()
            .with_writer(std::io::stderr)
            .boxed(),
    }
    .with_filter(filter);
    let traces = tracer.map(|tracer| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(trace_filter())
    });
    // A second init (tests) keeps the first subscriber.
    drop(
        tracing_subscriber::registry()
            .with(log)
            .with(traces)
            .try_init(),
    );
}

/// What becomes a span in the exported traces: Conclave's own spans, request and
/// database ones included; not the libraries' internals.
fn trace_filter() -> Targets {
    Targets::new()
        .with_target("conclave", LevelFilter::DEBUG)
        .with_default(LevelFilter::OFF)
}
