//! The actix-web application: shared state, every service's routes, the extractor
//! settings, security headers, request ids, and the JSON 404 for everything else.

use crate::settings::Settings;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::{Condition, DefaultHeaders};
use actix_web::{App, HttpResponse, web};
use conclave_api::{ApiError, RequestIdMiddleware};
use conclave_auth::identity::IdentityState;
use conclave_auth::{AuthSettings, AuthState, Revocations};
use conclave_core::Clock;
use conclave_crypto::Keyring;
use conclave_messaging::send_queue::SendQueue;
use conclave_messaging::settings::WebSocketSettings;
use conclave_messaging::{Hub, MessagingSettings, MessagingState};
use conclave_store::{Db, PoolOptions, StoreError};
use std::sync::Arc;
use std::time::Duration;

/// Everything the handlers share, built once at start.
#[derive(Clone, Debug)]
pub struct AppState {
    pub db: Db,
    pub audit_key: conclave_crypto::CheckpointKey,
    pub auth: AuthState,
    pub messaging: MessagingState,
    /// Where compliance export bundles are written.
    pub exports_dir: std::path::PathBuf,
    pub max_json_body_bytes: usize,
    pub max_body_bytes: usize,
    /// Longest pause allowed while a client sends a request body.
    pub body_idle_timeout: Duration,
    /// Single sign-on providers and the directory.
    pub identity: IdentityState,
    /// Whether this node leads the singleton workers now.
    pub leadership: crate::leader::Leadership,
    pub role: crate::settings::Role,
    /// Send `Strict-Transport-Security` (this process serves HTTPS itself).
    pub hsts: bool,
}

/// Opens the database pool the settings describe.
pub fn open_db(settings: &Settings) -> Result<Db, StoreError> {
    Db::open(
        &settings.database_url(),
        PoolOptions {
            max_size: settings.database.pool_size,
            acquire_timeout: Duration::from_secs(settings.database.acquire_timeout_seconds),
        },
    )
}

impl AppState {
    pub fn new(
        settings: &Settings,
        db: Db,
        keyring: Keyring,
        audit_key: conclave_crypto::CheckpointKey,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let auth = AuthState {
            db: db.clone(),
            clock,
            settings: AuthSettings {
                sessions: settings.session_policy(),
                throttle: settings.login_throttle(),
                secure_cookies: settings.secure_cookies(),
                account_policy: Some(Arc::new(conclave_policy::AccountLimitsFromPolicy)),
                login_rate: conclave_auth::LoginRate::new(
                    settings.login.max_attempts_per_minute_per_address,
                    settings.login.max_attempts_per_minute_per_account,
                ),
            },
            revocations: Revocations::default(),
        };
        let limits = &settings.messaging;
        let (keyring, hub) = (Arc::new(keyring), Hub::default());
        let messaging = MessagingState {
            auth: auth.clone(),
            sends: SendQueue::start(db.clone(), Arc::clone(&keyring), &hub),
            keyring,
            settings: Arc::new(MessagingSettings {
                max_room_members: limits.max_room_members,
                max_message_bytes: limits.max_message_bytes,
                max_attachment_bytes: limits.max_attachment_bytes,
                max_rooms_per_user: limits.max_rooms_per_user,
                max_sends_per_minute: limits.max_sends_per_minute,
                attachments_dir: settings.attachments_dir(),
                websocket: WebSocketSettings {
                    queue_len: limits.websocket_queue_len,
                    max_frame_bytes: limits.websocket_max_frame_bytes,
                    max_client_frames_per_second: limits.websocket_max_frames_per_second,
                    ping_interval: Duration::from_secs(limits.websocket_ping_interval_seconds),
                    max_per_user: limits.websocket_max_per_user,
                },
            }),
            hub,
            send_limiter: conclave_core::RateLimiter::new(limits.max_sends_per_minute),
        };
        // The configuration was validated at load; a failure here (a secret file removed
        // since) leaves single sign-on off, loudly, rather than refusing to serve.
        let identity = IdentityState::new(&settings.identity, &settings.public_url())
            .unwrap_or_else(|err| {
                tracing::error!(error = %err, "single sign-on is off: its configuration failed");
                IdentityState::default()
            });
        Self {
            db,
            audit_key,
            auth,
            messaging,
            exports_dir: settings.exports_dir(),
            max_json_body_bytes: settings.http.max_json_body_bytes,
            max_body_bytes: settings.http.max_body_bytes,
            body_idle_timeout: Duration::from_secs(settings.http.client_body_timeout_seconds),
            identity,
            leadership: crate::leader::Leadership::default(),
            role: settings.role,
            hsts: settings.tls.enabled(),
        }
    }
}

/// What `/healthz`, `/readyz` and `/metrics` need, and their routes: all a `worker`
/// node serves.
pub fn configure_probes(cfg: &mut web::ServiceConfig, state: &AppState) {
    cfg.app_data(web::Data::new(state.db.clone()))
        .app_data(web::Data::new(crate::health::NodeStatus {
            role: state.role,
            leadership: state.leadership.clone(),
        }))
        .configure(crate::health::routes)
        .configure(crate::metrics::routes);
}

/// Registers state and routes; `App::new().configure(|cfg| configure(cfg, &state))`.
pub fn configure(cfg: &mut web::ServiceConfig, state: &AppState) {
    conclave_api::extract::configure(cfg, state.max_json_body_bytes);
    configure_probes(cfg, state);
    cfg.app_data(web::PayloadConfig::new(state.max_body_bytes))
        .app_data(web::Data::new(state.auth.clone()))
        .app_data(web::Data::new(state.messaging.clone()))
        .app_data(web::Data::new(state.audit_key.clone()))
        .app_data(web::Data::new(state.identity.clone()))
        .app_data(web::Data::new(conclave_audit::exports_http::ExportsDir(
            state.exports_dir.clone(),
        )))
        .configure(crate::openapi::routes)
        .configure(conclave_auth::http::routes)
        .configure(conclave_audit::http::routes)
        .configure(conclave_audit::exports_http::routes)
        .configure(conclave_policy::http::routes)
        .configure(conclave_policy::compliance_http::routes)
        .configure(conclave_messaging::http::routes)
        .configure(crate::web::routes);
}

/// Headers on every response: no sniffing, no framing, no referrer leaks, and API
/// answers are never cached (they carry private data).
pub fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((header::REFERRER_POLICY, "no-referrer"))
        .add((header::CACHE_CONTROL, "no-store"))
}

pub async fn not_found() -> HttpResponse {
    actix_web::ResponseError::error_response(&ApiError::not_found())
}

/// The complete application, as `serve` runs it and as tests boot it.
pub fn build(
    state: AppState,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    // One year, as browsers' preload rules ask; only when the connection itself is HTTPS.
    let hsts = DefaultHeaders::new().add((header::STRICT_TRANSPORT_SECURITY, "max-age=31536000"));
    App::new()
        .wrap(conclave_api::BodyTimeout::new(state.body_idle_timeout))
        .wrap(Condition::new(state.hsts, hsts))
        .wrap(security_headers())
        .wrap(RequestIdMiddleware)
        .configure(|cfg| {
            if state.role.serves_api() {
                configure(cfg, &state);
            } else {
                configure_probes(cfg, &state);
            }
        })
        .default_service(web::to(not_found))
}

impl AppState {
    /// The messaging service as the source of compliance exports.
    pub fn archive_source(&self) -> conclave_messaging::archive::ConversationArchive {
        conclave_messaging::archive::ConversationArchive {
            keyring: Arc::clone(&self.messaging.keyring),
            attachments_dir: self.messaging.settings.attachments_dir.clone(),
        }
    }
}
