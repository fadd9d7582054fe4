//! Conclave's storage: the diesel schema, one [`DbConnection`] over PostgreSQL and SQLite,
//! the connection pool, embedded migrations for each backend, and the queries every
//! service uses.
//!
//! Invariants: only this crate writes SQL; every column is a portable type (ids as UUID
//! text, times as BIGINT microseconds, bytes as BYTEA/BLOB, JSON as TEXT); queries run on
//! blocking threads through [`Db::run`], never on the async executor; a state change and
//! the audit event that records it commit in one [`write_transaction`].

pub mod attachments;
pub mod audit;
pub mod audit_forwarding;
pub mod connection;
pub mod error;
pub mod exports;
pub mod identities;
pub mod instrumentation;
mod json_rows;
pub mod legal_holds;
pub mod login_failures;
pub mod message_reads;
pub mod messages;
pub mod migrations;
pub mod notify;
pub mod oidc_flows;
pub mod org_settings;
pub mod policies;
pub mod retention;
pub mod room_events;
pub mod room_keys;
pub mod rooms;
pub mod schema;
pub mod security_groups;
pub mod sessions;
pub mod users;

pub use connection::{
    Backend, Db, DbConnection, DbPool, PoolOptions, PooledDbConnection, write_transaction,
};
pub use error::StoreError;
