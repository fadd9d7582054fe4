//! Compliance exports end to end inside the services, on SQLite and PostgreSQL: a
//! conversation with every kind of event exported in each format by the real job runner
//! over the messaging service's archive source, the signed manifest verified (and a
//! tampered bundle refused), a hold-scoped export, and a run that dies half way resumed
//! by another worker into exactly the output of an uninterrupted one.

mod common;

use common::{input, room, state, t0, user};
use conclave_audit::exports::{
    self, ArchiveSource, ExportError, ExportRequest, JobScope, ReadAhead, RoomArchive, RoomSink,
    Verification,
};
use conclave_core::{AuditContext, Emoji, ManualClock, MessageText, RoomId, Timestamp};
use conclave_crypto::{CheckpointKey, Keyring};
use conclave_messaging::archive::ConversationArchive;
use conclave_messaging::attachments::{self, Upload};
use conclave_messaging::messages::{self, NewMessageInput};
use conclave_messaging::rooms;
use conclave_store::DbConnection;
use conclave_testkit::backend_tests;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

fn at(seconds: u64) -> Timestamp {
    t0().plus(Duration::from_secs(seconds))
}

fn officer() -> AuditContext {
    AuditContext::system("test")
}

/// Two rooms: one with every kind of event, one with a single message.
fn conversation(db: &conclave_store::Db, dir: &Path, keyring: &Keyring) -> (RoomId, RoomId) {
    let state = state(db, keyring.clone(), dir);
    let mut conn = db.conn().unwrap();
    let (alice, bob, carol) = (
        user(&mut conn, "alice"),
        user(&mut conn, "bob"),
        user(&mut conn, "carol"),
    );
    let busy = room(&mut conn, alice, &[bob]);
    let quiet = room(&mut conn, bob, &[alice]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let upload = Upload {
        room_id: busy,
        uploader: alice,
        name: "plan, \"final\".txt".into(),
        content_type: "text/plain".into(),
        declared_len: None,
    };
    let body = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(
        actix_web::web::Bytes::from_static(b"the plan"),
    )]);
    let file = runtime
        .block_on(attachments::upload(&state, at(1), upload, body))
        .unwrap();
    let first = NewMessageInput {
        attachment_id: Some(file.id),
        ..input("Grüße, \"team\"\nline two", "m1")
    };
    let first = messages::send(&mut conn, keyring, at(2), alice, busy, first)
        .unwrap()
        .message
        .id;
    messages::edit(
        &mut conn,
        keyring,
        at(3),
        alice,
        busy,
        first,
        MessageText::parse("edited", 64).unwrap(),
    )
    .unwrap();
    messages::react(
        &mut conn,
        at(4),
        bob,
        busy,
        first,
        Emoji::parse("👍").unwrap(),
        true,
    )
    .unwrap();
    rooms::add_member(
        &mut conn,
        at(5),
        alice,
        busy,
        carol,
        conclave_core::MemberRole::Member,
        500,
    )
    .unwrap();
    let second = messages::send(
        &mut conn,
        keyring,
        at(6),
        bob,
        busy,
        input("to be deleted", "m2"),
    )
    .unwrap()
    .message
    .id;
    messages::delete(&mut conn, at(7), bob, busy, second).unwrap();
    messages::delete(&mut conn, at(8), alice, busy, first).unwrap();
    rooms::leave(&mut conn, at(8), carol, busy).unwrap();
    messages::send(&mut conn, keyring, at(9), bob, quiet, input("quiet", "q1")).unwrap();
    // An expiring message, and a burn-on-read one Bob reads: both end, announced.
    let expiring = NewMessageInput {
        expires_in: Some(Duration::from_secs(60)),
        ..input("soon gone", "e1")
    };
    messages::send(&mut conn, keyring, at(10), alice, busy, expiring).unwrap();
    let burning = NewMessageInput {
        burn_after_read: Some(Duration::from_secs(60)),
        ..input("read once", "b1")
    };
    let burning = messages::send(&mut conn, keyring, at(11), alice, busy, burning)
        .unwrap()
        .message
        .id;
    messages::get(&mut conn, keyring, at(12), bob, busy, burning).unwrap();
    conclave_messaging::expiry::announce_due(&mut conn, at(80)).unwrap();
    (busy, quiet)
}

fn request(format: &str) -> ExportRequest {
    ExportRequest {
        format: format.into(),
        from: t0(),
        until: at(100),
        rooms: Vec::new(),
        custodians: Vec::new(),
        hold_id: None,
        include_files: true,
    }
}

/// Every file of a bundle but its manifest, by path, with what differs between two runs
/// of the same export replaced: the job's id (which names the bundle in its files) and
/// EML's random MIME boundary.
fn bundle_texts(bundle: &Path) -> Vec<(String, String)> {
    fn walk(root: &Path, dir: &Path, id: &str, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.strip_prefix(root).unwrap().display().to_string();
            if path.is_dir() {
                walk(root, &path, id, out);
            } else if !name.starts_with("manifest") {
                let mut text = std::fs::read_to_string(&path).unwrap().replace(id, "ID");
                let boundary = text
                    .split_once("boundary=\"")
                    .and_then(|(_, rest)| rest.split_once('"'))
                    .map(|(boundary, _)| boundary.to_owned());
                if let Some(boundary) = boundary {
                    text = text.replace(&boundary, "BOUNDARY");
                }
                out.push((name, text));
            }
        }
    }
    let id = bundle.file_name().unwrap().to_str().unwrap();
    let mut texts = Vec::new();
    walk(bundle, bundle, id, &mut texts);
    texts.sort();
    texts
}

/// Reading ahead as a server on two cores does.
fn two_readers(db: &conclave_store::Db) -> ReadAhead {
    ReadAhead {
        backend: db.backend().clone(),
        readers: 2,
    }
}

/// Starts and runs one export; returns its bundle.
fn export(
    conn: &mut DbConnection,
    source: &dyn ArchiveSource,
    read_ahead: Option<&ReadAhead>,
    key: &CheckpointKey,
    exports_dir: &Path,
    request: &ExportRequest,
) -> std::path::PathBuf {
    let job = exports::start(conn, &officer(), at(200), request, None).unwrap();
    let ran = exports::run_next(
        conn,
        source,
        read_ahead,
        key,
        exports_dir,
        &ManualClock::starting_at(at(200)),
    )
    .unwrap();
    assert_eq!(ran.as_deref(), Some(job.id.as_str()));
    let done = exports::get(conn, &job.id).unwrap();
    assert_eq!(done.status, "done", "{:?}", done.error);
    exports::bundle_dir(exports_dir, &job.id).unwrap()
}

/// Fails on its second room once, as a worker dying half way would.
struct DiesOnce<'a> {
    inner: &'a ConversationArchive,
    died: AtomicBool,
}

impl ArchiveSource for DiesOnce<'_> {
    fn rooms(&self, conn: &mut DbConnection, scope: &JobScope) -> Result<Vec<String>, ExportError> {
        self.inner.rooms(conn, scope)
    }

    fn room(
        &self,
        conn: &mut DbConnection,
        room_id: &str,
        scope: &JobScope,
        files: Option<&Path>,
        sink: &mut dyn RoomSink,
    ) -> Result<Option<RoomArchive>, ExportError> {
        let first = self.inner.rooms(conn, scope)?.first().cloned();
        if first.as_deref() != Some(room_id) && !self.died.swap(true, Ordering::SeqCst) {
            return Err(ExportError::Source("the worker died".into()));
        }
        self.inner.room(conn, room_id, scope, files, sink)
    }
}

backend_tests! {
    fn every_format_exports_the_whole_record_with_a_signed_manifest(db) {
        let (files, exports_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let keyring = Keyring::generate().unwrap();
        let (busy, _) = conversation(db, files.path(), &keyring);
        let source = ConversationArchive { keyring: std::sync::Arc::new(keyring), attachments_dir: files.path().to_path_buf() };
        let key = CheckpointKey::generate().unwrap();
        let read_ahead = two_readers(db);
        let mut conn = db.conn().unwrap();

        let jsonl = export(&mut conn, &source, Some(&read_ahead), &key, exports_dir.path(), &request("jsonl"));
        let text = std::fs::read_to_string(jsonl.join("messages.jsonl")).unwrap();
        let events: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let kinds: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
        for kind in ["member_joined", "message", "edited", "reaction", "deleted", "file_deleted", "expired", "burned", "member_left"] {
            assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
        }
        let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(jsonl.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(manifest["events_by_kind"]["edited"], 1, "counts per kind: {manifest}");
        assert!(text.contains("Grüße"), "the original text");
        assert!(text.contains("edited") && text.contains("to be deleted"), "edits and what was deleted");
        assert!(jsonl.join("files").exists(), "included files");
        assert_eq!(exports::verify(&jsonl, Some(&key.public_key_base64())).unwrap(), Verification::Intact { files: 2, events: events.len() as u64 });

        let csv = export(&mut conn, &source, Some(&read_ahead), &key, exports_dir.path(), &request("csv"));
        let mut reader = csv::Reader::from_path(csv.join("messages.csv")).unwrap();
        let header = reader.headers().unwrap().clone();
        assert_eq!(&header[0], "Post Creation Time");
        let types: Vec<String> = reader.records().map(|r| r.unwrap()[2].to_owned()).collect();
        for update in ["EditedOriginalMsg", "EditedNewMsg", "Deleted", "Expired", "FileDeleted", "BurnedOnRead"] {
            assert!(types.iter().any(|t| t == update), "{update} missing from {types:?}");
        }

        let eml = export(&mut conn, &source, Some(&read_ahead), &key, exports_dir.path(), &request("eml"));
        let day = eml.join("eml").join(busy.to_string()).read_dir().unwrap().count();
        assert_eq!(day, 1, "one message per conversation per day");

        let xml = export(&mut conn, &source, Some(&read_ahead), &key, exports_dir.path(), &request("xml"));
        let checked = std::process::Command::new("xmllint")
            .args(["--noout", "--schema"])
            .arg(xml.join("conclave-archive.xsd"))
            .arg(xml.join("archive.xml"))
            .output()
            .expect("xmllint (Debian's libxml2-utils)");
        assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stderr));
        assert!(matches!(exports::verify(&xml, None).unwrap(), Verification::Intact { .. }));

        // Tampering with any file, adding one, or trusting another key is caught.
        std::fs::write(xml.join("archive.xml"), "<x/>").unwrap();
        assert!(matches!(exports::verify(&xml, None).unwrap(), Verification::Broken(why) if why.contains("archive.xml")));
        std::fs::write(csv.join("extra.txt"), "x").unwrap();
        assert!(matches!(exports::verify(&csv, None).unwrap(), Verification::Broken(why) if why.contains("extra.txt")));
        let other = CheckpointKey::generate().unwrap();
        assert!(matches!(exports::verify(&jsonl, Some(&other.public_key_base64())).unwrap(), Verification::Broken(_)));
        // Starting and finishing are audited.
        let filter = conclave_store::audit::AuditFilter { action: Some("export.finish".into()), ..Default::default() };
        assert_eq!(conclave_store::audit::query(&mut conn, &filter, 0, 10).unwrap().len(), 4);
    }

    fn scheduled_exports_cover_every_event_once_with_messages_arriving_between_them(db) {
        let (files, exports_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let keyring = Keyring::generate().unwrap();
        let source = ConversationArchive { keyring: std::sync::Arc::new(keyring.clone()), attachments_dir: files.path().to_path_buf() };
        let key = CheckpointKey::generate().unwrap();
        let read_ahead = two_readers(db);
        let mut conn = db.conn().unwrap();
        let (alice, bob) = (user(&mut conn, "alice"), user(&mut conn, "bob"));
        let room_id = room(&mut conn, alice, &[bob]);
        let schedule = exports::Schedule { name: "hourly".into(), format: conclave_audit::archive::ArchiveFormat::Jsonl, every: Duration::from_secs(3600), include_files: false };
        let hour = |n: u64| t0().plus(Duration::from_secs(3600 * n));
        let mut sent = 0;
        let mut exported = Vec::new();
        for run in 1..=3u64 {
            // Messages arrive, some right at the window's edge.
            for i in 0..3u64 {
                let at = hour(run - 1).plus(Duration::from_secs(1200 * i + 1));
                messages::send(&mut conn, &keyring, at, alice, room_id, input(&format!("m{run}-{i}"), &format!("k{run}-{i}"))).unwrap();
                sent += 1;
            }
            // A window's job starts once sends stamped inside it have had time to land.
            let settled = hour(run).plus(exports::SCHEDULE_SETTLE);
            if run > 1 {
                assert!(exports::start_scheduled(&mut conn, &schedule, hour(run)).unwrap().is_none(), "not as the window ends");
                assert!(exports::start_scheduled(&mut conn, &schedule, settled.minus(Duration::from_secs(1))).unwrap().is_none(), "not before it settles");
            }
            let job = exports::start_scheduled(&mut conn, &schedule, settled).unwrap().expect("a job when the window has settled");
            assert_eq!((job.from, job.until), (hour(run - 1), hour(run)), "consecutive windows");
            exports::run_next(&mut conn, &source, Some(&read_ahead), &key, exports_dir.path(), &ManualClock::starting_at(settled)).unwrap();
            let text = std::fs::read_to_string(exports::bundle_dir(exports_dir.path(), &job.id).unwrap().join("messages.jsonl")).unwrap();
            for line in text.lines() {
                let event: serde_json::Value = serde_json::from_str(line).unwrap();
                if event["event"] == "message" {
                    exported.push(event["text"].as_str().unwrap().to_owned());
                }
            }
        }
        let mut unique = exported.clone();
        unique.sort();
        unique.dedup();
        assert_eq!((exported.len(), unique.len()), (sent, sent), "every message once: {exported:?}");
    }

    fn bad_requests_are_refused_and_start_nothing(db) {
        let mut conn = db.conn().unwrap();
        for bad in [
            ExportRequest { format: "pdf".into(), ..request("jsonl") },
            ExportRequest { from: at(100), until: at(100), ..request("jsonl") },
            ExportRequest { until: at(100_000), ..request("jsonl") },
            ExportRequest { rooms: vec![RoomId::new()], ..request("jsonl") },
            ExportRequest { hold_id: Some("no-such-hold".into()), ..request("jsonl") },
        ] {
            assert!(matches!(exports::start(&mut conn, &officer(), at(200), &bad, None), Err(ExportError::Invalid(_))));
        }
        assert!(exports::list(&mut conn).unwrap().is_empty());
    }

    fn a_run_that_dies_half_way_is_resumed_into_the_same_output(db) {
        let (files, exports_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let keyring = Keyring::generate().unwrap();
        conversation(db, files.path(), &keyring);
        let source = ConversationArchive { keyring: std::sync::Arc::new(keyring), attachments_dir: files.path().to_path_buf() };
        let key = CheckpointKey::generate().unwrap();
        let read_ahead = two_readers(db);
        let mut conn = db.conn().unwrap();
        for format in ["jsonl", "csv", "xml"] {
            let clean = export(&mut conn, &source, Some(&read_ahead), &key, exports_dir.path(), &request(format));
            let job = exports::start(&mut conn, &officer(), at(200), &request(format), None).unwrap();
            let dying = DiesOnce { inner: &source, died: AtomicBool::new(false) };
            // The worker claims the job, writes the first room, and dies on the second.
            let claimed = conclave_store::exports::claim(&mut conn, at(300), at(300).minus(exports::STALE_AFTER)).unwrap().unwrap();
            assert!(exports::run(&mut conn, &dying, Some(&read_ahead), &key, exports_dir.path(), &ManualClock::starting_at(at(300)), &claimed).is_err());
            assert_eq!(exports::get(&mut conn, &job.id).unwrap().progress.rooms_done, 1);
            // Nobody takes it over while its heartbeat is fresh; then another worker does.
            assert_eq!(exports::run_next(&mut conn, &source, Some(&read_ahead), &key, exports_dir.path(), &ManualClock::starting_at(at(330))).unwrap(), None);
            let later = ManualClock::starting_at(at(300).plus(exports::STALE_AFTER).plus(Duration::from_secs(1)));
            assert_eq!(exports::run_next(&mut conn, &source, Some(&read_ahead), &key, exports_dir.path(), &later).unwrap(), Some(job.id.clone()));
            let resumed = exports::bundle_dir(exports_dir.path(), &job.id).unwrap();
            let name = match format { "jsonl" => "messages.jsonl", "csv" => "messages.csv", _ => "archive.xml" };
            let (a, b) = (std::fs::read_to_string(clean.join(name)).unwrap(), std::fs::read_to_string(resumed.join(name)).unwrap());
            let strip = |s: &str| s.replace(clean.file_name().unwrap().to_str().unwrap(), "ID").replace(resumed.file_name().unwrap().to_str().unwrap(), "ID");
            assert_eq!(strip(&a), strip(&b), "{format}: resumed output differs");
            assert!(matches!(exports::verify(&resumed, None).unwrap(), Verification::Intact { .. }));
        }
    }

    fn reading_ahead_writes_exactly_what_one_connection_writes(db) {
        let (files, exports_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let keyring = Keyring::generate().unwrap();
        conversation(db, files.path(), &keyring);
        let mut conn = db.conn().unwrap();
        // More rooms than readers, one of them longer than a reader's hand-over (256
        // events), one with nothing in the window, so rooms interleave across readers.
        let (dave, erin) = (user(&mut conn, "dave"), user(&mut conn, "erin"));
        let long = room(&mut conn, dave, &[erin]);
        for i in 0..300u64 {
            let (sender, text) = if i % 3 == 0 { (erin, format!("reply {i}")) } else { (dave, format!("line {i}")) };
            messages::send(&mut conn, &keyring, at(20 + i / 10), sender, long, input(&text, &format!("l{i}"))).unwrap();
        }
        for n in 0..3u64 {
            let short = room(&mut conn, erin, &[dave]);
            messages::send(&mut conn, &keyring, at(60 + n), erin, short, input(&format!("short {n}"), &format!("s{n}"))).unwrap();
        }
        let _empty = room(&mut conn, dave, &[]);
        let source = ConversationArchive { keyring: std::sync::Arc::new(keyring), attachments_dir: files.path().to_path_buf() };
        let key = CheckpointKey::generate().unwrap();
        let three = ReadAhead { readers: 3, ..two_readers(db) };
        for format in ["jsonl", "csv", "xml", "eml"] {
            let bundles = [None, Some(two_readers(db)), Some(three.clone())].map(|read_ahead| {
                export(&mut conn, &source, read_ahead.as_ref(), &key, exports_dir.path(), &request(format))
            });
            let contents: Vec<Vec<(String, String)>> = bundles.iter().map(|bundle| bundle_texts(bundle)).collect();
            assert!(contents[0].iter().any(|(_, text)| text.contains("line 299")), "{format}: the long room is exported");
            for (readers, other) in [(2, &contents[1]), (3, &contents[2])] {
                let names = |c: &Vec<(String, String)>| c.iter().map(|(name, _)| name.clone()).collect::<Vec<_>>();
                assert_eq!(names(other), names(&contents[0]), "{format}: {readers} readers wrote other files");
                for ((name, text), (_, one)) in other.iter().zip(&contents[0]) {
                    assert!(text == one, "{format}: {readers} readers wrote {name} differently");
                }
            }
            let counts: Vec<serde_json::Value> = bundles.iter().map(|bundle| {
                let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(bundle.join("manifest.json")).unwrap()).unwrap();
                manifest["events_by_kind"].clone()
            }).collect();
            assert_eq!((&counts[0], &counts[0]), (&counts[1], &counts[2]), "{format}: counts per kind");
        }
    }

    fn a_hold_scoped_export_covers_what_the_hold_covers(db) {
        let (files, exports_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let keyring = Keyring::generate().unwrap();
        let (busy, quiet) = conversation(db, files.path(), &keyring);
        let source = ConversationArchive { keyring: std::sync::Arc::new(keyring), attachments_dir: files.path().to_path_buf() };
        let key = CheckpointKey::generate().unwrap();
        let read_ahead = two_readers(db);
        let mut conn = db.conn().unwrap();
        let officer_id = user(&mut conn, "officer");
        let hold = conclave_policy::holds::place(&mut conn, &officer(), at(50), officer_id, &conclave_policy::holds::HoldInput {
            name: "Quiet".into(), reason: "Review".into(), custodians: vec![], rooms: vec![quiet], starts_at: None, ends_at: None,
        }).unwrap();
        let scoped = ExportRequest { hold_id: Some(hold.id), ..request("jsonl") };
        let bundle = export(&mut conn, &source, Some(&read_ahead), &key, exports_dir.path(), &scoped);
        let text = std::fs::read_to_string(bundle.join("messages.jsonl")).unwrap();
        assert!(text.contains(&quiet.to_string()) && !text.contains(&busy.to_string()), "{text}");
    }
}
