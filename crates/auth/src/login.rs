//! Local password login, with failed-login throttling per account and per client
//! address. Every attempt, accepted or refused, is audited.
//!
//! Three steps, so that no database connection is held while argon2 runs (a burst of
//! logins must not starve the pool): (1) in a transaction, check the throttle, count the
//! attempt, and read the account; (2) verify the password with no connection held;
//! (3) in a transaction, re-read the account (a suspension or password reset that
//! committed meanwhile wins), un-count the attempt and open the session.

use crate::error::AuthError;
use crate::sessions::{self, NewSessionGrant};
use crate::settings::AuthSettings;
use crate::throttle::{self, Subjects};
use crate::{audit, password};
use conclave_core::{AuditContext, AuditOutcome, Timestamp, UserStatus, Username};
use conclave_store::users::{self as user_store, UserRecord};
use conclave_store::{Db, DbConnection, write_transaction};
use serde_json::json;

/// One login attempt as received.
pub struct LoginAttempt<'a> {
    pub username: &'a str,
    pub password: &'a str,
    pub client_addr: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub api_path: Option<&'a str>,
}

#[derive(Debug)]
pub struct LoginSuccess {
    pub user: UserRecord,
    pub session: NewSessionGrant,
}

/// Checks a username and password and opens a session. Blocking: call it from a
/// blocking thread.
/// The in-memory attempt rate (`login.max_attempts_per_minute_per_*`), before anything
/// else: refused attempts are logged, not audited, so a flood writes nothing.
pub(crate) fn check_attempt_rate(
    settings: &AuthSettings,
    attempt: &LoginAttempt<'_>,
    now: Timestamp,
) -> Result<(), AuthError> {
    settings
        .login_rate
        .check(attempt.client_addr, attempt.username, now)
        .map_err(|retry_after| {
            tracing::warn!(
                client_addr = attempt.client_addr.unwrap_or("-"),
                "login refused: too many attempts"
            );
            AuthError::TooManyAttempts { retry_after }
        })
}

pub fn login_local(
    db: &Db,
    settings: &AuthSettings,
    now: Timestamp,
    attempt: &LoginAttempt<'_>,
) -> Result<LoginSuccess, AuthError> {
    check_attempt_rate(settings, attempt, now)?;
    // An unparsable name is refused like an unknown one: the caller learns nothing more.
    let username = Username::parse(attempt.username).ok();
    let subjects = Subjects::new(
        username.as_ref().map_or(attempt.username, Username::as_str),
        attempt.client_addr,
    );
    let mut context = AuditContext {
        actor_id: None,
        actor_name: username
            .as_ref()
            .map_or_else(|| "unknown".to_owned(), Username::to_string),
        client_addr: attempt.client_addr.map(str::to_owned),
        api_path: attempt.api_path.map(str::to_owned),
    };

    // (1) Throttle, count, read.
    let mut conn = db.conn()?;
    let begun = write_transaction(&mut conn, |conn| {
        let user = match &username {
            Some(name) => user_store::find_by_username(conn, name)?,
            None => None,
        };
        // The account's policy limits, looked up once: its lockout threshold now, its
        // session lifetime and idle timeout when the session is made.
        let limits = match &user {
            Some(user) => settings.limits_for(conn, user.id)?,
            None => crate::AccountLimits::default(),
        };
        let account_limit = limits.lockout_threshold.unwrap_or(u32::MAX);
        let counted = match throttle::begin_attempt(conn, settings, now, &subjects, account_limit) {
            Ok(counted) => counted,
            Err(refusal) => {
                audit_refusal(conn, &context, now, &subjects, "throttled")?;
                return Ok(Err(refusal));
            }
        };
        Ok::<_, AuthError>(Ok((counted, user, limits)))
    })?;
    drop(conn);
    let (counted, user, limits) = begun?;

    // (2) Verify, holding no connection.
    let verified = match user.as_ref().and_then(|u| u.password_hash.as_deref()) {
        Some(hash) => password::verify(attempt.password, hash),
        None => {
            password::verify_against_nothing(attempt.password);
            false
        }
    };

    // (3) Settle.
    let mut conn = db.conn()?;
    let Some(user) = user.filter(|_| verified) else {
        write_transaction(&mut conn, |conn| {
            audit_refusal(conn, &context, now, &subjects, "invalid_credentials")
        })?;
        return Err(AuthError::InvalidCredentials);
    };
    context.actor_id = Some(user.id);
    write_transaction(
        &mut conn,
        |conn| -> Result<Result<LoginSuccess, AuthError>, AuthError> {
            let current = user_store::find_by_id(conn, user.id)?;
            let Some(current) = current.filter(|c| c.password_hash == user.password_hash) else {
                audit_refusal(
                    conn,
                    &context,
                    now,
                    &subjects,
                    "password_changed_during_login",
                )?;
                return Ok(Err(AuthError::InvalidCredentials));
            };
            if current.status != UserStatus::Active {
                audit_refusal(conn, &context, now, &subjects, "account_disabled")?;
                return Ok(Err(AuthError::AccountDisabled));
            }
            // Checked after the password, so it tells nothing about other accounts.
            if !current.break_glass && !crate::identity::local_login::enabled_for_everyone(conn)? {
                audit_refusal(conn, &context, now, &subjects, "local_login_disabled")?;
                return Ok(Err(AuthError::LocalLoginDisabled));
            }
            throttle::succeeded(conn, &subjects, counted)?;
            let session = sessions::create(
                conn,
                &current,
                &settings.sessions,
                &limits,
                now,
                attempt.client_addr,
                attempt.user_agent,
            )?;
            audit(
                conn,
                &context,
                now,
                "auth.login",
                Some(("session", session.session_id.to_string())),
                AuditOutcome::Success,
                json!({ "method": "local", "password_change_required": current.must_change_password }),
            )?;
            Ok(Ok(LoginSuccess {
                user: current,
                session,
            }))
        },
    )?
}

fn audit_refusal(
    conn: &mut DbConnection,
    context: &AuditContext,
    now: Timestamp,
    subjects: &Subjects,
    reason: &str,
) -> Result<(), AuthError> {
    audit(
        conn,
        context,
        now,
        "auth.login",
        Some(("account", subjects.account_name().to_owned())),
        AuditOutcome::Failure,
        json!({ "method": "local", "reason": reason }),
    )?;
    Ok(())
}
