//! Account administration: creating local accounts, roles, suspension, the first admin of
//! a new installation, and changing one's own password. Every change is audited with its
//! before and after values, in the transaction that makes it.

use crate::error::AuthError;
use crate::sessions::Principal;
use crate::settings::AuthSettings;
use crate::throttle::{self, Subjects};
use crate::{audit, password};
use conclave_core::{
    AuditContext, AuditOutcome, DisplayName, Email, NewPassword, Role, RoleSet, Timestamp, UserId,
    UserStatus, Username,
};
use conclave_crypto::random_password;
use conclave_store::sessions as session_store;
use conclave_store::users::{self as user_store, AuthSource, NewUser, UserRecord};
use conclave_store::{Db, DbConnection, StoreError, write_transaction};
use serde_json::json;

/// Appends an audit event about one account (the target of every action here).
pub(crate) fn audit_user(
    conn: &mut DbConnection,
    context: &AuditContext,
    now: Timestamp,
    action: &'static str,
    user_id: UserId,
    outcome: AuditOutcome,
    details: serde_json::Value,
) -> Result<(), StoreError> {
    audit(
        conn,
        context,
        now,
        action,
        Some(("user", user_id.to_string())),
        outcome,
        details,
    )
}

/// A local account to create, parsed.
#[derive(Debug)]
pub struct NewLocalAccount {
    pub username: Username,
    pub display_name: DisplayName,
    pub email: Option<Email>,
    pub roles: RoleSet,
    /// `None`: generate a one-time password.
    pub password: Option<NewPassword>,
}

/// A created account and, when one was generated, its one-time password. Either way the
/// password must be changed at first login.
pub struct CreatedAccount {
    pub user: UserRecord,
    pub one_time_password: Option<String>,
}

impl std::fmt::Debug for CreatedAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedAccount")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

pub fn create_local_account(
    conn: &mut DbConnection,
    context: &AuditContext,
    now: Timestamp,
    account: NewLocalAccount,
) -> Result<CreatedAccount, AuthError> {
    account.roles.check_separation_of_duties()?;
    let (password, one_time_password) = match account.password {
        Some(chosen) => (chosen.expose().to_owned(), None),
        None => {
            let generated = random_password()?;
            (generated.clone(), Some(generated))
        }
    };
    let password_hash = password::hash(&password)?;
    let id = UserId::new();
    write_transaction(conn, |conn| {
        let inserted = user_store::insert(
            conn,
            &NewUser {
                id,
                username: &account.username,
                display_name: &account.display_name,
                email: account.email.as_ref(),
                auth_source: AuthSource::Local,
                password_hash: Some(&password_hash),
                must_change_password: true,
                roles: &account.roles,
                now,
            },
        );
        if let Err(StoreError::Conflict(_)) = inserted {
            return Err(AuthError::Conflict(format!(
                "username `{}` is taken",
                account.username
            )));
        }
        inserted?;
        audit_user(
            conn,
            context,
            now,
            "user.create",
            id,
            AuditOutcome::Success,
            json!({
                "after": {
                    "username": account.username,
                    "display_name": account.display_name,
                    "email": account.email,
                    "roles": account.roles,
                    "auth_source": "local",
                }
            }),
        )?;
        let user = user_store::find_by_id(conn, id)?.ok_or(AuthError::NotFound)?;
        Ok(CreatedAccount {
            user,
            one_time_password,
        })
    })
}

/// On a new installation (no accounts at all), creates the break-glass admin `admin` with
/// a one-time password. Returns `None` when accounts exist already, including when another
/// node created the admin a moment earlier.
pub fn ensure_first_admin(
    conn: &mut DbConnection,
    now: Timestamp,
) -> Result<Option<CreatedAccount>, AuthError> {
    if user_store::count(conn)? > 0 {
        return Ok(None);
    }
    let account = NewLocalAccount {
        username: Username::parse("admin")?,
        display_name: DisplayName::parse("Administrator")?,
        email: None,
        roles: RoleSet::new([Role::Admin]),
        password: None,
    };
    let context = AuditContext::system("bootstrap");
    match create_local_account(conn, &context, now, account) {
        Ok(mut created) => {
            // The first admin is the break-glass account: it may always log in locally.
            created.user = crate::identity::local_login::set_break_glass(
                conn,
                &context,
                now,
                created.user.id,
                true,
            )?;
            Ok(Some(created))
        }
        Err(AuthError::Conflict(_)) => Ok(None),
        Err(other) => Err(other),
    }
}

/// Replaces a user's roles. Separation of duties holds (no admin is also a compliance
/// officer); nobody changes their own roles (the command line, a break-glass path with no
/// account behind it, may); and the last active admin cannot lose the admin role, or
/// nobody could administer the installation.
pub fn set_roles(
    conn: &mut DbConnection,
    context: &AuditContext,
    now: Timestamp,
    user_id: UserId,
    roles: RoleSet,
) -> Result<UserRecord, AuthError> {
    roles.check_separation_of_duties()?;
    if context.actor_id == Some(user_id) {
        return Err(AuthError::Conflict(
            "you cannot change your own roles".into(),
        ));
    }
    write_transaction(conn, |conn| {
        user_store::lock_admin_guard(conn)?;
        let before = user_store::find_by_id(conn, user_id)?.ok_or(AuthError::NotFound)?;
        if before.roles.contains(Role::Admin)
            && !roles.contains(Role::Admin)
            && before.status == UserStatus::Active
            && user_store::count_active_admins(conn)? <= 1
        {
            return Err(AuthError::Conflict(
                "cannot remove the admin role from the last active admin".into(),
            ));
        }
        if before.roles.contains(Role::Admin) && !roles.contains(Role::Admin) {
            crate::identity::local_login::keep_last_break_glass_admin(conn, &before)?;
        }
        user_store::replace_roles(conn, user_id, &roles)?;
        audit_user(
            conn,
            context,
            now,
            "user.roles_change",
            user_id,
            AuditOutcome::Success,
            json!({ "before": { "roles": before.roles }, "after": { "roles": roles } }),
        )?;
        user_store::find_by_id(conn, user_id)?.ok_or(AuthError::NotFound)
    })
}

/// Suspends an account and ends all of its sessions at once. Nobody can suspend themself
/// or the last active admin.
pub fn suspend(
    conn: &mut DbConnection,
    context: &AuditContext,
    now: Timestamp,
    user_id: UserId,
) -> Result<UserRecord, AuthError> {
    write_transaction(conn, |conn| {
        user_store::lock_admin_guard(conn)?;
        let before = user_store::find_by_id(conn, user_id)?.ok_or(AuthError::NotFound)?;
        if context.actor_id == Some(user_id) {
            return Err(AuthError::Conflict(
                "you cannot suspend your own account".into(),
            ));
        }
        if before.status == UserStatus::Active
            && before.roles.contains(Role::Admin)
            && user_store::count_active_admins(conn)? <= 1
        {
            return Err(AuthError::Conflict(
                "cannot suspend the last active admin".into(),
            ));
        }
        crate::identity::local_login::keep_last_break_glass_admin(conn, &before)?;
        user_store::set_status(conn, user_id, UserStatus::Suspended, now)?;
        let ended = session_store::revoke_all_for_user(conn, user_id, now, "account suspended")?;
        audit_user(
            conn,
            context,
            now,
            "user.suspend",
            user_id,
            AuditOutcome::Success,
            json!({
                "before": { "status": before.status },
                "after": { "status": UserStatus::Suspended },
                "sessions_ended": ended,
            }),
        )?;
        user_store::find_by_id(conn, user_id)?.ok_or(AuthError::NotFound)
    })
}

/// Lifts a suspension. (A deprovisioned account comes back only through its directory.)
pub fn reactivate(
    conn: &mut DbConnection,
    context: &AuditContext,
    now: Timestamp,
    user_id: UserId,
) -> Result<UserRecord, AuthError> {
    write_transaction(conn, |conn| {
        let before = user_store::find_by_id(conn, user_id)?.ok_or(AuthError::NotFound)?;
        if before.status != UserStatus::Suspended {
            return Err(AuthError::Conflict(format!(
                "only a suspended account can be reactivated (this one is {})",
                before.status.as_str()
            )));
        }
        user_store::set_status(conn, user_id, UserStatus::Active, now)?;
        audit_user(
            conn,
            context,
            now,
            "user.reactivate",
            user_id,
            AuditOutcome::Success,
            json!({ "before": { "status": before.status }, "after": { "status": UserStatus::Active } }),
        )?;
        user_store::find_by_id(conn, user_id)?.ok_or(AuthError::NotFound)
    })
}

/// Ends every session of an account (a lost laptop, a leaver) without suspending it.
pub fn end_sessions(
    conn: &mut DbConnection,
    context: &AuditContext,
    now: Timestamp,
    user_id: UserId,
) -> Result<usize, AuthError> {
    write_transaction(conn, |conn| {
        user_store::find_by_id(conn, user_id)?.ok_or(AuthError::NotFound)?;
        let ended = session_store::revoke_all_for_user(conn, user_id, now, "ended by admin")?;
        audit_user(
            conn,
            context,
            now,
            "user.sessions_end",
            user_id,
            AuditOutcome::Success,
            json!({ "sessions_ended": ended }),
        )?;
        Ok(ended)
    })
}

/// Gives a local account a new one-time password and ends its sessions (break-glass
/// recovery of a lost admin password). Returns the password, to be shown once.
pub fn reset_password(
    conn: &mut DbConnection,
    context: &AuditContext,
    now: Timestamp,
    user_id: UserId,
) -> Result<String, AuthError> {
    let one_time_password = random_password()?;
    let new_hash = password::hash(&one_time_password)?;
    write_transaction(conn, |conn| {
        let user = user_store::find_by_id(conn, user_id)?.ok_or(AuthError::NotFound)?;
        if user.auth_source != AuthSource::Local.as_str() {
            return Err(AuthError::Conflict(
                "this account signs in through its identity provider".into(),
            ));
        }
        user_store::set_password(conn, user_id, &new_hash, true, now)?;
        let ended = session_store::revoke_all_for_user(conn, user_id, now, "password reset")?;
        audit_user(
            conn,
            context,
            now,
            "user.password_reset",
            user_id,
            AuditOutcome::Success,
            json!({ "sessions_ended": ended }),
        )?;
        Ok(one_time_password)
    })
}

/// A page of accounts in username order.
pub fn list(
    conn: &mut DbConnection,
    after_username: Option<&str>,
    limit: u32,
) -> Result<Vec<UserRecord>, AuthError> {
    Ok(user_store::list(
        conn,
        after_username,
        i64::from(limit.clamp(1, 500)),
    )?)
}

/// The people directory: active accounts whose username or display name contains
/// `needle` (1 to 100 characters, case-insensitive), at most `limit` (1 to 50), for
/// picking someone to talk to. Only names: no roles, no status, no credentials.
pub fn search_people(
    conn: &mut DbConnection,
    needle: &str,
    limit: u32,
) -> Result<Vec<conclave_store::users::UserCard>, AuthError> {
    let needle = needle.trim();
    if needle.is_empty() || needle.chars().count() > 100 || needle.chars().any(char::is_control) {
        return Err(conclave_core::ValidationError::new(
            "q",
            "must be 1 to 100 characters, without control characters",
        )
        .into());
    }
    Ok(user_store::search_active(
        conn,
        needle,
        i64::from(limit.clamp(1, 50)),
    )?)
}

/// For admins: accounts in any status whose username or display name contains `needle`
/// (rules as [`search_people`]), at most `limit` (1 to 100), in username order.
pub fn search(
    conn: &mut DbConnection,
    needle: &str,
    limit: u32,
) -> Result<Vec<UserRecord>, AuthError> {
    let needle = needle.trim();
    if needle.is_empty() || needle.chars().count() > 100 || needle.chars().any(char::is_control) {
        return Err(conclave_core::ValidationError::new(
            "q",
            "must be 1 to 100 characters, without control characters",
        )
        .into());
    }
    let cards = user_store::search(conn, needle, false, i64::from(limit.clamp(1, 100)))?;
    cards.into_iter().map(|card| find(conn, card.id)).collect()
}

pub fn find(conn: &mut DbConnection, user_id: UserId) -> Result<UserRecord, AuthError> {
    user_store::find_by_id(conn, user_id)?.ok_or(AuthError::NotFound)
}

/// Changes the caller's own password: the current one must be given (and wrong guesses
/// are throttled like logins), the new one must differ, and every other session of the
/// account ends. Blocking, and holds no connection while hashing: call it from a
/// blocking thread.
pub fn change_own_password(
    db: &Db,
    settings: &AuthSettings,
    principal: &Principal,
    context: &AuditContext,
    now: Timestamp,
    current_password: &str,
    new_password: &NewPassword,
) -> Result<(), AuthError> {
    let stored = principal.user.password_hash.clone().ok_or_else(|| {
        AuthError::Conflict("this account signs in through its identity provider".into())
    })?;
    if new_password.expose() == current_password {
        return Err(AuthError::Invalid(conclave_core::ValidationError::new(
            "new_password",
            "must differ from the current password",
        )));
    }
    let subjects = Subjects::new(
        principal.user.username.as_str(),
        context.client_addr.as_deref(),
    );
    let counted = write_transaction(&mut *db.conn()?, |conn| {
        let account_limit = settings
            .limits_for(conn, principal.user.id)?
            .lockout_threshold
            .unwrap_or(u32::MAX);
        throttle::begin_attempt(conn, settings, now, &subjects, account_limit)
    })?;
    if !password::verify(current_password, &stored) {
        write_transaction(&mut *db.conn()?, |conn| {
            audit_user(
                conn,
                context,
                now,
                "user.password_change",
                principal.user.id,
                AuditOutcome::Failure,
                json!({ "reason": "wrong current password" }),
            )
        })?;
        return Err(AuthError::InvalidCredentials);
    }
    let new_hash = password::hash(new_password.expose())?;
    write_transaction(&mut *db.conn()?, |conn| {
        let current =
            user_store::find_by_id(conn, principal.user.id)?.ok_or(AuthError::Unauthenticated)?;
        if current.password_hash.as_deref() != Some(stored.as_str()) {
            return Err(AuthError::Conflict(
                "the password was changed meanwhile; log in again".into(),
            ));
        }
        throttle::succeeded(conn, &subjects, counted)?;
        user_store::set_password(conn, principal.user.id, &new_hash, false, now)?;
        let mut ended = 0;
        for session in session_store::list_unexpired_for_user(conn, principal.user.id, now)? {
            if session.id != principal.session_id {
                session_store::revoke(conn, session.id, now, "password changed")?;
                ended += 1;
            }
        }
        audit_user(
            conn,
            context,
            now,
            "user.password_change",
            principal.user.id,
            AuditOutcome::Success,
            json!({ "other_sessions_ended": ended }),
        )?;
        Ok(())
    })
}
