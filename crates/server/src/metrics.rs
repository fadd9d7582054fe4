//! `GET /metrics`: Prometheus (OpenMetrics text) figures of the compliance machinery —
//! what the retention sweeper destroyed, files waiting to be unlinked, recomputation and
//! export jobs by status, and how far syslog forwarding lags the audit log. They are
//! read from the database at scrape time, so every node reports the same totals
//! whichever ran the work. Counts only: nothing here names a user, room or message.
//! `conclave_worker_leader` is this node's own: 1 while it runs the singleton workers.
//! Beside them, this node's live measurements since it started (requests, sends, delivery
//! latency, open WebSockets, timer lag, sweeper and export rows, login failures,
//! directory syncs), recorded by `conclave-metrics`, which also pushes them over OTLP.

use actix_web::{HttpResponse, web};
use conclave_api::ApiError;
use conclave_store::{Db, DbConnection, StoreError, audit, audit_forwarding, exports, retention};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/metrics").route(web::get().to(metrics)));
}

type Labels = Vec<(String, String)>;

fn counter(registry: &mut Registry, name: &str, help: &str, value: i64) {
    let metric: Counter = Counter::default();
    metric.inc_by(u64::try_from(value).unwrap_or(0));
    registry.register(name, help, metric);
}

/// A gauge per label value; every value in `known` is reported, 0 when absent.
fn by_label(
    registry: &mut Registry,
    name: &str,
    help: &str,
    label: &str,
    known: &[&str],
    values: Vec<(String, i64)>,
) {
    let family = Family::<Labels, Gauge>::default();
    for value in known {
        family
            .get_or_create(&vec![(label.to_owned(), (*value).to_owned())])
            .set(0);
    }
    for (value, count) in values {
        family
            .get_or_create(&vec![(label.to_owned(), value)])
            .set(count);
    }
    registry.register(name, help, family);
}

/// The figures, in the OpenMetrics text format; `leader`: whether this node leads the
/// singleton workers.
pub fn render(conn: &mut DbConnection, leader: bool) -> Result<String, StoreError> {
    let mut registry = Registry::with_prefix("conclave");
    conclave_metrics::register(&mut registry);
    let leading: Gauge = Gauge::default();
    leading.set(i64::from(leader));
    registry.register(
        "worker_leader",
        "1 while this node runs the singleton workers (timers, sweeper, exports), else 0",
        leading,
    );
    let (messages, attachments, keys) = retention::sweep_totals(conn)?;
    counter(
        &mut registry,
        "retention_messages_destroyed",
        "Messages the retention sweeper destroyed",
        messages,
    );
    counter(
        &mut registry,
        "retention_attachments_destroyed",
        "Attachment files the retention sweeper destroyed",
        attachments,
    );
    counter(
        &mut registry,
        "retention_keys_shredded",
        "Data keys destroyed by crypto-shredding",
        keys,
    );
    let queued: Gauge = Gauge::default();
    queued.set(retention::queued_file_count(conn)?);
    registry.register(
        "retention_files_queued",
        "Attachment files waiting to be unlinked",
        queued,
    );
    by_label(
        &mut registry,
        "retention_jobs",
        "Retention recomputation jobs by status",
        "status",
        &["pending", "running", "done"],
        retention::jobs_by_status(conn)?,
    );
    by_label(
        &mut registry,
        "export_jobs",
        "Compliance export jobs by status",
        "status",
        &["pending", "running", "done", "failed"],
        exports::count_by_status(conn)?,
    );
    let tail = audit::tail(conn)?.map_or(0, |(seq, _)| seq);
    let lag: Vec<(String, i64)> = audit_forwarding::positions(conn)?
        .into_iter()
        .map(|(destination, position)| (destination, tail - position))
        .collect();
    by_label(
        &mut registry,
        "audit_forwarding_lag_events",
        "Audit events not yet forwarded, by destination",
        "destination",
        &[],
        lag,
    );
    let mut out = String::new();
    encode(&mut out, &registry).map_err(|err| StoreError::Corrupt(err.to_string()))?;
    Ok(out)
}

async fn metrics(
    db: web::Data<Db>,
    node: web::Data<crate::health::NodeStatus>,
) -> Result<HttpResponse, ApiError> {
    let leader = node.leadership.is_leader();
    let text = db
        .run(move |conn| render(conn, leader))
        .await
        .map_err(|err| match err {
            StoreError::Unavailable(_) => {
                ApiError::unavailable("the database is unavailable; retry shortly")
            }
            other => ApiError::internal(&other),
        })?;
    Ok(HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_installation_reports_zeros_in_openmetrics_text() {
        let db = conclave_testkit::TestDb::new(conclave_testkit::TestBackend::Sqlite);
        let text = render(&mut db.db.conn().unwrap(), true).unwrap();
        assert!(
            text.contains("conclave_retention_messages_destroyed_total 0"),
            "{text}"
        );
        assert!(
            text.contains("conclave_export_jobs{status=\"failed\"} 0"),
            "{text}"
        );
        assert!(text.contains("conclave_worker_leader 1"), "{text}");
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }
}
