//! The web client's HTTP side: the embedded page and its security headers, the browser
//! session's cookies (HttpOnly session, readable SameSite=Strict CSRF cookie, both
//! cleared at logout), CSRF on state changes, and the people directory.

use crate::harness::{Server, expect_error};
use conclave_testkit::TestBackend;
use serde_json::{Value, json};

fn set_cookies(response: &reqwest::blocking::Response) -> Vec<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_page_is_served_with_a_strict_policy_and_the_browser_session_uses_cookies() {
    let server = Server::start(TestBackend::Sqlite);
    let admin = server.admin_token();

    let page = server.get("/", None);
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    let csp = headers["content-security-policy"].to_str().unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["cache-control"], "no-store");
    let html = page.text().unwrap();
    assert!(html.contains("<script type=\"module\" src=\"/assets/app.js\">"));
    assert!(!html.contains("<script>"), "no inline script");

    let script = server.get("/assets/chat.js", None);
    assert_eq!(script.status(), 200);
    assert!(
        script.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    expect_error(server.get("/assets/nothing.js", None), 404, "not_found");
    expect_error(server.get("/assets/index.html", None), 404, "not_found");
    // API answers are never cached either.
    assert_eq!(
        server.get("/api/v1/rooms", Some(&admin)).headers()["cache-control"],
        "no-store"
    );

    // A login sets the HttpOnly session cookie and a readable CSRF cookie.
    let login = server.send(
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"username": "admin", "password": crate::harness::ADMIN_PASSWORD})),
    );
    let cookies = set_cookies(&login);
    let body: Value = login.json().unwrap();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("conclave_session="))
        .expect("a session cookie");
    let csrf = cookies
        .iter()
        .find(|c| c.starts_with("conclave_csrf="))
        .expect("a CSRF cookie");
    assert!(session.contains("HttpOnly") && session.contains("SameSite=Strict"));
    assert!(!csrf.contains("HttpOnly") && csrf.contains("SameSite=Strict"));
    let csrf_value = csrf
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("conclave_csrf=");
    assert_eq!(csrf_value, body["csrf_token"].as_str().unwrap());
    let session_pair = session.split(';').next().unwrap().to_owned();

    // State changes with the cookie need the CSRF token; reads do not.
    let client = reqwest::blocking::Client::new();
    let create = |csrf: Option<&str>| {
        let mut request = client
            .post(format!("{}/api/v1/rooms", server.url))
            .header("cookie", &session_pair)
            .json(&json!({"name": "Planning"}));
        if let Some(csrf) = csrf {
            request = request.header("x-csrf-token", csrf);
        }
        request.send().unwrap()
    };
    expect_error(create(None), 403, "forbidden");
    expect_error(create(Some("wrong")), 403, "forbidden");
    assert_eq!(create(Some(csrf_value)).status(), 201);
    let rooms: Value = client
        .get(format!("{}/api/v1/rooms", server.url))
        .header("cookie", &session_pair)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(rooms["rooms"].as_array().unwrap().len(), 1);

    // The people directory: names only, active accounts.
    server.user_with_roles(&admin, "dana.scully", &[]);
    let found: Value = server
        .get("/api/v1/users?q=SCULLY", Some(&admin))
        .json()
        .unwrap();
    assert_eq!(found["people"].as_array().unwrap().len(), 1);
    assert_eq!(found["people"][0]["username"], "dana.scully");
    assert!(found["people"][0].get("roles").is_none());
    expect_error(
        server.get("/api/v1/users?q=", Some(&admin)),
        422,
        "invalid_input",
    );
    expect_error(
        server.get("/api/v1/users?q=x", None),
        401,
        "unauthenticated",
    );
    // Admins search accounts in any status; the people directory shows active ones only.
    let dana = found["people"][0]["id"].as_str().unwrap().to_owned();
    let suspended = server.send(
        "POST",
        &format!("/api/v1/admin/users/{dana}/suspend"),
        Some(&admin),
        None,
    );
    assert_eq!(suspended.status(), 200);
    let people: Value = server
        .get("/api/v1/users?q=scully", Some(&admin))
        .json()
        .unwrap();
    assert!(people["people"].as_array().unwrap().is_empty());
    let accounts: Value = server
        .get("/api/v1/admin/users?q=Scully", Some(&admin))
        .json()
        .unwrap();
    assert_eq!(accounts["users"][0]["status"], "suspended");
    assert!(accounts["next_after"].is_null());
    expect_error(
        server.get("/api/v1/admin/users?q=%07", Some(&admin)),
        422,
        "invalid_input",
    );

    // Logout clears both cookies.
    let logout = client
        .post(format!("{}/api/v1/auth/logout", server.url))
        .header("cookie", &session_pair)
        .header("x-csrf-token", csrf_value)
        .send()
        .unwrap();
    assert_eq!(logout.status(), 204);
    let cleared = set_cookies(&logout);
    for name in ["conclave_session=", "conclave_csrf="] {
        let cookie = cleared.iter().find(|c| c.starts_with(name)).expect(name);
        assert!(cookie.contains("Max-Age=0"), "{cookie}");
        // Removed with the attributes it was set with (Secure is on by default).
        assert!(cookie.contains("Secure"), "{cookie}");
        assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    }
}
