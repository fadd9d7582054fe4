//! Rooms and direct conversations: creating them, membership and member roles, renaming,
//! and listing the caller's conversations with unread counts.

use crate::error::MessagingError;
use crate::realtime::Published;
use crate::wire::{MemberView, RoomDetail, RoomView};
use conclave_core::{MemberRole, RoomId, RoomKind, RoomName, Timestamp, Topic, UserId, UserStatus};
use conclave_store::rooms::{self as room_store, MemberRecord, NewRoom, RoomRecord};
use conclave_store::users as user_store;
use conclave_store::{DbConnection, StoreError, room_events, write_transaction};
use serde_json::json;

/// For a write: locks the room row first (so every check below sees the room as it will
/// be at commit, and concurrent writers to one room take turns), then the caller's
/// membership. A room that does not exist locks nothing and is "not found" all the same.
pub fn locked_membership(
    conn: &mut DbConnection,
    room_id: RoomId,
    user_id: UserId,
) -> Result<MemberRecord, MessagingError> {
    room_store::lock(conn, room_id)?;
    membership(conn, room_id, user_id)
}

/// The caller's membership, or "not found" so that a room's existence does not leak.
pub fn membership(
    conn: &mut DbConnection,
    room_id: RoomId,
    user_id: UserId,
) -> Result<MemberRecord, MessagingError> {
    room_store::member(conn, room_id, user_id)?.ok_or(MessagingError::NotFound)
}

/// Why these users may not talk, if an information barrier separates any two of them.
pub fn barrier(
    conn: &mut DbConnection,
    users: &[UserId],
) -> Result<Option<String>, MessagingError> {
    let org = conclave_policy::org_policy(conn)?;
    Ok(conclave_policy::groups::barrier_among(conn, &org, users)?)
}

/// Why a conversation is read-only, if a barrier now separates its members (as Slack and
/// Teams do when a new barrier splits an existing conversation).
pub fn read_only_reason(
    conn: &mut DbConnection,
    room_id: RoomId,
) -> Result<Option<String>, MessagingError> {
    let members: Vec<UserId> = room_store::members(conn, room_id)?
        .into_iter()
        .map(|m| m.user_id)
        .collect();
    barrier(conn, &members)
}

/// Refuses a write to a conversation that a barrier has made read-only.
pub fn require_writable(conn: &mut DbConnection, room_id: RoomId) -> Result<(), MessagingError> {
    match read_only_reason(conn, room_id)? {
        Some(reason) => Err(MessagingError::PolicyViolation(format!(
            "this conversation is read-only: {reason}"
        ))),
        None => Ok(()),
    }
}

fn require_active_user(
    conn: &mut DbConnection,
    user_id: UserId,
    field: &'static str,
) -> Result<(), MessagingError> {
    match user_store::find_by_id(conn, user_id)? {
        Some(user) if user.status == UserStatus::Active => Ok(()),
        _ => Err(MessagingError::invalid(
            field,
            format!("no active user {user_id}"),
        )),
    }
}

/// For a change to a room's settings or membership: the room locked, the caller's
/// membership, and the room, which must be a room (a direct conversation has neither
/// name nor changing members).
fn managed_room(
    conn: &mut DbConnection,
    room_id: RoomId,
    actor: UserId,
) -> Result<(MemberRecord, RoomRecord), MessagingError> {
    let member = locked_membership(conn, room_id, actor)?;
    let room = room_store::find(conn, room_id)?.ok_or(MessagingError::NotFound)?;
    require_room_kind(&room)?;
    Ok((member, room))
}

fn require_room_kind(room: &RoomRecord) -> Result<(), MessagingError> {
    if room.kind == RoomKind::Direct {
        return Err(MessagingError::Conflict(
            "a direct conversation has exactly its two people and no name".into(),
        ));
    }
    Ok(())
}

fn event(
    conn: &mut DbConnection,
    room_id: RoomId,
    kind: &str,
    actor: UserId,
    payload: serde_json::Value,
    now: Timestamp,
    extra_recipients: &[UserId],
) -> Result<Published, MessagingError> {
    let record = room_events::append(
        conn,
        room_id,
        kind,
        None,
        Some(actor),
        &payload.to_string(),
        now,
    )?;
    let mut recipients: Vec<UserId> = room_store::members(conn, room_id)?
        .into_iter()
        .map(|m| m.user_id)
        .collect();
    recipients.extend_from_slice(extra_recipients);
    Ok(Published {
        room_id,
        seq: record.seq,
        recipients,
        rendered: None,
    })
}

/// Adds a member and appends their `member.joined` event, recording the event position
/// just before it so a realtime connection can replay the room from the join on.
/// Size limits of rooms and memberships (`[messaging]` in the configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoomLimits {
    /// Most members one room may hold.
    pub max_members: u32,
    /// Most rooms and direct conversations one user may be a member of.
    pub max_rooms_per_user: u32,
}

impl RoomLimits {
    /// Refuses a join that would take `user_id` past the rooms a user may be in.
    fn check_rooms_of(
        self,
        conn: &mut DbConnection,
        user_id: UserId,
    ) -> Result<(), MessagingError> {
        if room_store::membership_count(conn, user_id)? >= i64::from(self.max_rooms_per_user) {
            return Err(MessagingError::PolicyViolation(format!(
                "user {user_id} is already in the most rooms a user may be in ({}): \
                 leave one first",
                self.max_rooms_per_user
            )));
        }
        Ok(())
    }
}

/// A member limit alone, with no limit on the rooms per user.
impl From<u32> for RoomLimits {
    fn from(max_members: u32) -> Self {
        Self {
            max_members,
            max_rooms_per_user: u32::MAX,
        }
    }
}

fn join(
    conn: &mut DbConnection,
    room_id: RoomId,
    user_id: UserId,
    role: MemberRole,
    actor: UserId,
    now: Timestamp,
) -> Result<Published, MessagingError> {
    let joined_after = room_store::find(conn, room_id)?.map_or(0, |room| room.last_event_seq);
    room_store::add_member(conn, room_id, user_id, role, now, joined_after)?;
    event(
        conn,
        room_id,
        "member.joined",
        actor,
        json!({"user_id": user_id, "role": role}),
        now,
        &[],
    )
}

pub fn create_room(
    conn: &mut DbConnection,
    now: Timestamp,
    creator: UserId,
    name: RoomName,
    topic: Topic,
    member_ids: Vec<UserId>,
    limits: impl Into<RoomLimits>,
) -> Result<(RoomDetail, Vec<Published>), MessagingError> {
    let limits = limits.into();
    let max_members = limits.max_members;
    let mut members: Vec<UserId> = member_ids.into_iter().filter(|id| *id != creator).collect();
    members.sort();
    members.dedup();
    if members.len() + 1 > max_members as usize {
        return Err(MessagingError::PolicyViolation(format!(
            "a room holds at most {max_members} members"
        )));
    }
    let room_id = RoomId::new();
    write_transaction(conn, |conn| {
        let policy = conclave_policy::effective(conn, creator, None)?;
        if !policy.may_create_rooms {
            return Err(MessagingError::PolicyViolation(
                "you may not create rooms (the policy's may_create_rooms)".into(),
            ));
        }
        if members.len() + 1 > policy.max_room_size as usize {
            return Err(MessagingError::PolicyViolation(format!(
                "a room may hold at most {} members (the policy's max_room_size)",
                policy.max_room_size
            )));
        }
        for member in &members {
            require_active_user(conn, *member, "member_ids")?;
        }
        for user in members.iter().copied().chain([creator]) {
            limits.check_rooms_of(conn, user)?;
        }
        let everyone: Vec<UserId> = members.iter().copied().chain([creator]).collect();
        if let Some(reason) = barrier(conn, &everyone)? {
            return Err(MessagingError::PolicyViolation(reason));
        }
        room_store::insert(
            conn,
            &NewRoom {
                id: room_id,
                kind: RoomKind::Room,
                name: Some(name.as_str()),
                topic: topic.as_deref(),
                direct_key: None,
                created_by: creator,
                now,
            },
        )?;
        let mut published = vec![join(
            conn,
            room_id,
            creator,
            MemberRole::Owner,
            creator,
            now,
        )?];
        for member in &members {
            published.push(join(
                conn,
                room_id,
                *member,
                MemberRole::Member,
                creator,
                now,
            )?);
        }
        // Rendered inside the transaction: what commits is also what gets published.
        Ok::<_, MessagingError>((room_detail(conn, room_id, creator)?, published))
    })
}

/// The one direct conversation between the caller and `other`, created on first use.
pub fn open_direct(
    conn: &mut DbConnection,
    now: Timestamp,
    me: UserId,
    other: UserId,
    max_rooms_per_user: u32,
) -> Result<(RoomDetail, Vec<Published>), MessagingError> {
    let limits = RoomLimits {
        max_members: 2,
        max_rooms_per_user,
    };
    if me == other {
        return Err(MessagingError::invalid(
            "user_id",
            "a direct conversation needs someone else",
        ));
    }
    let mut pair = [me.to_string(), other.to_string()];
    pair.sort();
    let direct_key = pair.join(":");
    if let Some(room) = room_store::find_direct(conn, &direct_key)? {
        return Ok((room_detail(conn, room.id, me)?, Vec::new()));
    }
    let room_id = RoomId::new();
    let created = write_transaction(conn, |conn| {
        require_active_user(conn, other, "user_id")?;
        for user in [me, other] {
            limits.check_rooms_of(conn, user)?;
        }
        if let Some(reason) = barrier(conn, &[me, other])? {
            return Err(MessagingError::PolicyViolation(reason));
        }
        room_store::insert(
            conn,
            &NewRoom {
                id: room_id,
                kind: RoomKind::Direct,
                name: None,
                topic: None,
                direct_key: Some(&direct_key),
                created_by: me,
                now,
            },
        )?;
        let mut published = Vec::new();
        for user in [me, other] {
            published.push(join(conn, room_id, user, MemberRole::Member, me, now)?);
        }
        Ok::<_, MessagingError>((room_detail(conn, room_id, me)?, published))
    });
    match created {
        Ok(created) => Ok(created),
        // The other person opened it at the same moment: theirs is the one.
        Err(MessagingError::Store(StoreError::Conflict(_))) => {
            let room =
                room_store::find_direct(conn, &direct_key)?.ok_or(MessagingError::NotFound)?;
            Ok((room_detail(conn, room.id, me)?, Vec::new()))
        }
        Err(other) => Err(other),
    }
}

/// Renames a room or sets its topic (moderators and owners).
pub fn update_room(
    conn: &mut DbConnection,
    now: Timestamp,
    actor: UserId,
    room_id: RoomId,
    name: Option<RoomName>,
    topic: Option<Topic>,
) -> Result<(RoomDetail, Vec<Published>), MessagingError> {
    write_transaction(conn, |conn| {
        let (member, room) = managed_room(conn, room_id, actor)?;
        if !member.role.may_moderate() {
            return Err(MessagingError::Forbidden(
                "only moderators and owners may rename a room or set its topic".into(),
            ));
        }
        room_store::set_name_and_topic(
            conn,
            room_id,
            name.as_ref().map(RoomName::as_str),
            topic.as_ref().map(Topic::as_deref),
            now,
        )?;
        let payload = json!({"name": name.as_ref().map(RoomName::as_str).or(room.name.as_deref()), "topic": topic.as_ref().map_or(room.topic.as_deref(), Topic::as_deref)});
        let published = vec![event(
            conn,
            room_id,
            "room.updated",
            actor,
            payload,
            now,
            &[],
        )?];
        Ok::<_, MessagingError>((room_detail(conn, room_id, actor)?, published))
    })
}

pub fn add_member(
    conn: &mut DbConnection,
    now: Timestamp,
    actor: UserId,
    room_id: RoomId,
    user_id: UserId,
    role: MemberRole,
    limits: impl Into<RoomLimits>,
) -> Result<Vec<Published>, MessagingError> {
    let limits = limits.into();
    let max_members = limits.max_members;
    write_transaction(conn, |conn| {
        let (member, _) = managed_room(conn, room_id, actor)?;
        if !member.role.may_moderate() || !member.role.may_assign(role) {
            return Err(MessagingError::Forbidden(format!(
                "your role may not add a {}",
                role.as_str()
            )));
        }
        require_active_user(conn, user_id, "user_id")?;
        if room_store::member(conn, room_id, user_id)?.is_some() {
            return Err(MessagingError::Conflict("already a member".into()));
        }
        let max_members =
            max_members.min(conclave_policy::effective(conn, actor, Some(room_id))?.max_room_size);
        if room_store::member_count(conn, room_id)? >= i64::from(max_members) {
            return Err(MessagingError::PolicyViolation(format!(
                "the room is full: a room holds at most {max_members} members"
            )));
        }
        let mut everyone: Vec<UserId> = room_store::members(conn, room_id)?
            .into_iter()
            .map(|m| m.user_id)
            .collect();
        everyone.push(user_id);
        limits.check_rooms_of(conn, user_id)?;
        if let Some(reason) = barrier(conn, &everyone)? {
            return Err(MessagingError::PolicyViolation(reason));
        }
        room_store::touch(conn, room_id, now)?;
        Ok(vec![join(conn, room_id, user_id, role, actor, now)?])
    })
}

/// Removes another member (moderators may remove members; owners anyone).
pub fn remove_member(
    conn: &mut DbConnection,
    now: Timestamp,
    actor: UserId,
    room_id: RoomId,
    user_id: UserId,
) -> Result<Vec<Published>, MessagingError> {
    if actor == user_id {
        return leave(conn, now, actor, room_id);
    }
    write_transaction(conn, |conn| {
        let (member, _) = managed_room(conn, room_id, actor)?;
        let target = room_store::member(conn, room_id, user_id)?.ok_or(MessagingError::NotFound)?;
        if !member.role.may_moderate() || !member.role.may_assign(target.role) {
            return Err(MessagingError::Forbidden(format!(
                "your role may not remove a {}",
                target.role.as_str()
            )));
        }
        room_store::remove_member(conn, room_id, user_id, now)?;
        for burned in
            conclave_store::message_reads::burn_unread_on_leaving(conn, room_id, user_id, now)?
        {
            conclave_policy::retention::refresh(conn, burned)?;
        }
        Ok(vec![event(
            conn,
            room_id,
            "member.left",
            actor,
            json!({"user_id": user_id, "removed_by": actor}),
            now,
            &[user_id],
        )?])
    })
}

/// Changes a member's role (owners only); the last owner cannot step down.
pub fn set_member_role(
    conn: &mut DbConnection,
    now: Timestamp,
    actor: UserId,
    room_id: RoomId,
    user_id: UserId,
    role: MemberRole,
) -> Result<Vec<Published>, MessagingError> {
    write_transaction(conn, |conn| {
        let (member, _) = managed_room(conn, room_id, actor)?;
        if member.role != MemberRole::Owner {
            return Err(MessagingError::Forbidden(
                "only owners change member roles".into(),
            ));
        }
        let target = room_store::member(conn, room_id, user_id)?.ok_or(MessagingError::NotFound)?;
        if target.role == MemberRole::Owner
            && role != MemberRole::Owner
            && room_store::count_with_role(conn, room_id, MemberRole::Owner)? <= 1
        {
            return Err(MessagingError::Conflict(
                "the last owner cannot step down; make someone else owner first".into(),
            ));
        }
        room_store::set_member_role(conn, room_id, user_id, role)?;
        Ok(vec![event(
            conn,
            room_id,
            "member.role_changed",
            actor,
            json!({"user_id": user_id, "role": role}),
            now,
            &[],
        )?])
    })
}

/// Leaves a room. The last owner must hand over ownership first while others remain.
pub fn leave(
    conn: &mut DbConnection,
    now: Timestamp,
    actor: UserId,
    room_id: RoomId,
) -> Result<Vec<Published>, MessagingError> {
    write_transaction(conn, |conn| {
        let member = locked_membership(conn, room_id, actor)?;
        let room = room_store::find(conn, room_id)?.ok_or(MessagingError::NotFound)?;
        if room.kind == RoomKind::Direct {
            return Err(MessagingError::Conflict(
                "a direct conversation cannot be left".into(),
            ));
        }
        if member.role == MemberRole::Owner
            && room_store::count_with_role(conn, room_id, MemberRole::Owner)? <= 1
            && room_store::member_count(conn, room_id)? > 1
        {
            return Err(MessagingError::Conflict(
                "you are the last owner: make someone else owner before leaving".into(),
            ));
        }
        room_store::remove_member(conn, room_id, actor, now)?;
        for burned in
            conclave_store::message_reads::burn_unread_on_leaving(conn, room_id, actor, now)?
        {
            conclave_policy::retention::refresh(conn, burned)?;
        }
        Ok(vec![event(
            conn,
            room_id,
            "member.left",
            actor,
            json!({"user_id": actor}),
            now,
            &[actor],
        )?])
    })
}

/// The caller's conversations, most recently active first.
pub fn list_mine(conn: &mut DbConnection, me: UserId) -> Result<Vec<RoomView>, MessagingError> {
    room_store::rooms_of(conn, me)?
        .into_iter()
        .map(|(room, member)| room_view(conn, &room, &member))
        .collect()
}

pub fn room_detail(
    conn: &mut DbConnection,
    room_id: RoomId,
    me: UserId,
) -> Result<RoomDetail, MessagingError> {
    let member = membership(conn, room_id, me)?;
    let room = room_store::find(conn, room_id)?.ok_or(MessagingError::NotFound)?;
    let mut members = Vec::new();
    for record in room_store::members(conn, room_id)? {
        let user = user_store::find_by_id(conn, record.user_id)?.ok_or(MessagingError::NotFound)?;
        members.push(MemberView {
            user_id: record.user_id,
            username: user.username.to_string(),
            display_name: user.display_name,
            role: record.role,
            last_read_seq: record.last_read_seq,
            joined_at: record.joined_at,
        });
    }
    Ok(RoomDetail {
        room: room_view(conn, &room, &member)?,
        members,
    })
}

fn room_view(
    conn: &mut DbConnection,
    room: &RoomRecord,
    member: &MemberRecord,
) -> Result<RoomView, MessagingError> {
    let member_count = room_store::member_count(conn, room.id)?;
    let name = match room.kind {
        RoomKind::Room => room.name.clone(),
        RoomKind::Direct => {
            let other = room_store::members(conn, room.id)?
                .into_iter()
                .find(|m| m.user_id != member.user_id);
            match other {
                Some(other) => user_store::find_by_id(conn, other.user_id)?.map(|u| u.display_name),
                None => None,
            }
        }
    };
    Ok(RoomView {
        id: room.id,
        kind: room.kind,
        name,
        topic: room.topic.clone(),
        created_at: room.created_at,
        my_role: member.role,
        last_message_seq: room.last_message_seq,
        last_event_seq: room.last_event_seq,
        last_read_seq: member.last_read_seq,
        unread_count: (room.last_message_seq - member.last_read_seq).max(0),
        member_count,
        read_only_reason: read_only_reason(conn, room.id)?,
    })
}

/// The room's overrides and the caller's effective policy in it (members).
pub fn policy(
    conn: &mut DbConnection,
    me: UserId,
    room_id: RoomId,
) -> Result<crate::wire::RoomPolicy, MessagingError> {
    membership(conn, room_id, me)?;
    Ok(crate::wire::RoomPolicy {
        overrides: conclave_policy::room_overrides(conn, room_id)?,
        effective: conclave_policy::effective(conn, me, Some(room_id))?,
    })
}

/// Sets the room's overrides (owners); they can only tighten what applies above.
pub fn set_policy(
    conn: &mut DbConnection,
    context: &conclave_core::AuditContext,
    now: Timestamp,
    me: UserId,
    room_id: RoomId,
    overrides: conclave_core::PolicyOverrides,
) -> Result<crate::wire::RoomPolicy, MessagingError> {
    write_transaction(conn, |conn| {
        let member = locked_membership(conn, room_id, me)?;
        if member.role != MemberRole::Owner {
            return Err(MessagingError::Forbidden(
                "only owners set a room's policy".into(),
            ));
        }
        conclave_policy::set_room_overrides(conn, context, now, room_id, overrides)?;
        policy(conn, me, room_id)
    })
}
