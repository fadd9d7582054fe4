//! Organisation-wide settings that admins change at run time (each change audited by the
//! service that makes it), stored by name.

use crate::DbConnection;
use crate::error::StoreError;
use crate::schema::org_settings;
use conclave_core::Timestamp;
use diesel::prelude::*;

pub fn get(conn: &mut DbConnection, name: &str) -> Result<Option<String>, StoreError> {
    Ok(org_settings::table
        .find(name)
        .select(org_settings::value)
        .get_result(conn)
        .optional()?)
}

pub fn set(
    conn: &mut DbConnection,
    name: &str,
    value: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    let updated = diesel::update(org_settings::table.find(name))
        .set((
            org_settings::value.eq(value),
            org_settings::updated_at.eq(now.as_micros()),
        ))
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(org_settings::table)
            .values((
                org_settings::name.eq(name),
                org_settings::value.eq(value),
                org_settings::updated_at.eq(now.as_micros()),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Holds a PostgreSQL session-level advisory lock on `conn` for a singleton job (directory
/// sync); returns whether it was free. On SQLite (one node) there is nothing to elect.
pub fn try_lock_singleton(conn: &mut DbConnection, key: i64) -> Result<bool, StoreError> {
    #[derive(QueryableByName)]
    struct Locked {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        locked: bool,
    }
    match conn {
        DbConnection::Postgresql(_) => Ok(diesel::sql_query(
            "SELECT pg_try_advisory_lock($1) AS locked",
        )
        .bind::<diesel::sql_types::BigInt, _>(key)
        .get_result::<Locked>(conn)?
        .locked),
        DbConnection::Sqlite(_) => Ok(true),
    }
}

/// Whether this session still holds the singleton lock `key` (a query that also proves the
/// connection alive). A session-level lock goes with its session: behind a transaction
/// pooler, or after a reset, the connection may answer while the lock is gone. SQLite (one
/// node): always.
pub fn holds_singleton(conn: &mut DbConnection, key: i64) -> Result<bool, StoreError> {
    #[derive(QueryableByName)]
    struct Held {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        held: bool,
    }
    match conn {
        // A bigint advisory key is split into classid (high 32 bits) and objid (low).
        DbConnection::Postgresql(_) => Ok(diesel::sql_query(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
             AND pid = pg_backend_pid() AND granted AND objsubid = 1 \
             AND ((classid::bigint << 32) | objid::bigint) = $1) AS held",
        )
        .bind::<diesel::sql_types::BigInt, _>(key)
        .get_result::<Held>(conn)?
        .held),
        DbConnection::Sqlite(_) => Ok(true),
    }
}

pub fn unlock_singleton(conn: &mut DbConnection, key: i64) -> Result<(), StoreError> {
    if let DbConnection::Postgresql(_) = conn {
        diesel::sql_query("SELECT pg_advisory_unlock($1)")
            .bind::<diesel::sql_types::BigInt, _>(key)
            .execute(conn)?;
    }
    Ok(())
}
