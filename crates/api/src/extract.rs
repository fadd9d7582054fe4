//! Extractor settings that answer bad input in the one error shape: malformed JSON is
//! 400 `malformed_request`, a well-formed body with a missing, unknown or mistyped field
//! is 422 `invalid_input` naming it, an oversize body is 413, a wrong content type 415,
//! a bad path or query parameter 404 or 400. [`Json`] is the request-body extractor
//! every handler uses: it also refuses a body that is not a JSON object, which serde would
//! otherwise read into a struct field by field (`[null, null]` as two absent fields).

use crate::error::ApiError;
use actix_web::dev::Payload;
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::{FromRequest, HttpRequest, web};
use conclave_core::ErrorCode;
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

/// A JSON request body that must be an object, read into `T`. Size, content type and
/// syntax are checked by `web::Json` with [`json_config`]'s answers.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Json<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// The body's value as `T`, or 422 naming why not.
pub fn object_body<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    if !value.is_object() {
        return Err(ApiError::new(
            ErrorCode::InvalidInput,
            "invalid request body: it must be a JSON object",
        ));
    }
    serde_json::from_value(value).map_err(|err| {
        ApiError::new(
            ErrorCode::InvalidInput,
            format!("invalid request body: {err}"),
        )
    })
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let value = web::Json::<serde_json::Value>::from_request(req, payload);
        Box::pin(async move {
            let web::Json(value) = value.await?;
            object_body(value).map(Json).map_err(Into::into)
        })
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Update {
        name: Option<String>,
        topic: Option<String>,
    }

    #[test]
    fn only_an_object_is_a_body() {
        for not_object in [
            json!([null, null]),
            json!(["a", "b"]),
            json!("x"),
            json!(null),
            json!(3),
        ] {
            let err = object_body::<Update>(not_object.clone()).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidInput, "{not_object}");
        }
        // serde alone reads a sequence into the struct: this is what the check prevents.
        assert!(serde_json::from_value::<Update>(json!([null, null])).is_ok());
        let update: Update = object_body(json!({"name": "n"})).unwrap();
        assert_eq!(update.name.as_deref(), Some("n"));
        let unknown = object_body::<Update>(json!({"nope": 1})).unwrap_err();
        assert!(unknown.message.contains("nope"), "{unknown}");
    }
}
