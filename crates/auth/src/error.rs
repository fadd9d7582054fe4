//! What can go wrong in the identity service, and how each maps to an API error code.

use conclave_api::ApiError;
use conclave_core::{ErrorCode, ValidationError};
use conclave_crypto::RandomnessUnavailable;
use conclave_store::StoreError;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error("this account is suspended or deprovisioned")]
    AccountDisabled,
    #[error("too many failed logins; retry in {} s", retry_after.as_secs())]
    Throttled { retry_after: Duration },
    #[error("too many login attempts; retry in {} s", retry_after.as_secs().max(1))]
    TooManyAttempts { retry_after: Duration },
    #[error("a valid session is required")]
    Unauthenticated,
    #[error("the password must be changed first (POST /api/v1/me/password)")]
    PasswordChangeRequired,
    #[error("this action requires the {0} role")]
    MissingRole(&'static str),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("password hashing failed: {0}")]
    Hashing(String),
    #[error(transparent)]
    Randomness(#[from] RandomnessUnavailable),
    /// The LDAP directory or the OpenID Connect provider did not answer (refused, timed
    /// out, TLS failed) or refused the service account. The message is safe to show.
    #[error("{0}")]
    DirectoryUnavailable(String),
    #[error("local password login is disabled; sign in through single sign-on")]
    LocalLoginDisabled,
    /// A single sign-on that could not be completed (bad or expired state, a token that
    /// failed verification, an error from the provider). The message is safe to show.
    #[error("single sign-on failed: {0}")]
    SsoFailed(String),
    /// A directory sync is already running (here or on another node).
    #[error("a directory sync is already running")]
    SyncRunning,
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        let message = err.to_string();
        match err {
            AuthError::InvalidCredentials => ApiError::new(ErrorCode::InvalidCredentials, message),
            AuthError::AccountDisabled => ApiError::new(ErrorCode::AccountDisabled, message),
            AuthError::Throttled { retry_after } | AuthError::TooManyAttempts { retry_after } => {
                ApiError::new(ErrorCode::RateLimited, message).with_retry_after(retry_after)
            }
            AuthError::Unauthenticated => ApiError::new(ErrorCode::Unauthenticated, message),
            AuthError::PasswordChangeRequired => {
                ApiError::new(ErrorCode::PasswordChangeRequired, message)
            }
            AuthError::MissingRole(_) => ApiError::new(ErrorCode::Forbidden, message),
            AuthError::NotFound => ApiError::not_found(),
            AuthError::Conflict(_) => ApiError::new(ErrorCode::Conflict, message),
            AuthError::Invalid(_) => ApiError::new(ErrorCode::InvalidInput, message),
            AuthError::Store(StoreError::Unavailable(cause)) => {
                tracing::warn!(error = %cause, "database unavailable");
                ApiError::unavailable("the database is unavailable; retry shortly")
            }
            AuthError::Store(StoreError::Conflict(_)) => ApiError::new(
                ErrorCode::Conflict,
                "the change conflicts with existing data",
            ),
            AuthError::Store(other) => ApiError::internal(&other),
            AuthError::Hashing(_) | AuthError::Randomness(_) => ApiError::internal(&message),
            AuthError::DirectoryUnavailable(_) => {
                ApiError::new(ErrorCode::DirectoryUnavailable, message)
            }
            AuthError::LocalLoginDisabled => ApiError::new(ErrorCode::Forbidden, message),
            AuthError::SsoFailed(_) => ApiError::new(ErrorCode::Unauthenticated, message),
            AuthError::SyncRunning => ApiError::new(ErrorCode::Conflict, message),
        }
    }
}
