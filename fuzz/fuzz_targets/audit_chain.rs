//! The audit chain verifier and the checkpoint/manifest signature checks, on arbitrary
//! rows and signatures (what `conclave audit verify` reads from a database an attacker
//! may have written to). An honestly built chain must verify; one with a changed row
//! must not, at that row or before; arbitrary keys and signatures never panic. Input: one
//! JSON object (see the seeds in `fuzz/corpus/audit_chain`).
#![no_main]

use conclave_crypto::audit_chain::{AuditLink, ChainHash, GENESIS_HASH, verify};
use libfuzzer_sys::fuzz_target;

#[derive(serde::Deserialize, Debug, Default)]
#[serde(default)]
struct Row {
    seq_delta: i8,
    event_id: String,
    occurred_at: i64,
    actor_id: Option<String>,
    actor_name: String,
    action: String,
    target_kind: Option<String>,
    target_id: Option<String>,
    client_addr: Option<String>,
    api_path: Option<String>,
    outcome: String,
    details: String,
    forged_hash: Option<[u8; 32]>,
}

#[derive(serde::Deserialize, Debug, Default)]
#[serde(default)]
struct Input {
    first_seq: i64,
    rows: Vec<Row>,
    public_key: String,
    signature: Vec<u8>,
    manifest: Vec<u8>,
}

fn link(row: &Row, seq: i64) -> AuditLink<'_> {
    AuditLink {
        seq,
        event_id: &row.event_id,
        occurred_at_micros: row.occurred_at,
        actor_id: row.actor_id.as_deref(),
        actor_name: &row.actor_name,
        action: &row.action,
        target_kind: row.target_kind.as_deref(),
        target_id: row.target_id.as_deref(),
        client_addr: row.client_addr.as_deref(),
        api_path: row.api_path.as_deref(),
        outcome: &row.outcome,
        details: &row.details,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = serde_json::from_slice::<Input>(data) else {
        return;
    };
    let _ = conclave_crypto::checkpoint::verify_manifest_with(
        &input.public_key,
        &input.manifest,
        &input.signature,
    );
    let _ = conclave_crypto::CheckpointKey::from_base64(&input.public_key);

    // Rows as stored: each with the sequence number it claims (sometimes not the next
    // one), the previous hash and its own hash (sometimes forged).
    let mut stored: Vec<(AuditLink<'_>, ChainHash, ChainHash)> = Vec::new();
    let mut prev = GENESIS_HASH;
    // `None` past i64::MAX: no row can follow (a counter would wrap to i64::MIN).
    let mut expected = Some(input.first_seq);
    let mut first_bad: Option<usize> = None;
    for (index, row) in input.rows.iter().enumerate() {
        let seq = expected
            .unwrap_or(i64::MIN)
            .wrapping_add(i64::from(row.seq_delta));
        let honest = link(row, seq).hash(&prev);
        let hash = row.forged_hash.unwrap_or(honest);
        if first_bad.is_none() && (expected.is_none() || row.seq_delta != 0 || hash != honest) {
            first_bad = Some(index);
        }
        stored.push((link(row, seq), prev, hash));
        prev = hash;
        expected = seq.checked_add(1);
    }
    let result = verify(GENESIS_HASH, input.first_seq, stored.iter().copied());
    match first_bad {
        None => assert_eq!(result, Ok(prev), "an honest chain must verify"),
        Some(index) => {
            let broken = result.expect_err("a forged row must break the chain");
            assert!(
                broken.seq
                    <= stored[index]
                        .0
                        .seq
                        .max(input.first_seq.saturating_add(index as i64))
            );
        }
    }
});
