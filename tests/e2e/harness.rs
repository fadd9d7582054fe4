//! Boots the real `conclave` binary on a free port with its own data directory and
//! database, and talks HTTP to it.

use conclave_testkit::{TestBackend, TestDb};
use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_conclave");

/// A `conclave` command with a clean environment: no `CONCLAVE_*` from the caller.
pub fn conclave(data_dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("CONCLAVE_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("CONCLAVE_DATA_DIR", data_dir).current_dir(data_dir);
    cmd
}

pub struct Server {
    child: Child,
    pub url: String,
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub stderr_path: PathBuf,
    /// Kept for the server's lifetime; removed on drop.
    _data_dir: tempfile::TempDir,
    pub database: TestDb,
    client: Client,
}

impl Server {
    pub fn start(backend: TestBackend) -> Self {
        Self::start_with(backend, &[])
    }

    pub fn start_with(backend: TestBackend, env: &[(&str, &str)]) -> Self {
        let database = TestDb::new(backend);
        let data_dir = tempfile::tempdir().unwrap();
        let stderr_path = data_dir.path().join("server.log");
        let mut cmd = conclave(data_dir.path());
        cmd.args(["serve", "--bind", "127.0.0.1:0"])
            .env("CONCLAVE_DATABASE__URL", &database.url)
            .env("CONCLAVE_LOG__FORMAT", "json")
            .env("CONCLAVE_LOG__LEVEL", "info")
            .env("CONCLAVE_HTTP__WORKERS", "2")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap());
        for (key, value) in env {
            cmd.env(key, value);
        }
        let mut child = cmd.spawn().expect("spawn conclave");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let (url_tx, url_rx) = mpsc::channel();
        let reader = BufReader::new(child.stdout.take().unwrap());
        let lines = Arc::clone(&stdout);
        std::thread::spawn(move || {
            for line in reader.lines().map_while(Result::ok) {
                if let Some(url) = line.trim().strip_prefix("Conclave is serving at ") {
                    let _ = url_tx.send(url.to_owned());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let url = match url_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "conclave did not start; stderr:\n{}",
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            }
        };
        let client = Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let server = Self {
            child,
            url,
            stdout,
            stderr_path,
            _data_dir: data_dir,
            database,
            client,
        };
        server.wait_for_banner_end();
        server
    }

    fn wait_for_banner_end(&self) {
        for _ in 0..200 {
            if self
                .stdout
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("Log in with"))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The one-time admin password the first start printed.
    pub fn first_admin_password(&self) -> String {
        self.stdout
            .lock()
            .unwrap()
            .iter()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("one-time password:")
                    .map(|p| p.trim().to_owned())
            })
            .expect("a one-time password in the banner")
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> Response {
        let mut req = self.client.get(format!("{}{path}", self.url));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send().unwrap()
    }

    pub fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.client.request(method, format!("{}{path}", self.url));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().unwrap()
    }

    pub fn client_raw_with_token(
        &self,
        method: &str,
        path: &str,
        token: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Response {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        self.client
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .unwrap()
    }

    /// Logs in and returns the token, panicking on failure.
    pub fn login(&self, username: &str, password: &str) -> (String, Value) {
        let response = self.send(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({ "username": username, "password": password })),
        );
        assert_eq!(response.status(), 200, "login as {username} failed");
        let body: Value = response.json().unwrap();
        (body["token"].as_str().unwrap().to_owned(), body)
    }

    /// Logs in as the first admin and sets a real password; returns the admin's token.
    pub fn admin_token(&self) -> String {
        let (token, _) = self.login("admin", &self.first_admin_password());
        let response = self.send(
            "POST",
            "/api/v1/me/password",
            Some(&token),
            Some(json!({ "current_password": self.first_admin_password(), "new_password": ADMIN_PASSWORD })),
        );
        assert_eq!(response.status(), 204);
        token
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("conclave did not exit within 15 s of SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const ADMIN_PASSWORD: &str = "a long admin passphrase";

/// Asserts the one JSON error shape with the given status and code, and that the body's
/// request id is the response header's. Returns the message.
pub fn expect_error(response: Response, status: u16, code: &str) -> String {
    assert_eq!(response.status().as_u16(), status, "wrong status");
    let header_id = response
        .headers()
        .get("x-request-id")
        .expect("x-request-id header")
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().expect("a JSON error body");
    let error = body
        .get("error")
        .unwrap_or_else(|| panic!("no error object in {body}"));
    assert_eq!(error["code"], code, "{body}");
    assert_eq!(error["request_id"], header_id.as_str(), "{body}");
    let message = error["message"].as_str().expect("a message").to_owned();
    assert!(!message.is_empty());
    message
}
