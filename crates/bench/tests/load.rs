//! Runs the load generator against the real `conclave` binary on SQLite: a tiny steady
//! scenario must deliver every acknowledged message to every member exactly once, with
//! figures that agree with each other.

use conclave_bench::{Plan, Scenario, System, Target};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The `conclave` binary: `CONCLAVE_BIN`, or the workspace's debug build beside this
/// test (`make test` and `cargo test --workspace` build it first; built here if
/// missing, so `cargo test -p conclave-bench` works alone. After changing the server,
/// rebuild it or set `CONCLAVE_BIN`).
fn conclave_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CONCLAVE_BIN") {
        return path.into();
    }
    // This test runs from target/<profile>/deps/.
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("conclave");
    if !path.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "conclave-server", "--bin", "conclave"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building conclave failed");
    }
    assert!(path.exists(), "no conclave binary at {}", path.display());
    path
}

struct Server {
    child: Child,
    url: String,
    admin_password: String,
    _data: tempfile::TempDir,
}

impl Server {
    fn start() -> Self {
        let data = tempfile::tempdir().unwrap();
        let mut command = Command::new(conclave_binary());
        for (key, _) in std::env::vars() {
            if key.starts_with("CONCLAVE_") {
                command.env_remove(key);
            }
        }
        let mut child = command
            .args(["serve", "--bind", "127.0.0.1:0"])
            .env("CONCLAVE_DATA_DIR", data.path())
            .env("CONCLAVE_LOG__LEVEL", "warn")
            .env("CONCLAVE_HTTP__WORKERS", "2")
            // A load run is one address and a few users working flat out: the abuse
            // limits, out of the way (as for Synapse in bench-compare).
            .env(
                "CONCLAVE_LOGIN__MAX_ATTEMPTS_PER_MINUTE_PER_ADDRESS",
                "1000000",
            )
            .env("CONCLAVE_MESSAGING__MAX_SENDS_PER_MINUTE", "1000000")
            .env("CONCLAVE_MESSAGING__WEBSOCKET_MAX_PER_USER", "100000")
            .current_dir(data.path())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(data.path().join("server.log")).unwrap())
            .spawn()
            .expect("start conclave");
        let (tx, rx) = mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            let (mut url, mut password) = (None, None);
            for line in stdout.lines().map_while(Result::ok) {
                let line = line.trim();
                if let Some(found) = line.strip_prefix("Conclave is serving at ") {
                    url = Some(found.to_owned());
                }
                if let Some(found) = line.strip_prefix("one-time password:") {
                    password = Some(found.trim().to_owned());
                }
                if line.starts_with("Log in with") {
                    let _ = tx.send((url.take(), password.take()));
                }
            }
        });
        let Ok((Some(url), Some(admin_password))) = rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            panic!(
                "conclave did not start: {}",
                std::fs::read_to_string(data.path().join("server.log")).unwrap_or_default()
            );
        };
        Self {
            child,
            url,
            admin_password,
            _data: data,
        }
    }

    fn target(&self) -> Target {
        Target {
            system: System::Conclave,
            url: self.url.clone(),
            admin_user: "admin".into(),
            admin_password: self.admin_password.clone(),
            admin_new_password: Some("the bench test's admin passphrase".into()),
            server_pid: Some(self.child.id()),
            label: "sqlite".into(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_steady_run_delivers_everything_exactly_once() {
    let server = Server::start();
    let plan = Plan {
        users: 6,
        rooms: 2,
        room_size: 3,
        connections: 6,
        rate: Some(20.0),
        duration: Duration::from_secs(3),
        setup_concurrency: 2,
        ..Plan::defaults(Scenario::Steady)
    };
    let report = conclave_bench::run(&server.target(), &plan).await.unwrap();
    eprintln!("{}", report.table());
    assert!(report.exactly_once, "{:?}", report.delivery);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.connections_failed, 0);
    assert_eq!(report.connections_lost, 0);
    assert_eq!(report.error_frames, 0);
    // 20 messages/s for 3 s, every one acknowledged.
    assert_eq!(report.sends_attempted, 60);
    assert_eq!(report.sends_acknowledged, 60);
    // Rooms of three, one connection per user: each message reaches three connections.
    assert_eq!(report.delivery.acknowledged, 60);
    assert_eq!(report.delivery.expected_deliveries, 180);
    assert_eq!(report.delivery.delivered, 180);
    assert_eq!(report.delivery.unacknowledged_receipts, 0);
    assert_eq!(report.send_latency.count, 60);
    assert_eq!(report.delivery_latency.count, 180);
    assert_eq!(report.delivery_all_members_latency.count, 60);
    assert!(report.send_latency.p50_ms > 0.0);
    assert!(report.delivery_latency.p99_ms <= report.delivery_latency.max_ms);
    assert!(report.delivery_all_members_latency.p50_ms >= report.delivery_latency.p50_ms);
    let usage = report.server.as_ref().expect("the server's usage");
    assert!(
        usage.rss_before_connections_kib > 0 && usage.hwm_kib >= usage.rss_before_connections_kib
    );
    assert!(usage.peak_rss_kib > 0);

    // The JSON report carries the same figures.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["delivery"]["delivered"], 180);
    assert_eq!(json["scenario"], "steady");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_counted_and_measured() {
    let server = Server::start();
    let plan = Plan {
        users: 2,
        connections: 40,
        duration: Duration::from_millis(500),
        setup_concurrency: 2,
        ..Plan::defaults(Scenario::Connections)
    };
    let report = conclave_bench::run(&server.target(), &plan).await.unwrap();
    assert_eq!(report.connections_failed, 0);
    assert_eq!(report.connections_lost, 0);
    assert_eq!(report.sends_attempted, 0);
    assert!(report.exactly_once);
    let usage = report.server.as_ref().expect("the server's usage");
    assert!(usage.kib_per_connection.is_some());
    assert!(usage.rss_with_connections_kib > 0);
}
