//! Compliance archive formats: the model of what a compliance export contains, and pure
//! writers that turn a stream of [`ArchiveEvent`]s into the four formats an export can be
//! delivered in.
//!
//! This module owns the *shape* of an archive, not the export job: reading the database,
//! decrypting, choosing the period and bundling files belong to the job runner, which fills
//! the model and feeds the writers. No writer does I/O other than writing its output (and,
//! for EML, reading attachment files the runner decrypted to disk), and none holds the whole
//! export in memory.
//!
//! | format | writer | unit | what it is for |
//! |---|---|---|---|
//! | JSONL | [`jsonl::JsonlWriter`] | one line per event | the native, complete form: every fact the model holds |
//! | CSV | [`csv::CsvWriter`] | one row per event (two per edit) | Mattermost's compliance CSV columns, then Conclave's |
//! | EML | [`eml::write_conversation_day`] | one RFC 5322 message per conversation per UTC day | mail archives and eDiscovery tools |
//! | XML | [`xml::XmlWriter`] | one document, conversations inside | Actiance/Smarsh-style review tools; validated by `schema/conclave-archive.xsd` |
//!
//! Attachment files, when an export includes them, travel beside the CSV, JSONL and XML
//! outputs at [`AttachmentMeta::archive_path`] (the formats name that path); EML embeds them
//! as MIME parts, because a mail message must stand alone.

pub mod csv;
pub mod eml;
pub mod jsonl;
pub mod xml;

use conclave_core::Timestamp;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

/// A user as the archive names them. Filled from the user row *as it was exported*; an
/// archive is a record, so later renames do not rewrite it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Person {
    pub user_id: String,
    pub username: String,
    pub display_name: String,
    /// The directory e-mail address, when the account has one. EML falls back to
    /// `username@<EmlOptions::domain>` without it.
    pub email: Option<String>,
}

/// Whether a conversation is a one-to-one direct conversation or a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConversationKind {
    Direct,
    Room,
}

impl ConversationKind {
    /// The stable name used by JSONL (`conversation.kind`) and XML (`kind`).
    pub fn as_str(self) -> &'static str {
        match self {
            ConversationKind::Direct => "direct",
            ConversationKind::Room => "room",
        }
    }
}

/// The conversation an event happened in.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Conversation {
    pub room_id: String,
    pub kind: ConversationKind,
    /// The room's name; direct conversations usually have none.
    pub name: Option<String>,
}

/// Where an included attachment's plaintext comes from.
///
/// The runner decrypts big files to a temporary file and passes its path, so the writers
/// never need a whole file in memory except where the format itself requires it (an EML
/// message is built whole, one conversation-day at a time). `Bytes` is for small files and
/// tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttachmentContent {
    Bytes(Vec<u8>),
    File(PathBuf),
}

impl AttachmentContent {
    /// The whole content; reads the file for [`AttachmentContent::File`].
    pub fn read_all(&self) -> io::Result<Vec<u8>> {
        match self {
            AttachmentContent::Bytes(bytes) => Ok(bytes.clone()),
            AttachmentContent::File(path) => std::fs::read(path),
        }
    }
}

/// An attachment's metadata, and its content when the export includes files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachmentMeta {
    pub id: String,
    /// The file name the sender gave; untrusted (may hold slashes, quotes, newlines).
    pub name: String,
    pub content_type: String,
    pub size_bytes: i64,
    /// SHA-256 of the plaintext, lowercase hex (64 characters).
    pub sha256: String,
    /// `Some` when the export includes files.
    pub content: Option<AttachmentContent>,
}

impl AttachmentMeta {
    /// Whether the file itself is part of the export.
    pub fn included(&self) -> bool {
        self.content.is_some()
    }

    /// The relative path, inside an export bundle, where the runner puts this file when
    /// files are included: `files/<id>/<name>`, with both parts made safe as a single path
    /// component (no separators, no control characters, no `..`), so a hostile file name
    /// cannot escape the bundle. Every format names the file by this path.
    pub fn archive_path(&self) -> String {
        format!(
            "files/{}/{}",
            safe_path_component(&self.id, "attachment"),
            safe_path_component(&self.name, "file")
        )
    }
}

/// One path component made safe: separators, reserved and control characters become `_`,
/// leading dots are dropped (no `..`, no hidden files), and an empty result is `fallback`.
fn safe_path_component(raw: &str, fallback: &str) -> String {
    let replaced: String = raw
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let trimmed = replaced.trim().trim_start_matches('.');
    // Keep paths short enough for every file system (255 bytes per component).
    let mut out = String::new();
    for c in trimmed.chars() {
        if out.len() + c.len_utf8() > 200 {
            break;
        }
        out.push(c);
    }
    if out.is_empty() {
        fallback.to_owned()
    } else {
        out
    }
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A message was sent; `text` and/or `attachment` hold it.
    Message,
    /// A message was edited; `text` is the new text and `version` the new version number
    /// (the first edit makes version 2).
    Edited {
        previous_text: Option<String>,
        version: i64,
    },
    /// The message was deleted (by its sender or an admin: `actor` says who).
    Deleted,
    /// The message's expiration timer ran out for everyone.
    Expired,
    /// The message's burn-on-read timer ended `for_user`'s copy.
    Burned { for_user: Person },
    /// A reaction was added (`added`) or removed.
    Reaction { emoji: String, added: bool },
    /// `member` joined, or was added by `actor`.
    MemberJoined { member: Person },
    /// `member` left, or was removed by `actor`.
    MemberLeft { member: Person },
    /// The attachment in `attachment` was deleted (its message may remain).
    FileDeleted,
}

impl EventKind {
    /// The stable event name: JSONL's `event`, XML's element name and CSV's `Event`
    /// column use it (XML in camelCase).
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Message => "message",
            EventKind::Edited { .. } => "edited",
            EventKind::Deleted => "deleted",
            EventKind::Expired => "expired",
            EventKind::Burned { .. } => "burned",
            EventKind::Reaction { .. } => "reaction",
            EventKind::MemberJoined { .. } => "member_joined",
            EventKind::MemberLeft { .. } => "member_left",
            EventKind::FileDeleted => "file_deleted",
        }
    }

    /// The person the event is about besides its actor: the member who joined or left,
    /// or the reader whose copy burned.
    pub fn subject(&self) -> Option<&Person> {
        match self {
            EventKind::Burned { for_user } => Some(for_user),
            EventKind::MemberJoined { member } | EventKind::MemberLeft { member } => Some(member),
            _ => None,
        }
    }

    /// Whether the event is about one message (and so needs its `message_id`).
    pub fn concerns_message(&self) -> bool {
        !matches!(
            self,
            EventKind::MemberJoined { .. } | EventKind::MemberLeft { .. }
        )
    }
}

/// One fact of the compliance record, in the order it happened.
///
/// `actor` is who did it: the sender of a message or edit, whoever deleted, reacted,
/// added or removed a member. For events no user caused (`Expired`, `Burned`, a
/// retention-driven `FileDeleted`) it is the message's sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveEvent {
    pub at: Timestamp,
    /// Shared, as the actor is: an export makes one event per message, and these are the
    /// same for many of them.
    pub conversation: Arc<Conversation>,
    pub actor: Arc<Person>,
    pub kind: EventKind,
    /// The message the event is about; required for every kind but member changes.
    pub message_id: Option<String>,
    /// When that message was first sent, if the runner knows (CSV's "Post Creation Time");
    /// `None` means `at`.
    pub message_sent_at: Option<Timestamp>,
    pub reply_to_id: Option<String>,
    /// The message text this event concerns: the sent text, the new text of an edit, the
    /// last text of a deleted, expired or burned message (when still readable).
    pub text: Option<String>,
    pub attachment: Option<AttachmentMeta>,
    /// The conversation's members when the event happened, i.e. who could read it
    /// (shared: consecutive events of a conversation mostly have the same members).
    pub recipients: Arc<[Person]>,
}

impl ArchiveEvent {
    /// Everyone the event names: its actor, its subject (see [`EventKind::subject`]) and
    /// its recipients, in that order (repeats included).
    pub fn people(&self) -> impl Iterator<Item = &Person> {
        std::iter::once(&*self.actor)
            .chain(self.kind.subject())
            .chain(self.recipients.iter())
    }

    /// Checks what every format relies on, so a runner bug surfaces as an error instead of
    /// a silently incomplete archive (or an XML file that fails its schema).
    pub fn validate(&self) -> Result<(), ArchiveError> {
        let invalid = |why: String| Err(ArchiveError::InvalidEvent(why));
        if self.conversation.room_id.is_empty() {
            return invalid("the conversation has no room id".into());
        }
        if self.people().any(|person| person.user_id.is_empty()) {
            return invalid("every person needs a user id".into());
        }
        if self.reply_to_id.as_deref() == Some("") || self.message_id.as_deref() == Some("") {
            return invalid("an empty message id (use None)".into());
        }
        if self.kind.concerns_message() && self.message_id.as_deref().is_none_or(str::is_empty) {
            return invalid(format!("a `{}` event needs a message_id", self.kind.name()));
        }
        if let EventKind::Edited { version, .. } = self.kind
            && version < 2
        {
            return invalid(format!(
                "an edit makes version 2 or later, not {version} (message {})",
                self.message_id.as_deref().unwrap_or_default()
            ));
        }
        if self.kind == EventKind::FileDeleted && self.attachment.is_none() {
            return invalid("a `file_deleted` event needs its attachment".into());
        }
        if let Some(attachment) = &self.attachment {
            if attachment.id.is_empty() {
                return invalid("an attachment has no id".into());
            }
            if attachment.size_bytes < 0 {
                return invalid(format!("attachment {} has a negative size", attachment.id));
            }
            let hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
            if attachment.sha256.len() != 64 || !attachment.sha256.chars().all(hex) {
                return invalid(format!(
                    "attachment {}: sha256 must be 64 lowercase hex digits",
                    attachment.id
                ));
            }
        }
        Ok(())
    }
}

/// What an export document says about itself (the XML root carries it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportInfo {
    pub export_id: String,
    pub generated_at: Timestamp,
    /// The period covered: events with `period_start <= at < period_end`.
    pub period_start: Timestamp,
    pub period_end: Timestamp,
}

/// The delivery formats of a compliance export.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArchiveFormat {
    Jsonl,
    Csv,
    Eml,
    Xml,
}

impl ArchiveFormat {
    pub const ALL: [ArchiveFormat; 4] = [
        ArchiveFormat::Jsonl,
        ArchiveFormat::Csv,
        ArchiveFormat::Eml,
        ArchiveFormat::Xml,
    ];

    /// Parses a format name, case-insensitively (`jsonl`, `csv`, `eml`, `xml`).
    pub fn parse(name: &str) -> Result<Self, ArchiveError> {
        Self::ALL
            .into_iter()
            .find(|format| format.as_str().eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| ArchiveError::UnknownFormat(name.to_owned()))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveFormat::Jsonl => "jsonl",
            ArchiveFormat::Csv => "csv",
            ArchiveFormat::Eml => "eml",
            ArchiveFormat::Xml => "xml",
        }
    }

    /// The file extension, without the dot.
    pub fn extension(self) -> &'static str {
        self.as_str()
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ArchiveFormat::Jsonl => "application/x-ndjson",
            ArchiveFormat::Csv => "text/csv; charset=utf-8",
            ArchiveFormat::Eml => "message/rfc822",
            ArchiveFormat::Xml => "application/xml",
        }
    }
}

impl FromStr for ArchiveFormat {
    type Err = ArchiveError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::parse(name)
    }
}

impl fmt::Display for ArchiveFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why writing an archive failed.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("writing the archive: {0}")]
    Io(#[from] io::Error),
    #[error("writing CSV: {0}")]
    Csv(#[from] ::csv::Error),
    #[error("encoding JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The event breaks a rule of the model (see [`ArchiveEvent::validate`]).
    #[error("invalid archive event: {0}")]
    InvalidEvent(String),
    /// A writer was called out of order (an XML event outside a conversation, ...).
    #[error("archive writer misuse: {0}")]
    Sequence(String),
    #[error("reading the content of attachment {id}: {source}")]
    Attachment { id: String, source: io::Error },
    #[error("unknown archive format `{0}` (expected jsonl, csv, eml or xml)")]
    UnknownFormat(String),
}

/// An instant as a `time` value, for calendar arithmetic (UTC days, clock times).
fn datetime(at: Timestamp) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at.as_micros()) * 1_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attachment(name: &str) -> AttachmentMeta {
        AttachmentMeta {
            id: "a1".into(),
            name: name.into(),
            content_type: "text/plain".into(),
            size_bytes: 3,
            sha256: "0".repeat(64),
            content: None,
        }
    }

    #[test]
    fn archive_paths_cannot_escape_the_bundle() {
        assert_eq!(
            attachment("report.pdf").archive_path(),
            "files/a1/report.pdf"
        );
        assert_eq!(
            attachment("../../etc/passwd").archive_path(),
            "files/a1/_.._etc_passwd"
        );
        assert_eq!(attachment("..").archive_path(), "files/a1/file");
        assert_eq!(attachment("a\r\nb\\c").archive_path(), "files/a1/a__b_c");
        assert_eq!(attachment("").archive_path(), "files/a1/file");
        let long = attachment(&"é".repeat(300)).archive_path();
        assert!(long.len() < 220, "{}", long.len());
    }

    #[test]
    fn formats_parse_and_describe_themselves() {
        for format in ArchiveFormat::ALL {
            assert_eq!(ArchiveFormat::parse(format.extension()).unwrap(), format);
            assert_eq!(format.to_string().parse::<ArchiveFormat>().unwrap(), format);
        }
        assert_eq!(ArchiveFormat::parse(" XML ").unwrap(), ArchiveFormat::Xml);
        assert_eq!(ArchiveFormat::Eml.content_type(), "message/rfc822");
        assert!(matches!(
            ArchiveFormat::parse("pdf"),
            Err(ArchiveError::UnknownFormat(name)) if name == "pdf"
        ));
    }
}
