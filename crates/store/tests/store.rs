//! Store integration tests, each run against SQLite and a throwaway PostgreSQL.

use conclave_core::{
    AuditContext, AuditOutcome, DisplayName, NewAuditEvent, Role, RoleSet, SessionId, Timestamp,
    UserId, UserStatus, Username,
};
use conclave_crypto::SessionToken;
use conclave_store::audit::{self, ChainStatus};
use conclave_store::users::{AuthSource, NewUser};
use conclave_store::{
    DbConnection, StoreError, login_failures, migrations, sessions, users, write_transaction,
};
use conclave_testkit::{TestBackend, TestDb, backend_tests};
use diesel::prelude::*;

fn now() -> Timestamp {
    Timestamp::from_micros(1_800_000_000_000_000)
}

fn add_user(conn: &mut DbConnection, name: &str, roles: &[Role]) -> UserId {
    let id = UserId::new();
    let username = Username::parse(name).unwrap();
    let display = DisplayName::parse(name).unwrap();
    let roles = RoleSet::new(roles.iter().copied());
    users::insert(
        conn,
        &NewUser {
            id,
            username: &username,
            display_name: &display,
            email: None,
            auth_source: AuthSource::Local,
            password_hash: Some("$argon2id$fake"),
            must_change_password: true,
            roles: &roles,
            now: now(),
        },
    )
    .unwrap();
    id
}

fn event(action: &'static str, details: &str) -> NewAuditEvent {
    NewAuditEvent {
        action,
        target_kind: Some("user"),
        target_id: Some("t".into()),
        outcome: AuditOutcome::Success,
        details: details.into(),
    }
}

/// The tables and columns a backend ends up with, normalized for comparison.
fn logical_schema(conn: &mut DbConnection) -> Vec<(String, String, bool)> {
    #[derive(QueryableByName)]
    struct Column {
        #[diesel(sql_type = diesel::sql_types::Text)]
        table_name: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        column_name: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        data_type: String,
        #[diesel(sql_type = diesel::sql_types::Integer)]
        nullable: i32,
    }
    let sql = match conn {
        DbConnection::Postgresql(_) => {
            "SELECT table_name::text AS table_name, column_name::text AS column_name, \
             data_type::text AS data_type, CASE WHEN is_nullable = 'YES' THEN 1 ELSE 0 END AS nullable \
             FROM information_schema.columns WHERE table_schema = 'public' \
             AND table_name <> '__diesel_schema_migrations'"
        }
        DbConnection::Sqlite(_) => {
            "SELECT m.name AS table_name, p.name AS column_name, p.type AS data_type, \
             CASE WHEN p.\"notnull\" = 0 AND p.pk = 0 THEN 1 ELSE 0 END AS nullable \
             FROM sqlite_master m JOIN pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' \
             AND m.name <> '__diesel_schema_migrations'"
        }
    };
    let mut columns: Vec<(String, String, bool)> = diesel::sql_query(sql)
        .load::<Column>(conn)
        .unwrap()
        .into_iter()
        .map(|c| {
            let kind = match c.data_type.to_lowercase().as_str() {
                "text" => "text",
                "bigint" => "bigint",
                "boolean" => "boolean",
                "bytea" | "blob" => "bytes",
                other => panic!(
                    "non-portable column type {other} in {}.{}",
                    c.table_name, c.column_name
                ),
            };
            (
                format!("{}.{}", c.table_name, c.column_name),
                kind.to_owned(),
                c.nullable == 1,
            )
        })
        .collect();
    columns.sort();
    columns
}

/// Every index of a backend as `(table, unique, columns)`, sorted: primary keys, UNIQUE
/// constraints and plain indexes, so a constraint dropped on one backend is caught.
fn logical_indexes(conn: &mut DbConnection) -> Vec<(String, bool, String)> {
    #[derive(QueryableByName)]
    struct Index {
        #[diesel(sql_type = diesel::sql_types::Text)]
        table_name: String,
        #[diesel(sql_type = diesel::sql_types::Integer)]
        is_unique: i32,
        #[diesel(sql_type = diesel::sql_types::Text)]
        columns: String,
    }
    let sql = match conn {
        DbConnection::Postgresql(_) => {
            "SELECT t.relname::text AS table_name, CASE WHEN i.indisunique THEN 1 ELSE 0 END AS is_unique, \
             string_agg(a.attname::text, ',' ORDER BY k.n) AS columns \
             FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid \
             JOIN pg_namespace ns ON ns.oid = t.relnamespace \
             CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) \
             JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum \
             WHERE ns.nspname = 'public' AND t.relname <> '__diesel_schema_migrations' \
             GROUP BY t.relname, i.indexrelid, i.indisunique"
        }
        DbConnection::Sqlite(_) => {
            "SELECT m.name AS table_name, il.\"unique\" AS is_unique, \
             (SELECT group_concat(name, ',') FROM (SELECT ii.name FROM pragma_index_info(il.name) ii ORDER BY ii.seqno)) AS columns \
             FROM sqlite_master m JOIN pragma_index_list(m.name) il \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name <> '__diesel_schema_migrations'"
        }
    };
    let mut indexes: Vec<(String, bool, String)> = diesel::sql_query(sql)
        .load::<Index>(conn)
        .unwrap()
        .into_iter()
        .map(|i| (i.table_name, i.is_unique == 1, i.columns))
        .collect();
    indexes.sort();
    indexes
}

#[test]
fn both_backends_have_the_same_logical_schema() {
    let sqlite = TestDb::new(TestBackend::Sqlite);
    let postgres = TestDb::new(TestBackend::Postgres);
    let mut sqlite_conn = sqlite.db.conn().unwrap();
    let mut postgres_conn = postgres.db.conn().unwrap();
    let a = logical_schema(&mut sqlite_conn);
    assert!(!a.is_empty());
    assert_eq!(a, logical_schema(&mut postgres_conn));
    let a = logical_indexes(&mut sqlite_conn);
    assert!(
        a.iter().any(|(table, unique, columns)| table == "sessions"
            && *unique
            && columns == "token_hash")
    );
    assert_eq!(a, logical_indexes(&mut postgres_conn));
}

fn migrations_go_down_and_up_again(backend: TestBackend) {
    let test_db = TestDb::unmigrated(backend);
    let mut conn = test_db.db.conn().unwrap();
    assert!(migrations::has_pending(&mut conn).unwrap());
    let applied = migrations::run_pending(&mut conn).unwrap();
    assert!(!applied.is_empty());
    // Applied in version order; a gap in the numbering (a migration reserved for another
    // branch) is fine.
    let mut in_order = applied.clone();
    in_order.sort();
    assert_eq!(applied, in_order);
    assert!(applied.iter().any(|v| v.ends_with("000006")), "{applied:?}");
    assert!(applied.iter().any(|v| v.ends_with("000008")), "{applied:?}");
    assert!(!migrations::has_pending(&mut conn).unwrap());
    let schema = logical_schema(&mut conn);
    migrations::revert_all(&mut conn).unwrap();
    assert!(
        logical_schema(&mut conn).is_empty(),
        "down migrations leave tables behind"
    );
    migrations::run_pending(&mut conn).unwrap();
    assert_eq!(logical_schema(&mut conn), schema);
}

#[test]
fn sqlite_migrations_go_down_and_up_again() {
    migrations_go_down_and_up_again(TestBackend::Sqlite);
}

#[test]
fn postgres_migrations_go_down_and_up_again() {
    migrations_go_down_and_up_again(TestBackend::Postgres);
}

backend_tests! {
    fn shred_candidates_are_remembered_once_each(db) {
        use conclave_store::retention;
        use conclave_store::schema::rooms;
        let mut conn = db.conn().unwrap();
        let owner = add_user(&mut conn, "owner", &[]);
        let room_ids: Vec<String> = (0..3).map(|_| uuid::Uuid::now_v7().to_string()).collect();
        for id in &room_ids {
            diesel::insert_into(rooms::table)
                .values((
                    rooms::id.eq(id),
                    rooms::kind.eq("room"),
                    rooms::name.eq("r"),
                    rooms::created_by.eq(owner.to_string()),
                    rooms::created_at.eq(now().as_micros()),
                    rooms::updated_at.eq(now().as_micros()),
                ))
                .execute(&mut conn)
                .unwrap();
        }
        let key = |room: usize, epoch: i64| (room_ids[room].clone(), epoch);
        retention::add_shred_candidates(&mut conn, &[key(0, 10), key(1, 10), key(0, 11)]).unwrap();
        // Again, with some already remembered and one new; and nothing at all.
        retention::add_shred_candidates(&mut conn, &[key(1, 10), key(2, 9), key(0, 10)]).unwrap();
        retention::add_shred_candidates(&mut conn, &[]).unwrap();
        let mut remembered = retention::shred_candidates(&mut conn, 100, None, 100).unwrap();
        remembered.sort();
        let mut expected = vec![key(0, 10), key(0, 11), key(1, 10), key(2, 9)];
        expected.sort();
        assert_eq!(remembered, expected);
        // Only epochs before the bound, in (epoch, room) order, a page at a time.
        assert_eq!(retention::shred_candidates(&mut conn, 10, None, 100).unwrap(), vec![key(2, 9)]);
        let first = retention::shred_candidates(&mut conn, 100, None, 2).unwrap();
        let rest = retention::shred_candidates(&mut conn, 100, first.last().cloned(), 100).unwrap();
        assert_eq!(first.len() + rest.len(), 4);
    }

    fn messages_and_versions_are_read_many_at_a_time(db) {
        use conclave_core::{MessageId, RoomId, RoomKind};
        use conclave_store::{messages, rooms};
        let mut conn = db.conn().unwrap();
        let owner = add_user(&mut conn, "owner", &[]);
        let room_id = RoomId::new();
        rooms::insert(&mut conn, &rooms::NewRoom { id: room_id, kind: RoomKind::Room, name: Some("r"), topic: None, direct_key: None, created_by: owner, now: now() }).unwrap();
        let ids: Vec<MessageId> = (0..1_200).map(|_| MessageId::new()).collect();
        for (seq, id) in ids.iter().enumerate() {
            let key = format!("k{seq}");
            messages::insert(&mut conn, &messages::NewMessage { id: *id, room_id, seq: seq as i64 + 1, sender_id: owner, reply_to_id: None, attachment_id: None, idempotency_key: &key, now: now(), visible_until: None, burn_after_read_seconds: None, retain_until: None }).unwrap();
            for version in 1..=(1 + seq as i64 % 2) {
                messages::insert_version(&mut conn, room_id, *id, version, 7, &[seq as u8, version as u8], now()).unwrap();
            }
        }
        // Every other one of them, more than any one list of bound parameters could hold,
        // with an unknown id and a repeat among them.
        let mut asked: Vec<MessageId> = ids.iter().step_by(2).copied().collect();
        asked.push(MessageId::new());
        asked.push(ids[0]);
        let mut found: Vec<MessageId> = messages::find_many(&mut conn, &asked).unwrap().into_iter().map(|m| m.id).collect();
        found.sort();
        let mut expected: Vec<MessageId> = ids.iter().step_by(2).copied().collect();
        expected.sort();
        assert_eq!(found, expected);
        // Every other message has a second version: only the asked messages' come back.
        let odd: Vec<MessageId> = ids.iter().skip(1).step_by(2).copied().collect();
        let mut versions: Vec<(String, i64, Vec<u8>)> = messages::versions_of_many(&mut conn, &odd[..3]).unwrap().into_iter().map(|v| (v.message_id, v.version, v.ciphertext)).collect();
        versions.sort();
        let mut expected: Vec<(String, i64, Vec<u8>)> = [1usize, 3, 5].iter().flat_map(|&seq| [(ids[seq].to_string(), 1, vec![seq as u8, 1]), (ids[seq].to_string(), 2, vec![seq as u8, 2])]).collect();
        expected.sort();
        assert_eq!(versions, expected);
        assert!(messages::find_many(&mut conn, &[]).unwrap().is_empty());
        assert!(messages::versions_of_many(&mut conn, &[]).unwrap().is_empty());
    }

    fn users_round_trip_with_roles(db) {
        let mut conn = db.conn().unwrap();
        let id = add_user(&mut conn, "Ada", &[Role::Admin]);
        let by_name = users::find_by_username(&mut conn, &Username::parse("ada").unwrap()).unwrap().unwrap();
        assert_eq!(by_name.id, id);
        assert_eq!(by_name.username.as_str(), "ada");
        assert_eq!(by_name.status, UserStatus::Active);
        assert!(by_name.must_change_password);
        assert_eq!(by_name.roles.to_vec(), vec![Role::User, Role::Admin]);
        assert_eq!(users::find_by_id(&mut conn, id).unwrap(), Some(by_name));
        assert_eq!(users::find_by_id(&mut conn, UserId::new()).unwrap(), None);

        users::replace_roles(&mut conn, id, &RoleSet::new([Role::Auditor])).unwrap();
        let user = users::find_by_id(&mut conn, id).unwrap().unwrap();
        assert_eq!(user.roles.to_vec(), vec![Role::User, Role::Auditor]);
        assert_eq!(users::count_active_admins(&mut conn).unwrap(), 0);
    }

    fn duplicate_usernames_conflict(db) {
        let mut conn = db.conn().unwrap();
        add_user(&mut conn, "bob", &[]);
        let username = Username::parse("BOB").unwrap();
        let display = DisplayName::parse("Bob Two").unwrap();
        let result = users::insert(&mut conn, &NewUser {
            id: UserId::new(),
            username: &username,
            display_name: &display,
            email: None,
            auth_source: AuthSource::Local,
            password_hash: None,
            must_change_password: false,
            roles: &RoleSet::new([]),
            now: now(),
        });
        assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
        assert_eq!(users::count(&mut conn).unwrap(), 1);
    }

    fn users_list_pages_by_username(db) {
        let mut conn = db.conn().unwrap();
        for name in ["carol", "alice", "dave", "bob"] {
            add_user(&mut conn, name, &[]);
        }
        let first: Vec<_> = users::list(&mut conn, None, 2).unwrap().into_iter().map(|u| u.username.to_string()).collect();
        assert_eq!(first, ["alice", "bob"]);
        let next: Vec<_> = users::list(&mut conn, Some("bob"), 10).unwrap().into_iter().map(|u| u.username.to_string()).collect();
        assert_eq!(next, ["carol", "dave"]);
    }

    fn suspension_and_admin_count(db) {
        let mut conn = db.conn().unwrap();
        let a = add_user(&mut conn, "a", &[Role::Admin]);
        add_user(&mut conn, "b", &[Role::Admin]);
        assert_eq!(users::count_active_admins(&mut conn).unwrap(), 2);
        users::set_status(&mut conn, a, UserStatus::Suspended, now()).unwrap();
        assert_eq!(users::count_active_admins(&mut conn).unwrap(), 1);
        assert_eq!(users::find_by_id(&mut conn, a).unwrap().unwrap().status, UserStatus::Suspended);
    }

    fn sessions_are_found_by_token_hash_and_revoked(db) {
        let mut conn = db.conn().unwrap();
        let user = add_user(&mut conn, "erin", &[]);
        let token = SessionToken::generate().unwrap();
        let other = SessionToken::generate().unwrap();
        let id = SessionId::new();
        let later = now().plus(std::time::Duration::from_secs(3600));
        for (sid, tok) in [(id, &token), (SessionId::new(), &other)] {
            sessions::insert(&mut conn, &sessions::NewSession {
                id: sid, user_id: user, token_hash: tok.hash(), now: now(), expires_at: later,
                client_addr: Some("127.0.0.1"), user_agent: Some("test"), idle_timeout_seconds: None,
            }).unwrap();
        }
        let found = sessions::find_by_token_hash(&mut conn, &token.hash()).unwrap().unwrap();
        assert_eq!(found.id, id);
        assert_eq!(found.user_id, user);
        assert!(sessions::find_by_token_hash(&mut conn, &SessionToken::from_client("nope").hash()).unwrap().is_none());
        assert_eq!(sessions::list_unexpired_for_user(&mut conn, user, now()).unwrap().len(), 2);
        assert!(sessions::list_unexpired_for_user(&mut conn, user, later).unwrap().is_empty());

        assert!(sessions::revoke(&mut conn, id, now(), "logout").unwrap());
        assert!(!sessions::revoke(&mut conn, id, now(), "logout").unwrap(), "second revoke is a no-op");
        assert_eq!(sessions::revoke_all_for_user(&mut conn, user, now(), "suspended").unwrap(), 1);
        assert!(sessions::list_unexpired_for_user(&mut conn, user, now()).unwrap().is_empty());
    }

    fn login_failures_count_in_window(db) {
        let mut conn = db.conn().unwrap();
        let t = |s: i64| Timestamp::from_micros(s * 1_000_000);
        for s in [10, 20, 30] {
            login_failures::record(&mut conn, "account:x", t(s), t(0)).unwrap();
        }
        let address_attempt = login_failures::record(&mut conn, "address:1.2.3.4", t(30), t(0)).unwrap();
        assert_eq!(login_failures::count_since(&mut conn, "account:x", t(15)).unwrap(), 2);
        assert_eq!(login_failures::nth_oldest_since(&mut conn, "account:x", t(15), 0).unwrap(), Some(t(20)));
        assert_eq!(login_failures::nth_oldest_since(&mut conn, "account:x", t(0), 2).unwrap(), Some(t(30)));
        assert_eq!(login_failures::nth_oldest_since(&mut conn, "account:x", t(0), 3).unwrap(), None);
        assert_eq!(login_failures::count_since(&mut conn, "account:y", t(0)).unwrap(), 0);
        // Recording forgets what is older than the window.
        login_failures::record(&mut conn, "account:x", t(40), t(25)).unwrap();
        assert_eq!(login_failures::count_since(&mut conn, "account:x", t(0)).unwrap(), 2);
        login_failures::clear(&mut conn, "account:x").unwrap();
        assert_eq!(login_failures::count_since(&mut conn, "account:x", t(0)).unwrap(), 0);
        assert_eq!(login_failures::count_since(&mut conn, "address:1.2.3.4", t(0)).unwrap(), 1);
        login_failures::remove(&mut conn, &address_attempt).unwrap();
        assert_eq!(login_failures::count_since(&mut conn, "address:1.2.3.4", t(0)).unwrap(), 0);
        write_transaction(&mut conn, |conn| login_failures::lock_subjects(conn, &["account:a", "address:b", "account:a"])).unwrap();
    }

    fn audit_chain_appends_and_verifies(db) {
        let mut conn = db.conn().unwrap();
        assert_eq!(audit::verify_chain(&mut conn).unwrap(), ChainStatus::Intact { events: 0 });
        let ctx = AuditContext::system("test");
        for i in 0..2_500 {
            let seq = audit::append(&mut conn, &ctx, &event("user.create", &format!("{{\"i\":{i}}}")), now()).unwrap();
            assert_eq!(seq, i + 1);
        }
        assert_eq!(audit::verify_chain(&mut conn).unwrap(), ChainStatus::Intact { events: 2_500 });
    }

    fn audit_tampering_is_found_at_the_right_row(db) {
        use conclave_store::schema::audit_events::dsl::*;
        let mut conn = db.conn().unwrap();
        let ctx = AuditContext::system("test");
        for i in 0..10 {
            audit::append(&mut conn, &ctx, &event("user.create", &format!("{{\"i\":{i}}}")), now()).unwrap();
        }
        let broken_at = |conn: &mut DbConnection| match audit::verify_chain(conn).unwrap() {
            ChainStatus::Broken(b) => b.seq,
            intact => panic!("tampering not detected: {intact:?}"),
        };
        // Edit.
        diesel::update(audit_events.find(4)).set(details.eq("{\"i\":99}")).execute(&mut conn).unwrap();
        assert_eq!(broken_at(&mut conn), 4);
        diesel::update(audit_events.find(4)).set(details.eq("{\"i\":3}")).execute(&mut conn).unwrap();
        assert_eq!(audit::verify_chain(&mut conn).unwrap(), ChainStatus::Intact { events: 10 });
        // Delete.
        let row6 = audit_events.find(6).select(audit::AuditRecord::as_select()).first(&mut conn).unwrap();
        diesel::delete(audit_events.find(6)).execute(&mut conn).unwrap();
        assert_eq!(broken_at(&mut conn), 6);
        // Re-insert the deleted row under a forged action: an insert of altered content.
        diesel::insert_into(audit_events).values((
            seq.eq(6), id.eq(&row6.id), occurred_at.eq(row6.occurred_at), actor_name.eq(&row6.actor_name),
            action.eq("user.delete"), outcome.eq(&row6.outcome), details.eq(&row6.details),
            prev_hash.eq(&row6.prev_hash), hash.eq(&row6.hash), target_kind.eq(&row6.target_kind),
            target_id.eq(&row6.target_id),
        )).execute(&mut conn).unwrap();
        assert_eq!(broken_at(&mut conn), 6);
    }

    fn audit_appends_from_many_connections_stay_one_chain(db) {
        let threads: Vec<_> = (0..4).map(|t| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut conn = db.conn().unwrap();
                let ctx = AuditContext::system("test");
                for i in 0..25 {
                    audit::append(&mut conn, &ctx, &event("user.create", &format!("{{\"t\":{t},\"i\":{i}}}")), now()).unwrap();
                }
            })
        }).collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let mut conn = db.conn().unwrap();
        assert_eq!(audit::verify_chain(&mut conn).unwrap(), ChainStatus::Intact { events: 100 });
    }

    fn a_failed_transaction_leaves_no_change_and_no_audit_event(db) {
        let mut conn = db.conn().unwrap();
        let result: Result<(), StoreError> = write_transaction(&mut conn, |conn| {
            add_user(conn, "ghost", &[]);
            audit::append(conn, &AuditContext::system("test"), &event("user.create", "{}"), now())?;
            Err(StoreError::Conflict("forced".into()))
        });
        assert!(result.is_err());
        assert_eq!(users::count(&mut conn).unwrap(), 0);
        assert_eq!(audit::verify_chain(&mut conn).unwrap(), ChainStatus::Intact { events: 0 });
    }

    fn a_retention_job_advances_once_per_position(db) {
        use conclave_store::retention;
        let mut conn = db.conn().unwrap();
        let officer = add_user(&mut conn, "officer", &[Role::ComplianceOfficer]);
        let now = Timestamp::from_micros(1);
        retention::insert_job(&mut conn, "job", "org", 10, officer, now).unwrap();
        // Two workers ran the same first batch: only one records it.
        assert!(retention::advance_job(&mut conn, "job", None, Some("m5"), 5, 1, now).unwrap());
        assert!(!retention::advance_job(&mut conn, "job", None, Some("m5"), 5, 1, now).unwrap());
        assert!(retention::advance_job(&mut conn, "job", Some("m5"), None, 5, 0, now).unwrap());
        assert!(!retention::advance_job(&mut conn, "job", Some("m5"), None, 5, 0, now).unwrap());
        let job = retention::job(&mut conn, "job").unwrap().unwrap();
        assert_eq!((job.status.as_str(), job.processed, job.changed), ("done", 10, 1));
        assert_eq!(retention::next_job(&mut conn).unwrap(), None);
    }
}

/// A connection the server closed (a restart, a failover) is discarded by the pool when
/// it comes back, even when the failed statement ran outside a transaction (diesel marks
/// the connection broken on a closed-connection error): the pool then hands out fresh
/// connections and the application recovers without a restart.
#[test]
fn postgres_pool_discards_a_connection_the_server_closed() {
    let db = TestDb::new(TestBackend::Postgres);
    let pid_of = |conn: &mut DbConnection| {
        #[derive(QueryableByName)]
        struct Pid {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            pid: i32,
        }
        diesel::sql_query("SELECT pg_backend_pid() AS pid")
            .get_result::<Pid>(conn)
            .map(|row| row.pid)
    };
    let doomed = {
        let mut conn = db.db.conn().unwrap();
        pid_of(&mut conn).unwrap()
    };
    let mut killer = db.db.backend().connect().unwrap();
    diesel::sql_query(format!("SELECT pg_terminate_backend({doomed})"))
        .execute(&mut killer)
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    {
        // The pool's one idle connection is the dead one: its next statement fails.
        let mut conn = db.db.conn().unwrap();
        assert_eq!(pid_of(&mut conn).ok(), None);
    }
    // Returned broken, it was dropped: the next connection is a live, new one.
    let mut conn = db.db.conn().unwrap();
    let fresh = pid_of(&mut conn).unwrap();
    assert_ne!(fresh, doomed);
}
