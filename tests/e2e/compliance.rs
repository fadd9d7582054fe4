//! Retention and legal holds against the real binary: the compliance officer's endpoints
//! and their role rules (an admin may not place a hold), the sweeper running on its
//! schedule and keeping exactly what a hold covers until it is released, previews and
//! policy jobs, the audit trail, the `conclave retention` / `conclave holds` commands, and
//! compliance exports run by the server's worker, downloaded and verified.

use crate::harness::{Server, expect_error};
use conclave_core::MessageId;
use conclave_store::audit::{self, AuditFilter};
use conclave_testkit::TestBackend;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

crate::on_both_backends_in!(compliance_tests:
    holds_keep_messages_from_the_running_sweeper_until_released,
    exports_run_on_the_server_and_verify,
    a_sweep_killed_mid_run_leaves_nothing_behind_once_rerun,
);

fn stored(server: &Server, id: &str) -> bool {
    let id: MessageId = id.parse().unwrap();
    conclave_store::messages::find(&mut server.db().conn().unwrap(), id)
        .unwrap()
        .is_some()
}

/// Waits (up to 30 s) for the sweeper to make `done` true.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn send_and_delete(server: &Server, token: &str, room: &str, key: &str) -> String {
    let sent: Value = server
        .send(
            "POST",
            &format!("/api/v1/rooms/{room}/messages"),
            Some(token),
            Some(json!({"text": key, "idempotency_key": key})),
        )
        .json()
        .unwrap();
    let id = sent["id"].as_str().unwrap().to_owned();
    let deleted = server.send(
        "DELETE",
        &format!("/api/v1/rooms/{room}/messages/{id}"),
        Some(token),
        None,
    );
    assert_eq!(deleted.status(), 204);
    id
}

fn audited(server: &Server, action: &str) -> usize {
    let filter = AuditFilter {
        action: Some(action.into()),
        ..Default::default()
    };
    audit::query(&mut server.db().conn().unwrap(), &filter, 0, 1000)
        .unwrap()
        .len()
}

fn holds_keep_messages_from_the_running_sweeper_until_released(backend: TestBackend) {
    let server = Server::start_with(
        backend,
        &[
            ("CONCLAVE_RETENTION__SWEEP_INTERVAL_SECONDS", "1"),
            ("CONCLAVE_RETENTION__GRACE_SECONDS", "0"),
        ],
    );
    let admin = server.admin_token();
    let (_, officer) = server.user_with_roles(&admin, "officer", &["compliance_officer"]);
    let (_, auditor) = server.user_with_roles(&admin, "inspector", &["auditor"]);
    let held_room = server.create_room(&admin, json!({"name": "Matter"}));
    let other_room = server.create_room(&admin, json!({"name": "Chatter"}));

    // Only compliance officers manage holds: not an admin (separation of duties), not an
    // auditor, not an anonymous caller.
    let hold = json!({"name": "Matter 17", "reason": "Litigation", "rooms": [held_room]});
    for token in [&admin, &auditor] {
        expect_error(
            server.send(
                "POST",
                "/api/v1/compliance/legal-holds",
                Some(token),
                Some(hold.clone()),
            ),
            403,
            "forbidden",
        );
    }
    expect_error(
        server.send(
            "POST",
            "/api/v1/compliance/legal-holds",
            None,
            Some(hold.clone()),
        ),
        401,
        "unauthenticated",
    );
    expect_error(
        server.send(
            "POST",
            "/api/v1/compliance/legal-holds",
            Some(&officer),
            Some(json!({"name": "x", "reason": "y"})),
        ),
        422,
        "invalid_input",
    );
    expect_error(
        server.send(
            "POST",
            "/api/v1/compliance/legal-holds",
            Some(&officer),
            Some(json!({"name": "x", "reason": "y", "rooms": [held_room], "color": "red"})),
        ),
        422,
        "invalid_input",
    );
    let placed = server.send(
        "POST",
        "/api/v1/compliance/legal-holds",
        Some(&officer),
        Some(hold),
    );
    assert_eq!(placed.status(), 201);
    let placed: Value = placed.json().unwrap();
    let hold_id = placed["id"].as_str().unwrap().to_owned();

    // With no retention policy a deleted message is due at once: the sweeper takes the
    // unheld one and keeps the held one.
    let kept = send_and_delete(&server, &admin, &held_room, "held");
    let swept = send_and_delete(&server, &admin, &other_room, "unheld");
    eventually("the unheld message is destroyed", || {
        !stored(&server, &swept)
    });
    assert!(stored(&server, &kept), "the hold keeps its room's message");
    let status: Value = server
        .get("/api/v1/compliance/sweeper", Some(&officer))
        .json()
        .unwrap();
    assert!(
        status["total_messages_destroyed"].as_i64().unwrap() >= 1,
        "{status}"
    );
    expect_error(
        server.get("/api/v1/compliance/sweeper", Some(&admin)),
        403,
        "forbidden",
    );

    // The same totals as Prometheus metrics.
    let metrics = server.get("/metrics", None).text().unwrap();
    let destroyed = metrics
        .lines()
        .find_map(|line| line.strip_prefix("conclave_retention_messages_destroyed_total "))
        .and_then(|value| value.parse::<u64>().ok());
    assert!(destroyed.is_some_and(|n| n >= 1), "{metrics}");

    // Releasing the hold lets the sweeper catch up.
    let released: Value = server
        .send(
            "POST",
            &format!("/api/v1/compliance/legal-holds/{hold_id}/release"),
            Some(&officer),
            None,
        )
        .json()
        .unwrap();
    assert!(released["released_at"].is_string());
    expect_error(
        server.send(
            "POST",
            &format!("/api/v1/compliance/legal-holds/{hold_id}/release"),
            Some(&officer),
            None,
        ),
        409,
        "conflict",
    );
    eventually("the released message is destroyed", || {
        !stored(&server, &kept)
    });

    // Preview, then save: the preview changes nothing; saving starts a job that finishes.
    let preview = server.send(
        "POST",
        "/api/v1/compliance/retention-policies/preview",
        Some(&officer),
        Some(json!({"scope": "org", "max_days": 1})),
    );
    assert_eq!(preview.status(), 200);
    let preview: Value = preview.json().unwrap();
    assert_eq!(preview["destroy_now"], 0, "{preview}");
    let listed: Value = server
        .get("/api/v1/compliance/retention-policies", Some(&officer))
        .json()
        .unwrap();
    assert_eq!(listed["policies"], json!([]), "a preview saves nothing");
    for (body, status, code) in [
        (json!({"scope": "everything"}), 422, "invalid_input"),
        (
            json!({"scope": "org", "min_days": 30, "max_days": 7}),
            422,
            "invalid_input",
        ),
        (
            json!({"scope": "room:0190a4c1-0000-7000-8000-000000000000"}),
            404,
            "not_found",
        ),
    ] {
        expect_error(
            server.send(
                "POST",
                "/api/v1/compliance/retention-policies/preview",
                Some(&officer),
                Some(body),
            ),
            status,
            code,
        );
    }
    let saved = server.send(
        "PUT",
        "/api/v1/compliance/retention-policies/org",
        Some(&officer),
        Some(json!({"min_days": 30})),
    );
    assert_eq!(saved.status(), 200);
    expect_error(
        server.send(
            "PUT",
            "/api/v1/compliance/retention-policies/org",
            Some(&admin),
            Some(json!({"min_days": 30})),
        ),
        403,
        "forbidden",
    );
    expect_error(
        server.send(
            "PUT",
            "/api/v1/compliance/retention-policies/org",
            Some(&officer),
            Some(json!({})),
        ),
        422,
        "invalid_input",
    );
    eventually("the recomputation job finishes", || {
        let jobs: Value = server
            .get("/api/v1/compliance/retention-jobs", Some(&officer))
            .json()
            .unwrap();
        jobs["jobs"][0]["status"] == "done"
    });
    // Under a 30-day minimum a deleted message stays for compliance.
    let retained = send_and_delete(&server, &admin, &other_room, "retained");
    std::thread::sleep(Duration::from_millis(2500));
    assert!(stored(&server, &retained));

    // Every change is in the audit log, and each sweep that did something.
    assert_eq!(audited(&server, "legal_hold.place"), 1);
    assert_eq!(audited(&server, "legal_hold.release"), 1);
    assert_eq!(audited(&server, "retention.policy_change"), 1);
    assert!(audited(&server, "retention.destroy") >= 2);

    // The command line: previews, refuses to save without --yes, and checks the role.
    let out = server
        .command()
        .args(["retention", "preview", "org", "--max-days", "1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("would destroy"));
    let out = server
        .command()
        .args([
            "retention",
            "set",
            "org",
            "--min-days",
            "60",
            "--as",
            "officer",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes"));
    let out = server
        .command()
        .args([
            "holds", "place", "--name", "X", "--reason", "Y", "--room", &held_room, "--as", "admin",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a compliance officer"));
    let out = server
        .command()
        .args([
            "holds",
            "place",
            "--name",
            "CLI hold",
            "--reason",
            "Audit",
            "--room",
            &held_room,
            "--from",
            "2026-01-01T00:00:00Z",
            "--as",
            "officer",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let active: Value = server
        .get("/api/v1/compliance/legal-holds?active=true", Some(&officer))
        .json()
        .unwrap();
    assert_eq!(active["holds"][0]["name"], "CLI hold");
    assert_eq!(audited(&server, "legal_hold.place"), 2);
}

fn exports_run_on_the_server_and_verify(backend: TestBackend) {
    let server = Server::start(backend);
    let admin = server.admin_token();
    let (_, officer) = server.user_with_roles(&admin, "officer", &["compliance_officer"]);
    let room = server.create_room(&admin, json!({"name": "Records"}));
    let sent = server.send(
        "POST",
        &format!("/api/v1/rooms/{room}/messages"),
        Some(&admin),
        Some(json!({"text": "for the record", "idempotency_key": "r1"})),
    );
    assert_eq!(sent.status(), 201);
    let now = conclave_core::Timestamp::from_micros(
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_micros(),
        )
        .unwrap(),
    );
    let request = json!({"format": "jsonl", "from": "2020-01-01T00:00:00Z", "until": now.to_rfc3339(), "rooms": [room]});
    // Compliance officers only; bad requests are refused.
    expect_error(
        server.send(
            "POST",
            "/api/v1/compliance/exports",
            Some(&admin),
            Some(request.clone()),
        ),
        403,
        "forbidden",
    );
    expect_error(
        server.send(
            "POST",
            "/api/v1/compliance/exports",
            Some(&officer),
            Some(
                json!({"format": "pdf", "from": "2020-01-01T00:00:00Z", "until": now.to_rfc3339()}),
            ),
        ),
        422,
        "invalid_input",
    );
    expect_error(
        server.send(
            "POST",
            "/api/v1/compliance/exports",
            Some(&officer),
            Some(json!({"format": "jsonl", "from": "yesterday", "until": now.to_rfc3339()})),
        ),
        422,
        "invalid_input",
    );
    let started = server.send(
        "POST",
        "/api/v1/compliance/exports",
        Some(&officer),
        Some(request),
    );
    assert_eq!(started.status(), 201);
    let id = started.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually("the export finishes", || {
        let job: Value = server
            .get(&format!("/api/v1/compliance/exports/{id}"), Some(&officer))
            .json()
            .unwrap();
        assert_ne!(job["status"], "failed", "{job}");
        job["status"] == "done"
    });
    let lines = server
        .get(
            &format!("/api/v1/compliance/exports/{id}/files/messages.jsonl"),
            Some(&officer),
        )
        .text()
        .unwrap();
    assert!(lines.contains("for the record"), "{lines}");
    let manifest: Value = server
        .get(
            &format!("/api/v1/compliance/exports/{id}/files/manifest.json"),
            Some(&officer),
        )
        .json()
        .unwrap();
    assert!(manifest["files"]["messages.jsonl"]["sha256"].is_string());
    expect_error(
        server.get(
            &format!("/api/v1/compliance/exports/{id}/files/..%2Fmaster-keys.toml"),
            Some(&officer),
        ),
        404,
        "not_found",
    );
    expect_error(
        server.get(
            &format!("/api/v1/compliance/exports/{id}/files/messages.jsonl"),
            Some(&admin),
        ),
        403,
        "forbidden",
    );

    // Only the officer who ran it downloads it.
    let (_, other_officer) = server.user_with_roles(&admin, "officer2", &["compliance_officer"]);
    expect_error(
        server.get(
            &format!("/api/v1/compliance/exports/{id}/files/messages.jsonl"),
            Some(&other_officer),
        ),
        403,
        "forbidden",
    );

    // The bundle verifies against the server's key; a changed byte is named.
    let bundle = server.data_dir().join("exports").join(&id);
    let verify = |bundle: &std::path::Path| {
        server
            .command()
            .args(["export", "verify"])
            .arg(bundle)
            .output()
            .unwrap()
    };
    let out = verify(&bundle);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(
        bundle.join("messages.jsonl"),
        lines.replace("for the record", "for the recorD"),
    )
    .unwrap();
    let out = verify(&bundle);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("messages.jsonl"));

    // The command line runs one too, as a named officer.
    let out = server
        .command()
        .args([
            "export",
            "run",
            "--format",
            "csv",
            "--from",
            "2020-01-01T00:00:00Z",
            "--room",
            &room,
            "--as",
            "officer",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("done"));
    let out = server
        .command()
        .args([
            "export",
            "run",
            "--format",
            "csv",
            "--from",
            "2020-01-01T00:00:00Z",
            "--as",
            "admin",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(audited(&server, "export.start"), 2);
}

fn a_sweep_killed_mid_run_leaves_nothing_behind_once_rerun(backend: TestBackend) {
    let server = Server::start_with(backend, &[("CONCLAVE_RETENTION__SWEEPER_ENABLED", "false")]);
    let admin = server.admin_token();
    let room = server.create_room(&admin, json!({"name": "Files"}));
    const MESSAGES: usize = 80;
    for i in 0..MESSAGES {
        let uploaded: Value = server
            .client_raw_with_token(
                "POST",
                &format!("/api/v1/rooms/{room}/attachments?name=f{i}.txt"),
                &admin,
                "text/plain",
                format!("file {i}").into_bytes(),
            )
            .json()
            .unwrap();
        let body = json!({"text": format!("m{i}"), "idempotency_key": format!("k{i}"), "attachment_id": uploaded["id"]});
        let sent: Value = server
            .send(
                "POST",
                &format!("/api/v1/rooms/{room}/messages"),
                Some(&admin),
                Some(body),
            )
            .json()
            .unwrap();
        let id = sent["id"].as_str().unwrap();
        assert_eq!(
            server
                .send(
                    "DELETE",
                    &format!("/api/v1/rooms/{room}/messages/{id}"),
                    Some(&admin),
                    None
                )
                .status(),
            204
        );
    }
    let attachments = server.data_dir().join("attachments");
    let files = || walk(&attachments);
    assert_eq!(files(), MESSAGES);
    let sweep = || {
        let mut command = server.command();
        command
            .args(["retention", "sweep"])
            .env("CONCLAVE_RETENTION__GRACE_SECONDS", "0")
            .env("CONCLAVE_RETENTION__BATCH_SIZE", "1")
            .env("CONCLAVE_RETENTION__BATCH_PAUSE_MILLIS", "5");
        command
    };
    // kill -9 part way through (one message per batch, so almost surely mid-run) ...
    let mut child = sweep()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    // ... and once more to the end: every message, row and file is gone exactly once.
    let out = sweep().output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(files(), 0, "no attachment file left behind");
    let filter = AuditFilter {
        action: Some("retention.destroy".into()),
        ..Default::default()
    };
    let mut destroyed: Vec<String> =
        audit::query(&mut server.db().conn().unwrap(), &filter, 0, 10_000)
            .unwrap()
            .iter()
            .flat_map(|event| {
                let details: Value = serde_json::from_str(&event.details).unwrap();
                details["messages"].as_array().cloned().unwrap_or_default()
            })
            .map(|id| id.as_str().unwrap().to_owned())
            .collect();
    let recorded = destroyed.len();
    destroyed.sort();
    destroyed.dedup();
    assert_eq!(
        (recorded, destroyed.len()),
        (MESSAGES, MESSAGES),
        "each destruction audited once"
    );
    let out = server.command().args(["audit", "verify"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// How many files are under `dir`.
fn walk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|entry| {
                if entry.path().is_dir() {
                    walk(&entry.path())
                } else {
                    1
                }
            })
            .sum()
    })
}
