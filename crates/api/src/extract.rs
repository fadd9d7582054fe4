//! Extractor settings that answer bad input in the one error shape: malformed JSON is
//! 400 `malformed_request`, a well-formed body with a missing, unknown or mistyped field
//! is 422 `invalid_input` naming it, an oversize body is 413, a wrong content type 415,
//! a bad path or query parameter 404 or 400.

use crate::error::ApiError;
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::web;
use conclave_core::ErrorCode;

pub fn json_config(limit_bytes: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit_bytes)
        .error_handler(|err, _req| json_error(&err).into())
}

pub fn json_error(err: &JsonPayloadError) -> ApiError {
    match err {
        JsonPayloadError::OverflowKnownLength { limit, .. }
        | JsonPayloadError::Overflow { limit } => ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("request body exceeds {limit} bytes"),
        ),
        JsonPayloadError::ContentType => ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "request body must be JSON (Content-Type: application/json)",
        ),
        JsonPayloadError::Deserialize(inner) if inner.is_data() => ApiError::new(
            ErrorCode::InvalidInput,
            format!("invalid request body: {inner}"),
        ),
        JsonPayloadError::Deserialize(inner) => ApiError::new(
            ErrorCode::MalformedRequest,
            format!("malformed JSON: {inner}"),
        ),
        other => ApiError::new(
            ErrorCode::MalformedRequest,
            format!("unreadable request body: {other}"),
        ),
    }
}

/// A path segment that does not parse (a malformed id) names nothing that exists: 404.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err: PathError, _req| {
        tracing::debug!(error = %err, "unparsable path parameter");
        ApiError::not_found().into()
    })
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err: QueryPayloadError, _req| {
        ApiError::new(
            ErrorCode::InvalidInput,
            format!("invalid query string: {err}"),
        )
        .into()
    })
}

/// Applies the extractor settings above to a scope or app.
pub fn configure(cfg: &mut web::ServiceConfig, json_limit_bytes: usize) {
    cfg.app_data(json_config(json_limit_bytes))
        .app_data(path_config())
        .app_data(query_config());
}
