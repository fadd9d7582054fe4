//! Compliance export jobs (compliance officers): a time window and a scope (rooms,
//! custodians or a legal hold) written in one archive format under
//! `{exports_dir}/<job id>/`, with a manifest of every file's SHA-256 signed by the
//! audit signing key. Jobs come from the API, the CLI or a schedule (consecutive
//! windows, so each run is incremental), and run on a worker that claims them one at a
//! time.
//!
//! The events come from an [`ArchiveSource`] (the messaging service implements it: it
//! owns conversations and decryption, and depends on this crate, not the other way).
//! Progress (the rooms done and the output's length after them) is committed at most
//! once a second, after the room that ends the second, and always when a run fails or
//! ends; a job resumed after a crash truncates its output there and continues with the
//! next room, so a crash costs at most a second of work done again.

use crate::archive::eml::{EmlOptions, write_conversation_day};
use crate::archive::{
    ArchiveError, ArchiveEvent, ArchiveFormat, Conversation, ExportInfo, Person, csv::CsvWriter,
    jsonl::JsonlWriter, xml::XmlWriter,
};
use conclave_core::{AuditContext, AuditOutcome, Clock, NewAuditEvent, Timestamp, UserId};
use conclave_crypto::CheckpointKey;
use conclave_store::exports::{self as store, ExportJobRecord, NewExportJob};
use conclave_store::{DbConnection, StoreError, write_transaction};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod read_ahead;
pub use read_ahead::ReadAhead;

/// The manifest and its detached signature, beside the exported files.
pub const MANIFEST: &str = "manifest.json";
pub const SIGNATURE: &str = "manifest.sig";
/// The schema an XML export validates against, shipped in every XML bundle.
pub const XML_SCHEMA: &str = include_str!("../schema/conclave-archive.xsd");
/// A running job whose worker sent no heartbeat for this long is taken over.
pub const STALE_AFTER: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("export files: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("not found")]
    NotFound,
    /// The event source failed (the database, decryption).
    #[error("reading the conversations: {0}")]
    Source(String),
}

/// What a job covers: events with `from <= at < until` in `rooms` (all of their events)
/// and in the rooms `custodians` belonged to (while a custodian was a member or acting).
/// Neither: every room.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobScope {
    pub from: Timestamp,
    pub until: Timestamp,
    #[serde(default)]
    pub rooms: Vec<String>,
    #[serde(default)]
    pub custodians: Vec<String>,
}

/// One conversation as the source opens it: what the XML and EML writers need up front.
#[derive(Clone, Debug)]
pub struct RoomArchive {
    pub conversation: Conversation,
    /// Everyone who was a member at some time within the window.
    pub participants: Vec<Person>,
    /// Its members at the window's start (or when it was created, if later).
    pub members_at_start: Vec<Person>,
}

/// Where a room's events go, in order.
pub trait RoomSink {
    fn event(&mut self, room: &RoomArchive, event: ArchiveEvent) -> Result<(), ExportError>;
}

/// The conversations and their events (implemented by the messaging service).
pub trait ArchiveSource: Send + Sync {
    /// The rooms in scope, in a stable order (so a resumed job skips the same ones).
    fn rooms(&self, conn: &mut DbConnection, scope: &JobScope) -> Result<Vec<String>, ExportError>;

    /// Opens `room_id` and feeds its events in the window to `sink`, oldest first;
    /// decrypts attachment files under `files_dir` (at `AttachmentMeta::archive_path`)
    /// when given. Returns the opened room, or `None` when it had no event in scope.
    fn room(
        &self,
        conn: &mut DbConnection,
        room_id: &str,
        scope: &JobScope,
        files_dir: Option<&Path>,
        sink: &mut dyn RoomSink,
    ) -> Result<Option<RoomArchive>, ExportError>;
}

/// A job as the API shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ExportJobView {
    pub id: String,
    /// `jsonl`, `csv`, `eml` or `xml`.
    pub format: String,
    pub from: Timestamp,
    pub until: Timestamp,
    pub rooms: Vec<String>,
    pub custodians: Vec<String>,
    pub hold_id: Option<String>,
    pub include_files: bool,
    /// `pending`, `running`, `done` or `failed`.
    pub status: String,
    pub progress: Progress,
    pub error: Option<String>,
    /// The schedule that started it, if not a person.
    pub schedule: Option<String>,
    pub created_by: Option<String>,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

/// Counts, and where a resumed run continues.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Progress {
    pub rooms_total: u64,
    pub rooms_done: u64,
    pub events_written: u64,
    pub files_written: u64,
    /// Events written by kind (`message`, `edited`, `deleted`, `expired`, `burned`,
    /// `reaction`, `member_joined`, `member_left`, `file_deleted`).
    #[serde(default)]
    pub events_by_kind: BTreeMap<String, u64>,
    /// The single output file's length after the last finished room (JSONL, CSV, XML).
    #[serde(default)]
    pub output_bytes: u64,
}

fn view(job: ExportJobRecord) -> Result<ExportJobView, ExportError> {
    let scope: JobScope = serde_json::from_str(&job.scope)
        .map_err(|e| ExportError::Source(format!("export {}: bad scope: {e}", job.id)))?;
    let progress: Progress = serde_json::from_str(&job.progress).unwrap_or_default();
    Ok(ExportJobView {
        id: job.id,
        format: job.format,
        from: scope.from,
        until: scope.until,
        rooms: scope.rooms,
        custodians: scope.custodians,
        hold_id: job.hold_id,
        include_files: job.include_files,
        status: job.status,
        progress,
        error: job.error,
        schedule: job.schedule,
        created_by: job.created_by,
        created_at: Timestamp::from_micros(job.created_at),
        finished_at: job.finished_at.map(Timestamp::from_micros),
    })
}

/// A job to start, as a compliance officer (or a schedule) asks for it.
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    /// `jsonl` (complete, native), `csv`, `eml` or `xml`.
    pub format: String,
    /// Start of the window (inclusive).
    pub from: Timestamp,
    /// End of the window (exclusive); at most now.
    pub until: Timestamp,
    #[serde(default)]
    pub rooms: Vec<conclave_core::RoomId>,
    #[serde(default)]
    pub custodians: Vec<UserId>,
    /// Export what this legal hold covers (its rooms, custodians and date range).
    pub hold_id: Option<String>,
    /// Include the attachment files themselves (decrypted), not only their metadata.
    #[serde(default)]
    pub include_files: bool,
}

/// Validates and records a job (audited); the worker runs it.
pub fn start(
    conn: &mut DbConnection,
    context: &AuditContext,
    now: Timestamp,
    request: &ExportRequest,
    schedule: Option<&str>,
) -> Result<ExportJobView, ExportError> {
    let format = ArchiveFormat::parse(&request.format)
        .map_err(|e| ExportError::Invalid(format!("format: {e}")))?;
    if request.from >= request.until {
        return Err(ExportError::Invalid("from must be before until".into()));
    }
    if request.until > now {
        return Err(ExportError::Invalid(
            "until must not be in the future (an export is a record of what happened)".into(),
        ));
    }
    write_transaction(conn, |conn| {
        let mut scope = JobScope {
            from: request.from,
            until: request.until,
            rooms: request.rooms.iter().map(ToString::to_string).collect(),
            custodians: request.custodians.iter().map(ToString::to_string).collect(),
        };
        for room in &request.rooms {
            if conclave_store::rooms::find(conn, *room)?.is_none() {
                return Err(ExportError::Invalid(format!("rooms: no room {room}")));
            }
        }
        for user in &request.custodians {
            if conclave_store::users::find_by_id(conn, *user)?.is_none() {
                return Err(ExportError::Invalid(format!("custodians: no user {user}")));
            }
        }
        if let Some(hold_id) = &request.hold_id {
            let hold = conclave_store::legal_holds::find(conn, hold_id)?
                .ok_or_else(|| ExportError::Invalid(format!("hold_id: no legal hold {hold_id}")))?;
            scope.rooms.extend(hold.rooms);
            scope.custodians.extend(hold.custodians);
            if let Some(start) = hold.hold.starts_at {
                scope.from = scope.from.max(Timestamp::from_micros(start));
            }
            if let Some(end) = hold.hold.ends_at {
                // The hold's end is inclusive; the window's is exclusive.
                scope.until = scope.until.min(Timestamp::from_micros(end + 1));
            }
        }
        scope.rooms.sort();
        scope.rooms.dedup();
        scope.custodians.sort();
        scope.custodians.dedup();
        let id = uuid::Uuid::now_v7().to_string();
        let scope_json = serde_json::to_string(&scope).expect("a scope serializes");
        store::insert(
            conn,
            &NewExportJob {
                id: &id,
                format: format.as_str(),
                window_from: scope.from,
                window_until: scope.until,
                scope: &scope_json,
                hold_id: request.hold_id.as_deref(),
                include_files: request.include_files,
                schedule,
                created_by: context.actor_id.map(|id| id.to_string()),
                now,
            },
        )?;
        let job = view(store::find(conn, &id)?.ok_or(ExportError::NotFound)?)?;
        let event = NewAuditEvent {
            action: "export.start",
            target_kind: Some("export"),
            target_id: Some(id.clone()),
            outcome: AuditOutcome::Success,
            details: serde_json::json!({ "after": &job }).to_string(),
        };
        conclave_store::audit::append(conn, context, &event, now)?;
        Ok(job)
    })
}

pub fn list(conn: &mut DbConnection) -> Result<Vec<ExportJobView>, ExportError> {
    store::list(conn, None, 100)?
        .into_iter()
        .map(view)
        .collect()
}

pub fn get(conn: &mut DbConnection, id: &str) -> Result<ExportJobView, ExportError> {
    view(store::find(conn, id)?.ok_or(ExportError::NotFound)?)
}

/// Where a job's bundle lives.
pub fn bundle_dir(exports_dir: &Path, job_id: &str) -> Result<PathBuf, ExportError> {
    uuid::Uuid::parse_str(job_id).map_err(|_| ExportError::NotFound)?;
    Ok(exports_dir.join(job_id))
}

/// The single output file of a stream format.
fn output_name(format: ArchiveFormat) -> Option<&'static str> {
    match format {
        ArchiveFormat::Jsonl => Some("messages.jsonl"),
        ArchiveFormat::Csv => Some("messages.csv"),
        ArchiveFormat::Xml => Some("archive.xml"),
        ArchiveFormat::Eml => None,
    }
}

/// Bytes buffered before the output file is written to.
const OUTPUT_BUFFER: usize = 256 * 1024;

/// How often a running job commits its progress. Each commit is a durable write (a WAL
/// sync on either backend), and committing after every room cost an export of many small
/// rooms a tenth of its time; a second of rooms is what a crash then makes it redo.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// The output file, counting what passes through so progress can record its length,
/// and hashing it for the manifest when the file is written from its start (a resumed
/// run's file is hashed from disk at the end instead).
struct Counting {
    file: BufWriter<File>,
    written: std::rc::Rc<std::cell::Cell<u64>>,
    hasher: Option<Sha256>,
}

impl Counting {
    /// The output's length and SHA-256, when it was hashed as it was written.
    fn digest(self) -> Option<ManifestFile> {
        let bytes = self.written.get();
        self.hasher.map(|hasher| ManifestFile {
            bytes,
            sha256: hex::encode(hasher.finalize()),
        })
    }
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.file.write(buf)?;
        self.written.set(self.written.get() + written as u64);
        if let Some(hasher) = self.hasher.as_mut() {
            hasher.update(&buf[..written]);
        }
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// The writer of a stream format over the output file.
enum StreamWriter {
    Jsonl(JsonlWriter<Counting>),
    Csv(CsvWriter<Counting>),
    Xml(XmlWriter<Counting>),
}

impl StreamWriter {
    fn write(
        &mut self,
        room: &RoomArchive,
        event: &ArchiveEvent,
        xml_open: &mut bool,
    ) -> Result<(), ExportError> {
        match self {
            StreamWriter::Jsonl(writer) => writer.write_event(event)?,
            StreamWriter::Csv(writer) => writer.write_event(event)?,
            StreamWriter::Xml(writer) => {
                if !*xml_open {
                    writer.begin_conversation(
                        &room.conversation,
                        event.at,
                        &room.members_at_start,
                    )?;
                    *xml_open = true;
                }
                writer.write_event(event)?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ExportError> {
        match self {
            StreamWriter::Jsonl(writer) => writer.flush()?,
            StreamWriter::Csv(writer) => writer.flush()?,
            StreamWriter::Xml(writer) => writer.flush()?,
        }
        Ok(())
    }
}

/// Collects one room's events for the stream writers, or per day for EML.
struct Collect<'a> {
    stream: Option<&'a mut StreamWriter>,
    xml_open: bool,
    last_at: Option<Timestamp>,
    /// EML: the bundle's directory, and the events of the UTC day being collected (each
    /// day's message is written as soon as the next day's first event arrives, so memory
    /// holds one conversation-day, never a whole room's window).
    eml_dir: &'a Path,
    day: Option<(time::Date, Vec<ArchiveEvent>)>,
    events: u64,
    by_kind: BTreeMap<String, u64>,
    files: u64,
}

impl Collect<'_> {
    /// Writes the collected day's EML message (a no-op when none is open).
    fn write_day(&mut self, room: &RoomArchive) -> Result<(), ExportError> {
        let Some((day, events)) = self.day.take() else {
            return Ok(());
        };
        let path = self
            .eml_dir
            .join("eml")
            .join(&room.conversation.room_id)
            .join(format!("{day}.eml"));
        std::fs::create_dir_all(path.parent().expect("a parent"))?;
        let mut out = BufWriter::new(File::create(&path)?);
        write_conversation_day(
            &room.conversation,
            day,
            &room.participants,
            &events,
            &EmlOptions::default(),
            &mut out,
        )?;
        out.flush()?;
        Ok(())
    }
}

impl RoomSink for Collect<'_> {
    fn event(&mut self, room: &RoomArchive, event: ArchiveEvent) -> Result<(), ExportError> {
        self.events += 1;
        match self.by_kind.get_mut(event.kind.name()) {
            Some(count) => *count += 1,
            None => {
                self.by_kind.insert(event.kind.name().to_owned(), 1);
            }
        }
        if event.attachment.as_ref().is_some_and(|a| a.included())
            && matches!(event.kind, crate::archive::EventKind::Message)
        {
            self.files += 1;
        }
        self.last_at = Some(event.at);
        match self.stream.as_deref_mut() {
            Some(stream) => stream.write(room, &event, &mut self.xml_open),
            None => {
                let day = time::OffsetDateTime::from_unix_timestamp_nanos(
                    i128::from(event.at.as_micros()) * 1_000,
                )
                .map_err(|e| ExportError::Invalid(e.to_string()))?
                .date();
                if self.day.as_ref().is_some_and(|(open, _)| *open != day) {
                    self.write_day(room)?;
                }
                self.day
                    .get_or_insert_with(|| (day, Vec::new()))
                    .1
                    .push(event);
                Ok(())
            }
        }
    }
}

/// Runs (or resumes) a claimed job to the end: every room (read by `read_ahead`'s
/// readers when given, else on `conn`), then the manifest and its signature. Progress is
/// committed at most every [`PROGRESS_EVERY`], at the end, and when the run fails.
pub fn run(
    conn: &mut DbConnection,
    source: &dyn ArchiveSource,
    read_ahead: Option<&ReadAhead>,
    key: &CheckpointKey,
    exports_dir: &Path,
    clock: &dyn Clock,
    job: &ExportJobRecord,
) -> Result<(), ExportError> {
    let format = ArchiveFormat::parse(&job.format)?;
    let scope: JobScope = serde_json::from_str(&job.scope)
        .map_err(|e| ExportError::Source(format!("bad scope: {e}")))?;
    let mut progress: Progress = serde_json::from_str(&job.progress).unwrap_or_default();
    let dir = bundle_dir(exports_dir, &job.id)?;
    std::fs::create_dir_all(&dir)?;
    let files_dir = job.include_files.then(|| dir.clone());
    let rooms = source.rooms(conn, &scope)?;
    progress.rooms_total = rooms.len() as u64;
    let info = ExportInfo {
        export_id: job.id.clone(),
        generated_at: Timestamp::from_micros(job.created_at),
        period_start: scope.from,
        period_end: scope.until,
    };
    let written = std::rc::Rc::new(std::cell::Cell::new(0));
    let mut stream = match output_name(format) {
        None => None,
        Some(name) => {
            let path = dir.join(name);
            let fresh = progress.rooms_done == 0;
            let mut file = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(fresh)
                .open(&path)?;
            if !fresh {
                // Whatever a crashed run wrote after the last finished room goes.
                file.set_len(progress.output_bytes)?;
                file.seek(std::io::SeekFrom::End(0))?;
                written.set(progress.output_bytes);
            }
            let out = Counting {
                // Lines are kilobytes (every recipient is named): fewer, larger writes.
                file: BufWriter::with_capacity(OUTPUT_BUFFER, file),
                written: written.clone(),
                hasher: fresh.then(Sha256::new),
            };
            Some(match (format, fresh) {
                (ArchiveFormat::Jsonl, _) => StreamWriter::Jsonl(JsonlWriter::new(out)),
                (ArchiveFormat::Csv, true) => StreamWriter::Csv(CsvWriter::new(out)?),
                (ArchiveFormat::Csv, false) => StreamWriter::Csv(CsvWriter::continuing(out)),
                (ArchiveFormat::Xml, true) => StreamWriter::Xml(XmlWriter::new(out, &info)?),
                (ArchiveFormat::Xml, false) => StreamWriter::Xml(XmlWriter::continuing(out)),
                (ArchiveFormat::Eml, _) => unreachable!("EML has no single output"),
            })
        }
    };
    if let Some(stream) = stream.as_mut() {
        stream.flush()?;
        progress.output_bytes = written.get();
    }
    let remaining = &rooms[(progress.rooms_done as usize).min(rooms.len())..];
    let mut recorded = (progress.rooms_done, Instant::now());
    let fed = read_ahead::with_feed(
        read_ahead,
        source,
        &scope,
        files_dir.as_deref(),
        remaining,
        |feed| {
            for (index, room_id) in remaining.iter().enumerate() {
                let mut collect = Collect {
                    stream: stream.as_mut(),
                    xml_open: false,
                    last_at: None,
                    eml_dir: &dir,
                    day: None,
                    events: 0,
                    by_kind: BTreeMap::new(),
                    files: 0,
                };
                let opened = feed.room(conn, index, room_id, &mut collect)?;
                if let (Some(_), Some(StreamWriter::Xml(writer))) =
                    (&opened, collect.stream.as_deref_mut())
                    && collect.xml_open
                {
                    writer.end_conversation(collect.last_at.unwrap_or(scope.until))?;
                }
                if let Some(room) = &opened {
                    collect.write_day(room)?;
                }
                let (events, by_kind, files) = (collect.events, collect.by_kind, collect.files);
                // The room is written out before it counts, so `progress` always
                // describes whole rooms, whatever fails next.
                if let Some(stream) = stream.as_mut() {
                    stream.flush()?;
                    progress.output_bytes = written.get();
                }
                progress.events_written += events;
                conclave_metrics::export_written(&job.format, events);
                for (kind, count) in by_kind {
                    *progress.events_by_kind.entry(kind).or_default() += count;
                }
                progress.files_written += files;
                progress.rooms_done += 1;
                if index + 1 == remaining.len() || recorded.1.elapsed() >= PROGRESS_EVERY {
                    record_progress(conn, job, &progress, clock)?;
                    recorded = (progress.rooms_done, Instant::now());
                }
            }
            Ok(())
        },
    );
    if let Err(err) = fed {
        // Keep what the finished rooms wrote: a resumed run starts after them. The run's
        // own error is the one to report, even if recording fails too (the database may
        // be what failed).
        if progress.rooms_done > recorded.0
            && let Err(unrecorded) = record_progress(conn, job, &progress, clock)
        {
            tracing::warn!(export = %job.id, error = %unrecorded, "could not record the progress of a failed export");
        }
        return Err(err);
    }
    let output = match stream {
        Some(StreamWriter::Xml(writer)) => {
            let output = writer.finish()?;
            std::fs::write(dir.join("conclave-archive.xsd"), XML_SCHEMA)?;
            Some(output)
        }
        Some(StreamWriter::Csv(writer)) => Some(writer.finish()?),
        Some(StreamWriter::Jsonl(writer)) => Some(writer.finish()?),
        None => None,
    };
    let hashed = match (output_name(format), output.and_then(Counting::digest)) {
        (Some(name), Some(digest)) => Some((name, digest)),
        _ => None,
    };
    write_manifest(&dir, job, &scope, format, &progress, key, hashed)?;
    Ok(())
}

fn record_progress(
    conn: &mut DbConnection,
    job: &ExportJobRecord,
    progress: &Progress,
    clock: &dyn Clock,
) -> Result<(), ExportError> {
    let text = serde_json::to_string(progress).expect("progress serializes");
    Ok(store::record_progress(conn, &job.id, &text, clock.now())?)
}

/// The signed description of a bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub export_id: String,
    pub format: String,
    pub from: Timestamp,
    pub until: Timestamp,
    pub rooms: Vec<String>,
    pub custodians: Vec<String>,
    pub hold_id: Option<String>,
    pub events: u64,
    /// Events by kind.
    pub events_by_kind: BTreeMap<String, u64>,
    pub rooms_exported: u64,
    /// The Ed25519 key that signed `manifest.sig` (base64), and its short id.
    pub signing_key: String,
    pub signing_key_id: String,
    /// Every file of the bundle but the manifest and its signature, by relative path.
    pub files: BTreeMap<String, ManifestFile>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub bytes: u64,
    pub sha256: String,
}

fn hash_file(path: &Path) -> Result<ManifestFile, ExportError> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 64 * 1024];
    let mut bytes = 0;
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        bytes += read as u64;
    }
    Ok(ManifestFile {
        bytes,
        sha256: hex::encode(hasher.finalize()),
    })
}

/// Every file under `dir`, as relative paths with `/` separators.
fn bundle_files(dir: &Path) -> Result<Vec<String>, ExportError> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                walk(root, &path, out)?;
            } else if let Ok(relative) = path.strip_prefix(root) {
                let parts: Vec<String> = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push(parts.join("/"));
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    files.retain(|name| name != MANIFEST && name != SIGNATURE);
    files.sort();
    Ok(files)
}

fn write_manifest(
    dir: &Path,
    job: &ExportJobRecord,
    scope: &JobScope,
    format: ArchiveFormat,
    progress: &Progress,
    key: &CheckpointKey,
    hashed: Option<(&str, ManifestFile)>,
) -> Result<(), ExportError> {
    let mut files = BTreeMap::new();
    for name in bundle_files(dir)? {
        let file = match &hashed {
            Some((hashed_name, file)) if *hashed_name == name => file.clone(),
            _ => hash_file(&dir.join(&name))?,
        };
        files.insert(name, file);
    }
    let manifest = Manifest {
        export_id: job.id.clone(),
        format: format.as_str().into(),
        from: scope.from,
        until: scope.until,
        rooms: scope.rooms.clone(),
        custodians: scope.custodians.clone(),
        hold_id: job.hold_id.clone(),
        events: progress.events_written,
        events_by_kind: progress.events_by_kind.clone(),
        rooms_exported: progress.rooms_done,
        signing_key: key.public_key_base64(),
        signing_key_id: key.key_id(),
        files,
    };
    let bytes = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
    std::fs::write(dir.join(MANIFEST), &bytes)?;
    let signature = key.sign_manifest(&bytes);
    std::fs::write(
        dir.join(SIGNATURE),
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, signature),
    )?;
    Ok(())
}

/// Whether a manifest's file name is a relative path of plain components (no `..`, no
/// root, no `.`), as `bundle_files` writes them.
fn inside_bundle(name: &str) -> bool {
    !name.is_empty()
        && Path::new(name)
            .components()
            .all(|part| matches!(part, std::path::Component::Normal(_)))
}

/// What `conclave export verify` found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verification {
    Intact { files: usize, events: u64 },
    Broken(String),
}

/// Checks a bundle: the manifest's signature against `trusted_key` (base64; the
/// manifest's own key when `None`, which proves integrity but not origin), then every
/// file's length and SHA-256, and that no file was added or removed.
pub fn verify(dir: &Path, trusted_key: Option<&str>) -> Result<Verification, ExportError> {
    let broken = |why: String| Ok(Verification::Broken(why));
    let Ok(bytes) = std::fs::read(dir.join(MANIFEST)) else {
        return broken(format!("{MANIFEST} is missing"));
    };
    let Ok(signature) = std::fs::read_to_string(dir.join(SIGNATURE)) else {
        return broken(format!("{SIGNATURE} is missing"));
    };
    let manifest: Manifest = match serde_json::from_slice(&bytes) {
        Ok(manifest) => manifest,
        Err(err) => return broken(format!("{MANIFEST} is not a manifest: {err}")),
    };
    let signature =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, signature.trim())
            .unwrap_or_default();
    let key = trusted_key.unwrap_or(&manifest.signing_key);
    if !conclave_crypto::checkpoint::verify_manifest_with(key, &bytes, &signature) {
        return broken(format!(
            "the signature of {MANIFEST} does not verify with {}",
            if trusted_key.is_some() {
                "the trusted key"
            } else {
                "the key it names"
            }
        ));
    }
    // A name must stay inside the bundle: a manifest naming `../x` or `/etc/x` would have
    // the check vouch for files that are not part of it (found by the `export_verify`
    // fuzz target).
    if let Some(name) = manifest.files.keys().find(|name| !inside_bundle(name)) {
        return broken(format!(
            "{MANIFEST} names {name:?}, which is not a path inside the bundle"
        ));
    }
    let present = bundle_files(dir)?;
    for name in &present {
        if !manifest.files.contains_key(name) {
            return broken(format!(
                "{name} is not in the manifest (added after signing)"
            ));
        }
    }
    for (name, expected) in &manifest.files {
        let path = dir.join(name);
        if !path.is_file() {
            return broken(format!("{name} is missing"));
        }
        if &hash_file(&path)? != expected {
            return broken(format!(
                "{name} was changed after signing (its SHA-256 differs)"
            ));
        }
    }
    Ok(Verification::Intact {
        files: manifest.files.len(),
        events: manifest.events,
    })
}

/// Claims and runs the next job, if any; records its end (and the audit event) either
/// way. Returns the job's id.
pub fn run_next(
    conn: &mut DbConnection,
    source: &dyn ArchiveSource,
    read_ahead: Option<&ReadAhead>,
    key: &CheckpointKey,
    exports_dir: &Path,
    clock: &dyn Clock,
) -> Result<Option<String>, ExportError> {
    let now = clock.now();
    let Some(job) = store::claim(conn, now, now.minus(STALE_AFTER))? else {
        return Ok(None);
    };
    let outcome = run(conn, source, read_ahead, key, exports_dir, clock, &job);
    let error = outcome.as_ref().err().map(ToString::to_string);
    write_transaction(conn, |conn| {
        let now = clock.now();
        store::finish(conn, &job.id, error.as_deref(), now)?;
        let finished = view(store::find(conn, &job.id)?.ok_or(ExportError::NotFound)?)?;
        let event = NewAuditEvent {
            action: "export.finish",
            target_kind: Some("export"),
            target_id: Some(job.id.clone()),
            outcome: if error.is_some() {
                AuditOutcome::Failure
            } else {
                AuditOutcome::Success
            },
            details: serde_json::json!({ "after": finished }).to_string(),
        };
        conclave_store::audit::append(conn, &AuditContext::system("exporter"), &event, now)?;
        Ok::<_, ExportError>(())
    })?;
    if let Err(err) = outcome {
        tracing::warn!(export = %job.id, error = %err, "compliance export failed");
    }
    Ok(Some(job.id))
}

/// A schedule: consecutive windows of `every`, each exported in `format` when it ends.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub name: String,
    pub format: ArchiveFormat,
    pub every: Duration,
    pub include_files: bool,
}

/// How long after a scheduled window ends its job starts. A message is stamped when its
/// send is received and stored a moment later (through the send queue, in a
/// transaction), so a window exported the instant it ends could read a room before a
/// message stamped inside the window is committed, and the next window starts after that
/// stamp: the message would be in no export. A minute is far beyond any send's way.
pub const SCHEDULE_SETTLE: Duration = Duration::from_secs(60);

/// Starts the schedule's next job once its window has ended [`SCHEDULE_SETTLE`] ago;
/// windows follow each other without gap or overlap (the first ends then). Returns the
/// job started.
pub fn start_scheduled(
    conn: &mut DbConnection,
    schedule: &Schedule,
    now: Timestamp,
) -> Result<Option<ExportJobView>, ExportError> {
    let settled = now.minus(SCHEDULE_SETTLE);
    let from = match store::last_window_end(conn, &schedule.name)? {
        Some(end) => end,
        None => settled.minus(schedule.every),
    };
    let until = from.plus(schedule.every);
    if until > settled {
        return Ok(None);
    }
    let request = ExportRequest {
        format: schedule.format.as_str().into(),
        from,
        until,
        rooms: Vec::new(),
        custodians: Vec::new(),
        hold_id: None,
        include_files: schedule.include_files,
    };
    let context = AuditContext::system(&format!("export-schedule:{}", schedule.name));
    start(conn, &context, now, &request, Some(&schedule.name)).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bundle of one file and a manifest signed with `key`, naming `names` (each with
    /// that file's length and hash).
    fn bundle(key: &CheckpointKey, names: &[&str]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("bundle");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("messages.jsonl"), b"{\"seq\":1}\n").unwrap();
        let file = hash_file(&dir.join("messages.jsonl")).unwrap();
        let manifest = Manifest {
            export_id: "e1".into(),
            format: "jsonl".into(),
            from: Timestamp::from_micros(0),
            until: Timestamp::from_micros(1),
            rooms: vec![],
            custodians: vec![],
            hold_id: None,
            events: 1,
            events_by_kind: BTreeMap::new(),
            rooms_exported: 1,
            signing_key: key.public_key_base64(),
            signing_key_id: key.key_id(),
            files: names
                .iter()
                .map(|name| ((*name).to_owned(), file.clone()))
                .collect(),
        };
        let bytes = serde_json::to_vec_pretty(&manifest).unwrap();
        std::fs::write(dir.join(MANIFEST), &bytes).unwrap();
        let signature = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            key.sign_manifest(&bytes),
        );
        std::fs::write(dir.join(SIGNATURE), signature).unwrap();
        root
    }

    #[test]
    fn a_manifest_naming_a_file_outside_the_bundle_is_broken_even_when_signed() {
        let key = CheckpointKey::generate().unwrap();
        let trusted = key.public_key_base64();
        let intact = bundle(&key, &["messages.jsonl"]);
        assert_eq!(
            verify(&intact.path().join("bundle"), Some(&trusted)).unwrap(),
            Verification::Intact {
                files: 1,
                events: 1
            }
        );
        // `../bundle/messages.jsonl` is the same file by another road: before the fix the
        // bundle was called intact.
        for outside in [
            "../bundle/messages.jsonl",
            "/etc/hostname",
            "./messages.jsonl",
            "",
        ] {
            let root = bundle(&key, &["messages.jsonl", outside]);
            let found = verify(&root.path().join("bundle"), Some(&trusted)).unwrap();
            assert!(
                matches!(&found, Verification::Broken(why) if why.contains("not a path inside the bundle")),
                "{outside:?}: {found:?}"
            );
        }
        assert!(inside_bundle("files/a.bin"));
    }
}
