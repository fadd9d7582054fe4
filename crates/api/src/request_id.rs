//! Request ids and request spans: every request gets an id (its trace id), which is in
//! the `x-request-id` response header, in the request's tracing span (so in every log line
//! within it), and in the body of every error response; the span carries OpenTelemetry's
//! HTTP attributes, and each request is counted in the live metrics. Errors produced outside Conclave's handlers (actix's own 404, 405, a
//! payload error) are rewritten into the one JSON error shape here too.

use crate::error::{ErrorBody, ErrorDetail, PendingErrorBody, code_for_status};
use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::{Error, HttpMessage, HttpResponse};
use futures_util::future::{LocalBoxFuture, Ready, ready};
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::{TraceContextExt, TraceId};
use std::rc::Rc;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

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
        // The route pattern, not the path: bounded for metrics, and ids stay out of names.
        let route = req
            .match_pattern()
            .unwrap_or_else(|| "unmatched".to_owned());
        let method = req.method().to_string();
        let span = tracing::info_span!(
            "http_request",
            otel.name = %format_args!("{method} {route}"),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            request_id = tracing::field::Empty,
            method = %method,
            path = %req.path(),
            http.route = %route,
            status = tracing::field::Empty,
        );
        let request_id = trace_id_of(&span, req.headers());
        span.record("request_id", request_id.as_str());
        req.extensions_mut().insert(RequestId(request_id.clone()));
        let service = Rc::clone(&self.service);
        Box::pin(
            async move {
                let started = std::time::Instant::now();
                // Handlers' and extractors' errors arrive as responses; this middleware wraps
                // all others, so nothing inside it returns a bare `Err`.
                let response = service.call(req).await?;
                let status = response.status();
                let span = tracing::Span::current();
                span.record("status", status.as_u16());
                if status.is_server_error() {
                    span.record("otel.status_code", "ERROR");
                }
                let elapsed = started.elapsed();
                conclave_metrics::http_request(&method, &route, status.as_u16(), elapsed);
                tracing::info!(
                    status = status.as_u16(),
                    elapsed_ms = elapsed.as_secs_f64() * 1000.0,
                    "request finished"
                );
                Ok(finish(response, &request_id))
            }
            .instrument(span),
        )
    }
}

/// The request's id: its W3C trace id, so an error report leads to the trace. A caller's
/// `traceparent` header joins its trace when OpenTelemetry export is on; with export off
/// the span has no trace and a random id of the same form (32 hex digits) stands in.
fn trace_id_of(span: &tracing::Span, headers: &HeaderMap) -> String {
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    });
    // Fails only when no OpenTelemetry layer is installed (export off).
    let _ = span.set_parent(parent);
    let trace_id = span.context().span().span_context().trace_id();
    if trace_id == TraceId::INVALID {
        uuid::Uuid::new_v4().simple().to_string()
    } else {
        trace_id.to_string()
    }
}

/// Reads propagation headers (`traceparent`, `tracestate`) from a request.
struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
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
