//! Exporting the audit log as JSONL (one event per line, the full record) or CSV
//! (RFC 4180, one row per event, `details` as a JSON column), a page at a time so memory
//! stays flat however long the log.

use crate::AuditEventView;
use serde::Deserialize;

/// The export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Jsonl,
    Csv,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Jsonl => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
        }
    }
}

/// The CSV header row.
pub const CSV_COLUMNS: [&str; 13] = [
    "seq",
    "id",
    "occurred_at",
    "actor_id",
    "actor_name",
    "action",
    "target_kind",
    "target_id",
    "client_addr",
    "api_path",
    "outcome",
    "details",
    "hash",
];

/// Encodes one page of events; `first` adds the CSV header.
pub fn encode(format: Format, events: &[AuditEventView], first: bool) -> Vec<u8> {
    match format {
        Format::Jsonl => {
            let mut out = Vec::new();
            for event in events {
                serde_json::to_writer(&mut out, event).expect("an event serializes");
                out.push(b'\n');
            }
            out
        }
        Format::Csv => {
            let mut writer = csv::WriterBuilder::new()
                .terminator(csv::Terminator::CRLF)
                .from_writer(Vec::new());
            if first {
                writer.write_record(CSV_COLUMNS).expect("writing to memory");
            }
            for e in events {
                let opt = |v: &Option<String>| v.clone().unwrap_or_default();
                writer
                    .write_record([
                        e.seq.to_string(),
                        e.id.clone(),
                        e.occurred_at.to_rfc3339(),
                        opt(&e.actor_id),
                        e.actor_name.clone(),
                        e.action.clone(),
                        opt(&e.target_kind),
                        opt(&e.target_id),
                        opt(&e.client_addr),
                        opt(&e.api_path),
                        e.outcome.clone(),
                        e.details.to_string(),
                        e.hash.clone(),
                    ])
                    .expect("writing to memory");
            }
            writer.into_inner().expect("flushing to memory")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_core::Timestamp;

    fn event(seq: i64, details: serde_json::Value) -> AuditEventView {
        AuditEventView {
            seq,
            id: format!("id-{seq}"),
            occurred_at: Timestamp::from_micros(1_800_000_000_000_000),
            actor_id: None,
            actor_name: "alice, \"the admin\"".into(),
            action: "user.create".into(),
            target_kind: Some("user".into()),
            target_id: Some("u1".into()),
            client_addr: None,
            api_path: Some("/api/v1/admin/users".into()),
            outcome: "success".into(),
            details,
            hash: "ab".into(),
        }
    }

    #[test]
    fn csv_quotes_what_needs_quoting_and_reads_back() {
        let details =
            serde_json::json!({"after": {"display_name": "Line one\nline two, with \"quotes\""}});
        let mut bytes = encode(Format::Csv, &[event(1, details.clone())], true);
        bytes.extend(encode(Format::Csv, &[event(2, details.clone())], false));
        let mut reader = csv::Reader::from_reader(bytes.as_slice());
        assert_eq!(
            reader.headers().unwrap().iter().collect::<Vec<_>>(),
            CSV_COLUMNS
        );
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(&rows[0][4], "alice, \"the admin\"");
        let read_back: serde_json::Value = serde_json::from_str(&rows[1][11]).unwrap();
        assert_eq!(read_back, details);
        assert!(
            String::from_utf8(bytes).unwrap().contains("\r\n"),
            "RFC 4180 line endings"
        );
    }

    #[test]
    fn jsonl_is_one_event_per_line() {
        let bytes = encode(
            Format::Jsonl,
            &[
                event(1, serde_json::json!({})),
                event(2, serde_json::json!({"x": "a\nb"})),
            ],
            true,
        );
        let text = String::from_utf8(bytes).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let second: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(second["seq"], 2);
        assert_eq!(second["details"]["x"], "a\nb");
    }
}
