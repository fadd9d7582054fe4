//! Accounts and their roles.

use crate::DbConnection;
use crate::error::StoreError;
use crate::schema::{user_roles, users};
use conclave_core::{DisplayName, Email, Role, RoleSet, Timestamp, UserId, UserStatus, Username};
use diesel::prelude::*;

/// How an account authenticates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthSource {
    /// A break-glass account with a password hash here.
    Local,
    /// Signs in through an OpenID Connect provider (named in `user_identities`).
    Oidc,
    /// Signs in against the LDAP directory and is kept in step by directory sync.
    Ldap,
}

impl AuthSource {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthSource::Local => "local",
            AuthSource::Oidc => "oidc",
            AuthSource::Ldap => "ldap",
        }
    }
}

/// An account as stored, with its fields parsed back into domain types.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: UserId,
    pub username: Username,
    pub display_name: String,
    pub email: Option<String>,
    pub status: UserStatus,
    pub auth_source: String,
    pub password_hash: Option<String>,
    pub must_change_password: bool,
    pub roles: RoleSet,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// A local account that may log in with its password even when local login is
    /// disabled for everyone else.
    pub break_glass: bool,
}

impl std::fmt::Debug for UserRecord {
    // The password hash stays out of debug output (and so out of any log).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("status", &self.status)
            .field("auth_source", &self.auth_source)
            .field("roles", &self.roles)
            .field("must_change_password", &self.must_change_password)
            .field("break_glass", &self.break_glass)
            .finish_non_exhaustive()
    }
}

/// Serializes changes that must keep at least one active admin until the transaction
/// ends (a PostgreSQL advisory lock; SQLite's write transactions are already serial).
/// Without it, two admins demoting each other at once could both see "two admins left".
pub fn lock_admin_guard(conn: &mut DbConnection) -> Result<(), StoreError> {
    if let DbConnection::Postgresql(_) = conn {
        diesel::sql_query("SELECT pg_advisory_xact_lock(7422)").execute(conn)?;
    }
    Ok(())
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = users)]
pub(crate) struct UserRow {
    id: String,
    username: String,
    display_name: String,
    email: Option<String>,
    status: String,
    auth_source: String,
    password_hash: Option<String>,
    must_change_password: bool,
    created_at: i64,
    updated_at: i64,
    break_glass: bool,
}

/// What a new account is made of.
pub struct NewUser<'a> {
    pub id: UserId,
    pub username: &'a Username,
    pub display_name: &'a DisplayName,
    pub email: Option<&'a Email>,
    pub auth_source: AuthSource,
    pub password_hash: Option<&'a str>,
    pub must_change_password: bool,
    pub roles: &'a RoleSet,
    pub now: Timestamp,
}

pub fn insert(conn: &mut DbConnection, new: &NewUser<'_>) -> Result<(), StoreError> {
    diesel::insert_into(users::table)
        .values((
            users::id.eq(new.id.to_string()),
            users::username.eq(new.username.as_str()),
            users::display_name.eq(new.display_name.as_str()),
            users::email.eq(new.email.map(Email::as_str)),
            users::status.eq(UserStatus::Active.as_str()),
            users::auth_source.eq(new.auth_source.as_str()),
            users::password_hash.eq(new.password_hash),
            users::must_change_password.eq(new.must_change_password),
            users::created_at.eq(new.now.as_micros()),
            users::updated_at.eq(new.now.as_micros()),
        ))
        .execute(conn)?;
    replace_roles(conn, new.id, new.roles)
}

pub fn find_by_username(
    conn: &mut DbConnection,
    username: &Username,
) -> Result<Option<UserRecord>, StoreError> {
    let row = users::table
        .filter(users::username.eq(username.as_str()))
        .select(UserRow::as_select())
        .get_result(conn)
        .optional()?;
    row.map(|row| hydrate(conn, row)).transpose()
}

pub fn find_by_id(conn: &mut DbConnection, id: UserId) -> Result<Option<UserRecord>, StoreError> {
    let row = users::table
        .find(id.to_string())
        .select(UserRow::as_select())
        .get_result(conn)
        .optional()?;
    row.map(|row| hydrate(conn, row)).transpose()
}

/// How a user is named in records (exports): no roles, no credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserCard {
    pub id: UserId,
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
}

/// The cards of the users with these ids that exist, in no particular order; one query
/// per 500 ids.
pub fn cards(conn: &mut DbConnection, ids: &[UserId]) -> Result<Vec<UserCard>, StoreError> {
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let chunk: Vec<String> = chunk.iter().map(ToString::to_string).collect();
        let rows: Vec<(String, String, String, Option<String>)> = users::table
            .filter(users::id.eq_any(&chunk))
            .select((
                users::id,
                users::username,
                users::display_name,
                users::email,
            ))
            .load(conn)?;
        for (id, username, display_name, email) in rows {
            found.push(UserCard {
                id: id
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("user {id}: bad id")))?,
                username,
                display_name,
                email,
            });
        }
    }
    Ok(found)
}

/// Accounts in username order, starting after `after`, at most `limit`.
pub fn list(
    conn: &mut DbConnection,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<UserRecord>, StoreError> {
    let mut query = users::table
        .select(UserRow::as_select())
        .order(users::username.asc())
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(users::username.gt(after.to_owned()));
    }
    let rows = query.load(conn)?;
    rows.into_iter().map(|row| hydrate(conn, row)).collect()
}

diesel::define_sql_function! {
    /// SQL `lower`, the same on both backends for ASCII.
    fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

/// Active accounts whose username or display name contains `needle` (case-insensitive),
/// in username order, at most `limit`: the people directory users pick from.
pub fn search_active(
    conn: &mut DbConnection,
    needle: &str,
    limit: i64,
) -> Result<Vec<UserCard>, StoreError> {
    search(conn, needle, true, limit)
}

/// Accounts (only active ones when `active_only`) whose username or display name contains
/// `needle` (case-insensitive), in username order, at most `limit`.
pub fn search(
    conn: &mut DbConnection,
    needle: &str,
    active_only: bool,
    limit: i64,
) -> Result<Vec<UserCard>, StoreError> {
    let mut escaped = String::with_capacity(needle.len() + 2);
    escaped.push('%');
    for c in needle.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped.push('%');
    let mut query = users::table.into_boxed();
    if active_only {
        query = query.filter(users::status.eq(UserStatus::Active.as_str()));
    }
    let rows: Vec<(String, String, String, Option<String>)> = query
        .filter(
            lower(users::username)
                .like(&escaped)
                .escape('\\')
                .or(lower(users::display_name).like(&escaped).escape('\\')),
        )
        .order(users::username.asc())
        .limit(limit)
        .select((
            users::id,
            users::username,
            users::display_name,
            users::email,
        ))
        .load(conn)?;
    rows.into_iter()
        .map(|(id, username, display_name, email)| {
            Ok(UserCard {
                id: id
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("user {id}: bad id")))?,
                username,
                display_name,
                email,
            })
        })
        .collect()
}

pub fn count(conn: &mut DbConnection) -> Result<i64, StoreError> {
    Ok(users::table.count().get_result(conn)?)
}

/// Active accounts holding the admin role.
pub fn count_active_admins(conn: &mut DbConnection) -> Result<i64, StoreError> {
    Ok(users::table
        .inner_join(user_roles::table)
        .filter(user_roles::role.eq(Role::Admin.as_str()))
        .filter(users::status.eq(UserStatus::Active.as_str()))
        .count()
        .get_result(conn)?)
}

pub fn replace_roles(
    conn: &mut DbConnection,
    id: UserId,
    roles: &RoleSet,
) -> Result<(), StoreError> {
    let user_id = id.to_string();
    diesel::delete(user_roles::table.filter(user_roles::user_id.eq(&user_id))).execute(conn)?;
    // One row at a time: the multi-backend connection has no batch insert, and an account
    // holds at most four roles.
    for role in roles.iter() {
        diesel::insert_into(user_roles::table)
            .values((
                user_roles::user_id.eq(&user_id),
                user_roles::role.eq(role.as_str()),
            ))
            .execute(conn)?;
    }
    Ok(())
}

pub fn set_status(
    conn: &mut DbConnection,
    id: UserId,
    status: UserStatus,
    now: Timestamp,
) -> Result<(), StoreError> {
    diesel::update(users::table.find(id.to_string()))
        .set((
            users::status.eq(status.as_str()),
            users::updated_at.eq(now.as_micros()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn set_password(
    conn: &mut DbConnection,
    id: UserId,
    password_hash: &str,
    must_change_password: bool,
    now: Timestamp,
) -> Result<(), StoreError> {
    diesel::update(users::table.find(id.to_string()))
        .set((
            users::password_hash.eq(password_hash),
            users::must_change_password.eq(must_change_password),
            users::updated_at.eq(now.as_micros()),
        ))
        .execute(conn)?;
    Ok(())
}

pub(crate) fn hydrate(conn: &mut DbConnection, row: UserRow) -> Result<UserRecord, StoreError> {
    let role_names: Vec<String> = user_roles::table
        .filter(user_roles::user_id.eq(&row.id))
        .select(user_roles::role)
        .load(conn)?;
    with_roles(row, &role_names)
}

/// A user from its row and its role names.
pub(crate) fn with_roles(row: UserRow, role_names: &[String]) -> Result<UserRecord, StoreError> {
    let roles = role_names
        .iter()
        .map(|name| name.parse::<Role>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| StoreError::Corrupt(format!("user {}: {err}", row.id)))?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("user {}: bad {what}", row.id));
    Ok(UserRecord {
        id: row.id.parse().map_err(|_| corrupt("id"))?,
        username: Username::parse(&row.username).map_err(|_| corrupt("username"))?,
        display_name: row.display_name,
        email: row.email,
        status: row.status.parse().map_err(|_| corrupt("status"))?,
        auth_source: row.auth_source,
        password_hash: row.password_hash,
        must_change_password: row.must_change_password,
        roles: RoleSet::new(roles),
        created_at: Timestamp::from_micros(row.created_at),
        updated_at: Timestamp::from_micros(row.updated_at),
        break_glass: row.break_glass,
    })
}

/// Marks (or unmarks) a local account as break-glass.
pub fn set_break_glass(
    conn: &mut DbConnection,
    id: UserId,
    break_glass: bool,
    now: Timestamp,
) -> Result<(), StoreError> {
    diesel::update(users::table.find(id.to_string()))
        .set((
            users::break_glass.eq(break_glass),
            users::updated_at.eq(now.as_micros()),
        ))
        .execute(conn)?;
    Ok(())
}

/// Replaces the profile fields an identity provider owns.
pub fn update_profile(
    conn: &mut DbConnection,
    id: UserId,
    display_name: &DisplayName,
    email: Option<&Email>,
    now: Timestamp,
) -> Result<(), StoreError> {
    diesel::update(users::table.find(id.to_string()))
        .set((
            users::display_name.eq(display_name.as_str()),
            users::email.eq(email.map(Email::as_str)),
            users::updated_at.eq(now.as_micros()),
        ))
        .execute(conn)?;
    Ok(())
}
