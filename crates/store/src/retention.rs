//! Retention: policies by scope, the jobs that recompute `retain_until` after a policy
//! change, the sweeper's runs, the queue of attachment files to unlink, and the data
//! keys crypto-shredding destroys.

use crate::DbConnection;
use crate::error::StoreError;
use crate::schema::{
    attachment_file_deletions, attachments, key_shred_candidates, message_versions, messages,
    retention_jobs, retention_policies, retention_sweeps, room_keys,
};
use conclave_core::{RoomId, Timestamp, UserId};
use diesel::prelude::*;

/// A stored retention policy: `scope` is 'org', 'group:<id>' or 'room:<id>'.
#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = retention_policies)]
pub struct PolicyRecord {
    pub scope: String,
    pub min_days: Option<i64>,
    pub max_days: Option<i64>,
    pub updated_by: String,
    pub updated_at: i64,
}

pub fn policies(conn: &mut DbConnection) -> Result<Vec<PolicyRecord>, StoreError> {
    Ok(retention_policies::table
        .order(retention_policies::scope.asc())
        .select(PolicyRecord::as_select())
        .load(conn)?)
}

pub fn policy(conn: &mut DbConnection, scope: &str) -> Result<Option<PolicyRecord>, StoreError> {
    Ok(retention_policies::table
        .find(scope)
        .select(PolicyRecord::as_select())
        .get_result(conn)
        .optional()?)
}

pub fn put_policy(
    conn: &mut DbConnection,
    scope: &str,
    min_days: Option<i64>,
    max_days: Option<i64>,
    by: UserId,
    now: Timestamp,
) -> Result<(), StoreError> {
    let updated = diesel::update(retention_policies::table.find(scope))
        .set((
            retention_policies::min_days.eq(min_days),
            retention_policies::max_days.eq(max_days),
            retention_policies::updated_by.eq(by.to_string()),
            retention_policies::updated_at.eq(now.as_micros()),
        ))
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(retention_policies::table)
            .values((
                retention_policies::scope.eq(scope),
                retention_policies::min_days.eq(min_days),
                retention_policies::max_days.eq(max_days),
                retention_policies::updated_by.eq(by.to_string()),
                retention_policies::updated_at.eq(now.as_micros()),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Removes a policy; returns whether there was one.
pub fn delete_policy(conn: &mut DbConnection, scope: &str) -> Result<bool, StoreError> {
    Ok(diesel::delete(retention_policies::table.find(scope)).execute(conn)? == 1)
}

/// A recomputation of `retain_until` after a policy change.
#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = retention_jobs)]
pub struct JobRecord {
    pub id: String,
    /// The policy scope whose change started it; a room's job visits only that room.
    pub scope: String,
    pub status: String,
    pub after_message_id: Option<String>,
    pub processed: i64,
    pub changed: i64,
    pub total: i64,
    pub created_by: String,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

pub fn insert_job(
    conn: &mut DbConnection,
    id: &str,
    scope: &str,
    total: i64,
    by: UserId,
    now: Timestamp,
) -> Result<(), StoreError> {
    diesel::insert_into(retention_jobs::table)
        .values((
            retention_jobs::id.eq(id),
            retention_jobs::scope.eq(scope),
            retention_jobs::status.eq("pending"),
            retention_jobs::total.eq(total),
            retention_jobs::created_by.eq(by.to_string()),
            retention_jobs::created_at.eq(now.as_micros()),
        ))
        .execute(conn)?;
    Ok(())
}

/// The oldest job not finished yet.
pub fn next_job(conn: &mut DbConnection) -> Result<Option<JobRecord>, StoreError> {
    Ok(retention_jobs::table
        .filter(retention_jobs::status.ne("done"))
        .order((retention_jobs::created_at.asc(), retention_jobs::id.asc()))
        .select(JobRecord::as_select())
        .first(conn)
        .optional()?)
}

pub fn jobs(conn: &mut DbConnection, limit: i64) -> Result<Vec<JobRecord>, StoreError> {
    Ok(retention_jobs::table
        .order((retention_jobs::created_at.desc(), retention_jobs::id.desc()))
        .limit(limit)
        .select(JobRecord::as_select())
        .load(conn)?)
}

pub fn job(conn: &mut DbConnection, id: &str) -> Result<Option<JobRecord>, StoreError> {
    Ok(retention_jobs::table
        .find(id)
        .select(JobRecord::as_select())
        .get_result(conn)
        .optional()?)
}

/// Records a job's progress: a batch that started at `from_message_id` and ends at
/// `after_message_id` (`None`: finished). Returns false when another worker advanced the
/// job from that position first (its counts then stand, not this batch's).
#[allow(clippy::too_many_arguments)] // one job's position, progress and time
pub fn advance_job(
    conn: &mut DbConnection,
    id: &str,
    from_message_id: Option<&str>,
    after_message_id: Option<&str>,
    processed: i64,
    changed: i64,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let (status, finished_at) = match after_message_id {
        Some(_) => ("running", None),
        None => ("done", Some(now.as_micros())),
    };
    let changes = || {
        (
            retention_jobs::status.eq(status),
            retention_jobs::after_message_id.eq(after_message_id.map(str::to_owned)),
            retention_jobs::processed.eq(retention_jobs::processed + processed),
            retention_jobs::changed.eq(retention_jobs::changed + changed),
            retention_jobs::finished_at.eq(finished_at),
        )
    };
    // One conditional UPDATE: of two workers on the same batch, only one matches.
    let job = retention_jobs::table
        .find(id)
        .filter(retention_jobs::status.ne("done"));
    let advanced = match from_message_id {
        Some(from) => diesel::update(job.filter(retention_jobs::after_message_id.eq(from)))
            .set(changes())
            .execute(conn)?,
        None => diesel::update(job.filter(retention_jobs::after_message_id.is_null()))
            .set(changes())
            .execute(conn)?,
    };
    Ok(advanced == 1)
}

/// One sweeper run: progress while it runs, totals after.
#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = retention_sweeps)]
pub struct SweepRecord {
    pub id: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub messages_destroyed: i64,
    pub attachments_destroyed: i64,
    pub keys_shredded: i64,
    pub held: i64,
}

/// Adds one batch's counts to a sweep, creating its row at its first batch.
pub fn add_to_sweep(
    conn: &mut DbConnection,
    id: &str,
    started_at: Timestamp,
    messages: i64,
    attachments: i64,
    keys: i64,
    held: i64,
) -> Result<(), StoreError> {
    let updated = diesel::update(retention_sweeps::table.find(id))
        .set((
            retention_sweeps::messages_destroyed
                .eq(retention_sweeps::messages_destroyed + messages),
            retention_sweeps::attachments_destroyed
                .eq(retention_sweeps::attachments_destroyed + attachments),
            retention_sweeps::keys_shredded.eq(retention_sweeps::keys_shredded + keys),
            retention_sweeps::held.eq(retention_sweeps::held + held),
        ))
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(retention_sweeps::table)
            .values((
                retention_sweeps::id.eq(id),
                retention_sweeps::started_at.eq(started_at.as_micros()),
                retention_sweeps::messages_destroyed.eq(messages),
                retention_sweeps::attachments_destroyed.eq(attachments),
                retention_sweeps::keys_shredded.eq(keys),
                retention_sweeps::held.eq(held),
            ))
            .execute(conn)?;
    }
    Ok(())
}

pub fn finish_sweep(conn: &mut DbConnection, id: &str, now: Timestamp) -> Result<(), StoreError> {
    diesel::update(retention_sweeps::table.find(id))
        .set(retention_sweeps::finished_at.eq(now.as_micros()))
        .execute(conn)?;
    Ok(())
}

pub fn sweeps(conn: &mut DbConnection, limit: i64) -> Result<Vec<SweepRecord>, StoreError> {
    Ok(retention_sweeps::table
        .order((
            retention_sweeps::started_at.desc(),
            retention_sweeps::id.desc(),
        ))
        .limit(limit)
        .select(SweepRecord::as_select())
        .load(conn)?)
}

/// Totals over every sweep: (messages, attachments, keys).
pub fn sweep_totals(conn: &mut DbConnection) -> Result<(i64, i64, i64), StoreError> {
    #[derive(QueryableByName)]
    struct Totals {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        messages: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        attachments: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        keys: i64,
    }
    // The same SQL on both backends (SUM of BIGINT is NUMERIC on PostgreSQL: cast back).
    let totals: Totals = diesel::sql_query(
        "SELECT CAST(COALESCE(SUM(messages_destroyed), 0) AS BIGINT) AS messages, \
                CAST(COALESCE(SUM(attachments_destroyed), 0) AS BIGINT) AS attachments, \
                CAST(COALESCE(SUM(keys_shredded), 0) AS BIGINT) AS keys \
         FROM retention_sweeps",
    )
    .get_result(conn)?;
    Ok((totals.messages, totals.attachments, totals.keys))
}

/// How many attachment files wait to be unlinked.
pub fn queued_file_count(conn: &mut DbConnection) -> Result<i64, StoreError> {
    Ok(attachment_file_deletions::table.count().get_result(conn)?)
}

/// Queues attachment files for unlinking, in the transaction that destroyed their rows.
pub fn queue_file_deletions(
    conn: &mut DbConnection,
    paths: &[String],
    now: Timestamp,
) -> Result<(), StoreError> {
    for path in paths {
        let queued = attachment_file_deletions::table
            .find(path)
            .count()
            .get_result::<i64>(conn)?;
        if queued == 0 {
            diesel::insert_into(attachment_file_deletions::table)
                .values((
                    attachment_file_deletions::storage_path.eq(path),
                    attachment_file_deletions::queued_at.eq(now.as_micros()),
                ))
                .execute(conn)?;
        }
    }
    Ok(())
}

/// Queued files after `after`, in path order (so entries that keep failing do not hide
/// the rest).
pub fn queued_file_deletions(
    conn: &mut DbConnection,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<String>, StoreError> {
    let mut query = attachment_file_deletions::table
        .order(attachment_file_deletions::storage_path.asc())
        .limit(limit)
        .select(attachment_file_deletions::storage_path)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(attachment_file_deletions::storage_path.gt(after.to_owned()));
    }
    Ok(query.load(conn)?)
}

/// Forgets a queued file once it is gone from disk.
pub fn file_deleted(conn: &mut DbConnection, path: &str) -> Result<(), StoreError> {
    diesel::delete(attachment_file_deletions::table.find(path)).execute(conn)?;
    Ok(())
}

/// Uploads no message references that were made before `before` (abandoned uploads).
pub fn abandoned_uploads(
    conn: &mut DbConnection,
    before: Timestamp,
    limit: i64,
) -> Result<Vec<(String, String, i64, String)>, StoreError> {
    Ok(attachments::table
        .filter(attachments::created_at.lt(before.as_micros()))
        .filter(diesel::dsl::not(diesel::dsl::exists(
            messages::table.filter(messages::attachment_id.eq(attachments::id.nullable())),
        )))
        .order(attachments::created_at.asc())
        .limit(limit)
        .select((
            attachments::id,
            attachments::room_id,
            attachments::epoch,
            attachments::storage_path,
        ))
        .load(conn)?)
}

pub fn delete_attachment_rows(conn: &mut DbConnection, ids: &[String]) -> Result<(), StoreError> {
    diesel::delete(attachments::table.filter(attachments::id.eq_any(ids))).execute(conn)?;
    Ok(())
}

/// Whether no stored row (message version, attachment) uses a room's data key for
/// `epoch` any more. Versions must carry their room: see [`fill_version_rooms`].
pub fn key_unused(conn: &mut DbConnection, room_id: &str, epoch: i64) -> Result<bool, StoreError> {
    use diesel::dsl::exists;
    let versions: bool = diesel::select(exists(
        message_versions::table
            .filter(message_versions::room_id.eq(room_id))
            .filter(message_versions::epoch.eq(epoch)),
    ))
    .get_result(conn)?;
    let files: bool = diesel::select(exists(
        attachments::table
            .filter(attachments::room_id.eq(room_id))
            .filter(attachments::epoch.eq(epoch)),
    ))
    .get_result(conn)?;
    Ok(!versions && !files)
}

/// Gives up to `limit` message versions without a room (written by a node older than
/// migration 000011) the room of their message; returns how many it filled. Key checks
/// rely on every version naming its room, so the sweeper runs this to the end first.
pub fn fill_version_rooms(conn: &mut DbConnection, limit: i64) -> Result<usize, StoreError> {
    let unknown: Vec<(String, String)> = message_versions::table
        .inner_join(messages::table)
        .filter(message_versions::room_id.is_null())
        .select((message_versions::message_id, messages::room_id))
        .limit(limit)
        .load(conn)?;
    for (message_id, room_id) in &unknown {
        diesel::update(
            message_versions::table
                .filter(message_versions::message_id.eq(message_id))
                .filter(message_versions::room_id.is_null()),
        )
        .set(message_versions::room_id.eq(room_id))
        .execute(conn)?;
    }
    Ok(unknown.len())
}

/// Destroys a room's data key for `epoch` if no stored row uses it any more (no message
/// version, no attachment): crypto-shredding. Returns whether the key was destroyed.
pub fn shred_key_if_unused(
    conn: &mut DbConnection,
    room_id: &str,
    epoch: i64,
) -> Result<bool, StoreError> {
    if !key_unused(conn, room_id, epoch)? {
        return Ok(false);
    }
    Ok(diesel::delete(room_keys::table.find((room_id.to_owned(), epoch))).execute(conn)? == 1)
}

/// The rooms' ids and names, for reports keyed by room.
pub fn room_names(
    conn: &mut DbConnection,
    ids: &[RoomId],
) -> Result<Vec<(String, Option<String>, String)>, StoreError> {
    use crate::schema::rooms;
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    Ok(rooms::table
        .filter(rooms::id.eq_any(ids))
        .select((rooms::id, rooms::name, rooms::kind))
        .load(conn)?)
}

/// Remembers `(room, epoch)` keys to check for shredding later (each once). On
/// PostgreSQL one statement inserts them all from two arrays, skipping those already
/// remembered; on SQLite (in-process, where a statement costs little) one query finds
/// those already remembered, then an insert per new one.
pub fn add_shred_candidates(
    conn: &mut DbConnection,
    keys: &[(String, i64)],
) -> Result<(), StoreError> {
    use diesel::sql_types::{Array, BigInt, Text};
    if keys.is_empty() {
        return Ok(());
    }
    if let DbConnection::Postgresql(pg) = conn {
        let (rooms, epochs): (Vec<&str>, Vec<i64>) = keys
            .iter()
            .map(|(room, epoch)| (room.as_str(), *epoch))
            .unzip();
        diesel::sql_query(
            "INSERT INTO key_shred_candidates (room_id, epoch) \
             SELECT * FROM unnest($1::text[], $2::bigint[]) \
             ON CONFLICT DO NOTHING",
        )
        .bind::<Array<Text>, _>(rooms)
        .bind::<Array<BigInt>, _>(epochs)
        .execute(pg)?;
        return Ok(());
    }
    let mut rooms: Vec<&str> = keys.iter().map(|(room, _)| room.as_str()).collect();
    rooms.sort_unstable();
    rooms.dedup();
    let mut known = std::collections::HashSet::new();
    for chunk in rooms.chunks(500) {
        let rows: Vec<(String, i64)> = key_shred_candidates::table
            .filter(key_shred_candidates::room_id.eq_any(chunk))
            .select((key_shred_candidates::room_id, key_shred_candidates::epoch))
            .load(conn)?;
        known.extend(rows);
    }
    for key in keys {
        if known.insert(key.clone()) {
            diesel::insert_into(key_shred_candidates::table)
                .values((
                    key_shred_candidates::room_id.eq(&key.0),
                    key_shred_candidates::epoch.eq(key.1),
                ))
                .execute(conn)?;
        }
    }
    Ok(())
}

/// Candidates whose epoch is before `before_epoch`, a page at a time after `after`.
pub fn shred_candidates(
    conn: &mut DbConnection,
    before_epoch: i64,
    after: Option<(String, i64)>,
    limit: i64,
) -> Result<Vec<(String, i64)>, StoreError> {
    let mut query = key_shred_candidates::table
        .filter(key_shred_candidates::epoch.lt(before_epoch))
        .order((
            key_shred_candidates::epoch.asc(),
            key_shred_candidates::room_id.asc(),
        ))
        .limit(limit)
        .select((key_shred_candidates::room_id, key_shred_candidates::epoch))
        .into_boxed();
    if let Some((room, epoch)) = after {
        query = query.filter(
            key_shred_candidates::epoch
                .gt(epoch)
                .or(key_shred_candidates::epoch
                    .eq(epoch)
                    .and(key_shred_candidates::room_id.gt(room))),
        );
    }
    Ok(query.load(conn)?)
}

pub fn remove_shred_candidate(
    conn: &mut DbConnection,
    room_id: &str,
    epoch: i64,
) -> Result<(), StoreError> {
    diesel::delete(key_shred_candidates::table.find((room_id.to_owned(), epoch))).execute(conn)?;
    Ok(())
}

/// How many recomputation jobs are in each status.
pub fn jobs_by_status(conn: &mut DbConnection) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(retention_jobs::table
        .group_by(retention_jobs::status)
        .select((retention_jobs::status, diesel::dsl::count_star()))
        .load(conn)?)
}
