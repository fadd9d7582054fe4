//! LDAP login and directory sync against a real OpenLDAP (`slapd`, started per test from
//! its own config on free ports), on both database backends.

use super::{audit_actions, conn, settings, t0};
use conclave_auth::identity::config::{LdapConfig, SecretString};
use conclave_auth::identity::ldap::Directory;
use conclave_auth::identity::sync::{self, SyncGuard, SyncReport};
use conclave_auth::login::LoginAttempt;
use conclave_auth::{AuthError, sessions};
use conclave_core::{AuditContext, ManualClock, Role, UserStatus, Username};
use conclave_store::security_groups as group_store;
use conclave_store::users as user_store;
use conclave_store::{Db, identities};
use conclave_testkit::backend_tests;
use conclave_testkit::slapd::{self, ADMIN_DN, ADMIN_PASSWORD, Slapd};
use std::collections::BTreeMap;

const STAFF_GROUP: &str = "00000000-0000-7000-8000-0000000000aa";

fn config(url: &str) -> LdapConfig {
    LdapConfig {
        url: url.to_owned(),
        bind_dn: ADMIN_DN.to_owned(),
        bind_password: SecretString::new(ADMIN_PASSWORD),
        user_base_dn: format!("ou=people,{}", slapd::SUFFIX),
        role_mappings: BTreeMap::from([(
            format!("cn=conclave-admins,ou=groups,{}", slapd::SUFFIX),
            vec![Role::Admin],
        )]),
        security_group_mappings: BTreeMap::from([(
            format!("cn=staff,ou=groups,{}", slapd::SUFFIX),
            "Staff".to_owned(),
        )]),
        connect_timeout_seconds: 2,
        operation_timeout_seconds: 2,
        ..LdapConfig::default()
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn attempt<'a>(username: &'a str, password: &'a str) -> LoginAttempt<'a> {
    LoginAttempt {
        username,
        password,
        client_addr: Some("10.0.0.9"),
        user_agent: Some("tests"),
        api_path: Some("/api/v1/auth/ldap/login"),
    }
}

fn login(
    db: &Db,
    directory: &Directory,
    username: &str,
    password: &str,
) -> Result<conclave_auth::login::LoginSuccess, AuthError> {
    login_from(db, directory, username, password, "10.0.0.9")
}

fn login_from(
    db: &Db,
    directory: &Directory,
    username: &str,
    password: &str,
    addr: &str,
) -> Result<conclave_auth::login::LoginSuccess, AuthError> {
    let mut attempt = attempt(username, password);
    attempt.client_addr = Some(addr);
    rt().block_on(conclave_auth::identity::login::login_ldap(
        db,
        &settings(),
        directory,
        t0(),
        &attempt,
    ))
}

fn staff_group(db: &Db) {
    group_store::insert(&mut conn(db), STAFF_GROUP, "Staff", 10, t0()).unwrap();
}

fn run_sync(db: &Db, directory: &Directory, dry_run: bool) -> SyncReport {
    let clock = ManualClock::starting_at(t0());
    rt().block_on(sync::run(
        db,
        directory,
        &SyncGuard::default(),
        &clock,
        &AuditContext::system("test"),
        dry_run,
        None,
    ))
    .unwrap()
}

fn user(db: &Db, name: &str) -> Option<user_store::UserRecord> {
    user_store::find_by_username(&mut conn(db), &Username::parse(name).unwrap()).unwrap()
}

backend_tests! {
    fn ldap_login_provisions_maps_groups_and_survives_a_rename(db) {
        let slapd = Slapd::start();
        staff_group(db);
        let directory = Directory::new(&config(&slapd.url())).unwrap();

        let alice = login(db, &directory, "alice", "alicepw").unwrap();
        assert_eq!(alice.user.auth_source, "ldap");
        assert_eq!(alice.user.display_name, "Alice Anders");
        assert!(alice.user.roles.contains(Role::Admin), "conclave-admins grants admin");
        assert_eq!(group_store::directory_groups_of(&mut conn(db), alice.user.id).unwrap(), vec![STAFF_GROUP]);
        let principal = sessions::authenticate(&mut conn(db), &alice.session.token, &settings().sessions, t0()).unwrap();
        assert_eq!(principal.user.id, alice.user.id);

        // A rename in the directory keeps the account: it is found by entryUUID.
        slapd.modify("dn: uid=bob,ou=people,dc=example,dc=gov\nchangetype: modrdn\nnewrdn: uid=robert\ndeleteoldrdn: 1\n");
        let before = login(db, &directory, "bob", "bobpw");
        assert!(matches!(before, Err(AuthError::InvalidCredentials)), "the old name is gone");
        let robert = login(db, &directory, "robert", "bobpw").unwrap();
        let again = login(db, &directory, "robert", "bobpw").unwrap();
        assert_eq!(robert.user.id, again.user.id);
        assert_eq!(robert.user.username.as_str(), "robert");
        let ids = identities::for_user(&mut conn(db), robert.user.id).unwrap();
        assert_eq!(ids.len(), 1);
        assert!(ids[0].external_name.starts_with("uid=robert,"));

        let actions = audit_actions(&mut conn(db));
        assert!(actions.contains(&("user.provision".into(), "success".into())));
        assert!(actions.iter().filter(|(a, o)| a == "auth.login" && o == "success").count() >= 3);
    }

    fn wrong_empty_and_injected_credentials_are_refused(db) {
        let slapd = Slapd::start();
        let directory = Directory::new(&config(&slapd.url())).unwrap();
        for (i, (name, password)) in [
            ("alice", "wrong"),
            ("alice", ""),                // an unauthenticated bind must not count
            ("*)(uid=*", "alicepw"),      // must not widen the search to every entry
            ("*", "alicepw"),
            ("alice)(|(uid=*", "alicepw"),
            ("ali\\2ace", "alicepw"),
            ("nobody", "x"),
            ("al\u{e9}ce", "alicepw"),
        ]
        .into_iter()
        .enumerate()
        {
            // One address each: this is about the filter, not the throttle.
            let result = login_from(db, &directory, name, password, &format!("10.0.1.{i}"));
            assert!(matches!(result, Err(AuthError::InvalidCredentials)), "{name:?}: {result:?}");
        }
        assert!(user(db, "alice").is_none(), "nothing was provisioned");
        let failures = audit_actions(&mut conn(db)).iter().filter(|(a, o)| a == "auth.login" && o == "failure").count();
        assert_eq!(failures, 8);
    }

    fn an_unreachable_or_silent_directory_is_unavailable_not_a_hang(db) {
        // Nothing listens on this port.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let directory = Directory::new(&config(&format!("ldap://127.0.0.1:{port}"))).unwrap();
        let err = login(db, &directory, "alice", "alicepw").unwrap_err();
        assert!(matches!(err, AuthError::DirectoryUnavailable(_)), "{err:?}");
        assert!(err.to_string().contains("connection refused"), "{err}");

        // A server that accepts and never answers: the operation timeout ends it.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("ldap://127.0.0.1:{}", silent.local_addr().unwrap().port());
        let holder = std::thread::spawn(move || {
            let held: Vec<_> = silent.incoming().take(1).collect();
            std::thread::sleep(std::time::Duration::from_secs(4));
            drop(held);
        });
        let mut cfg = config(&url);
        cfg.operation_timeout_seconds = 1;
        cfg.connect_timeout_seconds = 1;
        let directory = Directory::new(&cfg).unwrap();
        let err = login(db, &directory, "alice", "alicepw").unwrap_err();
        assert!(matches!(err, AuthError::DirectoryUnavailable(_)), "{err:?}");
        holder.join().unwrap();

        // A directory outage is not a failed attempt of the person.
        let mut conn = conn(db);
        let counted = conclave_store::login_failures::count_since(&mut conn, "account:alice", t0().minus(std::time::Duration::from_secs(3600))).unwrap();
        assert_eq!(counted, 0);
    }

    fn ldaps_and_starttls_trust_the_configured_ca(db) {
        let slapd = Slapd::start();
        let mut ldaps = config(&slapd.ldaps_url());
        ldaps.ca_file = Some(slapd.ca_file());
        assert!(login(db, &Directory::new(&ldaps).unwrap(), "alice", "alicepw").is_ok());

        let mut starttls = config(&slapd.url());
        starttls.starttls = true;
        starttls.ca_file = Some(slapd.ca_file());
        assert!(login(db, &Directory::new(&starttls).unwrap(), "bob", "bobpw").is_ok());

        // Without the CA the certificate is not trusted: unavailable, clearly.
        let untrusted = config(&slapd.ldaps_url());
        let err = login(db, &Directory::new(&untrusted).unwrap(), "alice", "alicepw").unwrap_err();
        assert!(matches!(err, AuthError::DirectoryUnavailable(_)), "{err:?}");
    }

    fn sync_creates_deprovisions_and_a_dry_run_changes_nothing(db) {
        let slapd = Slapd::start();
        staff_group(db);
        let directory = Directory::new(&config(&slapd.url())).unwrap();
        // An admin's manual membership the directory must never touch.
        let carol_local = conclave_testkit::fixtures::user(&mut conn(db), "zed", t0());
        group_store::add_member(&mut conn(db), STAFF_GROUP, carol_local, "manual", t0()).unwrap();

        let dry = run_sync(db, &directory, true);
        assert_eq!((dry.entries, dry.created, dry.dry_run), (3, 3, true));
        assert!(user(db, "alice").is_none(), "a dry run creates nothing");
        assert_eq!(user_store::count(&mut conn(db)).unwrap(), 1);

        let real = run_sync(db, &directory, false);
        assert_eq!((real.created, real.roles_changed, real.security_group_changes), (3, 0, 2), "{real:?}");
        let alice = user(db, "alice").unwrap();
        assert!(alice.roles.contains(Role::Admin));
        let again = run_sync(db, &directory, false);
        assert_eq!((again.unchanged, again.created, again.deprovisioned), (3, 0, 0));

        // Bob leaves the directory while logged in.
        let bob = login(db, &directory, "bob", "bobpw").unwrap();
        slapd.delete("uid=bob,ou=people,dc=example,dc=gov");
        let dry = run_sync(db, &directory, true);
        assert_eq!(dry.deprovisioned, 1);
        assert_eq!(user(db, "bob").unwrap().status, UserStatus::Active, "a dry run deprovisions nothing");
        assert!(sessions::authenticate(&mut conn(db), &bob.session.token, &settings().sessions, t0()).is_ok());

        let real = run_sync(db, &directory, false);
        assert_eq!(real.deprovisioned, 1);
        assert_eq!(user(db, "bob").unwrap().status, UserStatus::Deprovisioned);
        assert!(sessions::authenticate(&mut conn(db), &bob.session.token, &settings().sessions, t0()).is_err(), "the session ended");
        // Bob leaves staff in the directory too; the manual member stays.
        let members = group_store::members(&mut conn(db), STAFF_GROUP).unwrap();
        assert!(members.contains(&carol_local.to_string()));

        // Carol joins conclave-admins, then alice leaves it: the mapped role follows.
        slapd.modify("dn: cn=conclave-admins,ou=groups,dc=example,dc=gov\nchangetype: modify\nadd: member\nmember: uid=carol,ou=people,dc=example,dc=gov\n");
        assert_eq!(run_sync(db, &directory, false).roles_changed, 1);
        assert!(user(db, "carol").unwrap().roles.contains(Role::Admin));
        slapd.modify("dn: cn=conclave-admins,ou=groups,dc=example,dc=gov\nchangetype: modify\ndelete: member\nmember: uid=alice,ou=people,dc=example,dc=gov\n");
        assert_eq!(run_sync(db, &directory, false).roles_changed, 1);
        assert!(!user(db, "alice").unwrap().roles.contains(Role::Admin));
        // Carol leaving too would leave no admin: the last active admin keeps the role.
        slapd.modify("dn: cn=conclave-admins,ou=groups,dc=example,dc=gov\nchangetype: modify\nadd: member\nmember: uid=bob,ou=people,dc=example,dc=gov\n-\ndelete: member\nmember: uid=carol,ou=people,dc=example,dc=gov\n");
        let report = run_sync(db, &directory, false);
        assert_eq!(report.roles_changed, 0);
        assert!(report.problems.iter().any(|p| p.contains("last active admin")), "{report:?}");
        assert!(user(db, "carol").unwrap().roles.contains(Role::Admin));

        let actions = audit_actions(&mut conn(db));
        assert_eq!(actions.iter().filter(|(a, _)| a == "directory.sync").count(), 8, "every run, dry ones too");
        assert!(actions.contains(&("user.deprovision".into(), "success".into())));
        assert!(actions.contains(&("user.roles_change".into(), "success".into())));
    }

    fn an_entry_that_cannot_be_applied_is_reported_not_deprovisioned(db) {
        let slapd = Slapd::start();
        let directory = Directory::new(&config(&slapd.url())).unwrap();
        assert_eq!(run_sync(db, &directory, false).created, 3);
        let carol = login(db, &directory, "carol", "carolpw").unwrap();
        // Renamed in the directory to a name Conclave refuses as a username.
        slapd.modify("dn: uid=carol,ou=people,dc=example,dc=gov\nchangetype: modrdn\nnewrdn: uid=o'brien\ndeleteoldrdn: 1\n");
        let report = run_sync(db, &directory, false);
        assert_eq!((report.skipped, report.deprovisioned), (1, 0), "{report:?}");
        assert!(report.problems.iter().any(|p| p.contains("o'brien")), "{report:?}");
        assert_eq!(user(db, "carol").unwrap().status, UserStatus::Active);
        assert!(sessions::authenticate(&mut conn(db), &carol.session.token, &settings().sessions, t0()).is_ok());
    }

    fn an_empty_result_never_deprovisions_everyone(db) {
        let slapd = Slapd::start();
        let directory = Directory::new(&config(&slapd.url())).unwrap();
        assert_eq!(run_sync(db, &directory, false).created, 3);
        let mut wrong = config(&slapd.url());
        wrong.user_filter = "(objectClass=groupOfUniqueNames)".into();
        let report = run_sync(db, &Directory::new(&wrong).unwrap(), false);
        assert_eq!(report.deprovisioned, 0);
        assert!(report.deprovisioning_skipped.is_some());
        assert_eq!(user(db, "alice").unwrap().status, UserStatus::Active);
    }

    fn a_paged_sync_reads_thousands_of_entries_a_page_at_a_time(db) {
        let slapd = Slapd::start();
        slapd.add(&slapd::generated_users(2000));
        let mut cfg = config(&slapd.url());
        cfg.page_size = 100;
        cfg.security_group_mappings.clear();
        let report = run_sync(db, &Directory::new(&cfg).unwrap(), false);
        assert_eq!(report.entries, 2003);
        assert_eq!(report.created, 2003);
        assert!(report.pages >= 20, "{} pages", report.pages);
        assert_eq!(user_store::count(&mut conn(db)).unwrap(), 2003);
    }

    fn one_sync_at_a_time_and_the_lock_is_released(db) {
        let slapd = Slapd::start();
        let directory = Directory::new(&config(&slapd.url())).unwrap();
        if db.backend().name() == "postgres" {
            // Another node holds the election lock: this run stands aside.
            let mut other = conn(db);
            assert!(conclave_store::org_settings::try_lock_singleton(&mut other, 7_423_001).unwrap());
            let clock = ManualClock::starting_at(t0());
            let busy = rt().block_on(sync::run(db, &directory, &SyncGuard::default(), &clock, &AuditContext::system("test"), false, None));
            assert!(matches!(busy, Err(AuthError::SyncRunning)), "{busy:?}");
            conclave_store::org_settings::unlock_singleton(&mut other, 7_423_001).unwrap();
        }
        // Runs release the lock, also after a failure: the next one proceeds.
        let mut broken = config(&slapd.url());
        broken.bind_password = SecretString::new("wrong");
        let clock = ManualClock::starting_at(t0());
        let failed = rt().block_on(sync::run(db, &Directory::new(&broken).unwrap(), &SyncGuard::default(), &clock, &AuditContext::system("test"), false, None));
        assert!(matches!(failed, Err(AuthError::DirectoryUnavailable(_))), "{failed:?}");
        assert_eq!(run_sync(db, &directory, false).created, 3);
        assert_eq!(run_sync(db, &directory, false).unchanged, 3);
        let actions = audit_actions(&mut conn(db));
        assert!(actions.contains(&("directory.sync".into(), "failure".into())), "a failed run is audited too");
    }
}
