//! End-to-end tests: the real `conclave` binary, started as a process on a free loopback
//! port, against SQLite and a throwaway PostgreSQL, driven over HTTP and its command line.

mod authz;
mod browser;
mod compliance;
mod crash;
mod ephemeral;
mod harness;
mod limits;
mod messaging;
mod nodes;
mod schema;
mod sso;
mod telemetry;
mod tls;
mod web;

use conclave_store::audit::{self, ChainStatus};
use conclave_testkit::TestBackend;
use harness::{ADMIN_PASSWORD, Server, conclave, expect_error};
use serde_json::{Value, json};

/// Runs each named scenario of another module as two tests, one per backend.
#[macro_export]
macro_rules! on_both_backends_in {
    ($module:ident: $($name:ident),* $(,)?) => {
        mod $module {
            mod sqlite {
                $( #[test] fn $name() { super::super::$name(conclave_testkit::TestBackend::Sqlite) } )*
            }
            mod postgres {
                $( #[test] fn $name() { super::super::$name(conclave_testkit::TestBackend::Postgres) } )*
            }
        }
    };
}

/// Runs each named scenario as two tests, one per backend.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(conclave_testkit::TestBackend::Sqlite) } )*
        }
        mod postgres {
            $( #[test] fn $name() { super::$name(conclave_testkit::TestBackend::Postgres) } )*
        }
    };
}

on_both_backends!(
    first_admin_account_lifecycle_and_audit_trail,
    bad_input_gets_the_documented_error_and_changes_nothing,
    failed_logins_are_throttled_with_retry_after,
    readiness_follows_the_database,
);

fn first_admin_account_lifecycle_and_audit_trail(backend: TestBackend) {
    let server = Server::start(backend);
    let one_time = server.first_admin_password();

    // The first login must change its password before anything else.
    let (token, body) = server.login("admin", &one_time);
    assert_eq!(body["password_change_required"], true);
    assert_eq!(body["user"]["roles"], json!(["user", "admin"]));
    expect_error(
        server.get("/api/v1/admin/users", Some(&token)),
        403,
        "password_change_required",
    );
    assert_eq!(server.get("/api/v1/me", Some(&token)).status(), 200);
    let short = server.send(
        "POST",
        "/api/v1/me/password",
        Some(&token),
        Some(json!({"current_password": one_time, "new_password": "short"})),
    );
    expect_error(short, 422, "invalid_input");
    let changed = server.send(
        "POST",
        "/api/v1/me/password",
        Some(&token),
        Some(json!({"current_password": one_time, "new_password": ADMIN_PASSWORD})),
    );
    assert_eq!(changed.status(), 204);
    let users: Value = server
        .get("/api/v1/admin/users", Some(&token))
        .json()
        .unwrap();
    assert_eq!(users["users"].as_array().unwrap().len(), 1);

    // The admin creates an employee, who logs in (on a fresh password) and sees only their own things.
    let created = server.send("POST", "/api/v1/admin/users", Some(&token), Some(json!({
        "username": "Jane.Doe", "display_name": "Jane Doe", "email": "jane@agency.example", "roles": ["auditor"]
    })));
    assert_eq!(created.status(), 201);
    let created: Value = created.json().unwrap();
    let jane_id = created["user"]["id"].as_str().unwrap().to_owned();
    let jane_otp = created["one_time_password"].as_str().unwrap().to_owned();
    assert_eq!(created["user"]["username"], "jane.doe");
    let duplicate = server.send(
        "POST",
        "/api/v1/admin/users",
        Some(&token),
        Some(json!({"username": "jane.doe", "display_name": "J"})),
    );
    expect_error(duplicate, 409, "conflict");

    let (jane, _) = server.login("jane.doe", &jane_otp);
    let new_password = "jane's own passphrase";
    let changed = server.send(
        "POST",
        "/api/v1/me/password",
        Some(&jane),
        Some(json!({"current_password": jane_otp, "new_password": new_password})),
    );
    assert_eq!(changed.status(), 204);
    expect_error(
        server.get("/api/v1/admin/users", Some(&jane)),
        403,
        "forbidden",
    );
    let (jane_laptop, _) = server.login("jane.doe", new_password);
    let sessions: Value = server
        .get("/api/v1/me/sessions", Some(&jane))
        .json()
        .unwrap();
    assert_eq!(sessions["sessions"].as_array().unwrap().len(), 2);

    // Roles, then suspension: every session of Jane's ends at once.
    let roles = server.send(
        "PUT",
        &format!("/api/v1/admin/users/{jane_id}/roles"),
        Some(&token),
        Some(json!({"roles": ["compliance_officer"]})),
    );
    let roles: Value = roles.json().unwrap();
    assert_eq!(roles["roles"], json!(["user", "compliance_officer"]));
    let suspended = server.send(
        "POST",
        &format!("/api/v1/admin/users/{jane_id}/suspend"),
        Some(&token),
        None,
    );
    assert_eq!(suspended.status(), 200);
    expect_error(
        server.get("/api/v1/me", Some(&jane)),
        401,
        "unauthenticated",
    );
    expect_error(
        server.get("/api/v1/me", Some(&jane_laptop)),
        401,
        "unauthenticated",
    );
    let refused = server.send(
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"username": "jane.doe", "password": new_password})),
    );
    expect_error(refused, 403, "account_disabled");
    let own = server.send(
        "POST",
        "/api/v1/admin/users/00000000-0000-0000-0000-000000000000/suspend",
        Some(&token),
        None,
    );
    expect_error(own, 404, "not_found");
    let reactivated = server.send(
        "POST",
        &format!("/api/v1/admin/users/{jane_id}/reactivate"),
        Some(&token),
        None,
    );
    assert_eq!(reactivated.status(), 200);
    server.login("jane.doe", new_password);

    // Logout ends the session.
    assert_eq!(
        server
            .send("POST", "/api/v1/auth/logout", Some(&token), None)
            .status(),
        204
    );
    expect_error(
        server.get("/api/v1/me", Some(&token)),
        401,
        "unauthenticated",
    );

    // Every action above is in the audit chain, which is intact.
    let mut conn = server.db().conn().unwrap();
    assert!(matches!(
        audit::verify_chain(&mut conn).unwrap(),
        ChainStatus::Intact { .. }
    ));
    let events = audit::list_after(&mut conn, 0, 1_000).unwrap();
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    for expected in [
        "user.create",
        "auth.login",
        "user.password_change",
        "user.roles_change",
        "user.suspend",
        "user.reactivate",
        "auth.logout",
    ] {
        assert!(actions.contains(&expected), "no {expected} in {actions:?}");
    }
    let login = events
        .iter()
        .find(|e| e.action == "auth.login" && e.outcome == "success")
        .unwrap();
    assert_eq!(login.client_addr.as_deref(), Some("127.0.0.1"));
    assert_eq!(login.api_path.as_deref(), Some("/api/v1/auth/login"));
    let failed = events
        .iter()
        .find(|e| e.action == "auth.login" && e.outcome == "failure")
        .unwrap();
    assert!(
        failed.details.contains("account_disabled"),
        "{}",
        failed.details
    );
    drop(conn);

    // Secrets never reach the log: not the passwords, not the tokens.
    let log = server.stderr();
    assert!(
        log.contains("request finished"),
        "the log should have request lines"
    );
    for secret in [
        one_time.as_str(),
        ADMIN_PASSWORD,
        new_password,
        token.as_str(),
        jane.as_str(),
        jane_otp.as_str(),
    ] {
        assert!(!log.contains(secret), "a secret leaked into the log");
    }
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        serde_json::from_str::<Value>(line)
            .unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
    }
}

fn bad_input_gets_the_documented_error_and_changes_nothing(backend: TestBackend) {
    let server = Server::start(backend);
    let token = server.admin_token();
    let count = || -> usize {
        let users: Value = server
            .get("/api/v1/admin/users", Some(&token))
            .json()
            .unwrap();
        users["users"].as_array().unwrap().len()
    };
    let before = count();
    let create = "/api/v1/admin/users";

    let malformed = server.client_raw_with_token(
        "POST",
        create,
        &token,
        "application/json",
        b"{\"username\": ".to_vec(),
    );
    expect_error(malformed, 400, "malformed_request");
    let wrong_type = server.send(
        "POST",
        create,
        Some(&token),
        Some(json!({"username": 7, "display_name": "x"})),
    );
    expect_error(wrong_type, 422, "invalid_input");
    let unknown_field = server.send(
        "POST",
        create,
        Some(&token),
        Some(json!({"username": "x", "display_name": "x", "is_root": true})),
    );
    assert!(expect_error(unknown_field, 422, "invalid_input").contains("is_root"));
    let missing = server.send("POST", create, Some(&token), Some(json!({"username": "x"})));
    assert!(expect_error(missing, 422, "invalid_input").contains("display_name"));
    let bad_name = server.send(
        "POST",
        create,
        Some(&token),
        Some(json!({"username": "*)(uid=*", "display_name": "x"})),
    );
    assert!(expect_error(bad_name, 422, "invalid_input").contains("username"));
    let bad_role = server.send(
        "POST",
        create,
        Some(&token),
        Some(json!({"username": "x", "display_name": "x", "roles": ["root"]})),
    );
    expect_error(bad_role, 422, "invalid_input");
    let bad_email = server.send(
        "POST",
        create,
        Some(&token),
        Some(json!({"username": "x", "display_name": "x", "email": "nope"})),
    );
    expect_error(bad_email, 422, "invalid_input");
    let oversize = json!({"username": "x", "display_name": "x".repeat(200_000)});
    expect_error(
        server.send("POST", create, Some(&token), Some(oversize)),
        413,
        "payload_too_large",
    );
    let not_json =
        server.client_raw_with_token("POST", create, &token, "text/plain", b"username=x".to_vec());
    expect_error(not_json, 415, "unsupported_media_type");
    let invalid_utf8 = server.client_raw_with_token(
        "POST",
        create,
        &token,
        "application/json",
        b"{\"username\": \"\xff\xfe\", \"display_name\": \"x\"}".to_vec(),
    );
    assert!([400, 422].contains(&invalid_utf8.status().as_u16()));
    let nul = server.send(
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"username": "\u{0}", "password": "x"})),
    );
    expect_error(nul, 401, "invalid_credentials");
    expect_error(
        server.get("/api/v1/admin/users?after=%00", Some(&token)),
        422,
        "invalid_input",
    );
    assert_eq!(count(), before, "no bad request created anything");

    // Paths, queries, methods and routes that do not exist.
    expect_error(
        server.get("/api/v1/admin/users/not-a-uuid", Some(&token)),
        404,
        "not_found",
    );
    expect_error(
        server.get("/api/v1/admin/users?limit=lots", Some(&token)),
        422,
        "invalid_input",
    );
    expect_error(server.get("/api/v1/nothing-here", None), 404, "not_found");
    expect_error(
        server.send("DELETE", "/api/v1/me", Some(&token), None),
        405,
        "method_not_allowed",
    );

    // Credentials: wrong password, no token, garbage token, revoked token.
    let wrong = server.send(
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"username": "admin", "password": "wrong password"})),
    );
    expect_error(wrong, 401, "invalid_credentials");
    expect_error(server.get("/api/v1/me", None), 401, "unauthenticated");
    expect_error(
        server.get("/api/v1/me", Some("garbage")),
        401,
        "unauthenticated",
    );
    let (second, _) = server.login("admin", ADMIN_PASSWORD);
    assert_eq!(
        server
            .send("POST", "/api/v1/auth/logout", Some(&second), None)
            .status(),
        204
    );
    expect_error(
        server.get("/api/v1/me", Some(&second)),
        401,
        "unauthenticated",
    );
    expect_error(
        server.send("POST", "/api/v1/auth/logout", Some(&second), None),
        401,
        "unauthenticated",
    );

    // The browser's cookie needs the CSRF token for state changes.
    let login = server.send(
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"username": "admin", "password": ADMIN_PASSWORD})),
    );
    let cookie = login
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let body: Value = login.json().unwrap();
    let cookie_pair = cookie.split(';').next().unwrap().to_owned();
    let csrf = body["csrf_token"].as_str().unwrap();
    let client = reqwest::blocking::Client::new();
    let me = client
        .get(format!("{}/api/v1/me", server.url))
        .header("cookie", &cookie_pair)
        .send()
        .unwrap();
    assert_eq!(me.status(), 200, "a cookie authenticates safe requests");
    let forged = client
        .post(format!("{}/api/v1/auth/logout", server.url))
        .header("cookie", &cookie_pair)
        .send()
        .unwrap();
    expect_error(forged, 403, "forbidden");
    let real = client
        .post(format!("{}/api/v1/auth/logout", server.url))
        .header("cookie", &cookie_pair)
        .header("x-csrf-token", csrf)
        .send()
        .unwrap();
    assert_eq!(real.status(), 204);

    assert!(
        !server.stderr().contains("\"status\":500"),
        "no request ended in a 500"
    );
}

fn failed_logins_are_throttled_with_retry_after(backend: TestBackend) {
    let server = Server::start_with(
        backend,
        &[("CONCLAVE_LOGIN__MAX_FAILURES_PER_ACCOUNT", "3")],
    );
    let password = server.first_admin_password();
    for _ in 0..3 {
        let wrong = server.send(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "admin", "password": "nope"})),
        );
        expect_error(wrong, 401, "invalid_credentials");
    }
    let throttled = server.send(
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"username": "admin", "password": password})),
    );
    let retry_after: u64 = throttled
        .headers()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    expect_error(throttled, 429, "rate_limited");
    let mut conn = server.db().conn().unwrap();
    let failures = audit::list_after(&mut conn, 0, 100)
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "auth.login" && e.outcome == "failure")
        .count();
    assert_eq!(
        failures, 4,
        "three wrong passwords and one throttled attempt are audited"
    );
}

fn readiness_follows_the_database(backend: TestBackend) {
    let server = Server::start(backend);
    let ready: Value = server.get("/readyz", None).json().unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(server.get("/healthz", None).status(), 200);
    // Take the database away under the running server.
    match backend {
        TestBackend::Postgres => {
            use diesel::prelude::*;
            let url = server.database_url();
            let name = url.rsplit('/').next().unwrap();
            let admin_url = conclave_testkit::postgres_admin_url();
            let mut admin = diesel::PgConnection::establish(&admin_url).unwrap();
            diesel::sql_query(format!("DROP DATABASE {name} WITH (FORCE)"))
                .execute(&mut admin)
                .unwrap();
        }
        TestBackend::Sqlite => {
            use diesel::connection::SimpleConnection;
            let mut conn = server.db().conn().unwrap();
            conn.batch_execute("DELETE FROM __diesel_schema_migrations")
                .unwrap();
        }
    }
    expect_error(server.get("/readyz", None), 503, "unavailable");
    assert_eq!(
        server.get("/healthz", None).status(),
        200,
        "liveness does not depend on the database"
    );
}

#[test]
fn openapi_lists_every_endpoint_and_the_reference_works_offline() {
    let server = Server::start(TestBackend::Sqlite);
    let doc: Value = server.get("/api/v1/openapi.json", None).json().unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/api/v1/auth/login", "post"),
        ("/api/v1/auth/logout", "post"),
        ("/api/v1/me", "get"),
        ("/api/v1/me/password", "post"),
        ("/api/v1/me/sessions", "get"),
        ("/api/v1/me/sessions/{session_id}", "delete"),
        ("/api/v1/admin/users", "get"),
        ("/api/v1/admin/users", "post"),
        ("/api/v1/admin/users/{user_id}", "get"),
        ("/api/v1/admin/users/{user_id}/roles", "put"),
        ("/api/v1/admin/users/{user_id}/suspend", "post"),
        ("/api/v1/admin/users/{user_id}/reactivate", "post"),
        ("/api/v1/admin/users/{user_id}/sessions", "delete"),
        ("/api/v1/ws", "get"),
        ("/api/v1/rooms", "get"),
        ("/api/v1/rooms", "post"),
        ("/api/v1/direct", "post"),
        ("/api/v1/rooms/{room_id}", "get"),
        ("/api/v1/rooms/{room_id}", "patch"),
        ("/api/v1/rooms/{room_id}/members", "post"),
        ("/api/v1/rooms/{room_id}/members/{user_id}", "put"),
        ("/api/v1/rooms/{room_id}/members/{user_id}", "delete"),
        ("/api/v1/rooms/{room_id}/leave", "post"),
        ("/api/v1/rooms/{room_id}/messages", "get"),
        ("/api/v1/rooms/{room_id}/messages", "post"),
        ("/api/v1/rooms/{room_id}/messages/{message_id}", "get"),
        ("/api/v1/rooms/{room_id}/messages/{message_id}", "patch"),
        ("/api/v1/rooms/{room_id}/messages/{message_id}", "delete"),
        (
            "/api/v1/rooms/{room_id}/messages/{message_id}/reactions/{emoji}",
            "put",
        ),
        (
            "/api/v1/rooms/{room_id}/messages/{message_id}/reactions/{emoji}",
            "delete",
        ),
        ("/api/v1/rooms/{room_id}/read", "post"),
        ("/api/v1/rooms/{room_id}/attachments", "post"),
        ("/api/v1/rooms/{room_id}/attachments/{attachment_id}", "get"),
        ("/api/v1/rooms/{room_id}/policy", "get"),
        ("/api/v1/rooms/{room_id}/policy", "put"),
        ("/api/v1/admin/policy", "get"),
        ("/api/v1/admin/policy", "put"),
        ("/api/v1/me/policy", "get"),
        ("/api/v1/audit/events", "get"),
        ("/api/v1/audit/verification", "get"),
        ("/api/v1/audit/export", "get"),
        ("/api/v1/admin/security-groups", "get"),
        ("/api/v1/admin/security-groups", "post"),
        ("/api/v1/admin/security-groups/{group_id}", "delete"),
        (
            "/api/v1/admin/security-groups/{group_id}/members/{user_id}",
            "put",
        ),
        ("/api/v1/admin/security-groups/{group_id}/policy", "put"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} is not documented"
        );
    }
    let page = server.get("/api/v1/docs/", None);
    assert_eq!(page.status(), 200);
    let html = page.text().unwrap();
    assert!(html.contains("swagger"), "the reference page is Swagger UI");
    for attr in ["src=\"http", "href=\"http", "src='http", "href='http"] {
        assert!(
            !html.contains(attr),
            "the reference page loads an external asset ({attr})"
        );
    }
    let script = server.get("/api/v1/docs/swagger-ui-bundle.js", None);
    assert_eq!(script.status(), 200, "assets are served from the binary");
    let initializer = server
        .get("/api/v1/docs/swagger-initializer.js", None)
        .text()
        .unwrap();
    assert!(initializer.contains("/api/v1/openapi.json"));
}

#[test]
fn sigterm_stops_the_server_gracefully() {
    let server = Server::start(TestBackend::Sqlite);
    assert_eq!(server.get("/healthz", None).status(), 200);
    // SIGHUP (a generic reload) without TLS is ignored, not the default end of process.
    let pid = server.pid().to_string();
    std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        server.get("/healthz", None).status(),
        200,
        "alive after SIGHUP"
    );
    let status = server.terminate();
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
}

#[test]
fn restart_keeps_accounts_and_does_not_recreate_the_admin() {
    let data = tempfile::tempdir().unwrap();
    let start = |dir: &std::path::Path| {
        let mut child = conclave(dir)
            .args(["serve", "--bind", "127.0.0.1:0"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut banner = String::new();
        loop {
            let mut line = String::new();
            use std::io::BufRead;
            if out.read_line(&mut line).unwrap() == 0 || line.contains("Log in with") {
                banner.push_str(&line);
                break;
            }
            banner.push_str(&line);
        }
        child.kill().unwrap();
        child.wait().unwrap();
        banner
    };
    let first = start(data.path());
    assert!(first.contains("one-time password"), "{first}");
    assert!(
        data.path().join("conclave.db").exists(),
        "the SQLite file lives in the data dir"
    );
    let second = start(data.path());
    assert!(
        !second.contains("one-time password"),
        "the admin is created once: {second}"
    );
}

#[test]
fn command_line_admin_and_config_check() {
    let data = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = conclave(data.path()).args(args).output().unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, _) = run(&["migrate"]);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = run(&["migrate"]);
    assert_eq!(code, 0);
    assert!(out.contains("up to date"), "{out}");

    let (code, out, err) = run(&[
        "admin",
        "create-user",
        "ops.lead",
        "--display-name",
        "Ops Lead",
        "--roles",
        "admin,auditor",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("one-time password:"), "{out}");
    let (code, _, err) = run(&[
        "admin",
        "create-user",
        "ops.lead",
        "--display-name",
        "Again",
    ]);
    assert_eq!(code, 2, "a duplicate is bad input");
    assert!(err.contains("taken"), "{err}");
    let (code, _, err) = run(&[
        "admin",
        "create-user",
        "x",
        "--display-name",
        "X",
        "--roles",
        "root",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("root"), "{err}");
    let (code, _, err) = run(&["admin", "suspend", "nobody"]);
    assert_eq!(code, 2);
    assert!(err.contains("nobody"), "{err}");
    let (code, _, err) = run(&["admin", "set-roles", "ops.lead", "auditor"]);
    assert_eq!(code, 2, "the last active admin keeps the admin role");
    assert!(err.contains("last active admin"), "{err}");
    let (code, _, err) = run(&[
        "admin",
        "create-user",
        "second",
        "--display-name",
        "Second",
        "--roles",
        "admin",
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = run(&["admin", "set-roles", "ops.lead", "auditor"]);
    assert_eq!(code, 0);
    assert!(out.contains("user,auditor"), "{out}");
    let (code, _, _) = run(&["admin", "suspend", "ops.lead"]);
    assert_eq!(code, 0);
    let (code, out, _) = run(&["admin", "list-users", "--json"]);
    assert_eq!(code, 0);
    let users: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ops = users.iter().find(|u| u["username"] == "ops.lead").unwrap();
    assert_eq!(ops["status"], "suspended");
    let (code, out, _) = run(&["admin", "reset-password", "second"]);
    assert_eq!(code, 0);
    assert!(out.contains("one-time password:"), "{out}");

    // Configuration: a good file passes; a wrong key or value exits 2 naming it.
    std::fs::write(
        data.path().join("good.toml"),
        "bind = \"127.0.0.1:9999\"\nrole = \"worker\"\n[log]\nformat = \"json\"\n",
    )
    .unwrap();
    let (code, out, _) = run(&["--config", "good.toml", "config", "check"]);
    assert_eq!(code, 0);
    assert!(out.contains("127.0.0.1:9999"), "{out}");
    assert!(out.contains("role:      worker"), "{out}");
    std::fs::write(
        data.path().join("typo.toml"),
        "[sessions]\nidle_timeout_minuts = 5\n",
    )
    .unwrap();
    let (code, _, err) = run(&["--config", "typo.toml", "config", "check"]);
    assert_eq!(code, 2);
    assert!(err.contains("idle_timeout_minuts"), "{err}");
    std::fs::write(data.path().join("value.toml"), "bind = \"everywhere\"\n").unwrap();
    let (code, _, err) = run(&["--config", "value.toml", "config", "check"]);
    assert_eq!(code, 2);
    assert!(err.contains("bind"), "{err}");
    let (code, _, err) = run(&["--config", "missing.toml", "config", "check"]);
    assert_eq!(code, 2);
    assert!(err.contains("missing.toml"), "{err}");
    let (code, _, _) = run(&["serve", "--bind", "not-an-address"]);
    assert_eq!(code, 2);
    let (code, _, err) = run(&["serve", "--role", "leader"]);
    assert_eq!(code, 2);
    assert!(err.contains("api, worker"), "{err}");

    let sample = include_str!("../../conclave.sample.toml");
    std::fs::write(data.path().join("sample.toml"), sample).unwrap();
    let (code, _, err) = run(&["--config", "sample.toml", "config", "check"]);
    assert_eq!(code, 0, "the sample configuration is valid: {err}");
}

#[test]
fn migrations_must_be_applied_before_serving_when_not_automatic() {
    let data = tempfile::tempdir().unwrap();
    let out = conclave(data.path())
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("CONCLAVE_DATABASE__MIGRATE_ON_START", "false")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("conclave migrate"));
}

#[test]
fn auditors_read_the_log_and_the_command_line_verifies_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_at(
        dir.path(),
        None,
        &[("CONCLAVE_AUDIT__CHECKPOINT_INTERVAL_SECONDS", "1")],
    )
    .unwrap();
    let (admin, _) = server.login("admin", &server.first_admin_password());
    server.send("POST", "/api/v1/me/password", Some(&admin), Some(json!({"current_password": server.first_admin_password(), "new_password": ADMIN_PASSWORD})));
    expect_error(
        server.get("/api/v1/audit/events", Some(&admin)),
        403,
        "forbidden",
    );
    let created: Value = server
        .send(
            "POST",
            "/api/v1/admin/users",
            Some(&admin),
            Some(json!({"username": "ivy", "display_name": "Ivy", "roles": ["auditor"]})),
        )
        .json()
        .unwrap();
    let otp = created["one_time_password"].as_str().unwrap();
    let (ivy, _) = server.login("ivy", otp);
    server.send(
        "POST",
        "/api/v1/me/password",
        Some(&ivy),
        Some(json!({"current_password": otp, "new_password": "an auditor's passphrase"})),
    );
    let page: Value = server
        .get(
            "/api/v1/audit/events?action=user.create&limit=10",
            Some(&ivy),
        )
        .json()
        .unwrap();
    let events = page["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["details"]["after"]["username"] == "ivy"),
        "{page}"
    );
    expect_error(
        server.get("/api/v1/audit/events?from=yesterday", Some(&ivy)),
        422,
        "invalid_input",
    );
    let verification: Value = server
        .get("/api/v1/audit/verification", Some(&ivy))
        .json()
        .unwrap();
    assert_eq!(verification["intact"], true);
    // Exports: every event, as JSONL and as RFC 4180 CSV a standard reader accepts.
    let all: Value = server
        .get("/api/v1/audit/events?limit=1000", Some(&ivy))
        .json()
        .unwrap();
    let count = all["events"].as_array().unwrap().len();
    let jsonl = server.get("/api/v1/audit/export?format=jsonl", Some(&ivy));
    assert_eq!(jsonl.headers()["content-type"], "application/x-ndjson");
    let jsonl = jsonl.text().unwrap();
    assert_eq!(jsonl.lines().count(), count);
    for line in jsonl.lines() {
        serde_json::from_str::<Value>(line).unwrap();
    }
    let csv_text = server
        .get(
            "/api/v1/audit/export?format=csv&action=user.create",
            Some(&ivy),
        )
        .text()
        .unwrap();
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    assert_eq!(&reader.headers().unwrap()[5], "action");
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert!(!rows.is_empty() && rows.iter().all(|r| &r[5] == "user.create"));
    expect_error(
        server.get("/api/v1/audit/export?format=xml", Some(&ivy)),
        422,
        "invalid_input",
    );
    expect_error(
        server.get("/api/v1/audit/export?format=csv", Some(&admin)),
        403,
        "forbidden",
    );
    // Let the checkpointer sign the final tail before the server stops.
    std::thread::sleep(std::time::Duration::from_millis(2_500));
    drop(server);

    let verify = || {
        conclave(dir.path())
            .args(["audit", "verify"])
            .output()
            .unwrap()
    };
    let intact = verify();
    assert!(
        intact.status.success(),
        "{}",
        String::from_utf8_lossy(&intact.stdout)
    );
    assert!(
        !String::from_utf8_lossy(&intact.stdout).contains(" 0 signed checkpoint"),
        "the tail was signed"
    );
    let db = conclave_store::Db::open(
        &format!("sqlite://{}", dir.path().join("conclave.db").display()),
        Default::default(),
    )
    .unwrap();
    {
        // Cut off the last event: the chain stays consistent, the signed checkpoint does not.
        use conclave_store::schema::audit_events::dsl::*;
        use diesel::prelude::*;
        let last: i64 = audit_events
            .select(diesel::dsl::max(seq))
            .first::<Option<i64>>(&mut *db.conn().unwrap())
            .unwrap()
            .unwrap();
        diesel::delete(audit_events.find(last))
            .execute(&mut *db.conn().unwrap())
            .unwrap();
        let truncated = verify();
        assert_eq!(truncated.status.code(), Some(1));
        let text = String::from_utf8_lossy(&truncated.stdout).into_owned();
        assert!(
            text.contains(&format!("sequence number {last}")) && text.contains("truncated"),
            "{text}"
        );
    }
    // Edit one row behind the server's back: the command names it and exits 1.
    {
        use conclave_store::schema::audit_events::dsl::*;
        use diesel::prelude::*;
        diesel::update(audit_events.find(2))
            .set(outcome.eq("failure"))
            .execute(&mut *db.conn().unwrap())
            .unwrap();
    }
    let broken = verify();
    assert_eq!(broken.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&broken.stdout).contains("sequence number 2"),
        "{}",
        String::from_utf8_lossy(&broken.stdout)
    );
}
