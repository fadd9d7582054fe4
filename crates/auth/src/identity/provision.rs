//! Just-in-time provisioning and updating of accounts from an identity provider, shared
//! by OpenID Connect login, LDAP login and directory sync. Runs inside the caller's
//! transaction and audits each change it makes there.

use super::mapping::{ExternalProfile, GroupMappings, mapped_roles, mapped_security_groups};
use crate::accounts::audit_user;
use crate::error::AuthError;
use conclave_core::{AuditContext, AuditOutcome, Role, Timestamp, UserId, UserStatus};
use conclave_store::security_groups as group_store;
use conclave_store::sessions as session_store;
use conclave_store::users::{self as user_store, AuthSource, NewUser, UserRecord};
use conclave_store::{DbConnection, StoreError, identities};
use serde_json::json;

/// Which provider an identity belongs to and how its groups map.
#[derive(Clone, Copy, Debug)]
pub struct ProviderRules<'a> {
    /// `ldap` or `oidc:<id>`.
    pub provider: &'a str,
    pub source: AuthSource,
    pub mappings: GroupMappings<'a>,
    /// Whether a deprovisioned account the provider vouches for comes back (the
    /// directory, which deprovisioned it, does; a suspension by an admin always stays).
    pub reactivate_deprovisioned: bool,
}

/// What provisioning did to one account.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Provisioned {
    pub created: bool,
    pub profile_updated: bool,
    pub reactivated: bool,
    pub roles_changed: bool,
    pub groups_added: usize,
    pub groups_removed: usize,
    /// Mapped security groups that do not exist (by name) or cannot take members.
    pub unknown_groups: Vec<String>,
    /// Why a mapped role change was not applied (separation of duties, last admin).
    pub roles_refused: Option<String>,
}

impl Provisioned {
    pub fn changed(&self) -> bool {
        self.created
            || self.profile_updated
            || self.reactivated
            || self.roles_changed
            || self.groups_added > 0
            || self.groups_removed > 0
    }
}

/// Finds or creates the account behind `profile` and brings it in line with the
/// provider: profile fields, roles (when mapped), directory security-group memberships.
/// The username is taken at creation and kept afterwards, so a rename at the provider
/// keeps the account (it is found by the provider's stable subject). A username already
/// taken by another account is a conflict: accounts are never linked by name.
pub fn provision(
    conn: &mut DbConnection,
    context: &AuditContext,
    now: Timestamp,
    rules: &ProviderRules<'_>,
    profile: &ExternalProfile,
) -> Result<(UserRecord, Provisioned), AuthError> {
    let mut done = Provisioned::default();
    let groups_json = serde_json::to_string(&profile.groups).unwrap_or_else(|_| "[]".into());
    let existing = identities::find(conn, rules.provider, &profile.subject)?;
    let mut user = match existing {
        Some(identity) => {
            let user = user_store::find_by_id(conn, identity.user_id)?
                .ok_or_else(|| StoreError::Corrupt("identity without its account".into()))?;
            if identity.external_name != profile.external_name || identity.groups != groups_json {
                identities::update(
                    conn,
                    rules.provider,
                    &profile.subject,
                    &profile.external_name,
                    &groups_json,
                    now,
                )?;
            }
            let email = profile.email.as_ref().map(|e| e.as_str().to_owned());
            if user.display_name != profile.display_name.as_str() || user.email != email {
                user_store::update_profile(
                    conn,
                    user.id,
                    &profile.display_name,
                    profile.email.as_ref(),
                    now,
                )?;
                audit_user(
                    conn,
                    context,
                    now,
                    "user.update",
                    user.id,
                    AuditOutcome::Success,
                    json!({
                        "source": rules.provider,
                        "before": { "display_name": user.display_name, "email": user.email },
                        "after": { "display_name": profile.display_name, "email": email },
                    }),
                )?;
                done.profile_updated = true;
            }
            user
        }
        None => {
            if user_store::find_by_username(conn, &profile.username)?.is_some() {
                return Err(AuthError::Conflict(format!(
                    "username `{}` belongs to another account; an admin must rename one of them",
                    profile.username
                )));
            }
            let id = UserId::new();
            let roles = mapped_roles(&rules.mappings, &profile.groups)
                .filter(|roles| roles.check_separation_of_duties().is_ok())
                .unwrap_or_else(|| conclave_core::RoleSet::new([]));
            user_store::insert(
                conn,
                &NewUser {
                    id,
                    username: &profile.username,
                    display_name: &profile.display_name,
                    email: profile.email.as_ref(),
                    auth_source: rules.source,
                    password_hash: None,
                    must_change_password: false,
                    roles: &roles,
                    now,
                },
            )?;
            identities::insert(
                conn,
                rules.provider,
                &profile.subject,
                id,
                &profile.external_name,
                &groups_json,
                now,
            )?;
            audit_user(
                conn,
                context,
                now,
                "user.provision",
                id,
                AuditOutcome::Success,
                json!({
                    "source": rules.provider,
                    "external_name": profile.external_name,
                    "groups": profile.groups,
                    "after": {
                        "username": profile.username,
                        "display_name": profile.display_name,
                        "email": profile.email,
                        "roles": roles,
                        "auth_source": rules.source.as_str(),
                    }
                }),
            )?;
            done.created = true;
            user_store::find_by_id(conn, id)?.ok_or(AuthError::NotFound)?
        }
    };

    if user.status == UserStatus::Deprovisioned && rules.reactivate_deprovisioned {
        user_store::set_status(conn, user.id, UserStatus::Active, now)?;
        audit_user(
            conn,
            context,
            now,
            "user.reactivate",
            user.id,
            AuditOutcome::Success,
            json!({
                "source": rules.provider,
                "before": { "status": UserStatus::Deprovisioned },
                "after": { "status": UserStatus::Active },
            }),
        )?;
        done.reactivated = true;
    }

    if !done.created {
        apply_roles(conn, context, now, rules, profile, &user, &mut done)?;
    }
    apply_security_groups(conn, context, now, rules, profile, user.id, &mut done)?;
    if done.changed() {
        user = user_store::find_by_id(conn, user.id)?.ok_or(AuthError::NotFound)?;
    }
    Ok((user, done))
}

fn apply_roles(
    conn: &mut DbConnection,
    context: &AuditContext,
    now: Timestamp,
    rules: &ProviderRules<'_>,
    profile: &ExternalProfile,
    user: &UserRecord,
    done: &mut Provisioned,
) -> Result<(), AuthError> {
    let Some(wanted) = mapped_roles(&rules.mappings, &profile.groups) else {
        return Ok(());
    };
    if wanted == user.roles {
        return Ok(());
    }
    let refusal = if let Err(err) = wanted.check_separation_of_duties() {
        Some(err.to_string())
    } else {
        user_store::lock_admin_guard(conn)?;
        let loses_admin = user.roles.contains(Role::Admin) && !wanted.contains(Role::Admin);
        (loses_admin
            && user.status == UserStatus::Active
            && user_store::count_active_admins(conn)? <= 1)
            .then(|| "cannot remove the admin role from the last active admin".to_owned())
    };
    if let Some(reason) = refusal {
        audit_user(
            conn,
            context,
            now,
            "user.roles_change",
            user.id,
            AuditOutcome::Failure,
            json!({ "source": rules.provider, "reason": reason, "before": { "roles": user.roles }, "wanted": { "roles": wanted } }),
        )?;
        done.roles_refused = Some(reason);
        return Ok(());
    }
    user_store::replace_roles(conn, user.id, &wanted)?;
    audit_user(
        conn,
        context,
        now,
        "user.roles_change",
        user.id,
        AuditOutcome::Success,
        json!({ "source": rules.provider, "groups": profile.groups, "before": { "roles": user.roles }, "after": { "roles": wanted } }),
    )?;
    done.roles_changed = true;
    Ok(())
}

fn apply_security_groups(
    conn: &mut DbConnection,
    context: &AuditContext,
    now: Timestamp,
    rules: &ProviderRules<'_>,
    profile: &ExternalProfile,
    user: UserId,
    done: &mut Provisioned,
) -> Result<(), AuthError> {
    if rules.mappings.security_groups.is_empty() {
        return Ok(());
    }
    let mut wanted = std::collections::BTreeSet::new();
    for name in mapped_security_groups(&rules.mappings, &profile.groups) {
        match group_store::find_by_name(conn, &name)? {
            Some(group) if !group.is_default => {
                wanted.insert(group.id);
            }
            _ => done.unknown_groups.push(name),
        }
    }
    let current: std::collections::BTreeSet<String> = group_store::directory_groups_of(conn, user)?
        .into_iter()
        .collect();
    for id in wanted.difference(&current) {
        if group_store::add_member(conn, id, user, "directory", now)? {
            audit_membership(
                conn,
                context,
                now,
                "security_group.member_add",
                id,
                user,
                rules,
            )?;
            done.groups_added += 1;
        }
    }
    for id in current.difference(&wanted) {
        if group_store::remove_directory_member(conn, id, user)? {
            audit_membership(
                conn,
                context,
                now,
                "security_group.member_remove",
                id,
                user,
                rules,
            )?;
            done.groups_removed += 1;
        }
    }
    Ok(())
}

fn audit_membership(
    conn: &mut DbConnection,
    context: &AuditContext,
    now: Timestamp,
    action: &'static str,
    group: &str,
    user: UserId,
    rules: &ProviderRules<'_>,
) -> Result<(), StoreError> {
    audit_user(
        conn,
        context,
        now,
        action,
        user,
        AuditOutcome::Success,
        json!({ "group_id": group, "source": "directory", "provider": rules.provider }),
    )
}

/// Deprovisions an account the directory no longer lists (or lists as disabled): its
/// status becomes `deprovisioned` and every session ends. The last active admin is kept
/// (returns `Ok(false)` and audits the refusal).
pub fn deprovision(
    conn: &mut DbConnection,
    context: &AuditContext,
    now: Timestamp,
    user: &UserRecord,
    reason: &str,
) -> Result<bool, AuthError> {
    user_store::lock_admin_guard(conn)?;
    if user.roles.contains(Role::Admin) && user_store::count_active_admins(conn)? <= 1 {
        audit_user(
            conn,
            context,
            now,
            "user.deprovision",
            user.id,
            AuditOutcome::Failure,
            json!({ "reason": "the last active admin is kept", "directory": reason }),
        )?;
        return Ok(false);
    }
    user_store::set_status(conn, user.id, UserStatus::Deprovisioned, now)?;
    let ended = session_store::revoke_all_for_user(conn, user.id, now, "deprovisioned")?;
    audit_user(
        conn,
        context,
        now,
        "user.deprovision",
        user.id,
        AuditOutcome::Success,
        json!({
            "reason": reason,
            "before": { "status": user.status },
            "after": { "status": UserStatus::Deprovisioned },
            "sessions_ended": ended,
        }),
    )?;
    Ok(true)
}
