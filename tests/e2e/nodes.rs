//! Several `conclave serve` processes on one throwaway PostgreSQL database (the
//! deployment of `docs/deployment.md`): WebSocket events cross nodes in order and without
//! gaps, the singleton workers move to another node when their leader is killed, an `api`
//! node runs no worker while a `worker` node serves only the probes, and a second node on
//! one SQLite database is refused.

use crate::harness::{ADMIN_PASSWORD, Server};
use conclave_testkit::{TestBackend, TestDb};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Generous: the machine running the suite may be loaded.
const PATIENCE: Duration = Duration::from_secs(60);

/// Starts a node on the shared database and data directory (keys, attachments: what a
/// shared volume holds in a real deployment) with the role given.
fn node(dir: &std::path::Path, database: &TestDb, role: &str) -> Server {
    Server::start_at(dir, Some(&database.url), &[("CONCLAVE_ROLE", role)])
        .unwrap_or_else(|(status, stderr)| panic!("node failed ({status}): {stderr}"))
}

fn readiness(server: &Server) -> Value {
    server.get("/readyz", None).json().unwrap()
}

/// Waits until `check` holds, polling; panics after [`PATIENCE`].
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < PATIENCE, "gave up waiting: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn send(server: &Server, token: &str, room: &str, key: &str, extra: Value) -> Value {
    let mut body = json!({"text": format!("message {key}"), "idempotency_key": key});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let response = server.send(
        "POST",
        &format!("/api/v1/rooms/{room}/messages"),
        Some(token),
        Some(body),
    );
    assert_eq!(response.status(), 201);
    response.json().unwrap()
}

#[test]
fn a_message_sent_through_one_node_reaches_a_websocket_on_another_in_order() {
    let database = TestDb::new(TestBackend::Postgres);
    let dir = tempfile::tempdir().unwrap();
    let a = node(dir.path(), &database, "all");
    let b = node(dir.path(), &database, "all");
    let admin = a.admin_token();
    let (bob_id, bob) = a.user_with_roles(&admin, "bob", &["user"]);
    let room = a.create_room(
        &admin,
        json!({"name": "Across nodes", "member_ids": [bob_id]}),
    );
    let last_seq = a
        .get(&format!("/api/v1/rooms/{room}"), Some(&bob))
        .json::<Value>()
        .unwrap()["room"]["last_event_seq"]
        .as_i64()
        .unwrap();

    // Bob listens on node B; the admin sends everything through node A.
    let mut ws = b.websocket(&bob);
    ws.next_of("ready");
    // A burst first (several events in flight at once), then one at a time to see
    // how long a send through A takes to reach B (printed, not asserted).
    let mut sent = Vec::new();
    for i in 0..10 {
        let message = send(&a, &admin, &room, &format!("k{i}"), json!({}));
        sent.push(message["id"].as_str().unwrap().to_owned());
    }
    for (seq, id) in (last_seq..).zip(&sent) {
        let event = ws.next_of("message.created");
        assert_eq!(event["room_id"], room.as_str());
        assert_eq!(
            event["seq"].as_i64().unwrap(),
            seq + 1,
            "in order, no gap: {event}"
        );
        assert_eq!(event["data"]["message"]["id"], id.as_str());
    }
    let mut latencies = Vec::new();
    for (seq, i) in (last_seq + 10..).zip(10..30) {
        let started = Instant::now();
        let id = send(&a, &admin, &room, &format!("k{i}"), json!({}))["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let event = ws.next_of("message.created");
        latencies.push(started.elapsed());
        assert_eq!(
            event["seq"].as_i64().unwrap(),
            seq + 1,
            "in order, no gap: {event}"
        );
        assert_eq!(event["data"]["message"]["id"], id.as_str());
    }
    latencies.sort();
    eprintln!(
        "send through node A to frame on node B (debug build): median {:?}, max {:?}",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
    // Nothing was delivered twice.
    ws.expect_silence(Duration::from_millis(500));
}

#[test]
fn killing_the_worker_leader_moves_the_timers_to_another_node() {
    let database = TestDb::new(TestBackend::Postgres);
    let dir = tempfile::tempdir().unwrap();
    let first = node(dir.path(), &database, "all");
    let second = node(dir.path(), &database, "all");
    let leaders = || {
        [&first, &second]
            .iter()
            .map(|n| readiness(n)["worker_leader"] == true)
            .collect::<Vec<_>>()
    };
    eventually("one node leads the workers", || {
        leaders().iter().filter(|l| **l).count() == 1
    });
    let status = leaders();
    assert_eq!(
        status.iter().filter(|l| **l).count(),
        1,
        "exactly one leader"
    );
    let (leader, survivor) = if status[0] {
        (first, second)
    } else {
        (second, first)
    };
    let admin = leader.admin_token();
    drop(leader); // SIGKILL: no goodbye, PostgreSQL drops its session and lock.

    eventually("the survivor takes the workers over", || {
        readiness(&survivor)["worker_leader"] == true
    });
    let metrics = survivor.get("/metrics", None).text().unwrap();
    assert!(metrics.contains("conclave_worker_leader 1"), "{metrics}");

    // The survivor's timer worker announces an expiry set after the leader died.
    let room = survivor.create_room(&admin, json!({"name": "Timers"}));
    let mut ws = survivor.websocket(&admin);
    ws.next_of("ready");
    let id = send(
        &survivor,
        &admin,
        &room,
        "t1",
        json!({"expires_in_seconds": 2}),
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        ws.next_of("message.created")["data"]["message"]["id"],
        id.as_str()
    );
    let expired = ws.next_of("message.expired");
    assert_eq!(expired["data"]["message"]["id"], id.as_str());
}

#[test]
fn an_api_node_runs_no_worker_and_a_worker_node_serves_only_probes() {
    let database = TestDb::new(TestBackend::Postgres);
    let dir = tempfile::tempdir().unwrap();
    let api = node(dir.path(), &database, "api");
    let ready = readiness(&api);
    assert_eq!(ready["role"], "api");
    assert_eq!(ready["worker_leader"], false);
    let admin = api.admin_token();
    let room = api.create_room(&admin, json!({"name": "Split roles"}));
    let mut ws = api.websocket(&admin);
    ws.next_of("ready");
    let id = send(&api, &admin, &room, "e1", json!({"expires_in_seconds": 1}))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        ws.next_of("message.created")["data"]["message"]["id"],
        id.as_str()
    );
    // No timer worker here: the deadline passes unannounced (reads hide it regardless).
    ws.expect_silence(Duration::from_secs(3));
    assert_eq!(
        api.get(&format!("/api/v1/rooms/{room}/messages/{id}"), Some(&admin))
            .status(),
        404
    );
    let metrics = api.get("/metrics", None).text().unwrap();
    assert!(metrics.contains("conclave_worker_leader 0"), "{metrics}");

    // A worker node: elected, serves the probes and /metrics, not the API.
    let worker = node(dir.path(), &database, "worker");
    eventually("the worker node leads", || {
        readiness(&worker)["worker_leader"] == true
    });
    assert_eq!(readiness(&worker)["role"], "worker");
    assert_eq!(worker.get("/healthz", None).status(), 200);
    assert_eq!(worker.get("/metrics", None).status(), 200);
    assert_eq!(worker.get("/api/v1/rooms", Some(&admin)).status(), 404);
    // Its timer worker announces the expiry, which reaches the api node's client
    // through the cross-node fan-out.
    let expired = ws.next_of("message.expired");
    assert_eq!(expired["data"]["message"]["id"], id.as_str());
    assert_eq!(readiness(&api)["worker_leader"], false);
    let (token, _) = api.login("admin", ADMIN_PASSWORD);
    assert!(!token.is_empty());
}

#[test]
fn a_second_node_on_one_sqlite_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = Server::start_at(dir.path(), None, &[]).unwrap();
    let Err((status, stderr)) = Server::start_at(dir.path(), None, &[]) else {
        panic!("a second node started on the same SQLite database");
    };
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("SQLite serves one node only"), "{stderr}");
    assert!(stderr.contains("PostgreSQL"), "{stderr}");
    // The first node is unaffected, and once it is gone the database can be served again.
    assert_eq!(readiness(&first)["status"], "ready");
    assert_eq!(first.terminate().code(), Some(0));
    let again = Server::start_at(dir.path(), None, &[]).unwrap();
    assert_eq!(readiness(&again)["status"], "ready");
}
