//! Retention, legal holds, the sweeper and crypto-shredding, each on SQLite and a
//! throwaway PostgreSQL, with time moved rather than waited for: deadlines at send and
//! after deletes, the combination rule across org, group and room policies, maximums that
//! end live messages, the sweeper destroying everything a message owns, holds keeping
//! exactly what they cover, lengthened policies protecting messages before their job runs,
//! previews changing nothing, and crash-safe file removal.

mod common;

use common::{input, room, state, t0, upload_text, user};
use conclave_core::retention::RetentionRule;
use conclave_core::{AuditContext, Emoji, ManualClock, MessageId, RoomId, Timestamp, UserId};
use conclave_crypto::Keyring;
use conclave_messaging::expiry::announce_due;
use conclave_messaging::messages::{self, NewMessageInput};
use conclave_messaging::{MessagingError, rooms};
use conclave_policy::holds::{self, HoldInput};
use conclave_policy::retention::{self, RetentionScope};
use conclave_policy::sweeper::{self, SweepSettings};
use conclave_store::messages::{self as message_store, Page};
use conclave_store::{DbConnection, audit, room_keys};
use conclave_testkit::backend_tests;
use std::path::Path;
use std::time::Duration;

const DAY: Duration = Duration::from_secs(86_400);

fn days(n: u32) -> Timestamp {
    t0().plus(DAY * n)
}

fn ctx() -> AuditContext {
    AuditContext::system("test")
}

fn rule(min_days: Option<u32>, max_days: Option<u32>) -> RetentionRule {
    RetentionRule { min_days, max_days }
}

fn set_policy(conn: &mut DbConnection, by: UserId, scope: RetentionScope, rule: RetentionRule) {
    retention::set_policy(conn, &ctx(), t0(), by, &scope, rule).unwrap();
}

/// One master key for every test of this binary (the data keys differ per room).
fn keyring() -> &'static Keyring {
    static KEYRING: std::sync::OnceLock<Keyring> = std::sync::OnceLock::new();
    KEYRING.get_or_init(|| Keyring::generate().unwrap())
}

fn send_at(
    conn: &mut DbConnection,
    at: Timestamp,
    sender: UserId,
    room_id: RoomId,
    key: &str,
) -> MessageId {
    messages::send(conn, keyring(), at, sender, room_id, input(key, key))
        .unwrap()
        .message
        .id
}

fn retain_until(conn: &mut DbConnection, id: MessageId) -> Option<Timestamp> {
    message_store::find(conn, id).unwrap().unwrap().retain_until
}

fn exists(conn: &mut DbConnection, id: MessageId) -> bool {
    message_store::find(conn, id).unwrap().is_some()
}

fn settings(dir: &Path) -> SweepSettings {
    SweepSettings {
        batch_size: 2,
        pause: Duration::ZERO,
        grace: Duration::from_secs(60),
        abandoned_upload_after: DAY,
        attachments_dir: dir.to_path_buf(),
        interval: Duration::from_secs(60),
    }
}

fn sweep_at(conn: &mut DbConnection, dir: &Path, at: Timestamp) -> sweeper::SweepReport {
    sweeper::sweep(
        conn,
        &settings(dir),
        &ManualClock::starting_at(at),
        &mut Default::default(),
        || {},
    )
    .unwrap()
}

fn audited(conn: &mut DbConnection, action: &str) -> usize {
    let filter = audit::AuditFilter {
        action: Some(action.into()),
        ..Default::default()
    };
    audit::query(conn, &filter, 0, 1000).unwrap().len()
}

backend_tests! {
    fn retain_until_follows_the_policies_and_what_users_see(db) {
        let keyring = keyring();
        let mut conn = db.conn().unwrap();
        let (officer, alice, bob) = (user(&mut conn, "officer"), user(&mut conn, "alice"), user(&mut conn, "bob"));
        let room_id = room(&mut conn, alice, &[bob]);
        // No policy: an ordinary message is kept, an expiring one lasts as long as users see
        // it, a deleted one is due at its delete.
        let plain = send_at(&mut conn, t0(), alice, room_id, "plain");
        assert_eq!(retain_until(&mut conn, plain), None);
        let expiring = NewMessageInput { expires_in: Some(Duration::from_secs(3600)), ..input("e", "e") };
        let expiring = messages::send(&mut conn, keyring, t0(), alice, room_id, expiring).unwrap().message.id;
        assert_eq!(retain_until(&mut conn, expiring), Some(t0().plus(Duration::from_secs(3600))));
        messages::delete(&mut conn, days(1), alice, room_id, plain).unwrap();
        assert_eq!(retain_until(&mut conn, plain), Some(days(1)));

        // An org minimum keeps the compliance copy of what users stopped seeing.
        set_policy(&mut conn, officer, RetentionScope::Org, rule(Some(30), None));
        let deleted = send_at(&mut conn, t0(), alice, room_id, "deleted");
        messages::delete(&mut conn, t0(), alice, room_id, deleted).unwrap();
        assert_eq!(retain_until(&mut conn, deleted), Some(days(30)));
        assert!(messages::list(&mut conn, keyring, t0(), bob, room_id, Page::After(0), 10).unwrap().iter().all(|m| m.id != deleted), "gone for users at once");

        // A group's maximum applies to what its members send, and never cuts below the
        // longest minimum; a room's maximum applies to that room.
        let group = conclave_policy::groups::create(&mut conn, &ctx(), t0(), "Traders", 10).unwrap();
        conclave_policy::groups::add_member(&mut conn, &ctx(), t0(), &group.id, alice, "manual").unwrap();
        set_policy(&mut conn, officer, RetentionScope::Group(group.id.clone()), rule(None, Some(10)));
        let by_alice = send_at(&mut conn, t0(), alice, room_id, "a");
        let by_bob = send_at(&mut conn, t0(), bob, room_id, "b");
        assert_eq!(retain_until(&mut conn, by_alice), Some(days(30)), "max 10 lifted to the minimum 30");
        assert_eq!(retain_until(&mut conn, by_bob), None, "Bob is not in the group");
        let other_room = room(&mut conn, bob, &[alice]);
        set_policy(&mut conn, officer, RetentionScope::Room(other_room), rule(None, Some(365)));
        let in_other = send_at(&mut conn, t0(), bob, other_room, "o");
        assert_eq!(retain_until(&mut conn, in_other), Some(days(365)));
        // Every change is audited.
        assert_eq!(audited(&mut conn, "retention.policy_change"), 3);
    }

    fn burn_on_read_and_retention_bounds_combine(db) {
        let keyring = keyring();
        let mut conn = db.conn().unwrap();
        let (officer, alice, bob) = (user(&mut conn, "officer"), user(&mut conn, "alice"), user(&mut conn, "bob"));
        let room_id = room(&mut conn, alice, &[bob]);
        set_policy(&mut conn, officer, RetentionScope::Org, rule(Some(30), None));
        let burning = NewMessageInput { burn_after_read: Some(Duration::from_secs(60)), ..input("once", "b") };
        let id = messages::send(&mut conn, keyring, t0(), alice, room_id, burning).unwrap().message.id;
        assert_eq!(retain_until(&mut conn, id), None, "unread: nobody knows yet when users stop seeing it");
        messages::get(&mut conn, keyring, t0().plus(Duration::from_secs(10)), bob, room_id, id).unwrap();
        assert_eq!(retain_until(&mut conn, id), Some(days(30)), "read and burning: the minimum keeps the copy");
        // Under a maximum, an unread burn-on-read message still goes on time.
        set_policy(&mut conn, officer, RetentionScope::Org, rule(None, Some(1)));
        let unread = NewMessageInput { burn_after_read: Some(Duration::from_secs(60)), ..input("unread", "u") };
        let unread = messages::send(&mut conn, keyring, t0(), alice, room_id, unread).unwrap().message.id;
        assert_eq!(retain_until(&mut conn, unread), Some(days(1)));
        // A read burn ends before the maximum: the copy goes with the burn.
        messages::get(&mut conn, keyring, t0().plus(Duration::from_secs(10)), bob, room_id, unread).unwrap();
        assert_eq!(retain_until(&mut conn, unread), Some(t0().plus(Duration::from_secs(70))));
    }

    fn the_preview_counts_what_the_sweeper_then_destroys(db) {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = db.conn().unwrap();
        let (officer, alice, bob) = (user(&mut conn, "officer"), user(&mut conn, "alice"), user(&mut conn, "bob"));
        let room_id = room(&mut conn, alice, &[bob]);
        for i in 0..4 {
            send_at(&mut conn, t0(), alice, room_id, &format!("old{i}"));
        }
        send_at(&mut conn, days(15), alice, room_id, "recent");
        let now = days(20);
        let preview = retention::preview(&mut conn, now, &RetentionScope::Org, Some(rule(None, Some(10)))).unwrap();
        retention::set_policy(&mut conn, &ctx(), now, officer, &RetentionScope::Org, rule(None, Some(10))).unwrap();
        sweeper::run_jobs(&mut conn, &ManualClock::starting_at(now), || {}).unwrap();
        announce_due(&mut conn, now).unwrap();
        let swept = sweep_at(&mut conn, dir.path(), now.plus(Duration::from_secs(120)));
        assert_eq!(preview.destroy_now, 4);
        assert_eq!(swept.messages_destroyed, preview.destroy_now);
    }

    fn a_maximum_ends_a_live_message_for_users_and_the_worker_announces_it(db) {
        let keyring = keyring();
        let mut conn = db.conn().unwrap();
        let (officer, alice, bob) = (user(&mut conn, "officer"), user(&mut conn, "alice"), user(&mut conn, "bob"));
        let room_id = room(&mut conn, alice, &[bob]);
        set_policy(&mut conn, officer, RetentionScope::Org, rule(None, Some(1)));
        let id = send_at(&mut conn, t0(), alice, room_id, "short-lived");
        let just_before = days(1).minus(Duration::from_secs(1));
        assert_eq!(messages::list(&mut conn, keyring, just_before, bob, room_id, Page::After(0), 10).unwrap().len(), 1);
        assert!(announce_due(&mut conn, just_before).unwrap().is_empty());
        assert!(messages::list(&mut conn, keyring, days(1), bob, room_id, Page::After(0), 10).unwrap().is_empty());
        assert!(matches!(messages::get(&mut conn, keyring, days(1), bob, room_id, id), Err(MessagingError::NotFound)));
        assert_eq!(announce_due(&mut conn, days(1)).unwrap().len(), 1, "message.expired for everyone");
        assert!(announce_due(&mut conn, days(2)).unwrap().is_empty(), "once");
    }

    fn the_sweeper_destroys_due_messages_with_all_they_own_and_shreds_keys(db) {
        let dir = tempfile::tempdir().unwrap();
        let state = state(db, keyring().clone(), dir.path());
        let keyring = keyring();
        let mut conn = db.conn().unwrap();
        let (alice, bob) = (user(&mut conn, "alice"), user(&mut conn, "bob"));
        let room_id = room(&mut conn, alice, &[bob]);
        let file = upload_text(&state, room_id, alice, "plan.txt", b"the plan");
        let with_file = NewMessageInput { attachment_id: Some(file.id), ..input("draft", "f") };
        let doomed = messages::send(&mut conn, keyring, t0(), alice, room_id, with_file).unwrap().message.id;
        messages::edit(&mut conn, keyring, t0(), alice, room_id, doomed, conclave_core::MessageText::parse("final", 64).unwrap()).unwrap();
        messages::react(&mut conn, t0(), bob, room_id, doomed, Emoji::parse("👍").unwrap(), true).unwrap();
        let reply = NewMessageInput { reply_to_id: Some(doomed), ..input("re", "r") };
        let reply = messages::send(&mut conn, keyring, days(2), bob, room_id, reply).unwrap().message.id;
        let files_on_disk = || walk(dir.path());
        assert_eq!(files_on_disk().len(), 1);
        // A copy of the rows as a dump would hold them, before anything is destroyed.
        let dumped_message = message_store::find(&mut conn, doomed).unwrap().unwrap();
        let dumped_versions = message_store::versions(&mut conn, doomed).unwrap();
        let epoch = dumped_versions[0].epoch;
        assert_eq!(messages::history(&mut conn, keyring, doomed).unwrap(), ["draft", "final"], "readable before shredding");
        messages::delete(&mut conn, t0().plus(Duration::from_secs(10)), alice, room_id, doomed).unwrap();

        // Within the grace period nothing happens; then the message and all it owns go.
        assert_eq!(sweep_at(&mut conn, dir.path(), t0().plus(Duration::from_secs(30))).messages_destroyed, 0);
        let report = sweep_at(&mut conn, dir.path(), days(4));
        assert_eq!((report.messages_destroyed, report.attachments_destroyed, report.keys_shredded), (1, 1, 1), "{report:?}");
        assert!(!exists(&mut conn, doomed));
        assert!(message_store::versions(&mut conn, doomed).unwrap().is_empty());
        assert!(message_store::reactions_on(&mut conn, &[doomed]).unwrap().is_empty());
        assert!(conclave_store::attachments::find(&mut conn, &file.id.to_string()).unwrap().is_none());
        assert!(files_on_disk().is_empty(), "the attachment file is unlinked");
        // The reply stays, without its reference; its own epoch's key stays.
        let kept = message_store::find(&mut conn, reply).unwrap().unwrap();
        assert_eq!(kept.reply_to_id, None);
        assert!(room_keys::find(&mut conn, room_id, epoch).unwrap().is_none(), "the emptied epoch's key is destroyed");
        assert_eq!(messages::list(&mut conn, keyring, days(4), bob, room_id, Page::After(0), 10).unwrap().len(), 1);

        // Crypto-shredding: restoring the dumped rows gives ciphertext nobody can read.
        message_store::insert(&mut conn, &message_store::NewMessage {
            id: dumped_message.id, room_id, seq: 999, sender_id: alice, reply_to_id: None, attachment_id: None,
            idempotency_key: "restored", now: dumped_message.created_at, visible_until: None,
            burn_after_read_seconds: None, retain_until: None,
        }).unwrap();
        for version in &dumped_versions {
            message_store::insert_version(&mut conn, room_id, doomed, version.version, version.epoch, &version.ciphertext, t0()).unwrap();
        }
        assert!(matches!(messages::history(&mut conn, keyring, doomed), Err(MessagingError::Decrypt(_))));

        // The destruction is audited with the message ids, and counted.
        let filter = audit::AuditFilter { action: Some("retention.destroy".into()), ..Default::default() };
        let details: Vec<serde_json::Value> = audit::query(&mut conn, &filter, 0, 10)
            .unwrap()
            .iter()
            .map(|event| serde_json::from_str(&event.details).unwrap())
            .collect();
        assert_eq!(details.len(), 2, "the batch, then the key: {details:?}");
        assert_eq!(details[0]["messages"], serde_json::json!([doomed]));
        assert_eq!(details[1]["keys_shredded"], 1);
        assert_eq!(details[1]["keys"], serde_json::json!([{"room_id": room_id.to_string(), "epoch": epoch}]));
        let status = sweeper::status(&mut conn).unwrap();
        assert_eq!((status.total_messages_destroyed, status.total_attachments_destroyed, status.total_keys_shredded), (1, 1, 1));
        assert_eq!(status.files_queued, 0);
    }

    fn an_epoch_emptied_while_current_is_shredded_once_it_is_over(db) {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = db.conn().unwrap();
        let (alice, bob) = (user(&mut conn, "alice"), user(&mut conn, "bob"));
        let room_id = room(&mut conn, alice, &[bob]);
        let id = send_at(&mut conn, t0(), alice, room_id, "today");
        let epoch = message_store::versions(&mut conn, id).unwrap()[0].epoch;
        messages::delete(&mut conn, t0(), alice, room_id, id).unwrap();
        let report = sweep_at(&mut conn, dir.path(), t0().plus(Duration::from_secs(120)));
        assert_eq!((report.messages_destroyed, report.keys_shredded), (1, 0), "today's key may still be in use");
        assert!(room_keys::find(&mut conn, room_id, epoch).unwrap().is_some());
        assert_eq!(sweep_at(&mut conn, dir.path(), days(3)).keys_shredded, 1);
        assert!(room_keys::find(&mut conn, room_id, epoch).unwrap().is_none());
    }

    fn a_key_stays_while_a_version_written_without_its_room_uses_it(db) {
        // A node older than migration 000011 writes versions without their room: the
        // sweeper fills the rooms in before it decides that a key is unused.
        use conclave_store::schema::message_versions as versions;
        use diesel::prelude::*;
        let dir = tempfile::tempdir().unwrap();
        let mut conn = db.conn().unwrap();
        let (alice, bob) = (user(&mut conn, "alice"), user(&mut conn, "bob"));
        let room_id = room(&mut conn, alice, &[bob]);
        let kept = send_at(&mut conn, t0(), alice, room_id, "kept");
        let doomed = send_at(&mut conn, t0(), alice, room_id, "doomed");
        let epoch = message_store::versions(&mut conn, kept).unwrap()[0].epoch;
        diesel::update(versions::table.filter(versions::message_id.eq(kept.to_string())))
            .set(versions::room_id.eq(None::<String>))
            .execute(&mut *conn)
            .unwrap();
        messages::delete(&mut conn, t0(), alice, room_id, doomed).unwrap();
        let report = sweep_at(&mut conn, dir.path(), days(3));
        assert_eq!((report.messages_destroyed, report.keys_shredded), (1, 0), "{report:?}");
        assert!(room_keys::find(&mut conn, room_id, epoch).unwrap().is_some());
        assert_eq!(messages::history(&mut conn, keyring(), kept).unwrap(), ["kept"]);
        let unknown: i64 = versions::table.filter(versions::room_id.is_null()).count().get_result(&mut *conn).unwrap();
        assert_eq!(unknown, 0, "filled in");
    }

    fn legal_holds_keep_exactly_what_they_cover_until_released(db) {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = db.conn().unwrap();
        let (officer, alice, bob, carol) = (user(&mut conn, "officer"), user(&mut conn, "alice"), user(&mut conn, "bob"), user(&mut conn, "carol"));
        let with_bob = room(&mut conn, alice, &[bob]);
        let with_carol = room(&mut conn, alice, &[carol]);
        // Every message is deleted at once, so each is due unless a hold keeps it.
        let send_deleted = |conn: &mut DbConnection, at: Timestamp, sender: UserId, room_id: RoomId, key: &str| {
            let id = send_at(conn, at, sender, room_id, key);
            messages::delete(conn, at, sender, room_id, id).unwrap();
            id
        };
        let received_by_carol = send_deleted(&mut conn, t0(), alice, with_carol, "to-carol");
        let early_in_bobs_room = send_deleted(&mut conn, t0(), bob, with_bob, "early");
        let late_in_bobs_room = send_deleted(&mut conn, days(5), bob, with_bob, "late");
        rooms::leave(&mut conn, days(6), carol, with_carol).unwrap();
        let after_carol_left = send_deleted(&mut conn, days(7), alice, with_carol, "after");
        let custodian_hold = holds::place(&mut conn, &ctx(), days(8), officer, &HoldInput {
            name: "Matter 17".into(), reason: "Litigation".into(), custodians: vec![carol], rooms: vec![],
            starts_at: None, ends_at: None,
        }).unwrap();
        let room_hold = holds::place(&mut conn, &ctx(), days(8), officer, &HoldInput {
            name: "FOIA 2026-44".into(), reason: "Records request".into(), custodians: vec![], rooms: vec![with_bob],
            starts_at: Some(days(4)), ends_at: None,
        }).unwrap();

        let report = sweep_at(&mut conn, dir.path(), days(10));
        assert_eq!((report.messages_destroyed, report.held), (2, 2), "{report:?}");
        assert!(exists(&mut conn, received_by_carol), "received by the custodian while a member");
        assert!(exists(&mut conn, late_in_bobs_room), "in the held room within the range");
        assert!(!exists(&mut conn, early_in_bobs_room), "before the range");
        assert!(!exists(&mut conn, after_carol_left), "after the custodian left");

        // Releasing lets the sweeper catch up with what that hold alone kept.
        holds::release(&mut conn, &ctx(), days(11), officer, &custodian_hold.id).unwrap();
        assert!(matches!(holds::release(&mut conn, &ctx(), days(11), officer, &custodian_hold.id), Err(conclave_policy::PolicyServiceError::Conflict(_))));
        let report = sweep_at(&mut conn, dir.path(), days(12));
        assert_eq!((report.messages_destroyed, report.held), (1, 1));
        assert!(!exists(&mut conn, received_by_carol));
        assert!(exists(&mut conn, late_in_bobs_room));
        assert_eq!(holds::list(&mut conn, true).unwrap().iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), [room_hold.id.as_str()]);
        assert_eq!((audited(&mut conn, "legal_hold.place"), audited(&mut conn, "legal_hold.release")), (2, 1));
    }

    fn holds_refuse_bad_input_and_change_nothing(db) {
        let mut conn = db.conn().unwrap();
        let officer = user(&mut conn, "officer");
        let good = HoldInput { name: "M".into(), reason: "R".into(), custodians: vec![officer], rooms: vec![], starts_at: None, ends_at: None };
        let bad = [
            HoldInput { name: " ".into(), ..good.clone() },
            HoldInput { reason: String::new(), ..good.clone() },
            HoldInput { custodians: vec![], ..good.clone() },
            HoldInput { custodians: vec![UserId::new()], ..good.clone() },
            HoldInput { rooms: vec![RoomId::new()], ..good.clone() },
            HoldInput { starts_at: Some(days(2)), ends_at: Some(days(1)), ..good.clone() },
        ];
        for input in &bad {
            assert!(matches!(holds::place(&mut conn, &ctx(), t0(), officer, input), Err(conclave_policy::PolicyServiceError::Policy(_))), "{input:?}");
        }
        assert!(holds::list(&mut conn, false).unwrap().is_empty());
        assert_eq!(audited(&mut conn, "legal_hold.place"), 0);
    }

    fn a_lengthened_policy_protects_messages_before_its_job_reaches_them(db) {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = db.conn().unwrap();
        let (officer, alice, bob) = (user(&mut conn, "officer"), user(&mut conn, "alice"), user(&mut conn, "bob"));
        let room_id = room(&mut conn, alice, &[bob]);
        let ids: Vec<MessageId> = (0..5).map(|i| {
            let id = send_at(&mut conn, t0(), alice, room_id, &format!("m{i}"));
            messages::delete(&mut conn, t0(), alice, room_id, id).unwrap();
            id
        }).collect();
        // The new minimum is saved; its job has not run yet.
        let change = retention::set_policy(&mut conn, &ctx(), t0(), officer, &RetentionScope::Org, rule(Some(30), None)).unwrap();
        assert_eq!((change.job.status.as_str(), change.job.total), ("pending", 5));
        let report = sweep_at(&mut conn, dir.path(), days(2));
        assert_eq!((report.messages_destroyed, report.rescheduled), (0, 5));
        assert!(ids.iter().all(|id| exists(&mut conn, *id)));
        // The job walks every message and finishes.
        sweeper::run_jobs(&mut conn, &ManualClock::starting_at(days(2)), || {}).unwrap();
        let job = &retention::jobs(&mut conn).unwrap()[0];
        assert_eq!((job.status.as_str(), job.processed), ("done", 5));
        assert_eq!(retain_until(&mut conn, ids[0]), Some(days(30)));
        // Removing the policy lets them go.
        retention::delete_policy(&mut conn, &ctx(), days(2), officer, &RetentionScope::Org).unwrap();
        sweeper::run_jobs(&mut conn, &ManualClock::starting_at(days(2)), || {}).unwrap();
        assert_eq!(sweep_at(&mut conn, dir.path(), days(3)).messages_destroyed, 5);
        assert_eq!(audited(&mut conn, "retention.policy_delete"), 1);
    }

    fn a_preview_reports_per_room_and_changes_nothing(db) {
        let mut conn = db.conn().unwrap();
        let (officer, alice, bob) = (user(&mut conn, "officer"), user(&mut conn, "alice"), user(&mut conn, "bob"));
        let busy = room(&mut conn, alice, &[bob]);
        let held = room(&mut conn, bob, &[alice]);
        for i in 0..3 {
            send_at(&mut conn, t0(), alice, busy, &format!("old{i}"));
        }
        let recent = send_at(&mut conn, days(15), alice, busy, "recent");
        send_at(&mut conn, t0(), bob, held, "kept");
        holds::place(&mut conn, &ctx(), t0(), officer, &HoldInput {
            name: "Audit".into(), reason: "IG review".into(), custodians: vec![], rooms: vec![held], starts_at: None, ends_at: None,
        }).unwrap();
        let preview = retention::preview(&mut conn, days(20), &RetentionScope::Org, Some(rule(None, Some(10)))).unwrap();
        assert_eq!((preview.destroy_now, preview.destroy_within_30_days, preview.held), (3, 4, 1), "{preview:?}");
        assert_eq!(preview.rooms[0].room_id, busy.to_string());
        assert_eq!((preview.rooms[0].destroy_now, preview.rooms[0].destroy_within_30_days), (3, 4));
        assert_eq!(preview.rooms[1].held, 1);
        assert!(retention::list(&mut conn).unwrap().is_empty(), "nothing saved");
        assert_eq!(retain_until(&mut conn, recent), None, "nothing recomputed");
        assert!(retention::preview(&mut conn, days(20), &RetentionScope::Org, Some(rule(Some(5), Some(1)))).is_err());
        assert!(matches!(retention::preview(&mut conn, days(20), &RetentionScope::Room(RoomId::new()), None), Err(conclave_policy::PolicyServiceError::NotFound)));
    }

    fn a_group_minimum_covers_what_members_sent_even_after_they_leave_the_group(db) {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = db.conn().unwrap();
        let (officer, bob, carol) = (user(&mut conn, "officer"), user(&mut conn, "bob"), user(&mut conn, "carol"));
        let room_id = room(&mut conn, bob, &[carol]);
        let traders = conclave_policy::groups::create(&mut conn, &ctx(), t0(), "Traders", 10).unwrap();
        conclave_policy::groups::add_member(&mut conn, &ctx(), t0(), &traders.id, bob, "manual").unwrap();
        set_policy(&mut conn, officer, RetentionScope::Group(traders.id.clone()), rule(Some(2555), None));
        set_policy(&mut conn, officer, RetentionScope::Org, rule(None, Some(30)));
        let as_trader = send_at(&mut conn, t0(), bob, room_id, "as-trader");
        // An admin moves Bob out; what he sent as a trader keeps its seven years.
        conclave_policy::groups::remove_member(&mut conn, &ctx(), days(1), &traders.id, bob).unwrap();
        let after_leaving = send_at(&mut conn, days(2), bob, room_id, "after");
        sweeper::run_jobs(&mut conn, &ManualClock::starting_at(days(3)), || {}).unwrap();
        assert_eq!(retain_until(&mut conn, as_trader), Some(days(2555)));
        assert_eq!(retain_until(&mut conn, after_leaving), Some(days(32)));
        let report = sweep_at(&mut conn, dir.path(), days(40));
        assert!(exists(&mut conn, as_trader));
        assert_eq!(report.awaiting_announcement, 1, "the cut message is announced first");
    }

    fn a_stale_recomputation_never_overwrites_a_concurrent_delete(db) {
        let mut conn = db.conn().unwrap();
        let (officer, alice, bob) = (user(&mut conn, "officer"), user(&mut conn, "alice"), user(&mut conn, "bob"));
        let room_id = room(&mut conn, alice, &[bob]);
        set_policy(&mut conn, officer, RetentionScope::Room(room_id), rule(None, Some(36_500)));
        let id = send_at(&mut conn, t0(), alice, room_id, "x");
        // A job read the message, then the sender deleted it before the job wrote.
        let stale = message_store::find(&mut conn, id).unwrap().unwrap();
        retention::delete_policy(&mut conn, &ctx(), t0(), officer, &RetentionScope::Room(room_id)).unwrap();
        messages::delete(&mut conn, days(1), alice, room_id, id).unwrap();
        assert_eq!(retain_until(&mut conn, id), Some(days(1)));
        let mut resolver = retention::RetentionResolver::load(&mut conn).unwrap();
        assert!(!retention::recompute(&mut conn, &mut resolver, &stale).unwrap(), "re-read, nothing to change");
        assert_eq!(retain_until(&mut conn, id), Some(days(1)), "the delete's deadline stands");
    }

    fn a_cut_message_is_destroyed_only_after_clients_were_told(db) {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = db.conn().unwrap();
        let (officer, alice, bob) = (user(&mut conn, "officer"), user(&mut conn, "alice"), user(&mut conn, "bob"));
        let room_id = room(&mut conn, alice, &[bob]);
        let id = send_at(&mut conn, t0(), alice, room_id, "live");
        // A new maximum puts its deadline in the past.
        set_policy(&mut conn, officer, RetentionScope::Org, rule(None, Some(1)));
        sweeper::run_jobs(&mut conn, &ManualClock::starting_at(days(5)), || {}).unwrap();
        let report = sweep_at(&mut conn, dir.path(), days(5));
        assert_eq!((report.messages_destroyed, report.awaiting_announcement), (0, 1));
        assert_eq!(announce_due(&mut conn, days(5)).unwrap().len(), 1, "message.expired for everyone");
        assert_eq!(sweep_at(&mut conn, dir.path(), days(5).plus(Duration::from_secs(30))).messages_destroyed, 0, "within the grace");
        assert_eq!(sweep_at(&mut conn, dir.path(), days(5).plus(Duration::from_secs(61))).messages_destroyed, 1);
        assert!(!exists(&mut conn, id));
    }

    fn held_messages_are_examined_once_per_change_and_record_nothing(db) {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = db.conn().unwrap();
        let (officer, alice, bob) = (user(&mut conn, "officer"), user(&mut conn, "alice"), user(&mut conn, "bob"));
        let room_id = room(&mut conn, alice, &[bob]);
        for i in 0..5 {
            let id = send_at(&mut conn, t0(), alice, room_id, &format!("h{i}"));
            messages::delete(&mut conn, t0(), alice, room_id, id).unwrap();
        }
        holds::place(&mut conn, &ctx(), t0(), officer, &HoldInput {
            name: "M".into(), reason: "R".into(), custodians: vec![], rooms: vec![room_id], starts_at: None, ends_at: None,
        }).unwrap();
        let clock = ManualClock::starting_at(days(2));
        let mut cursor = sweeper::SweepCursor::default();
        let first = sweeper::sweep(&mut conn, &settings(dir.path()), &clock, &mut cursor, || {}).unwrap();
        assert_eq!(first.held, 5);
        let second = sweeper::sweep(&mut conn, &settings(dir.path()), &clock, &mut cursor, || {}).unwrap();
        assert_eq!(second.held, 0, "the cursor skips what was held, holds unchanged");
        assert_eq!(audited(&mut conn, "retention.destroy"), 0, "holding is not destroying");
        // A change to the holds starts over.
        let hold = holds::list(&mut conn, true).unwrap().remove(0);
        holds::release(&mut conn, &ctx(), days(2), officer, &hold.id).unwrap();
        let third = sweeper::sweep(&mut conn, &settings(dir.path()), &clock, &mut cursor, || {}).unwrap();
        assert_eq!(third.messages_destroyed, 5);
    }

    fn users_cannot_tell_a_held_message_from_a_destroyed_one(db) {
        let keyring = keyring();
        let dir = tempfile::tempdir().unwrap();
        let mut conn = db.conn().unwrap();
        let (officer, alice, bob) = (user(&mut conn, "officer"), user(&mut conn, "alice"), user(&mut conn, "bob"));
        let held_room = room(&mut conn, alice, &[bob]);
        let other_room = room(&mut conn, alice, &[bob]);
        holds::place(&mut conn, &ctx(), t0(), officer, &HoldInput {
            name: "M".into(), reason: "R".into(), custodians: vec![], rooms: vec![held_room], starts_at: None, ends_at: None,
        }).unwrap();
        let held = send_at(&mut conn, t0(), alice, held_room, "held");
        let gone = send_at(&mut conn, t0(), alice, other_room, "gone");
        messages::delete(&mut conn, t0(), alice, held_room, held).unwrap();
        messages::delete(&mut conn, t0(), alice, other_room, gone).unwrap();
        sweep_at(&mut conn, dir.path(), days(2));
        assert!(exists(&mut conn, held) && !exists(&mut conn, gone));
        // Fetching, replying and replaying answer the same for both.
        for (room_id, id) in [(held_room, held), (other_room, gone)] {
            assert!(matches!(messages::get(&mut conn, keyring, days(2), bob, room_id, id), Err(MessagingError::NotFound)));
            let reply = NewMessageInput { reply_to_id: Some(id), ..input("re", &format!("re-{id}")) };
            let Err(refused) = messages::send(&mut conn, keyring, days(2), bob, room_id, reply) else {
                panic!("a reply to an invisible message was accepted");
            };
            assert_eq!(refused.to_string(), "reply_to_id: must be a message in this conversation");
            let replayed = conclave_messaging::realtime::render::render_one(&mut conn, keyring, room_id, 3, days(2)).unwrap().unwrap();
            let event: serde_json::Value = serde_json::from_str(&replayed.json).unwrap();
            assert_eq!(event["data"], serde_json::json!({"message": {"id": id, "expired": true}}), "{event}");
        }
    }

    fn a_file_that_cannot_be_unlinked_does_not_block_the_others(db) {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = db.conn().unwrap();
        std::fs::create_dir(dir.path().join("a-directory")).unwrap();
        std::fs::write(dir.path().join("b-file"), b"x").unwrap();
        conclave_store::retention::queue_file_deletions(&mut conn, &["a-directory".into(), "b-file".into()], t0()).unwrap();
        let report = sweep_at(&mut conn, dir.path(), t0());
        assert_eq!(report.unlink_failures, 1);
        assert!(!dir.path().join("b-file").exists());
        assert_eq!(sweeper::status(&mut conn).unwrap().files_queued, 1, "the failing one stays queued");
    }

    fn queued_files_are_unlinked_after_a_crash_and_abandoned_uploads_removed(db) {
        let dir = tempfile::tempdir().unwrap();
        let state = state(db, keyring().clone(), dir.path());
        let mut conn = db.conn().unwrap();
        let (alice, bob) = (user(&mut conn, "alice"), user(&mut conn, "bob"));
        let room_id = room(&mut conn, alice, &[bob]);
        // A sweep that committed its rows and died before unlinking left this queued.
        std::fs::write(dir.path().join("left-behind"), b"x").unwrap();
        let outside = tempfile::NamedTempFile::new().unwrap();
        conclave_store::retention::queue_file_deletions(&mut conn, &["left-behind".into(), outside.path().display().to_string()], t0()).unwrap();
        // An upload never attached to a message.
        let file = upload_text(&state, room_id, alice, "a.txt", b"abandoned");
        assert_eq!(sweep_at(&mut conn, dir.path(), t0().plus(Duration::from_secs(3600))).attachments_destroyed, 0, "young uploads stay");
        assert!(!dir.path().join("left-behind").exists());
        assert!(outside.path().exists(), "a path outside the directory is never unlinked");
        let report = sweep_at(&mut conn, dir.path(), days(2));
        assert_eq!(report.attachments_destroyed, 1);
        assert!(conclave_store::attachments::find(&mut conn, &file.id.to_string()).unwrap().is_none());
        assert!(walk(dir.path()).is_empty());
        assert_eq!(sweeper::status(&mut conn).unwrap().files_queued, 0);
    }
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
