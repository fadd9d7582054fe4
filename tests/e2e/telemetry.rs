//! OpenTelemetry export to a real OTLP/HTTP receiver (tests/otlp/receiver.py, decoding
//! with the OpenTelemetry project's protobuf definitions from PyPI): request spans whose
//! trace id is the request id, a caller's `traceparent` joined, database spans nested
//! under their request without bind values, the metrics pushed, the trace id in the logs,
//! and the same live metrics as Prometheus text at `/metrics`.

use crate::harness::{BIN, Server};
use conclave_testkit::TestBackend;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The receiver's one PyPI dependency, pinned.
const OTLP_PROTO: &str = "opentelemetry-proto==1.45.2";

/// A running receiver; killed on drop.
struct Receiver {
    child: Child,
    port: u16,
    output: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    /// The receiver's Python, in a virtualenv beside the build (made on first use, once
    /// per test process: both backends' tests start receivers at the same time).
    fn python() -> PathBuf {
        static PYTHON: OnceLock<PathBuf> = OnceLock::new();
        PYTHON.get_or_init(Self::install).clone()
    }

    fn install() -> PathBuf {
        let target = Path::new(BIN).parent().unwrap().parent().unwrap();
        let venv = target.join("otlp-venv");
        let python = venv.join("bin/python");
        let ready = venv.join(format!(".installed-{OTLP_PROTO}"));
        if !ready.exists() {
            let made = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .expect("python3 runs");
            assert!(made.success(), "python3 -m venv failed");
            let installed = Command::new(venv.join("bin/pip"))
                .args([
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    OTLP_PROTO,
                ])
                .status()
                .expect("pip runs");
            assert!(installed.success(), "pip install {OTLP_PROTO} failed");
            std::fs::write(&ready, b"").unwrap();
        }
        python
    }

    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("received.jsonl");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/otlp/receiver.py");
        let mut child = Command::new(Self::python())
            .arg(script)
            .arg(&output)
            .stdout(Stdio::piped())
            .spawn()
            .expect("the OTLP receiver starts");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let port = first
            .trim()
            .strip_prefix("listening on ")
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("receiver did not start: {first:?}"));
        Self {
            child,
            port,
            output,
            _dir: dir,
        }
    }

    fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.output)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Waits until `found` picks something out of what arrived.
    fn wait_for<T>(&self, what: &str, found: impl Fn(&[Value]) -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(value) = found(&self.records()) {
                return value;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the receiver never got {what}; it got: {:#?}",
                self.records()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn spans_named<'a>(records: &'a [Value], name: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["signal"] == "span" && r["name"] == name)
        .collect()
}

fn metric<'a>(records: &'a [Value], name: &str) -> Option<&'a Value> {
    records
        .iter()
        .rev()
        .find(|r| r["signal"] == "metric" && r["name"] == name)
}

pub fn traces_and_metrics_reach_a_real_otlp_receiver(backend: TestBackend) {
    let receiver = Receiver::start();
    let endpoint = format!("http://127.0.0.1:{}", receiver.port);
    let server = Server::start_with(
        backend,
        &[
            ("CONCLAVE_TELEMETRY__OTLP_ENDPOINT", endpoint.as_str()),
            ("CONCLAVE_TELEMETRY__SERVICE_NAME", "conclave-e2e"),
            ("CONCLAVE_TELEMETRY__METRICS_INTERVAL_SECONDS", "1"),
        ],
    );
    let admin = server.admin_token();
    let room = server.create_room(&admin, json!({"name": "Traced"}));
    let sent = server.send(
        "POST",
        &format!("/api/v1/rooms/{room}/messages"),
        Some(&admin),
        Some(json!({"text": "a traced secret", "idempotency_key": "traced-1"})),
    );
    assert_eq!(sent.status(), 201);

    // An error's request id is its trace id.
    let missing = server.get(
        &format!("/api/v1/rooms/{}", uuid::Uuid::now_v7()),
        Some(&admin),
    );
    assert_eq!(missing.status(), 404);
    let header_id = missing.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = missing.json().unwrap();
    let request_id = body["error"]["request_id"].as_str().unwrap().to_owned();
    assert_eq!(request_id, header_id);
    assert_eq!(request_id.len(), 32, "a W3C trace id: {request_id}");

    // A caller's traceparent is joined: same trace, its span as the parent.
    let (caller_trace, caller_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let joined = reqwest::blocking::Client::new()
        .get(format!("{}/api/v1/me", server.url))
        .bearer_auth(&admin)
        .header("traceparent", format!("00-{caller_trace}-{caller_span}-01"))
        .send()
        .unwrap();
    assert_eq!(joined.status(), 200);
    assert_eq!(joined.headers()["x-request-id"], caller_trace);

    let failed = receiver.wait_for("the 404's request span", |records| {
        spans_named(records, "GET /api/v1/rooms/{room_id}")
            .into_iter()
            .find(|span| span["trace_id"] == request_id.as_str())
            .cloned()
    });
    assert_eq!(failed["service"], "conclave-e2e");
    assert_eq!(failed["kind"], 2, "SPAN_KIND_SERVER");
    assert_eq!(failed["parent_span_id"], "", "a root span");
    assert_eq!(
        failed["attributes"]["http.route"],
        "/api/v1/rooms/{room_id}"
    );
    assert_eq!(failed["attributes"]["status"], "404");

    let joined_span = receiver.wait_for("the joined request's span", |records| {
        spans_named(records, "GET /api/v1/me")
            .into_iter()
            .find(|span| span["trace_id"] == caller_trace)
            .cloned()
    });
    assert_eq!(joined_span["parent_span_id"], caller_span);

    // The send's statements are spans under its request span, without bind values.
    let system = match backend {
        TestBackend::Sqlite => "sqlite",
        TestBackend::Postgres => "postgresql",
    };
    let send_span = receiver.wait_for("the send's request span", |records| {
        spans_named(records, "POST /api/v1/rooms/{room_id}/messages")
            .first()
            .map(|span| (*span).clone())
    });
    let statements = receiver.wait_for("the send's database spans", |records| {
        let under: Vec<Value> = records
            .iter()
            .filter(|r| {
                r["signal"] == "span"
                    && r["parent_span_id"] == send_span["span_id"]
                    && r["attributes"]["db.system.name"] == system
            })
            .cloned()
            .collect();
        under.iter().any(|s| s["name"] == "INSERT").then_some(under)
    });
    for statement in &statements {
        assert_eq!(statement["trace_id"], send_span["trace_id"]);
        assert_eq!(statement["kind"], 3, "SPAN_KIND_CLIENT");
        let text = statement["attributes"]["db.query.text"].as_str().unwrap();
        assert!(!text.contains("binds"), "bind values leaked: {text}");
    }
    let received = std::fs::read_to_string(&receiver.output).unwrap();
    assert!(!received.contains(&admin), "the session token was exported");
    assert!(
        !received.contains("a traced secret"),
        "message text was exported"
    );

    // Metrics pushed every second.
    let sends = receiver.wait_for("conclave.messages.sent", |records| {
        metric(records, "conclave.messages.sent").and_then(|m| m["value"].as_i64())
    });
    assert!(sends >= 1);
    receiver.wait_for("the request counter by route", |records| {
        records
            .iter()
            .find(|r| {
                r["name"] == "conclave.http.requests"
                    && r["attributes"]["http.route"] == "/api/v1/rooms/{room_id}"
                    && r["attributes"]["http.response.status_code"] == "404"
            })
            .cloned()
    });
    let duration = receiver.wait_for("the request duration histogram", |records| {
        metric(records, "http.server.request.duration").cloned()
    });
    assert_eq!(duration["kind"], "histogram");
    receiver.wait_for("the open WebSockets gauge", |records| {
        metric(records, "conclave.websockets.open").cloned()
    });

    // The trace id is in the log lines of the request.
    let logs = server.stderr();
    assert!(
        logs.lines()
            .any(|line| line.contains(&request_id) && line.contains("request finished")),
        "no log line names request {request_id}"
    );

    // The same live figures as Prometheus text.
    let text = server.get("/metrics", None).text().unwrap();
    let sent_total = text
        .lines()
        .find_map(|line| line.strip_prefix("conclave_messages_sent_total "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .expect("conclave_messages_sent_total");
    assert!(sent_total >= 1.0);
    assert!(text.contains(
        r#"conclave_http_requests_total{method="GET",route="/api/v1/rooms/{room_id}",status="404"} 1"#
    ));
}

crate::on_both_backends_in!(otlp: traces_and_metrics_reach_a_real_otlp_receiver);

#[test]
fn without_an_endpoint_request_ids_keep_the_trace_id_form() {
    let server = Server::start(TestBackend::Sqlite);
    let response = server.get("/api/v1/me", None);
    assert_eq!(response.status(), 401);
    let id = response.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 32);
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    let text = server.get("/metrics", None).text().unwrap();
    assert!(text.contains(
        r#"conclave_http_requests_total{method="GET",route="/api/v1/me",status="401"} 1"#
    ));
}

#[test]
fn a_bad_otlp_endpoint_is_refused_by_config_check() {
    let dir = tempfile::tempdir().unwrap();
    let output = crate::harness::conclave(dir.path())
        .args(["config", "check"])
        .env("CONCLAVE_TELEMETRY__OTLP_ENDPOINT", "collector:4318")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("telemetry.otlp_endpoint"),
        "unclear error: {stderr}"
    );
}
