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
        .first(conn)
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

/// A round trip on `conn`: an error when the connection (and any session lock it held)
/// is gone.
pub fn ping(conn: &mut DbConnection) -> Result<(), StoreError> {
    use diesel::connection::SimpleConnection;
    Ok(conn.batch_execute("SELECT 1")?)
}

pub fn unlock_singleton(conn: &mut DbConnection, key: i64) -> Result<(), StoreError> {
    if let DbConnection::Postgresql(_) = conn {
        diesel::sql_query("SELECT pg_advisory_unlock($1)")
            .bind::<diesel::sql_types::BigInt, _>(key)
            .execute(conn)?;
    }
    Ok(())
}
