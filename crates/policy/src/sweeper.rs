//! The retention sweeper: hard-deletes messages past `retain_until` that no legal hold
//! covers, with their edit history, reactions, burn-on-read state and attachment files,
//! then crypto-shreds the data keys no retained row uses any more.
//!
//! It works in small batches, each one short write transaction, and pauses between
//! batches so live traffic keeps the database (on SQLite, its one writer lock). Every
//! batch re-checks each deadline under the current policies and holds before deleting
//! (see [`crate::retention`]), records what it destroyed in the audit log and the run's
//! totals in the same transaction, and queues the attachment files, which are unlinked
//! after it commits; the queue is drained first on every run, so a crash at any point
//! leaves neither a row nor a file behind, nor a destruction unrecorded. A message users
//! could still see is destroyed only `grace` after the timer worker announced its end to
//! connected clients. Data keys of the current and previous epoch are never destroyed (a
//! send may be using them); emptied ones are remembered and shredded by a later run.
//!
//! Held messages stay due; a run remembers where it stopped ([`SweepCursor`]) and the
//! next one continues from there while holds and policies are unchanged, so a large
//! held backlog is examined once per change, not on every run.

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
    /// Due messages users could still see, left until their end is announced.
    pub awaiting_announcement: u64,
    /// Attachment files that could not be unlinked (they stay queued).
    pub unlink_failures: u64,
    pub batches: u64,
}

impl SweepReport {
    fn destroyed_anything(&self) -> bool {
        self.messages_destroyed + self.attachments_destroyed + self.keys_shredded > 0
    }
}

/// Where the last run stopped, valid while holds and policies stay as they were.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepCursor {
    fingerprint: String,
    position: Option<(Timestamp, MessageId)>,
}

/// Remembered keys examined, and destroyed when unused, per transaction.
const SHRED_PAGE: i64 = 100;

/// Remembers each `(room, epoch)` key the destroyed rows used: whether it is now unused
/// is decided after the batches (see [`shred_remembered_keys`]), so a batch never holds
/// the database for it.
fn remember_keys(
    conn: &mut DbConnection,
    key_epochs: &[(String, i64)],
) -> Result<(), PolicyServiceError> {
    Ok(store::add_shred_candidates(conn, key_epochs)?)
}

/// Records a batch's destruction in the audit log and the run's totals, in the batch's
/// transaction: the messages and `(room, epoch)` data keys destroyed, by id.
#[allow(clippy::too_many_arguments)] // one batch's outcome, counted
fn record_batch(
    conn: &mut DbConnection,
    sweep_id: &str,
    started: Timestamp,
    now: Timestamp,
    messages: &[MessageId],
    attachments: u64,
    keys: &[(String, i64)],
    held: u64,
) -> Result<(), PolicyServiceError> {
    if messages.is_empty() && attachments == 0 && keys.is_empty() {
        return Ok(());
    }
    store::add_to_sweep(
        conn,
        sweep_id,
        started,
        messages.len() as i64,
        attachments as i64,
        keys.len() as i64,
        held as i64,
    )?;
    let keys: Vec<_> = keys
        .iter()
        .map(|(room_id, epoch)| json!({"room_id": room_id, "epoch": epoch}))
        .collect();
    let event = NewAuditEvent {
        action: "retention.destroy",
        target_kind: Some("retention_sweep"),
        target_id: Some(sweep_id.to_owned()),
        outcome: AuditOutcome::Success,
        details: json!({
            "messages": messages,
            "attachments_destroyed": attachments,
            "keys_shredded": keys.len(),
            "keys": keys,
        })
        .to_string(),
    };
    conclave_store::audit::append(conn, &AuditContext::system("sweeper"), &event, now)?;
    Ok(())
}

/// Where a run is, and how far the next run may skip: past a prefix of messages that
/// were held (or destroyed), never past one left for later.
struct Position {
    next: Option<(Timestamp, MessageId)>,
    settled: Option<(Timestamp, MessageId)>,
    unsettled_seen: bool,
}

impl Position {
    fn settle(&mut self, message: &message_store::MessageRecord) {
        if !self.unsettled_seen {
            self.settled = message.retain_until.map(|at| (at, message.id));
        }
    }
}

/// One batch: examines up to `batch_size` due messages after `position.next`; returns
/// whether there may be more.
fn sweep_batch(
    conn: &mut DbConnection,
    settings: &SweepSettings,
    now: Timestamp,
    run: (&str, Timestamp),
    position: &mut Position,
    report: &mut SweepReport,
) -> Result<bool, PolicyServiceError> {
    let cursor = position.next;
    write_transaction(conn, |conn| {
        // One consistent view of holds and policies for the whole batch on PostgreSQL
        // (a hold changed mid-batch must not be seen half old, half new).
        conclave_store::connection::snapshot_isolation(conn)?;
        let cutoff = now.minus(settings.grace);
        let due = message_store::due_for_destruction(conn, now, cursor, settings.batch_size)?;
        let Some(last) = due.last() else {
            return Ok(false);
        };
        position.next = last.retain_until.map(|at| (at, last.id));
        let holds = ActiveHolds::load(conn)?;
        let periods = holds.periods_for(conn, &due)?;
        let mut resolver = RetentionResolver::load(conn)?;
        let mut doomed: Vec<MessageId> = Vec::with_capacity(due.len());
        let mut held = 0;
        for message in &due {
            if holds.covers(message, &periods) {
                held += 1;
                position.settle(message);
                continue;
            }
            let deadline = resolver.retain_until(conn, message)?;
            if deadline.is_none_or(|at| at > now) {
                crate::retention::recompute(conn, &mut resolver, message)?;
                report.rescheduled += 1;
                position.unsettled_seen = true;
                continue;
            }
            // Users may still have it on screen: destroy it only `grace` after the timer
            // worker told them it ended (a deleted one they were told about at once).
            let told = match (message.deleted_at, message.expiry_announced_at) {
                (Some(deleted), _) => Some(deleted),
                (None, announced) => announced,
            };
            if told.is_none_or(|at| at > cutoff) || deadline.is_some_and(|at| at > cutoff) {
                report.awaiting_announcement += 1;
                position.unsettled_seen = true;
                continue;
            }
            position.settle(message);
            doomed.push(message.id);
        }
        let destroyed = message_store::destroy(conn, &doomed)?;
        store::queue_file_deletions(conn, &destroyed.attachment_paths, now)?;
        remember_keys(conn, &destroyed.key_epochs)?;
        let attachments = destroyed.attachment_paths.len() as u64;
        record_batch(conn, run.0, run.1, now, &doomed, attachments, &[], held)?;
        report.held += held;
        report.messages_destroyed += destroyed.messages as u64;
        report.attachments_destroyed += attachments;
        report.batches += 1;
        Ok(due.len() as i64 == settings.batch_size)
    })
}

/// Removes uploads no message ever referenced, older than the configured age.
fn sweep_abandoned_uploads(
    conn: &mut DbConnection,
    settings: &SweepSettings,
    run: (&str, Timestamp),
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
        remember_keys(conn, &key_epochs)?;
        record_batch(conn, run.0, run.1, now, &[], ids.len() as u64, &[], 0)?;
        report.attachments_destroyed += ids.len() as u64;
        Ok(())
    })
}

/// Shreds remembered keys whose epoch is over (never today's or yesterday's: a send may
/// be using them), [`SHRED_PAGE`] candidates at a time: which are unused is looked up
/// first, outside any write lock (nothing new is written under an old epoch), then one
/// short transaction re-checks and destroys those, forgets the page and records one
/// audit event naming the keys; `pause` runs between pages.
fn shred_remembered_keys(
    conn: &mut DbConnection,
    run: (&str, Timestamp),
    now: Timestamp,
    report: &mut SweepReport,
    pause: &mut impl FnMut(),
) -> Result<(), PolicyServiceError> {
    // Key checks look versions up by room: rooms missing on versions an older node wrote
    // are filled in first.
    while write_transaction(conn, |conn| {
        Ok::<_, PolicyServiceError>(store::fill_version_rooms(conn, 1_000)?)
    })? > 0
    {
        pause();
    }
    let mut after: Option<(String, i64)> = None;
    loop {
        let candidates =
            store::shred_candidates(conn, epoch_of(now) - 1, after.clone(), SHRED_PAGE)?;
        let Some(last) = candidates.last().cloned() else {
            return Ok(());
        };
        let mut unused = Vec::new();
        for (room_id, epoch) in &candidates {
            if store::key_unused(conn, room_id, *epoch)? {
                unused.push((room_id.clone(), *epoch));
            }
        }
        write_transaction(conn, |conn| {
            let mut shredded = Vec::with_capacity(unused.len());
            for (room_id, epoch) in unused {
                if store::shred_key_if_unused(conn, &room_id, epoch)? {
                    shredded.push((room_id, epoch));
                }
            }
            for (room_id, epoch) in &candidates {
                store::remove_shred_candidate(conn, room_id, *epoch)?;
            }
            record_batch(conn, run.0, run.1, now, &[], 0, &shredded, 0)?;
            report.keys_shredded += shredded.len() as u64;
            Ok::<_, PolicyServiceError>(())
        })?;
        after = Some(last);
        pause();
    }
}

/// Unlinks every queued attachment file (a missing file is already gone) and forgets
/// it; a file that cannot be unlinked stays queued and the rest go on. Returns how many
/// failed.
pub fn unlink_queued_files(
    conn: &mut DbConnection,
    attachments_dir: &Path,
) -> Result<u64, PolicyServiceError> {
    let mut failures = 0;
    let mut after: Option<String> = None;
    loop {
        let queued = store::queued_file_deletions(conn, after.as_deref(), 500)?;
        let Some(last) = queued.last().cloned() else {
            return Ok(failures);
        };
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
                store::file_deleted(conn, &relative)?;
                continue;
            }
            match std::fs::remove_file(attachments_dir.join(path)) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                    tracing::warn!(path = %relative, error = %err, "could not unlink an attachment file; it stays queued");
                    failures += 1;
                }
                _ => store::file_deleted(conn, &relative)?,
            }
        }
        after = Some(last);
    }
}

/// What decides whether a stopped sweep may continue where it stopped: the holds and
/// the retention policies, and the recomputation jobs run.
fn fingerprint(conn: &mut DbConnection) -> Result<String, PolicyServiceError> {
    let holds: Vec<String> = conclave_store::legal_holds::list(conn, false)?
        .into_iter()
        .map(|h| format!("{}@{}", h.hold.id, h.hold.updated_at))
        .collect();
    let policies: Vec<String> = store::policies(conn)?
        .into_iter()
        .map(|p| format!("{}@{}", p.scope, p.updated_at))
        .collect();
    let jobs: Vec<String> = store::jobs(conn, 5)?
        .into_iter()
        .map(|j| format!("{}@{}", j.id, j.processed))
        .collect();
    Ok(format!("{holds:?}|{policies:?}|{jobs:?}"))
}

/// One whole sweep, batch after batch until nothing due is left; pauses between batches
/// with `pause` (the async worker sleeps there; the CLI and tests pass a no-op). Starts
/// where `cursor` says when holds and policies are unchanged, and leaves it where this
/// run stopped.
pub fn sweep(
    conn: &mut DbConnection,
    settings: &SweepSettings,
    clock: &dyn Clock,
    cursor: &mut SweepCursor,
    mut pause: impl FnMut(),
) -> Result<SweepReport, PolicyServiceError> {
    let mut report = SweepReport {
        unlink_failures: unlink_queued_files(conn, &settings.attachments_dir)?,
        ..SweepReport::default()
    };
    let started = clock.now();
    let sweep_id = uuid::Uuid::now_v7().to_string();
    let run = (sweep_id.as_str(), started);
    let fingerprint = fingerprint(conn)?;
    if cursor.fingerprint != fingerprint {
        *cursor = SweepCursor {
            fingerprint,
            position: None,
        };
    }
    let mut position = Position {
        next: cursor.position,
        settled: cursor.position,
        unsettled_seen: false,
    };
    loop {
        let more = sweep_batch(conn, settings, clock.now(), run, &mut position, &mut report)?;
        report.unlink_failures = unlink_queued_files(conn, &settings.attachments_dir)?;
        if !more {
            break;
        }
        pause();
    }
    cursor.position = position.settled;
    sweep_abandoned_uploads(conn, settings, run, clock.now(), &mut report)?;
    shred_remembered_keys(conn, run, clock.now(), &mut report, &mut pause)?;
    report.unlink_failures = unlink_queued_files(conn, &settings.attachments_dir)?;
    if report.destroyed_anything() {
        write_transaction(conn, |conn| {
            store::finish_sweep(conn, &sweep_id, clock.now())?;
            Ok::<_, PolicyServiceError>(())
        })?;
    }
    Ok(report)
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
        files_queued: store::queued_file_count(conn)?,
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
    let cursor = Arc::new(std::sync::Mutex::new(SweepCursor::default()));
    loop {
        tick.tick().await;
        let (clock, settings, cursor) = (clock.clone(), settings.clone(), cursor.clone());
        let pause = settings.pause;
        let outcome = db
            .run(move |conn| {
                // A job that keeps failing must not stop destruction on schedule.
                if let Err(err) = run_jobs(conn, clock.as_ref(), || std::thread::sleep(pause)) {
                    tracing::warn!(error = %err, "retention recomputation failed; the next run retries");
                }
                let mut cursor = cursor.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                sweep(conn, &settings, clock.as_ref(), &mut cursor, || {
                    std::thread::sleep(pause)
                })
            })
            .await;
        if let Ok(report) = &outcome {
            conclave_metrics::sweeper_destroyed(report.messages_destroyed);
        }
        match outcome {
            Ok(report) if report.destroyed_anything() || report.unlink_failures > 0 => {
                tracing::info!(
                    messages = report.messages_destroyed,
                    attachments = report.attachments_destroyed,
                    keys = report.keys_shredded,
                    held = report.held,
                    rescheduled = report.rescheduled,
                    unlink_failures = report.unlink_failures,
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
