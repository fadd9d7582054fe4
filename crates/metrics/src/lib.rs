//! The process's live measurements: HTTP requests, message sends, delivery latency, open
//! WebSockets, timer lag, rows the sweeper destroyed and exports wrote, login failures and
//! directory sync results.
//!
//! Each is recorded once, through the functions here, by the crate that sees the event.
//! Two readers share them: `GET /metrics` ([`register`] adds them to the scrape's
//! Prometheus registry) and OpenTelemetry ([`export_with`], called once when an OTLP
//! endpoint is configured, mirrors every later record into the meter's instruments).
//! Without OTLP the OpenTelemetry side is one empty `OnceLock` check per record.
//!
//! Figures are this node's own, since it started: Prometheus and OTLP backends sum them
//! across nodes. Labels are bounded (HTTP method, route pattern, status; a login method; a
//! sync outcome): nothing here names a user, room or message.

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter as OtelCounter, Histogram as OtelHistogram, Meter};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

/// Latency buckets in seconds, 1 ms to 10 s: delivery, request and timer budgets are in
/// tens of milliseconds, overload in seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FormatLabel {
    format: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

/// Batch sizes of the send queue: 1 (no load) to its maximum of 128.
const SEND_BATCH_BUCKETS: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The Prometheus side: cloning a prometheus-client metric shares its value, so a scrape
/// registers clones of these.
struct Live {
    http_requests: Family<RequestLabels, Counter>,
    http_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    messages_sent: Counter,
    send_batch_size: Histogram,
    delivery_latency: Histogram,
    websockets_open: Gauge,
    timer_lag: Histogram,
    sweeper_rows: Counter,
    export_rows: Family<FormatLabel, Counter>,
    login_failures: Family<MethodLabel, Counter>,
    directory_syncs: Family<ResultLabel, Counter>,
}

static LIVE: LazyLock<Live> = LazyLock::new(|| Live {
    http_requests: Family::default(),
    http_duration: Family::new_with_constructor(latency_histogram),
    messages_sent: Counter::default(),
    send_batch_size: Histogram::new(SEND_BATCH_BUCKETS),
    delivery_latency: latency_histogram(),
    websockets_open: Gauge::default(),
    timer_lag: latency_histogram(),
    sweeper_rows: Counter::default(),
    export_rows: Family::default(),
    login_failures: Family::default(),
    directory_syncs: Family::default(),
});

/// The OpenTelemetry side, set once OTLP export starts.
struct Otel {
    http_requests: OtelCounter<u64>,
    http_duration: OtelHistogram<f64>,
    messages_sent: OtelCounter<u64>,
    send_batch_size: OtelHistogram<f64>,
    delivery_latency: OtelHistogram<f64>,
    timer_lag: OtelHistogram<f64>,
    sweeper_rows: OtelCounter<u64>,
    export_rows: OtelCounter<u64>,
    login_failures: OtelCounter<u64>,
    directory_syncs: OtelCounter<u64>,
}

static OTEL: OnceLock<Otel> = OnceLock::new();

/// One HTTP request finished. `route` is the matched route pattern (bounded), never the
/// raw path.
pub fn http_request(method: &str, route: &str, status: u16, elapsed: Duration) {
    LIVE.http_requests
        .get_or_create(&RequestLabels {
            method: method.to_owned(),
            route: route.to_owned(),
            status,
        })
        .inc();
    LIVE.http_duration
        .get_or_create(&RouteLabels {
            method: method.to_owned(),
            route: route.to_owned(),
        })
        .observe(elapsed.as_secs_f64());
    if let Some(otel) = OTEL.get() {
        let attributes = [
            KeyValue::new("http.request.method", method.to_owned()),
            KeyValue::new("http.route", route.to_owned()),
            KeyValue::new("http.response.status_code", i64::from(status)),
        ];
        otel.http_requests.add(1, &attributes);
        otel.http_duration
            .record(elapsed.as_secs_f64(), &attributes[..2]);
    }
}

/// A message was persisted (a retry of an idempotent send is not counted).
pub fn message_sent() {
    LIVE.messages_sent.inc();
    if let Some(otel) = OTEL.get() {
        otel.messages_sent.add(1, &[]);
    }
}

/// The send queue stored `sends` requests in one transaction (group commit).
pub fn send_batch(sends: usize) {
    LIVE.send_batch_size.observe(sends as f64);
    if let Some(otel) = OTEL.get() {
        otel.send_batch_size.record(sends as f64, &[]);
    }
}

/// A live event reached a WebSocket, `latency` after it was committed.
pub fn delivered(latency: Duration) {
    LIVE.delivery_latency.observe(latency.as_secs_f64());
    if let Some(otel) = OTEL.get() {
        otel.delivery_latency.record(latency.as_secs_f64(), &[]);
    }
}

/// An open WebSocket on this node: counted while the guard lives.
#[must_use = "the WebSocket is counted only while the guard lives"]
pub struct OpenWebSocket(());

impl OpenWebSocket {
    pub fn opened() -> Self {
        LIVE.websockets_open.inc();
        Self(())
    }
}

impl Drop for OpenWebSocket {
    fn drop(&mut self) {
        LIVE.websockets_open.dec();
    }
}

/// A deadline (expiry, burn-on-read, retention cut) was announced `lag` after it fell.
pub fn timer_fired(lag: Duration) {
    LIVE.timer_lag.observe(lag.as_secs_f64());
    if let Some(otel) = OTEL.get() {
        otel.timer_lag.record(lag.as_secs_f64(), &[]);
    }
}

/// The retention sweeper destroyed `rows` messages on this node.
pub fn sweeper_destroyed(rows: u64) {
    LIVE.sweeper_rows.inc_by(rows);
    if let Some(otel) = OTEL.get() {
        otel.sweeper_rows.add(rows, &[]);
    }
}

/// A compliance export wrote `rows` message events in `format`.
pub fn export_written(format: &str, rows: u64) {
    LIVE.export_rows
        .get_or_create(&FormatLabel {
            format: format.to_owned(),
        })
        .inc_by(rows);
    if let Some(otel) = OTEL.get() {
        otel.export_rows
            .add(rows, &[KeyValue::new("format", format.to_owned())]);
    }
}

/// A sign-in failed (`method`: password, ldap or oidc).
pub fn login_failed(method: &str) {
    LIVE.login_failures
        .get_or_create(&MethodLabel {
            method: method.to_owned(),
        })
        .inc();
    if let Some(otel) = OTEL.get() {
        otel.login_failures
            .add(1, &[KeyValue::new("method", method.to_owned())]);
    }
}

/// A directory sync run ended (`succeeded` false: it failed or was refused).
pub fn directory_synced(succeeded: bool) {
    let result = if succeeded { "succeeded" } else { "failed" };
    LIVE.directory_syncs
        .get_or_create(&ResultLabel {
            result: result.to_owned(),
        })
        .inc();
    if let Some(otel) = OTEL.get() {
        otel.directory_syncs
            .add(1, &[KeyValue::new("result", result)]);
    }
}

/// Adds the live metrics to a scrape's registry (prefixed as the registry is).
pub fn register(registry: &mut Registry) {
    let live = &*LIVE;
    registry.register(
        "http_requests",
        "HTTP requests served by this node, by method, route pattern and status",
        live.http_requests.clone(),
    );
    registry.register_with_unit(
        "http_request_duration",
        "Time to serve an HTTP request, by method and route pattern",
        Unit::Seconds,
        live.http_duration.clone(),
    );
    registry.register(
        "messages_sent",
        "Messages persisted through this node",
        live.messages_sent.clone(),
    );
    registry.register(
        "send_batch_size",
        "Send requests this node stored per transaction (group commit)",
        live.send_batch_size.clone(),
    );
    registry.register_with_unit(
        "message_delivery",
        "Time from an event's commit to its frame on a WebSocket of this node",
        Unit::Seconds,
        live.delivery_latency.clone(),
    );
    registry.register(
        "websockets_open",
        "WebSocket connections open on this node",
        live.websockets_open.clone(),
    );
    registry.register_with_unit(
        "timer_lag",
        "How late this node announced an expiry, burn-on-read or retention deadline",
        Unit::Seconds,
        live.timer_lag.clone(),
    );
    registry.register(
        "sweeper_rows",
        "Messages the retention sweeper destroyed on this node",
        live.sweeper_rows.clone(),
    );
    registry.register(
        "export_rows",
        "Message events written to compliance exports on this node, by format",
        live.export_rows.clone(),
    );
    registry.register(
        "login_failures",
        "Failed sign-ins on this node, by method",
        live.login_failures.clone(),
    );
    registry.register(
        "directory_syncs",
        "Directory sync runs on this node, by result",
        live.directory_syncs.clone(),
    );
}

/// Mirrors every later record into `meter`'s instruments (OTLP). Called once, when the
/// meter provider is installed; a second call changes nothing.
pub fn export_with(meter: &Meter) {
    let seconds = |name: &'static str, description: &'static str| {
        meter
            .f64_histogram(name)
            .with_description(description)
            .with_unit("s")
            .with_boundaries(LATENCY_BUCKETS.to_vec())
            .build()
    };
    let counter = |name: &'static str, description: &'static str| {
        meter
            .u64_counter(name)
            .with_description(description)
            .build()
    };
    let instruments = Otel {
        http_requests: counter("conclave.http.requests", "HTTP requests served"),
        http_duration: seconds(
            "http.server.request.duration",
            "Time to serve an HTTP request",
        ),
        messages_sent: counter("conclave.messages.sent", "Messages persisted"),
        send_batch_size: meter
            .f64_histogram("conclave.send.batch.size")
            .with_description("Send requests stored per transaction")
            .with_boundaries(SEND_BATCH_BUCKETS.to_vec())
            .build(),
        delivery_latency: seconds(
            "conclave.message.delivery.duration",
            "Time from an event's commit to its WebSocket frame",
        ),
        timer_lag: seconds("conclave.timer.lag", "How late a deadline was announced"),
        sweeper_rows: counter("conclave.sweeper.rows", "Messages the sweeper destroyed"),
        export_rows: counter("conclave.export.rows", "Message events written to exports"),
        login_failures: counter("conclave.login.failures", "Failed sign-ins"),
        directory_syncs: counter("conclave.directory.syncs", "Directory sync runs"),
    };
    // The gauge is read at each collection rather than mirrored.
    meter
        .i64_observable_gauge("conclave.websockets.open")
        .with_description("WebSocket connections open")
        .with_callback(|observer| observer.observe(LIVE.websockets_open.get(), &[]))
        .build();
    drop(OTEL.set(instruments));
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    fn scrape() -> String {
        let mut registry = Registry::with_prefix("conclave");
        register(&mut registry);
        let mut out = String::new();
        encode(&mut out, &registry).expect("encodes");
        out
    }

    #[test]
    fn records_appear_in_the_prometheus_text() {
        http_request(
            "POST",
            "/api/v1/rooms/{room_id}/messages",
            201,
            Duration::from_millis(3),
        );
        login_failed("ldap");
        directory_synced(false);
        export_written("csv", 7);
        let text = scrape();
        assert!(text.contains(
            r#"conclave_http_requests_total{method="POST",route="/api/v1/rooms/{room_id}/messages",status="201"} "#
        ));
        assert!(text.contains(r#"conclave_login_failures_total{method="ldap"} "#));
        assert!(text.contains(r#"conclave_directory_syncs_total{result="failed"} "#));
        assert!(text.contains(r#"conclave_export_rows_total{format="csv"} "#));
        assert!(text.contains("conclave_http_request_duration_seconds_bucket"));
    }

    #[test]
    fn an_open_websocket_is_counted_while_its_guard_lives() {
        let before = LIVE.websockets_open.get();
        let guard = OpenWebSocket::opened();
        assert_eq!(LIVE.websockets_open.get(), before + 1);
        drop(guard);
        assert_eq!(LIVE.websockets_open.get(), before);
    }
}
