//! Messages: send (idempotent, gap-free sequence numbers), list and fetch, edit (every
//! version kept, encrypted), delete, reactions and read receipts. Bodies are sealed with
//! the room's data key for the current epoch, bound to message, room, sender, epoch and
//! version.

use crate::error::MessagingError;
use crate::keys::{self, KeyCache};
use crate::realtime::Published;
use crate::rooms::{locked_membership, membership};
use crate::wire::{AttachmentView, MessageView, ReactionView};
use conclave_core::{
    AttachmentId, Emoji, IdempotencyKey, MessageId, MessageText, RoomId, Timestamp, UserId,
};
use conclave_crypto::envelope::{open, seal};
use conclave_crypto::{BodyBinding, Keyring};
use conclave_store::messages::{
    self as message_store, MessageRecord, NewMessage, NewVersion, Page,
};
use conclave_store::{
    DbConnection, attachments, message_reads, room_events, rooms as room_store, write_transaction,
};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

/// A message to send, parsed.
#[derive(Debug)]
pub struct NewMessageInput {
    pub text: MessageText,
    pub idempotency_key: IdempotencyKey,
    pub reply_to_id: Option<MessageId>,
    pub attachment_id: Option<AttachmentId>,
    /// The sender's expiration timer; `None`: the policy's default.
    pub expires_in: Option<Duration>,
    /// The sender's burn-on-read timer; `None`: the policy's default.
    pub burn_after_read: Option<Duration>,
}

/// How a message is being rendered, which decides what a viewer may see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenderMode {
    /// A member reading (list, fetch): starts their burn-on-read timers, shows text.
    Reader(UserId),
    /// A realtime event (for one member on replay, or for all live): burn-on-read text is
    /// left out, since only a read may start the timer.
    Event(Option<UserId>),
}

impl RenderMode {
    fn viewer(self) -> Option<UserId> {
        match self {
            RenderMode::Reader(user) => Some(user),
            RenderMode::Event(user) => user,
        }
    }
}

/// Whether `viewer` may see `message` at `now`, as a read: it starts the viewer's
/// burn-on-read timer (opening a message's attachment is reading the message).
pub fn read_by(
    conn: &mut DbConnection,
    message: &MessageRecord,
    viewer: UserId,
    now: Timestamp,
) -> Result<bool, MessagingError> {
    Ok(visible_until_for(conn, message, Some(viewer), now, true)?.is_some())
}

/// Whether (and until when) a viewer may see a message at `now`. Expired and burned
/// messages are invisible on every read path, whatever the timer worker has done.
fn visible_until_for(
    conn: &mut DbConnection,
    message: &MessageRecord,
    viewer: Option<UserId>,
    now: Timestamp,
    start_burn: bool,
) -> Result<Option<Option<Timestamp>>, MessagingError> {
    // Deleted messages are gone for users at once, exactly as if destroyed (whether the
    // row stays, for retention or a legal hold, must not show); a retention maximum ends
    // a live message for users too.
    if !visible_at(message, now) {
        return Ok(None);
    }
    let Some(burn_seconds) = message.burn_after_read_seconds else {
        return Ok(Some(message.visible_until));
    };
    let Some(viewer) = viewer else {
        return Ok(Some(message.visible_until));
    };
    if viewer == message.sender_id {
        // The sender sees it until every recipient's deadline has passed (or it expires).
        let reads = message_reads::for_message(conn, message.id)?;
        let visible = reads.is_empty() || reads.iter().any(|r| r.visible_at(now));
        return Ok(visible.then_some(message.visible_until));
    }
    let Some(mut read) = message_reads::find(conn, message.id, viewer)? else {
        // Not a recipient (joined after it was sent).
        return Ok(None);
    };
    if read.first_read_at.is_none() && start_burn {
        let deadline = now.plus(Duration::from_secs(burn_seconds.max(0) as u64));
        let deadline = message
            .visible_until
            .map_or(deadline, |until| until.min(deadline));
        if message_reads::start(conn, message.id, viewer, now, deadline)? {
            read.first_read_at = Some(now.as_micros());
            read.visible_until = Some(deadline.as_micros());
            // The last recipient's first read fixes when the sender's copy ends too.
            conclave_policy::retention::refresh(conn, message.id)?;
        } else if let Some(stored) = message_reads::find(conn, message.id, viewer)? {
            // A concurrent read started it first: its deadline is the one.
            read = stored;
        }
    }
    if !read.visible_at(now) {
        return Ok(None);
    }
    let mine = read.visible_until.map(Timestamp::from_micros);
    Ok(Some(match (mine, message.visible_until) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }))
}

/// The outcome of a send: the message, and the event to publish (none for a retry).
pub struct Sent {
    pub message: MessageView,
    /// Whether this send created the message (false: an idempotent retry).
    pub created: bool,
    pub published: Vec<Published>,
}

fn publish(
    conn: &mut DbConnection,
    room_id: RoomId,
    kind: &str,
    message_id: Option<MessageId>,
    actor: UserId,
    payload: serde_json::Value,
    now: Timestamp,
) -> Result<Published, MessagingError> {
    let record = room_events::append(
        conn,
        room_id,
        kind,
        message_id,
        Some(actor),
        &payload.to_string(),
        now,
    )?;
    let recipients = room_store::members(conn, room_id)?
        .into_iter()
        .map(|m| m.user_id)
        .collect();
    Ok(Published {
        room_id,
        seq: record.seq,
        recipients,
        rendered: None,
    })
}

/// Takes one send from `user`'s allowance (`messaging.max_sends_per_minute`, counted per
/// node in memory); over it, [`MessagingError::RateLimited`] says when to retry.
pub fn check_send_rate(
    limiter: &conclave_core::RateLimiter<UserId>,
    user: UserId,
    now: Timestamp,
) -> Result<(), MessagingError> {
    limiter
        .check(&user, now)
        .map_err(|retry_after| MessagingError::RateLimited {
            message: format!(
                "too many messages: at most {} a minute; retry in {} s",
                limiter.per_minute(),
                retry_after.as_secs().max(1)
            ),
            retry_after,
        })
}

/// One message to send: who sends it where, when, and what.
#[derive(Debug)]
pub struct SendRequest {
    pub sender: UserId,
    pub room_id: RoomId,
    pub now: Timestamp,
    pub input: NewMessageInput,
}

/// Sends a message: [`send_many`] with one. An idempotent retry returns the message
/// first sent with that key.
pub fn send(
    conn: &mut DbConnection,
    keyring: &Keyring,
    now: Timestamp,
    sender: UserId,
    room_id: RoomId,
    input: NewMessageInput,
) -> Result<Sent, MessagingError> {
    send_one(
        conn,
        keyring,
        &SendRequest {
            sender,
            room_id,
            now,
            input,
        },
    )
}

/// Sends the messages that arrived together (group commit): one transaction, and one
/// statement per step for all of them (lock the rooms, read their members, the policies
/// and keys involved, store the messages, versions, read markers and events), where
/// sending them one by one would take a transaction of about fifteen statements each.
/// Each request gets its own answer, in order: one refused (not a member, a policy
/// violation, a bad reply or attachment) is refused alone and takes no number. If the
/// batch's transaction fails as a whole (a retry racing its original on another
/// connection, a database error), nothing of it was stored and each request is sent on
/// its own, as [`send`] would.
pub fn send_many(
    conn: &mut DbConnection,
    keyring: &Keyring,
    requests: &[SendRequest],
) -> Vec<Result<Sent, MessagingError>> {
    if requests.len() > 1 {
        match send_together(conn, keyring, requests) {
            Ok(results) => return results,
            Err(err) => tracing::debug!(
                error = %err,
                sends = requests.len(),
                "a batch of sends failed as a whole; sending each on its own"
            ),
        }
    }
    requests
        .iter()
        .map(|request| send_one(conn, keyring, request))
        .collect()
}

/// One send in a transaction of its own; a retry racing this one (same key) returns the
/// message the other committed.
fn send_one(
    conn: &mut DbConnection,
    keyring: &Keyring,
    request: &SendRequest,
) -> Result<Sent, MessagingError> {
    let SendRequest {
        sender,
        room_id,
        now,
        ..
    } = *request;
    let key = request.input.idempotency_key.as_str();
    if let Some(existing) = message_store::find_by_idempotency_key(conn, room_id, sender, key)? {
        return retried(conn, keyring, now, sender, room_id, existing.id);
    }
    match write_transaction(conn, |conn| {
        let mut results = create(conn, keyring, &[request])?;
        results.pop().expect("one result for one request")
    }) {
        // The same key committed by a retry racing this one while it waited for the room
        // lock: the key's unique index refused the second insert and rolled it back.
        Err(MessagingError::Store(conclave_store::StoreError::Conflict(cause))) => {
            match message_store::find_by_idempotency_key(conn, room_id, sender, key)? {
                Some(existing) => retried(conn, keyring, now, sender, room_id, existing.id),
                None => Err(MessagingError::Store(conclave_store::StoreError::Conflict(
                    cause,
                ))),
            }
        }
        outcome => outcome,
    }
}

fn retried(
    conn: &mut DbConnection,
    keyring: &Keyring,
    now: Timestamp,
    sender: UserId,
    room_id: RoomId,
    message_id: MessageId,
) -> Result<Sent, MessagingError> {
    Ok(Sent {
        message: get(conn, keyring, now, sender, room_id, message_id)?,
        created: false,
        published: Vec::new(),
    })
}

/// The batch path of [`send_many`]: retries answered from one lookup, the new messages
/// created in one transaction, then any request that repeats an earlier one's key in the
/// same batch (a retry of it) answered as a retry. `Err`: the transaction failed and
/// nothing was stored.
fn send_together(
    conn: &mut DbConnection,
    keyring: &Keyring,
    requests: &[SendRequest],
) -> Result<Vec<Result<Sent, MessagingError>>, MessagingError> {
    let keys: Vec<(RoomId, UserId, &str)> = requests.iter().map(idempotency_key_of).collect();
    let existing: HashMap<(RoomId, UserId, String), MessageId> =
        message_store::find_by_idempotency_keys(conn, &keys)?
            .into_iter()
            .map(|(key, message)| ((message.room_id, message.sender_id, key), message.id))
            .collect();
    let mut results: Vec<Option<Result<Sent, MessagingError>>> =
        requests.iter().map(|_| None).collect();
    let mut fresh = Vec::new();
    let mut repeats = Vec::new();
    let mut seen = HashSet::new();
    for (index, request) in requests.iter().enumerate() {
        let (room_id, sender, key) = idempotency_key_of(request);
        if let Some(id) = existing.get(&(room_id, sender, key.to_owned())) {
            let answer = retried(conn, keyring, request.now, sender, room_id, *id);
            results[index] = Some(answer);
        } else if seen.insert((room_id, sender, key)) {
            fresh.push((index, request));
        } else {
            repeats.push(index);
        }
    }
    let batch: Vec<&SendRequest> = fresh.iter().map(|(_, request)| *request).collect();
    let created = write_transaction(conn, |conn| create(conn, keyring, &batch))?;
    for ((index, _), outcome) in fresh.into_iter().zip(created) {
        results[index] = Some(outcome);
    }
    for index in repeats {
        results[index] = Some(send_one(conn, keyring, &requests[index]));
    }
    Ok(results
        .into_iter()
        .map(|outcome| outcome.expect("every request answered"))
        .collect())
}

/// What makes a send a retry of an earlier one: the same key, sender and room.
fn idempotency_key_of(request: &SendRequest) -> (RoomId, UserId, &str) {
    (
        request.room_id,
        request.sender,
        request.input.idempotency_key.as_str(),
    )
}

/// A send that passed its checks, with what the checks decided.
struct Checked<'a> {
    request: &'a SendRequest,
    visible_until: Option<Timestamp>,
    burn_after_read_seconds: Option<i64>,
    retain_until: Option<Timestamp>,
    attachment: Option<AttachmentView>,
}

/// Creates the messages of a batch, in one transaction the caller holds. The rooms are
/// locked first; each request is then checked against what was read for all of them, and
/// numbers are taken only for those that pass, so a refused request leaves no gap in the
/// sequences. `Err` (a database failure, not a refusal) must roll the batch back.
fn create(
    conn: &mut DbConnection,
    keyring: &Keyring,
    requests: &[&SendRequest],
) -> Result<Vec<Result<Sent, MessagingError>>, MessagingError> {
    let room_ids: Vec<RoomId> = requests
        .iter()
        .map(|r| r.room_id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut seqs = room_store::lock_for_messages(conn, &room_ids)?;
    let members = room_store::members_of_rooms(conn, &room_ids)?;
    let everyone: Vec<UserId> = members
        .values()
        .flatten()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let policies = conclave_policy::SendPolicies::load(conn, &room_ids, &everyone)?;
    let mut retention = conclave_policy::retention::RetentionResolver::load(conn)?;
    let mut results: Vec<Option<Result<Sent, MessagingError>>> =
        requests.iter().map(|_| None).collect();
    let mut passed = Vec::with_capacity(requests.len());
    // An attachment goes with one message: `attachment_to_send` sees those stored before
    // this batch, this set the ones claimed earlier in it.
    let mut claimed_attachments = HashSet::new();
    for (index, request) in requests.iter().enumerate() {
        let no_members = Vec::new();
        let room_members = members.get(&request.room_id).unwrap_or(&no_members);
        let checked = if !seqs.contains_key(&request.room_id) {
            Err(MessagingError::NotFound)
        } else if let Some(attachment) = request.input.attachment_id
            && !claimed_attachments.insert(attachment)
        {
            Err(attachment_refused())
        } else {
            check(conn, &policies, &mut retention, room_members, request)
        };
        match checked {
            Ok(checked) => passed.push((index, checked)),
            Err(refused) if refused.is_a_refusal() => results[index] = Some(Err(refused)),
            Err(failed) => return Err(failed),
        }
    }
    let wanted_keys: BTreeSet<(RoomId, i64)> = passed
        .iter()
        .map(|(_, c)| (c.request.room_id, keys::epoch_of(c.request.now)))
        .collect();
    let now = passed.iter().map(|(_, c)| c.request.now).max();
    let data_keys = keys::data_keys_for_writing(conn, keyring, &wanted_keys, now)?;

    let mut new_messages = Vec::with_capacity(passed.len());
    let mut sealed = Vec::with_capacity(passed.len());
    let mut events = Vec::with_capacity(passed.len());
    let mut markers: BTreeMap<(RoomId, UserId), i64> = BTreeMap::new();
    let mut sent = Vec::with_capacity(passed.len());
    for (index, checked) in &passed {
        let request = checked.request;
        let (room_id, sender, now) = (request.room_id, request.sender, request.now);
        let room_seqs = seqs.get_mut(&room_id).expect("checked rooms are locked");
        room_seqs.message_seq += 1;
        room_seqs.event_seq += 1;
        let message_id = MessageId::new();
        let epoch = keys::epoch_of(now);
        let ciphertext = seal_with(
            &data_keys[&(room_id, epoch)],
            epoch,
            room_id,
            message_id,
            sender,
            1,
            &request.input.text,
        )?;
        let record = MessageRecord {
            id: message_id,
            room_id,
            seq: room_seqs.message_seq,
            sender_id: sender,
            reply_to_id: request.input.reply_to_id,
            attachment_id: request.input.attachment_id,
            current_version: 1,
            created_at: now,
            edited_at: None,
            deleted_at: None,
            visible_until: checked.visible_until,
            burn_after_read_seconds: checked.burn_after_read_seconds,
            retain_until: checked.retain_until,
            expiry_announced_at: None,
        };
        new_messages.push(NewMessage {
            id: message_id,
            room_id,
            seq: record.seq,
            sender_id: sender,
            reply_to_id: record.reply_to_id,
            attachment_id: record.attachment_id,
            idempotency_key: request.input.idempotency_key.as_str(),
            now,
            visible_until: record.visible_until,
            burn_after_read_seconds: record.burn_after_read_seconds,
            retain_until: record.retain_until,
        });
        sealed.push((epoch, ciphertext));
        let marker = markers.entry((room_id, sender)).or_default();
        *marker = (*marker).max(record.seq);
        let event = room_events::RoomEventRecord {
            room_id: room_id.to_string(),
            seq: room_seqs.event_seq,
            kind: "message.created".to_owned(),
            message_id: Some(message_id.to_string()),
            actor_id: Some(sender.to_string()),
            payload: json!({"seq": record.seq}).to_string(),
            created_at: now.as_micros(),
        };
        // What a member's read and what a live event show of the new message, as
        // `render_all` would render it: nothing read, nothing reacted yet.
        let text = request.input.text.as_str();
        let attachment = checked.attachment.clone();
        let message = fresh_view(
            &record,
            text,
            attachment.clone(),
            RenderMode::Reader(sender),
        );
        let shown = fresh_view(&record, text, attachment, RenderMode::Event(None));
        let delivery = crate::realtime::render::envelope(
            room_id,
            &event,
            crate::realtime::render::EventMessage::Visible(Box::new(shown)),
            None,
        );
        sent.push((
            *index,
            Sent {
                message,
                created: true,
                published: vec![Published {
                    room_id,
                    seq: event.seq,
                    recipients: members[&room_id].clone(),
                    rendered: Some(std::sync::Arc::new(delivery)),
                }],
            },
        ));
        events.push(event);
    }

    let taken: Vec<_> = seqs
        .into_iter()
        .filter(|(room_id, _)| passed.iter().any(|(_, c)| c.request.room_id == *room_id))
        .collect();
    if let Some(now) = now {
        room_store::store_message_seqs(conn, &taken, now)?;
    }
    message_store::insert_many(conn, &new_messages)?;
    let versions: Vec<NewVersion<'_>> = new_messages
        .iter()
        .zip(&sealed)
        .map(|(message, (epoch, ciphertext))| NewVersion {
            room_id: message.room_id,
            message_id: message.id,
            version: 1,
            epoch: *epoch,
            ciphertext,
            now: message.now,
        })
        .collect();
    message_store::insert_versions(conn, &versions)?;
    for message in new_messages
        .iter()
        .filter(|m| m.burn_after_read_seconds.is_some())
    {
        let recipients: Vec<UserId> = members[&message.room_id]
            .iter()
            .copied()
            .filter(|user| *user != message.sender_id)
            .collect();
        message_reads::insert_recipients(conn, message.id, &recipients)?;
    }
    let markers: Vec<(RoomId, UserId, i64)> = markers
        .into_iter()
        .map(|((room_id, user_id), seq)| (room_id, user_id, seq))
        .collect();
    room_store::raise_read_markers(conn, &markers)?;
    room_events::insert_many(conn, &events)?;
    for (index, sent) in sent {
        results[index] = Some(Ok(sent));
    }
    Ok(results
        .into_iter()
        .map(|outcome| outcome.expect("every request answered"))
        .collect())
}

/// Everything that may refuse one send of a batch, against what was read for all of
/// them: membership, the reply, the sender's policy and the room's barriers, the timers,
/// the attachment, and whether retention lets the message be seen at all.
fn check<'a>(
    conn: &mut DbConnection,
    policies: &conclave_policy::SendPolicies,
    retention: &mut conclave_policy::retention::RetentionResolver,
    members: &[UserId],
    request: &'a SendRequest,
) -> Result<Checked<'a>, MessagingError> {
    let SendRequest {
        sender,
        room_id,
        now,
        ref input,
    } = *request;
    if !members.contains(&sender) {
        return Err(MessagingError::NotFound);
    }
    if let Some(reply_to) = input.reply_to_id {
        // Only to what the sender can see: a message kept only for compliance (or by a
        // legal hold) must answer exactly like one that is gone.
        match live_message(conn, room_id, reply_to, sender, now) {
            Ok(_) => {}
            Err(err) if !err.is_a_refusal() => return Err(err),
            Err(_) => {
                return Err(MessagingError::invalid(
                    "reply_to_id",
                    "must be a message in this conversation",
                ));
            }
        }
    }
    let decided = policies.decide(sender, room_id, members)?;
    if let Some(reason) = decided.read_only_reason {
        return Err(MessagingError::PolicyViolation(format!(
            "this conversation is read-only: {reason}"
        )));
    }
    let policy = decided.policy;
    let expires_in = policy.expiration_for(input.expires_in)?;
    let burn_after_read = policy.burn_on_read_for(input.burn_after_read)?;
    let attachment = match input.attachment_id {
        Some(attachment_id) => Some(attachment_to_send(
            conn,
            &policy,
            room_id,
            sender,
            attachment_id,
        )?),
        None => None,
    };
    let visible_until = expires_in.map(|after| now.plus(after));
    let retain_until = retention.retain_until_at_send(conn, room_id, sender, now, visible_until)?;
    let visible = visible_until.is_none_or(|until| until > now)
        && retain_until.is_none_or(|until| until > now);
    if !visible {
        return Err(MessagingError::NotFound);
    }
    Ok(Checked {
        request,
        visible_until,
        burn_after_read_seconds: burn_after_read.map(|after| after.as_secs() as i64),
        retain_until,
        attachment,
    })
}

/// The attachment a send refers to, checked: uploaded by the sender to this room, allowed
/// by the sender's policy, and not already sent with another message.
fn attachment_to_send(
    conn: &mut DbConnection,
    policy: &conclave_core::policy::Policy,
    room_id: RoomId,
    sender: UserId,
    attachment_id: AttachmentId,
) -> Result<AttachmentView, MessagingError> {
    let attachment = attachments::find(conn, &attachment_id.to_string())?
        .filter(|a| a.room_id == room_id.to_string() && a.uploader_id == sender.to_string())
        .ok_or_else(attachment_refused)?;
    policy.check_file(
        &attachment.content_type,
        u64::try_from(attachment.size_bytes).unwrap_or(u64::MAX),
    )?;
    if message_store::referencing_attachment(conn, attachment_id)?.is_some() {
        // The same answer as for an upload that is gone (destroyed with its message), so
        // nobody learns that a hold keeps one.
        return Err(attachment_refused());
    }
    Ok(AttachmentView {
        id: attachment_id,
        name: attachment.name,
        content_type: attachment.content_type,
        size_bytes: attachment.size_bytes,
        sha256: attachment.sha256,
    })
}

/// Why a send may not carry the attachment it names: the same answer whether it is not
/// the sender's, not in this conversation, gone, or already sent with another message.
fn attachment_refused() -> MessagingError {
    MessagingError::invalid(
        "attachment_id",
        "must be an attachment you uploaded to this conversation",
    )
}

/// Whether users may see `message` at all at `now` (before any burn-on-read timer):
/// deleted, expired and past-retention messages are gone for them.
fn visible_at(message: &MessageRecord, now: Timestamp) -> bool {
    message.deleted_at.is_none()
        && message.visible_until.is_none_or(|until| until > now)
        && message.retain_until.is_none_or(|until| until > now)
}

/// A message just sent as `mode` shows it: the rules of [`render_all`] for a message
/// nobody has read or reacted to yet (so the sender's view lasts until it expires).
fn fresh_view(
    record: &MessageRecord,
    text: &str,
    attachment: Option<AttachmentView>,
    mode: RenderMode,
) -> MessageView {
    let withheld =
        !matches!(mode, RenderMode::Reader(_)) && record.burn_after_read_seconds.is_some();
    MessageView {
        id: record.id,
        room_id: record.room_id,
        seq: record.seq,
        sender_id: record.sender_id,
        text: (!withheld).then(|| text.to_owned()),
        reply_to_id: record.reply_to_id,
        attachment: attachment.filter(|_| !withheld),
        created_at: record.created_at,
        edited_at: record.edited_at,
        visible_until: record.visible_until,
        burn_after_read_seconds: record.burn_after_read_seconds,
        visible_to_me_until: record.visible_until,
        reactions: Vec::new(),
    }
}

/// A page of a room's messages, oldest first, as the viewer may see them now. Listing
/// counts as reading: it starts the viewer's burn-on-read timers.
pub fn list(
    conn: &mut DbConnection,
    keyring: &Keyring,
    now: Timestamp,
    viewer: UserId,
    room_id: RoomId,
    page: Page,
    limit: u32,
) -> Result<Vec<MessageView>, MessagingError> {
    let limit = limit.clamp(1, 200) as usize;
    write_transaction(conn, |conn| {
        membership(conn, room_id, viewer)?;
        // Messages burned for this viewer are dropped after the query, so keep fetching
        // until the page is full or the history ends: a short page always means the end.
        let mut views: Vec<MessageView> = Vec::with_capacity(limit);
        let mut cursor = page;
        loop {
            let records = message_store::list(conn, room_id, cursor, limit as i64, now)?;
            let exhausted = records.len() < limit;
            cursor = match (cursor, records.first(), records.last()) {
                (Page::Before(_), Some(oldest), _) => Page::Before(Some(oldest.seq)),
                (Page::After(_), _, Some(newest)) => Page::After(newest.seq),
                _ => cursor,
            };
            let mut rendered =
                render_all(conn, keyring, &records, RenderMode::Reader(viewer), now)?;
            let wanted = limit - views.len();
            match cursor {
                // Paging backwards: these are older than what we have; keep the newest.
                Page::Before(_) => {
                    let skip = rendered.len().saturating_sub(wanted);
                    rendered.drain(..skip);
                    rendered.extend(views);
                    views = rendered;
                }
                Page::After(_) => views.extend(rendered.into_iter().take(wanted)),
            }
            if views.len() >= limit || exhausted {
                return Ok(views);
            }
        }
    })
}

/// One message as the viewer may see it now (not found once past its deadline for them).
/// Fetching counts as reading: it starts the viewer's burn-on-read timer.
pub fn get(
    conn: &mut DbConnection,
    keyring: &Keyring,
    now: Timestamp,
    viewer: UserId,
    room_id: RoomId,
    message_id: MessageId,
) -> Result<MessageView, MessagingError> {
    write_transaction(conn, |conn| {
        membership(conn, room_id, viewer)?;
        let record = message_store::find(conn, message_id)?
            .filter(|m| m.room_id == room_id)
            .ok_or(MessagingError::NotFound)?;
        render_all(
            conn,
            keyring,
            std::slice::from_ref(&record),
            RenderMode::Reader(viewer),
            now,
        )?
        .pop()
        .ok_or(MessagingError::NotFound)
    })
}

/// Replaces the text (the sender only); earlier versions are kept for compliance.
pub fn edit(
    conn: &mut DbConnection,
    keyring: &Keyring,
    now: Timestamp,
    editor: UserId,
    room_id: RoomId,
    message_id: MessageId,
    text: MessageText,
) -> Result<(MessageView, Vec<Published>), MessagingError> {
    write_transaction(conn, |conn| {
        locked_membership(conn, room_id, editor)?;
        crate::rooms::require_writable(conn, room_id)?;
        let message = live_message(conn, room_id, message_id, editor, now)?;
        if message.sender_id != editor {
            return Err(MessagingError::Forbidden(
                "only the sender may edit a message".into(),
            ));
        }
        let version = message.current_version + 1;
        let (epoch, ciphertext) = seal_version(
            conn, keyring, now, room_id, message_id, editor, version, &text,
        )?;
        message_store::insert_version(conn, room_id, message_id, version, epoch, &ciphertext, now)?;
        message_store::set_current_version(conn, message_id, version, now)?;
        let published = publish(
            conn,
            room_id,
            "message.edited",
            Some(message_id),
            editor,
            json!({"seq": message.seq, "version": version}),
            now,
        )?;
        Ok::<_, MessagingError>((
            get(conn, keyring, now, editor, room_id, message_id)?,
            vec![published],
        ))
    })
}

/// Deletes a message for users (the sender, or a moderator or owner). The record stays
/// as long as the retention policies keep it (with none, the sweeper destroys it).
pub fn delete(
    conn: &mut DbConnection,
    now: Timestamp,
    actor: UserId,
    room_id: RoomId,
    message_id: MessageId,
) -> Result<Vec<Published>, MessagingError> {
    write_transaction(conn, |conn| {
        let member = locked_membership(conn, room_id, actor)?;
        let message = live_message(conn, room_id, message_id, actor, now)?;
        if message.sender_id != actor && !member.role.may_moderate() {
            return Err(MessagingError::Forbidden(
                "only the sender or a moderator may delete a message".into(),
            ));
        }
        message_store::mark_deleted(conn, message_id, actor, now)?;
        // Gone for users now; the compliance copy stays as long as retention says.
        conclave_policy::retention::refresh(conn, message_id)?;
        Ok(vec![publish(
            conn,
            room_id,
            "message.deleted",
            Some(message_id),
            actor,
            json!({"seq": message.seq}),
            now,
        )?])
    })
}

/// Adds or removes the caller's reaction.
pub fn react(
    conn: &mut DbConnection,
    now: Timestamp,
    actor: UserId,
    room_id: RoomId,
    message_id: MessageId,
    emoji: Emoji,
    present: bool,
) -> Result<Vec<Published>, MessagingError> {
    write_transaction(conn, |conn| {
        locked_membership(conn, room_id, actor)?;
        crate::rooms::require_writable(conn, room_id)?;
        let message = live_message(conn, room_id, message_id, actor, now)?;
        if !message_store::set_reaction(conn, message_id, actor, emoji.as_str(), present, now)? {
            return Ok(Vec::new());
        }
        Ok(vec![publish(
            conn,
            room_id,
            "reaction.updated",
            Some(message_id),
            actor,
            json!({"seq": message.seq, "user_id": actor, "emoji": emoji, "present": present}),
            now,
        )?])
    })
}

/// Moves the caller's read marker forward to `seq`.
pub fn mark_read(
    conn: &mut DbConnection,
    now: Timestamp,
    reader: UserId,
    room_id: RoomId,
    seq: i64,
) -> Result<(i64, Vec<Published>), MessagingError> {
    write_transaction(conn, |conn| {
        let member = locked_membership(conn, room_id, reader)?;
        let room = room_store::find(conn, room_id)?.ok_or(MessagingError::NotFound)?;
        if seq < 0 || seq > room.last_message_seq {
            return Err(MessagingError::invalid(
                "seq",
                format!("must be between 0 and {}", room.last_message_seq),
            ));
        }
        if seq <= member.last_read_seq {
            return Ok((member.last_read_seq, Vec::new()));
        }
        let stored = room_store::mark_read(conn, room_id, reader, seq)?;
        // A read receipt is a read: it starts the reader's burn-on-read timers up to it.
        for unread in message_reads::unstarted_for(conn, reader)? {
            if let Some(message) = message_store::find(conn, unread)?
                .filter(|m| m.room_id == room_id && m.seq <= stored)
            {
                visible_until_for(conn, &message, Some(reader), now, true)?;
            }
        }
        let published = publish(
            conn,
            room_id,
            "read.updated",
            None,
            reader,
            json!({"user_id": reader, "last_read_seq": stored}),
            now,
        )?;
        Ok((stored, vec![published]))
    })
}

/// Every stored version of a message, decrypted, oldest first (for compliance and tests;
/// users see only the current one).
pub fn history(
    conn: &mut DbConnection,
    keyring: &Keyring,
    message_id: MessageId,
) -> Result<Vec<String>, MessagingError> {
    let message = message_store::find(conn, message_id)?.ok_or(MessagingError::NotFound)?;
    let mut cache = KeyCache::default();
    message_store::versions(conn, message_id)?
        .iter()
        .map(|version| decrypt_version(conn, keyring, &mut cache, &message, version))
        .collect()
}

/// Seals one version of a message's text under the room's data key for the current
/// epoch, bound to the message, room, sender, epoch and version. Returns the epoch and
/// the ciphertext. Call with the room locked.
#[allow(clippy::too_many_arguments)] // each argument is one field the ciphertext is bound to
fn seal_version(
    conn: &mut DbConnection,
    keyring: &Keyring,
    now: Timestamp,
    room_id: RoomId,
    message_id: MessageId,
    sender: UserId,
    version: i64,
    text: &MessageText,
) -> Result<(i64, Vec<u8>), MessagingError> {
    let epoch = keys::epoch_of(now);
    let data_key = keys::data_key_for_writing(conn, keyring, room_id, epoch, now)?;
    let ciphertext = seal_with(&data_key, epoch, room_id, message_id, sender, version, text)?;
    Ok((epoch, ciphertext))
}

/// Seals one version of a message's body under its room's `epoch` data key, bound to
/// message, room, sender, epoch and version.
fn seal_with(
    data_key: &conclave_crypto::SecretKey,
    epoch: i64,
    room_id: RoomId,
    message_id: MessageId,
    sender: UserId,
    version: i64,
    text: &MessageText,
) -> Result<Vec<u8>, MessagingError> {
    let (message_text, room_text, sender_text) = (
        message_id.to_string(),
        room_id.to_string(),
        sender.to_string(),
    );
    let binding = BodyBinding {
        message_id: &message_text,
        room_id: &room_text,
        sender_id: &sender_text,
        epoch,
        version,
    };
    Ok(seal(data_key, &binding.aad(), text.as_str().as_bytes())?)
}

/// A message the actor may act on now: in the room, not deleted, and not past its
/// deadline for the actor.
fn live_message(
    conn: &mut DbConnection,
    room_id: RoomId,
    message_id: MessageId,
    actor: UserId,
    now: Timestamp,
) -> Result<MessageRecord, MessagingError> {
    let message = message_store::find(conn, message_id)?
        .filter(|m| m.room_id == room_id && m.deleted_at.is_none())
        .ok_or(MessagingError::NotFound)?;
    visible_until_for(conn, &message, Some(actor), now, false)?.ok_or(MessagingError::NotFound)?;
    Ok(message)
}

/// The text of one stored version for compliance (exports, which read a page's versions
/// at once): `None` when its epoch's data key is gone (destroyed by retention); other
/// failures are errors.
pub fn version_text(
    conn: &mut DbConnection,
    keyring: &Keyring,
    cache: &mut KeyCache,
    message: &MessageRecord,
    stored: &message_store::VersionRecord,
) -> Result<Option<String>, MessagingError> {
    if !cache.holds(message.room_id, stored.epoch)
        && conclave_store::room_keys::find(conn, message.room_id, stored.epoch)?.is_none()
    {
        return Ok(None);
    }
    decrypt_version(conn, keyring, cache, message, stored).map(Some)
}

fn decrypt_version(
    conn: &mut DbConnection,
    keyring: &Keyring,
    cache: &mut KeyCache,
    message: &MessageRecord,
    version: &message_store::VersionRecord,
) -> Result<String, MessagingError> {
    let key = cache.get(conn, keyring, message.room_id, version.epoch)?;
    let (message_text, room_text, sender_text) = (
        message.id.to_string(),
        message.room_id.to_string(),
        message.sender_id.to_string(),
    );
    let binding = BodyBinding {
        message_id: &message_text,
        room_id: &room_text,
        sender_id: &sender_text,
        epoch: version.epoch,
        version: version.version,
    };
    let plaintext = open(key, &binding.aad(), &version.ciphertext)?;
    String::from_utf8(plaintext).map_err(|_| {
        MessagingError::Decrypt(conclave_crypto::DecryptError("decrypted body is not UTF-8"))
    })
}

/// Renders stored messages for users: current text, attachment metadata and reactions
/// (messages the viewer may no longer see are left out).
pub fn render_all(
    conn: &mut DbConnection,
    keyring: &Keyring,
    records: &[MessageRecord],
    mode: RenderMode,
    now: Timestamp,
) -> Result<Vec<MessageView>, MessagingError> {
    let mut cache = KeyCache::default();
    let ids: Vec<MessageId> = records.iter().map(|m| m.id).collect();
    let mut reactions: BTreeMap<String, BTreeMap<String, Vec<UserId>>> = BTreeMap::new();
    for (message_id, user_id, emoji) in message_store::reactions_on(conn, &ids)? {
        if let Ok(user_id) = user_id.parse() {
            reactions
                .entry(message_id)
                .or_default()
                .entry(emoji)
                .or_default()
                .push(user_id);
        }
    }
    let mut views = Vec::with_capacity(records.len());
    for record in records {
        let reading = matches!(mode, RenderMode::Reader(_));
        let Some(visible_to_me_until) =
            visible_until_for(conn, record, mode.viewer(), now, reading)?
        else {
            continue;
        };
        let withheld = !reading && record.burn_after_read_seconds.is_some();
        let text = if withheld {
            None
        } else {
            let version = message_store::version(conn, record.id, record.current_version)?
                .ok_or_else(|| {
                    MessagingError::Decrypt(conclave_crypto::DecryptError(
                        "the current version is missing",
                    ))
                })?;
            Some(decrypt_version(
                conn, keyring, &mut cache, record, &version,
            )?)
        };
        // Burn-on-read attachments are withheld from events like the text: only a read
        // (which starts the timer) shows them.
        let attachment = match (record.attachment_id, withheld) {
            (Some(id), false) => {
                attachments::find(conn, &id.to_string())?.map(|a| AttachmentView {
                    id,
                    name: a.name,
                    content_type: a.content_type,
                    size_bytes: a.size_bytes,
                    sha256: a.sha256,
                })
            }
            _ => None,
        };
        let reactions = reactions
            .remove(&record.id.to_string())
            .unwrap_or_default()
            .into_iter()
            .map(|(emoji, user_ids)| ReactionView { emoji, user_ids })
            .collect();
        views.push(MessageView {
            id: record.id,
            room_id: record.room_id,
            seq: record.seq,
            sender_id: record.sender_id,
            text,
            reply_to_id: record.reply_to_id,
            attachment,
            created_at: record.created_at,
            edited_at: record.edited_at,
            visible_until: record.visible_until,
            burn_after_read_seconds: record.burn_after_read_seconds,
            visible_to_me_until,
            reactions,
        });
    }
    Ok(views)
}
