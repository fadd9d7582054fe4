//! Policies by scope (`org`, `group:<id>`, `room:<id>`), stored as JSON.

use crate::DbConnection;
use crate::error::StoreError;
use crate::schema::policies;
use conclave_core::Timestamp;
use diesel::prelude::*;

pub fn get(conn: &mut DbConnection, scope: &str) -> Result<Option<String>, StoreError> {
    Ok(policies::table
        .find(scope)
        .select(policies::policy)
        .get_result(conn)
        .optional()?)
}

/// The stored policies of `scopes` (absent ones are left out), in one query.
pub fn get_many(
    conn: &mut DbConnection,
    scopes: &[String],
) -> Result<std::collections::HashMap<String, String>, StoreError> {
    Ok(policies::table
        .filter(policies::scope.eq_any(scopes))
        .select((policies::scope, policies::policy))
        .load::<(String, String)>(conn)?
        .into_iter()
        .collect())
}

pub fn put(
    conn: &mut DbConnection,
    scope: &str,
    policy_json: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    let updated = diesel::update(policies::table.find(scope))
        .set((
            policies::policy.eq(policy_json),
            policies::updated_at.eq(now.as_micros()),
        ))
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(policies::table)
            .values((
                policies::scope.eq(scope),
                policies::policy.eq(policy_json),
                policies::updated_at.eq(now.as_micros()),
            ))
            .execute(conn)?;
    }
    Ok(())
}
