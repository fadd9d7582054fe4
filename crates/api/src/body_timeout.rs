//! Slow-client protection for request bodies: a client that starts a body and then stops
//! sending (a slow-POST attack holding a connection and a worker's buffer) gets 408
//! `request_timeout` and its connection closed. The limit is the longest pause between
//! two pieces of the body, not the whole upload, so a large file over a slow but steady
//! link still goes through. Headers are covered by actix's `client_request_timeout`.
//! WebSocket handshakes are left alone: their "body" is the socket's frames.

use crate::error::ApiError;
use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::error::PayloadError;
use actix_web::http::{ConnectionType, header};
use actix_web::rt::time::{Instant, Sleep, sleep};
use actix_web::{Error, HttpMessage, ResponseError, web::Bytes};
use conclave_core::ErrorCode;
use futures_util::Stream;
use futures_util::future::{LocalBoxFuture, Ready, ready};
use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

/// Wraps every request body with an idle timeout.
#[derive(Clone, Copy, Debug)]
pub struct BodyTimeout {
    idle: Duration,
}

impl BodyTimeout {
    pub fn new(idle: Duration) -> Self {
        Self { idle }
    }
}

impl<S, B> Transform<S, ServiceRequest> for BodyTimeout
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B, BoxBody>>;
    type Error = Error;
    type Transform = BodyTimeoutService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, ()>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(BodyTimeoutService {
            service: Rc::new(service),
            idle: self.idle,
        }))
    }
}

pub struct BodyTimeoutService<S> {
    service: Rc<S>,
    idle: Duration,
}

fn is_websocket_handshake(req: &ServiceRequest) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The error every timed-out body gets, whichever handler was reading it.
pub fn timeout_error(idle: Duration) -> ApiError {
    ApiError::new(
        ErrorCode::RequestTimeout,
        format!(
            "the request body stalled for more than {} s; the connection is closed",
            idle.as_secs().max(1)
        ),
    )
}

impl<S, B> Service<ServiceRequest> for BodyTimeoutService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B, BoxBody>>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Error>>;

    forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        if is_websocket_handshake(&req) {
            let call = self.service.call(req);
            return Box::pin(async move { Ok(call.await?.map_into_left_body()) });
        }
        let stalled = Rc::new(Cell::new(false));
        let inner = req.take_payload();
        req.set_payload(Payload::Stream {
            payload: Box::pin(IdlePayload {
                inner,
                idle: self.idle,
                timer: Box::pin(sleep(self.idle)),
                stalled: Rc::clone(&stalled),
            }),
        });
        let idle = self.idle;
        let call = self.service.call(req);
        Box::pin(async move {
            let response = call.await?;
            if !stalled.get() {
                return Ok(response.map_into_left_body());
            }
            // Whatever the reader made of the cut-off body (400, 422), the cause is the
            // client's silence: say so, and do not keep the connection.
            let (req, _) = response.into_parts();
            let mut timed_out = timeout_error(idle).error_response();
            timed_out
                .head_mut()
                .set_connection_type(ConnectionType::Close);
            Ok(ServiceResponse::new(req, timed_out).map_into_right_body())
        })
    }
}

/// A body stream that fails once no piece has arrived for `idle`.
struct IdlePayload {
    inner: Payload,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    stalled: Rc<Cell<bool>>,
}

impl Stream for IdlePayload {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.stalled.get() {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(item) => {
                let deadline = Instant::now() + this.idle;
                this.timer.as_mut().reset(deadline);
                Poll::Ready(item)
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.stalled.set(true);
                    Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "request body stalled",
                    )))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{StreamExt, stream};

    type Piece = Result<Bytes, PayloadError>;

    fn idle_payload(
        inner: impl Stream<Item = Piece> + 'static,
        idle: Duration,
    ) -> (IdlePayload, Rc<Cell<bool>>) {
        let stalled = Rc::new(Cell::new(false));
        let payload = IdlePayload {
            inner: Payload::Stream {
                payload: Box::pin(inner),
            },
            idle,
            timer: Box::pin(sleep(idle)),
            stalled: Rc::clone(&stalled),
        };
        (payload, stalled)
    }

    #[actix_web::test]
    async fn a_body_that_stalls_fails_with_a_timeout_and_ends() {
        // One piece, then silence.
        let inner = stream::iter([Ok(Bytes::from_static(b"{\"a\":"))]).chain(stream::pending());
        let (mut payload, stalled) = idle_payload(inner, Duration::from_millis(100));
        assert_eq!(payload.next().await.unwrap().unwrap(), "{\"a\":");
        let started = std::time::Instant::now();
        let err = payload.next().await.unwrap().unwrap_err();
        assert!(
            matches!(err, PayloadError::Io(ref io) if io.kind() == std::io::ErrorKind::TimedOut)
        );
        assert!(started.elapsed() >= Duration::from_millis(90));
        assert!(stalled.get());
        assert!(
            payload.next().await.is_none(),
            "nothing more after the timeout"
        );
    }

    #[actix_web::test]
    async fn a_slow_but_steady_body_is_not_cut_off() {
        // Five pieces 60 ms apart: 300 ms in all, longer than the idle limit, but never
        // 150 ms without a piece.
        let inner = stream::unfold(0, |n| async move {
            if n == 5 {
                return None;
            }
            sleep(Duration::from_millis(60)).await;
            Some((Ok(Bytes::from_static(b"x")), n + 1))
        });
        let (payload, stalled) = idle_payload(inner, Duration::from_millis(150));
        let pieces: Vec<Piece> = payload.collect().await;
        assert_eq!(pieces.len(), 5);
        assert!(pieces.iter().all(Result::is_ok));
        assert!(!stalled.get());
    }

    #[test]
    fn the_timeout_error_is_408_request_timeout() {
        let response = timeout_error(Duration::from_secs(30)).error_response();
        assert_eq!(
            response.status(),
            actix_web::http::StatusCode::REQUEST_TIMEOUT
        );
    }
}
