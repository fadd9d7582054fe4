//! HTTP routes for single sign-on and the directory. Handlers parse, call one service
//! function, map the result.
//!
//! Browser sign-in: `GET /api/v1/auth/oidc/{provider}/login` redirects to the provider
//! and sets a short-lived HttpOnly cookie binding the flow to this browser; the
//! provider's redirect to `…/callback` opens the session (the same HttpOnly session
//! cookie as local login, plus a readable `conclave_csrf` cookie carrying the CSRF token)
//! and redirects to `return_to` (default `/`). API clients: `POST …/start` returns the
//! authorization URL and a `flow_secret`; once the person has signed in, `POST
//! /api/v1/auth/oidc/exchange` with the state and secret returns the bearer token.

use super::IdentityState;
use super::login::Origin;
use super::oidc::{Callback, Finished, FlowMode};
use super::{local_login, sync};
use crate::extract::{AdminUser, audit_context, client_addr};
use crate::http::{blocking, csrf_cookie, login_response, session_cookie, user_agent};
use crate::login::LoginAttempt;
use crate::settings::AuthState;
use crate::wire::*;
use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use conclave_api::{ApiError, ErrorBody};
use conclave_core::UserId;
use utoipa::OpenApi;

/// The cookie binding a browser's sign-in flow to the browser that started it.
pub const FLOW_COOKIE: &str = "conclave_oidc_flow";
/// A readable cookie with the session's CSRF token, for a web client that arrived by
/// redirect and so never saw a login response body.
pub const CSRF_COOKIE: &str = "conclave_csrf";
const FLOW_COOKIE_PATH: &str = "/api/v1/auth/oidc";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/api/v1/auth/providers").route(web::get().to(providers)))
        .service(web::resource("/api/v1/auth/ldap/login").route(web::post().to(ldap_login)))
        .service(web::resource("/api/v1/auth/oidc/exchange").route(web::post().to(oidc_exchange)))
        .service(
            web::resource("/api/v1/auth/oidc/{provider}/login").route(web::get().to(oidc_login)),
        )
        .service(
            web::resource("/api/v1/auth/oidc/{provider}/start").route(web::post().to(oidc_start)),
        )
        .service(
            web::resource("/api/v1/auth/oidc/{provider}/callback")
                .route(web::get().to(oidc_callback)),
        )
        .service(
            web::resource("/api/v1/admin/directory/sync")
                .route(web::get().to(directory_sync_status))
                .route(web::post().to(directory_sync)),
        )
        .service(
            web::resource("/api/v1/admin/identity/local-login")
                .route(web::get().to(get_local_login))
                .route(web::put().to(put_local_login)),
        )
        .service(
            web::resource("/api/v1/admin/users/{user_id}/break-glass")
                .route(web::put().to(put_break_glass)),
        );
}

#[derive(OpenApi)]
#[openapi(
    paths(
        providers, ldap_login, oidc_login, oidc_start, oidc_callback, oidc_exchange,
        directory_sync, directory_sync_status, get_local_login, put_local_login, put_break_glass,
    ),
    components(schemas(
        ProvidersView, OidcProviderView, OidcStartRequest, OidcStartResponse, OidcExchangeRequest,
        LogoutResponse, SyncRequest, sync::SyncReport, sync::SyncRun, SyncStatus, LocalLoginSetting, BreakGlassRequest,
    )),
    tags(
        (name = "sso", description = "Single sign-on: OpenID Connect and LDAP"),
        (name = "admin-identity", description = "Directory sync and local login (admin role)"),
    )
)]
pub struct IdentityApi;

fn configured(state: Option<web::Data<IdentityState>>) -> web::Data<IdentityState> {
    state.unwrap_or_else(|| web::Data::new(IdentityState::default()))
}

fn origin(req: &HttpRequest) -> Origin {
    Origin {
        client_addr: client_addr(req),
        user_agent: user_agent(req),
        api_path: Some(req.path().to_owned()),
    }
}

fn provider_of(
    identity: &IdentityState,
    id: &str,
) -> Result<std::sync::Arc<super::oidc::OidcProvider>, ApiError> {
    identity
        .provider(id)
        .cloned()
        .ok_or_else(ApiError::not_found)
}

/// The sign-in options: OpenID Connect providers, LDAP, local login.
#[utoipa::path(
    get, path = "/api/v1/auth/providers", tag = "sso",
    responses((status = 200, body = ProvidersView))
)]
async fn providers(
    state: web::Data<AuthState>,
    identity: Option<web::Data<IdentityState>>,
) -> Result<web::Json<ProvidersView>, ApiError> {
    let identity = configured(identity);
    let local = state.db.run(local_login::enabled_for_everyone).await?;
    Ok(web::Json(ProvidersView {
        oidc: identity
            .oidc
            .iter()
            .map(|p| OidcProviderView {
                id: p.config.id.clone(),
                display_name: p.config.display_name.clone(),
                login_url: format!("/api/v1/auth/oidc/{}/login", p.config.id),
            })
            .collect(),
        ldap: identity.directory.as_ref().is_some_and(|d| d.config.login),
        local,
    }))
}

/// Log in with a directory (LDAP / Active Directory) username and password.
#[utoipa::path(
    post, path = "/api/v1/auth/ldap/login", tag = "sso",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in; also sets the HttpOnly session cookie", body = LoginResponse),
        (status = 401, description = "Wrong username or password (`invalid_credentials`)", body = ErrorBody),
        (status = 403, description = "Account suspended (`account_disabled`)", body = ErrorBody),
        (status = 404, description = "No directory is configured for login", body = ErrorBody),
        (status = 409, description = "The username belongs to another account", body = ErrorBody),
        (status = 429, description = "Too many failed logins; see Retry-After", body = ErrorBody),
        (status = 503, description = "The directory cannot be reached (`directory_unavailable`)", body = ErrorBody),
    )
)]
async fn ldap_login(
    state: web::Data<AuthState>,
    identity: Option<web::Data<IdentityState>>,
    req: HttpRequest,
    body: conclave_api::extract::Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let identity = configured(identity);
    let directory = identity.directory.clone().ok_or_else(ApiError::not_found)?;
    let LoginRequest { username, password } = body.into_inner();
    let origin = origin(&req);
    let success = super::login::login_ldap(
        &state.db,
        &state.settings,
        &directory,
        state.clock.now(),
        &LoginAttempt {
            username: &username,
            password: &password,
            client_addr: origin.client_addr.as_deref(),
            user_agent: origin.user_agent.as_deref(),
            api_path: origin.api_path.as_deref(),
        },
    )
    .await?;
    Ok(login_response(&state, success))
}

/// Start a browser sign-in: redirects to the provider.
#[utoipa::path(
    get, path = "/api/v1/auth/oidc/{provider}/login", tag = "sso",
    params(("provider" = String, Path, description = "A provider id from /api/v1/auth/providers"), OidcLoginQuery),
    responses(
        (status = 302, description = "To the provider's authorization endpoint; sets the flow cookie"),
        (status = 404, description = "No such provider", body = ErrorBody),
        (status = 503, description = "The provider cannot be reached (`directory_unavailable`)", body = ErrorBody),
    )
)]
async fn oidc_login(
    state: web::Data<AuthState>,
    identity: Option<web::Data<IdentityState>>,
    path: web::Path<String>,
    query: web::Query<OidcLoginQuery>,
) -> Result<HttpResponse, ApiError> {
    let identity = configured(identity);
    let provider = provider_of(&identity, &path)?;
    let start = provider
        .begin(
            &state.db,
            state.clock.now(),
            identity.flow_ttl,
            FlowMode::Browser,
            query.return_to.as_deref(),
        )
        .await?;
    // Lax, not Strict: the provider's redirect back is a cross-site navigation.
    let cookie = Cookie::build(FLOW_COOKIE, start.binding_secret)
        .http_only(true)
        .secure(state.settings.secure_cookies)
        .same_site(SameSite::Lax)
        .path(FLOW_COOKIE_PATH)
        .max_age(CookieDuration::seconds(
            i64::try_from(identity.flow_ttl.as_secs()).unwrap_or(600),
        ))
        .finish();
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, start.authorization_url))
        .cookie(cookie)
        .finish())
}

/// Start a sign-in for an API client: returns the URL to open in a browser and the
/// secret to exchange the finished flow for a token.
#[utoipa::path(
    post, path = "/api/v1/auth/oidc/{provider}/start", tag = "sso",
    params(("provider" = String, Path)),
    request_body = OidcStartRequest,
    responses(
        (status = 200, body = OidcStartResponse),
        (status = 404, description = "No such provider", body = ErrorBody),
        (status = 503, description = "The provider cannot be reached (`directory_unavailable`)", body = ErrorBody),
    )
)]
async fn oidc_start(
    state: web::Data<AuthState>,
    identity: Option<web::Data<IdentityState>>,
    path: web::Path<String>,
    body: conclave_api::extract::Json<OidcStartRequest>,
) -> Result<web::Json<OidcStartResponse>, ApiError> {
    let identity = configured(identity);
    let provider = provider_of(&identity, &path)?;
    let redirect_uri = super::oidc::loopback_redirect(&body.redirect_uri)?;
    let start = provider
        .begin(
            &state.db,
            state.clock.now(),
            identity.flow_ttl,
            FlowMode::Token,
            Some(&redirect_uri),
        )
        .await?;
    Ok(web::Json(OidcStartResponse {
        authorization_url: start.authorization_url,
        state: start.state,
        flow_secret: start.binding_secret,
        expires_at: start.expires_at,
    }))
}

/// The provider's redirect back (the registered redirect URI).
#[utoipa::path(
    get, path = "/api/v1/auth/oidc/{provider}/callback", tag = "sso",
    params(("provider" = String, Path), OidcCallbackQuery),
    responses(
        (status = 302, description = "Browser flow: signed in (session and CSRF cookies set); to `return_to`"),
        (status = 303, description = "API-client flow: signed in; to the client's loopback `redirect_uri` with `code` and `state`"),
        (status = 401, description = "The sign-in failed (`unauthenticated`, with the reason)", body = ErrorBody),
        (status = 403, description = "Account suspended (`account_disabled`)", body = ErrorBody),
        (status = 404, description = "No such provider", body = ErrorBody),
        (status = 409, description = "The username belongs to another account", body = ErrorBody),
        (status = 503, description = "The provider cannot be reached (`directory_unavailable`)", body = ErrorBody),
    )
)]
async fn oidc_callback(
    state: web::Data<AuthState>,
    identity: Option<web::Data<IdentityState>>,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<OidcCallbackQuery>,
) -> Result<HttpResponse, ApiError> {
    let identity = configured(identity);
    let provider = provider_of(&identity, &path)?;
    let query = query.into_inner();
    let binding = req.cookie(FLOW_COOKIE).map(|c| c.value().to_owned());
    let callback = Callback {
        code: query.code,
        state: query.state,
        iss: query.iss,
        error: query.error,
    };
    let finished = provider
        .finish(
            &state.db,
            &state.settings,
            state.clock.now(),
            callback,
            binding.as_deref(),
            &origin(&req),
        )
        .await;
    let mut spent = Cookie::build(FLOW_COOKIE, "")
        .path(FLOW_COOKIE_PATH)
        .finish();
    spent.make_removal();
    match finished? {
        Finished::Browser { success, return_to } => {
            let token = success.session.token;
            let csrf = csrf_cookie(&state, token.csrf_token());
            Ok(HttpResponse::Found()
                .insert_header((header::LOCATION, return_to))
                .cookie(session_cookie(&state, token.expose()))
                .cookie(csrf)
                .cookie(spent)
                .finish())
        }
        Finished::TokenReady { redirect } => Ok(HttpResponse::SeeOther()
            .insert_header((header::LOCATION, redirect))
            .finish()),
    }
}

/// Exchange a finished API-client flow for a bearer token (once).
#[utoipa::path(
    post, path = "/api/v1/auth/oidc/exchange", tag = "sso",
    request_body = OidcExchangeRequest,
    responses(
        (status = 200, body = LoginResponse),
        (status = 401, description = "No finished flow for this state and secret", body = ErrorBody),
        (status = 403, description = "Account suspended (`account_disabled`)", body = ErrorBody),
    )
)]
async fn oidc_exchange(
    state: web::Data<AuthState>,
    req: HttpRequest,
    body: conclave_api::extract::Json<OidcExchangeRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let success = super::oidc::exchange(
        &state.db,
        &state.settings,
        state.clock.now(),
        &body.state,
        &body.flow_secret,
        &body.code,
        &origin(&req),
    )
    .await?;
    Ok(login_response(&state, success))
}

/// Run a directory sync now (or a dry run), and return its report.
#[utoipa::path(
    post, path = "/api/v1/admin/directory/sync", tag = "admin-identity", security(("bearer" = [])),
    request_body = SyncRequest,
    responses(
        (status = 200, body = sync::SyncReport),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No directory is configured", body = ErrorBody),
        (status = 409, description = "A sync is already running", body = ErrorBody),
        (status = 503, description = "The directory cannot be reached (`directory_unavailable`)", body = ErrorBody),
    )
)]
async fn directory_sync(
    state: web::Data<AuthState>,
    identity: Option<web::Data<IdentityState>>,
    req: HttpRequest,
    admin: AdminUser,
    body: Option<conclave_api::extract::Json<SyncRequest>>,
) -> Result<web::Json<sync::SyncReport>, ApiError> {
    let identity = configured(identity);
    let directory = identity.directory.clone().ok_or_else(ApiError::not_found)?;
    let dry_run = body.is_some_and(|b| b.dry_run);
    let context = audit_context(&req, &admin);
    // A task of its own: a client that disconnects does not cut a sync short.
    let (state, guard) = (state.into_inner(), identity.sync_guard.clone());
    let run = actix_web::rt::spawn(async move {
        sync::run(
            &state.db,
            &directory,
            &guard,
            state.clock.as_ref(),
            &context,
            dry_run,
            Some(&state.revocations),
        )
        .await
    });
    let report = run.await.map_err(|err| ApiError::internal(&err))??;
    Ok(web::Json(report))
}

/// Whether a directory is configured, how often it syncs, and its latest runs.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SyncStatus {
    pub configured: bool,
    /// Minutes between scheduled runs; `None`: no directory, or on demand only.
    pub interval_minutes: Option<u64>,
    /// The latest runs (at most 10), newest first, dry runs included.
    pub runs: Vec<sync::SyncRun>,
}

/// The directory sync's status: configured or not, schedule, and the latest runs.
#[utoipa::path(
    get, path = "/api/v1/admin/directory/sync", tag = "admin-identity", security(("bearer" = [])),
    responses(
        (status = 200, body = SyncStatus),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    )
)]
async fn directory_sync_status(
    state: web::Data<AuthState>,
    identity: Option<web::Data<IdentityState>>,
    _admin: AdminUser,
) -> Result<web::Json<SyncStatus>, ApiError> {
    let identity = configured(identity);
    let interval_minutes = identity
        .directory
        .as_ref()
        .map(|directory| directory.config.sync_interval_minutes)
        .filter(|minutes| *minutes > 0);
    let runs = state.db.run(|conn| sync::recent_runs(conn, 10)).await?;
    Ok(web::Json(SyncStatus {
        configured: identity.directory.is_some(),
        interval_minutes,
        runs,
    }))
}

/// Whether every local account may log in with a password.
#[utoipa::path(
    get, path = "/api/v1/admin/identity/local-login", tag = "admin-identity", security(("bearer" = [])),
    responses(
        (status = 200, body = LocalLoginSetting),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    )
)]
async fn get_local_login(
    state: web::Data<AuthState>,
    _admin: AdminUser,
) -> Result<web::Json<LocalLoginSetting>, ApiError> {
    let enabled_for_everyone = state.db.run(local_login::enabled_for_everyone).await?;
    Ok(web::Json(LocalLoginSetting {
        enabled_for_everyone,
    }))
}

/// Allow local password login for everyone, or only for break-glass accounts.
#[utoipa::path(
    put, path = "/api/v1/admin/identity/local-login", tag = "admin-identity", security(("bearer" = [])),
    request_body = LocalLoginSetting,
    responses(
        (status = 200, body = LocalLoginSetting),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 409, description = "No active break-glass admin would be left", body = ErrorBody),
    )
)]
async fn put_local_login(
    state: web::Data<AuthState>,
    req: HttpRequest,
    admin: AdminUser,
    body: conclave_api::extract::Json<LocalLoginSetting>,
) -> Result<web::Json<LocalLoginSetting>, ApiError> {
    let enabled = body.enabled_for_everyone;
    let context = audit_context(&req, &admin);
    let now = state.clock.now();
    let enabled_for_everyone = state
        .db
        .run(move |conn| local_login::set_enabled_for_everyone(conn, &context, now, enabled))
        .await?;
    Ok(web::Json(LocalLoginSetting {
        enabled_for_everyone,
    }))
}

/// Mark or unmark a local account as break-glass.
#[utoipa::path(
    put, path = "/api/v1/admin/users/{user_id}/break-glass", tag = "admin-identity", security(("bearer" = [])),
    params(("user_id" = UserId, Path)),
    request_body = BreakGlassRequest,
    responses(
        (status = 200, body = UserView),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
        (status = 409, description = "Not a local account, or the last break-glass admin", body = ErrorBody),
    )
)]
async fn put_break_glass(
    state: web::Data<AuthState>,
    req: HttpRequest,
    admin: AdminUser,
    path: web::Path<UserId>,
    body: conclave_api::extract::Json<BreakGlassRequest>,
) -> Result<web::Json<UserView>, ApiError> {
    let (user_id, flag) = (path.into_inner(), body.break_glass);
    let context = audit_context(&req, &admin);
    let now = state.clock.now();
    let user = blocking({
        let db = state.db.clone();
        move || local_login::set_break_glass(&mut *db.conn()?, &context, now, user_id, flag)
    })
    .await?;
    Ok(web::Json(UserView::from(&user)))
}
