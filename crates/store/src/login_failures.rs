//! Recent failed logins, counted per subject (`account:NAME` or `address:IP`) for
//! throttling. Kept in the database so every node of a cluster sees the same counts.
//!
//! An attempt is recorded *before* its password is checked (and removed again if it
//! succeeds), under a per-subject lock, so concurrent guesses each use up the budget
//! instead of all passing the check before any failure is written.

use crate::DbConnection;
use crate::error::StoreError;
use crate::schema::login_failures;
use conclave_core::Timestamp;
use diesel::prelude::*;
use uuid::Uuid;

/// Serializes throttling decisions for these subjects until the transaction ends
/// (PostgreSQL advisory locks, taken in sorted order so two logins cannot deadlock;
/// SQLite's write transactions are already serial).
pub fn lock_subjects(conn: &mut DbConnection, subjects: &[&str]) -> Result<(), StoreError> {
    if let DbConnection::Postgresql(_) = conn {
        let mut sorted = subjects.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        for subject in sorted {
            diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7421))")
                .bind::<diesel::sql_types::Text, _>(subject)
                .execute(conn)?;
        }
    }
    Ok(())
}

/// Records an attempt as a failure and forgets that subject's failures older than
/// `forget_before`. Returns the record's id, for [`remove`] if the attempt succeeds.
pub fn record(
    conn: &mut DbConnection,
    subject: &str,
    now: Timestamp,
    forget_before: Timestamp,
) -> Result<String, StoreError> {
    diesel::delete(
        login_failures::table
            .filter(login_failures::subject.eq(subject))
            .filter(login_failures::failed_at.lt(forget_before.as_micros())),
    )
    .execute(conn)?;
    let id = Uuid::now_v7().to_string();
    diesel::insert_into(login_failures::table)
        .values((
            login_failures::id.eq(&id),
            login_failures::subject.eq(subject),
            login_failures::failed_at.eq(now.as_micros()),
        ))
        .execute(conn)?;
    Ok(id)
}

pub fn remove(conn: &mut DbConnection, id: &str) -> Result<(), StoreError> {
    diesel::delete(login_failures::table.find(id)).execute(conn)?;
    Ok(())
}

/// How many failures a subject had since `since`.
pub fn count_since(
    conn: &mut DbConnection,
    subject: &str,
    since: Timestamp,
) -> Result<u64, StoreError> {
    let count: i64 = login_failures::table
        .filter(login_failures::subject.eq(subject))
        .filter(login_failures::failed_at.ge(since.as_micros()))
        .count()
        .get_result(conn)?;
    Ok(count.max(0) as u64)
}

/// The time of the `index`-th oldest (0-based) failure of a subject since `since`.
pub fn nth_oldest_since(
    conn: &mut DbConnection,
    subject: &str,
    since: Timestamp,
    index: u64,
) -> Result<Option<Timestamp>, StoreError> {
    let at: Option<i64> = login_failures::table
        .filter(login_failures::subject.eq(subject))
        .filter(login_failures::failed_at.ge(since.as_micros()))
        .order((login_failures::failed_at.asc(), login_failures::id.asc()))
        .offset(i64::try_from(index).unwrap_or(i64::MAX))
        .select(login_failures::failed_at)
        .first(conn)
        .optional()?;
    Ok(at.map(Timestamp::from_micros))
}

pub fn clear(conn: &mut DbConnection, subject: &str) -> Result<(), StoreError> {
    diesel::delete(login_failures::table.filter(login_failures::subject.eq(subject)))
        .execute(conn)?;
    Ok(())
}
