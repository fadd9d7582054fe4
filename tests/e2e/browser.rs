//! The web client in a real browser: `tests/browser/chat.mjs` (playwright-core driving
//! Debian's Chromium) against the real binary. Chromium and the npm package are required:
//! a machine without them fails this test with what to install, never skips it.
//! Screenshots of a failure are kept under `target/browser-artifacts/`.

use crate::harness::Server;
use conclave_testkit::TestBackend;
use std::path::{Path, PathBuf};
use std::process::Command;

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser")
}

/// The Chromium to drive: `$CHROMIUM`, else Debian's.
fn chromium() -> String {
    let path = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(
        Path::new(&path).exists(),
        "the browser tests need Chromium at {path}: `apt-get install -y chromium chromium-driver` \
         (or set CHROMIUM to its path)"
    );
    path
}

fn artifacts_dir() -> PathBuf {
    // The workspace's target dir (CARGO_TARGET_DIR when set).
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    );
    target.join("browser-artifacts")
}

/// Runs one script of `tests/browser` with the server's URL and accounts; fails with its
/// output (and the screenshots' paths) when any scenario fails.
fn run_script(script: &str, server: &Server, env: &[(&str, &str)]) {
    let dir = browser_dir();
    let chromium = chromium();
    // Both browser tests may get here at once; two `npm ci` in one directory fail.
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let installing = INSTALL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if !dir.join("node_modules/playwright-core").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm (apt-get install nodejs npm)");
        assert!(status.success(), "npm ci in tests/browser failed");
    }
    drop(installing);
    let output = Command::new("node")
        .arg(script)
        .current_dir(&dir)
        .env("CONCLAVE_URL", &server.url)
        .env("CHROMIUM", chromium)
        .env("ARTIFACTS_DIR", artifacts_dir())
        .envs(env.iter().copied())
        .output()
        .expect("node (apt-get install nodejs)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "browser scenarios failed ({}):\n{stdout}\n{stderr}\nserver log: {}",
        output.status,
        server.stderr_path.display()
    );
    assert!(
        !stdout.contains("FAILED") && stdout.contains("ok - "),
        "{stdout}"
    );
}

#[test]
fn web_client_and_admin_console_in_chromium() {
    let server = Server::start(TestBackend::Sqlite);
    let admin = server.admin_token();
    server.user_with_roles(&admin, "alice", &[]);
    server.user_with_roles(&admin, "bob", &[]);
    server.user_with_roles(&admin, "carol", &["compliance_officer", "auditor"]);
    run_script(
        "chat.mjs",
        &server,
        &[
            ("ADMIN_TOKEN", &admin),
            ("ADMIN_PASSWORD", crate::harness::ADMIN_PASSWORD),
            ("CAROL_PASSWORD", "carol's own passphrase"),
            ("ALICE_PASSWORD", "alice's own passphrase"),
            ("BOB_PASSWORD", "bob's own passphrase"),
        ],
    );
}

#[test]
fn single_sign_on_in_chromium() {
    use crate::sso::{CLIENT_SECRET, free_port, start_provider};
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
"#,
            issuer = provider.issuer,
        ),
    )
    .unwrap();
    let server = Server::start_with(
        TestBackend::Sqlite,
        &[
            ("CONCLAVE_BIND", &format!("127.0.0.1:{port}")),
            ("CONCLAVE_PUBLIC_URL", &url),
            ("CONCLAVE_CONFIG", config.to_str().unwrap()),
        ],
    );
    run_script("sso.mjs", &server, &[("ISSUER", &provider.issuer)]);
}
