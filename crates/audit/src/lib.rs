//! Conclave's audit service: reading the tamper-evident audit log (auditor role) with
//! filters and cursor paging, exporting it ([`export`]), signing checkpoints of its hash
//! chain, verifying chain and checkpoints, and forwarding it to a SIEM ([`syslog`]).
//! (Appending lives in `conclave-store`, in the transaction of each change.) Also the
//! compliance exports of conversations ([`exports`], in the formats of [`archive`]) for
//! compliance officers.

pub mod archive;
pub mod export;
pub mod exports;
pub mod exports_http;
pub mod http;
pub mod syslog;

use conclave_core::Timestamp;
use conclave_crypto::CheckpointKey;
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

/// The result of checking the whole chain and its signed checkpoints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Verification {
    pub intact: bool,
    /// Events checked (all of them, when intact).
    pub events: u64,
    /// Signed checkpoints checked.
    pub checkpoints: u64,
    /// The first sequence number whose row was edited, deleted, inserted or reordered.
    pub first_bad_seq: Option<i64>,
    pub reason: Option<String>,
}

/// Checks the whole chain, then every signed checkpoint: its signature (with `key`), and
/// that the chain still has the signed hash at the signed position. A log that ends before
/// a checkpoint was truncated, and the first missing sequence number is named.
pub fn verify(conn: &mut DbConnection, key: &CheckpointKey) -> Result<Verification, StoreError> {
    let broken = |seq: i64, reason: &str, checkpoints: u64| Verification {
        intact: false,
        events: 0,
        checkpoints,
        first_bad_seq: Some(seq),
        reason: Some(reason.to_owned()),
    };
    let events = match audit::verify_chain(conn)? {
        ChainStatus::Intact { events } => events,
        ChainStatus::Broken(chain) => return Ok(broken(chain.seq, chain.reason, 0)),
    };
    let checkpoints = audit::checkpoints(conn)?;
    for (checked, checkpoint) in checkpoints.iter().enumerate() {
        let Ok(signed_hash) = <[u8; 32]>::try_from(checkpoint.hash.as_slice()) else {
            return Ok(broken(
                checkpoint.seq,
                "a checkpoint's hash is not 32 bytes",
                checked as u64,
            ));
        };
        if checkpoint.key_id != key.key_id()
            || !key.verify(checkpoint.seq, &signed_hash, &checkpoint.signature)
        {
            return Ok(broken(
                checkpoint.seq,
                "a checkpoint's signature does not verify (forged, or signed with another key)",
                checked as u64,
            ));
        }
        match audit::hash_at(conn, checkpoint.seq)? {
            Some(hash) if hash == checkpoint.hash => {}
            Some(_) => {
                return Ok(broken(
                    checkpoint.seq,
                    "the chain no longer has the hash a checkpoint signed",
                    checked as u64,
                ));
            }
            None => {
                let first_missing = i64::try_from(events).unwrap_or(i64::MAX) + 1;
                return Ok(broken(
                    first_missing,
                    "the log ends before a signed checkpoint: its tail was truncated",
                    checked as u64,
                ));
            }
        }
    }
    Ok(Verification {
        intact: true,
        events,
        checkpoints: checkpoints.len() as u64,
        first_bad_seq: None,
        reason: None,
    })
}

/// Signs the chain's current tail, if it moved since the last checkpoint; returns the
/// sequence number signed.
pub fn checkpoint(
    conn: &mut DbConnection,
    key: &CheckpointKey,
    now: Timestamp,
) -> Result<Option<i64>, StoreError> {
    conclave_store::write_transaction(conn, |conn| {
        let Some((seq, hash)) = audit::tail(conn)? else {
            return Ok(None);
        };
        if audit::checkpoints(conn)?
            .last()
            .is_some_and(|last| last.seq >= seq)
        {
            return Ok(None);
        }
        let Ok(hash_array) = <[u8; 32]>::try_from(hash.as_slice()) else {
            return Err(StoreError::Corrupt(format!(
                "audit event {seq}: hash is not 32 bytes"
            )));
        };
        audit::insert_checkpoint(
            conn,
            &audit::CheckpointRecord {
                seq,
                signature: key.sign(seq, &hash_array).to_vec(),
                hash,
                key_id: key.key_id(),
                signed_at: now.as_micros(),
            },
        )?;
        Ok(Some(seq))
    })
}
