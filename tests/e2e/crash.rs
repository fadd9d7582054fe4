//! Crash safety under load: the load generator (`conclave-bench`) sends at a steady rate
//! and records every acknowledged message; meanwhile the server is killed with SIGKILL and
//! restarted, or its PostgreSQL is stopped and started again. Afterwards every
//! acknowledged message is in the database exactly once, in its room, and each room's
//! event sequence has no gap. While PostgreSQL is down the server answers 503 (and
//! `/readyz` says so); it recovers by itself.

use crate::harness::{ADMIN_PASSWORD, BIN, Server};
use conclave_store::schema::{messages, room_events};
use conclave_testkit::postgres_cluster::PostgresCluster;
use conclave_testkit::{TestBackend, TestDb};
use diesel::prelude::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The load generator: beside this test's `conclave`, built if missing (`make test`
/// builds the workspace first).
fn bench_binary() -> PathBuf {
    let path = Path::new(BIN).parent().unwrap().join("conclave-bench");
    if !path.exists() {
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "-q",
                "-p",
                "conclave-bench",
                "--bin",
                "conclave-bench",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building conclave-bench failed");
    }
    path
}

fn unix_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros()
}

/// A steady run of the load generator against `url`, recording acknowledgements.
struct LoadRun {
    child: Child,
    sending: mpsc::Receiver<()>,
    log: PathBuf,
}

impl LoadRun {
    /// 20 messages/s over 12 users stays under the default per-user send rate limit.
    fn start(url: &str, dir: &Path, seconds: u32) -> Self {
        let log = dir.join("acknowledged.jsonl");
        let mut child = Command::new(bench_binary())
            .args(["--url", url, "--admin-password", ADMIN_PASSWORD])
            .args(["--scenario", "steady", "--users", "12", "--rooms", "4"])
            .args([
                "--room-size",
                "3",
                "--rate",
                "20",
                "--setup-concurrency",
                "2",
            ])
            .args(["--duration", &seconds.to_string(), "--drain-timeout", "2"])
            .arg("--acknowledged-log")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("conclave-bench starts");
        let (tx, sending) = mpsc::channel();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if line.contains("measuring for") {
                    let _ = tx.send(());
                }
                eprintln!("bench: {line}");
            }
        });
        Self {
            child,
            sending,
            log,
        }
    }

    fn wait_until_sending(&self) {
        self.sending
            .recv_timeout(Duration::from_secs(120))
            .expect("the load generator starts sending");
    }

    /// Waits for the run to end; returns the acknowledged (room, message, time) records.
    /// (The run's own exactly-once delivery check fails across a crash, since its
    /// WebSockets do not reconnect: its exit status is not the verdict here.)
    fn finish(mut self) -> Vec<(String, String, u128)> {
        let status = self.child.wait().unwrap();
        assert!(
            status.code().is_some_and(|code| code == 0 || code == 2),
            "conclave-bench failed: {status}"
        );
        std::fs::read_to_string(&self.log)
            .expect("the acknowledged log")
            .lines()
            .map(|line| {
                let ack: Value = serde_json::from_str(line).unwrap();
                (
                    ack["room_id"].as_str().unwrap().to_owned(),
                    ack["message_id"].as_str().unwrap().to_owned(),
                    ack["acknowledged_unix_us"].as_u64().unwrap().into(),
                )
            })
            .collect()
    }
}

impl Drop for LoadRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every acknowledged message is stored exactly once in its room; room event sequences
/// run 1, 2, 3, … without a gap; no idempotency key was stored twice.
fn assert_nothing_lost(database_url: &str, acks: &[(String, String, u128)]) {
    let mut conn = conclave_store::Backend::from_url(database_url)
        .unwrap()
        .connect()
        .unwrap();
    let stored: Vec<(String, String, String, String)> = messages::table
        .select((
            messages::id,
            messages::room_id,
            messages::sender_id,
            messages::idempotency_key,
        ))
        .load(&mut conn)
        .unwrap();
    let mut rooms_of: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut keys: HashMap<(&str, &str), u32> = HashMap::new();
    for (id, room, sender, key) in &stored {
        rooms_of.entry(id).or_default().push(room);
        *keys.entry((sender, key)).or_default() += 1;
    }
    for (room, message, _) in acks {
        assert_eq!(
            rooms_of.get(message.as_str()),
            Some(&vec![room.as_str()]),
            "acknowledged message {message} is not stored exactly once in room {room}"
        );
    }
    assert!(
        keys.values().all(|&count| count == 1),
        "an idempotency key was stored twice"
    );
    let events: Vec<(String, i64)> = room_events::table
        .select((room_events::room_id, room_events::seq))
        .order((room_events::room_id, room_events::seq))
        .load(&mut conn)
        .unwrap();
    let mut by_room: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (room, seq) in events {
        by_room.entry(room).or_default().push(seq);
    }
    for (room, seqs) in by_room {
        let expected: Vec<i64> = (1..=seqs.len() as i64).collect();
        assert_eq!(seqs, expected, "room {room}'s event sequence has a gap");
    }
}

/// How long the kill test sends: 10 s (one kill) in `make test`, longer under
/// `make soak` (`CONCLAVE_SOAK_SECONDS`), with a kill every few seconds.
fn soak_seconds() -> u32 {
    std::env::var("CONCLAVE_SOAK_SECONDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(10)
        .max(10)
}

pub fn a_server_killed_mid_run_loses_nothing_it_acknowledged(backend: TestBackend) {
    let database = TestDb::new(backend);
    let dir = tempfile::tempdir().unwrap();
    let bind = format!("127.0.0.1:{}", crate::sso::free_port());
    let env = [("CONCLAVE_BIND", bind.as_str())];
    let mut server = Server::start_at(dir.path(), Some(&database.url), &env).unwrap();
    server.admin_token();
    let seconds = soak_seconds();
    let run = LoadRun::start(&server.url.clone(), dir.path(), seconds);
    run.wait_until_sending();
    let sending_since = Instant::now();
    let mut outages = Vec::new();
    loop {
        std::thread::sleep(Duration::from_secs(3));
        if sending_since.elapsed() + Duration::from_secs(5) > Duration::from_secs(seconds.into()) {
            break;
        }
        let killed_at = unix_us();
        drop(server); // SIGKILL: no shutdown, no flush
        std::thread::sleep(Duration::from_millis(500));
        server = Server::start_at(dir.path(), Some(&database.url), &env)
            .expect("conclave restarts after SIGKILL");
        outages.push((killed_at, unix_us()));
    }

    let acks = run.finish();
    let (first_kill, last_restart) = (outages[0].0, outages[outages.len() - 1].1);
    assert!(
        acks.iter().any(|(_, _, at)| *at < first_kill),
        "nothing was acknowledged before the first kill"
    );
    assert!(
        acks.iter().any(|(_, _, at)| *at > last_restart),
        "nothing was acknowledged after the last restart"
    );
    eprintln!(
        "{} messages acknowledged around {} SIGKILLs on {backend:?}",
        acks.len(),
        outages.len()
    );
    assert_nothing_lost(&database.url, &acks);
    drop(server);
}

crate::on_both_backends_in!(killed: a_server_killed_mid_run_loses_nothing_it_acknowledged);

/// Stops the cluster when the test ends, however it ends.
struct OwnCluster(Option<PostgresCluster>);

impl Drop for OwnCluster {
    fn drop(&mut self) {
        if let Some(cluster) = self.0.take() {
            cluster.stop();
        }
    }
}

fn wait_for_status(server: &Server, path: &str, token: Option<&str>, status: u16) -> Value {
    let start = Instant::now();
    loop {
        let response = server.get(path, token);
        let got = response.status();
        let body: Value = response.json().unwrap_or(Value::Null);
        if got == status {
            return body;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{path} never answered {status}; last {got} {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_postgresql_restart_mid_run_is_503_meanwhile_then_recovers_without_loss() {
    // Its own cluster: the shared one serves every other test.
    let cluster = OwnCluster(Some(
        PostgresCluster::start().expect("a PostgreSQL cluster"),
    ));
    let database_url = cluster.0.as_ref().unwrap().admin_url();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_at(dir.path(), Some(&database_url), &[]).unwrap();
    let admin = server.admin_token();
    let room = server.create_room(&admin, json!({"name": "Through the outage"}));
    let run = LoadRun::start(&server.url, dir.path(), 14);
    run.wait_until_sending();
    std::thread::sleep(Duration::from_secs(3));

    cluster
        .0
        .as_ref()
        .unwrap()
        .stop_now()
        .expect("PostgreSQL stops");
    assert!(
        conclave_store::Backend::from_url(&database_url)
            .unwrap()
            .connect()
            .is_err(),
        "PostgreSQL still accepts connections after pg_ctl stop"
    );
    let stopped_at = unix_us();
    let readiness = wait_for_status(&server, "/readyz", None, 503);
    assert_eq!(readiness["error"]["code"], "unavailable", "{readiness}");
    let refused = wait_for_status(&server, "/api/v1/me", Some(&admin), 503);
    assert_eq!(refused["error"]["code"], "unavailable", "{refused}");
    assert_eq!(
        server.get("/healthz", None).status(),
        200,
        "liveness stays up"
    );

    cluster.0.as_ref().unwrap().start_again().unwrap();
    let restarted_at = unix_us();
    wait_for_status(&server, "/readyz", None, 200);
    let sent = server.send(
        "POST",
        &format!("/api/v1/rooms/{room}/messages"),
        Some(&admin),
        Some(json!({"text": "after the outage", "idempotency_key": "after-outage"})),
    );
    assert_eq!(sent.status(), 201, "no send after PostgreSQL came back");

    let acks = run.finish();
    assert!(acks.iter().any(|(_, _, at)| *at < stopped_at));
    assert!(
        acks.iter().any(|(_, _, at)| *at > restarted_at),
        "the load generator's sends never recovered"
    );
    eprintln!(
        "{} messages acknowledged around a PostgreSQL restart",
        acks.len()
    );
    assert_nothing_lost(&database_url, &acks);
    drop(server);
}

/// A small filesystem mounted over a directory for the test's life.
struct SmallDisk(PathBuf);

impl SmallDisk {
    /// Mounts a `size` tmpfs at `dir` (the test runs as root, as CI does).
    fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs failed: this test needs root (as CI runs)"
        );
        Self(dir.to_owned())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Every file under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[test]
fn a_full_attachment_disk_is_a_clear_error_and_leaves_no_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let attachments = dir.path().join("attachments");
    let disk = SmallDisk::mount(&attachments, "1m");
    let database = TestDb::new(TestBackend::Sqlite);
    let server = Server::start_at(dir.path(), Some(&database.url), &[]).unwrap();
    let admin = server.admin_token();
    let room = server.create_room(&admin, json!({"name": "Files"}));
    let upload = |name: &str, bytes: usize| {
        server.client_raw_with_token(
            "POST",
            &format!("/api/v1/rooms/{room}/attachments?name={name}"),
            &admin,
            "application/octet-stream",
            vec![7u8; bytes],
        )
    };

    let refused = upload("large.bin", 3 * 1024 * 1024);
    assert_eq!(refused.status(), 503);
    let body: Value = refused.json().unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("storage is full"),
        "{body}"
    );
    assert_eq!(
        files_under(&attachments),
        Vec::<PathBuf>::new(),
        "a partial file was left"
    );
    assert!(server.stderr().contains("attachment storage is full"));

    // The space came back with the failed upload's file gone: a small one is stored.
    let stored = upload("small.bin", 10 * 1024);
    assert_eq!(stored.status(), 201);
    assert_eq!(files_under(&attachments).len(), 1);
    drop(server);
    drop(disk);
}
