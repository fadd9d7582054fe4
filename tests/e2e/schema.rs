//! API schema testing: schemathesis (PyPI, pinned in scripts/schemathesis.sh) generates
//! requests from the running binary's `/api/v1/openapi.json` and checks every answer: no
//! 5xx, only documented statuses, documented content types and headers, bodies that
//! match the documented schemas, and no 2xx for a request the document rules out.
//!
//! Four runs, each with the session of the caller the operations are for (a plain user
//! for conversations, a compliance officer, an auditor, then an admin for the rest), a
//! fixed seed, no example database and a small number of examples per operation, so a
//! run is repeatable and takes a couple of minutes. Left out: the endpoints that end the
//! caller's own session (logout, revoking one's sessions, an admin ending sessions) and
//! the WebSocket (schemathesis speaks plain HTTP); the authorization matrix covers them.

use crate::harness::Server;
use conclave_testkit::TestBackend;
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;

crate::on_both_backends_in!(schema_testing: schemathesis_finds_no_server_error_and_no_schema_violation);

/// The checks of every run: what the issue asks (no 5xx, no answer that breaks the
/// documented schema), and that a request the document rules out is refused
/// (`negative_data_rejection`: bad input never gets a 2xx).
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection";
const SEED: &str = "20261204";
const MAX_EXAMPLES: &str = "25";
/// Operations that end the session the run uses (each path has no other method), and
/// the WebSocket.
const EXCLUDED: &[&str] = &[
    "/api/v1/auth/logout",
    "/api/v1/me/sessions/{session_id}",
    "/api/v1/admin/users/{user_id}/sessions",
    "/api/v1/ws",
];

struct Run {
    caller: &'static str,
    include_path_regex: &'static str,
}

/// In this order: the admin's run may suspend or demote the others.
const RUNS: &[Run] = &[
    Run {
        caller: "user",
        include_path_regex: "^/api/v1/(rooms|direct|users|me/policy)",
    },
    Run {
        caller: "compliance",
        include_path_regex: "^/api/v1/compliance/",
    },
    Run {
        caller: "auditor",
        include_path_regex: "^/api/v1/audit/",
    },
    Run {
        caller: "admin",
        include_path_regex: "^/(healthz|readyz)$|^/api/v1/(admin/|auth/|me$|me/password|me/sessions$)",
    },
];

/// A setting for longer or different runs by hand (`SCHEMATHESIS_MAX_EXAMPLES=200 cargo
/// test -p conclave-server --test e2e schema_testing`), or the CI default.
fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// Figures of one run, from schemathesis's summary.
#[derive(Default, Debug)]
struct Figures {
    operations: u64,
    test_cases: u64,
}

fn figures(summary: &str) -> Figures {
    let mut out = Figures::default();
    let lines: Vec<&str> = summary.lines().map(str::trim).collect();
    for (i, line) in lines.iter().enumerate() {
        if let Some(rest) = line.strip_prefix("Tested: ") {
            out.operations = rest.split_whitespace().next().unwrap().parse().unwrap();
        }
        if *line == "Test cases:" {
            let next = lines[i + 1];
            out.test_cases = next.split_whitespace().next().unwrap().parse().unwrap();
        }
    }
    out
}

fn schemathesis_finds_no_server_error_and_no_schema_violation(backend: TestBackend) {
    let server = Server::start(backend);
    let admin = server.admin_token();
    let (user_id, user) = server.user_with_roles(&admin, "casey", &[]);
    let (target_id, _) = server.user_with_roles(&admin, "target", &[]);
    let (_, compliance) = server.user_with_roles(&admin, "officer", &["compliance_officer"]);
    let (_, auditor) = server.user_with_roles(&admin, "auditor", &["auditor"]);
    let room_id = server.create_room(&user, json!({"name": "fuzzed", "member_ids": [target_id]}));
    let sent: Value = server
        .send(
            "POST",
            &format!("/api/v1/rooms/{room_id}/messages"),
            Some(&user),
            Some(json!({"text": "hello", "idempotency_key": "schema-1"})),
        )
        .json()
        .unwrap();
    let message_id = sent["id"].as_str().unwrap().to_owned();
    let created_at = sent["created_at"].as_str().unwrap().to_owned();
    let group: Value = server
        .send(
            "POST",
            "/api/v1/admin/security-groups",
            Some(&admin),
            Some(json!({"name": "fuzzed", "precedence": 10})),
        )
        .json()
        .unwrap();
    let hold: Value = server
        .send(
            "POST",
            "/api/v1/compliance/legal-holds",
            Some(&compliance),
            Some(json!({"name": "fuzzed", "reason": "schema tests", "rooms": [room_id]})),
        )
        .json()
        .unwrap();
    let export: Value = server
        .send(
            "POST",
            "/api/v1/compliance/exports",
            Some(&compliance),
            Some(json!({"format": "jsonl", "from": "2020-01-01T00:00:00Z", "until": created_at})),
        )
        .json()
        .unwrap();

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let reports = tempfile::tempdir().unwrap();
    let mut total = Figures::default();
    let mut failed = Vec::new();
    for run in RUNS {
        let token = match run.caller {
            "user" => &user,
            "compliance" => &compliance,
            "auditor" => &auditor,
            _ => &admin,
        };
        let mut cmd = Command::new(root.join("scripts/schemathesis.sh"));
        cmd.current_dir(&root)
            .arg(format!("{}/api/v1/openapi.json", server.url))
            .args(["--checks", &setting("SCHEMATHESIS_CHECKS", CHECKS)])
            .args(["--seed", &setting("SCHEMATHESIS_SEED", SEED)])
            .args([
                "--max-examples",
                &setting("SCHEMATHESIS_MAX_EXAMPLES", MAX_EXAMPLES),
            ])
            .args(["--workers", "1", "--no-color", "--request-timeout", "30"])
            .args(["--include-path-regex", run.include_path_regex])
            .args(["--report", "junit", "--report-dir"])
            .arg(reports.path().join(run.caller))
            .env("CONCLAVE_TOKEN", token)
            .env("CONCLAVE_ROOM_ID", &room_id)
            .env("CONCLAVE_MESSAGE_ID", &message_id)
            .env(
                "CONCLAVE_USER_ID",
                if run.caller == "admin" {
                    &target_id
                } else {
                    &user_id
                },
            )
            .env("CONCLAVE_GROUP_ID", group["id"].as_str().unwrap())
            .env("CONCLAVE_HOLD_ID", hold["id"].as_str().unwrap())
            .env("CONCLAVE_EXPORT_ID", export["id"].as_str().unwrap());
        for excluded in EXCLUDED {
            cmd.args(["--exclude-path", excluded]);
        }
        let output = cmd.output().expect("scripts/schemathesis.sh runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            failed.push(format!(
                "schemathesis as {} failed ({}):\n{stdout}\n{stderr}",
                run.caller, output.status
            ));
        }
        let figures = figures(&stdout);
        assert!(
            figures.test_cases > 0,
            "no test cases as {}:\n{stdout}\n{stderr}",
            run.caller
        );
        let summary = stdout.rsplit("SUMMARY").next().unwrap_or_default();
        eprintln!("schemathesis as {}:{summary}", run.caller);
        total.operations += figures.operations;
        total.test_cases += figures.test_cases;
    }

    assert!(failed.is_empty(), "{}", failed.join("\n"));

    // The server's own record of every request agrees: not one 5xx.
    let log = server.stderr();
    let statuses: Vec<u64> = log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["message"] == "request finished")
        .filter_map(|line| line["status"].as_u64())
        .collect();
    let server_errors = statuses.iter().filter(|s| **s >= 500).count();
    eprintln!(
        "schemathesis: {} operations, {} test cases, {} requests seen by the server, {server_errors} answered 5xx",
        total.operations,
        total.test_cases,
        statuses.len()
    );
    assert!(
        statuses.len() as u64 >= total.test_cases,
        "the log has every request"
    );
    assert_eq!(server_errors, 0, "no request may end in a 5xx");
}

crate::on_both_backends_in!(json_bodies:
    a_body_that_is_not_a_json_object_is_refused_and_changes_nothing,
    policy_overrides_below_the_org_minimums_are_refused,
);

/// Found by schemathesis: serde reads a JSON array into a struct field by field, so
/// `[null, null]` was accepted as an empty update. Every body must be an object.
fn a_body_that_is_not_a_json_object_is_refused_and_changes_nothing(backend: TestBackend) {
    let server = Server::start(backend);
    let admin = server.admin_token();
    let room = server.create_room(&admin, json!({"name": "before", "topic": "kept"}));
    let path = format!("/api/v1/rooms/{room}");
    for body in [
        "[null, null]",
        "[\"after\", \"changed\"]",
        "\"after\"",
        "null",
        "7",
    ] {
        let response = server.client_raw_with_token(
            "PATCH",
            &path,
            &admin,
            "application/json",
            body.as_bytes().to_vec(),
        );
        let message = crate::harness::expect_error(response, 422, "invalid_input");
        assert!(message.contains("JSON object"), "{body}: {message}");
    }
    let policy = server.client_raw_with_token(
        "PUT",
        &format!("{path}/policy"),
        &admin,
        "application/json",
        b"[null, null]".to_vec(),
    );
    crate::harness::expect_error(policy, 422, "invalid_input");
    let room: Value = server.get(&path, Some(&admin)).json().unwrap();
    assert_eq!(room["room"]["name"], "before");
    assert_eq!(room["room"]["topic"], "kept");
    // An object still works.
    let renamed = server.send("PATCH", &path, Some(&admin), Some(json!({"name": "after"})));
    assert_eq!(renamed.status(), 200);
}

/// Found by schemathesis's negative-data check: a room's or group's overrides were stored
/// without range checks (a room size or lockout threshold of 0), values the org policy
/// refuses.
fn policy_overrides_below_the_org_minimums_are_refused(backend: TestBackend) {
    let server = Server::start(backend);
    let admin = server.admin_token();
    let room = server.create_room(&admin, json!({"name": "limits"}));
    let group: Value = server
        .send(
            "POST",
            "/api/v1/admin/security-groups",
            Some(&admin),
            Some(json!({"name": "limits", "precedence": 1})),
        )
        .json()
        .unwrap();
    let group = group["id"].as_str().unwrap();
    for (path, body) in [
        (
            format!("/api/v1/rooms/{room}/policy"),
            json!({"max_room_size": 0}),
        ),
        (
            format!("/api/v1/rooms/{room}/policy"),
            json!({"max_room_size": 1}),
        ),
        (
            format!("/api/v1/admin/security-groups/{group}/policy"),
            json!({"lockout_threshold": 0}),
        ),
        (
            format!("/api/v1/admin/security-groups/{group}/policy"),
            json!({"session_idle_minutes": 0}),
        ),
    ] {
        let response = server.send("PUT", &path, Some(&admin), Some(body.clone()));
        crate::harness::expect_error(response, 422, "invalid_input");
    }
    let room_policy: Value = server
        .get(&format!("/api/v1/rooms/{room}/policy"), Some(&admin))
        .json()
        .unwrap();
    assert_eq!(room_policy["overrides"]["max_room_size"], Value::Null);
    let ok = server.send(
        "PUT",
        &format!("/api/v1/rooms/{room}/policy"),
        Some(&admin),
        Some(json!({"max_room_size": 2})),
    );
    assert_eq!(ok.status(), 200);
}
