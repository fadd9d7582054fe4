//! The exactly-once check. Every message the server acknowledged must reach every
//! connection of every member of its room exactly once: none missing, none twice, none
//! at a connection that is not a member's. Receipts of messages the bench never saw
//! acknowledged (a send that timed out after the server committed it) are counted apart:
//! they are not a delivery fault, but a reader should see them.

use serde::Serialize;
use std::collections::HashMap;
use uuid::Uuid;

/// Index of one of the bench's WebSocket connections.
pub type Connection = u32;

/// How many violations of each kind are listed by example in a report.
const EXAMPLES: usize = 10;

/// A message the server acknowledged, and which connections must receive it.
#[derive(Clone, Debug)]
pub struct Expected {
    pub message_id: Uuid,
    pub recipients: std::sync::Arc<[Connection]>,
}

/// One message event received on one connection, `latency_us` after it was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub message_id: Uuid,
    pub connection: Connection,
    pub latency_us: u64,
}

/// What the check found.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Outcome {
    pub acknowledged: u64,
    /// Acknowledged messages times their recipients.
    pub expected_deliveries: u64,
    /// Distinct (message, connection) pairs received that were expected.
    pub delivered: u64,
    /// Expected (message, connection) pairs never received.
    pub missing: u64,
    /// Receipts beyond the first of the same message on the same connection.
    pub duplicates: u64,
    /// Receipts of an acknowledged message on a connection that is not a member's.
    pub misdelivered: u64,
    /// Receipts of messages whose send was never acknowledged to the bench.
    pub unacknowledged_receipts: u64,
    /// The first few violations, for a person to look up.
    pub examples: Vec<String>,
}

impl Outcome {
    /// Every acknowledged message reached every member's connection exactly once.
    pub fn exactly_once(&self) -> bool {
        self.missing == 0 && self.duplicates == 0 && self.misdelivered == 0
    }
}

/// Checks `receipts` against the acknowledged messages. Also returns, for each message
/// that reached every recipient, the latency of its last receipt (send to receipt by
/// every member), in microseconds.
pub fn check(expected: &[Expected], receipts: &[Receipt]) -> (Outcome, Vec<u64>) {
    let mut outcome = Outcome {
        acknowledged: expected.len() as u64,
        ..Outcome::default()
    };
    let by_id: HashMap<Uuid, &Expected> = expected.iter().map(|e| (e.message_id, e)).collect();
    // (message, connection) -> (receipts, latency of the first)
    let mut seen: HashMap<(Uuid, Connection), (u32, u64)> = HashMap::with_capacity(receipts.len());
    for receipt in receipts {
        let entry = seen
            .entry((receipt.message_id, receipt.connection))
            .or_insert((0, receipt.latency_us));
        entry.0 += 1;
    }
    let mut duplicate_examples = Vec::new();
    let mut misdelivered_examples = Vec::new();
    for (&(message_id, connection), &(count, _)) in &seen {
        match by_id.get(&message_id) {
            None => outcome.unacknowledged_receipts += u64::from(count),
            Some(message) => {
                if !message.recipients.contains(&connection) {
                    outcome.misdelivered += u64::from(count);
                    if misdelivered_examples.len() < EXAMPLES {
                        misdelivered_examples.push(format!(
                            "message {message_id} reached connection {connection}, not a member's"
                        ));
                    }
                } else if count > 1 {
                    outcome.duplicates += u64::from(count - 1);
                    if duplicate_examples.len() < EXAMPLES {
                        duplicate_examples.push(format!(
                            "message {message_id} reached connection {connection} {count} times"
                        ));
                    }
                }
            }
        }
    }
    let mut complete = Vec::with_capacity(expected.len());
    let mut missing_examples = Vec::new();
    for message in expected {
        outcome.expected_deliveries += message.recipients.len() as u64;
        let mut last = Some(0u64);
        for &connection in message.recipients.iter() {
            match seen.get(&(message.message_id, connection)) {
                Some(&(_, latency)) => {
                    outcome.delivered += 1;
                    last = last.map(|l| l.max(latency));
                }
                None => {
                    outcome.missing += 1;
                    last = None;
                    if missing_examples.len() < EXAMPLES {
                        missing_examples.push(format!(
                            "message {} never reached connection {connection}",
                            message.message_id
                        ));
                    }
                }
            }
        }
        if let Some(last) = last {
            complete.push(last);
        }
    }
    outcome.examples = missing_examples
        .into_iter()
        .chain(duplicate_examples)
        .chain(misdelivered_examples)
        .collect();
    outcome.examples.sort();
    (outcome, complete)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected(id: Uuid, recipients: &[Connection]) -> Expected {
        Expected {
            message_id: id,
            recipients: recipients.into(),
        }
    }

    fn receipt(id: Uuid, connection: Connection, latency_us: u64) -> Receipt {
        Receipt {
            message_id: id,
            connection,
            latency_us,
        }
    }

    #[test]
    fn complete_delivery_passes_and_yields_the_last_receipt_latency() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let (outcome, complete) = check(
            &[expected(a, &[0, 1]), expected(b, &[1, 2])],
            &[
                receipt(a, 0, 100),
                receipt(a, 1, 300),
                receipt(b, 2, 50),
                receipt(b, 1, 70),
            ],
        );
        assert!(outcome.exactly_once(), "{outcome:?}");
        assert_eq!(outcome.acknowledged, 2);
        assert_eq!(outcome.expected_deliveries, 4);
        assert_eq!(outcome.delivered, 4);
        assert!(outcome.examples.is_empty());
        let mut complete = complete;
        complete.sort();
        assert_eq!(complete, [70, 300]);
    }

    #[test]
    fn reports_a_duplicate_and_a_missing_delivery() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let (outcome, complete) = check(
            &[expected(a, &[0, 1]), expected(b, &[0, 1])],
            &[
                receipt(a, 0, 10),
                receipt(a, 1, 10),
                receipt(a, 1, 20),
                receipt(b, 0, 10),
            ],
        );
        assert!(!outcome.exactly_once());
        assert_eq!(outcome.duplicates, 1);
        assert_eq!(outcome.missing, 1);
        assert_eq!(outcome.delivered, 3);
        assert_eq!(outcome.misdelivered, 0);
        assert_eq!(
            complete,
            [10],
            "only a reached everyone; its first receipts count"
        );
        assert_eq!(outcome.examples.len(), 2);
        assert!(
            outcome
                .examples
                .iter()
                .any(|e| e.contains(&b.to_string()) && e.contains("never reached connection 1"))
        );
        assert!(
            outcome
                .examples
                .iter()
                .any(|e| e.contains(&a.to_string()) && e.contains("2 times"))
        );
    }

    #[test]
    fn misdelivered_and_unacknowledged_receipts_are_told_apart() {
        let (a, stray) = (Uuid::new_v4(), Uuid::new_v4());
        let (outcome, _) = check(
            &[expected(a, &[0])],
            &[receipt(a, 0, 1), receipt(a, 5, 1), receipt(stray, 0, 1)],
        );
        assert_eq!(outcome.misdelivered, 1);
        assert_eq!(outcome.unacknowledged_receipts, 1);
        assert!(!outcome.exactly_once());
        let (outcome, _) = check(
            &[expected(a, &[0])],
            &[receipt(a, 0, 1), receipt(stray, 0, 1)],
        );
        assert!(
            outcome.exactly_once(),
            "an unacknowledged receipt is no violation"
        );
    }
}
