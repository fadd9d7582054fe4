//! The stable, machine-readable codes of every error the API returns. Clients branch on
//! these; they never change meaning once released. The HTTP status each maps to is decided
//! in one place, `conclave-api`.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request body is not well-formed (JSON syntax, encoding).
    MalformedRequest,
    /// The request is well-formed but a field is missing, of the wrong type, or invalid.
    InvalidInput,
    /// No valid session accompanies the request.
    Unauthenticated,
    /// The username or password is wrong.
    InvalidCredentials,
    /// The session is valid but the caller's roles do not allow the action.
    Forbidden,
    /// The account is suspended or deprovisioned.
    AccountDisabled,
    /// The account must change its password before doing anything else.
    PasswordChangeRequired,
    /// The resource does not exist, or the caller may not know that it does.
    NotFound,
    /// The HTTP method is not allowed on this resource.
    MethodNotAllowed,
    /// The request conflicts with the current state (a duplicate, a last admin).
    Conflict,
    /// The request body is larger than allowed.
    PayloadTooLarge,
    /// The request body's content type is not accepted.
    UnsupportedMediaType,
    /// The client was too slow sending its request (headers or body); the connection is
    /// closed.
    RequestTimeout,
    /// An admin or compliance policy forbids the action.
    PolicyViolation,
    /// Too many requests; retry after the `Retry-After` header's seconds.
    RateLimited,
    /// A dependency (the database, the directory) is unavailable; retry later.
    Unavailable,
    /// The LDAP directory or the OpenID Connect provider cannot be reached (or did not
    /// answer in time); retry later.
    DirectoryUnavailable,
    /// An unexpected server fault; the request id finds it in the logs.
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedRequest => "malformed_request",
            Self::InvalidInput => "invalid_input",
            Self::Unauthenticated => "unauthenticated",
            Self::InvalidCredentials => "invalid_credentials",
            Self::Forbidden => "forbidden",
            Self::AccountDisabled => "account_disabled",
            Self::PasswordChangeRequired => "password_change_required",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict => "conflict",
            Self::PayloadTooLarge => "payload_too_large",
            Self::RequestTimeout => "request_timeout",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::PolicyViolation => "policy_violation",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "unavailable",
            Self::DirectoryUnavailable => "directory_unavailable",
            Self::Internal => "internal",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_name_matches_as_str() {
        for code in [
            ErrorCode::MalformedRequest,
            ErrorCode::InvalidInput,
            ErrorCode::Unauthenticated,
            ErrorCode::InvalidCredentials,
            ErrorCode::Forbidden,
            ErrorCode::AccountDisabled,
            ErrorCode::PasswordChangeRequired,
            ErrorCode::NotFound,
            ErrorCode::MethodNotAllowed,
            ErrorCode::Conflict,
            ErrorCode::PayloadTooLarge,
            ErrorCode::UnsupportedMediaType,
            ErrorCode::RequestTimeout,
            ErrorCode::PolicyViolation,
            ErrorCode::RateLimited,
            ErrorCode::Unavailable,
            ErrorCode::DirectoryUnavailable,
            ErrorCode::Internal,
        ] {
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, serde_json::Value::from(code.as_str()));
        }
    }
}
