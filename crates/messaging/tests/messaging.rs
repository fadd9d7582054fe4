//! Messaging service tests, each on SQLite and a throwaway PostgreSQL: membership and
//! 404s, gap-free sequences under concurrent senders, idempotent retries, encryption at
//! rest (no plaintext in rows, moved ciphertext fails, rotation keeps old messages
//! readable), edits, deletes, replies, reactions, read markers, room limits, attachments.

mod common;

use common::{alice_alone, input, room, state, t0, upload_text, user};
use conclave_core::{Emoji, MemberRole, MessageText, RoomName, Timestamp, Topic, UserId};
use conclave_crypto::Keyring;
use conclave_messaging::attachments::{self, Upload};
use conclave_messaging::keys::rewrap_all;
use conclave_messaging::messages::{self, NewMessageInput};
use conclave_messaging::{MessagingError, rooms};
use conclave_store::messages::Page;
use conclave_testkit::backend_tests;
use diesel::prelude::*;
use std::sync::Arc;

fn texts(views: &[conclave_messaging::wire::MessageView]) -> Vec<String> {
    views
        .iter()
        .map(|m| m.text.clone().unwrap_or_default())
        .collect()
}

backend_tests! {
    fn non_members_get_not_found_for_everything(db) {
        let keyring = Keyring::generate().unwrap();
        let mut conn = db.conn().unwrap();
        let (alice, bob, eve) = (user(&mut conn, "alice"), user(&mut conn, "bob"), user(&mut conn, "eve"));
        let room_id = room(&mut conn, alice, &[bob]);
        let sent = messages::send(&mut conn, &keyring, t0(), alice, room_id, input("plan", "k1")).unwrap();
        let m = sent.message.id;
        assert!(matches!(rooms::room_detail(&mut conn, room_id, eve), Err(MessagingError::NotFound)));
        assert!(matches!(messages::list(&mut conn, &keyring, t0(), eve, room_id, Page::Before(None), 50), Err(MessagingError::NotFound)));
        assert!(matches!(messages::get(&mut conn, &keyring, t0(), eve, room_id, m), Err(MessagingError::NotFound)));
        assert!(matches!(messages::send(&mut conn, &keyring, t0(), eve, room_id, input("x", "k2")), Err(MessagingError::NotFound)));
        assert!(matches!(messages::react(&mut conn, t0(), eve, room_id, m, Emoji::parse("👍").unwrap(), true), Err(MessagingError::NotFound)));
        assert!(matches!(messages::mark_read(&mut conn, t0(), eve, room_id, 1), Err(MessagingError::NotFound)));
        assert!(matches!(messages::delete(&mut conn, t0(), eve, room_id, m), Err(MessagingError::NotFound)));
        assert!(matches!(rooms::add_member(&mut conn, t0(), eve, room_id, eve, MemberRole::Member, 500), Err(MessagingError::NotFound)));
        assert!(matches!(messages::edit(&mut conn, &keyring, t0(), eve, room_id, m, MessageText::parse("x", 64).unwrap()), Err(MessagingError::NotFound)));
        assert!(matches!(rooms::update_room(&mut conn, t0(), eve, room_id, Some(RoomName::parse("x").unwrap()), None), Err(MessagingError::NotFound)));
        assert!(matches!(rooms::set_member_role(&mut conn, t0(), eve, room_id, bob, MemberRole::Owner), Err(MessagingError::NotFound)));
        assert!(matches!(rooms::remove_member(&mut conn, t0(), eve, room_id, bob), Err(MessagingError::NotFound)));
        assert!(matches!(rooms::leave(&mut conn, t0(), eve, room_id), Err(MessagingError::NotFound)));
        // A room that does not exist answers exactly the same.
        let nowhere = conclave_core::RoomId::new();
        assert!(matches!(rooms::room_detail(&mut conn, nowhere, eve), Err(MessagingError::NotFound)));
        assert!(matches!(messages::send(&mut conn, &keyring, t0(), eve, nowhere, input("x", "k3")), Err(MessagingError::NotFound)));
        assert!(rooms::list_mine(&mut conn, eve).unwrap().is_empty());
        // A message id from a room the caller is in, asked for through another room, is not found either.
        let other = room(&mut conn, eve, &[]);
        assert!(matches!(messages::get(&mut conn, &keyring, t0(), eve, other, m), Err(MessagingError::NotFound)));
    }

    fn a_direct_conversation_is_one_per_pair(db) {
        let mut conn = db.conn().unwrap();
        let (alice, bob) = (user(&mut conn, "alice"), user(&mut conn, "bob"));
        let (first, published) = rooms::open_direct(&mut conn, t0(), alice, bob, 1000).unwrap();
        assert_eq!(published.len(), 2);
        let (again, published) = rooms::open_direct(&mut conn, t0(), bob, alice, 1000).unwrap();
        assert!(published.is_empty());
        assert_eq!(first.room.id, again.room.id);
        assert_eq!(first.room.name.as_deref(), Some("bob"), "named after the other person");
        assert!(matches!(rooms::open_direct(&mut conn, t0(), alice, alice, 1000), Err(MessagingError::Invalid(_))));
        assert!(matches!(rooms::leave(&mut conn, t0(), alice, first.room.id), Err(MessagingError::Conflict(_))));
    }

    fn sequences_stay_gap_free_under_concurrent_senders(db) {
        let keyring = Arc::new(Keyring::generate().unwrap());
        let (room_id, senders) = {
            let mut conn = db.conn().unwrap();
            let senders: Vec<UserId> = (0..4).map(|i| user(&mut conn, &format!("sender{i}"))).collect();
            (room(&mut conn, senders[0], &senders[1..]), senders)
        };
        let threads: Vec<_> = senders.iter().enumerate().map(|(i, sender)| {
            let (db, keyring, sender) = (db.clone(), Arc::clone(&keyring), *sender);
            std::thread::spawn(move || {
                let mut conn = db.conn().unwrap();
                for n in 0..15 {
                    messages::send(&mut conn, &keyring, t0(), sender, room_id, input(&format!("{i}-{n}"), &format!("{i}-{n}"))).unwrap();
                }
            })
        }).collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let mut conn = db.conn().unwrap();
        let all = messages::list(&mut conn, &keyring, t0(), senders[0], room_id, Page::After(0), 200).unwrap();
        let seqs: Vec<i64> = all.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=60).collect::<Vec<_>>());
    }

    fn concurrent_retries_of_one_send_store_it_once(db) {
        let keyring = Arc::new(Keyring::generate().unwrap());
        let (alice, room_id) = alice_alone(db);
        let threads: Vec<_> = (0..6).map(|_| {
            let (db, keyring) = (db.clone(), Arc::clone(&keyring));
            std::thread::spawn(move || messages::send(&mut db.conn().unwrap(), &keyring, t0(), alice, room_id, input("once", "same-key")).unwrap())
        }).collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(results.iter().filter(|r| r.created).count(), 1);
        assert!(results.iter().all(|r| r.message.id == results[0].message.id));
        let mut conn = db.conn().unwrap();
        let all = messages::list(&mut conn, &keyring, t0(), alice, room_id, Page::After(0), 50).unwrap();
        assert_eq!(all.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1], "one message, no gap");
    }

    fn a_batch_of_sends_answers_each_alone_and_numbers_only_what_it_stores(db) {
        let keyring = Keyring::generate().unwrap();
        let mut conn = db.conn().unwrap();
        let (alice, bob, eve) = (user(&mut conn, "alice"), user(&mut conn, "bob"), user(&mut conn, "eve"));
        let (ops, other) = (room(&mut conn, alice, &[bob]), room(&mut conn, alice, &[]));
        let earlier = messages::send(&mut conn, &keyring, t0(), alice, ops, input("earlier", "old")).unwrap();
        let elsewhere = messages::send(&mut conn, &keyring, t0(), alice, other, input("elsewhere", "there")).unwrap();
        let at = |n: i64| Timestamp::from_micros(t0().as_micros() + n);
        let request = |sender, room_id, now, input| messages::SendRequest { sender, room_id, now, input };
        let burning = NewMessageInput { burn_after_read: Some(std::time::Duration::from_secs(60)), ..input("burns", "k4") };
        let stray_reply = NewMessageInput { reply_to_id: Some(elsewhere.message.id), ..input("re", "k5") };
        let batch = vec![
            request(alice, ops, at(1), input("first", "k1")),
            request(eve, ops, at(2), input("intruder", "e1")),
            request(bob, ops, at(3), input("second", "k2")),
            request(alice, other, at(4), input("aside", "k3")),
            request(alice, ops, at(5), stray_reply),
            request(alice, ops, at(6), input("first, retried", "k1")),
            request(bob, conclave_core::RoomId::new(), at(7), input("nowhere", "k6")),
            request(alice, ops, at(8), burning),
            request(alice, ops, at(9), input("earlier, retried", "old")),
        ];
        let results = messages::send_many(&mut conn, &keyring, &batch);
        assert_eq!(results.len(), batch.len(), "one answer per request, in order");
        let created = |i: usize| results[i].as_ref().unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert!(matches!(results[1], Err(MessagingError::NotFound)), "not a member: refused alone");
        assert!(matches!(results[4], Err(MessagingError::Invalid(_))), "a reply into another room");
        assert!(matches!(results[6], Err(MessagingError::NotFound)), "no such room");
        assert!(created(0).created && created(2).created && created(3).created && created(7).created);
        assert!(!created(5).created && created(5).message.id == created(0).message.id, "the same key again in the batch is its retry");
        assert!(!created(8).created && created(8).message.id == earlier.message.id, "a retry of an earlier send");
        assert!(created(5).published.is_empty() && created(8).published.is_empty(), "a retry publishes nothing");
        // Numbers only for what was stored, in request order, each room on its own.
        let seq_of = |i: usize| created(i).message.seq;
        assert_eq!((seq_of(0), seq_of(2), seq_of(7)), (2, 3, 4));
        assert_eq!(seq_of(3), 2);
        assert_eq!(created(7).message.burn_after_read_seconds, Some(60));
        let mut recipients = created(2).published[0].recipients.clone();
        recipients.sort();
        let mut members = vec![alice, bob];
        members.sort();
        assert_eq!(recipients, members, "every member");
        let listed = messages::list(&mut conn, &keyring, at(10), bob, ops, Page::After(0), 50).unwrap();
        assert_eq!(listed.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4], "gap-free");
        assert_eq!(texts(&listed), vec!["earlier", "first", "second", "burns"]);
        assert_eq!(listed[1].created_at, at(1), "each keeps its own time");
        let events = conclave_store::room_events::after(&mut conn, ops, 0, 100).unwrap();
        let message_events: Vec<i64> = events.iter().filter(|e| e.kind == "message.created").map(|e| e.seq).collect();
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=events.len() as i64).collect::<Vec<_>>());
        assert_eq!(message_events.len(), 4);
        assert_eq!(created(7).published[0].seq, *message_events.last().unwrap());
        // The senders' read markers moved to what they sent; the burn-on-read message has
        // its recipient's (unstarted) timer.
        let view = |user| rooms::list_mine(&mut db.conn().unwrap(), user).unwrap().into_iter().find(|r| r.id == ops).unwrap();
        assert_eq!((view(alice).last_read_seq, view(bob).last_read_seq), (4, 3));
        assert_eq!((view(alice).last_message_seq, view(alice).last_event_seq), (4, events.len() as i64), "the room's counters moved with it");
        let reads = conclave_store::message_reads::for_message(&mut conn, created(7).message.id).unwrap();
        assert_eq!(reads.len(), 1);
        // And sending one at a time from here numbers on from the batch.
        let next = messages::send(&mut conn, &keyring, at(11), bob, ops, input("after", "k7")).unwrap();
        assert_eq!(next.message.seq, 5);
    }

    fn an_attachment_goes_with_one_message_even_within_a_batch(db) {
        let dir = tempfile::tempdir().unwrap();
        let state = state(db, Keyring::generate().unwrap(), dir.path());
        let (alice, room_id) = alice_alone(db);
        let file = upload_text(&state, room_id, alice, "r.txt", b"report");
        let with_file = |key: &str| messages::SendRequest {
            sender: alice,
            room_id,
            now: t0(),
            input: NewMessageInput { attachment_id: Some(file.id), ..input("see file", key) },
        };
        let results = messages::send_many(&mut db.conn().unwrap(), &state.keyring, &[with_file("a"), with_file("b")]);
        assert!(results[0].as_ref().unwrap().created);
        assert!(matches!(results[1], Err(MessagingError::Invalid(_))), "the second claim of one file is refused");
        let again = messages::send(&mut db.conn().unwrap(), &state.keyring, t0(), alice, room_id, with_file("c").input);
        assert!(matches!(again, Err(MessagingError::Invalid(_))), "and so is a later one");
    }

    fn batches_racing_on_the_same_keys_store_each_message_once(db) {
        // Every batch holds one key all batches share, so they race on its unique index:
        // the losers' transactions fail as a whole and are sent one by one.
        let keyring = Arc::new(Keyring::generate().unwrap());
        let (senders, room_id) = {
            let mut conn = db.conn().unwrap();
            let senders: Vec<UserId> = (0..4).map(|i| user(&mut conn, &format!("sender{i}"))).collect();
            let room_id = room(&mut conn, senders[0], &senders[1..]);
            (senders, room_id)
        };
        let threads: Vec<_> = senders.iter().enumerate().map(|(i, sender)| {
            let (db, keyring, sender, shared) = (db.clone(), Arc::clone(&keyring), *sender, senders[0]);
            std::thread::spawn(move || {
                let mut conn = db.conn().unwrap();
                let mut created = 0;
                for round in 0..5 {
                    let batch = vec![
                        messages::SendRequest { sender: shared, room_id, now: t0(), input: input("shared", &format!("shared-{round}")) },
                        messages::SendRequest { sender, room_id, now: t0(), input: input("own", &format!("own-{i}-{round}")) },
                    ];
                    for result in messages::send_many(&mut conn, &keyring, &batch) {
                        created += usize::from(result.unwrap().created);
                    }
                }
                created
            })
        }).collect();
        let created: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(created, 5 + 4 * 5, "each shared key once, every own message");
        let mut conn = db.conn().unwrap();
        let all = messages::list(&mut conn, &keyring, t0(), senders[0], room_id, Page::After(0), 200).unwrap();
        assert_eq!(all.iter().map(|m| m.seq).collect::<Vec<_>>(), (1..=25).collect::<Vec<_>>(), "stored once each, no gap");
    }

    fn the_send_queue_answers_every_one_of_many_concurrent_sends(db) {
        let dir = tempfile::tempdir().unwrap();
        let state = state(db, Keyring::generate().unwrap(), dir.path());
        let (senders, room_id) = {
            let mut conn = db.conn().unwrap();
            let senders: Vec<UserId> = (0..5).map(|i| user(&mut conn, &format!("sender{i}"))).collect();
            let room_id = room(&mut conn, senders[0], &senders[1..]);
            (senders, room_id)
        };
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let answers = runtime.block_on(async {
            let waiting: Vec<_> = (0..60).map(|n| {
                let sends = state.sends.clone();
                let request = messages::SendRequest { sender: senders[n % 5], room_id, now: t0(), input: input(&format!("m{n}"), &format!("k{n}")) };
                tokio::spawn(async move { sends.send(request).await })
            }).collect();
            let mut answers = Vec::new();
            for task in waiting {
                answers.push(task.await.unwrap());
            }
            answers
        });
        let sent: Vec<_> = answers.into_iter().map(|answer| answer.unwrap()).collect();
        assert!(sent.iter().all(|s| s.created && s.published.len() == 1));
        let mut texts_sent: Vec<String> = sent.iter().map(|s| s.message.text.clone().unwrap()).collect();
        texts_sent.sort();
        let mut wanted: Vec<String> = (0..60).map(|n| format!("m{n}")).collect();
        wanted.sort();
        assert_eq!(texts_sent, wanted, "each answer is its own request's message");
        let mut conn = db.conn().unwrap();
        let all = messages::list(&mut conn, &state.keyring, t0(), senders[0], room_id, Page::After(0), 200).unwrap();
        assert_eq!(all.iter().map(|m| m.seq).collect::<Vec<_>>(), (1..=60).collect::<Vec<_>>());
        // A retry through the queue answers with the original.
        let again = runtime.block_on(state.sends.send(messages::SendRequest { sender: senders[0], room_id, now: t0(), input: input("m0", "k0") })).unwrap();
        assert!(!again.created);
        assert_eq!(again.message.id, sent[0].message.id);
    }

    fn two_owners_leaving_at_once_never_orphan_a_room(db) {
        let (a, b, c, room_id) = {
            let mut conn = db.conn().unwrap();
            let (a, b, c) = (user(&mut conn, "a"), user(&mut conn, "b"), user(&mut conn, "c"));
            let room_id = room(&mut conn, a, &[b, c]);
            rooms::set_member_role(&mut conn, t0(), a, room_id, b, MemberRole::Owner).unwrap();
            (a, b, c, room_id)
        };
        let threads: Vec<_> = [a, b].into_iter().map(|owner| {
            let db = db.clone();
            std::thread::spawn(move || rooms::leave(&mut db.conn().unwrap(), t0(), owner, room_id).is_ok())
        }).collect();
        let left = threads.into_iter().map(|t| t.join().unwrap()).filter(|ok| *ok).count();
        assert_eq!(left, 1, "the second owner is refused while members remain");
        let mut conn = db.conn().unwrap();
        let detail = rooms::room_detail(&mut conn, room_id, c).unwrap();
        assert_eq!(detail.members.iter().filter(|m| m.role == MemberRole::Owner).count(), 1);
    }

    fn retried_sends_never_duplicate(db) {
        let keyring = Keyring::generate().unwrap();
        let mut conn = db.conn().unwrap();
        let alice = user(&mut conn, "alice");
        let room_id = room(&mut conn, alice, &[]);
        let first = messages::send(&mut conn, &keyring, t0(), alice, room_id, input("once", "retry-me")).unwrap();
        let again = messages::send(&mut conn, &keyring, t0(), alice, room_id, input("once", "retry-me")).unwrap();
        assert!(first.created && !again.created);
        assert_eq!(first.message.id, again.message.id);
        assert!(again.published.is_empty());
        assert_eq!(messages::list(&mut conn, &keyring, t0(), alice, room_id, Page::After(0), 50).unwrap().len(), 1);
    }

    fn no_plaintext_is_stored(db) {
        use conclave_store::schema::message_versions::dsl::{ciphertext, message_versions};
        let keyring = Keyring::generate().unwrap();
        let mut conn = db.conn().unwrap();
        let alice = user(&mut conn, "alice");
        let room_id = room(&mut conn, alice, &[]);
        let secret = "the launch code is 0000";
        let sent = messages::send(&mut conn, &keyring, t0(), alice, room_id, input(secret, "k")).unwrap();
        messages::edit(&mut conn, &keyring, t0(), alice, room_id, sent.message.id, MessageText::parse("the new launch code is 1111", 1024).unwrap()).unwrap();
        let rows: Vec<Vec<u8>> = message_versions.select(ciphertext).load(&mut *conn).unwrap();
        assert_eq!(rows.len(), 2);
        for row in &rows {
            assert!(!row.windows(6).any(|w| w == b"launch"), "plaintext in a stored row");
        }
        // Nothing else in the database holds it either.
        let events: Vec<String> = conclave_store::schema::room_events::table.select(conclave_store::schema::room_events::payload).load(&mut *conn).unwrap();
        assert!(events.iter().all(|p| !p.contains("launch")));
    }

    fn a_ciphertext_moved_to_another_row_fails_to_decrypt(db) {
        use conclave_store::schema::message_versions::dsl::{ciphertext, message_id, message_versions};
        let keyring = Keyring::generate().unwrap();
        let mut conn = db.conn().unwrap();
        let alice = user(&mut conn, "alice");
        let room_id = room(&mut conn, alice, &[]);
        let a = messages::send(&mut conn, &keyring, t0(), alice, room_id, input("first", "a")).unwrap().message.id;
        let b = messages::send(&mut conn, &keyring, t0(), alice, room_id, input("second", "b")).unwrap().message.id;
        let stolen: Vec<u8> = message_versions.filter(message_id.eq(a.to_string())).select(ciphertext).first(&mut *conn).unwrap();
        diesel::update(message_versions.filter(message_id.eq(b.to_string()))).set(ciphertext.eq(stolen)).execute(&mut *conn).unwrap();
        match messages::get(&mut conn, &keyring, t0(), alice, room_id, b) {
            Err(MessagingError::Decrypt(_)) => {}
            other => panic!("expected a decryption failure, got {other:?}", other = other.map(|m| m.text)),
        }
        assert_eq!(messages::get(&mut conn, &keyring, t0(), alice, room_id, a).unwrap().text.as_deref(), Some("first"));
        // Moved onto another sender's message in the same room: the sender binding fails it.
        let bob = user(&mut conn, "bob");
        rooms::add_member(&mut conn, t0(), alice, room_id, bob, MemberRole::Member, 500).unwrap();
        let c = messages::send(&mut conn, &keyring, t0(), bob, room_id, input("bob's", "c")).unwrap().message.id;
        let alices: Vec<u8> = message_versions.filter(message_id.eq(a.to_string())).select(ciphertext).first(&mut *conn).unwrap();
        diesel::update(message_versions.filter(message_id.eq(c.to_string()))).set(ciphertext.eq(alices)).execute(&mut *conn).unwrap();
        assert!(matches!(messages::get(&mut conn, &keyring, t0(), bob, room_id, c), Err(MessagingError::Decrypt(_))));
        // A master key that is missing is an error, and so is a different key under the
        // right id: nothing opens, and nothing is shown as garbage.
        let missing = Keyring::generate().unwrap();
        assert!(matches!(messages::get(&mut conn, &missing, t0(), alice, room_id, a), Err(MessagingError::MissingMasterKey(_))));
        let impostor = Keyring::from_env_value(&format!("{}:{}", keyring.active().0, "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=")).unwrap();
        assert!(matches!(messages::get(&mut conn, &impostor, t0(), alice, room_id, a), Err(MessagingError::Decrypt(_))));
    }

    fn rotation_rewraps_and_old_messages_stay_readable(db) {
        let mut keyring = Keyring::generate().unwrap();
        let mut conn = db.conn().unwrap();
        let alice = user(&mut conn, "alice");
        let room_id = room(&mut conn, alice, &[]);
        let day = 86_400_000_000;
        for (i, at) in [t0(), Timestamp::from_micros(t0().as_micros() + day)].into_iter().enumerate() {
            messages::send(&mut conn, &keyring, at, alice, room_id, input(&format!("day {i}"), &format!("k{i}"))).unwrap();
        }
        let old_id = keyring.active().0.to_owned();
        keyring.rotate().unwrap();
        assert_eq!(rewrap_all(&mut conn, &keyring).unwrap(), 2, "one data key per epoch");
        assert_eq!(rewrap_all(&mut conn, &keyring).unwrap(), 0, "idempotent");
        keyring.remove(&old_id).unwrap();
        let all = messages::list(&mut conn, &keyring, t0(), alice, room_id, Page::After(0), 10).unwrap();
        assert_eq!(texts(&all), ["day 0", "day 1"]);
        conclave_messaging::keys::check_keyring(&mut conn, &keyring).unwrap();
        assert!(conclave_messaging::keys::check_keyring(&mut conn, &Keyring::generate().unwrap()).is_err());
    }

    fn edits_keep_history_and_deletes_hide_content(db) {
        let keyring = Keyring::generate().unwrap();
        let mut conn = db.conn().unwrap();
        let (alice, bob) = (user(&mut conn, "alice"), user(&mut conn, "bob"));
        let room_id = room(&mut conn, alice, &[bob]);
        let m = messages::send(&mut conn, &keyring, t0(), bob, room_id, input("draft", "k")).unwrap().message.id;
        assert!(matches!(messages::edit(&mut conn, &keyring, t0(), alice, room_id, m, MessageText::parse("hijack", 64).unwrap()), Err(MessagingError::Forbidden(_))));
        let (edited, _) = messages::edit(&mut conn, &keyring, t0(), bob, room_id, m, MessageText::parse("final", 64).unwrap()).unwrap();
        assert_eq!(edited.text.as_deref(), Some("final"));
        assert!(edited.edited_at.is_some());
        assert_eq!(messages::history(&mut conn, &keyring, m).unwrap(), ["draft", "final"]);
        // The owner (a moderator or better) may delete another's message.
        messages::delete(&mut conn, t0(), alice, room_id, m).unwrap();
        assert!(matches!(messages::get(&mut conn, &keyring, t0(), bob, room_id, m), Err(MessagingError::NotFound)), "gone for users, like an expired message");
        assert!(messages::list(&mut conn, &keyring, t0(), bob, room_id, Page::After(0), 10).unwrap().is_empty());
        assert_eq!(messages::history(&mut conn, &keyring, m).unwrap().len(), 2, "the record stays for retention");
        assert!(matches!(messages::edit(&mut conn, &keyring, t0(), bob, room_id, m, MessageText::parse("x", 64).unwrap()), Err(MessagingError::NotFound)));
    }

    fn members_may_not_delete_others_messages(db) {
        let keyring = Keyring::generate().unwrap();
        let mut conn = db.conn().unwrap();
        let (alice, bob, carol) = (user(&mut conn, "alice"), user(&mut conn, "bob"), user(&mut conn, "carol"));
        let room_id = room(&mut conn, alice, &[bob, carol]);
        let m = messages::send(&mut conn, &keyring, t0(), bob, room_id, input("mine", "k")).unwrap().message.id;
        assert!(matches!(messages::delete(&mut conn, t0(), carol, room_id, m), Err(MessagingError::Forbidden(_))));
    }

    fn replies_must_stay_in_their_conversation(db) {
        let keyring = Keyring::generate().unwrap();
        let mut conn = db.conn().unwrap();
        let alice = user(&mut conn, "alice");
        let (here, elsewhere) = (room(&mut conn, alice, &[]), room(&mut conn, alice, &[]));
        let original = messages::send(&mut conn, &keyring, t0(), alice, here, input("q", "k1")).unwrap().message.id;
        let foreign = messages::send(&mut conn, &keyring, t0(), alice, elsewhere, input("x", "k2")).unwrap().message.id;
        let reply = NewMessageInput { reply_to_id: Some(original), ..input("a", "k3") };
        assert_eq!(messages::send(&mut conn, &keyring, t0(), alice, here, reply).unwrap().message.reply_to_id, Some(original));
        let bad = NewMessageInput { reply_to_id: Some(foreign), ..input("a", "k4") };
        assert!(matches!(messages::send(&mut conn, &keyring, t0(), alice, here, bad), Err(MessagingError::Invalid(_))));
        assert_eq!(messages::list(&mut conn, &keyring, t0(), alice, here, Page::After(0), 10).unwrap().len(), 2, "nothing stored for the refused reply");
    }

    fn reactions_and_read_markers(db) {
        let keyring = Keyring::generate().unwrap();
        let mut conn = db.conn().unwrap();
        let (alice, bob) = (user(&mut conn, "alice"), user(&mut conn, "bob"));
        let room_id = room(&mut conn, alice, &[bob]);
        for i in 0..3 {
            messages::send(&mut conn, &keyring, t0(), alice, room_id, input("m", &format!("k{i}"))).unwrap();
        }
        let mine = rooms::list_mine(&mut conn, bob).unwrap();
        assert_eq!(mine[0].unread_count, 3);
        assert_eq!(rooms::list_mine(&mut conn, alice).unwrap()[0].unread_count, 0, "a sender has read their own");
        let first = messages::list(&mut conn, &keyring, t0(), bob, room_id, Page::After(0), 1).unwrap()[0].id;
        let thumbs = Emoji::parse("👍").unwrap();
        assert_eq!(messages::react(&mut conn, t0(), bob, room_id, first, thumbs.clone(), true).unwrap().len(), 1);
        assert!(messages::react(&mut conn, t0(), bob, room_id, first, thumbs.clone(), true).unwrap().is_empty(), "idempotent");
        let view = messages::get(&mut conn, &keyring, t0(), alice, room_id, first).unwrap();
        assert_eq!(view.reactions[0].emoji, "👍");
        assert_eq!(view.reactions[0].user_ids, vec![bob]);
        messages::react(&mut conn, t0(), bob, room_id, first, thumbs, false).unwrap();
        assert!(messages::get(&mut conn, &keyring, t0(), alice, room_id, first).unwrap().reactions.is_empty());
        assert_eq!(messages::mark_read(&mut conn, t0(), bob, room_id, 2).unwrap().0, 2);
        assert_eq!(messages::mark_read(&mut conn, t0(), bob, room_id, 1).unwrap().0, 2, "markers only move forward");
        assert!(matches!(messages::mark_read(&mut conn, t0(), bob, room_id, 9), Err(MessagingError::Invalid(_))));
        assert_eq!(rooms::list_mine(&mut conn, bob).unwrap()[0].unread_count, 1);
    }

    fn membership_roles_and_the_room_size_limit(db) {
        let mut conn = db.conn().unwrap();
        let (owner, moderator, member, outsider, extra) = (
            user(&mut conn, "owner"), user(&mut conn, "mod"), user(&mut conn, "member"), user(&mut conn, "out"), user(&mut conn, "extra"),
        );
        let room_id = room(&mut conn, owner, &[moderator, member]);
        rooms::set_member_role(&mut conn, t0(), owner, room_id, moderator, MemberRole::Moderator).unwrap();
        assert!(matches!(rooms::add_member(&mut conn, t0(), member, room_id, outsider, MemberRole::Member, 500), Err(MessagingError::Forbidden(_))));
        assert!(matches!(rooms::add_member(&mut conn, t0(), moderator, room_id, outsider, MemberRole::Owner, 500), Err(MessagingError::Forbidden(_))));
        assert!(matches!(rooms::add_member(&mut conn, t0(), moderator, room_id, outsider, MemberRole::Member, 3), Err(MessagingError::PolicyViolation(_))));
        rooms::add_member(&mut conn, t0(), moderator, room_id, outsider, MemberRole::Member, 4).unwrap();
        assert!(matches!(rooms::add_member(&mut conn, t0(), owner, room_id, outsider, MemberRole::Member, 500), Err(MessagingError::Conflict(_))));
        assert!(matches!(rooms::create_room(&mut conn, t0(), owner, RoomName::parse("big").unwrap(), Topic::parse("").unwrap(), vec![moderator, member, outsider, extra], 4), Err(MessagingError::PolicyViolation(_))));
        assert!(matches!(rooms::remove_member(&mut conn, t0(), moderator, room_id, owner), Err(MessagingError::Forbidden(_))));
        rooms::remove_member(&mut conn, t0(), moderator, room_id, outsider).unwrap();
        assert!(matches!(rooms::leave(&mut conn, t0(), owner, room_id), Err(MessagingError::Conflict(_))), "the last owner stays");
        assert!(matches!(rooms::set_member_role(&mut conn, t0(), owner, room_id, owner, MemberRole::Member), Err(MessagingError::Conflict(_))));
        assert!(matches!(rooms::set_member_role(&mut conn, t0(), moderator, room_id, member, MemberRole::Moderator), Err(MessagingError::Forbidden(_))), "only owners change roles");
        rooms::add_member(&mut conn, t0(), owner, room_id, extra, MemberRole::Moderator, 500).unwrap();
        assert!(matches!(rooms::remove_member(&mut conn, t0(), moderator, room_id, extra), Err(MessagingError::Forbidden(_))), "a moderator cannot remove a moderator");
        assert!(matches!(rooms::update_room(&mut conn, t0(), member, room_id, Some(RoomName::parse("mine").unwrap()), None), Err(MessagingError::Forbidden(_))));
        rooms::remove_member(&mut conn, t0(), owner, room_id, extra).unwrap();
        rooms::leave(&mut conn, t0(), member, room_id).unwrap();
        let detail = rooms::room_detail(&mut conn, room_id, owner).unwrap();
        assert_eq!(detail.members.len(), 2);
        let (renamed, _) = rooms::update_room(&mut conn, t0(), moderator, room_id, Some(RoomName::parse("Ops 2").unwrap()), Some(Topic::parse("new").unwrap())).unwrap();
        assert_eq!(renamed.room.name.as_deref(), Some("Ops 2"));
        assert_eq!(renamed.room.topic.as_deref(), Some("new"));
    }

    fn a_send_renders_its_reply_and_event_exactly_as_the_database_does(db) {
        // A send renders both from the values in hand (no read-back): they must match what
        // a fetch and the event log render from the stored rows, for every kind of message.
        let dir = tempfile::tempdir().unwrap();
        let state = state(db, Keyring::generate().unwrap(), dir.path());
        let (alice, bob, room_id) = {
            let mut conn = db.conn().unwrap();
            let (alice, bob) = (user(&mut conn, "alice"), user(&mut conn, "bob"));
            (alice, bob, room(&mut conn, alice, &[bob]))
        };
        let attachment = |name: &'static str| upload_text(&state, room_id, alice, name, b"file").id;
        let mut conn = db.conn().unwrap();
        let first = messages::send(&mut conn, &state.keyring, t0(), alice, room_id, input("plain", "p")).unwrap();
        let inputs = vec![
            input("plain again", "p2"),
            NewMessageInput { expires_in: Some(std::time::Duration::from_secs(300)), ..input("expiring", "e") },
            NewMessageInput { burn_after_read: Some(std::time::Duration::from_secs(60)), ..input("burning", "b") },
            NewMessageInput { reply_to_id: Some(first.message.id), attachment_id: Some(attachment("a.txt")), ..input("reply with file", "r") },
            NewMessageInput {
                attachment_id: Some(attachment("b.txt")),
                burn_after_read: Some(std::time::Duration::from_secs(60)),
                expires_in: Some(std::time::Duration::from_secs(600)),
                ..input("burning file", "bf")
            },
        ];
        let mut sends = vec![first];
        for i in inputs {
            sends.push(messages::send(&mut conn, &state.keyring, t0(), alice, room_id, i).unwrap());
        }
        for (n, send) in sends.into_iter().enumerate() {
            let live = send.published[0].rendered.clone().expect("a send renders its event");
            let stored = conclave_messaging::realtime::render::render_one(&mut conn, &state.keyring, room_id, send.published[0].seq, t0()).unwrap().unwrap();
            assert_eq!(*live, stored, "send {n}: the live event");
            // The sender's view, fetched (a read by the sender starts no timer).
            let fetched = messages::get(&mut conn, &state.keyring, t0(), alice, room_id, send.message.id).unwrap();
            assert_eq!(serde_json::to_value(&send.message).unwrap(), serde_json::to_value(&fetched).unwrap(), "send {n}: the reply");
            assert_eq!(send.published[0].recipients.len(), 2, "send {n}: every member");
            assert!(send.published[0].recipients.contains(&bob));
        }
    }

    fn a_burn_on_read_attachment_is_read_by_downloading_it(db) {
        let dir = tempfile::tempdir().unwrap();
        let state = state(db, Keyring::generate().unwrap(), dir.path());
        let (alice, bob, room_id) = {
            let mut conn = db.conn().unwrap();
            let (alice, bob) = (user(&mut conn, "alice"), user(&mut conn, "bob"));
            (alice, bob, room(&mut conn, alice, &[bob]))
        };
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let body = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(actix_web::web::Bytes::from_static(b"secret file"))]);
            let upload = Upload { room_id, uploader: alice, name: "s.txt".into(), content_type: "text/plain".into(), declared_len: None };
            let view = attachments::upload(&state, t0(), upload, body).await.unwrap();
            let burning = NewMessageInput { attachment_id: Some(view.id), burn_after_read: Some(std::time::Duration::from_secs(60)), ..input("see file", "b") };
            let sent = messages::send(&mut db.conn().unwrap(), &state.keyring, t0(), alice, room_id, burning).unwrap();
            // Events leave the file out as they leave the text out.
            let live = conclave_messaging::realtime::render::render_one(&mut db.conn().unwrap(), &state.keyring, room_id, sent.published[0].seq, t0()).unwrap().unwrap();
            assert!(!live.json.contains("s.txt"), "{}", live.json);
            // Downloading is reading: it starts Bob's timer (the test clock stands at t0).
            attachments::download(&state, bob, room_id, view.id).await.unwrap();
            let later = t0().plus(std::time::Duration::from_secs(61));
            assert!(matches!(messages::get(&mut db.conn().unwrap(), &state.keyring, later, bob, room_id, sent.message.id), Err(MessagingError::NotFound)));
        });
    }

    fn the_file_policy_refuses_uploads_and_sends(db) {
        let dir = tempfile::tempdir().unwrap();
        let state = state(db, Keyring::generate().unwrap(), dir.path());
        let (alice, room_id) = alice_alone(db);
        let set_org = |policy: conclave_core::Policy| {
            conclave_policy::set_org_policy(&mut db.conn().unwrap(), &conclave_core::AuditContext::system("test"), t0(), policy).unwrap();
        };
        let upload = |name: &str, content_type: &str, bytes: usize| {
            let body = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(actix_web::web::Bytes::from(vec![7u8; bytes]))]);
            let upload = Upload { room_id, uploader: alice, name: name.into(), content_type: content_type.into(), declared_len: None };
            attachments::upload(&state, t0(), upload, body)
        };
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let allowed = upload("ok.png", "image/png", 10).await.unwrap();
            set_org(conclave_core::Policy {
                file_max_bytes: 100,
                file_types_allowed: Some(std::collections::BTreeSet::from(["image/*".to_owned()])),
                ..conclave_core::Policy::default()
            });
            // Too large: refused while streaming (no Content-Length was declared).
            assert!(matches!(upload("big.png", "image/png", 101).await, Err(MessagingError::TooLarge(_))));
            match upload("x.pdf", "application/pdf", 10).await {
                Err(MessagingError::PolicyViolation(m)) => assert!(m.contains("file_types_allowed"), "{m}"),
                other => panic!("{:?}", other.map(|v| v.id)),
            }
            // Sharing turned off: an upload made before cannot be sent any more.
            set_org(conclave_core::Policy { files_enabled: false, ..conclave_core::Policy::default() });
            assert!(matches!(upload("y.png", "image/png", 10).await, Err(MessagingError::PolicyViolation(_))));
            let with_file = NewMessageInput { attachment_id: Some(allowed.id), ..input("here", "f") };
            match messages::send(&mut db.conn().unwrap(), &state.keyring, t0(), alice, room_id, with_file) {
                Err(MessagingError::PolicyViolation(m)) => assert!(m.contains("files_enabled"), "{m}"),
                other => panic!("{:?}", other.map(|s| s.message.id)),
            }
            assert_eq!(std::fs::read_dir(dir.path().join(room_id.to_string())).unwrap().count(), 1, "refused uploads left no file");
        });
    }

    fn attachments_round_trip_encrypted_with_their_checksum(db) {
        let dir = tempfile::tempdir().unwrap();
        let state = state(db, Keyring::generate().unwrap(), dir.path());
        let (alice, eve, room_id) = {
            let mut conn = db.conn().unwrap();
            let (alice, eve) = (user(&mut conn, "alice"), user(&mut conn, "eve"));
            (alice, eve, room(&mut conn, alice, &[]))
        };
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            // Streamed in odd-sized pieces, as a network delivers it.
            let pieces: Vec<Result<actix_web::web::Bytes, std::io::Error>> =
                data.chunks(7_777).map(|c| Ok(actix_web::web::Bytes::copy_from_slice(c))).collect();
            let upload = Upload { room_id, uploader: alice, name: "plan.bin".into(), content_type: "application/octet-stream".into(), declared_len: None };
            let view = attachments::upload(&state, t0(), upload, futures_util::stream::iter(pieces)).await.unwrap();
            use sha2::Digest;
            assert_eq!(view.sha256, hex::encode(sha2::Sha256::digest(&data)));
            assert_eq!(view.size_bytes, 200_000);
            let stored = std::fs::read_dir(dir.path().join(room_id.to_string())).unwrap().next().unwrap().unwrap().path();
            let raw = std::fs::read(&stored).unwrap();
            assert!(!raw.windows(64).any(|w| data.windows(64).next() == Some(w)), "no plaintext on disk");

            let download = attachments::download(&state, alice, room_id, view.id).await.unwrap();
            use futures_util::StreamExt;
            let chunks: Vec<_> = download.body.collect().await;
            let mut back = Vec::new();
            for chunk in chunks {
                back.extend_from_slice(&chunk.unwrap());
            }
            assert_eq!(back, data);
            assert!(matches!(attachments::download(&state, eve, room_id, view.id).await, Err(MessagingError::NotFound)));

            // Before it is sent, only the uploader sees it; then every member; once its
            // message is deleted, nobody.
            let bob = {
                let mut conn = db.conn().unwrap();
                let bob = user(&mut conn, "bob");
                rooms::add_member(&mut conn, t0(), alice, room_id, bob, MemberRole::Member, 500).unwrap();
                bob
            };
            assert!(matches!(attachments::download(&state, bob, room_id, view.id).await, Err(MessagingError::NotFound)));
            let mut conn = db.conn().unwrap();
            let with_file = NewMessageInput { attachment_id: Some(view.id), ..input("see attached", "att") };
            let sent = messages::send(&mut conn, &state.keyring, t0(), alice, room_id, with_file).unwrap();
            assert_eq!(sent.message.attachment.unwrap().sha256, view.sha256);
            assert!(attachments::download(&state, bob, room_id, view.id).await.is_ok());
            messages::delete(&mut conn, t0(), alice, room_id, sent.message.id).unwrap();
            assert!(matches!(attachments::download(&state, bob, room_id, view.id).await, Err(MessagingError::NotFound)));
            assert!(matches!(attachments::download(&state, alice, room_id, view.id).await, Err(MessagingError::NotFound)));

            // Oversize: refused, and nothing is left behind.
            let big: Vec<Result<actix_web::web::Bytes, std::io::Error>> =
                (0..20).map(|_| Ok(actix_web::web::Bytes::from(vec![1u8; 64 * 1024]))).collect();
            let upload = Upload { room_id, uploader: alice, name: "big.bin".into(), content_type: "application/octet-stream".into(), declared_len: None };
            assert!(matches!(attachments::upload(&state, t0(), upload, futures_util::stream::iter(big)).await, Err(MessagingError::TooLarge(_))));
            assert_eq!(std::fs::read_dir(dir.path().join(room_id.to_string())).unwrap().count(), 1, "no partial file");
        });
    }

    fn rooms_per_user_are_capped_on_create_direct_and_add(db) {
        let mut conn = db.conn().unwrap();
        let (alice, bob, carol, dave) = (user(&mut conn, "alice"), user(&mut conn, "bob"), user(&mut conn, "carol"), user(&mut conn, "dave"));
        let limits = rooms::RoomLimits { max_members: 500, max_rooms_per_user: 2 };
        let name = || RoomName::parse("Ops").unwrap();
        let topic = || Topic::parse("").unwrap();
        let full = |result: Result<_, MessagingError>| matches!(result, Err(MessagingError::PolicyViolation(ref m)) if m.contains("most rooms"));
        let (first, _) = rooms::create_room(&mut conn, t0(), alice, name(), topic(), vec![], limits).unwrap();
        let (direct, _) = rooms::open_direct(&mut conn, t0(), alice, bob, 2).unwrap();
        // Alice is in two: a third room, a new direct conversation, being added or named
        // as a member are all refused, and nothing of them is left behind.
        assert!(full(rooms::create_room(&mut conn, t0(), alice, name(), topic(), vec![], limits).map(|_| ())));
        assert!(full(rooms::open_direct(&mut conn, t0(), carol, alice, 2).map(|_| ())));
        let (carols, _) = rooms::create_room(&mut conn, t0(), carol, name(), topic(), vec![], limits).unwrap();
        assert!(full(rooms::add_member(&mut conn, t0(), carol, carols.room.id, alice, MemberRole::Member, limits).map(|_| ())));
        assert!(full(rooms::create_room(&mut conn, t0(), dave, name(), topic(), vec![alice], limits).map(|_| ())));
        assert!(rooms::list_mine(&mut conn, dave).unwrap().is_empty(), "the refused room was not created");
        assert_eq!(rooms::list_mine(&mut conn, alice).unwrap().len(), 2);
        // The existing direct conversation still opens; leaving a room frees a place.
        assert_eq!(rooms::open_direct(&mut conn, t0(), bob, alice, 2).unwrap().0.room.id, direct.room.id);
        rooms::leave(&mut conn, t0(), alice, first.room.id).unwrap();
        rooms::add_member(&mut conn, t0(), carol, carols.room.id, alice, MemberRole::Member, limits).unwrap();
        assert_eq!(rooms::list_mine(&mut conn, alice).unwrap().len(), 2);
    }
}

/// Two states with their own hubs on one PostgreSQL database stand for two nodes: an
/// event published through A reaches a connection on B through LISTEN/NOTIFY; when B's
/// listening connection is killed, B closes its connections (so clients resume from the
/// log) once it listens again.
#[test]
fn events_cross_nodes_and_a_lost_listener_makes_local_clients_resume() {
    use conclave_messaging::realtime::{self, fanout};
    use std::time::{Duration, Instant};
    let test_db = conclave_testkit::TestDb::new(conclave_testkit::TestBackend::Postgres);
    let dir = tempfile::tempdir().unwrap();
    let node_a = state(&test_db.db, Keyring::generate().unwrap(), dir.path());
    let mut node_b = node_a.clone();
    node_b.hub = conclave_messaging::Hub::default();
    let mut conn = test_db.db.conn().unwrap();
    let alice = user(&mut conn, "alice");
    let room_id = room(&mut conn, alice, &[]);
    let sent = messages::send(
        &mut conn,
        &node_a.keyring,
        t0(),
        alice,
        room_id,
        input("hello", "k1"),
    )
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();

    fanout::spawn_listener(node_b.clone(), test_db.url.clone()).unwrap();
    let (_, mut queue) = node_b.hub.register(alice, 1024);
    // The listener may not listen yet: announce until B delivers (duplicates are the
    // client's to drop, as after any resume).
    let deadline = Instant::now() + Duration::from_secs(60);
    let delivered = loop {
        assert!(Instant::now() < deadline, "no cross-node delivery");
        runtime.block_on(realtime::publish(&node_a, sent.published.clone()));
        std::thread::sleep(Duration::from_millis(100));
        if let Ok(delivery) = queue.try_recv() {
            break delivery;
        }
    };
    assert_eq!(
        (delivered.room_id, delivered.seq),
        (room_id, sent.published[0].seq)
    );
    assert!(
        delivered.json.contains("message.created"),
        "{}",
        delivered.json
    );
    assert!(
        node_a.hub.is_idle(),
        "A had no connection and delivered nothing locally"
    );
    // A node skips its own announcements, and recipients with no connection here.
    let own = fanout::Notice {
        node: node_b.hub.node_id(),
        room_id,
        seq: sent.published[0].seq,
        recipients: vec![alice],
    };
    assert_eq!(fanout::deliver(&node_b, &own).unwrap(), 0);
    let elsewhere = fanout::Notice {
        node: node_a.hub.node_id(),
        recipients: vec![UserId::new()],
        ..own.clone()
    };
    assert_eq!(fanout::deliver(&node_b, &elsewhere).unwrap(), 0);
    let for_alice = fanout::Notice {
        node: node_a.hub.node_id(),
        ..own
    };
    assert_eq!(fanout::deliver(&node_b, &for_alice).unwrap(), 1);

    // Kill every other session of this database, the listener's among them.
    diesel::sql_query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(&mut conn)
    .unwrap();
    let closed = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), async {
            while queue.recv().await.is_some() {}
        })
        .await
    });
    assert!(
        closed.is_ok(),
        "B's connection was not closed after the listener came back"
    );
    assert_eq!(node_b.hub.connection_count(), 0);
}
