//! Security groups and their members.

use crate::DbConnection;
use crate::error::StoreError;
use crate::schema::{security_group_members, security_group_membership_periods, security_groups};
use conclave_core::{Timestamp, UserId};
use diesel::prelude::*;

/// The default group's fixed id (created by the migration).
pub const DEFAULT_GROUP_ID: &str = "00000000-0000-7000-8000-000000000000";

#[derive(Clone, Debug, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = security_groups)]
pub struct GroupRecord {
    pub id: String,
    pub name: String,
    pub precedence: i64,
    pub is_default: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

pub fn insert(
    conn: &mut DbConnection,
    id: &str,
    name: &str,
    precedence: i64,
    now: Timestamp,
) -> Result<(), StoreError> {
    diesel::insert_into(security_groups::table)
        .values((
            security_groups::id.eq(id),
            security_groups::name.eq(name),
            security_groups::precedence.eq(precedence),
            security_groups::is_default.eq(false),
            security_groups::created_at.eq(now.as_micros()),
            security_groups::updated_at.eq(now.as_micros()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn find(conn: &mut DbConnection, id: &str) -> Result<Option<GroupRecord>, StoreError> {
    Ok(security_groups::table
        .find(id)
        .select(GroupRecord::as_select())
        .get_result(conn)
        .optional()?)
}

pub fn list(conn: &mut DbConnection) -> Result<Vec<GroupRecord>, StoreError> {
    Ok(security_groups::table
        .order((
            security_groups::precedence.asc(),
            security_groups::created_at.asc(),
        ))
        .select(GroupRecord::as_select())
        .load(conn)?)
}

pub fn update(
    conn: &mut DbConnection,
    id: &str,
    name: Option<&str>,
    precedence: Option<i64>,
    now: Timestamp,
) -> Result<(), StoreError> {
    if let Some(name) = name {
        diesel::update(security_groups::table.find(id))
            .set(security_groups::name.eq(name))
            .execute(conn)?;
    }
    if let Some(precedence) = precedence {
        diesel::update(security_groups::table.find(id))
            .set(security_groups::precedence.eq(precedence))
            .execute(conn)?;
    }
    diesel::update(security_groups::table.find(id))
        .set(security_groups::updated_at.eq(now.as_micros()))
        .execute(conn)?;
    Ok(())
}

pub fn delete(conn: &mut DbConnection, id: &str) -> Result<(), StoreError> {
    diesel::delete(security_groups::table.find(id)).execute(conn)?;
    Ok(())
}

pub fn member_count(conn: &mut DbConnection, id: &str) -> Result<i64, StoreError> {
    Ok(security_group_members::table
        .filter(security_group_members::group_id.eq(id))
        .count()
        .get_result(conn)?)
}

pub fn members(conn: &mut DbConnection, id: &str) -> Result<Vec<String>, StoreError> {
    Ok(security_group_members::table
        .filter(security_group_members::group_id.eq(id))
        .order(security_group_members::added_at.asc())
        .select(security_group_members::user_id)
        .load(conn)?)
}

/// Adds a member; returns whether they were not one already.
pub fn add_member(
    conn: &mut DbConnection,
    id: &str,
    user: UserId,
    source: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let present = security_group_members::table
        .find((id.to_owned(), user.to_string()))
        .count()
        .get_result::<i64>(conn)?
        > 0;
    if present {
        return Ok(false);
    }
    diesel::insert_into(security_group_members::table)
        .values((
            security_group_members::group_id.eq(id),
            security_group_members::user_id.eq(user.to_string()),
            security_group_members::source.eq(source),
            security_group_members::added_at.eq(now.as_micros()),
        ))
        .execute(conn)?;
    diesel::insert_into(security_group_membership_periods::table)
        .values((
            security_group_membership_periods::group_id.eq(id),
            security_group_membership_periods::user_id.eq(user.to_string()),
            security_group_membership_periods::joined_at.eq(now.as_micros()),
        ))
        .execute(conn)?;
    Ok(true)
}

/// Removes a member and closes their membership period (kept: retention by group covers
/// what members sent while they were members).
pub fn remove_member(
    conn: &mut DbConnection,
    id: &str,
    user: UserId,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let removed =
        diesel::delete(security_group_members::table.find((id.to_owned(), user.to_string())))
            .execute(conn)?;
    diesel::update(
        security_group_membership_periods::table
            .filter(security_group_membership_periods::group_id.eq(id))
            .filter(security_group_membership_periods::user_id.eq(user.to_string()))
            .filter(security_group_membership_periods::left_at.is_null()),
    )
    .set(security_group_membership_periods::left_at.eq(now.as_micros()))
    .execute(conn)?;
    Ok(removed == 1)
}

/// A user's group membership periods: `(group id, joined_at, left_at)`.
pub fn membership_periods_of(
    conn: &mut DbConnection,
    user: UserId,
) -> Result<Vec<(String, Timestamp, Option<Timestamp>)>, StoreError> {
    let rows: Vec<(String, i64, Option<i64>)> = security_group_membership_periods::table
        .filter(security_group_membership_periods::user_id.eq(user.to_string()))
        .select((
            security_group_membership_periods::group_id,
            security_group_membership_periods::joined_at,
            security_group_membership_periods::left_at,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(group, joined, left)| {
            (
                group,
                Timestamp::from_micros(joined),
                left.map(Timestamp::from_micros),
            )
        })
        .collect())
}

/// The group governing `user`: of the groups they are in, the lowest precedence (then the
/// earliest created); the default group when they are in none.
pub fn governing(conn: &mut DbConnection, user: UserId) -> Result<GroupRecord, StoreError> {
    let mine: Option<GroupRecord> = security_groups::table
        .inner_join(security_group_members::table)
        .filter(security_group_members::user_id.eq(user.to_string()))
        .order((
            security_groups::precedence.asc(),
            security_groups::created_at.asc(),
        ))
        .select(GroupRecord::as_select())
        .first(conn)
        .optional()?;
    match mine {
        Some(group) => Ok(group),
        None => find(conn, DEFAULT_GROUP_ID)?
            .ok_or_else(|| StoreError::Corrupt("the default security group is missing".into())),
    }
}

/// Every group each of `users` belongs to (users in none are absent from the map).
pub fn memberships_of(
    conn: &mut DbConnection,
    users: &[UserId],
) -> Result<std::collections::HashMap<UserId, Vec<GroupRecord>>, StoreError> {
    let ids: Vec<String> = users.iter().map(ToString::to_string).collect();
    let rows: Vec<(String, GroupRecord)> = security_groups::table
        .inner_join(security_group_members::table)
        .filter(security_group_members::user_id.eq_any(&ids))
        .select((security_group_members::user_id, GroupRecord::as_select()))
        .load(conn)?;
    let mut memberships: std::collections::HashMap<UserId, Vec<GroupRecord>> =
        std::collections::HashMap::new();
    for (user, group) in rows {
        if let Ok(user) = user.parse::<UserId>() {
            memberships.entry(user).or_default().push(group);
        }
    }
    Ok(memberships)
}

pub fn find_by_name(
    conn: &mut DbConnection,
    name: &str,
) -> Result<Option<GroupRecord>, StoreError> {
    Ok(security_groups::table
        .filter(security_groups::name.eq(name))
        .select(GroupRecord::as_select())
        .first(conn)
        .optional()?)
}

/// The groups `user` is in through the directory's group mapping (source 'directory').
pub fn directory_groups_of(
    conn: &mut DbConnection,
    user: UserId,
) -> Result<Vec<String>, StoreError> {
    Ok(security_group_members::table
        .filter(security_group_members::user_id.eq(user.to_string()))
        .filter(security_group_members::source.eq("directory"))
        .select(security_group_members::group_id)
        .load(conn)?)
}

/// Removes a membership only if the directory made it; an admin's ('manual') stays.
pub fn remove_directory_member(
    conn: &mut DbConnection,
    id: &str,
    user: UserId,
) -> Result<bool, StoreError> {
    Ok(diesel::delete(
        security_group_members::table
            .filter(security_group_members::group_id.eq(id))
            .filter(security_group_members::user_id.eq(user.to_string()))
            .filter(security_group_members::source.eq("directory")),
    )
    .execute(conn)?
        == 1)
}
