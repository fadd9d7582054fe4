//! External identities: which account an identity provider's subject maps to.

use crate::DbConnection;
use crate::error::StoreError;
use crate::schema::user_identities;
use conclave_core::{Timestamp, UserId};
use diesel::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityRecord {
    /// `ldap` or `oidc:<provider id>`.
    pub provider: String,
    /// Stable at the provider: the OIDC `sub`, the LDAP entryUUID or objectGUID.
    pub subject: String,
    pub user_id: UserId,
    /// The DN or the preferred username, for people reading it.
    pub external_name: String,
    /// JSON array of the provider's groups last seen.
    pub groups: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = user_identities)]
struct IdentityRow {
    provider: String,
    subject: String,
    user_id: String,
    external_name: String,
    groups: String,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<IdentityRow> for IdentityRecord {
    type Error = StoreError;
    fn try_from(row: IdentityRow) -> Result<Self, StoreError> {
        Ok(IdentityRecord {
            user_id: row.user_id.parse().map_err(|_| {
                StoreError::Corrupt(format!(
                    "identity {}/{}: bad user id",
                    row.provider, row.subject
                ))
            })?,
            provider: row.provider,
            subject: row.subject,
            external_name: row.external_name,
            groups: row.groups,
            created_at: Timestamp::from_micros(row.created_at),
            updated_at: Timestamp::from_micros(row.updated_at),
        })
    }
}

pub fn find(
    conn: &mut DbConnection,
    provider: &str,
    subject: &str,
) -> Result<Option<IdentityRecord>, StoreError> {
    user_identities::table
        .find((provider, subject))
        .select(IdentityRow::as_select())
        .get_result(conn)
        .optional()?
        .map(IdentityRecord::try_from)
        .transpose()
}

pub fn for_user(conn: &mut DbConnection, user: UserId) -> Result<Vec<IdentityRecord>, StoreError> {
    user_identities::table
        .filter(user_identities::user_id.eq(user.to_string()))
        .select(IdentityRow::as_select())
        .load(conn)?
        .into_iter()
        .map(IdentityRecord::try_from)
        .collect()
}

pub fn insert(
    conn: &mut DbConnection,
    provider: &str,
    subject: &str,
    user: UserId,
    external_name: &str,
    groups: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    diesel::insert_into(user_identities::table)
        .values((
            user_identities::provider.eq(provider),
            user_identities::subject.eq(subject),
            user_identities::user_id.eq(user.to_string()),
            user_identities::external_name.eq(external_name),
            user_identities::groups.eq(groups),
            user_identities::created_at.eq(now.as_micros()),
            user_identities::updated_at.eq(now.as_micros()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn update(
    conn: &mut DbConnection,
    provider: &str,
    subject: &str,
    external_name: &str,
    groups: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    diesel::update(user_identities::table.find((provider, subject)))
        .set((
            user_identities::external_name.eq(external_name),
            user_identities::groups.eq(groups),
            user_identities::updated_at.eq(now.as_micros()),
        ))
        .execute(conn)?;
    Ok(())
}

/// A page of one provider's identities in subject order, after `after` (keyset paging,
/// so a sweep over 100,000 identities holds one page at a time).
pub fn page(
    conn: &mut DbConnection,
    provider: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<IdentityRecord>, StoreError> {
    let mut query = user_identities::table
        .filter(user_identities::provider.eq(provider))
        .order(user_identities::subject.asc())
        .limit(limit)
        .select(IdentityRow::as_select())
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(user_identities::subject.gt(after.to_owned()));
    }
    query
        .load(conn)?
        .into_iter()
        .map(IdentityRecord::try_from)
        .collect()
}
