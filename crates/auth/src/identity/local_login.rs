//! Local (password) login for everyone, or only for break-glass accounts: an org
//! setting an admin changes (audited). The first admin is a break-glass account.

use crate::accounts::audit_user;
use crate::audit;
use crate::error::AuthError;
use conclave_core::{AuditContext, AuditOutcome, Role, Timestamp, UserId, UserStatus};
use conclave_store::users::{self as user_store, AuthSource, UserRecord};
use conclave_store::{DbConnection, org_settings, write_transaction};
use serde_json::json;

const SETTING: &str = "local_login";
const BREAK_GLASS_ONLY: &str = "break_glass_only";
const EVERYONE: &str = "everyone";

/// Whether every local account may log in with its password (otherwise only
/// break-glass accounts).
pub fn enabled_for_everyone(conn: &mut DbConnection) -> Result<bool, AuthError> {
    Ok(org_settings::get(conn, SETTING)?.as_deref() != Some(BREAK_GLASS_ONLY))
}

fn active_break_glass_admins(conn: &mut DbConnection) -> Result<usize, AuthError> {
    // Few local admins exist; list them through the paged listing.
    let mut count = 0;
    let mut after: Option<String> = None;
    loop {
        let page = user_store::list(conn, after.as_deref(), 500)?;
        count += page
            .iter()
            .filter(|u| {
                u.break_glass && u.status == UserStatus::Active && u.roles.contains(Role::Admin)
            })
            .count();
        match page.last() {
            Some(last) if page.len() == 500 => after = Some(last.username.to_string()),
            _ => return Ok(count),
        }
    }
}

/// Turns local login on for everyone, or limits it to break-glass accounts. Limiting it
/// needs at least one active break-glass admin, or nobody could get back in.
pub fn set_enabled_for_everyone(
    conn: &mut DbConnection,
    context: &AuditContext,
    now: Timestamp,
    enabled: bool,
) -> Result<bool, AuthError> {
    write_transaction(conn, |conn| {
        user_store::lock_admin_guard(conn)?;
        let before = enabled_for_everyone(conn)?;
        if !enabled && active_break_glass_admins(conn)? == 0 {
            return Err(AuthError::Conflict(
                "no active break-glass admin would be left to log in; mark one first".into(),
            ));
        }
        org_settings::set(
            conn,
            SETTING,
            if enabled { EVERYONE } else { BREAK_GLASS_ONLY },
            now,
        )?;
        audit(
            conn,
            context,
            now,
            "identity.local_login_change",
            None,
            AuditOutcome::Success,
            json!({ "before": { "local_login_for_everyone": before }, "after": { "local_login_for_everyone": enabled } }),
        )?;
        Ok(enabled)
    })
}

/// Refuses to take the last active break-glass admin out of service (its admin role, or
/// the account itself) while local login is limited to break-glass accounts: if single
/// sign-on then failed, nobody could get in.
pub(crate) fn keep_last_break_glass_admin(
    conn: &mut DbConnection,
    account: &user_store::UserRecord,
) -> Result<(), AuthError> {
    if account.break_glass
        && account.status == UserStatus::Active
        && account.roles.contains(Role::Admin)
        && !enabled_for_everyone(conn)?
        && active_break_glass_admins(conn)? <= 1
    {
        return Err(AuthError::Conflict(
            "this is the last break-glass admin while local login is limited to them; mark another first".into(),
        ));
    }
    Ok(())
}

/// Marks or unmarks a local account as break-glass.
pub fn set_break_glass(
    conn: &mut DbConnection,
    context: &AuditContext,
    now: Timestamp,
    user_id: UserId,
    break_glass: bool,
) -> Result<UserRecord, AuthError> {
    write_transaction(conn, |conn| {
        user_store::lock_admin_guard(conn)?;
        let before = user_store::find_by_id(conn, user_id)?.ok_or(AuthError::NotFound)?;
        if break_glass && before.auth_source != AuthSource::Local.as_str() {
            return Err(AuthError::Conflict(
                "only local accounts can be break-glass accounts".into(),
            ));
        }
        if !break_glass
            && before.break_glass
            && !enabled_for_everyone(conn)?
            && before.roles.contains(Role::Admin)
            && active_break_glass_admins(conn)? <= 1
        {
            return Err(AuthError::Conflict(
                "this is the last break-glass admin while local login is limited to them".into(),
            ));
        }
        user_store::set_break_glass(conn, user_id, break_glass, now)?;
        audit_user(
            conn,
            context,
            now,
            "user.break_glass_change",
            user_id,
            AuditOutcome::Success,
            json!({ "before": { "break_glass": before.break_glass }, "after": { "break_glass": break_glass } }),
        )?;
        user_store::find_by_id(conn, user_id)?.ok_or(AuthError::NotFound)
    })
}
