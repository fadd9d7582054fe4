//! The retention sweeper: hard-deletes messages past `retain_until` that no legal hold
//! covers, with their edit history, reactions, burn-on-read state and attachment files,
//! then crypto-shreds the data keys no retained row uses any more.
//!
//! It works in small batches, each one short write transaction, and pauses between
//! batches so live traffic keeps the database (on SQLite, its one writer lock). Every
//! batch re-checks each deadline under the current policies and holds before deleting
//! (see [`crate::retention`]). Attachment files are queued for unlinking in the batch's
//! transaction and unlinked after it commits; the queue is drained first on every run, so
//! a crash at any point leaves neither a row nor a file behind. Data keys of the current
//! and previous epoch are never destroyed (a send may be using them); emptied ones are
//! remembered and shredded by a later run.

use crate::PolicyServiceError;
use crate::holds::ActiveHolds;
use crate::retention::{RetentionResolver, run_job_batch};
use conclave_core::{AuditContext, AuditOutcome, Clock, MessageId, NewAuditEvent, Timestamp};
use conclave_crypto::envelope::epoch_of;
use conclave_store::messages as message_store;
use conclave_store::{Db, DbConnection, retention as store, write_transaction};
use serde::Serialize;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct SweepSettings {
    /// Messages examined per transaction.
    pub batch_size: i64,
    /// Pause between batches, so live traffic gets the database in between.
    pub pause: Duration,
    /// How long after its deadline a message is destroyed: the timer worker announces a
    /// retention cut to connected clients first.
    pub grace: Duration,
    /// Uploads never attached to a message are removed after this long.
    pub abandoned_upload_after: Duration,
    /// The attachments directory (storage paths are relative to it).
    pub attachments_dir: PathBuf,
    /// How often a sweep runs.
    pub interval: Duration,
}

/// What one sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SweepReport {
    pub messages_destroyed: u64,
    pub attachments_destroyed: u64,
    pub keys_shredded: u64,
    /// Due messages a legal hold kept.
    pub held: u64,
    /// Due messages whose deadline the current policies moved later.
    pub rescheduled: u64,
    pub batches: u64,
}

impl SweepReport {
    fn did_something(&self) -> bool {
        self.messages_destroyed
            + self.attachments_destroyed
            + self.keys_shredded
            + self.held
            + self.rescheduled
            > 0
    }
}

/// The oldest epoch whose key may be destroyed is two before `now`'s.
fn shreddable(epoch: i64, now: Timestamp) -> bool {
    epoch < epoch_of(now) - 1
}

/// Shreds (or remembers for later) each emptied `(room, epoch)` key.
fn shred_keys(
    conn: &mut DbConnection,
    key_epochs: &[(String, i64)],
    now: Timestamp,
) -> Result<u64, PolicyServiceError> {
    let mut shredded = 0;
    for (room_id, epoch) in key_epochs {
        if shreddable(*epoch, now) {
            shredded += u64::from(store::shred_key_if_unused(conn, room_id, *epoch)?);
        } else {
            store::add_shred_candidate(conn, room_id, *epoch)?;
        }
    }
    Ok(shredded)
}

/// One batch: examines up to `batch_size` due messages after `cursor`; returns the
/// counts and the next cursor (`None`: nothing more is due).
fn sweep_batch(
    conn: &mut DbConnection,
    settings: &SweepSettings,
    now: Timestamp,
    cursor: Option<(Timestamp, MessageId)>,
    report: &mut SweepReport,
) -> Result<Option<(Timestamp, MessageId)>, PolicyServiceError> {
    write_transaction(conn, |conn| {
        let cutoff = now.minus(settings.grace);
        let due = message_store::due_for_destruction(conn, cutoff, cursor, settings.batch_size)?;
        let Some(last) = due.last() else {
            return Ok(None);
        };
        let next = last.retain_until.map(|at| (at, last.id));
        let holds = ActiveHolds::load(conn)?;
        let periods = holds.periods_for(conn, &due)?;
        let mut resolver = RetentionResolver::load(conn)?;
        let mut doomed: Vec<MessageId> = Vec::with_capacity(due.len());
        for message in &due {
            if holds.covers(message, &periods) {
                report.held += 1;
                continue;
            }
            let deadline = resolver.retain_until(conn, message)?;
            if deadline.is_some_and(|at| at <= cutoff) {
                doomed.push(message.id);
            } else {
                message_store::set_retain_until(conn, message.id, deadline)?;
                report.rescheduled += 1;
            }
        }
        let destroyed = message_store::destroy(conn, &doomed)?;
        store::queue_file_deletions(conn, &destroyed.attachment_paths, now)?;
        let keys = shred_keys(conn, &destroyed.key_epochs, now)?;
        report.messages_destroyed += destroyed.messages as u64;
        report.attachments_destroyed += destroyed.attachment_paths.len() as u64;
        report.keys_shredded += keys;
        report.batches += 1;
        Ok(next.filter(|_| due.len() as i64 == settings.batch_size))
    })
}

/// Removes uploads no message ever referenced, older than the configured age.
fn sweep_abandoned_uploads(
    conn: &mut DbConnection,
    settings: &SweepSettings,
    now: Timestamp,
    report: &mut SweepReport,
) -> Result<(), PolicyServiceError> {
    write_transaction(conn, |conn| {
        let abandoned = store::abandoned_uploads(
            conn,
            now.minus(settings.abandoned_upload_after),
            settings.batch_size,
        )?;
        if abandoned.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = abandoned.iter().map(|(id, ..)| id.clone()).collect();
        let paths: Vec<String> = abandoned.iter().map(|(.., path)| path.clone()).collect();
        let mut key_epochs: Vec<(String, i64)> = abandoned
            .iter()
            .map(|(_, room, epoch, _)| (room.clone(), *epoch))
            .collect();
        key_epochs.sort();
        key_epochs.dedup();
        store::delete_attachment_rows(conn, &ids)?;
        store::queue_file_deletions(conn, &paths, now)?;
        report.attachments_destroyed += ids.len() as u64;
        report.keys_shredded += shred_keys(conn, &key_epochs, now)?;
        Ok(())
    })
}

/// Shreds remembered keys whose epoch is now over.
fn shred_remembered_keys(
    conn: &mut DbConnection,
    now: Timestamp,
    report: &mut SweepReport,
) -> Result<(), PolicyServiceError> {
    loop {
        let candidates = store::shred_candidates(conn, epoch_of(now) - 1, 500)?;
        if candidates.is_empty() {
            return Ok(());
        }
        write_transaction(conn, |conn| {
            for (room_id, epoch) in &candidates {
                report.keys_shredded +=
                    u64::from(store::shred_key_if_unused(conn, room_id, *epoch)?);
                store::remove_shred_candidate(conn, room_id, *epoch)?;
            }
            Ok::<_, PolicyServiceError>(())
        })?;
    }
}

/// Unlinks every queued attachment file (a missing file is already gone) and forgets it.
pub fn unlink_queued_files(
    conn: &mut DbConnection,
    attachments_dir: &Path,
) -> Result<u64, PolicyServiceError> {
    let mut unlinked = 0;
    loop {
        let queued = store::queued_file_deletions(conn, 500)?;
        if queued.is_empty() {
            return Ok(unlinked);
        }
        for relative in queued {
            // Storage paths are written by the attachment service; refuse anything that
            // could leave the directory all the same.
            let path = Path::new(&relative);
            if path.is_absolute()
                || path
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                tracing::error!(path = %relative, "refusing to unlink a queued path outside the attachments directory");
            } else {
                match std::fs::remove_file(attachments_dir.join(path)) {
                    Ok(()) => unlinked += 1,
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                    Err(err) => {
                        tracing::warn!(path = %relative, error = %err, "could not unlink an attachment file; it stays queued");
                        return Ok(unlinked);
                    }
                }
            }
            store::file_deleted(conn, &relative)?;
        }
    }
}

/// One whole sweep, batch after batch until nothing due is left; pauses between batches
/// with `pause` (the async worker sleeps there; the CLI and tests pass a no-op).
pub fn sweep(
    conn: &mut DbConnection,
    settings: &SweepSettings,
    clock: &dyn Clock,
    mut pause: impl FnMut(),
) -> Result<SweepReport, PolicyServiceError> {
    unlink_queued_files(conn, &settings.attachments_dir)?;
    let started = clock.now();
    let sweep_id = uuid::Uuid::now_v7().to_string();
    let mut report = SweepReport::default();
    let mut cursor = None;
    loop {
        let before = report.clone();
        cursor = sweep_batch(conn, settings, clock.now(), cursor, &mut report)?;
        record_progress(conn, &sweep_id, started, &before, &report)?;
        unlink_queued_files(conn, &settings.attachments_dir)?;
        if cursor.is_none() {
            break;
        }
        pause();
    }
    let before = report.clone();
    sweep_abandoned_uploads(conn, settings, clock.now(), &mut report)?;
    shred_remembered_keys(conn, clock.now(), &mut report)?;
    record_progress(conn, &sweep_id, started, &before, &report)?;
    unlink_queued_files(conn, &settings.attachments_dir)?;
    if report.did_something() {
        finish(conn, &sweep_id, clock.now(), &report)?;
    }
    Ok(report)
}

/// Adds a batch's counts to the sweep's row (created at its first work).
fn record_progress(
    conn: &mut DbConnection,
    sweep_id: &str,
    started: Timestamp,
    before: &SweepReport,
    after: &SweepReport,
) -> Result<(), PolicyServiceError> {
    let delta = |a: u64, b: u64| (a - b) as i64;
    let counts = (
        delta(after.messages_destroyed, before.messages_destroyed),
        delta(after.attachments_destroyed, before.attachments_destroyed),
        delta(after.keys_shredded, before.keys_shredded),
        delta(after.held, before.held),
    );
    if counts == (0, 0, 0, 0) {
        return Ok(());
    }
    if store::sweeps(conn, 1)?
        .first()
        .is_none_or(|s| s.id != sweep_id)
    {
        store::insert_sweep(conn, sweep_id, started)?;
    }
    store::add_to_sweep(conn, sweep_id, counts.0, counts.1, counts.2, counts.3)?;
    Ok(())
}

/// Closes the sweep's row and records the run in the audit log.
fn finish(
    conn: &mut DbConnection,
    sweep_id: &str,
    now: Timestamp,
    report: &SweepReport,
) -> Result<(), PolicyServiceError> {
    write_transaction(conn, |conn| {
        if store::sweeps(conn, 1)?
            .first()
            .is_none_or(|s| s.id != sweep_id)
        {
            store::insert_sweep(conn, sweep_id, now)?;
        }
        store::finish_sweep(conn, sweep_id, now)?;
        let event = NewAuditEvent {
            action: "retention.sweep",
            target_kind: Some("retention_sweep"),
            target_id: Some(sweep_id.to_owned()),
            outcome: AuditOutcome::Success,
            details: json!({ "after": report }).to_string(),
        };
        conclave_store::audit::append(conn, &AuditContext::system("sweeper"), &event, now)?;
        Ok(())
    })
}

/// The sweeper's status for compliance officers: the latest runs and the totals.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct SweeperStatus {
    pub total_messages_destroyed: i64,
    pub total_attachments_destroyed: i64,
    pub total_keys_shredded: i64,
    /// Attachment files waiting to be unlinked (non-zero only briefly, or after a crash).
    pub files_queued: i64,
    pub recent: Vec<SweepView>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct SweepView {
    pub id: String,
    pub started_at: Timestamp,
    /// `None` while running (or if the run stopped before it finished).
    pub finished_at: Option<Timestamp>,
    pub messages_destroyed: i64,
    pub attachments_destroyed: i64,
    pub keys_shredded: i64,
    pub held: i64,
}

pub fn status(conn: &mut DbConnection) -> Result<SweeperStatus, PolicyServiceError> {
    let (messages, attachments, keys) = store::sweep_totals(conn)?;
    Ok(SweeperStatus {
        total_messages_destroyed: messages,
        total_attachments_destroyed: attachments,
        total_keys_shredded: keys,
        files_queued: store::queued_file_deletions(conn, i64::MAX)?.len() as i64,
        recent: store::sweeps(conn, 20)?
            .into_iter()
            .map(|s| SweepView {
                id: s.id,
                started_at: Timestamp::from_micros(s.started_at),
                finished_at: s.finished_at.map(Timestamp::from_micros),
                messages_destroyed: s.messages_destroyed,
                attachments_destroyed: s.attachments_destroyed,
                keys_shredded: s.keys_shredded,
                held: s.held,
            })
            .collect(),
    })
}

/// Runs recomputation jobs to the end, a batch at a time.
pub fn run_jobs(
    conn: &mut DbConnection,
    clock: &dyn Clock,
    mut pause: impl FnMut(),
) -> Result<u64, PolicyServiceError> {
    let mut batches = 0;
    while run_job_batch(conn, clock.now())?.is_some() {
        batches += 1;
        pause();
    }
    Ok(batches)
}

/// The background worker: recomputation jobs first, then a sweep, every `interval`.
/// (Several nodes may run it: every step is a conditional, idempotent transaction. Leader
/// election arrives with the multi-node work.)
pub async fn run(db: Db, clock: Arc<dyn Clock>, settings: SweepSettings) {
    let mut tick = tokio::time::interval(settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (clock, settings) = (clock.clone(), settings.clone());
        let pause = settings.pause;
        let outcome = db
            .run(move |conn| {
                run_jobs(conn, clock.as_ref(), || std::thread::sleep(pause))?;
                sweep(conn, &settings, clock.as_ref(), || {
                    std::thread::sleep(pause)
                })
            })
            .await;
        match outcome {
            Ok(report) if report.did_something() => {
                tracing::info!(
                    messages = report.messages_destroyed,
                    attachments = report.attachments_destroyed,
                    keys = report.keys_shredded,
                    held = report.held,
                    rescheduled = report.rescheduled,
                    "retention sweep"
                );
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(error = %err, "retention sweep failed; the next run resumes")
            }
        }
    }
}
