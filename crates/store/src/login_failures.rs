//! Recent failed logins, counted per subject (`account:NAME` or `address:IP`) for
//! throttling. Kept in the database so every node of a cluster sees the same counts.

use crate::DbConnection;
use crate::error::StoreError;
use crate::schema::login_failures;
use conclave_core::Timestamp;
use diesel::dsl::{count_star, min};
use diesel::prelude::*;
use uuid::Uuid;

/// Records a failure and forgets that subject's failures older than `forget_before`.
pub fn record(
    conn: &mut DbConnection,
    subject: &str,
    now: Timestamp,
    forget_before: Timestamp,
) -> Result<(), StoreError> {
    diesel::delete(
        login_failures::table
            .filter(login_failures::subject.eq(subject))
            .filter(login_failures::failed_at.lt(forget_before.as_micros())),
    )
    .execute(conn)?;
    diesel::insert_into(login_failures::table)
        .values((
            login_failures::id.eq(Uuid::now_v7().to_string()),
            login_failures::subject.eq(subject),
            login_failures::failed_at.eq(now.as_micros()),
        ))
        .execute(conn)?;
    Ok(())
}

/// How many failures a subject had since `since`, and when the oldest of them was.
pub fn recent(
    conn: &mut DbConnection,
    subject: &str,
    since: Timestamp,
) -> Result<(u64, Option<Timestamp>), StoreError> {
    let (count, oldest): (i64, Option<i64>) = login_failures::table
        .filter(login_failures::subject.eq(subject))
        .filter(login_failures::failed_at.ge(since.as_micros()))
        .select((count_star(), min(login_failures::failed_at)))
        .first(conn)?;
    Ok((count.max(0) as u64, oldest.map(Timestamp::from_micros)))
}

pub fn clear(conn: &mut DbConnection, subject: &str) -> Result<(), StoreError> {
    diesel::delete(login_failures::table.filter(login_failures::subject.eq(subject)))
        .execute(conn)?;
    Ok(())
}
