//! Conclave's audit service: reading the tamper-evident audit log (auditor role) with
//! filters and cursor paging, and verifying its hash chain. (Appending lives in
//! `conclave-store`, in the transaction of each change; signed checkpoints, exports and
//! SIEM forwarding complete this service with the audit issue.)

pub mod export;
pub mod http;

use conclave_core::Timestamp;
use conclave_store::audit::{self, AuditFilter, AuditRecord, ChainStatus};
use conclave_store::{DbConnection, StoreError};
use serde::Serialize;
use utoipa::ToSchema;

/// One audit event as an auditor reads it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AuditEventView {
    /// Position in the chain, gap-free from 1.
    pub seq: i64,
    pub id: String,
    pub occurred_at: Timestamp,
    pub actor_id: Option<String>,
    pub actor_name: String,
    pub action: String,
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
    pub client_addr: Option<String>,
    pub api_path: Option<String>,
    /// `success` or `failure`.
    pub outcome: String,
    /// Reason, and the state before and after the change.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// This event's chain hash, hex.
    pub hash: String,
}

impl From<AuditRecord> for AuditEventView {
    fn from(record: AuditRecord) -> Self {
        Self {
            details: serde_json::from_str(&record.details)
                .unwrap_or(serde_json::Value::String(record.details.clone())),
            hash: hex::encode(&record.hash),
            seq: record.seq,
            id: record.id,
            occurred_at: Timestamp::from_micros(record.occurred_at),
            actor_id: record.actor_id,
            actor_name: record.actor_name,
            action: record.action,
            target_kind: record.target_kind,
            target_id: record.target_id,
            client_addr: record.client_addr,
            api_path: record.api_path,
            outcome: record.outcome,
        }
    }
}

/// A page of events after `after_seq`; the next cursor is the last event's `seq`.
pub fn query(
    conn: &mut DbConnection,
    filter: &AuditFilter,
    after_seq: i64,
    limit: u32,
) -> Result<Vec<AuditEventView>, StoreError> {
    Ok(audit::query(
        conn,
        filter,
        after_seq.max(0),
        i64::from(limit.clamp(1, 1_000)),
    )?
    .into_iter()
    .map(AuditEventView::from)
    .collect())
}

/// The result of checking the whole chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Verification {
    pub intact: bool,
    /// Events checked (all of them, when intact).
    pub events: u64,
    /// The first sequence number whose row was edited, deleted, inserted or reordered.
    pub first_bad_seq: Option<i64>,
    pub reason: Option<String>,
}

pub fn verify(conn: &mut DbConnection) -> Result<Verification, StoreError> {
    Ok(match audit::verify_chain(conn)? {
        ChainStatus::Intact { events } => Verification {
            intact: true,
            events,
            first_bad_seq: None,
            reason: None,
        },
        ChainStatus::Broken(broken) => Verification {
            intact: false,
            events: 0,
            first_bad_seq: Some(broken.seq),
            reason: Some(broken.reason.to_owned()),
        },
    })
}
