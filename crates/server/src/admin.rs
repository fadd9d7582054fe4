//! `conclave migrate` and `conclave admin …`: operator commands that run against the
//! database directly, through the same service functions as the API, audited as
//! `system:cli`.

use crate::cli::AdminCommand;
use crate::settings::Settings;
use conclave_auth::AuthError;
use conclave_auth::accounts::{self, NewLocalAccount};
use conclave_core::{AuditContext, Clock, DisplayName, Email, RoleSet, SystemClock, Username};
use conclave_store::users as user_store;
use conclave_store::{Db, DbConnection, PoolOptions, migrations};
use std::time::Duration;

/// A command's failure, split by whose fault it is (the exit code says which).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Bad input: exit 2.
    #[error("{0}")]
    Usage(String),
    /// Something failed at run time: exit 1.
    #[error("{0}")]
    Failed(String),
}

impl CommandError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Usage(_) => 2,
            CommandError::Failed(_) => 1,
        }
    }
}

impl From<AuthError> for CommandError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Invalid(_) | AuthError::NotFound | AuthError::Conflict(_) => {
                CommandError::Usage(err.to_string())
            }
            other => CommandError::Failed(other.to_string()),
        }
    }
}

impl From<conclave_store::StoreError> for CommandError {
    fn from(err: conclave_store::StoreError) -> Self {
        CommandError::Failed(err.to_string())
    }
}

fn open(settings: &Settings) -> Result<Db, CommandError> {
    Db::open(
        &settings.database_url(),
        PoolOptions {
            max_size: 2,
            acquire_timeout: Duration::from_secs(settings.database.acquire_timeout_seconds),
        },
    )
    .map_err(CommandError::from)
}

pub fn migrate(settings: &Settings) -> Result<(), CommandError> {
    let db = open(settings)?;
    let mut conn = db.conn()?;
    let applied = migrations::run_pending(&mut conn)?;
    if applied.is_empty() {
        println!("database {} is up to date", db.backend().display());
    } else {
        println!(
            "applied {} migration(s) to {}: {}",
            applied.len(),
            db.backend().display(),
            applied.join(", ")
        );
    }
    Ok(())
}

pub(crate) fn cli_context() -> AuditContext {
    let operator = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_default();
    let mut context = AuditContext::system("cli");
    if !operator.is_empty() {
        context.actor_name = format!("system:cli ({operator})");
    }
    context
}

pub(crate) fn user_id(
    conn: &mut DbConnection,
    username: &str,
) -> Result<conclave_core::UserId, CommandError> {
    let name = Username::parse(username).map_err(|e| CommandError::Usage(e.to_string()))?;
    user_store::find_by_username(conn, &name)?
        .map(|user| user.id)
        .ok_or_else(|| CommandError::Usage(format!("no account named `{name}`")))
}

fn roles(list: &str) -> Result<RoleSet, CommandError> {
    RoleSet::parse_list(list).map_err(|e| CommandError::Usage(e.to_string()))
}

/// The database, migrated (or checked, when migrations at start are off), for an
/// operator command.
pub(crate) fn open_migrated(settings: &Settings) -> Result<Db, CommandError> {
    let db = open(settings)?;
    let mut conn = db.conn()?;
    if settings.database.migrate_on_start {
        migrations::run_pending(&mut conn)?;
    } else if migrations::has_pending(&mut conn)? {
        return Err(CommandError::Failed(
            "the database schema is behind; run `conclave migrate` first".into(),
        ));
    }
    Ok(db)
}

pub fn run(settings: &Settings, command: AdminCommand) -> Result<(), CommandError> {
    let db = open_migrated(settings)?;
    let mut conn = db.conn()?;
    let now = SystemClock.now();
    let context = cli_context();
    match command {
        AdminCommand::CreateUser {
            username,
            display_name,
            email,
            roles: role_list,
        } => {
            let usage = |e: conclave_core::ValidationError| CommandError::Usage(e.to_string());
            let account = NewLocalAccount {
                username: Username::parse(&username).map_err(usage)?,
                display_name: DisplayName::parse(&display_name).map_err(usage)?,
                email: email
                    .as_deref()
                    .map(Email::parse)
                    .transpose()
                    .map_err(usage)?,
                roles: roles(&role_list)?,
                password: None,
            };
            let created = accounts::create_local_account(&mut conn, &context, now, account)?;
            println!("created {} ({})", created.user.username, created.user.id);
            if let Some(password) = created.one_time_password {
                println!("one-time password: {password}");
                println!("(it must be changed at first login)");
            }
        }
        AdminCommand::SetRoles {
            username,
            roles: role_list,
        } => {
            let id = user_id(&mut conn, &username)?;
            let user = accounts::set_roles(&mut conn, &context, now, id, roles(&role_list)?)?;
            let names: Vec<_> = user.roles.iter().map(|r| r.as_str()).collect();
            println!("{}: roles {}", user.username, names.join(","));
        }
        AdminCommand::Suspend { username } => {
            let id = user_id(&mut conn, &username)?;
            let user = accounts::suspend(&mut conn, &context, now, id)?;
            println!("{}: suspended; all sessions ended", user.username);
        }
        AdminCommand::Reactivate { username } => {
            let id = user_id(&mut conn, &username)?;
            let user = accounts::reactivate(&mut conn, &context, now, id)?;
            println!("{}: active", user.username);
        }
        AdminCommand::ResetPassword { username } => {
            let id = user_id(&mut conn, &username)?;
            let new_password = accounts::reset_password(&mut conn, &context, now, id)?;
            println!("{username}: one-time password: {new_password}");
            println!("(it must be changed at first login; the account's sessions were ended)");
        }
        AdminCommand::ListUsers { json } => {
            let mut after: Option<String> = None;
            if !json {
                println!("{:<32} {:<13} {:<40} ID", "USERNAME", "STATUS", "ROLES");
            }
            loop {
                let page = accounts::list(&mut conn, after.as_deref(), 500)?;
                for user in &page {
                    let roles: Vec<_> = user.roles.iter().map(|r| r.as_str()).collect();
                    if json {
                        let line = serde_json::json!({
                            "id": user.id, "username": user.username, "display_name": user.display_name,
                            "email": user.email, "status": user.status, "roles": user.roles,
                        });
                        println!("{line}");
                    } else {
                        println!(
                            "{:<32} {:<13} {:<40} {}",
                            user.username,
                            user.status.as_str(),
                            roles.join(","),
                            user.id
                        );
                    }
                }
                if page.len() < 500 {
                    break;
                }
                after = page.last().map(|u| u.username.to_string());
            }
        }
    }
    Ok(())
}

/// `conclave ldap sync [--dry-run]`: one directory sync, through the same service
/// function as the scheduled job and the admin endpoint.
pub fn ldap_sync(settings: &Settings, dry_run: bool, json: bool) -> Result<(), CommandError> {
    let config = settings.identity.ldap.as_ref().ok_or_else(|| {
        CommandError::Usage("no directory is configured ([identity.ldap] in conclave.toml)".into())
    })?;
    let directory = conclave_auth::identity::ldap::Directory::new(config)
        .map_err(|err| CommandError::Usage(err.to_string()))?;
    let db = open(settings)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| CommandError::Failed(err.to_string()))?;
    let report = runtime.block_on(conclave_auth::identity::sync::run(
        &db,
        &directory,
        &Default::default(),
        &SystemClock,
        &cli_context(),
        dry_run,
        None,
    ))?;
    if json {
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
        return Ok(());
    }
    let heading = if report.dry_run {
        "directory sync (dry run: nothing changed)"
    } else {
        "directory sync"
    };
    println!(
        "{heading}: {} entries in {} page(s), {} ms",
        report.entries, report.pages, report.duration_ms
    );
    println!(
        "  created {}, updated {}, reactivated {}, unchanged {}, deprovisioned {}",
        report.created, report.updated, report.reactivated, report.unchanged, report.deprovisioned
    );
    println!(
        "  roles changed {}, security-group changes {}, disabled {}, skipped {}",
        report.roles_changed, report.security_group_changes, report.disabled, report.skipped
    );
    if let Some(reason) = &report.deprovisioning_skipped {
        println!("  deprovisioning skipped: {reason}");
    }
    for problem in &report.problems {
        println!("  problem: {problem}");
    }
    Ok(())
}
