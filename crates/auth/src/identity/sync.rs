//! Directory sync: reads every user entry a page at a time (RFC 2696 paged results),
//! creates and updates accounts, maps groups to roles and security groups, and then
//! deprovisions the accounts the directory no longer lists (or lists as disabled),
//! ending their sessions at once. A dry run does the same work inside transactions that
//! are rolled back, so its report is exact and nothing changes.
//!
//! Memory: one page of entries, plus 16 bytes per directory user (a digest of each
//! subject seen, for the final sweep); 100,000 users cost about 2 MB beyond the page.
//! Nothing is deprovisioned after an incomplete read, nor when the directory returned
//! no users at all (a wrong base DN must not empty the installation).

use super::ldap::{Directory, DirectoryEntry, DirectoryError};
use super::provision::{ProviderRules, deprovision, provision};
use crate::audit;
use crate::error::AuthError;
use crate::settings::{Revocations, Revoked};
use conclave_core::{AuditContext, AuditOutcome, UserId, UserStatus};
use conclave_store::users::{self as user_store, AuthSource};
use conclave_store::{Db, DbConnection, StoreError, identities, org_settings, write_transaction};
use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{Scope, SearchEntry};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The provider name of directory identities.
pub const PROVIDER: &str = "ldap";
/// A past run, as its audit event recorded it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SyncRun {
    pub at: conclave_core::Timestamp,
    /// `success` or `failure`.
    pub outcome: String,
    /// Who started it: an admin's username, or `directory-sync` for the schedule.
    pub started_by: String,
    pub report: SyncReport,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// The latest `limit` runs (dry runs included), newest first, from the audit log where
/// every run is recorded.
pub fn recent_runs(conn: &mut DbConnection, limit: i64) -> Result<Vec<SyncRun>, AuthError> {
    Ok(
        conclave_store::audit::latest_of_action(conn, "directory.sync", limit)?
            .into_iter()
            .map(|event| {
                let details: serde_json::Value =
                    serde_json::from_str(&event.details).unwrap_or_default();
                SyncRun {
                    at: conclave_core::Timestamp::from_micros(event.occurred_at),
                    outcome: event.outcome,
                    started_by: event.actor_name,
                    error: details["error"].as_str().map(str::to_owned),
                    report: serde_json::from_value(details).unwrap_or_default(),
                }
            })
            .collect(),
    )
}

/// The advisory lock that elects one sync across nodes.
const SYNC_LOCK: i64 = 7_423_001;
/// Most problems listed in a report (the counts are always complete).
const MAX_PROBLEMS: usize = 20;

/// What a sync run did (or, for a dry run, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct SyncReport {
    pub dry_run: bool,
    /// User entries read from the directory.
    pub entries: u64,
    pub created: u64,
    pub updated: u64,
    pub reactivated: u64,
    pub unchanged: u64,
    pub roles_changed: u64,
    pub security_group_changes: u64,
    pub deprovisioned: u64,
    /// Entries that could not become accounts (no usable username or id, or a username
    /// taken by another account); see `problems`.
    pub skipped: u64,
    /// Entries present but disabled (AD userAccountControl), treated as gone.
    pub disabled: u64,
    /// Why deprovisioning did not run, when it did not.
    pub deprovisioning_skipped: Option<String>,
    pub problems: Vec<String>,
    pub pages: u64,
    pub duration_ms: u64,
}

impl SyncReport {
    fn problem(&mut self, text: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(text);
        }
    }
}

/// Keeps two syncs from overlapping in this process (the advisory lock does across nodes).
#[derive(Clone, Debug, Default)]
pub struct SyncGuard(Arc<AtomicBool>);

struct Held(Arc<AtomicBool>);
impl Drop for Held {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl SyncGuard {
    fn try_hold(&self) -> Option<Held> {
        (!self.0.swap(true, Ordering::SeqCst)).then(|| Held(self.0.clone()))
    }
}

fn digest(subject: &str) -> [u8; 16] {
    let hash = Sha256::digest(subject.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&hash[..16]);
    out
}

/// A transaction's way out: commit, roll back with a result (dry run), or fail.
enum Exit<T> {
    Rollback(T),
    Fail(AuthError),
}

impl<T> From<StoreError> for Exit<T> {
    fn from(err: StoreError) -> Self {
        Exit::Fail(err.into())
    }
}

/// Runs `work` in a write transaction that commits, or rolls back when `dry_run`.
fn transact<T>(
    conn: &mut DbConnection,
    dry_run: bool,
    work: impl FnOnce(&mut DbConnection) -> Result<T, AuthError>,
) -> Result<T, AuthError> {
    match write_transaction(conn, |conn| {
        let done = work(conn).map_err(Exit::Fail)?;
        if dry_run {
            Err(Exit::Rollback(done))
        } else {
            Ok(done)
        }
    }) {
        Ok(done) | Err(Exit::Rollback(done)) => Ok(done),
        Err(Exit::Fail(err)) => Err(err),
    }
}

/// One sync run. `clock` gives each transaction its time. Fails with
/// [`AuthError::SyncRunning`] when another run holds the lock, and with
/// [`AuthError::DirectoryUnavailable`] when the directory fails mid-way (after recording
/// the partial run in the audit log; nothing is deprovisioned then).
pub async fn run(
    db: &Db,
    directory: &Directory,
    guard: &SyncGuard,
    clock: &dyn conclave_core::Clock,
    context: &AuditContext,
    dry_run: bool,
    revocations: Option<&Revocations>,
) -> Result<SyncReport, AuthError> {
    let _held = guard.try_hold().ok_or(AuthError::SyncRunning)?;
    // The cross-node lock lives on one connection for the whole run.
    let pool = db.clone();
    let lock = tokio::task::spawn_blocking(move || SingletonLock::acquire(&pool))
        .await
        .map_err(|err| StoreError::Unavailable(format!("the sync lock task failed: {err}")))??
        .ok_or(AuthError::SyncRunning)?;
    let started = std::time::Instant::now();
    let mut report = SyncReport {
        dry_run,
        ..SyncReport::default()
    };
    let outcome = sync_pages(
        db,
        directory,
        clock,
        context,
        dry_run,
        revocations,
        &mut report,
    )
    .await;
    report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    if !dry_run {
        conclave_metrics::directory_synced(outcome.is_ok());
    }
    let (outcome_kind, error) = match &outcome {
        Ok(()) => (AuditOutcome::Success, None),
        Err(err) => (AuditOutcome::Failure, Some(err.to_string())),
    };
    let (record, ctx, now) = (report.clone(), context.clone(), clock.now());
    let audited = db
        .run(move |conn| {
            write_transaction(conn, |conn| {
                let mut details = serde_json::to_value(&record).unwrap_or_default();
                if let Some(error) = error {
                    details["error"] = serde_json::Value::String(error);
                }
                audit(
                    conn,
                    &ctx,
                    now,
                    "directory.sync",
                    None,
                    outcome_kind,
                    details,
                )
            })
        })
        .await;
    let _ = tokio::task::spawn_blocking(move || drop(lock)).await;
    audited?;
    outcome.map(|()| report)
}

/// The PostgreSQL advisory lock that elects one sync across nodes, held on its own pooled
/// connection and released when dropped, whatever ends the run (an error, a panic), so
/// the connection never goes back to the pool still holding it.
struct SingletonLock(Option<conclave_store::PooledDbConnection>);

impl SingletonLock {
    /// `None` when another run holds the lock.
    fn acquire(db: &Db) -> Result<Option<Self>, StoreError> {
        let mut conn = db.conn()?;
        Ok(org_settings::try_lock_singleton(&mut conn, SYNC_LOCK)?.then(|| Self(Some(conn))))
    }
}

impl Drop for SingletonLock {
    fn drop(&mut self) {
        if let Some(mut conn) = self.0.take()
            && let Err(err) = org_settings::unlock_singleton(&mut conn, SYNC_LOCK)
        {
            tracing::warn!(error = %err, "could not release the directory sync lock");
        }
    }
}

async fn sync_pages(
    db: &Db,
    directory: &Directory,
    clock: &dyn conclave_core::Clock,
    context: &AuditContext,
    dry_run: bool,
    revocations: Option<&Revocations>,
    report: &mut SyncReport,
) -> Result<(), AuthError> {
    let config = &directory.config;
    let page_size = usize::try_from(config.page_size).unwrap_or(500).max(1);
    let mut seen: HashSet<[u8; 16]> = HashSet::new();
    let mut ldap = directory.connect_as_service().await?;
    let adapters: Vec<Box<dyn Adapter<'_, String, Vec<String>>>> = vec![
        Box::new(EntriesOnly::new()),
        Box::new(PagedResults::new(i32::try_from(page_size).unwrap_or(500))),
    ];
    let timeout = std::time::Duration::from_secs(config.operation_timeout_seconds);
    let mut stream = ldap
        .with_timeout(timeout)
        .streaming_search_with(
            adapters,
            &config.user_base_dn,
            Scope::Subtree,
            config.user_filter.trim(),
            directory.attributes(),
        )
        .await
        .map_err(|err| DirectoryError::Unavailable(err.to_string()))?;
    let mut batch: Vec<DirectoryEntry> = Vec::with_capacity(page_size);
    loop {
        let next = stream
            .next()
            .await
            .map_err(|err| DirectoryError::Unavailable(format!("reading entries: {err}")))?;
        let done = next.is_none();
        if let Some(entry) = next {
            batch.push(DirectoryEntry::from_search(
                SearchEntry::construct(entry),
                &config.id_attribute,
            ));
        }
        if batch.len() >= page_size || (done && !batch.is_empty()) {
            let entries = std::mem::take(&mut batch);
            report.pages += 1;
            apply_page(
                db, directory, clock, context, dry_run, entries, &mut seen, report,
            )
            .await?;
        }
        if done {
            break;
        }
    }
    let result = stream.finish().await;
    if result.rc != 0 {
        return Err(DirectoryError::Unavailable(format!(
            "the search ended with result code {} ({})",
            result.rc, result.text
        ))
        .into());
    }
    let _ = ldap.unbind().await;

    if !config.deprovision {
        report.deprovisioning_skipped = Some("identity.ldap.deprovision is off".into());
    } else if seen.is_empty() {
        report.deprovisioning_skipped = Some(
            "the directory returned no enabled users; check user_base_dn and user_filter".into(),
        );
    } else {
        sweep(db, clock, context, dry_run, revocations, &seen, report).await?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn apply_page(
    db: &Db,
    directory: &Directory,
    clock: &dyn conclave_core::Clock,
    context: &AuditContext,
    dry_run: bool,
    entries: Vec<DirectoryEntry>,
    seen: &mut HashSet<[u8; 16]>,
    report: &mut SyncReport,
) -> Result<(), AuthError> {
    let directory = directory.clone();
    let context = context.clone();
    let now = clock.now();
    let mut page = SyncReport::default();
    let (page, subjects) = db
        .run(move |conn| {
            let mut subjects = Vec::with_capacity(entries.len());
            let rules = ProviderRules {
                provider: PROVIDER,
                source: AuthSource::Ldap,
                mappings: directory.mappings(),
                reactivate_deprovisioned: true,
            };
            transact(conn, dry_run, |conn| {
                for entry in &entries {
                    page.entries += 1;
                    if entry.is_disabled() {
                        page.disabled += 1;
                        continue;
                    }
                    // Present and enabled in the directory: never deprovisioned by this
                    // run, even when its entry cannot be applied (a username Conclave
                    // refuses, a missing attribute) — that is reported, not punished.
                    if let Some(subject) = directory.subject(entry).filter(|s| !s.is_empty()) {
                        subjects.push(digest(subject));
                    }
                    let profile = match directory.profile(entry) {
                        Ok(profile) => profile,
                        Err(err) => {
                            page.skipped += 1;
                            page.problem(format!("{}: {err}", entry.dn));
                            continue;
                        }
                    };
                    match provision(conn, &context, now, &rules, &profile) {
                        Ok((_, done)) => {
                            if done.created {
                                page.created += 1;
                            } else if done.reactivated {
                                page.reactivated += 1;
                            } else if done.changed() {
                                page.updated += 1;
                            } else {
                                page.unchanged += 1;
                            }
                            page.roles_changed += u64::from(done.roles_changed);
                            page.security_group_changes +=
                                (done.groups_added + done.groups_removed) as u64;
                            if let Some(reason) = done.roles_refused {
                                page.problem(format!("{}: roles kept: {reason}", entry.dn));
                            }
                            for group in done.unknown_groups {
                                page.problem(format!(
                                    "{}: no security group named `{group}`",
                                    entry.dn
                                ));
                            }
                        }
                        Err(AuthError::Conflict(reason)) => {
                            page.skipped += 1;
                            page.problem(format!("{}: {reason}", entry.dn));
                        }
                        Err(other) => return Err(other),
                    }
                }
                Ok(())
            })?;
            Ok::<_, AuthError>((page, subjects))
        })
        .await?;
    seen.extend(subjects);
    report.entries += page.entries;
    report.created += page.created;
    report.updated += page.updated;
    report.reactivated += page.reactivated;
    report.unchanged += page.unchanged;
    report.roles_changed += page.roles_changed;
    report.security_group_changes += page.security_group_changes;
    report.skipped += page.skipped;
    report.disabled += page.disabled;
    for problem in page.problems {
        report.problem(problem);
    }
    Ok(())
}

/// Deprovisions directory accounts not seen in this run, a page of identities at a time.
async fn sweep(
    db: &Db,
    clock: &dyn conclave_core::Clock,
    context: &AuditContext,
    dry_run: bool,
    revocations: Option<&Revocations>,
    seen: &HashSet<[u8; 16]>,
    report: &mut SyncReport,
) -> Result<(), AuthError> {
    const PAGE: i64 = 500;
    let mut after: Option<String> = None;
    loop {
        let cursor = after.clone();
        let page = db
            .run(move |conn| identities::page(conn, PROVIDER, cursor.as_deref(), PAGE))
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(last.subject.clone());
        let gone: Vec<UserId> = page
            .iter()
            .filter(|identity| !seen.contains(&digest(&identity.subject)))
            .map(|identity| identity.user_id)
            .collect();
        if !gone.is_empty() {
            let (context, now) = (context.clone(), clock.now());
            let ended: Vec<UserId> = db
                .run(move |conn| {
                    transact(conn, dry_run, |conn| {
                        let mut ended = Vec::new();
                        for user_id in gone {
                            let Some(user) = user_store::find_by_id(conn, user_id)? else {
                                continue;
                            };
                            if user.status == UserStatus::Active
                                && deprovision(
                                    conn,
                                    &context,
                                    now,
                                    &user,
                                    "gone from or disabled in the directory",
                                )?
                            {
                                ended.push(user_id);
                            }
                        }
                        Ok(ended)
                    })
                })
                .await?;
            report.deprovisioned += ended.len() as u64;
            if !dry_run && let Some(revocations) = revocations {
                for user in ended {
                    revocations.notify(Revoked::User(user));
                }
            }
        }
        if (page.len() as i64) < PAGE {
            break;
        }
    }
    Ok(())
}
