//! Rows most tests need, made the same way everywhere.

use conclave_core::{DisplayName, RoleSet, Timestamp, UserId, Username};
use conclave_store::DbConnection;
use conclave_store::users::{self, AuthSource, NewUser};

/// An active account named `name` (also its display name), with no roles but `user` and
/// no password, created at `now`.
pub fn user(conn: &mut DbConnection, name: &str, now: Timestamp) -> UserId {
    let id = UserId::new();
    users::insert(
        conn,
        &NewUser {
            id,
            username: &Username::parse(name).expect("a valid test username"),
            display_name: &DisplayName::parse(name).expect("a valid test display name"),
            email: None,
            auth_source: AuthSource::Local,
            password_hash: None,
            must_change_password: false,
            roles: &RoleSet::new([]),
            now,
        },
    )
    .expect("insert a test user");
    id
}
