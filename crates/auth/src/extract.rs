//! Request guards: the role an endpoint needs is in its handler's signature.
//!
//! - [`SessionUser`]: any live session, including one that must change its password first.
//! - [`AuthUser`]: a live session of an account that may act (password changed).
//! - [`AdminUser`]: an [`AuthUser`] holding the admin role.
//!
//! A token comes from `Authorization: Bearer …` or, for the browser, the HttpOnly
//! session cookie; a cookie-authenticated request that changes state must also carry the
//! session's CSRF token in `X-CSRF-Token`.

use crate::error::AuthError;
use crate::sessions::{self, Principal};
use crate::settings::AuthState;
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use conclave_api::ApiError;
use conclave_core::{AuditContext, ErrorCode, Role};
use conclave_crypto::SessionToken;
use futures_util::future::LocalBoxFuture;
use std::ops::Deref;

pub const SESSION_COOKIE: &str = "conclave_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The client's address as seen by this server.
pub fn client_addr(req: &HttpRequest) -> Option<String> {
    req.peer_addr().map(|addr| addr.ip().to_string())
}

/// The audit context of a request made by `principal`.
pub fn audit_context(req: &HttpRequest, principal: &Principal) -> AuditContext {
    principal.audit_context(client_addr(req), Some(req.path().to_owned()))
}

fn credential(req: &HttpRequest) -> Result<SessionToken, ApiError> {
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| ApiError::unauthenticated())?;
        let (scheme, token) = value
            .split_once(' ')
            .ok_or_else(ApiError::unauthenticated)?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(ApiError::unauthenticated());
        }
        return Ok(SessionToken::from_client(token.trim()));
    }
    let cookie = req
        .cookie(SESSION_COOKIE)
        .ok_or_else(ApiError::unauthenticated)?;
    let token = SessionToken::from_client(cookie.value());
    if !req.method().is_safe() {
        use subtle::ConstantTimeEq;
        let presented = req
            .headers()
            .get(CSRF_HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        let expected = token.csrf_token();
        if !bool::from(presented.ct_eq(expected.as_bytes())) {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "missing or wrong CSRF token (send the login response's csrf_token as X-CSRF-Token)",
            ));
        }
    }
    Ok(token)
}

async fn resolve(
    state: Option<web::Data<AuthState>>,
    token: Result<SessionToken, ApiError>,
) -> Result<Principal, ApiError> {
    let state =
        state.ok_or_else(|| ApiError::internal(&"AuthState is not registered as app data"))?;
    let token = token?;
    let now = state.clock.now();
    let policy = state.settings.sessions;
    let principal = state
        .db
        .run(move |conn| sessions::authenticate(conn, &token, &policy, now))
        .await?;
    Ok(principal)
}

/// Any live session, even one that must change its password before anything else.
#[derive(Debug, Clone)]
pub struct SessionUser(pub Principal);

impl FromRequest for SessionUser {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AuthState>>().cloned();
        let token = credential(req);
        Box::pin(async move { resolve(state, token).await.map(SessionUser) })
    }
}

/// A live session of an account that may act.
#[derive(Debug, Clone)]
pub struct AuthUser(pub Principal);

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let session = SessionUser::from_request(req, payload);
        Box::pin(async move {
            let SessionUser(principal) = session.await?;
            if principal.user.must_change_password {
                return Err(AuthError::PasswordChangeRequired.into());
            }
            Ok(AuthUser(principal))
        })
    }
}

macro_rules! role_guard {
    ($(#[$doc:meta])* $name:ident, $role:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name(pub Principal);

        impl FromRequest for $name {
            type Error = ApiError;
            type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

            fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
                let user = AuthUser::from_request(req, payload);
                Box::pin(async move {
                    let AuthUser(principal) = user.await?;
                    if !principal.user.roles.contains($role) {
                        return Err(AuthError::MissingRole($role.as_str()).into());
                    }
                    Ok($name(principal))
                })
            }
        }

        impl Deref for $name {
            type Target = Principal;
            fn deref(&self) -> &Principal {
                &self.0
            }
        }
    };
}

role_guard!(
    /// An account holding the admin role: users, security groups, messaging policy.
    AdminUser,
    Role::Admin
);
role_guard!(
    /// An account holding the compliance officer role: retention, holds, exports.
    ComplianceOfficer,
    Role::ComplianceOfficer
);
role_guard!(
    /// An account holding the auditor role: reads the audit log.
    Auditor,
    Role::Auditor
);

impl Deref for SessionUser {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.0
    }
}

impl Deref for AuthUser {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.0
    }
}
