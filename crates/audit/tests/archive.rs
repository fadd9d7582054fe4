//! The compliance archive writers over one fixture conversation that has every event kind,
//! non-ASCII text, hostile names (quotes, commas, CR/LF, header-injection attempts) and an
//! attachment both included and not. Each format is read back by an independent reader:
//! serde_json, the csv crate, Python's `email` package (tests/archive_eml_check.py) and
//! xmllint against the XSD we ship. The external tools are required: CI installs them, and
//! a test that silently skipped would prove nothing.

use conclave_audit::archive::csv::{CSV_COLUMNS, CsvWriter};
use conclave_audit::archive::eml::{EmlOptions, write_conversation_day};
use conclave_audit::archive::jsonl::JsonlWriter;
use conclave_audit::archive::xml::XmlWriter;
use conclave_audit::archive::{
    ArchiveError, ArchiveEvent, AttachmentContent, AttachmentMeta, Conversation, ConversationKind,
    EventKind, ExportInfo, Person,
};
use conclave_core::Timestamp;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

// ---------------------------------------------------------------------------------------
// Fixture

/// 2026-11-25T00:00:00Z.
const DAY_START: i64 = 1_795_564_800_000_000;

fn day() -> time::Date {
    time::macros::date!(2026 - 11 - 25)
}

fn at(hour: i64, minute: i64) -> Timestamp {
    Timestamp::from_micros(DAY_START + (hour * 3600 + minute * 60) * 1_000_000 + 123_456)
}

fn alice() -> Person {
    Person {
        user_id: "u-alice".into(),
        username: "alice".into(),
        display_name: "Alice \"Al\" Smith, CFO".into(),
        email: Some("alice@example.org".into()),
    }
}

fn bob() -> Person {
    Person {
        user_id: "u-bob".into(),
        username: "bob".into(),
        display_name: "Bøb Ünïcode 日本".into(),
        email: None,
    }
}

/// Every field an attacker controls tries to inject a header.
fn eve() -> Person {
    Person {
        user_id: "u-eve".into(),
        username: "eve@corp".into(),
        display_name: "Eve\r\nBcc: victim@example.org".into(),
        email: Some("eve@example.org>\r\nBcc: <x@evil.example".into()),
    }
}

fn carol() -> Person {
    Person {
        user_id: "u-carol".into(),
        username: "carol".into(),
        display_name: "Carol, \"the\nauditor\"".into(),
        email: Some("carol@example.org".into()),
    }
}

fn room() -> Conversation {
    Conversation {
        room_id: "r-1".into(),
        kind: ConversationKind::Room,
        name: Some("Budget \"Q4\", draft\r\nBcc: eve@evil.example".into()),
    }
}

const CSV_BYTES: &[u8] = b"a,b\r\n1,2\nno final newline";
const FIRST_TEXT: &str =
    "Hello, \"world\"\r\nsecond line \u{2014} \u{fc}n\u{ef}code \u{2713} \u{65e5}\u{672c}\u{8a9e}";
const EXPIRED_TEXT: &str = "ephemeral <b>&amp;</b> ]]> bell\u{7} end";

fn included_attachment() -> AttachmentMeta {
    AttachmentMeta {
        id: "att-1".into(),
        name: "report \"final\",v2\r\n.csv".into(),
        content_type: "text/csv".into(),
        size_bytes: CSV_BYTES.len() as i64,
        sha256: "a".repeat(64),
        content: Some(AttachmentContent::Bytes(CSV_BYTES.to_vec())),
    }
}

fn metadata_only_attachment() -> AttachmentMeta {
    AttachmentMeta {
        id: "att-2".into(),
        name: "plan.pdf".into(),
        content_type: "application/pdf".into(),
        size_bytes: 1_048_576,
        sha256: "b".repeat(64),
        content: None,
    }
}

fn event(minute: i64, actor: Person, kind: EventKind, message_id: Option<&str>) -> ArchiveEvent {
    ArchiveEvent {
        at: at(9, minute),
        conversation: room().into(),
        actor: actor.into(),
        kind,
        message_id: message_id.map(Into::into),
        message_sent_at: None,
        reply_to_id: None,
        text: None,
        attachment: None,
        recipients: vec![alice(), bob(), eve(), carol()].into(),
    }
}

/// One of each event kind, in time order, all on [`day`].
fn events() -> Vec<ArchiveEvent> {
    let mut joined = event(
        0,
        alice(),
        EventKind::MemberJoined { member: carol() },
        None,
    );
    joined.recipients = vec![alice(), bob(), eve()].into();
    let mut first = event(1, alice(), EventKind::Message, Some("m1"));
    first.text = Some(FIRST_TEXT.into());
    first.attachment = Some(included_attachment());
    let mut second = event(2, bob(), EventKind::Message, Some("m2"));
    second.text = Some("=SUM(A1:A9), \"quoted\"".into());
    second.reply_to_id = Some("m1".into());
    second.attachment = Some(metadata_only_attachment());
    let mut edited = event(
        3,
        alice(),
        EventKind::Edited {
            previous_text: Some(FIRST_TEXT.into()),
            version: 2,
        },
        Some("m1"),
    );
    edited.text = Some("Hello again".into());
    edited.message_sent_at = Some(at(9, 1));
    let reacted = event(
        4,
        bob(),
        EventKind::Reaction {
            emoji: "\u{1f44d}".into(),
            added: true,
        },
        Some("m1"),
    );
    let unreacted = event(
        5,
        bob(),
        EventKind::Reaction {
            emoji: "\u{1f44d}".into(),
            added: false,
        },
        Some("m1"),
    );
    let mut burned = event(
        6,
        bob(),
        EventKind::Burned { for_user: carol() },
        Some("m2"),
    );
    burned.message_sent_at = Some(at(9, 2));
    let mut deleted = event(7, alice(), EventKind::Deleted, Some("m1"));
    deleted.text = Some("Hello again".into());
    let mut expired = event(8, eve(), EventKind::Expired, Some("m3"));
    expired.text = Some(EXPIRED_TEXT.into());
    let mut file_deleted = event(9, bob(), EventKind::FileDeleted, Some("m2"));
    file_deleted.attachment = Some(metadata_only_attachment());
    let left = event(10, eve(), EventKind::MemberLeft { member: eve() }, None);
    vec![
        joined,
        first,
        second,
        edited,
        reacted,
        unreacted,
        burned,
        deleted,
        expired,
        file_deleted,
        left,
    ]
}

// ---------------------------------------------------------------------------------------
// External tools

/// Runs `program`, failing the test with an install hint when it is missing.
fn run(program: &str, install: &str, args: &[&str]) -> std::process::Output {
    match Command::new(program).args(args).output() {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => panic!(
            "`{program}` is required by the archive format tests and is not installed: {install}"
        ),
        Err(error) => panic!("running {program}: {error}"),
    }
}

fn schema() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/conclave-archive.xsd")
}

/// xmllint's exit status validating `document` against the shipped XSD, and its stderr.
fn xmllint(document: &[u8]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("archive.xml");
    std::fs::write(&file, document).unwrap();
    let output = run(
        "xmllint",
        "apt-get install -y libxml2-utils",
        &[
            "--noout",
            "--schema",
            schema().to_str().unwrap(),
            file.to_str().unwrap(),
        ],
    );
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// What Python's `email` package makes of an EML message (see archive_eml_check.py).
fn python_reads(eml: &[u8]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("day.eml");
    std::fs::write(&file, eml).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/archive_eml_check.py");
    let output = run(
        "python3",
        "install Python 3 (apt-get install -y python3)",
        &[script.to_str().unwrap(), file.to_str().unwrap()],
    );
    assert!(
        output.status.success(),
        "python could not read the message: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(eml)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

// ---------------------------------------------------------------------------------------
// JSONL

#[test]
fn jsonl_has_every_fact_and_reads_back() {
    let mut writer = JsonlWriter::new(Vec::new());
    for event in &events() {
        writer.write_event(event).unwrap();
    }
    let bytes = writer.finish().unwrap();
    let text = String::from_utf8(bytes).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), events().len(), "one line per event");
    let names: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "member_joined",
            "message",
            "message",
            "edited",
            "reaction",
            "reaction",
            "burned",
            "deleted",
            "expired",
            "file_deleted",
            "member_left"
        ]
    );
    for line in &lines {
        assert_eq!(line["format_version"], 1);
        assert_eq!(line["conversation"]["room_id"], "r-1");
        assert_eq!(line["conversation"]["kind"], "room");
        assert_eq!(
            line["conversation"]["name"],
            "Budget \"Q4\", draft\r\nBcc: eve@evil.example"
        );
        Timestamp::parse_rfc3339(line["at"].as_str().unwrap()).unwrap();
    }
    let [
        joined,
        first,
        second,
        edited,
        reacted,
        unreacted,
        burned,
        _,
        expired,
        file_deleted,
        left,
    ] = lines.as_slice()
    else {
        unreachable!()
    };
    assert_eq!(joined["member"]["user_id"], "u-carol");
    assert_eq!(joined["member"]["display_name"], "Carol, \"the\nauditor\"");
    assert_eq!(joined["actor"]["username"], "alice");
    assert_eq!(joined["message_id"], serde_json::Value::Null);
    assert_eq!(joined["recipients"].as_array().unwrap().len(), 3);
    assert!(
        joined.get("version").is_none(),
        "kind fields only with their kind"
    );

    assert_eq!(first["at"], "2026-11-25T09:01:00.123456Z");
    assert_eq!(first["text"], FIRST_TEXT, "text is verbatim, CRLF included");
    assert_eq!(first["actor"]["email"], "alice@example.org");
    assert_eq!(first["attachment"]["included"], true);
    assert_eq!(
        first["attachment"]["path"],
        "files/att-1/report _final_,v2__.csv"
    );
    assert_eq!(first["attachment"]["size_bytes"], CSV_BYTES.len());
    assert_eq!(
        first["recipients"][2]["email"],
        "eve@example.org>\r\nBcc: <x@evil.example"
    );
    assert_eq!(second["reply_to_id"], "m1");
    assert_eq!(second["actor"]["email"], serde_json::Value::Null);
    assert_eq!(second["attachment"]["included"], false);
    assert_eq!(second["attachment"]["path"], serde_json::Value::Null);
    assert_eq!(edited["previous_text"], FIRST_TEXT);
    assert_eq!(edited["version"], 2);
    assert_eq!(edited["text"], "Hello again");
    assert_eq!(edited["message_sent_at"], "2026-11-25T09:01:00.123456Z");
    assert_eq!(reacted["emoji"], "\u{1f44d}");
    assert_eq!(reacted["added"], true);
    assert_eq!(unreacted["added"], false);
    assert_eq!(burned["for_user"]["user_id"], "u-carol");
    assert_eq!(expired["text"], EXPIRED_TEXT, "control characters kept");
    assert_eq!(file_deleted["attachment"]["id"], "att-2");
    assert_eq!(left["member"]["username"], "eve@corp");
}

#[test]
fn every_writer_rejects_an_invalid_event() {
    let mut no_message_id = events()[1].clone();
    no_message_id.message_id = None;
    let mut bad_hash = events()[1].clone();
    bad_hash.attachment.as_mut().unwrap().sha256 = "ABC".into();
    let mut first_version = events()[3].clone();
    first_version.kind = EventKind::Edited {
        previous_text: None,
        version: 1,
    };
    for bad in [no_message_id, bad_hash, first_version] {
        let invalid = |result: Result<(), ArchiveError>| {
            assert!(
                matches!(result, Err(ArchiveError::InvalidEvent(_))),
                "{result:?}"
            );
        };
        invalid(JsonlWriter::new(Vec::new()).write_event(&bad));
        invalid(CsvWriter::new(Vec::new()).unwrap().write_event(&bad));
        let mut xml = XmlWriter::new(Vec::new(), &export_info()).unwrap();
        xml.begin_conversation(&room(), at(0, 0), &[]).unwrap();
        invalid(xml.write_event(&bad));
        invalid(write_conversation_day(
            &room(),
            day(),
            &[],
            std::slice::from_ref(&bad),
            &EmlOptions::default(),
            Vec::new(),
        ));
    }
}

// ---------------------------------------------------------------------------------------
// CSV

/// Mattermost's compliance-export `posts.csv` header, in its order.
const MATTERMOST_COLUMNS: [&str; 20] = [
    "Post Creation Time",
    "Post Update Time",
    "Post Update Type",
    "Team Id",
    "Team Name",
    "Team Display Name",
    "Channel Id",
    "Channel Name",
    "Channel Display Name",
    "Channel Type",
    "User Id",
    "User Email",
    "Username",
    "Post Id",
    "Edited By Post Id",
    "Replied to Post Id",
    "Post Message",
    "Post Type",
    "User Type",
    "Previews Post Id",
];

#[test]
fn csv_has_mattermost_columns_one_row_per_event_and_reads_back() {
    let mut writer = CsvWriter::new(Vec::new()).unwrap();
    for event in &events() {
        writer.write_event(event).unwrap();
    }
    let bytes = writer.finish().unwrap();
    assert!(
        bytes.windows(2).any(|pair| pair == b"\r\n"),
        "RFC 4180 CRLF line ends"
    );
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header, CSV_COLUMNS);
    assert_eq!(&header[..20], MATTERMOST_COLUMNS);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let column = |row: &csv::StringRecord, name: &str| {
        let index = header.iter().position(|h| h == name).unwrap();
        row[index].to_owned()
    };
    let kinds: Vec<(String, String)> = rows
        .iter()
        .map(|row| (column(row, "Post Type"), column(row, "Post Update Type")))
        .collect();
    let expected = [
        ("enter", ""),
        ("message", ""),
        ("attachment", ""),
        ("message", ""),
        ("attachment", ""),
        ("message", "EditedOriginalMsg"),
        ("message", "EditedNewMsg"),
        ("reaction", "ReactionAdded"),
        ("reaction", "ReactionRemoved"),
        ("message", "BurnedOnRead"),
        ("message", "Deleted"),
        ("message", "Expired"),
        ("deleted attachment", "FileDeleted"),
        ("leave", ""),
    ];
    assert_eq!(
        kinds,
        expected
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect::<Vec<_>>()
    );
    for row in &rows {
        assert_eq!(row.len(), CSV_COLUMNS.len());
        assert_eq!(column(row, "Channel Id"), "r-1");
        assert_eq!(column(row, "Channel Type"), "private");
        assert_eq!(
            column(row, "Channel Display Name"),
            "Budget \"Q4\", draft\r\nBcc: eve@evil.example"
        );
        assert_eq!(column(row, "User Type"), "user");
        assert_eq!(column(row, "Team Id"), "");
    }
    // Joins are the member's row, with who added them in the actor columns.
    assert_eq!(column(&rows[0], "User Id"), "u-carol");
    assert_eq!(column(&rows[0], "Actor User Id"), "u-alice");
    assert_eq!(
        column(&rows[0], "Post Message"),
        "User carol (carol@example.org) joined the conversation"
    );
    // Messages: exact text (quotes, commas, CRLF, non-ASCII), ms times, exact RFC 3339.
    assert_eq!(column(&rows[1], "Post Message"), FIRST_TEXT);
    assert_eq!(column(&rows[1], "Post Id"), "m1");
    assert_eq!(
        column(&rows[1], "Post Creation Time"),
        ((at(9, 1).as_micros()) / 1_000).to_string()
    );
    assert_eq!(
        column(&rows[1], "Event Time"),
        "2026-11-25T09:01:00.123456Z"
    );
    assert_eq!(column(&rows[1], "User Email"), "alice@example.org");
    assert_eq!(
        column(&rows[1], "Recipient User Ids"),
        "u-alice;u-bob;u-eve;u-carol"
    );
    assert_eq!(
        column(&rows[2], "Post Message"),
        "report \"final\",v2\r\n.csv (files/att-1/report _final_,v2__.csv)"
    );
    assert_eq!(
        column(&rows[2], "Attachment Size"),
        CSV_BYTES.len().to_string()
    );
    assert_eq!(column(&rows[3], "Post Message"), "=SUM(A1:A9), \"quoted\"");
    assert_eq!(column(&rows[3], "Replied to Post Id"), "m1");
    assert_eq!(column(&rows[3], "Username"), "bob");
    assert_eq!(column(&rows[4], "Attachment Path"), "", "not included");
    assert_eq!(column(&rows[4], "Attachment SHA-256"), "b".repeat(64));
    // An edit: the original text, pointing at the post that replaced it, then the new.
    assert_eq!(column(&rows[5], "Post Message"), FIRST_TEXT);
    assert_eq!(column(&rows[5], "Edited By Post Id"), "m1");
    assert_eq!(column(&rows[5], "Edit Version"), "1");
    assert_eq!(
        column(&rows[5], "Post Creation Time"),
        (at(9, 1).as_micros() / 1_000).to_string(),
        "creation is the message's, not the edit's"
    );
    assert_eq!(
        column(&rows[5], "Post Update Time"),
        (at(9, 3).as_micros() / 1_000).to_string()
    );
    assert_eq!(column(&rows[6], "Post Message"), "Hello again");
    assert_eq!(column(&rows[6], "Edit Version"), "2");
    assert_eq!(column(&rows[7], "Reaction"), "\u{1f44d}");
    assert_eq!(column(&rows[9], "Subject User Id"), "u-carol");
    assert_eq!(column(&rows[11], "Post Message"), EXPIRED_TEXT);
    assert_eq!(
        column(&rows[11], "User Email"),
        "eve@example.org>\r\nBcc: <x@evil.example"
    );
    assert_eq!(column(&rows[13], "Username"), "eve@corp");
}

// ---------------------------------------------------------------------------------------
// EML

fn eml(participants: &[Person], events: &[ArchiveEvent], conversation: &Conversation) -> Vec<u8> {
    let mut out = Vec::new();
    write_conversation_day(
        conversation,
        day(),
        participants,
        events,
        &EmlOptions::default(),
        &mut out,
    )
    .unwrap();
    out
}

fn pairs(value: &serde_json::Value) -> Vec<(String, String)> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| {
            (
                pair[0].as_str().unwrap().to_owned(),
                pair[1].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn eml_is_a_clean_rfc5322_message_with_every_event_and_the_attachment() {
    let raw = eml(&[alice(), bob(), eve()], &events(), &room());
    assert!(raw.is_ascii(), "headers and body are 7-bit encoded");
    let header_block = &raw[..raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap()];
    let header_text = String::from_utf8_lossy(header_block);
    assert!(
        !header_text.contains("\r\nBcc:"),
        "no injected header:\n{header_text}"
    );
    let parsed = python_reads(&raw);
    assert_eq!(parsed["defects"], serde_json::json!([]), "{parsed:#}");
    let names: Vec<&str> = parsed["header_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    for required in [
        "From",
        "Sender",
        "To",
        "Date",
        "Message-ID",
        "Subject",
        "MIME-Version",
    ] {
        assert_eq!(
            names
                .iter()
                .filter(|n| n.eq_ignore_ascii_case(required))
                .count(),
            1,
            "{required} once in {names:?}"
        );
    }
    assert!(
        !names.iter().any(|n| n.eq_ignore_ascii_case("bcc")),
        "{names:?}"
    );

    assert_eq!(
        parsed["subject"],
        "Conversation Budget \"Q4\", draft Bcc: eve@evil.example \u{2014} 2026-11-25"
    );
    assert_eq!(
        parsed["date"], "2026-11-25T09:00:00+00:00",
        "the day's first event"
    );
    assert_eq!(
        parsed["message_id"],
        "<conclave.r-1.20261125@conclave.invalid>"
    );
    assert_eq!(parsed["room_id"], "r-1");
    assert_eq!(parsed["kind"], "room");
    assert_eq!(parsed["day"], "2026-11-25");
    assert_eq!(parsed["content_type"], "multipart/mixed");

    let alice_mailbox = (
        "Alice \"Al\" Smith, CFO".to_owned(),
        "alice@example.org".to_owned(),
    );
    let bob_mailbox = (
        "Bøb Ünïcode 日本".to_owned(),
        "bob@conclave.invalid".to_owned(),
    );
    let eve_mailbox = (
        "Eve Bcc: victim@example.org".to_owned(),
        "eve_corp@conclave.invalid".to_owned(),
    );
    let carol_mailbox = (
        "Carol, \"the auditor\"".to_owned(),
        "carol@example.org".to_owned(),
    );
    assert_eq!(
        pairs(&parsed["from"]),
        [
            alice_mailbox.clone(),
            bob_mailbox.clone(),
            eve_mailbox.clone()
        ],
        "everyone who acted, in order"
    );
    assert_eq!(
        pairs(&parsed["to"]),
        [alice_mailbox, bob_mailbox, eve_mailbox, carol_mailbox],
        "participants plus the member who joined"
    );
    assert_eq!(parsed["raw_to_count"], 4);
    assert_eq!(
        pairs(&parsed["sender"]),
        [(
            "Conclave compliance archive".to_owned(),
            "compliance-archive@conclave.invalid".to_owned()
        )]
    );

    // Canonical CRLF line ends on the wire; compare with plain newlines.
    let body = parsed["body"].as_str().unwrap().replace("\r\n", "\n");
    assert!(!body.contains('\r'), "no stray CR in the body");
    for expected in [
        "Day: 2026-11-25 (all times UTC)",
        "[09:00:00] Alice \"Al\" Smith, CFO (alice) added Carol, \"the auditor\" (carol) to the conversation.",
        "[09:01:00] Alice \"Al\" Smith, CFO (alice) sent message m1:",
        "    Hello, \"world\"\n    second line \u{2014} \u{fc}n\u{ef}code \u{2713} \u{65e5}\u{672c}\u{8a9e}\n",
        "Attachment: report \"final\",v2 .csv (text/csv, 25 bytes, SHA-256 aaaa",
        ", attached to this message",
        "[09:02:00] Bøb Ünïcode 日本 (bob) sent message m2, replying to m1:",
        "Attachment: plan.pdf (application/pdf, 1048576 bytes, SHA-256 bbbb",
        ", not included in this export",
        "edited message m1 (now version 2):\n    Previous text:\n    > Hello, \"world\"\n",
        "    New text:\n    Hello again\n",
        "(bob) reacted \u{1f44d} to message m1.",
        "(bob) removed the reaction \u{1f44d} from message m1.",
        "Message m2 from Bøb Ünïcode 日本 (bob) burned after reading for Carol, \"the auditor\" (carol).",
        "(alice) deleted message m1.",
        "Message m3 from Eve Bcc: victim@example.org (eve@corp) expired.",
        "    ephemeral <b>&amp;</b> ]]> bell\u{fffd} end",
        "A file of message m2 from Bøb Ünïcode 日本 (bob) was deleted.",
        "[09:10:00] Eve Bcc: victim@example.org (eve@corp) left the conversation.",
    ] {
        assert!(
            body.contains(expected),
            "body lacks {expected:?}:\n{body:?}"
        );
    }

    let attachments = parsed["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), 1, "only the included file is attached");
    assert_eq!(attachments[0]["filename"], "report \"final\",v2 .csv");
    assert_eq!(attachments[0]["content_type"], "text/csv");
    assert_eq!(attachments[0]["transfer_encoding"], "base64");
    use base64::Engine;
    let payload = base64::engine::general_purpose::STANDARD
        .decode(attachments[0]["payload_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(payload, CSV_BYTES, "byte-exact, line ends included");
}

#[test]
fn eml_of_a_quiet_direct_conversation_is_plain_text() {
    let direct = Conversation {
        room_id: "d-1".into(),
        kind: ConversationKind::Direct,
        name: None,
    };
    let parsed = python_reads(&eml(&[alice(), bob()], &[], &direct));
    assert_eq!(parsed["defects"], serde_json::json!([]));
    assert_eq!(parsed["content_type"], "text/plain");
    assert_eq!(
        parsed["subject"],
        "Direct conversation Alice \"Al\" Smith, CFO, Bøb Ünïcode 日本 \u{2014} 2026-11-25"
    );
    assert_eq!(parsed["date"], "2026-11-25T00:00:00+00:00");
    assert_eq!(parsed["kind"], "direct");
    assert_eq!(
        pairs(&parsed["from"]),
        [(
            "Conclave compliance archive".to_owned(),
            "compliance-archive@conclave.invalid".to_owned()
        )]
    );
    assert!(parsed["body"].as_str().unwrap().contains("(no events)"));
    assert_eq!(parsed["attachments"], serde_json::json!([]));
}

#[test]
fn eml_reads_included_files_from_disk_and_reports_unreadable_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("decrypted.bin");
    let bytes: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    std::fs::write(&path, &bytes).unwrap();
    let mut event = events()[1].clone();
    let attachment = event.attachment.as_mut().unwrap();
    attachment.content = Some(AttachmentContent::File(path.clone()));
    attachment.content_type = "application/octet-stream".into();
    attachment.name = "données.bin".into();
    let parsed = python_reads(&eml(&[alice()], std::slice::from_ref(&event), &room()));
    assert_eq!(parsed["defects"], serde_json::json!([]));
    assert_eq!(parsed["attachments"][0]["filename"], "données.bin");
    use base64::Engine;
    let payload = base64::engine::general_purpose::STANDARD
        .decode(parsed["attachments"][0]["payload_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(payload, bytes);

    std::fs::remove_file(&path).unwrap();
    let result = write_conversation_day(
        &room(),
        day(),
        &[alice()],
        std::slice::from_ref(&event),
        &EmlOptions::default(),
        Vec::new(),
    );
    assert!(
        matches!(result, Err(ArchiveError::Attachment { ref id, .. }) if id == "att-1"),
        "{result:?}"
    );
}

#[test]
fn eml_refuses_events_of_another_day_or_conversation_and_bad_domains() {
    let mut next_day = events()[1].clone();
    next_day.at = Timestamp::from_micros(DAY_START + 86_400_000_000);
    let mut elsewhere = events()[1].clone();
    Arc::make_mut(&mut elsewhere.conversation).room_id = "r-2".into();
    for bad in [next_day, elsewhere] {
        let result = write_conversation_day(
            &room(),
            day(),
            &[],
            &[bad],
            &EmlOptions::default(),
            Vec::new(),
        );
        assert!(
            matches!(result, Err(ArchiveError::InvalidEvent(_))),
            "{result:?}"
        );
    }
    let result = write_conversation_day(
        &room(),
        day(),
        &[],
        &[],
        &EmlOptions {
            domain: "evil.example>\r\nBcc: x".into(),
        },
        Vec::new(),
    );
    assert!(
        matches!(result, Err(ArchiveError::InvalidEvent(_))),
        "{result:?}"
    );
}

// ---------------------------------------------------------------------------------------
// XML

fn export_info() -> ExportInfo {
    ExportInfo {
        export_id: "exp-1".into(),
        generated_at: at(23, 59),
        period_start: Timestamp::from_micros(DAY_START),
        period_end: Timestamp::from_micros(DAY_START + 86_400_000_000),
    }
}

fn xml_document() -> Vec<u8> {
    let mut writer = XmlWriter::new(Vec::new(), &export_info()).unwrap();
    writer
        .begin_conversation(
            &room(),
            Timestamp::from_micros(DAY_START),
            &[alice(), bob(), eve()],
        )
        .unwrap();
    for event in &events() {
        writer.write_event(event).unwrap();
    }
    writer
        .end_conversation(Timestamp::from_micros(DAY_START + 86_400_000_000))
        .unwrap();
    // A second, unnamed direct conversation with no events.
    let direct = Conversation {
        room_id: "d-1".into(),
        kind: ConversationKind::Direct,
        name: None,
    };
    writer
        .begin_conversation(
            &direct,
            Timestamp::from_micros(DAY_START),
            &[alice(), bob()],
        )
        .unwrap();
    writer
        .end_conversation(Timestamp::from_micros(DAY_START + 86_400_000_000))
        .unwrap();
    writer.finish().unwrap()
}

/// The text content of every element named `name`, unescaped, in document order.
fn texts_of(document: &[u8], name: &str) -> Vec<String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(document);
    let mut found = Vec::new();
    let mut inside = false;
    let mut current = String::new();
    let mut buffer = Vec::new();
    loop {
        match reader.read_event_into(&mut buffer).unwrap() {
            Event::Start(start) if start.local_name().as_ref() == name => {
                inside = true;
                current.clear();
            }
            Event::Text(text) if inside => current.push_str(&text.into_inner()),
            Event::GeneralRef(reference) if inside => {
                let resolved = match reference.resolve_char_ref().unwrap() {
                    Some(c) => c.to_string(),
                    None => quick_xml::escape::resolve_predefined_entity(
                        &reference.clone().into_inner(),
                    )
                    .unwrap()
                    .to_owned(),
                };
                current.push_str(&resolved);
            }
            Event::End(end) if inside && end.local_name().as_ref() == name => {
                inside = false;
                found.push(std::mem::take(&mut current));
            }
            Event::Eof => return found,
            _ => {}
        }
        buffer.clear();
    }
}

#[test]
fn xml_validates_against_the_shipped_schema_and_keeps_the_text() {
    let document = xml_document();
    let (status, stderr) = xmllint(&document);
    assert_eq!(
        status,
        0,
        "xmllint rejected the document: {stderr}\n{}",
        String::from_utf8_lossy(&document)
    );
    let texts = texts_of(&document, "text");
    assert_eq!(texts[0], FIRST_TEXT, "CRLF and non-ASCII survive a parser");
    assert_eq!(
        texts.iter().find(|t| t.starts_with("ephemeral")).unwrap(),
        "ephemeral <b>&amp;</b> ]]> bell\u{fffd} end",
        "markup is escaped; a character XML cannot carry becomes U+FFFD"
    );
    let eve_names: Vec<String> = texts_of(&document, "displayName")
        .into_iter()
        .filter(|name| name.starts_with("Eve"))
        .collect();
    assert!(!eve_names.is_empty());
    assert!(
        eve_names
            .iter()
            .all(|name| name == "Eve\r\nBcc: victim@example.org"),
        "names are element content, kept exactly: {eve_names:?}"
    );
    assert_eq!(
        texts_of(&document, "name"),
        [
            "Budget \"Q4\", draft\r\nBcc: eve@evil.example",
            "report \"final\",v2\r\n.csv",
            "plan.pdf",
            "plan.pdf"
        ]
    );
    let text = String::from_utf8(document).unwrap();
    for expected in [
        "<archive xmlns=\"urn:conclave:archive:1\" formatVersion=\"1\" exportId=\"exp-1\"",
        "<conversation roomId=\"r-1\" kind=\"room\">",
        "<participantJoined at=\"2026-11-25T09:00:00.123456Z\">",
        "<message at=\"2026-11-25T09:02:00.123456Z\" messageId=\"m2\" replyTo=\"m1\">",
        "<edited at=\"2026-11-25T09:03:00.123456Z\" messageId=\"m1\" messageSentAt=\"2026-11-25T09:01:00.123456Z\" version=\"2\">",
        "<reaction at=\"2026-11-25T09:05:00.123456Z\" messageId=\"m1\" added=\"false\">",
        "included=\"true\" path=\"files/att-1/report _final_,v2__.csv\">",
        "<attachment id=\"att-2\" contentType=\"application/pdf\" sizeBytes=\"1048576\"",
        "<recipients count=\"4\">",
        "<participantLeft at=\"2026-11-25T09:10:00.123456Z\">",
        "<conversation roomId=\"d-1\" kind=\"direct\">",
    ] {
        assert!(text.contains(expected), "lacks {expected:?}:\n{text}");
    }
}

#[test]
fn xml_schema_rejects_documents_that_break_it() {
    let valid = String::from_utf8(xml_document()).unwrap();
    assert_eq!(xmllint(valid.as_bytes()).0, 0);
    let broken = [
        (
            "an unknown conversation kind",
            "kind=\"room\"",
            "kind=\"channel\"",
        ),
        (
            "an event without its time",
            "<message at=\"2026-11-25T09:02:00.123456Z\"",
            "<message",
        ),
        (
            "a local time",
            "T09:02:00.123456Z",
            "T09:02:00.123456+01:00",
        ),
        ("a malformed hash", &"b".repeat(64), "not-a-hash"),
        ("an unknown event", "participantLeft", "participantVanished"),
        (
            "the end time missing",
            "<endTime>2026-11-26T00:00:00Z</endTime>",
            "",
        ),
        ("a first edit numbered 1", "version=\"2\"", "version=\"1\""),
    ];
    for (what, from, to) in broken {
        assert!(valid.contains(from), "{what}: fixture lacks {from:?}");
        let document = valid.replace(from, to);
        let (status, stderr) = xmllint(document.as_bytes());
        assert_eq!(status, 3, "{what} must fail validation (rc 3): {stderr}");
    }
    // Not even well-formed: rc 1.
    assert_eq!(xmllint(b"<archive>").0, 1);
}

#[test]
fn xml_writer_enforces_the_document_order() {
    let event = &events()[1];
    let mut writer = XmlWriter::new(Vec::new(), &export_info()).unwrap();
    assert!(matches!(
        writer.write_event(event),
        Err(ArchiveError::Sequence(_))
    ));
    assert!(matches!(
        writer.end_conversation(at(0, 0)),
        Err(ArchiveError::Sequence(_))
    ));
    writer.begin_conversation(&room(), at(0, 0), &[]).unwrap();
    assert!(matches!(
        writer.begin_conversation(&room(), at(0, 0), &[]),
        Err(ArchiveError::Sequence(_))
    ));
    let mut elsewhere = event.clone();
    Arc::make_mut(&mut elsewhere.conversation).room_id = "r-2".into();
    assert!(matches!(
        writer.write_event(&elsewhere),
        Err(ArchiveError::InvalidEvent(_))
    ));
    assert!(matches!(writer.finish(), Err(ArchiveError::Sequence(_))));
}

#[test]
fn resumed_xml_and_csv_continue_the_same_document() {
    // The job runner records the output length after each conversation and, after a
    // crash, cuts the file back to it and carries on with `continuing`.
    let whole = xml_document();
    let mut flushed = Vec::new();
    let mut first = XmlWriter::new(&mut flushed, &export_info()).unwrap();
    first
        .begin_conversation(
            &room(),
            Timestamp::from_micros(DAY_START),
            &[alice(), bob(), eve()],
        )
        .unwrap();
    for event in &events() {
        first.write_event(event).unwrap();
    }
    first
        .end_conversation(Timestamp::from_micros(DAY_START + 86_400_000_000))
        .unwrap();
    first.flush().unwrap();
    drop(first); // the crash: never finished
    assert!(whole.starts_with(&flushed));
    let mut resumed = XmlWriter::continuing(flushed);
    let direct = Conversation {
        room_id: "d-1".into(),
        kind: ConversationKind::Direct,
        name: None,
    };
    resumed
        .begin_conversation(
            &direct,
            Timestamp::from_micros(DAY_START),
            &[alice(), bob()],
        )
        .unwrap();
    resumed
        .end_conversation(Timestamp::from_micros(DAY_START + 86_400_000_000))
        .unwrap();
    let resumed = resumed.finish().unwrap();
    assert_eq!(
        String::from_utf8(resumed).unwrap(),
        String::from_utf8(whole).unwrap(),
        "byte for byte the document an uninterrupted run writes"
    );

    let mut fresh = CsvWriter::new(Vec::new()).unwrap();
    fresh.write_event(&events()[1]).unwrap();
    fresh.flush().unwrap();
    let mut continued = CsvWriter::continuing(fresh.finish().unwrap());
    continued.write_event(&events()[2]).unwrap();
    let bytes = continued.finish().unwrap();
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    assert_eq!(reader.headers().unwrap().len(), CSV_COLUMNS.len());
    assert_eq!(reader.records().count(), 4, "no second header row");
}
