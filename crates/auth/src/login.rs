//! Local password login, with failed-login throttling per account and per client
//! address. Every attempt, accepted or refused, is audited.

use crate::error::AuthError;
use crate::sessions::{self, NewSessionGrant};
use crate::settings::AuthSettings;
use crate::{audit, password};
use conclave_core::{AuditContext, AuditOutcome, LoginThrottle, Timestamp, UserStatus, Username};
use conclave_store::users::{self as user_store, UserRecord};
use conclave_store::{DbConnection, login_failures, write_transaction};
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

/// Checks a username and password and opens a session.
pub fn login_local(
    conn: &mut DbConnection,
    settings: &AuthSettings,
    now: Timestamp,
    attempt: &LoginAttempt<'_>,
) -> Result<LoginSuccess, AuthError> {
    // An unparsable name is refused like an unknown one: the caller learns nothing more.
    let username = Username::parse(attempt.username).ok();
    // Bounded, since an unparsable name is stored in the throttle table and the audit log.
    let account_subject = match &username {
        Some(name) => format!("account:{name}"),
        None => format!(
            "account:{}",
            attempt
                .username
                .chars()
                .take(Username::MAX_LEN)
                .collect::<String>()
        ),
    };
    let address_subject = attempt.client_addr.map(|addr| format!("address:{addr}"));
    let context = AuditContext {
        actor_id: None,
        actor_name: username
            .as_ref()
            .map_or_else(|| "unknown".to_owned(), Username::to_string),
        client_addr: attempt.client_addr.map(str::to_owned),
        api_path: attempt.api_path.map(str::to_owned),
    };

    if let Some(retry_at) = throttled_until(
        conn,
        settings,
        now,
        &account_subject,
        address_subject.as_deref(),
    )? {
        write_transaction(conn, |conn| {
            audit_refusal(conn, &context, now, &account_subject, "throttled")
        })?;
        return Err(AuthError::Throttled {
            retry_after: now.until(retry_at),
        });
    }

    let user = match &username {
        Some(name) => user_store::find_by_username(conn, name)?,
        None => None,
    };
    let verified = match user.as_ref().and_then(|u| u.password_hash.as_deref()) {
        Some(hash) => password::verify(attempt.password, hash),
        None => {
            password::verify_against_nothing(attempt.password);
            false
        }
    };
    let Some(user) = user.filter(|_| verified) else {
        write_transaction(conn, |conn| -> Result<(), AuthError> {
            let forget_before = now.minus(settings.throttle.window);
            login_failures::record(conn, &account_subject, now, forget_before)?;
            if let Some(address) = &address_subject {
                login_failures::record(conn, address, now, forget_before)?;
            }
            audit_refusal(conn, &context, now, &account_subject, "invalid_credentials")
        })?;
        return Err(AuthError::InvalidCredentials);
    };

    let context = AuditContext {
        actor_id: Some(user.id),
        ..context
    };
    if user.status != UserStatus::Active {
        write_transaction(conn, |conn| {
            audit_refusal(conn, &context, now, &account_subject, "account_disabled")
        })?;
        return Err(AuthError::AccountDisabled);
    }

    write_transaction(conn, |conn| {
        login_failures::clear(conn, &account_subject)?;
        let session = sessions::create(
            conn,
            &user,
            &settings.sessions,
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
            json!({ "method": "local", "password_change_required": user.must_change_password }),
        )?;
        Ok(LoginSuccess {
            user: user.clone(),
            session,
        })
    })
}

/// When the caller may try again, if either its account or its address is over the limit.
fn throttled_until(
    conn: &mut DbConnection,
    settings: &AuthSettings,
    now: Timestamp,
    account_subject: &str,
    address_subject: Option<&str>,
) -> Result<Option<Timestamp>, AuthError> {
    let throttle = &settings.throttle;
    let since = now.minus(throttle.window);
    let mut checks = vec![(account_subject, throttle.max_failures_per_account)];
    if let Some(address) = address_subject {
        checks.push((address, throttle.max_failures_per_address));
    }
    let mut until = None;
    for (subject, limit) in checks {
        let (failures, oldest) = login_failures::recent(conn, subject, since)?;
        if let Some(retry_at) = LoginThrottle::retry_at(limit, failures, oldest, throttle.window) {
            until = until.max(Some(retry_at));
        }
    }
    Ok(until)
}

fn audit_refusal(
    conn: &mut DbConnection,
    context: &AuditContext,
    now: Timestamp,
    account_subject: &str,
    reason: &str,
) -> Result<(), AuthError> {
    audit(
        conn,
        context,
        now,
        "auth.login",
        Some((
            "account",
            account_subject.trim_start_matches("account:").to_owned(),
        )),
        AuditOutcome::Failure,
        json!({ "method": "local", "reason": reason }),
    )?;
    Ok(())
}
