//! Sessions: creating one at login, resolving a bearer token to the account behind it,
//! and ending sessions (logout, revocation, suspension).

use crate::audit;
use crate::error::AuthError;
use conclave_core::{AuditContext, AuditOutcome, SessionId, SessionPolicy, Timestamp, UserStatus};
use conclave_crypto::SessionToken;
use conclave_store::sessions::{self as session_store, NewSession, SessionRecord};
use conclave_store::users::UserRecord;
use conclave_store::{DbConnection, write_transaction};
use serde_json::json;

/// The account and session behind an authenticated request.
#[derive(Clone, Debug)]
pub struct Principal {
    pub user: UserRecord,
    pub session_id: SessionId,
}

impl Principal {
    /// The audit context for actions this principal takes.
    pub fn audit_context(
        &self,
        client_addr: Option<String>,
        api_path: Option<String>,
    ) -> AuditContext {
        AuditContext {
            actor_id: Some(self.user.id),
            actor_name: self.user.username.to_string(),
            client_addr,
            api_path,
        }
    }
}

/// A freshly created session: the token is shown to the client once and never again.
#[derive(Debug)]
pub struct NewSessionGrant {
    pub session_id: SessionId,
    pub token: SessionToken,
    pub expires_at: Timestamp,
}

/// Creates a session for `user`. The caller owns the transaction and the audit event.
/// The account's limits shorten the configured lifetime and idle timeout, never lengthen.
pub(crate) fn create(
    conn: &mut DbConnection,
    user: &UserRecord,
    policy: &SessionPolicy,
    limits: &crate::AccountLimits,
    now: Timestamp,
    client_addr: Option<&str>,
    user_agent: Option<&str>,
) -> Result<NewSessionGrant, AuthError> {
    let token = SessionToken::generate()?;
    let lifetime = limits
        .session_lifetime
        .map_or(policy.absolute_lifetime, |l| {
            l.min(policy.absolute_lifetime)
        });
    let idle_timeout_seconds = limits
        .idle_timeout
        .filter(|idle| *idle < policy.idle_timeout)
        .map(|idle| i64::try_from(idle.as_secs()).unwrap_or(i64::MAX));
    let grant = NewSessionGrant {
        session_id: SessionId::new(),
        expires_at: now.plus(lifetime),
        token,
    };
    session_store::insert(
        conn,
        &NewSession {
            id: grant.session_id,
            user_id: user.id,
            token_hash: grant.token.hash(),
            now,
            expires_at: grant.expires_at,
            client_addr,
            // Bounded: the header is client-controlled.
            user_agent: user_agent.map(|ua| truncate(ua, 256)),
            idle_timeout_seconds,
        },
    )?;
    Ok(grant)
}

/// Resolves a token to a live session of an active account, refreshing its last-seen time
/// at most every [`SessionPolicy::TOUCH_INTERVAL`].
pub fn authenticate(
    conn: &mut DbConnection,
    token: &SessionToken,
    policy: &SessionPolicy,
    now: Timestamp,
) -> Result<Principal, AuthError> {
    let (session, user) = session_store::find_with_user_by_token_hash(conn, &token.hash())?
        .ok_or(AuthError::Unauthenticated)?;
    if !is_live(&session, policy, now) || user.status != UserStatus::Active {
        return Err(AuthError::Unauthenticated);
    }
    if SessionPolicy::needs_touch(session.last_seen_at, now) {
        session_store::touch(conn, session.id, now)?;
    }
    Ok(Principal {
        user,
        session_id: session.id,
    })
}

/// Whether a session is still live and its account active (for long-lived connections,
/// which authenticated once). Counts as activity for the idle timeout.
pub fn still_valid(
    conn: &mut DbConnection,
    session_id: SessionId,
    policy: &SessionPolicy,
    now: Timestamp,
) -> Result<bool, AuthError> {
    let Some((session, status)) = session_store::find_with_user_status(conn, session_id)? else {
        return Ok(false);
    };
    if !is_live(&session, policy, now) {
        return Ok(false);
    }
    let active = status == UserStatus::Active;
    if active && SessionPolicy::needs_touch(session.last_seen_at, now) {
        session_store::touch(conn, session.id, now)?;
    }
    Ok(active)
}

fn is_live(session: &SessionRecord, policy: &SessionPolicy, now: Timestamp) -> bool {
    // The idle timeout the account's policy set at login, if shorter than the configured.
    let policy = SessionPolicy {
        idle_timeout: session
            .idle_timeout_seconds
            .map_or(policy.idle_timeout, |seconds| {
                std::time::Duration::from_secs(seconds.max(0) as u64)
            }),
        ..*policy
    };
    session.revoked_at.is_none()
        && now < session.expires_at
        && policy.is_alive(session.created_at, session.last_seen_at, now)
}

/// Ends the caller's own session; returns how it was opened (`None`: a local password;
/// `oidc:<id>`, `ldap`), so the caller can end a single sign-on session too.
pub fn logout(
    conn: &mut DbConnection,
    principal: &Principal,
    context: &AuditContext,
    now: Timestamp,
) -> Result<Option<String>, AuthError> {
    write_transaction(conn, |conn| {
        let provider = session_store::find(conn, principal.session_id)?
            .and_then(|session| session.auth_provider);
        session_store::revoke(conn, principal.session_id, now, "logout")?;
        audit(
            conn,
            context,
            now,
            "auth.logout",
            Some(("session", principal.session_id.to_string())),
            AuditOutcome::Success,
            json!({ "method": provider.as_deref().unwrap_or("local") }),
        )?;
        Ok(provider)
    })
}

/// The caller's live sessions, newest first.
pub fn list_mine(
    conn: &mut DbConnection,
    principal: &Principal,
    policy: &SessionPolicy,
    now: Timestamp,
) -> Result<Vec<SessionRecord>, AuthError> {
    Ok(
        session_store::list_unexpired_for_user(conn, principal.user.id, now)?
            .into_iter()
            .filter(|session| is_live(session, policy, now))
            .collect(),
    )
}

/// Ends one of the caller's own sessions. Another user's session id is "not found".
pub fn revoke_mine(
    conn: &mut DbConnection,
    principal: &Principal,
    session_id: SessionId,
    context: &AuditContext,
    now: Timestamp,
) -> Result<(), AuthError> {
    write_transaction(conn, |conn| {
        let session = session_store::find(conn, session_id)?
            .filter(|session| session.user_id == principal.user.id && session.revoked_at.is_none())
            .ok_or(AuthError::NotFound)?;
        session_store::revoke(conn, session.id, now, "revoked by owner")?;
        audit(
            conn,
            context,
            now,
            "auth.session_revoke",
            Some(("session", session.id.to_string())),
            AuditOutcome::Success,
            json!({ "user_id": principal.user.id }),
        )?;
        Ok(())
    })
}

fn truncate(text: &str, max_chars: usize) -> &str {
    match text.char_indices().nth(max_chars) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}
