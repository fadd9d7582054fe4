//! The compliance record of conversations, for exports: each room's event log (sends,
//! edits, deletes, expirations and burns, reactions, members joining and leaving) turned
//! into `conclave_audit::archive` events with the decrypted text, the attachment
//! metadata (and, when asked, the decrypted files) and the members at the time.
//!
//! It includes what users no longer see but retention keeps (deleted, expired and burned
//! messages, every edit); what retention destroyed is gone, and an event about it says
//! only that it happened.

use crate::attachments::decrypt_to_file;
use crate::error::MessagingError;
use crate::keys::KeyCache;
use crate::messages::version_text;
use conclave_audit::archive::{
    ArchiveEvent, AttachmentContent, AttachmentMeta, Conversation, ConversationKind, EventKind,
    Person,
};
use conclave_audit::exports::{ArchiveSource, ExportError, JobScope, RoomArchive, RoomSink};
use conclave_core::{RoomId, RoomKind, Timestamp, UserId};
use conclave_crypto::Keyring;
use conclave_store::messages::{self as message_store, MessageRecord};
use conclave_store::room_events::{self, RoomEventRecord};
use conclave_store::{DbConnection, attachments, rooms as room_store, users};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Events read per query.
const PAGE: i64 = 1_000;

/// The messaging service as the source of compliance exports.
pub struct ConversationArchive {
    pub keyring: Arc<Keyring>,
    pub attachments_dir: PathBuf,
}

fn source_error(err: impl std::fmt::Display) -> ExportError {
    ExportError::Source(err.to_string())
}

impl From<MessagingError> for ExportError {
    fn from(err: MessagingError) -> Self {
        source_error(err)
    }
}

/// Who was a member of one room when.
struct Periods(Vec<(UserId, Timestamp, Option<Timestamp>)>);

impl Periods {
    fn members_at(&self, at: Timestamp) -> BTreeSet<UserId> {
        self.0
            .iter()
            .filter(|(_, joined, left)| *joined <= at && left.is_none_or(|left| left > at))
            .map(|(user, ..)| *user)
            .collect()
    }

    fn members_during(&self, from: Timestamp, until: Timestamp) -> BTreeSet<UserId> {
        self.0
            .iter()
            .filter(|(_, joined, left)| *joined < until && left.is_none_or(|left| left >= from))
            .map(|(user, ..)| *user)
            .collect()
    }
}

/// Users as the archive names them, read once per export step.
#[derive(Default)]
struct People(HashMap<UserId, Person>);

impl People {
    fn get(&mut self, conn: &mut DbConnection, id: UserId) -> Result<Person, ExportError> {
        if let Some(person) = self.0.get(&id) {
            return Ok(person.clone());
        }
        let person = match users::find_by_id(conn, id)? {
            Some(user) => Person {
                user_id: id.to_string(),
                username: user.username.to_string(),
                display_name: user.display_name,
                email: user.email,
            },
            None => Person {
                user_id: id.to_string(),
                username: id.to_string(),
                display_name: "(unknown user)".into(),
                email: None,
            },
        };
        self.0.insert(id, person.clone());
        Ok(person)
    }

    fn all(
        &mut self,
        conn: &mut DbConnection,
        ids: &BTreeSet<UserId>,
    ) -> Result<Vec<Person>, ExportError> {
        ids.iter().map(|id| self.get(conn, *id)).collect()
    }
}

/// What one step of an export needs beside the connection.
struct Step<'a> {
    keyring: &'a Keyring,
    attachments_dir: &'a Path,
    files_dir: Option<&'a Path>,
    keys: KeyCache,
    people: People,
}

impl Step<'_> {
    fn text(
        &mut self,
        conn: &mut DbConnection,
        message: &MessageRecord,
        version: i64,
    ) -> Result<Option<String>, ExportError> {
        Ok(version_text(
            conn,
            self.keyring,
            &mut self.keys,
            message,
            version,
        )?)
    }

    /// The message's attachment metadata; the decrypted file too when files are exported
    /// and `with_file`.
    fn attachment(
        &mut self,
        conn: &mut DbConnection,
        message: &MessageRecord,
        with_file: bool,
    ) -> Result<Option<AttachmentMeta>, ExportError> {
        let Some(id) = message.attachment_id else {
            return Ok(None);
        };
        let Some(record) = attachments::find(conn, &id.to_string())? else {
            return Ok(None);
        };
        let mut meta = AttachmentMeta {
            id: record.id.clone(),
            name: record.name.clone(),
            content_type: record.content_type.clone(),
            size_bytes: record.size_bytes,
            sha256: record.sha256.clone(),
            content: None,
        };
        if let (true, Some(files_dir)) = (with_file, self.files_dir) {
            let dest = files_dir.join(meta.archive_path());
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(source_error)?;
            }
            decrypt_to_file(conn, self.keyring, self.attachments_dir, &record, &dest)?;
            meta.content = Some(AttachmentContent::File(dest));
        }
        Ok(Some(meta))
    }

    /// The archive events one room event stands for (none for read markers, renames
    /// and role changes, which are not part of the record).
    fn events(
        &mut self,
        conn: &mut DbConnection,
        conversation: &Conversation,
        periods: &Periods,
        record: &RoomEventRecord,
    ) -> Result<Vec<ArchiveEvent>, ExportError> {
        let at = Timestamp::from_micros(record.created_at);
        let payload: Value = serde_json::from_str(&record.payload).unwrap_or(Value::Null);
        let user_in_payload = payload
            .get("user_id")
            .and_then(Value::as_str)
            .and_then(|id| id.parse::<UserId>().ok());
        let actor_id = record
            .actor_id
            .as_deref()
            .and_then(|id| id.parse::<UserId>().ok());
        let message = match record.message_id.as_deref().and_then(|id| id.parse().ok()) {
            Some(id) => message_store::find(conn, id)?,
            None => None,
        };
        let recipients = self.people.all(conn, &periods.members_at(at))?;
        let base = |actor: Person, kind: EventKind| ArchiveEvent {
            at,
            conversation: conversation.clone(),
            actor,
            kind,
            message_id: record.message_id.clone(),
            message_sent_at: message.as_ref().map(|m| m.created_at),
            reply_to_id: message
                .as_ref()
                .and_then(|m| m.reply_to_id)
                .map(|id| id.to_string()),
            text: None,
            attachment: None,
            recipients: recipients.clone(),
        };
        // The acting user: the event's actor, else the message's sender.
        let actor = match actor_id.or(message.as_ref().map(|m| m.sender_id)) {
            Some(id) => self.people.get(conn, id)?,
            None => return Ok(Vec::new()),
        };
        let events = match record.kind.as_str() {
            "message.created" => {
                let mut event = base(actor, EventKind::Message);
                if let Some(message) = &message {
                    event.text = self.text(conn, message, 1)?;
                    event.attachment = self.attachment(conn, message, true)?;
                }
                vec![event]
            }
            "message.edited" => {
                let version = payload.get("version").and_then(Value::as_i64).unwrap_or(2);
                let (mut previous_text, mut text) = (None, None);
                if let Some(message) = &message {
                    previous_text = self.text(conn, message, version - 1)?;
                    text = self.text(conn, message, version)?;
                }
                let mut event = base(
                    actor,
                    EventKind::Edited {
                        previous_text,
                        version: version.max(2),
                    },
                );
                event.text = text;
                vec![event]
            }
            "message.deleted" => {
                let mut deleted = base(actor.clone(), EventKind::Deleted);
                let mut events = Vec::new();
                if let Some(message) = &message {
                    deleted.text = self.text(conn, message, message.current_version)?;
                    if let Some(attachment) = self.attachment(conn, message, false)? {
                        let mut file_deleted = base(actor, EventKind::FileDeleted);
                        file_deleted.attachment = Some(attachment);
                        events.push(deleted);
                        events.push(file_deleted);
                        return Ok(events);
                    }
                }
                events.push(deleted);
                events
            }
            "message.expired" => {
                let kind = match user_in_payload {
                    Some(user) => EventKind::Burned {
                        for_user: self.people.get(conn, user)?,
                    },
                    None => EventKind::Expired,
                };
                let mut event = base(actor, kind);
                if let Some(message) = &message {
                    event.text = self.text(conn, message, message.current_version)?;
                }
                vec![event]
            }
            "reaction.updated" => {
                let emoji = payload
                    .get("emoji")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let added = payload
                    .get("present")
                    .and_then(Value::as_bool)
                    .unwrap_or(true);
                vec![base(actor, EventKind::Reaction { emoji, added })]
            }
            "member.joined" | "member.left" => {
                let Some(member) = user_in_payload else {
                    return Ok(Vec::new());
                };
                let member = self.people.get(conn, member)?;
                let kind = if record.kind == "member.joined" {
                    EventKind::MemberJoined { member }
                } else {
                    EventKind::MemberLeft { member }
                };
                let mut event = base(actor, kind);
                event.message_id = None;
                event.message_sent_at = None;
                event.reply_to_id = None;
                vec![event]
            }
            _ => Vec::new(),
        };
        Ok(events)
    }
}

fn parse_ids<T: std::str::FromStr>(ids: &[String]) -> Vec<T> {
    ids.iter().filter_map(|id| id.parse().ok()).collect()
}

impl ArchiveSource for ConversationArchive {
    fn rooms(&self, conn: &mut DbConnection, scope: &JobScope) -> Result<Vec<String>, ExportError> {
        let mut rooms: BTreeSet<RoomId> = parse_ids(&scope.rooms).into_iter().collect();
        for custodian in parse_ids::<UserId>(&scope.custodians) {
            rooms.extend(room_store::rooms_of_during(
                conn,
                custodian,
                scope.from,
                scope.until,
            )?);
        }
        if scope.rooms.is_empty() && scope.custodians.is_empty() {
            let mut after = None;
            loop {
                let page = room_store::all_ids(conn, after, PAGE)?;
                after = page.last().copied();
                let done = (page.len() as i64) < PAGE;
                rooms.extend(page);
                if done {
                    break;
                }
            }
        }
        Ok(rooms.into_iter().map(|id| id.to_string()).collect())
    }

    fn room(
        &self,
        conn: &mut DbConnection,
        room_id: &str,
        scope: &JobScope,
        files_dir: Option<&Path>,
        sink: &mut dyn RoomSink,
    ) -> Result<Option<RoomArchive>, ExportError> {
        let Ok(id) = room_id.parse::<RoomId>() else {
            return Ok(None);
        };
        let Some(room) = room_store::find(conn, id)? else {
            return Ok(None);
        };
        let conversation = Conversation {
            room_id: room_id.to_owned(),
            kind: match room.kind {
                RoomKind::Direct => ConversationKind::Direct,
                RoomKind::Room => ConversationKind::Room,
            },
            name: room.name.clone(),
        };
        let periods = Periods(room_store::all_membership_periods(conn, id)?);
        // Named rooms are exported whole; rooms reached through custodians only while a
        // custodian was a member (or acted).
        let whole = scope.rooms.iter().any(|r| r == room_id);
        let custodians: BTreeSet<UserId> = parse_ids(&scope.custodians).into_iter().collect();
        let mut step = Step {
            keyring: &self.keyring,
            attachments_dir: &self.attachments_dir,
            files_dir,
            keys: KeyCache::default(),
            people: People::default(),
        };
        let mut opened: Option<RoomArchive> = None;
        let mut after = 0;
        loop {
            let page = room_events::in_window(conn, id, scope.from, scope.until, after, PAGE)?;
            for record in &page {
                let at = Timestamp::from_micros(record.created_at);
                let in_scope = whole
                    || custodians.is_empty()
                    || record
                        .actor_id
                        .as_deref()
                        .and_then(|a| a.parse::<UserId>().ok())
                        .is_some_and(|actor| custodians.contains(&actor))
                    || periods
                        .members_at(at)
                        .iter()
                        .any(|m| custodians.contains(m));
                if !in_scope {
                    continue;
                }
                let events = step.events(conn, &conversation, &periods, record)?;
                if events.is_empty() {
                    continue;
                }
                if opened.is_none() {
                    let start = scope.from.max(room.created_at);
                    opened = Some(RoomArchive {
                        conversation: conversation.clone(),
                        participants: step
                            .people
                            .all(conn, &periods.members_during(scope.from, scope.until))?,
                        members_at_start: step.people.all(conn, &periods.members_at(start))?,
                    });
                }
                let room_archive = opened.as_ref().expect("opened above");
                for event in events {
                    sink.event(room_archive, event)?;
                }
            }
            match page.last() {
                Some(last) if page.len() as i64 == PAGE => after = last.seq,
                _ => break,
            }
        }
        Ok(opened)
    }
}
