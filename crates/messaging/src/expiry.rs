//! The timer worker: announces `message.expired` to connected members within a second of
//! a message's deadline (its expiration, a recipient's burn-on-read deadline, or a
//! retention maximum reached while users still see it).
//!
//! It keeps the nearest deadlines in an in-memory heap, refilled from the indexed
//! deadline columns (`messages.visible_until`, `messages.retain_until`,
//! `message_reads.visible_until`) every
//! [`REFILL`], so it rebuilds itself after a restart and never holds more than a window of
//! deadlines. Each deadline is announced by a conditional update that only one caller can
//! win, so several workers (nodes) never announce one twice. The worker only announces:
//! every read path already hides a message past its deadline, whatever the worker's lag,
//! and the content stays for the retention sweeper (retain_until).

use crate::error::MessagingError;
use crate::realtime::{self, Published};
use crate::settings::MessagingState;
use conclave_core::{MessageId, RoomId, Timestamp, UserId};
use conclave_store::message_reads::ReadRecord;
use conclave_store::messages::MessageRecord;
use conclave_store::{
    DbConnection, message_reads, messages as message_store, room_events, rooms as room_store,
    write_transaction,
};
use serde_json::json;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

/// How often the heap is refilled from the database, and how far ahead it looks.
pub const REFILL: Duration = Duration::from_millis(250);
/// Deadlines loaded per refill and kind.
const WINDOW: i64 = 20_000;
/// Deadlines announced per transaction.
const BATCH: usize = 500;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Deadline {
    /// The message's expiration: gone for everyone.
    Expired { message_id: String },
    /// One recipient's burn-on-read deadline.
    Burned { message_id: String, user_id: String },
}

/// Runs until the process stops.
pub async fn run(state: MessagingState) {
    let mut heap: BinaryHeap<Reverse<(i64, Deadline)>> = BinaryHeap::new();
    let mut refill = tokio::time::interval(REFILL);
    refill.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        refill.tick().await;
        let horizon = state.auth.clock.now().plus(REFILL * 2);
        match state.auth.db.run(move |conn| due(conn, horizon)).await {
            Ok(loaded) => {
                heap.clear();
                heap.extend(loaded.into_iter().map(Reverse));
            }
            Err(err) => {
                tracing::warn!(error = %err, "timer worker could not load deadlines; retrying");
                continue;
            }
        }
        // Announce whatever is due in one transaction, then sleep until the next deadline
        // in the window (or the next refill).
        loop {
            let now = state.auth.clock.now();
            let (mut batch, mut fell_at) = (Vec::new(), Vec::new());
            while batch.len() < BATCH
                && heap
                    .peek()
                    .is_some_and(|Reverse((at, _))| *at <= now.as_micros())
            {
                if let Some(Reverse((at, deadline))) = heap.pop() {
                    batch.push(deadline);
                    fell_at.push(Timestamp::from_micros(at));
                }
            }
            if !batch.is_empty() {
                match state
                    .auth
                    .db
                    .run(move |conn| announce_batch(conn, &batch, now))
                    .await
                {
                    Ok(published) => {
                        let announced = state.auth.clock.now();
                        for at in fell_at {
                            conclave_metrics::timer_fired(at.until(announced));
                        }
                        realtime::publish(&state, published).await
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "timer worker could not announce deadlines; it will retry")
                    }
                }
                continue;
            }
            let Some(Reverse((next, _))) = heap.peek() else {
                break;
            };
            let wait = now.until(Timestamp::from_micros(*next));
            if wait > REFILL {
                break;
            }
            tokio::time::sleep(wait).await;
        }
    }
}

/// Announces every deadline due by `now` (one worker step without the waiting);
/// returns the events to publish.
pub fn announce_due(
    conn: &mut DbConnection,
    now: Timestamp,
) -> Result<Vec<Published>, MessagingError> {
    let deadlines: Vec<Deadline> = due(conn, now)?
        .into_iter()
        .map(|(_, deadline)| deadline)
        .collect();
    announce_batch(conn, &deadlines, now)
}

/// Announces deadlines in one transaction (each at most once across all workers).
fn announce_batch(
    conn: &mut DbConnection,
    deadlines: &[Deadline],
    now: Timestamp,
) -> Result<Vec<Published>, MessagingError> {
    write_transaction(conn, |conn| {
        let mut published = Vec::new();
        for deadline in deadlines {
            published.extend(announce(conn, deadline, now)?);
        }
        Ok(published)
    })
}

/// Deadlines not announced yet, due by `horizon`, earliest first.
fn due(
    conn: &mut DbConnection,
    horizon: Timestamp,
) -> Result<Vec<(i64, Deadline)>, MessagingError> {
    let mut due: Vec<(i64, Deadline)> = message_store::expiring(conn, horizon, WINDOW)?
        .into_iter()
        .filter_map(|m| {
            m.visible_until.map(|at| {
                (
                    at.as_micros(),
                    Deadline::Expired {
                        message_id: m.id.to_string(),
                    },
                )
            })
        })
        .collect();
    // A retention maximum reached while users still see the message expires it too.
    due.extend(
        message_store::retention_cut(conn, horizon, WINDOW)?
            .into_iter()
            .filter_map(|m| {
                m.retain_until.map(|at| {
                    (
                        at.as_micros(),
                        Deadline::Expired {
                            message_id: m.id.to_string(),
                        },
                    )
                })
            }),
    );
    due.extend(
        message_reads::due(conn, horizon, WINDOW)?
            .into_iter()
            .filter_map(|r| {
                r.visible_until.map(|at| {
                    (
                        at,
                        Deadline::Burned {
                            message_id: r.message_id,
                            user_id: r.user_id,
                        },
                    )
                })
            }),
    );
    due.sort();
    Ok(due)
}

/// Announces one deadline, once across all workers, inside the caller's transaction;
/// returns the events to publish.
fn announce(
    conn: &mut DbConnection,
    deadline: &Deadline,
    now: Timestamp,
) -> Result<Vec<Published>, MessagingError> {
    {
        let mut published = Vec::new();
        match deadline {
            Deadline::Expired { message_id } => {
                let id: MessageId = message_id.parse().map_err(|_| MessagingError::NotFound)?;
                let Some(message) = message_store::find(conn, id)? else {
                    return Ok(published);
                };
                // Room first, then the message: the order every other writer takes them in.
                room_store::lock(conn, message.room_id)?;
                // Its own expiration, or a retention maximum cutting it short; a deadline
                // that merely equals the last burn is announced burn by burn.
                let reads = message_reads::for_message(conn, id)?;
                let for_everyone = message.visible_until.is_some_and(|until| until <= now)
                    || retention_cut(&message, &reads, now);
                if message_store::mark_expiry_announced(conn, id, now)? && for_everyone {
                    published.push(event(
                        conn,
                        message.room_id,
                        id,
                        json!({"seq": message.seq, "user_id": null}),
                        now,
                    )?);
                }
            }
            Deadline::Burned {
                message_id,
                user_id,
            } => {
                let id: MessageId = message_id.parse().map_err(|_| MessagingError::NotFound)?;
                let Some(message) = message_store::find(conn, id)? else {
                    return Ok(published);
                };
                room_store::lock(conn, message.room_id)?;
                // A burn deadline capped by the message's own expiry: the expiry announces it
                // for everyone; one event is enough.
                let reads = message_reads::for_message(conn, id)?;
                let expired_too = message.visible_until.is_some_and(|until| until <= now)
                    || retention_cut(&message, &reads, now);
                if message_reads::mark_announced(conn, message_id, user_id, now)? && !expired_too {
                    published.push(event(
                        conn,
                        message.room_id,
                        id,
                        json!({"seq": message.seq, "user_id": user_id}),
                        now,
                    )?);
                    // Gone for the sender too once every recipient's deadline has passed.
                    let reads = message_reads::for_message(conn, id)?;
                    if reads.iter().all(|r| r.announced_at.is_some()) {
                        published.push(event(
                            conn,
                            message.room_id,
                            id,
                            json!({"seq": message.seq, "user_id": message.sender_id}),
                            now,
                        )?);
                    }
                }
            }
        }
        Ok(published)
    }
}

/// Whether a retention maximum ends `message` for everyone by `now`, before its own
/// expiration or its last burn-on-read deadline would.
fn retention_cut(message: &MessageRecord, reads: &[ReadRecord], now: Timestamp) -> bool {
    let Some(cut) = message.retain_until.filter(|cut| *cut <= now) else {
        return false;
    };
    if message.visible_until.is_some_and(|until| until <= cut) {
        return false;
    }
    let last_burn = reads
        .iter()
        .map(|read| read.visible_until)
        .collect::<Option<Vec<i64>>>()
        .and_then(|deadlines| deadlines.into_iter().max());
    let burned_by_then = message.burn_after_read_seconds.is_some()
        && last_burn.is_some_and(|last| last <= cut.as_micros());
    !burned_by_then
}

/// `message.expired`: for everyone (`user_id` null) or for one member.
fn event(
    conn: &mut DbConnection,
    room_id: RoomId,
    message_id: MessageId,
    payload: serde_json::Value,
    now: Timestamp,
) -> Result<Published, MessagingError> {
    let record = room_events::append(
        conn,
        room_id,
        "message.expired",
        Some(message_id),
        None,
        &payload.to_string(),
        now,
    )?;
    let recipients: Vec<UserId> = room_store::members(conn, room_id)?
        .into_iter()
        .map(|m| m.user_id)
        .collect();
    Ok(Published {
        room_id,
        seq: record.seq,
        recipients,
        rendered: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_order_by_time_first() {
        let mut heap = BinaryHeap::new();
        heap.push(Reverse((
            30,
            Deadline::Expired {
                message_id: "a".into(),
            },
        )));
        heap.push(Reverse((
            10,
            Deadline::Burned {
                message_id: "b".into(),
                user_id: "u".into(),
            },
        )));
        heap.push(Reverse((
            20,
            Deadline::Expired {
                message_id: "c".into(),
            },
        )));
        let order: Vec<i64> =
            std::iter::from_fn(|| heap.pop().map(|Reverse((at, _))| at)).collect();
        assert_eq!(order, [10, 20, 30]);
    }
}
