//! The Matrix client-server side of the bench, for a side-by-side run against Synapse:
//! registration (`m.login.dummy`, so the homeserver must allow open registration, as the
//! bench-compare script configures), `createRoom` and `join`, `PUT …/send`, and `/sync`
//! long-polls as the receiving side (Matrix's equivalent of the WebSocket).

use crate::conclave::Account;
use crate::error::BenchError;
use serde_json::{Value, json};
use std::hash::{Hash, Hasher};
use std::time::Duration;
use uuid::Uuid;

#[derive(Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

/// The filter of every `/sync`: room messages only, nothing else the bench ignores.
const SYNC_FILTER: &str = r#"{"presence":{"types":[]},"account_data":{"types":[]},"room":{"state":{"types":[]},"ephemeral":{"types":[]},"account_data":{"types":[]},"timeline":{"types":["m.room.message"],"limit":1000}}}"#;

/// A 128-bit key for a Matrix event id, so the exactly-once ledger can key both systems'
/// messages the same way (two independent 64-bit hashes; a collision among a run's
/// messages is vanishingly unlikely, and would show as a duplicate, never hide one).
pub fn event_key(event_id: &str) -> Uuid {
    let hash = |salt: u8| {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        salt.hash(&mut hasher);
        event_id.hash(&mut hasher);
        hasher.finish()
    };
    Uuid::from_u64_pair(hash(1), hash(2))
}

impl Client {
    pub fn new(base: &str, request_timeout: Duration) -> Result<Self, BenchError> {
        let http = reqwest::Client::builder()
            .timeout(request_timeout)
            .build()
            .map_err(|err| BenchError::Setup(format!("HTTP client: {err}")))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    async fn call(
        &self,
        request: reqwest::RequestBuilder,
        path: &str,
    ) -> Result<Value, BenchError> {
        let response = request.send().await.map_err(BenchError::transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(BenchError::transport)?;
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(BenchError::Status {
                status: status.as_u16(),
                code: body["errcode"].as_str().unwrap_or_default().to_owned(),
                path: path.to_owned(),
            });
        }
        Ok(body)
    }

    fn url(&self, path: &str) -> String {
        format!("{}/_matrix/client/v3{path}", self.base)
    }

    pub async fn register(&self, username: &str) -> Result<Account, BenchError> {
        let body = self
            .call(
                self.http.post(self.url("/register")).json(&json!({
                    "username": username,
                    "password": format!("{username} bench passphrase"),
                    "auth": {"type": "m.login.dummy"},
                })),
                "/register",
            )
            .await?;
        match (body["user_id"].as_str(), body["access_token"].as_str()) {
            (Some(id), Some(token)) => Ok(Account {
                id: id.to_owned(),
                token: token.to_owned(),
            }),
            _ => Err(BenchError::Protocol(
                "registration returned no token".into(),
            )),
        }
    }

    /// Creates a public room as `owner`; the members join it themselves.
    pub async fn create_room(&self, owner: &str, name: &str) -> Result<String, BenchError> {
        let body = self
            .call(
                self.http
                    .post(self.url("/createRoom"))
                    .bearer_auth(owner)
                    .json(&json!({"name": name, "preset": "public_chat"})),
                "/createRoom",
            )
            .await?;
        body["room_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| BenchError::Protocol("createRoom returned no room_id".into()))
    }

    pub async fn join(&self, token: &str, room: &str) -> Result<(), BenchError> {
        self.call(
            self.http
                .post(self.url(&format!("/join/{room}")))
                .bearer_auth(token)
                .json(&json!({})),
            "/join",
        )
        .await
        .map(|_| ())
    }

    /// Sends a text message; returns the event's key once the homeserver answered.
    pub async fn send(
        &self,
        token: &str,
        room: &str,
        txn: &str,
        text: &str,
    ) -> Result<Uuid, BenchError> {
        let body = self
            .call(
                self.http
                    .put(self.url(&format!("/rooms/{room}/send/m.room.message/{txn}")))
                    .bearer_auth(token)
                    .json(&json!({"msgtype": "m.text", "body": text})),
                "/send",
            )
            .await?;
        body["event_id"]
            .as_str()
            .map(event_key)
            .ok_or_else(|| BenchError::Protocol("send returned no event_id".into()))
    }

    /// One `/sync`: the next batch token and the message events (key, body) since `since`.
    pub async fn sync(
        &self,
        token: &str,
        since: Option<&str>,
        timeout: Duration,
    ) -> Result<(String, Vec<(Uuid, String)>), BenchError> {
        let mut query = vec![
            ("filter", SYNC_FILTER.to_owned()),
            ("timeout", timeout.as_millis().to_string()),
        ];
        if let Some(since) = since {
            query.push(("since", since.to_owned()));
        }
        let body = self
            .call(
                self.http
                    .get(self.url("/sync"))
                    .bearer_auth(token)
                    .query(&query)
                    .timeout(timeout + Duration::from_secs(30)),
                "/sync",
            )
            .await?;
        let next = body["next_batch"]
            .as_str()
            .ok_or_else(|| BenchError::Protocol("sync returned no next_batch".into()))?
            .to_owned();
        Ok((next, messages_in(&body)))
    }
}

/// The `m.room.message` events of a `/sync` response's joined rooms, as (key, body).
pub fn messages_in(sync: &Value) -> Vec<(Uuid, String)> {
    let Some(rooms) = sync["rooms"]["join"].as_object() else {
        return Vec::new();
    };
    rooms
        .values()
        .filter_map(|room| room["timeline"]["events"].as_array())
        .flatten()
        .filter(|event| event["type"] == "m.room.message")
        .filter_map(|event| {
            Some((
                event_key(event["event_id"].as_str()?),
                event["content"]["body"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_messages_from_a_sync_response() {
        let sync = json!({"next_batch": "s1", "rooms": {"join": {
            "!a:localhost": {"timeline": {"events": [
                {"type": "m.room.message", "event_id": "$one", "content": {"body": "bench:x:1:2"}},
                {"type": "m.room.member", "event_id": "$two", "content": {}},
            ]}},
            "!b:localhost": {"timeline": {"events": [
                {"type": "m.room.message", "event_id": "$three", "content": {"body": "hi"}},
            ]}},
        }}});
        let mut got = messages_in(&sync);
        got.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(
            got,
            [
                (event_key("$one"), "bench:x:1:2".to_owned()),
                (event_key("$three"), "hi".to_owned())
            ]
        );
        assert!(messages_in(&json!({"next_batch": "s2"})).is_empty());
        assert_ne!(event_key("$one"), event_key("$three"));
        assert_eq!(event_key("$one"), event_key("$one"));
    }
}
