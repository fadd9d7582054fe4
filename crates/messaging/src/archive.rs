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
use conclave_core::{MessageId, RoomId, RoomKind, Timestamp, UserId};
use conclave_crypto::Keyring;
use conclave_store::messages::{self as message_store, MessageRecord, VersionRecord};
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
struct Periods {
    periods: Vec<(UserId, Timestamp, Option<Timestamp>)>,
    /// Every join and leave time, sorted: the members stay the same between two.
    changes: Vec<Timestamp>,
}

impl Periods {
    fn new(periods: Vec<(UserId, Timestamp, Option<Timestamp>)>) -> Self {
        let mut changes: Vec<Timestamp> = periods
            .iter()
            .flat_map(|(_, joined, left)| std::iter::once(*joined).chain(*left))
            .collect();
        changes.sort_unstable();
        changes.dedup();
        Self { periods, changes }
    }

    /// The span `[from, until)` around `at` in which nobody joined or left.
    fn unchanged_around(&self, at: Timestamp) -> (Timestamp, Timestamp) {
        let next = self.changes.partition_point(|change| *change <= at);
        let from = next
            .checked_sub(1)
            .map_or(Timestamp::from_micros(i64::MIN), |i| self.changes[i]);
        let until = self
            .changes
            .get(next)
            .copied()
            .unwrap_or(Timestamp::from_micros(i64::MAX));
        (from, until)
    }

    fn members_at(&self, at: Timestamp) -> BTreeSet<UserId> {
        self.periods
            .iter()
            .filter(|(_, joined, left)| *joined <= at && left.is_none_or(|left| left > at))
            .map(|(user, ..)| *user)
            .collect()
    }

    fn members_during(&self, from: Timestamp, until: Timestamp) -> BTreeSet<UserId> {
        self.periods
            .iter()
            .filter(|(_, joined, left)| *joined < until && left.is_none_or(|left| left >= from))
            .map(|(user, ..)| *user)
            .collect()
    }
}

/// Users as the archive names them, read once per export step (a room), many at a time.
#[derive(Default)]
struct People(HashMap<UserId, Arc<Person>>);

impl People {
    fn get(&mut self, conn: &mut DbConnection, id: UserId) -> Result<Arc<Person>, ExportError> {
        if !self.0.contains_key(&id) {
            self.all(conn, &BTreeSet::from([id]))?;
        }
        Ok(self.0[&id].clone())
    }

    fn all(
        &mut self,
        conn: &mut DbConnection,
        ids: &BTreeSet<UserId>,
    ) -> Result<Vec<Person>, ExportError> {
        let missing: Vec<UserId> = ids
            .iter()
            .filter(|id| !self.0.contains_key(id))
            .copied()
            .collect();
        if !missing.is_empty() {
            for card in users::cards(conn, &missing)? {
                let person = Person {
                    user_id: card.id.to_string(),
                    username: card.username,
                    display_name: card.display_name,
                    email: card.email,
                };
                self.0.insert(card.id, Arc::new(person));
            }
            for id in missing {
                self.0.entry(id).or_insert_with(|| {
                    Arc::new(Person {
                        user_id: id.to_string(),
                        username: id.to_string(),
                        display_name: "(unknown user)".into(),
                        email: None,
                    })
                });
            }
        }
        Ok(ids.iter().map(|id| Person::clone(&self.0[id])).collect())
    }
}

/// The members of a room during a span in which nobody joined or left.
struct Members {
    from: Timestamp,
    until: Timestamp,
    ids: BTreeSet<UserId>,
    people: Arc<[Person]>,
}

/// The messages and versions one page of room events is about, read with one query
/// each instead of one per event.
#[derive(Default)]
struct PageMessages {
    messages: HashMap<MessageId, MessageRecord>,
    versions: HashMap<(MessageId, i64), VersionRecord>,
}

impl PageMessages {
    fn load(conn: &mut DbConnection, page: &[RoomEventRecord]) -> Result<Self, ExportError> {
        let ids: Vec<MessageId> = page
            .iter()
            .filter_map(|record| record.message_id.as_deref()?.parse().ok())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let messages = message_store::find_many(conn, &ids)?
            .into_iter()
            .map(|message| (message.id, message))
            .collect();
        let mut versions = HashMap::new();
        for version in message_store::versions_of_many(conn, &ids)? {
            if let Ok(id) = version.message_id.parse() {
                versions.insert((id, version.version), version);
            }
        }
        Ok(Self { messages, versions })
    }
}

/// What one step of an export needs beside the connection.
struct Step<'a> {
    keyring: &'a Keyring,
    attachments_dir: &'a Path,
    files_dir: Option<&'a Path>,
    keys: KeyCache,
    people: People,
    page: PageMessages,
    /// The members around the last event asked about: events come in time order, so
    /// consecutive ones mostly share them.
    members: Option<Arc<Members>>,
}

impl Step<'_> {
    fn text(
        &mut self,
        conn: &mut DbConnection,
        message: &MessageRecord,
        version: i64,
    ) -> Result<Option<String>, ExportError> {
        let Some(stored) = self.page.versions.get(&(message.id, version)) else {
            return Ok(None);
        };
        Ok(version_text(
            conn,
            self.keyring,
            &mut self.keys,
            message,
            stored,
        )?)
    }

    fn members_at(
        &mut self,
        conn: &mut DbConnection,
        periods: &Periods,
        at: Timestamp,
    ) -> Result<Arc<Members>, ExportError> {
        if let Some(members) = &self.members
            && members.from <= at
            && at < members.until
        {
            return Ok(members.clone());
        }
        let (from, until) = periods.unchanged_around(at);
        let ids = periods.members_at(at);
        let people = self.people.all(conn, &ids)?.into();
        let members = Arc::new(Members {
            from,
            until,
            ids,
            people,
        });
        self.members = Some(members.clone());
        Ok(members)
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
        conversation: &Arc<Conversation>,
        periods: &Periods,
        record: &RoomEventRecord,
    ) -> Result<Vec<ArchiveEvent>, ExportError> {
        let at = Timestamp::from_micros(record.created_at);
        // A sent message's event says nothing its message does not, and most events are
        // those: the others' payloads are read when asked for.
        let payload = || -> Value { serde_json::from_str(&record.payload).unwrap_or(Value::Null) };
        let user_in_payload = |payload: &Value| {
            payload
                .get("user_id")
                .and_then(Value::as_str)
                .and_then(|id| id.parse::<UserId>().ok())
        };
        let actor_id = record
            .actor_id
            .as_deref()
            .and_then(|id| id.parse::<UserId>().ok());
        let message = record
            .message_id
            .as_deref()
            .and_then(|id| id.parse::<MessageId>().ok())
            .and_then(|id| self.page.messages.get(&id).cloned());
        let recipients = self.members_at(conn, periods, at)?.people.clone();
        let base = |actor: Arc<Person>, kind: EventKind| ArchiveEvent {
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
                let version = payload()
                    .get("version")
                    .and_then(Value::as_i64)
                    .unwrap_or(2);
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
                let kind = match user_in_payload(&payload()) {
                    Some(user) => EventKind::Burned {
                        for_user: self.people.get(conn, user)?.as_ref().clone(),
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
                let payload = payload();
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
                let Some(member) = user_in_payload(&payload()) else {
                    return Ok(Vec::new());
                };
                let member = self.people.get(conn, member)?.as_ref().clone();
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
        let conversation = Arc::new(Conversation {
            room_id: room_id.to_owned(),
            kind: match room.kind {
                RoomKind::Direct => ConversationKind::Direct,
                RoomKind::Room => ConversationKind::Room,
            },
            name: room.name.clone(),
        });
        let periods = Periods::new(room_store::all_membership_periods(conn, id)?);
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
            page: PageMessages::default(),
            members: None,
        };
        let mut opened: Option<RoomArchive> = None;
        let mut after = 0;
        loop {
            let page = room_events::in_window(conn, id, scope.from, scope.until, after, PAGE)?;
            step.page = PageMessages::load(conn, &page)?;
            for record in &page {
                let at = Timestamp::from_micros(record.created_at);
                let in_scope = whole
                    || custodians.is_empty()
                    || record
                        .actor_id
                        .as_deref()
                        .and_then(|a| a.parse::<UserId>().ok())
                        .is_some_and(|actor| custodians.contains(&actor))
                    || step
                        .members_at(conn, &periods, at)?
                        .ids
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
                        conversation: Conversation::clone(&conversation),
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
