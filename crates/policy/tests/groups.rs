//! Security groups on both backends: precedence, the default group, deletion rules,
//! group policy in the effective policy, barriers, and the audit trail.

use conclave_core::{
    AuditContext, DisplayName, Policy, PolicyOverrides, RoleSet, TimerSeconds, Timestamp, UserId,
    Username,
};
use conclave_policy::groups;
use conclave_policy::{PolicyServiceError, effective};
use conclave_store::DbConnection;
use conclave_testkit::backend_tests;
use std::collections::BTreeSet;

fn t0() -> Timestamp {
    Timestamp::from_micros(1_800_000_000_000_000)
}

fn ctx() -> AuditContext {
    AuditContext::system("test")
}

fn user(conn: &mut DbConnection, name: &str) -> UserId {
    conclave_testkit::fixtures::user(conn, name, t0())
}

fn max_ttl(seconds: u64) -> PolicyOverrides {
    PolicyOverrides {
        expiration_max: Some(TimerSeconds::new(seconds).unwrap()),
        ..Default::default()
    }
}

backend_tests! {
    fn the_lowest_precedence_governs_and_the_default_catches_the_rest(db) {
        let mut conn = db.conn().unwrap();
        let (ann, ben) = (user(&mut conn, "ann"), user(&mut conn, "ben"));
        let legal = groups::create(&mut conn, &ctx(), t0(), "Legal", 10).unwrap();
        let staff = groups::create(&mut conn, &ctx(), t0(), "Staff", 100).unwrap();
        groups::set_overrides(&mut conn, &ctx(), t0(), &legal.id, max_ttl(600)).unwrap();
        groups::set_overrides(&mut conn, &ctx(), t0(), &staff.id, max_ttl(3_600)).unwrap();
        // Ben is in no group: the default group (no overrides) governs him.
        assert_eq!(effective(&mut conn, ben, None).unwrap().expiration_max, None);
        groups::add_member(&mut conn, &ctx(), t0(), &staff.id, ann, "manual").unwrap();
        assert_eq!(effective(&mut conn, ann, None).unwrap().expiration_max, Some(TimerSeconds::new(3_600).unwrap()));
        groups::add_member(&mut conn, &ctx(), t0(), &legal.id, ann, "manual").unwrap();
        assert_eq!(effective(&mut conn, ann, None).unwrap().expiration_max, Some(TimerSeconds::new(600).unwrap()), "precedence 10 beats 100");
        groups::update(&mut conn, &ctx(), t0(), &staff.id, None, Some(1)).unwrap();
        assert_eq!(effective(&mut conn, ann, None).unwrap().expiration_max, Some(TimerSeconds::new(3_600).unwrap()), "now Staff comes first");
        let listed: Vec<String> = groups::list(&mut conn).unwrap().into_iter().map(|g| g.name).collect();
        assert_eq!(listed, ["Staff", "Legal", "Default"]);
    }

    fn groups_are_deleted_only_when_empty_and_never_the_default(db) {
        let mut conn = db.conn().unwrap();
        let ann = user(&mut conn, "ann");
        let temp = groups::create(&mut conn, &ctx(), t0(), "Temp", 5).unwrap();
        assert!(matches!(groups::create(&mut conn, &ctx(), t0(), "Temp", 6), Err(PolicyServiceError::Conflict(_))));
        groups::add_member(&mut conn, &ctx(), t0(), &temp.id, ann, "manual").unwrap();
        assert!(matches!(groups::delete(&mut conn, &ctx(), t0(), &temp.id), Err(PolicyServiceError::Conflict(_))));
        groups::remove_member(&mut conn, &ctx(), t0(), &temp.id, ann).unwrap();
        groups::delete(&mut conn, &ctx(), t0(), &temp.id).unwrap();
        assert!(matches!(groups::detail(&mut conn, &temp.id), Err(PolicyServiceError::NotFound)));
        let default = groups::default_group_id();
        assert!(matches!(groups::delete(&mut conn, &ctx(), t0(), default), Err(PolicyServiceError::Conflict(_))));
        let invalid = |result: Result<(), PolicyServiceError>| matches!(result, Err(PolicyServiceError::Policy(conclave_core::PolicyError::Invalid(_))));
        assert!(invalid(groups::add_member(&mut conn, &ctx(), t0(), default, ann, "manual")));
        assert!(invalid(groups::update(&mut conn, &ctx(), t0(), default, None, Some(1)).map(drop)));
        assert!(invalid(groups::create(&mut conn, &ctx(), t0(), "", 1).map(drop)));
        assert!(invalid(groups::create(&mut conn, &ctx(), t0(), "X", -1).map(drop)));
        assert!(matches!(groups::remove_member(&mut conn, &ctx(), t0(), default, ann), Err(PolicyServiceError::NotFound)));
        // Rooms cannot carry barriers; the org policy's must name real groups.
        let room_barrier = PolicyOverrides { barriers: BTreeSet::from([default.to_owned()]), ..Default::default() };
        assert!(conclave_policy::set_room_overrides(&mut conn, &ctx(), t0(), conclave_core::RoomId::new(), room_barrier).is_err());
        let org_barrier = Policy { barriers: BTreeSet::from(["nope".to_owned()]), ..Policy::default() };
        assert!(conclave_policy::set_org_policy(&mut conn, &ctx(), t0(), org_barrier).is_err());
    }

    fn barriers_are_symmetric_and_name_the_groups(db) {
        let mut conn = db.conn().unwrap();
        let (trader, analyst, clerk) = (user(&mut conn, "trader"), user(&mut conn, "analyst"), user(&mut conn, "clerk"));
        let trading = groups::create(&mut conn, &ctx(), t0(), "Trading", 10).unwrap();
        let research = groups::create(&mut conn, &ctx(), t0(), "Research", 20).unwrap();
        groups::add_member(&mut conn, &ctx(), t0(), &trading.id, trader, "manual").unwrap();
        groups::add_member(&mut conn, &ctx(), t0(), &research.id, analyst, "manual").unwrap();
        let org = Policy::default();
        assert_eq!(groups::barrier_among(&mut conn, &org, &[trader, analyst]).unwrap(), None);
        // Only Trading names Research; the barrier holds both ways.
        let barred = PolicyOverrides { barriers: BTreeSet::from([research.id.clone()]), ..Default::default() };
        groups::set_overrides(&mut conn, &ctx(), t0(), &trading.id, barred).unwrap();
        let reason = groups::barrier_among(&mut conn, &org, &[analyst, trader]).unwrap().unwrap();
        assert!(reason.contains("Trading") && reason.contains("Research"), "{reason}");
        assert_eq!(groups::barrier_among(&mut conn, &org, &[trader, clerk]).unwrap(), None);
        assert!(groups::barrier_among(&mut conn, &org, &[clerk, trader, analyst]).unwrap().is_some());
        // Joining a higher-precedence group does not step around a barrier.
        let all_hands = groups::create(&mut conn, &ctx(), t0(), "All-hands", 1).unwrap();
        groups::add_member(&mut conn, &ctx(), t0(), &all_hands.id, analyst, "manual").unwrap();
        groups::add_member(&mut conn, &ctx(), t0(), &all_hands.id, trader, "manual").unwrap();
        assert!(groups::barrier_among(&mut conn, &org, &[trader, analyst]).unwrap().is_some());
        // Unknown or self-referencing barriers are refused.
        let unknown = PolicyOverrides { barriers: BTreeSet::from(["no-such-group".to_owned()]), ..Default::default() };
        assert!(groups::set_overrides(&mut conn, &ctx(), t0(), &trading.id, unknown).is_err());
        let itself = PolicyOverrides { barriers: BTreeSet::from([trading.id.clone()]), ..Default::default() };
        assert!(groups::set_overrides(&mut conn, &ctx(), t0(), &trading.id, itself).is_err());
    }

    fn a_send_decides_exactly_as_the_effective_policy_and_the_barrier_check(db) {
        // `for_send` reads everything at once; it must agree with `effective` and
        // `barrier_among` for every sender, through precedence, room and barrier changes.
        let mut conn = db.conn().unwrap();
        let (trader, analyst, clerk) = (user(&mut conn, "trader"), user(&mut conn, "analyst"), user(&mut conn, "clerk"));
        let members = [trader, analyst, clerk];
        let room = conclave_core::RoomId::new();
        let check = |conn: &mut DbConnection, label: &str| {
            let org = conclave_policy::org_policy(conn).unwrap();
            let barrier = groups::barrier_among(conn, &org, &members).unwrap();
            for sender in members {
                let decided = conclave_policy::for_send(conn, sender, room, &members).unwrap();
                assert_eq!(decided.policy, effective(conn, sender, Some(room)).unwrap(), "{label}: policy of {sender}");
                assert_eq!(decided.read_only_reason, barrier, "{label}: barrier");
            }
        };
        check(&mut conn, "defaults");
        let org = Policy { expiration_max: Some(TimerSeconds::new(86_400).unwrap()), ..Policy::default() };
        conclave_policy::set_org_policy(&mut conn, &ctx(), t0(), org).unwrap();
        let trading = groups::create(&mut conn, &ctx(), t0(), "Trading", 10).unwrap();
        let research = groups::create(&mut conn, &ctx(), t0(), "Research", 20).unwrap();
        groups::set_overrides(&mut conn, &ctx(), t0(), &trading.id, max_ttl(600)).unwrap();
        groups::set_overrides(&mut conn, &ctx(), t0(), &research.id, max_ttl(3_600)).unwrap();
        groups::add_member(&mut conn, &ctx(), t0(), &trading.id, trader, "manual").unwrap();
        groups::add_member(&mut conn, &ctx(), t0(), &research.id, analyst, "manual").unwrap();
        groups::add_member(&mut conn, &ctx(), t0(), &research.id, trader, "manual").unwrap();
        check(&mut conn, "groups");
        groups::update(&mut conn, &ctx(), t0(), &research.id, None, Some(1)).unwrap();
        conclave_policy::set_room_overrides(&mut conn, &ctx(), t0(), room, max_ttl(300)).unwrap();
        check(&mut conn, "precedence and room");
        let barred = PolicyOverrides { barriers: BTreeSet::from([trading.id.clone()]), ..max_ttl(3_600) };
        groups::set_overrides(&mut conn, &ctx(), t0(), &research.id, barred).unwrap();
        check(&mut conn, "a barrier");
        let decided = conclave_policy::for_send(&mut conn, clerk, room, &[clerk, analyst]).unwrap();
        assert_eq!(decided.read_only_reason, None, "the clerk is in no barred group");
    }

    fn group_changes_are_audited_with_before_and_after(db) {
        let mut conn = db.conn().unwrap();
        let ann = user(&mut conn, "ann");
        let group = groups::create(&mut conn, &ctx(), t0(), "Ops", 10).unwrap();
        groups::set_overrides(&mut conn, &ctx(), t0(), &group.id, max_ttl(600)).unwrap();
        groups::add_member(&mut conn, &ctx(), t0(), &group.id, ann, "manual").unwrap();
        let events = conclave_store::audit::list_after(&mut conn, 0, 100).unwrap();
        let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["security_group.create", "security_group.policy_change", "security_group.member_add"]);
        let change: serde_json::Value = serde_json::from_str(&events[1].details).unwrap();
        assert_eq!(change["before"]["expiration_max"], serde_json::Value::Null);
        assert_eq!(change["after"]["expiration_max"], 600);
        let added: serde_json::Value = serde_json::from_str(&events[2].details).unwrap();
        assert_eq!(added["before"]["governing_group"], groups::default_group_id());
        assert_eq!(added["after"]["governing_group"], group.id.as_str());
    }
}

mod account_limits {
    use super::*;
    use conclave_auth::login::{self, LoginAttempt};
    use conclave_auth::{AuthError, AuthSettings, accounts, sessions};
    use conclave_core::{LoginThrottle, NewPassword, SessionPolicy};
    use std::sync::Arc;
    use std::time::Duration;

    fn settings() -> AuthSettings {
        AuthSettings {
            sessions: SessionPolicy {
                absolute_lifetime: Duration::from_secs(12 * 3600),
                idle_timeout: Duration::from_secs(3600),
            },
            throttle: LoginThrottle {
                max_failures_per_account: 5,
                max_failures_per_address: 100,
                window: Duration::from_secs(900),
            },
            secure_cookies: true,
            account_policy: Some(Arc::new(conclave_policy::AccountLimitsFromPolicy)),
            login_rate: conclave_auth::LoginRate::unlimited(),
        }
    }

    fn attempt<'a>(password: &'a str) -> LoginAttempt<'a> {
        LoginAttempt {
            username: "guard",
            password,
            client_addr: Some("10.0.0.9"),
            user_agent: None,
            api_path: None,
        }
    }

    backend_tests! {
        fn the_governing_group_shortens_sessions_and_lockouts(db) {
            let mut conn = db.conn().unwrap();
            let password = "a sufficiently long password";
            let created = accounts::create_local_account(&mut conn, &ctx(), t0(), accounts::NewLocalAccount {
                username: Username::parse("guard").unwrap(),
                display_name: DisplayName::parse("Guard").unwrap(),
                email: None,
                roles: RoleSet::new([]),
                password: Some(NewPassword::parse(password).unwrap()),
            }).unwrap();
            let strict = groups::create(&mut conn, &ctx(), t0(), "Strict", 1).unwrap();
            let limits = PolicyOverrides { session_idle_minutes: Some(1), lockout_threshold: Some(2), ..Default::default() };
            groups::set_overrides(&mut conn, &ctx(), t0(), &strict.id, limits).unwrap();
            groups::add_member(&mut conn, &ctx(), t0(), &strict.id, created.user.id, "manual").unwrap();
            drop(conn);

            let s = settings();
            let ok = login::login_local(db, &s, t0(), &attempt(password)).unwrap();
            let mut conn = db.conn().unwrap();
            let at = |seconds: u64| t0().plus(Duration::from_secs(seconds));
            sessions::authenticate(&mut conn, &ok.session.token, &s.sessions, at(59)).unwrap();
            assert!(matches!(
                sessions::authenticate(&mut conn, &ok.session.token, &s.sessions, at(59 + 61)),
                Err(AuthError::Unauthenticated)
            ), "the group's 1-minute idle timeout, not the configured hour");
            drop(conn);
            for _ in 0..2 {
                assert!(matches!(login::login_local(db, &s, at(200), &attempt("wrong")), Err(AuthError::InvalidCredentials)));
            }
            assert!(matches!(login::login_local(db, &s, at(200), &attempt(password)), Err(AuthError::Throttled { .. })), "locked out after the group's 2, not the configured 5");
        }
    }
}
