//! The Conclave side of the bench: its public HTTP API (admin user creation, local
//! password login, password change, rooms, message sends) and its WebSocket at
//! `/api/v1/ws`. Nothing here reaches into the server's crates: the bench is a client.

use crate::error::BenchError;
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use uuid::Uuid;

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A logged-in account.
#[derive(Clone, Debug)]
pub struct Account {
    /// The user's id as the server writes it.
    pub id: String,
    pub token: String,
}

#[derive(Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct LoginResponse {
    token: String,
    password_change_required: bool,
    user: UserView,
}

#[derive(Deserialize)]
struct UserView {
    id: Uuid,
}

#[derive(Deserialize)]
struct CreatedUser {
    one_time_password: Option<String>,
}

impl Client {
    pub fn new(base: &str, request_timeout: Duration) -> Result<Self, BenchError> {
        let http = reqwest::Client::builder()
            .timeout(request_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|err| BenchError::Setup(format!("HTTP client: {err}")))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<Value, BenchError> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(BenchError::transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(BenchError::transport)?;
        if !status.is_success() {
            let code = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
                .unwrap_or_default();
            return Err(BenchError::Status {
                status: status.as_u16(),
                code,
                path: path.to_owned(),
            });
        }
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes)
            .map_err(|err| BenchError::Protocol(format!("{path}: unreadable response: {err}")))
    }

    fn parse<T: serde::de::DeserializeOwned>(value: Value, what: &str) -> Result<T, BenchError> {
        serde_json::from_value(value)
            .map_err(|err| BenchError::Protocol(format!("{what}: unexpected response: {err}")))
    }

    /// Logs in with a local password. An account that must choose a new password (a
    /// one-time password, the first admin) gets `new_password` set, when given.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        new_password: Option<&str>,
    ) -> Result<Account, BenchError> {
        let login: LoginResponse = Self::parse(
            self.call(
                reqwest::Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"username": username, "password": password})),
            )
            .await?,
            "login",
        )?;
        if login.password_change_required {
            let Some(new_password) = new_password else {
                return Err(BenchError::Setup(format!(
                    "{username} must change its password first"
                )));
            };
            self.call(
                reqwest::Method::POST,
                "/api/v1/me/password",
                Some(&login.token),
                Some(json!({"current_password": password, "new_password": new_password})),
            )
            .await?;
        }
        Ok(Account {
            id: login.user.id.to_string(),
            token: login.token,
        })
    }

    /// Creates a user through the admin API and logs in as it (choosing its password).
    pub async fn provision_user(&self, admin: &str, username: &str) -> Result<Account, BenchError> {
        let created: CreatedUser = Self::parse(
            self.call(
                reqwest::Method::POST,
                "/api/v1/admin/users",
                Some(admin),
                Some(json!({"username": username, "display_name": username})),
            )
            .await?,
            "create user",
        )?;
        let one_time = created
            .one_time_password
            .ok_or_else(|| BenchError::Protocol("no one-time password for a new user".into()))?;
        self.login(
            username,
            &one_time,
            Some(&format!("{username} bench passphrase")),
        )
        .await
    }

    /// Creates a room owned by `owner` with `members` besides; returns its id.
    pub async fn create_room(
        &self,
        owner: &str,
        name: &str,
        members: &[String],
    ) -> Result<String, BenchError> {
        let created = self
            .call(
                reqwest::Method::POST,
                "/api/v1/rooms",
                Some(owner),
                Some(json!({"name": name, "member_ids": members})),
            )
            .await?;
        created["room"]["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| BenchError::Protocol("room creation returned no id".into()))
    }

    /// Sends a message; returns its id once the server acknowledged (committed) it.
    pub async fn send(
        &self,
        token: &str,
        room: &str,
        idempotency_key: &str,
        text: &str,
    ) -> Result<Uuid, BenchError> {
        let sent = self
            .call(
                reqwest::Method::POST,
                &format!("/api/v1/rooms/{room}/messages"),
                Some(token),
                Some(json!({"text": text, "idempotency_key": idempotency_key})),
            )
            .await?;
        sent["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .ok_or_else(|| BenchError::Protocol("a send returned no message id".into()))
    }

    /// Opens the WebSocket as `token`'s holder and waits for the server's `ready` frame,
    /// after which every new event of the account's rooms is delivered.
    pub async fn connect(&self, token: &str, timeout: Duration) -> Result<Socket, BenchError> {
        use futures_util::StreamExt;
        let url = format!(
            "{}/api/v1/ws",
            self.base
                .replacen("http://", "ws://", 1)
                .replacen("https://", "wss://", 1)
        );
        let mut request = url
            .into_client_request()
            .map_err(|err| BenchError::Setup(format!("WebSocket URL: {err}")))?;
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {token}")
                .parse()
                .map_err(|_| BenchError::Setup("token is not a header value".into()))?,
        );
        let opened = tokio::time::timeout(timeout, async {
            let (mut socket, _) = tokio_tungstenite::connect_async(request)
                .await
                .map_err(|err| BenchError::WebSocket(err.to_string()))?;
            while let Some(frame) = socket.next().await {
                let frame = frame.map_err(|err| BenchError::WebSocket(err.to_string()))?;
                if let tokio_tungstenite::tungstenite::Message::Text(text) = frame
                    && serde_json::from_str::<Value>(&text).is_ok_and(|v| v["type"] == "ready")
                {
                    return Ok(socket);
                }
            }
            Err(BenchError::WebSocket("closed before ready".into()))
        })
        .await;
        opened.unwrap_or_else(|_| Err(BenchError::WebSocket("no ready frame in time".into())))
    }
}

/// A message event on the WebSocket: its message id and text, if it is one.
pub fn message_created(frame: &str) -> Option<(Uuid, String)> {
    #[derive(Deserialize)]
    struct Envelope {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        data: Option<Data>,
    }
    #[derive(Deserialize)]
    struct Data {
        message: Option<Message>,
    }
    #[derive(Deserialize)]
    struct Message {
        id: Uuid,
        text: Option<String>,
    }
    let envelope: Envelope = serde_json::from_str(frame).ok()?;
    if envelope.kind != "message.created" {
        return None;
    }
    let message = envelope.data?.message?;
    Some((message.id, message.text?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_message_events_only() {
        let id = Uuid::new_v4();
        let frame = json!({"type": "message.created", "room_id": Uuid::new_v4(), "seq": 3,
            "data": {"message": {"id": id, "text": "bench:x:1:5", "seq": 1}, "actor_id": Uuid::new_v4()}});
        assert_eq!(
            message_created(&frame.to_string()),
            Some((id, "bench:x:1:5".to_owned()))
        );
        let edited =
            json!({"type": "message.edited", "data": {"message": {"id": id, "text": "x"}}});
        assert_eq!(message_created(&edited.to_string()), None);
        assert_eq!(message_created("{\"type\":\"pong\"}"), None);
        assert_eq!(message_created("not json"), None);
    }
}
