//! What can go wrong in messaging, and how each maps to an API error code.

use conclave_api::ApiError;
use conclave_core::{ErrorCode, ValidationError};
use conclave_crypto::{DecryptError, RandomnessUnavailable};
use conclave_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum MessagingError {
    /// The room or item does not exist, or the caller is not a member.
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PolicyViolation(String),
    #[error("{0}")]
    TooLarge(String),
    /// Over a rate limit; retry after the duration.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: std::time::Duration,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Stored ciphertext did not open: a wrong master key, tampering, or a moved row.
    #[error("stored content failed to decrypt: {0}")]
    Decrypt(#[from] DecryptError),
    #[error("master key `{0}` is not loaded")]
    MissingMasterKey(String),
    #[error(transparent)]
    Randomness(#[from] RandomnessUnavailable),
    #[error("attachment storage: {0}")]
    Storage(#[from] std::io::Error),
}

impl From<conclave_core::PolicyError> for MessagingError {
    fn from(err: conclave_core::PolicyError) -> Self {
        match err {
            conclave_core::PolicyError::Violation(message) => {
                MessagingError::PolicyViolation(message)
            }
            conclave_core::PolicyError::Invalid(message) => {
                MessagingError::invalid("policy", message)
            }
        }
    }
}

impl From<conclave_policy::PolicyServiceError> for MessagingError {
    fn from(err: conclave_policy::PolicyServiceError) -> Self {
        match err {
            conclave_policy::PolicyServiceError::Policy(policy) => policy.into(),
            conclave_policy::PolicyServiceError::Store(store) => MessagingError::Store(store),
            corrupt => MessagingError::Store(StoreError::Corrupt(corrupt.to_string())),
        }
    }
}

impl MessagingError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid(ValidationError::new(field, message))
    }

    /// Whether this refuses the request (it is about what was asked: not found, not
    /// allowed, invalid), as opposed to a failure of the server (database, keys, storage)
    /// that says nothing about the request. A batch of sends refuses one request alone,
    /// but rolls back on a failure.
    pub fn is_a_refusal(&self) -> bool {
        match self {
            MessagingError::NotFound
            | MessagingError::Forbidden(_)
            | MessagingError::Invalid(_)
            | MessagingError::Conflict(_)
            | MessagingError::PolicyViolation(_)
            | MessagingError::TooLarge(_)
            | MessagingError::RateLimited { .. } => true,
            MessagingError::Store(_)
            | MessagingError::Decrypt(_)
            | MessagingError::MissingMasterKey(_)
            | MessagingError::Randomness(_)
            | MessagingError::Storage(_) => false,
        }
    }
}

impl From<MessagingError> for ApiError {
    fn from(err: MessagingError) -> Self {
        let message = err.to_string();
        match err {
            MessagingError::NotFound => ApiError::not_found(),
            MessagingError::Forbidden(_) => ApiError::new(ErrorCode::Forbidden, message),
            MessagingError::Invalid(_) => ApiError::new(ErrorCode::InvalidInput, message),
            MessagingError::Conflict(_) => ApiError::new(ErrorCode::Conflict, message),
            MessagingError::PolicyViolation(_) => {
                ApiError::new(ErrorCode::PolicyViolation, message)
            }
            MessagingError::TooLarge(_) => ApiError::new(ErrorCode::PayloadTooLarge, message),
            MessagingError::RateLimited { retry_after, .. } => {
                ApiError::new(ErrorCode::RateLimited, message).with_retry_after(retry_after)
            }
            MessagingError::Store(StoreError::Unavailable(cause)) => {
                tracing::warn!(error = %cause, "database unavailable");
                ApiError::unavailable("the database is unavailable; retry shortly")
            }
            MessagingError::Store(StoreError::Conflict(_)) => ApiError::new(
                ErrorCode::Conflict,
                "the change conflicts with existing data",
            ),
            MessagingError::Storage(ref io) if io.kind() == std::io::ErrorKind::StorageFull => {
                tracing::error!(error = %io, "attachment storage is full");
                ApiError::unavailable("attachment storage is full; nothing was stored")
            }
            // Decryption failures are reported as errors, never as garbage text, and
            // logged so an operator can find a wrong key or tampered row.
            other => ApiError::internal(&other),
        }
    }
}
