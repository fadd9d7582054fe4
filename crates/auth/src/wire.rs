//! Request and response bodies of the identity API, separate from the stored records so
//! the wire format and the schema can change independently.

use conclave_core::{Role, SessionId, Timestamp, UserId, UserStatus};
use conclave_store::sessions::SessionRecord;
use conclave_store::users::UserRecord;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct LoginResponse {
    /// Bearer token for `Authorization: Bearer …`; shown once.
    pub token: String,
    /// For browsers using the session cookie: echo as `X-CSRF-Token` on state changes.
    pub csrf_token: String,
    pub expires_at: Timestamp,
    /// When true, every endpoint but `POST /api/v1/me/password`, `GET /api/v1/me` and
    /// logout answers 403 `password_change_required`.
    pub password_change_required: bool,
    pub user: UserView,
}

#[derive(Serialize, ToSchema)]
pub struct UserView {
    pub id: UserId,
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    pub status: UserStatus,
    pub roles: Vec<Role>,
    /// `local` for break-glass accounts.
    pub auth_source: String,
    pub password_change_required: bool,
    pub created_at: Timestamp,
    /// May log in with a local password even when local login is limited.
    pub break_glass: bool,
}

impl From<&UserRecord> for UserView {
    fn from(user: &UserRecord) -> Self {
        Self {
            id: user.id,
            username: user.username.to_string(),
            display_name: user.display_name.clone(),
            email: user.email.clone(),
            status: user.status,
            roles: user.roles.to_vec(),
            auth_source: user.auth_source.clone(),
            password_change_required: user.must_change_password,
            created_at: user.created_at,
            break_glass: user.break_glass,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SessionView {
    pub id: SessionId,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub expires_at: Timestamp,
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
    /// Whether this is the session making the request.
    pub current: bool,
}

impl SessionView {
    pub fn new(session: &SessionRecord, current: SessionId) -> Self {
        Self {
            id: session.id,
            created_at: session.created_at,
            last_seen_at: session.last_seen_at,
            expires_at: session.expires_at,
            client_addr: session.client_addr.clone(),
            user_agent: session.user_agent.clone(),
            current: session.id == current,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionView>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    pub current_password: String,
    /// At least 12 characters.
    pub new_password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    /// `user` is always included.
    #[serde(default)]
    pub roles: Vec<Role>,
    /// Omit to have a one-time password generated. Either way it must be changed at first
    /// login.
    pub password: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CreateUserResponse {
    pub user: UserView,
    /// Present when generated: shown once, hand it to the user out of band.
    pub one_time_password: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRolesRequest {
    /// The complete new set; `user` is always included.
    pub roles: Vec<Role>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UserListQuery {
    /// Return accounts whose username sorts after this one (the previous page's `next_after`).
    pub after: Option<String>,
    /// Only accounts (any status) whose username or display name contains this
    /// (case-insensitive; 1 to 100 characters); one page, no `next_after`.
    pub q: Option<String>,
    /// Page size, 1 to 500 (default 100; a value outside is clamped into that range).
    #[param(value_type = Option<u64>, maximum = 4_294_967_295_u64)]
    pub limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct UserList {
    pub users: Vec<UserView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SessionsEnded {
    pub sessions_ended: usize,
}

/// The sign-in options the login page shows.
#[derive(Serialize, ToSchema)]
pub struct ProvidersView {
    pub oidc: Vec<OidcProviderView>,
    /// Whether `POST /api/v1/auth/ldap/login` accepts directory passwords.
    pub ldap: bool,
    /// Whether every local account may log in with a password (otherwise only
    /// break-glass accounts).
    pub local: bool,
}

#[derive(Serialize, ToSchema)]
pub struct OidcProviderView {
    pub id: String,
    pub display_name: String,
    /// Browsers go here to sign in (a redirect to the provider).
    pub login_url: String,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OidcLoginQuery {
    /// A path on this site to land on after signing in (default `/`).
    pub return_to: Option<String>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct OidcStartRequest {
    /// Where the person's browser goes once signed in: the client's own loopback
    /// listener (`http://127.0.0.1:PORT/...`, `http://[::1]:PORT/...` or
    /// `http://localhost:PORT/...`), which receives the `code` the exchange needs.
    pub redirect_uri: String,
}

#[derive(Serialize, ToSchema)]
pub struct OidcStartResponse {
    /// Open this in a browser; the person signs in at the provider.
    pub authorization_url: String,
    /// Identifies the flow; also part of the authorization URL.
    pub state: String,
    /// Present with `state` and the redirect's `code` to `POST /api/v1/auth/oidc/exchange`;
    /// shown once.
    pub flow_secret: String,
    pub expires_at: Timestamp,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OidcCallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    /// RFC 9207 issuer identification.
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    pub session_state: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OidcExchangeRequest {
    pub state: String,
    pub flow_secret: String,
    /// The `code` the client's loopback redirect received.
    pub code: String,
}

#[derive(Serialize, ToSchema)]
pub struct LogoutResponse {
    /// Send the browser here to end the session at the identity provider too.
    pub end_session_url: String,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    /// Report what would change and change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalLoginSetting {
    /// `false`: only break-glass accounts may log in with a local password.
    pub enabled_for_everyone: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakGlassRequest {
    pub break_glass: bool,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PeopleQuery {
    /// Part of a username or display name (1 to 100 characters, case-insensitive).
    pub q: String,
    /// At most this many, 1 to 50 (default 20; a value outside is clamped into that range).
    #[param(value_type = Option<u64>, maximum = 4_294_967_295_u64)]
    pub limit: Option<u32>,
}

/// Someone a user may start a conversation with: names only.
#[derive(Serialize, ToSchema)]
pub struct PersonView {
    pub id: UserId,
    pub username: String,
    pub display_name: String,
}

#[derive(Serialize, ToSchema)]
pub struct PeopleList {
    /// Active accounts, in username order.
    pub people: Vec<PersonView>,
}
