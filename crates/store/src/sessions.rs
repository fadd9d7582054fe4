//! Login sessions. Only the SHA-256 of a token is stored.

use crate::DbConnection;
use crate::error::StoreError;
use crate::schema::{sessions, user_roles, users};
use crate::users::{UserRecord, UserRow};
use conclave_core::{SessionId, Timestamp, UserId, UserStatus};
use conclave_crypto::TokenHash;
use diesel::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: SessionId,
    pub user_id: UserId,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub expires_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
    /// The idle timeout set at login by the governing policy, if any.
    pub idle_timeout_seconds: Option<i64>,
    /// `None` for a local password login, else `ldap` or `oidc:<provider>`.
    pub auth_provider: Option<String>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = sessions)]
struct SessionRow {
    id: String,
    user_id: String,
    created_at: i64,
    last_seen_at: i64,
    expires_at: i64,
    revoked_at: Option<i64>,
    client_addr: Option<String>,
    user_agent: Option<String>,
    idle_timeout_seconds: Option<i64>,
    auth_provider: Option<String>,
}

impl TryFrom<SessionRow> for SessionRecord {
    type Error = StoreError;
    fn try_from(row: SessionRow) -> Result<Self, StoreError> {
        let corrupt = || StoreError::Corrupt(format!("session {}: bad id", row.id));
        Ok(SessionRecord {
            id: row.id.parse().map_err(|_| corrupt())?,
            user_id: row.user_id.parse().map_err(|_| corrupt())?,
            created_at: Timestamp::from_micros(row.created_at),
            last_seen_at: Timestamp::from_micros(row.last_seen_at),
            expires_at: Timestamp::from_micros(row.expires_at),
            revoked_at: row.revoked_at.map(Timestamp::from_micros),
            client_addr: row.client_addr,
            user_agent: row.user_agent,
            idle_timeout_seconds: row.idle_timeout_seconds,
            auth_provider: row.auth_provider,
        })
    }
}

pub struct NewSession<'a> {
    pub id: SessionId,
    pub user_id: UserId,
    pub token_hash: TokenHash,
    pub now: Timestamp,
    pub expires_at: Timestamp,
    pub client_addr: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub idle_timeout_seconds: Option<i64>,
}

pub fn insert(conn: &mut DbConnection, new: &NewSession<'_>) -> Result<(), StoreError> {
    diesel::insert_into(sessions::table)
        .values((
            sessions::id.eq(new.id.to_string()),
            sessions::user_id.eq(new.user_id.to_string()),
            sessions::token_hash.eq(new.token_hash.as_bytes().to_vec()),
            sessions::created_at.eq(new.now.as_micros()),
            sessions::last_seen_at.eq(new.now.as_micros()),
            sessions::expires_at.eq(new.expires_at.as_micros()),
            sessions::client_addr.eq(new.client_addr),
            sessions::user_agent.eq(new.user_agent),
            sessions::idle_timeout_seconds.eq(new.idle_timeout_seconds),
        ))
        .execute(conn)?;
    Ok(())
}

/// Lookups on unique keys here use `get_result`, not `first`: SQLite re-prepares a
/// statement with `first`'s bound `LIMIT` on every call, and these run on every request.
pub fn find_by_token_hash(
    conn: &mut DbConnection,
    hash: &TokenHash,
) -> Result<Option<SessionRecord>, StoreError> {
    sessions::table
        .filter(sessions::token_hash.eq(hash.as_bytes().to_vec()))
        .select(SessionRow::as_select())
        .get_result(conn)
        .optional()?
        .map(SessionRecord::try_from)
        .transpose()
}

/// The session with this token hash and its account, read together: the first thing
/// every authenticated request does, so one join and the account's roles rather than
/// three queries.
pub fn find_with_user_by_token_hash(
    conn: &mut DbConnection,
    hash: &TokenHash,
) -> Result<Option<(SessionRecord, UserRecord)>, StoreError> {
    // Every request authenticates: the user's roles come in the same statement, one row
    // per role (or one with none).
    let found: Vec<(SessionRow, UserRow, Option<String>)> = sessions::table
        .inner_join(users::table.left_join(user_roles::table))
        .filter(sessions::token_hash.eq(hash.as_bytes().to_vec()))
        .select((
            SessionRow::as_select(),
            UserRow::as_select(),
            user_roles::role.nullable(),
        ))
        .load(conn)?;
    let roles: Vec<String> = found.iter().filter_map(|(.., role)| role.clone()).collect();
    found
        .into_iter()
        .next()
        .map(|(session, user, _)| {
            Ok((
                SessionRecord::try_from(session)?,
                crate::users::with_roles(user, &roles)?,
            ))
        })
        .transpose()
}

/// A session and whether its account is active, in one query (a long-lived connection's
/// periodic re-check).
pub fn find_with_user_status(
    conn: &mut DbConnection,
    id: SessionId,
) -> Result<Option<(SessionRecord, UserStatus)>, StoreError> {
    let found: Option<(SessionRow, String)> = sessions::table
        .inner_join(users::table)
        .filter(sessions::id.eq(id.to_string()))
        .select((SessionRow::as_select(), users::status))
        .get_result(conn)
        .optional()?;
    found
        .map(|(session, status)| {
            let status = status
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("session {id}: bad account status")))?;
            Ok((SessionRecord::try_from(session)?, status))
        })
        .transpose()
}

pub fn find(conn: &mut DbConnection, id: SessionId) -> Result<Option<SessionRecord>, StoreError> {
    sessions::table
        .find(id.to_string())
        .select(SessionRow::as_select())
        .get_result(conn)
        .optional()?
        .map(SessionRecord::try_from)
        .transpose()
}

pub fn touch(conn: &mut DbConnection, id: SessionId, now: Timestamp) -> Result<(), StoreError> {
    diesel::update(sessions::table.find(id.to_string()))
        .set(sessions::last_seen_at.eq(now.as_micros()))
        .execute(conn)?;
    Ok(())
}

/// Revokes one session; returns whether it was live until now.
pub fn revoke(
    conn: &mut DbConnection,
    id: SessionId,
    now: Timestamp,
    reason: &str,
) -> Result<bool, StoreError> {
    let changed = diesel::update(
        sessions::table
            .find(id.to_string())
            .filter(sessions::revoked_at.is_null()),
    )
    .set((
        sessions::revoked_at.eq(now.as_micros()),
        sessions::revoked_reason.eq(reason),
    ))
    .execute(conn)?;
    Ok(changed == 1)
}

/// Revokes every live session of a user; returns how many.
pub fn revoke_all_for_user(
    conn: &mut DbConnection,
    user_id: UserId,
    now: Timestamp,
    reason: &str,
) -> Result<usize, StoreError> {
    Ok(diesel::update(
        sessions::table
            .filter(sessions::user_id.eq(user_id.to_string()))
            .filter(sessions::revoked_at.is_null()),
    )
    .set((
        sessions::revoked_at.eq(now.as_micros()),
        sessions::revoked_reason.eq(reason),
    ))
    .execute(conn)?)
}

/// Sessions of a user that are neither revoked nor past their absolute expiry, newest first.
/// (Idle expiry depends on configuration and is applied by the caller.)
pub fn list_unexpired_for_user(
    conn: &mut DbConnection,
    user_id: UserId,
    now: Timestamp,
) -> Result<Vec<SessionRecord>, StoreError> {
    sessions::table
        .filter(sessions::user_id.eq(user_id.to_string()))
        .filter(sessions::revoked_at.is_null())
        .filter(sessions::expires_at.gt(now.as_micros()))
        .order(sessions::created_at.desc())
        .select(SessionRow::as_select())
        .load(conn)?
        .into_iter()
        .map(SessionRecord::try_from)
        .collect()
}

/// Records how a session was opened (single sign-on); set in the transaction that made it.
pub fn set_auth_provider(
    conn: &mut DbConnection,
    id: SessionId,
    provider: &str,
) -> Result<(), StoreError> {
    diesel::update(sessions::table.find(id.to_string()))
        .set(sessions::auth_provider.eq(provider))
        .execute(conn)?;
    Ok(())
}
