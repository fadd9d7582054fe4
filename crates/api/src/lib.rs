//! The HTTP edge conventions every service shares: the one JSON error shape and the one
//! place error codes become HTTP statuses ([`error`]), request ids ([`request_id`]), and the
//! JSON, path and query extractor settings that turn bad input into that shape
//! ([`extract`]).
//!
//! Invariant: only this crate maps an [`conclave_core::ErrorCode`] to an HTTP status; a
//! client never sees an internal cause, only a code, a safe message and the request id.

pub mod body_timeout;
pub mod error;
pub mod extract;
pub mod request_id;

pub use body_timeout::BodyTimeout;
pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use request_id::{RequestId, RequestIdMiddleware};
