//! The CSV archive format: RFC 4180 (CRLF line ends, quotes doubled), one row per event,
//! with Mattermost's compliance-export columns first, in Mattermost's order, so tools built
//! for Mattermost's `posts.csv` read it unchanged, then Conclave's own columns for the facts
//! Mattermost's layout has no place for.
//!
//! Mattermost conventions kept: times are milliseconds since the Unix epoch; an edit is two
//! rows, `EditedOriginalMsg` (the old text) and `EditedNewMsg` (the new one); a message with
//! a file has an extra `attachment` row whose message is `name (path)`; member changes are
//! `enter`/`leave` rows whose user is the member. Conclave keeps one id per message across
//! edits, so both edit rows carry it (and `Edited By Post Id` points the original row at
//! it); `Edit Version` tells them apart. Teams do not exist in Conclave: those columns are
//! empty. Conclave rooms are members-only, so their `Channel Type` is `private`.
//!
//! Values are written verbatim, formula-looking cells included: a compliance copy must not
//! alter what was said. Import the file as text into a spreadsheet.
//!
//! | column | for |
//! |---|---|
//! | `Post Update Type` | `EditedOriginalMsg`, `EditedNewMsg`, `Deleted`, `Expired`, `FileDeleted` (Mattermost's), `BurnedOnRead`, `ReactionAdded`, `ReactionRemoved` (Conclave's); empty for new messages and member changes |
//! | `Post Type` | `message`, `attachment`, `deleted attachment`, `enter`, `leave` (Mattermost's), `reaction` |
//! | `Event` | [`EventKind::name`] |
//! | `Event Time` | RFC 3339 with microseconds (the exact time; the Mattermost columns round to ms) |
//! | `Actor ...` | who did it, also for `enter`/`leave` rows (where `User ...` is the member) |
//! | `Subject ...` | the member who joined or left, or whose copy burned |
//! | `Recipient User Ids` | the members at the time, separated by `;` |

use super::{ArchiveError, ArchiveEvent, ConversationKind, EventKind, Person};
use conclave_core::Timestamp;
use std::io::Write;

/// The header row: Mattermost's 20 columns, then Conclave's.
pub const CSV_COLUMNS: [&str; 36] = [
    // Mattermost's message-export `posts.csv`, in its order.
    "Post Creation Time",
    "Post Update Time",
    "Post Update Type",
    "Team Id",
    "Team Name",
    "Team Display Name",
    "Channel Id",
    "Channel Name",
    "Channel Display Name",
    "Channel Type",
    "User Id",
    "User Email",
    "Username",
    "Post Id",
    "Edited By Post Id",
    "Replied to Post Id",
    "Post Message",
    "Post Type",
    "User Type",
    "Previews Post Id",
    // Conclave's.
    "Event",
    "Event Time",
    "Actor User Id",
    "Actor Username",
    "Actor Email",
    "Subject User Id",
    "Subject Username",
    "Reaction",
    "Edit Version",
    "Attachment Id",
    "Attachment Name",
    "Attachment Content Type",
    "Attachment Size",
    "Attachment SHA-256",
    "Attachment Path",
    "Recipient User Ids",
];

/// Column positions, so rows are filled by name rather than by counting.
mod col {
    pub const CREATED: usize = 0;
    pub const UPDATED: usize = 1;
    pub const UPDATE_TYPE: usize = 2;
    pub const CHANNEL_ID: usize = 6;
    pub const CHANNEL_NAME: usize = 7;
    pub const CHANNEL_DISPLAY_NAME: usize = 8;
    pub const CHANNEL_TYPE: usize = 9;
    pub const USER_ID: usize = 10;
    pub const USER_EMAIL: usize = 11;
    pub const USERNAME: usize = 12;
    pub const POST_ID: usize = 13;
    pub const EDITED_BY: usize = 14;
    pub const REPLIED_TO: usize = 15;
    pub const MESSAGE: usize = 16;
    pub const POST_TYPE: usize = 17;
    pub const USER_TYPE: usize = 18;
    pub const EVENT: usize = 20;
    pub const EVENT_TIME: usize = 21;
    pub const ACTOR_ID: usize = 22;
    pub const ACTOR_USERNAME: usize = 23;
    pub const ACTOR_EMAIL: usize = 24;
    pub const SUBJECT_ID: usize = 25;
    pub const SUBJECT_USERNAME: usize = 26;
    pub const REACTION: usize = 27;
    pub const EDIT_VERSION: usize = 28;
    pub const ATTACHMENT_ID: usize = 29;
    pub const ATTACHMENT_NAME: usize = 30;
    pub const ATTACHMENT_TYPE: usize = 31;
    pub const ATTACHMENT_SIZE: usize = 32;
    pub const ATTACHMENT_SHA256: usize = 33;
    pub const ATTACHMENT_PATH: usize = 34;
    pub const RECIPIENTS: usize = 35;
}

type Row = [String; CSV_COLUMNS.len()];

/// Streams rows to `out`; the header is written by [`CsvWriter::new`].
pub struct CsvWriter<W: Write> {
    // Boxed: `csv::Writer` carries ~400 bytes of state, which would bloat any enum of
    // writers a caller keeps (one allocation per file is nothing).
    inner: Box<::csv::Writer<W>>,
}

impl<W: Write> CsvWriter<W> {
    /// Starts a file: writes the header row.
    pub fn new(out: W) -> Result<Self, ArchiveError> {
        let mut writer = Self::continuing(out);
        writer.inner.write_record(CSV_COLUMNS)?;
        Ok(writer)
    }

    /// Continues a file that already has its header and whole rows (a resumed export
    /// whose output was cut back to the last recorded length).
    pub fn continuing(out: W) -> Self {
        let inner = ::csv::WriterBuilder::new()
            .terminator(::csv::Terminator::CRLF)
            .from_writer(out);
        Self {
            inner: Box::new(inner),
        }
    }

    /// Flushes the output, e.g. before recording how far a resumable export got.
    pub fn flush(&mut self) -> Result<(), ArchiveError> {
        self.inner.flush()?;
        Ok(())
    }

    /// Validates and writes the event's rows (one, or two for an edit or a message with
    /// a file).
    pub fn write_event(&mut self, event: &ArchiveEvent) -> Result<(), ArchiveError> {
        event.validate()?;
        for row in rows(event) {
            self.inner.write_record(&row)?;
        }
        Ok(())
    }

    /// Flushes and returns the output.
    pub fn finish(self) -> Result<W, ArchiveError> {
        self.inner
            .into_inner()
            .map_err(|error| ArchiveError::Io(error.into_error()))
    }
}

fn millis(at: Timestamp) -> String {
    at.as_micros().div_euclid(1_000).to_string()
}

fn set_user(row: &mut Row, person: &Person) {
    row[col::USER_ID].clone_from(&person.user_id);
    row[col::USER_EMAIL] = person.email.clone().unwrap_or_default();
    row[col::USERNAME].clone_from(&person.username);
}

fn set_subject(row: &mut Row, person: &Person) {
    row[col::SUBJECT_ID].clone_from(&person.user_id);
    row[col::SUBJECT_USERNAME].clone_from(&person.username);
}

/// The row every row of `event` starts from: conversation, actor, message, attachment.
fn base_row(event: &ArchiveEvent) -> Row {
    let mut row: Row = std::array::from_fn(|_| String::new());
    let conversation = &event.conversation;
    row[col::CREATED] = millis(event.message_sent_at.unwrap_or(event.at));
    row[col::UPDATED] = millis(event.at);
    row[col::CHANNEL_ID].clone_from(&conversation.room_id);
    let name = conversation.name.clone().unwrap_or_default();
    row[col::CHANNEL_NAME].clone_from(&name);
    row[col::CHANNEL_DISPLAY_NAME] = name;
    row[col::CHANNEL_TYPE] = match conversation.kind {
        ConversationKind::Direct => "direct",
        ConversationKind::Room => "private",
    }
    .into();
    set_user(&mut row, &event.actor);
    row[col::POST_ID] = event.message_id.clone().unwrap_or_default();
    row[col::REPLIED_TO] = event.reply_to_id.clone().unwrap_or_default();
    row[col::MESSAGE] = event.text.clone().unwrap_or_default();
    row[col::POST_TYPE] = "message".into();
    row[col::USER_TYPE] = "user".into();
    row[col::EVENT] = event.kind.name().into();
    row[col::EVENT_TIME] = event.at.to_rfc3339();
    row[col::ACTOR_ID].clone_from(&event.actor.user_id);
    row[col::ACTOR_USERNAME].clone_from(&event.actor.username);
    row[col::ACTOR_EMAIL] = event.actor.email.clone().unwrap_or_default();
    if let Some(attachment) = &event.attachment {
        row[col::ATTACHMENT_ID].clone_from(&attachment.id);
        row[col::ATTACHMENT_NAME].clone_from(&attachment.name);
        row[col::ATTACHMENT_TYPE].clone_from(&attachment.content_type);
        row[col::ATTACHMENT_SIZE] = attachment.size_bytes.to_string();
        row[col::ATTACHMENT_SHA256].clone_from(&attachment.sha256);
        if attachment.included() {
            row[col::ATTACHMENT_PATH] = attachment.archive_path();
        }
    }
    row[col::RECIPIENTS] = event
        .recipients
        .iter()
        .map(|person| person.user_id.as_str())
        .collect::<Vec<_>>()
        .join(";");
    row
}

/// Mattermost's message for an attachment row: the name, and where the file is.
fn attachment_message(event: &ArchiveEvent) -> String {
    match &event.attachment {
        Some(attachment) if attachment.included() => {
            format!("{} ({})", attachment.name, attachment.archive_path())
        }
        Some(attachment) => attachment.name.clone(),
        None => String::new(),
    }
}

fn rows(event: &ArchiveEvent) -> Vec<Row> {
    let base = base_row(event);
    let with = |update_type: &str, post_type: &str| {
        let mut row = base.clone();
        row[col::UPDATE_TYPE] = update_type.into();
        row[col::POST_TYPE] = post_type.into();
        row
    };
    match &event.kind {
        EventKind::Message => {
            let mut rows = vec![with("", "message")];
            if event.attachment.is_some() {
                let mut row = with("", "attachment");
                row[col::MESSAGE] = attachment_message(event);
                rows.push(row);
            }
            rows
        }
        EventKind::Edited {
            previous_text,
            version,
        } => {
            let mut original = with("EditedOriginalMsg", "message");
            original[col::MESSAGE] = previous_text.clone().unwrap_or_default();
            original[col::EDITED_BY] = event.message_id.clone().unwrap_or_default();
            original[col::EDIT_VERSION] = (version - 1).to_string();
            let mut new = with("EditedNewMsg", "message");
            new[col::EDIT_VERSION] = version.to_string();
            vec![original, new]
        }
        EventKind::Deleted => vec![with("Deleted", "message")],
        EventKind::Expired => vec![with("Expired", "message")],
        EventKind::Burned { for_user } => {
            let mut row = with("BurnedOnRead", "message");
            set_subject(&mut row, for_user);
            vec![row]
        }
        EventKind::Reaction { emoji, added } => {
            let update = if *added {
                "ReactionAdded"
            } else {
                "ReactionRemoved"
            };
            let mut row = with(update, "reaction");
            row[col::MESSAGE].clone_from(emoji);
            row[col::REACTION].clone_from(emoji);
            vec![row]
        }
        EventKind::MemberJoined { member } | EventKind::MemberLeft { member } => {
            let (post_type, verb) = match event.kind {
                EventKind::MemberJoined { .. } => ("enter", "joined"),
                _ => ("leave", "left"),
            };
            let mut row = with("", post_type);
            // Mattermost's enter/leave rows are the member's, with a sentence as message.
            set_user(&mut row, member);
            set_subject(&mut row, member);
            row[col::CREATED] = millis(event.at);
            row[col::MESSAGE] = format!(
                "User {} ({}) {verb} the conversation",
                member.username,
                member.email.as_deref().unwrap_or_default()
            );
            vec![row]
        }
        EventKind::FileDeleted => {
            let mut row = with("FileDeleted", "deleted attachment");
            row[col::MESSAGE] = attachment_message(event);
            vec![row]
        }
    }
}
