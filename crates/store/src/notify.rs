//! PostgreSQL LISTEN/NOTIFY for cross-node signals: [`notify`] sends payloads on a
//! channel (nothing on SQLite, which has one node), and [`Listener`] holds a dedicated
//! connection that listens on one.
//!
//! diesel's `PgConnection::notifications_iter` does not block: it reads what libpq has
//! received and returns. [`Listener::poll`] wraps it; the caller polls every few
//! milliseconds on a thread of its own (diesel exposes no socket to wait on, and a poll is
//! one non-blocking `recv` on the socket, so a 2 ms period costs nothing measurable).

use crate::connection::DbConnection;
use crate::error::StoreError;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;

/// PostgreSQL refuses a NOTIFY payload of 8000 bytes or more.
pub const MAX_PAYLOAD_BYTES: usize = 7_900;

/// Sends each payload as one notification on `channel`. Outside a transaction each is
/// delivered at once; inside one, at commit. A no-op on SQLite.
pub fn notify(
    conn: &mut DbConnection,
    channel: &str,
    payloads: &[String],
) -> Result<(), StoreError> {
    if let DbConnection::Postgresql(_) = conn
        && !payloads.is_empty()
    {
        // One statement however many: a batch of sends announces all its messages at once.
        let payloads = serde_json::to_string(payloads).expect("strings serialize");
        diesel::sql_query(
            "SELECT pg_notify($1, payload) \
             FROM json_array_elements_text(CAST($2 AS json)) AS payloads(payload)",
        )
        .bind::<diesel::sql_types::Text, _>(channel)
        .bind::<diesel::sql_types::Text, _>(payloads)
        .execute(conn)?;
    }
    Ok(())
}

/// A dedicated PostgreSQL connection that listens on one channel.
pub struct Listener {
    conn: diesel::PgConnection,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener").finish_non_exhaustive()
    }
}

impl Listener {
    /// Connects to `url` and runs `LISTEN channel`. `channel` must be a plain identifier.
    pub fn listen(url: &str, channel: &str) -> Result<Self, StoreError> {
        if channel.is_empty() || !channel.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            return Err(StoreError::Corrupt(format!(
                "not a channel name: {channel:?}"
            )));
        }
        let mut conn = diesel::PgConnection::establish(url)
            .map_err(|err| StoreError::Unavailable(err.to_string()))?;
        conn.batch_execute(&format!("LISTEN {channel}"))?;
        Ok(Self { conn })
    }

    /// The payloads received since the last call, oldest first; an error when the
    /// connection is lost.
    pub fn poll(&mut self) -> Result<Vec<String>, StoreError> {
        let mut payloads = Vec::new();
        for notification in self.conn.notifications_iter() {
            payloads.push(notification?.payload);
        }
        Ok(payloads)
    }

    /// A round trip, to notice a connection that died without a word.
    pub fn check(&mut self) -> Result<(), StoreError> {
        Ok(self.conn.batch_execute("SELECT 1")?)
    }
}
