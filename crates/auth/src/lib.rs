//! Conclave's identity service: local (break-glass) accounts with argon2id password
//! hashes, sessions with hashed bearer tokens, roles, failed-login throttling, the first
//! admin of a new installation, and the HTTP routes and role-checking extractors for all
//! of it. Single sign-on (OpenID Connect, LDAP) joins here later.
//!
//! Invariants: services are plain functions over a `DbConnection` that own their
//! transaction and append the audit event that records their change inside it; the HTTP
//! layer ([`http`]) only parses, calls and maps errors; no password or token is logged.

pub mod accounts;
pub mod error;
pub mod extract;
pub mod http;
pub mod identity;
pub mod login;
pub mod password;
pub mod sessions;
pub mod settings;
pub mod throttle;
pub mod wire;

pub use error::AuthError;
pub use extract::{AdminUser, Auditor, AuthUser, ComplianceOfficer, SessionUser};
pub use sessions::Principal;
pub use settings::{
    AccountLimits, AccountPolicy, AuthSettings, AuthState, LoginRate, Revocations, Revoked,
};

use conclave_core::{AuditContext, AuditOutcome, NewAuditEvent, Timestamp};
use conclave_store::{DbConnection, StoreError};

/// The bounded `method` label of a failed sign-in: `local`, `ldap` or `oidc` (whatever
/// the provider's name).
fn login_method(details: &serde_json::Value) -> &'static str {
    match details.get("method").and_then(serde_json::Value::as_str) {
        Some("local") => "local",
        Some("ldap") => "ldap",
        _ => "oidc",
    }
}

/// Appends an audit event; every service action in this crate records itself through here.
pub(crate) fn audit(
    conn: &mut DbConnection,
    context: &AuditContext,
    now: Timestamp,
    action: &'static str,
    target: Option<(&'static str, String)>,
    outcome: AuditOutcome,
    details: serde_json::Value,
) -> Result<(), StoreError> {
    if action == "auth.login" && matches!(outcome, AuditOutcome::Failure) {
        conclave_metrics::login_failed(login_method(&details));
    }
    let (target_kind, target_id) = match target {
        Some((kind, id)) => (Some(kind), Some(id)),
        None => (None, None),
    };
    let event = NewAuditEvent {
        action,
        target_kind,
        target_id,
        outcome,
        details: details.to_string(),
    };
    conclave_store::audit::append(conn, context, &event, now).map(drop)
}
