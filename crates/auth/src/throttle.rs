//! Failed-attempt throttling shared by login and password change. An attempt is counted
//! before its password is checked, under a per-subject lock, and un-counted if it
//! succeeds; so however many requests race, at most the limit are ever checked.

use crate::error::AuthError;
use crate::settings::AuthSettings;
use conclave_core::{LoginThrottle, Timestamp};
use conclave_store::{DbConnection, login_failures};

/// The throttling subjects of one attempt: the account and, when known, the address.
#[derive(Clone, Debug)]
pub struct Subjects {
    pub account: String,
    pub address: Option<String>,
}

impl Subjects {
    /// `account_name` may be anything a client sent; it is bounded and stripped of
    /// control characters (PostgreSQL refuses NUL in text) before it is stored.
    pub fn new(account_name: &str, client_addr: Option<&str>) -> Self {
        let account: String = account_name
            .chars()
            .filter(|c| !c.is_control())
            .take(conclave_core::Username::MAX_LEN)
            .collect();
        Self {
            account: format!("account:{account}"),
            address: client_addr.map(|addr| format!("address:{addr}")),
        }
    }

    /// The account part, as audit logs name it.
    pub fn account_name(&self) -> &str {
        self.account.trim_start_matches("account:")
    }

    fn limits<'a>(&'a self, throttle: &LoginThrottle, account_limit: u32) -> Vec<(&'a str, u32)> {
        let mut limits = vec![(
            self.account.as_str(),
            throttle.max_failures_per_account.min(account_limit),
        )];
        if let Some(address) = &self.address {
            limits.push((address.as_str(), throttle.max_failures_per_address));
        }
        limits
    }
}

/// An attempt that passed the throttle and is counted as a failure until it succeeds.
#[derive(Debug)]
pub struct CountedAttempt {
    record_ids: Vec<String>,
}

/// Inside a write transaction: refuses with [`AuthError::Throttled`] when a subject is
/// over its limit, otherwise counts the attempt. `account_limit` is the account's own
/// lockout threshold from its policy (`u32::MAX` when none); the lower one applies.
pub fn begin_attempt(
    conn: &mut DbConnection,
    settings: &AuthSettings,
    now: Timestamp,
    subjects: &Subjects,
    account_limit: u32,
) -> Result<CountedAttempt, AuthError> {
    let throttle = &settings.throttle;
    let limits = subjects.limits(throttle, account_limit);
    let names: Vec<&str> = limits.iter().map(|(subject, _)| *subject).collect();
    login_failures::lock_subjects(conn, &names)?;
    let since = now.minus(throttle.window);
    let mut retry_at: Option<Timestamp> = None;
    for (subject, limit) in &limits {
        let failures = login_failures::count_since(conn, subject, since)?;
        if let Some(index) = LoginThrottle::deciding_failure_index(*limit, failures)
            && let Some(deciding) = login_failures::nth_oldest_since(conn, subject, since, index)?
        {
            retry_at = retry_at.max(Some(deciding.plus(throttle.window)));
        }
    }
    if let Some(retry_at) = retry_at {
        return Err(AuthError::Throttled {
            retry_after: now.until(retry_at),
        });
    }
    let mut record_ids = Vec::with_capacity(limits.len());
    for subject in names {
        record_ids.push(login_failures::record(conn, subject, now, since)?);
    }
    Ok(CountedAttempt { record_ids })
}

/// The attempt succeeded: un-count it, and reset the account's count.
pub fn succeeded(
    conn: &mut DbConnection,
    subjects: &Subjects,
    attempt: CountedAttempt,
) -> Result<(), AuthError> {
    for id in &attempt.record_ids {
        login_failures::remove(conn, id)?;
    }
    login_failures::clear(conn, &subjects.account)?;
    Ok(())
}
