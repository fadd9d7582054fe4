//! Opening a session for an account a provider vouched for, and LDAP password login.

use super::ldap::{Directory, DirectoryError};
use super::provision::{ProviderRules, provision};
use super::sync::PROVIDER as LDAP_PROVIDER;
use crate::audit;
use crate::error::AuthError;
use crate::login::{LoginAttempt, LoginSuccess};
use crate::sessions;
use crate::settings::AuthSettings;
use crate::throttle::{self, Subjects};
use conclave_core::{AuditContext, AuditOutcome, Timestamp, UserStatus};
use conclave_store::sessions as session_store;
use conclave_store::users::{AuthSource, UserRecord};
use conclave_store::{Db, DbConnection, write_transaction};
use serde_json::json;

/// Where a login came from, for the session and the audit event.
#[derive(Clone, Debug, Default)]
pub struct Origin {
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
    pub api_path: Option<String>,
}

impl Origin {
    pub fn context(&self, actor_name: &str) -> AuditContext {
        AuditContext {
            actor_id: None,
            actor_name: actor_name
                .chars()
                .filter(|c| !c.is_control())
                .take(128)
                .collect(),
            client_addr: self.client_addr.clone(),
            api_path: self.api_path.clone(),
        }
    }
}

/// Opens a session for `user` inside the caller's transaction and audits the login.
/// A refusal (the account is not active) is audited and returned as `Ok(Err(..))` so the
/// caller commits the audit event.
pub(crate) fn open_session(
    conn: &mut DbConnection,
    settings: &AuthSettings,
    context: &AuditContext,
    now: Timestamp,
    user: &UserRecord,
    provider: &str,
    origin: &Origin,
) -> Result<Result<LoginSuccess, AuthError>, AuthError> {
    let context = AuditContext {
        actor_id: Some(user.id),
        actor_name: user.username.to_string(),
        ..context.clone()
    };
    if user.status != UserStatus::Active {
        audit(
            conn,
            &context,
            now,
            "auth.login",
            Some(("account", user.username.to_string())),
            AuditOutcome::Failure,
            json!({ "method": provider, "reason": "account_disabled", "status": user.status }),
        )?;
        return Ok(Err(AuthError::AccountDisabled));
    }
    let limits = settings.limits_for(conn, user.id)?;
    let session = sessions::create(
        conn,
        user,
        &settings.sessions,
        &limits,
        now,
        origin.client_addr.as_deref(),
        origin.user_agent.as_deref(),
    )?;
    session_store::set_auth_provider(conn, session.session_id, provider)?;
    audit(
        conn,
        &context,
        now,
        "auth.login",
        Some(("session", session.session_id.to_string())),
        AuditOutcome::Success,
        json!({ "method": provider }),
    )?;
    Ok(Ok(LoginSuccess {
        user: user.clone(),
        session,
    }))
}

fn refuse(
    conn: &mut DbConnection,
    context: &AuditContext,
    now: Timestamp,
    account: &str,
    method: &str,
    reason: &str,
) -> Result<(), AuthError> {
    audit(
        conn,
        context,
        now,
        "auth.login",
        Some(("account", account.to_owned())),
        AuditOutcome::Failure,
        json!({ "method": method, "reason": reason }),
    )?;
    Ok(())
}

/// LDAP password login: throttled like local login, then search-and-bind against the
/// directory (holding no database connection), then provisioning and a session.
pub async fn login_ldap(
    db: &Db,
    settings: &AuthSettings,
    directory: &Directory,
    now: Timestamp,
    attempt: &LoginAttempt<'_>,
) -> Result<LoginSuccess, AuthError> {
    if !directory.config.login {
        return Err(AuthError::NotFound);
    }
    crate::login::check_attempt_rate(settings, attempt, now)?;
    let username = attempt.username.trim().to_owned();
    let origin = Origin {
        client_addr: attempt.client_addr.map(str::to_owned),
        user_agent: attempt.user_agent.map(str::to_owned),
        api_path: attempt.api_path.map(str::to_owned),
    };
    let context = origin.context(&username);
    let subjects = Subjects::new(&username.to_lowercase(), attempt.client_addr);

    // (1) Throttle and count.
    let (s, ctx, subj, name) = (
        settings.clone(),
        context.clone(),
        subjects.clone(),
        username.clone(),
    );
    let counted = db
        .run(move |conn| {
            write_transaction(conn, |conn| {
                match throttle::begin_attempt(conn, &s, now, &subj, u32::MAX) {
                    Ok(counted) => Ok(Ok(counted)),
                    Err(refusal) => {
                        refuse(conn, &ctx, now, &name, LDAP_PROVIDER, "throttled")?;
                        Ok::<_, AuthError>(Err(refusal))
                    }
                }
            })
        })
        .await??;

    // (2) Ask the directory, holding no connection.
    let checked = directory.authenticate(&username, attempt.password).await;
    let entry = match checked {
        Ok(entry) => entry,
        Err(err) => {
            let reason = match &err {
                DirectoryError::InvalidCredentials => "invalid_credentials",
                DirectoryError::Unavailable(_) => "directory_unavailable",
            };
            let unavailable = matches!(err, DirectoryError::Unavailable(_));
            let (ctx, name, subj) = (context.clone(), username.clone(), subjects.clone());
            db.run(move |conn| {
                write_transaction(conn, |conn| {
                    // The directory's outage is not the person's failed attempt.
                    if unavailable {
                        throttle::succeeded(conn, &subj, counted)?;
                    }
                    refuse(conn, &ctx, now, &name, LDAP_PROVIDER, reason)
                })
            })
            .await?;
            return Err(err.into());
        }
    };
    let profile = directory.profile(&entry).map_err(|err| {
        AuthError::SsoFailed(format!(
            "the directory entry cannot become an account: {err}"
        ))
    });

    // (3) Provision and open the session.
    let (s, directory) = (settings.clone(), directory.clone());
    db.run(move |conn| {
        write_transaction(conn, |conn| {
            let profile = match profile {
                Ok(profile) => profile,
                Err(err) => {
                    refuse(
                        conn,
                        &context,
                        now,
                        &username,
                        LDAP_PROVIDER,
                        "unusable_entry",
                    )?;
                    return Ok(Err(err));
                }
            };
            throttle::succeeded(conn, &subjects, counted)?;
            let rules = ProviderRules {
                provider: LDAP_PROVIDER,
                source: AuthSource::Ldap,
                mappings: directory.mappings(),
                reactivate_deprovisioned: true,
            };
            let user = match provision(conn, &context, now, &rules, &profile) {
                Ok((user, _)) => user,
                Err(AuthError::Conflict(reason)) => {
                    refuse(
                        conn,
                        &context,
                        now,
                        &username,
                        LDAP_PROVIDER,
                        "username_conflict",
                    )?;
                    return Ok(Err(AuthError::Conflict(reason)));
                }
                Err(other) => return Err(other),
            };
            open_session(conn, &s, &context, now, &user, LDAP_PROVIDER, &origin)
        })
    })
    .await?
}
