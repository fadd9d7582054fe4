//! The identity service's settings and the shared state its handlers receive.

use conclave_core::{
    Clock, LoginThrottle, RateLimiter, SessionId, SessionPolicy, Timestamp, UserId,
};
use conclave_store::{Db, DbConnection, StoreError};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct AuthSettings {
    pub sessions: SessionPolicy,
    pub throttle: LoginThrottle,
    /// Mark the session cookie `Secure` (when served over TLS, directly or behind an
    /// ingress that terminates it).
    pub secure_cookies: bool,
    /// Per-account limits from the messaging policy (the governing security group's),
    /// applied on top of the configured ones; `None` in tests of this crate alone.
    pub account_policy: Option<Arc<dyn AccountPolicy>>,
    /// Login attempts per client address and per account name, counted in memory.
    pub login_rate: LoginRate,
}

/// How often logins may be tried, right or wrong: per client address and per account
/// name, a minute, on this node (in memory; each node counts its own). Checked before any
/// database work or password hashing, so a flood of logins costs little. Failures are
/// also counted in the database across nodes (`throttle`).
#[derive(Clone, Debug)]
pub struct LoginRate {
    per_address: RateLimiter<String>,
    per_account: RateLimiter<String>,
}

impl LoginRate {
    pub fn new(per_address_per_minute: u32, per_account_per_minute: u32) -> Self {
        Self {
            per_address: RateLimiter::new(per_address_per_minute),
            per_account: RateLimiter::new(per_account_per_minute),
        }
    }

    /// No practical limit (tests of other rules).
    pub fn unlimited() -> Self {
        Self::new(u32::MAX, u32::MAX)
    }

    /// Takes one attempt from the address's and the account's allowance; when either is
    /// spent, how long until the next attempt may be made.
    pub fn check(
        &self,
        client_addr: Option<&str>,
        account: &str,
        now: Timestamp,
    ) -> Result<(), Duration> {
        if let Some(addr) = client_addr {
            self.per_address.check(&addr.to_owned(), now)?;
        }
        self.per_account.check(&account.trim().to_lowercase(), now)
    }
}

/// Limits an account's policy may set; each can only shorten the configured one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccountLimits {
    pub session_lifetime: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub lockout_threshold: Option<u32>,
}

/// Where per-account limits come from. Implemented by the policy service (which depends
/// on this crate, so it is handed in rather than called).
pub trait AccountPolicy: Send + Sync + std::fmt::Debug {
    fn limits(&self, conn: &mut DbConnection, user: UserId) -> Result<AccountLimits, StoreError>;
}

impl AuthSettings {
    pub fn limits_for(
        &self,
        conn: &mut DbConnection,
        user: UserId,
    ) -> Result<AccountLimits, StoreError> {
        match &self.account_policy {
            Some(policy) => policy.limits(conn, user),
            None => Ok(AccountLimits::default()),
        }
    }
}

/// What handlers and extractors need: the database, the clock and the settings.
#[derive(Clone, Debug)]
pub struct AuthState {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub settings: AuthSettings,
    pub revocations: Revocations,
}

/// A session, or every session of an account, that ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revoked {
    Session(SessionId),
    /// Every session of the user (suspension, admin's end-sessions).
    User(UserId),
    /// Every session of the user except one (a password change keeps the current one).
    UserExcept(UserId, SessionId),
}

impl Revoked {
    pub fn covers(&self, user: UserId, session: SessionId) -> bool {
        match *self {
            Revoked::Session(ended) => ended == session,
            Revoked::User(ended) => ended == user,
            Revoked::UserExcept(ended, kept) => ended == user && kept != session,
        }
    }
}

/// Tells long-lived connections on this node, at once, that sessions ended, after the
/// change committed. (Connections also re-check their session periodically, which covers
/// revocations made elsewhere, such as by the command line.)
#[derive(Clone, Debug)]
pub struct Revocations(tokio::sync::broadcast::Sender<Revoked>);

impl Default for Revocations {
    fn default() -> Self {
        Self(tokio::sync::broadcast::channel(1024).0)
    }
}

impl Revocations {
    pub fn notify(&self, revoked: Revoked) {
        // No listener is fine: nothing is connected.
        let _ = self.0.send(revoked);
    }

    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Revoked> {
        self.0.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocations_cover_what_they_name() {
        let (user, other_user) = (UserId::new(), UserId::new());
        let (session, other_session) = (SessionId::new(), SessionId::new());
        assert!(Revoked::Session(session).covers(user, session));
        assert!(!Revoked::Session(session).covers(user, other_session));
        assert!(Revoked::User(user).covers(user, session));
        assert!(!Revoked::User(user).covers(other_user, session));
        assert!(Revoked::UserExcept(user, session).covers(user, other_session));
        assert!(!Revoked::UserExcept(user, session).covers(user, session));
    }

    #[tokio::test]
    async fn notices_reach_every_subscriber() {
        let revocations = Revocations::default();
        let (mut a, mut b) = (revocations.subscribe(), revocations.subscribe());
        let user = UserId::new();
        revocations.notify(Revoked::User(user));
        assert_eq!(a.recv().await.unwrap(), Revoked::User(user));
        assert_eq!(b.recv().await.unwrap(), Revoked::User(user));
    }
}
