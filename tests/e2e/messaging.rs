//! Messaging against the real binary: two WebSocket clients seeing each other's messages,
//! a resume after a disconnect that misses nothing, attachments over HTTP, bad input, and
//! the master key: rotation, and refusal to start with a wrong or missing key.

use crate::harness::{ADMIN_PASSWORD, Server, conclave, expect_error};
use conclave_testkit::TestBackend;
use serde_json::{Value, json};
use std::time::Duration;

/// Creates an account through the admin API and logs it in with a password of its own.
fn employee(server: &Server, admin: &str, username: &str) -> (String, String) {
    let created: Value = server
        .send(
            "POST",
            "/api/v1/admin/users",
            Some(admin),
            Some(json!({"username": username, "display_name": username})),
        )
        .json()
        .unwrap();
    let otp = created["one_time_password"].as_str().unwrap().to_owned();
    let (token, _) = server.login(username, &otp);
    let own = format!("{username}'s own passphrase");
    let changed = server.send(
        "POST",
        "/api/v1/me/password",
        Some(&token),
        Some(json!({"current_password": otp, "new_password": own})),
    );
    assert_eq!(changed.status(), 204);
    (token, created["user"]["id"].as_str().unwrap().to_owned())
}

fn send(server: &Server, token: &str, room: &str, text: &str, key: &str) -> Value {
    let response = server.send(
        "POST",
        &format!("/api/v1/rooms/{room}/messages"),
        Some(token),
        Some(json!({"text": text, "idempotency_key": key})),
    );
    assert!(
        response.status().is_success(),
        "send failed: {}",
        response.status()
    );
    response.json().unwrap()
}

crate::on_both_backends_in!(messaging_tests: two_clients_talk_in_real_time_and_resume_without_loss);

fn two_clients_talk_in_real_time_and_resume_without_loss(backend: TestBackend) {
    let server = Server::start(backend);
    let admin = server.admin_token();
    let (bob, bob_id) = employee(&server, &admin, "bob");
    let room = server.create_room(&admin, json!({"name": "Ops", "member_ids": [bob_id]}));

    let mut alice_ws = server.websocket(&admin);
    let mut bob_ws = server.websocket(&bob);
    let ready = bob_ws.next_of("ready");
    assert!(ready["data"]["rooms"][&room].is_i64(), "{ready}");
    alice_ws.next_of("ready");

    // Each sees the other's messages as they are sent.
    send(&server, &admin, &room, "hello bob", "a1");
    let seen = bob_ws.next_of("message.created");
    assert_eq!(seen["room_id"], room.as_str());
    assert_eq!(seen["data"]["message"]["text"], "hello bob");
    assert_eq!(
        alice_ws.next_of("message.created")["data"]["message"]["text"],
        "hello bob"
    );
    send(&server, &bob, &room, "hi alice", "b1");
    let reply = alice_ws.next_of("message.created");
    assert_eq!(reply["data"]["message"]["text"], "hi alice");
    let bob_last = bob_ws.next_of("message.created")["seq"].as_i64().unwrap();

    // Bob drops off; five things happen; he comes back and resumes.
    bob_ws.socket.close(None).unwrap();
    drop(bob_ws);
    let mut missed_ids = Vec::new();
    for (i, text) in ["one", "two", "three"].iter().enumerate() {
        missed_ids.push(
            send(&server, &admin, &room, text, &format!("m{i}"))["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let edited = server.send(
        "PATCH",
        &format!("/api/v1/rooms/{room}/messages/{}", missed_ids[0]),
        Some(&admin),
        Some(json!({"text": "one (edited)"})),
    );
    assert_eq!(edited.status(), 200);
    let reacted = server.send(
        "PUT",
        &format!(
            "/api/v1/rooms/{room}/messages/{}/reactions/%F0%9F%91%8D",
            missed_ids[1]
        ),
        Some(&admin),
        None,
    );
    assert_eq!(reacted.status(), 204);

    let mut bob_ws = server.websocket_resuming(&bob, &[(&room, bob_last)]);
    bob_ws.next_of("ready");
    let mut replayed = Vec::new();
    for _ in 0..5 {
        replayed.push(bob_ws.next());
    }
    let seqs: Vec<i64> = replayed
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (bob_last + 1..=bob_last + 5).collect::<Vec<_>>(),
        "in order, no gap"
    );
    let kinds: Vec<&str> = replayed
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "message.created",
            "message.created",
            "message.created",
            "message.edited",
            "reaction.updated"
        ]
    );
    assert_eq!(replayed[3]["data"]["message"]["text"], "one (edited)");
    // Nothing twice: the next frame is the next live event.
    send(&server, &admin, &room, "live again", "m9");
    let live = bob_ws.next();
    assert_eq!(live["type"], "message.created");
    assert_eq!(live["seq"].as_i64().unwrap(), bob_last + 6);
    assert_eq!(live["data"]["message"]["text"], "live again");

    // The client protocol rejects nonsense without dropping the connection.
    bob_ws.send(json!({"type": "shout"}));
    assert_eq!(bob_ws.next()["data"]["code"], "malformed_request");
    bob_ws
        .socket
        .send(tungstenite::Message::Binary(vec![1, 2, 3].into()))
        .unwrap();
    assert_eq!(bob_ws.next()["data"]["code"], "malformed_request");
    bob_ws.send(json!({"type": "ping"}));
    assert_eq!(bob_ws.next()["type"], "pong");
    // A resume frame on an open connection replays from where the client says; a room
    // one is not in reveals nothing.
    bob_ws.send(json!({"type": "resume", "rooms": {room.clone(): bob_last + 5}}));
    assert_eq!(
        bob_ws.next()["seq"].as_i64().unwrap(),
        bob_last + 6,
        "replayed, though delivered before"
    );
    bob_ws.send(json!({"type": "resume", "rooms": {"00000000-0000-0000-0000-000000000000": 0}}));
    let missing = bob_ws.next();
    assert_eq!(
        missing["data"],
        json!({"code": "not_found", "message": "no such conversation"})
    );
    // Another user's room stays silent for Bob.
    let (carol, _) = employee(&server, &admin, "carol");
    let private_id = server.create_room(&carol, json!({"name": "Private"}));
    send(&server, &carol, &private_id, "secret", "c1");
    bob_ws.expect_silence(Duration::from_millis(500));
    // Asking for that existing room answers exactly as for one that does not exist.
    bob_ws.send(json!({"type": "resume", "rooms": {private_id: 0}}));
    let foreign = bob_ws.next();
    assert_eq!(
        foreign["data"],
        json!({"code": "not_found", "message": "no such conversation"})
    );

    // A WebSocket without a session is refused.
    assert_eq!(server.refused_websocket("", None), 401);
}

#[test]
fn attachments_and_bad_input_over_http() {
    let server = Server::start_with(
        TestBackend::Sqlite,
        &[("CONCLAVE_MESSAGING__MAX_ATTACHMENT_BYTES", "300000")],
    );
    let admin = server.admin_token();
    let (eve, _) = employee(&server, &admin, "eve");
    let room = server.create_room(&admin, json!({"name": "Files"}));
    let other = server.create_room(&admin, json!({"name": "Other"}));

    // Larger than one chunk, checked by SHA-256 both ways.
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let client = reqwest::blocking::Client::new();
    let upload = |name: &str, body: Vec<u8>, token: &str, room: &str| {
        client
            .post(format!(
                "{}/api/v1/rooms/{room}/attachments?name={name}",
                server.url
            ))
            .bearer_auth(token)
            .header("content-type", "application/pdf")
            .body(body)
            .send()
            .unwrap()
    };
    let uploaded = upload("brief.pdf", data.clone(), &admin, &room);
    assert_eq!(uploaded.status(), 201);
    let uploaded: Value = uploaded.json().unwrap();
    use sha2::Digest;
    assert_eq!(uploaded["sha256"], hex::encode(sha2::Sha256::digest(&data)));
    assert_eq!(uploaded["content_type"], "application/pdf");
    let id = uploaded["id"].as_str().unwrap();
    let download = server.get(
        &format!("/api/v1/rooms/{room}/attachments/{id}"),
        Some(&admin),
    );
    assert_eq!(download.status(), 200);
    assert!(
        download.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("brief.pdf")
    );
    // The uploader's content type is not trusted: a rendered file gets a sandbox.
    assert_eq!(
        download.headers()["content-security-policy"],
        "sandbox; default-src 'none'"
    );
    assert_eq!(download.bytes().unwrap().to_vec(), data);
    expect_error(
        server.get(
            &format!("/api/v1/rooms/{room}/attachments/{id}"),
            Some(&eve),
        ),
        404,
        "not_found",
    );
    expect_error(
        server.get(
            &format!("/api/v1/rooms/{other}/attachments/{id}"),
            Some(&admin),
        ),
        404,
        "not_found",
    );
    let sent = server.send(
        "POST",
        &format!("/api/v1/rooms/{room}/messages"),
        Some(&admin),
        Some(json!({"text": "attached", "idempotency_key": "f1", "attachment_id": id})),
    );
    assert_eq!(sent.status(), 201);
    let in_other = server.send(
        "POST",
        &format!("/api/v1/rooms/{other}/messages"),
        Some(&admin),
        Some(json!({"text": "x", "idempotency_key": "f2", "attachment_id": id})),
    );
    expect_error(in_other, 422, "invalid_input");

    // Oversize, a bad name, a non-member: refused, nothing kept.
    expect_error(
        upload("big.bin", vec![0u8; 300_001], &admin, &room),
        413,
        "payload_too_large",
    );
    expect_error(
        upload("..%2Fescape", vec![1], &admin, &room),
        422,
        "invalid_input",
    );
    expect_error(upload("x.bin", vec![1], &eve, &room), 404, "not_found");

    // Messages: empty, oversize, invalid UTF-8, unknown room, reply from elsewhere, bad paging.
    let post = |room: &str, body: Value| {
        server.send(
            "POST",
            &format!("/api/v1/rooms/{room}/messages"),
            Some(&admin),
            Some(body),
        )
    };
    expect_error(
        post(&room, json!({"text": "   ", "idempotency_key": "e1"})),
        422,
        "invalid_input",
    );
    assert!(
        expect_error(
            post(
                &room,
                json!({"text": "x".repeat(16 * 1024 + 1), "idempotency_key": "e2"})
            ),
            422,
            "invalid_input"
        )
        .contains("16384")
    );
    expect_error(
        post(&room, json!({"text": "x", "idempotency_key": "has space"})),
        422,
        "invalid_input",
    );
    let invalid_utf8 = server.client_raw_with_token(
        "POST",
        &format!("/api/v1/rooms/{room}/messages"),
        &admin,
        "application/json",
        b"{\"text\": \"\xff\xfe\", \"idempotency_key\": \"u\"}".to_vec(),
    );
    assert!([400, 422].contains(&invalid_utf8.status().as_u16()));
    expect_error(
        post(
            "00000000-0000-0000-0000-000000000000",
            json!({"text": "x", "idempotency_key": "e3"}),
        ),
        404,
        "not_found",
    );
    let elsewhere = send(&server, &admin, &other, "over there", "o1");
    expect_error(
        post(
            &room,
            json!({"text": "re", "idempotency_key": "e4", "reply_to_id": elsewhere["id"]}),
        ),
        422,
        "invalid_input",
    );
    expect_error(
        server.get(
            &format!("/api/v1/rooms/{room}/messages?before=5&after=1"),
            Some(&admin),
        ),
        422,
        "invalid_input",
    );
    let listed: Value = server
        .get(&format!("/api/v1/rooms/{room}/messages"), Some(&admin))
        .json()
        .unwrap();
    assert_eq!(
        listed["messages"].as_array().unwrap().len(),
        1,
        "only the one good message was stored"
    );
    let files = std::fs::read_dir(server.data_dir().join("attachments").join(&room))
        .unwrap()
        .count();
    assert_eq!(files, 1, "no partial or refused upload left a file");
}

#[test]
fn master_key_rotation_and_refusal_to_start_with_a_wrong_key() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_at(dir.path(), None, &[]).unwrap();
    let (token, _) = server.login("admin", &server.first_admin_password());
    server.send("POST", "/api/v1/me/password", Some(&token), Some(json!({"current_password": server.first_admin_password(), "new_password": ADMIN_PASSWORD})));
    let room = server.create_room(&token, json!({"name": "Keys"}));
    send(&server, &token, &room, "written under the first key", "k1");
    assert!(
        server
            .stdout
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("generated a new master key"))
    );
    drop(server);

    let key_file = dir.path().join("master-keys.toml");
    let original = std::fs::read_to_string(&key_file).unwrap();
    let out = conclave(dir.path())
        .args(["keys", "rotate"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("rewrapped 1 data key(s)"), "{printed}");
    let old_id = original
        .lines()
        .find_map(|l| l.strip_prefix("active = "))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    let out = conclave(dir.path())
        .args(["keys", "remove", &old_id])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !std::fs::read_to_string(&key_file)
            .unwrap()
            .contains(&old_id)
    );

    let server = Server::start_at(dir.path(), None, &[]).unwrap();
    let (token, _) = server.login("admin", ADMIN_PASSWORD);
    let listed: Value = server
        .get(&format!("/api/v1/rooms/{room}/messages"), Some(&token))
        .json()
        .unwrap();
    assert_eq!(listed["messages"][0]["text"], "written under the first key");
    drop(server);

    // A different key under the same id: the server refuses to start rather than serve errors.
    let rotated = std::fs::read_to_string(&key_file).unwrap();
    let new_id = rotated
        .lines()
        .find_map(|l| l.strip_prefix("active = "))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    let other_key = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=";
    std::fs::write(
        &key_file,
        format!("active = \"{new_id}\"\n[keys]\n\"{new_id}\" = \"{other_key}\"\n"),
    )
    .unwrap();
    let (status, stderr) = Server::start_at(dir.path(), None, &[])
        .err()
        .expect("refuses to start");
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("do not match"), "{stderr}");
    // No key file at all, with data keys in the database: refused too, and nothing generated.
    std::fs::remove_file(&key_file).unwrap();
    let (status, stderr) = Server::start_at(dir.path(), None, &[])
        .err()
        .expect("refuses to start");
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("missing"), "{stderr}");
    assert!(!key_file.exists());
}

/// Reads until the server closes the connection; returns the close code.
fn close_code(ws: &mut crate::harness::Ws) -> u16 {
    loop {
        match ws.socket.read() {
            Ok(tungstenite::Message::Close(Some(frame))) => return u16::from(frame.code),
            Ok(tungstenite::Message::Close(None)) => return 1005,
            Ok(_) => continue,
            Err(err) => panic!("connection ended without a close frame: {err}"),
        }
    }
}

#[test]
fn websocket_limits_close_abusive_connections() {
    let server = Server::start_with(
        TestBackend::Sqlite,
        &[("CONCLAVE_MESSAGING__WEBSOCKET_MAX_FRAMES_PER_SECOND", "5")],
    );
    let admin = server.admin_token();

    // A frame over the size limit (64 KiB) ends the connection with a protocol error.
    let mut ws = server.websocket(&admin);
    ws.next_of("ready");
    ws.socket
        .send(tungstenite::Message::Text("x".repeat(100 * 1024).into()))
        .unwrap();
    assert_eq!(close_code(&mut ws), 1002);

    // A flood of frames past the rate limit (5/s, bursts of 10) ends it with a policy violation.
    let mut ws = server.websocket(&admin);
    ws.next_of("ready");
    for _ in 0..30 {
        if ws
            .socket
            .send(tungstenite::Message::Text(
                json!({"type": "ping"}).to_string().into(),
            ))
            .is_err()
        {
            break;
        }
    }
    assert_eq!(close_code(&mut ws), 1008);

    // Malformed resume positions are refused before the upgrade.
    assert_eq!(
        server.refused_websocket("?resume=garbage", Some(&admin)),
        422
    );
}

#[test]
fn an_open_websocket_ends_with_its_session() {
    let server = Server::start_with(
        TestBackend::Sqlite,
        &[("CONCLAVE_MESSAGING__WEBSOCKET_PING_INTERVAL_SECONDS", "1")],
    );
    let admin = server.admin_token();
    let (bob, bob_id) = employee(&server, &admin, "bob");
    let room = server.create_room(&admin, json!({"name": "R", "member_ids": [bob_id.clone()]}));
    let mut bob_ws = server.websocket(&bob);
    bob_ws.next_of("ready");
    let suspended = server.send(
        "POST",
        &format!("/api/v1/admin/users/{bob_id}/suspend"),
        Some(&admin),
        None,
    );
    assert_eq!(suspended.status(), 200);
    send(&server, &admin, &room, "after the suspension", "s1");
    // Closed at the next session check (a delivery or the 1-second ping), before any
    // message sent after the suspension reaches it.
    loop {
        match bob_ws.socket.read() {
            Ok(tungstenite::Message::Close(Some(frame))) => {
                assert_eq!(u16::from(frame.code), 1008);
                break;
            }
            Ok(tungstenite::Message::Text(text)) => assert!(
                !text.contains("after the suspension"),
                "delivered after suspension"
            ),
            Ok(_) => continue,
            Err(err) => panic!("no close frame: {err}"),
        }
    }
    // Logging out ends one's own open connection the same way.
    let mut admin_ws = server.websocket(&admin);
    admin_ws.next_of("ready");
    assert_eq!(
        server
            .send("POST", "/api/v1/auth/logout", Some(&admin), None)
            .status(),
        204
    );
    assert_eq!(close_code(&mut admin_ws), 1008);
}
