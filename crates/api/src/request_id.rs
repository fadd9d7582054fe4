//! Request ids: every request gets one (a fresh UUID), it is in the `x-request-id`
//! response header, in the request's tracing span, and in the body of every error
//! response. Errors produced outside Conclave's handlers (actix's own 404, 405, a
//! payload error) are rewritten into the one JSON error shape here too.

use crate::error::{ErrorBody, ErrorDetail, PendingErrorBody, code_for_status};
use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::{Error, HttpMessage, HttpResponse};
use futures_util::future::{LocalBoxFuture, Ready, ready};
use std::rc::Rc;
use tracing::Instrument;

pub static REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The current request's id, available from request extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(pub String);

/// Assigns request ids, opens the request span, and enforces the error shape.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestIdMiddleware;

impl<S, B> Transform<S, ServiceRequest> for RequestIdMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B, BoxBody>>;
    type Error = Error;
    type Transform = RequestIdService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RequestIdService {
            service: Rc::new(service),
        }))
    }
}

pub struct RequestIdService<S> {
    service: Rc<S>,
}

impl<S, B> Service<ServiceRequest> for RequestIdService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B, BoxBody>>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let request_id = uuid::Uuid::new_v4().to_string();
        req.extensions_mut().insert(RequestId(request_id.clone()));
        let span = tracing::info_span!(
            "http_request",
            request_id = %request_id,
            method = %req.method(),
            path = %req.path(),
            status = tracing::field::Empty,
        );
        let service = Rc::clone(&self.service);
        Box::pin(
            async move {
                let started = std::time::Instant::now();
                // Handlers' and extractors' errors arrive as responses; this middleware wraps
                // all others, so nothing inside it returns a bare `Err`.
                let response = service.call(req).await?;
                let status = response.status();
                tracing::Span::current().record("status", status.as_u16());
                tracing::info!(
                    status = status.as_u16(),
                    elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                    "request finished"
                );
                Ok(finish(response, &request_id))
            }
            .instrument(span),
        )
    }
}

fn finish<B: MessageBody + 'static>(
    mut response: ServiceResponse<B>,
    request_id: &str,
) -> ServiceResponse<EitherBody<B, BoxBody>> {
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response
            .headers_mut()
            .insert(REQUEST_ID_HEADER.clone(), value);
    }
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response.map_into_left_body();
    }
    let pending = response
        .response()
        .extensions()
        .get::<PendingErrorBody>()
        .cloned();
    let (code, message) = match pending {
        Some(pending) => (pending.code, pending.message),
        None => {
            let code = code_for_status(status);
            let message = status.canonical_reason().unwrap_or("error").to_lowercase();
            (code, message)
        }
    };
    let body = ErrorBody {
        error: ErrorDetail {
            code,
            message,
            request_id: request_id.to_owned(),
        },
    };
    let (req, old) = response.into_parts();
    let mut new = HttpResponse::build(status);
    for (name, value) in old.headers() {
        if name != header::CONTENT_LENGTH && name != header::CONTENT_TYPE {
            new.append_header((name.clone(), value.clone()));
        }
    }
    let new = new.json(body);
    ServiceResponse::new(req, new).map_into_right_body()
}
