//! Conclave's policy service: the org-wide messaging policy and per-room overrides,
//! stored by scope and audited with their before and after values, and the effective
//! policy for a user in a room (resolved by `conclave_core::policy::resolve`).
//! Security groups, their overrides and information barriers are in [`groups`].
//!
//! Invariant: a policy change applies to what happens after it; nothing already sent is
//! rewritten.

pub mod compliance_http;
pub mod groups;
pub mod holds;
pub mod http;
pub mod retention;
pub mod sweeper;

use conclave_api::ApiError;
use conclave_core::policy::{Policy, PolicyError, PolicyOverrides, resolve};
use conclave_core::{
    AuditContext, AuditOutcome, ErrorCode, NewAuditEvent, RoomId, Timestamp, UserId,
};
use conclave_store::{DbConnection, StoreError, policies, write_transaction};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum PolicyServiceError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored policy {scope} is unreadable: {cause}")]
    Corrupt { scope: String, cause: String },
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
}

impl From<PolicyServiceError> for ApiError {
    fn from(err: PolicyServiceError) -> Self {
        match err {
            PolicyServiceError::Policy(PolicyError::Invalid(message)) => {
                ApiError::new(ErrorCode::InvalidInput, message)
            }
            PolicyServiceError::Policy(PolicyError::Violation(message)) => {
                ApiError::new(ErrorCode::PolicyViolation, message)
            }
            PolicyServiceError::Store(StoreError::Unavailable(_)) => {
                ApiError::unavailable("the database is unavailable; retry shortly")
            }
            PolicyServiceError::NotFound => ApiError::not_found(),
            PolicyServiceError::Conflict(message) => ApiError::new(ErrorCode::Conflict, message),
            PolicyServiceError::Store(StoreError::Conflict(_)) => ApiError::new(
                ErrorCode::Conflict,
                "the change conflicts with existing data",
            ),
            other => ApiError::internal(&other),
        }
    }
}

const ORG_SCOPE: &str = "org";

fn room_scope(room_id: RoomId) -> String {
    format!("room:{room_id}")
}

pub(crate) fn load<T: serde::de::DeserializeOwned + Default>(
    conn: &mut DbConnection,
    scope: &str,
) -> Result<T, PolicyServiceError> {
    parse_policy(scope, policies::get(conn, scope)?.as_deref())
}

fn parse_policy<T: serde::de::DeserializeOwned + Default>(
    scope: &str,
    json: Option<&str>,
) -> Result<T, PolicyServiceError> {
    match json {
        Some(json) => serde_json::from_str(json).map_err(|err| PolicyServiceError::Corrupt {
            scope: scope.to_owned(),
            cause: err.to_string(),
        }),
        None => Ok(T::default()),
    }
}

/// Stored policies of several scopes, read with one query, for a decision that needs
/// them together (a send needs the org's, the room's and those of its members' groups).
pub(crate) struct ScopedPolicies(std::collections::HashMap<String, String>);

impl ScopedPolicies {
    pub(crate) fn load(
        conn: &mut DbConnection,
        scopes: &[String],
    ) -> Result<Self, PolicyServiceError> {
        Ok(Self(policies::get_many(conn, scopes)?))
    }

    /// The policy stored for `scope`, or the default; the scope must have been loaded.
    pub(crate) fn get<T: serde::de::DeserializeOwned + Default>(
        &self,
        scope: &str,
    ) -> Result<T, PolicyServiceError> {
        parse_policy(scope, self.0.get(scope).map(String::as_str))
    }
}

/// What policy says about a send by `sender` in `room_id`, whose members are `members`
/// (the sender among them): the sender's effective policy, and why the conversation is
/// read-only if an information barrier now separates its members. Read with three
/// queries (the members' groups, the default group, every policy involved), where
/// [`effective`] and a barrier check would take a dozen: this is on every send's path.
/// It decides exactly as they do (a test compares them).
pub fn for_send(
    conn: &mut DbConnection,
    sender: UserId,
    room_id: RoomId,
    members: &[UserId],
) -> Result<SendPolicy, PolicyServiceError> {
    SendPolicies::load(conn, &[room_id], members)?.decide(sender, room_id, members)
}

/// What [`for_send`] reads, for a batch of sends at once: the groups of every member of
/// the batch's rooms and every policy involved, still in three queries.
pub struct SendPolicies {
    groups: groups::MemberGroups,
    stored: ScopedPolicies,
}

impl SendPolicies {
    /// For sends in `rooms`, whose members together are `members`.
    pub fn load(
        conn: &mut DbConnection,
        rooms: &[RoomId],
        members: &[UserId],
    ) -> Result<Self, PolicyServiceError> {
        let groups = groups::MemberGroups::load(conn, members)?;
        let mut scopes = vec![ORG_SCOPE.to_owned()];
        scopes.extend(rooms.iter().map(|room| room_scope(*room)));
        scopes.extend(groups.policy_scopes());
        let stored = ScopedPolicies::load(conn, &scopes)?;
        Ok(Self { groups, stored })
    }

    /// [`for_send`]'s answer for one send of the batch; `room_id` and `members` must be
    /// among those loaded.
    pub fn decide(
        &self,
        sender: UserId,
        room_id: RoomId,
        members: &[UserId],
    ) -> Result<SendPolicy, PolicyServiceError> {
        let (groups, stored) = (&self.groups, &self.stored);
        let org: Policy = stored.get(ORG_SCOPE)?;
        let governing: PolicyOverrides =
            stored.get(&groups::scope(&groups.governing(sender).id))?;
        let room_overrides: PolicyOverrides = stored.get(&room_scope(room_id))?;
        Ok(SendPolicy {
            read_only_reason: groups.barrier(&org, members, stored)?,
            policy: resolve(&org, &governing, &room_overrides),
        })
    }
}

/// See [`for_send`].
#[derive(Debug)]
pub struct SendPolicy {
    pub policy: Policy,
    pub read_only_reason: Option<String>,
}

/// The org-wide policy (the built-in default until an admin sets one).
pub fn org_policy(conn: &mut DbConnection) -> Result<Policy, PolicyServiceError> {
    load(conn, ORG_SCOPE)
}

/// A room's overrides (none until set).
pub fn room_overrides(
    conn: &mut DbConnection,
    room_id: RoomId,
) -> Result<PolicyOverrides, PolicyServiceError> {
    load(conn, &room_scope(room_id))
}

/// The policy that governs `user` in `room` (or outside any room).
pub fn effective(
    conn: &mut DbConnection,
    user: UserId,
    room: Option<RoomId>,
) -> Result<Policy, PolicyServiceError> {
    let org = org_policy(conn)?;
    let group = groups::overrides_for(conn, user)?;
    let room = match room {
        Some(room_id) => room_overrides(conn, room_id)?,
        None => PolicyOverrides::default(),
    };
    Ok(resolve(&org, &group, &room))
}

pub(crate) fn audit_change<T: serde::Serialize>(
    conn: &mut DbConnection,
    context: &AuditContext,
    now: Timestamp,
    action: &'static str,
    target: (&'static str, String),
    before: &T,
    after: &T,
) -> Result<(), StoreError> {
    let event = NewAuditEvent {
        action,
        target_kind: Some(target.0),
        target_id: Some(target.1),
        outcome: AuditOutcome::Success,
        details: json!({ "before": before, "after": after }).to_string(),
    };
    conclave_store::audit::append(conn, context, &event, now).map(drop)
}

/// Replaces the org-wide policy; audited with before and after.
pub fn set_org_policy(
    conn: &mut DbConnection,
    context: &AuditContext,
    now: Timestamp,
    policy: Policy,
) -> Result<Policy, PolicyServiceError> {
    policy.validate()?;
    write_transaction(conn, |conn| {
        for barrier in &policy.barriers {
            if conclave_store::security_groups::find(conn, barrier)?.is_none() {
                return Err(PolicyServiceError::Policy(PolicyError::Invalid(format!(
                    "barriers: no security group {barrier}"
                ))));
            }
        }
        let before = org_policy(conn)?;
        policies::put(
            conn,
            ORG_SCOPE,
            &serde_json::to_string(&policy).expect("a policy serializes"),
            now,
        )?;
        audit_change(
            conn,
            context,
            now,
            "policy.org_change",
            ("policy", ORG_SCOPE.to_owned()),
            &before,
            &policy,
        )?;
        Ok(policy)
    })
}

/// Replaces a room's overrides; audited with before and after. The caller checks who may.
pub fn set_room_overrides(
    conn: &mut DbConnection,
    context: &AuditContext,
    now: Timestamp,
    room_id: RoomId,
    overrides: PolicyOverrides,
) -> Result<PolicyOverrides, PolicyServiceError> {
    if !overrides.barriers.is_empty() {
        return Err(PolicyServiceError::Policy(PolicyError::Invalid(
            "barriers: information barriers are set between security groups, not on rooms".into(),
        )));
    }
    overrides.validate()?;
    write_transaction(conn, |conn| {
        let scope = room_scope(room_id);
        let before: PolicyOverrides = load(conn, &scope)?;
        policies::put(
            conn,
            &scope,
            &serde_json::to_string(&overrides).expect("overrides serialize"),
            now,
        )?;
        audit_change(
            conn,
            context,
            now,
            "policy.room_change",
            ("room", room_id.to_string()),
            &before,
            &overrides,
        )?;
        Ok(overrides)
    })
}

/// Session lifetime, idle timeout and lockout threshold from the policy governing an
/// account (its security group's over the org default), for the identity service.
#[derive(Clone, Copy, Debug, Default)]
pub struct AccountLimitsFromPolicy;

impl conclave_auth::AccountPolicy for AccountLimitsFromPolicy {
    fn limits(
        &self,
        conn: &mut DbConnection,
        user: UserId,
    ) -> Result<conclave_auth::AccountLimits, StoreError> {
        let policy = effective(conn, user, None).map_err(|err| match err {
            PolicyServiceError::Store(store) => store,
            other => StoreError::Corrupt(other.to_string()),
        })?;
        Ok(conclave_auth::AccountLimits {
            session_lifetime: Some(std::time::Duration::from_secs(
                u64::from(policy.session_lifetime_minutes) * 60,
            )),
            idle_timeout: Some(std::time::Duration::from_secs(
                u64::from(policy.session_idle_minutes) * 60,
            )),
            lockout_threshold: Some(policy.lockout_threshold),
        })
    }
}
