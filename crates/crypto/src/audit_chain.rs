//! The audit log's hash chain. Each event's hash is SHA-256 over the previous event's hash
//! and the event's canonical bytes, so editing, deleting, inserting or reordering any row
//! breaks every hash after it. (Truncating the tail is caught by signed checkpoints, which
//! the audit service adds.)
//!
//! Canonical bytes: every field as a 4-byte big-endian length and its UTF-8 bytes, in a
//! fixed order, with absent fields written as length `u32::MAX`. Length prefixes make the
//! encoding unambiguous without any escaping rules to get wrong.

use sha2::{Digest, Sha256};

pub type ChainHash = [u8; 32];

/// The `prev_hash` of the first event.
pub const GENESIS_HASH: ChainHash = [0u8; 32];

/// The fields of one event that the chain covers, borrowed from wherever they are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditLink<'a> {
    pub seq: i64,
    pub event_id: &'a str,
    pub occurred_at_micros: i64,
    pub actor_id: Option<&'a str>,
    pub actor_name: &'a str,
    pub action: &'a str,
    pub target_kind: Option<&'a str>,
    pub target_id: Option<&'a str>,
    pub client_addr: Option<&'a str>,
    pub api_path: Option<&'a str>,
    pub outcome: &'a str,
    pub details: &'a str,
}

impl AuditLink<'_> {
    pub fn canonical_bytes(&self) -> Vec<u8> {
        fn field(out: &mut Vec<u8>, value: Option<&str>) {
            match value {
                Some(text) => {
                    let len = u32::try_from(text.len()).expect("audit field under 4 GiB");
                    out.extend_from_slice(&len.to_be_bytes());
                    out.extend_from_slice(text.as_bytes());
                }
                None => out.extend_from_slice(&u32::MAX.to_be_bytes()),
            }
        }
        let mut out = Vec::with_capacity(256 + self.details.len());
        out.extend_from_slice(b"conclave-audit-v1");
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.occurred_at_micros.to_be_bytes());
        for value in [
            Some(self.event_id),
            self.actor_id,
            Some(self.actor_name),
            Some(self.action),
            self.target_kind,
            self.target_id,
            self.client_addr,
            self.api_path,
            Some(self.outcome),
            Some(self.details),
        ] {
            field(&mut out, value);
        }
        out
    }

    /// This event's hash, given the previous event's.
    pub fn hash(&self, prev_hash: &ChainHash) -> ChainHash {
        let mut hasher = Sha256::new();
        hasher.update(prev_hash);
        hasher.update(self.canonical_bytes());
        hasher.finalize().into()
    }
}

/// Where a chain stops being consistent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit chain broken at sequence number {seq}: {reason}")]
pub struct ChainBreak {
    pub seq: i64,
    pub reason: &'static str,
}

/// Checks stored events in sequence order, each with its stored `prev_hash` and `hash`.
/// `expected_prev` is the hash before the first event given (the genesis hash, or the last
/// verified hash when verifying incrementally). Returns the last hash.
pub fn verify<'a>(
    expected_prev: ChainHash,
    first_seq: i64,
    events: impl IntoIterator<Item = (AuditLink<'a>, ChainHash, ChainHash)>,
) -> Result<ChainHash, ChainBreak> {
    let mut prev = expected_prev;
    // `None` once the sequence has passed `i64::MAX`: no row can follow that one (counting
    // with `first_seq..` overflowed there; found by the `audit_chain` fuzz target).
    let mut next_seq = Some(first_seq);
    for (link, stored_prev, stored_hash) in events {
        let Some(expected_seq) = next_seq.filter(|expected| link.seq == *expected) else {
            return Err(ChainBreak {
                seq: next_seq.map_or(link.seq, |expected| expected.min(link.seq)),
                reason: "sequence numbers are not consecutive (a row was deleted, inserted or reordered)",
            });
        };
        next_seq = expected_seq.checked_add(1);
        if stored_prev != prev {
            return Err(ChainBreak {
                seq: link.seq,
                reason: "previous-hash link does not match the preceding row",
            });
        }
        if link.hash(&prev) != stored_hash {
            return Err(ChainBreak {
                seq: link.seq,
                reason: "row content does not match its hash (the row was edited)",
            });
        }
        prev = stored_hash;
    }
    Ok(prev)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Row {
        seq: i64,
        id: String,
        action: String,
        details: String,
        prev: ChainHash,
        hash: ChainHash,
    }

    impl Row {
        fn link(&self) -> AuditLink<'_> {
            AuditLink {
                seq: self.seq,
                event_id: &self.id,
                occurred_at_micros: self.seq * 1000,
                actor_id: None,
                actor_name: "system:test",
                action: &self.action,
                target_kind: Some("user"),
                target_id: None,
                client_addr: Some("127.0.0.1"),
                api_path: None,
                outcome: "success",
                details: &self.details,
            }
        }
    }

    fn chain(n: i64) -> Vec<Row> {
        let mut prev = GENESIS_HASH;
        (1..=n)
            .map(|seq| {
                let mut row = Row {
                    seq,
                    id: format!("id-{seq}"),
                    action: "user.create".into(),
                    details: format!("{{\"n\":{seq}}}"),
                    prev,
                    hash: [0; 32],
                };
                row.hash = row.link().hash(&prev);
                prev = row.hash;
                row
            })
            .collect()
    }

    fn check(rows: &[Row]) -> Result<ChainHash, ChainBreak> {
        verify(
            GENESIS_HASH,
            1,
            rows.iter().map(|r| (r.link(), r.prev, r.hash)),
        )
    }

    #[test]
    fn intact_chain_verifies() {
        let rows = chain(5);
        assert_eq!(check(&rows).unwrap(), rows[4].hash);
    }

    #[test]
    fn edit_is_found_at_its_row() {
        let mut rows = chain(5);
        rows[2].details = "{\"n\":99}".into();
        assert_eq!(check(&rows).unwrap_err().seq, 3);
    }

    #[test]
    fn delete_is_found() {
        let mut rows = chain(5);
        rows.remove(1);
        assert_eq!(check(&rows).unwrap_err().seq, 2);
    }

    #[test]
    fn delete_with_renumbering_is_found_by_the_link() {
        let mut rows = chain(5);
        rows.remove(1);
        for (i, row) in rows.iter_mut().enumerate() {
            row.seq = i as i64 + 1;
        }
        // Row 2 is now the old row 3: its content hash was over seq 3, so it fails.
        assert_eq!(check(&rows).unwrap_err().seq, 2);
    }

    #[test]
    fn insert_is_found() {
        let mut rows = chain(5);
        let forged = Row {
            seq: 3,
            id: "forged".into(),
            action: "user.create".into(),
            details: "{}".into(),
            prev: rows[1].hash,
            hash: [7; 32],
        };
        rows.insert(2, forged);
        for (i, row) in rows.iter_mut().enumerate() {
            row.seq = i as i64 + 1;
        }
        assert_eq!(check(&rows).unwrap_err().seq, 3);
    }

    #[test]
    fn reorder_is_found() {
        let mut rows = chain(5);
        rows.swap(1, 3);
        assert_eq!(check(&rows).unwrap_err().seq, 2);
    }

    #[test]
    fn canonical_encoding_distinguishes_absent_from_empty_and_shifted_fields() {
        let rows = chain(1);
        let base = rows[0].link();
        let empty_target = AuditLink {
            target_id: Some(""),
            ..base
        };
        assert_ne!(base.canonical_bytes(), empty_target.canonical_bytes());
        let shifted = AuditLink {
            actor_name: "system:tes",
            action: "tuser.create",
            ..base
        };
        assert_ne!(base.canonical_bytes(), shifted.canonical_bytes());
    }

    #[test]
    fn a_chain_reaching_the_largest_sequence_number_ends_there() {
        let link = |seq, id| AuditLink {
            seq,
            event_id: id,
            occurred_at_micros: 0,
            actor_id: None,
            actor_name: "system",
            action: "test",
            target_kind: None,
            target_id: None,
            client_addr: None,
            api_path: None,
            outcome: "success",
            details: "{}",
        };
        let first = link(i64::MAX, "a");
        let first_hash = first.hash(&GENESIS_HASH);
        assert_eq!(
            verify(GENESIS_HASH, i64::MAX, [(first, GENESIS_HASH, first_hash)]),
            Ok(first_hash)
        );
        // A row after i64::MAX cannot be consecutive: a break, not an overflow panic.
        let second = link(i64::MIN, "b");
        let second_hash = second.hash(&first_hash);
        let broken = verify(
            GENESIS_HASH,
            i64::MAX,
            [
                (first, GENESIS_HASH, first_hash),
                (second, first_hash, second_hash),
            ],
        )
        .unwrap_err();
        assert_eq!(broken.seq, i64::MIN);
    }
}
