//! Compliance export jobs: what to export, their progress and resume state, and the
//! claim that lets exactly one worker run a job at a time.

use crate::DbConnection;
use crate::error::StoreError;
use crate::schema::export_jobs;
use conclave_core::Timestamp;
use diesel::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = export_jobs)]
pub struct ExportJobRecord {
    pub id: String,
    pub format: String,
    pub window_from: i64,
    pub window_until: i64,
    /// JSON: the rooms and custodians named (none: every room, unless a hold narrows it).
    pub scope: String,
    pub hold_id: Option<String>,
    pub include_files: bool,
    pub status: String,
    /// JSON counts and resume state, owned by the export runner.
    pub progress: String,
    pub error: Option<String>,
    pub schedule: Option<String>,
    pub created_by: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub heartbeat_at: Option<i64>,
}

pub struct NewExportJob<'a> {
    pub id: &'a str,
    pub format: &'a str,
    pub window_from: Timestamp,
    pub window_until: Timestamp,
    pub scope: &'a str,
    pub hold_id: Option<&'a str>,
    pub include_files: bool,
    pub schedule: Option<&'a str>,
    pub created_by: Option<String>,
    pub now: Timestamp,
}

pub fn insert(conn: &mut DbConnection, job: &NewExportJob<'_>) -> Result<(), StoreError> {
    diesel::insert_into(export_jobs::table)
        .values((
            export_jobs::id.eq(job.id),
            export_jobs::format.eq(job.format),
            export_jobs::window_from.eq(job.window_from.as_micros()),
            export_jobs::window_until.eq(job.window_until.as_micros()),
            export_jobs::scope.eq(job.scope),
            export_jobs::hold_id.eq(job.hold_id),
            export_jobs::include_files.eq(job.include_files),
            export_jobs::status.eq("pending"),
            export_jobs::progress.eq("{}"),
            export_jobs::schedule.eq(job.schedule),
            export_jobs::created_by.eq(&job.created_by),
            export_jobs::created_at.eq(job.now.as_micros()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn find(conn: &mut DbConnection, id: &str) -> Result<Option<ExportJobRecord>, StoreError> {
    Ok(export_jobs::table
        .find(id)
        .select(ExportJobRecord::as_select())
        .get_result(conn)
        .optional()?)
}

/// Jobs, newest first, a page at a time (`before`: a job id from the previous page).
pub fn list(
    conn: &mut DbConnection,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<ExportJobRecord>, StoreError> {
    let mut query = export_jobs::table
        .order(export_jobs::id.desc())
        .limit(limit)
        .select(ExportJobRecord::as_select())
        .into_boxed();
    if let Some(before) = before {
        query = query.filter(export_jobs::id.lt(before.to_owned()));
    }
    Ok(query.load(conn)?)
}

/// The end of the newest finished job of a schedule (where its next window starts).
pub fn last_window_end(
    conn: &mut DbConnection,
    schedule: &str,
) -> Result<Option<Timestamp>, StoreError> {
    Ok(export_jobs::table
        .filter(export_jobs::schedule.eq(schedule))
        .order(export_jobs::window_until.desc())
        .select(export_jobs::window_until)
        .first::<i64>(conn)
        .optional()?
        .map(Timestamp::from_micros))
}

/// Claims the oldest job a worker may run: a pending one, or a running one whose worker
/// stopped sending heartbeats before `stale_before`. Only one caller wins a job.
pub fn claim(
    conn: &mut DbConnection,
    now: Timestamp,
    stale_before: Timestamp,
) -> Result<Option<ExportJobRecord>, StoreError> {
    let candidates: Vec<(String, Option<i64>)> = export_jobs::table
        .filter(
            export_jobs::status.eq("pending").or(export_jobs::status
                .eq("running")
                .and(export_jobs::heartbeat_at.lt(stale_before.as_micros()))),
        )
        .order(export_jobs::created_at.asc())
        .limit(5)
        .select((export_jobs::id, export_jobs::heartbeat_at))
        .load(conn)?;
    for (id, heartbeat) in candidates {
        let target = export_jobs::table
            .find(&id)
            .filter(export_jobs::status.ne("done"))
            .filter(export_jobs::status.ne("failed"));
        let changes = (
            export_jobs::status.eq("running"),
            export_jobs::heartbeat_at.eq(now.as_micros()),
        );
        // Conditional on the heartbeat seen: of two workers, one wins.
        let claimed = match heartbeat {
            Some(seen) => diesel::update(target.filter(export_jobs::heartbeat_at.eq(seen)))
                .set(changes)
                .execute(conn)?,
            None => diesel::update(target.filter(export_jobs::heartbeat_at.is_null()))
                .set(changes)
                .execute(conn)?,
        };
        if claimed == 1 {
            diesel::update(
                export_jobs::table
                    .find(&id)
                    .filter(export_jobs::started_at.is_null()),
            )
            .set(export_jobs::started_at.eq(now.as_micros()))
            .execute(conn)?;
            return find(conn, &id);
        }
    }
    Ok(None)
}

/// Records progress after a room (and refreshes the heartbeat).
pub fn record_progress(
    conn: &mut DbConnection,
    id: &str,
    progress: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    diesel::update(export_jobs::table.find(id))
        .set((
            export_jobs::progress.eq(progress),
            export_jobs::heartbeat_at.eq(now.as_micros()),
        ))
        .execute(conn)?;
    Ok(())
}

/// Ends a job: `error` `None` marks it done, otherwise failed with that message.
pub fn finish(
    conn: &mut DbConnection,
    id: &str,
    error: Option<&str>,
    now: Timestamp,
) -> Result<(), StoreError> {
    diesel::update(export_jobs::table.find(id))
        .set((
            export_jobs::status.eq(if error.is_some() { "failed" } else { "done" }),
            export_jobs::error.eq(error),
            export_jobs::finished_at.eq(now.as_micros()),
        ))
        .execute(conn)?;
    Ok(())
}

/// How many jobs are in each status.
pub fn count_by_status(conn: &mut DbConnection) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(export_jobs::table
        .group_by(export_jobs::status)
        .select((export_jobs::status, diesel::dsl::count_star()))
        .load(conn)?)
}
