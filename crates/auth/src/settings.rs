//! The identity service's settings and the shared state its handlers receive.

use conclave_core::{Clock, LoginThrottle, SessionPolicy};
use conclave_store::Db;
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct AuthSettings {
    pub sessions: SessionPolicy,
    pub throttle: LoginThrottle,
    /// Mark the session cookie `Secure` (when served over TLS, directly or behind an
    /// ingress that terminates it).
    pub secure_cookies: bool,
}

/// What handlers and extractors need: the database, the clock and the settings.
#[derive(Clone, Debug)]
pub struct AuthState {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub settings: AuthSettings,
}
