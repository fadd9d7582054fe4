//! The append path of the audit log: each event is hashed into the chain with its
//! predecessor, in the caller's transaction, so a change and its audit event commit
//! together or not at all.

use crate::DbConnection;
use crate::connection::write_transaction;
use crate::error::StoreError;
use crate::schema::audit_events;
use conclave_core::{AuditContext, NewAuditEvent, Timestamp};
use conclave_crypto::audit_chain::{self, AuditLink, ChainBreak, ChainHash, GENESIS_HASH};
use diesel::prelude::*;
use uuid::Uuid;

/// PostgreSQL advisory-lock key that serializes appends across connections and nodes
/// ("CONCLAVE" in ASCII). SQLite needs none: its write transactions are already serial.
const AUDIT_APPEND_LOCK: i64 = 0x434f_4e43_4c41_5645;

/// An audit event as stored.
#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = audit_events)]
pub struct AuditRecord {
    pub seq: i64,
    pub id: String,
    pub occurred_at: i64,
    pub actor_id: Option<String>,
    pub actor_name: String,
    pub action: String,
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
    pub client_addr: Option<String>,
    pub api_path: Option<String>,
    pub outcome: String,
    pub details: String,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

impl AuditRecord {
    pub fn link(&self) -> AuditLink<'_> {
        AuditLink {
            seq: self.seq,
            event_id: &self.id,
            occurred_at_micros: self.occurred_at,
            actor_id: self.actor_id.as_deref(),
            actor_name: &self.actor_name,
            action: &self.action,
            target_kind: self.target_kind.as_deref(),
            target_id: self.target_id.as_deref(),
            client_addr: self.client_addr.as_deref(),
            api_path: self.api_path.as_deref(),
            outcome: &self.outcome,
            details: &self.details,
        }
    }
}

/// Appends one event; returns its sequence number.
pub fn append(
    conn: &mut DbConnection,
    context: &AuditContext,
    event: &NewAuditEvent,
    now: Timestamp,
) -> Result<i64, StoreError> {
    write_transaction(conn, |conn| {
        if let DbConnection::Postgresql(_) = conn {
            diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
                .bind::<diesel::sql_types::BigInt, _>(AUDIT_APPEND_LOCK)
                .execute(conn)?;
        }
        let tail: Option<(i64, Vec<u8>)> = audit_events::table
            .order(audit_events::seq.desc())
            .select((audit_events::seq, audit_events::hash))
            .first(conn)
            .optional()?;
        let (prev_seq, prev_hash) = match tail {
            Some((seq, hash)) => (seq, to_hash(seq, &hash)?),
            None => (0, GENESIS_HASH),
        };
        let actor_id = context.actor_id.map(|id| id.to_string());
        let record = AuditRecord {
            seq: prev_seq + 1,
            id: Uuid::now_v7().to_string(),
            occurred_at: now.as_micros(),
            actor_id,
            actor_name: context.actor_name.clone(),
            action: event.action.to_owned(),
            target_kind: event.target_kind.map(str::to_owned),
            target_id: event.target_id.clone(),
            client_addr: context.client_addr.clone(),
            api_path: context.api_path.clone(),
            outcome: event.outcome.as_str().to_owned(),
            details: event.details.clone(),
            prev_hash: prev_hash.to_vec(),
            hash: Vec::new(),
        };
        let hash = record.link().hash(&prev_hash);
        diesel::insert_into(audit_events::table)
            .values((
                audit_events::seq.eq(record.seq),
                audit_events::id.eq(&record.id),
                audit_events::occurred_at.eq(record.occurred_at),
                audit_events::actor_id.eq(&record.actor_id),
                audit_events::actor_name.eq(&record.actor_name),
                audit_events::action.eq(&record.action),
                audit_events::target_kind.eq(&record.target_kind),
                audit_events::target_id.eq(&record.target_id),
                audit_events::client_addr.eq(&record.client_addr),
                audit_events::api_path.eq(&record.api_path),
                audit_events::outcome.eq(&record.outcome),
                audit_events::details.eq(&record.details),
                audit_events::prev_hash.eq(&record.prev_hash),
                audit_events::hash.eq(hash.to_vec()),
            ))
            .execute(conn)?;
        Ok(record.seq)
    })
}

/// Events in sequence order after `after_seq`, at most `limit`.
pub fn list_after(
    conn: &mut DbConnection,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<AuditRecord>, StoreError> {
    Ok(audit_events::table
        .filter(audit_events::seq.gt(after_seq))
        .order(audit_events::seq.asc())
        .limit(limit)
        .select(AuditRecord::as_select())
        .load(conn)?)
}

/// Outcome of checking the whole chain.
#[derive(Debug, PartialEq, Eq)]
pub enum ChainStatus {
    /// Every row links to its predecessor; `events` were checked.
    Intact {
        events: u64,
    },
    Broken(ChainBreak),
}

/// Walks the whole chain in pages, so memory stays flat however long the log.
pub fn verify_chain(conn: &mut DbConnection) -> Result<ChainStatus, StoreError> {
    const PAGE: i64 = 1_000;
    let mut prev = GENESIS_HASH;
    let mut last_seq = 0;
    let mut events = 0u64;
    loop {
        let page = list_after(conn, last_seq, PAGE)?;
        let Some(last) = page.last() else { break };
        let next_seq = last.seq;
        let mut rows = Vec::with_capacity(page.len());
        for record in &page {
            let (stored_prev, stored_hash) = match (
                to_hash(record.seq, &record.prev_hash),
                to_hash(record.seq, &record.hash),
            ) {
                (Ok(p), Ok(h)) => (p, h),
                _ => {
                    return Ok(ChainStatus::Broken(ChainBreak {
                        seq: record.seq,
                        reason: "stored hash is not 32 bytes",
                    }));
                }
            };
            rows.push((record.link(), stored_prev, stored_hash));
        }
        match audit_chain::verify(prev, last_seq + 1, rows) {
            Ok(hash) => prev = hash,
            Err(broken) => return Ok(ChainStatus::Broken(broken)),
        }
        events += page.len() as u64;
        last_seq = next_seq;
    }
    Ok(ChainStatus::Intact { events })
}

fn to_hash(seq: i64, bytes: &[u8]) -> Result<ChainHash, StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("audit event {seq}: hash is not 32 bytes")))
}

/// Filters for reading the audit log; every one optional.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub from: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub actor_id: Option<String>,
    pub action: Option<String>,
    pub target_id: Option<String>,
}

/// Events matching `filter` with a sequence number above `after_seq`, oldest first.
pub fn query(
    conn: &mut DbConnection,
    filter: &AuditFilter,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<AuditRecord>, StoreError> {
    let mut query = audit_events::table
        .filter(audit_events::seq.gt(after_seq))
        .order(audit_events::seq.asc())
        .limit(limit)
        .select(AuditRecord::as_select())
        .into_boxed();
    if let Some(from) = filter.from {
        query = query.filter(audit_events::occurred_at.ge(from.as_micros()));
    }
    if let Some(until) = filter.until {
        query = query.filter(audit_events::occurred_at.lt(until.as_micros()));
    }
    if let Some(actor) = &filter.actor_id {
        query = query.filter(audit_events::actor_id.eq(actor.clone()));
    }
    if let Some(action) = &filter.action {
        query = query.filter(audit_events::action.eq(action.clone()));
    }
    if let Some(target) = &filter.target_id {
        query = query.filter(audit_events::target_id.eq(target.clone()));
    }
    Ok(query.load(conn)?)
}

/// The latest `limit` events of one action, newest first (a job's recent runs).
pub fn latest_of_action(
    conn: &mut DbConnection,
    action: &str,
    limit: i64,
) -> Result<Vec<AuditRecord>, StoreError> {
    Ok(audit_events::table
        .filter(audit_events::action.eq(action))
        .order(audit_events::seq.desc())
        .limit(limit)
        .select(AuditRecord::as_select())
        .load(conn)?)
}

/// A signed checkpoint of the chain.
#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = crate::schema::audit_checkpoints)]
pub struct CheckpointRecord {
    pub seq: i64,
    pub hash: Vec<u8>,
    pub key_id: String,
    pub signature: Vec<u8>,
    pub signed_at: i64,
}

/// The chain's last event: its sequence number and hash.
pub fn tail(conn: &mut DbConnection) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
    Ok(audit_events::table
        .order(audit_events::seq.desc())
        .select((audit_events::seq, audit_events::hash))
        .first(conn)
        .optional()?)
}

pub fn insert_checkpoint(
    conn: &mut DbConnection,
    record: &CheckpointRecord,
) -> Result<(), StoreError> {
    use crate::schema::audit_checkpoints::dsl as c;
    diesel::insert_into(c::audit_checkpoints)
        .values((
            c::seq.eq(record.seq),
            c::hash.eq(&record.hash),
            c::key_id.eq(&record.key_id),
            c::signature.eq(&record.signature),
            c::signed_at.eq(record.signed_at),
        ))
        .execute(conn)?;
    Ok(())
}

/// Every checkpoint, in sequence order.
pub fn checkpoints(conn: &mut DbConnection) -> Result<Vec<CheckpointRecord>, StoreError> {
    use crate::schema::audit_checkpoints::dsl as c;
    Ok(c::audit_checkpoints
        .order(c::seq.asc())
        .select(CheckpointRecord::as_select())
        .load(conn)?)
}

/// The hash stored for one event, if it exists.
pub fn hash_at(conn: &mut DbConnection, seq: i64) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(audit_events::table
        .find(seq)
        .select(audit_events::hash)
        .get_result(conn)
        .optional()?)
}
