//! The embedded migrations, one set per backend with the same logical schema.

use crate::connection::DbConnection;
use crate::error::StoreError;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

const POSTGRES: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");
const SQLITE: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");

/// Applies every pending migration; returns the versions applied.
pub fn run_pending(conn: &mut DbConnection) -> Result<Vec<String>, StoreError> {
    let applied = match conn {
        DbConnection::Postgresql(pg) => pg.run_pending_migrations(POSTGRES),
        DbConnection::Sqlite(sqlite) => sqlite.run_pending_migrations(SQLITE),
    }
    .map_err(|err| StoreError::Migration(err.to_string()))?;
    Ok(applied
        .into_iter()
        .map(|version| version.to_string())
        .collect())
}

/// Whether the database lacks any migration this binary knows.
pub fn has_pending(conn: &mut DbConnection) -> Result<bool, StoreError> {
    match conn {
        DbConnection::Postgresql(pg) => pg.has_pending_migration(POSTGRES),
        DbConnection::Sqlite(sqlite) => sqlite.has_pending_migration(SQLITE),
    }
    .map_err(|err| StoreError::Migration(err.to_string()))
}

/// Reverts every applied migration (tests check that down migrations work).
pub fn revert_all(conn: &mut DbConnection) -> Result<(), StoreError> {
    match conn {
        DbConnection::Postgresql(pg) => pg.revert_all_migrations(POSTGRES).map(drop),
        DbConnection::Sqlite(sqlite) => sqlite.revert_all_migrations(SQLITE).map(drop),
    }
    .map_err(|err| StoreError::Migration(err.to_string()))
}
