//! Test support: a migrated database per test on either backend.
//!
//! PostgreSQL comes from a throwaway cluster: the one named by `TESTKIT_PG_URL` (which
//! `with-postgres`, and so `make test`, starts once for the whole run), or else one this
//! process starts itself on a free loopback port and that a watchdog removes when the
//! process exits. Each test gets its own database, copied from a template migrated once,
//! and dropped when the test's [`TestDb`] is dropped. SQLite tests get a fresh file in a
//! temporary directory.

pub mod fixtures;
pub mod postgres_cluster;
pub mod slapd;

use conclave_store::{Db, PoolOptions};
use diesel::prelude::*;
use std::sync::OnceLock;

pub use postgres_cluster::PostgresCluster;

/// The two backends every store and service test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestBackend {
    Sqlite,
    Postgres,
}

/// A migrated, empty database that is removed when dropped.
pub struct TestDb {
    pub db: Db,
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    pub fn new(backend: TestBackend) -> Self {
        match backend {
            TestBackend::Sqlite => Self::sqlite(),
            TestBackend::Postgres => Self::postgres(),
        }
    }

    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("conclave.db").display());
        let db = Db::open(&url, PoolOptions::default()).expect("open sqlite");
        conclave_store::migrations::run_pending(&mut db.conn().expect("sqlite connection"))
            .expect("migrate sqlite");
        Self {
            db,
            url,
            cleanup: Cleanup::Sqlite(dir),
        }
    }

    pub fn postgres() -> Self {
        let admin_url = postgres_admin_url();
        let template = ensure_template(&admin_url);
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::establish(&admin_url).expect("connect to test cluster");
        diesel::sql_query(format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .execute(&mut admin)
            .expect("create test database");
        let url = database_url(&admin_url, &name);
        let db = Db::open(&url, PoolOptions::default()).expect("open postgres");
        Self {
            db,
            url,
            cleanup: Cleanup::Postgres { admin_url, name },
        }
    }

    /// An empty database with no migrations applied, for migration tests.
    pub fn unmigrated(backend: TestBackend) -> Self {
        match backend {
            TestBackend::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let url = format!("sqlite://{}", dir.path().join("conclave.db").display());
                let db = Db::open(&url, PoolOptions::default()).expect("open sqlite");
                Self {
                    db,
                    url,
                    cleanup: Cleanup::Sqlite(dir),
                }
            }
            TestBackend::Postgres => {
                let admin_url = postgres_admin_url();
                let name = format!("test_{}", uuid::Uuid::new_v4().simple());
                let mut admin =
                    PgConnection::establish(&admin_url).expect("connect to test cluster");
                diesel::sql_query(format!("CREATE DATABASE {name}"))
                    .execute(&mut admin)
                    .expect("create test database");
                let url = database_url(&admin_url, &name);
                let db = Db::open(&url, PoolOptions::default()).expect("open postgres");
                Self {
                    db,
                    url,
                    cleanup: Cleanup::Postgres { admin_url, name },
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Cleanup::Postgres { admin_url, name } = &self.cleanup
            && let Ok(mut admin) = PgConnection::establish(admin_url)
        {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin);
        }
    }
}

/// The admin URL of the test cluster, starting one for this process if none is given.
pub fn postgres_admin_url() -> String {
    static OWN_CLUSTER: OnceLock<PostgresCluster> = OnceLock::new();
    if let Ok(url) = std::env::var("TESTKIT_PG_URL")
        && !url.is_empty()
    {
        return url;
    }
    OWN_CLUSTER
        .get_or_init(|| {
            PostgresCluster::start_with_watchdog(std::process::id())
                .expect("start a throwaway PostgreSQL cluster")
        })
        .admin_url()
}

fn database_url(admin_url: &str, name: &str) -> String {
    let base = admin_url
        .rsplit_once('/')
        .map(|(base, _)| base)
        .unwrap_or(admin_url);
    format!("{base}/{name}")
}

/// Creates (once per migration set, across concurrent test processes) a migrated template
/// database and returns its name.
fn ensure_template(admin_url: &str) -> String {
    static TEMPLATE: OnceLock<String> = OnceLock::new();
    TEMPLATE
        .get_or_init(|| {
            let name = format!("template_{}", migrations_fingerprint());
            let mut admin = PgConnection::establish(admin_url).expect("connect to test cluster");
            // Serialize template creation across test processes sharing the cluster.
            diesel::sql_query("SELECT pg_advisory_lock(7421)")
                .execute(&mut admin)
                .expect("lock");
            #[derive(QueryableByName)]
            struct Found {
                #[diesel(sql_type = diesel::sql_types::BigInt)]
                n: i64,
            }
            let found: Found = diesel::sql_query(format!(
                "SELECT count(*) AS n FROM pg_database WHERE datname = '{name}'"
            ))
            .get_result(&mut admin)
            .expect("look up template");
            if found.n == 0 {
                diesel::sql_query(format!("CREATE DATABASE {name}"))
                    .execute(&mut admin)
                    .expect("create template");
                let url = database_url(admin_url, &name);
                let db = Db::open(
                    &url,
                    PoolOptions {
                        max_size: 1,
                        ..PoolOptions::default()
                    },
                )
                .expect("open template");
                conclave_store::migrations::run_pending(
                    &mut db.conn().expect("template connection"),
                )
                .expect("migrate template");
            }
            diesel::sql_query("SELECT pg_advisory_unlock(7421)")
                .execute(&mut admin)
                .expect("unlock");
            name
        })
        .clone()
}

/// A short hash of the PostgreSQL migration files, so a changed migration gets a fresh
/// template instead of a stale one.
fn migrations_fingerprint() -> String {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations/postgres");
    let mut files: Vec<_> = walk(std::path::Path::new(dir));
    files.sort();
    let mut hasher = DefaultHasher::new();
    for file in files {
        file.hash(&mut hasher);
        std::fs::read(&file).unwrap_or_default().hash(&mut hasher);
    }
    format!("{:016x}", hasher.finish())
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Declares each test body once and runs it as two tests, `sqlite::NAME` and
/// `postgres::NAME`, each with its own fresh database.
#[macro_export]
macro_rules! backend_tests {
    ($( $(#[$meta:meta])* fn $name:ident($db:ident) $body:block )*) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$meta])*
                #[test]
                fn $name() {
                    let test_db = $crate::TestDb::new($crate::TestBackend::Sqlite);
                    let $db: &conclave_store::Db = &test_db.db;
                    $body
                }
            )*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$meta])*
                #[test]
                fn $name() {
                    let test_db = $crate::TestDb::new($crate::TestBackend::Postgres);
                    let $db: &conclave_store::Db = &test_db.db;
                    $body
                }
            )*
        }
    };
}
