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
    /// Kept for the server's lifetime when the harness made them; removed on drop.
    _data_dir: Option<tempfile::TempDir>,
    database: Option<TestDb>,
    client: Client,
}

impl Server {
    pub fn start(backend: TestBackend) -> Self {
        Self::start_with(backend, &[])
    }

    pub fn start_with(backend: TestBackend, env: &[(&str, &str)]) -> Self {
        let database = TestDb::new(backend);
        let data_dir = tempfile::tempdir().unwrap();
        let mut server =
            Self::start_at(data_dir.path(), Some(&database.url), env).expect("conclave starts");
        server._data_dir = Some(data_dir);
        server.database = Some(database);
        server
    }

    /// Starts `conclave serve` in `data_dir` (its SQLite database unless `database_url`
    /// names another); on failure returns the exit status and stderr.
    pub fn start_at(
        data_dir: &Path,
        database_url: Option<&str>,
        env: &[(&str, &str)],
    ) -> Result<Self, (std::process::ExitStatus, String)> {
        let stderr_path = data_dir.join(format!("server-{}.log", uuid::Uuid::new_v4()));
        let mut cmd = conclave(data_dir);
        if let Some(url) = database_url {
            cmd.env("CONCLAVE_DATABASE__URL", url);
        }
        // A test that must know the port before start (an OIDC redirect URI) names it.
        let bind = env
            .iter()
            .find(|(key, _)| *key == "CONCLAVE_BIND")
            .map_or("127.0.0.1:0", |(_, value)| *value);
        cmd.args(["serve", "--bind", bind])
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
                let status = child.try_wait().ok().flatten();
                let _ = child.kill();
                let status = status.unwrap_or_else(|| child.wait().unwrap());
                return Err((
                    status,
                    std::fs::read_to_string(&stderr_path).unwrap_or_default(),
                ));
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
            _data_dir: None,
            database: None,
            client,
        };
        server.wait_for_banner_end();
        Ok(server)
    }

    /// The data directory (the harness's own, or the one given to `start_at`).
    pub fn data_dir(&self) -> PathBuf {
        self.stderr_path.parent().unwrap().to_path_buf()
    }

    /// The test database the harness made for this server.
    pub fn db(&self) -> &conclave_store::Db {
        &self.database.as_ref().expect("a harness-made database").db
    }

    pub fn database_url(&self) -> &str {
        &self.database.as_ref().expect("a harness-made database").url
    }

    /// Opens a WebSocket as the holder of `token`.
    pub fn websocket(&self, token: &str) -> Ws {
        self.websocket_resuming(token, &[])
    }

    /// Opens a WebSocket that resumes each `(room, last seen event seq)`.
    pub fn websocket_resuming(&self, token: &str, positions: &[(&str, i64)]) -> Ws {
        let resume: Vec<String> = positions
            .iter()
            .map(|(room, seq)| format!("{room}:{seq}"))
            .collect();
        let (request, stream) =
            self.websocket_request(&format!("?resume={}", resume.join(",")), Some(token));
        let (socket, _) = tungstenite::client(request, stream).expect("WebSocket handshake");
        Ws { socket }
    }

    /// The HTTP status of a WebSocket handshake the server refuses (`query` starts with
    /// `?` or is empty); panics if it is accepted.
    pub fn refused_websocket(&self, query: &str, token: Option<&str>) -> u16 {
        let (request, stream) = self.websocket_request(query, token);
        match tungstenite::client(request, stream) {
            Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
                response.status().as_u16()
            }
            other => panic!("the handshake was not refused: {:?}", other.map(|_| ())),
        }
    }

    /// A handshake request for `/api/v1/ws{query}` and a connected stream with a read
    /// timeout, so a missing event fails the test instead of hanging it.
    fn websocket_request(
        &self,
        query: &str,
        token: Option<&str>,
    ) -> (tungstenite::handshake::client::Request, std::net::TcpStream) {
        use tungstenite::client::IntoClientRequest;
        let address = self.url.trim_start_matches("http://");
        let stream = std::net::TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut request = format!("ws://{address}/api/v1/ws{query}")
            .into_client_request()
            .unwrap();
        if let Some(token) = token {
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        (request, stream)
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

    /// Creates a room (`body` as for `POST /api/v1/rooms`) and returns its id.
    pub fn create_room(&self, token: &str, body: Value) -> String {
        let response = self.send("POST", "/api/v1/rooms", Some(token), Some(body));
        assert_eq!(response.status(), 201, "room creation failed");
        let created: Value = response.json().unwrap();
        created["room"]["id"].as_str().unwrap().to_owned()
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

    /// Creates an account with `roles` through the admin API, sets its own password, and
    /// returns its id and a usable token.
    pub fn user_with_roles(&self, admin: &str, username: &str, roles: &[&str]) -> (String, String) {
        let created: Value = self
            .send(
                "POST",
                "/api/v1/admin/users",
                Some(admin),
                Some(json!({"username": username, "display_name": username, "roles": roles})),
            )
            .json()
            .unwrap();
        let one_time = created["one_time_password"].as_str().unwrap();
        let (token, _) = self.login(username, one_time);
        let changed = self.send(
            "POST",
            "/api/v1/me/password",
            Some(&token),
            Some(json!({"current_password": one_time, "new_password": format!("{username}'s own passphrase")})),
        );
        assert_eq!(changed.status(), 204);
        (created["user"]["id"].as_str().unwrap().to_owned(), token)
    }

    /// A `conclave` command against this server's data directory and database.
    pub fn command(&self) -> Command {
        let mut cmd = conclave(&self.data_dir());
        if let Some(database) = &self.database {
            cmd.env("CONCLAVE_DATABASE__URL", &database.url);
        }
        cmd
    }

    /// The server process's id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
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

/// A test's WebSocket connection.
pub struct Ws {
    pub socket: tungstenite::WebSocket<std::net::TcpStream>,
}

impl Ws {
    /// The next JSON frame from the server (pings are answered by tungstenite).
    pub fn next(&mut self) -> Value {
        loop {
            match self.socket.read().expect("a frame before the timeout") {
                tungstenite::Message::Text(text) => return serde_json::from_str(&text).unwrap(),
                tungstenite::Message::Close(frame) => panic!("closed: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// Skips frames until one of type `kind`, and returns it.
    pub fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.next();
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    pub fn send(&mut self, value: Value) {
        self.socket
            .send(tungstenite::Message::Text(value.to_string().into()))
            .unwrap();
    }

    /// No frame arrives within `wait`.
    pub fn expect_silence(&mut self, wait: Duration) {
        // The whole of `wait`: a keep-alive ping is not an event, and must not end the
        // wait early (callers rely on the time having passed).
        let deadline = std::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            self.socket.get_mut().set_read_timeout(Some(left)).unwrap();
            match self.socket.read() {
                Err(tungstenite::Error::Io(err))
                    if matches!(
                        err.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Ok(tungstenite::Message::Ping(_)) | Ok(tungstenite::Message::Pong(_)) => {}
                other => panic!("expected silence, got {other:?}"),
            }
        }
        self.socket
            .get_mut()
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
    }
}

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
