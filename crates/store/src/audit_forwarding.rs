//! How far the audit log has been forwarded to each external destination (a syslog
//! collector): the last sequence number written there.

use crate::DbConnection;
use crate::error::StoreError;
use crate::schema::audit_forwarding;
use diesel::prelude::*;

/// The last sequence number forwarded to `destination` (0: none yet).
pub fn position(conn: &mut DbConnection, destination: &str) -> Result<i64, StoreError> {
    Ok(audit_forwarding::table
        .find(destination)
        .select(audit_forwarding::last_seq)
        .get_result(conn)
        .optional()?
        .unwrap_or(0))
}

/// Moves `destination` from `from` to `to`; returns false when another node moved it
/// first (its position stands).
pub fn advance(
    conn: &mut DbConnection,
    destination: &str,
    from: i64,
    to: i64,
) -> Result<bool, StoreError> {
    if from == 0 {
        let exists = audit_forwarding::table
            .find(destination)
            .count()
            .get_result::<i64>(conn)?
            > 0;
        if !exists {
            diesel::insert_into(audit_forwarding::table)
                .values((
                    audit_forwarding::destination.eq(destination),
                    audit_forwarding::last_seq.eq(to),
                ))
                .execute(conn)?;
            return Ok(true);
        }
    }
    let moved = diesel::update(
        audit_forwarding::table
            .find(destination)
            .filter(audit_forwarding::last_seq.eq(from)),
    )
    .set(audit_forwarding::last_seq.eq(to))
    .execute(conn)?;
    Ok(moved == 1)
}

/// Every destination with its position.
pub fn positions(conn: &mut DbConnection) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(audit_forwarding::table
        .order(audit_forwarding::destination.asc())
        .select((audit_forwarding::destination, audit_forwarding::last_seq))
        .load(conn)?)
}
