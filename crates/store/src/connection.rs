//! One connection type over both backends, and the pool that hands it out.
//!
//! The backend is chosen from the database URL, explicitly: `postgres://` or
//! `postgresql://` is PostgreSQL, `sqlite://PATH` (or a bare path) is SQLite. The derived
//! `establish` would try each backend in turn and could create a SQLite file named after
//! an unreachable PostgreSQL URL, so the pool never uses it.

use crate::error::StoreError;
use crate::instrumentation::QuerySpans;
use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::prelude::*;
use diesel::r2d2::{self, ManageConnection};
use std::path::PathBuf;
use std::time::Duration;

/// A connection to either backend. Queries written against it run on both.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgresql(diesel::PgConnection),
    Sqlite(diesel::SqliteConnection),
}

/// Runs `$statement` on the backend's own connection: for what the multi-backend query
/// builder cannot express, such as a multi-row `INSERT` (SQLite has no `DEFAULT` keyword,
/// so diesel builds its batch inserts differently for each backend).
macro_rules! on_backend {
    ($conn:expr, |$backend:ident| $statement:expr) => {
        match $conn {
            $crate::DbConnection::Postgresql($backend) => $statement,
            $crate::DbConnection::Sqlite($backend) => $statement,
        }
    };
}
pub(crate) use on_backend;

/// Which engine a database URL names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres { url: String },
    Sqlite { path: PathBuf },
}

impl Backend {
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Backend::Postgres {
                url: url.to_owned(),
            });
        }
        let path = url.strip_prefix("sqlite://").unwrap_or(url);
        // A libpq keyword string (`host=db password=…`) must not silently become a SQLite
        // file named after it, with the password in its path.
        if path.is_empty() || path.contains("://") || path.contains('=') {
            return Err(StoreError::Unavailable(
                "database url is neither postgres://… nor sqlite://PATH".to_owned(),
            ));
        }
        Ok(Backend::Sqlite {
            path: PathBuf::from(path),
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Postgres { .. } => "postgres",
            Backend::Sqlite { .. } => "sqlite",
        }
    }

    /// The URL with any password replaced, for logs and messages.
    pub fn display(&self) -> String {
        match self {
            Backend::Postgres { url } => redact_url(url),
            Backend::Sqlite { path } => format!("sqlite://{}", path.display()),
        }
    }

    /// Opens one connection outside any pool (the pool's connections, and long-lived
    /// ones such as a node's leadership lock).
    pub fn connect(&self) -> Result<DbConnection, diesel::ConnectionError> {
        match self {
            Backend::Postgres { url } => {
                let mut conn = diesel::PgConnection::establish(url)?;
                conn.set_instrumentation(QuerySpans::new("postgresql"));
                Ok(DbConnection::Postgresql(conn))
            }
            Backend::Sqlite { path } => {
                let mut conn = diesel::SqliteConnection::establish(&path.to_string_lossy())?;
                // WAL lets readers run beside the one writer; synchronous=FULL because an
                // acknowledged write must survive a power cut, not only a crash; the busy
                // timeout makes writers queue instead of failing.
                conn.batch_execute(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                )
                .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                conn.set_instrumentation(QuerySpans::new("sqlite"));
                Ok(DbConnection::Sqlite(conn))
            }
        }
    }
}

/// `scheme://host[:port]/database`: no credentials, no query string (libpq accepts
/// `?password=…` too), so it is safe to print.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<unparsable url>".to_owned();
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{rest}")
}

/// r2d2 glue that connects to exactly the configured backend.
#[derive(Debug)]
pub struct ConnectionManager {
    backend: Backend,
}

impl ManageConnection for ConnectionManager {
    type Connection = DbConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<DbConnection, Self::Error> {
        self.backend
            .connect()
            .map_err(diesel::r2d2::Error::ConnectionError)
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), Self::Error> {
        conn.batch_execute("SELECT 1")
            .map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        use diesel::r2d2::R2D2Connection;
        conn.is_broken()
    }
}

pub type DbPool = r2d2::Pool<ConnectionManager>;
pub type PooledDbConnection = r2d2::PooledConnection<ConnectionManager>;

#[derive(Clone, Copy, Debug)]
pub struct PoolOptions {
    pub max_size: u32,
    /// How long a request waits for a free connection before the database counts as
    /// unavailable (503).
    pub acquire_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_size: 8,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// The database handle services receive: a pool plus what it connects to.
#[derive(Clone)]
pub struct Db {
    pool: DbPool,
    backend: Backend,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("backend", &self.backend.display())
            .finish()
    }
}

impl Db {
    /// Opens a pool. Connections are made lazily, so a server can start (and report
    /// not-ready) while its database is still coming up.
    pub fn open(url: &str, options: PoolOptions) -> Result<Self, StoreError> {
        let backend = Backend::from_url(url)?;
        if let Backend::Sqlite { path } = &backend
            && let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(|err| {
                StoreError::Unavailable(format!("cannot create {}: {err}", parent.display()))
            })?;
        }
        let pool = r2d2::Pool::builder()
            .max_size(options.max_size)
            .min_idle(Some(0))
            .connection_timeout(options.acquire_timeout)
            .test_on_check_out(false)
            .build_unchecked(ConnectionManager {
                backend: backend.clone(),
            });
        Ok(Self { pool, backend })
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// A connection for blocking code (the CLI, workers, tests).
    pub fn conn(&self) -> Result<PooledDbConnection, StoreError> {
        Ok(self.pool.get()?)
    }

    /// Like [`Db::run`], but gives up with [`StoreError::Unavailable`] when no connection
    /// can be had within `timeout` (health probes have short deadlines).
    pub async fn run_within<T, F>(&self, timeout: Duration, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let (pool, span) = (self.pool.clone(), tracing::Span::current());
        tokio::task::spawn_blocking(move || {
            let _in_caller = span.enter();
            let mut conn = pool.get_timeout(timeout)?;
            work(&mut conn)
        })
        .await
        .map_err(|join_err| StoreError::Unavailable(format!("database task failed: {join_err}")))?
    }

    /// Runs `work` with a pooled connection on a blocking thread, off the async executor.
    pub async fn run<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        // The caller's span (a request's) goes along, so the statements nest under it.
        let (pool, span) = (self.pool.clone(), tracing::Span::current());
        tokio::task::spawn_blocking(move || {
            let _in_caller = span.enter();
            let mut conn = pool.get().map_err(StoreError::from)?;
            work(&mut conn)
        })
        .await
        .unwrap_or_else(|join_err| {
            // The closure panicked: surface it as an error instead of taking the worker down.
            Err(
                StoreError::Database(diesel::result::Error::QueryBuilderError(
                    format!("database task failed: {join_err}").into(),
                ))
                .into(),
            )
        })
    }
}

/// Runs `work` in a transaction that may write. On SQLite it begins `IMMEDIATE`, taking
/// the write lock up front: a deferred transaction that reads and then writes can fail
/// with SQLITE_BUSY when another writer got there first, which would turn an ordinary
/// race into an error. PostgreSQL's default READ COMMITTED transaction is used as is;
/// code that needs stronger ordering (the audit chain) takes an advisory lock inside.
pub fn write_transaction<T, E, F>(conn: &mut DbConnection, work: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConnection) -> Result<T, E>,
    E: From<StoreError>,
{
    begin(conn).map_err(StoreError::from)?;
    match work(conn) {
        Ok(value) => {
            finish(conn, true).map_err(StoreError::from)?;
            Ok(value)
        }
        Err(err) => {
            // The work's error is what the caller needs; a failed rollback marks the
            // connection broken, and the pool then discards it.
            let _ = finish(conn, false);
            Err(err)
        }
    }
}

/// Makes the current transaction read one snapshot (PostgreSQL's REPEATABLE READ; SQLite
/// write transactions already do). Call first thing inside [`write_transaction`]; a
/// concurrent change to a row the transaction then writes makes it fail, to be retried.
pub fn snapshot_isolation(conn: &mut DbConnection) -> Result<(), StoreError> {
    if let DbConnection::Postgresql(_) = conn {
        diesel::sql_query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(conn)?;
    }
    Ok(())
}

fn begin(conn: &mut DbConnection) -> QueryResult<()> {
    match conn {
        DbConnection::Postgresql(pg) => AnsiTransactionManager::begin_transaction(pg),
        DbConnection::Sqlite(sqlite) => {
            match AnsiTransactionManager::begin_transaction_sql(sqlite, "BEGIN IMMEDIATE") {
                // Nested inside another transaction: a savepoint, which holds its lock.
                Err(diesel::result::Error::AlreadyInTransaction) => {
                    AnsiTransactionManager::begin_transaction(sqlite)
                }
                other => other,
            }
        }
    }
}

fn finish(conn: &mut DbConnection, commit: bool) -> QueryResult<()> {
    match (conn, commit) {
        (DbConnection::Postgresql(pg), true) => AnsiTransactionManager::commit_transaction(pg),
        (DbConnection::Postgresql(pg), false) => AnsiTransactionManager::rollback_transaction(pg),
        (DbConnection::Sqlite(sqlite), true) => AnsiTransactionManager::commit_transaction(sqlite),
        (DbConnection::Sqlite(sqlite), false) => {
            AnsiTransactionManager::rollback_transaction(sqlite)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_choose_backends() {
        assert_eq!(
            Backend::from_url("postgres://u:p@h/db").unwrap(),
            Backend::Postgres {
                url: "postgres://u:p@h/db".into()
            }
        );
        assert!(matches!(
            Backend::from_url("postgresql://h/db").unwrap(),
            Backend::Postgres { .. }
        ));
        assert_eq!(
            Backend::from_url("sqlite://data/c.db").unwrap(),
            Backend::Sqlite {
                path: "data/c.db".into()
            }
        );
        assert_eq!(
            Backend::from_url("c.db").unwrap(),
            Backend::Sqlite {
                path: "c.db".into()
            }
        );
        assert!(Backend::from_url("mysql://h/db").is_err());
        assert!(Backend::from_url("").is_err());
    }

    #[test]
    fn passwords_are_redacted() {
        let backend = Backend::from_url("postgres://app:hunter2@db:5432/conclave").unwrap();
        assert_eq!(backend.display(), "postgres://db:5432/conclave");
        assert_eq!(
            redact_url("postgres://db/conclave?password=hunter2&sslmode=require"),
            "postgres://db/conclave"
        );
        assert_eq!(redact_url("postgres://a:b@c@db/x"), "postgres://db/x");
    }

    #[test]
    fn libpq_keyword_strings_are_refused() {
        assert!(Backend::from_url("host=db user=app password=hunter2").is_err());
    }
}
