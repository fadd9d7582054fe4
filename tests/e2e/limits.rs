//! Abuse limits against the real binary, each set low through the environment: sends per
//! user, rooms per user, WebSockets per user, login attempts per account and per address
//! (429 `rate_limited` with `Retry-After`, or 422 `policy_violation`), and slow clients:
//! headers that never finish (408, connection closed) and a body that stalls (408
//! `request_timeout` in the JSON error shape, connection closed).

use crate::harness::{Server, expect_error};
use conclave_testkit::TestBackend;
use reqwest::blocking::Response;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

crate::on_both_backends_in!(both:
    sends_past_the_rate_get_429_with_retry_after,
    rooms_past_the_per_user_limit_are_refused,
    websockets_past_the_per_user_limit_are_refused,
    login_attempts_past_the_rate_get_429_even_with_the_right_password,
);

fn retry_after(response: &Response) -> u64 {
    response
        .headers()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn send_message(server: &Server, token: &str, room: &str, key: &str) -> Response {
    server.send(
        "POST",
        &format!("/api/v1/rooms/{room}/messages"),
        Some(token),
        Some(json!({"text": "hello", "idempotency_key": key})),
    )
}

fn sends_past_the_rate_get_429_with_retry_after(backend: TestBackend) {
    let server = Server::start_with(
        backend,
        &[("CONCLAVE_MESSAGING__MAX_SENDS_PER_MINUTE", "3")],
    );
    let admin = server.admin_token();
    let (_, bob) = server.user_with_roles(&admin, "bob", &["user"]);
    let room = server.create_room(&admin, json!({"name": "Ops"}));
    let bobs = server.create_room(&bob, json!({"name": "Bob's"}));
    for n in 0..3 {
        assert_eq!(
            send_message(&server, &admin, &room, &format!("k{n}")).status(),
            201
        );
    }
    let refused = send_message(&server, &admin, &room, "k3");
    let wait = retry_after(&refused);
    assert!(
        (1..=20).contains(&wait),
        "one send comes back every 20 s: {wait}"
    );
    let message = expect_error(refused, 429, "rate_limited");
    assert!(message.contains("3 a minute"), "{message}");
    // Nothing was stored for the refused send; other users keep their own allowance.
    let list: Value = server
        .get(&format!("/api/v1/rooms/{room}/messages"), Some(&admin))
        .json()
        .unwrap();
    assert_eq!(list["messages"].as_array().unwrap().len(), 3);
    assert_eq!(send_message(&server, &bob, &bobs, "b0").status(), 201);
}

fn rooms_past_the_per_user_limit_are_refused(backend: TestBackend) {
    let server = Server::start_with(backend, &[("CONCLAVE_MESSAGING__MAX_ROOMS_PER_USER", "2")]);
    let admin = server.admin_token();
    let (bob_id, bob) = server.user_with_roles(&admin, "bob", &["user"]);
    server.create_room(&admin, json!({"name": "One"}));
    server.create_room(&admin, json!({"name": "Two"}));
    let refused = server.send(
        "POST",
        "/api/v1/rooms",
        Some(&admin),
        Some(json!({"name": "Three"})),
    );
    let message = expect_error(refused, 422, "policy_violation");
    assert!(message.contains("most rooms"), "{message}");
    let direct = server.send(
        "POST",
        "/api/v1/direct",
        Some(&admin),
        Some(json!({"user_id": bob_id})),
    );
    expect_error(direct, 422, "policy_violation");
    // Bob, in none, still creates his own.
    server.create_room(&bob, json!({"name": "Bob's"}));
}

fn websockets_past_the_per_user_limit_are_refused(backend: TestBackend) {
    let server = Server::start_with(
        backend,
        &[("CONCLAVE_MESSAGING__WEBSOCKET_MAX_PER_USER", "2")],
    );
    let admin = server.admin_token();
    let (_, bob) = server.user_with_roles(&admin, "bob", &["user"]);
    let mut first = server.websocket(&admin);
    first.next_of("ready");
    let mut second = server.websocket(&admin);
    second.next_of("ready");
    assert_eq!(server.refused_websocket("", Some(&admin)), 429);
    let mut bobs = server.websocket(&bob);
    bobs.next_of("ready");
    // Closing one frees its place (the server notices the close asynchronously).
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let address = server.url.trim_start_matches("http://");
        let stream = TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        use tungstenite::client::IntoClientRequest;
        let mut request = format!("ws://{address}/api/v1/ws")
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {admin}").parse().unwrap());
        match tungstenite::client(request, stream) {
            Ok(_) => break,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(err) => panic!("a closed WebSocket never freed its place: {err}"),
        }
    }
}

fn login_attempts_past_the_rate_get_429_even_with_the_right_password(backend: TestBackend) {
    let server = Server::start_with(
        backend,
        &[
            ("CONCLAVE_LOGIN__MAX_ATTEMPTS_PER_MINUTE_PER_ACCOUNT", "3"),
            ("CONCLAVE_LOGIN__MAX_ATTEMPTS_PER_MINUTE_PER_ADDRESS", "6"),
        ],
    );
    let password = server.first_admin_password();
    let login = |username: &str, password: &str| {
        server.send(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"username": username, "password": password})),
        )
    };
    for _ in 0..3 {
        expect_error(login("admin", "wrong"), 401, "invalid_credentials");
    }
    // The account's allowance is spent: even the right password waits.
    let refused = login("admin", &password);
    assert!((1..=20).contains(&retry_after(&refused)));
    let message = expect_error(refused, 429, "rate_limited");
    assert!(message.contains("too many login attempts"), "{message}");
    // The address's (six a minute, four used): two more names, then nothing from here.
    expect_error(login("nobody1", "wrong"), 401, "invalid_credentials");
    expect_error(login("nobody2", "wrong"), 401, "invalid_credentials");
    expect_error(login("nobody3", "wrong"), 429, "rate_limited");
    // The refused attempts reached no password check and wrote no failure: the database
    // counted the five that were checked.
    let mut conn = server.db().conn().unwrap();
    let failures = conclave_store::audit::list_after(&mut conn, 0, 100)
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "auth.login" && e.outcome == "failure")
        .count();
    assert_eq!(failures, 5);
}

/// Connects to the server's port directly, for byte-level slow clients.
fn raw(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(server.url.trim_start_matches("http://")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    stream
}

/// Reads until the server closes the connection (or the read timeout fails the test).
fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .expect("the server closes the connection");
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn headers_that_never_finish_get_408_and_the_connection_closed() {
    let server = Server::start_with(
        TestBackend::Sqlite,
        &[("CONCLAVE_HTTP__CLIENT_REQUEST_TIMEOUT_SECONDS", "1")],
    );
    let mut stream = raw(&server);
    let started = Instant::now();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    let answer = read_until_closed(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_body_that_stalls_gets_408_request_timeout_and_the_connection_closed() {
    let server = Server::start_with(
        TestBackend::Sqlite,
        &[("CONCLAVE_HTTP__CLIENT_BODY_TIMEOUT_SECONDS", "1")],
    );
    let mut stream = raw(&server);
    let started = Instant::now();
    // A login whose body promises 100 bytes and sends 12.
    stream
        .write_all(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"username\":",
        )
        .unwrap();
    let answer = read_until_closed(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
    let error: Value = serde_json::from_str(body).expect("the JSON error shape");
    assert_eq!(error["error"]["code"], "request_timeout");
    assert!(!error["error"]["request_id"].as_str().unwrap().is_empty());
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(10),
        "{elapsed:?}"
    );
    // A slow but steady body still goes through: pieces every 400 ms, 2 s in all.
    let mut stream = raw(&server);
    let body = br#"{"username":"admin","password":"not the password at all"}"#;
    write!(
        stream,
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    for piece in body.chunks(body.len().div_ceil(5)) {
        std::thread::sleep(Duration::from_millis(400));
        stream.write_all(piece).unwrap();
    }
    let answer = read_until_closed(&mut stream);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
}
