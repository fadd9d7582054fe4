//! HTTP routes of the identity service. Handlers parse, call one service function on a
//! blocking thread, and map the result; the logic lives in [`crate::login`],
//! [`crate::sessions`] and [`crate::accounts`].

use crate::accounts::{self, NewLocalAccount};
use crate::extract::{
    AdminUser, AuthUser, SESSION_COOKIE, SessionUser, audit_context, client_addr,
};
use crate::identity::IdentityState;
use crate::identity::http::CSRF_COOKIE;
use crate::login::{self, LoginAttempt};
use crate::sessions;
use crate::settings::{AuthState, Revoked};
use crate::wire::*;
use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use conclave_api::{ApiError, ErrorBody};
use conclave_core::{DisplayName, Email, NewPassword, RoleSet, SessionId, UserId, Username};
use utoipa::OpenApi;

pub fn routes(cfg: &mut web::ServiceConfig) {
    crate::identity::http::routes(cfg);
    cfg.service(web::resource("/api/v1/auth/login").route(web::post().to(login)))
        .service(web::resource("/api/v1/auth/logout").route(web::post().to(logout)))
        .service(web::resource("/api/v1/me").route(web::get().to(me)))
        .service(web::resource("/api/v1/users").route(web::get().to(search_people)))
        .service(web::resource("/api/v1/me/password").route(web::post().to(change_password)))
        .service(web::resource("/api/v1/me/sessions").route(web::get().to(list_my_sessions)))
        .service(
            web::resource("/api/v1/me/sessions/{session_id}")
                .route(web::delete().to(revoke_my_session)),
        )
        .service(
            web::resource("/api/v1/admin/users")
                .route(web::get().to(list_users))
                .route(web::post().to(create_user)),
        )
        .service(web::resource("/api/v1/admin/users/{user_id}").route(web::get().to(get_user)))
        .service(
            web::resource("/api/v1/admin/users/{user_id}/roles").route(web::put().to(set_roles)),
        )
        .service(
            web::resource("/api/v1/admin/users/{user_id}/suspend")
                .route(web::post().to(suspend_user)),
        )
        .service(
            web::resource("/api/v1/admin/users/{user_id}/reactivate")
                .route(web::post().to(reactivate_user)),
        )
        .service(
            web::resource("/api/v1/admin/users/{user_id}/sessions")
                .route(web::delete().to(end_user_sessions)),
        );
}

#[derive(OpenApi)]
#[openapi(
    paths(
        login, logout, me, search_people, change_password, list_my_sessions, revoke_my_session,
        list_users, create_user, get_user, set_roles, suspend_user, reactivate_user, end_user_sessions,
    ),
    components(schemas(
        LoginRequest, LoginResponse, LogoutResponse, UserView, SessionView, SessionList, ChangePasswordRequest,
        CreateUserRequest, CreateUserResponse, SetRolesRequest, UserList, SessionsEnded, ErrorBody,
        PersonView, PeopleList,
    )),
    tags(
        (name = "auth", description = "Login, logout, the caller's account and sessions"),
        (name = "admin-users", description = "Account administration (admin role)"),
    )
)]
pub struct AuthApi;

/// Runs blocking service code that manages its own connections (because it hashes
/// passwords between them) on the blocking thread pool.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, crate::AuthError> + Send + 'static,
) -> Result<T, ApiError> {
    web::block(work)
        .await
        .map_err(|err| ApiError::internal(&err))?
        .map_err(ApiError::from)
}

pub(crate) fn user_agent(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Log in with a local (break-glass) account.
#[utoipa::path(
    post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in; also sets the HttpOnly session cookie", body = LoginResponse),
        (status = 401, description = "Wrong username or password (`invalid_credentials`)", body = ErrorBody),
        (status = 403, description = "Account suspended (`account_disabled`)", body = ErrorBody),
        (status = 422, description = "Invalid body", body = ErrorBody),
        (status = 429, description = "Too many failed logins; see Retry-After", body = ErrorBody),
    )
)]
async fn login(
    state: web::Data<AuthState>,
    req: HttpRequest,
    body: conclave_api::extract::Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let LoginRequest { username, password } = body.into_inner();
    let (addr, agent, path) = (client_addr(&req), user_agent(&req), req.path().to_owned());
    let settings = state.settings.clone();
    let now = state.clock.now();
    let db = state.db.clone();
    let success = blocking(move || {
        login::login_local(
            &db,
            &settings,
            now,
            &LoginAttempt {
                username: &username,
                password: &password,
                client_addr: addr.as_deref(),
                user_agent: agent.as_deref(),
                api_path: Some(&path),
            },
        )
    })
    .await?;
    Ok(login_response(&state, success))
}

/// The session cookie for a new session (HttpOnly, SameSite=Strict).
pub(crate) fn session_cookie(state: &AuthState, token: &str) -> Cookie<'static> {
    let lifetime = state.settings.sessions.absolute_lifetime;
    Cookie::build(SESSION_COOKIE, token.to_owned())
        .http_only(true)
        .secure(state.settings.secure_cookies)
        .same_site(SameSite::Strict)
        .path("/")
        .max_age(CookieDuration::seconds(
            i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX),
        ))
        .finish()
}

/// The readable cookie carrying the session's CSRF token, so a web client that reloads
/// (or arrived by a sign-in redirect) can echo it as `X-CSRF-Token`. SameSite=Strict: only
/// this site's pages can read or send it.
pub(crate) fn csrf_cookie(state: &AuthState, csrf_token: String) -> Cookie<'static> {
    let lifetime = state.settings.sessions.absolute_lifetime;
    Cookie::build(CSRF_COOKIE, csrf_token)
        .http_only(false)
        .secure(state.settings.secure_cookies)
        .same_site(SameSite::Strict)
        .path("/")
        .max_age(CookieDuration::seconds(
            i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX),
        ))
        .finish()
}

/// Cookies that end the browser's session: the session and CSRF cookies, expired, with
/// the attributes they were set with (a browser may keep a Secure cookie that a
/// non-Secure removal names).
pub(crate) fn removal_cookies(state: &AuthState) -> [Cookie<'static>; 2] {
    [session_cookie(state, ""), csrf_cookie(state, String::new())].map(|mut removal| {
        removal.make_removal();
        removal
    })
}

/// A login's answer: the session and CSRF cookies for browsers, the token for API
/// clients.
pub(crate) fn login_response(state: &AuthState, success: login::LoginSuccess) -> HttpResponse {
    let token = success.session.token;
    HttpResponse::Ok()
        .cookie(session_cookie(state, token.expose()))
        .cookie(csrf_cookie(state, token.csrf_token()))
        .json(LoginResponse {
            csrf_token: token.csrf_token(),
            token: token.expose().to_owned(),
            expires_at: success.session.expires_at,
            password_change_required: success.user.must_change_password,
            user: UserView::from(&success.user),
        })
}

/// End the current session. A session opened through an OpenID Connect provider that
/// offers RP-initiated logout answers 200 with the URL that ends it there too.
#[utoipa::path(
    post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 204, description = "Logged out; the session cookie is cleared"),
        (status = 200, description = "Logged out here; send the browser to `end_session_url`", body = LogoutResponse),
        (status = 401, description = "No valid session", body = ErrorBody),
    )
)]
async fn logout(
    state: web::Data<AuthState>,
    identity: Option<web::Data<IdentityState>>,
    req: HttpRequest,
    user: SessionUser,
) -> Result<HttpResponse, ApiError> {
    let context = audit_context(&req, &user);
    let now = state.clock.now();
    let session_id = user.session_id;
    let provider = state
        .db
        .run(move |conn| sessions::logout(conn, &user.0, &context, now))
        .await?;
    state.revocations.notify(Revoked::Session(session_id));
    let [session_removal, csrf_removal] = removal_cookies(&state);
    let end_session = match (
        provider.as_deref().and_then(|p| p.strip_prefix("oidc:")),
        identity,
    ) {
        (Some(id), Some(identity)) => match identity.provider(id) {
            Some(provider) => provider.end_session_url().await,
            None => None,
        },
        _ => None,
    };
    Ok(match end_session {
        Some(end_session_url) => HttpResponse::Ok()
            .cookie(session_removal)
            .cookie(csrf_removal)
            .json(LogoutResponse { end_session_url }),
        None => HttpResponse::NoContent()
            .cookie(session_removal)
            .cookie(csrf_removal)
            .finish(),
    })
}

/// The caller's account.
#[utoipa::path(
    get, path = "/api/v1/me", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, body = UserView),
        (status = 401, description = "No valid session", body = ErrorBody),
    )
)]
async fn me(user: SessionUser) -> web::Json<UserView> {
    web::Json(UserView::from(&user.user))
}

/// Find people to talk to: active accounts whose username or display name contains `q`.
#[utoipa::path(
    get, path = "/api/v1/users", tag = "auth", security(("bearer" = [])),
    params(PeopleQuery),
    responses(
        (status = 200, body = PeopleList),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 422, description = "Empty or overlong `q`", body = ErrorBody),
    )
)]
async fn search_people(
    state: web::Data<AuthState>,
    _user: AuthUser,
    query: web::Query<PeopleQuery>,
) -> Result<web::Json<PeopleList>, ApiError> {
    let PeopleQuery { q, limit } = query.into_inner();
    let found = state
        .db
        .run(move |conn| accounts::search_people(conn, &q, limit.unwrap_or(20)))
        .await?;
    Ok(web::Json(PeopleList {
        people: found
            .into_iter()
            .map(|card| PersonView {
                id: card.id,
                username: card.username,
                display_name: card.display_name,
            })
            .collect(),
    }))
}

/// Change the caller's password; ends the caller's other sessions.
#[utoipa::path(
    post, path = "/api/v1/me/password", tag = "auth", security(("bearer" = [])),
    request_body = ChangePasswordRequest,
    responses(
        (status = 204, description = "Changed"),
        (status = 401, description = "Wrong current password or no valid session", body = ErrorBody),
        (status = 422, description = "New password too short, too long or unchanged", body = ErrorBody),
        (status = 429, description = "Too many wrong current passwords; see Retry-After", body = ErrorBody),
    )
)]
async fn change_password(
    state: web::Data<AuthState>,
    req: HttpRequest,
    user: SessionUser,
    body: conclave_api::extract::Json<ChangePasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    let ChangePasswordRequest {
        current_password,
        new_password,
    } = body.into_inner();
    let new_password = NewPassword::parse(&new_password)?;
    let context = audit_context(&req, &user);
    let now = state.clock.now();
    let (db, settings) = (state.db.clone(), state.settings.clone());
    let (user_id, session_id) = (user.user.id, user.session_id);
    blocking(move || {
        accounts::change_own_password(
            &db,
            &settings,
            &user.0,
            &context,
            now,
            &current_password,
            &new_password,
        )
    })
    .await?;
    state
        .revocations
        .notify(Revoked::UserExcept(user_id, session_id));
    Ok(HttpResponse::NoContent().finish())
}

/// The caller's live sessions.
#[utoipa::path(
    get, path = "/api/v1/me/sessions", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, body = SessionList),
        (status = 401, description = "No valid session", body = ErrorBody),
    )
)]
async fn list_my_sessions(
    state: web::Data<AuthState>,
    user: SessionUser,
) -> Result<web::Json<SessionList>, ApiError> {
    let policy = state.settings.sessions;
    let now = state.clock.now();
    let current = user.session_id;
    let list = state
        .db
        .run(move |conn| sessions::list_mine(conn, &user.0, &policy, now))
        .await?;
    Ok(web::Json(SessionList {
        sessions: list.iter().map(|s| SessionView::new(s, current)).collect(),
    }))
}

/// End one of the caller's sessions (another device).
#[utoipa::path(
    delete, path = "/api/v1/me/sessions/{session_id}", tag = "auth", security(("bearer" = [])),
    params(("session_id" = SessionId, Path, description = "A session id from the list")),
    responses(
        (status = 204, description = "Ended"),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 404, description = "No such live session of the caller", body = ErrorBody),
    )
)]
async fn revoke_my_session(
    state: web::Data<AuthState>,
    req: HttpRequest,
    user: SessionUser,
    path: web::Path<SessionId>,
) -> Result<HttpResponse, ApiError> {
    let session_id = path.into_inner();
    let context = audit_context(&req, &user);
    let now = state.clock.now();
    state
        .db
        .run(move |conn| sessions::revoke_mine(conn, &user.0, session_id, &context, now))
        .await?;
    state.revocations.notify(Revoked::Session(session_id));
    Ok(HttpResponse::NoContent().finish())
}

/// List accounts, in username order.
#[utoipa::path(
    get, path = "/api/v1/admin/users", tag = "admin-users", security(("bearer" = [])),
    params(UserListQuery),
    responses(
        (status = 200, body = UserList),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    )
)]
async fn list_users(
    state: web::Data<AuthState>,
    _admin: AdminUser,
    query: web::Query<UserListQuery>,
) -> Result<web::Json<UserList>, ApiError> {
    let UserListQuery { after, q, limit } = query.into_inner();
    let limit = limit.unwrap_or(100).clamp(1, 500);
    if let Some(q) = q {
        let users = state
            .db
            .run(move |conn| accounts::search(conn, &q, limit))
            .await?;
        return Ok(web::Json(UserList {
            users: users.iter().map(UserView::from).collect(),
            next_after: None,
        }));
    }
    // The cursor is a username: one that cannot exist is bad input, not a query.
    let after = after
        .map(|name| Username::parse(&name).map(|u| u.to_string()))
        .transpose()?;
    let users = state
        .db
        .run(move |conn| accounts::list(conn, after.as_deref(), limit))
        .await?;
    let next_after = (users.len() == limit as usize)
        .then(|| users.last().map(|u| u.username.to_string()))
        .flatten();
    Ok(web::Json(UserList {
        users: users.iter().map(UserView::from).collect(),
        next_after,
    }))
}

/// Create a local account. It must change its password at first login.
#[utoipa::path(
    post, path = "/api/v1/admin/users", tag = "admin-users", security(("bearer" = [])),
    request_body = CreateUserRequest,
    responses(
        (status = 201, body = CreateUserResponse),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 409, description = "Username taken", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
    )
)]
async fn create_user(
    state: web::Data<AuthState>,
    req: HttpRequest,
    admin: AdminUser,
    body: conclave_api::extract::Json<CreateUserRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let account = NewLocalAccount {
        username: Username::parse(&body.username)?,
        display_name: DisplayName::parse(&body.display_name)?,
        email: body.email.as_deref().map(Email::parse).transpose()?,
        roles: RoleSet::new(body.roles),
        password: body
            .password
            .as_deref()
            .map(NewPassword::parse)
            .transpose()?,
    };
    let context = audit_context(&req, &admin);
    let now = state.clock.now();
    let created = state
        .db
        .run(move |conn| accounts::create_local_account(conn, &context, now, account))
        .await?;
    Ok(HttpResponse::Created().json(CreateUserResponse {
        user: UserView::from(&created.user),
        one_time_password: created.one_time_password,
    }))
}

/// One account.
#[utoipa::path(
    get, path = "/api/v1/admin/users/{user_id}", tag = "admin-users", security(("bearer" = [])),
    params(("user_id" = UserId, Path)),
    responses(
        (status = 200, body = UserView),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
    )
)]
async fn get_user(
    state: web::Data<AuthState>,
    _admin: AdminUser,
    path: web::Path<UserId>,
) -> Result<web::Json<UserView>, ApiError> {
    let user_id = path.into_inner();
    let user = state
        .db
        .run(move |conn| accounts::find(conn, user_id))
        .await?;
    Ok(web::Json(UserView::from(&user)))
}

/// Replace an account's roles.
#[utoipa::path(
    put, path = "/api/v1/admin/users/{user_id}/roles", tag = "admin-users", security(("bearer" = [])),
    params(("user_id" = UserId, Path)),
    request_body = SetRolesRequest,
    responses(
        (status = 200, body = UserView),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
        (status = 409, description = "Would remove the last active admin", body = ErrorBody),
    )
)]
async fn set_roles(
    state: web::Data<AuthState>,
    req: HttpRequest,
    admin: AdminUser,
    path: web::Path<UserId>,
    body: conclave_api::extract::Json<SetRolesRequest>,
) -> Result<web::Json<UserView>, ApiError> {
    let user_id = path.into_inner();
    let roles = RoleSet::new(body.into_inner().roles);
    let context = audit_context(&req, &admin);
    let now = state.clock.now();
    let user = state
        .db
        .run(move |conn| accounts::set_roles(conn, &context, now, user_id, roles))
        .await?;
    Ok(web::Json(UserView::from(&user)))
}

/// Suspend an account; all of its sessions end at once.
#[utoipa::path(
    post, path = "/api/v1/admin/users/{user_id}/suspend", tag = "admin-users", security(("bearer" = [])),
    params(("user_id" = UserId, Path)),
    responses(
        (status = 200, body = UserView),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
        (status = 409, description = "Own account, or the last active admin", body = ErrorBody),
    )
)]
async fn suspend_user(
    state: web::Data<AuthState>,
    req: HttpRequest,
    admin: AdminUser,
    path: web::Path<UserId>,
) -> Result<web::Json<UserView>, ApiError> {
    let user_id = path.into_inner();
    let context = audit_context(&req, &admin);
    let now = state.clock.now();
    let user = state
        .db
        .run(move |conn| accounts::suspend(conn, &context, now, user_id))
        .await?;
    state.revocations.notify(Revoked::User(user_id));
    Ok(web::Json(UserView::from(&user)))
}

/// Lift a suspension.
#[utoipa::path(
    post, path = "/api/v1/admin/users/{user_id}/reactivate", tag = "admin-users", security(("bearer" = [])),
    params(("user_id" = UserId, Path)),
    responses(
        (status = 200, body = UserView),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
        (status = 409, description = "The account is not suspended", body = ErrorBody),
    )
)]
async fn reactivate_user(
    state: web::Data<AuthState>,
    req: HttpRequest,
    admin: AdminUser,
    path: web::Path<UserId>,
) -> Result<web::Json<UserView>, ApiError> {
    let user_id = path.into_inner();
    let context = audit_context(&req, &admin);
    let now = state.clock.now();
    let user = state
        .db
        .run(move |conn| accounts::reactivate(conn, &context, now, user_id))
        .await?;
    Ok(web::Json(UserView::from(&user)))
}

/// End every session of an account without suspending it.
#[utoipa::path(
    delete, path = "/api/v1/admin/users/{user_id}/sessions", tag = "admin-users", security(("bearer" = [])),
    params(("user_id" = UserId, Path)),
    responses(
        (status = 200, body = SessionsEnded),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
    )
)]
async fn end_user_sessions(
    state: web::Data<AuthState>,
    req: HttpRequest,
    admin: AdminUser,
    path: web::Path<UserId>,
) -> Result<web::Json<SessionsEnded>, ApiError> {
    let user_id = path.into_inner();
    let context = audit_context(&req, &admin);
    let now = state.clock.now();
    let sessions_ended = state
        .db
        .run(move |conn| accounts::end_sessions(conn, &context, now, user_id))
        .await?;
    state.revocations.notify(Revoked::User(user_id));
    Ok(web::Json(SessionsEnded { sessions_ended }))
}
