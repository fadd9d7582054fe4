//! Single sign-on end to end: the real binary and a real OpenID Connect provider
//! (`oidc-provider` from npm, run by node from tests/oidc), driven over HTTP like a
//! browser with a cookie jar and like an API client; plus LDAP's outage answer and the
//! local-login switch.

use crate::harness::{Server, expect_error};
use crate::on_both_backends_in;
use conclave_testkit::TestBackend;
use reqwest::blocking::Client;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub(crate) const CLIENT_SECRET: &str = "e2e-oidc-client-secret-4711";

/// The provider process; killed on drop.
pub(crate) struct Provider {
    child: Child,
    pub(crate) issuer: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn oidc_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/oidc")
}

pub(crate) fn start_provider(conclave_url: &str) -> Provider {
    let dir = oidc_dir();
    if !dir.join("node_modules/oidc-provider").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm (apt-get install nodejs npm)");
        assert!(status.success(), "npm ci in tests/oidc failed");
    }
    let mut child = Command::new("node")
        .arg("op.mjs")
        .current_dir(&dir)
        .env("PORT", "0")
        .env("CLIENT_SECRET", CLIENT_SECRET)
        .env(
            "REDIRECT_URI",
            format!(
                "{conclave_url}/api/v1/auth/oidc/test/callback,{conclave_url}/api/v1/auth/oidc/test-userinfo/callback"
            ),
        )
        .env("POST_LOGOUT_URI", format!("{conclave_url}/"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let issuer = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(issuer) = line.strip_prefix("OP ready ") {
                    break issuer.trim().to_owned();
                }
            }
            _ => panic!("the OpenID provider did not start"),
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Provider { child, issuer }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A browser: cookies kept, redirects followed by hand so each hop can be seen.
fn browser() -> Client {
    Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn location(response: &reqwest::blocking::Response) -> String {
    let base = response.url().clone();
    let raw = response.headers()["location"].to_str().unwrap();
    base.join(raw).unwrap().to_string()
}

/// Follows the provider's redirects (logging `login_hint` in) until the next hop is
/// Conclave's callback; returns the callback URL without fetching it.
fn through_provider(
    browser: &Client,
    authorization_url: &str,
    user: &str,
    callback_prefix: &str,
) -> String {
    let mut url = format!("{authorization_url}&login_hint={user}");
    for _ in 0..20 {
        let response = browser.get(&url).send().unwrap();
        if !response.status().is_redirection() {
            let status = response.status();
            panic!("{url}: {status}: {}", response.text().unwrap_or_default());
        }
        url = location(&response);
        if url.starts_with(callback_prefix) {
            return url;
        }
    }
    panic!("the flow never reached the callback");
}

fn cookie_value(response: &reqwest::blocking::Response, name: &str) -> Option<String> {
    response
        .cookies()
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

fn oidc_single_sign_on(backend: TestBackend) {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let provider = start_provider(&url);
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("conclave.toml");
    std::fs::write(
        &config,
        format!(
            r#"[[identity.oidc]]
id = "test"
display_name = "Test Agency SSO"
issuer = "{issuer}"
client_id = "conclave"
client_secret = "{CLIENT_SECRET}"
scopes = ["email", "profile", "groups"]
[identity.oidc.role_mappings]
conclave-admins = ["admin"]

[[identity.oidc]]
id = "test-userinfo"
display_name = "Test SSO, userinfo"
issuer = "{issuer}"
client_id = "conclave"
client_secret = "{CLIENT_SECRET}"
scopes = ["email", "profile", "groups"]
use_userinfo = true
[identity.oidc.claims]
groups = "userinfo_groups"
[identity.oidc.role_mappings]
auditors = ["auditor"]

[[identity.oidc]]
id = "down"
display_name = "A provider that is down"
issuer = "http://127.0.0.1:{down}"
client_id = "conclave"
client_secret = "unused"
timeout_seconds = 2

[identity.ldap]
url = "ldap://127.0.0.1:{closed}"
bind_dn = "cn=admin,dc=example,dc=gov"
bind_password = "e2e-bind-password-0815"
user_base_dn = "ou=people,dc=example,dc=gov"
connect_timeout_seconds = 2
operation_timeout_seconds = 2
sync_interval_minutes = 0
"#,
            issuer = provider.issuer,
            closed = free_port(),
            down = free_port(),
        ),
    )
    .unwrap();
    let server = Server::start_with(
        backend,
        &[
            ("CONCLAVE_BIND", &format!("127.0.0.1:{port}")),
            ("CONCLAVE_PUBLIC_URL", &url),
            ("CONCLAVE_CONFIG", config.to_str().unwrap()),
            ("CONCLAVE_SESSIONS__SECURE_COOKIES", "false"),
        ],
    );
    let callback = format!("{url}/api/v1/auth/oidc/test/callback");

    // The login page's options.
    let providers: Value = server.get("/api/v1/auth/providers", None).json().unwrap();
    assert_eq!(providers["oidc"][0]["id"], "test");
    assert_eq!(providers["oidc"][0]["display_name"], "Test Agency SSO");
    assert_eq!(
        (providers["ldap"].as_bool(), providers["local"].as_bool()),
        (Some(true), Some(true))
    );

    // A browser signs in: redirect out, provider, callback, session cookie, back home.
    let alice_browser = browser();
    let start = alice_browser
        .get(format!(
            "{url}/api/v1/auth/oidc/test/login?return_to=/rooms/42"
        ))
        .send()
        .unwrap();
    assert_eq!(start.status(), 302);
    let authorize = location(&start);
    assert!(authorize.starts_with(&provider.issuer), "{authorize}");
    for param in [
        "code_challenge_method=S256",
        "state=",
        "nonce=",
        "code_challenge=",
    ] {
        assert!(
            authorize.contains(param),
            "{param} missing from {authorize}"
        );
    }
    let callback_url = through_provider(&alice_browser, &authorize, "alice", &callback);
    // Delivered to another browser (login CSRF), the callback is refused.
    let stranger = browser().get(&callback_url).send().unwrap();
    expect_error(stranger, 401, "unauthenticated");
    let landed = alice_browser.get(&callback_url).send().unwrap();
    assert_eq!(landed.status(), 302);
    assert_eq!(landed.headers()["location"], "/rooms/42");
    let token = cookie_value(&landed, "conclave_session").expect("a session cookie");
    assert!(cookie_value(&landed, "conclave_csrf").is_some());
    let me: Value = server.get("/api/v1/me", Some(&token)).json().unwrap();
    assert_eq!(me["username"], "alice");
    assert_eq!(me["display_name"], "Alice Anders");
    assert_eq!(me["email"], "alice@example.gov");
    assert_eq!(me["auth_source"], "oidc");
    assert!(
        me["roles"].as_array().unwrap().contains(&json!("admin")),
        "{me}"
    );
    // The cookie works as the browser's credential too.
    let via_cookie = alice_browser
        .get(format!("{url}/api/v1/me"))
        .send()
        .unwrap();
    assert_eq!(via_cookie.status(), 200);
    // The callback is used once.
    expect_error(
        alice_browser.get(&callback_url).send().unwrap(),
        401,
        "unauthenticated",
    );

    // A provider configured to read userinfo: its groups claim is there only.
    let erin = browser();
    let start = erin
        .get(format!("{url}/api/v1/auth/oidc/test-userinfo/login"))
        .send()
        .unwrap();
    let callback_userinfo = format!("{url}/api/v1/auth/oidc/test-userinfo/callback");
    let callback_url = through_provider(&erin, &location(&start), "erin", &callback_userinfo);
    let landed = erin.get(&callback_url).send().unwrap();
    assert_eq!(landed.status(), 302);
    let erin_token = cookie_value(&landed, "conclave_session").unwrap();
    let me_erin: Value = server.get("/api/v1/me", Some(&erin_token)).json().unwrap();
    assert_eq!(me_erin["roles"], json!(["user", "auditor"]), "{me_erin}");

    // The person refuses at the provider: the callback says so and the flow is spent.
    let refusing = browser();
    let start = refusing
        .get(format!("{url}/api/v1/auth/oidc/test/login"))
        .send()
        .unwrap();
    let state = reqwest::Url::parse(&location(&start))
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let refused = refusing
        .get(format!("{callback}?error=access_denied&state={state}"))
        .send()
        .unwrap();
    let message = expect_error(refused, 401, "unauthenticated");
    assert!(message.contains("access_denied"), "{message}");
    let again = refusing
        .get(format!("{callback}?code=x&state={state}"))
        .send()
        .unwrap();
    expect_error(again, 401, "unauthenticated");
    // A provider that cannot be reached: 503, not a 500 or a hang.
    let down = browser()
        .get(format!("{url}/api/v1/auth/oidc/down/login"))
        .send()
        .unwrap();
    expect_error(down, 503, "directory_unavailable");
    expect_error(
        server.get("/api/v1/auth/oidc/nope/login", None),
        404,
        "not_found",
    );

    // An API client: start with its loopback redirect (nothing else), the person signs
    // in in a browser, which is sent to that loopback address with the code; exchange once.
    expect_error(
        server.send(
            "POST",
            "/api/v1/auth/oidc/test/start",
            None,
            Some(json!({ "redirect_uri": "https://attacker.example/cb" })),
        ),
        422,
        "invalid_input",
    );
    let started: Value = server
        .send(
            "POST",
            "/api/v1/auth/oidc/test/start",
            None,
            Some(json!({ "redirect_uri": "http://127.0.0.1:9/callback" })),
        )
        .json()
        .unwrap();
    let bob_browser = browser();
    let callback_url = through_provider(
        &bob_browser,
        started["authorization_url"].as_str().unwrap(),
        "bob",
        &callback,
    );
    let done = bob_browser.get(&callback_url).send().unwrap();
    assert_eq!(done.status(), 303);
    let landed = url::Url::parse(&location(&done)).unwrap();
    assert_eq!(landed.host_str(), Some("127.0.0.1"));
    let code = landed
        .query_pairs()
        .find(|(key, _)| key == "code")
        .map(|(_, value)| value.into_owned())
        .expect("the exchange code travels to the loopback redirect");
    // Whoever started the flow cannot exchange it without the code that went to the
    // signing-in person's machine (a phished sign-in gives the phisher nothing), nor with
    // a guessed secret.
    for (secret, code) in [
        (started["flow_secret"].clone(), json!("")),
        (json!("guess"), json!(code)),
    ] {
        let wrong = server.send(
            "POST",
            "/api/v1/auth/oidc/exchange",
            None,
            Some(json!({ "state": started["state"], "flow_secret": secret, "code": code })),
        );
        expect_error(wrong, 401, "unauthenticated");
    }
    let exchange =
        json!({ "state": started["state"], "flow_secret": started["flow_secret"], "code": code });
    let response = server.send(
        "POST",
        "/api/v1/auth/oidc/exchange",
        None,
        Some(exchange.clone()),
    );
    assert_eq!(response.status(), 200);
    let login: Value = response.json().unwrap();
    assert_eq!(login["user"]["username"], "bob");
    assert_eq!(login["user"]["roles"], json!(["user"]));
    let bob_token = login["token"].as_str().unwrap().to_owned();
    assert_eq!(server.get("/api/v1/me", Some(&bob_token)).status(), 200);
    expect_error(
        server.send("POST", "/api/v1/auth/oidc/exchange", None, Some(exchange)),
        401,
        "unauthenticated",
    );

    // Signing in again finds the same account.
    let again = browser();
    let start = again
        .get(format!("{url}/api/v1/auth/oidc/test/login"))
        .send()
        .unwrap();
    let callback_url = through_provider(&again, &location(&start), "alice", &callback);
    let landed = again.get(&callback_url).send().unwrap();
    assert_eq!(landed.headers()["location"], "/");
    let token2 = cookie_value(&landed, "conclave_session").unwrap();
    let me2: Value = server.get("/api/v1/me", Some(&token2)).json().unwrap();
    assert_eq!(me2["id"], me["id"]);

    // A username already held by another account is never linked: 409, nothing made.
    let admin = server.admin_token();
    let local = server.send(
        "POST",
        "/api/v1/admin/users",
        Some(&admin),
        Some(json!({ "username": "carol", "display_name": "Local Carol" })),
    );
    assert_eq!(local.status(), 201);
    let carol = browser();
    let start = carol
        .get(format!("{url}/api/v1/auth/oidc/test/login"))
        .send()
        .unwrap();
    let callback_url = through_provider(&carol, &location(&start), "carol", &callback);
    let message = expect_error(carol.get(&callback_url).send().unwrap(), 409, "conflict");
    assert!(message.contains("carol"), "{message}");

    // Logout ends the session here and names the provider's end-session endpoint.
    let response = server.send("POST", "/api/v1/auth/logout", Some(&token), None);
    assert_eq!(response.status(), 200);
    let logout: Value = response.json().unwrap();
    let end = logout["end_session_url"].as_str().unwrap();
    assert!(
        end.starts_with(&provider.issuer) && end.contains("client_id=conclave"),
        "{end}"
    );
    expect_error(
        server.get("/api/v1/me", Some(&token)),
        401,
        "unauthenticated",
    );
    // A local login's logout has nothing to end elsewhere.
    assert_eq!(
        server
            .send("POST", "/api/v1/auth/logout", Some(&admin), None)
            .status(),
        204
    );

    // An unreachable directory: 503 with a clear message, not a 500 or a hang.
    let message = expect_error(
        server.send(
            "POST",
            "/api/v1/auth/ldap/login",
            None,
            Some(json!({"username": "alice", "password": "pw"})),
        ),
        503,
        "directory_unavailable",
    );
    assert!(message.contains("directory is unavailable"), "{message}");

    // Local login limited to break-glass accounts: the first admin still gets in.
    let (admin, _) = server.login("admin", crate::harness::ADMIN_PASSWORD);
    let created: Value = server
        .send(
            "POST",
            "/api/v1/admin/users",
            Some(&admin),
            Some(json!({
                "username": "dave", "display_name": "Dave", "password": "a long enough password"
            })),
        )
        .json()
        .unwrap();
    assert_eq!(created["user"]["break_glass"], false);
    let response = server.send(
        "PUT",
        "/api/v1/admin/identity/local-login",
        Some(&admin),
        Some(json!({"enabled_for_everyone": false})),
    );
    assert_eq!(response.status(), 200);
    let message = expect_error(
        server.send(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"username": "dave", "password": "a long enough password"})),
        ),
        403,
        "forbidden",
    );
    assert!(message.contains("single sign-on"), "{message}");
    server.login("admin", crate::harness::ADMIN_PASSWORD);
    let providers: Value = server.get("/api/v1/auth/providers", None).json().unwrap();
    assert_eq!(providers["local"], false);

    // Every login, provisioning and setting change is in the audit log; no secret is
    // in the server's log.
    let mut conn = server.db().conn().unwrap();
    let actions: Vec<String> = conclave_store::audit::list_after(&mut conn, 0, 10_000)
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    for action in [
        "user.provision",
        "auth.login",
        "auth.sso_verified",
        "identity.local_login_change",
        "user.break_glass_change",
    ] {
        assert!(actions.iter().any(|a| a == action), "{action} not audited");
    }
    let log = server.stderr();
    for secret in [
        CLIENT_SECRET,
        "e2e-bind-password-0815",
        token.as_str(),
        bob_token.as_str(),
        started["flow_secret"].as_str().unwrap(),
    ] {
        assert!(!log.contains(secret), "a secret leaked into the log");
    }
}

fn identity_config_is_checked_by_config_check() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("conclave.toml");
    std::fs::write(
        &file,
        "[[identity.oidc]]\nid = \"entra\"\ndisplay_name = \"Entra ID\"\nissuer = \"https://login.microsoftonline.com/tid/v2.0\"\nclient_id = \"c\"\nclient_secret = \"s\"\n",
    )
    .unwrap();
    let output = crate::harness::conclave(dir.path())
        .args(["--config", file.to_str().unwrap(), "config", "check"])
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("oidc:      entra"));
    std::fs::write(
        &file,
        "[identity.ldap]\nurl = \"ldap://dc1:389\"\nuser_base_dn = \"dc=x\"\npage_size = 0\n",
    )
    .unwrap();
    let output = crate::harness::conclave(dir.path())
        .args(["--config", file.to_str().unwrap(), "config", "check"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("identity.ldap.page_size"));
}

#[test]
fn identity_configuration_is_checked() {
    identity_config_is_checked_by_config_check();
}

on_both_backends_in!(sso_scenarios: oidc_single_sign_on);

fn ldap_login(server: &Server, username: &str, password: &str) -> reqwest::blocking::Response {
    server.send(
        "POST",
        "/api/v1/auth/ldap/login",
        None,
        Some(json!({ "username": username, "password": password })),
    )
}

/// The directory through the binary: `conclave ldap sync` (dry run, then real), LDAP
/// login, and the admin endpoint's sync deprovisioning a person who left: their session
/// and open WebSocket end at once.
fn directory_sync_through_the_binary(backend: TestBackend) {
    let slapd = conclave_testkit::slapd::Slapd::start();
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("conclave.toml");
    std::fs::write(
        &config,
        format!(
            r#"[identity.ldap]
url = "{url}"
bind_dn = "{dn}"
user_base_dn = "ou=people,{suffix}"
sync_interval_minutes = 0
[identity.ldap.role_mappings]
"cn=conclave-admins,ou=groups,{suffix}" = ["admin"]
"#,
            url = slapd.url(),
            dn = conclave_testkit::slapd::ADMIN_DN,
            suffix = conclave_testkit::slapd::SUFFIX,
        ),
    )
    .unwrap();
    // The bind password comes from the environment, not the file.
    let env = [
        ("CONCLAVE_CONFIG", config.to_str().unwrap()),
        (
            "CONCLAVE_IDENTITY__LDAP__BIND_PASSWORD",
            conclave_testkit::slapd::ADMIN_PASSWORD,
        ),
    ];
    let server = Server::start_with(backend, &env);
    let sync = |args: &[&str]| {
        let mut cmd = crate::harness::conclave(&server.data_dir());
        cmd.env("CONCLAVE_DATABASE__URL", server.database_url());
        for (key, value) in env {
            cmd.env(key, value);
        }
        cmd.args(["ldap", "sync"]).args(args).output().unwrap()
    };
    let admin = server.admin_token();

    let dry = sync(&["--dry-run", "--json"]);
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let report: Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["created"], 3);
    let users: Value = server
        .get("/api/v1/admin/users", Some(&admin))
        .json()
        .unwrap();
    assert_eq!(
        users["users"].as_array().unwrap().len(),
        1,
        "the dry run created nobody"
    );

    let real = sync(&[]);
    assert!(
        real.status.success(),
        "{}",
        String::from_utf8_lossy(&real.stderr)
    );
    assert!(String::from_utf8_lossy(&real.stdout).contains("created 3"));
    let users: Value = server
        .get("/api/v1/admin/users", Some(&admin))
        .json()
        .unwrap();
    assert_eq!(users["users"].as_array().unwrap().len(), 4);

    // Directory logins.
    let response = ldap_login(&server, "alice", "alicepw");
    assert_eq!(response.status(), 200);
    let alice: Value = response.json().unwrap();
    assert_eq!(alice["user"]["auth_source"], "ldap");
    assert!(
        alice["user"]["roles"]
            .as_array()
            .unwrap()
            .contains(&json!("admin"))
    );
    expect_error(
        ldap_login(&server, "alice", "wrong"),
        401,
        "invalid_credentials",
    );
    expect_error(
        ldap_login(&server, "*)(uid=*", "alicepw"),
        401,
        "invalid_credentials",
    );
    let response = ldap_login(&server, "bob", "bobpw");
    assert_eq!(response.status(), 200);
    let bob: Value = response.json().unwrap();
    let bob_token = bob["token"].as_str().unwrap().to_owned();
    expect_error(
        server.send(
            "POST",
            "/api/v1/admin/directory/sync",
            Some(&bob_token),
            Some(json!({})),
        ),
        403,
        "forbidden",
    );
    let mut ws = server.websocket(&bob_token);

    // Bob leaves; the admin's sync deprovisions him at once.
    slapd.delete("uid=bob,ou=people,dc=example,dc=gov");
    let response = server.send(
        "POST",
        "/api/v1/admin/directory/sync",
        Some(&admin),
        Some(json!({"dry_run": false})),
    );
    assert_eq!(response.status(), 200);
    let report: Value = response.json().unwrap();
    assert_eq!(report["deprovisioned"], 1, "{report}");
    // The run is the status's latest, as the audit log recorded it.
    let status: Value = server
        .get("/api/v1/admin/directory/sync", Some(&admin))
        .json()
        .unwrap();
    assert_eq!(status["configured"], true, "{status}");
    assert_eq!(status["runs"][0]["outcome"], "success", "{status}");
    assert_eq!(status["runs"][0]["report"]["deprovisioned"], 1, "{status}");
    assert_eq!(status["runs"][0]["report"]["dry_run"], false, "{status}");
    expect_error(
        server.get("/api/v1/admin/directory/sync", Some(&bob_token)),
        401,
        "unauthenticated",
    );
    let code = loop {
        match ws.socket.read() {
            Ok(tungstenite::Message::Close(Some(frame))) => break u16::from(frame.code),
            Ok(tungstenite::Message::Close(None)) => break 1005,
            Ok(_) => continue,
            Err(err) => panic!("the WebSocket ended without a close frame: {err}"),
        }
    };
    assert_eq!(code, 1008, "closed as a policy matter: the session ended");
    expect_error(
        server.get("/api/v1/me", Some(&bob_token)),
        401,
        "unauthenticated",
    );
    expect_error(
        ldap_login(&server, "bob", "bobpw"),
        401,
        "invalid_credentials",
    );
    let user: Value = server
        .get(
            &format!(
                "/api/v1/admin/users/{}",
                bob["user"]["id"].as_str().unwrap()
            ),
            Some(&admin),
        )
        .json()
        .unwrap();
    assert_eq!(user["status"], "deprovisioned");
}

on_both_backends_in!(directory_scenarios: directory_sync_through_the_binary);
