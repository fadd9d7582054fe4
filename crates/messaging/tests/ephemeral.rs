//! Ephemeral messaging on both backends, with time moved rather than waited for:
//! expiration timers and the policy's limits, burn-on-read per recipient, the read-path
//! guarantee, the timer worker's announcements, and policy enforcement.

use conclave_core::{
    AuditContext, IdempotencyKey, MessageText, Policy, PolicyOverrides, RoomName, TimerSeconds,
    Timestamp, Topic, UserId,
};
use conclave_crypto::Keyring;
use conclave_messaging::expiry::announce_due;
use conclave_messaging::messages::{self, NewMessageInput};
use conclave_messaging::{MessagingError, rooms};
use conclave_store::DbConnection;
use conclave_store::messages::Page;
use conclave_testkit::backend_tests;
use std::time::Duration;

fn t0() -> Timestamp {
    Timestamp::from_micros(1_800_000_000_000_000)
}

fn at(seconds: u64) -> Timestamp {
    t0().plus(Duration::from_secs(seconds))
}

fn user(conn: &mut DbConnection, name: &str) -> UserId {
    conclave_testkit::fixtures::user(conn, name, t0())
}

fn message(text: &str, key: &str, expires: Option<u64>, burn: Option<u64>) -> NewMessageInput {
    NewMessageInput {
        text: MessageText::parse(text, 1024).unwrap(),
        idempotency_key: IdempotencyKey::parse(key).unwrap(),
        reply_to_id: None,
        attachment_id: None,
        expires_in: expires.map(Duration::from_secs),
        burn_after_read: burn.map(Duration::from_secs),
    }
}

fn set_org(conn: &mut DbConnection, policy: Policy) {
    conclave_policy::set_org_policy(conn, &AuditContext::system("test"), t0(), policy).unwrap();
}

fn timer(seconds: u64) -> Option<TimerSeconds> {
    Some(TimerSeconds::new(seconds).unwrap())
}

backend_tests! {
    fn expired_messages_vanish_from_every_read_path(db) {
        let keyring = Keyring::generate().unwrap();
        let mut conn = db.conn().unwrap();
        set_org(&mut conn, Policy { expiration_max: timer(86_400), expiration_default: timer(3_600), ..Policy::default() });
        let (alice, bob) = (user(&mut conn, "alice"), user(&mut conn, "bob"));
        let (room, _) = rooms::create_room(&mut conn, t0(), alice, RoomName::parse("R").unwrap(), Topic::parse("").unwrap(), vec![bob], 500).unwrap();
        let room = room.room.id;
        let sent = messages::send(&mut conn, &keyring, t0(), alice, room, message("soon gone", "k1", None, None)).unwrap().message;
        assert_eq!(sent.visible_until, Some(at(3_600)), "a send without a timer gets the default");
        let kept = messages::send(&mut conn, &keyring, t0(), alice, room, message("short", "k2", Some(120), None)).unwrap().message;
        assert_eq!(kept.visible_until, Some(at(120)));

        assert_eq!(messages::list(&mut conn, &keyring, at(119), bob, room, Page::After(0), 10).unwrap().len(), 2);
        let later = at(120);
        let listed = messages::list(&mut conn, &keyring, later, bob, room, Page::After(0), 10).unwrap();
        assert_eq!(listed.iter().map(|m| m.id).collect::<Vec<_>>(), vec![sent.id], "exactly at the deadline it is gone");
        assert!(matches!(messages::get(&mut conn, &keyring, later, bob, room, kept.id), Err(MessagingError::NotFound)));
        assert!(matches!(messages::react(&mut conn, later, bob, room, kept.id, conclave_core::Emoji::parse("x").unwrap(), true), Err(MessagingError::NotFound)));
        assert!(matches!(messages::edit(&mut conn, &keyring, later, alice, room, kept.id, MessageText::parse("y", 10).unwrap()), Err(MessagingError::NotFound)));
        assert!(matches!(messages::delete(&mut conn, later, alice, room, kept.id), Err(MessagingError::NotFound)));
        // Realtime replay shows that it expired, and nothing of it.
        let replay = conclave_messaging::realtime::render::render_after(&mut conn, &keyring, room, 0, 100, bob, later).unwrap();
        let created: Vec<serde_json::Value> = replay.iter().map(|d| serde_json::from_str(&d.json).unwrap()).filter(|e: &serde_json::Value| e["data"]["message"]["id"] == kept.id.to_string()).collect();
        assert!(!created.is_empty());
        for event in created {
            assert_eq!(event["data"]["message"]["expired"], true);
            assert!(!event.to_string().contains("short"));
        }
    }

    fn timers_over_the_maximum_are_refused_naming_the_limit(db) {
        let keyring = Keyring::generate().unwrap();
        let mut conn = db.conn().unwrap();
        set_org(&mut conn, Policy { expiration_max: timer(3_600), burn_on_read_max: timer(600), ..Policy::default() });
        let alice = user(&mut conn, "alice");
        let (room, _) = rooms::create_room(&mut conn, t0(), alice, RoomName::parse("R").unwrap(), Topic::parse("").unwrap(), vec![], 500).unwrap();
        let room = room.room.id;
        match messages::send(&mut conn, &keyring, t0(), alice, room, message("x", "k1", Some(3_601), None)) {
            Err(MessagingError::PolicyViolation(m)) => assert!(m.contains("3600") && m.contains("expiration_max"), "{m}"),
            other => panic!("{:?}", other.map(|s| s.message.id)),
        }
        assert!(matches!(messages::send(&mut conn, &keyring, t0(), alice, room, message("x", "k2", None, Some(601))), Err(MessagingError::PolicyViolation(_))));
        // A room may tighten further; messages sent after the change get it.
        let room_limit = PolicyOverrides { expiration_max: timer(600), ..Default::default() };
        rooms::set_policy(&mut conn, &AuditContext::system("test"), t0(), alice, room, room_limit).unwrap();
        assert!(matches!(messages::send(&mut conn, &keyring, t0(), alice, room, message("x", "k3", Some(601), None)), Err(MessagingError::PolicyViolation(_))));
        let ok = messages::send(&mut conn, &keyring, t0(), alice, room, message("x", "k4", None, None)).unwrap();
        assert_eq!(ok.message.visible_until, Some(at(600)), "no default: the room's maximum applies");
        assert_eq!(ok.message.seq, 1, "refused sends stored nothing");
        // ...and it cannot loosen: a room override above the org maximum has no effect.
        let looser = PolicyOverrides { expiration_max: timer(86_400), ..Default::default() };
        let policy = rooms::set_policy(&mut conn, &AuditContext::system("test"), t0(), alice, room, looser).unwrap();
        assert_eq!(policy.effective.expiration_max, timer(3_600));
    }

    fn burn_on_read_runs_per_recipient(db) {
        let keyring = Keyring::generate().unwrap();
        let mut conn = db.conn().unwrap();
        let (alice, bob, carol) = (user(&mut conn, "alice"), user(&mut conn, "bob"), user(&mut conn, "carol"));
        let (room, _) = rooms::create_room(&mut conn, t0(), alice, RoomName::parse("R").unwrap(), Topic::parse("").unwrap(), vec![bob, carol], 500).unwrap();
        let room = room.room.id;
        let id = messages::send(&mut conn, &keyring, t0(), alice, room, message("read once", "k", None, Some(60))).unwrap().message.id;
        // Bob reads it at 10 s: his copy burns at 70 s. Carol has not read it.
        let bobs = messages::get(&mut conn, &keyring, at(10), bob, room, id).unwrap();
        assert_eq!(bobs.text.as_deref(), Some("read once"));
        assert_eq!(bobs.visible_to_me_until, Some(at(70)));
        assert!(matches!(messages::get(&mut conn, &keyring, at(70), bob, room, id), Err(MessagingError::NotFound)));
        assert!(messages::list(&mut conn, &keyring, at(70), bob, room, Page::After(0), 10).unwrap().is_empty());
        // The sender still sees it while a recipient has not burned it.
        assert!(messages::get(&mut conn, &keyring, at(100), alice, room, id).is_ok());
        // Carol reads it much later (listing counts), and it burns for her 60 s after that.
        let carols = messages::list(&mut conn, &keyring, at(500), carol, room, Page::After(0), 10).unwrap();
        assert_eq!(carols[0].visible_to_me_until, Some(at(560)));
        assert!(messages::get(&mut conn, &keyring, at(559), carol, room, id).is_ok());
        assert!(matches!(messages::get(&mut conn, &keyring, at(560), carol, room, id), Err(MessagingError::NotFound)));
        // Every recipient's deadline passed: gone for the sender too.
        assert!(matches!(messages::get(&mut conn, &keyring, at(560), alice, room, id), Err(MessagingError::NotFound)));
        // The worker announces each deadline once: Bob's, Carol's, and then the sender's.
        let first = announce_due(&mut conn, at(100)).unwrap();
        assert_eq!(first.len(), 1, "Bob's");
        let second = announce_due(&mut conn, at(600)).unwrap();
        assert_eq!(second.len(), 2, "Carol's, and so the sender's");
        assert!(announce_due(&mut conn, at(700)).unwrap().is_empty(), "never twice");
    }

    fn pages_stay_full_when_burned_messages_drop_out(db) {
        let keyring = Keyring::generate().unwrap();
        let mut conn = db.conn().unwrap();
        let (alice, bob) = (user(&mut conn, "alice"), user(&mut conn, "bob"));
        let (room, _) = rooms::create_room(&mut conn, t0(), alice, RoomName::parse("R").unwrap(), Topic::parse("").unwrap(), vec![bob], 500).unwrap();
        let room = room.room.id;
        for (i, burn) in [None, None, Some(60), Some(60), Some(60)].into_iter().enumerate() {
            let sent = messages::send(&mut conn, &keyring, t0(), alice, room, message("m", &format!("k{i}"), None, burn)).unwrap().message;
            messages::get(&mut conn, &keyring, t0(), bob, room, sent.id).unwrap();
        }
        let later = at(61);
        let newest = messages::list(&mut conn, &keyring, later, bob, room, Page::Before(None), 2).unwrap();
        assert_eq!(newest.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2], "filled past the three burned ones");
        let oldest = messages::list(&mut conn, &keyring, later, bob, room, Page::After(0), 3).unwrap();
        assert_eq!(oldest.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2]);
    }

    fn leaving_burns_what_was_left_unread(db) {
        let keyring = Keyring::generate().unwrap();
        let mut conn = db.conn().unwrap();
        let (alice, bob) = (user(&mut conn, "alice"), user(&mut conn, "bob"));
        let (room, _) = rooms::create_room(&mut conn, t0(), alice, RoomName::parse("R").unwrap(), Topic::parse("").unwrap(), vec![bob], 500).unwrap();
        let room = room.room.id;
        let id = messages::send(&mut conn, &keyring, t0(), alice, room, message("unread", "k", None, Some(60))).unwrap().message.id;
        assert!(messages::get(&mut conn, &keyring, at(10), alice, room, id).is_ok());
        rooms::leave(&mut conn, at(20), bob, room).unwrap();
        assert!(matches!(messages::get(&mut conn, &keyring, at(20), alice, room, id), Err(MessagingError::NotFound)), "its only recipient is gone: so is the sender's copy");
    }

    fn a_read_receipt_starts_the_burn(db) {
        let keyring = Keyring::generate().unwrap();
        let mut conn = db.conn().unwrap();
        let (alice, bob) = (user(&mut conn, "alice"), user(&mut conn, "bob"));
        let (room, _) = rooms::create_room(&mut conn, t0(), alice, RoomName::parse("R").unwrap(), Topic::parse("").unwrap(), vec![bob], 500).unwrap();
        let room = room.room.id;
        let sent = messages::send(&mut conn, &keyring, t0(), alice, room, message("x", "k", None, Some(60))).unwrap().message;
        assert!(sent.text.is_some(), "the sender's own view shows the text");
        messages::mark_read(&mut conn, at(5), bob, room, sent.seq).unwrap();
        assert!(matches!(messages::get(&mut conn, &keyring, at(65), bob, room, sent.id), Err(MessagingError::NotFound)));
    }

    fn expirations_are_announced_once_and_past_deadlines_found_after_a_restart(db) {
        let keyring = Keyring::generate().unwrap();
        let mut conn = db.conn().unwrap();
        let alice = user(&mut conn, "alice");
        let (room, _) = rooms::create_room(&mut conn, t0(), alice, RoomName::parse("R").unwrap(), Topic::parse("").unwrap(), vec![], 500).unwrap();
        let room = room.room.id;
        for (i, seconds) in [30u64, 60, 90].into_iter().enumerate() {
            messages::send(&mut conn, &keyring, t0(), alice, room, message("x", &format!("k{i}"), Some(seconds), None)).unwrap();
        }
        assert!(announce_due(&mut conn, at(29)).unwrap().is_empty());
        assert_eq!(announce_due(&mut conn, at(60)).unwrap().len(), 2);
        // A worker started later (after a restart) finds what is due from the database.
        assert_eq!(announce_due(&mut conn, at(1_000)).unwrap().len(), 1);
        assert!(announce_due(&mut conn, at(2_000)).unwrap().is_empty());
    }

    fn policy_refuses_files_rooms_and_growth(db) {
        let keyring = Keyring::generate().unwrap();
        let mut conn = db.conn().unwrap();
        let (alice, bob, carol) = (user(&mut conn, "alice"), user(&mut conn, "bob"), user(&mut conn, "carol"));
        let (room, _) = rooms::create_room(&mut conn, t0(), alice, RoomName::parse("R").unwrap(), Topic::parse("").unwrap(), vec![bob], 500).unwrap();
        let room = room.room.id;
        set_org(&mut conn, Policy { may_create_rooms: false, max_room_size: 2, ..Policy::default() });
        match rooms::create_room(&mut conn, t0(), alice, RoomName::parse("New").unwrap(), Topic::parse("").unwrap(), vec![], 500) {
            Err(MessagingError::PolicyViolation(m)) => assert!(m.contains("may_create_rooms")),
            other => panic!("{:?}", other.map(|r| r.0.room.id)),
        }
        assert!(matches!(rooms::add_member(&mut conn, t0(), alice, room, carol, conclave_core::MemberRole::Member, 500), Err(MessagingError::PolicyViolation(_))));
        // Files: a room's override turns sharing off, and a send with an attachment is refused.
        let no_files = PolicyOverrides { files_enabled: Some(false), ..Default::default() };
        rooms::set_policy(&mut conn, &AuditContext::system("test"), t0(), alice, room, no_files).unwrap();
        let policy = rooms::policy(&mut conn, alice, room).unwrap();
        assert!(!policy.effective.files_enabled);
        assert!(matches!(policy.effective.check_file("text/plain", 1), Err(conclave_core::PolicyError::Violation(m)) if m.contains("files_enabled")));
        let _ = keyring;
    }

    fn policy_changes_are_audited_with_before_and_after(db) {
        let mut conn = db.conn().unwrap();
        let before = conclave_policy::org_policy(&mut conn).unwrap();
        assert_eq!(before, Policy::default());
        set_org(&mut conn, Policy { files_enabled: false, ..Policy::default() });
        assert!(!conclave_policy::org_policy(&mut conn).unwrap().files_enabled);
        let events = conclave_store::audit::list_after(&mut conn, 0, 10).unwrap();
        let change = events.iter().find(|e| e.action == "policy.org_change").unwrap();
        let details: serde_json::Value = serde_json::from_str(&change.details).unwrap();
        assert_eq!(details["before"]["files_enabled"], true);
        assert_eq!(details["after"]["files_enabled"], false);
        let incoherent = Policy { expiration_default: timer(7_200), expiration_max: timer(3_600), ..Policy::default() };
        assert!(conclave_policy::set_org_policy(&mut conn, &AuditContext::system("test"), t0(), incoherent).is_err());
    }
}

mod barriers {
    use super::*;
    use conclave_policy::groups;
    use std::collections::BTreeSet;

    /// Trading and Research separated by a barrier that Trading names.
    fn split(conn: &mut DbConnection, trader: UserId, analyst: UserId) {
        let ctx = AuditContext::system("test");
        let trading = groups::create(conn, &ctx, t0(), "Trading", 10).unwrap();
        let research = groups::create(conn, &ctx, t0(), "Research", 20).unwrap();
        groups::add_member(conn, &ctx, t0(), &trading.id, trader, "manual").unwrap();
        groups::add_member(conn, &ctx, t0(), &research.id, analyst, "manual").unwrap();
        let barred = PolicyOverrides {
            barriers: BTreeSet::from([research.id]),
            ..Default::default()
        };
        groups::set_overrides(conn, &ctx, t0(), &trading.id, barred).unwrap();
    }

    backend_tests! {
        fn a_barrier_refuses_new_conversations_and_members(db) {
            let mut conn = db.conn().unwrap();
            let (trader, analyst, clerk) = (user(&mut conn, "trader"), user(&mut conn, "analyst"), user(&mut conn, "clerk"));
            split(&mut conn, trader, analyst);
            match rooms::open_direct(&mut conn, t0(), trader, analyst, 1000) {
                Err(MessagingError::PolicyViolation(reason)) => assert!(reason.contains("information barrier"), "{reason}"),
                other => panic!("{:?}", other.map(|r| r.0.room.id)),
            }
            assert!(matches!(
                rooms::create_room(&mut conn, t0(), clerk, RoomName::parse("Mixed").unwrap(), Topic::parse("").unwrap(), vec![trader, analyst], 500),
                Err(MessagingError::PolicyViolation(_))
            ));
            let (room, _) = rooms::create_room(&mut conn, t0(), clerk, RoomName::parse("Desk").unwrap(), Topic::parse("").unwrap(), vec![trader], 500).unwrap();
            assert!(matches!(
                rooms::add_member(&mut conn, t0(), clerk, room.room.id, analyst, conclave_core::MemberRole::Member, 500),
                Err(MessagingError::PolicyViolation(_))
            ));
            assert!(rooms::open_direct(&mut conn, t0(), clerk, analyst, 1000).is_ok(), "unbarred pairs still talk");
        }

        fn a_new_barrier_makes_an_existing_conversation_read_only(db) {
            let keyring = Keyring::generate().unwrap();
            let mut conn = db.conn().unwrap();
            let (trader, analyst) = (user(&mut conn, "trader"), user(&mut conn, "analyst"));
            let (dm, _) = rooms::open_direct(&mut conn, t0(), trader, analyst, 1000).unwrap();
            let dm = dm.room.id;
            let before = messages::send(&mut conn, &keyring, t0(), trader, dm, message("before the wall", "k1", None, None)).unwrap().message.id;
            split(&mut conn, trader, analyst);
            for sender in [trader, analyst] {
                match messages::send(&mut conn, &keyring, t0(), sender, dm, message("after", &format!("k-{sender}"), None, None)) {
                    Err(MessagingError::PolicyViolation(reason)) => assert!(reason.contains("read-only"), "{reason}"),
                    other => panic!("{:?}", other.map(|s| s.message.id)),
                }
            }
            assert!(matches!(messages::edit(&mut conn, &keyring, t0(), trader, dm, before, MessageText::parse("x", 10).unwrap()), Err(MessagingError::PolicyViolation(_))));
            assert!(matches!(messages::react(&mut conn, t0(), analyst, dm, before, conclave_core::Emoji::parse("x").unwrap(), true), Err(MessagingError::PolicyViolation(_))));
            // Both sides still read the history, and see why they cannot write.
            assert_eq!(messages::list(&mut conn, &keyring, t0(), analyst, dm, Page::After(0), 10).unwrap().len(), 1);
            let view = rooms::list_mine(&mut conn, trader).unwrap();
            assert!(view[0].read_only_reason.as_deref().is_some_and(|r| r.contains("Trading")));
        }
    }
}
