//! Identity service tests on both backends: login, throttling, sessions and their
//! lifetimes, account administration, and the audit events each leaves.

use conclave_auth::accounts::{self, NewLocalAccount};
use conclave_auth::login::{self, LoginAttempt, LoginSuccess};
use conclave_auth::{AuthError, AuthSettings, Principal, sessions};
use conclave_core::{
    AuditContext, DisplayName, LoginThrottle, NewPassword, Role, RoleSet, SessionPolicy, Timestamp,
    UserId, UserStatus, Username,
};
use conclave_store::audit::{self, ChainStatus};
use conclave_store::{Db, DbConnection};
use conclave_testkit::backend_tests;
use std::time::Duration;

#[path = "sso/directory.rs"]
mod directory;
#[path = "sso/local_login.rs"]
mod local_login;

const PASSWORD: &str = "correct horse battery staple";

fn settings() -> AuthSettings {
    AuthSettings {
        sessions: SessionPolicy {
            absolute_lifetime: Duration::from_secs(8 * 3600),
            idle_timeout: Duration::from_secs(15 * 60),
        },
        throttle: LoginThrottle {
            max_failures_per_account: 3,
            max_failures_per_address: 5,
            window: Duration::from_secs(600),
        },
        secure_cookies: false,
        account_policy: None,
        login_rate: conclave_auth::LoginRate::unlimited(),
    }
}

fn t0() -> Timestamp {
    Timestamp::from_micros(1_800_000_000_000_000)
}

fn admin_context() -> AuditContext {
    AuditContext::system("test")
}

fn create(conn: &mut DbConnection, name: &str, roles: &[Role]) -> UserId {
    accounts::create_local_account(
        conn,
        &admin_context(),
        t0(),
        NewLocalAccount {
            username: Username::parse(name).unwrap(),
            display_name: DisplayName::parse(name).unwrap(),
            email: None,
            roles: RoleSet::new(roles.iter().copied()),
            password: Some(NewPassword::parse(PASSWORD).unwrap()),
        },
    )
    .unwrap()
    .user
    .id
}

fn attempt<'a>(username: &'a str, password: &'a str, addr: &'a str) -> LoginAttempt<'a> {
    LoginAttempt {
        username,
        password,
        client_addr: Some(addr),
        user_agent: Some("tests"),
        api_path: Some("/api/v1/auth/login"),
    }
}

fn login_ok(db: &Db, name: &str, at: Timestamp) -> LoginSuccess {
    login::login_local(db, &settings(), at, &attempt(name, PASSWORD, "10.0.0.1")).unwrap()
}

fn principal(
    conn: &mut DbConnection,
    success: &LoginSuccess,
    at: Timestamp,
) -> Result<Principal, AuthError> {
    sessions::authenticate(conn, &success.session.token, &settings().sessions, at)
}

fn audit_actions(conn: &mut DbConnection) -> Vec<(String, String)> {
    audit::list_after(conn, 0, 10_000)
        .unwrap()
        .into_iter()
        .map(|e| (e.action, e.outcome))
        .collect()
}

fn conn(db: &Db) -> conclave_store::connection::PooledDbConnection {
    db.conn().unwrap()
}

fn conn_of(db: &Db) -> conclave_store::connection::PooledDbConnection {
    conn(db)
}

backend_tests! {
    fn the_people_directory_finds_active_accounts_by_part_of_a_name(db) {
        let mut conn = conn(db);
        let alice = create(&mut conn, "alice.martin", &[]);
        create(&mut conn, "bob_smith", &[]);
        let carol = create(&mut conn, "carol", &[]);
        accounts::suspend(&mut conn, &admin_context(), t0(), carol).unwrap();
        let names = |q: &str| -> Vec<String> {
            accounts::search_people(&mut conn_of(db), q, 20)
                .unwrap()
                .into_iter()
                .map(|card| card.username)
                .collect()
        };
        assert_eq!(names("MARTIN"), vec!["alice.martin"]);
        assert_eq!(names("o"), vec!["bob_smith"], "carol is suspended");
        // LIKE wildcards in the query are literal characters.
        assert_eq!(names("_"), vec!["bob_smith"]);
        assert!(names("%").is_empty());
        assert!(names("zed").is_empty());
        let found = accounts::search_people(&mut conn, "alice", 20).unwrap();
        assert_eq!(found[0].id, alice);
        for bad in ["", "   ", &"x".repeat(101), "a\u{7}b"] {
            assert!(matches!(
                accounts::search_people(&mut conn, bad, 20),
                Err(AuthError::Invalid(_))
            ));
        }
        assert_eq!(accounts::search_people(&mut conn, "a", 1).unwrap().len(), 1);
    }

    fn login_opens_a_session_that_authenticates(db) {
        let mut conn = conn(db);
        let id = create(&mut conn, "alice", &[]);
        let success = login_ok(db, "Alice", t0());
        assert_eq!(success.user.id, id);
        assert!(success.user.must_change_password);
        let who = principal(&mut conn, &success, t0()).unwrap();
        assert_eq!(who.user.id, id);
        assert_eq!(who.session_id, success.session.session_id);
        assert!(audit_actions(&mut conn).contains(&("auth.login".into(), "success".into())));
    }

    fn wrong_password_and_unknown_user_are_refused_alike_and_audited(db) {
        let mut conn = conn(db);
        create(&mut conn, "bob", &[]);
        let wrong = login::login_local(db, &settings(), t0(), &attempt("bob", "nope", "10.0.0.2"));
        assert!(matches!(wrong, Err(AuthError::InvalidCredentials)));
        let unknown = login::login_local(db, &settings(), t0(), &attempt("nobody", PASSWORD, "10.0.0.2"));
        assert!(matches!(unknown, Err(AuthError::InvalidCredentials)));
        let injection = login::login_local(db, &settings(), t0(), &attempt("*)(uid=*", PASSWORD, "10.0.0.2"));
        assert!(matches!(injection, Err(AuthError::InvalidCredentials)));
        let failures = audit_actions(&mut conn)
            .into_iter()
            .filter(|(action, outcome)| action == "auth.login" && outcome == "failure")
            .count();
        assert_eq!(failures, 3);
        assert_eq!(audit::verify_chain(&mut conn).unwrap(), ChainStatus::Intact { events: 4 });
    }

    fn failed_logins_are_throttled_per_account_then_released(db) {
        let mut conn = conn(db);
        create(&mut conn, "carol", &[]);
        let s = settings();
        for i in 0..3 {
            let addr = format!("10.1.0.{i}");
            let result = login::login_local(db, &s, t0(), &attempt("carol", "bad", &addr));
            assert!(matches!(result, Err(AuthError::InvalidCredentials)));
        }
        // Even the right password is refused while throttled, from any address.
        match login::login_local(db, &s, t0().plus(Duration::from_secs(60)), &attempt("carol", PASSWORD, "10.9.9.9")) {
            Err(AuthError::Throttled { retry_after }) => assert_eq!(retry_after, Duration::from_secs(540)),
            other => panic!("expected throttling, got {other:?}"),
        }
        // After the window the right password works again and resets the account's count:
        // two more failures right after are still under the limit of three.
        let later = t0().plus(Duration::from_secs(601));
        login::login_local(db, &s, later, &attempt("carol", PASSWORD, "10.9.9.9")).unwrap();
        for _ in 0..2 {
            let result = login::login_local(db, &s, later, &attempt("carol", "bad", "10.9.9.8"));
            assert!(matches!(result, Err(AuthError::InvalidCredentials)), "{result:?}");
        }
        login::login_local(db, &s, later, &attempt("carol", PASSWORD, "10.9.9.9")).unwrap();
    }

    fn failed_logins_are_throttled_per_address(db) {
        let mut conn = conn(db);
        create(&mut conn, "dave", &[]);
        let s = settings();
        for i in 0..5 {
            let name = format!("guess{i}");
            let _ = login::login_local(db, &s, t0(), &attempt(&name, "bad", "10.2.0.1"));
        }
        let result = login::login_local(db, &s, t0(), &attempt("dave", PASSWORD, "10.2.0.1"));
        assert!(matches!(result, Err(AuthError::Throttled { .. })), "{result:?}");
        login::login_local(db, &s, t0(), &attempt("dave", PASSWORD, "10.2.0.2")).unwrap();
    }

    fn sessions_end_when_idle_or_at_absolute_lifetime(db) {
        let mut conn = conn(db);
        create(&mut conn, "erin", &[]);
        let success = login_ok(db, "erin", t0());
        let minutes = |m: u64| t0().plus(Duration::from_secs(m * 60));
        // Activity every 10 minutes keeps it alive past the idle timeout...
        for m in (10..=470).step_by(10) {
            principal(&mut conn, &success, minutes(m)).unwrap();
        }
        // ...but not past the 8-hour absolute lifetime.
        assert!(matches!(principal(&mut conn, &success, minutes(480)), Err(AuthError::Unauthenticated)));

        let idle = login_ok(db, "erin", t0());
        principal(&mut conn, &idle, minutes(14)).unwrap();
        assert!(matches!(principal(&mut conn, &idle, minutes(30)), Err(AuthError::Unauthenticated)));
    }

    fn logout_and_revocation_end_sessions(db) {
        let mut conn = conn(db);
        create(&mut conn, "frank", &[]);
        let a = login_ok(db, "frank", t0());
        let b = login_ok(db, "frank", t0());
        let who = principal(&mut conn, &a, t0()).unwrap();
        let listed = sessions::list_mine(&mut conn, &who, &settings().sessions, t0()).unwrap();
        assert_eq!(listed.len(), 2);
        sessions::revoke_mine(&mut conn, &who, b.session.session_id, &admin_context(), t0()).unwrap();
        assert!(matches!(principal(&mut conn, &b, t0()), Err(AuthError::Unauthenticated)));
        sessions::logout(&mut conn, &who, &admin_context(), t0()).unwrap();
        assert!(matches!(principal(&mut conn, &a, t0()), Err(AuthError::Unauthenticated)));
    }

    fn another_users_session_cannot_be_revoked(db) {
        let mut conn = conn(db);
        create(&mut conn, "gina", &[]);
        create(&mut conn, "hank", &[]);
        let gina = login_ok(db, "gina", t0());
        let hank = login_ok(db, "hank", t0());
        let who = principal(&mut conn, &gina, t0()).unwrap();
        let result = sessions::revoke_mine(&mut conn, &who, hank.session.session_id, &admin_context(), t0());
        assert!(matches!(result, Err(AuthError::NotFound)));
        principal(&mut conn, &hank, t0()).unwrap();
    }

    fn suspension_ends_every_session_at_once_and_blocks_login(db) {
        let mut conn = conn(db);
        create(&mut conn, "root", &[Role::Admin]);
        let target = create(&mut conn, "ivan", &[]);
        let sessions: Vec<_> = (0..3).map(|_| login_ok(db, "ivan", t0())).collect();
        let suspended = accounts::suspend(&mut conn, &admin_context(), t0(), target).unwrap();
        assert_eq!(suspended.status, UserStatus::Suspended);
        for s in &sessions {
            assert!(matches!(principal(&mut conn, s, t0()), Err(AuthError::Unauthenticated)));
        }
        let result = login::login_local(db, &settings(), t0(), &attempt("ivan", PASSWORD, "10.0.0.3"));
        assert!(matches!(result, Err(AuthError::AccountDisabled)));
        accounts::reactivate(&mut conn, &admin_context(), t0(), target).unwrap();
        login_ok(db, "ivan", t0());
        let events = audit::list_after(&mut conn, 0, 1000).unwrap();
        let suspend = events.iter().find(|e| e.action == "user.suspend").unwrap();
        assert!(suspend.details.contains("\"sessions_ended\":3"), "{}", suspend.details);
        assert!(suspend.details.contains("\"before\":{\"status\":\"active\"}"), "{}", suspend.details);
    }

    fn the_last_admin_is_protected(db) {
        let mut conn = conn(db);
        let only = create(&mut conn, "boss", &[Role::Admin]);
        let result = accounts::set_roles(&mut conn, &admin_context(), t0(), only, RoleSet::new([]));
        assert!(matches!(result, Err(AuthError::Conflict(_))));
        let result = accounts::suspend(&mut conn, &admin_context(), t0(), only);
        assert!(matches!(result, Err(AuthError::Conflict(_))));
        let second = create(&mut conn, "deputy", &[Role::Admin]);
        create(&mut conn, "third", &[Role::Admin]);
        let self_context = AuditContext { actor_id: Some(second), ..admin_context() };
        match accounts::suspend(&mut conn, &self_context, t0(), second) {
            Err(AuthError::Conflict(message)) => assert!(message.contains("your own"), "{message}"),
            other => panic!("nobody suspends themself: {other:?}"),
        }
        match accounts::set_roles(&mut conn, &self_context, t0(), second, RoleSet::new([])) {
            Err(AuthError::Conflict(message)) => assert!(message.contains("your own roles"), "{message}"),
            other => panic!("nobody changes their own roles: {other:?}"),
        }
        accounts::set_roles(&mut conn, &admin_context(), t0(), only, RoleSet::new([Role::Auditor])).unwrap();
        let user = accounts::find(&mut conn, only).unwrap();
        assert_eq!(user.roles.to_vec(), vec![Role::User, Role::Auditor]);
        let change = audit::list_after(&mut conn, 0, 1000).unwrap().into_iter().find(|e| e.action == "user.roles_change").unwrap();
        assert!(change.details.contains("\"before\":{\"roles\":[\"user\",\"admin\"]}"), "{}", change.details);
    }

    fn concurrent_guesses_never_exceed_the_limit(db) {
        {
            let mut conn = conn(db);
            create(&mut conn, "lena", &[]);
        }
        let threads: Vec<_> = (0..12).map(|i| {
            let db = db.clone();
            std::thread::spawn(move || {
                let addr = format!("10.7.0.{i}");
                login::login_local(&db, &settings(), t0(), &attempt("lena", "guess", &addr))
            })
        }).collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let checked = results.iter().filter(|r| matches!(r, Err(AuthError::InvalidCredentials))).count();
        let throttled = results.iter().filter(|r| matches!(r, Err(AuthError::Throttled { .. }))).count();
        assert_eq!(checked, 3, "exactly the limit of guesses is checked, however many race");
        assert_eq!(throttled, 9);
    }

    fn separation_of_duties_holds(db) {
        let mut conn = conn(db);
        let officer = create(&mut conn, "olga", &[Role::ComplianceOfficer]);
        let result = accounts::set_roles(&mut conn, &admin_context(), t0(), officer, RoleSet::new([Role::Admin, Role::ComplianceOfficer]));
        assert!(matches!(result, Err(AuthError::Invalid(_))), "{result:?}");
        let result = accounts::create_local_account(&mut conn, &admin_context(), t0(), NewLocalAccount {
            username: Username::parse("both").unwrap(),
            display_name: DisplayName::parse("Both").unwrap(),
            email: None,
            roles: RoleSet::new([Role::Admin, Role::ComplianceOfficer]),
            password: None,
        });
        assert!(matches!(result, Err(AuthError::Invalid(_))), "{result:?}");
        assert_eq!(accounts::find(&mut conn, officer).unwrap().roles.to_vec(), vec![Role::User, Role::ComplianceOfficer]);
    }

    fn only_suspended_accounts_are_reactivated(db) {
        let mut conn = conn(db);
        let active = create(&mut conn, "pat", &[]);
        assert!(matches!(accounts::reactivate(&mut conn, &admin_context(), t0(), active), Err(AuthError::Conflict(_))));
    }

    fn sessions_store_only_the_hash_of_their_token(db) {
        use conclave_store::schema::sessions::dsl::*;
        use diesel::prelude::*;
        let mut c = conn(db);
        create(&mut c, "quinn", &[]);
        let success = login_ok(db, "quinn", t0());
        let stored: Vec<Vec<u8>> = sessions.select(token_hash).load(&mut *c).unwrap();
        assert_eq!(stored, vec![success.session.token.hash().0.to_vec()]);
        assert_eq!(stored[0].len(), 32, "a SHA-256, not the 43-character token");
    }

    fn duplicate_usernames_are_a_conflict(db) {
        let mut conn = conn(db);
        create(&mut conn, "judy", &[]);
        let result = accounts::create_local_account(&mut conn, &admin_context(), t0(), NewLocalAccount {
            username: Username::parse("JUDY").unwrap(),
            display_name: DisplayName::parse("Judy 2").unwrap(),
            email: None,
            roles: RoleSet::new([]),
            password: None,
        });
        assert!(matches!(result, Err(AuthError::Conflict(_))), "{result:?}");
    }

    fn first_admin_is_created_once_with_a_one_time_password(db) {
        let mut conn = conn(db);
        let created = accounts::ensure_first_admin(&mut conn, t0()).unwrap().unwrap();
        assert_eq!(created.user.username.as_str(), "admin");
        assert!(created.user.roles.contains(Role::Admin));
        assert!(created.user.must_change_password);
        let password = created.one_time_password.unwrap();
        assert_eq!(password.len(), 20);
        assert!(accounts::ensure_first_admin(&mut conn, t0()).unwrap().is_none());
        let success = login::login_local(db, &settings(), t0(), &attempt("admin", &password, "127.0.0.1")).unwrap();
        assert!(success.user.must_change_password);
    }

    fn password_change_requires_the_current_one_and_ends_other_sessions(db) {
        let mut conn = conn(db);
        create(&mut conn, "kim", &[]);
        let a = login_ok(db, "kim", t0());
        let b = login_ok(db, "kim", t0());
        let who = principal(&mut conn, &a, t0()).unwrap();
        let new = NewPassword::parse("a much longer new passphrase").unwrap();
        let wrong = accounts::change_own_password(db, &settings(), &who, &admin_context(), t0(), "wrong", &new);
        assert!(matches!(wrong, Err(AuthError::InvalidCredentials)));
        let same = NewPassword::parse(PASSWORD).unwrap();
        let unchanged = accounts::change_own_password(db, &settings(), &who, &admin_context(), t0(), PASSWORD, &same);
        assert!(matches!(unchanged, Err(AuthError::Invalid(_))));
        accounts::change_own_password(db, &settings(), &who, &admin_context(), t0(), PASSWORD, &new).unwrap();
        let who = principal(&mut conn, &a, t0()).unwrap();
        assert!(!who.user.must_change_password);
        assert!(matches!(principal(&mut conn, &b, t0()), Err(AuthError::Unauthenticated)));
        let old = login::login_local(db, &settings(), t0(), &attempt("kim", PASSWORD, "10.0.0.4"));
        assert!(matches!(old, Err(AuthError::InvalidCredentials)));
        login::login_local(db, &settings(), t0(), &attempt("kim", new.expose(), "10.0.0.4")).unwrap();
    }
}
