//! Messages, their encrypted versions (the first is the original; edits add versions),
//! and reactions.

use crate::DbConnection;
use crate::error::StoreError;
use crate::schema::{message_versions, messages, reactions};
use conclave_core::{AttachmentId, MessageId, RoomId, Timestamp, UserId};
use diesel::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageRecord {
    pub id: MessageId,
    pub room_id: RoomId,
    pub seq: i64,
    pub sender_id: UserId,
    pub reply_to_id: Option<MessageId>,
    pub attachment_id: Option<AttachmentId>,
    pub current_version: i64,
    pub created_at: Timestamp,
    pub edited_at: Option<Timestamp>,
    pub deleted_at: Option<Timestamp>,
    /// When users stop seeing it (its expiration timer), if it has one.
    pub visible_until: Option<Timestamp>,
    /// Its burn-on-read timer, if it has one.
    pub burn_after_read_seconds: Option<i64>,
    /// When its compliance copy may be destroyed (`None`: keep).
    pub retain_until: Option<Timestamp>,
    /// When the timer worker told connected clients it expired, if it did.
    pub expiry_announced_at: Option<Timestamp>,
}

#[derive(Queryable, QueryableByName, Selectable)]
#[diesel(table_name = messages)]
struct MessageRow {
    id: String,
    room_id: String,
    seq: i64,
    sender_id: String,
    reply_to_id: Option<String>,
    attachment_id: Option<String>,
    current_version: i64,
    created_at: i64,
    edited_at: Option<i64>,
    deleted_at: Option<i64>,
    visible_until: Option<i64>,
    burn_after_read_seconds: Option<i64>,
    retain_until: Option<i64>,
    expiry_announced_at: Option<i64>,
}

impl TryFrom<MessageRow> for MessageRecord {
    type Error = StoreError;
    fn try_from(row: MessageRow) -> Result<Self, StoreError> {
        let corrupt = || StoreError::Corrupt(format!("message {}: bad id", row.id));
        Ok(MessageRecord {
            id: row.id.parse().map_err(|_| corrupt())?,
            room_id: row.room_id.parse().map_err(|_| corrupt())?,
            seq: row.seq,
            sender_id: row.sender_id.parse().map_err(|_| corrupt())?,
            reply_to_id: row
                .reply_to_id
                .map(|id| id.parse())
                .transpose()
                .map_err(|_| corrupt())?,
            attachment_id: row
                .attachment_id
                .map(|id| id.parse())
                .transpose()
                .map_err(|_| corrupt())?,
            current_version: row.current_version,
            created_at: Timestamp::from_micros(row.created_at),
            edited_at: row.edited_at.map(Timestamp::from_micros),
            deleted_at: row.deleted_at.map(Timestamp::from_micros),
            visible_until: row.visible_until.map(Timestamp::from_micros),
            burn_after_read_seconds: row.burn_after_read_seconds,
            retain_until: row.retain_until.map(Timestamp::from_micros),
            expiry_announced_at: row.expiry_announced_at.map(Timestamp::from_micros),
        })
    }
}

/// One stored version of a message's body: ciphertext under the room's epoch key.
#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = message_versions)]
pub struct VersionRecord {
    pub message_id: String,
    pub version: i64,
    pub epoch: i64,
    pub ciphertext: Vec<u8>,
    pub created_at: i64,
}

pub struct NewMessage<'a> {
    pub id: MessageId,
    pub room_id: RoomId,
    pub seq: i64,
    pub sender_id: UserId,
    pub reply_to_id: Option<MessageId>,
    pub attachment_id: Option<AttachmentId>,
    pub idempotency_key: &'a str,
    pub now: Timestamp,
    pub visible_until: Option<Timestamp>,
    pub burn_after_read_seconds: Option<i64>,
    pub retain_until: Option<Timestamp>,
}

pub fn insert(conn: &mut DbConnection, new: &NewMessage<'_>) -> Result<(), StoreError> {
    insert_many(conn, std::slice::from_ref(new))
}

/// Stores new messages with one statement (a batch of sends).
pub fn insert_many(conn: &mut DbConnection, new: &[NewMessage<'_>]) -> Result<(), StoreError> {
    if new.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = new
        .iter()
        .map(|new| {
            (
                messages::id.eq(new.id.to_string()),
                messages::room_id.eq(new.room_id.to_string()),
                messages::seq.eq(new.seq),
                messages::sender_id.eq(new.sender_id.to_string()),
                messages::reply_to_id.eq(new.reply_to_id.map(|id| id.to_string())),
                messages::attachment_id.eq(new.attachment_id.map(|id| id.to_string())),
                messages::current_version.eq(1_i64),
                messages::idempotency_key.eq(new.idempotency_key),
                messages::created_at.eq(new.now.as_micros()),
                messages::visible_until.eq(new.visible_until.map(Timestamp::as_micros)),
                messages::burn_after_read_seconds.eq(new.burn_after_read_seconds),
                messages::retain_until.eq(new.retain_until.map(Timestamp::as_micros)),
            )
        })
        .collect();
    let insert = diesel::insert_into(messages::table).values(rows);
    crate::connection::on_backend!(conn, |backend| insert.execute(backend))?;
    Ok(())
}

/// A version of a message's body to store: ciphertext under the room's `epoch` key.
pub struct NewVersion<'a> {
    pub room_id: RoomId,
    pub message_id: MessageId,
    pub version: i64,
    pub epoch: i64,
    pub ciphertext: &'a [u8],
    pub now: Timestamp,
}

pub fn insert_version(
    conn: &mut DbConnection,
    room_id: RoomId,
    message_id: MessageId,
    version: i64,
    epoch: i64,
    ciphertext: &[u8],
    now: Timestamp,
) -> Result<(), StoreError> {
    insert_versions(
        conn,
        &[NewVersion {
            room_id,
            message_id,
            version,
            epoch,
            ciphertext,
            now,
        }],
    )
}

/// Stores versions with one statement (a batch of sends' first versions).
pub fn insert_versions(conn: &mut DbConnection, new: &[NewVersion<'_>]) -> Result<(), StoreError> {
    if new.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = new
        .iter()
        .map(|new| {
            (
                message_versions::message_id.eq(new.message_id.to_string()),
                message_versions::room_id.eq(new.room_id.to_string()),
                message_versions::version.eq(new.version),
                message_versions::epoch.eq(new.epoch),
                message_versions::ciphertext.eq(new.ciphertext.to_vec()),
                message_versions::created_at.eq(new.now.as_micros()),
            )
        })
        .collect();
    let insert = diesel::insert_into(message_versions::table).values(rows);
    crate::connection::on_backend!(conn, |backend| insert.execute(backend))?;
    Ok(())
}

pub fn find(conn: &mut DbConnection, id: MessageId) -> Result<Option<MessageRecord>, StoreError> {
    messages::table
        .find(id.to_string())
        .select(MessageRow::as_select())
        .get_result(conn)
        .optional()?
        .map(MessageRecord::try_from)
        .transpose()
}

/// `{column} IN (ids)` with the ids as one bound value (a JSON array; see `json_rows`).
/// Diesel's `eq_any` writes one placeholder per id, and SQLite parsing a statement with a
/// thousand of them was a tenth of an export's reading, measured.
pub(crate) fn in_id_list(
    conn: &DbConnection,
    column: &str,
    ids: &[String],
) -> diesel::expression::SqlLiteral<
    diesel::sql_types::Bool,
    diesel::expression::UncheckedBind<
        diesel::expression::SqlLiteral<diesel::sql_types::Bool>,
        diesel::dsl::AsExprOf<String, diesel::sql_types::Text>,
    >,
> {
    let source = crate::json_rows::JsonRows::of(conn).text_source("?", ids.len());
    let (unpack, close) = source.split_once('?').expect("one placeholder");
    let list = serde_json::to_string(ids).expect("strings serialize");
    diesel::dsl::sql::<diesel::sql_types::Bool>(&format!("{column} IN (SELECT value FROM {unpack}"))
        .bind::<diesel::sql_types::Text, _>(list)
        .sql(&format!("{close})"))
}

/// The messages with these ids that exist, in no particular order, in one query: for
/// readers (exports) that would otherwise look each one up.
pub fn find_many(
    conn: &mut DbConnection,
    ids: &[MessageId],
) -> Result<Vec<MessageRecord>, StoreError> {
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    messages::table
        .filter(in_id_list(conn, "messages.id", &ids))
        .select(MessageRow::as_select())
        .load(conn)?
        .into_iter()
        .map(MessageRecord::try_from)
        .collect()
}

pub fn find_by_idempotency_key(
    conn: &mut DbConnection,
    room_id: RoomId,
    sender_id: UserId,
    key: &str,
) -> Result<Option<MessageRecord>, StoreError> {
    // The key is unique per room and sender: no `.first()`, whose bound `LIMIT` SQLite
    // re-prepares on every call.
    messages::table
        .filter(messages::room_id.eq(room_id.to_string()))
        .filter(messages::sender_id.eq(sender_id.to_string()))
        .filter(messages::idempotency_key.eq(key))
        .select(MessageRow::as_select())
        .get_result(conn)
        .optional()?
        .map(MessageRecord::try_from)
        .transpose()
}

/// The messages already sent with any of these `(room, sender, idempotency key)`, each
/// with its key, in one query: a batch of sends looks its retries up at once.
pub fn find_by_idempotency_keys(
    conn: &mut DbConnection,
    keys: &[(RoomId, UserId, &str)],
) -> Result<Vec<(String, MessageRecord)>, StoreError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let list = serde_json::to_string(
        &keys
            .iter()
            .map(|(room, sender, key)| (room.to_string(), sender.to_string(), *key))
            .collect::<Vec<_>>(),
    )
    .expect("strings serialize");
    #[derive(QueryableByName)]
    struct Keyed {
        #[diesel(sql_type = diesel::sql_types::Text)]
        idempotency_key: String,
        #[diesel(embed)]
        message: MessageRow,
    }
    let rows = crate::json_rows::JsonRows::of(conn);
    let (room, sender, key) = (rows.text(0), rows.text(1), rows.text(2));
    let query = match conn {
        // SQLite probes the key's unique index once per element.
        DbConnection::Sqlite(_) => format!(
            "SELECT * FROM messages WHERE (room_id, sender_id, idempotency_key) IN \
             (SELECT {room}, {sender}, {key} FROM {})",
            rows.source("$1", keys.len())
        ),
        // PostgreSQL cannot estimate a JSON array's length (it assumes 100 rows), and
        // with a few thousand messages it hashed the keys and scanned every message,
        // measured. A lateral subquery, kept from being flattened by its `LIMIT`, is one
        // probe of the unique index per key, whatever the estimate.
        DbConnection::Postgresql(_) => format!(
            "SELECT found.* FROM {} CROSS JOIN LATERAL \
             (SELECT * FROM messages WHERE room_id = {room} AND sender_id = {sender} \
             AND idempotency_key = {key} LIMIT 1) AS found",
            rows.source("$1", keys.len())
        ),
    };
    diesel::sql_query(query)
        .bind::<diesel::sql_types::Text, _>(list)
        .load::<Keyed>(conn)?
        .into_iter()
        .map(|keyed| {
            Ok((
                keyed.idempotency_key,
                MessageRecord::try_from(keyed.message)?,
            ))
        })
        .collect()
}

/// Which page of a room's messages to read.
#[derive(Clone, Copy, Debug)]
pub enum Page {
    /// The newest `limit` messages with a sequence number below `before` (or the newest).
    Before(Option<i64>),
    /// The oldest `limit` messages with a sequence number above `after`.
    After(i64),
}

/// A page of messages, returned in ascending sequence order. Deleted messages, and those
/// past their expiration or their retention deadline at `now`, are skipped.
pub fn list(
    conn: &mut DbConnection,
    room_id: RoomId,
    page: Page,
    limit: i64,
    now: Timestamp,
) -> Result<Vec<MessageRecord>, StoreError> {
    let base = messages::table
        .filter(messages::room_id.eq(room_id.to_string()))
        .filter(messages::deleted_at.is_null())
        .filter(
            messages::visible_until
                .is_null()
                .or(messages::visible_until.gt(now.as_micros())),
        )
        .filter(
            messages::retain_until
                .is_null()
                .or(messages::retain_until.gt(now.as_micros())),
        )
        .select(MessageRow::as_select())
        .limit(limit)
        .into_boxed();
    let rows = match page {
        Page::Before(before) => {
            let mut query = base.order(messages::seq.desc());
            if let Some(before) = before {
                query = query.filter(messages::seq.lt(before));
            }
            let mut rows = query.load(conn)?;
            rows.reverse();
            rows
        }
        Page::After(after) => base
            .filter(messages::seq.gt(after))
            .order(messages::seq.asc())
            .load(conn)?,
    };
    rows.into_iter().map(MessageRecord::try_from).collect()
}

pub fn version(
    conn: &mut DbConnection,
    message_id: MessageId,
    version: i64,
) -> Result<Option<VersionRecord>, StoreError> {
    Ok(message_versions::table
        .find((message_id.to_string(), version))
        .select(VersionRecord::as_select())
        .get_result(conn)
        .optional()?)
}

pub fn versions(
    conn: &mut DbConnection,
    message_id: MessageId,
) -> Result<Vec<VersionRecord>, StoreError> {
    Ok(message_versions::table
        .filter(message_versions::message_id.eq(message_id.to_string()))
        .order(message_versions::version.asc())
        .select(VersionRecord::as_select())
        .load(conn)?)
}

/// Every stored version of these messages, in no particular order (see [`find_many`]).
pub fn versions_of_many(
    conn: &mut DbConnection,
    message_ids: &[MessageId],
) -> Result<Vec<VersionRecord>, StoreError> {
    let ids: Vec<String> = message_ids.iter().map(ToString::to_string).collect();
    Ok(message_versions::table
        .filter(in_id_list(conn, "message_versions.message_id", &ids))
        .select(VersionRecord::as_select())
        .load(conn)?)
}

pub fn set_current_version(
    conn: &mut DbConnection,
    id: MessageId,
    version: i64,
    now: Timestamp,
) -> Result<(), StoreError> {
    diesel::update(messages::table.find(id.to_string()))
        .set((
            messages::current_version.eq(version),
            messages::edited_at.eq(now.as_micros()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn mark_deleted(
    conn: &mut DbConnection,
    id: MessageId,
    by: UserId,
    now: Timestamp,
) -> Result<(), StoreError> {
    diesel::update(messages::table.find(id.to_string()))
        .set((
            messages::deleted_at.eq(now.as_micros()),
            messages::deleted_by.eq(by.to_string()),
        ))
        .execute(conn)?;
    Ok(())
}

/// Adds (`true`) or removes (`false`) a reaction; returns whether anything changed.
pub fn set_reaction(
    conn: &mut DbConnection,
    message_id: MessageId,
    user_id: UserId,
    emoji: &str,
    present: bool,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let key = (
        message_id.to_string(),
        user_id.to_string(),
        emoji.to_owned(),
    );
    let exists = reactions::table
        .find(key.clone())
        .count()
        .get_result::<i64>(conn)?
        > 0;
    match (present, exists) {
        (true, false) => {
            diesel::insert_into(reactions::table)
                .values((
                    reactions::message_id.eq(&key.0),
                    reactions::user_id.eq(&key.1),
                    reactions::emoji.eq(&key.2),
                    reactions::created_at.eq(now.as_micros()),
                ))
                .execute(conn)?;
            Ok(true)
        }
        (false, true) => {
            diesel::delete(reactions::table.find(key)).execute(conn)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Reactions on the given messages: `(message id, user id, emoji)`, oldest first.
pub fn reactions_on(
    conn: &mut DbConnection,
    message_ids: &[MessageId],
) -> Result<Vec<(String, String, String)>, StoreError> {
    if message_ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = message_ids.iter().map(ToString::to_string).collect();
    Ok(reactions::table
        .filter(reactions::message_id.eq_any(ids))
        .order(reactions::created_at.asc())
        .select((reactions::message_id, reactions::user_id, reactions::emoji))
        .load(conn)?)
}

/// The message that references an attachment, if any.
pub fn referencing_attachment(
    conn: &mut DbConnection,
    attachment_id: AttachmentId,
) -> Result<Option<MessageRecord>, StoreError> {
    messages::table
        .filter(messages::attachment_id.eq(attachment_id.to_string()))
        .select(MessageRow::as_select())
        .first(conn)
        .optional()?
        .map(MessageRecord::try_from)
        .transpose()
}

/// Expiration deadlines due by `until` that were not announced yet, earliest first.
pub fn expiring(
    conn: &mut DbConnection,
    until: Timestamp,
    limit: i64,
) -> Result<Vec<MessageRecord>, StoreError> {
    messages::table
        .filter(messages::visible_until.le(until.as_micros()))
        .filter(messages::expiry_announced_at.is_null())
        .order(messages::visible_until.asc())
        .limit(limit)
        .select(MessageRow::as_select())
        .load(conn)?
        .into_iter()
        .map(MessageRecord::try_from)
        .collect()
}

/// Marks an expiry announced; only the first caller (of any node) gets `true`.
pub fn mark_expiry_announced(
    conn: &mut DbConnection,
    id: MessageId,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let changed = diesel::update(
        messages::table
            .find(id.to_string())
            .filter(messages::expiry_announced_at.is_null()),
    )
    .set(messages::expiry_announced_at.eq(now.as_micros()))
    .execute(conn)?;
    Ok(changed == 1)
}

/// Sets a message's retention deadline.
pub fn set_retain_until(
    conn: &mut DbConnection,
    id: MessageId,
    retain_until: Option<Timestamp>,
) -> Result<(), StoreError> {
    diesel::update(messages::table.find(id.to_string()))
        .set(messages::retain_until.eq(retain_until.map(Timestamp::as_micros)))
        .execute(conn)?;
    Ok(())
}

/// Sets a message's retention deadline only if its deadline and delete time are still
/// those of `seen` (compare-and-set); returns whether it did.
pub fn set_retain_until_if(
    conn: &mut DbConnection,
    seen: &MessageRecord,
    retain_until: Option<Timestamp>,
) -> Result<bool, StoreError> {
    let base = messages::table.find(seen.id.to_string());
    let set = messages::retain_until.eq(retain_until.map(Timestamp::as_micros));
    // One conditional UPDATE (PostgreSQL re-checks it against a row changed meanwhile).
    let changed = match (seen.retain_until, seen.deleted_at) {
        (Some(r), Some(d)) => diesel::update(
            base.filter(messages::retain_until.eq(r.as_micros()))
                .filter(messages::deleted_at.eq(d.as_micros())),
        )
        .set(set)
        .execute(conn)?,
        (Some(r), None) => diesel::update(
            base.filter(messages::retain_until.eq(r.as_micros()))
                .filter(messages::deleted_at.is_null()),
        )
        .set(set)
        .execute(conn)?,
        (None, Some(d)) => diesel::update(
            base.filter(messages::retain_until.is_null())
                .filter(messages::deleted_at.eq(d.as_micros())),
        )
        .set(set)
        .execute(conn)?,
        (None, None) => diesel::update(
            base.filter(messages::retain_until.is_null())
                .filter(messages::deleted_at.is_null()),
        )
        .set(set)
        .execute(conn)?,
    };
    Ok(changed == 1)
}

/// Retention cuts (a maximum reached while users still see the message) due by `until`
/// that were not announced yet, earliest first.
pub fn retention_cut(
    conn: &mut DbConnection,
    until: Timestamp,
    limit: i64,
) -> Result<Vec<MessageRecord>, StoreError> {
    messages::table
        .filter(messages::retain_until.le(until.as_micros()))
        .filter(messages::expiry_announced_at.is_null())
        .filter(messages::deleted_at.is_null())
        .order(messages::retain_until.asc())
        .limit(limit)
        .select(MessageRow::as_select())
        .load(conn)?
        .into_iter()
        .map(MessageRecord::try_from)
        .collect()
}

/// Messages in id (time) order after `after`, a page at a time (retention recomputation
/// and previews walk every message this way); optionally one room's only.
pub fn page_by_id(
    conn: &mut DbConnection,
    room_id: Option<RoomId>,
    after: Option<MessageId>,
    limit: i64,
) -> Result<Vec<MessageRecord>, StoreError> {
    let mut query = messages::table
        .order(messages::id.asc())
        .limit(limit)
        .select(MessageRow::as_select())
        .into_boxed();
    if let Some(room_id) = room_id {
        query = query.filter(messages::room_id.eq(room_id.to_string()));
    }
    if let Some(after) = after {
        query = query.filter(messages::id.gt(after.to_string()));
    }
    query
        .load(conn)?
        .into_iter()
        .map(MessageRecord::try_from)
        .collect()
}

/// How many messages (optionally one room's) exist.
pub fn count(conn: &mut DbConnection, room_id: Option<RoomId>) -> Result<i64, StoreError> {
    let mut query = messages::table.count().into_boxed();
    if let Some(room_id) = room_id {
        query = query.filter(messages::room_id.eq(room_id.to_string()));
    }
    Ok(query.get_result(conn)?)
}

/// Messages whose retention deadline is due by `cutoff`, in deadline order after the
/// `(retain_until, id)` cursor (so held messages are passed over, not revisited, within a
/// sweep).
pub fn due_for_destruction(
    conn: &mut DbConnection,
    cutoff: Timestamp,
    after: Option<(Timestamp, MessageId)>,
    limit: i64,
) -> Result<Vec<MessageRecord>, StoreError> {
    let mut query = messages::table
        .filter(messages::retain_until.le(cutoff.as_micros()))
        .order((messages::retain_until.asc(), messages::id.asc()))
        .limit(limit)
        .select(MessageRow::as_select())
        .into_boxed();
    if let Some((at, id)) = after {
        let (at, id) = (at.as_micros(), id.to_string());
        // The lower bound alone lets the index scan start at the cursor.
        query = query.filter(messages::retain_until.ge(at)).filter(
            messages::retain_until
                .gt(at)
                .or(messages::retain_until.eq(at).and(messages::id.gt(id))),
        );
    }
    query
        .load(conn)?
        .into_iter()
        .map(MessageRecord::try_from)
        .collect()
}

/// What destroying messages removed, for the caller to finish (files, keys) and report.
#[derive(Debug, Default)]
pub struct Destroyed {
    pub messages: usize,
    /// Attachment files to unlink (relative storage paths).
    pub attachment_paths: Vec<String>,
    /// `(room id, epoch)` of every data key the destroyed rows used.
    pub key_epochs: Vec<(String, i64)>,
}

/// Hard-deletes messages with their versions, reactions, burn-on-read state and
/// attachments (rows only: the caller queues and unlinks the files). Replies to them
/// keep existing without the reference.
pub fn destroy(conn: &mut DbConnection, ids: &[MessageId]) -> Result<Destroyed, StoreError> {
    use crate::schema::attachments;
    if ids.is_empty() {
        return Ok(Destroyed::default());
    }
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    let attached: Vec<(String, String, i64, String)> = attachments::table
        .inner_join(messages::table.on(messages::attachment_id.eq(attachments::id.nullable())))
        .filter(messages::id.eq_any(&ids))
        .select((
            attachments::id,
            attachments::room_id,
            attachments::epoch,
            attachments::storage_path,
        ))
        .load(conn)?;
    diesel::update(messages::table.filter(messages::reply_to_id.eq_any(&ids)))
        .set(messages::reply_to_id.eq(None::<String>))
        .execute(conn)?;
    // The room event log keeps its sequence (clients resume from it), but what it said
    // about the destroyed messages (who reacted with what, who acted) goes.
    diesel::update(
        crate::schema::room_events::table
            .filter(crate::schema::room_events::message_id.eq_any(&ids)),
    )
    .set((
        crate::schema::room_events::payload.eq("{}"),
        crate::schema::room_events::actor_id.eq(None::<String>),
    ))
    .execute(conn)?;
    diesel::delete(reactions::table.filter(reactions::message_id.eq_any(&ids))).execute(conn)?;
    diesel::delete(
        crate::schema::message_reads::table
            .filter(crate::schema::message_reads::message_id.eq_any(&ids)),
    )
    .execute(conn)?;
    let (messages, mut key_epochs) = delete_versions_and_messages(conn, &ids)?;
    let attachment_ids: Vec<&String> = attached.iter().map(|(id, ..)| id).collect();
    diesel::delete(attachments::table.filter(attachments::id.eq_any(attachment_ids)))
        .execute(conn)?;
    let mut attachment_paths = Vec::with_capacity(attached.len());
    for (_, room_id, epoch, path) in attached {
        key_epochs.push((room_id, epoch));
        attachment_paths.push(path);
    }
    key_epochs.sort();
    key_epochs.dedup();
    Ok(Destroyed {
        messages,
        attachment_paths,
        key_epochs,
    })
}

/// Deletes the messages' versions, then the messages; returns how many messages it
/// deleted and the `(room, epoch)` of every data key the versions used. On PostgreSQL
/// the keys come back from the deletes themselves (`RETURNING`): a lookup joining
/// versions to messages first took a tenth of a sweeper batch. SQLite (whose `RETURNING`
/// diesel supports only behind a feature this workspace does not enable) looks them up
/// first, in-process.
fn delete_versions_and_messages(
    conn: &mut DbConnection,
    ids: &[String],
) -> Result<(usize, Vec<(String, i64)>), StoreError> {
    let versions = message_versions::table.filter(message_versions::message_id.eq_any(ids));
    let doomed = messages::table.filter(messages::id.eq_any(ids));
    if let DbConnection::Postgresql(pg) = conn {
        let epochs: Vec<(String, i64)> = diesel::delete(versions)
            .returning((message_versions::message_id, message_versions::epoch))
            .get_results(pg)?;
        let rooms: std::collections::HashMap<String, String> = diesel::delete(doomed)
            .returning((messages::id, messages::room_id))
            .get_results(pg)?
            .into_iter()
            .collect();
        let key_epochs = epochs
            .into_iter()
            .filter_map(|(message_id, epoch)| Some((rooms.get(&message_id)?.clone(), epoch)))
            .collect();
        return Ok((rooms.len(), key_epochs));
    }
    let key_epochs: Vec<(String, i64)> = message_versions::table
        .inner_join(messages::table)
        .filter(messages::id.eq_any(ids))
        .select((messages::room_id, message_versions::epoch))
        .distinct()
        .load(conn)?;
    diesel::delete(versions).execute(conn)?;
    let deleted = diesel::delete(doomed).execute(conn)?;
    Ok((deleted, key_epochs))
}
