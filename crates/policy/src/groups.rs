//! Security groups: creating, renaming, reordering and deleting them (only when empty),
//! their members, and their policy overrides; and information barriers between them.
//! Every change is audited with its before and after values.
//!
//! Precedence rule: a user in several groups is governed by the one with the lowest
//! `precedence` number (ties: the earliest created); a user in none is governed by the
//! default group.

use crate::{PolicyServiceError, audit_change, load};
use conclave_core::policy::{Policy, PolicyError, PolicyOverrides, resolve};
use conclave_core::{AuditContext, Timestamp, UserId};
use conclave_store::security_groups::{self as group_store, DEFAULT_GROUP_ID, GroupRecord};
use conclave_store::{DbConnection, StoreError, policies, users, write_transaction};
use serde::Serialize;
use std::collections::BTreeSet;

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct GroupView {
    pub id: String,
    pub name: String,
    /// Lower wins when a user is in several groups.
    pub precedence: i64,
    /// Catches everyone in no other group; cannot be deleted.
    pub is_default: bool,
    pub member_count: i64,
    pub overrides: PolicyOverrides,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct GroupDetail {
    pub group: GroupView,
    pub member_ids: Vec<String>,
}

pub(crate) fn scope(group_id: &str) -> String {
    format!("group:{group_id}")
}

fn invalid(message: impl Into<String>) -> PolicyServiceError {
    PolicyServiceError::Policy(PolicyError::Invalid(message.into()))
}

fn group(conn: &mut DbConnection, id: &str) -> Result<GroupRecord, PolicyServiceError> {
    group_store::find(conn, id)?.ok_or(PolicyServiceError::NotFound)
}

fn view(conn: &mut DbConnection, record: GroupRecord) -> Result<GroupView, PolicyServiceError> {
    Ok(GroupView {
        member_count: group_store::member_count(conn, &record.id)?,
        overrides: load(conn, &scope(&record.id))?,
        id: record.id,
        name: record.name,
        precedence: record.precedence,
        is_default: record.is_default,
    })
}

fn group_view(conn: &mut DbConnection, id: &str) -> Result<GroupView, PolicyServiceError> {
    let record = group(conn, id)?;
    view(conn, record)
}

fn parse_name(raw: &str) -> Result<String, PolicyServiceError> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(invalid(
            "name: must be 1 to 100 characters without control characters",
        ));
    }
    Ok(name.to_owned())
}

fn check_precedence(precedence: i64) -> Result<i64, PolicyServiceError> {
    if !(0..=1_000_000).contains(&precedence) {
        return Err(invalid("precedence: must be between 0 and 1000000"));
    }
    Ok(precedence)
}

pub fn list(conn: &mut DbConnection) -> Result<Vec<GroupView>, PolicyServiceError> {
    group_store::list(conn)?
        .into_iter()
        .map(|record| view(conn, record))
        .collect()
}

pub fn detail(conn: &mut DbConnection, id: &str) -> Result<GroupDetail, PolicyServiceError> {
    let record = group(conn, id)?;
    Ok(GroupDetail {
        member_ids: group_store::members(conn, id)?,
        group: view(conn, record)?,
    })
}

pub fn create(
    conn: &mut DbConnection,
    context: &AuditContext,
    now: Timestamp,
    name: &str,
    precedence: i64,
) -> Result<GroupView, PolicyServiceError> {
    let (name, precedence) = (parse_name(name)?, check_precedence(precedence)?);
    let id = uuid_v7();
    write_transaction(conn, |conn| {
        match group_store::insert(conn, &id, &name, precedence, now) {
            Err(StoreError::Conflict(_)) => {
                return Err(PolicyServiceError::Conflict(format!(
                    "a group named `{name}` exists"
                )));
            }
            other => other?,
        }
        let created = group_view(conn, &id)?;
        audit_change(
            conn,
            context,
            now,
            "security_group.create",
            ("security_group", id.clone()),
            &None::<&GroupView>,
            &Some(&created),
        )?;
        Ok(created)
    })
}

pub fn update(
    conn: &mut DbConnection,
    context: &AuditContext,
    now: Timestamp,
    id: &str,
    name: Option<&str>,
    precedence: Option<i64>,
) -> Result<GroupView, PolicyServiceError> {
    let name = name.map(parse_name).transpose()?;
    let precedence = precedence.map(check_precedence).transpose()?;
    write_transaction(conn, |conn| {
        let before = group_view(conn, id)?;
        if before.is_default && precedence.is_some() {
            return Err(invalid("the default group always comes last"));
        }
        match group_store::update(conn, id, name.as_deref(), precedence, now) {
            Err(StoreError::Conflict(_)) => {
                return Err(PolicyServiceError::Conflict(
                    "a group with that name exists".into(),
                ));
            }
            other => other?,
        }
        let after = group_view(conn, id)?;
        audit_change(
            conn,
            context,
            now,
            "security_group.update",
            ("security_group", id.to_owned()),
            &before,
            &after,
        )?;
        Ok(after)
    })
}

/// Deletes a group; only an empty one, never the default.
pub fn delete(
    conn: &mut DbConnection,
    context: &AuditContext,
    now: Timestamp,
    id: &str,
) -> Result<(), PolicyServiceError> {
    write_transaction(conn, |conn| {
        let before = group_view(conn, id)?;
        if before.is_default {
            return Err(PolicyServiceError::Conflict(
                "the default group cannot be deleted".into(),
            ));
        }
        if before.member_count > 0 {
            return Err(PolicyServiceError::Conflict(format!(
                "the group has {} member(s); remove them first",
                before.member_count
            )));
        }
        policies::put(conn, &scope(id), "{}", now)?;
        group_store::delete(conn, id)?;
        audit_change(
            conn,
            context,
            now,
            "security_group.delete",
            ("security_group", id.to_owned()),
            &Some(&before),
            &None::<&GroupView>,
        )?;
        Ok(())
    })
}

pub fn add_member(
    conn: &mut DbConnection,
    context: &AuditContext,
    now: Timestamp,
    id: &str,
    user: UserId,
    source: &str,
) -> Result<(), PolicyServiceError> {
    write_transaction(conn, |conn| {
        let record = group(conn, id)?;
        if record.is_default {
            return Err(invalid(
                "the default group holds everyone in no other group; it takes no members",
            ));
        }
        if users::find_by_id(conn, user)?.is_none() {
            return Err(invalid(format!("user_id: no user {user}")));
        }
        let before = group_store::governing(conn, user)?.id;
        if group_store::add_member(conn, id, user, source, now)? {
            let after = group_store::governing(conn, user)?.id;
            audit_change(
                conn,
                context,
                now,
                "security_group.member_add",
                ("user", user.to_string()),
                &serde_json::json!({"governing_group": before}),
                &serde_json::json!({"governing_group": after, "added_to": id, "source": source}),
            )?;
        }
        Ok(())
    })
}

pub fn remove_member(
    conn: &mut DbConnection,
    context: &AuditContext,
    now: Timestamp,
    id: &str,
    user: UserId,
) -> Result<(), PolicyServiceError> {
    write_transaction(conn, |conn| {
        group(conn, id)?;
        let before = group_store::governing(conn, user)?.id;
        if !group_store::remove_member(conn, id, user, now)? {
            return Err(PolicyServiceError::NotFound);
        }
        let after = group_store::governing(conn, user)?.id;
        audit_change(
            conn,
            context,
            now,
            "security_group.member_remove",
            ("user", user.to_string()),
            &serde_json::json!({"governing_group": before}),
            &serde_json::json!({"governing_group": after, "removed_from": id}),
        )?;
        Ok(())
    })
}

/// Replaces a group's policy overrides; barrier ids must name existing groups.
pub fn set_overrides(
    conn: &mut DbConnection,
    context: &AuditContext,
    now: Timestamp,
    id: &str,
    overrides: PolicyOverrides,
) -> Result<GroupView, PolicyServiceError> {
    overrides.validate()?;
    write_transaction(conn, |conn| {
        let before = group_view(conn, id)?;
        for barrier in &overrides.barriers {
            if barrier == id {
                return Err(invalid("barriers: a group cannot be barred from itself"));
            }
            if group_store::find(conn, barrier)?.is_none() {
                return Err(invalid(format!("barriers: no security group {barrier}")));
            }
        }
        policies::put(
            conn,
            &scope(id),
            &serde_json::to_string(&overrides).expect("overrides serialize"),
            now,
        )?;
        let after = group_view(conn, id)?;
        audit_change(
            conn,
            context,
            now,
            "security_group.policy_change",
            ("security_group", id.to_owned()),
            &before.overrides,
            &after.overrides,
        )?;
        Ok(after)
    })
}

/// The overrides of the group governing `user`.
pub fn overrides_for(
    conn: &mut DbConnection,
    user: UserId,
) -> Result<PolicyOverrides, PolicyServiceError> {
    let governing = group_store::governing(conn, user)?;
    load(conn, &scope(&governing.id))
}

/// Why these users may not talk to each other, if an information barrier separates any
/// two of them. A barrier binds every group a user belongs to (the default group for a
/// user in none), not only the one that governs their other settings: otherwise joining a
/// higher-precedence group would step around it. Barriers are symmetric: either group
/// naming the other is enough.
pub fn barrier_among(
    conn: &mut DbConnection,
    org: &Policy,
    members: &[UserId],
) -> Result<Option<String>, PolicyServiceError> {
    let groups = MemberGroups::load(conn, members)?;
    let stored = crate::ScopedPolicies::load(conn, &groups.policy_scopes())?;
    groups.barrier(org, members, &stored)
}

/// The security groups of some users, read at once: every group each belongs to, and the
/// default group, which holds everyone in none.
pub(crate) struct MemberGroups {
    memberships: std::collections::HashMap<UserId, Vec<GroupRecord>>,
    default: GroupRecord,
}

impl MemberGroups {
    pub(crate) fn load(
        conn: &mut DbConnection,
        users: &[UserId],
    ) -> Result<Self, PolicyServiceError> {
        Ok(Self {
            memberships: group_store::memberships_of(conn, users)?,
            default: group(conn, DEFAULT_GROUP_ID)?,
        })
    }

    fn groups_of(&self, user: &UserId) -> &[GroupRecord] {
        self.memberships
            .get(user)
            .map_or(std::slice::from_ref(&self.default), Vec::as_slice)
    }

    /// The group whose settings govern `user`: the lowest precedence (the oldest on a
    /// tie) of theirs, as `security_groups::governing` decides.
    pub(crate) fn governing(&self, user: UserId) -> &GroupRecord {
        self.groups_of(&user)
            .iter()
            .min_by_key(|group| (group.precedence, group.created_at))
            .unwrap_or(&self.default)
    }

    /// The policy scopes of every group involved (the default group's included).
    pub(crate) fn policy_scopes(&self) -> Vec<String> {
        let ids: BTreeSet<&str> = self
            .memberships
            .values()
            .flatten()
            .chain(std::iter::once(&self.default))
            .map(|group| group.id.as_str())
            .collect();
        ids.into_iter().map(scope).collect()
    }

    /// Why `members` may not talk to each other (see [`barrier_among`]); `stored` holds
    /// the policies of [`Self::policy_scopes`].
    pub(crate) fn barrier(
        &self,
        org: &Policy,
        members: &[UserId],
        stored: &crate::ScopedPolicies,
    ) -> Result<Option<String>, PolicyServiceError> {
        let mut users_in: std::collections::BTreeMap<&str, (&GroupRecord, BTreeSet<UserId>)> =
            std::collections::BTreeMap::new();
        for user in members {
            for group in self.groups_of(user) {
                users_in
                    .entry(group.id.as_str())
                    .or_insert_with(|| (group, BTreeSet::new()))
                    .1
                    .insert(*user);
            }
        }
        if users_in.len() < 2 {
            return Ok(None);
        }
        for (id, (barring, barring_users)) in &users_in {
            let overrides: PolicyOverrides = stored.get(&scope(id))?;
            for barred_id in resolve(org, &overrides, &PolicyOverrides::default()).barriers {
                let Some((barred, barred_users)) = users_in.get(barred_id.as_str()) else {
                    continue;
                };
                // Two different people, one on each side (someone in both is not a pair).
                let separated = barring_users
                    .iter()
                    .any(|u| barred_users.iter().any(|v| u != v));
                if separated {
                    return Ok(Some(format!(
                        "an information barrier separates the security groups {} and {}",
                        barring.name, barred.name
                    )));
                }
            }
        }
        Ok(None)
    }
}

fn uuid_v7() -> String {
    conclave_core::RoomId::new().0.to_string()
}

/// The id of the default group.
pub fn default_group_id() -> &'static str {
    DEFAULT_GROUP_ID
}
