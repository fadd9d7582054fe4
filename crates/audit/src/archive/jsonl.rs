//! The native archive format: JSON Lines, one object per [`ArchiveEvent`], with every fact
//! the model holds. The other formats are views of this one.
//!
//! Field names are stable (a change is a new `format_version`):
//!
//! | field | type | always | meaning |
//! |---|---|---|---|
//! | `format_version` | number | yes | `1` |
//! | `at` | RFC 3339 string (UTC, microseconds) | yes | when it happened |
//! | `event` | string | yes | [`EventKind::name`]: `message`, `edited`, `deleted`, `expired`, `burned`, `reaction`, `member_joined`, `member_left`, `file_deleted` |
//! | `conversation` | object | yes | `room_id`, `kind` (`direct`/`room`), `name` (string or null) |
//! | `actor` | person | yes | who did it (see [`ArchiveEvent`]) |
//! | `message_id`, `reply_to_id`, `text` | string or null | yes | |
//! | `message_sent_at` | RFC 3339 string or null | yes | when the message was first sent |
//! | `attachment` | object or null | yes | `id`, `name`, `content_type`, `size_bytes`, `sha256`, `included` (bool), `path` (the bundle path when included, else null) |
//! | `recipients` | array of persons | yes | the members at the time |
//! | `previous_text` | string or null | `edited` | the text before the edit |
//! | `version` | number | `edited` | the version the edit made (2 for the first edit) |
//! | `for_user` | person | `burned` | whose copy burned |
//! | `emoji`, `added` | string, bool | `reaction` | which reaction, added or removed |
//! | `member` | person | `member_joined`, `member_left` | who joined or left |
//!
//! A person is `{"user_id", "username", "display_name", "email"}` (`email` may be null).
//! Text is written verbatim (JSON escapes what it must), so this is the one format that
//! keeps control characters and line endings exactly.

use super::{ArchiveError, ArchiveEvent, AttachmentMeta, EventKind, Person};
use conclave_core::Timestamp;
use serde::Serialize;
use serde_json::value::RawValue;
use std::io::Write;
use std::sync::Arc;

/// The `format_version` every line carries.
pub const FORMAT_VERSION: u32 = 1;

/// Writes one JSON object per event, each followed by `\n`.
pub struct JsonlWriter<W: Write> {
    out: W,
    /// The line being written: serialized whole, then written at once (serde writes in
    /// small pieces, each of which would otherwise go through the output's layers).
    line: Vec<u8>,
    /// The last recipient list written, as JSON: events share one list while a room's
    /// membership is unchanged, and names are most of a line.
    recipients: Option<(Arc<[Person]>, Box<RawValue>)>,
}

impl<W: Write> JsonlWriter<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            line: Vec::with_capacity(4096),
            recipients: None,
        }
    }

    /// Validates and writes one event.
    pub fn write_event(&mut self, event: &ArchiveEvent) -> Result<(), ArchiveError> {
        event.validate()?;
        let cached = self
            .recipients
            .as_ref()
            .is_some_and(|(list, _)| Arc::ptr_eq(list, &event.recipients));
        if !cached {
            let json = serde_json::to_string(&WirePeople(&event.recipients))?;
            self.recipients = Some((event.recipients.clone(), RawValue::from_string(json)?));
        }
        let recipients = &self.recipients.as_ref().expect("cached above").1;
        self.line.clear();
        serde_json::to_writer(&mut self.line, &Line::new(event, recipients))?;
        self.line.push(b'\n');
        self.out.write_all(&self.line)?;
        Ok(())
    }

    /// Flushes the output, e.g. before recording how far a resumable export got.
    pub fn flush(&mut self) -> Result<(), ArchiveError> {
        self.out.flush()?;
        Ok(())
    }

    /// Flushes and returns the output.
    pub fn finish(mut self) -> Result<W, ArchiveError> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// The wire shape of a line, borrowing from the model (kept apart from the model so the
/// model can change without changing the archive format).
#[derive(Serialize)]
struct Line<'a> {
    format_version: u32,
    at: Timestamp,
    event: &'static str,
    conversation: WireConversation<'a>,
    actor: WirePerson<'a>,
    message_id: Option<&'a str>,
    message_sent_at: Option<Timestamp>,
    reply_to_id: Option<&'a str>,
    text: Option<&'a str>,
    attachment: Option<WireAttachment<'a>>,
    /// [`WirePeople`], serialized once per recipient list.
    recipients: &'a RawValue,
    // Kind-specific fields: present only with their kind. `previous_text` is
    // `Option<Option<_>>` so an edit with an unknown previous text says `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_text: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    for_user: Option<WirePerson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    emoji: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    added: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    member: Option<WirePerson<'a>>,
}

#[derive(Serialize)]
struct WireConversation<'a> {
    room_id: &'a str,
    kind: &'static str,
    name: Option<&'a str>,
}

#[derive(Serialize)]
struct WirePerson<'a> {
    user_id: &'a str,
    username: &'a str,
    display_name: &'a str,
    email: Option<&'a str>,
}

/// A list of persons, written straight from the model (no copy per line).
struct WirePeople<'a>(&'a [Person]);

impl Serialize for WirePeople<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(WirePerson::from))
    }
}

impl<'a> From<&'a Person> for WirePerson<'a> {
    fn from(person: &'a Person) -> Self {
        Self {
            user_id: &person.user_id,
            username: &person.username,
            display_name: &person.display_name,
            email: person.email.as_deref(),
        }
    }
}

#[derive(Serialize)]
struct WireAttachment<'a> {
    id: &'a str,
    name: &'a str,
    content_type: &'a str,
    size_bytes: i64,
    sha256: &'a str,
    included: bool,
    path: Option<String>,
}

impl<'a> From<&'a AttachmentMeta> for WireAttachment<'a> {
    fn from(attachment: &'a AttachmentMeta) -> Self {
        Self {
            id: &attachment.id,
            name: &attachment.name,
            content_type: &attachment.content_type,
            size_bytes: attachment.size_bytes,
            sha256: &attachment.sha256,
            included: attachment.included(),
            path: attachment.included().then(|| attachment.archive_path()),
        }
    }
}

impl<'a> Line<'a> {
    fn new(event: &'a ArchiveEvent, recipients: &'a RawValue) -> Self {
        let mut line = Line {
            format_version: FORMAT_VERSION,
            at: event.at,
            event: event.kind.name(),
            conversation: WireConversation {
                room_id: &event.conversation.room_id,
                kind: event.conversation.kind.as_str(),
                name: event.conversation.name.as_deref(),
            },
            actor: (&*event.actor).into(),
            message_id: event.message_id.as_deref(),
            message_sent_at: event.message_sent_at,
            reply_to_id: event.reply_to_id.as_deref(),
            text: event.text.as_deref(),
            attachment: event.attachment.as_ref().map(WireAttachment::from),
            recipients,
            previous_text: None,
            version: None,
            for_user: None,
            emoji: None,
            added: None,
            member: None,
        };
        match &event.kind {
            EventKind::Message
            | EventKind::Deleted
            | EventKind::Expired
            | EventKind::FileDeleted => {}
            EventKind::Edited {
                previous_text,
                version,
            } => {
                line.previous_text = Some(previous_text.as_deref());
                line.version = Some(*version);
            }
            EventKind::Burned { for_user } => line.for_user = Some(for_user.into()),
            EventKind::Reaction { emoji, added } => {
                line.emoji = Some(emoji);
                line.added = Some(*added);
            }
            EventKind::MemberJoined { member } | EventKind::MemberLeft { member } => {
                line.member = Some(member.into());
            }
        }
        line
    }
}
