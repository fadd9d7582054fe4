//! Configuration: `conclave.toml` (optional), then `CONCLAVE_*` environment variables over
//! it (`__` separates nesting: `CONCLAVE_DATABASE__URL`), then command-line flags. Unknown
//! keys are errors, so a typo never silently falls back to a default; every error names
//! the key. One [`Settings`] value is passed down; there is no global.

use conclave_core::{LoginThrottle, SessionPolicy};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const CONFIG_VERSION: u32 = 1;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The format version of this file; 1.
    pub version: u32,
    /// Address and port to listen on.
    pub bind: SocketAddr,
    /// Where the SQLite database, generated keys and attachments live.
    pub data_dir: PathBuf,
    /// The URL users reach this server at, when it differs from `http://{bind}` (a
    /// load balancer, an ingress); used in printed links.
    pub public_url: Option<String>,
    /// What this node does: `all` (the default), `api` (serve the API and WebSockets,
    /// never the singleton workers) or `worker` (the singleton workers when elected, and
    /// only the probes and `/metrics` over HTTP).
    pub role: Role,
    pub database: DatabaseSettings,
    pub http: HttpSettings,
    /// HTTPS served directly; off (plain HTTP, for an ingress that terminates TLS) unless
    /// both files are set.
    pub tls: TlsSettings,
    pub log: LogSettings,
    /// Traces and metrics over OpenTelemetry (OTLP); off unless an endpoint is set.
    pub telemetry: TelemetrySettings,
    pub sessions: SessionSettings,
    pub login: LoginSettings,
    pub keys: KeySettings,
    pub messaging: MessagingLimits,
    pub audit: AuditSettings,
    /// Single sign-on (OpenID Connect providers, the LDAP directory) and directory sync.
    pub identity: conclave_auth::identity::config::IdentityConfig,
    pub retention: RetentionSettings,
    pub export: ExportSettings,
}

/// Compliance exports: where bundles go, and the scheduled ones.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportSettings {
    /// Run export jobs in this process.
    pub worker_enabled: bool,
    /// Where bundles are written (empty: `{data_dir}/exports`).
    pub dir: String,
    /// Database connections that read a job's rooms in parallel, ahead of its writer
    /// (0: one per core, at most four).
    pub readers: usize,
    pub schedules: Vec<ExportSchedule>,
}

impl Default for ExportSettings {
    fn default() -> Self {
        Self {
            worker_enabled: true,
            dir: String::new(),
            readers: 0,
            schedules: Vec::new(),
        }
    }
}

/// An export of consecutive windows: each window of `every_hours` is exported when it
/// ends, so together they cover everything once.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSchedule {
    pub name: String,
    /// `jsonl`, `csv`, `eml` or `xml`.
    pub format: String,
    pub every_hours: u64,
    #[serde(default)]
    pub include_files: bool,
}

/// The sweeper's pause between batches on SQLite unless configured. SQLite has one write
/// lock: without a pause the sweeper takes it again the moment it commits, ahead of the
/// live sends waiting in their busy handlers. PostgreSQL needs none (the bench measured
/// live send p99 no worse while the sweeper ran without pauses: docs/performance.md).
pub const SQLITE_SWEEP_PAUSE_MILLIS: u64 = 20;

/// The retention sweeper and the recomputation jobs (the policies themselves are set by
/// compliance officers through the API or the CLI).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// Run the sweeper and the jobs in this process.
    pub sweeper_enabled: bool,
    /// Seconds between sweeps.
    pub sweep_interval_seconds: u64,
    /// Messages examined per sweeper transaction.
    pub batch_size: u32,
    /// Milliseconds the sweeper waits between batches, leaving the database to live
    /// traffic. Unset: none on PostgreSQL, [`SQLITE_SWEEP_PAUSE_MILLIS`] on SQLite.
    pub batch_pause_millis: Option<u64>,
    /// Seconds past its deadline before a message is destroyed (connected clients are
    /// told it expired first).
    pub grace_seconds: u64,
    /// Hours after which an upload no message uses is removed.
    pub abandoned_upload_hours: u64,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            sweeper_enabled: true,
            sweep_interval_seconds: 60,
            batch_size: 500,
            batch_pause_millis: None,
            grace_seconds: 60,
            abandoned_upload_hours: 24,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// The Ed25519 key (base64 of its 32-byte seed) that signs audit checkpoints; empty
    /// means the file `{data_dir}/audit-signing.key`, generated on the first start.
    pub signing_key: Secret,
    /// Seconds between signed checkpoints of the audit chain.
    pub checkpoint_interval_seconds: u64,
    pub syslog: SyslogConfig,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            signing_key: Secret::default(),
            checkpoint_interval_seconds: 60,
            syslog: SyslogConfig::default(),
        }
    }
}

/// Forwarding every audit event to a SIEM as RFC 5424 syslog.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyslogConfig {
    pub enabled: bool,
    /// `host:port` of the collector.
    pub address: String,
    /// `udp`, `tcp` or `tls`.
    pub transport: String,
    /// PEM file of the CA certificates to trust for `tls` (empty: the system's).
    pub ca_file: String,
    /// `auth`, `authpriv` or `local0` to `local7`.
    pub facility: String,
    /// The HOSTNAME field (empty: this machine's host name).
    pub hostname: String,
}

impl Default for SyslogConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            address: String::new(),
            transport: "tcp".into(),
            ca_file: String::new(),
            facility: "authpriv".into(),
            hostname: String::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeySettings {
    /// The master key file (TOML); empty means `{data_dir}/master-keys.toml`, generated on
    /// the first start if no data key exists yet.
    pub file: Option<PathBuf>,
    /// One master key as `KEY_ID:BASE64` (32 bytes), instead of a file; typically from
    /// `CONCLAVE_KEYS__MASTER_KEY` fed by a secret store.
    pub master_key: Secret,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MessagingLimits {
    /// Most members a room may hold.
    pub max_room_members: u32,
    /// Largest message text, in bytes of UTF-8.
    pub max_message_bytes: usize,
    /// Largest attachment, in bytes.
    pub max_attachment_bytes: u64,
    /// Most rooms and direct conversations one user may be a member of (creating,
    /// joining or being added past it is refused with 422 `policy_violation`).
    pub max_rooms_per_user: u32,
    /// Messages one user may send a minute, in bursts of as many; past it, 429
    /// `rate_limited` with `Retry-After`. Counted in memory on each node.
    pub max_sends_per_minute: u32,
    /// Events queued per WebSocket before the connection counts as a slow consumer.
    pub websocket_queue_len: usize,
    /// Largest WebSocket frame a client may send, in bytes.
    pub websocket_max_frame_bytes: usize,
    /// WebSocket frames per second a client may send (bursts of twice that).
    pub websocket_max_frames_per_second: u32,
    /// Seconds between server pings.
    pub websocket_ping_interval_seconds: u64,
    /// WebSockets one user may hold open on one node; one more is refused with 429.
    pub websocket_max_per_user: usize,
}

impl Default for MessagingLimits {
    fn default() -> Self {
        Self {
            max_room_members: 500,
            max_message_bytes: 16 * 1024,
            max_attachment_bytes: 100 * 1024 * 1024,
            max_rooms_per_user: 1000,
            max_sends_per_minute: 120,
            websocket_queue_len: 1024,
            websocket_max_frame_bytes: 64 * 1024,
            websocket_max_frames_per_second: 20,
            websocket_ping_interval_seconds: 20,
            websocket_max_per_user: 16,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `postgres://user:password@host/db` or `sqlite://path`; empty means SQLite at
    /// `{data_dir}/conclave.db`.
    pub url: Secret,
    /// Connections kept per node.
    pub pool_size: u32,
    /// How long a request waits for a connection before answering 503.
    pub acquire_timeout_seconds: u64,
    /// Apply pending migrations at start (otherwise refuse to start until `conclave
    /// migrate` has run).
    pub migrate_on_start: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Largest JSON request body, in bytes.
    pub max_json_body_bytes: usize,
    /// Largest request body of any other kind, in bytes.
    pub max_body_bytes: usize,
    /// Time a client has to send its request headers (slow-client protection); past it,
    /// 408 and the connection is closed.
    pub client_request_timeout_seconds: u64,
    /// Longest pause while a client sends a request body (slow-client protection); past
    /// it, 408 `request_timeout` and the connection is closed. Applies between chunks, so
    /// a large upload on a slow but steady link is not cut off.
    pub client_body_timeout_seconds: u64,
    /// Time a client has to acknowledge the closing of its connection before it is
    /// dropped.
    pub client_disconnect_timeout_seconds: u64,
    /// Idle time before a kept-alive connection is closed.
    pub keep_alive_seconds: u64,
    /// On SIGTERM, how long in-flight requests get to finish.
    pub shutdown_timeout_seconds: u64,
    /// Worker threads; 0 means one per CPU core.
    pub workers: usize,
}

/// HTTPS with rustls. When on, every response carries HSTS and the session cookie is
/// always `Secure`; SIGHUP reloads both files (see `docs/deployment.md`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// PEM certificate chain, the server's certificate first.
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of that certificate.
    pub key_file: Option<PathBuf>,
}

impl TlsSettings {
    /// The certificate and key files, when HTTPS is on.
    pub fn files(&self) -> Option<(&Path, &Path)> {
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => Some((cert, key)),
            _ => None,
        }
    }

    pub fn enabled(&self) -> bool {
        self.files().is_some()
    }
}

/// A node's part in a deployment of several (see `docs/deployment.md`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The API, the WebSockets and (when elected) the singleton workers.
    #[default]
    All,
    /// The API and the WebSockets only.
    Api,
    /// The singleton workers (when elected), the probes and `/metrics`.
    Worker,
}

impl Role {
    pub fn serves_api(self) -> bool {
        matches!(self, Role::All | Role::Api)
    }

    pub fn runs_workers(self) -> bool {
        matches!(self, Role::All | Role::Worker)
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Api => "api",
            Role::Worker => "worker",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, for a terminal.
    Pretty,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A tracing filter: `info`, `conclave=debug,actix_web=info`, …
    pub level: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    /// Base URL of an OTLP/HTTP receiver (protobuf), such as an OpenTelemetry Collector's
    /// `http://collector:4318`; traces go to `/v1/traces` and metrics to `/v1/metrics`
    /// under it. Unset (the default): no spans are built for export and nothing is sent.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// Fraction of new traces recorded, 0.0 to 1.0; a request that arrives with a W3C
    /// `traceparent` follows its caller's sampling decision.
    pub trace_sample_ratio: f64,
    /// How often metrics are pushed.
    pub metrics_interval_seconds: u64,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "conclave".to_owned(),
            trace_sample_ratio: 1.0,
            metrics_interval_seconds: 60,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionSettings {
    /// A session ends this long after login, however active.
    pub absolute_lifetime_minutes: u64,
    /// A session ends after this long without a request.
    pub idle_timeout_minutes: u64,
    /// Mark the session cookie `Secure` (DESIGN.md). Browsers accept Secure cookies from
    /// `http://localhost`; turn off only for plain-HTTP access from other machines (a
    /// trial), never in production.
    pub secure_cookies: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginSettings {
    /// Failed logins allowed per account within the window before it is throttled.
    pub max_failures_per_account: u32,
    /// Failed logins allowed per client address within the window.
    pub max_failures_per_address: u32,
    pub failure_window_seconds: u64,
    /// Login attempts (right or wrong) one client address may make a minute, per node;
    /// past it, 429 `rate_limited` with `Retry-After` before any password is checked.
    pub max_attempts_per_minute_per_address: u32,
    /// Login attempts one account name may receive a minute, per node.
    pub max_attempts_per_minute_per_account: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            version: CONFIG_VERSION,
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            public_url: None,
            role: Role::All,
            database: DatabaseSettings::default(),
            http: HttpSettings::default(),
            tls: TlsSettings::default(),
            log: LogSettings::default(),
            telemetry: TelemetrySettings::default(),
            sessions: SessionSettings::default(),
            login: LoginSettings::default(),
            keys: KeySettings::default(),
            messaging: MessagingLimits::default(),
            audit: AuditSettings::default(),
            identity: Default::default(),
            retention: RetentionSettings::default(),
            export: ExportSettings::default(),
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: Secret::default(),
            pool_size: 16,
            acquire_timeout_seconds: 5,
            migrate_on_start: true,
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            max_json_body_bytes: 128 * 1024,
            max_body_bytes: 256 * 1024,
            client_request_timeout_seconds: 10,
            client_body_timeout_seconds: 30,
            client_disconnect_timeout_seconds: 5,
            keep_alive_seconds: 75,
            shutdown_timeout_seconds: 30,
            workers: 0,
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: "info".into(),
        }
    }
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            absolute_lifetime_minutes: 12 * 60,
            idle_timeout_minutes: 60,
            secure_cookies: true,
        }
    }
}

impl Default for LoginSettings {
    fn default() -> Self {
        Self {
            max_failures_per_account: 5,
            max_failures_per_address: 20,
            failure_window_seconds: 900,
            max_attempts_per_minute_per_address: 120,
            max_attempts_per_minute_per_account: 10,
        }
    }
}

/// A configuration value that must not be printed (a database URL with its password).
#[derive(Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("\"<redacted>\"")
        }
    }
}

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Load(String),
    #[error("invalid value for `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
    #[error(transparent)]
    Identity(#[from] conclave_auth::identity::config::ConfigProblem),
}

/// Flags that override the file and the environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub bind: Option<SocketAddr>,
    pub role: Option<Role>,
    pub data_dir: Option<PathBuf>,
}

impl Settings {
    /// Loads defaults, then `config_file` (which must exist when named explicitly; the
    /// default `conclave.toml` may be absent), then the environment, then `overrides`.
    pub fn load(config_file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        match config_file {
            Some(path) => {
                if !path.is_file() {
                    return Err(ConfigError::Load(format!(
                        "configuration file {} does not exist",
                        path.display()
                    )));
                }
                figment = figment.merge(Toml::file_exact(path));
            }
            None if Path::new("conclave.toml").is_file() => {
                figment = figment.merge(Toml::file_exact("conclave.toml"));
            }
            None => {}
        }
        figment = figment.merge(Env::prefixed("CONCLAVE_").split("__").ignore(&["config"]));
        if let Some(bind) = overrides.bind {
            figment = figment.merge(Serialized::default("bind", bind));
        }
        if let Some(dir) = &overrides.data_dir {
            figment = figment.merge(Serialized::default("data_dir", dir));
        }
        if let Some(role) = overrides.role {
            figment = figment.merge(Serialized::default("role", role));
        }
        Self::extract(figment)
    }

    /// Reads a configuration file's text alone (no environment, no flags): what
    /// `load` does with a file, for the `config` fuzz target and tests.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        Self::extract(Figment::new().merge(Toml::string(text)))
    }

    fn extract(figment: Figment) -> Result<Self, ConfigError> {
        let settings: Settings = figment.extract().map_err(|err| {
            ConfigError::Load(
                err.into_iter()
                    .map(|e| describe(&e))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        settings.validate()?;
        Ok(settings)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.to_owned(),
            })
        };
        if self.version != CONFIG_VERSION {
            return invalid(
                "version",
                &format!("this binary reads version {CONFIG_VERSION}"),
            );
        }
        if self.data_dir.as_os_str().is_empty() {
            return invalid("data_dir", "must not be empty");
        }
        if let Some(url) = &self.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return invalid("public_url", "must start with http:// or https://");
        }
        if let Err(err) = conclave_store::Backend::from_url(&self.database_url()) {
            return invalid("database.url", &err.to_string());
        }
        if !(1..=512).contains(&self.database.pool_size) {
            return invalid("database.pool_size", "must be between 1 and 512");
        }
        if self.database.acquire_timeout_seconds == 0 {
            return invalid("database.acquire_timeout_seconds", "must be at least 1");
        }
        if self.http.max_json_body_bytes < 1024 {
            return invalid("http.max_json_body_bytes", "must be at least 1024");
        }
        if self.http.max_body_bytes < 1024 {
            return invalid("http.max_body_bytes", "must be at least 1024");
        }
        if self.http.client_request_timeout_seconds == 0 {
            return invalid("http.client_request_timeout_seconds", "must be at least 1");
        }
        if self.http.client_body_timeout_seconds == 0 {
            return invalid("http.client_body_timeout_seconds", "must be at least 1");
        }
        if self.http.client_disconnect_timeout_seconds == 0 {
            return invalid(
                "http.client_disconnect_timeout_seconds",
                "must be at least 1",
            );
        }
        match (&self.tls.cert_file, &self.tls.key_file) {
            (Some(_), None) => {
                return invalid("tls.key_file", "must be set when tls.cert_file is");
            }
            (None, Some(_)) => {
                return invalid("tls.cert_file", "must be set when tls.key_file is");
            }
            (Some(cert), Some(key)) => {
                if cert.as_os_str().is_empty() {
                    return invalid("tls.cert_file", "must not be empty");
                }
                if key.as_os_str().is_empty() {
                    return invalid("tls.key_file", "must not be empty");
                }
            }
            (None, None) => {}
        }
        if let Some(endpoint) = &self.telemetry.otlp_endpoint {
            match url::Url::parse(endpoint) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {}
                _ => {
                    return invalid(
                        "telemetry.otlp_endpoint",
                        "must be an http:// or https:// URL, such as http://collector:4318",
                    );
                }
            }
        }
        if self.telemetry.service_name.trim().is_empty() {
            return invalid("telemetry.service_name", "must not be empty");
        }
        if !(0.0..=1.0).contains(&self.telemetry.trace_sample_ratio) {
            return invalid(
                "telemetry.trace_sample_ratio",
                "must be between 0.0 and 1.0",
            );
        }
        if self.telemetry.metrics_interval_seconds == 0 {
            return invalid("telemetry.metrics_interval_seconds", "must be at least 1");
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return invalid(
                "log.level",
                "is not a tracing filter (try `info` or `conclave=debug,info`)",
            );
        }
        if self.sessions.absolute_lifetime_minutes > 366 * 24 * 60 {
            return invalid(
                "sessions.absolute_lifetime_minutes",
                "must be at most a year",
            );
        }
        if self.sessions.idle_timeout_minutes == 0 {
            return invalid("sessions.idle_timeout_minutes", "must be at least 1");
        }
        if self.sessions.absolute_lifetime_minutes < self.sessions.idle_timeout_minutes {
            return invalid(
                "sessions.absolute_lifetime_minutes",
                "must be at least sessions.idle_timeout_minutes",
            );
        }
        if self.login.max_failures_per_account == 0 || self.login.max_failures_per_address == 0 {
            return invalid(
                "login.max_failures_per_account",
                "limits must be at least 1",
            );
        }
        if self.login.max_attempts_per_minute_per_address == 0 {
            return invalid(
                "login.max_attempts_per_minute_per_address",
                "must be at least 1",
            );
        }
        if self.login.max_attempts_per_minute_per_account == 0 {
            return invalid(
                "login.max_attempts_per_minute_per_account",
                "must be at least 1",
            );
        }
        if !(1..=86_400).contains(&self.login.failure_window_seconds) {
            return invalid(
                "login.failure_window_seconds",
                "must be between 1 and 86400",
            );
        }
        let limits = &self.messaging;
        if !(2..=100_000).contains(&limits.max_room_members) {
            return invalid("messaging.max_room_members", "must be between 2 and 100000");
        }
        if !(1..=1024 * 1024).contains(&limits.max_message_bytes) {
            return invalid(
                "messaging.max_message_bytes",
                "must be between 1 and 1048576",
            );
        }
        if limits.max_message_bytes * 6 + 4096 > self.http.max_json_body_bytes {
            return invalid(
                "http.max_json_body_bytes",
                "must be at least 6 x messaging.max_message_bytes + 4096 (JSON escaping can grow text sixfold)",
            );
        }
        if limits.max_attachment_bytes == 0 {
            return invalid("messaging.max_attachment_bytes", "must be at least 1");
        }
        if limits.max_rooms_per_user == 0 {
            return invalid("messaging.max_rooms_per_user", "must be at least 1");
        }
        if limits.max_sends_per_minute == 0 {
            return invalid("messaging.max_sends_per_minute", "must be at least 1");
        }
        if limits.websocket_max_per_user == 0 {
            return invalid("messaging.websocket_max_per_user", "must be at least 1");
        }
        if limits.websocket_queue_len == 0 || limits.websocket_max_frames_per_second == 0 {
            return invalid(
                "messaging.websocket_queue_len",
                "WebSocket limits must be at least 1",
            );
        }
        if limits.websocket_max_frame_bytes < 1024 {
            return invalid(
                "messaging.websocket_max_frame_bytes",
                "must be at least 1024",
            );
        }
        if limits.websocket_ping_interval_seconds == 0 {
            return invalid(
                "messaging.websocket_ping_interval_seconds",
                "must be at least 1",
            );
        }
        if !self.keys.master_key.expose().is_empty()
            && let Err(err) =
                conclave_crypto::Keyring::from_env_value(self.keys.master_key.expose())
        {
            return invalid("keys.master_key", &err.to_string());
        }
        if self.audit.checkpoint_interval_seconds == 0 {
            return invalid("audit.checkpoint_interval_seconds", "must be at least 1");
        }
        if !self.audit.signing_key.expose().is_empty()
            && let Err(err) =
                conclave_crypto::CheckpointKey::from_base64(self.audit.signing_key.expose())
        {
            return invalid("audit.signing_key", &err);
        }
        let syslog = &self.audit.syslog;
        if let Err(err) = conclave_audit::syslog::Transport::parse(&syslog.transport) {
            return invalid("audit.syslog.transport", &err);
        }
        if let Err(err) = conclave_audit::syslog::facility_code(&syslog.facility) {
            return invalid("audit.syslog.facility", &err);
        }
        if syslog.enabled
            && syslog
                .address
                .rsplit_once(':')
                .is_none_or(|(_, port)| port.parse::<u16>().is_err())
        {
            return invalid(
                "audit.syslog.address",
                "must be host:port when syslog is enabled",
            );
        }
        if self.export.readers > 16 {
            return invalid("export.readers", "must be between 0 (one per core) and 16");
        }
        let mut names = std::collections::BTreeSet::new();
        for schedule in &self.export.schedules {
            if schedule.name.trim().is_empty() || !names.insert(schedule.name.as_str()) {
                return invalid("export.schedules.name", "each schedule needs its own name");
            }
            if let Err(err) = conclave_audit::archive::ArchiveFormat::parse(&schedule.format) {
                return invalid("export.schedules.format", &err.to_string());
            }
            if !(1..=8_760).contains(&schedule.every_hours) {
                return invalid("export.schedules.every_hours", "must be between 1 and 8760");
            }
        }
        let retention = &self.retention;
        if retention.sweep_interval_seconds == 0 {
            return invalid("retention.sweep_interval_seconds", "must be at least 1");
        }
        if !(1..=10_000).contains(&retention.batch_size) {
            return invalid("retention.batch_size", "must be between 1 and 10000");
        }
        if !(1..=87_600).contains(&retention.abandoned_upload_hours) {
            return invalid(
                "retention.abandoned_upload_hours",
                "must be between 1 and 87600 (ten years)",
            );
        }
        if retention
            .batch_pause_millis
            .is_some_and(|pause| pause > 60_000)
        {
            return invalid("retention.batch_pause_millis", "must be at most 60000");
        }
        self.identity.validate()?;
        Ok(())
    }

    /// The audit checkpoint signing key file.
    pub fn audit_key_file(&self) -> PathBuf {
        self.data_dir.join("audit-signing.key")
    }

    /// The master key file.
    pub fn key_file(&self) -> PathBuf {
        self.keys
            .file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("master-keys.toml"))
    }

    /// Where and how audit events are forwarded, when enabled (call after `validate`).
    pub fn syslog_settings(&self) -> Option<conclave_audit::syslog::SyslogSettings> {
        let config = &self.audit.syslog;
        if !config.enabled {
            return None;
        }
        let hostname = if config.hostname.is_empty() {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|name| name.trim().to_owned())
                .unwrap_or_default()
        } else {
            config.hostname.clone()
        };
        Some(conclave_audit::syslog::SyslogSettings {
            address: config.address.clone(),
            transport: conclave_audit::syslog::Transport::parse(&config.transport).ok()?,
            ca_file: (!config.ca_file.is_empty()).then(|| PathBuf::from(&config.ca_file)),
            facility: conclave_audit::syslog::facility_code(&config.facility).ok()?,
            hostname,
            app_name: "conclave".into(),
            destination: format!("syslog:{}", config.address),
        })
    }

    /// How the retention sweeper runs.
    pub fn sweep_settings(&self) -> conclave_policy::sweeper::SweepSettings {
        let retention = &self.retention;
        conclave_policy::sweeper::SweepSettings {
            batch_size: i64::from(retention.batch_size),
            pause: Duration::from_millis(retention.batch_pause_millis.unwrap_or(
                if self.database_url().starts_with("postgres") {
                    0
                } else {
                    SQLITE_SWEEP_PAUSE_MILLIS
                },
            )),
            grace: Duration::from_secs(retention.grace_seconds),
            abandoned_upload_after: Duration::from_secs(retention.abandoned_upload_hours * 3600),
            attachments_dir: self.attachments_dir(),
            interval: Duration::from_secs(retention.sweep_interval_seconds),
        }
    }

    /// Where compliance export bundles are written.
    pub fn exports_dir(&self) -> PathBuf {
        if self.export.dir.is_empty() {
            self.data_dir.join("exports")
        } else {
            PathBuf::from(&self.export.dir)
        }
    }

    /// How export jobs read their rooms on `backend`: `export.readers` connections, or
    /// one per core when 0.
    pub fn export_read_ahead(
        &self,
        backend: conclave_store::Backend,
    ) -> conclave_audit::exports::ReadAhead {
        match self.export.readers {
            0 => conclave_audit::exports::ReadAhead::per_core(backend),
            readers => conclave_audit::exports::ReadAhead { backend, readers },
        }
    }

    /// The configured export schedules (call after `validate`).
    pub fn export_schedules(&self) -> Vec<conclave_audit::exports::Schedule> {
        self.export
            .schedules
            .iter()
            .filter_map(|schedule| {
                Some(conclave_audit::exports::Schedule {
                    name: schedule.name.clone(),
                    format: conclave_audit::archive::ArchiveFormat::parse(&schedule.format).ok()?,
                    every: Duration::from_secs(schedule.every_hours * 3600),
                    include_files: schedule.include_files,
                })
            })
            .collect()
    }

    /// Where encrypted attachments are stored.
    pub fn attachments_dir(&self) -> PathBuf {
        self.data_dir.join("attachments")
    }

    /// The database URL, defaulting to SQLite in the data directory.
    pub fn database_url(&self) -> String {
        if self.database.url.expose().is_empty() {
            format!("sqlite://{}", self.data_dir.join("conclave.db").display())
        } else {
            self.database.url.expose().to_owned()
        }
    }

    /// The base URL printed for people to open.
    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("{}://{}", self.scheme(), self.bind),
        }
    }

    /// `https` when this process serves TLS itself, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.enabled() { "https" } else { "http" }
    }

    /// Whether the session cookie is marked `Secure`: always under TLS, else as
    /// `sessions.secure_cookies` says.
    pub fn secure_cookies(&self) -> bool {
        self.sessions.secure_cookies || self.tls.enabled()
    }

    pub fn session_policy(&self) -> SessionPolicy {
        SessionPolicy {
            absolute_lifetime: Duration::from_secs(self.sessions.absolute_lifetime_minutes * 60),
            idle_timeout: Duration::from_secs(self.sessions.idle_timeout_minutes * 60),
        }
    }

    pub fn login_throttle(&self) -> LoginThrottle {
        LoginThrottle {
            max_failures_per_account: self.login.max_failures_per_account,
            max_failures_per_address: self.login.max_failures_per_address,
            window: Duration::from_secs(self.login.failure_window_seconds),
        }
    }
}

/// figment's messages name the key as `default.x.y`; say `x.y` and where it came from.
fn describe(err: &figment::Error) -> String {
    let mut text = err.kind.to_string();
    if !err.path.is_empty() {
        text = format!("`{}`: {text}", err.path.join("."));
    }
    if let Some(meta) = &err.metadata {
        let source = match &meta.source {
            Some(source) => format!("{} ({source})", meta.name),
            None => meta.name.to_string(),
        };
        text = format!("{text} [from {source}]");
    }
    text
}

#[cfg(test)]
// figment's `Jail` closures must return figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    fn load_in_jail(toml: &str, env: &[(&str, &str)]) -> Result<Settings, String> {
        let mut outcome = Err(String::new());
        Jail::expect_with(|jail| {
            jail.create_file("conclave.toml", toml)?;
            for (key, value) in env {
                jail.set_env(key, value);
            }
            outcome = Settings::load(None, &Overrides::default()).map_err(|e| e.to_string());
            Ok(())
        });
        outcome
    }

    #[test]
    fn defaults_serve_locally_on_sqlite() {
        let settings = load_in_jail("", &[]).unwrap();
        assert_eq!(settings.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(settings.database_url(), "sqlite://./data/conclave.db");
        assert_eq!(settings.public_url(), "http://127.0.0.1:8080");
    }

    #[test]
    fn tls_needs_both_files_and_turns_on_https_and_secure_cookies() {
        let settings = load_in_jail("", &[]).unwrap();
        assert!(!settings.tls.enabled());
        assert_eq!(settings.scheme(), "http");

        let err = load_in_jail("[tls]\ncert_file = \"cert.pem\"\n", &[]).unwrap_err();
        assert!(err.contains("`tls.key_file`"), "{err}");
        let err = load_in_jail("", &[("CONCLAVE_TLS__KEY_FILE", "key.pem")]).unwrap_err();
        assert!(err.contains("`tls.cert_file`"), "{err}");
        let err =
            load_in_jail("[tls]\ncert_file = \"\"\nkey_file = \"key.pem\"\n", &[]).unwrap_err();
        assert!(err.contains("`tls.cert_file`: must not be empty"), "{err}");
        let err = load_in_jail("[tls]\ncert = \"cert.pem\"\n", &[]).unwrap_err();
        assert!(err.contains("tls"), "{err}");

        let settings = load_in_jail(
            "[sessions]\nsecure_cookies = false\n[tls]\ncert_file = \"cert.pem\"\n",
            &[("CONCLAVE_TLS__KEY_FILE", "key.pem")],
        )
        .unwrap();
        assert_eq!(
            settings.tls.files(),
            Some((Path::new("cert.pem"), Path::new("key.pem")))
        );
        assert_eq!(settings.public_url(), "https://127.0.0.1:8080");
        assert!(settings.secure_cookies(), "TLS forces Secure cookies on");
        let plain = load_in_jail("[sessions]\nsecure_cookies = false\n", &[]).unwrap();
        assert!(!plain.secure_cookies());
    }

    #[test]
    fn the_sweeper_pauses_between_batches_on_sqlite_only_unless_configured() {
        let sqlite = load_in_jail("", &[]).unwrap();
        assert_eq!(
            sqlite.sweep_settings().pause,
            Duration::from_millis(SQLITE_SWEEP_PAUSE_MILLIS)
        );
        let postgres =
            load_in_jail("[database]\nurl = \"postgres://app@db/conclave\"\n", &[]).unwrap();
        assert_eq!(postgres.sweep_settings().pause, Duration::ZERO);
        let configured = load_in_jail(
            "[database]\nurl = \"postgres://app@db/conclave\"\n[retention]\nbatch_pause_millis = 5\n",
            &[],
        )
        .unwrap();
        assert_eq!(configured.sweep_settings().pause, Duration::from_millis(5));
        let err = load_in_jail("[retention]\nbatch_pause_millis = 70000\n", &[]).unwrap_err();
        assert!(err.contains("retention.batch_pause_millis"), "{err}");
    }

    #[test]
    fn the_sample_config_is_valid_and_matches_the_defaults() {
        let sample = include_str!("../../../conclave.sample.toml");
        let settings = load_in_jail(sample, &[]).unwrap();
        let defaults = Settings::default();
        assert_eq!(
            serde_json::to_value(&settings).unwrap(),
            serde_json::to_value(&defaults).unwrap(),
            "conclave.sample.toml should document the defaults"
        );
    }

    #[test]
    fn environment_overrides_the_file_and_flags_override_both() {
        let mut outcome = None;
        Jail::expect_with(|jail| {
            jail.create_file(
                "conclave.toml",
                "bind = \"127.0.0.1:9000\"\nrole = \"worker\"\n[log]\nformat = \"pretty\"\n",
            )?;
            jail.set_env("CONCLAVE_LOG__FORMAT", "json");
            jail.set_env("CONCLAVE_DATA_DIR", "/srv/conclave");
            let overrides = Overrides {
                bind: Some("0.0.0.0:8443".parse().unwrap()),
                role: Some(Role::Api),
                data_dir: None,
            };
            outcome = Some(Settings::load(None, &overrides).unwrap());
            Ok(())
        });
        let settings = outcome.unwrap();
        assert_eq!(settings.log.format, LogFormat::Json);
        assert_eq!(settings.data_dir, PathBuf::from("/srv/conclave"));
        assert_eq!(settings.bind.to_string(), "0.0.0.0:8443");
        assert_eq!(settings.role, Role::Api, "--role overrides the file");
    }

    #[test]
    fn the_role_is_read_from_the_file_and_a_wrong_one_is_named() {
        let settings = load_in_jail("role = \"worker\"\n", &[]).unwrap();
        assert_eq!(settings.role, Role::Worker);
        assert!(!settings.role.serves_api() && settings.role.runs_workers());
        let err = load_in_jail("role = \"leader\"\n", &[]).unwrap_err();
        assert!(err.contains("role"), "{err}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = load_in_jail("bnid = \"127.0.0.1:1\"\n", &[]).unwrap_err();
        assert!(err.contains("bnid"), "{err}");
        let err = load_in_jail("[database]\nurll = \"x\"\n", &[]).unwrap_err();
        assert!(err.contains("urll"), "{err}");
        let err = load_in_jail("", &[("CONCLAVE_SESSIONS__IDLE", "5")]).unwrap_err();
        assert!(err.contains("idle"), "{err}");
    }

    #[test]
    fn wrong_values_are_named() {
        let err = load_in_jail("bind = \"not an address\"\n", &[]).unwrap_err();
        assert!(err.contains("bind"), "{err}");
        let err = load_in_jail("[database]\npool_size = \"many\"\n", &[]).unwrap_err();
        assert!(err.contains("pool_size"), "{err}");
        let err = load_in_jail("[database]\nurl = \"mysql://x/y\"\n", &[]).unwrap_err();
        assert!(err.contains("database.url"), "{err}");
        let err = load_in_jail(
            "[sessions]\nabsolute_lifetime_minutes = 5\nidle_timeout_minutes = 10\n",
            &[],
        )
        .unwrap_err();
        assert!(err.contains("sessions.absolute_lifetime_minutes"), "{err}");
        let err = load_in_jail("version = 2\n", &[]).unwrap_err();
        assert!(err.contains("version"), "{err}");
        let err = load_in_jail("[log]\nformat = \"xml\"\n", &[]).unwrap_err();
        assert!(err.contains("format"), "{err}");
        let err = load_in_jail("[audit.syslog]\ntransport = \"http\"\n", &[]).unwrap_err();
        assert!(err.contains("audit.syslog.transport"), "{err}");
        let err =
            load_in_jail("[audit.syslog]\nenabled = true\naddress = \"siem\"\n", &[]).unwrap_err();
        assert!(err.contains("audit.syslog.address"), "{err}");
        let err = load_in_jail("[retention]\nbatch_size = 0\n", &[]).unwrap_err();
        assert!(err.contains("retention.batch_size"), "{err}");
        let err = load_in_jail("[export]\nreaders = 64\n", &[]).unwrap_err();
        assert!(err.contains("export.readers"), "{err}");
    }

    #[test]
    fn a_named_config_file_must_exist() {
        let err = Settings::load(
            Some(Path::new("/nonexistent/conclave.toml")),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/conclave.toml"));
    }

    #[test]
    fn identity_providers_load_and_bad_ones_are_named() {
        let toml = r#"
[identity.ldap]
url = "ldaps://dc1.agency.example:636"
bind_dn = "cn=svc,dc=agency,dc=example"
bind_password = "s3cret-bind"
user_base_dn = "dc=agency,dc=example"
[identity.ldap.role_mappings]
conclave-admins = ["admin"]

[[identity.oidc]]
id = "keycloak"
display_name = "Agency SSO"
issuer = "https://sso.agency.example/realms/agency"
client_id = "conclave"
client_secret = "s3cret-client"
[identity.oidc.security_group_mappings]
staff = "Staff"
"#;
        let settings = load_in_jail(toml, &[]).unwrap();
        assert_eq!(settings.identity.oidc[0].id, "keycloak");
        let printed = format!("{settings:?}");
        assert!(!printed.contains("s3cret-bind") && !printed.contains("s3cret-client"));

        let err = load_in_jail(&toml.replace("ldaps://", "http://"), &[]).unwrap_err();
        assert!(err.contains("identity.ldap.url"), "{err}");
        let err = load_in_jail(
            &toml.replace("id = \"keycloak\"", "id = \"Key Cloak\""),
            &[],
        )
        .unwrap_err();
        assert!(err.contains("identity.oidc[0].id"), "{err}");
        let err =
            load_in_jail(&toml.replace("client_secret = \"s3cret-client\"", ""), &[]).unwrap_err();
        assert!(err.contains("client_secret"), "{err}");
        let err = load_in_jail(
            &toml.replace("[\"admin\"]", "[\"admin\", \"compliance_officer\"]"),
            &[],
        )
        .unwrap_err();
        assert!(err.contains("role_mappings"), "{err}");
        let err = load_in_jail(&toml.replace("user_base_dn", "user_base"), &[]).unwrap_err();
        assert!(err.contains("user_base"), "{err}");
        let err = load_in_jail(&format!("{toml}\ncolour = 1\n"), &[]).unwrap_err();
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn database_passwords_do_not_print() {
        let settings = load_in_jail(
            "[database]\nurl = \"postgres://app:hunter2@db/conclave\"\n",
            &[],
        )
        .unwrap();
        assert!(!format!("{settings:?}").contains("hunter2"));
    }
}
