//! Retention policies (compliance officers): an org-wide one, and ones per security group
//! (for the messages their members send) and per room, combined by
//! `conclave_core::RetentionRule::combine`. Each message's `retain_until` is set at send,
//! moved when users stop seeing it (delete, burn-on-read), and recomputed for existing
//! messages by a batched, resumable job after a policy change. A preview reports what a
//! policy would destroy before it is saved.
//!
//! Invariant: the sweeper never trusts a stored `retain_until` alone; it recomputes the
//! deadline under the current policies before destroying anything, so a policy change
//! that lengthens retention protects messages at once, before its job reaches them.

use crate::{PolicyServiceError, audit_change};
use conclave_core::retention::RetentionRule;
use conclave_core::{AuditContext, MessageId, RoomId, Timestamp, UserId};
use conclave_store::messages::{self as message_store, MessageRecord};
use conclave_store::security_groups::DEFAULT_GROUP_ID;
use conclave_store::{DbConnection, message_reads, retention as store, write_transaction};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// Messages a recomputation job or a preview handles per step.
pub const BATCH: i64 = 1_000;

/// Where a retention policy applies.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RetentionScope {
    Org,
    /// Messages sent by members of this security group.
    Group(String),
    Room(RoomId),
}

impl RetentionScope {
    /// Parses `org`, `group:<id>` or `room:<id>`.
    pub fn parse(raw: &str) -> Result<Self, PolicyServiceError> {
        let invalid = || {
            PolicyServiceError::Policy(conclave_core::PolicyError::Invalid(format!(
                "scope must be `org`, `group:<security group id>` or `room:<room id>`, not `{raw}`"
            )))
        };
        match raw.split_once(':') {
            None if raw == "org" => Ok(Self::Org),
            Some(("group", id)) if uuid::Uuid::parse_str(id).is_ok() => {
                Ok(Self::Group(id.to_owned()))
            }
            Some(("room", id)) => id.parse().map(Self::Room).map_err(|_| invalid()),
            _ => Err(invalid()),
        }
    }

    pub fn key(&self) -> String {
        match self {
            Self::Org => "org".into(),
            Self::Group(id) => format!("group:{id}"),
            Self::Room(id) => format!("room:{id}"),
        }
    }
}

/// A retention policy as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RetentionPolicyView {
    /// `org`, `group:<security group id>` or `room:<room id>`.
    pub scope: String,
    pub min_days: Option<u32>,
    pub max_days: Option<u32>,
    pub updated_by: UserId,
    pub updated_at: Timestamp,
}

fn view(record: store::PolicyRecord) -> Result<RetentionPolicyView, PolicyServiceError> {
    let corrupt = |what: &str| PolicyServiceError::Corrupt {
        scope: record.scope.clone(),
        cause: format!("bad {what}"),
    };
    Ok(RetentionPolicyView {
        min_days: record
            .min_days
            .map(u32::try_from)
            .transpose()
            .map_err(|_| corrupt("min_days"))?,
        max_days: record
            .max_days
            .map(u32::try_from)
            .transpose()
            .map_err(|_| corrupt("max_days"))?,
        updated_by: record
            .updated_by
            .parse()
            .map_err(|_| corrupt("updated_by"))?,
        updated_at: Timestamp::from_micros(record.updated_at),
        scope: record.scope,
    })
}

pub fn list(conn: &mut DbConnection) -> Result<Vec<RetentionPolicyView>, PolicyServiceError> {
    store::policies(conn)?.into_iter().map(view).collect()
}

/// Every stored policy, and how a message's rule is derived from them (with per-batch
/// caches of each sender's security group history).
pub struct RetentionResolver {
    rules: HashMap<String, RetentionRule>,
    periods_of: HashMap<UserId, Vec<(String, Timestamp, Option<Timestamp>)>>,
}

impl RetentionResolver {
    pub fn load(conn: &mut DbConnection) -> Result<Self, PolicyServiceError> {
        let rules = store::policies(conn)?
            .into_iter()
            .map(|record| {
                let rule = RetentionRule {
                    min_days: record.min_days.and_then(|d| u32::try_from(d).ok()),
                    max_days: record.max_days.and_then(|d| u32::try_from(d).ok()),
                };
                (record.scope, rule)
            })
            .collect();
        Ok(Self {
            rules,
            periods_of: HashMap::new(),
        })
    }

    /// The same policies with one replaced (`None`: removed), as a preview supposes.
    pub fn supposing(mut self, scope: &RetentionScope, rule: Option<RetentionRule>) -> Self {
        match rule {
            Some(rule) => self.rules.insert(scope.key(), rule),
            None => self.rules.remove(&scope.key()),
        };
        self
    }

    /// The combined rule for a message `sender` sent in `room_id` at `sent_at`. A group's
    /// policy applies when the sender was in the group *then*: moving someone out of a
    /// group later does not shorten what they sent as a member.
    pub fn rule_for(
        &mut self,
        conn: &mut DbConnection,
        room_id: RoomId,
        sender: UserId,
        sent_at: Timestamp,
    ) -> Result<RetentionRule, PolicyServiceError> {
        let room_scope = format!("room:{room_id}");
        // Most installations have no group policy: skip the membership lookup then.
        if !self.rules.keys().any(|scope| scope.starts_with("group:")) {
            let scopes = ["org", room_scope.as_str()];
            return Ok(RetentionRule::combine(
                scopes.iter().filter_map(|scope| self.rules.get(*scope)),
            ));
        }
        let periods = match self.periods_of.entry(sender) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => entry.insert(
                conclave_store::security_groups::membership_periods_of(conn, sender)?,
            ),
        };
        let mut groups: Vec<String> = periods
            .iter()
            .filter(|(_, joined, left)| {
                *joined <= sent_at && left.is_none_or(|left| left > sent_at)
            })
            .map(|(group, ..)| format!("group:{group}"))
            .collect();
        // Like the messaging policy: a user in no group belongs to the default one.
        if groups.is_empty() {
            groups.push(format!("group:{DEFAULT_GROUP_ID}"));
        }
        let scopes = std::iter::once("org".to_owned())
            .chain(groups)
            .chain(std::iter::once(room_scope));
        let applicable: Vec<&RetentionRule> =
            scopes.filter_map(|scope| self.rules.get(&scope)).collect();
        Ok(RetentionRule::combine(applicable))
    }

    /// The retention deadline of a message being sent now (its users' end is its
    /// expiration); for a batch of sends, which load the policies once.
    pub fn retain_until_at_send(
        &mut self,
        conn: &mut DbConnection,
        room_id: RoomId,
        sender: UserId,
        sent_at: Timestamp,
        visible_until: Option<Timestamp>,
    ) -> Result<Option<Timestamp>, PolicyServiceError> {
        let rule = self.rule_for(conn, room_id, sender, sent_at)?;
        Ok(rule.retain_until(sent_at, visible_until))
    }

    /// When `message`'s compliance copy may be destroyed under these policies.
    pub fn retain_until(
        &mut self,
        conn: &mut DbConnection,
        message: &MessageRecord,
    ) -> Result<Option<Timestamp>, PolicyServiceError> {
        let rule = self.rule_for(conn, message.room_id, message.sender_id, message.created_at)?;
        Ok(rule.retain_until(message.created_at, user_end(conn, message)?))
    }
}

/// When the last user stops seeing `message`, if that is known: its delete, its
/// expiration, or (burn-on-read) the last recipient's deadline once every recipient has
/// one. `None`: someone may still see it indefinitely.
pub fn user_end(
    conn: &mut DbConnection,
    message: &MessageRecord,
) -> Result<Option<Timestamp>, PolicyServiceError> {
    let earliest = |a: Option<Timestamp>, b: Option<Timestamp>| match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let mut end = earliest(message.deleted_at, message.visible_until);
    if message.deleted_at.is_none() && message.burn_after_read_seconds.is_some() {
        let reads = message_reads::for_message(conn, message.id)?;
        let deadlines: Option<Vec<i64>> = reads.iter().map(|read| read.visible_until).collect();
        if let Some(last) = deadlines
            .filter(|d| !d.is_empty())
            .and_then(|d| d.into_iter().max())
        {
            end = earliest(end, Some(Timestamp::from_micros(last)));
        }
    }
    Ok(end)
}

/// Recomputes `message`'s deadline and stores it if it moved; returns whether it did.
/// The store is conditional on what was read (deadline and delete), so a concurrent
/// delete or burn that moved the deadline meanwhile is never overwritten with a stale
/// one: the message is read again and recomputed.
pub fn recompute(
    conn: &mut DbConnection,
    resolver: &mut RetentionResolver,
    message: &MessageRecord,
) -> Result<bool, PolicyServiceError> {
    let mut current = message.clone();
    for _ in 0..5 {
        let retain_until = resolver.retain_until(conn, &current)?;
        if retain_until == current.retain_until {
            return Ok(false);
        }
        if message_store::set_retain_until_if(conn, &current, retain_until)? {
            return Ok(true);
        }
        match message_store::find(conn, current.id)? {
            Some(fresh) => current = fresh,
            None => return Ok(false),
        }
    }
    Err(PolicyServiceError::Conflict(format!(
        "message {}: its deadline keeps changing; retry",
        message.id
    )))
}

/// Recomputes one message's deadline after its users' end moved (a delete, a burn).
pub fn refresh(conn: &mut DbConnection, message_id: MessageId) -> Result<(), PolicyServiceError> {
    let Some(message) = message_store::find(conn, message_id)? else {
        return Ok(());
    };
    let retain_until = RetentionResolver::load(conn)?.retain_until(conn, &message)?;
    if retain_until != message.retain_until {
        message_store::set_retain_until(conn, message_id, retain_until)?;
    }
    Ok(())
}

/// A recomputation job as the API shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct RetentionJobView {
    pub id: String,
    pub scope: String,
    /// `pending`, `running` or `done`.
    pub status: String,
    pub processed: i64,
    /// Messages whose deadline moved.
    pub changed: i64,
    /// Messages in scope when the job was created.
    pub total: i64,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

impl From<store::JobRecord> for RetentionJobView {
    fn from(job: store::JobRecord) -> Self {
        Self {
            id: job.id,
            scope: job.scope,
            status: job.status,
            processed: job.processed,
            changed: job.changed,
            total: job.total,
            created_at: Timestamp::from_micros(job.created_at),
            finished_at: job.finished_at.map(Timestamp::from_micros),
        }
    }
}

/// The result of saving or removing a policy: the policy, and the job recomputing
/// existing messages' deadlines.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct RetentionChange {
    pub policy: Option<RetentionPolicyView>,
    pub job: RetentionJobView,
}

fn check_scope_exists(
    conn: &mut DbConnection,
    scope: &RetentionScope,
) -> Result<(), PolicyServiceError> {
    let exists = match scope {
        RetentionScope::Org => true,
        RetentionScope::Group(id) => conclave_store::security_groups::find(conn, id)?.is_some(),
        RetentionScope::Room(id) => conclave_store::rooms::find(conn, *id)?.is_some(),
    };
    if exists {
        Ok(())
    } else {
        Err(PolicyServiceError::NotFound)
    }
}

fn start_job(
    conn: &mut DbConnection,
    scope: &RetentionScope,
    by: UserId,
    now: Timestamp,
) -> Result<RetentionJobView, PolicyServiceError> {
    let room = match scope {
        RetentionScope::Room(id) => Some(*id),
        _ => None,
    };
    let id = uuid::Uuid::now_v7().to_string();
    let total = message_store::count(conn, room)?;
    store::insert_job(conn, &id, &scope.key(), total, by, now)?;
    Ok(store::job(conn, &id)?
        .ok_or(PolicyServiceError::NotFound)?
        .into())
}

/// Saves a policy (audited with before and after) and starts the job that recomputes
/// existing messages' deadlines.
pub fn set_policy(
    conn: &mut DbConnection,
    context: &AuditContext,
    now: Timestamp,
    by: UserId,
    scope: &RetentionScope,
    rule: RetentionRule,
) -> Result<RetentionChange, PolicyServiceError> {
    let rule = RetentionRule::new(rule.min_days, rule.max_days)
        .map_err(|err| PolicyServiceError::Policy(conclave_core::PolicyError::Invalid(err.0)))?;
    write_transaction(conn, |conn| {
        check_scope_exists(conn, scope)?;
        let key = scope.key();
        let before = store::policy(conn, &key)?.map(view).transpose()?;
        store::put_policy(
            conn,
            &key,
            rule.min_days.map(i64::from),
            rule.max_days.map(i64::from),
            by,
            now,
        )?;
        let after = store::policy(conn, &key)?.map(view).transpose()?;
        audit_change(
            conn,
            context,
            now,
            "retention.policy_change",
            ("retention_policy", key),
            &before,
            &after,
        )?;
        let job = start_job(conn, scope, by, now)?;
        Ok(RetentionChange { policy: after, job })
    })
}

/// Removes a policy (audited) and starts the recomputation job.
pub fn delete_policy(
    conn: &mut DbConnection,
    context: &AuditContext,
    now: Timestamp,
    by: UserId,
    scope: &RetentionScope,
) -> Result<RetentionChange, PolicyServiceError> {
    write_transaction(conn, |conn| {
        let key = scope.key();
        let before = store::policy(conn, &key)?
            .map(view)
            .transpose()?
            .ok_or(PolicyServiceError::NotFound)?;
        store::delete_policy(conn, &key)?;
        audit_change(
            conn,
            context,
            now,
            "retention.policy_delete",
            ("retention_policy", key),
            &Some(before),
            &None::<RetentionPolicyView>,
        )?;
        let job = start_job(conn, scope, by, now)?;
        Ok(RetentionChange { policy: None, job })
    })
}

pub fn jobs(conn: &mut DbConnection) -> Result<Vec<RetentionJobView>, PolicyServiceError> {
    Ok(store::jobs(conn, 50)?.into_iter().map(Into::into).collect())
}

/// Runs one batch of the oldest unfinished job; returns it afterwards (`None`: no job).
/// Each batch commits with the job's cursor, so a crash resumes where it stopped.
pub fn run_job_batch(
    conn: &mut DbConnection,
    now: Timestamp,
) -> Result<Option<RetentionJobView>, PolicyServiceError> {
    write_transaction(conn, |conn| {
        let Some(job) = store::next_job(conn)? else {
            return Ok(None);
        };
        let room = match RetentionScope::parse(&job.scope)? {
            RetentionScope::Room(id) => Some(id),
            _ => None,
        };
        let after = job
            .after_message_id
            .as_deref()
            .map(str::parse::<MessageId>)
            .transpose()
            .map_err(|_| PolicyServiceError::Corrupt {
                scope: job.scope.clone(),
                cause: "bad job cursor".into(),
            })?;
        let batch = message_store::page_by_id(conn, room, after, BATCH)?;
        let mut resolver = RetentionResolver::load(conn)?;
        let mut changed = 0;
        for message in &batch {
            if recompute(conn, &mut resolver, message)? {
                changed += 1;
            }
        }
        let cursor = (batch.len() as i64 == BATCH)
            .then(|| batch.last().map(|m| m.id.to_string()))
            .flatten();
        store::advance_job(
            conn,
            &job.id,
            job.after_message_id.as_deref(),
            cursor.as_deref(),
            batch.len() as i64,
            changed,
            now,
        )?;
        Ok(store::job(conn, &job.id)?.map(Into::into))
    })
}

/// What a policy would destroy in one room.
#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct RoomPreview {
    pub room_id: String,
    pub room_name: Option<String>,
    /// `direct` or `room`.
    pub room_kind: String,
    /// Messages the sweeper would destroy at once.
    pub destroy_now: u64,
    /// Messages it would destroy within the next 30 days (including those of now).
    pub destroy_within_30_days: u64,
    /// Messages due within 30 days that a legal hold keeps.
    pub held: u64,
}

/// A preview of a policy change: nothing is changed.
#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct RetentionPreview {
    pub scope: String,
    pub min_days: Option<u32>,
    pub max_days: Option<u32>,
    pub destroy_now: u64,
    pub destroy_within_30_days: u64,
    pub held: u64,
    /// Only rooms with something to destroy or hold, most affected first.
    pub rooms: Vec<RoomPreview>,
}

/// What the policies would destroy now and in the next 30 days, per room, if `scope`'s
/// policy were `rule` (`None`: removed). Reads only; walks every message in scope.
pub fn preview(
    conn: &mut DbConnection,
    now: Timestamp,
    scope: &RetentionScope,
    rule: Option<RetentionRule>,
) -> Result<RetentionPreview, PolicyServiceError> {
    if let Some(rule) = rule {
        RetentionRule::new(rule.min_days, rule.max_days).map_err(|err| {
            PolicyServiceError::Policy(conclave_core::PolicyError::Invalid(err.0))
        })?;
    }
    check_scope_exists(conn, scope)?;
    let horizon = now.plus(Duration::from_secs(30 * 86_400));
    let room = match scope {
        RetentionScope::Room(id) => Some(*id),
        _ => None,
    };
    let holds = crate::holds::ActiveHolds::load(conn)?;
    let mut resolver = RetentionResolver::load(conn)?.supposing(scope, rule);
    let mut rooms: BTreeMap<RoomId, RoomPreview> = BTreeMap::new();
    let mut after = None;
    loop {
        let batch = message_store::page_by_id(conn, room, after, BATCH)?;
        let periods = holds.periods_for(conn, &batch)?;
        for message in &batch {
            let Some(deadline) = resolver.retain_until(conn, message)? else {
                continue;
            };
            if deadline > horizon {
                continue;
            }
            let entry = rooms.entry(message.room_id).or_default();
            if holds.covers(message, &periods) {
                entry.held += 1;
                continue;
            }
            entry.destroy_within_30_days += 1;
            if deadline <= now {
                entry.destroy_now += 1;
            }
        }
        if (batch.len() as i64) < BATCH {
            break;
        }
        after = batch.last().map(|m| m.id);
    }
    let ids: Vec<RoomId> = rooms.keys().copied().collect();
    for (id, name, kind) in store::room_names(conn, &ids)? {
        if let Some(entry) = id.parse().ok().and_then(|id: RoomId| rooms.get_mut(&id)) {
            entry.room_id = id;
            entry.room_name = name;
            entry.room_kind = kind;
        }
    }
    let mut rooms: Vec<RoomPreview> = rooms.into_values().collect();
    rooms.sort_by(|a, b| {
        b.destroy_within_30_days
            .cmp(&a.destroy_within_30_days)
            .then(b.held.cmp(&a.held))
    });
    Ok(RetentionPreview {
        scope: scope.key(),
        min_days: rule.and_then(|r| r.min_days),
        max_days: rule.and_then(|r| r.max_days),
        destroy_now: rooms.iter().map(|r| r.destroy_now).sum(),
        destroy_within_30_days: rooms.iter().map(|r| r.destroy_within_30_days).sum(),
        held: rooms.iter().map(|r| r.held).sum(),
        rooms,
    })
}
