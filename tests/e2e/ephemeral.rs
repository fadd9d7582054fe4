//! Ephemeral messages against the real binary: a 2-second timer that a WebSocket client
//! sees expire, a fetch afterwards that finds nothing, pending timers that survive a
//! restart, and the policy endpoints.

use crate::harness::{ADMIN_PASSWORD, Server, expect_error};
use conclave_testkit::TestBackend;
use serde_json::{Value, json};

fn send_with_timer(server: &Server, token: &str, room: &str, key: &str, seconds: u64) -> Value {
    let response = server.send(
        "POST",
        &format!("/api/v1/rooms/{room}/messages"),
        Some(token),
        Some(json!({"text": "this will self-destruct", "idempotency_key": key, "expires_in_seconds": seconds})),
    );
    assert_eq!(response.status(), 201);
    response.json().unwrap()
}

crate::on_both_backends_in!(ephemeral_tests: a_two_second_timer_expires_in_real_time);

fn a_two_second_timer_expires_in_real_time(backend: TestBackend) {
    let server = Server::start(backend);
    let admin = server.admin_token();
    let room = server.create_room(&admin, json!({"name": "Ephemeral"}));
    let mut ws = server.websocket(&admin);
    ws.next_of("ready");

    let sent = send_with_timer(&server, &admin, &room, "t1", 2);
    let id = sent["id"].as_str().unwrap().to_owned();
    assert_eq!(
        ws.next_of("message.created")["data"]["message"]["id"],
        id.as_str()
    );
    let visible = server.get(&format!("/api/v1/rooms/{room}/messages/{id}"), Some(&admin));
    assert_eq!(visible.status(), 200, "visible before its deadline");

    let expired = ws.next_of("message.expired");
    assert_eq!(expired["data"]["message"]["id"], id.as_str());
    assert_eq!(expired["data"]["message"]["expired"], true);
    assert!(
        !expired.to_string().contains("self-destruct"),
        "no content in the expiry event"
    );
    expect_error(
        server.get(&format!("/api/v1/rooms/{room}/messages/{id}"), Some(&admin)),
        404,
        "not_found",
    );
    let listed: Value = server
        .get(&format!("/api/v1/rooms/{room}/messages"), Some(&admin))
        .json()
        .unwrap();
    assert!(listed["messages"].as_array().unwrap().is_empty());
}

#[test]
fn pending_timers_survive_a_restart_and_policy_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_at(dir.path(), None, &[]).unwrap();
    let (token, _) = server.login("admin", &server.first_admin_password());
    server.send("POST", "/api/v1/me/password", Some(&token), Some(json!({"current_password": server.first_admin_password(), "new_password": ADMIN_PASSWORD})));

    // The org policy caps timers at an hour; a longer one is refused naming the limit.
    let mut policy: Value = server
        .get("/api/v1/admin/policy", Some(&token))
        .json()
        .unwrap();
    policy["expiration_max"] = json!(3_600);
    let put = server.send(
        "PUT",
        "/api/v1/admin/policy",
        Some(&token),
        Some(policy.clone()),
    );
    assert_eq!(put.status(), 200);
    let room = server.create_room(&token, json!({"name": "Ephemeral"}));
    let too_long = server.send(
        "POST",
        &format!("/api/v1/rooms/{room}/messages"),
        Some(&token),
        Some(json!({"text": "x", "idempotency_key": "long", "expires_in_seconds": 3_601})),
    );
    assert!(expect_error(too_long, 422, "policy_violation").contains("expiration_max"));
    let effective: Value = server
        .get(&format!("/api/v1/rooms/{room}/policy"), Some(&token))
        .json()
        .unwrap();
    assert_eq!(effective["effective"]["expiration_max"], 3_600);
    let mine: Value = server
        .get("/api/v1/me/policy", Some(&token))
        .json()
        .unwrap();
    assert_eq!(mine["expiration_max"], 3_600);
    policy["expiration_default"] = json!(7_200);
    expect_error(
        server.send("PUT", "/api/v1/admin/policy", Some(&token), Some(policy)),
        422,
        "invalid_input",
    );

    // A message with a 3-second timer; the server stops before its deadline.
    let sent = send_with_timer(&server, &token, &room, "r1", 3);
    let id = sent["id"].as_str().unwrap().to_owned();
    let before_stop: Value = server
        .get(&format!("/api/v1/rooms/{room}"), Some(&token))
        .json()
        .unwrap();
    let last_event_before_stop = before_stop["room"]["last_event_seq"].as_i64().unwrap();
    let status = server.terminate();
    assert!(status.success());

    let server = Server::start_at(dir.path(), None, &[]).unwrap();
    let (token, _) = server.login("admin", ADMIN_PASSWORD);
    let mut ws = server.websocket_resuming(&token, &[(&room, 0)]);
    ws.next_of("ready");
    // The rebuilt worker announces it, after the replay of what came before.
    let expired = ws.next_of("message.expired");
    assert_eq!(expired["data"]["message"]["id"], id.as_str());
    assert!(
        expired["seq"].as_i64().unwrap() > last_event_before_stop,
        "announced by the restarted server's worker"
    );
    expect_error(
        server.get(&format!("/api/v1/rooms/{room}/messages/{id}"), Some(&token)),
        404,
        "not_found",
    );
}

#[test]
fn security_group_endpoints_answer_bad_input_properly() {
    let server = Server::start(TestBackend::Sqlite);
    let admin = server.admin_token();
    let created = server.send(
        "POST",
        "/api/v1/admin/security-groups",
        Some(&admin),
        Some(json!({"name": "Trading", "precedence": 10})),
    );
    assert_eq!(created.status(), 201);
    let group: Value = created.json().unwrap();
    let id = group["id"].as_str().unwrap().to_owned();
    expect_error(
        server.send(
            "POST",
            "/api/v1/admin/security-groups",
            Some(&admin),
            Some(json!({"name": "Trading", "precedence": 5})),
        ),
        409,
        "conflict",
    );
    expect_error(
        server.send(
            "POST",
            "/api/v1/admin/security-groups",
            Some(&admin),
            Some(json!({"name": "", "precedence": 5})),
        ),
        422,
        "invalid_input",
    );
    expect_error(
        server.get("/api/v1/admin/security-groups/no-such-group", Some(&admin)),
        404,
        "not_found",
    );
    expect_error(
        server.send(
            "DELETE",
            "/api/v1/admin/security-groups/no-such-group",
            Some(&admin),
            None,
        ),
        404,
        "not_found",
    );
    // A member keeps a group from being deleted.
    let officer: Value = server
        .send("POST", "/api/v1/admin/users", Some(&admin), Some(json!({"username": "officer", "display_name": "Officer", "roles": ["compliance_officer"]})))
        .json()
        .unwrap();
    let officer_id = officer["user"]["id"].as_str().unwrap().to_owned();
    let added = server.send(
        "PUT",
        &format!("/api/v1/admin/security-groups/{id}/members/{officer_id}"),
        Some(&admin),
        None,
    );
    assert_eq!(added.status(), 204);
    expect_error(
        server.send(
            "DELETE",
            &format!("/api/v1/admin/security-groups/{id}"),
            Some(&admin),
            None,
        ),
        409,
        "conflict",
    );
    expect_error(
        server.send(
            "PUT",
            "/api/v1/admin/security-groups/no-such-group/policy",
            Some(&admin),
            Some(json!({})),
        ),
        404,
        "not_found",
    );
    expect_error(
        server.send(
            "PUT",
            &format!("/api/v1/admin/security-groups/{id}/policy"),
            Some(&admin),
            Some(json!({"barriers": ["no-such-group"]})),
        ),
        422,
        "invalid_input",
    );
    // Separation of duties: a compliance officer cannot touch security groups.
    let (officer_token, _) =
        server.login("officer", officer["one_time_password"].as_str().unwrap());
    let own = "an officer's own passphrase";
    server.send(
        "POST",
        "/api/v1/me/password",
        Some(&officer_token),
        Some(json!({"current_password": officer["one_time_password"], "new_password": own})),
    );
    expect_error(
        server.get("/api/v1/admin/security-groups", Some(&officer_token)),
        403,
        "forbidden",
    );
    expect_error(
        server.send(
            "DELETE",
            &format!("/api/v1/admin/security-groups/{id}/members/{officer_id}"),
            Some(&officer_token),
            None,
        ),
        403,
        "forbidden",
    );
    assert!(
        !server.stderr().contains("\"status\":500"),
        "no 500 in the run"
    );
}
