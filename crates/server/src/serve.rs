//! `conclave serve`: migrate (or check), create the first admin on a new installation,
//! print how to log in, and serve until SIGTERM or Ctrl-C, letting in-flight requests
//! finish. With several nodes on PostgreSQL it also starts the cross-node fan-out
//! listener (`api` and `all` roles) and the election of the singleton workers (`worker`
//! and `all`, see [`crate::leader`]); on SQLite it holds a lock beside the database so a
//! second node is refused.

use crate::app::{self, AppState};
use crate::openapi::REFERENCE_PATH;
use crate::settings::Settings;
use actix_web::HttpServer;
use conclave_auth::accounts;
use conclave_core::{Clock, SystemClock};
use conclave_store::migrations;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("database: {0}")]
    Database(#[from] conclave_store::StoreError),
    #[error(
        "the database schema is behind this binary; run `conclave migrate` first (or set database.migrate_on_start = true)"
    )]
    MigrationsPending,
    #[error("creating the first admin: {0}")]
    Bootstrap(#[from] conclave_auth::AuthError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
    #[error("master keys: {0}")]
    Keys(#[from] crate::keys::KeyError),
    #[error(
        "another `conclave serve` is already using the SQLite database {0}: SQLite serves one node only; to run several nodes, use PostgreSQL (database.url = \"postgres://...\")"
    )]
    SqliteInUse(String),
}

/// Held for the life of a node on SQLite: an exclusive lock on `{database}.node-lock`.
#[derive(Debug)]
pub struct SqliteNodeLock {
    _file: std::fs::File,
}

/// Takes the SQLite node lock, or says that another node holds it. The lock is the
/// operating system's, so it goes with the process however it ends.
pub fn lock_sqlite_node(database: &std::path::Path) -> Result<SqliteNodeLock, ServeError> {
    let mut name = database.as_os_str().to_owned();
    name.push(".node-lock");
    let path = std::path::PathBuf::from(name);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(SqliteNodeLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(ServeError::SqliteInUse(database.display().to_string()))
        }
        Err(std::fs::TryLockError::Error(err)) => Err(ServeError::Io(err)),
    }
}

pub async fn run(settings: Settings) -> Result<(), ServeError> {
    // Unreadable or mismatched certificate files stop the start, before any other work.
    let tls = match settings.tls.files() {
        Some((cert, key)) => Some(Arc::new(crate::tls::ReloadableCert::load(cert, key)?)),
        None => None,
    };
    // SIGHUP reloads the certificate; without TLS it is logged and ignored, never the
    // default action (which ends the process: `kill -HUP` from a generic reload unit).
    crate::tls::spawn_reload_on_sighup(tls.clone())?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let db = app::open_db(&settings)?;
    let _node_lock = match db.backend() {
        conclave_store::Backend::Sqlite { path } => Some(lock_sqlite_node(path)?),
        conclave_store::Backend::Postgres { .. } => None,
    };
    let migrate = settings.database.migrate_on_start;
    let applied = db
        .run(move |conn| {
            if migrate {
                migrations::run_pending(conn)
            } else if migrations::has_pending(conn)? {
                Ok(vec!["pending".to_owned()])
            } else {
                Ok(Vec::new())
            }
        })
        .await?;
    if !migrate && !applied.is_empty() {
        return Err(ServeError::MigrationsPending);
    }
    if !applied.is_empty() {
        tracing::info!(migrations = ?applied, "applied database migrations");
    }
    let keys = {
        let (settings, db) = (settings.clone(), db.clone());
        tokio::task::spawn_blocking(move || crate::keys::load_for_serving(&settings, &db))
            .await
            .map_err(|err| ServeError::Io(std::io::Error::other(err)))??
    };
    let audit_key = {
        let settings = settings.clone();
        tokio::task::spawn_blocking(move || crate::keys::load_audit_key(&settings, true))
            .await
            .map_err(|err| ServeError::Io(std::io::Error::other(err)))??
    };
    let state = AppState::new(
        &settings,
        db.clone(),
        keys.keyring,
        audit_key,
        clock.clone(),
    );
    let now = clock.now();
    let first_admin = db
        .run(move |conn| accounts::ensure_first_admin(conn, now))
        .await?;

    if settings.role.runs_workers() {
        let leading = crate::leader::elect(db.backend().clone(), state.leadership.clone())?;
        let (state, settings, clock) = (state.clone(), settings.clone(), clock.clone());
        actix_web::rt::spawn(crate::leader::run_while_leading(leading, move || {
            spawn_workers(&state, &settings, &clock)
        }));
    } else {
        tracing::info!("role api: this node never runs the singleton workers");
    }
    if settings.role.serves_api()
        && let conclave_store::Backend::Postgres { url } = db.backend()
    {
        conclave_messaging::realtime::fanout::spawn_listener(state.messaging.clone(), url.clone())?;
    }

    let http = &settings.http;
    let server_state = state.clone();
    let mut server = HttpServer::new(move || app::build(server_state.clone()))
        .client_request_timeout(Duration::from_secs(http.client_request_timeout_seconds))
        .client_disconnect_timeout(Duration::from_secs(http.client_disconnect_timeout_seconds))
        .keep_alive(Duration::from_secs(http.keep_alive_seconds))
        .shutdown_timeout(http.shutdown_timeout_seconds);
    if http.workers > 0 {
        server = server.workers(http.workers);
    }
    let bind_error = |source| ServeError::Bind {
        addr: settings.bind,
        source,
    };
    let server = match &tls {
        Some(resolver) => {
            let config = crate::tls::server_config(resolver.clone())?;
            server
                .bind_rustls_0_23(settings.bind, config)
                .map_err(bind_error)?
        }
        None => server.bind(settings.bind).map_err(bind_error)?,
    };
    let bound = server.addrs().first().copied().unwrap_or(settings.bind);
    let url = match &settings.public_url {
        Some(_) => settings.public_url(),
        None => format!("{}://{bound}", settings.scheme()),
    };
    tracing::info!(%url, database = %db.backend().display(), role = settings.role.name(), "Conclave is serving");
    print_banner(&url, first_admin.as_ref(), keys.generated.as_deref());
    server.run().await?;
    tracing::info!("Conclave stopped");
    Ok(())
}

/// Starts the singleton workers; run only on the node that leads them.
fn spawn_workers(
    state: &AppState,
    settings: &Settings,
    clock: &Arc<dyn Clock>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let db = &state.db;
    // The timer worker announces expiries; every read path hides them regardless.
    let mut tasks = vec![actix_web::rt::spawn(conclave_messaging::expiry::run(
        state.messaging.clone(),
    ))];
    if let Some(syslog) = settings.syslog_settings() {
        tracing::info!(address = %syslog.address, transport = ?syslog.transport, "forwarding the audit log to syslog");
        tasks.push(actix_web::rt::spawn(conclave_audit::syslog::run(
            db.clone(),
            syslog,
        )));
    }
    if settings.export.worker_enabled {
        tasks.push(actix_web::rt::spawn(run_exports(
            state.clone(),
            clock.clone(),
            settings.export_schedules(),
            settings.export_read_ahead(db.backend().clone()),
        )));
    }
    if settings.retention.sweeper_enabled {
        tasks.push(actix_web::rt::spawn(conclave_policy::sweeper::run(
            db.clone(),
            clock.clone(),
            settings.sweep_settings(),
        )));
    }
    tasks.push(actix_web::rt::spawn(sign_checkpoints(
        state.clone(),
        clock.clone(),
        Duration::from_secs(settings.audit.checkpoint_interval_seconds),
    )));
    if let (Some(directory), Some(config)) = (&state.identity.directory, &settings.identity.ldap)
        && config.sync_interval_minutes > 0
    {
        tasks.push(actix_web::rt::spawn(sync_directory(
            state.clone(),
            directory.clone(),
            Duration::from_secs(config.sync_interval_minutes * 60),
        )));
    }
    tasks
}

/// What a person starting the server needs: where it is and how to log in. Printed to
/// stdout (not the log) so the one-time password is shown once and not shipped with logs.
fn print_banner(
    url: &str,
    first_admin: Option<&accounts::CreatedAccount>,
    generated_key: Option<&std::path::Path>,
) {
    println!();
    if let Some(path) = generated_key {
        println!(
            "  WARNING: generated a new master key at {}.",
            path.display()
        );
        println!("  Back it up separately from the database: without it no message can be read.");
        println!("  In production, provide the key through keys.file or keys.master_key.");
        println!();
    }
    println!("  Conclave is serving at {url}");
    println!("  API reference:         {url}{REFERENCE_PATH}");
    match first_admin.and_then(|admin| admin.one_time_password.as_deref().map(|pw| (admin, pw))) {
        Some((admin, password)) => {
            println!();
            println!("  First start: an admin account was created.");
            println!("    username:           {}", admin.user.username);
            println!("    one-time password:  {password}");
            println!("  Open {url}/ in a browser (or POST {url}/api/v1/auth/login and then");
            println!(
                "  {url}/api/v1/me/password, as README.md shows); a new password comes first."
            );
            // Tests and the load generator read the banner up to this line.
            println!("  Log in with the username and one-time password above.");
        }
        None => {
            println!(
                "  Log in with your account at {url}/. Lost the admin password? `conclave admin reset-password admin`"
            );
        }
    }
    println!();
}

/// Signs a checkpoint of the audit chain every `interval` (when the chain moved).
async fn sign_checkpoints(state: AppState, clock: Arc<dyn Clock>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    loop {
        ticker.tick().await;
        let (key, now) = (state.audit_key.clone(), clock.now());
        if let Err(err) = state
            .db
            .run(move |conn| conclave_audit::checkpoint(conn, &key, now))
            .await
        {
            tracing::warn!(error = %err, "could not sign an audit checkpoint; will retry");
        }
    }
}

/// Syncs the directory every `interval`; one node at a time (an advisory lock elects it).
async fn sync_directory(
    state: AppState,
    directory: conclave_auth::identity::ldap::Directory,
    interval: Duration,
) {
    let context = conclave_core::AuditContext::system("directory-sync");
    loop {
        tokio::time::sleep(interval).await;
        let report = conclave_auth::identity::sync::run(
            &state.db,
            &directory,
            &state.identity.sync_guard,
            state.auth.clock.as_ref(),
            &context,
            false,
            Some(&state.auth.revocations),
        )
        .await;
        match report {
            Ok(report) => tracing::info!(
                entries = report.entries,
                created = report.created,
                updated = report.updated,
                deprovisioned = report.deprovisioned,
                duration_ms = report.duration_ms,
                "directory sync finished"
            ),
            Err(conclave_auth::AuthError::SyncRunning) => {
                tracing::debug!("directory sync skipped: another run holds the lock");
            }
            Err(err) => tracing::warn!(error = %err, "directory sync failed; will retry"),
        }
    }
}

/// The export worker: starts scheduled exports when their window ends, and runs pending
/// jobs (and ones whose worker died) one at a time.
async fn run_exports(
    state: AppState,
    clock: Arc<dyn Clock>,
    schedules: Vec<conclave_audit::exports::Schedule>,
    read_ahead: conclave_audit::exports::ReadAhead,
) {
    let source = Arc::new(state.archive_source());
    let read_ahead = Arc::new(read_ahead);
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (source, clock, schedules) = (source.clone(), clock.clone(), schedules.clone());
        let read_ahead = read_ahead.clone();
        let (key, dir) = (state.audit_key.clone(), state.exports_dir.clone());
        let outcome = state
            .db
            .run(move |conn| {
                for schedule in &schedules {
                    if let Err(err) =
                        conclave_audit::exports::start_scheduled(conn, schedule, clock.now())
                    {
                        tracing::warn!(schedule = %schedule.name, error = %err, "could not start a scheduled export");
                    }
                }
                while let Some(id) = conclave_audit::exports::run_next(
                    conn,
                    source.as_ref(),
                    Some(&read_ahead),
                    &key,
                    &dir,
                    clock.as_ref(),
                )? {
                    tracing::info!(export = %id, "compliance export finished");
                }
                Ok::<_, conclave_audit::exports::ExportError>(())
            })
            .await;
        if let Err(err) = outcome {
            tracing::warn!(error = %err, "the export worker failed; it retries");
        }
    }
}
