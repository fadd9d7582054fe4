//! Reading and verifying the audit log, on both backends.

use conclave_audit::{checkpoint, query, verify};
use conclave_core::{AuditContext, AuditOutcome, NewAuditEvent, Timestamp, UserId};
use conclave_crypto::CheckpointKey;
use conclave_store::audit::{AuditFilter, append};
use conclave_testkit::backend_tests;
use diesel::prelude::*;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_micros(1_800_000_000_000_000 + seconds * 1_000_000)
}

fn event(action: &'static str, target: &str) -> NewAuditEvent {
    NewAuditEvent {
        action,
        target_kind: Some("user"),
        target_id: Some(target.into()),
        outcome: AuditOutcome::Success,
        details: "{\"before\":1,\"after\":2}".into(),
    }
}

backend_tests! {
    fn filters_and_cursor_paging(db) {
        let mut conn = db.conn().unwrap();
        let alice = UserId::new();
        let by_alice = AuditContext { actor_id: Some(alice), actor_name: "alice".into(), client_addr: None, api_path: None };
        for i in 0..10 {
            let context = if i % 2 == 0 { by_alice.clone() } else { AuditContext::system("test") };
            let action = if i < 5 { "user.create" } else { "user.suspend" };
            append(&mut conn, &context, &event(action, &format!("t{i}")), at(i)).unwrap();
        }
        let all = query(&mut conn, &AuditFilter::default(), 0, 4).unwrap();
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
        let next = query(&mut conn, &AuditFilter::default(), 4, 100).unwrap();
        assert_eq!(next.first().map(|e| e.seq), Some(5));
        assert_eq!(next.len(), 6);
        assert_eq!(next[0].details["after"], 2, "details come back as JSON");
        let mine = AuditFilter { actor_id: Some(alice.to_string()), ..Default::default() };
        assert_eq!(query(&mut conn, &mine, 0, 100).unwrap().len(), 5);
        let suspends = AuditFilter { action: Some("user.suspend".into()), from: Some(at(6)), until: Some(at(9)), ..Default::default() };
        assert_eq!(query(&mut conn, &suspends, 0, 100).unwrap().iter().map(|e| e.seq).collect::<Vec<_>>(), [7, 8, 9]);
        let target = AuditFilter { target_id: Some("t3".into()), ..Default::default() };
        assert_eq!(query(&mut conn, &target, 0, 100).unwrap().len(), 1);
    }

    fn verification_names_the_first_bad_row(db) {
        use conclave_store::schema::audit_events::dsl::*;
        let mut conn = db.conn().unwrap();
        for i in 0..5 {
            append(&mut conn, &AuditContext::system("test"), &event("user.create", &format!("t{i}")), at(i)).unwrap();
        }
        let key = CheckpointKey::generate().unwrap();
        let intact = verify(&mut conn, &key).unwrap();
        assert!(intact.intact);
        assert_eq!(intact.events, 5);
        diesel::update(audit_events.find(3)).set(action.eq("user.delete")).execute(&mut *conn).unwrap();
        let broken = verify(&mut conn, &key).unwrap();
        assert!(!broken.intact);
        assert_eq!(broken.first_bad_seq, Some(3));
    }

    fn signed_checkpoints_catch_a_truncated_tail(db) {
        use conclave_store::schema::audit_events::dsl::*;
        let mut conn = db.conn().unwrap();
        let key = CheckpointKey::generate().unwrap();
        assert_eq!(checkpoint(&mut conn, &key, at(0)).unwrap(), None, "nothing to sign yet");
        for i in 0..6 {
            append(&mut conn, &AuditContext::system("test"), &event("user.create", &format!("t{i}")), at(i)).unwrap();
        }
        assert_eq!(checkpoint(&mut conn, &key, at(10)).unwrap(), Some(6));
        assert_eq!(checkpoint(&mut conn, &key, at(11)).unwrap(), None, "only when the chain moved");
        let verified = verify(&mut conn, &key).unwrap();
        assert!(verified.intact && verified.checkpoints == 1, "{verified:?}");
        // Cutting off the last two rows leaves a consistent chain, but not the checkpoint.
        diesel::delete(audit_events.filter(seq.gt(4))).execute(&mut *conn).unwrap();
        let truncated = verify(&mut conn, &key).unwrap();
        assert!(!truncated.intact);
        assert_eq!(truncated.first_bad_seq, Some(5), "{truncated:?}");
        assert!(truncated.reason.unwrap().contains("truncated"));
        // A checkpoint verified with another key (or forged) fails too.
        let other = CheckpointKey::generate().unwrap();
        let forged = verify(&mut conn, &other).unwrap();
        assert!(!forged.intact);
        assert!(forged.reason.unwrap().contains("signature"));
    }
}
