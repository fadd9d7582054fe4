//! The in-process hub: each connected WebSocket registers a bounded queue under its
//! user; publishing puts an event on the queues of its recipients' connections. A queue
//! that is full belongs to a slow consumer: the hub drops it, which closes that
//! connection with a resume hint, so a slow client never holds up a room. Events committed
//! on other nodes arrive through [`super::fanout`], which publishes them here too.

use conclave_core::{RoomId, Timestamp, UserId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// One rendered event, shared by every connection it goes to.
#[derive(Debug, PartialEq, Eq)]
pub struct Delivery {
    pub room_id: RoomId,
    pub seq: i64,
    /// When the event was committed (its delivery latency is measured from here).
    pub committed_at: Timestamp,
    /// The JSON envelope, `{"type", "room_id", "seq", "data"}`.
    pub json: String,
}

/// Each user's open connections: (connection id, queue).
type Registry = HashMap<UserId, Vec<(u64, mpsc::Sender<Arc<Delivery>>)>>;

#[derive(Clone)]
pub struct Hub {
    connections: Arc<Mutex<Registry>>,
    next_id: Arc<AtomicU64>,
    /// This process among the nodes sharing a database: random per process.
    node_id: uuid::Uuid,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            connections: Arc::default(),
            next_id: Arc::default(),
            node_id: uuid::Uuid::new_v4(),
        }
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("connections", &self.connection_count())
            .finish()
    }
}

impl Hub {
    /// Registers a connection of `user`; returns its id and its queue.
    pub fn register(&self, user: UserId, queue_len: usize) -> (u64, mpsc::Receiver<Arc<Delivery>>) {
        self.try_register(user, queue_len, usize::MAX)
            .expect("no limit on connections")
    }

    /// Registers a connection of `user` unless the user already has `max_per_user` open
    /// on this node (then `None`); checked and registered under one lock.
    pub fn try_register(
        &self,
        user: UserId,
        queue_len: usize,
        max_per_user: usize,
    ) -> Option<(u64, mpsc::Receiver<Arc<Delivery>>)> {
        let mut connections = self.lock();
        if connections.get(&user).map_or(0, Vec::len) >= max_per_user {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(queue_len.max(1));
        connections.entry(user).or_default().push((id, tx));
        Some((id, rx))
    }

    pub fn unregister(&self, user: UserId, id: u64) {
        let mut connections = self.lock();
        if let Some(list) = connections.get_mut(&user) {
            list.retain(|(existing, _)| *existing != id);
            if list.is_empty() {
                connections.remove(&user);
            }
        }
    }

    /// Queues `delivery` for every connection of every recipient. Never blocks: a full
    /// queue disconnects its (slow) connection instead.
    pub fn publish(&self, recipients: &[UserId], delivery: Arc<Delivery>) {
        let mut connections = self.lock();
        for user in recipients {
            let Some(list) = connections.get_mut(user) else {
                continue;
            };
            list.retain(|(id, tx)| match tx.try_send(Arc::clone(&delivery)) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::info!(connection = id, "slow WebSocket consumer disconnected");
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
        }
        connections.retain(|_, list| !list.is_empty());
    }

    /// The recipients among `users` with at least one connection here.
    pub fn connected(&self, users: &[UserId]) -> Vec<UserId> {
        let connections = self.lock();
        users
            .iter()
            .filter(|user| connections.contains_key(user))
            .copied()
            .collect()
    }

    /// Closes every connection's queue: each client is told to resume (the same path as
    /// a slow consumer) and replays what it missed from the event log. Used when events
    /// from other nodes may have been missed.
    pub fn disconnect_all(&self) -> usize {
        let mut connections = self.lock();
        let count = connections.values().map(Vec::len).sum();
        connections.clear();
        count
    }

    /// This node's id, carried by its cross-node notifications.
    pub fn node_id(&self) -> uuid::Uuid {
        self.node_id
    }

    pub fn connection_count(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    /// No connection at all: publishing has nothing to do.
    pub fn is_idle(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        // A panic while holding the lock leaves only queue bookkeeping behind: keep going.
        self.connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(seq: i64) -> Arc<Delivery> {
        Arc::new(Delivery {
            room_id: RoomId::new(),
            seq,
            committed_at: Timestamp::from_micros(0),
            json: format!("{{\"seq\":{seq}}}"),
        })
    }

    #[tokio::test]
    async fn delivers_to_every_connection_of_each_recipient() {
        let hub = Hub::default();
        let (alice, bob, carol) = (UserId::new(), UserId::new(), UserId::new());
        let (_, mut a1) = hub.register(alice, 8);
        let (_, mut a2) = hub.register(alice, 8);
        let (_, mut b) = hub.register(bob, 8);
        let (_, mut c) = hub.register(carol, 8);
        hub.publish(&[alice, bob], delivery(1));
        assert_eq!(a1.recv().await.unwrap().seq, 1);
        assert_eq!(a2.recv().await.unwrap().seq, 1);
        assert_eq!(b.recv().await.unwrap().seq, 1);
        assert!(c.try_recv().is_err(), "not a recipient");
        assert_eq!(hub.connection_count(), 4);
    }

    #[tokio::test]
    async fn a_slow_consumer_is_dropped_without_blocking_others() {
        let hub = Hub::default();
        let (slow, fast) = (UserId::new(), UserId::new());
        let (_, mut slow_rx) = hub.register(slow, 2);
        let (_, mut fast_rx) = hub.register(fast, 16);
        for seq in 1..=5 {
            hub.publish(&[slow, fast], delivery(seq));
        }
        for seq in 1..=5 {
            assert_eq!(fast_rx.recv().await.unwrap().seq, seq);
        }
        assert_eq!(slow_rx.recv().await.unwrap().seq, 1);
        assert_eq!(slow_rx.recv().await.unwrap().seq, 2);
        assert!(
            slow_rx.recv().await.is_none(),
            "the overflowing connection's queue is closed"
        );
        assert_eq!(hub.connection_count(), 1);
    }

    #[tokio::test]
    async fn disconnect_all_closes_every_queue_and_connected_filters() {
        let hub = Hub::default();
        let (alice, bob, carol) = (UserId::new(), UserId::new(), UserId::new());
        let (_, mut a) = hub.register(alice, 4);
        let (_, mut b) = hub.register(bob, 4);
        assert_eq!(hub.connected(&[alice, carol, bob]), vec![alice, bob]);
        assert_eq!(hub.disconnect_all(), 2);
        assert!(a.recv().await.is_none());
        assert!(b.recv().await.is_none());
        assert!(hub.connected(&[alice, bob]).is_empty());
        assert_ne!(hub.node_id(), Hub::default().node_id());
    }

    #[test]
    fn connections_per_user_are_capped_and_freed_on_unregister() {
        let hub = Hub::default();
        let (alice, bob) = (UserId::new(), UserId::new());
        let (first, _rx1) = hub.try_register(alice, 4, 2).unwrap();
        let (_second, _rx2) = hub.try_register(alice, 4, 2).unwrap();
        assert!(
            hub.try_register(alice, 4, 2).is_none(),
            "a third is refused"
        );
        assert!(
            hub.try_register(bob, 4, 2).is_some(),
            "others are not affected"
        );
        hub.unregister(alice, first);
        assert!(
            hub.try_register(alice, 4, 2).is_some(),
            "a closed one frees its place"
        );
    }

    #[tokio::test]
    async fn unregistered_connections_get_nothing() {
        let hub = Hub::default();
        let user = UserId::new();
        let (id, mut rx) = hub.register(user, 4);
        hub.unregister(user, id);
        assert!(hub.is_idle());
        hub.publish(&[user], delivery(1));
        assert!(rx.recv().await.is_none());
    }
}
